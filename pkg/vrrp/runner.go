package vrrp

// The runner: one goroutine per vrrp_instance that owns its Machine and
// carries out what the machine asks. Everything that can take long (notify
// scripts, paced gratuitous ARPs) runs on goroutines of its own, so that an
// advert is never late because of them; the machine's deadline is the only
// thing the loop sleeps on.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// RunnerOptions are what a Runner needs.
type RunnerOptions struct {
	Instance  config.VRRPInstance
	Strict    bool   // global vrrp_strict
	SyncGroup string // the vrrp_sync_group the instance is in, if any
	Speaker   *Speaker
	VIPs      *VIPManager
	// RunScript runs a notify script with args appended; the runner calls
	// it on a goroutine of its own, one script at a time and in the order
	// of the transitions. Nil runs none.
	RunScript func(ctx context.Context, s config.Script, args []string) error
	// Changed is called on the runner's goroutine after each transition,
	// and when the instance's own fault (Status.OwnFault) comes or goes
	// without one. It must not block: sync group peers, the data plane
	// and mail hear of transitions through it.
	Changed func(name string, from, to Status)
	// Halt, when set, is registered with signal.Notify for the daemon's
	// stop signals. A signal on it stops the instance at once, priority 0
	// included, without waiting for ctx: the os/signal loop wakes the
	// runner itself, rather than through the goroutine that cancels the
	// daemon's context and wakes every other task first. Run still
	// returns only when ctx ends.
	Halt <-chan os.Signal
	Log  *slog.Logger
}

// Bad advert reasons the runner adds to the speaker's (Reason): checks that
// need the instance's configuration.
const (
	BadAuth BadAdvertReason = iota + 100 // auth type or password differ
)

// RunnerStats is what status and /metrics show of an instance.
type RunnerStats struct {
	Name      string
	Interface string
	VRID      uint8
	Version   int
	Status
	Transitions uint64
	// Sent and Received count adverts; Errors counts dropped or
	// mismatching adverts by reason, the speaker's and the runner's.
	Sent, Received uint64
	Errors         map[string]uint64
	// Forms counts received adverts by checksum form.
	Forms      map[string]uint64
	GARPs      uint64 // gratuitous ARPs and unsolicited NAs sent
	SendErrors uint64
}

// Runner drives one instance.
type Runner struct {
	o    RunnerOptions
	vi   config.VRRPInstance
	log  *slog.Logger
	m    *Machine
	vips []netip.Addr
	auth [authLen]byte
	in   chan Received

	// Events from other goroutines (tracking, sync groups) queue here
	// without bound, so that two runners relaying transitions to each
	// other can never block on each other.
	qmu   sync.Mutex
	queue []Event
	wake  chan struct{}

	mu          sync.Mutex
	status      Status
	transitions uint64
	bad         map[BadAdvertReason]uint64

	pending []change // transitions to report once their actions are done

	garps, sendErrs atomic.Uint64
	// garpCtx lives while the instance is MASTER: leaving cancels the
	// announcements still to go.
	garpCtx    context.Context
	garpCancel context.CancelFunc
	garpWG     sync.WaitGroup
}

// NewRunner registers the instance with its speaker. The machine starts
// when Run does.
func NewRunner(o RunnerOptions) (*Runner, error) {
	vi := o.Instance
	if o.Log == nil {
		o.Log = slog.Default()
	}
	src := o.Speaker.Primary()
	cfg := ConfigFrom(vi, src)
	cfg.Strict = o.Strict
	cfg.SyncGroup = o.SyncGroup
	r := &Runner{
		o:    o,
		vi:   vi,
		log:  o.Log.With("instance", vi.Name, "vrid", vi.VirtualRouterID),
		vips: cfg.VIPs,
		in:   make(chan Received, 16),
		wake: make(chan struct{}, 1),
		bad:  map[BadAdvertReason]uint64{},
	}
	copy(r.auth[:], vi.AuthPass)
	r.m = New(cfg, time.Now())
	r.status = r.m.Status()
	sender := vi.UnicastSrcIP
	if !sender.IsValid() {
		sender = vi.McastSrcIP
	}
	if err := o.Speaker.Register(vi.VirtualRouterID, Instance{
		Version: vi.Version,
		Src:     sender,
		Peers:   vi.UnicastPeers,
		Marshal: MarshalOptions{V3ChecksumAsV2: vi.V3ChecksumAsV2},
		C:       r.in,
	}); err != nil {
		return nil, fmt.Errorf("vrrp_instance %s: %w", vi.Name, err)
	}
	return r, nil
}

