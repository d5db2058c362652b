package maps

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWantSlots(t *testing.T) {
	key := func(ip string, port uint16) NATRealKey {
		return NATRealKey{Ip: Be32(netip.MustParseAddr(ip)), Port: Be16(port), Proto: 6}
	}
	slot := func(k NATRealKey, id uint32) NATSlotVal {
		return NATSlotVal{Ip: k.Ip, Port: k.Port, Proto: k.Proto, Used: 1, RealId: id}
	}
	a, b := key("10.50.2.11", 8080), key("10.50.2.12", 21425) // one slot (pkg/dataplane/xdp's TestNATSlots finds b)
	if NATSlot(a) != NATSlot(b) {
		t.Fatalf("slots %d and %d: the table below wants a collision", NATSlot(a), NATSlot(b))
	}
	c := key("10.50.2.13", 80)
	for _, tc := range []struct {
		name string
		in   map[NATRealKey]NATRealVal
		want map[uint32]NATSlotVal
	}{
		{"empty", nil, map[uint32]NATSlotVal{}},
		{"one", map[NATRealKey]NATRealVal{c: {RealId: 3}}, map[uint32]NATSlotVal{NATSlot(c): slot(c, 3)}},
		{"shared stays out", map[NATRealKey]NATRealVal{c: {RealId: 3, Shared: 1}}, map[uint32]NATSlotVal{}},
		{
			"collision: the first in key order keeps it",
			map[NATRealKey]NATRealVal{b: {RealId: 2}, a: {RealId: 1}, c: {RealId: 3}},
			map[uint32]NATSlotVal{NATSlot(a): slot(a, 1), NATSlot(c): slot(c, 3)},
		},
		{
			"collision with a shared real",
			map[NATRealKey]NATRealVal{a: {RealId: 1, Shared: 1}, b: {RealId: 2}},
			map[uint32]NATSlotVal{NATSlot(b): slot(b, 2)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, wantSlots(tc.in)); diff != "" {
				t.Errorf("wantSlots (-want +got):\n%s", diff)
			}
		})
	}
}
