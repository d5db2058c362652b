package xdp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/pkg/maps"
)

// What real traffic brings that small requests do not: aggregates (GRO/GSO,
// which generic XDP sees whole), datagrams too big for the next link,
// fragments, and corrupt L4 checksums. Each case also checks which verdict
// counter the packet moved.
type trafficCase struct {
	name    string
	mtu     map[string]int // link name -> MTU for this case (f0 and b0 are 1500 otherwise)
	before  [][]byte       // run on f0 first
	beforeB [][]byte       // then on b0
	in      []byte
	ifindex func(*lab) int
	verdict uint32
	want    []byte // nil: the input, unchanged
	counted string // the verdict counter the input must move, by one
	held    bool   // the input must be in the held ring, as it came in
}

// seqPayload is n bytes of a counting pattern.
func seqPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// ones adds in one's complement, as Internet checksums do.
func ones(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s&0xffff + s>>16)
}

// l4CheckOff is the offset of the TCP or UDP checksum in an Ethernet frame
// with a 20-byte IP header.
func l4CheckOff(frame []byte) int {
	if frame[14+9] == 6 {
		return 14 + 20 + 16
	}
	return 14 + 20 + 6
}

// skewL4 adds d to a frame's L4 checksum: the datagram is now corrupt by
// exactly d.
func skewL4(frame []byte, d uint16) []byte {
	out := append([]byte(nil), frame...)
	o := l4CheckOff(out)
	binary.BigEndian.PutUint16(out[o:], ones(binary.BigEndian.Uint16(out[o:]), d))
	return out
}

// fragments cuts the IP datagram of p into a first fragment carrying
// firstLen bytes of L4 data and a later one with the rest, both in frames
// from p's MACs.
func fragments(t *testing.T, p pkt, firstLen int) (first, later []byte) {
	t.Helper()
	whole := p.ipBytes(t)
	data := whole[20:]
	mk := func(off int, chunk []byte, mf bool) []byte {
		ip := p.ipLayer()
		ip.Flags &^= layers.IPv4DontFragment
		if mf {
			ip.Flags |= layers.IPv4MoreFragments
		}
		ip.FragOffset = uint16(off / 8)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, gopacket.Payload(chunk)); err != nil {
			t.Fatal(err)
		}
		return ether(t, p.srcMAC, p.dstMAC, buf.Bytes())
	}
	return mk(0, data[:firstLen], true), mk(firstLen, data[firstLen:], false)
}

