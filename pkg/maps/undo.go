package maps

import (
	"errors"
	"reflect"

	"github.com/cilium/ebpf"
)

// What a transactional writer needs to put a map back as it was: reads of
// exactly what it is about to overwrite, in the form it was stored.

// Get reads one service entry; ok is false when there is none.
func (s *Services) Get(k SvcKey) (v SvcVal, ok bool, err error) {
	err = s.m.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false, nil
	}
	return v, err == nil, err
}

// PerCPU reads one id's counters as stored, one value per possible CPU.
func (s *Stats64) PerCPU(id uint32) ([]Stats, error) {
	var per []Stats
	err := s.m.Lookup(id, &per)
	return per, err
}

// PutPerCPU stores what PerCPU read.
func (s *Stats64) PutPerCPU(id uint32, per []Stats) error { return s.m.Put(id, per) }

// Put stores a real's load as read by Get.
func (r *RealLoads) Put(id uint32, v RealLoad) error { return r.m.Put(id, v) }

// Get reads a service's round-robin position.
func (r *RR) Get(svcID uint32) (uint64, error) {
	var v uint64
	err := r.m.Lookup(svcID, &v)
	return v, err
}

// Put stores a round-robin position read by Get.
func (r *RR) Put(svcID uint32, v uint64) error { return r.m.Put(svcID, v) }

// Maps returns every map of the set by name: for tests that compare what
// the maps hold before and after.
func (s *Set) Maps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&s.objs.XlbMaps).Elem()
	for i := 0; i < v.NumField(); i++ {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[v.Type().Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
}

// batchAll reads the first n entries of an array map in batches: for
// readers of many ids, one syscall per batch instead of one per id.
func batchAll[V any](m *ebpf.Map, n int, perCPU bool) ([]V, error) {
	ncpu := 1
	if perCPU {
		c, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, err
		}
		ncpu = c
	}
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]V, chunk*ncpu)
	out := make([]V, 0, n*ncpu)
	var cursor ebpf.MapBatchCursor
	for len(out) < n*ncpu {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		out = append(out, vals[:got*ncpu]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out[:min(len(out), n*ncpu)], nil
}

// AllSums returns the counters of ids [0, n), summed over CPUs.
func (s *Stats64) AllSums(n int) ([]Stats, error) {
	per, err := batchAll[Stats](s.m, n, true)
	if err != nil {
		return nil, err
	}
	ncpu := 1
	if n > 0 {
		ncpu = len(per) / n
	}
	out := make([]Stats, n)
	for i := range out {
		for _, p := range per[i*ncpu : (i+1)*ncpu] {
			out[i].Conns += p.Conns
			out[i].Picks += p.Picks
			out[i].PktsIn += p.PktsIn
			out[i].BytesIn += p.BytesIn
			out[i].PktsOut += p.PktsOut
			out[i].BytesOut += p.BytesOut
		}
	}
	return out, nil
}

// AllVals returns the entries of ids [0, n).
func (r *Reals) AllVals(n int) ([]RealVal, error) { return batchAll[RealVal](r.m, n, false) }

// AllLoads returns the loads of ids [0, n).
func (r *RealLoads) AllLoads(n int) ([]RealLoad, error) { return batchAll[RealLoad](r.m, n, false) }
