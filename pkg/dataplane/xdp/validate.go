package xdp

import (
	"errors"
	"fmt"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// Validate says what of st the XDP data plane would refuse, without
// loading anything: `xlbd check` accepts exactly what the daemon does.
func Validate(st dataplane.State) error {
	err := validate(st)
	n := 0
	for _, s := range st.Services {
		n += len(s.Reals)
	}
	if n > maps.MaxReals {
		err = errors.Join(err, fmt.Errorf("%d real servers over all services: at most %d are supported", n, maps.MaxReals))
	}
	return err
}
