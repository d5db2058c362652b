package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/config"
)

// VIPManager carries out the AddVIPs, RemoveVIPs and SendGARP actions for
// one vrrp_instance. It works in the network namespace of the thread that
// first calls Add or Remove: it keeps that netlink socket (a new one per
// call cost about 50 µs of every failover), but no raw sockets between
// calls: a master sends a handful of frames per transition, not enough to
// justify holding them open. It is not safe for concurrent Add and Remove.
type VIPManager struct {
	// Dev is the instance's interface, used for VIPs that name no dev.
	Dev string
	// VIPs are virtual_ipaddress followed by virtual_ipaddress_excluded:
	// the order in which keepalived adds and announces them.
	VIPs []config.VIP
	// GARPInterval and GNAInterval are the least time between two
	// gratuitous ARPs (unsolicited NAs) on one interface, keepalived's
	// vrrp_garp_interval and vrrp_gna_interval. Zero, keepalived's default,
	// sends them back to back.
	GARPInterval, GNAInterval time.Duration

	nl *netlink.Handle
}

// Close releases the netlink socket.
func (m *VIPManager) Close() {
	if m.nl != nil {
		m.nl.Close()
		m.nl = nil
	}
}

func (m *VIPManager) handle() (*netlink.Handle, error) {
	if m.nl == nil {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, err
		}
		m.nl = h
	}
	return m.nl, nil
}

// NewVIPManager returns the manager for vi's addresses.
func NewVIPManager(vi config.VRRPInstance) *VIPManager {
	vips := make([]config.VIP, 0, len(vi.VirtualIPAddresses)+len(vi.VirtualIPAddressesExcluded))
	vips = append(vips, vi.VirtualIPAddresses...)
	vips = append(vips, vi.VirtualIPAddressesExcluded...)
	return &VIPManager{Dev: vi.Interface, VIPs: vips}
}

// VIPOp is what became of one address.
type VIPOp uint8

// Outcomes of Add and Remove.
const (
	VIPAdded VIPOp = iota + 1
	VIPAlreadyPresent
	VIPRemoved
	VIPAlreadyAbsent
	VIPFailed
)

func (o VIPOp) String() string {
	switch o {
	case VIPAdded:
		return "added"
	case VIPAlreadyPresent:
		return "already present"
	case VIPRemoved:
		return "removed"
	case VIPAlreadyAbsent:
		return "already absent"
	case VIPFailed:
		return "failed"
	}
	return fmt.Sprintf("VIPOp(%d)", uint8(o))
}

// VIPChange reports what Add or Remove did to one address.
type VIPChange struct {
	Prefix netip.Prefix
	Dev    string
	Op     VIPOp
	Err    error // set when Op is VIPFailed
}

func (c VIPChange) String() string {
	if c.Err != nil {
		return fmt.Sprintf("%s dev %s: %s: %v", c.Prefix, c.Dev, c.Op, c.Err)
	}
	return fmt.Sprintf("%s dev %s: %s", c.Prefix, c.Dev, c.Op)
}

func (m *VIPManager) dev(v config.VIP) string {
	if v.Dev != "" {
		return v.Dev
	}
	return m.Dev
}

// Add puts every address on its interface. An address that is already there
// counts as done, so that a reload or a repeated MASTER transition is
// harmless. It goes on past failures, as keepalived does, so one missing
// interface does not leave the other VIPs down; the error joins them all.
func (m *VIPManager) Add() ([]VIPChange, error) {
	return m.each(addVIP)
}

func (m *VIPManager) each(f func(*netlink.Handle, config.VIP, string) (VIPOp, error)) ([]VIPChange, error) {
	h, err := m.handle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return m.eachWith(func(v config.VIP, dev string) (VIPOp, error) { return f(h, v, dev) })
}

// Remove takes every address off its interface; one already gone, or whose
// interface is gone, counts as done.
func (m *VIPManager) Remove() ([]VIPChange, error) {
	return m.each(removeVIP)
}

func (m *VIPManager) eachWith(f func(config.VIP, string) (VIPOp, error)) ([]VIPChange, error) {
	changes := make([]VIPChange, 0, len(m.VIPs))
	var errs []error
	for _, v := range m.VIPs {
		c := VIPChange{Prefix: v.Prefix, Dev: m.dev(v)}
		c.Op, c.Err = f(v, c.Dev)
		if c.Err != nil {
			c.Op = VIPFailed
			errs = append(errs, fmt.Errorf("vip %s dev %s: %w", c.Prefix, c.Dev, c.Err))
		}
		changes = append(changes, c)
	}
	return changes, errors.Join(errs...)
}

