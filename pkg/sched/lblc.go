package sched

import (
	"net/netip"
	"slices"
	"time"
)

// DefaultLBLCExpiration is DEFAULT_EXPIRATION of ip_vs_lblc.c and
// ip_vs_lblcr.c, the default of the lblc_expiration and lblcr_expiration
// sysctls.
const DefaultLBLCExpiration = 24 * time.Hour

// LBLC is the state of ip_vs_lblc.c for one service: for each destination
// address of the packets (the "dst", not the VIP: lblc is meant for
// transparent cache clusters behind a fwmark service) the real server last
// chosen for it.
//
// Entries name reals by address and port, not by index, so that the table
// survives pool changes as IPVS's does (it holds dest references): an entry
// whose real is not in the dests passed to Schedule is treated as IPVS
// treats a dest in the trash (not IP_VS_DEST_F_AVAILABLE) and replaced.
type LBLC struct {
	// Expiration is sysctl lblc_expiration; 0 means DefaultLBLCExpiration.
	Expiration time.Duration
	entries    map[netip.Addr]*lblcEntry
}

type lblcEntry struct {
	dest    netip.AddrPort
	lastuse time.Duration
}

func expiration(e time.Duration) time.Duration {
	if e <= 0 {
		return DefaultLBLCExpiration
	}
	return e
}

// Schedule is ip_vs_lblc_schedule for a packet to daddr: reuse the entry's
// real while it is available, has weight > 0 and is not lblc-overloaded
// (more active connections than its weight while another real is below half
// its weight), otherwise pick by weighted least-connection (PickWLC) and
// point the entry there. Every lookup refreshes the entry's last use.
//
// The entry's real is reused even when IP_VS_DEST_F_OVERLOAD is set, as in
// IPVS. An entry unused for Expiration is gone (see Expire).
func (l *LBLC) Schedule(now time.Duration, dests []Dest, daddr netip.Addr) int {
	if l.entries == nil {
		l.entries = make(map[netip.Addr]*lblcEntry)
	}
	en := l.entries[daddr]
	if en != nil && now >= en.lastuse+expiration(l.Expiration) {
		delete(l.entries, daddr)
		en = nil
	}
	if en != nil {
		en.lastuse = now
		if i := indexOf(dests, en.dest); i >= 0 && dests[i].Weight > 0 && !lblcOverloaded(dests[i], dests) {
			return i
		}
	}
	d := PickWLC(dests)
	if d < 0 {
		return -1
	}
	// ip_vs_lblc_new: an entry already pointing at the chosen real is kept,
	// any other is replaced by a fresh one.
	if en == nil || en.dest != dests[d].AddrPort() {
		l.entries[daddr] = &lblcEntry{dest: dests[d].AddrPort(), lastuse: now}
	}
	return d
}

// Expire drops entries unused for Expiration. IPVS does this from a timer
// (ip_vs_lblc_check_expire every 60 s, a full sweep every 30 minutes, and
// early collection of entries idle for 6 minutes when the table holds more
// than 16384); the model, and the data plane, treat an entry as gone at the
// exact instant, which Schedule also applies lazily.
func (l *LBLC) Expire(now time.Duration) {
	for a, en := range l.entries {
		if now >= en.lastuse+expiration(l.Expiration) {
			delete(l.entries, a)
		}
	}
}

// Lookup returns the real an entry points at, for tests and status.
func (l *LBLC) Lookup(daddr netip.Addr) (netip.AddrPort, bool) {
	en, ok := l.entries[daddr]
	if !ok {
		return netip.AddrPort{}, false
	}
	return en.dest, true
}

// Len is the number of entries.
func (l *LBLC) Len() int { return len(l.entries) }

// LBLCR is the state of ip_vs_lblcr.c for one service: for each packet
// destination address a set of reals, grown when all of them are overloaded
// and shrunk by one (the most loaded) when it has not changed for
// Expiration.
//
// As for LBLC, members are named by address and port; a member not in the
// dests passed to Schedule counts as not available and, having no known
// weight, as weight 0. (IPVS still knows a removed dest's weight and may
// pick it as the most loaded member to drop; here it stays until the entry
// expires or the real comes back.)
type LBLCR struct {
	// Expiration is sysctl lblcr_expiration; 0 means DefaultLBLCExpiration.
	Expiration time.Duration
	entries    map[netip.Addr]*lblcrEntry
}