func trafficCases(t *testing.T) []trafficCase {
	lbF0 := netip.MustParseAddr("10.50.1.1")
	lbB0 := netip.MustParseAddr("10.50.2.1")
	toReal := func(p pkt, real netip.Addr, port uint16, ttl uint8) pkt {
		p.srcMAC, p.dstMAC, p.dst, p.dport, p.ttl = macB0, realMAC(real), real, port, ttl
		return p
	}

	// An aggregate: 3000 bytes arriving on a 1500-byte link can only be
	// GRO or GSO output, whose segments fit.
	agg := withPayload(fromClient(vipNAT, 80, layers.IPProtocolTCP), 3000-40)
	agg.syn = false
	syn := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	aggRewritten := toReal(agg, r1NAT, 8080, 64) // the kernel decrements the TTL
	aggRewritten.srcMAC, aggRewritten.dstMAC = agg.srcMAC, agg.dstMAC

	// Not an aggregate (f0 is raised to 3000) but too big for b0.
	big := withPayload(fromClient(vipNAT, 80, layers.IPProtocolTCP), 2000-40)
	bigNoDF := big
	bigNoDF.df = false
	bigNoDFRewritten := toReal(bigNoDF, r1NAT, 8080, 64)
	bigNoDFRewritten.srcMAC, bigNoDFRewritten.dstMAC = big.srcMAC, big.dstMAC
	icmpTooBig := func(from, to netip.Addr, srcMAC, dstMAC []byte, quoted []byte, mtu uint16) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: from.AsSlice(), DstIP: to.AsSlice()}
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: mtu}, gopacket.Payload(quoted[:28]))
		if err != nil {
			t.Fatal(err)
		}
		return ether(t, srcMAC, dstMAC, buf.Bytes())
	}

	// DR: an aggregate leaves by the link it came in by, as it is.
	drAgg := withPayload(fromClient(vipDR, 80, layers.IPProtocolTCP), 3000-40)
	drAggOut := drAgg
	drAggOut.srcMAC, drAggOut.dstMAC = macF0, realMAC(r1L2)
	drBig := withPayload(fromClient(vipDR, 80, layers.IPProtocolTCP), 2000-40)
	drBigNoDF := drBig
	drBigNoDF.df = false

	// TUN: an aggregate's 1500-byte segments do not fit 1500 with the outer
	// header; with a 1480-byte ingress link they do.
	tunAgg := withPayload(fromClient(vipTUN, 80, layers.IPProtocolTCP), 3000-40)
	tunOut := func(p pkt) []byte {
		return ether(t, macF0, realMAC(r1L2), ipip(t, lbF0, r1L2, p, p.ipBytes(t)))
	}

	// NAT replies.
	reply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 8080, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, df: true}
	replyAgg := withPayload(reply, 3000-40)
	replyAggOut := replyAgg
	replyAggOut.src, replyAggOut.sport = vipNAT, 80
	replyBig := withPayload(reply, 2000-40)

	// Fragments of a 2000-byte UDP datagram.
	dgram := withPayload(fromClient(vipNAT, 53, layers.IPProtocolUDP), 2000-28)
	dgram.df = false
	dgram.id = 0x4242
	first, later := fragments(t, dgram, 1480)
	firstOut := toReal(dgram, r1NAT, 5353, 63)
	firstOutB, laterOutB := fragments(t, firstOut, 1480)
	other := fromClient(vipNAT, 53, layers.IPProtocolUDP)
	other.sport = 40001

	drDgram := withPayload(fromClient(vipDR, 53, layers.IPProtocolUDP), 2000-28)
	drDgram.df, drDgram.id = false, 0x4343
	drFirst, drLater := fragments(t, drDgram, 1472)
	drDgramOut := drDgram
	drDgramOut.srcMAC, drDgramOut.dstMAC = macF0, realMAC(r1L2)
	_, drLaterOut := fragments(t, drDgramOut, 1472)

	tunDgram := withPayload(fromClient(vipTUN, 53, layers.IPProtocolUDP), 2000-28)
	tunDgram.df, tunDgram.id = false, 0x4444
	tunFirst, tunLater := fragments(t, tunDgram, 1456)
	tunLaterOut := ether(t, macF0, realMAC(r1L2), ipip(t, lbF0, r1L2, pkt{ttl: 64}, tunLater[14:]))

	rdgram := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 5353, dport: 40000,
		proto: layers.IPProtocolUDP, ttl: 64, id: 0x4545, payload: seqPayload(2000 - 28)}
	rFirst, rLater := fragments(t, rdgram, 1480)
	rdgramOut := rdgram
	rdgramOut.srcMAC, rdgramOut.dstMAC, rdgramOut.src, rdgramOut.sport, rdgramOut.ttl = macF0, macClient, vipNAT, 53, 63
	rFirstOut, rLaterOut := fragments(t, rdgramOut, 1480)

	// Corrupt L4 checksums stay exactly as corrupt.
	synFwd := toReal(syn, r1NAT, 8080, 63)
	udp := fromClient(vipNAT, 53, layers.IPProtocolUDP)
	udpFwd := toReal(udp, r1NAT, 5353, 63)
	drSyn := fromClient(vipDR, 80, layers.IPProtocolTCP)
	drSynOut := drSyn
	drSynOut.srcMAC, drSynOut.dstMAC = macF0, realMAC(r1L2)

	return []trafficCase{
		{name: "nat aggregate for another link is rewritten and left to the kernel", before: [][]byte{syn.bytes(t)},
			in: agg.bytes(t), ifindex: onF0, verdict: xdpPass, want: aggRewritten.bytes(t), counted: "pass_gso"},
		{name: "nat too big with df gets icmp from the vip", mtu: map[string]int{"f0": 3000},
			in: big.bytes(t), ifindex: onF0, verdict: xdpTX,
			want: icmpTooBig(vipNAT, addrClient, macF0, macClient, big.ipBytes(t), 1500), counted: "tx_icmp_too_big"},
		{name: "nat too big without df is rewritten for the kernel to fragment", mtu: map[string]int{"f0": 3000},
			in: bigNoDF.bytes(t), ifindex: onF0, verdict: xdpPass, want: bigNoDFRewritten.bytes(t), counted: "pass_too_big"},
		{name: "dr aggregate leaves by its own link as it is", in: drAgg.bytes(t), ifindex: onF0, verdict: xdpTX,
			want: drAggOut.bytes(t), counted: "fwd_dr"},
		{name: "dr too big with df gets icmp from the vip", mtu: map[string]int{"f0": 3000}, in: drBig.bytes(t),
			ifindex: onF0, verdict: xdpTX,
			want: icmpTooBig(vipDR, addrClient, macF0, macClient, drBig.ipBytes(t), 1500), counted: "tx_icmp_too_big"},
		{name: "dr too big without df is dropped: the balancer cannot fragment", mtu: map[string]int{"f0": 3000},
			in: drBigNoDF.bytes(t), ifindex: onF0, verdict: xdpDrop, counted: "drop_too_big"},
		{name: "tun aggregate whose segments fit is encapsulated", mtu: map[string]int{"f0": 1480}, in: tunAgg.bytes(t),
			ifindex: onF0, verdict: xdpTX, want: tunOut(tunAgg), counted: "fwd_tun"},
		{name: "tun aggregate whose segments do not fit gets icmp", in: tunAgg.bytes(t), ifindex: onF0, verdict: xdpTX,
			want: icmpTooBig(vipTUN, addrClient, macF0, macClient, tunAgg.ipBytes(t), 1480), counted: "tx_icmp_too_big"},
		{name: "tun aggregate from a client told 1480 is cut to fit and encapsulated", before: [][]byte{tunAgg.bytes(t)},
			in: tunAgg.bytes(t), ifindex: onF0, verdict: xdpTX, want: tunOut(tunAgg), counted: "fwd_tun"},
		{name: "nat reply aggregate is rewritten and left to the kernel", before: [][]byte{syn.bytes(t)},
			in: replyAgg.bytes(t), ifindex: onB0, verdict: xdpPass, want: replyAggOut.bytes(t), counted: "pass_gso"},
		{name: "nat reply too big with df gets icmp from the lb's address", mtu: map[string]int{"b0": 3000},
			before: [][]byte{syn.bytes(t)}, in: replyBig.bytes(t), ifindex: onB0, verdict: xdpTX,
			want:    icmpTooBig(lbB0, r1NAT, macB0, realMAC(r1NAT), replyBig.ipBytes(t), 1500),
			counted: "tx_icmp_too_big"},

		{name: "nat first fragment is scheduled", in: first, ifindex: onF0, verdict: xdpRedirect, want: firstOutB,
			counted: "fwd_nat"},
		{name: "nat later fragment follows its first, not the scheduler", before: [][]byte{first, other.bytes(t)},
			in: later, ifindex: onF0, verdict: xdpRedirect, want: laterOutB, counted: "fwd_fragment"},
		{name: "later fragment without its first is held for the daemon", in: later, ifindex: onF0, verdict: xdpDrop,
			counted: "hold_fragment", held: true},
		{name: "nat reply later fragment without its first is left to the kernel", in: rLater, ifindex: onB0,
			verdict: xdpPass, counted: "pass_fragment"},
		{name: "out of order: the first after a later one is still scheduled", before: [][]byte{later}, in: first,
			ifindex: onF0, verdict: xdpRedirect, want: firstOutB, counted: "fwd_nat"},
		{name: "dr later fragment follows its first", before: [][]byte{drFirst}, in: drLater, ifindex: onF0,
			verdict: xdpTX, want: drLaterOut, counted: "fwd_fragment"},
		{name: "tun later fragment follows its first", before: [][]byte{tunFirst}, in: tunLater, ifindex: onF0,
			verdict: xdpTX, want: tunLaterOut, counted: "fwd_fragment"},
		{name: "nat reply first fragment", before: [][]byte{udp.bytes(t)}, in: rFirst, ifindex: onB0,
			verdict: xdpRedirect, want: rFirstOut, counted: "fwd_nat_reply"},
		{name: "nat reply later fragment follows its first", before: [][]byte{udp.bytes(t)}, beforeB: [][]byte{rFirst},
			in: rLater, ifindex: onB0, verdict: xdpRedirect, want: rLaterOut, counted: "fwd_fragment"},
		{name: "fragment of another datagram is not taken for it", before: [][]byte{first},
			in:      func() []byte { d := dgram; d.id = 0x4243; _, l := fragments(t, d, 1480); return l }(),
			ifindex: onF0, verdict: xdpDrop, counted: "hold_fragment", held: true},

		{name: "nat tcp with a bad checksum stays exactly as bad", in: skewL4(syn.bytes(t), 1), ifindex: onF0,
			verdict: xdpRedirect, want: skewL4(synFwd.bytes(t), 1), counted: "fwd_nat"},
		{name: "nat udp with a bad checksum stays exactly as bad", in: skewL4(udp.bytes(t), 0x100), ifindex: onF0,
			verdict: xdpRedirect, want: skewL4(udpFwd.bytes(t), 0x100), counted: "fwd_nat"},
		{name: "dr passes a bad checksum on untouched", in: skewL4(drSyn.bytes(t), 1), ifindex: onF0,
			verdict: xdpTX, want: skewL4(drSynOut.bytes(t), 1), counted: "fwd_dr"},
	}
}