func addVIP(h *netlink.Handle, v config.VIP, dev string) (VIPOp, error) {
	link, err := h.LinkByName(dev)
	if err != nil {
		return 0, err
	}
	a, err := nlAddr(v)
	if err != nil {
		return 0, err
	}
	// NLM_F_EXCL rather than replace: replacing would not change label or
	// scope anyway, and EEXIST tells us the address was already held.
	if err := h.AddrAdd(link, a); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return VIPAlreadyPresent, nil
		}
		return 0, err
	}
	return VIPAdded, nil
}

func removeVIP(h *netlink.Handle, v config.VIP, dev string) (VIPOp, error) {
	link, err := h.LinkByName(dev)
	if err != nil {
		// keepalived: no point deleting from an interface that is gone.
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return VIPAlreadyAbsent, nil
		}
		return 0, err
	}
	a, err := nlAddr(v)
	if err != nil {
		return 0, err
	}
	if err := h.AddrDel(link, a); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV) {
			return VIPAlreadyAbsent, nil
		}
		return 0, err
	}
	return VIPRemoved, nil
}

var scopes = map[string]netlink.Scope{
	"":        netlink.SCOPE_UNIVERSE,
	"global":  netlink.SCOPE_UNIVERSE,
	"site":    netlink.SCOPE_SITE,
	"link":    netlink.SCOPE_LINK,
	"host":    netlink.SCOPE_HOST,
	"nowhere": netlink.SCOPE_NOWHERE,
}

func nlAddr(v config.VIP) (*netlink.Addr, error) {
	if !v.Prefix.IsValid() {
		return nil, fmt.Errorf("invalid prefix %v", v.Prefix)
	}
	p := v.Prefix
	ip := p.Addr().Unmap()
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(p.Bits(), ip.BitLen())},
		Label: v.Label,
	}
	if ip.Is6() {
		// As keepalived: DAD would keep the VIP tentative (unusable) for a
		// second after failover, and a split brain would leave it
		// dadfailed for good; VRRP is the duplicate detection here.
		// keepalived also ignores scope on IPv6 VIPs.
		a.Flags = unix.IFA_F_NODAD
		return a, nil
	}
	s, ok := scopes[v.Scope]
	if !ok {
		return nil, fmt.Errorf("unknown scope %q", v.Scope)
	}
	a.Scope = int(s)
	// The model has no brd, and keepalived sets a broadcast only when told;
	// IPv4zero stops netlink from deriving one from the prefix.
	a.Broadcast = net.IPv4zero
	return a, nil
}

// GARPSent counts the frames SendGARP sent.
type GARPSent struct {
	ARP int // gratuitous ARPs, for IPv4 VIPs
	NA  int // unsolicited neighbour advertisements, for IPv6 VIPs
}

// SendGARP sends count rounds of announcements, each round covering every
// VIP in order, as keepalived's vrrp_send_link_update: a gratuitous ARP for
// an IPv4 VIP and an unsolicited neighbour advertisement for an IPv6 one,
// from the interface's own MAC. Interfaces marked NOARP are skipped, as
// keepalived does. With GARPInterval or GNAInterval set it blocks for the
// pacing (keepalived queues instead), so a caller that also sends adverts
// must not call it on the advert timer's goroutine; ctx ends the wait. It
// goes on past failures and joins them.
func (m *VIPManager) SendGARP(ctx context.Context, count int) (GARPSent, error) {
	var sent GARPSent
	if count <= 0 || len(m.VIPs) == 0 {
		return sent, nil
	}
	s := &announcer{socks: map[string]*ifSocks{}}
	defer s.close()
	var errs []error
	for range count {
		for _, v := range m.VIPs {
			dev := m.dev(v)
			vip := v.Prefix.Addr().Unmap()
			is6 := vip.Is6()
			interval := m.GARPInterval
			if is6 {
				interval = m.GNAInterval
			}
			ok, err := s.send(ctx, dev, vip, interval)
			if err != nil {
				errs = append(errs, fmt.Errorf("announce %s on %s: %w", vip, dev, err))
				if ctx.Err() != nil {
					return sent, errors.Join(errs...)
				}
				continue
			}
			switch {
			case !ok:
			case is6:
				sent.NA++
			default:
				sent.ARP++
			}
		}
	}
	return sent, errors.Join(errs...)
}

// ifSocks are one interface's sockets, opened on first use.
type ifSocks struct {
	ifi     *net.Interface
	arp     *packet.Conn
	nd      *ipv6.PacketConn
	router  bool // IPv6 forwarding on: NAs carry the router flag
	noARP   bool
	next4   time.Time
	next6   time.Time
	openErr error
}

type announcer struct {
	socks map[string]*ifSocks
}

func (a *announcer) close() {
	for _, s := range a.socks {
		if s.arp != nil {
			s.arp.Close()
		}
		if s.nd != nil {
			s.nd.Close()
		}
	}
}

