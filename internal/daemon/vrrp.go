package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/pkg/alert"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/metrics"
	"github.com/xlbd/xlbd/pkg/vrrp"
)

// vrrpd is the daemon's side of VRRP: a speaker per interface and family,
// a runner per vrrp_instance, and the addresses the MASTERs hold, which
// decide what the data plane balances.
type vrrpd struct {
	log *slog.Logger
	d   *daemon
	// changed wakes the pool follower: an instance went to or left MASTER.
	changed chan struct{}
	reconf  chan *config.Config

	mu       sync.Mutex
	cfg      *config.Config
	runners  map[string]*runnerTask // by instance name
	speakers map[speakerKey]*speakerTask
	group    map[string]string // instance → its sync group
	held     map[netip.Addr]int
	masters  map[string]bool // the instances that are MASTER

	// The trackers, owned by the task's goroutine.
	trackedLinks   []string
	trackedScripts []config.VRRPScript
	trackCancel    context.CancelFunc
	trackDone      chan struct{}
}

type speakerKey struct {
	ifname string
	v6     bool
}

type speakerTask struct {
	sp     *vrrp.Speaker
	cancel context.CancelFunc
	done   chan struct{}
	users  int
}

type runnerTask struct {
	r      *vrrp.Runner
	key    speakerKey
	cancel context.CancelFunc
	halt   chan os.Signal // nil without Options.StopSignals
	done   chan struct{}
}

func newVRRPD(d *daemon, cfg *config.Config) *vrrpd {
	return &vrrpd{
		log: d.log, d: d, cfg: cfg,
		changed:  make(chan struct{}, 1),
		reconf:   make(chan *config.Config, 1),
		runners:  map[string]*runnerTask{},
		speakers: map[speakerKey]*speakerTask{},
		group:    map[string]string{},
		held:     map[netip.Addr]int{},
		masters:  map[string]bool{},
	}
}

// Master reports whether the instance called name is MASTER here
// (reconcile.Instances): IPVS's sync daemon follows it.
func (v *vrrpd) Master(name string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.masters[name]
}

// Held reports whether a MASTER here holds addr (reconcile.VIPs).
func (v *vrrpd) Held(addr netip.Addr) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.held[addr.Unmap()] > 0
}

// update hands a reloaded configuration to the VRRP task; the latest wins.
func (v *vrrpd) update(cfg *config.Config) {
	for {
		select {
		case v.reconf <- cfg:
			return
		default:
		}
		select {
		case <-v.reconf:
		default:
		}
	}
}

// run is the VRRP task: it starts the instances, follows reloads, and on
// the way out stops every instance gracefully (priority 0, VIPs removed,
// notify_stop) before returning.
func (v *vrrpd) run(ctx context.Context) error {
	v.mu.Lock()
	cfg := v.cfg
	v.mu.Unlock()
	// An instance that cannot start (its interface is missing) is
	// logged and the rest run: one bad instance must not take the node's
	// other instances and its data plane down with it.
	if err := v.sync(ctx, cfg); err != nil {
		v.log.Error("VRRP", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			v.stopAll()
			if v.trackCancel != nil {
				v.trackCancel()
				<-v.trackDone
			}
			return nil
		case cfg := <-v.reconf:
			if err := v.sync(ctx, cfg); err != nil {
				v.log.Error("VRRP after reload", "err", err)
			}
		}
	}
}

// sync makes the running instances cfg's: unchanged instances are left
// alone (a reload does not flap a VIP), changed ones are stopped and
// started again, removed ones stopped.
func (v *vrrpd) sync(ctx context.Context, cfg *config.Config) error {
	want := map[string]config.VRRPInstance{}
	group := map[string]string{}
	for _, g := range cfg.SyncGroups {
		for _, n := range g.Group {
			group[n] = g.Name
		}
	}
	for _, vi := range cfg.VRRPInstances {
		want[vi.Name] = vi
	}
	v.mu.Lock()
	old := v.cfg
	v.cfg = cfg
	v.group = group
	v.mu.Unlock()

	var stop []*runnerTask
	v.mu.Lock()
	for name, rt := range v.runners {
		vi, ok := want[name]
		if ok && sameInstance(rt.r.Config(), vi) && sameVRRPGlobals(old, cfg) {
			delete(want, name)
			continue
		}
		stop = append(stop, rt)
		delete(v.runners, name)
	}
	v.mu.Unlock()
	for _, rt := range stop {
		v.stopRunner(rt)
	}
	var errs []error
	var started []*runnerTask
	for _, vi := range cfg.VRRPInstances {
		if _, ok := want[vi.Name]; !ok {
			continue
		}
		rt, err := v.start(ctx, cfg, vi)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, rt)
	}
	// The trackers' first reports (interfaces down or missing) reach the
	// new runners before they start, so that they start in FAULT instead
	// of flapping through BACKUP.
	v.track(ctx, cfg)
	for _, rt := range started {
		v.launch(ctx, rt)
	}
	v.closeIdleSpeakers()
	return errors.Join(errs...)
}

