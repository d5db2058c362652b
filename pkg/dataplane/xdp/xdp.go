// Package xdp is the data-plane backend that forwards with the XDP balancer
// (bpf/xlb.c). It turns a dataplane.State into the balancer's tables and
// switches configurations with one write of the ctl map.
package xdp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

type svcIdent struct {
	vip   netip.Addr
	port  uint16
	proto uint8
}

type realIdent struct {
	svc  svcIdent
	addr netip.Addr
	port uint16
}

// Tables owns the contents of the balancer's maps: it allocates stable ids
// to services and reals and writes configurations generation by
// generation. It has no links; Backend adds those.
type Tables struct {
	set *maps.Set
	res Resolver
	log *slog.Logger

	mu       sync.Mutex
	gen      uint32
	svcIDs   map[svcIdent]uint32
	realIDs  map[realIdent]uint32
	realVals map[uint32]maps.RealVal
	nextSvc  uint32
	nextReal uint32
	serial   uint32
	state    dataplane.State // as last applied
	// order is each service's reals in IPVS list order: a new real goes to
	// the head (ip_vs_add_dest), and the schedulers' tie-breaking and
	// tables follow this order.
	order map[svcIdent][]realIdent
	// lastWeight is each real's last non-zero weight, which mh keeps
	// tables by so that quiescing does not move other flows.
	lastWeight map[uint32]int
	// pool is each service's members and weights as last written: a change
	// restarts rr and wrr, as in pkg/sched.
	pool map[svcIdent]string
	// treePos is where each real's leaf is in either generation's
	// tournament tree (bpf/xlb_tree.h).
	treePos map[uint32]maps.TreePos
	// vips are the applied services' addresses, read without mu.
	vips atomic.Pointer[map[netip.Addr]bool]
	// snap is what Status reads, without mu.
	snap atomic.Pointer[snapshot]

	usedSvc map[uint32]bool
	// slots are where each service's tables live, the same in both
	// generations; wrote is what each generation holds.
	slots                map[svcIdent]slot
	wrote                [2]map[svcIdent]svcWrite
	ringArena, treeArena arena
	// compacting is set while an Apply lays every service out afresh.
	compacting bool
	// retiredReals and retiredSvcs keep removed reals' and services' ids
	// for them (retiredIDs: the reals' ids), until ids run out.
	retiredReals map[realIdent]retiredReal
	retiredSvcs  map[svcIdent]uint32
	retiredIDs   map[uint32]bool
	tableCache   map[svcIdent]cachedTable
	applied      map[svcIdent]appliedSvc
	// failWrite, for tests, may refuse the nth map write of an Apply.
	failWrite func(n int, what string) error

	// pending are the reals whose next hop's MAC is not known yet, by id:
	// Apply and RefreshL2 put them here, and the resolver task
	// (RunResolver) has the kernel resolve them and publishes each one
	// whose next hop becomes usable.
	pending map[uint32]pendingReal
	// published is closed, and replaced, whenever the resolver task has
	// published.
	published chan struct{}
	// kick wakes the resolver task.
	kick chan struct{}
	// resolving says a resolver task runs.
	resolving atomic.Bool
}

// IsVIP says whether a is the address of an applied virtual service.
func (t *Tables) IsVIP(a netip.Addr) bool {
	v := t.vips.Load()
	return v != nil && (*v)[a]
}

