package xdp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/xlbd/xlbd/pkg/dataplane"
	xmaps "github.com/xlbd/xlbd/pkg/maps"
)

// An Apply works out what differs from what the maps hold and writes only
// that:
//   - Every service keeps its place (a slot) in the ring and in the trees
//     while its tables fit there, the same in both generations, so that a
//     service that did not change needs no write at all.
//   - What each generation holds is remembered (wrote); the idle one is
//     brought up to date only where it differs from what is wanted.
//   - When the active generation already holds every service's tables as
//     wanted (a weight change under a least-connection scheduler, a
//     threshold, a real's path), nothing switches: the real's entry is
//     rewritten in place.
//
// Every write goes through a txn that first reads what it overwrites: an
// Apply that fails before the switch puts every map back as it was, and the
// bookkeeping with it.

// slot is where a service's tables live: ring slots [ring, ring+ringCap)
// and tree nodes [tree, tree+2*leaves), in either generation's half.
type slot struct {
	ring, ringCap uint32
	tree, leaves  uint32 // tree 0: none
}

// svcWrite is what a generation holds for a service.
type svcWrite struct {
	val     xmaps.SvcVal
	content []uint32 // the scheduler table then the member ids; nil: unknown
	leaves  uint32
}

func (a svcWrite) equal(b svcWrite) bool {
	return a.val == b.val && a.leaves == b.leaves && a.content != nil && b.content != nil &&
		slices.Equal(a.content, b.content)
}

// arena hands out power-of-two runs of slots, reusing freed runs of the
// same size first.
type arena struct {
	base, top, limit uint32
	free             map[uint32][]uint32 // size -> offsets
}

func newArena(base, limit uint32) arena {
	return arena{base: base, top: base, limit: limit, free: map[uint32][]uint32{}}
}

func (a *arena) clone() arena {
	c := *a
	c.free = map[uint32][]uint32{}
	for k, v := range a.free {
		c.free[k] = slices.Clone(v)
	}
	return c
}

func (a *arena) alloc(size uint32) (uint32, bool) {
	if f := a.free[size]; len(f) > 0 {
		a.free[size] = f[:len(f)-1]
		return f[len(f)-1], true
	}
	if uint64(a.top)+uint64(size) > uint64(a.limit) {
		return 0, false
	}
	off := a.top
	a.top += size
	return off, true
}

func (a *arena) release(off, size uint32) {
	if size > 0 {
		a.free[size] = append(a.free[size], off)
	}
}

func pow2(n uint32) uint32 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len32(n-1)
}

// txn records how to undo each map write it makes.
type txn struct {
	undo   []func() error
	writes int
	// fail, when set, is asked before each write and may refuse it: tests
	// make every write fail in turn.
	fail func(n int, what string) error
}

