package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// schedFlags are keepalived's names for IPVS's scheduler flags: sh and mh
// read the same two bits.
var schedFlags = map[string]ipvs.Flags{
	"sh-fallback": ipvs.ServiceSchedulerOpt1,
	"sh-port":     ipvs.ServiceSchedulerOpt2,
	"mh-fallback": ipvs.ServiceSchedulerOpt1,
	"mh-port":     ipvs.ServiceSchedulerOpt2,
}

var methods = map[dataplane.Kind]ipvs.ForwardType{
	dataplane.NAT: ipvs.Masquerade,
	dataplane.DR:  ipvs.DirectRoute,
	dataplane.TUN: ipvs.Tunnel,
}

// toEntry is s as IPVS holds it.
func toEntry(s dataplane.Service) (entry, error) {
	svc := ipvs.Service{
		Family:    ipvs.INET,
		Scheduler: s.Sched,
		// IPVS refuses a service without a netmask; for one that is not
		// persistent it is the whole address, as ipvsadm sends.
		Netmask: netmask.MaskFrom(32, 32),
	}
	if s.FWMark != 0 {
		svc.FWMark = s.FWMark
		// The kernel keeps the protocol of a firewall-mark service for
		// its persistence templates; ipvsadm sends TCP.
		svc.Protocol = ipvs.Protocol(s.Protocol)
		if svc.Protocol == 0 {
			svc.Protocol = ipvs.TCP
		}
	} else {
		if !s.VIP.Is4() {
			return entry{}, fmt.Errorf("%s: the IPVS data plane balances IPv4 services only", s.Key())
		}
		svc.Address, svc.Port, svc.Protocol = s.VIP, s.Port, ipvs.Protocol(s.Protocol)
	}
	if svc.Scheduler == "" {
		svc.Scheduler = "wlc"
	}
	for _, f := range s.SchedFlags {
		bit, ok := schedFlags[f]
		if !ok {
			return entry{}, fmt.Errorf("%s: unknown scheduler flag %q", s.Key(), f)
		}
		svc.Flags |= bit
	}
	if s.OnePacket {
		svc.Flags |= ipvs.ServiceOnePacket
	}
	if s.PersistTimeout > 0 {
		svc.Flags |= ipvs.ServicePersistent
		svc.Timeout = uint32(s.PersistTimeout.Seconds())
		if s.PersistPrefix > 0 {
			svc.Netmask = netmask.MaskFrom(s.PersistPrefix, 32)
		}
	}
	method, ok := methods[s.Kind]
	if !ok {
		return entry{}, fmt.Errorf("%s: forwarding method %s is not IPVS's", s.Key(), s.Kind)
	}
	e := entry{svc: svc}
	for _, r := range s.Reals {
		if !r.Addr.Is4() {
			return entry{}, fmt.Errorf("%s: real server %s: the IPVS data plane forwards to IPv4 real servers only", s.Key(), r.Addr)
		}
		e.dests = append(e.dests, ipvs.Destination{
			Address:        r.Addr,
			Port:           r.Port,
			Family:         ipvs.INET,
			FwdMethod:      method,
			Weight:         uint32(max(r.Weight, 0)),
			UpperThreshold: uint32(max(r.UThreshold, 0)),
			LowerThreshold: uint32(max(r.LThreshold, 0)),
		})
	}
	return e, nil
}

// toEntries is the State's services as IPVS should hold them.
func toEntries(st dataplane.State) ([]entry, error) {
	out := make([]entry, 0, len(st.Services))
	for _, s := range st.Services {
		e, err := toEntry(s)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

var kinds = map[ipvs.ForwardType]dataplane.Kind{
	ipvs.Masquerade:  dataplane.NAT,
	ipvs.DirectRoute: dataplane.DR,
	ipvs.Tunnel:      dataplane.TUN,
}

func counters(s ipvs.Stats) dataplane.Counters {
	return dataplane.Counters{
		Connections: s.Connections,
		// IPVS schedules every connection that does not follow a
		// persistence template; it does not count which did.
		Picks:      s.Connections,
		PacketsIn:  s.IncomingPackets,
		BytesIn:    s.IncomingBytes,
		PacketsOut: s.OutgoingPackets,
		BytesOut:   s.OutgoingBytes,
	}
}

// stats64 prefers the 64-bit counters, which kernels since 4.1 send.
func stats64(s64, s32 ipvs.Stats) ipvs.Stats {
	if s64 != (ipvs.Stats{}) {
		return s64
	}
	return s32
}

// toStatus is one kernel service as `xlbd status` shows it.
func toStatus(s ipvs.ServiceExtended, dests []ipvs.DestinationExtended) dataplane.ServiceStatus {
	st := dataplane.ServiceStatus{
		VIP:      s.Address,
		Port:     s.Port,
		Protocol: dataplane.ProtocolName(uint8(s.Protocol)),
		FWMark:   s.FWMark,
		Sched:    s.Scheduler,
		Counters: counters(stats64(s.Stats64, s.Stats)),
	}
	if s.FWMark != 0 {
		st.VIP, st.Port = netip.Addr{}, 0
	}
	if s.Flags&ipvs.ServicePersistent != 0 {
		st.Persistence = time.Duration(s.Timeout) * time.Second
		if ones := s.Netmask.Bits(); ones > 0 && ones < 32 {
			st.PersistPrefix = ones
		}
	}
	for _, d := range dests {
		k := kinds[d.FwdMethod]
		if st.Kind == "" && k != 0 {
			st.Kind = k.String()
		}
		c := counters(stats64(d.Stats64, d.Stats))
		st.Reals = append(st.Reals, dataplane.RealStatus{
			Addr:          d.Address,
			Port:          d.Port,
			Weight:        int(d.Weight),
			Counters:      c,
			ActiveConns:   d.ActiveConnections,
			InactiveConns: d.InactiveConnections,
			PersistConns:  d.PersistentConnections,
			// IPVS does not report its overload flag; this is the test
			// that sets it, without the hysteresis that clears it.
			Overloaded: d.UpperThreshold > 0 && d.ActiveConnections+d.InactiveConnections >= d.UpperThreshold,
			// IPVS sends to a real through the kernel's neighbour
			// table and routes, which resolve on the way.
			Reachable: true,
		})
	}
	// The kernel lists destinations newest first; sort for a stable view.
	slices.SortFunc(st.Reals, func(a, b dataplane.RealStatus) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return st
}
