package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestVRRP(t *testing.T) {
	m := New(sample, nil)
	m.SetVRRP(func() []VRRPInstance {
		return []VRRPInstance{{
			Name: "VI_1", State: "BACKUP", Priority: 100, EffectivePriority: 90, Transitions: 2,
			Sent: 5, Received: 40, Errors: map[string]uint64{"auth": 3, "ttl": 1}, GARPs: 10,
		}}
	})
	want := `
# HELP xlbd_vrrp_state Whether a VRRP instance is in a state (1) or not (0).
# TYPE xlbd_vrrp_state gauge
xlbd_vrrp_state{instance="VI_1",state="BACKUP"} 1
xlbd_vrrp_state{instance="VI_1",state="FAULT"} 0
xlbd_vrrp_state{instance="VI_1",state="INIT"} 0
xlbd_vrrp_state{instance="VI_1",state="MASTER"} 0
xlbd_vrrp_state{instance="VI_1",state="STOP"} 0
# HELP xlbd_vrrp_effective_priority A VRRP instance's priority after track_interface and track_script weights.
# TYPE xlbd_vrrp_effective_priority gauge
xlbd_vrrp_effective_priority{instance="VI_1"} 90
# HELP xlbd_vrrp_advert_errors_total VRRP advertisements dropped or mismatching, by reason (auth, ttl, checksum, interval, vip_list, version, ...).
# TYPE xlbd_vrrp_advert_errors_total counter
xlbd_vrrp_advert_errors_total{instance="VI_1",reason="auth"} 3
xlbd_vrrp_advert_errors_total{instance="VI_1",reason="ttl"} 1
# HELP xlbd_vrrp_adverts_received_total VRRP advertisements received that passed the packet checks.
# TYPE xlbd_vrrp_adverts_received_total counter
xlbd_vrrp_adverts_received_total{instance="VI_1"} 40
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "xlbd_vrrp_state",
		"xlbd_vrrp_effective_priority", "xlbd_vrrp_advert_errors_total", "xlbd_vrrp_adverts_received_total"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