// do registers undo, then makes the write op. undo is registered first:
// a write that fails half-way (a batch) is undone too.
func (x *txn) do(what string, undo func() error, op func() error) error {
	x.writes++
	if x.fail != nil {
		if err := x.fail(x.writes, what); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if undo != nil {
		x.undo = append(x.undo, undo)
	}
	if err := op(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (x *txn) rollback() error {
	var errs []error
	for i := len(x.undo) - 1; i >= 0; i-- {
		errs = append(errs, x.undo[i]())
	}
	return errors.Join(errs...)
}

// book is the part of Tables an Apply changes, saved before it starts so
// that a failed Apply leaves it as it was.
type book struct {
	gen                       uint32
	svcIDs                    map[svcIdent]uint32
	usedSvc                   map[uint32]bool
	realIDs                   map[realIdent]uint32
	realVals                  map[uint32]xmaps.RealVal
	nextSvc, nextReal, serial uint32
	order                     map[svcIdent][]realIdent
	lastWeight                map[uint32]int
	pool                      map[svcIdent]string
	treePos                   map[uint32]xmaps.TreePos
	slots                     map[svcIdent]slot
	wrote                     [2]map[svcIdent]svcWrite
	ring, tree                arena
	retiredReals              map[realIdent]retiredReal
	retiredSvcs               map[svcIdent]uint32
	retiredIDs                map[uint32]bool
	applied                   map[svcIdent]appliedSvc
}

func (t *Tables) save() book {
	return book{
		gen: t.gen, svcIDs: maps.Clone(t.svcIDs), usedSvc: maps.Clone(t.usedSvc), realIDs: maps.Clone(t.realIDs),
		realVals: maps.Clone(t.realVals), nextSvc: t.nextSvc, nextReal: t.nextReal, serial: t.serial,
		order: maps.Clone(t.order), lastWeight: maps.Clone(t.lastWeight), pool: maps.Clone(t.pool),
		treePos: maps.Clone(t.treePos), slots: maps.Clone(t.slots),
		wrote: [2]map[svcIdent]svcWrite{maps.Clone(t.wrote[0]), maps.Clone(t.wrote[1])},
		ring:  t.ringArena.clone(), tree: t.treeArena.clone(),
		retiredReals: maps.Clone(t.retiredReals), retiredSvcs: maps.Clone(t.retiredSvcs), retiredIDs: maps.Clone(t.retiredIDs),
		applied: t.applied,
	}
}

func (t *Tables) restore(b book) {
	t.gen, t.svcIDs, t.usedSvc, t.realIDs, t.realVals = b.gen, b.svcIDs, b.usedSvc, b.realIDs, b.realVals
	t.nextSvc, t.nextReal, t.serial = b.nextSvc, b.nextReal, b.serial
	t.order, t.lastWeight, t.pool, t.treePos = b.order, b.lastWeight, b.pool, b.treePos
	t.slots, t.wrote, t.ringArena, t.treeArena = b.slots, b.wrote, b.ring, b.tree
	t.retiredReals, t.retiredSvcs, t.retiredIDs = b.retiredReals, b.retiredSvcs, b.retiredIDs
	t.applied = b.applied
}

// retiredReal is a removed real whose id is kept for it as long as ids
// last: added back (keepalived's default when a checker fails), it gets
// its id, counters and serial again, so /metrics carries on where it was
// and its persistence templates that have not expired are its own again,
// as with IPVS's dest trash (its flows too, but only those that sent
// nothing while it was out: a packet then starts its flow over).
type retiredReal struct {
	id  uint32
	val xmaps.RealVal
}

// appliedSvc is a service as the last Apply planned it. The same service
// again is not planned again: its want and its reals' ids are taken as
// they were, so an Apply costs little for the services that did not change
// (their reals are not even looked up: RefreshL2 and the resolver task
// follow the paths of reals that stay).
type appliedSvc struct {
	spec     dataplane.Service // Reals cloned
	resolved bool              // every real had a path
	ids      []uint32          // each real's id, in spec order
	want     want
}

func sameService(a, b *dataplane.Service) bool {
	return a.VIP == b.VIP && a.Port == b.Port && a.Protocol == b.Protocol && a.Sched == b.Sched &&
		slices.Equal(a.SchedFlags, b.SchedFlags) && a.Kind == b.Kind && a.PersistTimeout == b.PersistTimeout &&
		a.PersistPrefix == b.PersistPrefix && slices.Equal(a.Reals, b.Reals)
}

// unchanged returns how the last Apply planned s when s is as it was then
// and every real of it had a path.
func (t *Tables) unchanged(si svcIdent, s *dataplane.Service) (appliedSvc, bool) {
	a, ok := t.applied[si]
	if !ok || t.compacting || !a.resolved || !sameService(&a.spec, s) {
		return appliedSvc{}, false
	}
	return a, true
}

// toLookUp is the addresses an Apply of st must look up: those of reals
// of changed services that have no path yet (new, added back, or without
// the MAC their forwarding method needs). A real that stays keeps its
// path; RefreshL2 and the resolver task follow it.
func (t *Tables) toLookUp(st dataplane.State) []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for i := range st.Services {
		s := &st.Services[i]
		si := svcIdent{s.VIP, s.Port, s.Protocol}
		if _, ok := t.unchanged(si, s); ok {
			continue
		}
		m, _ := mode(s.Kind)
		for _, r := range s.Reals {
			if seen[r.Addr] {
				continue
			}
			if id, ok := t.realIDs[realIdent{si, r.Addr, r.Port}]; ok && hasPath(t.realVals[id], m) {
				continue
			}
			seen[r.Addr] = true
			out = append(out, r.Addr)
		}
	}
	return out
}

// hasPath says whether v has the path its method needs: its MAC for DR and
// TUN; NAT routes per packet.
func hasPath(v xmaps.RealVal, m xmaps.Mode) bool {
	return v.Mode == uint32(m) && (m == xmaps.ModeNAT || v.Dmac != [6]uint8{})
}

// pathOf is the path v holds.
func pathOf(v xmaps.RealVal) L2 {
	return L2{Ifindex: int(v.Ifindex), SrcMAC: net.HardwareAddr(v.Smac[:]), DstMAC: net.HardwareAddr(v.Dmac[:]),
		SrcIP: xmaps.Addr(v.LbIp), MTU: int(v.Mtu)}
}

// want is a service as an Apply wants it in the maps.
type want struct {
	si  svcIdent
	w   svcWrite
	pos map[uint32]uint32 // member id -> leaf, for tree schedulers
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
	// The lookups, one per address of the services that changed, are made
	// before taking mu.
	res := lookupAll(ctx, t.res, t.toLookUp(st))
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
// the new configuration is in force. Until then, an error puts the maps and
// the bookkeeping back as they were.
func (t *Tables) apply(ctx context.Context, st dataplane.State, res Resolver, pend map[uint32]pendingReal, switched *bool) error {
	err := t.applyOnce(ctx, st, res, pend, switched)
	if !errors.Is(err, errRelayout) {
		return err
	}
	// Freed slots left the ring or the trees too full of holes: every
	// service is laid out afresh, packed, in the idle generation.
	t.log.Info("laying out every service's scheduler tables afresh")
	t.slots = map[svcIdent]slot{}
	t.ringArena, t.treeArena = newArena(0, xmaps.RingHalf), newArena(1, xmaps.TreeHalf)
	t.compacting = true
	defer func() { t.compacting = false }()
	return t.applyOnce(ctx, st, res, pend, switched)
}

func (t *Tables) applyOnce(ctx context.Context, st dataplane.State, res Resolver, pend map[uint32]pendingReal, switched *bool) (err error) {
	saved := t.save()
	x := &txn{fail: t.failWrite}
	committed := false
	defer func() {
		if err == nil || committed {
			return
		}
		if uerr := x.rollback(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("putting the maps back: %w", uerr))
		}
		t.restore(saved)
		clear(pend)
	}()

	if err := t.writeTrack(x, st); err != nil {
		return err
	}
	wants, keepReal, filter, err := t.plan(ctx, x, st, res, pend)
	if err != nil {
		return err
	}

	// The active generation may hold every service as wanted already:
	// what changed (a real's entry) is in force, and nothing switches.
	if t.holds(t.gen, wants) {
		if err := t.retire(x, keepReal); err != nil {
			return err
		}
		committed = true
		*switched = true
		t.finish(st)
		if _, err := t.set.Trees.Build(t.gen); err != nil {
			return fmt.Errorf("build scheduler trees: %w", err)
		}
		return t.writeNATReals(st)
	}

	next := t.gen ^ 1
	if err := t.writeGen(x, next, wants, keepReal); err != nil {
		return err
	}
	// Until the switch the filter must let both configurations through.
	union := t.set.Filter.Bits()
	for b, v := range filter {
		union[b] |= v
	}
	if err := t.writeFilter(x, union); err != nil {
		return err
	}
	if err := x.do("build scheduler trees", nil, func() error {
		_, err := t.set.Trees.Build(next)
		return err
	}); err != nil {
		return err
	}
	oldCtl, err := t.set.Ctl.Get()
	if err != nil {
		return fmt.Errorf("read ctl: %w", err)
	}
	// The switch: from here on packets see only the new configuration.
	if err := x.do("switch generation", func() error { return t.set.Ctl.Set(oldCtl) },
		func() error { return t.set.Ctl.Set(xmaps.CtlVal{Gen: next}) }); err != nil {
		return err
	}
	committed = true
	t.gen = next
	*switched = true

	var errs []error
	// Counts that changed between the build and the switch went to the old
	// trees only.
	if _, err := t.set.Trees.Build(next); err != nil {
		errs = append(errs, fmt.Errorf("build scheduler trees: %w", err))
	}
	errs = append(errs, t.set.Filter.Set(filter))
	errs = append(errs, t.retire(&txn{}, keepReal))
	t.finish(st)
	errs = append(errs, t.writeNATReals(st))
	return errors.Join(errs...)
}

// writeNATReals points nat_reals at the NAT reals of the configuration in
// force, once it is: until then a new flow to a real not in it gets a
// reverse entry, and a reply from a removed real finds no valid real. An
// address (with port and protocol) that several NAT services' reals share
// is marked shared, and keeps the real id it had, whose flows may still
// rely on it.
func (t *Tables) writeNATReals(st dataplane.State) error {
	have, err := t.set.NATReals.Current()
	if err != nil {
		return err
	}
	want := make(map[xmaps.NATRealKey]xmaps.NATRealVal, len(have))
	for _, s := range st.Services {
		if m, _ := mode(s.Kind); m != xmaps.ModeNAT {
			continue
		}
		a := t.applied[svcIdent{s.VIP, s.Port, s.Protocol}]
		for i, r := range a.spec.Reals {
			if r.Port == 0 || i >= len(a.ids) {
				continue
			}
			k := xmaps.NATRealKey{Ip: xmaps.Be32(r.Addr), Port: xmaps.Be16(r.Port), Proto: s.Protocol}
			id := a.ids[i]
			v, seen := want[k]
			switch {
			case !seen:
				v.RealId = id
			case v.Shared == 0:
				v.Shared = 1
				fallthrough
			default:
				if old, ok := have[k]; ok && old.RealId == id {
					v.RealId = id
				}
			}
			want[k] = v
		}
	}
	if err := t.set.NATReals.Set(want); err != nil {
		return fmt.Errorf("nat_reals: %w", err)
	}
	return nil
}

// writeTrack writes the connection-tracking configuration if it changed.
func (t *Tables) writeTrack(x *txn, st dataplane.State) error {
	want := trackConfig(st.Timeouts, st.Tuning)
	old, err := t.set.Track.Get()
	if err != nil {
		return fmt.Errorf("read connection tracking configuration: %w", err)
	}
	if old == want {
		return nil
	}
	return x.do("write connection tracking configuration", func() error { return t.set.Track.Set(old) },
		func() error { return t.set.Track.Set(want) })
}

// plan gives every service and real its id and entry (writing the reals'
// entries, which the active generation reads as soon as they change) and
// works out each service's tables, slot and tree positions.
func (t *Tables) plan(ctx context.Context, x *txn, st dataplane.State, res Resolver, pend map[uint32]pendingReal) (
	[]want, map[uint32]bool, map[uint32]uint8, error) {
	keepReal := map[uint32]bool{}
	filter := map[uint32]uint8{}
	newOrder := map[svcIdent][]realIdent{}
	newPool := map[svcIdent]string{}
	newApplied := make(map[svcIdent]appliedSvc, len(st.Services))
	wants := make([]want, 0, len(st.Services))
	for i := range st.Services {
		s := &st.Services[i]
		si := svcIdent{s.VIP, s.Port, s.Protocol}
		m, _ := mode(s.Kind)
		filter[xmaps.Bucket(s.VIP)] |= xmaps.FilterVIP
		if m == xmaps.ModeNAT {
			for _, r := range s.Reals {
				filter[xmaps.Bucket(r.Addr)] |= xmaps.FilterNATReal
			}
		}
		if a, ok := t.unchanged(si, s); ok {
			for _, id := range a.ids {
				keepReal[id] = true
			}
			newOrder[si], newPool[si], newApplied[si] = t.order[si], t.pool[si], a
			wants = append(wants, a.want)
			continue
		}
		sid, err := t.serviceID(x, si)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", s.Key(), err)
		}
		kind := schedKinds[schedName(s.Sched)]
		tree := usesTree(kind)

		// Reals in IPVS list order: kept ones where they were, new ones
		// pushed on the head one after the other.
		ids := make(map[realIdent]uint32, len(s.Reals))
		weights := make(map[realIdent]int, len(s.Reals))
		a := appliedSvc{spec: *s, resolved: true, ids: make([]uint32, len(s.Reals))}
		a.spec.Reals, a.spec.SchedFlags = slices.Clone(s.Reals), slices.Clone(s.SchedFlags)
		for i, r := range s.Reals {
			var path lookup
			id, usable, err := t.putReal(ctx, x, res, pend, si, sid, m, r, tree, &path)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: real %s: %w", s.Key(), netip.AddrPortFrom(r.Addr, r.Port), err)
			}
			a.ids[i] = id
			a.resolved = a.resolved && path.err == nil
			keepReal[id] = true
			ri := realIdent{si, r.Addr, r.Port}
			ids[ri] = id
			// A real the data plane cannot reach yet takes no new flows.
			if usable {
				weights[ri] = r.Weight
			}
		}
		order := make([]realIdent, 0, len(s.Reals))
		for _, ri := range t.order[si] {
			if _, ok := ids[ri]; ok {
				order = append(order, ri)
			}
		}
		if len(order) < len(s.Reals) {
			var added []realIdent
			kept := make(map[realIdent]bool, len(order))
			for _, ri := range order {
				kept[ri] = true
			}
			for _, r := range s.Reals {
				if ri := (realIdent{si, r.Addr, r.Port}); !kept[ri] {
					kept[ri] = true
					added = append(added, ri)
				}
			}
			slices.Reverse(added)
			order = append(added, order...)
		}
		newOrder[si] = order

		members := make([]member, len(order))
		memberIDs := make([]uint32, len(order))
		sig := make([]byte, 0, 16*len(order))
		for i, ri := range order {
			id := ids[ri]
			w := weights[ri]
			members[i] = member{id: id, addr: ri.addr, port: ri.port, weight: w, lastWeight: t.lastWeight[id]}
			memberIDs[i] = id
			v := t.realVals[id]
			sig = appendUints(sig, ':', uint64(id), uint64(w), uint64(v.Uthreshold), uint64(v.Lthreshold))
		}
		table, flags, err := t.schedTables(si, s, members, string(sig))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", s.Key(), err)
		}
		if t.pool[si] != string(sig) && kind == xmaps.SchedSequence {
			// rr and wrr restart their sequence on any pool change.
			if err := t.resetRR(x, sid); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", s.Key(), err)
			}
		}
		newPool[si] = string(sig)
		// ip_vs_sched_persist: port-0 and FTP services make templates
		// without a port.
		if s.Port == 0 {
			flags |= xmaps.SvcAllPorts | xmaps.SvcTmplNoPort
		}
		if s.Port == 21 {
			flags |= xmaps.SvcTmplNoPort
		}
		var leaves uint32
		if tree {
			leaves = pow2(uint32(len(members)))
		}
		sl, err := t.place(si, uint32(len(table)+len(members)), leaves)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", s.Key(), err)
		}
		content := append(slices.Clip(table), memberIDs...)
		w := want{si: si, w: svcWrite{
			content: content, leaves: leaves,
			val: xmaps.SvcVal{
				Id: sid, Sched: uint32(kind), Flags: flags, Mode: uint32(m),
				TabOff: sl.ring, TabLen: uint32(len(table)), MemOff: sl.ring + uint32(len(table)), MemLen: uint32(len(members)),
				PersistMask: xmaps.Be32(prefixMask(s.PersistPrefix)), PersistTimeout: uint64(s.PersistTimeout),
				TreeOff: sl.tree,
			},
		}}
		if tree {
			w.pos = make(map[uint32]uint32, len(memberIDs))
			for i, id := range memberIDs {
				w.pos[id] = uint32(i)
			}
		}
		wants = append(wants, w)
		a.want = w
		newApplied[si] = a
	}
	// Slots of services no longer configured go back to the arenas.
	for si, sl := range t.slots {
		if _, ok := newPool[si]; !ok {
			t.unplace(si, sl)
		}
	}
	for si := range t.tableCache {
		if _, ok := newPool[si]; !ok {
			delete(t.tableCache, si)
		}
	}
	t.order, t.pool, t.applied = newOrder, newPool, newApplied
	return wants, keepReal, filter, nil
}