// NewTables takes over set, adopting whatever configuration its (possibly
// pinned) maps already hold, so that ids, flows and counters carry on.
func NewTables(set *maps.Set, res Resolver, log *slog.Logger) (*Tables, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &Tables{
		set:        set,
		res:        res,
		log:        log,
		svcIDs:     map[svcIdent]uint32{},
		realIDs:    map[realIdent]uint32{},
		realVals:   map[uint32]maps.RealVal{},
		order:      map[svcIdent][]realIdent{},
		lastWeight: map[uint32]int{},
		pool:       map[svcIdent]string{},
		treePos:    map[uint32]maps.TreePos{},
		usedSvc:    map[uint32]bool{},
		tableCache: map[svcIdent]cachedTable{},
		slots:      map[svcIdent]slot{},
		wrote:      [2]map[svcIdent]svcWrite{{}, {}},
		ringArena:  newArena(0, maps.RingHalf),
		treeArena:  newArena(1, maps.TreeHalf),

		retiredReals: map[realIdent]retiredReal{},
		retiredSvcs:  map[svcIdent]uint32{},
		retiredIDs:   map[uint32]bool{},
		pending:      map[uint32]pendingReal{},
		published:    make(chan struct{}),
		kick:         make(chan struct{}, 1),
	}
	ctl, err := set.Ctl.Get()
	if err != nil {
		return nil, fmt.Errorf("read ctl: %w", err)
	}
	t.gen = ctl.Gen & 1
	svcs, err := set.Services.All()
	if err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	adoptedMembers := map[svcIdent][]uint32{}
	for k, v := range svcs {
		si := svcIdent{maps.Addr(k.Vip), maps.Port(k.Port), k.Proto}
		g := uint32(k.Gen) & 1
		var leaves uint32
		if v.TreeOff != 0 {
			n, err := set.Trees.Node(g*maps.TreeHalf + v.TreeOff)
			if err != nil {
				return nil, fmt.Errorf("read tree: %w", err)
			}
			leaves = n.W
		}
		if g != t.gen {
			// Its tables are not read back: the next switch rewrites them.
			t.wrote[g][si] = svcWrite{val: v, leaves: leaves}
			continue
		}
		t.svcIDs[si] = v.Id
		t.usedSvc[v.Id] = true
		content, err := set.Ring.Read(t.gen, v.TabOff, v.TabLen+v.MemLen)
		if err != nil {
			return nil, fmt.Errorf("read scheduler tables: %w", err)
		}
		t.wrote[g][si] = svcWrite{val: v, content: content, leaves: leaves}
		// The adopted layout is kept, without room to grow.
		sl := slot{ring: v.TabOff, ringCap: v.TabLen + v.MemLen, tree: v.TreeOff, leaves: leaves}
		t.slots[si] = sl
		t.ringArena.top = max(t.ringArena.top, sl.ring+sl.ringCap)
		if leaves > 0 {
			t.treeArena.top = max(t.treeArena.top, sl.tree+2*leaves)
		}
		adoptedMembers[si] = content[v.TabLen:]
	}
	reals, err := set.Reals.Valid()
	if err != nil {
		return nil, fmt.Errorf("read reals: %w", err)
	}
	for id, v := range reals {
		ri := realIdent{svcIdent{maps.Addr(v.Vip), maps.Port(v.Vport), v.Proto}, maps.Addr(v.Ip), maps.Port(v.Port)}
		t.realIDs[ri] = id
		t.realVals[id] = v
		t.serial = max(t.serial, v.Serial)
		if v.LastWeight > 0 {
			t.lastWeight[id] = int(v.LastWeight)
		}
		if t.treePos[id], err = set.Trees.Pos(id); err != nil {
			return nil, fmt.Errorf("read tree positions: %w", err)
		}
	}
	if t.serial, err = set.Reals.MaxSerial(); err != nil {
		return nil, fmt.Errorf("read reals: %w", err)
	}
	byID := map[uint32]realIdent{}
	for ri, id := range t.realIDs {
		byID[id] = ri
	}
	for si, ids := range adoptedMembers {
		var sig strings.Builder
		for _, id := range ids {
			if ri, ok := byID[id]; ok {
				t.order[si] = append(t.order[si], ri)
				v := t.realVals[id]
				fmt.Fprintf(&sig, "%d:%d:%d:%d,", id, v.Weight, v.Uthreshold, v.Lthreshold)
			}
		}
		// The same pool after a restart is no change: rr keeps its place.
		t.pool[si] = sig.String()
	}
	if len(svcs) > 0 {
		log.Info("adopted data plane state", "services", len(t.svcIDs), "reals", len(t.realIDs))
	}
	t.snap.Store(t.adoptedSnapshot())
	return t, nil
}

