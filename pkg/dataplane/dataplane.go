// Package dataplane defines the desired state that the reconciler hands to
// a forwarding backend, and the interface every backend (XDP today, IPVS
// later) implements. Backends are always given the whole state and work out
// the difference themselves, so a reload, a health flap and a restart take
// the same path.
package dataplane

import (
	"context"
	"fmt"
	"net/netip"
)

// Kind is a forwarding method, named as in keepalived's lb_kind.
type Kind uint8

const (
	NAT Kind = iota + 1
	DR
	TUN
)

func (k Kind) String() string {
	switch k {
	case NAT:
		return "NAT"
	case DR:
		return "DR"
	case TUN:
		return "TUN"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// State is everything the data plane should forward.
type State struct {
	Services []Service
}

// Service is one virtual service.
type Service struct {
	VIP      netip.Addr
	Port     uint16
	Protocol uint8 // IP protocol number: 6 TCP, 17 UDP
	Sched    string
	Kind     Kind
	Reals    []Real
}

// Key names the service in logs and maps: "10.50.1.100:80/TCP".
func (s Service) Key() string { return ServiceKey(s.VIP, s.Port, s.Protocol) }

// ServiceKey formats a service identity.
func ServiceKey(vip netip.Addr, port uint16, proto uint8) string {
	p := fmt.Sprintf("proto%d", proto)
	switch proto {
	case 6:
		p = "TCP"
	case 17:
		p = "UDP"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(vip, port), p)
}

// Real is one real server of a service. Weight 0 means quiesced: it takes
// no new flows and keeps the ones it has.
type Real struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
}

// Backend forwards packets for a State.
type Backend interface {
	// Apply makes the data plane forward st, changing only what differs.
	Apply(ctx context.Context, st State) error
	// Close stops forwarding, or with release=false leaves the data plane
	// running for the next daemon to adopt.
	Close(release bool) error
}