// serviceID returns a service's id, giving a new service a fresh one (or
// the one it had, if it was removed and its id is still free).
func (t *Tables) serviceID(x *txn, si svcIdent) (uint32, error) {
	if sid, ok := t.svcIDs[si]; ok {
		return sid, nil
	}
	if sid, ok := t.retiredSvcs[si]; ok {
		delete(t.retiredSvcs, si)
		t.svcIDs[si], t.usedSvc[sid] = sid, true
		return sid, t.resetRR(x, sid)
	}
	sid, err := allocate(func(id uint32) bool { return t.usedSvc[id] }, &t.nextSvc, xmaps.MaxServices)
	if err != nil {
		// Ids kept for removed services go before a new one is refused.
		for rsi, id := range t.retiredSvcs {
			delete(t.usedSvc, id)
			delete(t.retiredSvcs, rsi)
		}
		if sid, err = allocate(func(id uint32) bool { return t.usedSvc[id] }, &t.nextSvc, xmaps.MaxServices); err != nil {
			return 0, fmt.Errorf("service ids exhausted (%d): %w", xmaps.MaxServices, err)
		}
	}
	old, err := t.set.SvcStats.PerCPU(sid)
	if err != nil {
		return 0, fmt.Errorf("read counters: %w", err)
	}
	if err := x.do("zero service counters", func() error { return t.set.SvcStats.PutPerCPU(sid, old) },
		func() error { return t.set.SvcStats.Zero(sid) }); err != nil {
		return 0, err
	}
	if err := t.resetRR(x, sid); err != nil {
		return 0, err
	}
	t.svcIDs[si], t.usedSvc[sid] = sid, true
	return sid, nil
}

