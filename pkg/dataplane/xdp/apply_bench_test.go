package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/metrics"
)

// The control plane's benchmarks (issue 11): how long Tables.Apply takes
// for 10, 1,000 and 10,000 reals, how long a one-real weight change takes
// with 10,000 reals present, and what `xlbd status` and a scrape cost while
// a 10,000-real apply runs. Targets: 10,000 reals applied in under 1 s; a
// one-real change under 10 ms; status and scrapes never blocked by an
// apply (their figures during an apply close to their idle ones).
//
// The pools are NAT, so the reals need no MAC, and the lab's fixedResolver
// answers every 10.50.2.x at once: nothing here waits on a network.

// benchShape is how n reals are laid out: 10 services of n/10 reals from
// 1,000 reals up (10,000 is 10 services × 1,000), one service below.
func benchShape(n int) (services, perService int) {
	if n >= 1000 {
		return 10, n / 10
	}
	return 1, n
}

// benchState is a NAT pool of n reals on vipNAT, services on ports 80, 81,
// ..., their schedulers wlc and rr in turn. The reals are 10.50.2.1-250 on
// ports base, base+1, ... (250 addresses per port); two states with
// different bases have no real in common.
func benchState(n int, base uint16) dataplane.State {
	services, per := benchShape(n)
	var st dataplane.State
	for s := 0; s < services; s++ {
		svc := dataplane.Service{VIP: vipNAT, Port: uint16(80 + s), Protocol: 6, Sched: []string{"wlc", "rr"}[s%2],
			Kind: dataplane.NAT, Reals: make([]dataplane.Real, 0, per)}
		for i := 0; i < per; i++ {
			svc.Reals = append(svc.Reals, dataplane.Real{
				Addr: netip.AddrFrom4([4]byte{10, 50, 2, byte(1 + i%250)}), Port: base + uint16(i/250), Weight: 1})
		}
		st.Services = append(st.Services, svc)
	}
	return st
}

// withWeight is a deep copy of st with real r of service s at weight w:
// Tables keeps the state it applied, which must never change under it.
func withWeight(st dataplane.State, s, r, w int) dataplane.State {
	out := st
	out.Services = append([]dataplane.Service(nil), st.Services...)
	out.Services[s].Reals = append([]dataplane.Real(nil), st.Services[s].Reals...)
	out.Services[s].Reals[r].Weight = w
	return out
}

// benchApply applies st in the lab's namespace.
func (l *lab) benchApply(st dataplane.State) error {
	var err error
	l.w.Do(func() { err = l.tables.Apply(context.Background(), st) })
	return err
}

// benchAlternate applies states[1], then states[0] and [1] in turn, b.N
// times, and reports the mean time an apply took.
func (l *lab) benchAlternate(b *testing.B, states []dataplane.State) {
	b.Helper()
	if err := l.benchApply(states[1]); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.benchApply(states[i%2]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
}

// BenchmarkApply is a whole pool changing: each iteration applies a state
// none of whose reals the previous one had (every real added, every old
// one removed), alternating between two such states.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("reals=%d", n), func(b *testing.B) {
			l := newLab(b)
			states := []dataplane.State{benchState(n, 8000), benchState(n, 9000)}
			l.benchAlternate(b, states)
		})
	}
}

// BenchmarkApplyOneWeight is one real's weight changing, 1 to 2 and back,
// with 10,000 reals present: in a wlc service (its weights read from the
// reals map and the tree) and in an rr one (its table built of weights).
func BenchmarkApplyOneWeight(b *testing.B) {
	l := newLab(b)
	base := benchState(10000, 8000)
	for _, c := range []struct {
		sched string
		svc   int
	}{{"wlc", 4}, {"rr", 5}} {
		b.Run("sched="+c.sched, func(b *testing.B) {
			if got := base.Services[c.svc].Sched; got != c.sched {
				b.Fatalf("service %d is %s, want %s", c.svc, got, c.sched)
			}
			states := []dataplane.State{withWeight(base, c.svc, 377, 2), withWeight(base, c.svc, 377, 1)}
			l.benchAlternate(b, states)
		})
	}
}

// BenchmarkStatusDuringApply is what Tables.Status (`xlbd status`) and a
// Prometheus scrape cost with 10,000 reals, idle and while another
// goroutine applies 10,000-real states back to back (BenchmarkApply's
// whole-pool change). ns/op is the mean; max-ms the slowest call, the
// figure a blocked status shows; applies/s how many applies ran meanwhile.
func BenchmarkStatusDuringApply(b *testing.B) {
	l := newLab(b)
	states := []dataplane.State{benchState(10000, 8000), benchState(10000, 9000)}
	if err := l.benchApply(states[0]); err != nil {
		b.Fatal(err)
	}
	be := &Backend{Tables: l.tables, Set: l.set}
	m := metrics.New(be.Status, nil)
	calls := []struct {
		name string
		call func() error
	}{
		{"status", func() error {
			s, err := l.tables.Status()
			if err == nil && len(s) != 10 {
				err = fmt.Errorf("status shows %d services, want 10", len(s))
			}
			return err
		}},
		{"scrape", func() error {
			mfs, err := m.Registry.Gather()
			if err == nil && len(mfs) == 0 {
				err = fmt.Errorf("empty scrape")
			}
			return err
		}},
	}
	for _, c := range calls {
		for _, during := range []bool{false, true} {
			name := c.name + "/idle"
			if during {
				name = c.name + "/during-apply"
			}
			b.Run(name, func(b *testing.B) {
				var applies atomic.Int64
				var applyErr error
				stop := make(chan struct{})
				var wg sync.WaitGroup
				if during {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 1; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							if err := l.benchApply(states[i%2]); err != nil {
								applyErr = err
								return
							}
							applies.Add(1)
						}
					}()
					// Let the first apply get going.
					time.Sleep(time.Millisecond)
				}
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					if err := c.call(); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				b.StopTimer()
				elapsed := b.Elapsed()
				close(stop)
				wg.Wait()
				if applyErr != nil {
					b.Fatal(applyErr)
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				if during {
					b.ReportMetric(float64(applies.Load())/elapsed.Seconds(), "applies/s")
				}
			})
		}
	}
}

// BenchmarkApplyRealDown is what a health checker's verdict costs: one
// real of a 1,000-real service leaves the pool, then comes back, with
// 10,000 reals present in all.
func BenchmarkApplyRealDown(b *testing.B) {
	l := newLab(b)
	base := benchState(10000, 8000)
	for _, c := range []struct {
		sched string
		svc   int
	}{{"wlc", 4}, {"rr", 5}} {
		b.Run("sched="+c.sched, func(b *testing.B) {
			down := base
			down.Services = append([]dataplane.Service(nil), base.Services...)
			down.Services[c.svc].Reals = append(append([]dataplane.Real(nil), base.Services[c.svc].Reals[:377]...),
				base.Services[c.svc].Reals[378:]...)
			states := []dataplane.State{down, base}
			l.benchAlternate(b, states)
		})
	}
}