// track (re)starts the trackers of track_interface and track_script when
// what is tracked changed, and waits briefly for the links' first report.
func (v *vrrpd) track(ctx context.Context, cfg *config.Config) {
	var links []string
	var scripts []config.VRRPScript
	byName := map[string]config.VRRPScript{}
	for _, s := range cfg.VRRPScripts {
		byName[s.Name] = s
	}
	seen := map[string]bool{}
	for _, vi := range cfg.VRRPInstances {
		for _, ti := range vi.TrackInterfaces {
			if !seen["if:"+ti.Name] {
				seen["if:"+ti.Name] = true
				links = append(links, ti.Name)
			}
		}
		for _, ts := range vi.TrackScripts {
			if s, ok := byName[ts.Name]; ok && !seen["script:"+ts.Name] {
				seen["script:"+ts.Name] = true
				scripts = append(scripts, s)
			}
		}
	}
	slices.Sort(links)
	if slices.Equal(links, v.trackedLinks) && reflect.DeepEqual(scripts, v.trackedScripts) && v.trackCancel != nil {
		return
	}
	if v.trackCancel != nil {
		v.trackCancel()
		<-v.trackDone
		v.trackCancel = nil
	}
	v.trackedLinks, v.trackedScripts = links, scripts
	if len(links) == 0 && len(scripts) == 0 {
		return
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	v.trackCancel, v.trackDone = cancel, done
	lt := vrrp.NewLinkTracker(links, v.post(vrrp.TrackInterface), v.log)
	st := vrrp.NewScriptTracker(scripts, vrrp.ScriptRunner(v.d.hc.scripts.Load(), v.log), v.post(vrrp.TrackScript), v.log)
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		if len(links) > 0 {
			wg.Go(func() {
				if err := lt.Run(tctx); err != nil {
					v.log.Error("track_interface", "err", err)
				}
			})
		}
		if len(scripts) > 0 {
			wg.Go(func() { st.Run(tctx) })
		}
		wg.Wait()
	}()
	if len(links) > 0 {
		select {
		case <-lt.Ready():
		case <-time.After(time.Second):
			v.log.Warn("track_interface: no first report within 1 s; instances start with their interfaces counted up")
		}
	}
}

// post is a tracker's callback: the change goes to every instance that
// tracks the object.
func (v *vrrpd) post(kind vrrp.TrackKind) func(name string, up bool) {
	return func(name string, up bool) {
		v.mu.Lock()
		var rs []*vrrp.Runner
		for _, rt := range v.runners {
			vi := rt.r.Config()
			tracks := false
			if kind == vrrp.TrackInterface {
				tracks = slices.ContainsFunc(vi.TrackInterfaces, func(t config.TrackInterface) bool { return t.Name == name })
			} else {
				tracks = slices.ContainsFunc(vi.TrackScripts, func(t config.TrackScript) bool { return t.Name == name })
			}
			if tracks {
				rs = append(rs, rt.r)
			}
		}
		v.mu.Unlock()
		for _, r := range rs {
			r.Post(vrrp.TrackChanged{Kind: kind, Name: name, Up: up})
		}
	}
}

// sameInstance compares two instances as configured, ignoring where they
// were written.
func sameInstance(a, b config.VRRPInstance) bool {
	a.File, a.Line, b.File, b.Line = "", 0, "", 0
	return reflect.DeepEqual(a, b)
}

func sameVRRPGlobals(a, b *config.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Global.VRRPStrict == b.Global.VRRPStrict && a.Global.VRRPMcastGroup4 == b.Global.VRRPMcastGroup4 &&
		reflect.DeepEqual(a.VRRPScripts, b.VRRPScripts) && reflect.DeepEqual(syncGroupsOf(a), syncGroupsOf(b))
}

func syncGroupsOf(c *config.Config) []config.SyncGroup {
	l := slices.Clone(c.SyncGroups)
	for i := range l {
		l[i].File, l[i].Line = "", 0
	}
	return l
}

