// Package ipvs is the data plane for kernels and NICs where XDP cannot
// run: the kernel's own IPVS, driven over generic netlink. It takes the
// same dataplane.State as the XDP backend and reports the same counters,
// read from IPVS's statistics, so health checks, VRRP, /metrics and
// `xlbd status` do not change with the backend. It is also the home of
// what XDP cannot do: firewall-mark services (the mark is set after XDP
// runs), SCTP and IPVS's connection synchronisation daemon.
package ipvs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudflare/ipvs"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// Client is the part of IPVS's netlink interface the backend uses.
type Client interface {
	Info() (ipvs.Info, error)
	Config() (ipvs.Config, error)
	SetConfig(ipvs.Config) error
	Services() ([]ipvs.ServiceExtended, error)
	CreateService(ipvs.Service) error
	UpdateService(ipvs.Service) error
	RemoveService(ipvs.Service) error
	Destinations(ipvs.Service) ([]ipvs.DestinationExtended, error)
	CreateDestination(ipvs.Service, ipvs.Destination) error
	UpdateDestination(ipvs.Service, ipvs.Destination) error
	RemoveDestination(ipvs.Service, ipvs.Destination) error
}

// Options configure a Backend.
type Options struct {
	Log *slog.Logger
	// Client talks to IPVS; nil dials the kernel, loading ip_vs first
	// when it is not loaded, as keepalived does.
	Client Client
	// Syncd runs the sync daemon; nil uses the kernel's (over Client's
	// netlink family).
	Syncd Syncd
	// Sysctls reads and writes net.ipv4.vs; nil uses /proc/sys.
	Sysctls Sysctls
}

// Backend is the IPVS data plane.
type Backend struct {
	c       Client
	syncd   Syncd
	sysctls Sysctls
	log     *slog.Logger
	closeFn func() error

	mu sync.Mutex
	// owned are the services this daemon created or took over because
	// its configuration names them: only they are removed when the
	// configuration drops them, or at Close.
	owned   map[svcID]bool
	applied bool
	adopted bool
	// timeouts are the lvs_timeouts last set (zero: never set).
	timeouts ipvs.Config
	// sync is the sync daemon this backend runs (nil: none).
	sync *dataplane.SyncDaemon
}

var _ dataplane.Backend = (*Backend)(nil)

// New connects to IPVS. It fails with the reason when the kernel has no
// IPVS, so that --dataplane auto can fall back and --dataplane ipvs can
// say why it cannot start.
func New(o Options) (*Backend, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{c: o.Client, syncd: o.Syncd, sysctls: o.Sysctls, log: log, owned: map[svcID]bool{}}
	if b.c == nil {
		c, err := dial(log)
		if err != nil {
			return nil, err
		}
		b.c = c
		if cl, ok := c.(interface{ Close() error }); ok {
			b.closeFn = cl.Close
		}
	}
	if b.syncd == nil {
		s, err := newNetlinkSyncd()
		if err != nil {
			b.close()
			return nil, fmt.Errorf("IPVS sync daemon control: %w", err)
		}
		b.syncd = s
	}
	if b.sysctls == nil {
		b.sysctls = procSysctls{}
	}
	info, err := b.c.Info()
	if err != nil {
		b.close()
		return nil, fmt.Errorf("IPVS: reading its version: %w", err)
	}
	held, err := b.services()
	if err != nil {
		b.close()
		return nil, fmt.Errorf("IPVS: listing services: %w", err)
	}
	b.adopted = len(held) > 0
	v := info.Version
	log.Info("IPVS data plane", "version", fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]),
		"conn_table_size", info.ConnectionTableSize, "services_held", len(held))
	return b, nil
}

