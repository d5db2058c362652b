package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock moves only when a test says so.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	c    chan time.Time
	stop chan struct{}
	once sync.Once
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time), stop: make(chan struct{})}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.once.Do(func() { close(t.stop) })
	return true
}

// earliest returns the earliest timer not stopped, dropping stopped ones.
func (c *fakeClock) earliest() *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *fakeTimer
	live := c.timers[:0]
	for _, t := range c.timers {
		select {
		case <-t.stop:
			continue
		default:
		}
		live = append(live, t)
		if best == nil || t.at.Before(best.at) {
			best = t
		}
	}
	c.timers = live
	return best
}

// fakeProber answers by a function of the clock, and records its calls.
type fakeProber struct {
	h      *harness
	target netip.AddrPort
	block  chan struct{} // when set, Probe waits for it
}

func (p *fakeProber) Probe(ctx context.Context) Result {
	h := p.h
	h.mu.Lock()
	now := h.clk.Now()
	h.calls[p.target] = append(h.calls[p.target], now)
	f := h.answer
	h.mu.Unlock()
	if p.block != nil {
		<-p.block
	}
	return f(p.target, now)
}

type harness struct {
	t      *testing.T
	clk    *fakeClock
	m      *Monitor
	mu     sync.Mutex
	calls  map[netip.AddrPort][]time.Time
	answer func(netip.AddrPort, time.Time) Result
	made   int // probers made
	block  map[netip.AddrPort]chan struct{}
	events []Event
	script []string
	cancel context.CancelFunc
	done   chan struct{}
}

func (h *harness) HealthEvent(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func newHarness(t *testing.T, seed uint64, initial map[RealKey]Initial) *harness {
	h := &harness{t: t, clk: &fakeClock{now: t0}, calls: map[netip.AddrPort][]time.Time{}, block: map[netip.AddrPort]chan struct{}{},
		answer: func(netip.AddrPort, time.Time) Result { return ok }}
	r := rand.New(rand.NewPCG(seed, seed))
	h.m = New(Options{
		NewProber: func(c config.Checker, target netip.AddrPort) (Prober, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.made++
			return &fakeProber{h: h, target: target, block: h.block[target]}, nil
		},
		Clock:  h.clk,
		Rand:   r.Float64,
		Events: h,
		RunScript: func(_ context.Context, s config.Script) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.script = append(h.script, s.Cmd)
			return nil
		},
		Initial: initial,
		Logger:  slog.New(slog.DiscardHandler),
	})
	return h
}

func (h *harness) start(blocked int) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		h.m.Run(ctx)
	}()
	h.t.Cleanup(func() { cancel(); <-h.done })
	h.settle(blocked)
}

// settle waits until the loop is at rest with blocked attempts in flight
// and every event and script delivered.
func (h *harness) settle(blocked int) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := h.m
		m.mu.Lock()
		running := 0
		for _, c := range m.checks {
			if c.running {
				running++
			}
		}
		busy := len(m.results) > 0 || len(m.wake) > 0 || len(m.pending) > 0
		for _, q := range m.scripts {
			q.mu.Lock()
			busy = busy || q.running
			q.mu.Unlock()
		}
		m.mu.Unlock()
		m.events.mu.Lock()
		busy = busy || m.events.running
		m.events.mu.Unlock()
		if running == blocked && !busy && m.waiting.Load() {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	h.t.Fatal("monitor did not settle")
}

// advance moves the clock by d, firing every timer on the way in order.
func (h *harness) advance(d time.Duration, blocked int) {
	target := h.clk.Now().Add(d)
	for {
		h.settle(blocked)
		t := h.clk.earliest()
		if t == nil || t.at.After(target) {
			break
		}
		h.clk.mu.Lock()
		if t.at.After(h.clk.now) {
			h.clk.now = t.at
		}
		h.clk.mu.Unlock()
		select {
		case t.c <- h.clk.Now():
		case <-t.stop:
		}
	}
	h.clk.mu.Lock()
	h.clk.now = target
	h.clk.mu.Unlock()
	h.settle(blocked)
}

