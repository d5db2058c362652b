package xdp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// The golden lab: a private namespace with a client-facing link (f0,
// 10.50.1.1/24) and a server-facing one (b0, 10.50.2.1/24), fixed MACs and
// permanent neighbours, so that bpf_fib_lookup answers the same every run.
var (
	macF0     = mustMAC("02:00:00:00:01:01")
	macClient = mustMAC("02:00:00:00:01:02")
	macB0     = mustMAC("02:00:00:00:02:01")

	addrClient = netip.MustParseAddr("10.50.1.2")
	vipNAT     = netip.MustParseAddr("10.50.1.100")
	vipDR      = netip.MustParseAddr("10.50.1.101")
	vipTUN     = netip.MustParseAddr("10.50.1.102")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// realMAC gives every real a MAC derived from its address: 02:00:00:00:NET:HOST.
func realMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{2, 0, 0, 0, b[2], b[3]}
}

type lab struct {
	// macs overrides realMAC for some addresses, as if the machine changed.
	macs   map[netip.Addr]net.HardwareAddr
	w      *testenv.Worker
	set    *maps.Set
	tables *Tables
	f0, b0 int
}

// fixedResolver answers from the lab's layout instead of the kernel, so DR
// and TUN output is known in advance.
type fixedResolver struct{ l *lab }

func (r fixedResolver) Resolve(_ context.Context, ip netip.Addr) (L2, error) {
	b := ip.As4()
	mac := realMAC(ip)
	if m, ok := r.l.macs[ip]; ok {
		mac = m
	}
	switch b[2] {
	case 1:
		return L2{Ifindex: r.l.f0, SrcMAC: macF0, DstMAC: mac, SrcIP: netip.MustParseAddr("10.50.1.1"), MTU: 1500}, nil
	case 2:
		return L2{Ifindex: r.l.b0, SrcMAC: macB0, DstMAC: mac, SrcIP: netip.MustParseAddr("10.50.2.1"), MTU: 1500}, nil
	}
	return L2{}, fmt.Errorf("no route to %s", ip)
}

func newLab(t testing.TB) *lab { return newLabSized(t, 4096) }

func newLabSized(t testing.TB, conns uint32) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	w, err := testenv.NewNetnsWorker()
	if err != nil {
		testenv.Skip(t, fmt.Sprintf("cannot create a network namespace: %v", err))
	}
	t.Cleanup(w.Close)
	l := &lab{w: w}
	var setupErr error
	w.Do(func() { setupErr = l.setup(conns) })
	if setupErr != nil {
		t.Fatalf("lab setup: %v", setupErr)
	}
	t.Cleanup(func() { l.set.Close() })
	return l
}

func (l *lab) setup(conns uint32) error {
	for _, p := range []struct {
		name, peer string
		mac        net.HardwareAddr
		addr       string
	}{
		{"f0", "f1", macF0, "10.50.1.1/24"},
		{"b0", "b1", macB0, "10.50.2.1/24"},
	} {
		la := netlink.NewLinkAttrs()
		la.Name = p.name
		la.HardwareAddr = p.mac
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: p.peer}); err != nil {
			return fmt.Errorf("add %s: %w", p.name, err)
		}
		lnk, err := netlink.LinkByName(p.name)
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr(p.addr)
		if err := netlink.AddrAdd(lnk, addr); err != nil {
			return err
		}
		peer, err := netlink.LinkByName(p.peer)
		if err != nil {
			return err
		}
		for _, x := range []netlink.Link{lnk, peer} {
			if err := netlink.LinkSetUp(x); err != nil {
				return err
			}
		}
		if p.name == "f0" {
			l.f0 = lnk.Attrs().Index
		} else {
			l.b0 = lnk.Attrs().Index
		}
	}
	neigh := func(ifindex int, ip netip.Addr, mac net.HardwareAddr) error {
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: ifindex, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac})
	}
	if err := neigh(l.f0, addrClient, macClient); err != nil {
		return err
	}
	for i := 11; i <= 14; i++ {
		ip := netip.AddrFrom4([4]byte{10, 50, 2, byte(i)})
		if err := neigh(l.b0, ip, realMAC(ip)); err != nil {
			return err
		}
	}
	for _, f := range []string{"/proc/sys/net/ipv4/conf/all/forwarding", "/proc/sys/net/ipv4/conf/f0/forwarding",
		"/proc/sys/net/ipv4/conf/b0/forwarding", "/proc/sys/net/ipv4/conf/lo/forwarding"} {
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			return err
		}
	}
	set, err := maps.Load("", maps.Options{ConnTableSize: conns})
	if err != nil {
		return err
	}
	l.set = set
	l.tables, err = NewTables(set, fixedResolver{l}, nil)
	return err
}