func verdictCounts(t *testing.T, l *lab) map[string]uint64 {
	t.Helper()
	v, err := l.set.Verdicts.All()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for i, n := range v {
		if i < len(maps.VerdictNames) {
			m[maps.VerdictNames[i]] = n
		}
	}
	return m
}

func TestTrafficGolden(t *testing.T) {
	for _, tc := range trafficCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.apply(t, goldenState())
			for name, mtu := range tc.mtu {
				var err error
				l.w.Do(func() {
					var lnk netlink.Link
					if lnk, err = netlink.LinkByName(name); err == nil {
						err = netlink.LinkSetMTU(lnk, mtu)
					}
				})
				if err != nil {
					t.Fatalf("mtu %s %d: %v", name, mtu, err)
				}
			}
			for _, b := range tc.before {
				l.run(t, l.set.Program, b, l.f0)
			}
			for _, b := range tc.beforeB {
				l.run(t, l.set.Program, b, l.b0)
			}
			readHeld(t, l) // what the packets before held is not the input's
			was := verdictCounts(t, l)
			verdict, out := l.run(t, l.set.Program, tc.in, tc.ifindex(l))
			checkOutput(t, verdict, out, tc.verdict, tc.want, tc.in)
			moved := map[string]uint64{}
			for k, n := range verdictCounts(t, l) {
				if d := n - was[k]; d != 0 {
					moved[k] = d
				}
			}
			if diff := cmp.Diff(map[string]uint64{tc.counted: 1}, moved); diff != "" {
				t.Errorf("verdict counters moved (-want +got):\n%s", diff)
			}
			var held [][]byte
			for _, h := range readHeld(t, l) {
				held = append(held, h.frame)
			}
			var wantHeld [][]byte
			if tc.held {
				wantHeld = [][]byte{tc.in}
			}
			if diff := cmp.Diff(wantHeld, held); diff != "" {
				t.Errorf("held ring (-want +got):\n%s", diff)
			}
		})
	}
}