// adoptedSnapshot is what Status shows of an adopted data plane until the
// first Apply: its services with the reals they hold and their weights, so
// that a restarted daemon can tell which reals were in service.
func (t *Tables) adoptedSnapshot() *snapshot {
	snap := &snapshot{}
	for si, sid := range t.svcIDs {
		ss := snapService{s: dataplane.Service{VIP: si.vip, Port: si.port, Protocol: si.proto}, id: sid}
		for _, ri := range t.order[si] {
			id := t.realIDs[ri]
			v := t.realVals[id]
			ss.s.Kind = kindOf(maps.Mode(v.Mode))
			ss.s.Reals = append(ss.s.Reals, dataplane.Real{Addr: ri.addr, Port: ri.port, Weight: int(v.Weight),
				UThreshold: int(v.Uthreshold), LThreshold: int(v.Lthreshold)})
			ss.reals = append(ss.reals, id)
		}
		snap.services = append(snap.services, ss)
	}
	slices.SortFunc(snap.services, func(a, b snapService) int { return cmp.Compare(a.id, b.id) })
	return snap
}

func kindOf(m maps.Mode) dataplane.Kind {
	switch m {
	case maps.ModeDR:
		return dataplane.DR
	case maps.ModeTUN:
		return dataplane.TUN
	}
	return dataplane.NAT
}

// allocate returns the first free id at or after *next, wrapping: ids are
// handed out in turn so that a freed one is reused as late as possible.
func allocate(used func(uint32) bool, next *uint32, limit uint32) (uint32, error) {
	for i := uint32(0); i < limit; i++ {
		id := (*next + i) % limit
		if !used(id) {
			*next = (id + 1) % limit
			return id, nil
		}
	}
	return 0, errors.New("no free id")
}

func mode(k dataplane.Kind) (maps.Mode, error) {
	switch k {
	case dataplane.NAT:
		return maps.ModeNAT, nil
	case dataplane.DR:
		return maps.ModeDR, nil
	case dataplane.TUN:
		return maps.ModeTUN, nil
	}
	return 0, fmt.Errorf("unknown forwarding method %v", k)
}

func validate(st dataplane.State) error {
	var errs []error
	seen := map[svcIdent]bool{}
	for _, s := range st.Services {
		id := svcIdent{s.VIP, s.Port, s.Protocol}
		if !s.VIP.Is4() {
			errs = append(errs, fmt.Errorf("%s: only IPv4 virtual services are supported", s.Key()))
		}
		if s.Protocol != 6 && s.Protocol != 17 {
			errs = append(errs, fmt.Errorf("%s: protocol %d is not supported", s.Key(), s.Protocol))
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("%s: listed twice", s.Key()))
		}
		seen[id] = true
		if _, ok := schedKinds[schedName(s.Sched)]; !ok {
			errs = append(errs, fmt.Errorf("%s: scheduler %q is not implemented by the XDP data plane", s.Key(), s.Sched))
		}
		if s.PersistPrefix < 0 || s.PersistPrefix > 32 {
			errs = append(errs, fmt.Errorf("%s: persistence granularity /%d is not an IPv4 prefix", s.Key(), s.PersistPrefix))
		}
		if _, err := mode(s.Kind); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Key(), err))
		}
		for _, r := range s.Reals {
			if !r.Addr.Is4() {
				errs = append(errs, fmt.Errorf("%s: real %s: only IPv4 is supported", s.Key(), r.Addr))
			}
		}
	}
	if len(seen) > maps.MaxServices {
		errs = append(errs, fmt.Errorf("%d services: at most %d are supported", len(seen), maps.MaxServices))
	}
	return errors.Join(errs...)
}

// RefreshTrees rebuilds the active generation's scheduler trees from the
// live counts.
func (t *Tables) RefreshTrees() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.set.Trees.Build(t.gen)
	return err
}

// usesTree says whether a scheduler picks through a tournament tree.
func usesTree(k maps.SchedKind) bool {
	switch k {
	case maps.SchedLC, maps.SchedWLC, maps.SchedSED, maps.SchedNQ, maps.SchedFO, maps.SchedOVF,
		maps.SchedTWOS, maps.SchedLBLC, maps.SchedLBLCR:
		return true
	}
	return false
}

// prefixMask is the IPv4 netmask of a persistence granularity; 0 means the
// whole address.
func prefixMask(bits int) netip.Addr {
	if bits <= 0 || bits > 32 {
		bits = 32
	}
	m := ^uint32(0) << (32 - bits)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
}

