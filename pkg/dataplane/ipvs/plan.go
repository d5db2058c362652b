package ipvs

import (
	"net/netip"

	"github.com/cloudflare/ipvs"
)

// svcID is what IPVS identifies a service by: its firewall mark, or its
// address, port and protocol.
type svcID struct {
	fwmark uint32
	addr   netip.Addr
	port   uint16
	proto  ipvs.Protocol
}

func idOf(s ipvs.Service) svcID {
	if s.FWMark != 0 {
		return svcID{fwmark: s.FWMark}
	}
	return svcID{addr: s.Address, port: s.Port, proto: s.Protocol}
}

type destID struct {
	addr netip.Addr
	port uint16
}

func destIDOf(d ipvs.Destination) destID { return destID{d.Address, d.Port} }

// entry is a service with its destinations, as the kernel holds it or as
// it should be.
type entry struct {
	svc   ipvs.Service
	dests []ipvs.Destination
}

type opKind int

const (
	removeService opKind = iota
	createService
	updateService
	removeDest
	createDest
	updateDest
)

func (k opKind) String() string {
	return [...]string{"remove service", "create service", "update service",
		"remove real", "create real", "update real"}[k]
}

// op is one netlink request.
type op struct {
	kind opKind
	svc  ipvs.Service
	dest ipvs.Destination
}

// diff is the requests that turn have, what the kernel holds, into want.
// A service the kernel holds that want lacks is removed only when owned
// says this daemon put it there: services someone else made (ipvsadm, a
// second daemon) are left alone. Removals come first, services before
// destinations, so that a configuration that swaps one service or real
// for another never holds both at once.
func diff(have, want []entry, owned func(svcID) bool) []op {
	held := make(map[svcID]*entry, len(have))
	for i := range have {
		held[idOf(have[i].svc)] = &have[i]
	}
	wanted := make(map[svcID]bool, len(want))
	for _, w := range want {
		wanted[idOf(w.svc)] = true
	}
	var ops []op
	// The kernel's order, then want's, keeps the output stable for tests
	// and logs.
	for _, h := range have {
		if id := idOf(h.svc); !wanted[id] && owned(id) {
			ops = append(ops, op{kind: removeService, svc: h.svc})
		}
	}
	for _, w := range want {
		h := held[idOf(w.svc)]
		if h == nil {
			ops = append(ops, op{kind: createService, svc: w.svc})
			for _, d := range w.dests {
				ops = append(ops, op{kind: createDest, svc: w.svc, dest: d})
			}
			continue
		}
		if !sameService(h.svc, w.svc) {
			ops = append(ops, op{kind: updateService, svc: w.svc})
		}
		ops = append(ops, diffDests(w.svc, h.dests, w.dests)...)
	}
	return ops
}

func diffDests(svc ipvs.Service, have, want []ipvs.Destination) []op {
	held := make(map[destID]ipvs.Destination, len(have))
	for _, d := range have {
		held[destIDOf(d)] = d
	}
	wanted := make(map[destID]bool, len(want))
	for _, d := range want {
		wanted[destIDOf(d)] = true
	}
	var ops []op
	for _, d := range have {
		if !wanted[destIDOf(d)] {
			ops = append(ops, op{kind: removeDest, svc: svc, dest: d})
		}
	}
	for _, d := range want {
		h, ok := held[destIDOf(d)]
		switch {
		case !ok:
			ops = append(ops, op{kind: createDest, svc: svc, dest: d})
		case !sameDest(h, d):
			ops = append(ops, op{kind: updateDest, svc: svc, dest: d})
		}
	}
	return ops
}

// flagsMask are the service flags a configuration sets; the kernel adds
// others (hashed) of its own.
const flagsMask = ipvs.ServicePersistent | ipvs.ServiceOnePacket |
	ipvs.ServiceSchedulerOpt1 | ipvs.ServiceSchedulerOpt2 | ipvs.ServiceSchedulerOpt3

func sameService(a, b ipvs.Service) bool {
	return a.Scheduler == b.Scheduler && a.Flags&flagsMask == b.Flags&flagsMask &&
		a.Timeout == b.Timeout && a.Netmask.Equal(b.Netmask)
}

func sameDest(a, b ipvs.Destination) bool {
	return a.FwdMethod == b.FwdMethod && a.Weight == b.Weight &&
		a.UpperThreshold == b.UpperThreshold && a.LowerThreshold == b.LowerThreshold &&
		a.TunnelType == b.TunnelType && a.TunnelPort == b.TunnelPort && a.TunnelFlags == b.TunnelFlags
}
