package xdp

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	xbpf "github.com/xlbd/xlbd/bpf"
	xmaps "github.com/xlbd/xlbd/pkg/maps"
)

// The NAT route cache: a packet of generation g reuses what
// bpf_fib_lookup answered for its destination in g; a bump (which the
// watcher makes on any routing change) sends the next packet to the
// kernel's tables again. Each stale case is a golden case: the exact
// output is checked, then the cache's effect on the next MAC.
func TestNATRouteCache(t *testing.T) {
	l := newLab(t)
	l.apply(t, goldenState())
	prog := l.set.Program
	var gen uint32
	bump := func(dstOnly bool) {
		t.Helper()
		var err error
		if gen, err = l.set.Routes.Bump(dstOnly); err != nil {
			t.Fatal(err)
		}
	}
	setNeigh := func(ifindex int, ip netip.Addr, mac net.HardwareAddr) {
		t.Helper()
		var err error
		l.w.Do(func() {
			err = netlink.NeighSet(&netlink.Neigh{LinkIndex: ifindex, Family: netlink.FAMILY_V4,
				State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send := func(name string, in []byte, ifindex int, want net.HardwareAddr) []byte {
		t.Helper()
		v, out := l.run(t, prog, in, ifindex)
		if v != xdpRedirect {
			t.Fatalf("%s: verdict %d, want redirect", name, v)
		}
		if got := net.HardwareAddr(out[:6]); got.String() != want.String() {
			t.Fatalf("%s: sent to %s, want %s", name, got, want)
		}
		return out
	}
	bump(true)

	syn := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	ack := syn
	ack.syn = false
	fwd := ack
	fwd.srcMAC, fwd.dstMAC, fwd.dst, fwd.dport, fwd.ttl = macB0, realMAC(r1NAT), r1NAT, 8080, 63
	send("SYN, cache empty", syn.bytes(t), l.f0, realMAC(r1NAT))
	// A cache hit gives exactly what the lookup gave.
	if out := send("ACK, cached", ack.bytes(t), l.f0, realMAC(r1NAT)); string(out) != string(fwd.bytes(t)) {
		t.Errorf("cached route: output differs from the routed one")
	}

	// The real's MAC changes. Until the generation moves the cached MAC
	// is used: that window is the watcher's reaction time.
	moved := net.HardwareAddr{0x02, 0, 0, 0, 0x99, 0x11}
	setNeigh(l.b0, r1NAT, moved)
	send("neighbour changed, not yet bumped", ack.bytes(t), l.f0, realMAC(r1NAT))
	bump(true)
	want := fwd
	want.dstMAC = moved
	if out := send("neighbour changed, bumped", ack.bytes(t), l.f0, moved); string(out) != string(want.bytes(t)) {
		t.Errorf("after the bump: output is not the routed packet to the new MAC")
	}

	// A route change: the real is now reached through a gateway.
	gw := netip.MustParseAddr("10.50.2.99")
	gwMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x99, 0x99}
	setNeigh(l.b0, gw, gwMAC)
	var err error
	l.w.Do(func() {
		err = netlink.RouteAdd(&netlink.Route{LinkIndex: l.b0, Dst: &net.IPNet{IP: r1NAT.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gw: gw.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	send("route changed, not yet bumped", ack.bytes(t), l.f0, moved)
	bump(true)
	send("route changed, bumped", ack.bytes(t), l.f0, gwMAC)

	// A reused real id: an entry for another address is not this real's.
	var id uint32
	var rv xbpf.XlbRtVal
	iter := l.set.RealRoutes.Iterate()
	for iter.Next(&id, &rv) {
		if rv.Gen != 0 {
			break
		}
	}
	if rv.Gen == 0 {
		t.Fatal("no cached route towards a real")
	}
	rv.Dst = 0x0b0b0b0b
	rv.Dmac = [6]byte{0x02, 0, 0, 0, 0xde, 0xad}
	if err := l.set.RealRoutes.Put(id, rv); err != nil {
		t.Fatal(err)
	}
	send("cached route for another address", ack.bytes(t), l.f0, gwMAC)

	// The reply direction, cached by client address.
	reply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 8080, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, id: 0x4321, df: true, payload: []byte("hello, client")}
	// The flow's real is the only one of its address and port, so its
	// replies route back the way the client came: the connection's own
	// entry keeps that route (rt_gen), and then client_rt is not read.
	connRoute := func() uint32 {
		t.Helper()
		v, ok := l.diffConn(netip.AddrPortFrom(addrClient, 40000), netip.AddrPortFrom(vipNAT, 80), 6)
		if !ok {
			t.Fatal("no connection entry")
		}
		return v.RtGen
	}
	replyOut := reply
	replyOut.srcMAC, replyOut.dstMAC, replyOut.src, replyOut.sport, replyOut.ttl = macF0, macClient, vipNAT, 80, 63
	send("reply, cache empty", reply.bytes(t), l.b0, macClient)
	if g := connRoute(); g != gen {
		t.Fatalf("reply routed the way the client came: connection keeps generation %d, want %d", g, gen)
	}
	// A stale client_rt entry shows which cache the next reply used.
	var rt xbpf.XlbRtVal
	if err := l.set.ClientRoutes.Lookup(xmaps.Be32(addrClient), &rt); err != nil {
		t.Fatalf("client_rt: %v", err)
	}
	stale := rt
	stale.Dmac = [6]byte{0x02, 0, 0, 0, 0xbe, 0xef}
	if err := l.set.ClientRoutes.Put(xmaps.Be32(addrClient), stale); err != nil {
		t.Fatal(err)
	}
	// A packet the other way in between: the route the reply then sends
	// by is not what the last lookup left behind.
	send("ACK between replies", ack.bytes(t), l.f0, gwMAC)
	if out := send("reply, cached in its connection", reply.bytes(t), l.b0, macClient); string(out) != string(replyOut.bytes(t)) {
		t.Errorf("reply through the connection's route: output is not the routed reply")
	}
	if err := l.set.ClientRoutes.Put(xmaps.Be32(addrClient), rt); err != nil {
		t.Fatal(err)
	}
	clientMoved := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x01}
	setNeigh(l.f0, addrClient, clientMoved)
	send("client moved, not yet bumped", reply.bytes(t), l.b0, macClient)
	bump(true)
	send("client moved, bumped", reply.bytes(t), l.b0, clientMoved)
	// No longer the way the client came: the connection keeps no route.
	if g := connRoute(); g == gen {
		t.Errorf("connection keeps generation %d's route to %s, which its client's packets did not come from", g, clientMoved)
	}
	send("client moved, client_rt", reply.bytes(t), l.b0, clientMoved)

	// Back, then behind a gateway on the same link.
	setNeigh(l.f0, addrClient, macClient)
	bump(true)
	send("client back, bumped", reply.bytes(t), l.b0, macClient)
	if g := connRoute(); g != gen {
		t.Errorf("client back: connection keeps generation %d, want %d", g, gen)
	}
	cgw := netip.MustParseAddr("10.50.1.99")
	cgwMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x99}
	setNeigh(l.f0, cgw, cgwMAC)
	l.w.Do(func() {
		err = netlink.RouteAdd(&netlink.Route{LinkIndex: l.f0, Dst: &net.IPNet{IP: addrClient.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gw: cgw.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	send("client behind a gateway, not yet bumped", reply.bytes(t), l.b0, macClient)
	bump(true)
	send("client behind a gateway, bumped", reply.bytes(t), l.b0, cgwMAC)
	l.w.Do(func() {
		err = netlink.RouteDel(&netlink.Route{LinkIndex: l.f0, Dst: &net.IPNet{IP: addrClient.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gw: cgw.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	setNeigh(l.f0, addrClient, clientMoved)
	bump(true)
	send("client moved again", reply.bytes(t), l.b0, clientMoved)

	// With policy rules the cache is off: every packet is routed afresh.
	bump(false)
	setNeigh(l.f0, addrClient, macClient)
	send("no cache: client back", reply.bytes(t), l.b0, macClient)
	setNeigh(l.f0, addrClient, clientMoved)
	send("no cache: client moved again", reply.bytes(t), l.b0, clientMoved)
}

// The watcher bumps the generation on routing changes and turns the cache
// off while policy rules exist.
func TestRouteWatcher(t *testing.T) {
	l := newLab(t)
	w, err := l.w.Join()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go w.Do(func() {
		defer close(done)
		watchRoutes(l.set.Routes, stop, slog.New(slog.DiscardHandler))
	})
	defer func() { close(stop); <-done }()
	state := func() (uint32, bool) {
		gen, dstOnly, err := l.set.Routes.Get()
		if err != nil {
			t.Fatal(err)
		}
		return gen, dstOnly
	}
	waitFor := func(what string, ok func(gen uint32, dstOnly bool) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if gen, dstOnly := state(); ok(gen, dstOnly) {
				return
			}
			if time.Now().After(deadline) {
				gen, dstOnly := state()
				t.Fatalf("%s: generation %d, dst_only %v", what, gen, dstOnly)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("started", func(gen uint32, dstOnly bool) bool { return gen > 0 && dstOnly })
	g0, _ := state()
	l.w.Do(func() {
		err = netlink.NeighSet(&netlink.Neigh{LinkIndex: l.b0, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: r1NAT.AsSlice(), HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0x55, 0x01}})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("neighbour change", func(gen uint32, dstOnly bool) bool { return gen > g0 && dstOnly })
	rule := netlink.NewRule()
	rule.Priority, rule.Table, rule.Src = 100, 100, &net.IPNet{IP: addrClient.AsSlice(), Mask: net.CIDRMask(32, 32)}
	l.w.Do(func() { err = netlink.RuleAdd(rule) })
	if err != nil {
		t.Fatal(err)
	}
	waitFor("policy rule added", func(gen uint32, dstOnly bool) bool { return !dstOnly })
	l.w.Do(func() { err = netlink.RuleDel(rule) })
	if err != nil {
		t.Fatal(err)
	}
	waitFor("policy rule removed", func(gen uint32, dstOnly bool) bool { return dstOnly })
}
