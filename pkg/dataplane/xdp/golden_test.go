package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// XDP verdicts as the kernel numbers them.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var verdictName = map[uint32]string{0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}

// reals lists n reals from .11 on in reverse, so that IPVS's list order
// (each new real goes to the head) starts at .11, which rr picks first.
func reals(net byte, port uint16, n int) []dataplane.Real {
	var rs []dataplane.Real
	for i := n - 1; i >= 0; i-- {
		rs = append(rs, dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, net, byte(11 + i)}), Port: port, Weight: 1})
	}
	return rs
}

// goldenState has one TCP and one UDP service per forwarding mode, three
// reals each; NAT's reals sit behind b0, DR's and TUN's on f0's segment.
func goldenState() dataplane.State {
	return dataplane.State{Services: []dataplane.Service{
		{VIP: vipNAT, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT, Reals: reals(2, 8080, 3)},
		{VIP: vipNAT, Port: 53, Protocol: 17, Sched: "rr", Kind: dataplane.NAT, Reals: reals(2, 5353, 3)},
		{VIP: vipDR, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.DR, Reals: reals(1, 80, 3)},
		{VIP: vipDR, Port: 53, Protocol: 17, Sched: "rr", Kind: dataplane.DR, Reals: reals(1, 53, 3)},
		{VIP: vipTUN, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.TUN, Reals: reals(1, 80, 3)},
		{VIP: vipTUN, Port: 53, Protocol: 17, Sched: "rr", Kind: dataplane.TUN, Reals: reals(1, 53, 3)},
		{VIP: vipNAT, Port: 9, Protocol: 6, Sched: "rr", Kind: dataplane.NAT},
		// Every port, reals without one: persistent, and not (which IPVS
		// does not schedule).
		{VIP: vipAll, Port: 0, Protocol: 6, Sched: "rr", Kind: dataplane.NAT, Reals: reals(2, 0, 3),
			PersistTimeout: 300 * time.Second},
		{VIP: vipAll, Port: 0, Protocol: 17, Sched: "rr", Kind: dataplane.NAT, Reals: reals(2, 0, 3)},
	}}
}

var vipAll = netip.MustParseAddr("10.50.1.105")

var (
	r1NAT = netip.MustParseAddr("10.50.2.11")
	r1L2  = netip.MustParseAddr("10.50.1.11")
)

// fromClient is a packet from the client to dst:dport as it arrives on f0.
func fromClient(dst netip.Addr, dport uint16, proto layers.IPProtocol) pkt {
	return pkt{srcMAC: macClient, dstMAC: macF0, src: addrClient, dst: dst, sport: 40000, dport: dport,
		proto: proto, ttl: 64, id: 0x1234, df: true, syn: true, payload: []byte("hello, real server")}
}

func withPayload(p pkt, n int) pkt {
	p.payload = make([]byte, n)
	for i := range p.payload {
		p.payload[i] = byte(i)
	}
	return p
}

type golden struct {
	name    string
	before  [][]byte // packets run first (on f0), e.g. to open the flow a reply belongs to
	in      []byte
	ifindex func(*lab) int
	verdict uint32
	want    []byte // nil: the input, unchanged
}

func onF0(l *lab) int { return l.f0 }
func onB0(l *lab) int { return l.b0 }

