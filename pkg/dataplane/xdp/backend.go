package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// AttachMode is --xdp-mode.
type AttachMode string

const (
	// Auto uses native XDP where it can deliver what it sends, generic
	// elsewhere. On veth a native program's XDP_TX/REDIRECT frames are only
	// delivered when the peer runs native XDP too (XDP-NOTES rule 1),
	// which the LB cannot promise, so veth gets generic.
	Auto    AttachMode = "auto"
	Native  AttachMode = "native"
	Generic AttachMode = "generic"
)

// ParseAttachMode checks a --xdp-mode value.
func ParseAttachMode(s string) (AttachMode, error) {
	switch m := AttachMode(s); m {
	case Auto, Native, Generic:
		return m, nil
	}
	return "", fmt.Errorf("xdp mode %q: want auto, native or generic", s)
}

// Options configure a Backend.
type Options struct {
	PinDir        string
	Interfaces    []string
	Mode          AttachMode
	ConnTableSize uint32
	Resolver      Resolver // default NetlinkResolver
	Log           *slog.Logger
	// Tables sizes the balancer's tables (0: default, or as pinned);
	// ConnTableSize, when set, sizes the connection table instead.
	Tables maps.Options
}

// Attachment is the balancer on one interface.
type Attachment struct {
	Interface string
	Mode      AttachMode // native or generic, as attached
	link      link.Link
	pin       string
	// restore puts back the interface's accept_local (nil: unchanged).
	restore func() error
}

// Backend is the XDP data plane: the loaded balancer, its tables and its
// attachments.
type Backend struct {
	*Tables
	Set         *maps.Set
	Attachments []*Attachment
	log         *slog.Logger
	stopGC      chan struct{}
	holder      *holder
	socks       *sockets
	holdDone    chan struct{}
	shed        atomic.Uint64
	gcDone      chan struct{}
	resolveDone chan struct{}
	// adopted is set when New found the balancer's maps pinned already,
	// left by a daemon that kept the data plane.
	adopted bool
	// applyMu orders Apply with the re-applies of last, the state last
	// applied without error, that the maintenance task makes.
	applyMu      sync.Mutex
	last         *dataplane.State
	maintainDone chan struct{}
	routesDone   chan struct{}
}

var _ dataplane.Backend = (*Backend)(nil)

// New loads the balancer (adopting pinned maps) and attaches it to every
// interface in o.Interfaces.
func New(o Options) (*Backend, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	res := o.Resolver
	if res == nil {
		res = NetlinkResolver{Log: log}
	}
	var adopted bool
	if o.PinDir != "" {
		_, err := os.Stat(filepath.Join(o.PinDir, "ctl"))
		adopted = err == nil
	}
	sizes := o.Tables
	if o.ConnTableSize != 0 {
		sizes.ConnTableSize = o.ConnTableSize
	}
	set, err := maps.Load(o.PinDir, sizes)
	if err != nil {
		return nil, err
	}
	if set.PacketClockErr != nil {
		log.Warn("no jiffy clock: packets read the coarse clock, about 15 ns more each", "err", set.PacketClockErr)
	}
	tables, err := NewTables(set, res, log)
	if err != nil {
		set.Close()
		return nil, err
	}
	b := &Backend{Tables: tables, Set: set, log: log, adopted: adopted}
	for _, ifname := range o.Interfaces {
		a, err := b.attach(ifname, o.Mode)
		if err != nil {
			b.Close(!adopted)
			return nil, err
		}
		log.Info("attached", "interface", ifname, "xdp_mode", a.Mode)
		b.Attachments = append(b.Attachments, a)
		if a.Mode != Native {
			if a.restore, err = acceptLocal(ifname, log); err != nil {
				b.Close(!adopted)
				return nil, err
			}
		}
	}
	b.stopGC, b.gcDone = make(chan struct{}), make(chan struct{})
	go b.gcLoop(time.Second)
	if n, ok := res.(Neighbours); ok {
		b.resolveDone = make(chan struct{})
		tables.resolving.Store(true) // before the first Apply
		go func() {
			defer close(b.resolveDone)
			tables.RunResolver(n, b.stopGC)
		}()
	}
	if b.socks, err = newSockets(); err != nil {
		b.Close(!adopted)
		return nil, fmt.Errorf("sockets for held fragments: %w", err)
	}
	b.holder = &holder{set: set, log: log, isVIP: tables.IsVIP, out: b.socks, now: time.Now}
	b.holdDone = make(chan struct{})
	go func() {
		defer close(b.holdDone)
		b.holder.run(b.stopGC)
	}()
	b.routesDone = make(chan struct{})
	go func() {
		defer close(b.routesDone)
		watchRoutes(set.Routes, b.stopGC, log)
	}()
	b.maintainDone = make(chan struct{})
	go func() {
		defer close(b.maintainDone)
		b.maintain(retryPeriod, refreshPeriod)
	}()
	return b, nil
}

