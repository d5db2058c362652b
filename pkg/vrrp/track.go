package vrrp

// The sources of TrackChanged: vrrp_scripts run on their own timers, and
// tracked interfaces followed through netlink. Both report raw up/down by
// name; weights, reverse and which instances care are the machine's and
// the caller's business.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/script"
)

// defaultScriptInterval is keepalived's vrrp_script interval when none is
// configured.
const defaultScriptInterval = time.Second

// scriptState is keepalived's rise/fall counter of one vrrp_script
// (vrrp_script_child_thread): result runs from 0 to rise+fall-1 and the
// script is up when result >= rise. A success below rise-1 only counts;
// the one that reaches rise jumps straight to the top, so that fall
// failures are needed to go down again, and symmetrically a failure at
// rise drops to 0.
type scriptState struct {
	rise, fall, result int
	// init is SCRIPT_INIT_STATE_INIT: no result yet. keepalived starts
	// result at rise-1 so that the first success is enough, and reports
	// the first failure too, since instances wait for that first result.
	init bool
}

func newScriptState(rise, fall int) scriptState {
	// keepalived refuses rise or fall below 1 and uses 1 instead.
	rise, fall = max(rise, 1), max(fall, 1)
	return scriptState{rise: rise, fall: fall, result: rise - 1, init: true}
}

// observe counts one run's outcome and reports whether the script's state
// is to be announced, and what it now is.
func (s *scriptState) observe(ok bool) (changed, up bool) {
	init := s.init
	s.init = false
	if ok {
		if s.result < s.rise-1 {
			s.result++
		} else if top := s.rise + s.fall - 1; s.result != top {
			changed = s.result < s.rise
			s.result = top
		}
	} else {
		if s.result > s.rise {
			s.result--
		} else {
			changed = s.result == s.rise || init
			s.result = 0
		}
	}
	return changed, s.result >= s.rise
}

// ScriptFunc runs a vrrp_script once and reports whether it succeeded. It
// must return soon after ctx ends (at the script's timeout, or shutdown)
// and report a script it had to kill as failed.
type ScriptFunc func(ctx context.Context, s config.VRRPScript) (ok bool)

// ScriptTracker runs vrrp_scripts as keepalived's vrrp_script_thread does
// and reports their state after rise and fall.
type ScriptTracker struct {
	scripts []config.VRRPScript
	run     ScriptFunc
	changed func(name string, up bool)
	log     *slog.Logger

	// mu serializes changed, so the caller sees one report at a time.
	mu sync.Mutex
}

// NewScriptTracker returns a tracker of scripts (those some instance
// tracks; a name given twice runs once). changed is called with every
// script's first result and then with each change after rise/fall; calls
// never overlap and must not block for long.
func NewScriptTracker(scripts []config.VRRPScript, run ScriptFunc, changed func(name string, up bool), log *slog.Logger) *ScriptTracker {
	if log == nil {
		log = slog.Default()
	}
	t := &ScriptTracker{run: run, changed: changed, log: log}
	seen := map[string]bool{}
	for _, s := range scripts {
		if !seen[s.Name] {
			seen[s.Name] = true
			t.scripts = append(t.scripts, s)
		}
	}
	return t
}

// Run runs every script until ctx ends, each on a goroutine of its own so
// that one hanging script delays no other. It returns once ctx has ended
// and every run in progress has returned; nothing is reported after.
func (t *ScriptTracker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range t.scripts {
		wg.Go(func() { t.loop(ctx, s) })
	}
	wg.Wait()
}