// start makes one instance's runner; launch runs it.
func (v *vrrpd) start(ctx context.Context, cfg *config.Config, vi config.VRRPInstance) (*runnerTask, error) {
	ifname := vi.Interface
	if ifname == "" {
		var err error
		if ifname, err = interfaceOf(vi.UnicastSrcIP); err != nil {
			return nil, fmt.Errorf("vrrp_instance %s (%s:%d): %w", vi.Name, vi.File, vi.Line, err)
		}
	}
	key := speakerKey{ifname, vi.IPv6()}
	sp, err := v.speaker(ctx, key, cfg)
	if err != nil {
		return nil, fmt.Errorf("vrrp_instance %s (%s:%d): %w", vi.Name, vi.File, vi.Line, err)
	}
	vm := vrrp.NewVIPManager(vi)
	vm.Dev = ifname
	var halt chan os.Signal
	if sigs := v.d.o.StopSignals; len(sigs) > 0 {
		halt = make(chan os.Signal, 1)
		signal.Notify(halt, sigs...)
	}
	r, err := vrrp.NewRunner(vrrp.RunnerOptions{
		Instance:  vi,
		Strict:    cfg.Global.VRRPStrict,
		Speaker:   sp.sp,
		VIPs:      vm,
		RunScript: v.runScript,
		SyncGroup: syncGroupOf(cfg, vi.Name),
		Changed:   func(_ string, from, to vrrp.Status) { v.transition(vi, from, to) },
		Halt:      halt,
		Log:       v.log,
	})
	if err != nil {
		if halt != nil {
			signal.Stop(halt)
		}
		v.releaseSpeaker(key)
		return nil, err
	}
	rt := &runnerTask{r: r, key: key, halt: halt, done: make(chan struct{})}
	v.mu.Lock()
	v.runners[vi.Name] = rt
	v.mu.Unlock()
	return rt, nil
}

// launch runs a runner made by start.
func (v *vrrpd) launch(ctx context.Context, rt *runnerTask) {
	var rctx context.Context
	// Straight from the task's context: a SIGTERM reaches every runner in
	// the goroutine that cancels it, one hop fewer before the priority 0.
	rctx, rt.cancel = context.WithCancel(ctx)
	go func() {
		defer close(rt.done)
		if rt.halt != nil {
			defer signal.Stop(rt.halt)
		}
		if err := rt.r.Run(rctx); err != nil {
			v.log.Error("VRRP instance stopped", "instance", rt.r.Name(), "err", err)
		}
	}()
}

func syncGroupOf(cfg *config.Config, name string) string {
	for _, g := range cfg.SyncGroups {
		if slices.Contains(g.Group, name) {
			return g.Name
		}
	}
	return ""
}

// interfaceOf finds the interface that holds addr, for a unicast instance
// with no interface keyword.
func interfaceOf(addr netip.Addr) (string, error) {
	if !addr.IsValid() {
		return "", errors.New("no interface and no unicast_src_ip to find one by")
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == addr {
				return ifi.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds unicast_src_ip %v", addr)
}

func (v *vrrpd) speaker(ctx context.Context, key speakerKey, cfg *config.Config) (*speakerTask, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.speakers[key]; st != nil {
		st.users++
		return st, nil
	}
	o := vrrp.Options{IPv6: key.v6, Logger: v.log}
	if !key.v6 {
		o.Group = cfg.Global.VRRPMcastGroup4
	}
	sp, err := vrrp.NewSpeaker(key.ifname, o)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st := &speakerTask{sp: sp, cancel: cancel, done: make(chan struct{}), users: 1}
	go func() {
		defer close(st.done)
		if err := sp.Run(sctx); err != nil {
			v.log.Error("VRRP speaker stopped", "interface", key.ifname, "err", err)
		}
	}()
	v.speakers[key] = st
	return st, nil
}

func (v *vrrpd) releaseSpeaker(key speakerKey) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.speakers[key]; st != nil {
		st.users--
	}
}

// closeIdleSpeakers closes the sockets no instance uses any more.
func (v *vrrpd) closeIdleSpeakers() {
	v.mu.Lock()
	var idle []*speakerTask
	for k, st := range v.speakers {
		if st.users <= 0 {
			idle = append(idle, st)
			delete(v.speakers, k)
		}
	}
	v.mu.Unlock()
	for _, st := range idle {
		st.cancel()
		st.sp.Close()
		<-st.done
	}
}

func (v *vrrpd) stopRunner(rt *runnerTask) {
	rt.cancel()
	<-rt.done
	v.releaseSpeaker(rt.key)
}

// stopAll stops every instance at once (each sends its priority 0 without
// waiting for the others), then the speakers.
func (v *vrrpd) stopAll() {
	v.mu.Lock()
	rts := make([]*runnerTask, 0, len(v.runners))
	for _, rt := range v.runners {
		rts = append(rts, rt)
	}
	v.runners = map[string]*runnerTask{}
	v.mu.Unlock()
	for _, rt := range rts {
		rt.cancel()
	}
	for _, rt := range rts {
		<-rt.done
		v.releaseSpeaker(rt.key)
	}
	v.closeIdleSpeakers()
}

func (v *vrrpd) runScript(ctx context.Context, s config.Script, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, NotifyTimeout)
	defer cancel()
	res, err := v.d.hc.scripts.Load().Run(ctx, vrrp.WithArgs(s, args...))
	return errors.Join(err, res.Err())
}

