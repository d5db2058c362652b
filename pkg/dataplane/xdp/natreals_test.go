package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	xbpf "github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane"
	xmaps "github.com/xlbd/xlbd/pkg/maps"
)

// NAT replies without reverse entries: a new flow to a real that is the
// only one of its address, port and protocol keeps the way back to the
// client in its own entry, and its replies find it through nat_reals.
// Shared reals, persistent services and reals without a port still make a
// reverse entry per flow; so does a flow made before its real was in
// nat_reals. Every reply is checked byte for byte.
func TestNATWithoutReverseEntries(t *testing.T) {
	l := newLab(t)
	st := goldenState()
	l.apply(t, st)
	prog := l.set.Program

	flowTo := func(real netip.Addr, sport uint16) (syn, fwd, reply, replyOut pkt) {
		syn = fromClient(vipNAT, 80, layers.IPProtocolTCP)
		syn.sport = sport
		fwd = syn
		fwd.srcMAC, fwd.dstMAC, fwd.dst, fwd.dport, fwd.ttl = macB0, realMAC(real), real, 8080, 63
		reply = pkt{srcMAC: realMAC(real), dstMAC: macB0, src: real, dst: addrClient, sport: 8080, dport: sport,
			proto: layers.IPProtocolTCP, ttl: 64, df: true, payload: []byte("hello, client")}
		replyOut = reply
		replyOut.srcMAC, replyOut.dstMAC, replyOut.src, replyOut.sport, replyOut.ttl = macF0, macClient, vipNAT, 80, 63
		return
	}
	flow := func(sport uint16) (syn, fwd, reply, replyOut pkt) { return flowTo(r1NAT, sport) }
	send := func(name string, in pkt, ifindex int, want *pkt) {
		t.Helper()
		v, out := l.run(t, prog, in.bytes(t), ifindex)
		if want == nil {
			if v != xdpPass {
				t.Fatalf("%s: verdict %d, want pass", name, v)
			}
			return
		}
		checkOutput(t, v, out, xdpRedirect, want.bytes(t), in.bytes(t))
	}
	reverse := func() int {
		t.Helper()
		var n int
		var err error
		l.w.Do(func() { n, err = l.set.NAT.Count() })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	conn := func(sport uint16) xmaps.ConnVal {
		t.Helper()
		v, ok := l.diffConn(netip.AddrPortFrom(addrClient, sport), netip.AddrPortFrom(vipNAT, 80), 6)
		if !ok {
			t.Fatalf("no connection from port %d", sport)
		}
		return v
	}
	r1Key := xmaps.NATRealKey{Ip: xmaps.Be32(r1NAT), Port: xmaps.Be16(8080), Proto: 6}
	natReal := func() (xmaps.NATRealVal, bool) {
		t.Helper()
		var all map[xmaps.NATRealKey]xmaps.NATRealVal
		var err error
		l.w.Do(func() { all, err = l.set.NATReals.All() })
		if err != nil {
			t.Fatal(err)
		}
		v, ok := all[r1Key]
		return v, ok
	}

	// Unshared: no reverse entry, the way back in the connection.
	syn, fwd, reply, replyOut := flow(40000)
	send("SYN", syn, l.f0, &fwd)
	if n := reverse(); n != 0 {
		t.Errorf("%d reverse entries after a new flow to an unshared real, want 0", n)
	}
	if c := conn(40000); c.Flags&uint32(xbpf.XlbConnFlagsCONN_F_L2) == 0 || c.L2Ifindex != uint32(l.f0) {
		t.Errorf("connection %+v: want CONN_F_L2 and the client's link %d", c, l.f0)
	}
	send("reply", reply, l.b0, &replyOut)

	// Shared with another NAT service: new flows get reverse entries; the
	// entry keeps the real id the first flow relies on.
	before, ok := natReal()
	if !ok || before.Shared != 0 {
		t.Fatalf("nat_reals entry of r1 before sharing: %+v, %v", before, ok)
	}
	shared := goldenState()
	shared.Services = append(shared.Services, dataplane.Service{VIP: vipDR, Port: 81, Protocol: 6, Sched: "rr",
		Kind: dataplane.NAT, Reals: reals(2, 8080, 3)})
	l.apply(t, shared)
	if v, ok := natReal(); !ok || v.Shared == 0 || v.RealId != before.RealId {
		t.Fatalf("nat_reals entry of r1 shared: %+v, %v; want shared with real id %d", v, ok, before.RealId)
	}
	send("reply of the flow made before sharing", reply, l.b0, &replyOut)
	// New flows until rr gives one to r1 again.
	var sport uint16
	for p := uint16(40001); p < 40010 && sport == 0; p++ {
		s, _, _, _ := flow(p)
		l.run(t, prog, s.bytes(t), l.f0)
		if c := conn(p); c.RealId == before.RealId {
			sport = p
			if c.Flags&uint32(xbpf.XlbConnFlagsCONN_F_L2) != 0 {
				t.Errorf("a flow to a shared real keeps its way back itself, want a reverse entry")
			}
		}
	}
	if sport == 0 {
		t.Fatal("no new flow went to r1")
	}
	if n := reverse(); n != int(sport-40000) {
		t.Errorf("%d reverse entries after %d flows to shared reals", n, sport-40000)
	}
	_, _, reply2, replyOut2 := flow(sport)
	send("reply through a reverse entry", reply2, l.b0, &replyOut2)

	// Persistent: its template is in tk, so a reverse entry holds the way
	// back; the reply goes through nat_reals and that entry.
	l.apply(t, st)
	persist := goldenState()
	persist.Services[0].PersistTimeout = 300 * time.Second
	l.apply(t, persist)
	syn3, _, _, _ := flow(40010)
	l.run(t, prog, syn3.bytes(t), l.f0)
	c := conn(40010)
	if c.Flags&uint32(xbpf.XlbConnFlagsCONN_F_L2) != 0 || c.Flags&uint32(xbpf.XlbConnFlagsCONN_F_PERSIST) == 0 {
		t.Errorf("persistent connection flags %#x: want CONN_F_PERSIST without CONN_F_L2", c.Flags)
	}
	var rv xmaps.RealVal
	var err error
	l.w.Do(func() { rv, err = l.set.Reals.Get(c.RealId) })
	if err != nil {
		t.Fatal(err)
	}
	_, _, reply3, replyOut3 := flowTo(xmaps.Addr(rv.Ip), 40010)
	send("persistent reply", reply3, l.b0, &replyOut3)

	// A real without a port (vipAll's) answers from whatever port the
	// client asked for: here 8080, which makes its address and port those
	// of a vipNAT real in nat_reals. The reply is not that real's
	// connection; the flow's reverse entry translates it.
	l.apply(t, st)
	all := fromClient(vipAll, 8080, layers.IPProtocolTCP)
	all.sport = 40020
	_, out := l.run(t, prog, all.bytes(t), l.f0)
	real := netip.AddrFrom4([4]byte(out[30:34]))
	allReply := pkt{srcMAC: realMAC(real), dstMAC: macB0, src: real, dst: addrClient, sport: 8080, dport: 40020,
		proto: layers.IPProtocolTCP, ttl: 64, df: true, payload: []byte("hello, client")}
	allOut := allReply
	allOut.srcMAC, allOut.dstMAC, allOut.src, allOut.ttl = macF0, macClient, vipAll, 63
	send("reply of a real without a port", allReply, l.b0, &allOut)

	// The real removed: its entry goes, and its flows' replies are not
	// translated.
	gone := goldenState()
	gone.Services[0].Reals = gone.Services[0].Reals[:2] // r3 r2: r1 is last in list order
	l.apply(t, gone)
	if v, ok := natReal(); ok {
		t.Errorf("nat_reals still has removed r1: %+v", v)
	}
	send("reply from a removed real", reply, l.b0, nil)
}

// nat_slots: a reply finds an unshared real in its slot, one load, where
// Go put it (maps.NATSlot computes the program's index); a real whose slot
// another holds is found through nat_reals; a slot naming the wrong real
// never translates a reply as that real's.
func TestNATSlots(t *testing.T) {
	l := newLab(t)
	prog := l.set.Program
	key := func(ap netip.AddrPort) xmaps.NATRealKey {
		return xmaps.NATRealKey{Ip: xmaps.Be32(ap.Addr()), Port: xmaps.Be16(ap.Port()), Proto: 6}
	}
	a := netip.AddrPortFrom(r1NAT, 8080)
	// A real of another service, on another address, in a's slot.
	var b netip.AddrPort
	for o := byte(12); o <= 14 && !b.IsValid(); o++ {
		for p := 1; p < 65536; p++ {
			c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 50, 2, o}), uint16(p))
			if xmaps.NATSlot(key(c)) == xmaps.NATSlot(key(a)) {
				b = c
				break
			}
		}
	}
	if !b.IsValid() {
		t.Fatal("no real in the lab's range shares a slot with r1:8080")
	}
	l.apply(t, dataplane.State{Services: []dataplane.Service{
		{VIP: vipNAT, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
			Reals: []dataplane.Real{{Addr: a.Addr(), Port: a.Port(), Weight: 1}}},
		{VIP: vipNAT, Port: 81, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
			Reals: []dataplane.Real{{Addr: b.Addr(), Port: b.Port(), Weight: 1}}},
	}})
	var slots map[uint32]xmaps.NATSlotVal
	var reals map[xmaps.NATRealKey]xmaps.NATRealVal
	var err error
	l.w.Do(func() {
		if slots, err = l.set.NATReals.Slots(); err == nil {
			reals, err = l.set.NATReals.All()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := xmaps.NATSlot(key(a))
	held, ok := slots[idx]
	if len(slots) != 1 || !ok || held.Used == 0 {
		t.Fatalf("nat_slots %+v: want one real in slot %d", slots, idx)
	}
	holder, other := a, b
	if held.Ip != key(a).Ip {
		holder, other = b, a
	}
	if held.RealId != reals[key(holder)].RealId {
		t.Fatalf("slot %d names real %d, nat_reals says %s is %d", idx, held.RealId, holder, reals[key(holder)].RealId)
	}

	// One flow each, from the same client port: a reply is told apart
	// by its real alone.
	vport := map[netip.AddrPort]uint16{a: 80, b: 81}
	reply := func(r netip.AddrPort) (in, out pkt) {
		in = pkt{srcMAC: realMAC(r.Addr()), dstMAC: macB0, src: r.Addr(), dst: addrClient, sport: r.Port(),
			dport: 40000, proto: layers.IPProtocolTCP, ttl: 64, df: true, payload: []byte("hello, client")}
		out = in
		out.srcMAC, out.dstMAC, out.src, out.sport, out.ttl = macF0, macClient, vipNAT, vport[r], 63
		return
	}
	for _, r := range []netip.AddrPort{holder, other} {
		syn := fromClient(vipNAT, vport[r], layers.IPProtocolTCP)
		fwd := syn
		fwd.srcMAC, fwd.dstMAC, fwd.dst, fwd.dport, fwd.ttl = macB0, realMAC(r.Addr()), r.Addr(), r.Port(), 63
		v, out := l.run(t, prog, syn.bytes(t), l.f0)
		checkOutput(t, v, out, xdpRedirect, fwd.bytes(t), syn.bytes(t))
		in, want := reply(r)
		v, out = l.run(t, prog, in.bytes(t), l.b0)
		checkOutput(t, v, out, xdpRedirect, want.bytes(t), in.bytes(t))
	}

	putSlot := func(v xmaps.NATSlotVal) {
		t.Helper()
		if err := l.set.NATSlots.Put(idx, v); err != nil {
			t.Fatal(err)
		}
	}
	// The slot names the other real for the holder's address: the reply
	// is checked against that real and passed, not sent as its.
	wrong := held
	wrong.RealId = reals[key(other)].RealId
	putSlot(wrong)
	in, want := reply(holder)
	if v, _ := l.run(t, prog, in.bytes(t), l.b0); v != xdpPass {
		t.Errorf("reply with its slot naming another real: verdict %d, want pass", v)
	}
	// An empty slot: nat_reals answers.
	putSlot(xmaps.NATSlotVal{})
	v, out := l.run(t, prog, in.bytes(t), l.b0)
	checkOutput(t, v, out, xdpRedirect, want.bytes(t), in.bytes(t))
}
