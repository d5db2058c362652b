package vrrp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/testenv"
)

// spNode is one end of a veth pair, alone in an anonymous network namespace
// that goes away with the test: nothing the speakers send can leave the
// pair, and no names are shared with other tests running at the same time.
type spNode struct {
	w      *testenv.Worker
	ifname string
	addr   netip.Addr // IPv4
}

var (
	spAddrA = netip.MustParseAddr("10.77.0.1")
	spAddrB = netip.MustParseAddr("10.77.0.2")
)

// spPair makes two namespaces joined by a veth: A's vr0 (10.77.0.1/24,
// fe80::a) and B's vr1 (10.77.0.2/24, fe80::b).
func spPair(t *testing.T) (a, b *spNode) {
	t.Helper()
	testenv.RequireRoot(t)
	mk := func(ifname string, addr netip.Addr) *spNode {
		w, err := testenv.NewNetnsWorker()
		if err != nil {
			testenv.Skip(t, "cannot create a network namespace: "+err.Error())
		}
		t.Cleanup(w.Close)
		var serr error
		w.Do(func() {
			// Without DAD the link-local addresses are usable at once
			// instead of after a second of tentativeness; without
			// generated ones, fe80::a and fe80::b are the only ones.
			for _, k := range []string{"all/accept_dad", "default/accept_dad", "default/addr_gen_mode"} {
				val := "0"
				if k == "default/addr_gen_mode" {
					val = "1"
				}
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k, []byte(val), 0); err != nil && serr == nil {
					serr = err
				}
			}
		})
		if serr != nil {
			t.Fatal(serr)
		}
		return &spNode{w: w, ifname: ifname, addr: addr}
	}
	a, b = mk("vr0", spAddrA), mk("vr1", spAddrB)

	var nsB netns.NsHandle
	var err error
	b.w.Do(func() { nsB, err = netns.Get() })
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	a.w.Do(func() {
		if err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.ifname}, PeerName: b.ifname}); err != nil {
			return
		}
		var peer netlink.Link
		if peer, err = netlink.LinkByName(b.ifname); err != nil {
			return
		}
		err = netlink.LinkSetNsFd(peer, int(nsB))
	})
	if err != nil {
		testenv.Skip(t, "cannot create a veth pair: "+err.Error())
	}
	for _, n := range []*spNode{a, b} {
		ll := "fe80::a/64"
		if n == b {
			ll = "fe80::b/64"
		}
		n.w.Do(func() {
			var l netlink.Link
			if l, err = netlink.LinkByName(n.ifname); err != nil {
				return
			}
			for _, p := range []string{netip.PrefixFrom(n.addr, 24).String(), ll} {
				ad, _ := netlink.ParseAddr(p)
				ad.Flags = unix.IFA_F_NODAD
				if err = netlink.AddrAdd(l, ad); err != nil {
					return
				}
			}
			err = netlink.LinkSetUp(l)
		})
		if err != nil {
			t.Fatalf("set up %s: %v", n.ifname, err)
		}
	}
	spWaitLink(t, a, b)
	return a, b
}

// spWaitLink returns once a datagram gets from a to b: a veth's queue drops
// what is sent before its carrier comes up, a moment after both ends are
// set up, and a test sends only one advert where a router would send the
// next a second later.
func spWaitLink(t *testing.T, a, b *spNode) {
	t.Helper()
	var from, to net.PacketConn
	var err error
	b.w.Do(func() { to, err = net.ListenPacket("udp4", b.addr.String()+":0") })
	if err == nil {
		defer to.Close()
		a.w.Do(func() { from, err = net.ListenPacket("udp4", a.addr.String()+":0") })
	}
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	buf := make([]byte, 16)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if _, err := from.WriteTo([]byte("up?"), to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		to.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := to.ReadFrom(buf); err == nil {
			return
		}
	}
	t.Fatal("the veth pair does not pass traffic")
}

// speaker makes a speaker in n and runs it until the test ends.
func (n *spNode) speaker(t *testing.T, opts Options) *Speaker {
	t.Helper()
	var s *Speaker
	var err error
	// Logged with the test, so that a failure shows what was dropped.
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	n.w.Do(func() { s, err = NewSpeaker(n.ifname, opts) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		s.Close()
	})
	return s
}

