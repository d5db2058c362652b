package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// L2 is how to reach a real server from the balancer without the kernel:
// which link, whose MAC, and our own address and MTU there.
type L2 struct {
	Ifindex int
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr // the real's, or its gateway's
	SrcIP   netip.Addr       // outer source of TUN packets
	MTU     int
}

// Resolver finds the L2 path to an address.
type Resolver interface {
	Resolve(ctx context.Context, ip netip.Addr) (L2, error)
}

// NetlinkResolver asks the kernel's routing and neighbour tables, and
// resolves a missing neighbour itself with ARP so that DR and TUN reals are
// reachable at once (and NAT's fib lookups find the entry).
type NetlinkResolver struct {
	Log *slog.Logger
}

func (r NetlinkResolver) Resolve(ctx context.Context, ip netip.Addr) (L2, error) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil {
		return L2{}, fmt.Errorf("route to %s: %w", ip, err)
	}
	if len(routes) == 0 {
		return L2{}, fmt.Errorf("no route to %s", ip)
	}
	rt := routes[0]
	if rt.Type == unix.RTN_LOCAL {
		return L2{}, fmt.Errorf("%s is a local address", ip)
	}
	link, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return L2{}, fmt.Errorf("route to %s: link %d: %w", ip, rt.LinkIndex, err)
	}
	attrs := link.Attrs()
	next := ip
	if rt.Gw != nil {
		if gw, ok := netip.AddrFromSlice(rt.Gw); ok {
			next = gw.Unmap()
		}
	}
	src, _ := netip.AddrFromSlice(rt.Src)
	l2 := L2{Ifindex: attrs.Index, SrcMAC: attrs.HardwareAddr, SrcIP: src.Unmap(), MTU: attrs.MTU}

	if mac := neighMAC(attrs.Index, next); mac != nil {
		l2.DstMAC = mac
		return l2, nil
	}
	mac, err := arpResolve(ctx, attrs.Name, next)
	if err != nil {
		return L2{}, fmt.Errorf("resolve %s on %s: %w", next, attrs.Name, err)
	}
	// Tell the kernel too: NAT's bpf_fib_lookup needs the entry, and
	// `ip neigh` should show what we use.
	err = netlink.NeighSet(&netlink.Neigh{
		LinkIndex:    attrs.Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_REACHABLE,
		IP:           next.AsSlice(),
		HardwareAddr: mac,
	})
	if err != nil && r.Log != nil {
		r.Log.Warn("cannot add neighbour entry", "ip", next, "dev", attrs.Name, "err", err)
	}
	l2.DstMAC = mac
	return l2, nil
}

func neighMAC(ifindex int, ip netip.Addr) net.HardwareAddr {
	neighs, err := netlink.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
		netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && n.State&usable != 0 &&
			len(n.HardwareAddr) == 6 {
			return n.HardwareAddr
		}
	}
	return nil
}

func arpResolve(ctx context.Context, ifname string, ip netip.Addr) (net.HardwareAddr, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var last error
	for try := 0; try < 3; try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := c.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			return nil, err
		}
		mac, err := c.Resolve(ip)
		if err == nil {
			return mac, nil
		}
		last = err
	}
	return nil, errors.Join(errors.New("no ARP reply"), last)
}
