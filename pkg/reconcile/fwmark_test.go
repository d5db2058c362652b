package reconcile

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// A backend with firewall marks and SCTP (IPVS) is given them: a fwmark
// virtual server and a group's fwmark entries become firewall-mark
// services with the virtual server's reals.
func TestPlanFWMarkAndSCTP(t *testing.T) {
	ipvsLike := dataplane.Capabilities{
		Backend:    "ipvs",
		Schedulers: []string{"rr", "wrr", "wlc"},
		Kinds:      []dataplane.Kind{dataplane.NAT, dataplane.DR, dataplane.TUN},
		Protocols:  []uint8{6, 17, 132},
		FWMark:     true,
		PortZero:   true,
	}
	conf := "virtual_server fwmark 5 {\n lb_algo wrr\n lb_kind DR\n real_server 10.50.2.11 {\n weight 3\n }\n}\n" +
		"virtual_server_group G {\n 10.50.1.1 80\n fwmark 7\n}\n" +
		"virtual_server group G {\n lb_algo rr\n real_server 10.50.2.12 80 {\n }\n}\n" +
		"virtual_server 10.50.1.2 38412 {\n protocol SCTP\n lb_algo rr\n real_server 10.50.2.13 38412 {\n }\n}\n"
	cfg, err := config.ParseKeepalived("ka.conf", []byte(conf), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, notes, err := PlanFor(cfg, &ipvsLike)
	if err != nil || len(notes) != 0 {
		t.Fatalf("PlanFor: %v, notes %v", err, notes)
	}
	type svc struct {
		Key   string
		Sched string
		Kind  dataplane.Kind
		Reals []dataplane.Real
	}
	var got []svc
	for _, s := range st.Services {
		got = append(got, svc{s.Key(), s.Sched, s.Kind, s.Reals})
	}
	want := []svc{
		{"fwmark:5", "wrr", dataplane.DR, []dataplane.Real{{Addr: addr("10.50.2.11"), Weight: 3}}},
		{"fwmark:7", "rr", dataplane.NAT, []dataplane.Real{{Addr: addr("10.50.2.12"), Port: 80, Weight: 1}}},
		{"10.50.1.1:80/TCP", "rr", dataplane.NAT, []dataplane.Real{{Addr: addr("10.50.2.12"), Port: 80, Weight: 1}}},
		{"10.50.1.2:38412/SCTP", "rr", dataplane.NAT, []dataplane.Real{{Addr: addr("10.50.2.13"), Port: 38412, Weight: 1}}},
	}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}

	// IPVS refuses a mark twice; so does the plan, naming both.
	dup := "virtual_server fwmark 5 {\n}\nvirtual_server_group G {\n fwmark 5\n}\nvirtual_server group G {\n}\n"
	if cfg, err = config.ParseKeepalived("ka.conf", []byte(dup), nil, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = PlanFor(cfg, &ipvsLike)
	var list config.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Error() != `ka.conf:6: group:G/TCP: fwmark 5 is given twice: virtual server fwmark:5 at ka.conf:1 gives it already (IPVS refuses a service twice)` {
		t.Errorf("duplicate mark: %v", err)
	}
}

type masters map[string]bool

func (m masters) Held(netip.Addr) bool        { return true }
func (m masters) Master(instance string) bool { return m[instance] }

// lvs_sync_daemon runs the master daemon while its instance is MASTER,
// the backup one otherwise; its id defaults to the instance's VRID. A
// backend without a sync daemon notes it.
func TestPlanSyncDaemon(t *testing.T) {
	conf := "global_defs {\n lvs_sync_daemon eth1 VI_1 ttl 2\n}\n" +
		"vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 42\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n"
	cfg, err := config.ParseKeepalived("ka.conf", []byte(conf), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	caps := dataplane.Capabilities{Backend: "ipvs", SyncDaemon: true}
	for _, tc := range []struct {
		view masters
		want dataplane.SyncDaemon
	}{
		{masters{}, dataplane.SyncDaemon{Interface: "eth1", SyncID: 42, TTL: 2}},
		{masters{"VI_1": true}, dataplane.SyncDaemon{Master: true, Interface: "eth1", SyncID: 42, TTL: 2}},
	} {
		st, _, err := PlanHeld(cfg, &caps, nil, tc.view)
		if err != nil {
			t.Fatal(err)
		}
		if st.SyncDaemon == nil {
			t.Fatal("no sync daemon planned")
		}
		if d := cmp.Diff(tc.want, *st.SyncDaemon, cmpopts.EquateComparable(netip.Addr{})); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	}
	xdpLike := dataplane.Capabilities{Backend: "xdp"}
	st, notes, err := PlanHeld(cfg, &xdpLike, nil, masters{"VI_1": true})
	if err != nil {
		t.Fatal(err)
	}
	if st.SyncDaemon != nil || len(notes) != 1 || notes[0].Error() != "ka.conf:2: global_defs.lvs_sync_daemon: the XDP data plane has no connection sync daemon; ignored" {
		t.Errorf("XDP: sync daemon %+v, notes %v", st.SyncDaemon, notes)
	}
}
