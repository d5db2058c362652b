package testbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// PairOptions tune a pair topology.
type PairOptions struct {
	// NAT adds the back bridge with the reals behind the LB nodes.
	NAT bool
	// Reals is the number of reals with NAT, 3 when zero; none without.
	Reals int
	// Nodes is the number of LB nodes, 2 when zero, at most 9.
	Nodes int
}

// Pair is the topology of VRRP tests: a client and two or more LB nodes on
// one front bridge, and with NAT a back bridge joining the nodes and the
// reals. Neither VIP is configured anywhere: the VRRP daemon under test adds
// it, and the client (or a real, for the gateway VIP) finds its holder by
// ARP, so that gratuitous ARP is observable in their neighbour tables. They
// keep Linux's arp_accept 0: a gratuitous ARP updates an existing entry but
// creates none, so resolve the VIP (ping it) before the failover to watch.
// The fields are read-only.
type Pair struct {
	Prefix string // every namespace and bridge port name starts with it
	NAT    bool

	Client   *Netns
	LB1, LB2 *Netns   // Nodes[0] and Nodes[1]
	Nodes    []*Netns // lb1, lb2, lb3, ...
	Bridge   *Netns   // holds FrontBridge and, with NAT, BackBridge
	Reals    []*Netns

	VIP        netip.Addr // 10.50.1.100, on the front
	GatewayVIP netip.Addr // 10.50.2.254, the reals' default gateway (NAT)
	ClientAddr netip.Addr // 10.50.1.2

	// Interface names inside every node; Back exists only with NAT.
	Front, Back string
	// Node i has 10.50.1.(11+i) on Front and 10.50.2.(11+i) on Back.
	FrontAddrs, BackAddrs []netip.Addr
	// Real i has 10.50.2.(21+i) on RealLink.
	RealAddrs []netip.Addr
	RealLink  string

	FrontBridge, BackBridge string
	// The bridge ports of the nodes, index as Nodes; Cut isolates them.
	FrontPorts, BackPorts []string

	mu  sync.Mutex
	cut bool
}

var gatewayVIP = netip.MustParseAddr("10.50.2.254")

const (
	frontBridge = "br0"
	backBridge  = "br1"
	maxNodes    = 9 // node addresses .11 to .19 stay below the reals' .21
)

// NewPair builds a pair topology:
//
//	client eth0 10.50.1.2/24 -- br0 -- lbN eth0 10.50.1.(10+N)/24
//	lbN eth1 10.50.2.(10+N)/24 -- br1 -- real i eth0 10.50.2.(21+i)/24, default via 10.50.2.254 (NAT)
//
// Whatever was created is removed when c runs its cleanups, and already
// before NewPair returns if it fails.
func NewPair(c Cleanuper, o PairOptions) (p *Pair, err error) {
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Nodes < 2 || o.Nodes > maxNodes {
		return nil, fmt.Errorf("testbed: %d LB nodes, want 2..%d", o.Nodes, maxNodes)
	}
	if o.Reals == 0 {
		o.Reals = 3
	}
	if !o.NAT {
		o.Reals = 0
	}
	if o.Reals < 0 || o.Reals > 200 {
		return nil, fmt.Errorf("testbed: %d reals, want 1..200", o.Reals)
	}

	own := &Cleanups{}
	c.Cleanup(own.Run)
	b := &builder{own: own}
	defer b.close()
	defer func() {
		if err != nil {
			own.Run()
			prefix := "(no prefix)"
			if p != nil {
				prefix = p.Prefix
			}
			err = fmt.Errorf("testbed: pair %s: %w", prefix, err)
			p = nil
		}
	}()
	p, err = pairNamespaces(b, o)
	if err != nil {
		return p, err
	}
	return p, p.wire(b)
}

// nodeSetup lets a node route between front and back, and accept packets
// whose source it would not route back the same way: during a split both
// nodes may hold a VIP, and traffic may arrive at the one that is not the
// route towards its source.
func nodeSetup() error {
	if err := lbSetup(); err != nil {
		return err
	}
	return sysctls(
		"net/ipv4/conf/all/rp_filter", "0",
		"net/ipv4/conf/default/rp_filter", "0",
	)
}

