// Package registry builds the data-plane backend that --dataplane names.
// It lists the backends xlbd has, each with what it can forward, so that
// `xlbd check` can judge a configuration against a backend without loading
// it, and the daemon can build one without knowing its type.
package registry

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
)

// Default is the backend used when --dataplane is not given.
const Default = xdp.Name

// Options are what a backend is built from: the settings every backend
// takes, then each backend's own, of which only the chosen one's are read.
type Options struct {
	Interfaces []string
	Log        *slog.Logger
	// XDP holds the XDP backend's settings (--pin-dir, --xdp-mode,
	// --conn-table-size); its Interfaces and Log are the ones above.
	XDP xdp.Options
}

// Backend is one registered backend.
type Backend struct {
	Name string
	// Capabilities are known without building the backend.
	Capabilities func() dataplane.Capabilities
	New          func(Options) (dataplane.Backend, error)
}

// backends are every backend, the default first.
var backends = []Backend{
	{Name: xdp.Name, Capabilities: xdp.Capabilities, New: newXDP},
}

func newXDP(o Options) (dataplane.Backend, error) {
	xo := o.XDP
	xo.Interfaces, xo.Log = o.Interfaces, o.Log
	b, err := xdp.New(xo)
	if err != nil {
		return nil, err // not a nil *xdp.Backend in a non-nil interface
	}
	return b, nil
}

// Lookup finds the backend called name.
func Lookup(name string) (Backend, error) {
	for _, b := range backends {
		if b.Name == name {
			return b, nil
		}
	}
	return Backend{}, fmt.Errorf("--dataplane %q: unknown data plane (want %s)", name, strings.Join(Names(), " or "))
}

// Names lists the registered backends, the default first.
func Names() []string {
	names := make([]string, len(backends))
	for i, b := range backends {
		names[i] = b.Name
	}
	return names
}