// transition is every runner's Changed: it keeps the held addresses, tells
// the pool follower, relays the change to the sync group's other members
// and sends the mail. It runs on the runner's goroutine and never blocks.
func (v *vrrpd) transition(vi config.VRRPInstance, fromSt, st vrrp.Status) {
	from := fromSt.State
	name := vi.Name
	v.mu.Lock()
	group := v.group[name]
	var peers []*vrrp.Runner
	if group != "" {
		for n, g := range v.group {
			if g == group && n != name && v.runners[n] != nil {
				peers = append(peers, v.runners[n].r)
			}
		}
	}
	heldChanged := false
	if (from == vrrp.Master) != (st.State == vrrp.Master) {
		d := 1
		if from == vrrp.Master {
			d = -1
		}
		for _, l := range [][]config.VIP{vi.VirtualIPAddresses, vi.VirtualIPAddressesExcluded} {
			for _, a := range l {
				v.held[a.Prefix.Addr().Unmap()] += d
			}
		}
		v.masters[name] = st.State == vrrp.Master
		heldChanged = true
	}
	v.mu.Unlock()
	if heldChanged {
		select {
		case v.changed <- struct{}{}:
		default:
		}
	}
	// Faults are relayed by the member's own fault, not by its state: a
	// member held in FAULT by its peers must not hold them in turn.
	for _, p := range peers {
		switch {
		case st.State == vrrp.Master && from != vrrp.Master:
			p.Post(vrrp.SyncMaster{Member: name})
		case st.State == vrrp.Backup && from == vrrp.Master:
			p.Post(vrrp.SyncBackup{Member: name})
		}
		if st.OwnFault != fromSt.OwnFault {
			p.Post(vrrp.SyncFault{Member: name, Held: st.OwnFault})
		}
	}
	if from == st.State {
		return
	}
	// The parser resolves smtp_alert against global_defs already.
	if vi.SMTPAlert {
		v.d.hc.send(alert.VRRPAlert(name, st.State.String()))
	}
}

// report is the VRRP part of `xlbd status`, in configuration order.
func (v *vrrpd) report() []control.VRRPInstance {
	v.mu.Lock()
	cfg := v.cfg
	rts := make([]*runnerTask, 0, len(v.runners))
	for _, vi := range cfg.VRRPInstances {
		if rt := v.runners[vi.Name]; rt != nil {
			rts = append(rts, rt)
		}
	}
	group := v.group
	v.mu.Unlock()
	out := make([]control.VRRPInstance, 0, len(rts))
	for _, rt := range rts {
		s := rt.r.Stats()
		vi := rt.r.Config()
		ci := control.VRRPInstance{
			Name: s.Name, Interface: rt.key.ifname, VRID: s.VRID, Version: s.Version,
			State: s.State.String(), Priority: s.Priority, EffectivePriority: s.EffectivePriority,
			MasterPriority: s.MasterPriority, Since: s.Since, Why: s.Why, SyncGroup: group[s.Name],
			Transitions: s.Transitions, AdvertsSent: s.Sent, AdvertsReceived: s.Received,
			Errors: s.Errors, Checksums: s.Forms, GARPs: s.GARPs,
		}
		if s.Master.IsValid() {
			ci.Master = s.Master.String()
		}
		for _, a := range vi.VirtualIPAddresses {
			ci.VIPs = append(ci.VIPs, a.Prefix.String())
		}
		out = append(out, ci)
	}
	return out
}

// metrics is what /metrics exports of the instances.
func (v *vrrpd) metrics() []metrics.VRRPInstance {
	rep := v.report()
	out := make([]metrics.VRRPInstance, len(rep))
	for i, r := range rep {
		out[i] = metrics.VRRPInstance{
			Name: r.Name, State: r.State, Priority: r.Priority, EffectivePriority: r.EffectivePriority,
			Transitions: r.Transitions, Sent: r.AdvertsSent, Received: r.AdvertsReceived, Errors: r.Errors, GARPs: r.GARPs,
		}
	}
	return out
}