// Name is the instance's name.
func (r *Runner) Name() string { return r.vi.Name }

// Config is the instance the runner was made for.
func (r *Runner) Config() config.VRRPInstance { return r.vi }

// Post queues an event (TrackChanged, SyncMaster, ...) for the runner. It
// never blocks.
func (r *Runner) Post(ev Event) {
	r.qmu.Lock()
	r.queue = append(r.queue, ev)
	r.qmu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) takeQueue() []Event {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

// Status returns the machine's status as of its last event.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Stats returns the instance's counters and status.
func (r *Runner) Stats() RunnerStats {
	c := r.o.Speaker.Counters(r.vi.VirtualRouterID)
	r.mu.Lock()
	st := RunnerStats{
		Name: r.vi.Name, Interface: r.vi.Interface, VRID: r.vi.VirtualRouterID, Version: r.vi.Version,
		Status: r.status, Transitions: r.transitions,
		Sent: c.Sent, Received: c.Received,
		Errors: map[string]uint64{},
		Forms:  map[string]uint64{},
	}
	for why, n := range r.bad {
		st.Errors[badName(why)] += n
	}
	r.mu.Unlock()
	for why, n := range c.Dropped {
		if n > 0 {
			st.Errors[Reason(why).String()] += n
		}
	}
	for form, n := range c.Forms {
		if n > 0 {
			st.Forms[ChecksumForm(form).String()] = n
		}
	}
	st.GARPs = r.garps.Load()
	st.SendErrors = r.sendErrs.Load()
	return st
}

func badName(why BadAdvertReason) string {
	switch why {
	case BadAuth:
		return "auth"
	case BadInterval:
		return "interval"
	case BadVIPList:
		return "vip_list"
	}
	return why.String()
}

// Run starts the machine and drives it until ctx ends, then stops it
// gracefully: a master sends priority 0 and gives up its VIPs, and
// notify_stop runs.
func (r *Runner) Run(ctx context.Context) error {
	defer r.o.Speaker.Unregister(r.vi.VirtualRouterID)
	defer r.o.VIPs.Close()
	// Notify scripts outlive ctx by a little: notify_stop runs after it
	// ends, as keepalived's does on shutdown.
	nctx, ncancel := context.WithCancel(context.WithoutCancel(ctx))
	defer ncancel()
	notes := make(chan Notify, 64)
	ndone := make(chan struct{})
	go func() {
		defer close(ndone)
		for n := range notes {
			r.runNotify(nctx, n)
		}
	}()
	exec := func(acts []Action) {
		r.exec(ctx, acts, notes)
		// After the actions: peers and the data plane hear of a MASTER
		// once its VIPs are in place.
		for _, c := range r.pending {
			if r.o.Changed != nil {
				r.o.Changed(r.vi.Name, c.from, c.to)
			}
		}
		r.pending = r.pending[:0]
	}

	// Tracked interfaces found down before the start are known before
	// it: the machine then starts in FAULT rather than flap through
	// BACKUP.
	for _, ev := range r.takeQueue() {
		exec(r.handle(ev, time.Now()))
	}
	start := r.handle(Start{}, time.Now())
	if r.m.Status().State != Master {
		// An instance that starts in BACKUP or FAULT takes its addresses
		// off first, whatever a daemon before it left (one killed while
		// MASTER): keepalived 2.2.7 logs "removing VIPs" at every such
		// start (vrrp_init_state's vrrp_restore_interface).
		start = append([]Action{RemoveVIPs{}}, start...)
	}
	exec(start)

	stop := func() {
		exec(r.handle(Stop{}, time.Now()))
		r.stopGARP()
		close(notes)
		select {
		case <-ndone:
		case <-time.After(stopNotifyWait):
			r.log.Warn("notify scripts still running at stop; killed")
			ncancel()
			<-ndone
		}
	}
	timer := newDeadlineTimer()
	defer timer.Stop()
	for {
		timer.Reset(r.m.Deadline())
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-r.o.Halt:
			stop()
			<-ctx.Done()
			return nil
		case rc := <-r.in:
			exec(r.received(rc))
		case <-r.wake:
			for _, ev := range r.takeQueue() {
				exec(r.handle(ev, time.Now()))
			}
		case now := <-timer.C:
			// A timer that fired early by a hair (Go timers round to
			// the runtime's clock) must still count as due.
			exec(r.handle(TimerFired{}, latest(now, r.m.Deadline())))
		}
	}
}

