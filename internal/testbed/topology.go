package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	xbpf "github.com/xlbd/xlbd/bpf"
)

// Mode is the kind of topology.
type Mode int

const (
	// NAT is the routed topology of IPVS masquerading: client -- LB -- bridge -- reals.
	NAT Mode = iota
	// L2 puts client, LB and reals on one bridge, for DR and TUN.
	L2
)

func (m Mode) String() string {
	switch m {
	case NAT:
		return "NAT"
	case L2:
		return "L2"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options tune a topology.
type Options struct {
	// Reals is the number of real servers, 3 when zero.
	Reals int
	// XDPPeers prepares for native XDP on the LB's interfaces: a native
	// XDP_PASS program on the peer of every LB veth, so that frames the LB
	// sends with XDP_TX or XDP_REDIRECT are delivered, and tx checksumming
	// off in the client and every real, so that their TCP checksums survive
	// native XDP (XDP-NOTES rules 1 and 2).
	XDPPeers bool
	// VIPOnLB puts the VIP as a local /32 on the LB's client-facing
	// interface, as VRRP would; the client then finds it by ARP. Otherwise
	// the client routes the VIP via the LB's front address.
	VIPOnLB bool
	// MTU, when > 0, is the MTU of the LB-to-reals path (LB interface,
	// bridge ports of LB and reals, reals' eth0), room for TUN's outer header.
	MTU int
}

// Link is an interface inside a namespace.
type Link struct {
	NS   *Netns
	Name string
}

// Topology is a set of namespaces wired together. Its fields are read-only.
type Topology struct {
	Mode   Mode
	Prefix string // every namespace and bridge port name starts with it

	Client *Netns
	LB     *Netns
	Bridge *Netns // holds br0
	Reals  []*Netns

	VIP        netip.Addr // 10.50.1.100
	ClientAddr netip.Addr

	// LB interface names: in NAT front faces the client and back the
	// reals; in L2 both are the single interface eth0.
	LBFront, LBBack         string
	LBFrontAddr, LBBackAddr netip.Addr
	// The far ends of the LB's veths: where native XDP needs its peer
	// program. In L2 both are the same bridge port.
	LBFrontPeer, LBBackPeer Link

	RealAddrs []netip.Addr
	// RealLink is the interface of every real: eth0.
	RealLink string
}

// Namespaces lists every namespace of the topology.
func (t *Topology) Namespaces() []*Netns {
	return append([]*Netns{t.Client, t.LB, t.Bridge}, t.Reals...)
}

// NewNAT builds the NAT topology:
//
//	client eth0 10.50.1.2/24 -- LB eth0 10.50.1.1/24
//	LB eth1 10.50.2.1/24 -- br0 -- real i eth0 10.50.2.(11+i)/24, default via 10.50.2.1
func NewNAT(c Cleanuper, o Options) (*Topology, error) { return New(c, NAT, o) }

// NewL2 builds the L2 topology: client 10.50.1.2, LB 10.50.1.1 and reals
// 10.50.1.(11+i), all /24 on eth0 and all ports of one bridge; the reals hold
// the VIP on lo and never answer ARP for it.
func NewL2(c Cleanuper, o Options) (*Topology, error) { return New(c, L2, o) }

var (
	vip        = netip.MustParseAddr("10.50.1.100")
	clientAddr = netip.MustParseAddr("10.50.1.2")
	lbFront    = netip.MustParseAddr("10.50.1.1")
	lbBackNAT  = netip.MustParseAddr("10.50.2.1")
)

const bridgeName = "br0"

// New builds a topology of the given mode. Whatever was created is removed
// when c runs its cleanups, and already before New returns if it fails.
func New(c Cleanuper, mode Mode, o Options) (t *Topology, err error) {
	if o.Reals == 0 {
		o.Reals = 3
	}
	if o.Reals < 0 || o.Reals > 200 {
		return nil, fmt.Errorf("testbed: %d reals, want 1..200", o.Reals)
	}
	if mode != NAT && mode != L2 {
		return nil, fmt.Errorf("testbed: unknown mode %v", mode)
	}
	if o.MTU < 0 {
		return nil, fmt.Errorf("testbed: MTU %d", o.MTU)
	}

	// Registered before anything exists, so that a panic half-way still
	// tears down in tests; Run is idempotent, so the error path can run it
	// early too.
	own := &Cleanups{}
	c.Cleanup(own.Run)
	b := &builder{own: own, o: o, mode: mode}
	defer func() {
		if err != nil {
			own.Run()
			err = fmt.Errorf("testbed: %v topology %s: %w", mode, b.prefix(), err)
		}
	}()
	defer b.close()
	if err := b.namespaces(); err != nil {
		return nil, err
	}
	if err := b.wire(); err != nil {
		return nil, err
	}
	if o.XDPPeers {
		if err := b.xdpPeers(); err != nil {
			return nil, err
		}
	}
	return b.t, nil
}

type builder struct {
	own  *Cleanups
	o    Options
	mode Mode
	t    *Topology
	fds  map[*Netns]netns.NsHandle
	nlh  map[*Netns]*netlink.Handle
}

func (b *builder) prefix() string {
	if b.t == nil {
		return "(no prefix)"
	}
	return b.t.Prefix
}

func (b *builder) close() {
	for _, h := range b.nlh {
		h.Close()
	}
	for _, fd := range b.fds {
		fd.Close()
	}
}

// Prefixes handed out by this process; another process's are seen in /run/netns.
var (
	prefixMu sync.Mutex
	prefixes = map[string]bool{}
)

func newPrefix(lead string) (string, func(), error) {
	prefixMu.Lock()
	defer prefixMu.Unlock()
	for range 100 {
		var r [2]byte
		rand.Read(r[:])
		p := lead + hex.EncodeToString(r[:])
		if prefixes[p] {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join("/run/netns", p+"-*")); len(m) > 0 {
			continue
		}
		prefixes[p] = true
		return p, func() {
			prefixMu.Lock()
			delete(prefixes, p)
			prefixMu.Unlock()
		}, nil
	}
	return "", nil, errors.New("no free name prefix")
}

type nsSpec struct {
	ns    *Netns
	setup func() error // runs inside the new namespace
}

// createNamespaces makes the namespaces on one locked thread: creating one
// also enters it, so its namespace-wide settings are applied right there
// before any interface exists, and new interfaces inherit the defaults.
// The thread is never unlocked and dies with the goroutine.
func createNamespaces(own *Cleanups, specs []nsSpec) (map[*Netns]netns.NsHandle, error) {
	fds := map[*Netns]netns.NsHandle{}
	if err := prepareNetnsDir(); err != nil {
		return fds, err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, s := range specs {
			h, err := netns.NewNamed(s.ns.Name)
			if err != nil {
				errc <- fmt.Errorf("create netns %s: %w", s.ns.Name, err)
				return
			}
			name := s.ns.Name
			own.Cleanup(func() { netns.DeleteNamed(name) })
			fds[s.ns] = h
			if err := commonNSSetup(); err != nil {
				errc <- fmt.Errorf("netns %s: %w", name, err)
				return
			}
			if s.setup != nil {
				if err := s.setup(); err != nil {
					errc <- fmt.Errorf("netns %s: %w", name, err)
					return
				}
			}
		}
		errc <- nil
	}()
	err := <-errc
	return fds, err
}

var netnsDirOnce = sync.OnceValue(func() error {
	const dir = "/run/netns"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
})

// prepareNetnsDir makes /run/netns a shared mount point as `ip netns add`
// does. Without it, a later `ip netns add` bind-mounts /run/netns over itself
// recursively, and deleting our namespaces would then unmount only the copies,
// leaving the originals (and the namespaces) hidden underneath.
func prepareNetnsDir() error { return netnsDirOnce() }

func commonNSSetup() error {
	// IPv6 off keeps captures free of router solicitations and MLD.
	for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if err := sysctl(k, "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// sysctl writes a key of the calling thread's network namespace: /proc/sys/net
// resolves against the namespace of the thread that opens it.
func sysctl(key, val string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(val), 0)
}

func sysctls(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := sysctl(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func lbSetup() error {
	return sysctls(
		"net/ipv4/ip_forward", "1",
		"net/ipv4/conf/all/forwarding", "1",
	)
}

// l2RealSetup keeps the reals, which hold the VIP on lo, from ever answering
// or announcing ARP for it, and from dropping packets for the VIP that arrive
// on eth0 (DR) or are decapsulated there (TUN).
func l2RealSetup() error {
	return sysctls(
		"net/ipv4/conf/all/arp_ignore", "1",
		"net/ipv4/conf/default/arp_ignore", "1",
		"net/ipv4/conf/all/arp_announce", "2",
		"net/ipv4/conf/default/arp_announce", "2",
		"net/ipv4/conf/all/rp_filter", "0",
		"net/ipv4/conf/default/rp_filter", "0",
		"net/ipv4/conf/lo/rp_filter", "0",
	)
}

func bridgeSetup() error { return newBridge(bridgeName) }

// newBridge creates a bridge with STP off and forward delay 0, so that ports
// forward as soon as they are up. netlink.Bridge has no forward-delay field,
// hence the raw request.
func newBridge(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	br, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(br)
}

func (b *builder) namespaces() error {
	return b.create("xt", func(prefix string) []nsSpec {
		t := &Topology{
			Mode:       b.mode,
			Prefix:     prefix,
			Client:     &Netns{prefix + "-client"},
			LB:         &Netns{prefix + "-lb"},
			Bridge:     &Netns{prefix + "-br"},
			VIP:        vip,
			ClientAddr: clientAddr,
			RealLink:   "eth0",
		}
		specs := []nsSpec{
			{t.Client, nil},
			{t.LB, lbSetup},
			{t.Bridge, bridgeSetup},
		}
		for i := range b.o.Reals {
			r := &Netns{fmt.Sprintf("%s-r%d", prefix, i+1)}
			t.Reals = append(t.Reals, r)
			if b.mode == L2 {
				specs = append(specs, nsSpec{r, l2RealSetup})
			} else {
				specs = append(specs, nsSpec{r, nil})
			}
		}
		b.t = t
		return specs
	})
}

// create claims a name prefix starting with lead, creates the namespaces
// plan lists for it, and opens a netlink handle in each. A prefix another
// process took between the check and the creation is given up for another
// one, up to five times.
func (b *builder) create(lead string, plan func(prefix string) []nsSpec) error {
	var lastErr error
	for range 5 {
		prefix, release, err := newPrefix(lead)
		if err != nil {
			return err
		}
		b.own.Cleanup(release)
		fds, err := createNamespaces(b.own, plan(prefix))
		if err != nil {
			for _, fd := range fds {
				fd.Close()
			}
			if errors.Is(err, fs.ErrExist) && len(fds) == 0 {
				lastErr = err
				continue
			}
			return err
		}
		b.fds = fds
		b.nlh = map[*Netns]*netlink.Handle{}
		for ns, fd := range fds {
			h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
			if err != nil {
				return fmt.Errorf("netlink in %s: %w", ns.Name, err)
			}
			b.nlh[ns] = h
		}
		return nil
	}
	return lastErr
}

// veth creates a pair from namespace a (end aName) to namespace z (end zName)
// and returns both ends; both are created directly in their namespaces so
// that no interface, even briefly, exists in the host's namespace.
func (b *builder) veth(a *Netns, aName string, z *Netns, zName string, mtu int) (netlink.Link, netlink.Link, error) {
	ha, hz := b.nlh[a], b.nlh[z]
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName, MTU: mtu},
		PeerName:      zName,
		PeerNamespace: netlink.NsFd(b.fds[z]),
	}
	if err := ha.LinkAdd(v); err != nil {
		return nil, nil, fmt.Errorf("veth %s/%s -- %s/%s: %w", a, aName, z, zName, err)
	}
	la, err := ha.LinkByName(aName)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", a, aName, err)
	}
	lz, err := hz.LinkByName(zName)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", z, zName, err)
	}
	return la, lz, nil
}

// port connects namespace ns (interface ifName) to the bridge through a port
// named name and brings the port up.
func (b *builder) port(name string, ns *Netns, ifName string, mtu int) (netlink.Link, error) {
	hb := b.nlh[b.t.Bridge]
	br, err := hb.LinkByName(bridgeName)
	if err != nil {
		return nil, err
	}
	p, l, err := b.veth(b.t.Bridge, name, ns, ifName, mtu)
	if err != nil {
		return nil, err
	}
	if err := hb.LinkSetMaster(p, br); err != nil {
		return nil, fmt.Errorf("%s master %s: %w", name, bridgeName, err)
	}
	if err := hb.LinkSetUp(p); err != nil {
		return nil, fmt.Errorf("%s up: %w", name, err)
	}
	return l, nil
}

// ifUp gives l its addresses and brings it up.
func (b *builder) ifUp(ns *Netns, l netlink.Link, addrs ...netip.Prefix) error {
	h := b.nlh[ns]
	for _, a := range addrs {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			return fmt.Errorf("%s/%s: add %v: %w", ns, l.Attrs().Name, a, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s/%s up: %w", ns, l.Attrs().Name, err)
	}
	return nil
}

func (b *builder) route(ns *Netns, l netlink.Link, dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
	if dst.Bits() > 0 {
		r.Dst = ipNet(dst)
	}
	if err := b.nlh[ns].RouteAdd(r); err != nil {
		return fmt.Errorf("%s: route %v via %v: %w", ns, dst, gw, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (b *builder) wire() error {
	t, o := b.t, b.o
	p24 := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 24) }
	realNet := [4]byte{10, 50, 1, 0}
	if b.mode == NAT {
		realNet = [4]byte{10, 50, 2, 0}
	}
	for i := range t.Reals {
		a := realNet
		a[3] = byte(11 + i)
		t.RealAddrs = append(t.RealAddrs, netip.AddrFrom4(a))
	}
	brPort := func(what string) string { return t.Prefix + "-" + what }

	var client, lbf netlink.Link
	var err error
	switch b.mode {
	case NAT:
		t.LBFront, t.LBBack = "eth0", "eth1"
		t.LBFrontAddr, t.LBBackAddr = lbFront, lbBackNAT
		lbf, client, err = b.veth(t.LB, "eth0", t.Client, "eth0", 0)
		if err != nil {
			return err
		}
		lbb, err := b.port(brPort("lb"), t.LB, "eth1", o.MTU)
		if err != nil {
			return err
		}
		if err := b.ifUp(t.LB, lbb, p24(lbBackNAT)); err != nil {
			return err
		}
		t.LBFrontPeer = Link{t.Client, "eth0"}
		t.LBBackPeer = Link{t.Bridge, brPort("lb")}
	case L2:
		t.LBFront, t.LBBack = "eth0", "eth0"
		t.LBFrontAddr, t.LBBackAddr = lbFront, lbFront
		if client, err = b.port(brPort("c"), t.Client, "eth0", 0); err != nil {
			return err
		}
		if lbf, err = b.port(brPort("lb"), t.LB, "eth0", o.MTU); err != nil {
			return err
		}
		t.LBFrontPeer = Link{t.Bridge, brPort("lb")}
		t.LBBackPeer = t.LBFrontPeer
	}

	lbAddrs := []netip.Prefix{p24(lbFront)}
	if o.VIPOnLB {
		lbAddrs = append(lbAddrs, netip.PrefixFrom(vip, 32))
	}
	if err := b.ifUp(t.LB, lbf, lbAddrs...); err != nil {
		return err
	}
	if err := b.ifUp(t.Client, client, p24(clientAddr)); err != nil {
		return err
	}
	if !o.VIPOnLB {
		// The VIP lies inside the client's own /24; the more specific
		// route sends it to the LB instead of ARPing for it.
		if err := b.route(t.Client, client, netip.PrefixFrom(vip, 32), lbFront); err != nil {
			return err
		}
	}

	for i, r := range t.Reals {
		l, err := b.port(brPort(fmt.Sprintf("r%d", i+1)), r, "eth0", o.MTU)
		if err != nil {
			return err
		}
		if err := b.ifUp(r, l, p24(t.RealAddrs[i])); err != nil {
			return err
		}
		switch b.mode {
		case NAT:
			if err := b.route(r, l, netip.Prefix{}, lbBackNAT); err != nil {
				return err
			}
		case L2:
			lo, err := b.nlh[r].LinkByName("lo")
			if err != nil {
				return err
			}
			if err := b.nlh[r].AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(vip, 32))}); err != nil {
				return fmt.Errorf("%s: VIP on lo: %w", r, err)
			}
		}
	}
	return nil
}

