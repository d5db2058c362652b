package maps

import "testing"

// The flag values are part of the pinned maps' format: a daemon adopting
// maps pinned by an older one reads their entries with these values.
func TestFlagValuesStable(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"SVC_F_PERSIST", SvcPersist, 0x0001},
		{"SVC_F_FALLBACK", SvcFallback, 0x0008},
		{"SVC_F_PORT", SvcPort, 0x0010},
		{"SVC_F_ALLPORTS", SvcAllPorts, 0x1000},
		{"SVC_F_TMPL_NOPORT", SvcTmplNoPort, 0x2000},
		{"CONN_F_ACTIVE", ConnActive, 1},
		{"CONN_F_PERSIST", ConnPersist, 2},
		{"CONN_F_NOOUTPUT", ConnNoOutput, 4},
		{"CONN_F_PICKED", ConnPicked, 8},
		{"CONN_F_ASSURED", ConnAssured, 16},
		{"FRAG_F_REPLY", FragReply, 1},
		{"FRAG_F_PASS", FragPass, 2},
		{"REAL_F_VALID", uint32(RealValid), 1},
		{"FILTER_VIP", uint32(FilterVIP), 1},
		{"FILTER_NAT_REAL", uint32(FilterNATReal), 2},
		{"MODE_NAT", uint32(ModeNAT), 1},
		{"MODE_DR", uint32(ModeDR), 2},
		{"MODE_TUN", uint32(ModeTUN), 3},
		{"SCHED_RR", uint32(SchedSequence), 0},
		{"SCHED_LBLCR", uint32(SchedLBLCR), 12},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x (pinned maps hold the old value)", c.name, c.got, c.want)
		}
	}
}
