package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/maps"
)

// A well-formed frame is a whole datagram, its first fragment (which has
// the ports) or a later fragment (which has none).
const (
	whole = iota
	firstFragment
	laterFragment
)

// wellFormedFor reports whether b is a complete, valid IPv4 TCP or UDP
// datagram (or fragment of one) in an Ethernet frame, and returns its
// 5-tuple (no ports for a later fragment) and which of the three it is. It
// is written from the RFCs, independently of the program, as the fuzz
// test's oracle.
func wellFormedFor(b []byte) (maps.ConnKey, int, bool) {
	var k maps.ConnKey
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return k, 0, false
	}
	ip := b[14:]
	if ip[0]>>4 != 4 {
		return k, 0, false
	}
	hlen := int(ip[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if hlen < 20 || tot < hlen || tot > len(ip) {
		return k, 0, false
	}
	var s uint32
	for i := 0; i < hlen; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	if s != 0xffff {
		return k, 0, false
	}
	kind := whole
	switch frag := binary.BigEndian.Uint16(ip[6:]); {
	case frag&0x1fff != 0:
		kind = laterFragment
	case frag&0x2000 != 0:
		kind = firstFragment
	}
	k.Src = maps.Be32(netip.AddrFrom4([4]byte(ip[12:16])))
	k.Dst = maps.Be32(netip.AddrFrom4([4]byte(ip[16:20])))
	k.Proto = ip[9]
	if kind == laterFragment {
		return k, kind, true
	}
	l4 := ip[hlen:tot]
	switch ip[9] {
	case 6:
		if len(l4) < 20 || l4[12]>>4 < 5 || int(l4[12]>>4)*4 > len(l4) {
			return k, 0, false
		}
	case 17:
		if len(l4) < 8 {
			return k, 0, false
		}
		// A first fragment's UDP length counts the fragments to come.
		if ul := int(binary.BigEndian.Uint16(l4[4:])); ul < 8 || (ul > len(l4) && kind == whole) {
			return k, 0, false
		}
	default:
		return k, 0, false
	}
	k.Sport = maps.Be16(binary.BigEndian.Uint16(l4[0:]))
	k.Dport = maps.Be16(binary.BigEndian.Uint16(l4[2:]))
	return k, kind, true
}

// FuzzBalancer feeds arbitrary frames through the balancer: it must never
// forward (TX or REDIRECT) anything but a well-formed datagram for a
// configured service (or its VIP's port-0 service), the reply of a NAT
// flow it opened, or a later fragment of a datagram whose first fragment it
// forwarded, and never abort.
func FuzzBalancer(f *testing.F) {
	for _, tc := range goldenCases(&testing.T{}) {
		for _, b := range tc.before {
			f.Add(b)
		}
		f.Add(tc.in)
	}
	for _, tc := range trafficCases(&testing.T{}) {
		for _, b := range append(append(tc.before, tc.beforeB...), tc.in) {
			if len(b) <= 4000 {
				f.Add(b)
			}
		}
	}
	l := newLab(f)
	l.apply(f, goldenState())
	services := map[[3]uint32]bool{}
	for _, s := range goldenState().Services {
		services[[3]uint32{maps.Be32(s.VIP), uint32(maps.Be16(s.Port)), uint32(s.Protocol)}] = true
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 4000 {
			return
		}
		verdict, _ := l.run(t, l.set.Program, in, l.f0)
		if verdict == 0 || verdict > xdpRedirect {
			t.Fatalf("verdict %d for % x", verdict, in)
		}
		if verdict != xdpTX && verdict != xdpRedirect {
			return
		}
		k, kind, ok := wellFormedFor(in)
		if !ok {
			t.Fatalf("forwarded (%s) a malformed frame: % x", verdictName[verdict], in)
		}
		if kind == laterFragment {
			fk := bpf.XlbFragKey{Src: k.Src, Dst: k.Dst, Id: maps.Be16(binary.BigEndian.Uint16(in[14+4:])), Proto: k.Proto}
			var v bpf.XlbFragVal
			var err error
			l.w.Do(func() { err = l.set.Frags.Lookup(&fk, &v) })
			if err != nil {
				t.Fatalf("forwarded (%s) a fragment whose first it never saw: % x", verdictName[verdict], in)
			}
			return
		}
		// A port-0 service takes every port.
		if services[[3]uint32{k.Dst, uint32(k.Dport), uint32(k.Proto)}] || services[[3]uint32{k.Dst, 0, uint32(k.Proto)}] {
			return
		}
		var err error
		l.w.Do(func() {
			if _, err = l.set.NAT.Lookup(k); err != nil {
				err = natFlowOf(l.set, k)
			}
		})
		if err != nil {
			t.Fatalf("forwarded (%s) a frame for no service and no NAT flow (%v): % x", verdictName[verdict], err, in)
		}
	})
}

// natFlowOf says whether k, a NAT reply's own 5-tuple, belongs to a
// connection made without a reverse entry: its real in nat_reals, and the
// connection that real's VIP and port make with the client.
func natFlowOf(set *maps.Set, k maps.ConnKey) error {
	all, err := set.NATReals.All()
	if err != nil {
		return err
	}
	nr, ok := all[maps.NATRealKey{Ip: k.Src, Port: k.Sport, Proto: k.Proto}]
	if !ok {
		return errors.New("no reverse entry, and its source is no NAT real")
	}
	r, err := set.Reals.Get(nr.RealId)
	if err != nil {
		return err
	}
	cv, err := set.Conns.Lookup(maps.ConnKey{Src: k.Dst, Dst: r.Vip, Sport: k.Dport, Dport: r.Vport, Proto: k.Proto})
	if err != nil {
		return fmt.Errorf("no connection through real %d: %w", nr.RealId, err)
	}
	if cv.RealId != nr.RealId {
		return fmt.Errorf("its connection is real %d's, not %d's", cv.RealId, nr.RealId)
	}
	return nil
}
