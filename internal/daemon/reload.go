package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// ReloadTimeout bounds how long a reload waits for the configuration to be
// read and planned. Reads are bounded already (regular files, size caps);
// this is what keeps anything else that blocks from holding reloads up.
const ReloadTimeout = 30 * time.Second

// reloader re-reads the configuration for each value on reload; it is a
// Task. A reload runs in its own goroutine so that this loop, and so
// SIGTERM, is always served; one asked for while another runs is done once
// that one ends, however many were asked for meanwhile.
func (d *daemon) reloader(ctx context.Context, reload <-chan struct{}) error {
	var running <-chan struct{} // nil when no reload runs
	again := false
	for {
		select {
		case <-ctx.Done():
			if running != nil {
				// Prompt: a reload gives up as soon as ctx ends.
				<-running
			}
			return nil
		case <-reload:
			if running != nil {
				again = true
				continue
			}
			running = d.startReload(ctx)
		case <-running:
			running = nil
			if again {
				again = false
				running = d.startReload(ctx)
			}
		}
	}
}

func (d *daemon) startReload(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.reload(ctx)
	}()
	return done
}

// reload reads, plans and applies the configuration; on any error the
// running configuration stays. The applier validates the whole state
// before it writes anything.
func (d *daemon) reload(ctx context.Context) {
	d.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	cfg, warns, err := d.planWithin(ctx, d.reloadTimeout)
	services := 0
	if err == nil {
		logWarnings(d.log, warns)
		// The checks take the new configuration first, so that the pool
		// applied is the new one as they find it; the ones that did not
		// change keep their state.
		old := d.hc.config()
		d.hc.update(cfg)
		var st dataplane.State
		if st, err = d.planHealth(cfg); err == nil {
			err = d.apply.apply(ctx, st)
		}
		if err != nil && ctx.Err() == nil {
			d.hc.update(old)
		}
		services = len(st.Services)
		d.publishHealth()
		if err == nil {
			d.vr.update(cfg)
		}
	}
	if ctx.Err() != nil {
		return // stopping: this reload neither happened nor failed
	}
	d.notify("READY=1")
	if err != nil {
		d.m.Reloads.WithLabelValues("failed").Inc()
		d.info.reloaded(false)
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		// What the bad file cost goes back to the system now, not
		// whenever the runtime gets round to it.
		debug.FreeOSMemory()
		return
	}
	d.m.Reloads.WithLabelValues("ok").Inc()
	d.m.LastReload.SetToCurrentTime()
	d.info.reloaded(true)
	d.log.Info("reloaded", "config", d.o.ConfigPath, "services", services)
}

// planWithin is plan, given up on after limit or when ctx ends. A read
// cannot be interrupted: one given up on goes on in the background, and
// whatever it finds is dropped, so a stale file never overrides a later
// reload.
func (d *daemon) planWithin(ctx context.Context, limit time.Duration) (*config.Config, []*config.Error, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	type result struct {
		cfg   *config.Config
		warns []*config.Error
		err   error
	}
	done := make(chan result, 1) // a read given up on can still finish
	go func() {
		defer func() {
			// A reload must not take the running balancer down with it.
			if p := recover(); p != nil {
				d.log.Error("reading the configuration panicked", "panic", p, "stack", string(debug.Stack()))
				done <- result{err: fmt.Errorf("reading %s: internal error: %v", d.o.ConfigPath, p)}
			}
		}()
		cfg, warns, err := d.read(d.be.Capabilities())
		done <- result{cfg, warns, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.warns, r.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil, fmt.Errorf("reading %s: given up after %s", d.o.ConfigPath, limit)
		}
		return nil, nil, ctx.Err()
	}
}