// rawConn is a plain raw socket for protocol 112 in n, for sending what a
// speaker never would and for looking at the IP headers it sends.
func (n *spNode) rawConn(t *testing.T) *ipv4.RawConn {
	t.Helper()
	var rc *ipv4.RawConn
	var err error
	n.w.Do(func() {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("ip4:112", "0.0.0.0"); err != nil {
			return
		}
		if rc, err = ipv4.NewRawConn(pc); err != nil {
			return
		}
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(n.ifname); err != nil {
			return
		}
		err = rc.SetMulticastInterface(ifi)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

func spRegister(t *testing.T, s *Speaker, vrid uint8, in Instance) chan Received {
	t.Helper()
	ch := make(chan Received, 16)
	in.C = ch
	if err := s.Register(vrid, in); err != nil {
		t.Fatal(err)
	}
	return ch
}

func spRecv(t *testing.T, ch <-chan Received) Received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(3 * time.Second):
		t.Fatal("no advert received")
		return Received{}
	}
}

func spNothing(t *testing.T, ch <-chan Received, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s delivered: %+v", what, r)
	case <-time.After(200 * time.Millisecond):
	}
}

// spEventually waits for a counter the reader goroutine bumps.
func spEventually(t *testing.T, what string, f func() uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := f()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", what, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spAdvert(version int, vrid uint8, vips ...netip.Addr) Advert {
	a := Advert{Version: version, VRID: vrid, Priority: 150, AdvertInt: time.Second, Addrs: vips}
	if version == 2 {
		a.AuthType = AuthPass
		copy(a.AuthData[:], "secret1")
	}
	return a
}

var spVIP = netip.MustParseAddr("10.77.0.100")

func TestSpeakerMulticast(t *testing.T) {
	a, b := spPair(t)
	sa, sb := a.speaker(t, Options{}), b.speaker(t, Options{})
	if sa.Primary() != spAddrA || sb.Primary() != spAddrB {
		t.Fatalf("primary addresses %v, %v; want %v, %v", sa.Primary(), sb.Primary(), spAddrA, spAddrB)
	}
	wire := b.rawConn(t)

	for _, tc := range []struct {
		version int
		vrid    uint8
		form    ChecksumForm
		marshal MarshalOptions
	}{
		{2, 1, ChecksumMessageOnly, MarshalOptions{}},
		{3, 2, ChecksumPseudoHeader, MarshalOptions{}},
		{3, 3, ChecksumMessageOnly, MarshalOptions{V3ChecksumAsV2: true}},
	} {
		spRegister(t, sa, tc.vrid, Instance{Version: tc.version, Marshal: tc.marshal})
		ch := spRegister(t, sb, tc.vrid, Instance{Version: tc.version})
		want := spAdvert(tc.version, tc.vrid, spVIP)
		if err := sa.Send(want); err != nil {
			t.Fatal(err)
		}
		got := spRecv(t, ch)
		if got.Src != spAddrA || got.Dst != DefaultGroup4 || got.Form != tc.form {
			t.Errorf("v%d: from %v to %v, %v; want from %v to %v, %v", tc.version, got.Src, got.Dst, got.Form, spAddrA, DefaultGroup4, tc.form)
		}
		if d := cmp.Diff(want, got.Advert, cmpAddrs...); d != "" {
			t.Errorf("v%d advert (-sent +received):\n%s", tc.version, d)
		}

		// What keepalived puts in the IP header, seen by a plain socket.
		wire.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		h, p, _, err := wire.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if h.TTL != 255 || h.TOS != 0xc0 || !h.Src.Equal(spAddrA.AsSlice()) || !h.Dst.Equal(DefaultGroup4.AsSlice()) || p[1] != tc.vrid {
			t.Errorf("v%d: IP header %v, VRID %d", tc.version, h, p[1])
		}
	}
	if c := sa.Counters(1); c.Sent != 1 {
		t.Errorf("sender counters %+v, want 1 sent", c)
	}
	if c := sb.Counters(2); c.Received != 1 || c.Forms[ChecksumPseudoHeader] != 1 {
		t.Errorf("receiver counters %+v, want 1 received with the pseudo-header", c)
	}
}

