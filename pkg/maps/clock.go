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

// clockSpan is how long between the two tick edges timed: a sample's
// latency of a few microseconds is then far below the 2.4 % that separates
// the closest candidates (250 and 256, 1000 and 1024).
const clockSpan = 20 * time.Millisecond

// clockSampler reads jiffies and CLOCK_MONOTONIC's ns together, jiffies first.
type clockSampler func() (jiffies, ns uint64, err error)

// findClock times two edges of jiffies clockSpan apart (each edge's time is
// that of the first sample to see it, at most one sample late). The rate
// between them gives HZ; each edge gives the base, and the two must agree,
// or the edges were late (a busy or preempted machine) and it tries again.
func findClock(sample clockSampler, sleep func(time.Duration)) (JiffyClock, error) {
	edge := func() (uint64, uint64, error) {
		j0, t0, err := sample()
		if err != nil {
			return 0, 0, err
		}
		for {
			j, t, err := sample()
			if err != nil {
				return 0, 0, err
			}
			if j != j0 {
				return j, t, nil
			}
			// The slowest CONFIG_HZ ticks every 42 ms.
			if t-t0 > uint64(200*time.Millisecond) {
				return 0, 0, errors.New("jiffies did not move in 200 ms")
			}
		}
	}
	var why error
	for range 3 {
		j1, t1, err := edge()
		if err != nil {
			return JiffyClock{}, err
		}
		sleep(clockSpan)
		j2, t2, err := edge()
		if err != nil {
			return JiffyClock{}, err
		}
		if j2 <= j1 || t2 <= t1 {
			why = fmt.Errorf("clock went backwards: jiffies %d then %d", j1, j2)
			continue
		}
		hz, ok := snapHZ(float64(j2-j1) * 1e9 / float64(t2-t1))
		if !ok {
			why = fmt.Errorf("%d jiffies in %d ns is no kernel's HZ", j2-j1, t2-t1)
			continue
		}
		tick := (1_000_000_000 + hz/2) / hz
		c1, c2 := JiffyClock{tick, t1 - j1*tick}, JiffyClock{tick, t2 - j2*tick}
		// An edge seen late puts its base late; both within an eighth of
		// a tick of each other, the earlier is the better.
		if d := int64(c2.Base - c1.Base); d > int64(tick/8) || d < -int64(tick/8) {
			why = fmt.Errorf("tick edges %d ns apart from where HZ %d puts them", d, hz)
			continue
		}
		if int64(c2.Base-c1.Base) < 0 {
			return c2, nil
		}
		return c1, nil
	}
	return JiffyClock{}, why
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

// FindJiffyClock measures the packets' clock once per process (about
// 25 ms): it holds for the whole boot.
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
