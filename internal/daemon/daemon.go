// Package daemon is xlbd's main loop: read the configuration, bring up the
// data plane, keep it in step with the configuration until told to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
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
	XDPMode      xdp.AttachMode
	// ConnTableSize is the number of entries of the connection and NAT
	// tables (0: maps.DefaultConnTableSize).
	ConnTableSize uint32
	// DontRelease leaves the XDP links and maps pinned on exit, for the
	// next daemon to adopt: a restart then loses no flow (keepalived's
	// --dont-release-ipvs).
	DontRelease bool
	PidFile     string
	// MetricsAddr serves /metrics ("" turns it off).
	MetricsAddr string
	// ControlSocket serves `xlbd status` ("" turns it off).
	ControlSocket string
	Log           *slog.Logger
	// Notify reports state to the service manager (sd_notify); nil: none.
	Notify func(state string)
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
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	notify := o.Notify
	if notify == nil {
		notify = func(string) {}
	}
	cfg, err := config.LoadFormat(o.ConfigPath, o.ConfigFormat)
	if err != nil {
		return err
	}
	state, notes, err := reconcile.Plan(cfg)
	if err != nil {
		return err
	}
	logWarnings(log, cfg, notes)
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
	if o.PinDir != "" {
		if lock, err = lockPinDir(o.PinDir); err != nil {
			return err
		}
	}
	loaded := false
	defer func() { lock.release(!loaded) }()
	if o.PidFile != "" {
		pf, err := claimPidFile(o.PidFile, log)
		if err != nil {
			return err
		}
		defer pf.remove()
	}
	var metricsL net.Listener
	if o.MetricsAddr != "" {
		if metricsL, err = listenMetrics(o.MetricsAddr); err != nil {
			return err
		}
		defer metricsL.Close()
	}
	var ctl *control.Server
	if o.ControlSocket != "" {
		if ctl, err = control.Listen(o.ControlSocket); err != nil {
			return err
		}
		defer ctl.Close()
	}

	loaded = true
	be, err := xdp.New(xdp.Options{PinDir: o.PinDir, Interfaces: ifaces, Mode: o.XDPMode, ConnTableSize: o.ConnTableSize, Log: log})
	if err != nil {
		return err
	}
	started := false
	defer func() {
		notify("STOPPING=1")
		// A start that fails releases a data plane it made, never one it
		// adopted from a daemon that kept it: that one keeps forwarding.
		release := !o.DontRelease
		if !started {
			release = !be.Adopted
		}
		if err := be.Close(release); err != nil {
			log.Warn("closing the data plane", "err", err)
		}
		switch {
		case release:
			log.Info("stopped; data plane released")
		case !started:
			log.Info("start failed; the data plane adopted from the previous daemon is left running", "pin_dir", o.PinDir)
		default:
			log.Info("stopped; data plane left running for the next start", "pin_dir", o.PinDir)
		}
	}()

	if err := be.Apply(ctx, state); err != nil {
		return fmt.Errorf("apply %s: %w", o.ConfigPath, err)
	}

	info := &runInfo{report: control.Report{Config: o.ConfigPath, Started: time.Now()}}
	info.report.LastReload = info.report.Started
	m := metrics.New(be.Status, log)
	m.LastReload.SetToCurrentTime()
	if metricsL != nil {
		defer serveMetrics(metricsL, m, log)()
	}
	if ctl != nil {
		ctl.Serve(func(ctx context.Context) (control.Report, error) {
			st, err := be.Status(ctx)
			rep := info.get()
			rep.Dataplane = st
			return rep, err
		})
		// Stop answering before the data plane goes.
		defer ctl.Close()
	}
	started = true
	log.Info("ready", "config", o.ConfigPath, "services", len(state.Services), "pin_dir", o.PinDir)
	notify("READY=1")

	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	refresh := time.NewTicker(30 * time.Second)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
			next, err := load(ctx, o.ConfigPath, o.ConfigFormat, be, log)
			notify("READY=1")
			if err != nil {
				m.Reloads.WithLabelValues("failed").Inc()
				info.reloaded(false)
				log.Error("reload failed; keeping the running configuration", "err", err)
				// What the bad file cost goes back to the system now, not
				// whenever the runtime gets round to it.
				debug.FreeOSMemory()
				continue
			}
			m.Reloads.WithLabelValues("ok").Inc()
			m.LastReload.SetToCurrentTime()
			info.reloaded(true)
			state = next
			log.Info("reloaded", "config", o.ConfigPath, "services", len(state.Services))
		case <-refresh.C:
			// A DR or TUN real's MAC is only learned by resolving it.
			if err := be.RefreshL2(ctx); err != nil {
				log.Warn("refreshing real servers' paths", "err", err)
			}
		case <-retry.C:
			// Reals without a MAC take no new flows; keep trying to
			// resolve them.
			if len(be.Unresolved()) > 0 {
				if err := be.Apply(ctx, state); err != nil {
					log.Warn("re-resolving real servers", "err", err)
				}
			}
		}
	}
}

// load reads the configuration, logs its warnings and applies it. Apply
// validates the whole state before it writes anything, so an error leaves
// the running configuration in place.
func load(ctx context.Context, path, format string, be *xdp.Backend, log *slog.Logger) (dataplane.State, error) {
	cfg, err := config.LoadFormat(path, format)
	if err != nil {
		return dataplane.State{}, err
	}
	next, notes, err := reconcile.Plan(cfg)
	if err != nil {
		return dataplane.State{}, err
	}
	logWarnings(log, cfg, notes)
	if err := be.Apply(ctx, next); err != nil {
		return dataplane.State{}, err
	}
	return next, nil
}

// logWarnings logs every warning about cfg, one record each: the parser's
// (keywords xlbd ignores, settings that are probably a mistake), then what
// the data plane is not given (reconcile.Plan's notes).
func logWarnings(log *slog.Logger, cfg *config.Config, notes []*config.Error) {
	for _, w := range slices.Concat(cfg.Warnings, notes) {
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

// serveMetrics serves /metrics on l until the returned function is called.
func serveMetrics(l net.Listener, m *metrics.Metrics, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := control.NewHTTPServer(mux)
	go func() {
		if err := srv.Serve(netutil.LimitListener(l, control.MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", l.Addr().String())
	return func() { srv.Close() }
}