func pairNamespaces(b *builder, o PairOptions) (*Pair, error) {
	var p *Pair
	err := b.create("xp", func(prefix string) []nsSpec {
		p = &Pair{
			Prefix:      prefix,
			NAT:         o.NAT,
			Client:      &Netns{prefix + "-client"},
			Bridge:      &Netns{prefix + "-br"},
			VIP:         vip,
			ClientAddr:  clientAddr,
			Front:       "eth0",
			RealLink:    "eth0",
			FrontBridge: frontBridge,
		}
		bridges := func() error { return newBridge(frontBridge) }
		if o.NAT {
			p.GatewayVIP = gatewayVIP
			p.Back = "eth1"
			p.BackBridge = backBridge
			bridges = func() error {
				if err := newBridge(frontBridge); err != nil {
					return err
				}
				return newBridge(backBridge)
			}
		}
		specs := []nsSpec{{p.Client, nil}, {p.Bridge, bridges}}
		for i := range o.Nodes {
			n := &Netns{fmt.Sprintf("%s-lb%d", prefix, i+1)}
			p.Nodes = append(p.Nodes, n)
			specs = append(specs, nsSpec{n, nodeSetup})
		}
		p.LB1, p.LB2 = p.Nodes[0], p.Nodes[1]
		for i := range o.Reals {
			r := &Netns{fmt.Sprintf("%s-r%d", prefix, i+1)}
			p.Reals = append(p.Reals, r)
			specs = append(specs, nsSpec{r, nil})
		}
		return specs
	})
	return p, err
}

// bridgePort connects ns (interface ifName) to bridge br through a port named
// name, up.
func (p *Pair) bridgePort(b *builder, br, name string, ns *Netns, ifName string) (netlink.Link, error) {
	hb := b.nlh[p.Bridge]
	brl, err := hb.LinkByName(br)
	if err != nil {
		return nil, err
	}
	port, l, err := b.veth(p.Bridge, name, ns, ifName, 0)
	if err != nil {
		return nil, err
	}
	if err := hb.LinkSetMaster(port, brl); err != nil {
		return nil, fmt.Errorf("%s master %s: %w", name, br, err)
	}
	if err := hb.LinkSetUp(port); err != nil {
		return nil, fmt.Errorf("%s up: %w", name, err)
	}
	return l, nil
}

func (p *Pair) wire(b *builder) error {
	p24 := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 24) }
	port := func(what string) string { return p.Prefix + "-" + what }

	l, err := p.bridgePort(b, frontBridge, port("c"), p.Client, "eth0")
	if err != nil {
		return err
	}
	if err := b.ifUp(p.Client, l, p24(clientAddr)); err != nil {
		return err
	}
	for i, n := range p.Nodes {
		front := netip.AddrFrom4([4]byte{10, 50, 1, byte(11 + i)})
		p.FrontAddrs = append(p.FrontAddrs, front)
		p.FrontPorts = append(p.FrontPorts, port(fmt.Sprintf("f%d", i+1)))
		l, err := p.bridgePort(b, frontBridge, p.FrontPorts[i], n, p.Front)
		if err != nil {
			return err
		}
		if err := b.ifUp(n, l, p24(front)); err != nil {
			return err
		}
		if !p.NAT {
			continue
		}
		back := netip.AddrFrom4([4]byte{10, 50, 2, byte(11 + i)})
		p.BackAddrs = append(p.BackAddrs, back)
		p.BackPorts = append(p.BackPorts, port(fmt.Sprintf("b%d", i+1)))
		l, err = p.bridgePort(b, backBridge, p.BackPorts[i], n, p.Back)
		if err != nil {
			return err
		}
		if err := b.ifUp(n, l, p24(back)); err != nil {
			return err
		}
	}
	for i, r := range p.Reals {
		a := netip.AddrFrom4([4]byte{10, 50, 2, byte(21 + i)})
		p.RealAddrs = append(p.RealAddrs, a)
		l, err := p.bridgePort(b, backBridge, port(fmt.Sprintf("r%d", i+1)), r, p.RealLink)
		if err != nil {
			return err
		}
		if err := b.ifUp(r, l, p24(a)); err != nil {
			return err
		}
		// The gateway is on-link, so the route is accepted before
		// anyone holds it.
		if err := b.route(r, l, netip.Prefix{}, gatewayVIP); err != nil {
			return err
		}
	}
	return nil
}