// gcLoop does what IPVS's connection timers do, once a period: expired
// connections, templates and lblc entries are retired and their counts
// given back. It also rebuilds the scheduler trees, which CPUs updating
// them at once can leave stale.
func (b *Backend) gcLoop(period time.Duration) {
	defer close(b.gcDone)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-b.stopGC:
			return
		case <-t.C:
			res, err := b.Set.GC.Run()
			if err != nil {
				b.log.Warn("expiring connections", "err", err)
				continue
			}
			if err := b.Set.CheckClock(res.Skew); err != nil {
				b.log.Warn("packets' jiffy clock turned off: they read the coarse clock from now on", "err", err)
			}
			if res.Conns+res.Templates+res.Lblcs > 0 {
				b.log.Debug("expired", "connections", res.Conns, "templates", res.Templates, "nat", res.Nats, "lblc", res.Lblcs)
			}
			if res.Shed > 0 {
				b.shed.Add(uint64(res.Shed))
				b.log.Warn("connection table over three quarters full: shed half-open connections",
					"shed", res.Shed, "left", res.Live, "capacity", b.Set.Conns.Capacity())
			}
			if err := b.RefreshTrees(); err != nil {
				b.log.Warn("rebuilding scheduler trees", "err", err)
			}
		}
	}
}

func (b *Backend) attach(ifname string, mode AttachMode) (*Attachment, error) {
	if _, err := netlink.LinkByName(ifname); err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	a := &Attachment{Interface: ifname}
	if b.Set.PinDir != "" {
		a.pin = filepath.Join(b.Set.PinDir, "link_"+ifname)
		// A link left by a daemon that kept the data plane: take it over
		// by swapping in our program, so no packet meets a detached NIC.
		if l, err := link.LoadPinnedLink(a.pin, nil); err == nil {
			if err := l.Update(b.Set.Program); err != nil {
				l.Close()
				return nil, fmt.Errorf("interface %s: update pinned link: %w", ifname, err)
			}
			a.link = l
			a.Mode = mode
			if info, err := l.Info(); err == nil && info.XDP() != nil {
				a.Mode = adoptedMode(mode)
			}
			return a, nil
		}
	}
	l, m, err := AttachProgram(b.Set.Program, ifname, mode)
	if err != nil {
		return nil, err
	}
	a.link, a.Mode = l, m
	if a.pin != "" {
		os.Remove(a.pin)
		if err := l.Pin(a.pin); err != nil {
			l.Close()
			return nil, fmt.Errorf("interface %s: pin link: %w", ifname, err)
		}
	}
	return a, nil
}

// AttachProgram attaches an XDP program to ifname as a bpf_link, choosing
// native or generic mode as mode says, and reports the mode it got.
func AttachProgram(prog *ebpf.Program, ifname string, mode AttachMode) (link.Link, AttachMode, error) {
	nl, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, "", fmt.Errorf("interface %s: %w", ifname, err)
	}
	try := []AttachMode{mode}
	if mode == Auto {
		if nl.Type() == "veth" {
			try = []AttachMode{Generic}
		} else {
			try = []AttachMode{Native, Generic}
		}
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPGenericMode
		if m == Native {
			flags = link.XDPDriverMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: nl.Attrs().Index, Flags: flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		return l, m, nil
	}
	return nil, "", fmt.Errorf("interface %s: attach XDP: %w", ifname, errors.Join(errs...))
}

func adoptedMode(m AttachMode) AttachMode {
	if m == Auto {
		return "adopted"
	}
	return m
}

// Apply implements dataplane.Backend. Tables.Apply never waits on the
// network; then, without holding anything, Apply gives the kernel at most
// settleTime to resolve the next hops it has just been asked about, so that
// reals that answer at once take flows when Apply returns.
// The backend keeps st (which the caller must not change afterwards) to
// apply again while reals lack a MAC.
func (b *Backend) Apply(ctx context.Context, st dataplane.State) error {
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	fresh, err := b.Tables.applyFresh(ctx, st)
	b.Tables.settle(ctx, fresh, settleTime)
	if err == nil {
		b.last = &st
	}
	return err
}

