package xdp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// applyCases are a starting configuration and the changes an Apply must
// make atomically: each is tried with every one of its map writes failing.
func applyBase() dataplane.State {
	dr := func(h byte, w int) dataplane.Real {
		return dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, 2, h}), Port: 80, Weight: w}
	}
	return dataplane.State{Services: []dataplane.Service{
		{VIP: vipNAT, Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.NAT,
			Reals: []dataplane.Real{real2(11, 1), real2(12, 2), real2(13, 3)}},
		{VIP: vipDR, Port: 80, Protocol: 6, Sched: "wrr", Kind: dataplane.DR, Reals: []dataplane.Real{dr(11, 1), dr(12, 2)}},
		{VIP: vipTUN, Port: 53, Protocol: 17, Sched: "mh", Kind: dataplane.TUN, Reals: []dataplane.Real{dr(13, 1), dr(14, 1)}},
	}}
}

func applyChanges() []struct {
	name   string
	change func(*dataplane.State)
} {
	return []struct {
		name   string
		change func(*dataplane.State)
	}{
		{"wlc weight", func(st *dataplane.State) { st.Services[0].Reals[1].Weight = 7 }},
		{"wrr weight", func(st *dataplane.State) { st.Services[1].Reals[0].Weight = 5 }},
		{"quiesce", func(st *dataplane.State) { st.Services[2].Reals[0].Weight = 0 }},
		{"threshold", func(st *dataplane.State) { st.Services[0].Reals[0].UThreshold = 10 }},
		{"add real", func(st *dataplane.State) {
			st.Services[0].Reals = append(st.Services[0].Reals, real2(14, 1))
		}},
		{"remove real", func(st *dataplane.State) { st.Services[1].Reals = st.Services[1].Reals[:1] }},
		{"add service", func(st *dataplane.State) {
			st.Services = append(st.Services, dataplane.Service{VIP: vipNAT, Port: 443, Protocol: 6, Sched: "lc",
				Kind: dataplane.NAT, Reals: []dataplane.Real{real2(11, 1), real2(14, 1)}})
		}},
		{"remove service", func(st *dataplane.State) { st.Services = st.Services[:2] }},
		{"scheduler", func(st *dataplane.State) { st.Services[1].Sched = "sh" }},
		{"timeouts", func(st *dataplane.State) { st.Timeouts.TCP = time.Minute }},
	}
}

func cloneState(st dataplane.State) dataplane.State {
	c := st
	c.Services = slices.Clone(st.Services)
	for i := range c.Services {
		c.Services[i].Reals = slices.Clone(c.Services[i].Reals)
	}
	return c
}

// An Apply that fails at any of its map writes leaves every map exactly
// as it was, and the next Apply works as if nothing had happened.
func TestApplyFailureLeavesMapsUnchanged(t *testing.T) {
	l := newLab(t)
	base := applyBase()
	l.apply(t, base)
	for _, c := range applyChanges() {
		t.Run(c.name, func(t *testing.T) {
			next := cloneState(base)
			c.change(&next)
			failed := 0
			// A failed Apply must leave the maps as they were, so one
			// dump before the first try serves every try.
			before := dumpMaps(t, l.set, nil)
			beforeActive := dumpMaps(t, l.set, idleTrees(l))
			for n := 1; ; n++ {
				var what string
				l.tables.failWrite = func(i int, w string) error {
					if i == n {
						what = w
						return errors.New("injected")
					}
					return nil
				}
				var err error
				l.w.Do(func() { err = l.tables.Apply(context.Background(), next) })
				l.tables.failWrite = nil
				if err == nil {
					break
				}
				failed++
				want, after := before, dumpMaps(t, l.set, nil)
				if what == "switch generation" {
					// The idle generation's trees were built from the live
					// counts just before the switch; no packet reads them,
					// and the next switch builds them again.
					want, after = beforeActive, dumpMaps(t, l.set, idleTrees(l))
				}
				if diff := diffDumps(want, after); diff != "" {
					t.Fatalf("write %d (%s) failed: %v; the maps changed: %s", n, what, err, diff)
				}
				if what == "switch generation" {
					before = dumpMaps(t, l.set, nil)
				}
				if n > 200 {
					t.Fatal("more than 200 writes for one change")
				}
			}
			if failed == 0 {
				t.Fatalf("the change made no map write")
			}
			t.Logf("%d writes, each made to fail in turn", failed)
			// The change is in force: the counters and the status say so.
			got, err := l.tables.Status()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(next.Services) {
				t.Fatalf("status has %d services, want %d", len(got), len(next.Services))
			}
			// And back, for the next case.
			l.apply(t, base)
		})
	}
}

