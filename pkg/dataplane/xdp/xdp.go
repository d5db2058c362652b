// Package xdp is the data-plane backend that forwards with the XDP balancer
// (bpf/xlb.c). It turns a dataplane.State into the balancer's tables and
// switches configurations with one write of the ctl map.
package xdp

import (
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
		pending:    map[uint32]pendingReal{},
		published:  make(chan struct{}),
		kick:       make(chan struct{}, 1),
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
		if uint32(k.Gen) == t.gen {
			si := svcIdent{maps.Addr(k.Vip), maps.Port(k.Port), k.Proto}
			t.svcIDs[si] = v.Id
			ids, err := set.Ring.Read(t.gen, v.MemOff, v.MemLen)
			if err != nil {
				return nil, fmt.Errorf("read members: %w", err)
			}
			adoptedMembers[si] = ids
		}
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
	return t, nil
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

func (t *Tables) svcUsed(id uint32) bool {
	for _, v := range t.svcIDs {
		if v == id {
			return true
		}
	}
	return false
}

func (t *Tables) realUsed(id uint32) bool {
	_, ok := t.realVals[id]
	return ok
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

// Apply writes st into the idle generation, switches to it with one write
// of ctl, then retires what st no longer holds. It never waits on the
// network: a real whose next hop's MAC is not known yet is written
// unreachable (weight 0 to the program; NAT reals excepted, the kernel
// resolves theirs) and left to the resolver task.
func (t *Tables) Apply(ctx context.Context, st dataplane.State) error {
	_, err := t.applyFresh(ctx, st)
	return err
}

// applyFresh is Apply, and also returns the reals it left unreachable
// that were not pending before.
func (t *Tables) applyFresh(ctx context.Context, st dataplane.State) ([]uint32, error) {
	if err := validate(st); err != nil {
		return nil, err
	}
	// The lookups, one per address, are made before taking mu.
	res := lookupAll(ctx, t.res, st)
	t.mu.Lock()
	defer t.mu.Unlock()
	pend := map[uint32]pendingReal{}
	switched := false
	defer func() { t.takePending(pend, switched) }()
	err := t.apply(ctx, st, res, pend, &switched)
	var fresh []uint32
	for id, p := range pend {
		if _, ok := t.pending[id]; !ok && p.unusable {
			fresh = append(fresh, id)
		}
	}
	return fresh, err
}

// apply is Apply under mu, with res to find the reals' paths. It notes in
// pend the reals whose next hop's MAC is unknown, and sets *switched when
// the new configuration is in force.
func (t *Tables) apply(ctx context.Context, st dataplane.State, res Resolver, pend map[uint32]pendingReal, switched *bool) error {
	next := t.gen ^ 1
	keepSvc := map[svcIdent]bool{}
	keepReal := map[uint32]bool{}
	var ringOff uint32
	treeOff := uint32(1) // 0 means no tree
	newPos := map[uint32]maps.TreePos{}
	filter := map[uint32]uint8{}
	newOrder := map[svcIdent][]realIdent{}
	newPool := map[svcIdent]string{}
	if err := t.set.Track.Set(trackConfig(st.Timeouts, st.Tuning)); err != nil {
		return fmt.Errorf("write connection tracking configuration: %w", err)
	}

	type pending struct {
		key maps.SvcKey
		val maps.SvcVal
	}
	var svcs []pending
	for _, s := range st.Services {
		si := svcIdent{s.VIP, s.Port, s.Protocol}
		keepSvc[si] = true
		m, _ := mode(s.Kind)
		filter[maps.Bucket(s.VIP)] |= maps.FilterVIP
		if m == maps.ModeNAT {
			for _, r := range s.Reals {
				filter[maps.Bucket(r.Addr)] |= maps.FilterNATReal
			}
		}
		sid, ok := t.svcIDs[si]
		if !ok {
			var err error
			sid, err = allocate(t.svcUsed, &t.nextSvc, maps.MaxServices)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Key(), err)
			}
			if err := t.set.SvcStats.Zero(sid); err != nil {
				return fmt.Errorf("%s: zero counters: %w", s.Key(), err)
			}
			if err := t.set.RR.Reset(sid); err != nil {
				return fmt.Errorf("%s: reset scheduler: %w", s.Key(), err)
			}
			t.svcIDs[si] = sid
		}

		// Reals in IPVS list order: kept ones where they were, new ones
		// pushed on the head one after the other.
		ids := map[realIdent]uint32{}
		usable := map[realIdent]bool{}
		for _, r := range s.Reals {
			id, ok, err := t.putReal(ctx, res, pend, si, sid, m, r, usesTree(schedKinds[schedName(s.Sched)]))
			if err != nil {
				return fmt.Errorf("%s: real %s: %w", s.Key(), netip.AddrPortFrom(r.Addr, r.Port), err)
			}
			keepReal[id] = true
			ri := realIdent{si, r.Addr, r.Port}
			ids[ri] = id
			usable[ri] = ok
		}
		var order []realIdent
		for _, ri := range t.order[si] {
			if _, ok := ids[ri]; ok {
				order = append(order, ri)
			}
		}
		for _, r := range s.Reals {
			ri := realIdent{si, r.Addr, r.Port}
			if !slices.Contains(order, ri) {
				order = append([]realIdent{ri}, order...)
			}
		}
		weights := map[realIdent]int{}
		for _, r := range s.Reals {
			// A real the data plane cannot reach yet takes no new flows.
			if usable[realIdent{si, r.Addr, r.Port}] {
				weights[realIdent{si, r.Addr, r.Port}] = r.Weight
			}
		}
		members := make([]member, len(order))
		memberIDs := make([]uint32, len(order))
		var sig strings.Builder
		for i, ri := range order {
			id := ids[ri]
			w := weights[ri]
			members[i] = member{id: id, addr: ri.addr, port: ri.port, weight: w, lastWeight: t.lastWeight[id]}
			memberIDs[i] = id
			v := t.realVals[id]
			fmt.Fprintf(&sig, "%d:%d:%d:%d,", id, w, v.Uthreshold, v.Lthreshold)
		}
		newOrder[si] = order
		table, flags, err := schedTables(s, members)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Key(), err)
		}
		if uint64(ringOff)+uint64(len(table))+uint64(len(members)) > maps.RingHalf {
			return fmt.Errorf("%s: scheduler tables exceed %d slots", s.Key(), maps.RingHalf)
		}
		if err := t.set.Ring.Write(next, ringOff, table); err != nil {
			return fmt.Errorf("%s: write scheduler table: %w", s.Key(), err)
		}
		memOff := ringOff + uint32(len(table))
		if err := t.set.Ring.Write(next, memOff, memberIDs); err != nil {
			return fmt.Errorf("%s: write members: %w", s.Key(), err)
		}
		if t.pool[si] != sig.String() {
			// rr and wrr restart their sequence on any pool change.
			if err := t.set.RR.Reset(sid); err != nil {
				return fmt.Errorf("%s: reset scheduler: %w", s.Key(), err)
			}
			newPool[si] = sig.String()
		} else {
			newPool[si] = t.pool[si]
		}
		// ip_vs_sched_persist: port-0 and FTP services make templates
		// without a port.
		if s.Port == 0 {
			flags |= maps.SvcAllPorts | maps.SvcTmplNoPort
		}
		if s.Port == 21 {
			flags |= maps.SvcTmplNoPort
		}
		var svcTree uint32
		kind := schedKinds[schedName(s.Sched)]
		if usesTree(kind) {
			leaves := uint32(1)
			for leaves < uint32(len(members)) {
				leaves <<= 1
			}
			base, err := t.set.Trees.SetMeta(next, treeOff, kind, leaves, memOff, sid)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Key(), err)
			}
			for i, id := range memberIDs {
				p := t.treePos[id]
				p.Base[next] = base
				p.Leaf[next] = uint32(i)
				newPos[id] = p
			}
			svcTree = treeOff
			treeOff += 2 * leaves
		}
		svcs = append(svcs, pending{
			key: maps.SvcKey{Vip: maps.Be32(s.VIP), Port: maps.Be16(s.Port), Proto: s.Protocol, Gen: uint8(next)},
			val: maps.SvcVal{
				Id: sid, Sched: uint32(kind), Flags: flags, Mode: uint32(m),
				TabOff: ringOff, TabLen: uint32(len(table)), MemOff: memOff, MemLen: uint32(len(members)),
				PersistMask: maps.Be32(prefixMask(s.PersistPrefix)), PersistTimeout: uint64(s.PersistTimeout),
				TreeOff: svcTree,
			},
		})
		ringOff = memOff + uint32(len(members))
	}

	// Whatever the idle generation still holds is from two configurations
	// ago; clear it before filling it.
	all, err := t.set.Services.All()
	if err != nil {
		return fmt.Errorf("read services: %w", err)
	}
	for k := range all {
		if uint32(k.Gen) == next {
			if err := t.set.Services.Delete(k); err != nil {
				return fmt.Errorf("clear idle services: %w", err)
			}
		}
	}
	for _, p := range svcs {
		if err := t.set.Services.Put(p.key, p.val); err != nil {
			return fmt.Errorf("write service: %w", err)
		}
	}

	// Every real gets its place in the new generation's trees, or none. A
	// removed real's position stays as it was: xlb_tree_fix checks the
	// member list before it touches a leaf.
	var posIDs []uint32
	var posVals []maps.TreePos
	for id := range keepReal {
		p, ok := newPos[id]
		if !ok {
			p = t.treePos[id]
			p.Base[next], p.Leaf[next] = 0, 0
			newPos[id] = p
		}
		if old, ok := t.treePos[id]; !ok || old != p {
			posIDs = append(posIDs, id)
			posVals = append(posVals, p)
		}
	}
	if err := t.set.Trees.SetPos(posIDs, posVals); err != nil {
		return fmt.Errorf("write tree positions: %w", err)
	}
	if _, err := t.set.Trees.Build(next); err != nil {
		return fmt.Errorf("build scheduler trees: %w", err)
	}

	// Until the switch the filter must let both configurations through.
	union := t.set.Filter.Bits()
	for b, v := range filter {
		union[b] |= v
	}
	if err := t.set.Filter.Set(union); err != nil {
		return fmt.Errorf("write address filter: %w", err)
	}

	// The switch: from here on packets see only the new configuration.
	if err := t.set.Ctl.Set(maps.CtlVal{Gen: next}); err != nil {
		return fmt.Errorf("switch generation: %w", err)
	}
	t.gen = next
	*switched = true

	var errs []error
	// Counts that changed between the build and the switch went to the old
	// trees only.
	if _, err := t.set.Trees.Build(next); err != nil {
		errs = append(errs, fmt.Errorf("build scheduler trees: %w", err))
	}
	t.treePos = newPos
	errs = append(errs, t.set.Filter.Set(filter))
	for k := range all {
		if uint32(k.Gen) != next {
			errs = append(errs, t.set.Services.Delete(k))
		}
	}
	for ri, id := range t.realIDs {
		if keepReal[id] {
			continue
		}
		v := t.realVals[id]
		v.Flags = 0
		errs = append(errs, t.set.Reals.Put(id, v))
		delete(t.realIDs, ri)
		delete(t.realVals, id)
		delete(t.lastWeight, id)
	}
	for si := range t.svcIDs {
		if !keepSvc[si] {
			delete(t.svcIDs, si)
		}
	}
	t.state = st
	vips := map[netip.Addr]bool{}
	for _, s := range st.Services {
		vips[s.VIP] = true
	}
	t.vips.Store(&vips)
	t.order = newOrder
	t.pool = newPool
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