// Adopted implements dataplane.Backend.
func (b *Backend) Adopted() bool { return b.adopted }

// Status implements dataplane.Backend.
func (b *Backend) Status(context.Context) (dataplane.Status, error) {
	st := dataplane.Status{Backend: "xdp", Verdicts: map[string]uint64{}}
	for _, a := range b.Attachments {
		st.Attachments = append(st.Attachments, dataplane.Attachment{Interface: a.Interface, Mode: string(a.Mode)})
	}
	var err error
	if st.Services, err = b.Tables.Status(); err != nil {
		return st, err
	}
	v, err := b.Set.Verdicts.All()
	if err != nil {
		return st, fmt.Errorf("verdicts: %w", err)
	}
	for i, n := range maps.VerdictNames {
		st.Verdicts[n] = v[i]
	}
	if st.Flows, err = b.Set.Conns.Count(); err != nil {
		return st, fmt.Errorf("count flows: %w", err)
	}
	if st.NATFlows, err = b.Set.NAT.Count(); err != nil {
		return st, fmt.Errorf("count NAT flows: %w", err)
	}
	if st.Templates, err = b.Set.Persist.Count(); err != nil {
		return st, fmt.Errorf("count templates: %w", err)
	}
	st.FlowCapacity = int(b.Set.Conns.Capacity())
	st.Shed = b.shed.Load()
	if b.holder != nil {
		st.FragmentsHeld = b.holder.Counts()
	}
	if err := tableStatus(b.Set, &st); err != nil {
		return st, err
	}
	return st, nil
}

// Close detaches and removes everything when release is set (as
// keepalived clears IPVS on exit); otherwise the pinned links and maps stay
// and keep forwarding until the next daemon adopts them.
func (b *Backend) Close(release bool) error {
	if b.stopGC != nil {
		close(b.stopGC)
		<-b.gcDone
		if b.resolveDone != nil {
			<-b.resolveDone
		}
		if b.holdDone != nil {
			<-b.holdDone
		}
		if b.maintainDone != nil {
			<-b.maintainDone
		}
		if b.routesDone != nil {
			<-b.routesDone
		}
	}
	if b.socks != nil {
		b.socks.close()
	}
	var errs []error
	for _, a := range b.Attachments {
		if release && a.pin != "" {
			errs = append(errs, a.link.Unpin())
		}
		errs = append(errs, a.link.Close())
		if release && a.restore != nil {
			errs = append(errs, a.restore())
		}
	}
	if release && b.Set.PinDir != "" {
		errs = append(errs, b.Set.Unpin())
	}
	errs = append(errs, b.Set.Close())
	if release && b.Set.PinDir != "" {
		// Only if empty: a pin dir shared with something else stays.
		os.Remove(b.Set.PinDir)
	}
	return errors.Join(errs...)
}

// acceptLocal turns on accept_local on an interface with generic XDP. There
// the program sees GRO/GSO aggregates, and a NAT reply aggregate that must
// leave by another link is rewritten to come from the VIP and handed to the
// kernel to forward (pass_gso): with the VIP held on the LB, as VRRP puts
// it there, the kernel would drop it as a martian source unless the
// interface accepts local sources. It returns what puts the old value back.
func acceptLocal(ifname string, log *slog.Logger) (func() error, error) {
	path := filepath.Join("/proc/sys/net/ipv4/conf", ifname, "accept_local")
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	if strings.TrimSpace(string(old)) == "1" {
		return nil, nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("interface %s: accept_local for NAT replies the kernel forwards: %w", ifname, err)
	}
	log.Info("accept_local on: the kernel forwards the NAT reply aggregates generic XDP cannot redirect", "interface", ifname)
	// Strict reverse-path filtering drops them all the same.
	for _, scope := range []string{"all", ifname} {
		if v, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", scope, "rp_filter")); err == nil &&
			strings.TrimSpace(string(v)) == "1" {
			log.Warn("rp_filter=1 (strict): large NAT replies (GRO/GSO aggregates) from reals will be dropped; use 0 or 2",
				"interface", ifname, "sysctl", "net.ipv4.conf."+scope+".rp_filter")
		}
	}
	return func() error { return os.WriteFile(path, old, 0o644) }, nil
}
