package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// Known UDP traffic through a NAT service shows up exactly, per real, in
// /metrics, in `xlbd status` and in the pinned maps as bpftool prints them.
func TestObservability(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1", "13:1")
	d := l.daemon(t, "--metrics-addr", "127.0.0.1:9469")
	waitFor(t, d, "msg=ready")

	// Seven queries of 7 bytes on one flow: 7 packets of 35 IP bytes in, and
	// 7 replies "rN:" + query, 38 IP bytes, out.
	pc, err := l.top.Client.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	vip := &net.UDPAddr{IP: l.top.VIP.AsSlice(), Port: 53}
	var served string
	for i := 0; i < 7; i++ {
		if _, err := pc.WriteTo([]byte(fmt.Sprintf("query-%d", i)), vip); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 100)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		served, _, _ = strings.Cut(string(buf[:n]), ":")
	}
	realAddr := map[string]string{"r1": "10.50.2.11:5353", "r2": "10.50.2.12:5353", "r3": "10.50.2.13:5353"}[served]

	families := scrapeMetrics(t, l.top.LB, "127.0.0.1:9469")
	got := map[string]float64{}
	for _, name := range []string{"xlbd_real_packets_total", "xlbd_real_bytes_total", "xlbd_real_connections_total"} {
		for _, m := range families[name].GetMetric() {
			lbl := map[string]string{}
			for _, p := range m.GetLabel() {
				lbl[p.GetName()] = p.GetValue()
			}
			if lbl["protocol"] != "UDP" {
				continue
			}
			got[name+"/"+lbl["real"]+"/"+lbl["direction"]] = m.GetCounter().GetValue()
		}
	}
	for _, r := range []string{"10.50.2.11:5353", "10.50.2.12:5353", "10.50.2.13:5353"} {
		want := map[string]float64{"in": 0, "out": 0}
		wantBytes := map[string]float64{"in": 0, "out": 0}
		wantConns := 0.0
		if r == realAddr {
			want = map[string]float64{"in": 7, "out": 7}
			wantBytes = map[string]float64{"in": 7 * 35, "out": 7 * 38}
			wantConns = 1
		}
		for _, dir := range []string{"in", "out"} {
			if v := got["xlbd_real_packets_total/"+r+"/"+dir]; v != want[dir] {
				t.Errorf("%s packets %s: %v, want %v", r, dir, v, want[dir])
			}
			if v := got["xlbd_real_bytes_total/"+r+"/"+dir]; v != wantBytes[dir] {
				t.Errorf("%s bytes %s: %v, want %v", r, dir, v, wantBytes[dir])
			}
		}
		if v := got["xlbd_real_connections_total/"+r+"/"]; v != wantConns {
			t.Errorf("%s connections: %v, want %v", r, v, wantConns)
		}
	}

	// xlbd status, human and JSON.
	out, err := exec.Command(xlbdBinary(t), "status", "--control-socket", l.ctl).CombinedOutput()
	if err != nil {
		t.Fatalf("xlbd status: %v\n%s", err, out)
	}
	for _, want := range []string{"xdp data plane on eth0 (generic), eth1 (generic)", "UDP  10.50.1.100:53 rr NAT",
		"TCP  10.50.1.100:80 rr NAT", "-> " + realAddr + " 1 yes"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("xlbd status lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(xlbdBinary(t), "status", "--json", "--control-socket", l.ctl).Output()
	if err != nil {
		t.Fatalf("xlbd status --json: %v", err)
	}
	var rep control.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("xlbd status --json: %v\n%s", err, out)
	}
	found := false
	for _, s := range rep.Dataplane.Services {
		for _, r := range s.Reals {
			if s.Protocol == "UDP" && fmt.Sprintf("%s:%d", r.Addr, r.Port) == realAddr {
				found = true
				if r.PacketsIn != 7 || r.BytesIn != 245 || r.PacketsOut != 7 || r.BytesOut != 266 || r.Connections != 1 {
					t.Errorf("status --json for %s: %+v", realAddr, r.Counters)
				}
			}
		}
	}
	if !found {
		t.Errorf("status --json has no UDP real %s:\n%s", realAddr, out)
	}

	// bpftool shows the pinned maps with their field names.
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		t.Fatalf("bpftool not installed (make deps installs it): %v", err)
	}
	for mp, fields := range map[string][]string{
		"reals":      {"vip", "vport", "proto", "ip", "port", "mode", "dmac"},
		"services":   {"vip", "port", "proto", "gen", "sched", "tab_len", "mem_len", "persist_timeout"},
		"real_load":  {"active", "inactive", "persist", "overloaded"},
		"real_stats": {"conns", "pkts_in", "bytes_in", "pkts_out", "bytes_out"},
		"conns":      {"src", "dst", "sport", "dport", "real_id"},
	} {
		out, err := exec.Command(bpftool, "map", "dump", "pinned", l.pin+"/"+mp).CombinedOutput()
		if err != nil {
			t.Fatalf("bpftool map dump %s: %v\n%s", mp, err, out)
		}
		for _, f := range fields {
			if !strings.Contains(string(out), `"`+f+`": `) {
				t.Errorf("bpftool dump of %s lacks field %q:\n%.600s", mp, f, out)
			}
		}
	}

	// Once the daemon is gone, status says so.
	d.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := control.Fetch(ctx, l.ctl); err == nil || !strings.Contains(err.Error(), "no xlbd daemon is running") {
		t.Errorf("status without a daemon: %v", err)
	}
}

// scrapeMetrics reads the daemon's /metrics at addr from inside ns.
func scrapeMetrics(t *testing.T, ns *testbed.Netns, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	c := ns.HTTPClient()
	c.Timeout = 5 * time.Second
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}
