package reconcile

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

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
	if diff := cmp.Diff(want, Desired(cfg), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
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