// Status reports the services as last applied, with their counters.
func (t *Tables) Status() ([]dataplane.ServiceStatus, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []dataplane.ServiceStatus
	for _, s := range t.state.Services {
		si := svcIdent{s.VIP, s.Port, s.Protocol}
		ss := dataplane.ServiceStatus{VIP: s.VIP, Port: s.Port, Protocol: dataplane.ProtocolName(s.Protocol),
			Sched: schedName(s.Sched), Kind: s.Kind.String(), Persistence: s.PersistTimeout, PersistPrefix: s.PersistPrefix}
		st, err := t.set.SvcStats.Get(t.svcIDs[si])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Key(), err)
		}
		ss.Counters = counters(st)
		for _, r := range s.Reals {
			id := t.realIDs[realIdent{si, r.Addr, r.Port}]
			st, err := t.set.RealStats.Get(id)
			if err != nil {
				return nil, fmt.Errorf("%s: real %s: %w", s.Key(), r.Addr, err)
			}
			v := t.realVals[id]
			load, err := t.set.RealLoad.Get(id)
			if err != nil {
				return nil, fmt.Errorf("%s: real %s: %w", s.Key(), r.Addr, err)
			}
			ss.Reals = append(ss.Reals, dataplane.RealStatus{Addr: r.Addr, Port: r.Port, Weight: r.Weight,
				Counters: counters(st), Reachable: v.Mode == uint32(maps.ModeNAT) || v.Dmac != [6]uint8{},
				ActiveConns: load.Active, InactiveConns: load.Inactive, PersistConns: load.Persist,
				Overloaded: load.Overloaded != 0})
		}
		out = append(out, ss)
	}
	return out, nil
}

