package ipvs

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cloudflare/ipvs"
	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// fakeIPVS holds services as the kernel would, so that the backend's
// bookkeeping (what it owns, what it sends) can be tested without one.
// Whether IPVS itself does what is sent is tested in the VM.
type fakeIPVS struct {
	svcs     []ipvs.Service
	dests    map[svcID][]ipvs.Destination
	cfg      ipvs.Config
	requests []string
	sysctl   map[string]string
	syncd    []dataplane.SyncDaemon
}

func newFake() *fakeIPVS {
	return &fakeIPVS{dests: map[svcID][]ipvs.Destination{}, cfg: ipvsDefaults,
		sysctl: map[string]string{"expire_quiescent_template": "0", "conn_reuse_mode": "1", "sloppy_tcp": "0"}}
}

func (f *fakeIPVS) Info() (ipvs.Info, error)     { return ipvs.Info{Version: [3]int{1, 2, 1}}, nil }
func (f *fakeIPVS) Config() (ipvs.Config, error) { return f.cfg, nil }
func (f *fakeIPVS) SetConfig(c ipvs.Config) error {
	f.requests = append(f.requests, "timeouts")
	if c.TCPTimeout != 0 {
		f.cfg.TCPTimeout = c.TCPTimeout
	}
	if c.TCPFinTimeout != 0 {
		f.cfg.TCPFinTimeout = c.TCPFinTimeout
	}
	if c.UDPTimeout != 0 {
		f.cfg.UDPTimeout = c.UDPTimeout
	}
	return nil
}
func (f *fakeIPVS) Services() ([]ipvs.ServiceExtended, error) {
	var out []ipvs.ServiceExtended
	for _, s := range f.svcs {
		s.Flags |= ipvs.ServiceHashed
		out = append(out, ipvs.ServiceExtended{Service: s})
	}
	if len(out) == 0 {
		return nil, os.ErrNotExist // as cloudflare/ipvs reports an empty dump
	}
	return out, nil
}
func (f *fakeIPVS) CreateService(s ipvs.Service) error {
	f.requests = append(f.requests, "create "+describe(s))
	f.svcs = append(f.svcs, s)
	return nil
}
func (f *fakeIPVS) UpdateService(s ipvs.Service) error {
	f.requests = append(f.requests, "update "+describe(s))
	i := slices.IndexFunc(f.svcs, func(h ipvs.Service) bool { return idOf(h) == idOf(s) })
	f.svcs[i] = s
	return nil
}
func (f *fakeIPVS) RemoveService(s ipvs.Service) error {
	f.requests = append(f.requests, "remove "+describe(s))
	f.svcs = slices.DeleteFunc(f.svcs, func(h ipvs.Service) bool { return idOf(h) == idOf(s) })
	delete(f.dests, idOf(s))
	return nil
}
func (f *fakeIPVS) Destinations(s ipvs.Service) ([]ipvs.DestinationExtended, error) {
	var out []ipvs.DestinationExtended
	for _, d := range f.dests[idOf(s)] {
		out = append(out, ipvs.DestinationExtended{Destination: d, ActiveConnections: 2, Stats64: ipvs.Stats{Connections: 5, IncomingPackets: 50}})
	}
	if len(out) == 0 {
		return nil, os.ErrNotExist
	}
	return out, nil
}
func (f *fakeIPVS) CreateDestination(s ipvs.Service, d ipvs.Destination) error {
	f.requests = append(f.requests, "create "+describe(s)+" "+describeDest(d))
	f.dests[idOf(s)] = append(f.dests[idOf(s)], d)
	return nil
}
func (f *fakeIPVS) UpdateDestination(s ipvs.Service, d ipvs.Destination) error {
	f.requests = append(f.requests, "update "+describe(s)+" "+describeDest(d))
	ds := f.dests[idOf(s)]
	ds[slices.IndexFunc(ds, func(h ipvs.Destination) bool { return destIDOf(h) == destIDOf(d) })] = d
	return nil
}
func (f *fakeIPVS) RemoveDestination(s ipvs.Service, d ipvs.Destination) error {
	f.requests = append(f.requests, "remove "+describe(s)+" "+describeDest(d))
	f.dests[idOf(s)] = slices.DeleteFunc(f.dests[idOf(s)], func(h ipvs.Destination) bool { return destIDOf(h) == destIDOf(d) })
	return nil
}
func (f *fakeIPVS) Get(name string) (string, error) { return f.sysctl[name], nil }
func (f *fakeIPVS) Set(name, v string) error {
	f.requests = append(f.requests, "sysctl "+name+"="+v)
	f.sysctl[name] = v
	return nil
}
func (f *fakeIPVS) Start(d dataplane.SyncDaemon) error {
	f.requests = append(f.requests, "start "+role(d.Master))
	f.syncd = append(f.syncd, d)
	return nil
}
func (f *fakeIPVS) Stop(master bool) error {
	if slices.ContainsFunc(f.syncd, func(d dataplane.SyncDaemon) bool { return d.Master == master }) {
		f.requests = append(f.requests, "stop "+role(master))
	}
	f.syncd = slices.DeleteFunc(f.syncd, func(d dataplane.SyncDaemon) bool { return d.Master == master })
	return nil
}
func (f *fakeIPVS) Running() ([]dataplane.SyncDaemon, error) { return f.syncd, nil }

