package control

import (
	"strings"
	"testing"
	"time"
)

func TestFormatVRRP(t *testing.T) {
	since := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := formatVRRP(&b, Report{VRRP: []VRRPInstance{
		{Name: "VI_EXT", Interface: "eth0", VRID: 51, State: "MASTER", Priority: 150, EffectivePriority: 150,
			Master: "10.50.1.11", MasterPriority: 150, Since: since, Why: "master down timer expired", SyncGroup: "G",
			AdvertsSent: 12, AdvertsReceived: 0},
		{Name: "VI_2", Interface: "eth1", VRID: 52, State: "BACKUP", Priority: 100, EffectivePriority: 80,
			Since: since, Why: "start", Errors: map[string]uint64{"ttl": 2, "auth": 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"VRRP instances",
		"VI_EXT [G]  eth0       51    MASTER  150",
		"10.50.1.11 (150)",
		"master down timer expired",
		"80 (base 100)",
		"auth 1, ttl 2",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := formatVRRP(&b, Report{}); err != nil || b.Len() != 0 {
		t.Errorf("no instances: %q, %v", b.String(), err)
	}
}