type change struct{ from, to Status }

// stopNotifyWait bounds how long a stopping instance waits for its notify
// scripts, notify_stop included.
const stopNotifyWait = 5 * time.Second

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// handle feeds the machine one event and reports a transition.
func (r *Runner) handle(ev Event, now time.Time) []Action {
	acts := r.m.Handle(ev, now)
	st := r.m.Status()
	r.mu.Lock()
	from := r.status
	r.status = st
	moved := st.State != from.State
	if moved {
		r.transitions++
	}
	r.mu.Unlock()
	if moved {
		r.log.Info("VRRP transition", "from", from.State, "to", st.State, "why", st.Why, "priority", st.EffectivePriority)
	}
	if moved || st.OwnFault != from.OwnFault {
		r.pending = append(r.pending, change{from, st})
	}
	return acts
}

// received checks what only the instance can (authentication), then
// hands the advert to the machine.
func (r *Runner) received(rc Received) []Action {
	a := rc.Advert
	if a.Version == 2 && (AuthType(r.vi.AuthType) != a.AuthType ||
		(a.AuthType == AuthPass && !bytes.Equal(a.AuthData[:], r.auth[:]))) {
		r.countBad(BadAdvert{From: rc.Src, Reason: BadAuth, Dropped: true})
		return nil
	}
	return r.handle(AdvertReceived{
		From:        rc.Src,
		Priority:    a.Priority,
		Interval:    a.AdvertInt,
		VIPMismatch: !VIPsMatch(r.vips, a.Addrs),
	}, rc.At)
}

func (r *Runner) countBad(b BadAdvert) {
	r.mu.Lock()
	r.bad[b.Reason]++
	n := r.bad[b.Reason]
	r.mu.Unlock()
	// The first of each kind is a warning, the rest debug: a
	// misconfigured peer sends one every interval.
	level := slog.LevelDebug
	if n == 1 {
		level = slog.LevelWarn
	}
	r.log.Log(context.Background(), level, "VRRP advert mismatch", "from", b.From, "reason", badName(b.Reason), "ignored", b.Dropped)
}

func (r *Runner) exec(ctx context.Context, acts []Action, notes chan<- Notify) {
	for _, act := range acts {
		switch a := act.(type) {
		case SendAdvert:
			r.send(a.Priority)
		case AddVIPs:
			changes, err := r.o.VIPs.Add()
			r.logVIPs("VIPs added", changes, err)
		case RemoveVIPs:
			r.stopGARP()
			changes, err := r.o.VIPs.Remove()
			r.logVIPs("VIPs removed", changes, err)
		case SendGARP:
			r.sendGARP(ctx, a)
		case Notify:
			notes <- a
		case BadAdvert:
			r.countBad(a)
		}
	}
}

