// Package daemon is xlbd's daemon: read the configuration, bring up the
// data plane, keep it in step with the configuration until told to stop.
// Once started it is a set of tasks under one supervisor (supervise.go):
// the configuration reloader, the data-plane applier, the metrics server
// and the control socket; health checkers and VRRP instances join them.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/ipvs"
	"github.com/xlbd/xlbd/pkg/dataplane/registry"
	"github.com/xlbd/xlbd/pkg/health"
	"github.com/xlbd/xlbd/pkg/metrics"
	"github.com/xlbd/xlbd/pkg/reconcile"
)

// Options are the daemon's command-line settings.
type Options struct {
	ConfigPath string
	// ConfigFormat is the configuration's syntax: config.FormatYAML,
	// config.FormatKeepalived, or config.FormatAuto ("") to go by the
	// file's extension (--config-format).
	ConfigFormat string
	Interfaces   []string // empty: DefaultInterfaces
	PinDir       string
	// Dataplane names the backend in the registry (--dataplane; "":
	// registry.Default); Backend holds each backend's own settings.
	// Interfaces, PinDir and Log are filled in from the fields here.
	Dataplane string
	Backend   registry.Options
	// DontRelease leaves the data plane (XDP links and maps pinned) on
	// exit, for the next daemon to adopt: a restart then loses no flow
	// (keepalived's --dont-release-ipvs).
	DontRelease bool
	PidFile     string
	// MetricsAddr serves /metrics ("" turns it off).
	MetricsAddr string
	// ControlSocket serves `xlbd status` ("" turns it off).
	ControlSocket string
	Log           *slog.Logger
	// Notify reports state to the service manager (sd_notify); nil: none.
	Notify func(state string)
	// StopSignals are the signals that end the daemon (its caller cancels
	// ctx on them). VRRP instances hear them directly as well, so that a
	// master's priority 0 goes out before the rest of the shutdown.
	StopSignals []os.Signal
}

// DefaultInterfaces are those the balancer attaches to when none are
// named: up, not loopback, with an IPv4 address.
func DefaultInterfaces() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				out = append(out, ifi.Name)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no interface is up with an IPv4 address; name one with --interface")
	}
	return out, nil
}

