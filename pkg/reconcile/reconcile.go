// Package reconcile decides what the data plane should hold. Today that is
// the configuration as written; health checks will subtract the reals that
// are down (and add sorry servers) here, so that every change to the data
// plane takes this one path.
package reconcile

import (
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// Desired is the data-plane state for cfg.
func Desired(cfg *config.Config) dataplane.State {
	var st dataplane.State
	for _, vs := range cfg.VirtualServers {
		s := dataplane.Service{
			VIP:      vs.Address,
			Port:     vs.Port,
			Protocol: uint8(vs.Protocol),
			Sched:    vs.LBAlgo,
			Kind:     kind(vs.LBKind),
		}
		for _, rs := range vs.RealServers {
			s.Reals = append(s.Reals, dataplane.Real{Addr: rs.Address, Port: rs.Port, Weight: rs.Weight})
		}
		st.Services = append(st.Services, s)
	}
	return st
}

func kind(k config.Kind) dataplane.Kind {
	switch k {
	case config.DR:
		return dataplane.DR
	case config.TUN:
		return dataplane.TUN
	}
	return dataplane.NAT
}