func (h *harness) eventsOf(kind EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func tcpCheck(delayLoop, dbr, warmup time.Duration, retry int) config.Checker {
	return config.Checker{Type: config.CheckTCP, ConnectTimeout: 5 * time.Second, Retry: retry, DelayBeforeRetry: dbr, DelayLoop: delayLoop, Warmup: warmup}
}

func real(addr string, port uint16, checks ...config.Checker) config.RealServer {
	return config.RealServer{Address: netip.MustParseAddr(addr), Port: port, Weight: 1, Checkers: checks,
		NotifyUp: config.Script{Cmd: "up " + addr}, NotifyDown: config.Script{Cmd: "down " + addr}}
}

func vserver(port uint16, reals ...config.RealServer) config.VirtualServer {
	return config.VirtualServer{Address: netip.MustParseAddr("10.0.0.1"), Port: port, Protocol: config.TCP, Quorum: 1, DelayLoop: 10 * time.Second, RealServers: reals}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestRetryTiming(t *testing.T) {
	h := newHarness(t, 1, nil)
	failFrom := t0.Add(95 * time.Second)
	h.answer = func(_ netip.AddrPort, now time.Time) Result {
		if now.Before(failFrom) {
			return ok
		}
		return fail
	}
	vs := vserver(80, real("10.0.1.1", 80, tcpCheck(10*time.Second, 2*time.Second, 0, 3)))
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vs}})
	h.start(0)
	h.advance(200*time.Second, 0)

	downs := h.eventsOf(RealDown)
	if len(downs) != 1 {
		t.Fatalf("RealDown events: %+v", downs)
	}
	// Last success at 90 s; down after delay_loop + retry × delay_before_retry.
	if want := t0.Add(90*time.Second + 10*time.Second + 3*2*time.Second); !downs[0].Time.Equal(want) {
		t.Errorf("down at %v, want %v", downs[0].Time.Sub(t0), want.Sub(t0))
	}
	if downs[0].Reason != "timeout" || downs[0].Script.Cmd != "down 10.0.1.1" {
		t.Errorf("event %+v", downs[0])
	}
	v := h.m.View().Reals[RealKey{VS: vs.Key(), Addr: netip.MustParseAddr("10.0.1.1"), Port: 80}]
	if v.Up || v.InPool || v.Checkers[0].Last.Reason != "timeout" {
		t.Errorf("view %+v", v)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.script) != 1 || h.script[0] != "down 10.0.1.1" {
		t.Errorf("scripts %q", h.script)
	}
}

func TestFirstFailureIsEnough(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.answer = func(netip.AddrPort, time.Time) Result { return fail }
	vs := vserver(80, real("10.0.1.1", 80, tcpCheck(10*time.Second, 2*time.Second, 0, 3)))
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vs}})
	h.start(0)
	h.advance(time.Second, 0)
	if d := h.eventsOf(RealDown); len(d) != 1 || !d[0].Time.Equal(t0) {
		t.Fatalf("RealDown events %+v, want one at start", d)
	}
}

func TestStaggeredStart(t *testing.T) {
	h := newHarness(t, 7, nil)
	var reals []config.RealServer
	for i := range 100 {
		reals = append(reals, real(netip.AddrFrom4([4]byte{10, 0, 2, byte(i)}).String(), 80, tcpCheck(10*time.Second, time.Second, 10*time.Second, 1)))
	}
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vserver(80, reals...)}})
	h.start(0)
	h.advance(10*time.Second-time.Nanosecond, 0)
	buckets := map[time.Duration]int{}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 100 {
		t.Fatalf("%d checks ran in the first delay_loop, want 100", len(h.calls))
	}
	for _, calls := range h.calls {
		first := calls[0].Sub(t0)
		if first < 0 || first >= 10*time.Second {
			t.Errorf("first check at %v, outside [0, warmup)", first)
		}
		buckets[first.Truncate(time.Second)]++
	}
	for b, n := range buckets {
		if n > 25 {
			t.Errorf("%d checks start in second %v: not staggered", n, b)
		}
	}
	if len(buckets) < 8 {
		t.Errorf("checks start in %d distinct seconds of 10", len(buckets))
	}
}

func TestDedupAcrossVirtualServers(t *testing.T) {
	h := newHarness(t, 1, nil)
	chk := tcpCheck(10*time.Second, time.Second, 0, 0)
	chk.ConnectPort = 80
	// One host, one port checked, declared by two virtual servers.
	vs1 := vserver(80, real("10.0.1.1", 80, chk))
	vs2 := vserver(443, real("10.0.1.1", 443, chk))
	h.answer = func(_ netip.AddrPort, now time.Time) Result {
		if now.Before(t0.Add(25 * time.Second)) {
			return ok
		}
		return fail
	}
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vs1, vs2}})
	h.start(0)
	h.advance(35*time.Second, 0)
	h.mu.Lock()
	made, calls := h.made, len(h.calls[ap("10.0.1.1:80")])
	h.mu.Unlock()
	if made != 1 || calls != 4 {
		t.Errorf("probers made %d, attempts %d; want 1 and 4 (0, 10, 20, 30 s)", made, calls)
	}
	v := h.m.View()
	for _, k := range []RealKey{{vs1.Key(), netip.MustParseAddr("10.0.1.1"), 80}, {vs2.Key(), netip.MustParseAddr("10.0.1.1"), 443}} {
		if r := v.Reals[k]; r.Up || r.Checkers[0].Shared != 2 {
			t.Errorf("%v: %+v", k, r)
		}
	}
	if d := h.eventsOf(RealDown); len(d) != 2 {
		t.Errorf("RealDown events %+v, want one per virtual server", d)
	}
}

