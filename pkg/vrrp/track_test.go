package vrrp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/pkg/config"
)

// TestScriptState replays keepalived's vrrp_script_child_thread counting:
// each step is a run's outcome (+ success, - failure) and what is then
// announced (U up, D down, . nothing).
func TestScriptState(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		runs, want string
	}{
		{"first success decides", 1, 1, "+", "U"},
		{"first failure decides", 1, 1, "-", "D"},
		{"first success enough even with rise 3", 3, 2, "+", "U"},
		{"first failure reported with rise 3", 3, 2, "-", "D"},
		{"flap with rise=fall=1", 1, 1, "+-+-", "UDUD"},
		{"repeats are silent", 1, 1, "++--++", "U.D.U."},
		{"fall 3 needs 3 failures", 1, 3, "+--+---", "U.....D"},
		{"a success restores the full fall", 2, 3, "+--+--", "U....."},
		{"rise 3 needs 3 successes after down", 3, 1, "-+++", "D..U"},
		{"failure resets rise counting", 3, 1, "-++-+++", "D.....U"},
		{"down then down is silent", 2, 2, "---", "D.."},
		{"rise 2 fall 2", 2, 2, "-++--+", "D.U.D."},
		{"zero rise and fall count as one", 0, 0, "+-", "UD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScriptState(tt.rise, tt.fall)
			var got strings.Builder
			for _, r := range tt.runs {
				changed, up := s.observe(r == '+')
				switch {
				case !changed:
					got.WriteByte('.')
				case up:
					got.WriteByte('U')
				default:
					got.WriteByte('D')
				}
			}
			if got.String() != tt.want {
				t.Errorf("rise %d fall %d runs %s: got %s, want %s", tt.rise, tt.fall, tt.runs, got.String(), tt.want)
			}
		})
	}
}

type trackEvent struct {
	name string
	up   bool
}

func (e trackEvent) String() string { return fmt.Sprintf("%s:%v", e.name, e.up) }

// recorder collects callbacks for ScriptTracker and LinkTracker.
type recorder struct {
	mu     sync.Mutex
	events []trackEvent
	ch     chan trackEvent
}

func newRecorder() *recorder { return &recorder{ch: make(chan trackEvent, 100)} }

func (r *recorder) changed(name string, up bool) {
	r.mu.Lock()
	r.events = append(r.events, trackEvent{name, up})
	r.mu.Unlock()
	r.ch <- trackEvent{name, up}
}

func (r *recorder) of(name string) []trackEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []trackEvent
	for _, e := range r.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// next waits for the next callback.
func (r *recorder) next(t *testing.T) trackEvent {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no callback within 5s")
		return trackEvent{}
	}
}

func (r *recorder) expect(t *testing.T, name string, up bool) {
	t.Helper()
	if e := r.next(t); e != (trackEvent{name, up}) {
		t.Fatalf("callback %v, want %v", e, trackEvent{name, up})
	}
}