func goldenCases(t *testing.T) []golden {
	tcpSyn := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	natFwd := tcpSyn
	natFwd.srcMAC, natFwd.dstMAC, natFwd.dst, natFwd.dport, natFwd.ttl = macB0, realMAC(r1NAT), r1NAT, 8080, 63

	reply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 8080, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, df: true, payload: []byte("hello, client")}
	replyOut := reply
	replyOut.srcMAC, replyOut.dstMAC, replyOut.src, replyOut.sport, replyOut.ttl = macF0, macClient, vipNAT, 80, 63

	udp := fromClient(vipNAT, 53, layers.IPProtocolUDP)
	udpFwd := udp
	udpFwd.srcMAC, udpFwd.dstMAC, udpFwd.dst, udpFwd.dport, udpFwd.ttl = macB0, realMAC(r1NAT), r1NAT, 5353, 63
	udpReply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 5353, dport: 40000,
		proto: layers.IPProtocolUDP, ttl: 64, payload: []byte("answer")}
	udpReplyOut := udpReply
	udpReplyOut.srcMAC, udpReplyOut.dstMAC, udpReplyOut.src, udpReplyOut.sport, udpReplyOut.ttl = macF0, macClient, vipNAT, 53, 63

	udpNoCsum := udp
	udpNoCsum.udpNoCsum = true
	udpNoCsumFwd := udpFwd
	udpNoCsumFwd.udpNoCsum = true

	// A client with no neighbour entry on the LB: the reply goes back to
	// the MAC its packets came from.
	stranger := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	stranger.src = netip.MustParseAddr("10.50.1.3")
	stranger.srcMAC = mustMAC("02:00:00:00:01:03")
	strangerReply := reply
	strangerReply.dst = stranger.src
	strangerReplyOut := replyOut
	strangerReplyOut.dst, strangerReplyOut.dstMAC = stranger.src, stranger.srcMAC

	withOpts := tcpSyn
	withOpts.opts = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	withOptsFwd := natFwd
	withOptsFwd.opts = withOpts.opts

	drTCP := fromClient(vipDR, 80, layers.IPProtocolTCP)
	drTCPOut := drTCP
	drTCPOut.srcMAC, drTCPOut.dstMAC = macF0, realMAC(r1L2)
	drUDP := fromClient(vipDR, 53, layers.IPProtocolUDP)
	drUDPOut := drUDP
	drUDPOut.srcMAC, drUDPOut.dstMAC = macF0, realMAC(r1L2)

	tunTCP := fromClient(vipTUN, 80, layers.IPProtocolTCP)
	tunTCP.tos = 0x10
	tunUDP := fromClient(vipTUN, 53, layers.IPProtocolUDP)
	tunUDP.df = false
	lbAddr := netip.MustParseAddr("10.50.1.1")
	tunOut := func(p pkt) []byte {
		return ether(t, macF0, realMAC(r1L2), ipip(t, lbAddr, r1L2, p, p.ipBytes(t)))
	}

	// 1480 bytes of IP fit a 1500-byte MTU with the tunnel header; one
	// more does not.
	fits := withPayload(fromClient(vipTUN, 80, layers.IPProtocolTCP), 1480-40)
	tooBig := withPayload(fromClient(vipTUN, 80, layers.IPProtocolTCP), 1481-40)
	tooBigNoDF := tooBig
	tooBigNoDF.df = false
	icmp := func() []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: vipTUN.AsSlice(), DstIP: addrClient.AsSlice()}
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1480},
			gopacket.Payload(tooBig.ipBytes(t)[:28]))
		if err != nil {
			t.Fatal(err)
		}
		return ether(t, macF0, macClient, buf.Bytes())
	}()

	notVIP := fromClient(netip.MustParseAddr("10.50.1.200"), 80, layers.IPProtocolTCP)
	otherPort := fromClient(vipNAT, 81, layers.IPProtocolTCP)
	frag := fromClient(vipNAT, 80, layers.IPProtocolUDP)
	frag.mf, frag.df = true, false
	laterFrag := frag
	laterFrag.mf, laterFrag.fragOff = false, 185
	icmpEcho := fromClient(vipNAT, 0, layers.IPProtocolICMPv4)
	noReals := fromClient(vipNAT, 9, layers.IPProtocolTCP)

	// A port-0 service: the port is kept, and one template per client
	// covers every port.
	all1 := fromClient(vipAll, 4444, layers.IPProtocolTCP)
	all1Fwd := all1
	all1Fwd.srcMAC, all1Fwd.dstMAC, all1Fwd.dst, all1Fwd.ttl = macB0, realMAC(r1NAT), r1NAT, 63
	all2 := fromClient(vipAll, 5555, layers.IPProtocolTCP)
	all2.sport = 40001
	all2Fwd := all2
	all2Fwd.srcMAC, all2Fwd.dstMAC, all2Fwd.dst, all2Fwd.ttl = macB0, realMAC(r1NAT), r1NAT, 63
	allReply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 4444, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, df: true, payload: []byte("hello, client")}
	allReplyOut := allReply
	allReplyOut.srcMAC, allReplyOut.dstMAC, allReplyOut.src, allReplyOut.ttl = macF0, macClient, vipAll, 63
	allUDP := fromClient(vipAll, 4444, layers.IPProtocolUDP)

	badCsum := tcpSyn.bytes(t)
	badCsum[14+10] ^= 0xff
	truncated := tcpSyn.bytes(t)[:14+20+10]
	// A consistent IP header whose datagram is too short for a TCP header.
	shortTCP := tcpSyn.bytes(t)[:14+20+10]
	shortTCP[14+2], shortTCP[14+3] = 0, 30
	fixIPCsum(shortTCP[14:34])
	badIHL := tcpSyn.bytes(t)
	badIHL[14] = 0x44
	arp := ether(t, macClient, mustMAC("ff:ff:ff:ff:ff:ff"), make([]byte, 28))
	arp[12], arp[13] = 0x08, 0x06
	runt := tcpSyn.bytes(t)[:14]

	return []golden{
		{name: "nat tcp to real", in: tcpSyn.bytes(t), ifindex: onF0, verdict: xdpRedirect, want: natFwd.bytes(t)},
		{name: "nat tcp reply to client", before: [][]byte{tcpSyn.bytes(t)}, in: reply.bytes(t), ifindex: onB0,
			verdict: xdpRedirect, want: replyOut.bytes(t)},
		{name: "nat udp to real", in: udp.bytes(t), ifindex: onF0, verdict: xdpRedirect, want: udpFwd.bytes(t)},
		{name: "nat udp reply", before: [][]byte{udp.bytes(t)}, in: udpReply.bytes(t), ifindex: onB0,
			verdict: xdpRedirect, want: udpReplyOut.bytes(t)},
		{name: "nat udp without checksum keeps none", in: udpNoCsum.bytes(t), ifindex: onF0, verdict: xdpRedirect,
			want: udpNoCsumFwd.bytes(t)},
		{name: "nat reply without neighbour uses learned mac", before: [][]byte{stranger.bytes(t)},
			in: strangerReply.bytes(t), ifindex: onB0, verdict: xdpRedirect, want: strangerReplyOut.bytes(t)},
		{name: "nat reply of unknown flow passes", in: reply.bytes(t), ifindex: onB0, verdict: xdpPass},
		{name: "nat with ip options", in: withOpts.bytes(t), ifindex: onF0, verdict: xdpRedirect, want: withOptsFwd.bytes(t)},
		{name: "dr tcp", in: drTCP.bytes(t), ifindex: onF0, verdict: xdpTX, want: drTCPOut.bytes(t)},
		{name: "dr udp", in: drUDP.bytes(t), ifindex: onF0, verdict: xdpTX, want: drUDPOut.bytes(t)},
		{name: "tun tcp", in: tunTCP.bytes(t), ifindex: onF0, verdict: xdpTX, want: tunOut(tunTCP)},
		{name: "tun udp", in: tunUDP.bytes(t), ifindex: onF0, verdict: xdpTX, want: tunOut(tunUDP)},
		{name: "tun largest that fits", in: fits.bytes(t), ifindex: onF0, verdict: xdpTX, want: tunOut(fits)},
		{name: "tun too big with df gets icmp", in: tooBig.bytes(t), ifindex: onF0, verdict: xdpTX, want: icmp},
		{name: "tun too big without df dropped", in: tooBigNoDF.bytes(t), ifindex: onF0, verdict: xdpDrop,
			want: tooBigNoDF.bytes(t)},
		{name: "not a vip", in: notVIP.bytes(t), ifindex: onF0, verdict: xdpPass},
		{name: "vip on another port", in: otherPort.bytes(t), ifindex: onF0, verdict: xdpPass},
		{name: "first fragment", in: frag.bytes(t), ifindex: onF0, verdict: xdpPass},
		// Held for the daemon, which sends it on if its first comes.
		{name: "later fragment", in: laterFrag.bytes(t), ifindex: onF0, verdict: xdpDrop},
		{name: "icmp to vip", in: icmpEcho.bytes(t), ifindex: onF0, verdict: xdpPass},
		{name: "service without reals", in: noReals.bytes(t), ifindex: onF0, verdict: xdpPass},
		{name: "port-0 service keeps the port", in: all1.bytes(t), ifindex: onF0, verdict: xdpRedirect,
			want: all1Fwd.bytes(t)},
		{name: "port-0 service: another port follows the client's template", before: [][]byte{all1.bytes(t)},
			in: all2.bytes(t), ifindex: onF0, verdict: xdpRedirect, want: all2Fwd.bytes(t)},
		{name: "port-0 service reply", before: [][]byte{all1.bytes(t)}, in: allReply.bytes(t), ifindex: onB0,
			verdict: xdpRedirect, want: allReplyOut.bytes(t)},
		{name: "port-0 service without persistence passes", in: allUDP.bytes(t), ifindex: onF0, verdict: xdpPass},
		{name: "bad ip checksum", in: badCsum, ifindex: onF0, verdict: xdpPass},
		{name: "truncated tcp header", in: truncated, ifindex: onF0, verdict: xdpPass},
		{name: "datagram shorter than tcp header", in: shortTCP, ifindex: onF0, verdict: xdpPass},
		{name: "ihl larger than datagram claims", in: badIHL, ifindex: onF0, verdict: xdpPass},
		{name: "arp", in: arp, ifindex: onF0, verdict: xdpPass},
		{name: "ethernet header only", in: runt, ifindex: onF0, verdict: xdpPass},
	}
}

func fixIPCsum(h []byte) {
	h[10], h[11] = 0, 0
	var s uint32
	for i := 0; i < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	c := ^uint16(s)
	h[10], h[11] = byte(c>>8), byte(c)
}

func TestGoldenPackets(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.apply(t, goldenState())
			for _, b := range tc.before {
				l.run(t, l.set.Program, b, l.f0)
			}
			verdict, out := l.run(t, l.set.Program, tc.in, tc.ifindex(l))
			checkOutput(t, verdict, out, tc.verdict, tc.want, tc.in)
		})
	}
}

// checkOutput compares a run's verdict and bytes with the expected ones
// (want nil: the input, unchanged).
func checkOutput(t *testing.T, verdict uint32, out []byte, wantVerdict uint32, want, in []byte) {
	t.Helper()
	if verdict != wantVerdict {
		t.Errorf("verdict %s, want %s", verdictName[verdict], verdictName[wantVerdict])
	}
	if want == nil {
		want = in
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output bytes (-want +got):\n%s\ngot decoded: %v", diff,
			gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default))
	}
}
