// Package registry builds the data-plane backend that --dataplane names.
// It lists the backends xlbd has, each with what it can forward, so that
// `xlbd check` can judge a configuration against a backend without loading
// it, and the daemon can build one without knowing its type.
package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/ipvs"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
)

// Default is the backend used when --dataplane is not given.
const Default = xdp.Name

// Auto is --dataplane auto: XDP where its programs load and attach on the
// configured interfaces, IPVS elsewhere.
const Auto = "auto"

// Options are what a backend is built from: the settings every backend
// takes, then each backend's own, of which only the chosen one's are read.
type Options struct {
	Interfaces []string
	Log        *slog.Logger
	// XDP holds the XDP backend's settings (--pin-dir, --xdp-mode,
	// --conn-table-size); its Interfaces and Log are the ones above.
	XDP xdp.Options
	// NoXDP, when set, is why XDP cannot be used here (found before the
	// backend is built, say its pin directory cannot be made): auto goes
	// straight to IPVS.
	NoXDP error
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
	{Name: ipvs.Name, Capabilities: ipvs.Capabilities, New: newIPVS},
	{Name: Auto, Capabilities: autoCapabilities, New: newAuto},
}

func newIPVS(o Options) (dataplane.Backend, error) {
	b, err := ipvs.New(ipvs.Options{Log: o.Log})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// autoCapabilities are what either backend can do: `xlbd check` accepts a
// configuration one of them runs, and the daemon judges it again against
// the one auto picked, refusing to start when that one cannot run it.
func autoCapabilities() dataplane.Capabilities {
	return Union(Auto, xdp.Capabilities(), ipvs.Capabilities())
}

// newAuto builds the XDP backend, or when its programs cannot load or
// attach, the IPVS one, logging why.
func newAuto(o Options) (dataplane.Backend, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	xerr := o.NoXDP
	if xerr == nil {
		b, err := newXDP(o)
		if err == nil {
			log.Info("--dataplane auto: using XDP")
			return b, nil
		}
		xerr = err
	}
	log.Warn("--dataplane auto: XDP cannot run here, using IPVS", "reason", xerr)
	b, err := newIPVS(o)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("--dataplane auto: XDP: %w", xerr), fmt.Errorf("--dataplane auto: IPVS: %w", err))
	}
	return b, nil
}

// Union is what backend a or b can do, named name.
func Union(name string, a, b dataplane.Capabilities) dataplane.Capabilities {
	c := dataplane.Capabilities{
		Backend:    name,
		Schedulers: union(a.Schedulers, b.Schedulers),
		Kinds:      union(a.Kinds, b.Kinds),
		Protocols:  union(a.Protocols, b.Protocols),
		FWMark:     a.FWMark || b.FWMark,
		SyncDaemon: a.SyncDaemon || b.SyncDaemon,
		PortZero:   a.PortZero || b.PortZero,
		IPv6:       a.IPv6 || b.IPv6,
	}
	// The larger limit; 0 is none at all.
	limit := func(x, y int) int {
		if x == 0 || y == 0 {
			return 0
		}
		return max(x, y)
	}
	c.MaxServices, c.MaxReals = limit(a.MaxServices, b.MaxServices), limit(a.MaxReals, b.MaxReals)
	return c
}

// union is x followed by what of y x lacks.
func union[T comparable](x, y []T) []T {
	out := slices.Clone(x)
	for _, v := range y {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
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