// CheckInterfaces fails for a named interface that does not exist.
func CheckInterfaces(names []string) error {
	var errs []error
	for _, n := range names {
		if _, err := net.InterfaceByName(n); err != nil {
			errs = append(errs, fmt.Errorf("--interface %s: no such interface", n))
		}
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends. A value on reload re-reads the
// configuration; a bad file is logged and the running one kept.
func Run(ctx context.Context, o Options, reload <-chan struct{}) error {
	return runWith(ctx, o, reload, hooks{})
}

// hooks replace, in tests, what the daemon would otherwise read or build.
type hooks struct {
	load    func(path, format string) (*config.Config, error) // config.LoadFormat
	backend *registry.Backend                                 // the registry's for o.Dataplane
	// reloadTimeout is ReloadTimeout unless set.
	reloadTimeout time.Duration
}

// daemon is one run of the daemon.
type daemon struct {
	o             Options
	log           *slog.Logger
	notify        func(string)
	load          func(path, format string) (*config.Config, error)
	kind          registry.Backend
	reloadTimeout time.Duration

	// Set as the daemon starts.
	be       dataplane.Backend
	apply    *applier
	metricsL net.Listener // bound at start; the metrics task takes it
	ctl      *control.Server
	m        *metrics.Metrics
	info     *runInfo
	hc       *checks
	vr       *vrrpd
}

func runWith(ctx context.Context, o Options, reload <-chan struct{}, h hooks) error {
	d := &daemon{o: o, log: o.Log, notify: o.Notify, load: h.load, reloadTimeout: h.reloadTimeout}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.notify == nil {
		d.notify = func(string) {}
	}
	if d.load == nil {
		d.load = config.LoadFormat
	}
	if d.reloadTimeout == 0 {
		d.reloadTimeout = ReloadTimeout
	}
	if h.backend != nil {
		d.kind = *h.backend
	} else {
		var err error
		if d.kind, err = registry.Lookup(cmp.Or(o.Dataplane, registry.Default)); err != nil {
			return err
		}
	}
	return d.run(ctx, reload)
}

// run starts the daemon, then supervises its tasks until ctx ends or one
// of them fails.
func (d *daemon) run(ctx context.Context, reload <-chan struct{}) error {
	o := d.o
	// The configuration is judged against what the chosen backend can do
	// before anything is touched: a start refuses what `xlbd check`
	// refuses.
	cfg, warns, err := d.read(d.kind.Capabilities())
	if err != nil {
		return err
	}
	logWarnings(d.log, warns)
	ifaces := o.Interfaces
	if len(ifaces) == 0 {
		if ifaces, err = DefaultInterfaces(); err != nil {
			return err
		}
	} else if err := CheckInterfaces(ifaces); err != nil {
		return err
	}
	// Everything that can find another daemon in the way comes before the
	// data plane is touched: a second xlbd must refuse to start, not
	// adopt the first one's links and then release them on its way out.
	var lock *pinLock
	var noXDP error
	if o.PinDir != "" && d.kind.Name != ipvs.Name {
		if lock, err = lockPinDir(o.PinDir); err != nil {
			// Under auto, a pin directory that cannot be made (no bpffs,
			// no privilege for one) means XDP cannot run: IPVS can. A
			// directory another daemon holds is a refusal all the same.
			if d.kind.Name != registry.Auto || errors.Is(err, errInUse) {
				return err
			}
			noXDP = err
		}
	}
	loaded := false
	defer func() { lock.release(!loaded) }()
	if o.PidFile != "" {
		pf, err := claimPidFile(o.PidFile, d.log)
		if err != nil {
			return err
		}
		defer pf.remove()
	}
	if o.MetricsAddr != "" {
		if d.metricsL, err = listenMetrics(o.MetricsAddr); err != nil {
			return err
		}
		defer d.metricsL.Close()
	}
	if o.ControlSocket != "" {
		if d.ctl, err = control.Listen(o.ControlSocket); err != nil {
			return err
		}
		// Stop answering before the data plane goes.
		defer d.ctl.Close()
	}

	loaded = true
	bo := o.Backend
	bo.Interfaces, bo.Log = ifaces, d.log
	bo.XDP.PinDir = o.PinDir
	bo.NoXDP = noXDP
	if d.be, err = d.kind.New(bo); err != nil {
		return err
	}
	started := false
	defer func() { d.close(started) }()
	if caps := d.be.Capabilities(); caps.Backend != d.kind.Name {
		// auto judged the configuration by what either backend can do;
		// the one it picked must run it, and what it is not given is
		// noted (once: the first judgement logged some notes already).
		_, notes, err := reconcile.PlanFor(cfg, &caps)
		if err != nil {
			return fmt.Errorf("--dataplane auto picked %s, which cannot run %s: %w", caps.Title(), o.ConfigPath, err)
		}
		logWarnings(d.log, slices.DeleteFunc(notes, func(n *config.Error) bool {
			return slices.ContainsFunc(warns, func(w *config.Error) bool { return w.Error() == n.Error() })
		}))
	}

	// An adopted data plane's pool stands until the checks have run: a
	// restart does not flap it.
	var initial map[health.RealKey]health.Initial
	if d.be.Adopted() {
		held, err := d.be.Status(ctx)
		if err != nil {
			return fmt.Errorf("reading the adopted data plane: %w", err)
		}
		initial = adoptedHealth(cfg, held)
	}
	d.hc = d.newChecks(cfg, initial)
	// No instance is MASTER yet: the first pool balances none of VRRP's
	// addresses, as a node that starts as BACKUP would.
	d.vr = newVRRPD(d, cfg)
	state, err := d.planHealth(cfg)
	if err != nil {
		return err
	}
	// Nothing else runs yet: this first apply needs no applier.
	if err := d.be.Apply(ctx, state); err != nil {
		return fmt.Errorf("apply %s: %w", o.ConfigPath, err)
	}
	d.apply = newApplier(d.be)
	d.apply.last = &state
	d.info = &runInfo{report: control.Report{Config: o.ConfigPath, Started: time.Now()}}
	d.info.report.LastReload = d.info.report.Started
	d.m = metrics.New(d.be.Status, d.log)
	d.m.LastReload.SetToCurrentTime()
	d.hc.mu.Lock()
	d.hc.m = d.m
	d.hc.mu.Unlock()
	d.m.SetVRRP(d.vr.metrics)
	d.publishHealth()
	if d.metricsL != nil {
		d.log.Info("serving metrics", "addr", d.metricsL.Addr().String())
	}
	started = true
	d.log.Info("ready", "config", o.ConfigPath, "dataplane", d.be.Capabilities().Backend, "services", len(state.Services), "pin_dir", o.PinDir)
	d.notify("READY=1")
	return newSupervisor(d.log).run(ctx, d.tasks(reload))
}

// tasks are what the daemon runs once started.
func (d *daemon) tasks(reload <-chan struct{}) []Task {
	tasks := []Task{
		{Name: "applier", Run: d.apply.run},
		{Name: "config", Run: func(ctx context.Context) error { return d.reloader(ctx, reload) }},
	}
	if d.metricsL != nil {
		tasks = append(tasks, Task{Name: "metrics", Run: d.serveMetrics, Policy: Restart})
	}
	if d.ctl != nil {
		tasks = append(tasks, Task{Name: "control", Run: d.serveControl})
	}
	tasks = append(tasks,
		Task{Name: "health checks", Run: d.hc.mon.Run},
		Task{Name: "health to pool", Run: d.follow},
		Task{Name: "mail", Run: d.hc.runMail, Policy: Restart},
		Task{Name: "vrrp", Run: d.vr.run})
	// Health checkers and VRRP instances go here, one Task each: they
	// send their events to the reconciler, which submits the whole
	// desired state to d.apply (the latest wins). None of them may block
	// another: a VRRP timer never waits on a check or an apply.
	return tasks
}

// close takes the data plane down, or leaves it for the next daemon.
func (d *daemon) close(started bool) {
	d.notify("STOPPING=1")
	// A start that fails releases a data plane it made, never one it
	// adopted from a daemon that kept it: that one keeps forwarding.
	release := !d.o.DontRelease
	if !started {
		release = !d.be.Adopted()
	}
	if err := d.be.Close(release); err != nil {
		d.log.Warn("closing the data plane", "err", err)
	}
	switch {
	case release:
		d.log.Info("stopped; data plane released")
	case !started:
		d.log.Info("start failed; the data plane adopted from the previous daemon is left running", "pin_dir", d.o.PinDir)
	default:
		d.log.Info("stopped; data plane left running for the next start", "pin_dir", d.o.PinDir)
	}
}

// read reads the configuration and checks that a backend that can do caps
// can run it; the warnings are the parser's and the plan's.
func (d *daemon) read(caps dataplane.Capabilities) (*config.Config, []*config.Error, error) {
	cfg, err := d.load(d.o.ConfigPath, d.o.ConfigFormat)
	if err != nil {
		return nil, nil, err
	}
	_, notes, err := reconcile.PlanFor(cfg, &caps)
	if err != nil {
		return nil, nil, err
	}
	return cfg, slices.Concat(cfg.Warnings, notes), nil
}

// serveControl answers `xlbd status` until ctx ends; it is a Task.
func (d *daemon) serveControl(ctx context.Context) error {
	d.ctl.Serve(d.report)
	<-ctx.Done()
	return d.ctl.Close()
}

func (d *daemon) report(ctx context.Context) (control.Report, error) {
	st, err := d.be.Status(ctx)
	rep := d.info.get()
	rep.Dataplane = st
	rep.Health, rep.Quorum = d.healthReport()
	rep.VRRP = d.vr.report()
	return rep, err
}

// serveMetrics serves /metrics until ctx ends; it is a Task. Its first run
// serves on the listener bound at start; a restart binds the address again.
func (d *daemon) serveMetrics(ctx context.Context) error {
	l := d.metricsL
	d.metricsL = nil
	if l == nil {
		var err error
		if l, err = listenMetrics(d.o.MetricsAddr); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.m.Handler())
	srv := control.NewHTTPServer(mux)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(netutil.LimitListener(l, control.MaxConns)) }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-done
		return nil
	case err := <-done:
		return fmt.Errorf("metrics server: %w", err)
	}
}

// logWarnings logs every warning about a configuration, one record each:
// the parser's (keywords xlbd ignores, settings that are probably a
// mistake), then what the data plane is not given (reconcile.PlanFor's
// notes).
func logWarnings(log *slog.Logger, warns []*config.Error) {
	for _, w := range warns {
		attrs := []any{"file", w.File, "line", w.Line}
		if w.Path != "" {
			attrs = append(attrs, "path", w.Path)
		}
		log.Warn(w.Msg, attrs...)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// runInfo is the daemon's own part of the status report.
type runInfo struct {
	mu     sync.Mutex
	report control.Report
}

func (r *runInfo) get() control.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report
}

func (r *runInfo) reloaded(ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.report.ReloadsOK++
		r.report.LastReload = time.Now()
	} else {
		r.report.ReloadsFailed++
	}
}

// listenMetrics binds the metrics address, before the data plane comes
// up: an address that is taken (by another daemon, often) stops the start.
func listenMetrics(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: cannot serve metrics there (another xlbd? choose another address, or \"\" for none): %w", addr, err)
	}
	return l, nil
}