// dial opens IPVS's netlink family, loading ip_vs once if the kernel does
// not know the family yet.
func dial(log *slog.Logger) (Client, error) {
	c, err := ipvs.New()
	if err == nil {
		return c, nil
	}
	out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
	if merr != nil {
		return nil, fmt.Errorf("IPVS is not available: %v, and `modprobe ip_vs` failed: %v %s", err, merr, strings.TrimSpace(string(out)))
	}
	log.Info("loaded the ip_vs kernel module")
	if c, err = ipvs.New(); err != nil {
		return nil, fmt.Errorf("IPVS is not available after `modprobe ip_vs`: %w", err)
	}
	return c, nil
}

func (b *Backend) close() {
	if b.closeFn != nil {
		b.closeFn()
	}
	if s, ok := b.syncd.(interface{ Close() error }); ok {
		s.Close()
	}
}

// Adopted reports whether IPVS held services when the backend started:
// a previous daemon's, which the configuration takes over where it names
// them.
func (b *Backend) Adopted() bool { return b.adopted }

// services lists IPVS's services. cloudflare/ipvs reports an empty list as
// os.ErrNotExist.
func (b *Backend) services() ([]ipvs.ServiceExtended, error) {
	svcs, err := b.c.Services()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return svcs, err
}

func (b *Backend) destinations(s ipvs.Service) ([]ipvs.DestinationExtended, error) {
	d, err := b.c.Destinations(s)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return d, err
}

// held is every service the kernel has, with its destinations.
func (b *Backend) held() ([]ipvs.ServiceExtended, [][]ipvs.DestinationExtended, error) {
	svcs, err := b.services()
	if err != nil {
		return nil, nil, fmt.Errorf("IPVS: listing services: %w", err)
	}
	dests := make([][]ipvs.DestinationExtended, len(svcs))
	for i, s := range svcs {
		if dests[i], err = b.destinations(s.Service); err != nil {
			return nil, nil, fmt.Errorf("IPVS: listing the real servers of %s: %w", describe(s.Service), err)
		}
	}
	return svcs, dests, nil
}

// entries are the kernel's services as diff takes them; dests, when not
// nil, holds each one's destinations.
func entries(svcs []ipvs.ServiceExtended, dests [][]ipvs.DestinationExtended) []entry {
	out := make([]entry, len(svcs))
	for i, s := range svcs {
		out[i].svc = s.Service
		if dests != nil {
			for _, d := range dests[i] {
				out[i].dests = append(out[i].dests, d.Destination)
			}
		}
	}
	return out
}

// Apply makes IPVS hold st, sending only the requests for what differs
// from what the kernel holds. A request that fails does not stop the
// others: every service that can be right is.
func (b *Backend) Apply(ctx context.Context, st dataplane.State) error {
	want, err := toEntries(st)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	svcs, dests, err := b.held()
	if err != nil {
		return err
	}
	ops := diff(entries(svcs, dests), want, func(id svcID) bool { return b.owned[id] })
	var errs []error
	for _, o := range ops {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := b.do(o); err != nil {
			errs = append(errs, err)
			continue
		}
		if o.kind == removeService {
			delete(b.owned, idOf(o.svc))
		}
	}
	for _, w := range want {
		b.owned[idOf(w.svc)] = true
	}
	if len(ops) > 0 {
		b.log.Debug("IPVS applied", "requests", len(ops), "services", len(want))
	}
	b.applied = true
	errs = append(errs, b.setTimeouts(st.Timeouts), b.setTuning(st.Tuning), b.setSync(st.SyncDaemon))
	return errors.Join(errs...)
}

func (b *Backend) do(o op) error {
	var err error
	switch o.kind {
	case removeService:
		err = b.c.RemoveService(o.svc)
	case createService:
		err = b.c.CreateService(o.svc)
	case updateService:
		err = b.c.UpdateService(o.svc)
	case removeDest:
		err = b.c.RemoveDestination(o.svc, o.dest)
	case createDest:
		err = b.c.CreateDestination(o.svc, o.dest)
	case updateDest:
		err = b.c.UpdateDestination(o.svc, o.dest)
	}
	if err == nil {
		return nil
	}
	what := describe(o.svc)
	if o.kind >= removeDest {
		what += " real " + describeDest(o.dest)
	}
	if o.kind == createService && strings.Contains(err.Error(), "no such file") {
		return fmt.Errorf("IPVS: %s %s: %w (is the ip_vs_%s scheduler module there?)", o.kind, what, err, o.svc.Scheduler)
	}
	return fmt.Errorf("IPVS: %s %s: %w", o.kind, what, err)
}

