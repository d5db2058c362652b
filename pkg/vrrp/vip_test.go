package vrrp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/pkg/config"
)

var vipTestMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}

// The frame keepalived 2.2.7 builds in send_gratuitous_arp_immediate, byte
// for byte (the ethernet package pads it to the 60-byte minimum).
func TestGARPFrameIsKeepalivedsRequest(t *testing.T) {
	f, err := garpFrame(vipTestMAC, netip.MustParseAddr("10.50.1.200"))
	if err != nil {
		t.Fatal(err)
	}
	want := "ffffffffffff" + "02005e102030" + "0806" + // broadcast, from our MAC, ARP
		"0001" + "0800" + "06" + "04" + "0001" + // ethernet, IPv4, request
		"02005e102030" + "0a3201c8" + // sender: our MAC, the VIP
		"ffffffffffff" + "0a3201c8" // target: broadcast MAC, the VIP
	if len(f) < 42 {
		t.Fatalf("frame is %d bytes", len(f))
	}
	if got := hex.EncodeToString(f[:42]); got != want {
		t.Errorf("frame\n got %s\nwant %s", got, want)
	}
	if pad := f[42:]; len(f) != 60 || !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Errorf("padding %x, frame %d bytes", pad, len(f))
	}
}

// keepalived's unsolicited NA (ndisc_send_unsolicited_na_immediate): type
// 136, override set, solicited clear, router only when forwarding, and our
// MAC in a target link-layer option. The checksum is the kernel's.
func TestUnsolicitedNAIsKeepaliveds(t *testing.T) {
	vip := netip.MustParseAddr("fd00:50:1::200")
	for _, router := range []bool{false, true} {
		b, err := ndp.MarshalMessage(unsolicitedNA(vipTestMAC, vip, router))
		if err != nil {
			t.Fatal(err)
		}
		flags := "20"
		if router {
			flags = "a0"
		}
		want := "88" + "00" + "0000" + flags + "000000" +
			"fd000050000100000000000000000200" +
			"02" + "01" + "02005e102030"
		if got := hex.EncodeToString(b); got != want {
			t.Errorf("router %v:\n got %s\nwant %s", router, got, want)
		}
	}
}

func TestNetlinkAddr(t *testing.T) {
	for _, tc := range []struct {
		vip   config.VIP
		scope netlink.Scope
		flags int
		err   bool
	}{
		{vip: config.VIP{Prefix: netip.MustParsePrefix("10.0.0.1/32")}, scope: netlink.SCOPE_UNIVERSE},
		{vip: config.VIP{Prefix: netip.MustParsePrefix("10.0.0.1/24"), Label: "eth0:1", Scope: "link"}, scope: netlink.SCOPE_LINK},
		{vip: config.VIP{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Scope: "host"}, scope: netlink.SCOPE_HOST},
		{vip: config.VIP{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Scope: "galaxy"}, err: true},
		// keepalived ignores scope on IPv6 and always asks for nodad.
		{vip: config.VIP{Prefix: netip.MustParsePrefix("fd00::1/64"), Scope: "site"}, scope: netlink.SCOPE_UNIVERSE, flags: unix.IFA_F_NODAD},
		{vip: config.VIP{}, err: true},
	} {
		a, err := nlAddr(tc.vip)
		if tc.err {
			if err == nil {
				t.Errorf("%+v: no error", tc.vip)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.vip, err)
			continue
		}
		ones, _ := a.Mask.Size()
		if a.IP.String() != tc.vip.Prefix.Addr().String() || ones != tc.vip.Prefix.Bits() ||
			netlink.Scope(a.Scope) != tc.scope || a.Flags != tc.flags || a.Label != tc.vip.Label {
			t.Errorf("%+v: got %+v", tc.vip, a)
		}
		if tc.vip.Prefix.Addr().Is4() && !a.Broadcast.Equal(net.IPv4zero) {
			t.Errorf("%+v: broadcast %v, want none", tc.vip, a.Broadcast)
		}
	}
}

func vipRequireNetns(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if err := testbed.Available(); err != nil {
		testenv.Skip(t, fmt.Sprintf("network namespaces unavailable: %v", err))
	}
}

