package xdp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/sched"
)

// Helpers of the differential test (diff_test.go): the lab's extra
// neighbours and routes, frames with any TCP flags, and reading what the
// program did.

// Client addresses of the differential test live in 10.60.0.0/16 and are
// routed through the lab's client (10.50.1.2), so that NAT replies to them
// resolve; NAT reals are 10.50.2.11.. (behind b0), DR and TUN reals
// 10.50.1.11.. (on f0's segment).
var diffClientNet = netip.MustParsePrefix("10.60.0.0/16")

const (
	diffFirstReal = 11
	diffLastReal  = 60
)

// diffPrepare gives every NAT real the test may use a permanent neighbour
// (otherwise the program hands the first packets to the kernel to resolve
// it, and the chosen real is not visible) and routes the client network.
func (l *lab) diffPrepare(t testing.TB) {
	t.Helper()
	var err error
	l.w.Do(func() {
		for i := diffFirstReal; i <= diffLastReal && err == nil; i++ {
			ip := netip.AddrFrom4([4]byte{10, 50, 2, byte(i)})
			err = netlink.NeighSet(&netlink.Neigh{LinkIndex: l.b0, Family: netlink.FAMILY_V4,
				State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: realMAC(ip)})
		}
		if err != nil {
			return
		}
		dst := &net.IPNet{IP: diffClientNet.Addr().AsSlice(), Mask: net.CIDRMask(diffClientNet.Bits(), 32)}
		err = netlink.RouteAdd(&netlink.Route{LinkIndex: l.f0, Dst: dst, Gw: addrClient.AsSlice()})
	})
	if err != nil {
		t.Fatalf("differential lab: %v", err)
	}
}

// diffFrame is an Ethernet/IPv4/TCP-or-UDP frame from src to dst with the
// given TCP flags (ignored for UDP).
func diffFrame(t testing.TB, srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, proto uint8,
	flags sched.TCPFlags) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 1, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocol(proto), SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	var l4 gopacket.SerializableLayer
	switch proto {
	case 6:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
			Seq: 1000, Ack: 1, Window: 64240,
			FIN: flags&sched.FIN != 0, SYN: flags&sched.SYN != 0, RST: flags&sched.RST != 0, ACK: flags&sched.ACK != 0}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = tcp
	case 17:
		udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = udp
	default:
		t.Fatalf("protocol %d", proto)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		ip, l4, gopacket.Payload("xlbd"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// diffObserved is what the program did with a client packet: whether it
// forwarded it and to which real (by address).
type diffObserved struct {
	verdict uint32
	fwd     bool
	real    netip.Addr
}

// diffClientPacket runs a client-to-VIP packet through the program and
// reads the real it went to from the output: the (outer) destination
// address for NAT and TUN, the destination MAC for DR.
func (l *lab) diffClientPacket(t testing.TB, kind dataplane.Kind, client, vip netip.AddrPort, proto uint8,
	flags sched.TCPFlags) diffObserved {
	t.Helper()
	in := diffFrame(t, macClient, macF0, client, vip, proto, flags)
	verdict, out := l.run(t, l.set.Program, in, l.f0)
	o := diffObserved{verdict: verdict}
	if verdict != xdpTX && verdict != xdpRedirect {
		return o
	}
	o.fwd = true
	switch kind {
	case dataplane.NAT, dataplane.TUN:
		o.real = netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
	case dataplane.DR:
		// realMAC: 02:00:00:00:NET:HOST of 10.50.NET.HOST.
		o.real = netip.AddrFrom4([4]byte{10, 50, out[4], out[5]})
	}
	return o
}

// diffReplyPacket runs a NAT reply from real to client through the
// program, as it arrives on b0; it reports whether it was forwarded.
func (l *lab) diffReplyPacket(t testing.TB, real, client netip.AddrPort, proto uint8, flags sched.TCPFlags) diffObserved {
	t.Helper()
	in := diffFrame(t, realMAC(real.Addr()), macB0, real, client, proto, flags)
	verdict, _ := l.run(t, l.set.Program, in, l.b0)
	return diffObserved{verdict: verdict, fwd: verdict == xdpTX || verdict == xdpRedirect}
}

// diffSetClock sets the program's clock and runs gc at that instant, as
// the daemon's timer would have by then.
func (l *lab) diffSetClock(t testing.TB, now time.Duration) {
	t.Helper()
	if now <= 0 {
		t.Fatalf("clock %v: 0 would select the real clock", now)
	}
	if err := l.set.Clock.Set(uint64(now)); err != nil {
		t.Fatalf("set clock: %v", err)
	}
	if _, err := l.set.GC.Run(); err != nil {
		t.Fatalf("gc: %v", err)
	}
}

// diffConn reads the program's connection entry of client -> vip.
func (l *lab) diffConn(client, vip netip.AddrPort, proto uint8) (maps.ConnVal, bool) {
	k := maps.ConnKey{Src: maps.Be32(client.Addr()), Dst: maps.Be32(vip.Addr()),
		Sport: maps.Be16(client.Port()), Dport: maps.Be16(vip.Port()), Proto: proto}
	v, err := l.set.Conns.Lookup(k)
	return v, err == nil
}

func tcpFlagsString(f sched.TCPFlags) string {
	if f == 0 {
		return "none"
	}
	s := ""
	for _, x := range []struct {
		f sched.TCPFlags
		n string
	}{{sched.SYN, "SYN"}, {sched.FIN, "FIN"}, {sched.RST, "RST"}, {sched.ACK, "ACK"}} {
		if f&x.f != 0 {
			if s != "" {
				s += "|"
			}
			s += x.n
		}
	}
	return s
}