func counters(s maps.Stats) dataplane.Counters {
	return dataplane.Counters{Connections: s.Conns, Picks: s.Picks, PacketsIn: s.PktsIn, BytesIn: s.BytesIn,
		PacketsOut: s.PktsOut, BytesOut: s.BytesOut}
}

// withL2 is v with the path l2.
func withL2(v maps.RealVal, l2 L2) maps.RealVal {
	v.Ifindex = uint32(l2.Ifindex)
	v.LbIp = maps.Be32(l2.SrcIP)
	v.Mtu = uint16(min(l2.MTU, 65535))
	v.Dmac, v.Smac = [6]uint8{}, [6]uint8{}
	copy(v.Dmac[:], l2.DstMAC)
	copy(v.Smac[:], l2.SrcMAC)
	return v
}

// RefreshL2 looks up every reachable real again and rewrites
// the entries whose path changed (a real replaced by another machine, a
// new gateway, an MTU change). Configuration and flows are untouched. It
// reads the kernel's tables and never waits on the network: a real whose
// neighbour entry is gone keeps its path and goes to the resolver task,
// which has the kernel resolve it again. The lookups are made without mu.
func (t *Tables) RefreshL2(ctx context.Context) error {
	type seen struct {
		id uint32
		v  maps.RealVal
	}
	var reals []seen
	t.mu.Lock()
	for id, v := range t.realVals {
		// Reals without a MAC are the resolver task's (or Apply's); NAT
		// reals need none, but their path's MTU counts.
		if v.Mode == uint32(maps.ModeNAT) || v.Dmac != [6]uint8{} {
			reals = append(reals, seen{id, v})
		}
	}
	t.mu.Unlock()

	res := resolverFor(t.res)
	found := map[uint32]L2{}
	var waiting []uint32
	for _, r := range reals {
		l2, err := res.Resolve(ctx, maps.Addr(r.v.Ip))
		var unresolved *PendingError
		switch {
		case err == nil:
			found[r.id] = l2
		case errors.As(err, &unresolved) && r.v.Mode != uint32(maps.ModeNAT):
			waiting = append(waiting, r.id)
		}
		// Anything else: keep what worked; Apply reports unreachable reals.
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, r := range reals {
		if t.realVals[r.id] != r.v {
			continue // changed since: an Apply or the resolver task was here
		}
		l2, ok := found[r.id]
		if !ok {
			continue
		}
		nv := withL2(r.v, l2)
		if nv == r.v {
			continue
		}
		if err := t.set.Reals.Put(r.id, nv); err != nil {
			errs = append(errs, err)
			continue
		}
		t.log.Info("real server's path changed", "real", maps.Addr(r.v.Ip), "mac", l2.DstMAC.String(), "ifindex", l2.Ifindex, "mtu", l2.MTU)
		t.realVals[r.id] = nv
	}
	if len(waiting) > 0 {
		byID := map[uint32]realIdent{}
		for ri, id := range t.realIDs {
			byID[id] = ri
		}
		for _, id := range waiting {
			ri, ok := byID[id]
			if _, pending := t.pending[id]; pending || !ok {
				continue
			}
			t.pending[id] = pendingReal{ri: ri, weight: int(t.realVals[id].Weight)}
		}
		t.wake()
	}
	return errors.Join(errs...)
}

// RealID returns the id of a real of a service, for counters and tests.
func (t *Tables) RealID(vip netip.Addr, port uint16, proto uint8, addr netip.Addr, rport uint16) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.realIDs[realIdent{svcIdent{vip, port, proto}, addr, rport}]
	return id, ok
}

// SvcID returns the id of a service.
func (t *Tables) SvcID(vip netip.Addr, port uint16, proto uint8) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.svcIDs[svcIdent{vip, port, proto}]
	return id, ok
}

// Unresolved lists reals that cannot take new flows for want of a MAC and
// that only another Apply can make reachable: those with no route, and,
// when no resolver task runs, those whose neighbour is not resolved (the
// task publishes those by itself).
func (t *Tables) Unresolved() []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	resolving := t.resolving.Load()
	var out []netip.Addr
	for id, v := range t.realVals {
		if _, ok := t.pending[id]; ok && resolving {
			continue
		}
		if v.Mode != uint32(maps.ModeNAT) && v.Dmac == [6]uint8{} {
			out = append(out, maps.Addr(v.Ip))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