func (t *Tables) resetRR(x *txn, sid uint32) error {
	old, err := t.set.RR.Get(sid)
	if err != nil {
		return fmt.Errorf("read scheduler position: %w", err)
	}
	return x.do("reset scheduler", func() error { return t.set.RR.Put(sid, old) },
		func() error { return t.set.RR.Reset(sid) })
}

// place returns the service's slot, moving it when its tables outgrew it.
// When the arenas are full it lays every service out afresh.
func (t *Tables) place(si svcIdent, ringLen, leaves uint32) (slot, error) {
	sl, ok := t.slots[si]
	if ok && ringLen <= sl.ringCap && leaves == sl.leaves {
		return sl, nil
	}
	if ok {
		t.unplace(si, sl)
	}
	// Room to grow, except when packing everything afresh.
	sl = slot{ringCap: pow2(max(ringLen, 1)), leaves: leaves}
	if t.compacting {
		sl.ringCap = max(ringLen, 1)
	}
	var got bool
	if sl.ring, got = t.ringArena.alloc(sl.ringCap); !got {
		if ringLen > xmaps.RingHalf {
			return slot{}, fmt.Errorf("scheduler tables of %d slots exceed the ring's %d", ringLen, xmaps.RingHalf)
		}
		sl.ringCap = ringLen
		if sl.ring, got = t.ringArena.alloc(sl.ringCap); !got {
			return slot{}, t.compact()
		}
	}
	if leaves > 0 {
		if sl.tree, got = t.treeArena.alloc(2 * leaves); !got {
			t.ringArena.release(sl.ring, sl.ringCap)
			return slot{}, t.compact()
		}
	}
	t.slots[si] = sl
	return sl, nil
}