// xdpPeers attaches the pass program in native mode to the far end of every
// LB veth, through netlink rather than a bpf_link, so that it stays attached
// after the program's fd is closed and disappears with the namespace.
func (b *builder) xdpPeers() error {
	t := b.t
	var objs xbpf.PassObjects
	if err := xbpf.LoadPassObjects(&objs, nil); err != nil {
		return fmt.Errorf("load pass program: %w", err)
	}
	defer objs.Close()
	fd := objs.XdpPass.FD()
	peers := []Link{t.LBFrontPeer}
	if t.LBBackPeer != t.LBFrontPeer {
		peers = append(peers, t.LBBackPeer)
	}
	for _, p := range peers {
		err := p.NS.Do(func() error {
			l, err := netlink.LinkByName(p.Name)
			if err != nil {
				return err
			}
			return netlink.LinkSetXdpFdWithFlags(l, fd, nl.XDP_FLAGS_DRV_MODE)
		})
		if err != nil {
			return fmt.Errorf("native XDP on %s/%s: %w", p.NS, p.Name, err)
		}
	}
	for _, ns := range append([]*Netns{t.Client}, t.Reals...) {
		if err := ns.Do(func() error { return txChecksumOff("eth0") }); err != nil {
			return fmt.Errorf("%s: tx checksumming off: %w", ns, err)
		}
	}
	return nil
}

// txChecksumOff is `ethtool -K name tx off` without a process per namespace:
// the legacy ETHTOOL_STXCSUM request clears all NETIF_F_CSUM_MASK features,
// and the kernel drops the features that depend on them (TSO) as ethtool's
// does.
func txChecksumOff(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM, data: 0}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte // struct ifreq is 40 bytes
	}
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&val)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return errno
	}
	runtime.KeepAlive(&val)
	return nil
}
