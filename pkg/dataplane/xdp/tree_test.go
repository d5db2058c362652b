package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/sched"
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

// Two threads making connections to one service at once, each on its own
// CPU as far as the scheduler lets them: no packet goes anywhere but to one
// of the service's reals, every connection is counted once, and after the
// daemon's rebuild the tree picks what IPVS's scan would.
func TestTreeConcurrentUpdates(t *testing.T) {
	// Room for every flow: a full table refuses new ones.
	l := newLabSized(t, 16384)
	w2, err := l.w.Join()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	var rs []dataplane.Real
	for i := 0; i < 64; i++ {
		rs = append(rs, dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, 1, byte(11 + i)}), Port: 80, Weight: 1 + i%3})
	}
	svc := dataplane.Service{VIP: vipDR, Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.DR, Reals: rs}
	l.apply(t, dataplane.State{Services: []dataplane.Service{svc}})
	macs := map[[6]byte]bool{}
	for _, r := range rs {
		macs[[6]byte(realMAC(r.Addr))] = true
	}

	const perThread = 5000
	frames := make([][][]byte, 2)
	for th := range frames {
		for i := 0; i < perThread; i++ {
			p := fromClient(vipDR, 80, layers.IPProtocolTCP)
			p.src = netip.AddrFrom4([4]byte{10, 60, byte(th), byte(i >> 8)})
			p.sport = uint16(1024 + i)
			frames[th] = append(frames[th], p.bytes(t))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for th, w := range []*testenv.Worker{l.w, w2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Do(func() {
				for _, in := range frames[th] {
					opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256),
						Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(l.f0)}}
					v, err := l.set.Program.Run(&opts)
					if err != nil || v != xdpTX || !macs[[6]byte(opts.DataOut[0:6])] {
						errs <- fmt.Errorf("thread %d: verdict %d, to %x, err %v", th, v, opts.DataOut[0:6], err)
						return
					}
				}
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	si := svcIdent{svc.VIP, svc.Port, svc.Protocol}
	var dests []sched.Dest
	total := 0
	for _, ri := range l.tables.order[si] {
		id, _ := l.tables.RealID(svc.VIP, svc.Port, svc.Protocol, ri.addr, ri.port)
		ld, err := l.set.RealLoad.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		rv, err := l.set.Reals.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		total += int(ld.Active + ld.Inactive)
		dests = append(dests, sched.Dest{Addr: ri.addr, Port: ri.port, Weight: int(rv.Weight),
			Active: int(ld.Active), Inactive: int(ld.Inactive), Overloaded: ld.Overloaded != 0})
	}
	if total != 2*perThread {
		t.Fatalf("%d connections counted, %d made", total, 2*perThread)
	}

	stale := l.staleNodes(t, svc)
	if err := l.tables.RefreshTrees(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tree nodes were stale after %d concurrent connections", stale, 2*perThread)
	if n := l.staleNodes(t, svc); n != 0 {
		t.Fatalf("%d tree nodes still stale after a rebuild", n)
	}
	want := dests[sched.PickWLC(dests)].Addr
	p := fromClient(vipDR, 80, layers.IPProtocolTCP)
	p.sport = 999
	verdict, out := l.run(t, l.set.Program, p.bytes(t), l.f0)
	if verdict != xdpTX || [6]byte(out[0:6]) != [6]byte(realMAC(want)) {
		t.Fatalf("after the rebuild: verdict %d to %x, want TX to %s (%x), wlc's choice", verdict, out[0:6], want, realMAC(want))
	}
}

// staleNodes counts the nodes of svc's tree that differ from a rebuild of
// it from the live counts, which it does not write.
func (l *lab) staleNodes(t *testing.T, svc dataplane.Service) int {
	t.Helper()
	svcs, err := l.set.Services.All()
	if err != nil {
		t.Fatal(err)
	}
	gen := l.tables.gen
	sv := svcs[maps.SvcKey{Vip: maps.Be32(svc.VIP), Port: maps.Be16(svc.Port), Proto: svc.Protocol, Gen: uint8(gen)}]
	base := gen*maps.TreeHalf + sv.TreeOff
	meta, err := l.set.Trees.Node(base)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]maps.TreeNode, 2*meta.W)
	for i := uint32(1); i < 2*meta.W; i++ {
		if nodes[i], err = l.set.Trees.Node(base + i); err != nil {
			t.Fatal(err)
		}
	}
	// The rebuild, in Go from the leaves' reals: wlc's match.
	want := slices.Clone(nodes)
	for i := meta.W; i < 2*meta.W; i++ {
		want[i] = maps.TreeNode{Id: maps.NoReal}
		if k := i - meta.W; k < sv.MemLen {
			ids, err := l.set.Ring.Read(gen, sv.MemOff+k, 1)
			if err != nil {
				t.Fatal(err)
			}
			ld, _ := l.set.RealLoad.Get(ids[0])
			rv, _ := l.set.Reals.Get(ids[0])
			half := uint32(0)
			if 2*uint64(ld.Active) < uint64(rv.Weight) {
				half = 1
			}
			want[i] = maps.TreeNode{Id: ids[0], W: rv.Weight, Oh: ld.Active<<8 + ld.Inactive, Half: half}
			if rv.Weight == 0 || ld.Overloaded != 0 {
				want[i] = maps.TreeNode{Id: maps.NoReal, Half: half}
			}
		}
	}
	for i := meta.W - 1; i >= 1; i-- {
		a, b := want[2*i], want[2*i+1]
		w := a
		if a.Id == maps.NoReal || (b.Id != maps.NoReal && uint64(a.Oh)*uint64(b.W) > uint64(b.Oh)*uint64(a.W)) {
			w = b
		}
		w.Half = a.Half | b.Half
		want[i] = w
	}
	n := 0
	for i := uint32(1); i < 2*meta.W; i++ {
		if nodes[i] != want[i] {
			n++
		}
	}
	return n
}
