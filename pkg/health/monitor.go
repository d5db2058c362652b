package health

import (
	"container/heap"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// Options are a Monitor's dependencies. Only NewProber is required.
type Options struct {
	// NewProber makes the Prober of one checker against its target (the
	// checker's connect_ip and connect_port, else the real server's).
	NewProber func(c config.Checker, target netip.AddrPort) (Prober, error)
	Clock     Clock          // SystemClock when nil
	Rand      func() float64 // in [0, 1), for warmup; math/rand/v2 when nil
	// Events receives every state change, in order, from a goroutine of
	// its own: a slow sink delays no check.
	Events EventSink
	// RunScript, when set, runs notify_up, notify_down, quorum_up and
	// quorum_down: in order per real or virtual server, each key on a
	// goroutine of its own, never from the scheduling loop.
	RunScript func(ctx context.Context, s config.Script) error
	// Initial is the data plane's state at start (a restart with
	// --dont-release-dataplane): a real server listed keeps this state
	// until each of its checkers has decided once, so the pool does not
	// flap while health is re-learned.
	Initial map[RealKey]Initial
	// Attempted, when set, is told of every attempt's result, the reals it
	// feeds and how late after its time it began (for metrics), under the
	// Monitor's lock: it must not block or call back.
	Attempted func(t config.CheckerType, feeds []RealKey, r Result, late time.Duration)
	// MaxConcurrent bounds attempts in flight; 1024 when 0.
	MaxConcurrent int
	Logger        *slog.Logger
}

// Initial is a real server's state in the data plane.
type Initial struct {
	Up     bool
	Weight int
}

// EventSink is told of health events (for SMTP alerts, metrics, scripts
// when Options.RunScript is nil). It is called from one goroutine, in
// order.
type EventSink interface {
	HealthEvent(Event)
}

// EventKind says what an Event is about.
type EventKind uint8

// Event kinds.
const (
	// RealUp and RealDown: a real server entered or left service
	// (keepalived's do_rs_notifies: notify_up, notify_down).
	RealUp EventKind = iota + 1
	RealDown
	// CheckerUp and CheckerDown: one checker of a real server changed
	// (keepalived mails these when smtp_alert is on).
	CheckerUp
	CheckerDown
	// QuorumUp and QuorumDown: a virtual server crossed its quorum.
	QuorumUp
	QuorumDown
)

func (k EventKind) String() string {
	return [...]string{"", "real up", "real down", "checker up", "checker down", "quorum up", "quorum down"}[k]
}

// Event is one health change.
type Event struct {
	Kind EventKind
	Time time.Time
	VS   string         // VirtualServer.Key()
	Real netip.AddrPort // zero for quorum events
	// Checker and Target name the checker of a checker event, or the one
	// whose result decided a real event (zero when config did).
	Checker config.CheckerType
	Target  netip.AddrPort
	Reason  string
	// Init marks a state stated at (re)start rather than a change:
	// keepalived's "Starting with quorum up/down", or an alpha real server
	// whose first check failed.
	Init bool
	// Stopping marks omega's notifications at shutdown.
	Stopping bool
	// Script is the notify_up, notify_down, quorum_up or quorum_down
	// configured for this event; zero when none.
	Script    config.Script
	SMTPAlert bool
	// Weight is a real event's effective weight, or a quorum event's
	// summed weight of alive real servers.
	Weight                        int
	Quorum, Hysteresis, Threshold int
}

// View is a snapshot of health, owned by the caller.
type View struct {
	Reals          map[RealKey]RealView
	VirtualServers map[string]VSView
}

// RealView is one real server's health and what the data plane should hold
// for it.
type RealView struct {
	Up     bool
	Since  time.Time
	Weight int // effective weight: configured, or as a checker asks
	Reason string
	// InPool and PoolWeight are what the data plane should hold: see
	// poolEntry (inhibit_on_failure, sorry server).
	InPool     bool
	PoolWeight int
	// Pinned is true while the real keeps its Options.Initial state.
	Pinned   bool
	Checkers []CheckerView
}

// CheckerView is one checker of a real server.
type CheckerView struct {
	Type   config.CheckerType
	Target netip.AddrPort
	Up     bool
	HasRun bool
	Since  time.Time
	Last   Result
	LastAt time.Time
	// Late is how long after its scheduled time the last attempt began.
	Late     time.Duration
	Attempts uint64
	// Failures counts failed attempts since the last success.
	Failures int
	// Shared is how many real servers (of several virtual servers) this
	// one check feeds.
	Shared int
}

// VSView is a virtual server's quorum and sorry server.
type VSView struct {
	QuorumUp                      bool
	Since                         time.Time
	AliveWeight                   int
	Quorum, Hysteresis, Threshold int
	SorryServer                   netip.AddrPort // invalid when none
	SorryServing                  bool
	SorryInPool                   bool
	SorryWeight                   int
}

// Monitor schedules every checker of a configuration, turns results into
// real server and quorum states, and tells the daemon.
type Monitor struct {
	opts    Options
	clock   Clock
	log     *slog.Logger
	results chan attempt
	wake    chan struct{}
	changes chan struct{}
	sem     chan struct{}
	events  *fifo[Event]

	mu      sync.Mutex
	checks  map[string]*check
	queue   checkHeap
	reals   map[RealKey]*realState
	vss     map[string]*vsState
	order   []string // virtual server keys in config order
	pending []Event
	changed bool
	scripts map[string]*fifo[config.Script]

	// waiting is true while Run waits for its next event; tests use it to
	// know the loop is at rest before moving a fake clock.
	waiting atomic.Bool
}

type check struct {
	key, ident string
	cfg        config.Checker
	target     netip.AddrPort
	pol        policy
	prober     Prober
	st         checkState
	since      time.Time
	last       Result
	lastAt     time.Time
	late       time.Duration
	attempts   uint64
	failures   int
	next       time.Time
	idx        int // in queue; -1 when not queued
	running    bool
	stopped    bool
	subs       []RealKey
}

type realState struct {
	key     RealKey
	cfg     config.RealServer
	checks  []*check
	up      bool
	weight  int
	since   time.Time
	reason  string
	pinned  bool
	initial Initial
}

type vsState struct {
	cfg         config.VirtualServer
	reals       []RealKey
	q           quorumState
	since       time.Time
	aliveWeight int
	threshold   int
}

type attempt struct {
	c          *check
	r          Result
	start, end time.Time
}

// New returns a Monitor with nothing to check until Update.
func New(o Options) *Monitor {
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Monitor{
		opts:    o,
		clock:   o.Clock,
		log:     o.Logger.With("component", "health"),
		results: make(chan attempt, 64),
		wake:    make(chan struct{}, 1),
		changes: make(chan struct{}, 1),
		sem:     make(chan struct{}, o.MaxConcurrent),
		checks:  map[string]*check{},
		reals:   map[RealKey]*realState{},
		vss:     map[string]*vsState{},
		scripts: map[string]*fifo[config.Script]{},
	}
	m.events = newFIFO(func(e Event) {
		if o.Events != nil {
			o.Events.HealthEvent(e)
		}
	})
	return m
}

// Changes is signalled (coalesced) whenever what the data plane should
// hold changes: a real server's pool membership or weight, a quorum, a
// sorry server. Read View after it.
func (m *Monitor) Changes() <-chan struct{} { return m.changes }

// checkTarget is where a checker connects.
func checkTarget(c config.Checker, rs config.RealServer) netip.AddrPort {
	addr, port := rs.Address, rs.Port
	if c.ConnectIP.IsValid() {
		addr = c.ConnectIP
	}
	if c.ConnectPort != 0 {
		port = c.ConnectPort
	}
	return netip.AddrPortFrom(addr, port)
}

// checkKeys returns a checker's dedup key (type, target and every
// setting: identical checks of one real by several virtual servers run
// once) and its identity (the same without the timing settings keepalived
// migrates state across on a reload).
func checkKeys(c config.Checker, target netip.AddrPort) (key, ident string) {
	c.File, c.Line = "", 0
	full, _ := json.Marshal(c)
	c.Retry, c.DelayBeforeRetry, c.DelayLoop, c.Warmup, c.Alpha, c.LogAllFailures = 0, 0, 0, 0, false, false
	id, _ := json.Marshal(c)
	t := string(c.Type) + " " + target.String() + " "
	return t + string(full), t + string(id)
}

// Update installs a configuration, at start and on every reload. Checks
// that did not change keep their state and their timer; new ones start
// staggered over their warmup; removed ones stop. A real server that was
// down stays down until its checkers say otherwise.
func (m *Monitor) Update(cfg *config.Config) {
	m.mu.Lock()
	now := m.clock.Now()
	oldChecks, oldReals, oldVSs := m.checks, m.reals, m.vss
	m.checks, m.reals, m.vss, m.order = map[string]*check{}, map[RealKey]*realState{}, map[string]*vsState{}, nil
	byIdent := map[string]*check{}
	for _, c := range oldChecks {
		byIdent[c.ident] = c
	}
	used := map[*check]bool{}

	for _, vsc := range cfg.VirtualServers {
		vk := vsc.Key()
		vs := &vsState{cfg: vsc, since: now}
		total := 0
		for _, rsc := range vsc.RealServers {
			total += rsc.Weight
		}
		vs.q.quorum, vs.q.hysteresis = effectiveQuorum(vsc.Quorum, vsc.Hysteresis, total)
		vs.q.hasSorry = vsc.SorryServer.IsValid()
		if old := oldVSs[vk]; old != nil {
			vs.q.up, vs.q.sorryAlive, vs.since = old.q.up, old.q.sorryAlive && vs.q.hasSorry, old.since
		}
		m.vss[vk] = vs
		m.order = append(m.order, vk)

		for _, rsc := range vsc.RealServers {
			rk := RealKey{VS: vk, Addr: rsc.Address, Port: rsc.Port}
			old := oldReals[rk]
			r := &realState{key: rk, cfg: rsc, since: now}
			if old != nil {
				r.up, r.weight, r.since, r.reason, r.pinned, r.initial = old.up, old.weight, old.since, old.reason, old.pinned, old.initial
			} else if in, ok := m.opts.Initial[rk]; ok {
				r.pinned, r.initial = true, in
			}
			for _, cc := range rsc.Checkers {
				c := m.checkFor(cc, rsc, r, old, oldChecks, byIdent, used, now)
				if !slices.Contains(c.subs, rk) {
					c.subs = append(c.subs, rk)
				}
				r.checks = append(r.checks, c)
			}
			if old == nil {
				r.up, r.weight = aggregate(rsc.Weight, states(r.checks))
				if r.pinned {
					r.up, r.weight = r.initial.Up, r.initial.Weight
				}
			}
			m.reals[rk] = r
			vs.reals = append(vs.reals, rk)
		}
	}

	// Stop what is gone. keepalived's clear_service_rs and
	// clear_service_vs tell of alive real servers and quorums that go.
	for _, c := range oldChecks {
		if m.checks[c.key] != c {
			c.stopped = true
			if c.idx >= 0 {
				heap.Remove(&m.queue, c.idx)
			}
		}
	}
	for rk, r := range oldReals {
		if m.reals[rk] == nil && r.up {
			m.emit(Event{Kind: RealDown, Time: now, VS: rk.VS, Real: netip.AddrPortFrom(rk.Addr, rk.Port), Reason: "removed",
				Script: r.cfg.NotifyDown, SMTPAlert: r.cfg.SMTPAlert, Weight: r.weight})
		}
	}
	for vk, vs := range oldVSs {
		if m.vss[vk] == nil && vs.q.up {
			m.emit(Event{Kind: QuorumDown, Time: now, VS: vk, Reason: "removed", Script: vs.cfg.QuorumDown, SMTPAlert: vs.cfg.SMTPAlert})
		}
	}

	// Settle what the new configuration changes, then (re)start every
	// virtual server's quorum as keepalived's init_service_vs does.
	for _, vk := range m.order {
		vs := m.vss[vk]
		for _, rk := range vs.reals {
			m.refreshReal(m.reals[rk], nil, false, now)
		}
		m.updateQuorum(vs, true, now)
	}
	m.changed = true
	m.mu.Unlock()
	m.flush()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// checkFor finds or makes the check cc of real r.
func (m *Monitor) checkFor(cc config.Checker, rsc config.RealServer, r, old *realState, oldChecks, byIdent map[string]*check, used map[*check]bool, now time.Time) *check {
	target := checkTarget(cc, rsc)
	key, ident := checkKeys(cc, target)
	if c := m.checks[key]; c != nil {
		return c
	}
	if c := oldChecks[key]; c != nil {
		m.checks[key] = c
		used[c] = true
		c.subs = nil
		return c
	}
	c := &check{key: key, ident: ident, cfg: cc, target: target, pol: policyOf(cc), since: now, idx: -1}
	p, err := m.opts.NewProber(cc, target)
	if err != nil {
		m.log.Error("checker cannot run; it fails every attempt", "checker", cc.Type, "target", target, "file", cc.File, "line", cc.Line, "err", err)
		p = failProber{err.Error()}
	}
	c.prober = p
	delay := time.Duration(m.opts.Rand() * float64(cc.Warmup))
	switch prev := byIdent[ident]; {
	case prev != nil && !used[prev]:
		// Only timing settings changed: keep the state
		// (migrate_checkers) and the timer, within the new delay_loop.
		used[prev] = true
		c.st = prev.st.migrate(cc.Retry)
		c.since, c.last, c.lastAt, c.attempts, c.failures = prev.since, prev.last, prev.lastAt, prev.attempts, prev.failures
		c.next = prev.next
		if prev.running || c.next.After(now.Add(cc.DelayLoop)) {
			c.next = now.Add(min(delay, cc.DelayLoop))
		}
	case old != nil && !old.up:
		// A new checker of a real server that is down: keep it down
		// until this checker passes (keepalived would bring a non-alpha
		// one up at once, re-adding a failed server on reload).
		c.st = checkState{up: false, retryIt: cc.Retry, weight: NoWeight}
		c.next = now.Add(delay)
	case old != nil:
		// Of a real server that is up: up, with its retries
		// (migrate_checkers leaves retry_it at 0 on reload).
		c.st = checkState{up: true, weight: NoWeight}
		c.next = now.Add(delay)
	default:
		c.st = newCheckState(c.pol, cc.Alpha)
		if r.pinned {
			c.st.up = r.initial.Up
		}
		c.next = now.Add(delay)
	}
	m.checks[key] = c
	heap.Push(&m.queue, c)
	return c
}

func states(cs []*check) []checkState {
	s := make([]checkState, len(cs))
	for i, c := range cs {
		s[i] = c.st
	}
	return s
}

// Run schedules checks until ctx ends. On the way out it tells of omega's
// shutdown notifications (and runs their scripts for at most a second, as
// keepalived does).
func (m *Monitor) Run(ctx context.Context) error {
	for {
		m.mu.Lock()
		now := m.clock.Now()
		for m.queue.Len() > 0 && !m.queue[0].next.After(now) {
			c := heap.Pop(&m.queue).(*check)
			c.running = true
			go m.attempt(ctx, c, c.prober, c.next, m.timeout(c.cfg))
		}
		var timer Timer
		var fire <-chan time.Time
		if m.queue.Len() > 0 {
			timer = m.clock.NewTimer(m.queue[0].next.Sub(now))
			fire = timer.C()
		}
		m.mu.Unlock()

		m.waiting.Store(true)
		var got *attempt
		select {
		case <-ctx.Done():
			m.waiting.Store(false)
			if timer != nil {
				timer.Stop()
			}
			m.stop()
			return nil
		case <-fire:
		case <-m.wake:
		case a := <-m.results:
			got = &a
		}
		m.waiting.Store(false)
		if timer != nil {
			timer.Stop()
		}
		if got != nil {
			m.mu.Lock()
			m.handle(*got)
			m.mu.Unlock()
			m.flush()
		}
	}
}

func (m *Monitor) timeout(c config.Checker) time.Duration {
	if c.Misc != nil && c.Misc.Timeout > 0 {
		return c.Misc.Timeout
	}
	return c.ConnectTimeout
}

// attempt runs one probe; it never holds the Monitor's lock.
func (m *Monitor) attempt(ctx context.Context, c *check, p Prober, scheduled time.Time, timeout time.Duration) {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	start := m.clock.Now()
	actx, cancel := context.WithTimeout(ctx, timeout)
	r := p.Probe(actx)
	cancel()
	<-m.sem
	end := m.clock.Now()
	if r.Took == 0 {
		r.Took = end.Sub(start)
	}
	if !r.OK && r.Reason == "" {
		r.Reason = "failed"
	}
	if start.Before(scheduled) {
		start = scheduled
	}
	select {
	case m.results <- attempt{c, r, start, end}:
	case <-ctx.Done():
	}
}

// handle applies one attempt's result.
func (m *Monitor) handle(a attempt) {
	c := a.c
	if c.stopped {
		return
	}
	c.running = false
	c.attempts++
	c.last, c.lastAt = a.r, a.end
	c.late = a.start.Sub(c.next)
	if m.opts.Attempted != nil {
		m.opts.Attempted(c.cfg.Type, c.subs, a.r, c.late)
	}
	if a.r.OK {
		c.failures = 0
	} else {
		c.failures++
	}
	firstRun := !c.st.hasRun
	d := c.st.step(c.pol, a.r)
	base := a.end
	if d.fromStart {
		base = a.start
	}
	c.next = base.Add(d.delay)
	heap.Push(&m.queue, c)

	log := m.log.With("checker", c.cfg.Type, "target", c.target)
	switch {
	case d.log:
		log.Info("check failed, will retry", "reason", a.r.Reason, "failures", c.failures, "retry", c.pol.retry)
	case d.verdict == verdictDown && d.changed:
		log.Info("check failed", "reason", a.r.Reason, "retries", c.pol.retry)
	case d.verdict == verdictUp && d.changed:
		log.Info("check succeeded", "reason", a.r.Reason)
	}
	if d.changed {
		c.since = a.end
	}
	if !d.changed && !d.weightChanged && !(firstRun && d.verdict == verdictDown) && !(firstRun && d.verdict == verdictUp) {
		return
	}
	for _, rk := range c.subs {
		r := m.reals[rk]
		if r == nil {
			continue
		}
		if d.changed {
			kind := CheckerDown
			if c.st.up {
				kind = CheckerUp
			}
			m.emit(Event{Kind: kind, Time: a.end, VS: rk.VS, Real: netip.AddrPortFrom(rk.Addr, rk.Port),
				Checker: c.cfg.Type, Target: c.target, Reason: a.r.Reason, SMTPAlert: r.cfg.SMTPAlert})
		}
		m.refreshReal(r, c, firstRun && d.verdict == verdictDown, a.end)
	}
}

// refreshReal recomputes r from its checkers and tells of what changed.
// cause is the checker whose result is being applied (nil for config).
func (m *Monitor) refreshReal(r *realState, cause *check, firstDown bool, now time.Time) {
	if r.pinned {
		for _, c := range r.checks {
			if !c.st.hasRun {
				return
			}
		}
		r.pinned = false
	}
	up, weight := aggregate(r.cfg.Weight, states(r.checks))
	ev := Event{Time: now, VS: r.key.VS, Real: netip.AddrPortFrom(r.key.Addr, r.key.Port), SMTPAlert: r.cfg.SMTPAlert, Weight: weight, Reason: "configuration"}
	if cause != nil {
		ev.Checker, ev.Target, ev.Reason = cause.cfg.Type, cause.target, cause.last.Reason
	}
	vs := m.vss[r.key.VS]
	switch {
	case up != r.up:
		r.up, r.weight, r.since, r.reason = up, weight, now, ev.Reason
		ev.Kind, ev.Script = RealDown, r.cfg.NotifyDown
		if up {
			ev.Kind, ev.Script = RealUp, r.cfg.NotifyUp
		}
		m.log.Info("real server "+ev.Kind.String()[5:], "vs", r.key.VS, "real", ev.Real, "weight", weight, "reason", ev.Reason, "inhibit", r.cfg.InhibitOnFailure)
		m.emit(ev)
		m.changed = true
		m.updateQuorum(vs, false, now)
	case firstDown && !up:
		// update_svr_checker_state: a first failure that finds the
		// server down already (alpha) still runs notify_down.
		r.reason = ev.Reason
		ev.Kind, ev.Script, ev.Init = RealDown, r.cfg.NotifyDown, true
		m.emit(ev)
	case weight != r.weight:
		m.log.Info("real server weight changed", "vs", r.key.VS, "real", ev.Real, "from", r.weight, "to", weight)
		r.weight = weight
		m.changed = true
		m.updateQuorum(vs, false, now)
	}
}

// updateQuorum re-measures vs's quorum after its real servers changed.
func (m *Monitor) updateQuorum(vs *vsState, init bool, now time.Time) {
	if vs == nil {
		return
	}
	sum := 0
	for _, rk := range vs.reals {
		if r := m.reals[rk]; r.up {
			sum += r.weight
		}
	}
	vs.aliveWeight = sum
	ch := vs.q.update(sum, init)
	vs.threshold = ch.threshold
	if !ch.crossed {
		return
	}
	vk := vs.cfg.Key()
	vs.since = now
	m.changed = true
	ev := Event{Kind: QuorumDown, Time: now, VS: vk, Init: init, Script: vs.cfg.QuorumDown, SMTPAlert: vs.cfg.SMTPAlert,
		Weight: sum, Quorum: vs.q.quorum, Hysteresis: vs.q.hysteresis, Threshold: ch.threshold}
	if ch.up {
		ev.Kind, ev.Script = QuorumUp, vs.cfg.QuorumUp
	}
	m.log.Info(ev.Kind.String(), "vs", vk, "alive_weight", sum, "quorum", vs.q.quorum, "hysteresis", vs.q.hysteresis, "threshold", ch.threshold, "init", init,
		"sorry_server_in", ch.sorryIn, "sorry_server_out", ch.sorryOut)
	m.emit(ev)
}

// emit queues an event; flush delivers what is queued once the lock is
// released.
func (m *Monitor) emit(e Event) { m.pending = append(m.pending, e) }

func (m *Monitor) flush() {
	m.mu.Lock()
	evs, changed := m.pending, m.changed
	m.pending, m.changed = nil, false
	for _, e := range evs {
		m.events.push(e)
		if m.opts.RunScript == nil || e.Script.IsZero() {
			continue
		}
		key := e.VS
		if e.Real.IsValid() {
			key += " " + e.Real.String()
		}
		q := m.scripts[key]
		if q == nil {
			q = newFIFO(m.runScript)
			m.scripts[key] = q
		}
		q.push(e.Script)
	}
	m.mu.Unlock()
	if changed {
		select {
		case m.changes <- struct{}{}:
		default:
		}
	}
}

func (m *Monitor) runScript(s config.Script) {
	if err := m.opts.RunScript(context.Background(), s); err != nil {
		m.log.Warn("script failed", "script", s.Cmd, "err", err)
	}
}

// stop tells of omega's shutdown: notify_down of every alive real server
// and quorum_down of every virtual server (ipwrapper.c clear_services).
func (m *Monitor) stop() {
	m.mu.Lock()
	now := m.clock.Now()
	var evs []Event
	for _, vk := range m.order {
		vs := m.vss[vk]
		if !vs.cfg.Omega {
			continue
		}
		for _, rk := range vs.reals {
			if r := m.reals[rk]; r.up {
				evs = append(evs, Event{Kind: RealDown, Time: now, VS: vk, Real: netip.AddrPortFrom(rk.Addr, rk.Port), Reason: "shutting down",
					Stopping: true, Script: r.cfg.NotifyDown, SMTPAlert: r.cfg.SMTPAlert, Weight: r.weight})
			}
		}
		evs = append(evs, Event{Kind: QuorumDown, Time: now, VS: vk, Reason: "shutting down", Stopping: true, Script: vs.cfg.QuorumDown,
			SMTPAlert: vs.cfg.SMTPAlert, Weight: vs.aliveWeight, Quorum: vs.q.quorum, Hysteresis: vs.q.hysteresis})
	}
	for _, c := range m.checks {
		c.stopped = true
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range evs {
		m.events.push(e)
		if m.opts.RunScript != nil && !e.Script.IsZero() {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if err := m.opts.RunScript(ctx, e.Script); err != nil {
					m.log.Warn("script failed", "script", e.Script.Cmd, "err", err)
				}
			})
		}
	}
	wg.Wait()
}

// View returns a snapshot of every real and virtual server's health.
func (m *Monitor) View() *View {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &View{Reals: make(map[RealKey]RealView, len(m.reals)), VirtualServers: make(map[string]VSView, len(m.vss))}
	for vk, vs := range m.vss {
		sv := VSView{QuorumUp: vs.q.up, Since: vs.since, AliveWeight: vs.aliveWeight, Quorum: vs.q.quorum, Hysteresis: vs.q.hysteresis,
			Threshold: vs.threshold, SorryServer: vs.cfg.SorryServer, SorryServing: vs.q.sorryAlive}
		sv.SorryInPool, sv.SorryWeight = sorryEntry(vs.q.sorryAlive, vs.cfg.SorryServerInhibit)
		if !vs.q.hasSorry {
			sv.SorryInPool, sv.SorryWeight = false, 0
		}
		v.VirtualServers[vk] = sv
		for _, rk := range vs.reals {
			r := m.reals[rk]
			rv := RealView{Up: r.up, Since: r.since, Weight: r.weight, Reason: r.reason, Pinned: r.pinned}
			rv.InPool, rv.PoolWeight = poolEntry(r.up, r.weight, r.cfg.InhibitOnFailure, vs.q.sorryAlive)
			for _, c := range r.checks {
				rv.Checkers = append(rv.Checkers, CheckerView{Type: c.cfg.Type, Target: c.target, Up: c.st.up, HasRun: c.st.hasRun, Since: c.since,
					Last: c.last, LastAt: c.lastAt, Late: c.late, Attempts: c.attempts, Failures: c.failures, Shared: len(c.subs)})
			}
			v.Reals[rk] = rv
		}
	}
	return v
}

// failProber stands for a checker whose Prober could not be made.
type failProber struct{ reason string }

func (p failProber) Probe(context.Context) Result {
	return Result{Weight: NoWeight, Reason: p.reason}
}

// checkHeap orders checks by their next attempt.
type checkHeap []*check

func (h checkHeap) Len() int           { return len(h) }
func (h checkHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h checkHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *checkHeap) Push(x any) {
	c := x.(*check)
	c.idx = len(*h)
	*h = append(*h, c)
}
func (h *checkHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.idx = -1
	*h = old[:len(old)-1]
	return c
}

// fifo runs f on each pushed value in order, on a goroutine that lives
// while there is work, so a slow f delays nothing but its own queue.
type fifo[T any] struct {
	f       func(T)
	mu      sync.Mutex
	q       []T
	running bool
}

func newFIFO[T any](f func(T)) *fifo[T] { return &fifo[T]{f: f} }

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.q = append(q.q, v)
	if !q.running {
		q.running = true
		go q.drain()
	}
}

func (q *fifo[T]) drain() {
	for {
		q.mu.Lock()
		if len(q.q) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		v := q.q[0]
		q.q = q.q[1:]
		q.mu.Unlock()
		q.f(v)
	}
}