func (r *recorder) expectNone(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected callback %v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

const tick = 20 * time.Millisecond

// seqRun is a fake ScriptFunc: each script returns its outcomes in turn
// (the last one forever), and the test hears of each run's number.
type seqRun struct {
	mu    sync.Mutex
	plan  map[string]string
	calls map[string]int
	ran   chan string
}

func newSeqRun(plan map[string]string) *seqRun {
	return &seqRun{plan: plan, calls: map[string]int{}, ran: make(chan string, 1000)}
}

func (f *seqRun) run(ctx context.Context, s config.VRRPScript) bool {
	f.mu.Lock()
	p := f.plan[s.Name]
	i := min(f.calls[s.Name], len(p)-1)
	f.calls[s.Name]++
	f.mu.Unlock()
	f.ran <- s.Name
	return p[i] == '+'
}

func (f *seqRun) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// waitRuns waits until name has run at least n times.
func (f *seqRun) waitRuns(t *testing.T, name string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for f.count(name) < n {
		select {
		case <-f.ran:
		case <-deadline:
			t.Fatalf("%s ran %d times, want %d", name, f.count(name), n)
		}
	}
}

func runTracker(t *testing.T, tr *ScriptTracker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ScriptTracker.Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestScriptTrackerReports(t *testing.T) {
	f := newSeqRun(map[string]string{
		"chk": "-++--+",
		"ok":  "+",
	})
	rec := newRecorder()
	tr := NewScriptTracker([]config.VRRPScript{
		{Name: "chk", Interval: tick, Rise: 2, Fall: 2},
		{Name: "ok", Interval: tick, Rise: 5, Fall: 5},
	}, f.run, rec.changed, nil)
	stop := runTracker(t, tr)
	f.waitRuns(t, "chk", 10)
	f.waitRuns(t, "ok", 10)
	stop()

	// Its plan ends in successes, which bring it up again.
	want := []trackEvent{{"chk", false}, {"chk", true}, {"chk", false}, {"chk", true}}
	if got := rec.of("chk"); !slices.Equal(got, want) {
		t.Errorf("chk: got %v, want %v", got, want)
	}
	if got, want := rec.of("ok"), []trackEvent{{"ok", true}}; !slices.Equal(got, want) {
		t.Errorf("ok: got %v, want %v", got, want)
	}
	n := len(rec.ch)
	time.Sleep(3 * tick)
	if len(rec.ch) != n {
		t.Errorf("%d callbacks after Run returned", len(rec.ch)-n)
	}
}

// A script that hangs delays no other, is not started again while it
// runs, and is once it has returned.
func TestScriptTrackerHangingScript(t *testing.T) {
	release := make(chan struct{})
	var hangRuns, running, overlap atomic.Int32
	fast := newSeqRun(map[string]string{"fast": "+"})
	run := func(ctx context.Context, s config.VRRPScript) bool {
		if s.Name != "hang" {
			return fast.run(ctx, s)
		}
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		if hangRuns.Add(1) == 1 {
			<-release // ignores ctx: a script that cannot be killed
		}
		return true
	}
	rec := newRecorder()
	tr := NewScriptTracker([]config.VRRPScript{
		{Name: "hang", Interval: tick, Timeout: tick, Rise: 1, Fall: 1},
		{Name: "fast", Interval: tick, Rise: 1, Fall: 1},
	}, run, rec.changed, nil)
	stop := runTracker(t, tr)

	fast.waitRuns(t, "fast", 10)
	if n := hangRuns.Load(); n != 1 {
		t.Fatalf("hanging script started %d times while running, want 1", n)
	}
	if got := rec.of("fast"); !slices.Equal(got, []trackEvent{{"fast", true}}) {
		t.Errorf("fast: got %v", got)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for hangRuns.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(tick)
	}
	stop()
	if n := hangRuns.Load(); n < 3 {
		t.Errorf("released script ran %d times, want it to go on", n)
	}
	if n := overlap.Load(); n != 0 {
		t.Errorf("script runs overlapped %d times", n)
	}
	if got := rec.of("hang"); !slices.Equal(got, []trackEvent{{"hang", true}}) {
		t.Errorf("hang: got %v, want one up", got)
	}
}

// A run gets a context that ends at the script's timeout, or at its
// interval when it has none, and the timeout counts as a failure.
func TestScriptTrackerTimeout(t *testing.T) {
	type seen struct {
		name string
		d    time.Duration
	}
	var mu sync.Mutex
	var got []seen
	runs := make(chan string, 100)
	run := func(ctx context.Context, s config.VRRPScript) bool {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Errorf("%s: run without a deadline", s.Name)
		}
		mu.Lock()
		got = append(got, seen{s.Name, time.Until(dl)})
		mu.Unlock()
		<-ctx.Done()
		runs <- s.Name
		return false
	}
	rec := newRecorder()
	tr := NewScriptTracker([]config.VRRPScript{
		{Name: "slow", Interval: tick, Timeout: tick / 2, Rise: 1, Fall: 1},
		{Name: "nott", Interval: tick, Rise: 1, Fall: 1},
	}, run, rec.changed, nil)
	stop := runTracker(t, tr)
	counts := map[string]int{}
	for counts["slow"] < 3 || counts["nott"] < 3 {
		select {
		case n := <-runs:
			counts[n]++
		case <-time.After(5 * time.Second):
			t.Fatalf("runs: %v", counts)
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	for _, s := range got {
		limit := tick
		if s.name == "slow" {
			limit = tick / 2
		}
		if s.d > limit {
			t.Errorf("%s: run given %v, want at most %v", s.name, s.d, limit)
		}
	}
	for _, name := range []string{"slow", "nott"} {
		if got := rec.of(name); !slices.Equal(got, []trackEvent{{name, false}}) {
			t.Errorf("%s: got %v, want one down", name, got)
		}
	}
}

// A script tracked by several instances (listed twice) runs once per
// interval.
func TestScriptTrackerDeduplicates(t *testing.T) {
	f := newSeqRun(map[string]string{"dup": "+", "solo": "+"})
	var running, overlap atomic.Int32
	run := func(ctx context.Context, s config.VRRPScript) bool {
		if s.Name == "dup" {
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			defer running.Add(-1)
			time.Sleep(tick / 4)
		}
		return f.run(ctx, s)
	}
	rec := newRecorder()
	dup := config.VRRPScript{Name: "dup", Interval: tick, Rise: 1, Fall: 1}
	tr := NewScriptTracker([]config.VRRPScript{dup, {Name: "solo", Interval: tick, Rise: 1, Fall: 1}, dup}, run, rec.changed, nil)
	stop := runTracker(t, tr)
	f.waitRuns(t, "solo", 10)
	stop()
	if n := overlap.Load(); n != 0 {
		t.Errorf("duplicate script ran concurrently %d times", n)
	}
	if d, s := f.count("dup"), f.count("solo"); d > s+2 {
		t.Errorf("dup ran %d times, solo %d: dup runs more than once per interval", d, s)
	}
	if got := rec.of("dup"); len(got) != 1 {
		t.Errorf("dup: got %v, want one report", got)
	}
}

// TestLinkTracker drives veth pairs in a namespace of the test's own.
func TestLinkTracker(t *testing.T) {
	testenv.RequireRoot(t)
	w, err := testenv.NewNetnsWorker()
	if err != nil {
		testenv.Skip(t, "cannot create a network namespace: "+err.Error())
	}
	t.Cleanup(w.Close)
	do := func(what string, f func() error) {
		t.Helper()
		var err error
		w.Do(func() { err = f() })
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	veth := func(a, b string) func() error {
		return func() error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b})
		}
	}
	setUp := func(up bool, names ...string) func() error {
		return func() error {
			for _, n := range names {
				l, err := netlink.LinkByName(n)
				if err != nil {
					return err
				}
				if up {
					err = netlink.LinkSetUp(l)
				} else {
					err = netlink.LinkSetDown(l)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	del := func(name string) func() error {
		return func() error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		}
	}

	// Before the start: a1 up with carrier, a2 down, "late" missing.
	do("create a1", veth("a1", "b1"))
	do("set a1 up", setUp(true, "b1", "a1"))
	do("create a2", veth("a2", "b2"))

	rec := newRecorder()
	tr := NewLinkTracker([]string{"a1", "a2", "late", "a1"}, rec.changed, nil)
	runner, err := w.Join()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runner.Close)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go runner.Do(func() { runErr <- tr.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("LinkTracker.Run did not return after cancel")
		}
	})
	select {
	case <-tr.Ready():
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready within 5s")
	}

	// The starting state: the down and the missing, each once.
	var start []string
	for len(rec.ch) > 0 {
		start = append(start, rec.next(t).String())
	}
	slices.Sort(start)
	if want := []string{"a2:false", "late:false"}; !slices.Equal(start, want) {
		t.Fatalf("starting reports %v, want %v", start, want)
	}

	// Up needs the carrier too, which a veth has once its peer is up.
	do("set a2 up", setUp(true, "a2"))
	rec.expectNone(t)
	do("set b2 up", setUp(true, "b2"))
	rec.expect(t, "a2", true)

	do("set b1 down", setUp(false, "b1"))
	rec.expect(t, "a1", false)
	do("set b1 up", setUp(true, "b1"))
	rec.expect(t, "a1", true)
	do("set a1 down", setUp(false, "a1"))
	rec.expect(t, "a1", false)
	do("set a1 up", setUp(true, "a1"))
	rec.expect(t, "a1", true)

	// Deleted, then re-created under the same name (a new ifindex).
	do("delete a2", del("a2"))
	rec.expect(t, "a2", false)
	do("re-create a2", veth("a2", "b2"))
	rec.expectNone(t)
	do("set a2 up", setUp(true, "a2", "b2"))
	rec.expect(t, "a2", true)

	do("create late", veth("late", "peer"))
	do("set late up", setUp(true, "late", "peer"))
	rec.expect(t, "late", true)

	// Renamed away is gone; another link renamed to the name is it.
	do("rename a1", func() error {
		l, err := netlink.LinkByName("a1")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		return netlink.LinkSetName(l, "x1")
	})
	rec.expect(t, "a1", false)
	do("rename x1 back", func() error {
		l, err := netlink.LinkByName("x1")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, "a1"); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	rec.expect(t, "a1", true)
	rec.expectNone(t)
}