func (l *lab) apply(t testing.TB, st dataplane.State) {
	t.Helper()
	var err error
	l.w.Do(func() { err = l.tables.Apply(context.Background(), st) })
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// xdpMd is struct xdp_md, the context BPF_PROG_TEST_RUN takes.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// run passes one packet through the balancer as if it arrived on ifindex.
func (l *lab) run(t testing.TB, prog *ebpf.Program, in []byte, ifindex int) (uint32, []byte) {
	t.Helper()
	var ret uint32
	var out []byte
	var err error
	l.w.Do(func() {
		opts := ebpf.RunOptions{
			Data:    in,
			DataOut: make([]byte, len(in)+256),
			Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(ifindex)},
		}
		ret, err = prog.Run(&opts)
		out = opts.DataOut
	})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, out
}

// pkt describes an Ethernet/IPv4/TCP-or-UDP packet for building inputs
// and expected outputs with gopacket.
type pkt struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	sport, dport   uint16
	proto          layers.IPProtocol
	ttl            uint8
	tos            uint8
	id             uint16
	df             bool
	fragOff        uint16
	mf             bool
	opts           []layers.IPv4Option
	syn            bool
	payload        []byte
	udpNoCsum      bool
}

func (p pkt) ipLayer() *layers.IPv4 {
	ip := &layers.IPv4{
		Version: 4, TOS: p.tos, Id: p.id, TTL: p.ttl, Protocol: p.proto,
		SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Options: p.opts,
		FragOffset: p.fragOff,
	}
	if p.df {
		ip.Flags |= layers.IPv4DontFragment
	}
	if p.mf {
		ip.Flags |= layers.IPv4MoreFragments
	}
	return ip
}

// ipBytes serializes from the IP header on.
func (p pkt) ipBytes(t testing.TB) []byte {
	t.Helper()
	ip := p.ipLayer()
	var l4 gopacket.SerializableLayer
	switch p.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport),
			Seq: 1000, Window: 64240, SYN: p.syn, ACK: !p.syn, Ack: 1}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = tcp
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = udp
	case layers.IPProtocolICMPv4:
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, l4, gopacket.Payload(p.payload))
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if p.udpNoCsum && p.proto == layers.IPProtocolUDP {
		off := int(b[0]&0xf) * 4
		b[off+6], b[off+7] = 0, 0
	}
	return b
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	return ether(t, p.srcMAC, p.dstMAC, p.ipBytes(t))
}

func ether(t testing.TB, src, dst net.HardwareAddr, payload []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{},
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, gopacket.Payload(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ipip builds what the balancer sends in TUN mode: inner packet in an
// outer header with TOS, TTL and DF of the inner one.
func ipip(t testing.TB, src, dst netip.Addr, inner pkt, innerBytes []byte) []byte {
	t.Helper()
	outer := &layers.IPv4{Version: 4, TOS: inner.tos, TTL: inner.ttl, Protocol: layers.IPProtocolIPv4,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if inner.df {
		outer.Flags = layers.IPv4DontFragment
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		outer, gopacket.Payload(innerBytes))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