func (t *ScriptTracker) loop(ctx context.Context, s config.VRRPScript) {
	interval := s.Interval
	if interval <= 0 {
		interval = defaultScriptInterval
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	st := newScriptState(s.Rise, s.Fall)
	// Runs start every interval from the first, which is at once, as
	// keepalived's timer is re-armed when a run starts, not when it ends.
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		ok := t.run(rctx, s)
		cancel()
		if ctx.Err() != nil {
			// Killed by shutdown, not by its timeout: no result.
			return
		}
		if changed, up := st.observe(ok); changed {
			if up {
				t.log.Info("VRRP script succeeded", "script", s.Name)
			} else {
				t.log.Info("VRRP script failed", "script", s.Name)
			}
			t.mu.Lock()
			t.changed(s.Name, up)
			t.mu.Unlock()
		}
		// A tick that came while the script ran is one keepalived skips
		// ("already running"): the next run waits for the next tick.
		select {
		case <-tick.C:
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ScriptRunner returns a ScriptFunc that runs a vrrp_script's command
// through r: exit status 0 is success; any other status, death by a
// signal, a timeout or a script that cannot be started is failure. Like
// keepalived it logs when a script's outcome changes, not every run.
func ScriptRunner(r *script.Runner, log *slog.Logger) ScriptFunc {
	if log == nil {
		log = slog.Default()
	}
	var mu sync.Mutex
	last := map[string]string{}
	return func(ctx context.Context, s config.VRRPScript) bool {
		res, err := r.Run(ctx, s.Script)
		if err == nil && errors.Is(ctx.Err(), context.Canceled) {
			// Shutdown, not the script's timeout; the tracker discards
			// this run.
			return false
		}
		outcome := res.String()
		if err != nil {
			outcome = err.Error()
		}
		mu.Lock()
		prev, seen := last[s.Name]
		last[s.Name] = outcome
		mu.Unlock()
		switch {
		case seen && prev == outcome:
		case err != nil:
			log.Warn("VRRP script cannot run", "script", s.Name, "err", err)
		default:
			log.Info("VRRP script now returning "+outcome, "script", s.Name)
		}
		return err == nil && res.OK()
	}
}

// ifUp is keepalived's FLAGS_UP: an interface is up when it is both
// administratively up and has carrier.
func ifUp(flags uint32) bool {
	const want = unix.IFF_UP | unix.IFF_RUNNING
	return flags&want == want
}

// LinkTracker follows the link state of interfaces by name through
// netlink notifications, in the network namespace of the thread that
// calls Run.
type LinkTracker struct {
	changed func(name string, up bool)
	log     *slog.Logger
	// up is what was last reported per tracked name; only Run's
	// goroutine touches it.
	up        map[string]bool
	ready     chan struct{}
	readyOnce sync.Once
}

// NewLinkTracker returns a tracker of the named interfaces. changed is
// called on Run's goroutine: once at the start for each interface that is
// down or missing (until then, as for the state machine, every interface
// counts as up), then on every change. Deleting an interface makes it
// down; one created later under the same name is followed as the same.
func NewLinkTracker(names []string, changed func(name string, up bool), log *slog.Logger) *LinkTracker {
	if log == nil {
		log = slog.Default()
	}
	t := &LinkTracker{changed: changed, log: log, up: map[string]bool{}, ready: make(chan struct{})}
	for _, n := range names {
		t.up[n] = true
	}
	return t
}

// Ready is closed once the starting state of every interface has been
// reported, so that instances can start knowing which are down.
func (t *LinkTracker) Ready() <-chan struct{} { return t.ready }

// resubscribeDelay is the pause before listening again after the netlink
// socket failed (typically ENOBUFS: notifications were lost).
const resubscribeDelay = time.Second

// Run follows the interfaces until ctx ends, then returns nil. It returns
// an error only when it cannot listen to netlink at all; a later failure
// (lost notifications) makes it listen again and reread every link.
func (t *LinkTracker) Run(ctx context.Context) error {
	// Held so that a new subscription after a failure opens in the same
	// namespace even if Run's goroutine is no longer on the caller's
	// thread.
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("track interfaces: %w", err)
	}
	defer ns.Close()
	for first := true; ; first = false {
		err := t.session(ctx, ns)
		if ctx.Err() != nil {
			return nil
		}
		var se *subscribeError
		if first && errors.As(err, &se) {
			return fmt.Errorf("track interfaces: %w", err)
		}
		t.log.Warn("interface tracking: netlink failed; listening again and rereading links", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(resubscribeDelay):
		}
	}
}

type subscribeError struct{ err error }

func (e *subscribeError) Error() string { return e.err.Error() }
func (e *subscribeError) Unwrap() error { return e.err }

// linkSession is what one netlink subscription knows.
type linkSession struct {
	byIndex map[int32]string // tracked interfaces present, by ifindex
	present map[string]int32
}

// session subscribes to link notifications and dumps the links on the
// same socket, so that dump replies and notifications come in the order
// the kernel made them. netlink.LinkSubscribeWithOptions would do the
// same but hides the dump's end, and only there can a tracked interface
// be known to be missing.
func (t *LinkTracker) session(ctx context.Context, ns netns.NsHandle) error {
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return &subscribeError{err}
	}
	stop := context.AfterFunc(ctx, s.Close)
	defer func() {
		if stop() {
			s.Close()
		}
	}()
	// Room for bursts (many VLANs coming up at once) makes ENOBUFS, and
	// so a full reread, rarer; failing to get it is harmless.
	_ = s.SetReceiveBufferSize(1<<20, false)

	dump := func() (uint32, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		if err := s.Send(req); err != nil {
			return 0, fmt.Errorf("dump links: %w", err)
		}
		return req.Seq, nil
	}
	seq, err := dump()
	if err != nil {
		return &subscribeError{err}
	}
	ls := &linkSession{byIndex: map[int32]string{}, present: map[string]int32{}}
	dumping, interrupted := true, false
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			return err
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if dumping && m.Header.Seq == seq && m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if !dumping || m.Header.Seq != seq {
					continue
				}
				if interrupted {
					// Links changed during the dump; it may have
					// skipped some. Notifications covered the
					// changes, but not necessarily the skipped.
					interrupted = false
					if seq, err = dump(); err != nil {
						return err
					}
					continue
				}
				dumping = false
				for name := range t.up {
					if _, ok := ls.present[name]; !ok {
						t.set(name, false, "missing")
					}
				}
				t.readyOnce.Do(func() { close(t.ready) })
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 && m.Header.Seq == seq {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return fmt.Errorf("dump links: %w", syscall.Errno(errno))
					}
				}
			case unix.RTM_NEWLINK, unix.RTM_DELLINK:
				hdr := unix.NlMsghdr(m.Header)
				link, err := netlink.LinkDeserialize(&hdr, m.Data)
				if err != nil {
					t.log.Debug("unparsable link message", "err", err)
					continue
				}
				a := link.Attrs()
				t.apply(ls, m.Header.Type == unix.RTM_DELLINK, int32(a.Index), a.Name, a.RawFlags)
			}
		}
	}
}