func describe(s ipvs.Service) string {
	if s.FWMark != 0 {
		return dataplane.FWMarkKey(s.FWMark)
	}
	return dataplane.ServiceKey(s.Address, s.Port, uint8(s.Protocol))
}

func describeDest(d ipvs.Destination) string {
	return fmt.Sprintf("%s:%d", d.Address, d.Port)
}

// ipvsDefaults are IPVS's connection timeouts out of the box, which a
// configuration that drops lvs_timeouts returns to.
var ipvsDefaults = ipvs.Config{TCPTimeout: 900, TCPFinTimeout: 120, UDPTimeout: 300}

func (b *Backend) setTimeouts(t dataplane.Timeouts) error {
	want := ipvs.Config{
		TCPTimeout:    uint32(t.TCP / time.Second),
		TCPFinTimeout: uint32(t.TCPFin / time.Second),
		UDPTimeout:    uint32(t.UDP / time.Second),
	}
	if want == b.timeouts {
		return nil
	}
	// Zero leaves a timeout as the kernel has it; one this backend set
	// before goes back to IPVS's default.
	send := want
	send.TCPTimeout = orDefault(want.TCPTimeout, b.timeouts.TCPTimeout, ipvsDefaults.TCPTimeout)
	send.TCPFinTimeout = orDefault(want.TCPFinTimeout, b.timeouts.TCPFinTimeout, ipvsDefaults.TCPFinTimeout)
	send.UDPTimeout = orDefault(want.UDPTimeout, b.timeouts.UDPTimeout, ipvsDefaults.UDPTimeout)
	if err := b.c.SetConfig(send); err != nil {
		return fmt.Errorf("IPVS: setting lvs_timeouts: %w", err)
	}
	b.timeouts = want
	return nil
}

// orDefault is the timeout to send: want, or def when want is unset and
// this backend set one before (last).
func orDefault(want, last, def uint32) uint32 {
	if want == 0 && last != 0 {
		return def
	}
	return want
}

// Status reads IPVS's services and statistics. It shows the services this
// daemon applied; before its first Apply, every service the kernel holds
// (what a restart adopts).
func (b *Backend) Status(context.Context) (dataplane.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := dataplane.Status{Backend: Name, Flows: -1, NATFlows: -1, Templates: -1}
	svcs, dests, err := b.held()
	if err != nil {
		return st, err
	}
	for i, s := range svcs {
		if b.applied && !b.owned[idOf(s.Service)] {
			continue
		}
		st.Services = append(st.Services, toStatus(s, dests[i]))
	}
	slices.SortFunc(st.Services, func(a, b dataplane.ServiceStatus) int {
		return cmp.Or(cmp.Compare(a.FWMark, b.FWMark), a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
	})
	return st, nil
}

// Close removes the services this daemon put into IPVS and stops its sync
// daemon; with release=false it leaves them for the next daemon.
func (b *Backend) Close(release bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.close()
	if !release {
		return nil
	}
	svcs, err := b.services()
	if err != nil {
		return fmt.Errorf("IPVS: listing services: %w", err)
	}
	// Nothing wanted: the diff is the removal of every service this
	// daemon owns, and of no other.
	var errs []error
	for _, o := range diff(entries(svcs, nil), nil, func(id svcID) bool { return b.owned[id] }) {
		errs = append(errs, b.do(o))
	}
	b.owned = map[svcID]bool{}
	errs = append(errs, b.setSync(nil))
	return errors.Join(errs...)
}