func (r *Runner) send(prio uint8) {
	adv := Advert{
		Version:   r.vi.Version,
		VRID:      r.vi.VirtualRouterID,
		Priority:  prio,
		AdvertInt: r.vi.AdvertInt,
		Addrs:     r.vips,
	}
	if adv.Version == 2 {
		adv.AuthType = AuthType(r.vi.AuthType)
		if adv.AuthType == AuthPass {
			adv.AuthData = r.auth
		}
	}
	if err := r.o.Speaker.Send(adv); err != nil {
		if r.sendErrs.Add(1) == 1 {
			r.log.Warn("VRRP advert not sent", "err", err)
		} else {
			r.log.Debug("VRRP advert not sent", "err", err)
		}
	}
}

func (r *Runner) logVIPs(msg string, changes []VIPChange, err error) {
	if err != nil {
		r.log.Error(msg, "changes", fmt.Sprint(changes), "err", err)
		return
	}
	r.log.Debug(msg, "changes", fmt.Sprint(changes))
}

// sendGARP sends on a goroutine: with vrrp_garp_interval the rounds are
// paced, and a master's adverts must not wait for them. Leaving MASTER
// cancels what is still to go.
func (r *Runner) sendGARP(ctx context.Context, a SendGARP) {
	if r.garpCtx == nil {
		r.garpCtx, r.garpCancel = context.WithCancel(ctx)
	}
	gctx := r.garpCtx
	r.garpWG.Add(1)
	go func() {
		defer r.garpWG.Done()
		select {
		case garpTurn <- struct{}{}:
			defer func() { <-garpTurn }()
		case <-gctx.Done():
			return
		}
		sent, err := r.o.VIPs.SendGARP(gctx, a.Count)
		r.garps.Add(uint64(sent.ARP + sent.NA))
		if err != nil && gctx.Err() == nil {
			r.log.Warn("gratuitous ARP", "why", a.Why, "err", err)
		}
	}()
}

// garpTurn lets one instance's announcements run at a time, process-wide.
// Each costs a netlink lookup and a packet socket, a few hundred
// microseconds of CPU; the instances that become MASTER together (and reach
// garp_master_delay together) would otherwise start them all at once, and
// on a 2-core node the announcers held both Ps while runners whose advert
// timer had fired waited behind them: 100 instances' adverts were up to
// 28 ms late at garp_master_delay. Waiting for the turn costs no CPU.
var garpTurn = make(chan struct{}, 1)

func (r *Runner) stopGARP() {
	if r.garpCancel != nil {
		r.garpCancel()
		r.garpCtx, r.garpCancel = nil, nil
	}
	r.garpWG.Wait()
}

// runNotify runs notify_<state> as written and the generic notify with
// keepalived's arguments.
func (r *Runner) runNotify(ctx context.Context, n Notify) {
	if r.o.RunScript == nil {
		return
	}
	nt := r.vi.Notify
	var s config.Script
	switch n.State {
	case Master:
		s = nt.Master
	case Backup:
		s = nt.Backup
	case Fault:
		s = nt.Fault
	case Stopped:
		s = nt.Stop
	}
	for _, job := range []struct {
		s    config.Script
		args []string
	}{{s, nil}, {nt.Any, n.Args()}} {
		if job.s.IsZero() {
			continue
		}
		if err := r.o.RunScript(ctx, job.s, job.args); err != nil {
			r.log.Warn("notify script", "state", n.State, "script", job.s.Cmd, "err", err)
		}
	}
}

// WithArgs returns s with args appended, quoted so that Script.Args gives
// them back unchanged.
func WithArgs(s config.Script, args ...string) config.Script {
	var b strings.Builder
	b.WriteString(s.Cmd)
	for _, a := range args {
		b.WriteString(" '")
		// keepalived's splitting honours a backslash even inside
		// quotes.
		a = strings.ReplaceAll(a, `\`, `\\`)
		b.WriteString(strings.ReplaceAll(a, "'", `'"'"'`))
		b.WriteString("'")
	}
	s.Cmd = b.String()
	return s
}