// vipTestbed builds the testbed's NAT topology and uses only its first veth:
// LB eth0 10.50.1.1/24 -- client eth0 10.50.1.2/24. IPv6, which the testbed
// turns off, is turned back on for that veth alone, without DAD so that the
// test need not wait for it.
func vipTestbed(t *testing.T) *testbed.Topology {
	t.Helper()
	top, err := testbed.NewNAT(t, testbed.Options{Reals: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*testbed.Netns{top.LB, top.Client} {
		err := ns.Do(func() error {
			for _, kv := range [][2]string{
				{"net/ipv6/conf/eth0/accept_dad", "0"},
				{"net/ipv6/conf/eth0/disable_ipv6", "0"},
			} {
				if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return top
}

type vipListed struct {
	prefix netip.Prefix
	label  string
	scope  netlink.Scope
	flags  int
	brd    bool
}

func vipListAddrs(dev string) (map[netip.Addr]vipListed, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, err
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr]vipListed{}
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		ones, _ := a.Mask.Size()
		m[ip] = vipListed{netip.PrefixFrom(ip, ones), a.Label, netlink.Scope(a.Scope), a.Flags, a.Broadcast != nil}
	}
	return m, nil
}

func vipOps(cs []VIPChange) []VIPOp {
	var o []VIPOp
	for _, c := range cs {
		o = append(o, c.Op)
	}
	return o
}

func TestVIPsAddedAndRemovedInNamespace(t *testing.T) {
	vipRequireNetns(t)
	top := vipTestbed(t)
	vi := config.VRRPInstance{
		Interface: "eth0",
		VirtualIPAddresses: []config.VIP{
			{Prefix: netip.MustParsePrefix("10.50.1.200/32"), Label: "eth0:vip", Scope: "global"},
			// A secondary in the interface's own /24: the kernel wants
			// the primary's scope there (EINVAL otherwise).
			{Prefix: netip.MustParsePrefix("10.50.1.201/24"), Dev: "eth0", Label: "eth0:2"},
			{Prefix: netip.MustParsePrefix("169.254.50.1/16"), Label: "eth0:ll", Scope: "link"},
		},
		VirtualIPAddressesExcluded: []config.VIP{
			{Prefix: netip.MustParsePrefix("10.99.0.1/32"), Dev: "lo", Scope: "host"},
			{Prefix: netip.MustParsePrefix("fd00:50:1::200/64")},
		},
	}
	m := NewVIPManager(vi)
	err := top.LB.Do(func() error {
		changes, err := m.Add()
		if err != nil {
			return fmt.Errorf("add: %w", err)
		}
		for _, c := range changes {
			t.Logf("add: %v", c)
			if c.Op != VIPAdded {
				t.Errorf("add: %v", c)
			}
		}
		eth0, err := vipListAddrs("eth0")
		if err != nil {
			return err
		}
		lo, err := vipListAddrs("lo")
		if err != nil {
			return err
		}
		check := func(got map[netip.Addr]vipListed, want vipListed) {
			t.Helper()
			g, ok := got[want.prefix.Addr()]
			if !ok {
				t.Errorf("%v not on the interface", want.prefix)
				return
			}
			// The kernel may add flags of its own (permanent).
			g.flags &= want.flags
			if g != want {
				t.Errorf("%v: got %+v, want %+v", want.prefix, g, want)
			}
		}
		check(eth0, vipListed{prefix: netip.MustParsePrefix("10.50.1.200/32"), label: "eth0:vip", scope: netlink.SCOPE_UNIVERSE})
		check(eth0, vipListed{prefix: netip.MustParsePrefix("10.50.1.201/24"), label: "eth0:2", scope: netlink.SCOPE_UNIVERSE})
		check(eth0, vipListed{prefix: netip.MustParsePrefix("169.254.50.1/16"), label: "eth0:ll", scope: netlink.SCOPE_LINK})
		check(lo, vipListed{prefix: netip.MustParsePrefix("10.99.0.1/32"), label: "lo", scope: netlink.SCOPE_HOST})
		check(eth0, vipListed{prefix: netip.MustParsePrefix("fd00:50:1::200/64"), scope: netlink.SCOPE_UNIVERSE, flags: unix.IFA_F_NODAD})
		if f := eth0[netip.MustParseAddr("fd00:50:1::200")].flags; f&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("IPv6 VIP is tentative (flags %#x)", f)
		}

		changes, err = m.Add()
		if err != nil {
			return fmt.Errorf("add again: %w", err)
		}
		if got, want := vipOps(changes), []VIPOp{VIPAlreadyPresent, VIPAlreadyPresent, VIPAlreadyPresent, VIPAlreadyPresent, VIPAlreadyPresent}; !vipEqualOps(got, want) {
			t.Errorf("add again: %v, want %v", got, want)
		}

		changes, err = m.Remove()
		if err != nil {
			return fmt.Errorf("remove: %w", err)
		}
		if got, want := vipOps(changes), []VIPOp{VIPRemoved, VIPRemoved, VIPRemoved, VIPRemoved, VIPRemoved}; !vipEqualOps(got, want) {
			t.Errorf("remove: %v, want %v", got, want)
		}
		eth0, _ = vipListAddrs("eth0")
		lo, _ = vipListAddrs("lo")
		for _, v := range m.VIPs {
			if _, ok := eth0[v.Prefix.Addr()]; ok {
				t.Errorf("%v still on eth0", v.Prefix)
			}
			if _, ok := lo[v.Prefix.Addr()]; ok {
				t.Errorf("%v still on lo", v.Prefix)
			}
		}
		if _, ok := eth0[top.LBFrontAddr]; !ok {
			t.Errorf("the interface's own %v went too", top.LBFrontAddr)
		}

		changes, err = m.Remove()
		if err != nil {
			return fmt.Errorf("remove again: %w", err)
		}
		if got, want := vipOps(changes), []VIPOp{VIPAlreadyAbsent, VIPAlreadyAbsent, VIPAlreadyAbsent, VIPAlreadyAbsent, VIPAlreadyAbsent}; !vipEqualOps(got, want) {
			t.Errorf("remove again: %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// One bad VIP does not keep the others down, and the error names it.
func TestVIPAddGoesOnPastAMissingInterface(t *testing.T) {
	vipRequireNetns(t)
	top := vipTestbed(t)
	m := &VIPManager{Dev: "eth0", VIPs: []config.VIP{
		{Prefix: netip.MustParsePrefix("10.50.1.210/32"), Dev: "nosuch0"},
		{Prefix: netip.MustParsePrefix("10.50.1.211/32")},
	}}
	err := top.LB.Do(func() error {
		changes, err := m.Add()
		if err == nil || !strings.Contains(err.Error(), "nosuch0") {
			t.Errorf("add: error %v, want one naming nosuch0", err)
		}
		if got, want := vipOps(changes), []VIPOp{VIPFailed, VIPAdded}; !vipEqualOps(got, want) {
			t.Errorf("add: %v, want %v", got, want)
		}
		// Removing from an interface that does not exist is not an error.
		changes, err = m.Remove()
		if err != nil {
			return err
		}
		if got, want := vipOps(changes), []VIPOp{VIPAlreadyAbsent, VIPRemoved}; !vipEqualOps(got, want) {
			t.Errorf("remove: %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func vipEqualOps(a, b []VIPOp) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func vipMACOf(t *testing.T, ns *testbed.Netns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// vipSetNeigh makes ns believe that ip is at mac, as a client does that
// talked to the old master a moment ago.
func vipSetNeigh(t *testing.T, ns *testbed.Netns, dev string, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		return netlink.NeighSet(&netlink.Neigh{
			LinkIndex:    l.Attrs().Index,
			Family:       family,
			State:        netlink.NUD_REACHABLE,
			IP:           ip.AsSlice(),
			HardwareAddr: mac,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// vipNeighMAC is ns's neighbour entry for ip, nil when it has none.
func vipNeighMAC(t *testing.T, ns *testbed.Netns, dev string, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		ns, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == ip {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func vipWaitNeigh(t *testing.T, ns *testbed.Netns, dev string, ip netip.Addr, want net.HardwareAddr) {
	t.Helper()
	var got net.HardwareAddr
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got = vipNeighMAC(t, ns, dev, ip); bytes.Equal(got, want) {
			return
		}
	}
	t.Errorf("%s's neighbour entry for %v is %v, want %v", ns, ip, got, want)
}

var vipOldMaster = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}

// Issue 13's split-brain healing: a client that still maps the VIP to the
// old master's MAC maps it to the new master's after one round of
// announcements. The client keeps arp_accept at its default 0: Linux then
// updates an existing entry from a gratuitous ARP but creates none, which is
// the case that matters (a client that never talked to the VIP has nothing
// stale to fix).
func TestGARPMovesPeersNeighbourEntry(t *testing.T) {
	vipRequireNetns(t)
	top := vipTestbed(t)
	vip4 := netip.MustParseAddr("10.50.1.200")
	vip6 := netip.MustParseAddr("fd00:50:1::200")
	m := &VIPManager{Dev: "eth0", VIPs: []config.VIP{
		{Prefix: netip.PrefixFrom(vip4, 32)},
		{Prefix: netip.PrefixFrom(vip6, 64)},
	}}
	lbMAC := vipMACOf(t, top.LB, "eth0")
	vipSetNeigh(t, top.Client, "eth0", vip4, vipOldMaster)
	vipSetNeigh(t, top.Client, "eth0", vip6, vipOldMaster)

	// Watch the wire too, so that the test fails on the frame and not only
	// on the kernel's reaction to it.
	var cap *packet.Conn
	err := top.Client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		cap, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cap.Close()

	var sent GARPSent
	err = top.LB.Do(func() error {
		if _, err := m.Add(); err != nil {
			return err
		}
		sent, err = m.SendGARP(context.Background(), 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if sent != (GARPSent{ARP: 1, NA: 1}) {
		t.Errorf("sent %+v, want one ARP and one NA", sent)
	}
	vipWaitNeigh(t, top.Client, "eth0", vip4, lbMAC)
	vipWaitNeigh(t, top.Client, "eth0", vip6, lbMAC)

	want, _ := garpFrame(lbMAC, vip4)
	cap.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := cap.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no gratuitous ARP seen on the client: %v", err)
		}
		// The client's own ARP traffic, if any, is not ours.
		if n >= 42 && bytes.Equal(buf[6:12], lbMAC) {
			if !bytes.Equal(buf[:42], want[:42]) {
				t.Errorf("on the wire\n got %x\nwant %x", buf[:42], want[:42])
			}
			break
		}
	}
}

// With arp_accept=1 (set on the client's eth0 for this test only) Linux
// also creates an entry from a gratuitous ARP; without it, none appears.
func TestGARPAndArpAccept(t *testing.T) {
	vipRequireNetns(t)
	top := vipTestbed(t)
	vip := netip.MustParseAddr("10.50.1.220")
	m := &VIPManager{Dev: "eth0", VIPs: []config.VIP{{Prefix: netip.PrefixFrom(vip, 32)}}}
	lbMAC := vipMACOf(t, top.LB, "eth0")
	announce := func() {
		t.Helper()
		err := top.LB.Do(func() error {
			if _, err := m.Add(); err != nil {
				return err
			}
			_, err := m.SendGARP(context.Background(), 1)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	announce()
	time.Sleep(200 * time.Millisecond)
	if mac := vipNeighMAC(t, top.Client, "eth0", vip); mac != nil {
		t.Errorf("arp_accept=0: entry %v created", mac)
	}
	err := top.Client.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/eth0/arp_accept", []byte("1"), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	announce()
	vipWaitNeigh(t, top.Client, "eth0", vip, lbMAC)
}

// garp_interval spaces announcements on one interface; a cancelled context
// cuts the wait short.
func TestGARPPacing(t *testing.T) {
	vipRequireNetns(t)
	top := vipTestbed(t)
	const gap = 60 * time.Millisecond
	m := &VIPManager{Dev: "eth0", GARPInterval: gap, VIPs: []config.VIP{
		{Prefix: netip.MustParsePrefix("10.50.1.230/32")},
		{Prefix: netip.MustParsePrefix("10.50.1.231/32")},
	}}
	err := top.LB.Do(func() error {
		if _, err := m.Add(); err != nil {
			return err
		}
		start := time.Now()
		sent, err := m.SendGARP(context.Background(), 3)
		if err != nil {
			return err
		}
		if took := time.Since(start); sent.ARP != 6 || took < 5*gap {
			t.Errorf("sent %d in %v, want 6 in at least %v", sent.ARP, took, 5*gap)
		}

		ctx, cancel := context.WithTimeout(context.Background(), gap/2)
		defer cancel()
		m.GARPInterval = time.Hour
		sent, err = m.SendGARP(ctx, 2)
		if !errors.Is(err, context.DeadlineExceeded) || sent.ARP != 1 {
			t.Errorf("cancelled: sent %d, err %v; want 1 and the deadline", sent.ARP, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
