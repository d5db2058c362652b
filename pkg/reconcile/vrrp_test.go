package reconcile

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

type heldSet map[netip.Addr]bool

func (h heldSet) Held(a netip.Addr) bool { return h[a] }

// A BACKUP balances nothing of its instances' addresses, and the rest as
// before; a limit is judged on every service, held or not.
func TestPlanHeld(t *testing.T) {
	vs := func(a string) config.VirtualServer {
		return config.VirtualServer{Address: addr(a), Port: 80, Protocol: config.TCP, LBAlgo: "rr", LBKind: config.DR,
			RealServers: []config.RealServer{{Address: addr("10.50.1.21"), Port: 80, Weight: 1}}}
	}
	vip := func(a string) config.VIP { return config.VIP{Prefix: netip.PrefixFrom(addr(a), 32)} }
	cfg := &config.Config{
		VRRPInstances: []config.VRRPInstance{
			{Name: "A", VirtualIPAddresses: []config.VIP{vip("10.50.1.100")}},
			{Name: "B", VirtualIPAddressesExcluded: []config.VIP{vip("10.50.1.101")}},
		},
		VirtualServers: []config.VirtualServer{vs("10.50.1.100"), vs("10.50.1.101"), vs("10.50.1.200")},
	}
	vips := func(st dataplane.State) []string {
		var l []string
		for _, s := range st.Services {
			l = append(l, s.VIP.String())
		}
		return l
	}
	for _, tc := range []struct {
		name string
		held VIPs
		want []string
	}{
		{"no VRRP view", nil, []string{"10.50.1.100", "10.50.1.101", "10.50.1.200"}},
		{"backup everywhere", heldSet{}, []string{"10.50.1.200"}},
		{"master of A", heldSet{addr("10.50.1.100"): true}, []string{"10.50.1.100", "10.50.1.200"}},
		{"master of both", heldSet{addr("10.50.1.100"): true, addr("10.50.1.101"): true}, []string{"10.50.1.100", "10.50.1.101", "10.50.1.200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, err := PlanHeld(cfg, nil, nil, tc.held)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, vips(st)); d != "" {
				t.Errorf("services (-want +got):\n%s", d)
			}
		})
	}
	caps := dataplane.Capabilities{MaxServices: 2, Protocols: []uint8{6, 17}}
	if _, _, err := PlanHeld(cfg, &caps, nil, heldSet{}); err == nil {
		t.Error("3 services fit a backend of 2 because the BACKUP holds only one")
	}
}