func TestUpdateKeepsStateAndTimers(t *testing.T) {
	h := newHarness(t, 3, nil)
	bad := ap("10.0.1.2:80")
	h.answer = func(target netip.AddrPort, _ time.Time) Result {
		if target == bad {
			return fail
		}
		return ok
	}
	chk := tcpCheck(10*time.Second, time.Second, 10*time.Second, 1)
	cfg := &config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk), real("10.0.1.2", 80, chk), real("10.0.1.3", 80, chk))}}
	h.m.Update(cfg)
	h.start(0)
	h.advance(30*time.Second, 0)
	before := h.m.View()
	h.mu.Lock()
	made, nEvents := h.made, len(h.events)
	lastCall := h.calls[ap("10.0.1.1:80")][len(h.calls[ap("10.0.1.1:80")])-1]
	h.mu.Unlock()

	// Reload: the same servers (one gone, one new), the down one still
	// failing.
	cfg2 := &config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk), real("10.0.1.2", 80, chk), real("10.0.1.4", 80, chk))}}
	h.m.Update(cfg2)
	h.settle(0)
	after := h.m.View()
	vk := cfg.VirtualServers[0].Key()
	k := func(a string) RealKey { return RealKey{vk, netip.MustParseAddr(a), 80} }
	if after.Reals[k("10.0.1.2")].Up || !after.Reals[k("10.0.1.1")].Up {
		t.Errorf("state lost on reload: %+v", after.Reals)
	}
	if !after.Reals[k("10.0.1.1")].Since.Equal(before.Reals[k("10.0.1.1")].Since) {
		t.Error("Since changed on reload")
	}
	h.mu.Lock()
	if h.made != made+1 {
		t.Errorf("reload made %d probers, want 1 (the new real)", h.made-made)
	}
	// 10.0.1.3 removed while up: keepalived tells notify_down.
	if got := h.events[nEvents:]; len(got) != 1 || got[0].Kind != RealDown || got[0].Reason != "removed" {
		t.Errorf("events on reload: %+v", got)
	}
	n3 := len(h.calls[ap("10.0.1.3:80")])
	h.mu.Unlock()

	h.advance(30*time.Second, 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	calls := h.calls[ap("10.0.1.1:80")]
	// The unchanged check keeps its cadence: the next attempt is exactly
	// one delay_loop after the last one before the reload.
	for _, c := range calls {
		if c.After(lastCall) {
			if want := lastCall.Add(10 * time.Second); !c.Equal(want) {
				t.Errorf("after reload, next attempt at %v, want %v", c.Sub(t0), want.Sub(t0))
			}
			break
		}
	}
	if len(h.calls[ap("10.0.1.3:80")]) != n3 {
		t.Error("a removed real is still checked")
	}
	if len(h.calls[ap("10.0.1.4:80")]) == 0 {
		t.Error("the new real is not checked")
	}
}

func TestReloadKeepsDownRealDownWhenItsCheckerChanges(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.answer = func(netip.AddrPort, time.Time) Result { return fail }
	chk := tcpCheck(10*time.Second, time.Second, 0, 1)
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk))}})
	h.start(0)
	h.advance(time.Second, 0)
	chk.ConnectPort = 81 // a different check
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk))}})
	h.settle(0)
	for _, r := range h.m.View().Reals {
		if r.Up {
			t.Fatal("a down real came back up on reload")
		}
	}
	h.mu.Lock() // attempts read it
	h.answer = func(netip.AddrPort, time.Time) Result { return ok }
	h.mu.Unlock()
	h.advance(10*time.Second, 0)
	for _, r := range h.m.View().Reals {
		if !r.Up {
			t.Fatal("the new checker's success did not bring it up")
		}
	}
}

