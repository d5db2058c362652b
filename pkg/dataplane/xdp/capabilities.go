package xdp

import (
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// Name is the XDP backend's name in the registry and --dataplane.
const Name = "xdp"

// Capabilities are what the XDP data plane forwards, known without loading
// anything, so that `xlbd check` accepts exactly what the daemon does.
func Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{
		Backend:    Name,
		Schedulers: Schedulers(),
		Kinds:      []dataplane.Kind{dataplane.NAT, dataplane.DR, dataplane.TUN},
		Protocols:  []uint8{6, 17},
		// Firewall marks are set by netfilter, which runs after XDP.
		FWMark:      false,
		PortZero:    true,
		IPv6:        false,
		MaxServices: maps.MaxServices,
		MaxReals:    maps.MaxReals,
	}
}

// Capabilities implements dataplane.Backend.
func (b *Backend) Capabilities() dataplane.Capabilities { return Capabilities() }
