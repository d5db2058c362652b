package maps

import (
	"errors"
	"testing"
	"time"
)

// fakeKernel is jiffies ticking over a simulated CLOCK_MONOTONIC: jiffy j
// begins at j*tick + base, and a sample costs lat ns. late delays the
// jiffies a sample sees (a tick handled late) during [from, to).
type fakeKernel struct {
	now, lat, tick, base uint64
	late, from, to       uint64
	frozen               bool
}

func (k *fakeKernel) sample() (uint64, uint64, error) {
	k.now += k.lat
	t := k.now
	if t >= k.from && t < k.to {
		t -= k.late
	}
	j := (t - k.base) / k.tick
	if k.frozen {
		j = 7
	}
	return j, k.now, nil
}

func (k *fakeKernel) sleep(d time.Duration) { k.now += uint64(d) }

func TestFindClock(t *testing.T) {
	const base = 123_456_789
	boot := uint64(61_402 * time.Second)
	for _, c := range []struct {
		name     string
		k        fakeKernel
		tick     uint64 // 0: an error
		baseNear uint64 // the base found is within this of the true one
	}{
		{name: "HZ 250", k: fakeKernel{now: boot, lat: 1500, tick: 4_000_000, base: base}, tick: 4_000_000, baseNear: 1500},
		{name: "HZ 1000", k: fakeKernel{now: boot, lat: 1500, tick: 1_000_000, base: base}, tick: 1_000_000, baseNear: 1500},
		{name: "HZ 300, TICK_NSEC rounded", k: fakeKernel{now: boot, lat: 800, tick: 3_333_333, base: base}, tick: 3_333_333, baseNear: 800},
		{name: "HZ 1024 beside 1000", k: fakeKernel{now: boot, lat: 900, tick: 976_563, base: base}, tick: 976_563, baseNear: 900},
		{name: "HZ 100, slow samples", k: fakeKernel{now: boot, lat: 20_000, tick: 10_000_000, base: base}, tick: 10_000_000, baseNear: 20_000},
		{name: "no kernel's HZ", k: fakeKernel{now: boot, lat: 1000, tick: 7_000_000, base: base}},
		{name: "jiffies frozen", k: fakeKernel{now: boot, lat: 1000, tick: 4_000_000, base: base, frozen: true}},
		{
			// The first try's second edge is seen 1.5 ms late: its rate
			// still snaps to 250 but the bases disagree; the next try
			// is clean.
			name: "late edge retried",
			k: fakeKernel{now: boot, lat: 1500, tick: 4_000_000, base: base, late: 1_500_000,
				from: boot + uint64(21*time.Millisecond), to: boot + uint64(40*time.Millisecond)},
			tick: 4_000_000, baseNear: 1500,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := c.k
			got, err := findClock(k.sample, k.sleep)
			if c.tick == 0 {
				if err == nil {
					t.Fatalf("found %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Tick != c.tick {
				t.Errorf("tick %d, want %d", got.Tick, c.tick)
			}
			// A clock that runs ahead of CLOCK_MONOTONIC by more than a
			// sample, or behind it by more than a tick, is wrong.
			if d := int64(got.Base - base); d < 0 || uint64(d) > c.baseNear {
				t.Errorf("base %d off the true one by %d ns, want 0 to %d", got.Base, d, c.baseNear)
			}
		})
	}
}

func TestSnapHZ(t *testing.T) {
	for _, c := range []struct {
		rate float64
		hz   uint64
		ok   bool
	}{
		{250, 250, true}, {251.5, 250, true}, {253, 0, false}, {256.9, 256, true},
		{999, 1000, true}, {1020, 1024, true}, {300.2, 300, true}, {142.9, 0, false},
	} {
		hz, ok := snapHZ(c.rate)
		if hz != c.hz || ok != c.ok {
			t.Errorf("snapHZ(%v) = %d, %v; want %d, %v", c.rate, hz, ok, c.hz, c.ok)
		}
	}
}

func TestFindClockSampleError(t *testing.T) {
	boom := errors.New("boom")
	_, err := findClock(func() (uint64, uint64, error) { return 0, 0, boom }, func(time.Duration) {})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
}