func TestSpeakerUnicast(t *testing.T) {
	a, b := spPair(t)
	sa, sb := a.speaker(t, Options{}), b.speaker(t, Options{})
	// A second address on A: adverts are sent from unicast_src_ip, not
	// from the primary address.
	src := netip.MustParseAddr("10.77.0.11")
	a.w.Do(func() {
		l, err := netlink.LinkByName(a.ifname)
		if err == nil {
			ad, _ := netlink.ParseAddr(src.String() + "/24")
			err = netlink.AddrAdd(l, ad)
		}
		if err != nil {
			t.Error(err)
		}
	})

	for _, version := range []int{2, 3} {
		vrid := uint8(10 + version)
		spRegister(t, sa, vrid, Instance{Version: version, Src: src, Peers: []netip.Addr{spAddrB}})
		ch := spRegister(t, sb, vrid, Instance{Version: version, Src: spAddrB, Peers: []netip.Addr{src}})
		want := spAdvert(version, vrid, spVIP)
		if err := sa.Send(want); err != nil {
			t.Fatal(err)
		}
		got := spRecv(t, ch)
		if got.Src != src || got.Dst != spAddrB {
			t.Errorf("v%d: from %v to %v, want from %v to %v", version, got.Src, got.Dst, src, spAddrB)
		}
		if d := cmp.Diff(want, got.Advert, cmpAddrs...); d != "" {
			t.Errorf("v%d advert (-sent +received):\n%s", version, d)
		}
	}

	// A sender that is not a configured peer is not heard, as in
	// keepalived.
	spRegister(t, sa, 20, Instance{Version: 2, Peers: []netip.Addr{spAddrB}})
	ch := spRegister(t, sb, 20, Instance{Version: 2, Peers: []netip.Addr{netip.MustParseAddr("10.77.0.9")}})
	if err := sa.Send(spAdvert(2, 20, spVIP)); err != nil {
		t.Fatal(err)
	}
	spEventually(t, "peer drops", func() uint64 { return sb.Counters(20).Dropped[ReasonPeer] }, 1)
	spNothing(t, ch, "an advert from a stranger")
}