func counters(s maps.Stats) dataplane.Counters {
	return dataplane.Counters{Connections: s.Conns, Picks: s.Picks, PacketsIn: s.PktsIn, BytesIn: s.BytesIn,
		PacketsOut: s.PktsOut, BytesOut: s.BytesOut}
}

// putReal makes sure the real has an id and an up-to-date entry. usable
// says whether new flows may go to it (DR and TUN need its MAC). A real
// whose next hop's MAC res does not know yet goes into pend, for the
// resolver task; tree says its service's scheduler reads weights from the
// reals map (rather than from tables built of them).
func (t *Tables) putReal(ctx context.Context, res Resolver, pend map[uint32]pendingReal, si svcIdent, sid uint32,
	m maps.Mode, r dataplane.Real, tree bool) (uint32, bool, error) {
	ri := realIdent{si, r.Addr, r.Port}
	id, known := t.realIDs[ri]
	old := t.realVals[id]

	v := maps.RealVal{
		Vip:        maps.Be32(si.vip),
		Vport:      maps.Be16(si.port),
		Proto:      si.proto,
		Flags:      maps.RealValid,
		Ip:         maps.Be32(r.Addr),
		Port:       maps.Be16(r.Port),
		Mode:       uint32(m),
		SvcId:      sid,
		Weight:     uint32(max(r.Weight, 0)),
		Uthreshold: uint32(max(r.UThreshold, 0)),
		Lthreshold: uint32(max(r.LThreshold, 0)),
	}
	usable := true
	l2, err := res.Resolve(ctx, r.Addr)
	var unresolved *PendingError
	waiting := errors.As(err, &unresolved)
	switch {
	case err == nil:
		v = withL2(v, l2)
	case m == maps.ModeNAT:
		// NAT routes with bpf_fib_lookup per packet; the kernel resolves.
		t.log.Debug("real not resolved yet", "real", r.Addr, "err", err)
	case known && old.Dmac != [6]uint8{}:
		// Keep what worked before a transient failure, or while the
		// kernel resolves a neighbour entry it dropped.
		v.Ifindex, v.LbIp, v.Mtu, v.Dmac, v.Smac = old.Ifindex, old.LbIp, old.Mtu, old.Dmac, old.Smac
	case waiting:
		usable = false
		if _, ok := t.pending[id]; !known || !ok {
			t.log.Warn("real server's MAC not known yet: no new flows until its neighbour resolves", "real", r.Addr,
				"next_hop", unresolved.Next)
		}
	default:
		usable = false
		t.log.Warn("real server unreachable: no new flows until it resolves", "real", r.Addr, "err", err)
	}
	// An unreachable real takes no new flows: weight 0 to the program.
	if !usable {
		v.Weight = 0
	}
	// __ip_vs_update_dest keeps the last non-zero weight (set on add even
	// when zero); mh's table is built from it.
	switch {
	case !known:
		v.LastWeight = v.Weight
	case v.Weight > 0:
		v.LastWeight = v.Weight
	default:
		v.LastWeight = old.LastWeight
	}

	// A changed forwarding method is a different real to the flows that
	// use it: give it a new serial so they reschedule.
	if known && old.Mode == v.Mode {
		v.Serial = old.Serial
		// __ip_vs_update_dest: no upper threshold, or a higher one, ends
		// the overload.
		if v.Uthreshold == 0 || v.Uthreshold > old.Uthreshold {
			if err := t.set.RealLoad.ClearOverload(id); err != nil {
				return 0, false, fmt.Errorf("clear overload: %w", err)
			}
		}
	} else {
		t.serial++
		v.Serial = t.serial
		if known {
			// Its connections no longer count (their serial is the old one).
			if err := t.set.RealLoad.Zero(id); err != nil {
				return 0, false, err
			}
		}
	}
	if !known {
		var err error
		id, err = allocate(t.realUsed, &t.nextReal, maps.MaxReals)
		if err != nil {
			return 0, false, err
		}
		if err := t.set.RealStats.Zero(id); err != nil {
			return 0, false, err
		}
		if err := t.set.RealLoad.Zero(id); err != nil {
			return 0, false, err
		}
	}
	t.lastWeight[id] = int(v.LastWeight)
	if !known || old != v {
		if err := t.set.Reals.Put(id, v); err != nil {
			return 0, false, err
		}
	}
	t.realIDs[ri] = id
	t.realVals[id] = v
	if waiting {
		pend[id] = pendingReal{ri: ri, weight: max(r.Weight, 0), unusable: !usable, tree: tree}
	}
	return id, usable, nil
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

// RefreshL2 looks up every reachable DR and TUN real again and rewrites
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
		// Reals without a MAC are the resolver task's (or Apply's).
		if v.Mode != uint32(maps.ModeNAT) && v.Dmac != [6]uint8{} {
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
		case errors.As(err, &unresolved):
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
