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
// INITIAL_JIFFIES, (u32)(-300*HZ) (include/linux/jiffies.h), when the tick
// starts, a little after CLOCK_MONOTONIC does. For each CONFIG_HZ it works
// out when that start was; only a value that puts it in the first
// maxTickStart seconds fits, and unless exactly one does (close to the
// 300th second neighbours such as 250 and 256 both can) it says so.
func hzFromBoot(j, t uint64) (uint64, bool) {
	var found uint64
	for _, f := range kernelHZ {
		hz := uint64(f)
		initial := uint64(1<<32 - 300*hz)
		ticks := int64(j - initial)
		if ticks < 0 {
			continue
		}
		start := float64(t)/1e9 - float64(ticks)/f
		if start < 0 || start > maxTickStart {
			continue
		}
		if found != 0 {
			return 0, false
		}
		found = hz
	}
	return found, found != 0
}

// maxTickStart bounds how long after CLOCK_MONOTONIC's zero the tick may
// start, in seconds: early boot, before the clock events come up.
const maxTickStart = 5.0

// ticksSpan is how long between the two tick edges hzFromTicks times: a
// tick handled a millisecond late is then 0.2 % of it, far below the 2.4 %
// that separate the closest candidates (250 and 256, 1000 and 1024).
const ticksSpan = 500 * time.Millisecond

// hzFromTicks times clean edges ticksSpan apart, twice, and takes a value
// only when both agree: one late edge shows as a disagreement, and it
// tries again.
func hzFromTicks(sample clockSampler, sleep func(time.Duration)) (uint64, error) {
	var why error
	var last uint64
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
			last = 0
			continue
		}
		hz, ok := snapHZ(float64(j2-j1) * 1e9 / float64(t2-t1))
		if !ok {
			why = fmt.Errorf("%d jiffies in %d ns is no kernel's HZ", j2-j1, t2-t1)
			last = 0
			continue
		}
		if hz == last {
			return hz, nil
		}
		why = fmt.Errorf("timed HZ %d, then %d", last, hz)
		last = hz
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
// about 12 ms at HZ 250; a second when it must time ticks): it holds for
// the whole boot, as long as jiffies follow CLOCK_MONOTONIC, which
// Set.CheckClock watches.
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

// skewTicks is how far, in ticks, the packets' clock may stray from gc's
// before it is turned off. It reads the last tick, so it is normally up to
// one behind; a clock that drifts (a wrong HZ, a periodic tick losing
// interrupts) soon goes further.
const skewTicks = 4

// CheckClock looks at the skew one gc run measured between the packets'
// clock and CLOCK_MONOTONIC, and turns the jiffy clock off for the coarse
// one when it is out of bounds. It returns the error it turned it off for,
// once; PacketClockErr keeps it.
func (s *Set) CheckClock(skew int64) error {
	tick := int64(s.PacketClock.Tick)
	if tick == 0 || s.PacketClockErr != nil || (skew > -skewTicks*tick && skew < skewTicks*tick) {
		return nil
	}
	err := fmt.Errorf("jiffies drift from CLOCK_MONOTONIC: %d ns after %d ns ticks", skew, tick)
	if serr := s.TickNs.Set(uint64(0)); serr != nil {
		return fmt.Errorf("%w; turning the jiffy clock off: %v", err, serr)
	}
	s.PacketClockErr = err
	return err
}
