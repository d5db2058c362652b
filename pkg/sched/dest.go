package sched

import "net/netip"

// Dest is one real server as the schedulers see it (struct ip_vs_dest).
// Slices of Dest are in IPVS list order: ip_vs_add_dest puts a new real at
// the head of svc->destinations (list_add_rcu), and every scheduler's tie
// breaking ("first in the list wins") is relative to that order.
type Dest struct {
	Addr netip.Addr
	Port uint16

	// Weight 0 quiesces the real: no new connections (except through an
	// existing persistence template), existing ones continue.
	Weight int
	// LastWeight is the last non-zero weight (ip_vs_dest.last_weight); only
	// mh uses it, so that quiescing a real keeps its lookup-table slots. When
	// zero and Weight > 0 it is taken to be Weight, the kernel's invariant.
	LastWeight int

	Active   int // activeconns
	Inactive int // inactconns

	// Overloaded is IP_VS_DEST_F_OVERLOAD. A Service maintains it from the
	// thresholds; the pure pickers only read it.
	Overloaded bool
	// UpperThreshold and LowerThreshold are u_threshold and l_threshold
	// (0: none), used by Service only.
	UpperThreshold int
	LowerThreshold int
}

// AddrPort identifies the real: IPVS keys destinations by address and port.
func (d Dest) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.Addr, d.Port) }

// Overhead is ip_vs_dest_conn_overhead (include/net/ip_vs.h): an active
// connection is taken to cost 256 inactive ones.
func (d Dest) Overhead() int { return d.Active<<8 + d.Inactive }

// usable is the negation of is_unavailable in ip_vs_sh.c and ip_vs_mh.c,
// also the test rr, wrr, lc, sed and nq apply.
func (d Dest) usable() bool { return d.Weight > 0 && !d.Overloaded }

func (d Dest) lastWeight() int {
	if d.Weight > 0 {
		return d.Weight
	}
	return d.LastWeight
}

func indexOf(dests []Dest, ap netip.AddrPort) int {
	for i := range dests {
		if dests[i].Addr == ap.Addr() && dests[i].Port == ap.Port() {
			return i
		}
	}
	return -1
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
