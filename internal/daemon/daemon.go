// Package daemon is xlbd's main loop: read the configuration, bring up the
// data plane, keep it in step with the configuration until told to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
	"github.com/xlbd/xlbd/pkg/reconcile"
)

// Options are the daemon's command-line settings.
type Options struct {
	ConfigPath string
	Interfaces []string // empty: DefaultInterfaces
	PinDir     string
	XDPMode    xdp.AttachMode
	Log        *slog.Logger
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
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	ifaces := o.Interfaces
	if len(ifaces) == 0 {
		if ifaces, err = DefaultInterfaces(); err != nil {
			return err
		}
	} else if err := CheckInterfaces(ifaces); err != nil {
		return err
	}
	be, err := xdp.New(xdp.Options{PinDir: o.PinDir, Interfaces: ifaces, Mode: o.XDPMode, Log: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := be.Close(true); err != nil {
			log.Warn("releasing the data plane", "err", err)
		}
		log.Info("stopped; data plane released")
	}()

	state := reconcile.Desired(cfg)
	if err := be.Apply(ctx, state); err != nil {
		return fmt.Errorf("apply %s: %w", o.ConfigPath, err)
	}
	log.Info("ready", "config", o.ConfigPath, "services", len(state.Services), "pin_dir", o.PinDir)

	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			cfg, err := config.Load(o.ConfigPath)
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			next := reconcile.Desired(cfg)
			if err := be.Apply(ctx, next); err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			state = next
			log.Info("reloaded", "config", o.ConfigPath, "services", len(state.Services))
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