func (t *Tables) unplace(si svcIdent, sl slot) {
	t.ringArena.release(sl.ring, sl.ringCap)
	if sl.leaves > 0 {
		t.treeArena.release(sl.tree, 2*sl.leaves)
	}
	delete(t.slots, si)
}

// errRelayout says the arenas filled up with holes: the Apply starts again
// with every service laid out afresh.
var errRelayout = errors.New("relayout")

func (t *Tables) compact() error {
	if t.compacting {
		return errors.New("scheduler tables exceed the ring or the trees")
	}
	return errRelayout
}

// holds says whether generation g holds every wanted service as wanted,
// and nothing else.
func (t *Tables) holds(g uint32, wants []want) bool {
	if len(t.wrote[g]) != len(wants) {
		return false
	}
	for _, w := range wants {
		have, ok := t.wrote[g][w.si]
		if !ok || !have.equal(w.w) {
			return false
		}
		if w.pos != nil {
			for id, leaf := range w.pos {
				p := t.treePos[id]
				if p.Base[g] != g*xmaps.TreeHalf+w.w.val.TreeOff || p.Leaf[g] != leaf {
					return false
				}
			}
		}
	}
	return true
}

// writeGen makes the idle generation g hold the wanted services, writing
// only where it differs.
func (t *Tables) writeGen(x *txn, g uint32, wants []want, keepReal map[uint32]bool) error {
	keep := make(map[svcIdent]bool, len(wants))
	for _, w := range wants {
		keep[w.si] = true
		key := xmaps.SvcKey{Vip: xmaps.Be32(w.si.vip), Port: xmaps.Be16(w.si.port), Proto: w.si.proto, Gen: uint8(g)}
		have, ok := t.wrote[g][w.si]
		if ok && have.equal(w.w) {
			continue
		}
		var known []uint32
		if ok && have.val.TabOff == w.w.val.TabOff {
			known = have.content
		}
		if err := t.writeRing(x, g, w.w.val.TabOff, w.w.content, known); err != nil {
			return fmt.Errorf("%s: %w", dataplane.ServiceKey(w.si.vip, w.si.port, w.si.proto), err)
		}
		if w.w.leaves > 0 {
			base := g*xmaps.TreeHalf + w.w.val.TreeOff
			old, err := t.set.Trees.Node(base)
			if err != nil {
				return fmt.Errorf("read tree: %w", err)
			}
			if err := x.do("write tree", func() error { return t.set.Trees.SetNode(base, old) }, func() error {
				_, err := t.set.Trees.SetMeta(g, w.w.val.TreeOff, xmaps.SchedKind(w.w.val.Sched), w.w.leaves, w.w.val.MemOff, w.w.val.Id)
				return err
			}); err != nil {
				return err
			}
		}
		if err := t.putService(x, key, w.w.val); err != nil {
			return err
		}
		t.wrote[g][w.si] = w.w
	}
	for si := range t.wrote[g] {
		if keep[si] {
			continue
		}
		key := xmaps.SvcKey{Vip: xmaps.Be32(si.vip), Port: xmaps.Be16(si.port), Proto: si.proto, Gen: uint8(g)}
		old, ok, err := t.set.Services.Get(key)
		if err != nil {
			return fmt.Errorf("read service: %w", err)
		}
		if ok {
			if err := x.do("delete service", func() error { return t.set.Services.Put(key, old) },
				func() error { return t.set.Services.Delete(key) }); err != nil {
				return err
			}
		}
		delete(t.wrote[g], si)
	}

	// Every real gets its place in the new generation's trees, or none. A
	// removed real's position stays as it was: xlb_tree_fix checks the
	// member list before it touches a leaf.
	var ids []uint32
	var vals, olds []xmaps.TreePos
	newPos := map[uint32]xmaps.TreePos{}
	for _, w := range wants {
		for id, leaf := range w.pos {
			p := t.treePos[id]
			p.Base[g], p.Leaf[g] = g*xmaps.TreeHalf+w.w.val.TreeOff, leaf
			newPos[id] = p
		}
	}
	for id := range keepReal {
		p, ok := newPos[id]
		if !ok {
			p = t.treePos[id]
			p.Base[g], p.Leaf[g] = 0, 0
		}
		if old, ok := t.treePos[id]; !ok || old != p {
			old, err := t.set.Trees.Pos(id)
			if err != nil {
				return fmt.Errorf("read tree positions: %w", err)
			}
			ids, vals, olds = append(ids, id), append(vals, p), append(olds, old)
		}
		t.treePos[id] = p
	}
	if len(ids) > 0 {
		if err := x.do("write tree positions", func() error { return t.set.Trees.SetPos(ids, olds) },
			func() error { return t.set.Trees.SetPos(ids, vals) }); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tables) writeRing(x *txn, g, off uint32, content, known []uint32) error {
	// What the generation is known to hold there need not be read back.
	n := min(len(known), len(content))
	rest, err := t.set.Ring.Read(g, off+uint32(n), uint32(len(content)-n))
	if err != nil {
		return fmt.Errorf("read scheduler table: %w", err)
	}
	old := append(slices.Clone(known[:n]), rest...)
	if slices.Equal(old, content) {
		return nil
	}
	return x.do("write scheduler table", func() error { return t.set.Ring.Write(g, off, old) },
		func() error { return t.set.Ring.Write(g, off, content) })
}

func (t *Tables) putService(x *txn, key xmaps.SvcKey, val xmaps.SvcVal) error {
	old, ok, err := t.set.Services.Get(key)
	if err != nil {
		return fmt.Errorf("read service: %w", err)
	}
	undo := func() error { return t.set.Services.Delete(key) }
	if ok {
		undo = func() error { return t.set.Services.Put(key, old) }
	}
	return x.do("write service", undo, func() error { return t.set.Services.Put(key, val) })
}

func (t *Tables) writeFilter(x *txn, want map[uint32]uint8) error {
	old := t.set.Filter.Bits()
	return x.do("write address filter", func() error { return t.set.Filter.Set(old) },
		func() error { return t.set.Filter.Set(want) })
}

// writeReal writes a real's entry, remembering the old one.
func (t *Tables) writeReal(x *txn, id uint32, v xmaps.RealVal) error {
	old, err := t.set.Reals.Get(id)
	if err != nil {
		return fmt.Errorf("read real: %w", err)
	}
	if old == v {
		return nil
	}
	return x.do("write real", func() error { return t.set.Reals.Put(id, old) },
		func() error { return t.set.Reals.Put(id, v) })
}

// retire marks the reals no longer configured invalid (their flows let go)
// and keeps their ids for them; services no longer configured keep theirs.
func (t *Tables) retire(x *txn, keepReal map[uint32]bool) error {
	var errs []error
	for ri, id := range t.realIDs {
		if keepReal[id] {
			continue
		}
		v := t.realVals[id]
		v.Flags = 0
		if err := t.writeReal(x, id, v); err != nil {
			errs = append(errs, err)
			continue
		}
		t.retiredReals[ri] = retiredReal{id: id, val: v}
		t.retiredIDs[id] = true
		delete(t.realIDs, ri)
		delete(t.realVals, id)
		delete(t.lastWeight, id)
	}
	for si, sid := range t.svcIDs {
		if _, ok := t.pool[si]; !ok {
			delete(t.svcIDs, si)
			t.retiredSvcs[si] = sid
		}
	}
	return errors.Join(errs...)
}

// finish records st as applied and publishes what readers without mu see.
func (t *Tables) finish(st dataplane.State) {
	t.state = st
	vips := map[netip.Addr]bool{}
	for _, s := range st.Services {
		vips[s.VIP] = true
	}
	t.vips.Store(&vips)
	snap := &snapshot{services: make([]snapService, 0, len(st.Services))}
	for _, s := range st.Services {
		si := svcIdent{s.VIP, s.Port, s.Protocol}
		ss := snapService{s: s, id: t.svcIDs[si], reals: t.applied[si].ids}
		snap.services = append(snap.services, ss)
	}
	t.snap.Store(snap)
}

// putReal makes sure the real has an id and an up-to-date entry. usable
// says whether new flows may go to it (DR and TUN need its MAC). A real
// whose next hop's MAC res does not know yet goes into pend, for the
// resolver task; tree says its service's scheduler reads weights from the
// reals map (rather than from tables built of them). path is set to what
// res said of the real.
func (t *Tables) putReal(ctx context.Context, x *txn, res Resolver, pend map[uint32]pendingReal, si svcIdent, sid uint32,
	m xmaps.Mode, r dataplane.Real, tree bool, path *lookup) (uint32, bool, error) {
	ri := realIdent{si, r.Addr, r.Port}
	id, known := t.realIDs[ri]
	old := t.realVals[id]
	retired, back := t.retiredReals[ri]
	if !known && back {
		// Added back: its id, counters and serial are still its own.
		id, old = retired.id, retired.val
	}

	v := xmaps.RealVal{
		Vip:        xmaps.Be32(si.vip),
		Vport:      xmaps.Be16(si.port),
		Proto:      si.proto,
		Flags:      xmaps.RealValid,
		Ip:         xmaps.Be32(r.Addr),
		Port:       xmaps.Be16(r.Port),
		Mode:       uint32(m),
		SvcId:      sid,
		Weight:     uint32(max(r.Weight, 0)),
		Uthreshold: uint32(max(r.UThreshold, 0)),
		Lthreshold: uint32(max(r.LThreshold, 0)),
	}
	usable := true
	l2, err := res.Resolve(ctx, r.Addr)
	if errors.Is(err, errNotLookedUp) {
		if known && hasPath(old, m) {
			l2, err = pathOf(old), nil
		} else {
			// The state changed since the lookups were chosen.
			l2, err = t.res.Resolve(ctx, r.Addr)
		}
	}
	*path = lookup{l2, err}
	var unresolved *PendingError
	waiting := errors.As(err, &unresolved)
	switch {
	case err == nil:
		v = withL2(v, l2)
	case m == xmaps.ModeNAT:
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
	case !known && !back:
		v.LastWeight = v.Weight
	case v.Weight > 0:
		v.LastWeight = v.Weight
	default:
		v.LastWeight = old.LastWeight
	}

	fresh := !known && !back
	// A changed forwarding method is a different real to the flows that
	// use it: give it a new serial so they reschedule.
	if !fresh && old.Mode == v.Mode {
		v.Serial = old.Serial
		// __ip_vs_update_dest, which keepalived calls when a real's
		// settings change: no upper threshold, or a higher one, ends the
		// overload.
		if (old.Uthreshold != v.Uthreshold || old.Weight != v.Weight) && (v.Uthreshold == 0 || v.Uthreshold > old.Uthreshold) {
			load, err := t.set.RealLoad.Get(id)
			if err != nil {
				return 0, false, fmt.Errorf("read load: %w", err)
			}
			if load.Overloaded != 0 {
				if err := x.do("clear overload", func() error { return t.set.RealLoad.Put(id, load) },
					func() error { return t.set.RealLoad.ClearOverload(id) }); err != nil {
					return 0, false, err
				}
			}
		}
	} else {
		t.serial++
		v.Serial = t.serial
	}
	if fresh {
		if id, err = t.realID(); err != nil {
			return 0, false, err
		}
	}
	if !known && back {
		delete(t.retiredReals, ri)
		delete(t.retiredIDs, id)
	}
	if fresh || old.Mode != v.Mode {
		// A new owner of the id, or its connections no longer count
		// (their serial is the old one).
		if err := t.zeroReal(x, id, fresh); err != nil {
			return 0, false, err
		}
	}
	t.lastWeight[id] = int(v.LastWeight)
	// What the map holds for a known real is what was written last.
	if fresh || old != v {
		if err := t.writeReal(x, id, v); err != nil {
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

// realID allocates an id for a new real: ids kept for removed reals go
// only when no other is left.
func (t *Tables) realID() (uint32, error) {
	used := func(id uint32) bool { _, ok := t.realVals[id]; return ok || t.retiredIDs[id] }
	id, err := allocate(used, &t.nextReal, xmaps.MaxReals)
	if err == nil {
		return id, nil
	}
	clear(t.retiredReals)
	clear(t.retiredIDs)
	if id, err = allocate(used, &t.nextReal, xmaps.MaxReals); err != nil {
		return 0, fmt.Errorf("real server ids exhausted (%d): %w", xmaps.MaxReals, err)
	}
	return id, nil
}

// zeroReal clears a real's load, and its counters when stats says so.
func (t *Tables) zeroReal(x *txn, id uint32, stats bool) error {
	if stats {
		old, err := t.set.RealStats.PerCPU(id)
		if err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		if err := x.do("zero real counters", func() error { return t.set.RealStats.PutPerCPU(id, old) },
			func() error { return t.set.RealStats.Zero(id) }); err != nil {
			return err
		}
	}
	load, err := t.set.RealLoad.Get(id)
	if err != nil {
		return fmt.Errorf("read load: %w", err)
	}
	return x.do("zero real load", func() error { return t.set.RealLoad.Put(id, load) },
		func() error { return t.set.RealLoad.Zero(id) })
}

// snapshot is what Status reads without mu: the services as last applied
// and their ids.
type snapshot struct {
	services []snapService
}

type snapService struct {
	s     dataplane.Service
	id    uint32
	reals []uint32
}

// Status reports the services as last applied, with their counters. It
// never waits for an Apply. Many reals are read in batches: a scrape of
// 10,000 reals takes a few syscalls, not 30,000.
func (t *Tables) Status() ([]dataplane.ServiceStatus, error) {
	snap := t.snap.Load()
	if snap == nil {
		return nil, nil
	}
	rd, err := t.readReals(snap)
	if err != nil {
		return nil, err
	}
	out := make([]dataplane.ServiceStatus, 0, len(snap.services))
	for _, sv := range snap.services {
		s := sv.s
		ss := dataplane.ServiceStatus{VIP: s.VIP, Port: s.Port, Protocol: dataplane.ProtocolName(s.Protocol),
			Sched: schedName(s.Sched), Kind: s.Kind.String(), Persistence: s.PersistTimeout, PersistPrefix: s.PersistPrefix}
		st, err := t.set.SvcStats.Get(sv.id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Key(), err)
		}
		ss.Counters = counters(st)
		ss.Reals = make([]dataplane.RealStatus, 0, len(s.Reals))
		for i, r := range s.Reals {
			st, v, load, err := rd(sv.reals[i])
			if err != nil {
				return nil, fmt.Errorf("%s: real %s: %w", s.Key(), r.Addr, err)
			}
			ss.Reals = append(ss.Reals, dataplane.RealStatus{Addr: r.Addr, Port: r.Port, Weight: r.Weight,
				Counters: counters(st), Reachable: v.Mode == uint32(xmaps.ModeNAT) || v.Dmac != [6]uint8{},
				ActiveConns: load.Active, InactiveConns: load.Inactive, PersistConns: load.Persist,
				Overloaded: load.Overloaded != 0})
		}
		out = append(out, ss)
	}
	return out, nil
}

// batchReals is how many reals make Status read whole arrays in batches
// rather than entry by entry.
const batchReals = 64

// readReals returns a reader of one real's counters, entry and load.
func (t *Tables) readReals(snap *snapshot) (func(id uint32) (xmaps.Stats, xmaps.RealVal, xmaps.RealLoad, error), error) {
	n, top := 0, uint32(0)
	for _, sv := range snap.services {
		n += len(sv.reals)
		for _, id := range sv.reals {
			top = max(top, id)
		}
	}
	if n < batchReals {
		return func(id uint32) (xmaps.Stats, xmaps.RealVal, xmaps.RealLoad, error) {
			st, err := t.set.RealStats.Get(id)
			if err != nil {
				return st, xmaps.RealVal{}, xmaps.RealLoad{}, err
			}
			v, err := t.set.Reals.Get(id)
			if err != nil {
				return st, v, xmaps.RealLoad{}, err
			}
			load, err := t.set.RealLoad.Get(id)
			return st, v, load, err
		}, nil
	}
	stats, err := t.set.RealStats.AllSums(int(top) + 1)
	if err != nil {
		return nil, fmt.Errorf("read real counters: %w", err)
	}
	vals, err := t.set.Reals.AllVals(int(top) + 1)
	if err != nil {
		return nil, fmt.Errorf("read reals: %w", err)
	}
	loads, err := t.set.RealLoad.AllLoads(int(top) + 1)
	if err != nil {
		return nil, fmt.Errorf("read real loads: %w", err)
	}
	return func(id uint32) (xmaps.Stats, xmaps.RealVal, xmaps.RealLoad, error) {
		if int(id) >= len(stats) || int(id) >= len(vals) || int(id) >= len(loads) {
			return xmaps.Stats{}, xmaps.RealVal{}, xmaps.RealLoad{}, fmt.Errorf("id %d not read", id)
		}
		return stats[id], vals[id], loads[id], nil
	}, nil
}

// cachedTable is a service's scheduler table and the inputs it was built
// from: a service whose pool did not change is not built again.
type cachedTable struct {
	key   string
	table []uint32
	flags uint32
}

func (t *Tables) schedTables(si svcIdent, s *dataplane.Service, members []member, pool string) ([]uint32, uint32, error) {
	key := fmt.Appendf(make([]byte, 0, len(pool)+8*len(members)+64), "%s|%v|%d|%d|%d|%s|",
		s.Sched, s.SchedFlags, s.PersistTimeout, s.PersistPrefix, s.Kind, pool)
	for _, m := range members {
		key = appendUints(key, ',', uint64(m.lastWeight))
	}
	if c, ok := t.tableCache[si]; ok && c.key == string(key) {
		return c.table, c.flags, nil
	}
	table, flags, err := schedTables(*s, members)
	if err != nil {
		return nil, 0, err
	}
	t.tableCache[si] = cachedTable{key: string(key), table: table, flags: flags}
	return table, flags, nil
}

// appendUints appends vs in decimal, each followed by sep but the last,
// which a comma ends.
func appendUints(b []byte, sep byte, vs ...uint64) []byte {
	for i, v := range vs {
		b = strconv.AppendUint(b, v, 10)
		if i < len(vs)-1 {
			b = append(b, sep)
		}
	}
	return append(b, ',')
}
