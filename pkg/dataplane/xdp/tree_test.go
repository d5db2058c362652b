package xdp

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// A tree node that concurrent updates left stale can name a real that may
// no longer be chosen; the pick must see it and scan as IPVS does.
func TestTreeStaleWinnerFallsBack(t *testing.T) {
	l := newLab(t)
	rs := reals(1, 80, 3) // list order .11, .12, .13
	rs[2].Weight = 0      // .11 quiesced: wlc's choice is .12
	other := dataplane.Service{VIP: vipTUN, Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.TUN, Reals: reals(1, 80, 1)}
	l.apply(t, dataplane.State{Services: []dataplane.Service{
		{VIP: vipDR, Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.DR, Reals: rs}, other,
	}})
	svcs, err := l.set.Services.All()
	if err != nil {
		t.Fatal(err)
	}
	gen := l.tables.gen
	sv, ok := svcs[maps.SvcKey{Vip: maps.Be32(vipDR), Port: maps.Be16(80), Proto: 6, Gen: uint8(gen)}]
	if !ok || sv.TreeOff == 0 {
		t.Fatalf("wlc service has no tree: %+v", sv)
	}
	root := gen*maps.TreeHalf + sv.TreeOff + 1
	quiesced, _ := l.tables.RealID(vipDR, 80, 6, rs[2].Addr, 80)
	foreign, _ := l.tables.RealID(vipTUN, 80, 6, other.Reals[0].Addr, 80)

	// wlc's choice: .12, then .13 (.12 has a connection by then).
	for i, tc := range []struct {
		name string
		id   uint32
		want int
	}{
		{"quiesced real", quiesced, 1},
		{"another service's real", foreign, 0},
	} {
		if err := l.set.Trees.SetNode(root, maps.TreeNode{Id: tc.id, W: 1}); err != nil {
			t.Fatal(err)
		}
		p := fromClient(vipDR, 80, layers.IPProtocolTCP)
		p.sport = uint16(41000 + i)
		verdict, out := l.run(t, l.set.Program, p.bytes(t), l.f0)
		if verdict != xdpTX {
			t.Fatalf("%s: verdict %d, want TX", tc.name, verdict)
		}
		if got, want := [6]byte(out[0:6]), [6]byte(realMAC(rs[tc.want].Addr)); got != want {
			t.Errorf("%s in the root: sent to %x, want %s (%x), the scan's choice", tc.name, got, rs[tc.want].Addr, want)
		}
		// The daemon's once-a-second rebuild repairs the tree.
		if err := l.tables.RefreshTrees(); err != nil {
			t.Fatal(err)
		}
		n, err := l.set.Trees.Node(root)
		if err != nil {
			t.Fatal(err)
		}
		if n.Id == tc.id {
			t.Errorf("%s: still the root after a rebuild", tc.name)
		}
	}
}