type mapDump map[string][32]byte

// dumpMaps hashes what every map of the set (but the ring buffer) holds,
// in key order. skip leaves out some keys of a map.
func dumpMaps(t *testing.T, set *maps.Set, skip map[string]func(key []byte) bool) mapDump {
	t.Helper()
	out := mapDump{}
	for name, m := range set.Maps() {
		if m.Type() == ebpf.RingBuf {
			continue
		}
		b, err := dumpMap(m, skip[name])
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		out[name] = b
	}
	return out
}

func dumpMap(m *ebpf.Map, skip func([]byte) bool) ([32]byte, error) {
	keyT := reflect.ArrayOf(int(m.KeySize()), reflect.TypeOf(byte(0)))
	valT := reflect.ArrayOf(int(m.ValueSize()), reflect.TypeOf(byte(0)))
	perCPU := m.Type() == ebpf.PerCPUArray || m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.LRUCPUHash
	ncpu := 1
	if perCPU {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return [32]byte{}, err
		}
		ncpu = n
	}
	type kv struct{ k, v []byte }
	var all []kv
	array := m.Type() == ebpf.Array || m.Type() == ebpf.PerCPUArray
	h := sha256.New()
	const batch = 16384
	ks, vs := int(m.KeySize()), int(m.ValueSize())*ncpu
	keys := reflect.MakeSlice(reflect.SliceOf(keyT), batch, batch)
	vals := reflect.MakeSlice(reflect.SliceOf(valT), batch*ncpu, batch*ncpu)
	// The batches' memory, read as bytes without a reflect call per entry.
	kraw := unsafe.Slice((*byte)(keys.UnsafePointer()), batch*ks)
	vraw := unsafe.Slice((*byte)(vals.UnsafePointer()), batch*vs)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
		if array && skip == nil {
			// Arrays come in key order: hash them as they come.
			h.Write(vraw[:n*vs])
		} else {
			for i := 0; i < n; i++ {
				k := kraw[i*ks : (i+1)*ks]
				if skip != nil && skip(k) {
					continue
				}
				if array {
					h.Write(k)
					h.Write(vraw[i*vs : (i+1)*vs])
					continue
				}
				all = append(all, kv{slices.Clone(k), slices.Clone(vraw[i*vs : (i+1)*vs])})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return [32]byte{}, err
		}
	}
	slices.SortFunc(all, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	for _, e := range all {
		h.Write(e.k)
		h.Write(e.v)
	}
	return [32]byte(h.Sum(nil)), nil
}

// idleTrees leaves out the idle generation's half of the tree nodes.
func idleTrees(l *lab) map[string]func([]byte) bool {
	idle := l.tables.gen ^ 1
	return map[string]func([]byte) bool{"pick_tree": func(k []byte) bool {
		return binary.NativeEndian.Uint32(k)/maps.TreeHalf == idle
	}}
}

