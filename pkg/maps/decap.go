package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	xbpf "github.com/xlbd/xlbd/bpf"
)

// DecapSet is the IPIP decapsulator of a real server in TUN mode
// (bpf/decap.c): its program, the addresses it accepts tunnels for, and its
// counters. Its maps are not pinned: they live as long as the process that
// attached it.
type DecapSet struct {
	Program *ebpf.Program
	objs    xbpf.DecapObjects
	addrs   map[netip.Addr]bool // what decap_addrs holds
}

// LoadDecap loads the decapsulator, accepting no address yet.
func LoadDecap() (*DecapSet, error) {
	d := &DecapSet{addrs: map[netip.Addr]bool{}}
	if err := xbpf.LoadDecapObjects(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load decapsulator: %+v", ve)
		}
		return nil, fmt.Errorf("load decapsulator: %w", err)
	}
	d.Program = d.objs.XdpDecap
	return d, nil
}

// SetAddrs makes the program accept IPIP for exactly the IPv4 addresses in
// want, writing only what changes, and says what it added and removed
// (sorted). On error the addresses written so far stay, and the next call
// carries on from there.
func (d *DecapSet) SetAddrs(want map[netip.Addr]bool) (added, removed []netip.Addr, err error) {
	for a := range want {
		if !a.Is4() {
			return added, removed, fmt.Errorf("decapsulate for %s: not an IPv4 address", a)
		}
	}
	for a := range want {
		if d.addrs[a] {
			continue
		}
		if err := d.objs.DecapAddrs.Put(a.As4(), uint8(1)); err != nil {
			return sorted(added), sorted(removed), fmt.Errorf("add %s (the program holds %d addresses): %w",
				a, d.objs.DecapAddrs.MaxEntries(), err)
		}
		d.addrs[a] = true
		added = append(added, a)
	}
	for a := range d.addrs {
		if want[a] {
			continue
		}
		if err := d.objs.DecapAddrs.Delete(a.As4()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return sorted(added), sorted(removed), fmt.Errorf("remove %s: %w", a, err)
		}
		delete(d.addrs, a)
		removed = append(removed, a)
	}
	return sorted(added), sorted(removed), nil
}

func sorted(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return a
}

// Addrs lists the addresses the program accepts IPIP for, as the map
// holds them.
func (d *DecapSet) Addrs() ([]netip.Addr, error) {
	var out []netip.Addr
	var k [4]byte
	var v uint8
	it := d.objs.DecapAddrs.Iterate()
	for it.Next(&k, &v) {
		out = append(out, netip.AddrFrom4(k))
	}
	return sorted(out), it.Err()
}

// Decapsulated returns how many packets lost their outer header.
func (d *DecapSet) Decapsulated() (uint64, error) {
	var per []uint64
	if err := d.objs.DecapStats.Lookup(uint32(xbpf.DecapDecapVerdictDECAP_DONE), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range per {
		n += c
	}
	return n, nil
}

// Close unloads the program and its maps.
func (d *DecapSet) Close() error { return d.objs.Close() }