// Namespaces lists every namespace of the pair.
func (p *Pair) Namespaces() []*Netns {
	ns := append([]*Netns{p.Client, p.Bridge}, p.Nodes...)
	return append(ns, p.Reals...)
}

// HasAddr reports whether a is configured on dev in ns, or on any interface
// of ns when dev is empty.
func (p *Pair) HasAddr(ns *Netns, dev string, a netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	var has bool
	err := ns.Do(func() error {
		var l netlink.Link
		if dev != "" {
			var err error
			if l, err = netlink.LinkByName(dev); err != nil {
				return err
			}
		}
		addrs, err := netlink.AddrList(l, family)
		if err != nil {
			return err
		}
		has = slices.ContainsFunc(addrs, func(x netlink.Addr) bool { return x.IP.Equal(a.AsSlice()) })
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: addresses of %q: %w", ns, dev, err)
	}
	return has, nil
}

// Holders lists the nodes that hold a now, on any interface. A node whose
// addresses cannot be read counts as not holding it.
func (p *Pair) Holders(a netip.Addr) []*Netns {
	var hs []*Netns
	for _, n := range p.Nodes {
		if ok, _ := p.HasAddr(n, "", a); ok {
			hs = append(hs, n)
		}
	}
	return hs
}

// WaitHolder waits until want is the only node holding a, or until no node
// does when want is nil.
func (p *Pair) WaitHolder(ctx context.Context, a netip.Addr, want *Netns) error {
	var hs []*Netns
	for {
		hs = p.Holders(a)
		if (want == nil && len(hs) == 0) || (len(hs) == 1 && hs[0] == want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v held by %v, want only %v: %w", a, hs, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ClientNeighMAC is the link-layer address in the client's neighbour entry
// for a in whatever state, nil when there is no entry or it has no address
// (INCOMPLETE, FAILED).
func (p *Pair) ClientNeighMAC(a netip.Addr) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := p.Client.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		ns, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.IP.Equal(a.AsSlice()) && len(n.HardwareAddr) > 0 {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: neighbour %v: %w", p.Client, a, err)
	}
	return mac, nil
}

// WaitClientNeighMAC waits until the client's neighbour entry for a has
// want, without sending anything that would make the client resolve a: only
// what the nodes send on their own (gratuitous ARP) can change it.
func (p *Pair) WaitClientNeighMAC(ctx context.Context, a netip.Addr, want net.HardwareAddr) error {
	for {
		got, err := p.ClientNeighMAC(a)
		if err != nil {
			return err
		}
		if slices.Equal(got, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client's neighbour entry for %v is %v, want %v: %w", a, got, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MAC is the hardware address of dev in ns.
func (p *Pair) MAC(ns *Netns, dev string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", ns, dev, err)
	}
	return mac, nil
}

// Cut splits the nodes from each other, on the front and the back bridge,
// while the client and the reals still reach every node: a split brain.
// It isolates the nodes' bridge ports, and isolated ports forward (and
// flood) only to ports that are not isolated.
func (p *Pair) Cut(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ports := append(slices.Clone(p.FrontPorts), p.BackPorts...)
	err := p.Bridge.Do(func() error {
		for _, name := range ports {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetIsolated(l, on); err != nil {
				return fmt.Errorf("%s isolated %v: %w", name, on, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: cut %v: %w", p.Bridge, on, err)
	}
	p.cut = on
	return nil
}

// IsCut reports whether the nodes are split by Cut.
func (p *Pair) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// String names the pair and its nodes for test logs.
func (p *Pair) String() string {
	var n []string
	for _, x := range p.Nodes {
		n = append(n, x.Name)
	}
	return fmt.Sprintf("pair %s (%s)", p.Prefix, strings.Join(n, ", "))
}