func newTestBackend(t *testing.T, f *fakeIPVS) *Backend {
	t.Helper()
	b, err := New(Options{Client: f, Syncd: f, Sysctls: f, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fakeIPVS) take() []string {
	r := f.requests
	f.requests = nil
	return r
}

func webState(weights ...int) dataplane.State {
	s := dataplane.Service{VIP: vip, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT}
	for i, w := range weights {
		s.Reals = append(s.Reals, dataplane.Real{Addr: []netip.Addr{rs1, rs2, rs3}[i], Port: 80, Weight: w})
	}
	return dataplane.State{Services: []dataplane.Service{s}}
}

func TestBackendOwnsWhatItApplies(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	// Someone else's service, there before the daemon.
	f.svcs = append(f.svcs, svc(vip2, 22, "wlc"))
	b := newTestBackend(t, f)
	if !b.Adopted() {
		t.Error("Adopted() = false with services in IPVS")
	}
	if err := b.Apply(ctx, webState(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	want := []string{"create 10.0.0.1:80/TCP", "create 10.0.0.1:80/TCP 10.0.1.2:80", "create 10.0.0.1:80/TCP 10.0.2.2:80", "create 10.0.0.1:80/TCP 10.0.3.2:80"}
	if d := cmp.Diff(want, f.take()); d != "" {
		t.Errorf("first apply (-want +got):\n%s", d)
	}
	if err := b.Apply(ctx, webState(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if r := f.take(); len(r) != 0 {
		t.Errorf("same state sent %q", r)
	}
	if err := b.Apply(ctx, webState(0, 2)); err != nil {
		t.Fatal(err)
	}
	want = []string{"remove 10.0.0.1:80/TCP 10.0.3.2:80", "update 10.0.0.1:80/TCP 10.0.1.2:80", "update 10.0.0.1:80/TCP 10.0.2.2:80"}
	if d := cmp.Diff(want, f.take()); d != "" {
		t.Errorf("reload (-want +got):\n%s", d)
	}
	st, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || st.Backend != "ipvs" || len(st.Services[0].Reals) != 2 {
		t.Fatalf("status shows %+v; want only the daemon's own service with 2 reals", st)
	}
	if r := st.Services[0].Reals[0]; r.Weight != 0 || r.Connections != 5 || r.PacketsIn != 50 || r.ActiveConns != 2 || st.Services[0].Kind != "NAT" {
		t.Errorf("real status %+v", r)
	}
	if err := b.Apply(ctx, dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"remove 10.0.0.1:80/TCP"}, f.take()); d != "" {
		t.Errorf("empty config (-want +got):\n%s", d)
	}
	if err := b.Apply(ctx, webState(1)); err != nil {
		t.Fatal(err)
	}
	f.take()
	if err := b.Close(true); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"remove 10.0.0.1:80/TCP"}, f.take()); d != "" {
		t.Errorf("close (-want +got):\n%s", d)
	}
	if len(f.svcs) != 1 || f.svcs[0].Port != 22 {
		t.Errorf("someone else's service did not survive: %+v", f.svcs)
	}
}

func TestBackendTakesOverANamedService(t *testing.T) {
	f := newFake()
	f.svcs = append(f.svcs, svc(vip, 80, "wlc"))
	b := newTestBackend(t, f)
	if err := b.Apply(context.Background(), webState(1)); err != nil {
		t.Fatal(err)
	}
	want := []string{"update 10.0.0.1:80/TCP", "create 10.0.0.1:80/TCP 10.0.1.2:80"}
	if d := cmp.Diff(want, f.take()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// Left for the next daemon: nothing is removed.
	if err := b.Close(false); err != nil {
		t.Fatal(err)
	}
	if r := f.take(); len(r) != 0 || len(f.svcs) != 1 {
		t.Errorf("Close(false) sent %q", r)
	}
}

func TestBackendSettings(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	b := newTestBackend(t, f)
	st := dataplane.State{
		Timeouts:   dataplane.Timeouts{TCP: 60 * time.Second},
		Tuning:     dataplane.Tuning{SloppyTCP: true, NoConnReuse: true},
		SyncDaemon: &dataplane.SyncDaemon{Interface: "eth1", SyncID: 5},
	}
	if err := b.Apply(ctx, st); err != nil {
		t.Fatal(err)
	}
	want := []string{"timeouts", "sysctl conn_reuse_mode=0", "sysctl sloppy_tcp=1", "start backup"}
	if d := cmp.Diff(want, f.take()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if f.cfg.TCPTimeout != 60 || f.cfg.UDPTimeout != 300 {
		t.Errorf("timeouts %+v", f.cfg)
	}
	// VRRP goes MASTER: the backup daemon stops, the master starts.
	st.SyncDaemon = &dataplane.SyncDaemon{Interface: "eth1", SyncID: 5, Master: true}
	if err := b.Apply(ctx, st); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"stop backup", "start master"}, f.take()); d != "" {
		t.Errorf("to master (-want +got):\n%s", d)
	}
	// lvs_timeouts and lvs_sync_daemon dropped from the configuration.
	if err := b.Apply(ctx, dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	want = []string{"timeouts", "sysctl conn_reuse_mode=1", "sysctl sloppy_tcp=0", "stop master"}
	if d := cmp.Diff(want, f.take()); d != "" {
		t.Errorf("dropped (-want +got):\n%s", d)
	}
	if f.cfg != ipvsDefaults {
		t.Errorf("timeouts %+v, want IPVS's defaults back", f.cfg)
	}
	if len(f.syncd) != 0 {
		t.Errorf("sync daemons still running: %+v", f.syncd)
	}
}

func TestDaemonAttributes(t *testing.T) {
	d := dataplane.SyncDaemon{Master: true, Interface: "eth1", SyncID: 9, MaxLen: 1472, Group: vip2, Port: 8850, TTL: 2}
	b, err := encodeDaemon(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeDaemon(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(d, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}
