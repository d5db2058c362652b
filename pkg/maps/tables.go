package maps

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	xbpf "github.com/xlbd/xlbd/bpf"

	"github.com/cilium/ebpf"
)

// Ctl is the one-entry switch that says which generation of Services and
// Ring packets use. Writing it is the atomic commit of a configuration.
type Ctl struct{ m *ebpf.Map }

func (c *Ctl) Get() (CtlVal, error) {
	var v CtlVal
	err := c.m.Lookup(uint32(0), &v)
	return v, err
}

func (c *Ctl) Set(v CtlVal) error { return c.m.Put(uint32(0), v) }

// Services maps (generation, VIP, port, protocol) to a service.
type Services struct{ m *ebpf.Map }

func (s *Services) Put(k SvcKey, v SvcVal) error { return s.m.Put(k, v) }

func (s *Services) Delete(k SvcKey) error {
	if err := s.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// All returns every entry of both generations.
func (s *Services) All() (map[SvcKey]SvcVal, error) { return allEntries[SvcKey, SvcVal](s.m) }

// allEntries reads a whole hash map.
func allEntries[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	return out, it.Err()
}

// Ring holds, for each generation, every service's sequence of real ids
// back to back: generation g's slots start at g*RingHalf.
type Ring struct{ m *ebpf.Map }

// Write stores ids from slot gen*RingHalf+off on, in batches.
func (r *Ring) Write(gen uint32, off uint32, ids []uint32) error {
	if len(ids) == 0 {
		return nil
	}
	if uint64(off)+uint64(len(ids)) > RingHalf {
		return fmt.Errorf("ring overflow: %d slots from %d", len(ids), off)
	}
	keys := make([]uint32, len(ids))
	for i := range ids {
		keys[i] = gen*RingHalf + off + uint32(i)
	}
	for len(keys) > 0 {
		n := min(len(keys), 65536)
		if _, err := r.m.BatchUpdate(keys[:n], ids[:n], nil); err != nil {
			return err
		}
		keys, ids = keys[n:], ids[n:]
	}
	return nil
}

// Read returns n slots from gen*RingHalf+off on.
func (r *Ring) Read(gen, off, n uint32) ([]uint32, error) {
	out := make([]uint32, n)
	for i := range out {
		if err := r.m.Lookup(gen*RingHalf+off+uint32(i), &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Reals is indexed by real id.
type Reals struct{ m *ebpf.Map }

func (r *Reals) Put(id uint32, v RealVal) error { return r.m.Put(id, v) }

func (r *Reals) Get(id uint32) (RealVal, error) {
	var v RealVal
	err := r.m.Lookup(id, &v)
	return v, err
}

// MaxSerial is the highest serial any entry, in use or retired, carries:
// a new real must get a higher one, or the flows of a retired real could
// take it for theirs.
func (r *Reals) MaxSerial() (uint32, error) {
	all, err := batchAll[RealVal](r.m, int(r.m.MaxEntries()), false)
	var m uint32
	for _, v := range all {
		m = max(m, v.Serial)
	}
	return m, err
}

// Valid returns every entry in use, by id. The array is read in batches: an
// entry at a time, 65,536 of them take a quarter of a second.
func (r *Reals) Valid() (map[uint32]RealVal, error) {
	all, err := batchAll[RealVal](r.m, int(r.m.MaxEntries()), false)
	if err != nil {
		return nil, err
	}
	out := map[uint32]RealVal{}
	for k, v := range all {
		if v.Flags&RealValid != 0 {
			out[uint32(k)] = v
		}
	}
	return out, nil
}

// RR holds each service's round-robin position.
type RR struct{ m *ebpf.Map }

func (r *RR) Reset(svcID uint32) error { return r.m.Put(svcID, uint64(0)) }

// Conns is the LRU connection table: client 5-tuple to real id.
type Conns struct{ m *ebpf.Map }

func (c *Conns) Lookup(k ConnKey) (ConnVal, error) {
	var v ConnVal
	err := c.m.Lookup(k, &v)
	return v, err
}

// Count returns the number of flows in the table, reading it in batches
// (a walk key by key takes two syscalls per flow).
func (c *Conns) Count() (int, error) { return countEntries[ConnKey, ConnVal](c.m) }

// Capacity is the table's size: new flows are refused when it is full.
func (c *Conns) Capacity() uint32 { return c.m.MaxEntries() }

func countEntries[K, V any](m *ebpf.Map) (int, error) {
	var cursor ebpf.MapBatchCursor
	keys := make([]K, 4096)
	vals := make([]V, 4096)
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Flush removes every entry without giving back what the connections
// hold: for benchmarks and tests that need an empty table.
func (c *Conns) Flush() error {
	var keys []ConnKey
	var k ConnKey
	var v ConnVal
	it := c.m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 65536)
		if _, err := c.m.BatchDelete(keys[:n], nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// NAT is the LRU table of reverse entries for NAT flows, keyed by the
// reply's 5-tuple.
type NAT struct{ m *ebpf.Map }

// Count returns the number of NAT reply entries.
func (n *NAT) Count() (int, error) { return countEntries[ConnKey, NATVal](n.m) }

func (n *NAT) Lookup(k ConnKey) (NATVal, error) {
	var v NATVal
	err := n.m.Lookup(k, &v)
	return v, err
}

// NATReals is nat_reals: the NAT reals a reply finds its connection by,
// without a reverse entry per flow; and nat_slots, its unshared entries
// direct-mapped for the program to find in one load.
type NATReals struct {
	m    *ebpf.Map
	have map[NATRealKey]NATRealVal // what m holds; nil until read
	// slots is never pinned: each program starts with it empty.
	slots     *ebpf.Map
	haveSlots map[uint32]NATSlotVal
}

// natSlotBits is NAT_SLOT_BITS.
const natSlotBits = 16

// NATSlot is the nat_slots index of a real, computed as the program does
// (nat_slot_of) on the raw network-order words of a NATRealKey.
func NATSlot(k NATRealKey) uint32 {
	return ((k.Ip ^ uint32(k.Port) ^ uint32(k.Proto)<<16) * 2654435761) >> (32 - natSlotBits)
}

// wantSlots is what nat_slots should hold for nat_reals' entries want:
// each unshared real in its slot, the first in key order where two meet.
func wantSlots(want map[NATRealKey]NATRealVal) map[uint32]NATSlotVal {
	keys := make([]NATRealKey, 0, len(want))
	for k, v := range want {
		if v.Shared == 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b NATRealKey) int {
		return cmp.Or(cmp.Compare(a.Ip, b.Ip), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
	})
	slots := make(map[uint32]NATSlotVal, len(keys))
	for _, k := range keys {
		i := NATSlot(k)
		if _, taken := slots[i]; taken {
			continue
		}
		slots[i] = NATSlotVal{Ip: k.Ip, Port: k.Port, Proto: k.Proto, Used: 1, RealId: want[k].RealId}
	}
	return slots
}

// Slots returns what nat_slots holds, by index, empty slots left out.
func (n *NATReals) Slots() (map[uint32]NATSlotVal, error) {
	all, err := allEntries[uint32, NATSlotVal](n.slots)
	if err != nil {
		return nil, err
	}
	maps.DeleteFunc(all, func(_ uint32, v NATSlotVal) bool { return v.Used == 0 })
	return all, nil
}

// All returns what the table holds.
func (n *NATReals) All() (map[NATRealKey]NATRealVal, error) {
	return allEntries[NATRealKey, NATRealVal](n.m)
}

// Current is what the table holds, as read once and written since; the
// caller must not change it.
func (n *NATReals) Current() (map[NATRealKey]NATRealVal, error) {
	if n.have == nil {
		have, err := n.All()
		if err != nil {
			return nil, fmt.Errorf("read nat_reals: %w", err)
		}
		n.have = have
	}
	return n.have, nil
}

// Set makes the table hold want, writing only the entries that differ:
// an entry that stays the same is never absent, even for a moment.
func (n *NATReals) Set(want map[NATRealKey]NATRealVal) error {
	if _, err := n.Current(); err != nil {
		return err
	}
	// Slots that change are emptied first and filled last: a real
	// becoming shared is never found unshared in its slot once nat_reals
	// says otherwise.
	slots := wantSlots(want)
	for i, v := range n.haveSlots {
		if w, ok := slots[i]; ok && w == v {
			continue
		}
		if err := n.slots.Put(i, NATSlotVal{}); err != nil {
			return fmt.Errorf("write nat_slots: %w", err)
		}
		delete(n.haveSlots, i)
	}
	for k, v := range want {
		if old, ok := n.have[k]; ok && old == v {
			continue
		}
		if err := n.m.Put(k, v); err != nil {
			return fmt.Errorf("write nat_reals: %w", err)
		}
		n.have[k] = v
	}
	for k := range n.have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := n.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove from nat_reals: %w", err)
		}
		delete(n.have, k)
	}
	for i, v := range slots {
		if _, ok := n.haveSlots[i]; ok {
			continue
		}
		if err := n.slots.Put(i, v); err != nil {
			return fmt.Errorf("write nat_slots: %w", err)
		}
		n.haveSlots[i] = v
	}
	return nil
}

// Stats64 is a per-CPU array of Stats indexed by service or real id.
type Stats64 struct{ m *ebpf.Map }

// Get sums the per-CPU values of one id.
func (s *Stats64) Get(id uint32) (Stats, error) {
	var per []Stats
	if err := s.m.Lookup(id, &per); err != nil {
		return Stats{}, err
	}
	var t Stats
	for _, p := range per {
		t.Conns += p.Conns
		t.Picks += p.Picks
		t.PktsIn += p.PktsIn
		t.BytesIn += p.BytesIn
		t.PktsOut += p.PktsOut
		t.BytesOut += p.BytesOut
	}
	return t, nil
}

// Zero clears one id's counters, before the id is given to a new owner.
func (s *Stats64) Zero(id uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	return s.m.Put(id, make([]Stats, n))
}

// Verdicts counts packets by verdict, per CPU.
type Verdicts struct{ m *ebpf.Map }

// All sums the per-CPU counters, indexed by verdict.
func (v *Verdicts) All() ([]uint64, error) {
	out := make([]uint64, len(VerdictNames))
	for i := range out {
		var per []uint64
		if err := v.m.Lookup(uint32(i), &per); err != nil {
			return nil, err
		}
		for _, c := range per {
			out[i] += c
		}
	}
	return out, nil
}

// VerdictNames are the names of enum verdict in bpf/xlb.c, in order; a test
// checks them against the program's BTF.
var VerdictNames = []string{
	"pass_not_ipv4", "pass_malformed", "pass_fragment", "pass_other_proto", "pass_not_vip",
	"pass_no_real", "pass_no_neigh", "pass_ttl", "fwd_nat", "fwd_nat_reply", "fwd_dr",
	"fwd_tun", "tx_icmp_too_big", "drop_too_big", "drop_no_route", "drop_error", "pass_no_conn",
	"pass_gso", "pass_too_big", "drop_conn_full", "fwd_fragment", "hold_fragment",
}

// RealLoads holds what the schedulers count per real: active, inactive
// and persistent connections, and the overload flag.
type RealLoads struct {
	m     *ebpf.Map
	clear *ebpf.Program
}

// ClearOverload clears a real's overload flag, leaving the counters that
// packets update meanwhile alone.
func (r *RealLoads) ClearOverload(id uint32) error {
	if r.clear == nil {
		return errors.New("read-only maps")
	}
	arg := xbpf.XlbOverloadArg{Id: id}
	_, err := r.clear.Run(&ebpf.RunOptions{Context: arg})
	return err
}

func (r *RealLoads) Get(id uint32) (RealLoad, error) {
	var v RealLoad
	err := r.m.Lookup(id, &v)
	return v, err
}

// Zero clears a real's load before its id goes to a new real.
func (r *RealLoads) Zero(id uint32) error { return r.m.Put(id, RealLoad{}) }

// Track is the connection-tracking configuration: state tables and
// timeouts.
type Track struct{ m *ebpf.Map }

func (t *Track) Set(v TrackCfg) error { return t.m.Put(uint32(0), v) }

func (t *Track) Get() (TrackCfg, error) {
	var v TrackCfg
	err := t.m.Lookup(uint32(0), &v)
	return v, err
}

// Persist is the LRU table of persistence templates.
type Persist struct{ m *ebpf.Map }

// Count returns the number of templates.
func (p *Persist) Count() (int, error) { return countEntries[TmplKey, TmplVal](p.m) }

func (p *Persist) Lookup(k TmplKey) (TmplVal, error) {
	var v TmplVal
	err := p.m.Lookup(k, &v)
	return v, err
}

// GC runs the gc program: what IPVS's timers do to connections, templates
// and lblc entries that expired.
type GC struct {
	prog *ebpf.Program
	// connMax is the connection table's size: over three quarters full,
	// gc sheds half-open entries.
	connMax uint32
}

func (g *GC) Run() (GCResult, error) {
	res := GCResult{ConnMax: g.connMax}
	_, err := g.prog.Run(&ebpf.RunOptions{Context: res, ContextOut: &res})
	return res, err
}

// Filter bits (addr_filter's values).
const (
	FilterVIP     = uint8(xbpf.XlbFilterFlagsFILTER_VIP)
	FilterNATReal = uint8(xbpf.XlbFilterFlagsFILTER_NAT_REAL)
	filterBits    = 16 // FILTER_BITS
)

// Bucket is the filter slot of an address, computed as the program does.
func Bucket(a netip.Addr) uint32 { return (Be32(a) * 2654435761) >> (32 - filterBits) }

// Filter is the program's first look at a packet: per address bucket,
// whether a VIP or a NAT real server may live there. It must cover every
// address the active configuration uses; extra bits only cost a lookup.
type Filter struct {
	m    *ebpf.Map
	have [1 << filterBits]uint8
	read bool
}

// Set makes the filter hold exactly want (bucket -> bits), writing only
// the buckets that change.
func (f *Filter) Set(want map[uint32]uint8) error {
	if !f.read {
		// Start from what the map holds: an adopted data plane keeps its
		// bits. Read in batches: one lookup per bucket takes half a second.
		all, err := batchAll[uint8](f.m, len(f.have), false)
		if err != nil {
			return err
		}
		copy(f.have[:], all)
		f.read = true
	}
	// Compared as arrays: a map lookup per bucket costs milliseconds.
	var next [1 << filterBits]uint8
	for b, v := range want {
		if b < uint32(len(next)) {
			next[b] = v
		}
	}
	var keys []uint32
	var vals []uint8
	for b := range f.have {
		if f.have[b] != next[b] {
			keys = append(keys, uint32(b))
			vals = append(vals, next[b])
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := f.m.BatchUpdate(keys, vals, nil); err != nil {
		return err
	}
	for i, k := range keys {
		f.have[k] = vals[i]
	}
	return nil
}

// Bits returns the current bits of every bucket that has any.
func (f *Filter) Bits() map[uint32]uint8 {
	out := map[uint32]uint8{}
	for b, v := range f.have {
		if v != 0 {
			out[uint32(b)] = v
		}
	}
	return out
}

// Trees holds the tournament trees of the least-connection schedulers
// (bpf/xlb_tree.h): user space places them and says where each real's leaf
// is; the program fills and maintains them.
type Trees struct {
	nodes *ebpf.Map
	pos   *ebpf.Map
	build *ebpf.Program
}

// SetMeta writes node 0 of the tree at gen*TreeHalf+off: the scheduler,
// the number of leaves, where the service's member list starts in the ring
// (memOff, in the same generation) and the service. It returns the tree's
// absolute index, which real positions name.
func (t *Trees) SetMeta(gen, off uint32, kind SchedKind, leaves, memOff, svcID uint32) (uint32, error) {
	if uint64(off)+2*uint64(leaves) > TreeHalf {
		return 0, fmt.Errorf("tree overflow: %d nodes from %d", 2*leaves, off)
	}
	base := gen*TreeHalf + off
	return base, t.nodes.Put(base, TreeNode{Id: uint32(kind), W: leaves, Oh: gen*RingHalf + memOff, Half: svcID})
}

// Node reads one node, by absolute index.
func (t *Trees) Node(i uint32) (TreeNode, error) {
	var n TreeNode
	err := t.nodes.Lookup(i, &n)
	return n, err
}

// SetNode overwrites one node, by absolute index: for tests that play a
// concurrent update leaving a node stale.
func (t *Trees) SetNode(i uint32, n TreeNode) error { return t.nodes.Put(i, n) }

// Pos reads where a real's leaves are.
func (t *Trees) Pos(id uint32) (TreePos, error) {
	var p TreePos
	err := t.pos.Lookup(id, &p)
	return p, err
}

// SetPos writes where reals' leaves are, in one batch.
func (t *Trees) SetPos(ids []uint32, pos []TreePos) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := t.pos.BatchUpdate(ids, pos, nil)
	return err
}

// Build fills every tree of generation gen from the live counts and
// returns how many there are.
func (t *Trees) Build(gen uint32) (uint32, error) {
	if t.build == nil {
		return 0, errors.New("read-only maps")
	}
	arg := xbpf.XlbTreesArg{Gen: gen}
	_, err := t.build.Run(&ebpf.RunOptions{Context: arg, ContextOut: &arg})
	return arg.Built, err
}

// Routes is the NAT route cache's control (route_ctl): its generation,
// which user space bumps whenever routing may have changed, and whether
// routes depend on the destination alone. Generation 0 turns the cache
// off.
type Routes struct{ m *ebpf.Map }

// Get reads the generation and whether caching is allowed.
func (r *Routes) Get() (gen uint32, dstOnly bool, err error) {
	var v xbpf.XlbRtCtl
	err = r.m.Lookup(uint32(0), &v)
	return v.Gen, v.DstOnly != 0, err
}

// Bump makes every cached route stale, and says whether routes may be
// cached at all from now on. It returns the new generation, never 0.
func (r *Routes) Bump(dstOnly bool) (uint32, error) {
	gen, _, err := r.Get()
	if err != nil {
		return 0, err
	}
	gen++
	if gen == 0 {
		gen = 1
	}
	v := xbpf.XlbRtCtl{Gen: gen}
	if dstOnly {
		v.DstOnly = 1
	}
	return gen, r.m.Put(uint32(0), v)
}

// Off turns the cache off: every NAT packet is routed by bpf_fib_lookup.
// The generation stays, so that the next Bump moves past every route
// cached so far, those kept in connections included.
func (r *Routes) Off() error {
	gen, _, err := r.Get()
	if err != nil {
		return err
	}
	return r.m.Put(uint32(0), xbpf.XlbRtCtl{Gen: gen})
}