func (a *announcer) iface(dev string) (*ifSocks, error) {
	if s, ok := a.socks[dev]; ok {
		return s, s.openErr
	}
	s := &ifSocks{}
	a.socks[dev] = s
	s.ifi, s.openErr = net.InterfaceByName(dev)
	if s.openErr == nil {
		// net.Interface has no NOARP flag; netlink has the raw flags.
		l, err := netlink.LinkByIndex(s.ifi.Index)
		s.noARP = err == nil && l.Attrs().RawFlags&unix.IFF_NOARP != 0
	}
	return s, s.openErr
}

// send announces vip once on dev, waiting first for the interface's pacing.
// It reports false when the interface takes no ARP.
func (a *announcer) send(ctx context.Context, dev string, vip netip.Addr, interval time.Duration) (bool, error) {
	s, err := a.iface(dev)
	if err != nil {
		return false, err
	}
	if s.noARP {
		return false, nil
	}
	next := &s.next4
	if vip.Is6() {
		next = &s.next6
	}
	if err := sleepUntil(ctx, *next); err != nil {
		return false, err
	}
	if vip.Is6() {
		err = s.sendNA(vip)
	} else {
		err = s.sendARP(vip)
	}
	if interval > 0 {
		*next = time.Now().Add(interval)
	}
	return err == nil, err
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// dropAll is a socket filter that accepts nothing: the ARP socket only
// sends, and must not queue every ARP frame on the link (keepalived's
// if_setsockopt_no_receive).
var dropAll = []bpf.RawInstruction{{Op: unix.BPF_RET | unix.BPF_K, K: 0}}

func (s *ifSocks) sendARP(vip netip.Addr) error {
	if s.arp == nil {
		c, err := packet.Listen(s.ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: dropAll})
		if err != nil {
			return err
		}
		s.arp = c
	}
	f, err := garpFrame(s.ifi.HardwareAddr, vip)
	if err != nil {
		return err
	}
	_, err = s.arp.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// garpFrame is keepalived's gratuitous ARP (send_gratuitous_arp_immediate):
// a broadcast ARP request, not a reply, with sender and target IP both the
// VIP and target MAC the broadcast address. Sender == target is what makes
// it gratuitous to Linux (arp_is_garp): nobody answers it, and a neighbour
// that has an entry for the VIP overrides it at once, locktime or not.
func garpFrame(mac net.HardwareAddr, vip netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, vip, ethernet.Broadcast, vip)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{
		Destination: ethernet.Broadcast,
		Source:      mac,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}
	return f.MarshalBinary()
}

var allNodes = net.ParseIP("ff02::1")

func (s *ifSocks) sendNA(vip netip.Addr) error {
	if s.nd == nil {
		c, err := listenICMPv6()
		if err != nil {
			return err
		}
		s.nd = c
		s.router = ipv6Forwarding(s.ifi.Name)
	}
	b, err := ndp.MarshalMessage(unsolicitedNA(s.ifi.HardwareAddr, vip, s.router))
	if err != nil {
		return err
	}
	// The source is the VIP itself, as keepalived sends it, which the
	// kernel allows because the VIP is on the interface without DAD.
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: vip.AsSlice(), IfIndex: s.ifi.Index}
	// No zone: the control message's index picks the interface. ndp.Conn
	// names the interface in the zone instead, which Go resolves through a
	// process-wide cache that may hold a stale index for a minute after
	// the interface is recreated, or another namespace's interface of the
	// same name; the kernel refuses the mismatch with EINVAL.
	_, err = s.nd.WriteTo(b, cm, &net.IPAddr{IP: allNodes})
	return err
}

// listenICMPv6 opens a send-only ICMPv6 socket set up for NDP: hop limit
// 255 (RFC 4861 drops anything less) and checksums by the kernel.
func listenICMPv6() (*ipv6.PacketConn, error) {
	ic, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, err
	}
	c := ic.IPv6PacketConn()
	// Block every ICMPv6 type so that nothing queues up unread.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	const checksumOffset = 2
	for _, err := range []error{
		c.SetICMPFilter(&f),
		c.SetChecksum(true, checksumOffset),
		c.SetMulticastHopLimit(ndp.HopLimit),
		c.SetHopLimit(ndp.HopLimit),
	} {
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// unsolicitedNA is keepalived's (ndisc_send_unsolicited_na_immediate): to
// all-nodes, override set so that neighbours replace the cached MAC, not
// solicited, router set when the interface forwards IPv6, and the MAC in a
// target link-layer address option.
func unsolicitedNA(mac net.HardwareAddr, vip netip.Addr, router bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Router:        router,
		Override:      true,
		TargetAddress: vip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      mac,
		}},
	}
}

// ipv6Forwarding reads the interface's forwarding sysctl as keepalived's
// set_ipv6_forwarding does; /proc/sys/net resolves in the caller's
// namespace.
func ipv6Forwarding(dev string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/forwarding")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
