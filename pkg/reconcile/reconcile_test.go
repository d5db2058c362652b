package reconcile

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
	"github.com/xlbd/xlbd/pkg/sched"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestDesiredFromShippedExample(t *testing.T) {
	cfg, err := config.Load("../../testdata/lb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := dataplane.State{Services: []dataplane.Service{{
		VIP: netip.MustParseAddr("10.50.1.100"), Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
		Reals: []dataplane.Real{
			{Addr: netip.MustParseAddr("10.50.2.11"), Port: 8080, Weight: 1},
			{Addr: netip.MustParseAddr("10.50.2.12"), Port: 8080, Weight: 1},
		},
	}}}
	if diff := cmp.Diff(want, Desired(cfg), cmpAddr); diff != "" {
		t.Errorf("desired state (-want +got):\n%s", diff)
	}
}

func TestDesiredKinds(t *testing.T) {
	for ck, dk := range map[config.Kind]dataplane.Kind{config.NAT: dataplane.NAT, config.DR: dataplane.DR, config.TUN: dataplane.TUN} {
		st := Desired(&config.Config{VirtualServers: []config.VirtualServer{{LBKind: ck}}})
		if st.Services[0].Kind != dk {
			t.Errorf("lb_kind %v became %v, want %v", ck, st.Services[0].Kind, dk)
		}
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// svc is a service with the defaults of a virtual server that sets only
// its address and port (TCP, wlc, NAT) and one real, 10.50.2.11:port.
func svc(vip string, port uint16, edit ...func(*dataplane.Service)) dataplane.Service {
	s := dataplane.Service{
		VIP: addr(vip), Port: port, Protocol: 6, Sched: "wlc", Kind: dataplane.NAT,
		Reals: []dataplane.Real{{Addr: addr("10.50.2.11"), Port: port, Weight: 1}},
	}
	for _, e := range edit {
		e(&s)
	}
	return s
}

// TestPlan maps keepalived.conf snippets, through the parser, to the data
// plane's state and the notes on what it leaves out.
func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		want  dataplane.State
		notes []string
		errs  []string // what makes the configuration unusable
	}{
		{
			name: "defaults: wlc, NAT, TCP, not persistent",
			conf: "virtual_server 10.50.1.100 80 {\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80)}},
		},
		{
			name: "scheduler, protocol, kind, weight",
			conf: "virtual_server 10.50.1.100 53 {\n lb_algo SH\n protocol UDP\n lb_kind TUN\n" +
				" real_server 10.50.2.11 5353 {\n  weight 7\n }\n real_server 10.50.2.12 5353 {\n  weight 0\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{{
				VIP: addr("10.50.1.100"), Port: 53, Protocol: 17, Sched: "sh", Kind: dataplane.TUN,
				Reals: []dataplane.Real{
					{Addr: addr("10.50.2.11"), Port: 5353, Weight: 7},
					{Addr: addr("10.50.2.12"), Port: 5353, Weight: 0},
				},
			}}},
		},
		{
			name: "persistence_timeout and granularity",
			conf: "virtual_server 10.50.1.100 80 {\n persistence_timeout 600\n persistence_granularity 255.255.255.0\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80, func(s *dataplane.Service) {
				s.PersistTimeout, s.PersistPrefix = 600*time.Second, 24
			})}},
		},
		{
			name: "persistence_timeout without a value, granularity as a length",
			conf: "virtual_server 10.50.1.100 80 {\n persistence_timeout\n persistence_granularity 16\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80, func(s *dataplane.Service) {
				s.PersistTimeout, s.PersistPrefix = 360*time.Second, 16
			})}},
		},
		{
			name: "persistence_timeout alone: each client on its own",
			conf: "virtual_server 10.50.1.100 80 {\n persistence_timeout 50\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80, func(s *dataplane.Service) {
				s.PersistTimeout, s.PersistPrefix = 50*time.Second, 32
			})}},
		},
		{
			name: "persistence_granularity alone turns persistence on (keepalived: 360 s)",
			conf: "virtual_server 10.50.1.100 80 {\n persistence_granularity 255.255.0.0\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80, func(s *dataplane.Service) {
				s.PersistTimeout, s.PersistPrefix = 360*time.Second, 16
			})}},
		},
		{
			name: "uthreshold and lthreshold",
			conf: "virtual_server 10.50.1.100 80 {\n real_server 10.50.2.11 80 {\n  uthreshold 1000\n  lthreshold 100\n }\n real_server 10.50.2.12 80 {\n  uthreshold 5\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80, func(s *dataplane.Service) {
				s.Reals = []dataplane.Real{
					{Addr: addr("10.50.2.11"), Port: 80, Weight: 1, UThreshold: 1000, LThreshold: 100},
					{Addr: addr("10.50.2.12"), Port: 80, Weight: 1, UThreshold: 5},
				}
			})}},
		},
		{
			name: "real server without a port takes the service's (keepalived.conf)",
			conf: "virtual_server 10.50.1.100 80 {\n real_server 10.50.2.11 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80)}},
		},
		{
			name: "lvs_timeouts: all three",
			conf: "global_defs {\n lvs_timeouts tcp 7200 tcpfin 60 udp 30\n}\n",
			want: dataplane.State{Timeouts: dataplane.Timeouts{TCP: 7200 * time.Second, TCPFin: 60 * time.Second, UDP: 30 * time.Second}},
		},
		{
			name: "lvs_timeouts: only what is set",
			conf: "global_defs {\n lvs_timeouts udp 10\n}\n",
			want: dataplane.State{Timeouts: dataplane.Timeouts{UDP: 10 * time.Second}},
		},
		{
			name: "lvs_timeouts: IPVS's own values change nothing",
			conf: "global_defs {\n lvs_timeouts tcp 900 tcpfin 120 udp 300\n}\n",
			want: dataplane.State{},
		},
		{
			name: "no lvs_timeouts: zero (IPVS's defaults)",
			conf: "global_defs {\n router_id LB1\n}\n",
			want: dataplane.State{},
		},
		{
			name: "fwmark virtual server skipped, with a note naming the data plane",
			conf: "virtual_server fwmark 5 {\n real_server 10.50.2.11 {\n }\n}\nvirtual_server 10.50.1.100 80 {\n real_server 10.50.2.11 80 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.100", 80)}},
			notes: []string{
				`keepalived.conf:1: fwmark:5: the XDP data plane cannot match firewall marks; this one is only checked`,
			},
		},
		{
			name: "group: addresses, short and long ranges, CIDR; real port 0 is the service's",
			conf: "virtual_server_group G {\n 10.50.1.1 80\n 10.50.1.2-3 81\n 10.50.1.255-10.50.2.0 82\n 10.50.3.0/31 83\n}\n" +
				"virtual_server group G {\n lb_algo rr\n lb_kind DR\n persistence_timeout 30\n real_server 10.50.2.11 {\n  weight 3\n  uthreshold 9\n }\n}\n",
			want: func() dataplane.State {
				var st dataplane.State
				for _, m := range []struct {
					vip  string
					port uint16
				}{{"10.50.1.1", 80}, {"10.50.1.2", 81}, {"10.50.1.3", 81}, {"10.50.1.255", 82}, {"10.50.2.0", 82}, {"10.50.3.0", 83}, {"10.50.3.1", 83}} {
					st.Services = append(st.Services, svc(m.vip, m.port, func(s *dataplane.Service) {
						s.Sched, s.Kind, s.PersistTimeout, s.PersistPrefix = "rr", dataplane.DR, 30*time.Second, 32
						s.Reals[0].Weight, s.Reals[0].UThreshold = 3, 9
					}))
				}
				return st
			}(),
		},
		{
			name: "group: fwmark entries skipped, an entry without a port is a port-0 service, both with a note",
			conf: "virtual_server_group G {\n 10.50.1.1 80\n 10.50.1.9\n fwmark 7\n fwmark 8\n}\n" +
				"virtual_server group G {\n protocol UDP\n real_server 10.50.2.11 53 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{svc("10.50.1.1", 80, func(s *dataplane.Service) {
				s.Protocol, s.Reals[0].Port = 17, 53
			}), svc("10.50.1.9", 0, func(s *dataplane.Service) {
				s.Protocol, s.Reals[0].Port = 17, 53
			})}},
			notes: []string{
				`keepalived.conf:7: group:G/UDP: fwmark 7, 8 of virtual_server_group "G" skipped: the XDP data plane cannot match firewall marks`,
				`keepalived.conf:7: group:G/UDP: 10.50.1.9 of virtual_server_group "G" balances nothing: it has no port (every port), which IPVS schedules only with persistence_timeout`,
			},
		},
		{
			name: "group: a range too wide for the data plane",
			conf: "virtual_server_group G {\n 10.50.0.0/16 80\n 10.60.0.1 80\n}\nvirtual_server group G {\n}\n",
			want: dataplane.State{Services: []dataplane.Service{{VIP: addr("10.60.0.1"), Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.NAT}}},
			notes: []string{
				`keepalived.conf:5: group:G/TCP: 10.50.0.0-10.50.255.255 port 80 of virtual_server_group "G" skipped: 65536 addresses, more than the 4096 services the data plane holds`,
			},
		},
		{
			name: "a group member repeating a virtual server is an error; overlapping ranges: first kept",
			conf: "virtual_server 10.50.1.2 80 {\n real_server 10.50.2.11 80 {\n }\n}\n" +
				"virtual_server_group G {\n 10.50.1.1-2 80\n 10.50.1.1 80\n}\n" +
				"virtual_server group G {\n protocol UDP\n}\n" +
				"virtual_server group G {\n lb_kind DR\n real_server 10.50.2.12 {\n }\n}\n",
			want: dataplane.State{Services: []dataplane.Service{
				svc("10.50.1.2", 80),
				{VIP: addr("10.50.1.1"), Port: 80, Protocol: 17, Sched: "wlc", Kind: dataplane.NAT},
				{VIP: addr("10.50.1.2"), Port: 80, Protocol: 17, Sched: "wlc", Kind: dataplane.NAT},
				{VIP: addr("10.50.1.1"), Port: 80, Protocol: 6, Sched: "wlc", Kind: dataplane.DR,
					Reals: []dataplane.Real{{Addr: addr("10.50.2.12"), Port: 80, Weight: 1}}},
			}},
			notes: []string{
				`keepalived.conf:9: group:G/UDP: service 10.50.1.1:80/UDP skipped: the group's ranges repeat it`,
				`keepalived.conf:12: group:G/TCP: service 10.50.1.1:80/TCP skipped: the group's ranges repeat it`,
			},
			errs: []string{
				`keepalived.conf:12: group:G/TCP: service 10.50.1.2:80/TCP is given twice: virtual server 10.50.1.2:80/TCP at keepalived.conf:1 gives it already (IPVS refuses a service twice)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseKeepalived("keepalived.conf", []byte(tt.conf), nil, nil)
			if err != nil {
				t.Fatalf("parse:\n%v", err)
			}
			caps := xdp.Capabilities()
			st, notes, err := PlanFor(cfg, &caps)
			var gotErrs []string
			var list config.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					gotErrs = append(gotErrs, e.Error())
				}
			} else if err != nil {
				t.Fatalf("Plan: %v is not a config.ErrorList", err)
			}
			if diff := cmp.Diff(tt.errs, gotErrs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, st, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			var got []string
			for _, n := range notes {
				got = append(got, n.Error())
			}
			if diff := cmp.Diff(tt.notes, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st, Desired(cfg), cmpAddr); diff != "" {
				t.Errorf("Desired differs from Plan (-plan +desired):\n%s", diff)
			}
		})
	}
}

// A model built by hand (not by the parser) may name a group that does
// not exist; Plan skips the virtual server with a note instead of failing.
func TestPlanUndefinedGroup(t *testing.T) {
	cfg := &config.Config{File: "lb.yaml", VirtualServers: []config.VirtualServer{{Group: "nope", Protocol: config.TCP, Line: 3}}}
	st, notes, err := Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 0 {
		t.Errorf("services = %v, want none", st.Services)
	}
	want := `lb.yaml:3: group:nope/TCP: virtual_server_group "nope" is not defined; virtual server skipped`
	if len(notes) != 1 || notes[0].Error() != want {
		t.Errorf("notes = %v, want [%s]", notes, want)
	}
}

// Every shipped keepalived.conf that loads is one the XDP data plane
// accepts, with no service twice.
func TestPlanTestdata(t *testing.T) {
	files, err := filepath.Glob("../../testdata/keepalived/[0-9]*.conf")
	if err != nil {
		t.Fatal(err)
	}
	caps := xdp.Capabilities()
	for _, f := range files {
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		st, _, err := PlanFor(cfg, &caps)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		seen := map[string]bool{}
		for _, s := range st.Services {
			if seen[s.Key()] {
				t.Errorf("%s: %s twice", f, s.Key())
			}
			seen[s.Key()] = true
		}
	}
}

// The configuration accepts every IPVS scheduler; planned for the XDP data
// plane, exactly those it runs pass.
func TestSchedulersForDataPlane(t *testing.T) {
	caps := xdp.Capabilities()
	for _, name := range sched.Schedulers {
		cfg, err := config.Parse("lb.yaml", []byte("virtual_servers: [{address: 10.0.0.1, port: 80, lb_algo: "+name+"}]\n"))
		if err != nil {
			t.Errorf("lb_algo %s: %v", name, err)
			continue
		}
		_, _, err = PlanFor(cfg, &caps)
		if accepted, runs := err == nil, slices.Contains(xdp.Schedulers(), name); accepted != runs {
			t.Errorf("lb_algo %s: planned for XDP: %v (err %v); the XDP data plane runs it: %v", name, accepted, err, runs)
		}
	}
	for _, name := range xdp.Schedulers() {
		if !slices.Contains(sched.Schedulers, name) {
			t.Errorf("the XDP data plane runs %q, which is not an IPVS scheduler", name)
		}
	}
	cfg, err := config.Parse("lb.yaml", []byte("virtual_servers: [{address: 10.0.0.1, port: 80}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Desired(cfg).Services[0].Sched; got != "wlc" {
		t.Errorf("default scheduler = %q, want keepalived's (IPVS's) wlc", got)
	}
}

// IPVS's scheduler flags reach the data plane.
func TestDesiredSchedFlags(t *testing.T) {
	cfg, err := config.ParseKeepalived("flags.conf", []byte(`virtual_server 10.50.1.100 80 {
    lb_algo mh
    lb_kind DR
    mh-port
    mh-fallback
    real_server 10.50.1.11 80 {
    }
}
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := Desired(cfg)
	if got := st.Services[0].SchedFlags; len(got) != 2 || got[0] != "mh-port" || got[1] != "mh-fallback" {
		t.Errorf("scheduler flags %v, want [mh-port mh-fallback]", got)
	}
}
