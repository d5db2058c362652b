package maps

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbd/xlbd/internal/testenv"
)

// ipv4 is a 20-byte IPv4 header with its checksum, then payload.
func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return append(h, payload...)
}

var ethHeader = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}

func TestDecapSet(t *testing.T) {
	testenv.RequireRoot(t)
	d, err := LoadDecap()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a1, a2, a3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	added, removed, err := d.SetAddrs(map[netip.Addr]bool{a2: true, a1: true})
	if err != nil || !slices.Equal(added, []netip.Addr{a1, a2}) || len(removed) != 0 {
		t.Fatalf("SetAddrs: +%v -%v, %v", added, removed, err)
	}
	added, removed, err = d.SetAddrs(map[netip.Addr]bool{a2: true, a3: true})
	if err != nil || !slices.Equal(added, []netip.Addr{a3}) || !slices.Equal(removed, []netip.Addr{a1}) {
		t.Fatalf("SetAddrs: +%v -%v, %v", added, removed, err)
	}
	if got, err := d.Addrs(); err != nil || !slices.Equal(got, []netip.Addr{a2, a3}) {
		t.Errorf("Addrs: %v, %v", got, err)
	}
	if _, _, err := d.SetAddrs(map[netip.Addr]bool{netip.MustParseAddr("2001:db8::1"): true}); err == nil {
		t.Error("SetAddrs took an IPv6 address")
	}

	// An IPIP packet to an accepted address loses its outer header; one to
	// another address passes as it is.
	inner := ipv4(netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.80"), 17, make([]byte, 8))
	for _, c := range []struct {
		to    netip.Addr
		decap bool
	}{{a2, true}, {a1, false}} {
		in := append(slices.Clone(ethHeader), ipv4(netip.MustParseAddr("192.0.2.100"), c.to, 4, inner)...)
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
		ret, err := d.Program.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		want := in
		if c.decap {
			want = append(slices.Clone(ethHeader), inner...)
		}
		if ret != 2 || !bytes.Equal(opts.DataOut, want) {
			t.Errorf("IPIP to %s: verdict %d, out % x; want PASS, % x", c.to, ret, opts.DataOut, want)
		}
	}
	if n, err := d.Decapsulated(); err != nil || n != 1 {
		t.Errorf("Decapsulated: %d, %v; want 1", n, err)
	}
}
