package maps

import (
	"errors"
	"testing"
	"time"
)

// fakeKernel is jiffies ticking over a simulated CLOCK_MONOTONIC: they
// start at INITIAL_JIFFIES at start ns and advance every tick; a sample
// costs lat ns, and every preemptEvery-th takes preempt ns more. During
// [lateFrom, lateTo) the jiffies a sample sees lag by late ns (a tick
// handled late).
type fakeKernel struct {
	hz, tick, start        uint64
	now, lat               uint64
	preempt, preemptEvery  uint64
	late, lateFrom, lateTo uint64
	frozen                 bool
	n                      uint64
}

func (k *fakeKernel) initial() uint64 { return 1<<32 - 300*k.hz }

// base is the true one: CLOCK_MONOTONIC at the start of jiffy j is
// j*tick + base.
func (k *fakeKernel) base() uint64 { return k.start - k.initial()*k.tick }

func (k *fakeKernel) sample() (uint64, uint64, error) {
	k.n++
	k.now += k.lat
	if k.preemptEvery != 0 && k.n%k.preemptEvery == 0 {
		k.now += k.preempt
	}
	t := k.now
	if t >= k.lateFrom && t < k.lateTo {
		t -= k.late
	}
	if k.frozen {
		return 7, k.now, nil
	}
	return k.initial() + (t-k.start)/k.tick, k.now, nil
}

func (k *fakeKernel) sleep(d time.Duration) { k.now += uint64(d) }

func TestFindClock(t *testing.T) {
	sec := uint64(time.Second)
	from := func(hz, tick, start, uptime uint64) fakeKernel {
		return fakeKernel{hz: hz, tick: tick, start: start, now: uptime, lat: 1500}
	}
	at := func(hz, tick, uptime uint64) fakeKernel { return from(hz, tick, 260_000_000, uptime) }
	for _, c := range []struct {
		name  string
		k     fakeKernel
		tick  uint64 // 0: an error
		slack uint64 // how late the base may be
	}{
		{name: "HZ 250, up 17 h", k: at(250, 4_000_000, 61_402*sec), tick: 4_000_000, slack: 1500},
		{name: "HZ 1000, up 30 s", k: at(1000, 1_000_000, 30*sec), tick: 1_000_000, slack: 1500},
		{name: "HZ 300, TICK_NSEC rounded", k: at(300, 3_333_333, 61_402*sec), tick: 3_333_333, slack: 1500},
		{name: "HZ 1024 beside 1000", k: at(1024, 976_563, 3600*sec), tick: 976_563, slack: 1500},
		{name: "HZ 100, up 100 s", k: at(100, 10_000_000, 100*sec), tick: 10_000_000, slack: 1500},
		// Near the 300th second the start tells nothing: ticks are timed.
		{name: "HZ 250 timed, up 305 s", k: at(250, 4_000_000, 305*sec), tick: 4_000_000, slack: 1500},
		{name: "HZ 1000 timed, up 290 s", k: at(1000, 1_000_000, 290*sec), tick: 1_000_000, slack: 1500},
		// The tick starting later after CLOCK_MONOTONIC's zero: the
		// neighbouring HZ (256, 1024) must not be taken.
		{name: "HZ 250, tick from 0.6 s, up 265 s", k: from(250, 4_000_000, 600_000_000, 265*sec), tick: 4_000_000, slack: 1500},
		{name: "HZ 250, tick from 3 s, up 200 s", k: from(250, 4_000_000, 3*sec, 200*sec), tick: 4_000_000, slack: 1500},
		{name: "HZ 1000, tick from 0.7 s, up 265 s", k: from(1000, 1_000_000, 700_000_000, 265*sec), tick: 1_000_000, slack: 1500},
		{name: "HZ 256, tick from 0.6 s, up 265 s", k: from(256, 3_906_250, 600_000_000, 265*sec), tick: 3_906_250, slack: 1500},
		// 250 and 256 both fit a start after boot: timed.
		{name: "HZ 250, up 330 s, timed", k: from(250, 4_000_000, 600_000_000, 330*sec), tick: 4_000_000, slack: 1500},
		{
			// A timed edge 10 ms late: that measurement disagrees with
			// the next, and two more agree.
			name: "HZ 250 timed, a late edge",
			k: func() fakeKernel {
				k := at(250, 4_000_000, 305*sec)
				k.late, k.lateFrom, k.lateTo = 10_000_000, k.now+uint64(400*time.Millisecond), k.now+uint64(520*time.Millisecond)
				return k
			}(),
			tick: 4_000_000, slack: 1500,
		},
		{name: "no kernel's HZ", k: at(143, 7_000_000, 305*sec)},
		{name: "jiffies frozen", k: func() fakeKernel { k := at(250, 4_000_000, 61_402*sec); k.frozen = true; return k }()},
		{
			// Every 50th sample preempted for 100 µs, more than half the
			// time: edges straddling
			// one are not timed.
			name: "preempted sampler",
			k: func() fakeKernel {
				k := at(250, 4_000_000, 305*sec)
				k.preempt, k.preemptEvery = 100_000, 50
				return k
			}(),
			tick: 4_000_000, slack: 1500,
		},
		{
			// The first base edge is 1.5 ms late: the least of three
			// bases is kept.
			name: "a late tick",
			k: func() fakeKernel {
				k := at(250, 4_000_000, 61_402*sec)
				k.late, k.lateFrom, k.lateTo = 1_500_000, k.now, k.now+uint64(5*time.Millisecond)
				return k
			}(),
			tick: 4_000_000, slack: 1500,
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
			// Never ahead of CLOCK_MONOTONIC's tick, and late only by
			// the sampling.
			if d := int64(got.Base - k.base()); d < 0 || uint64(d) > c.slack {
				t.Errorf("base off the true one by %d ns, want 0 to %d", d, c.slack)
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
