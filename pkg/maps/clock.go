package maps

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	xbpf "github.com/xlbd/xlbd/bpf"
)

// JiffyClock is the packets' clock (now_ns in bpf/xlb_maps.h): CLOCK_MONOTONIC
// as of the last tick is Jiffies*Tick + Base, modulo 2^64. Both are fixed for
// the boot: jiffies advance by whole ticks of CLOCK_MONOTONIC.
type JiffyClock struct {
	Tick uint64 // TICK_NSEC, (1e9 + HZ/2) / HZ
	Base uint64
}

// Now is the clock at jiffies j.
func (c JiffyClock) Now(j uint64) uint64 { return j*c.Tick + c.Base }

// kernelHZ are the values CONFIG_HZ takes on any architecture. A measured
// rate is snapped to one of them, so that the tick is exact rather than
// off by the measurement's error, which would grow with uptime.
var kernelHZ = []float64{24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 512, 1000, 1024, 1200}

// clockSampler reads jiffies and CLOCK_MONOTONIC's ns together, jiffies first.
type clockSampler func() (jiffies, ns uint64, err error)

// findClock finds HZ from where jiffies started, else by timing ticks, and
// the base from the tick edges it sees: each edge's time is that of the
// first sample to see it, so a base is late by a sample's latency plus
// however late the kernel was with that tick, never early; the least of
// three is kept.
func findClock(sample clockSampler, sleep func(time.Duration)) (JiffyClock, error) {
	j, t, err := sample()
	if err != nil {
		return JiffyClock{}, err
	}
	hz, ok := hzFromBoot(j, t)
	if !ok {
		if hz, err = hzFromTicks(sample, sleep); err != nil {
			return JiffyClock{}, err
		}
	}
	tick := (1_000_000_000 + hz/2) / hz
	var best JiffyClock
	for i := range 3 {
		j, t, _, err := nextEdge(sample)
		if err != nil {
			return JiffyClock{}, err
		}
		c := JiffyClock{tick, t - j*tick}
		if i == 0 || int64(c.Base-best.Base) < 0 {
			best = c
		}
	}
	return best, nil
}

// hzFromBoot reads HZ off the jiffies themselves: jiffies_64 starts at
// INITIAL_JIFFIES, (u32)(-300*HZ) (include/linux/jiffies.h), as
// CLOCK_MONOTONIC starts, so at t ns it is about 2^32 + HZ*(t/1e9 - 300).
// Not within 30 s of the 300th second, where both sides are near 0 and
// the ticks counted before the clock started weigh too much.
func hzFromBoot(j, t uint64) (uint64, bool) {
	secs := float64(t)/1e9 - 300
	if math.Abs(secs) < 30 {
		return 0, false
	}
	return snapHZ(float64(int64(j)-1<<32) / secs)
}

// ticksSpan is how long between the two tick edges hzFromTicks times: a
// sample's few microseconds are then far below the 2.4 % that separate
// the closest candidates (250 and 256, 1000 and 1024).
const ticksSpan = 50 * time.Millisecond

// hzFromTicks times two clean edges ticksSpan apart; a late one (the
// machine busy) shows as a rate no kernel has, and it tries again.
func hzFromTicks(sample clockSampler, sleep func(time.Duration)) (uint64, error) {
	var why error
	for range 5 {
		j1, t1, _, err := nextEdge(sample)
		if err != nil {
			return 0, err
		}
		sleep(ticksSpan)
		j2, t2, _, err := nextEdge(sample)
		if err != nil {
			return 0, err
		}
		if j2 <= j1 || t2 <= t1 {
			why = fmt.Errorf("clock went backwards: jiffies %d then %d", j1, j2)
			continue
		}
		if hz, ok := snapHZ(float64(j2-j1) * 1e9 / float64(t2-t1)); ok {
			return hz, nil
		}
		why = fmt.Errorf("%d jiffies in %d ns is no kernel's HZ", j2-j1, t2-t1)
	}
	return 0, why
}

// cleanEdge is the most time between the last sample of one jiffy and the
// first of the next for that edge to be timed: more, and the sampler was
// preempted in between.
const cleanEdge = 50 * time.Microsecond

// nextEdge samples until jiffies move by one between two samples at most
// cleanEdge apart, and returns the later sample and the gap.
func nextEdge(sample clockSampler) (j, t, gap uint64, err error) {
	pj, pt, err := sample()
	if err != nil {
		return 0, 0, 0, err
	}
	start := pt
	for {
		j, t, err := sample()
		if err != nil {
			return 0, 0, 0, err
		}
		if j == pj+1 && t-pt <= uint64(cleanEdge) {
			return j, t, t - pt, nil
		}
		// The slowest CONFIG_HZ ticks every 42 ms.
		if t-start > uint64(time.Second) {
			return 0, 0, 0, errors.New("no clean jiffy edge in 1 s")
		}
		pj, pt = j, t
	}
}

// snapHZ is the CONFIG_HZ value within 1 % of a measured rate.
func snapHZ(rate float64) (uint64, bool) {
	for _, hz := range kernelHZ {
		if math.Abs(rate-hz) <= hz/100 {
			return uint64(hz), true
		}
	}
	return 0, false
}

var (
	clockOnce  sync.Once
	clockFound JiffyClock
	clockErr   error
)

// FindJiffyClock finds the packets' clock once per process (three ticks,
// about 12 ms at HZ 250): it holds for the whole boot.
func FindJiffyClock() (JiffyClock, error) {
	clockOnce.Do(func() {
		var objs xbpf.ClockObjects
		if clockErr = xbpf.LoadClockObjects(&objs, nil); clockErr != nil {
			return
		}
		defer objs.Close()
		sample := func() (uint64, uint64, error) {
			var s xbpf.ClockClockSample
			_, err := objs.Sample.Run(&ebpf.RunOptions{Context: s, ContextOut: &s})
			return s.Jiffies, s.Ns, err
		}
		clockFound, clockErr = findClock(sample, time.Sleep)
	})
	return clockFound, clockErr
}
