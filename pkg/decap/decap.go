// Package decap runs the IPIP decapsulator (bpf/decap.c) on a real server
// in TUN mode whose kernel has no ipip module: `xlbd decap --interface IF`.
package decap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	xbpf "github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
)

// Decap is the decapsulator attached to some interfaces.
type Decap struct {
	objs  xbpf.DecapObjects
	links []link.Link
	addrs map[netip.Addr]bool
	log   *slog.Logger
}

// Attach loads the program and attaches it to every interface.
func Attach(ifaces []string, mode xdp.AttachMode, log *slog.Logger) (*Decap, error) {
	if log == nil {
		log = slog.Default()
	}
	d := &Decap{log: log, addrs: map[netip.Addr]bool{}}
	if err := xbpf.LoadDecapObjects(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load decapsulator: %+v", ve)
		}
		return nil, fmt.Errorf("load decapsulator: %w", err)
	}
	if err := d.Refresh(); err != nil {
		d.Close()
		return nil, err
	}
	for _, name := range ifaces {
		l, m, err := xdp.AttachProgram(d.objs.XdpDecap, name, mode)
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
	for a := range want {
		if !d.addrs[a] {
			b := a.As4()
			if err := d.objs.DecapAddrs.Put(b, uint8(1)); err != nil {
				return fmt.Errorf("add %s: %w", a, err)
			}
			d.log.Info("accepting IPIP", "to", a)
		}
	}
	for a := range d.addrs {
		if !want[a] {
			b := a.As4()
			if err := d.objs.DecapAddrs.Delete(b); err != nil {
				return fmt.Errorf("remove %s: %w", a, err)
			}
		}
	}
	d.addrs = want
	return nil
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
func (d *Decap) Decapsulated() (uint64, error) {
	var per []uint64
	if err := d.objs.DecapStats.Lookup(uint32(xbpf.DecapDecapVerdictDECAP_DONE), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range per {
		n += c
	}
	return n, nil
}

// Close detaches and unloads.
func (d *Decap) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}