func diffDumps(a, b mapDump) string {
	var out []string
	for name := range a {
		if a[name] != b[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprint(out)
}

// A real removed and added back keeps its id and counters (Prometheus
// counters never go backwards), and a change that needs no new tables
// switches nothing.
func TestRealAddedBackKeepsCounters(t *testing.T) {
	l := newLab(t)
	st := natState(real2(11, 1), real2(12, 1))
	l.apply(t, st)
	for i := 0; i < 4; i++ {
		l.sendFlow(t, uint16(41000+i))
	}
	id, ok := l.tables.RealID(vipNAT, 80, 6, netip.MustParseAddr("10.50.2.12"), 8080)
	if !ok {
		t.Fatal("no id for 10.50.2.12")
	}
	before, err := l.set.RealStats.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if before.Conns == 0 {
		t.Fatal("no connection counted for 10.50.2.12")
	}
	l.apply(t, natState(real2(11, 1)))
	l.apply(t, natState(real2(11, 1), real2(14, 1))) // another real meanwhile
	l.apply(t, st)
	id2, _ := l.tables.RealID(vipNAT, 80, 6, netip.MustParseAddr("10.50.2.12"), 8080)
	if id2 != id {
		t.Errorf("added back with id %d, had %d", id2, id)
	}
	after, err := l.set.RealStats.Get(id2)
	if err != nil {
		t.Fatal(err)
	}
	if after.Conns < before.Conns {
		t.Errorf("connections counter went back from %d to %d", before.Conns, after.Conns)
	}
}

// A weight change under a least-connection scheduler rewrites the real's
// entry in place; the generation does not switch.
func TestWeightChangeInPlace(t *testing.T) {
	l := newLab(t)
	st := applyBase()
	l.apply(t, st)
	gen := l.tables.gen
	writes := 0
	l.tables.failWrite = func(int, string) error { writes++; return nil }
	st2 := cloneState(st)
	st2.Services[0].Reals[1].Weight = 9
	l.apply(t, st2)
	l.tables.failWrite = nil
	if l.tables.gen != gen {
		t.Errorf("generation switched for a wlc weight change")
	}
	if writes != 1 {
		t.Errorf("%d map writes for one weight, want 1", writes)
	}
	id, _ := l.tables.RealID(vipNAT, 80, 6, netip.MustParseAddr("10.50.2.12"), 8080)
	v, err := l.set.Reals.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Weight != 9 {
		t.Errorf("weight in the map %d, want 9", v.Weight)
	}
	// The same state again writes nothing.
	writes = 0
	l.tables.failWrite = func(int, string) error { writes++; return nil }
	l.apply(t, st2)
	l.tables.failWrite = nil
	if writes != 0 {
		t.Errorf("%d map writes for an unchanged state", writes)
	}
}

// A real removed and added back before its client's persistence template
// expired gets the client again, as IPVS's dest trash gives it back: the
// template still names its id and serial.
func TestRealAddedBackKeepsTemplates(t *testing.T) {
	l := newLab(t)
	a, b := netip.MustParseAddr("10.50.2.11"), netip.MustParseAddr("10.50.2.12")
	st := func(rs ...dataplane.Real) dataplane.State {
		s := natState(rs...)
		s.Services[0].Sched, s.Services[0].PersistTimeout = "wrr", 300*time.Second
		return s
	}
	l.apply(t, st(real2(11, 5), real2(12, 1)))
	if got := l.sendFlow(t, 41000); got != a {
		t.Fatalf("first flow went to %s, want %s (wrr's heaviest)", got, a)
	}
	l.apply(t, st(real2(12, 1)))
	// Back, now the lighter one: a fresh choice would be the other real.
	l.apply(t, st(real2(11, 1), real2(12, 5)))
	if got := l.sendFlow(t, 41001); got != a {
		t.Errorf("the client's next connection went to %s, want %s (its template's real, added back)", got, a)
	}
	// Another client has no template: wrr picks the heaviest.
	l.apply(t, st(real2(11, 1), real2(12, 5)))
	if got := l.sendFlowFrom(t, netip.MustParseAddr("10.50.0.99"), 41002); got != b {
		t.Errorf("a new client went to %s, want %s", got, b)
	}
}

// countingResolver counts the lookups an Apply makes.
type countingResolver struct {
	Resolver
	n *int
}

func (c countingResolver) Resolve(ctx context.Context, ip netip.Addr) (L2, error) {
	*c.n++
	return c.Resolver.Resolve(ctx, ip)
}

// A weight change looks up no real: the reals that stay keep their paths
// (RefreshL2 follows them). A new real, and a real whose method changes to
// one that needs a MAC, are looked up.
func TestApplyLooksUpOnlyNewPaths(t *testing.T) {
	l := newLab(t)
	n := 0
	l.tables.res = countingResolver{l.tables.res, &n}
	st := applyBase()
	l.apply(t, st)
	if n == 0 {
		t.Fatal("the first apply looked nothing up")
	}
	for _, c := range []struct {
		name   string
		change func(*dataplane.State)
		want   int
	}{
		{"weight", func(st *dataplane.State) { st.Services[0].Reals[1].Weight = 7 }, 0},
		{"new real", func(st *dataplane.State) { st.Services[1].Reals = append(st.Services[1].Reals, real2(15, 1)) }, 1},
		{"NAT to DR", func(st *dataplane.State) { st.Services[0].Kind = dataplane.DR }, 3},
	} {
		next := cloneState(st)
		c.change(&next)
		n = 0
		l.apply(t, next)
		if n != c.want {
			t.Errorf("%s: %d lookups, want %d", c.name, n, c.want)
		}
		st = next
	}
	// The paths kept are the ones the entries hold.
	for _, h := range []byte{11, 12, 13} {
		a := netip.AddrFrom4([4]byte{10, 50, 2, h})
		id, ok := l.tables.RealID(vipNAT, 80, 6, a, 8080)
		if !ok {
			t.Fatalf("%s: no id", a)
		}
		v, err := l.set.Reals.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Dmac != [6]uint8(realMAC(a)) || v.Ifindex != uint32(l.b0) {
			t.Errorf("%s: path %x on %d, want %x on %d", a, v.Dmac, v.Ifindex, realMAC(a), l.b0)
		}
	}
}