func TestSpeakerDrops(t *testing.T) {
	a, b := spPair(t)
	sb := b.speaker(t, Options{})
	ch := spRegister(t, sb, 7, Instance{Version: 2})
	raw := a.rawConn(t)
	send := func(ttl int, msg []byte) {
		t.Helper()
		h := &ipv4.Header{Version: 4, Len: 20, TOS: 0xc0, TotalLen: 20 + len(msg), TTL: ttl,
			Protocol: ProtocolNumber, Src: spAddrA.AsSlice(), Dst: DefaultGroup4.AsSlice()}
		if err := raw.WriteTo(h, msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	good := func(version int, vrid uint8) []byte {
		b, err := Marshal(spAdvert(version, vrid, spVIP), spAddrA, DefaultGroup4, MarshalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The raw socket itself is sound: a well-formed advert goes through.
	send(255, good(2, 7))
	spRecv(t, ch)

	send(64, good(2, 7))
	spEventually(t, "TTL drops", func() uint64 { return sb.Counters(7).Dropped[ReasonTTL] }, 1)

	bad := good(2, 7)
	bad[6] ^= 0xff
	send(255, bad)
	spEventually(t, "checksum drops", func() uint64 { return sb.Counters(7).Dropped[ReasonChecksum] }, 1)

	send(255, good(3, 7))
	spEventually(t, "version drops", func() uint64 { return sb.Counters(7).Dropped[ReasonVersion] }, 1)

	short := good(2, 7)
	short[3] = 2 // two addresses claimed, one sent
	send(255, short)
	spEventually(t, "length drops", func() uint64 { return sb.Counters(7).Dropped[ReasonLength] }, 1)

	send(255, good(2, 99))
	spEventually(t, "unknown VRIDs", func() uint64 { return sb.Unclaimed().Dropped[ReasonVRID] }, 1)

	spNothing(t, ch, "a dropped advert")
	if c := sb.Counters(7); c.Received != 1 {
		t.Errorf("received %d, want 1", c.Received)
	}
}

func TestSpeakerIPv6(t *testing.T) {
	a, b := spPair(t)
	sa, sb := a.speaker(t, Options{IPv6: true}), b.speaker(t, Options{IPv6: true})
	llA := netip.MustParseAddr("fe80::a")
	if sa.Primary() != llA {
		t.Fatalf("primary %v, want %v", sa.Primary(), llA)
	}
	if err := sa.Register(1, Instance{Version: 2, C: make(chan Received)}); err == nil {
		t.Error("VRRPv2 registered on an IPv6 speaker")
	}
	vip6 := netip.MustParseAddr("2001:db8::100")
	spRegister(t, sa, 1, Instance{Version: 3})
	ch := spRegister(t, sb, 1, Instance{Version: 3})
	want := Advert{Version: 3, VRID: 1, Priority: 200, AdvertInt: 100 * time.Millisecond, Addrs: []netip.Addr{vip6}}
	if err := sa.Send(want); err != nil {
		t.Fatal(err)
	}
	got := spRecv(t, ch)
	if got.Src != llA || got.Dst != DefaultGroup6 || got.Form != ChecksumPseudoHeader {
		t.Errorf("from %v to %v, %v; want from %v to %v, pseudo-header", got.Src, got.Dst, got.Form, llA, DefaultGroup6)
	}
	if d := cmp.Diff(want, got.Advert, cmpAddrs...); d != "" {
		t.Errorf("advert (-sent +received):\n%s", d)
	}

	// Unicast to a link-local peer.
	llB := netip.MustParseAddr("fe80::b")
	spRegister(t, sa, 2, Instance{Version: 3, Peers: []netip.Addr{llB}})
	ch = spRegister(t, sb, 2, Instance{Version: 3, Peers: []netip.Addr{llA}})
	want.VRID = 2
	if err := sa.Send(want); err != nil {
		t.Fatal(err)
	}
	if got := spRecv(t, ch); got.Src != llA || got.Dst != llB {
		t.Errorf("unicast from %v to %v, want from %v to %v", got.Src, got.Dst, llA, llB)
	}
}

func TestSpeakerCloseEndsRun(t *testing.T) {
	a, _ := spPair(t)
	var s *Speaker
	var err error
	a.w.Do(func() { s, err = NewSpeaker(a.ifname, Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run still running after Close")
	}
}

// The checks that need no socket, on a speaker whose reader is fed by hand.
func TestSpeakerReceive(t *testing.T) {
	s := &Speaker{group: DefaultGroup4, log: slog.New(slog.DiscardHandler)}
	ch := make(chan Received, 1)
	if err := s.Register(5, Instance{Version: 3, C: ch, Peers: []netip.Addr{spAddrA}}); err != nil {
		t.Fatal(err)
	}
	msg, err := Marshal(spAdvert(3, 5, spVIP), spAddrA, spAddrB, MarshalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.receive(msg, spAddrA, spAddrB, 255, now)
	s.receive(msg, spAddrA, spAddrB, 255, now) // the channel is full
	s.receive(msg[:1], spAddrA, spAddrB, 255, now)
	if r := <-ch; r.At != now || r.Advert.VRID != 5 {
		t.Errorf("delivered %+v", r)
	}
	if c := s.Counters(5); c.Received != 1 || c.Dropped[ReasonQueue] != 1 {
		t.Errorf("counters %+v, want 1 received and 1 queue drop", c)
	}
	if c := s.Unclaimed(); c.Dropped[ReasonLength] != 1 {
		t.Errorf("unclaimed %+v, want 1 length drop", c)
	}

	// A multicast instance hears only the group. (The join is marked done
	// because s has no socket.)
	s.joined = true
	ch6 := make(chan Received, 1)
	if err := s.Register(6, Instance{Version: 3, C: ch6}); err != nil {
		t.Fatal(err)
	}
	msg, err = Marshal(spAdvert(3, 6, spVIP), spAddrA, spAddrB, MarshalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.receive(msg, spAddrA, spAddrB, 255, now)
	if c := s.Counters(6); c.Dropped[ReasonDst] != 1 || len(ch6) != 0 {
		t.Errorf("counters %+v, want 1 destination drop", c)
	}
}