// apply follows one link message. Links are matched by ifindex as well
// as by name, so that renaming a tracked interface away counts as losing
// it.
func (t *LinkTracker) apply(ls *linkSession, del bool, index int32, name string, flags uint32) {
	if old, ok := ls.byIndex[index]; ok && (del || old != name) {
		delete(ls.byIndex, index)
		delete(ls.present, old)
		why := "deleted"
		if !del {
			why = "renamed to " + name
		}
		t.set(old, false, why)
	}
	if _, tracked := t.up[name]; del || !tracked {
		return
	}
	if stale, ok := ls.present[name]; ok && stale != index {
		// Its deletion was not seen; a name belongs to one link.
		delete(ls.byIndex, stale)
	}
	ls.byIndex[index] = name
	ls.present[name] = index
	up := ifUp(flags)
	why := "down"
	if up {
		why = "up"
	} else if flags&unix.IFF_UP != 0 {
		why = "no carrier"
	}
	t.set(name, up, why)
}

func (t *LinkTracker) set(name string, up bool, why string) {
	if t.up[name] == up {
		return
	}
	t.up[name] = up
	if up {
		t.log.Info("tracked interface is up", "interface", name)
	} else {
		t.log.Info("tracked interface is down", "interface", name, "reason", why)
	}
	t.changed(name, up)
}