type lblcrEntry struct {
	set     []netip.AddrPort // most recently inserted first (list_add_rcu)
	lastmod time.Duration
	lastuse time.Duration
}

// Schedule is ip_vs_lblcr_schedule for a packet to daddr:
//
//  1. With an entry: refresh its last use; take the weighted least-loaded
//     usable member (ip_vs_dest_set_min). Then, if the set has more than one
//     member and was last modified more than Expiration ago, remove its
//     weighted most-loaded member (ip_vs_dest_set_max) -- after the choice,
//     so the member just chosen may be the one removed, as in IPVS. If the
//     chosen member exists and is not lblc-overloaded, use it; otherwise
//     pick by PickWLC over the whole service and add that real to the set.
//  2. Without: pick by PickWLC and create the entry with that one real.
//
// Adding or removing a member sets the modification time.
func (l *LBLCR) Schedule(now time.Duration, dests []Dest, daddr netip.Addr) int {
	if l.entries == nil {
		l.entries = make(map[netip.Addr]*lblcrEntry)
	}
	en := l.entries[daddr]
	if en != nil && now >= en.lastuse+expiration(l.Expiration) {
		delete(l.entries, daddr)
		en = nil
	}
	if en == nil {
		d := PickWLC(dests)
		if d < 0 {
			return -1
		}
		l.entries[daddr] = &lblcrEntry{set: []netip.AddrPort{dests[d].AddrPort()}, lastmod: now, lastuse: now}
		return d
	}
	en.lastuse = now
	d := setMin(en.set, dests)
	if len(en.set) > 1 && now > en.lastmod+expiration(l.Expiration) {
		if m := setMax(en.set, dests); m >= 0 {
			en.set = slices.Delete(en.set, m, m+1)
			en.lastmod = now
		}
	}
	if d >= 0 && !lblcOverloaded(dests[d], dests) {
		return d
	}
	d = PickWLC(dests)
	if d < 0 {
		return -1
	}
	// ip_vs_dest_set_insert with check: no duplicate, new members first.
	if ap := dests[d].AddrPort(); !slices.Contains(en.set, ap) {
		en.set = slices.Insert(en.set, 0, ap)
		en.lastmod = now
	}
	return d
}

// setMin is ip_vs_dest_set_min: the member with the least overhead/weight
// among those not overloaded, the first one being the first member with
// weight > 0 that is available. It returns an index into dests.
func setMin(set []netip.AddrPort, dests []Dest) int {
	least := -1
	var loh int64
	for _, ap := range set {
		i := indexOf(dests, ap)
		if least < 0 {
			if i >= 0 && dests[i].usable() {
				least, loh = i, int64(dests[i].Overhead())
			}
			continue
		}
		if i < 0 || dests[i].Overloaded {
			continue
		}
		doh := int64(dests[i].Overhead())
		if loh*int64(dests[i].Weight) > doh*int64(dests[least].Weight) {
			least, loh = i, doh
		}
	}
	return least
}

// setMax is ip_vs_dest_set_max: the member with the greatest
// overhead/weight among those with weight > 0, the first on ties. It
// returns an index into set, not dests. Unlike setMin it ignores the
// overload flag, as IPVS does.
func setMax(set []netip.AddrPort, dests []Dest) int {
	most, mw := -1, 0
	var moh int64
	for j, ap := range set {
		i := indexOf(dests, ap)
		if i < 0 || dests[i].Weight <= 0 {
			continue
		}
		doh := int64(dests[i].Overhead())
		if most < 0 || moh*int64(dests[i].Weight) < doh*int64(mw) {
			most, moh, mw = j, doh, dests[i].Weight
		}
	}
	return most
}

// Expire drops entries unused for Expiration, with the same caveat as
// LBLC.Expire.
func (l *LBLCR) Expire(now time.Duration) {
	for a, en := range l.entries {
		if now >= en.lastuse+expiration(l.Expiration) {
			delete(l.entries, a)
		}
	}
}

// Set returns the reals of the entry for daddr, most recently added first.
func (l *LBLCR) Set(daddr netip.Addr) []netip.AddrPort {
	if en, ok := l.entries[daddr]; ok {
		return slices.Clone(en.set)
	}
	return nil
}

// Len is the number of entries.
func (l *LBLCR) Len() int { return len(l.entries) }
