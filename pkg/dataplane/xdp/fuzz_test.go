package xdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xlbd/xlbd/pkg/maps"
)

// wellFormedFor reports whether b is a complete, valid IPv4 TCP or UDP
// datagram in an Ethernet frame, and returns its 5-tuple. It is written
// from the RFCs, independently of the program, as the fuzz test's oracle.
func wellFormedFor(b []byte) (maps.ConnKey, bool) {
	var k maps.ConnKey
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return k, false
	}
	ip := b[14:]
	if ip[0]>>4 != 4 {
		return k, false
	}
	hlen := int(ip[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if hlen < 20 || tot < hlen || tot > len(ip) {
		return k, false
	}
	var s uint32
	for i := 0; i < hlen; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	if s != 0xffff {
		return k, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return k, false
	}
	l4 := ip[hlen:tot]
	switch ip[9] {
	case 6:
		if len(l4) < 20 || l4[12]>>4 < 5 || int(l4[12]>>4)*4 > len(l4) {
			return k, false
		}
	case 17:
		if len(l4) < 8 {
			return k, false
		}
		if ul := int(binary.BigEndian.Uint16(l4[4:])); ul < 8 || ul > len(l4) {
			return k, false
		}
	default:
		return k, false
	}
	k.Src = maps.Be32(netip.AddrFrom4([4]byte(ip[12:16])))
	k.Dst = maps.Be32(netip.AddrFrom4([4]byte(ip[16:20])))
	k.Sport = maps.Be16(binary.BigEndian.Uint16(l4[0:]))
	k.Dport = maps.Be16(binary.BigEndian.Uint16(l4[2:]))
	k.Proto = ip[9]
	return k, true
}

// FuzzBalancer feeds arbitrary frames through the balancer: it must never
// forward (TX or REDIRECT) anything but a well-formed datagram for a
// configured service (or its VIP's port-0 service), or the reply of a NAT
// flow it opened, and never abort.
func FuzzBalancer(f *testing.F) {
	for _, tc := range goldenCases(&testing.T{}) {
		for _, b := range tc.before {
			f.Add(b)
		}
		f.Add(tc.in)
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
		k, ok := wellFormedFor(in)
		if !ok {
			t.Fatalf("forwarded (%s) a malformed frame: % x", verdictName[verdict], in)
		}
		// A port-0 service takes every port.
		if services[[3]uint32{k.Dst, uint32(k.Dport), uint32(k.Proto)}] || services[[3]uint32{k.Dst, 0, uint32(k.Proto)}] {
			return
		}
		var err error
		l.w.Do(func() { _, err = l.set.NAT.Lookup(k) })
		if err != nil {
			t.Fatalf("forwarded (%s) a frame for no service and no NAT flow: % x", verdictName[verdict], in)
		}
	})
}
