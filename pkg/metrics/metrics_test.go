package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

func sample(context.Context) (dataplane.Status, error) {
	return dataplane.Status{
		Backend:     "xdp",
		Attachments: []dataplane.Attachment{{Interface: "eth0", Mode: "generic"}},
		Services: []dataplane.ServiceStatus{{
			VIP: netip.MustParseAddr("10.50.1.100"), Port: 80, Protocol: "TCP", Sched: "rr", Kind: "NAT",
			Counters: dataplane.Counters{Connections: 3, PacketsIn: 30, BytesIn: 3000, PacketsOut: 20, BytesOut: 4000},
			Reals: []dataplane.RealStatus{
				{Addr: netip.MustParseAddr("10.50.2.11"), Port: 8080, Weight: 2, Reachable: true,
					Counters: dataplane.Counters{Connections: 2, PacketsIn: 20, BytesIn: 2000, PacketsOut: 15, BytesOut: 3000}},
				{Addr: netip.MustParseAddr("10.50.2.12"), Port: 8080, Weight: 0,
					Counters: dataplane.Counters{Connections: 1, PacketsIn: 10, BytesIn: 1000, PacketsOut: 5, BytesOut: 1000}},
			},
		}},
		Verdicts: map[string]uint64{"fwd_nat": 30, "pass_not_vip": 7},
		Flows:    3, NATFlows: 3,
	}, nil
}

func TestLint(t *testing.T) {
	m := New(sample, nil)
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestValues(t *testing.T) {
	m := New(sample, nil)
	m.Reloads.WithLabelValues("failed").Inc()
	want := `
# HELP xlbd_real_packets_total Packets to (in) and from (out, NAT only) a real server.
# TYPE xlbd_real_packets_total counter
xlbd_real_packets_total{direction="in",port="80",protocol="TCP",real="10.50.2.11:8080",vip="10.50.1.100"} 20
xlbd_real_packets_total{direction="in",port="80",protocol="TCP",real="10.50.2.12:8080",vip="10.50.1.100"} 10
xlbd_real_packets_total{direction="out",port="80",protocol="TCP",real="10.50.2.11:8080",vip="10.50.1.100"} 15
xlbd_real_packets_total{direction="out",port="80",protocol="TCP",real="10.50.2.12:8080",vip="10.50.1.100"} 5
# HELP xlbd_real_weight Configured weight of a real server (0: quiesced, no new connections).
# TYPE xlbd_real_weight gauge
xlbd_real_weight{port="80",protocol="TCP",real="10.50.2.11:8080",vip="10.50.1.100"} 2
xlbd_real_weight{port="80",protocol="TCP",real="10.50.2.12:8080",vip="10.50.1.100"} 0
# HELP xlbd_verdict_packets_total Packets seen by the XDP balancer, by verdict (fwd_*: forwarded, pass_*: left to the kernel, drop_*: dropped).
# TYPE xlbd_verdict_packets_total counter
xlbd_verdict_packets_total{verdict="fwd_nat"} 30
xlbd_verdict_packets_total{verdict="pass_not_vip"} 7
# HELP xlbd_config_reloads_total Configuration reloads by result (ok: applied, failed: the running configuration was kept).
# TYPE xlbd_config_reloads_total counter
xlbd_config_reloads_total{result="failed"} 1
xlbd_config_reloads_total{result="ok"} 0
# HELP xlbd_xdp_attached 1 for each interface the balancer is attached to, with its XDP mode.
# TYPE xlbd_xdp_attached gauge
xlbd_xdp_attached{interface="eth0",mode="generic"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"xlbd_real_packets_total", "xlbd_real_weight", "xlbd_verdict_packets_total",
		"xlbd_config_reloads_total", "xlbd_xdp_attached"); err != nil {
		t.Error(err)
	}
}

// A data plane that cannot be read says so in the scrape instead of
// failing it.
func TestScrapeError(t *testing.T) {
	m := New(func(context.Context) (dataplane.Status, error) { return dataplane.Status{}, errors.New("boom") }, nil)
	want := "# HELP xlbd_scrape_error 1 when reading the data plane for this scrape failed.\n# TYPE xlbd_scrape_error gauge\nxlbd_scrape_error 1\n"
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "xlbd_scrape_error"); err != nil {
		t.Error(err)
	}
}

// The Grafana dashboard in contrib/ only queries series xlbd exports.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../contrib/grafana/xlbd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	m := New(sample, nil)
	m.LastReload.SetToCurrentTime()
	m.Health.Checked("10.50.1.100:80/TCP", "10.50.2.11:8080", "HTTP_GET", false)
	m.Health.Attempted("HTTP_GET", time.Millisecond, time.Millisecond)
	m.Health.Changed("10.50.1.100:80/TCP", "10.50.2.11:8080", false)
	m.Health.SetStates([]RealState{{VS: "10.50.1.100:80/TCP", Real: "10.50.2.11:8080"}}, []QuorumState{{VS: "10.50.1.100:80/TCP", Up: true}})
	m.SetVRRP(func() []VRRPInstance {
		return []VRRPInstance{{Name: "VI_1", State: "MASTER", Errors: map[string]uint64{"auth": 1}}}
	})
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, mf := range mfs {
		exported[mf.GetName()] = true
	}
	name := regexp.MustCompile(`xlbd_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, used := range name.FindAllString(tg.Expr, -1) {
				n++
				family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(used, "_bucket"), "_sum"), "_count")
				if !exported[used] && !exported[family] {
					t.Errorf("panel %q queries %s, which xlbd does not export", p.Title, used)
				}
			}
		}
	}
	if n == 0 {
		t.Error("the dashboard queries no xlbd series")
	}
}
