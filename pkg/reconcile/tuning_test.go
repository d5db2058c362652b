package reconcile

import (
	"testing"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
)

// lvs_sysctl reaches the State; left out, the State holds zero, which the
// data plane reads as IPVS's defaults.
func TestPlanTuning(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want dataplane.Tuning
	}{
		{"global_defs: {router_id: a}\n", dataplane.Tuning{}},
		{"global_defs: {lvs_sysctl: {conn_reuse_mode: 1, sloppy_tcp: false, expire_quiescent_template: false}}\n", dataplane.Tuning{}},
		{"global_defs: {lvs_sysctl: {conn_reuse_mode: 0}}\n", dataplane.Tuning{NoConnReuse: true}},
		{"global_defs: {lvs_sysctl: {expire_quiescent_template: true, sloppy_tcp: true}}\n",
			dataplane.Tuning{ExpireQuiescentTemplate: true, SloppyTCP: true}},
	} {
		cfg, err := config.Parse("lb.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		caps := xdp.Capabilities()
		st, _, err := PlanFor(cfg, &caps)
		if err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		if st.Tuning != tt.want {
			t.Errorf("%s: Tuning %+v, want %+v", tt.yaml, st.Tuning, tt.want)
		}
	}
}