// The corrupt checksum cases above would pass for a program that fixes
// checksums if the expected bytes were wrong too: check the expectation
// itself is corrupt, and the clean one is not.
func TestSkewedChecksumIsInvalid(t *testing.T) {
	syn := fromClient(vipNAT, 80, layers.IPProtocolTCP).bytes(t)
	valid := func(frame []byte) bool {
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		// Summed with its checksum field, a valid segment gives zero.
		c, err := tcp.ComputeChecksum()
		if err != nil {
			t.Fatal(err)
		}
		return c == 0
	}
	if !valid(syn) {
		t.Fatal("clean SYN has a bad checksum")
	}
	if valid(skewL4(syn, 1)) {
		t.Fatal("skewed SYN has a good checksum")
	}
}

// A table full of half-open entries refuses new flows and evicts nothing:
// the established connection and the answered UDP flow keep their real
// through the flood, gc sheds the half-open entries once they have been
// silent a second, their counts given back, and new flows get in again.
func TestConnTableFullEvictsNothing(t *testing.T) {
	const size = 64
	l := newLabSized(t, size)
	l.apply(t, goldenState())
	base := uint64(1000 * time.Second)
	setClock := func(d time.Duration) {
		t.Helper()
		if err := l.set.Clock.Set(base + uint64(d)); err != nil {
			t.Fatal(err)
		}
	}
	setClock(0)
	send := func(b []byte, ifindex int) (uint32, []byte) { return l.run(t, l.set.Program, b, ifindex) }

	// One established TCP connection (SYN, SYN-ACK, ACK) and one UDP flow
	// with a reply, both to r1.
	syn := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	ack := syn
	ack.syn = false
	synAck := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 8080, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, df: true, syn: true}
	udp := fromClient(vipNAT, 53, layers.IPProtocolUDP)
	udpReply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 5353, dport: 40000,
		proto: layers.IPProtocolUDP, ttl: 64}
	for _, s := range []struct {
		b       []byte
		ifindex int
	}{{syn.bytes(t), l.f0}, {synAck.bytes(t), l.b0}, {ack.bytes(t), l.f0}, {udp.bytes(t), l.f0}, {udpReply.bytes(t), l.b0}} {
		if v, _ := send(s.b, s.ifindex); v != xdpRedirect {
			t.Fatalf("setting up the flows: verdict %s", verdictName[v])
		}
	}

	// A flood of SYNs from spoofed sources, more than the table holds.
	was := verdictCounts(t, l)
	for i := range 2 * size {
		f := fromClient(vipNAT, 80, layers.IPProtocolTCP)
		f.src = netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
		send(f.bytes(t), l.f0)
	}
	now := verdictCounts(t, l)
	refused := now["drop_conn_full"] - was["drop_conn_full"]
	if refused != size+2 {
		t.Errorf("%d SYNs refused, want %d (the table holds %d, two of them live flows)", refused, size+2, size)
	}
	n, err := l.set.Conns.Count()
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Errorf("%d entries in a full table of %d", n, size)
	}

	// The established flows still forward to r1, full table or not.
	check := func(when string) {
		t.Helper()
		for _, p := range []pkt{ack, udp} {
			v, out := send(p.bytes(t), l.f0)
			if v != xdpRedirect || !cmp.Equal(out[14+16:14+20], r1NAT.AsSlice()) {
				t.Errorf("%s: %v flow: verdict %s, to %v", when, p.proto, verdictName[v], out[14+16:14+20])
			}
		}
	}
	check("table full")

	// A second later nothing has changed; two seconds later the half-open
	// entries have been silent long enough to be shed.
	setClock(time.Second / 2)
	res, err := l.set.GC.Run()
	if err != nil {
		t.Fatal(err)
	}
	if res.Shed != 0 {
		t.Errorf("gc shed %d entries of half a second", res.Shed)
	}
	setClock(2 * time.Second)
	if res, err = l.set.GC.Run(); err != nil {
		t.Fatal(err)
	}
	if res.Shed != size-2 || res.Live != 2 {
		t.Errorf("gc shed %d and left %d, want %d and 2", res.Shed, res.Live, size-2)
	}
	check("after gc")

	// What the shed entries held is given back: r1 (id of the TCP
	// service's first real) holds one active connection, and nothing
	// inactive is left anywhere.
	var active, inactive uint32
	for id := range uint32(16) {
		rl, err := l.set.RealLoad.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		active += rl.Active
		inactive += rl.Inactive
	}
	if active != 1 || inactive != 1 {
		t.Errorf("reals hold %d active and %d inactive connections, want 1 (TCP) and 1 (UDP)", active, inactive)
	}

	// And new flows get in again.
	f := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	f.src = netip.MustParseAddr("10.50.1.3")
	if v, _ := send(f.bytes(t), l.f0); v != xdpRedirect && v != xdpPass {
		t.Errorf("a new flow after gc: verdict %s", verdictName[v])
	}
	if d := verdictCounts(t, l)["drop_conn_full"] - now["drop_conn_full"]; d != 0 {
		t.Errorf("%d more flows refused after gc", d)
	}
}
