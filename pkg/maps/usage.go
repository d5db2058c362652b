package maps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	xbpf "github.com/xlbd/xlbd/bpf"
)

// TableUsage is one of the balancer's tables: how many entries it holds,
// how many are in use, and the kernel memory its map takes.
type TableUsage struct {
	Name string
	// Size is the number of entries the table can hold. For the tables
	// written a generation at a time (services, ring, pick_tree) it is one
	// generation's room, which is what a configuration can use.
	Size int
	// Used is the number of entries in use (-1: unknown); for services,
	// ring and pick_tree, by the active generation.
	Used int
	// Memory is the map's kernel memory in bytes, as the kernel accounts
	// it (memlock in its fdinfo); 0 when the kernel does not say.
	Memory uint64
}

// Usage reports the tables that limit what the data plane holds: the
// sizeable ones (Options) and the fixed arrays indexed by id. counted
// gives entries the caller has counted already, by table name, which are
// not counted again (a count walks the whole table).
func (s *Set) Usage(counted map[string]int) ([]TableUsage, error) {
	m := &s.objs.XlbMaps
	type table struct {
		name  string
		mp    *ebpf.Map
		size  int
		count func() (int, error)
	}
	var tables []table
	add := func(name string, mp *ebpf.Map, count func(*ebpf.Map) (int, error)) {
		tables = append(tables, table{name, mp, int(mp.MaxEntries()), func() (int, error) { return count(mp) }})
	}
	add(xbpf.XlbMapConns, m.Conns, countEntries[ConnKey, ConnVal])
	add(xbpf.XlbMapNat, m.Nat, countEntries[ConnKey, NATVal])
	add(xbpf.XlbMapPersist, m.Persist, countEntries[TmplKey, TmplVal])
	add(xbpf.XlbMapLblcTable, m.LblcTable, countEntries[LBLCKey, LBLCValue])
	add(xbpf.XlbMapFrags, m.Frags, countEntries[FragKey, FragVal])
	add(xbpf.XlbMapPmtu, m.Pmtu, countEntries[xbpf.XlbPmtuKey, xbpf.XlbPmtuVal])
	add(xbpf.XlbMapClientRt, m.ClientRt, countEntries[uint32, xbpf.XlbRtVal])

	gen, svcs, err := s.activeServices()
	if err != nil {
		return nil, err
	}
	var ring, trees int
	for _, v := range svcs {
		ring += int(v.TabLen) + int(v.MemLen)
		if v.TreeOff != 0 {
			n, err := s.Trees.Node(gen*TreeHalf + v.TreeOff)
			if err != nil {
				return nil, fmt.Errorf("read tree of service %d: %w", v.Id, err)
			}
			trees += 2 * int(n.W)
		}
	}
	fixed := func(n int) func() (int, error) { return func() (int, error) { return n, nil } }
	tables = append(tables,
		table{xbpf.XlbMapServices, m.Services, MaxServices, fixed(len(svcs))},
		table{xbpf.XlbMapReals, m.Reals, int(m.Reals.MaxEntries()), func() (int, error) { return countValidReals(m.Reals) }},
		table{xbpf.XlbMapRing, m.Ring, RingHalf, fixed(ring)},
		table{xbpf.XlbMapPickTree, m.PickTree, TreeHalf, fixed(trees)},
	)

	out := make([]TableUsage, 0, len(tables))
	for _, t := range tables {
		u := TableUsage{Name: t.name, Size: t.size, Used: -1, Memory: memlock(t.mp)}
		if n, ok := counted[t.name]; ok {
			u.Used = n
		} else if n, err := t.count(); err == nil {
			u.Used = n
		} else {
			return nil, fmt.Errorf("count %s: %w", t.name, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// activeServices returns the active generation and its services.
func (s *Set) activeServices() (uint32, []SvcVal, error) {
	ctl, err := s.Ctl.Get()
	if err != nil {
		return 0, nil, fmt.Errorf("read ctl: %w", err)
	}
	gen := ctl.Gen & 1
	all, err := s.Services.All()
	if err != nil {
		return 0, nil, fmt.Errorf("read services: %w", err)
	}
	var out []SvcVal
	for k, v := range all {
		if uint32(k.Gen) == gen {
			out = append(out, v)
		}
	}
	return gen, out, nil
}

// countValidReals counts the reals entries in use, in batches.
func countValidReals(m *ebpf.Map) (int, error) {
	var cursor ebpf.MapBatchCursor
	keys := make([]uint32, 4096)
	vals := make([]RealVal, 4096)
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for _, v := range vals[:n] {
			if v.Flags&RealValid != 0 {
				total++
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Memory is the kernel memory, in bytes, of every map of the balancer
// (memlock in each map's fdinfo; 0 when the kernel does not say).
func (s *Set) Memory() uint64 {
	var total uint64
	for _, mp := range s.allMaps() {
		total += memlock(mp)
	}
	return total
}

func memlock(mp *ebpf.Map) uint64 {
	if mp == nil {
		return 0
	}
	info, err := mp.Info()
	if err != nil {
		return 0
	}
	n, _ := info.Memlock()
	return n
}
