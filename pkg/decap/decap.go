// Package decap runs the IPIP decapsulator (bpf/decap.c) on a real server
// in TUN mode whose kernel has no ipip module: `xlbd decap --interface IF`.
package decap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
	"github.com/xlbd/xlbd/pkg/maps"
)

// Decap is the decapsulator attached to some interfaces.
type Decap struct {
	set   *maps.DecapSet
	links []link.Link
	log   *slog.Logger
}

// Attach loads the program and attaches it to every interface.
func Attach(ifaces []string, mode xdp.AttachMode, log *slog.Logger) (*Decap, error) {
	if log == nil {
		log = slog.Default()
	}
	set, err := maps.LoadDecap()
	if err != nil {
		return nil, err
	}
	d := &Decap{set: set, log: log}
	if err := d.Refresh(); err != nil {
		d.Close()
		return nil, err
	}
	for _, name := range ifaces {
		l, m, err := xdp.AttachProgram(d.set.Program, name, mode)
		if err != nil {
			d.Close()
			return nil, err
		}
		log.Info("decapsulating IPIP", "interface", name, "xdp_mode", m)
		d.links = append(d.links, l)
	}
	return d, nil
}

// Refresh makes the program accept IPIP for exactly this host's current
// IPv4 addresses (loopback's aside: a VIP is never a tunnel endpoint).
func (d *Decap) Refresh() error {
	want := map[netip.Addr]bool{}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				want[p.Addr()] = true
			}
		}
	}
	added, removed, err := d.set.SetAddrs(want)
	for _, a := range added {
		d.log.Info("accepting IPIP", "to", a)
	}
	for _, a := range removed {
		d.log.Info("no longer accepting IPIP", "to", a)
	}
	return err
}

// Run keeps the address list current until ctx ends.
func (d *Decap) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.Refresh(); err != nil {
				d.log.Warn("refresh addresses", "err", err)
			}
		}
	}
}

// Decapsulated returns how many packets lost their outer header.
func (d *Decap) Decapsulated() (uint64, error) { return d.set.Decapsulated() }

// Close detaches and unloads.
func (d *Decap) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.set.Close())
	return errors.Join(errs...)
}