func TestQuorumScriptsOncePerCrossing(t *testing.T) {
	h := newHarness(t, 1, nil)
	var mu sync.Mutex
	downSet := map[netip.AddrPort]bool{}
	h.answer = func(target netip.AddrPort, _ time.Time) Result {
		mu.Lock()
		defer mu.Unlock()
		if downSet[target] {
			return fail
		}
		return ok
	}
	chk := tcpCheck(10*time.Second, time.Second, 0, 0)
	vs := vserver(80, real("10.0.1.1", 80, chk), real("10.0.1.2", 80, chk), real("10.0.1.3", 80, chk))
	vs.Quorum = 2
	vs.QuorumUp = config.Script{Cmd: "qup"}
	vs.QuorumDown = config.Script{Cmd: "qdown"}
	vs.SorryServer = ap("10.0.9.9:80")
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vs}})
	h.start(0)
	set := func(a string, down bool) {
		mu.Lock()
		downSet[ap(a)] = down
		mu.Unlock()
		h.advance(10*time.Second, 0)
	}
	count := func() (up, down int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, s := range h.script {
			switch s {
			case "qup":
				up++
			case "qdown":
				down++
			}
		}
		return
	}
	if up, down := count(); up != 1 || down != 0 {
		t.Fatalf("at start: quorum_up %d, quorum_down %d; want 1, 0", up, down)
	}
	set("10.0.1.1:80", true)
	set("10.0.1.2:80", true)
	set("10.0.1.3:80", true)
	h.advance(30*time.Second, 0)
	if up, down := count(); up != 1 || down != 1 {
		t.Fatalf("after losing quorum: quorum_up %d, quorum_down %d; want 1, 1", up, down)
	}
	v := h.m.View()
	if vv := v.VirtualServers[vs.Key()]; vv.QuorumUp || !vv.SorryServing || !vv.SorryInPool || vv.SorryWeight != 1 {
		t.Errorf("vs view %+v", vv)
	}
	set("10.0.1.1:80", false)
	if vv := h.m.View().VirtualServers[vs.Key()]; vv.QuorumUp || !vv.SorryServing {
		t.Errorf("one real up of quorum 2: %+v", vv)
	}
	for k, r := range h.m.View().Reals {
		if r.InPool {
			t.Errorf("%v in the pool while the sorry server serves", k)
		}
	}
	set("10.0.1.2:80", false)
	set("10.0.1.3:80", false)
	if up, down := count(); up != 2 || down != 1 {
		t.Fatalf("after regaining quorum: quorum_up %d, quorum_down %d; want 2, 1", up, down)
	}
	if vv := h.m.View().VirtualServers[vs.Key()]; !vv.QuorumUp || vv.SorryServing || vv.SorryInPool {
		t.Errorf("vs view %+v", vv)
	}
}

func TestSlowProberDelaysNoOther(t *testing.T) {
	h := newHarness(t, 1, nil)
	slow := ap("10.0.1.1:80")
	release := make(chan struct{})
	h.block[slow] = release
	chk := tcpCheck(time.Second, time.Second, 0, 1)
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk), real("10.0.1.2", 80, chk))}})
	h.start(1)
	h.advance(10*time.Second, 1)
	h.mu.Lock()
	fast, slowCalls := len(h.calls[ap("10.0.1.2:80")]), len(h.calls[slow])
	h.mu.Unlock()
	close(release)
	if fast != 11 || slowCalls != 1 {
		t.Errorf("in 10 s at delay_loop 1 s: fast check ran %d times (want 11), slow one %d (want 1)", fast, slowCalls)
	}
}

func TestInitialStateHeldUntilChecksRun(t *testing.T) {
	vk := vserver(80).Key()
	k1 := RealKey{vk, netip.MustParseAddr("10.0.1.1"), 80}
	h := newHarness(t, 1, map[RealKey]Initial{k1: {Up: false}})
	chk := tcpCheck(10*time.Second, time.Second, 10*time.Second, 1)
	chk2 := chk
	chk2.ConnectPort = 81
	h.m.Update(&config.Config{VirtualServers: []config.VirtualServer{vserver(80, real("10.0.1.1", 80, chk, chk2))}})
	if r := h.m.View().Reals[k1]; r.Up || !r.Pinned {
		t.Fatalf("initial view %+v", r)
	}
	h.start(0)
	var seen []bool
	for range 10 {
		h.advance(time.Second, 0)
		seen = append(seen, h.m.View().Reals[k1].Up)
	}
	// Down until both checkers ran once, then up, never flapping back.
	for i := 1; i < len(seen); i++ {
		if seen[i-1] && !seen[i] {
			t.Fatalf("flapped: %v", seen)
		}
	}
	if !seen[len(seen)-1] || h.m.View().Reals[k1].Pinned {
		t.Errorf("not up after its checkers ran: %v", seen)
	}
	if d := h.eventsOf(RealDown); len(d) != 0 {
		t.Errorf("down events %+v", d)
	}
}
