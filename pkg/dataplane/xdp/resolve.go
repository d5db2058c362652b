package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

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

// Resolver finds the L2 path to an address from what the host already
// knows. It must not wait on the network: when the route is known but the
// next hop's MAC is not, it returns a *PendingError, and the resolver task
// (Tables.RunResolver) has the kernel resolve the neighbour.
type Resolver interface {
	Resolve(ctx context.Context, ip netip.Addr) (L2, error)
}

// PendingError says the route to an address is known but its next hop's
// MAC is not (yet).
type PendingError struct {
	Path L2         // without DstMAC
	Next netip.Addr // the neighbour to resolve: the address itself or its gateway
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("neighbour %s (ifindex %d) not resolved yet", e.Next, e.Path.Ifindex)
}

// batcher is a Resolver that can share one reading of the neighbour table
// among the lookups of one Apply.
type batcher interface {
	batch() Resolver
}

// resolverFor returns r's batch form when it has one.
func resolverFor(r Resolver) Resolver {
	if b, ok := r.(batcher); ok {
		return b.batch()
	}
	return r
}

// errNotLookedUp is lookupAll's answer for an address it was not given.
var errNotLookedUp = errors.New("not looked up")

// lookupAll resolves addrs once each, with one reading of each neighbour
// table, and answers from what it found; for any other address it answers
// errNotLookedUp.
func lookupAll(ctx context.Context, r Resolver, addrs []netip.Addr) Resolver {
	r = resolverFor(r)
	found := lookedUp{found: make(map[netip.Addr]lookup, len(addrs))}
	for _, a := range addrs {
		l2, err := r.Resolve(ctx, a)
		found.found[a] = lookup{l2, err}
	}
	return found
}

type lookup struct {
	l2  L2
	err error
}

type lookedUp struct {
	found map[netip.Addr]lookup
}

func (f lookedUp) Resolve(_ context.Context, ip netip.Addr) (L2, error) {
	if l, ok := f.found[ip]; ok {
		return l.l2, l.err
	}
	return L2{}, fmt.Errorf("%s: %w", ip, errNotLookedUp)
}

// Neighbours is what the resolver task asks of the kernel's neighbour
// table.
type Neighbours interface {
	// Solicit asks the kernel to resolve ip on the link, and does not wait.
	Solicit(ifindex int, ip netip.Addr) error
	// Subscribe sends the table's changes to ch until done is closed; it
	// closes ch when it stops (done closed, or an error).
	Subscribe(ch chan<- NeighEvent, done <-chan struct{}) error
}

// NeighEvent is a change of one neighbour entry.
type NeighEvent struct {
	Ifindex int
	IP      netip.Addr
	Usable  bool // has a MAC to send to
}

// usableStates are the neighbour states with a MAC to send to.
const usableStates = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
	netlink.NUD_PERMANENT | netlink.NUD_NOARP

// NetlinkResolver asks the kernel's routing and neighbour tables. A
// missing neighbour is not resolved here: Solicit has the kernel do it
// (`ip neigh replace IP dev X use`), and Subscribe reports when it has.
type NetlinkResolver struct {
	Log *slog.Logger
}

var (
	_ Resolver   = NetlinkResolver{}
	_ Neighbours = NetlinkResolver{}
)

func (r NetlinkResolver) Resolve(ctx context.Context, ip netip.Addr) (L2, error) {
	return r.batch().Resolve(ctx, ip)
}

func (r NetlinkResolver) batch() Resolver {
	return &netlinkBatch{links: map[int]*netlink.LinkAttrs{}, neighs: map[int]map[netip.Addr]net.HardwareAddr{}}
}

// netlinkBatch reads each link and its neighbour table once; routes are
// looked up per address.
type netlinkBatch struct {
	links  map[int]*netlink.LinkAttrs
	neighs map[int]map[netip.Addr]net.HardwareAddr
}

func (b *netlinkBatch) link(ifindex int) (*netlink.LinkAttrs, error) {
	if a, ok := b.links[ifindex]; ok {
		return a, nil
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	b.links[ifindex] = l.Attrs()
	return l.Attrs(), nil
}

func (b *netlinkBatch) neigh(ifindex int, ip netip.Addr) net.HardwareAddr {
	tbl, ok := b.neighs[ifindex]
	if !ok {
		if neighs, err := netlink.NeighList(ifindex, netlink.FAMILY_V4); err == nil {
			tbl = usableNeighs(neighs)
		}
		b.neighs[ifindex] = tbl
	}
	return tbl[ip]
}

// Resolve looks up the route to ip, then the next hop's MAC.
func (b *netlinkBatch) Resolve(ctx context.Context, ip netip.Addr) (L2, error) {
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
	attrs, err := b.link(rt.LinkIndex)
	if err != nil {
		return L2{}, fmt.Errorf("route to %s: link %d: %w", ip, rt.LinkIndex, err)
	}
	next := ip
	if rt.Gw != nil {
		if gw, ok := netip.AddrFromSlice(rt.Gw); ok {
			next = gw.Unmap()
		}
	}
	src, _ := netip.AddrFromSlice(rt.Src)
	l2 := L2{Ifindex: attrs.Index, SrcMAC: attrs.HardwareAddr, SrcIP: src.Unmap(), MTU: attrs.MTU}
	if m := b.neigh(attrs.Index, next); m != nil {
		l2.DstMAC = m
		return l2, nil
	}
	return L2{}, &PendingError{Path: l2, Next: next}
}

// usableNeighs maps the entries of a neighbour table that have a MAC to
// send to.
func usableNeighs(neighs []netlink.Neigh) map[netip.Addr]net.HardwareAddr {
	out := map[netip.Addr]net.HardwareAddr{}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && n.State&usableStates != 0 && len(n.HardwareAddr) == 6 {
			out[a.Unmap()] = n.HardwareAddr
		}
	}
	return out
}

// Solicit is `ip neigh replace IP dev X use`: NTF_USE makes the kernel
// treat the entry as used (neigh_event_send), which creates it when absent
// and, unless it is already resolved or being resolved, sends ARP
// requests (mcast_probes of them, retrans_time apart; then FAILED). It
// changes nothing in an entry that is usable.
func (r NetlinkResolver) Solicit(ifindex int, ip netip.Addr) error {
	return netlink.NeighSet(&netlink.Neigh{
		LinkIndex: ifindex,
		Family:    netlink.FAMILY_V4,
		IP:        ip.AsSlice(),
		Flags:     netlink.NTF_USE,
	})
}

// Subscribe follows the neighbour table of the namespace the daemon runs
// in.
func (r NetlinkResolver) Subscribe(ch chan<- NeighEvent, done <-chan struct{}) error {
	updates := make(chan netlink.NeighUpdate, 1024)
	err := netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{
		ErrorCallback: func(err error) {
			if r.Log != nil {
				r.Log.Debug("neighbour events", "err", err)
			}
		},
	})
	if err != nil {
		close(ch)
		return err
	}
	go func() {
		defer close(ch)
		for u := range updates {
			a, ok := netip.AddrFromSlice(u.IP)
			if !ok || u.Family != netlink.FAMILY_V4 {
				continue
			}
			ev := NeighEvent{Ifindex: u.LinkIndex, IP: a.Unmap(),
				Usable: u.Type == unix.RTM_NEWNEIGH && u.State&usableStates != 0 && len(u.HardwareAddr) == 6}
			select {
			case ch <- ev:
			case <-done:
				return
			}
		}
	}()
	return nil
}
