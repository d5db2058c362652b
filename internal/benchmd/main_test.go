package main

import (
	"fmt"
	"strings"
	"testing"
)

// render reads files (name → go test output) as make bench leaves them
// and writes BENCHMARKS.md.
func render(t *testing.T, katran string, missing []string, files ...string) (string, []string) {
	t.Helper()
	in := newInput()
	for i, f := range files {
		if err := in.read(fmt.Sprintf("build/bench-%d.txt", i), strings.NewReader(f)); err != nil {
			t.Fatal(err)
		}
	}
	in.missing = missing
	var b strings.Builder
	notes, err := write(&b, in, katran)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), notes
}

func expect(t *testing.T, md string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(md, w) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", w, md)
		}
	}
}

func TestPerPacket(t *testing.T) {
	in := `goos: linux
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  401.0 ns/pkt  80.00 trivial-ns/pkt  5.0 x-trivial  321 above-trivial-ns  251 katran-ns/pkt  1.60 x-katran
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  411.0 ns/pkt  80.00 trivial-ns/pkt  5.1 x-trivial  331 above-trivial-ns  250 katran-ns/pkt  1.64 x-katran
BenchmarkPerPacket/established/nat-2   20000  1 ns/op  391.0 ns/pkt  80.00 trivial-ns/pkt  4.9 x-trivial  311 above-trivial-ns  252 katran-ns/pkt  1.55 x-katran
BenchmarkNewFlowPerScheduler/rr/3-2    20000  1 ns/op  600 ns/pkt  520 above-trivial-ns
BenchmarkNewFlowPerScheduler/wlc/3-2   20000  1 ns/op  700 ns/pkt  624 above-trivial-ns
PASS
`
	md, _ := render(t, "`/src/katran`", nil, in)
	expect(t, md,
		"3 runs for the per-packet figures",
		"Katran: balancer.bpf.c from `/src/katran`, built as",
		"| established/nat | 401 (391–411) | 80 | 5.00 (4.90–5.10) | 321 (311–331) | 251 (250–252) | 1.60 (1.55–1.64) | ≤ 0.75 |",
		"| wlc | 624 ns, 1.20× rr |",
		// Every other section, with nothing to show, says so.
		"not run: none of the inputs has BenchmarkForwarding",
		"not run: none of the inputs has BenchmarkHealthChecks",
	)
}

// forwardLines is BenchmarkForwarding's output for one mode, in go test's
// order: -count repeats each case on its own before the next. xlbd's rates
// are routing's × xlbdRate, its CPU xlbdCPU ns above routing's; nftables is
// at 0.9× and 8000 ns (800 for TCP's large packets). Run i is 1% faster
// than run i-1 and costs i ns more.
func forwardLines(mode string, xlbdRate, xlbdCPU float64) string {
	var b strings.Builder
	for _, p := range []struct {
		path      string
		rate, cpu float64
	}{{"routing", 1, 0}, {"nft", 0.9, 8000}, {"xlbd", xlbdRate, xlbdCPU}} {
		for _, t := range []struct {
			name, rate, cpu string
			base, cpuBase   float64
			cpuScale        float64
		}{
			{"tcp", "Gbit/s", "cpu-ns/pkt", 10, 1000, 0.1},
			{"udp64", "pkt/s", "cpu-ns/pkt", 400000, 32500, 1},
			{"connect", "conn/s", "cpu-ns/conn", 20000, 90000, 1},
		} {
			for run := range 3 {
				fmt.Fprintf(&b, "BenchmarkForwarding/%s/%s/%s-2  1  %.4f %s  %.0f %s\n--- BENCH: BenchmarkForwarding/%s/%s/%s-2\n    forward_bench_test.go:250: log\n",
					mode, p.path, t.name, t.base*p.rate*(1+0.01*float64(run)), t.rate, t.cpuBase+p.cpu*t.cpuScale+float64(run), t.cpu,
					mode, p.path, t.name)
			}
		}
	}
	return b.String()
}

func TestForwarding(t *testing.T) {
	out := "# go test ./internal/e2e -bench Forwarding -benchtime 1x -count 3 -run '^$' -v\npkg: github.com/xlbd/xlbd/internal/e2e\n" +
		forwardLines("generic", 1.02, 6000) + forwardLines("native", 0.5, 9000) + "PASS\n# exit status 0 after 300 s\n"
	md, _ := render(t, "", nil, out)
	expect(t, md,
		"Run: `go test ./internal/e2e -bench Forwarding -benchtime 1x -count 3 -run '^$' -v` (5.0 min), as root.",
		"Medians of 3 runs.",
		"### generic XDP",
		"### native XDP",
		"| path | TCP Gbit/s | ÷ routing | CPU ns/pkt | UDP 64 B pkt/s | ÷ routing | CPU ns/pkt | new connections conn/s | ÷ routing | CPU ns/conn | target: ≥ routing, added ns/pkt < nftables' |",
		// The baseline: absolute rates, ratio 1 to its median, its own CPU.
		"| plain routing | 10.10 (10.00–10.20) | 1.00 (0.99–1.01) | 1001 (1000–1002) | 404000 (400000–408000) | 1.00 (0.99–1.01) | 32501 (32500–32502) |",
		// nftables: each run against routing's median.
		"| nftables DNAT | 9.09 (9.00–9.18) | 0.90 (0.89–0.91) | +800 (+799 to +801) | 363600 (360000–367200) | 0.90 (0.89–0.91) | +8000 (+7999 to +8001) |",
		"| xlbd | 10.30 (10.20–10.40) | 1.02 (1.01–1.03) | +600 (+599 to +601) | 412080 (408000–416160) | 1.02 (1.01–1.03) | +6000 (+5999 to +6001) | 20604 (20400–20808) | 1.02 (1.01–1.03) | +6000 (+5999 to +6001) | met |",
		"| xlbd | 5.05 (5.00–5.10) | 0.50 | +900 (+899 to +901) |",
		"| missed: TCP 0.50×; TCP +900 ns/pkt, nftables +800; UDP 64 B 0.50×; UDP 64 B +9000 ns/pkt, nftables +8000; new connections 0.50× |",
	)
	if strings.Contains(md, "not run: none of the inputs has BenchmarkForwarding") {
		t.Errorf("forwarding said not run:\n%s", md)
	}
}

// TestNotRun: a section whose benchmark skipped, failed, did not build or
// was never run says so, and why.
func TestNotRun(t *testing.T) {
	skipped := `# go test ./internal/e2e -bench '^BenchmarkVRRPFailover$' -benchtime 1x -count 1 -run '^$' -v
goos: linux
pkg: github.com/xlbd/xlbd/internal/e2e
BenchmarkVRRPFailover
    vrrp_bench_test.go:62: keepalived is not installed (make deps installs it): stat /usr/sbin/keepalived: no such file or directory
--- SKIP: BenchmarkVRRPFailover
PASS
ok  	github.com/xlbd/xlbd/internal/e2e	0.1s
# exit status 0 after 3 s
`
	// -v: the entries come before "--- FAIL"; the last one is the
	// failure, its continuation lines indented deeper.
	failed := `# go test ./internal/e2e -bench '^BenchmarkHealthChecks$' -benchtime 1x -count 3 -run '^$' -v
pkg: github.com/xlbd/xlbd/internal/e2e
BenchmarkHealthChecks
BenchmarkHealthChecks/lb_algo=rr
    health_bench_test.go:113: 1000 reals, every checker run 1.2s after ready
    health_bench_test.go:110: not every one of 1000 checkers ran within 30 s (status: <nil>)
        and a second line
--- FAIL: BenchmarkHealthChecks/lb_algo=rr
--- FAIL: BenchmarkHealthChecks
FAIL
exit status 1
FAIL	github.com/xlbd/xlbd/internal/e2e	40.1s
# exit status 1 after 41 s
`
	broken := `# go test ./internal/e2e -bench '^BenchmarkDaemon$' -benchtime 5x -count 3 -run '^$' -v
# github.com/xlbd/xlbd/internal/testbed
internal/testbed/rate.go:337:15: invalid argument: end (variable of struct type "time".Time) cannot be ordered
FAIL	github.com/xlbd/xlbd/internal/e2e [build failed]
# exit status 1 after 2 s
`
	// Cut short: no exit status.
	cut := `# go test ./pkg/dataplane/xdp -bench '^BenchmarkScrape$' -benchmem -count 5 -run '^$' -v
goos: linux
`
	none := `# go test ./pkg/maps -bench '^BenchmarkMapMemory$' -benchtime 1x -count 1 -run '^$' -v
PASS
ok  	github.com/xlbd/xlbd/pkg/maps	0.01s
# exit status 0 after 1 s
`
	md, notes := render(t, "", []string{"build/bench-forward.txt"}, skipped, failed, broken, cut, none)
	want := []string{
		"not run: BenchmarkVRRPFailover skipped: keepalived is not installed (make deps installs it): stat /usr/sbin/keepalived: no such file or directory.",
		"not run: BenchmarkHealthChecks/lb_algo=rr failed: not every one of 1000 checkers ran within 30 s (status: <nil>).",
		"not run: `go test ./internal/e2e -bench '^BenchmarkDaemon$' -benchtime 5x -count 3 -run '^$' -v` failed (exit status 1): " +
			`internal/testbed/rate.go:337:15: invalid argument: end (variable of struct type "time".Time) cannot be ordered.`,
		"pkg/dataplane/xdp: not run: `go test ./pkg/dataplane/xdp -bench '^BenchmarkScrape$' -benchmem -count 5 -run '^$' -v` did not finish (build/bench-3.txt has no exit status).",
		"not run: `go test ./pkg/maps -bench '^BenchmarkMapMemory$' -benchtime 1x -count 1 -run '^$' -v` has no BenchmarkMapMemory (not in this checkout?).",
		"not run: none of the inputs has BenchmarkForwarding (missing: build/bench-forward.txt).",
		"not run: none of the inputs has BenchmarkPerPacket (missing: build/bench-forward.txt).",
		"Run: `go test ./internal/e2e -bench '^BenchmarkHealthChecks$' -benchtime 1x -count 3 -run '^$' -v` (41 s), as root.",
		"The runs took 47 s in all.",
		"lowest and highest in brackets; each section says how many.",
	}
	expect(t, md, want...)
	if len(notes) != 12 {
		t.Errorf("%d notes, want one per empty table (12):\n%s", len(notes), strings.Join(notes, "\n"))
	}
}

func TestControlVRRPHealthGo(t *testing.T) {
	daemon := `pkg: github.com/xlbd/xlbd/internal/e2e
BenchmarkDaemon/services=1/reals=3-2  5  20183496 ns/op  407.0 ready-ms  20.18 sighup-ms  31.2 rss-MiB
BenchmarkDaemon/services=1000/reals=3-2  5  20183496 ns/op  1407.0 ready-ms  220.18 sighup-ms  80.5 rss-MiB
BenchmarkDaemon/services=1/reals=10/silent-2  5  20544127 ns/op  491.0 ready-ms  20.54 sighup-ms  30.0 rss-MiB
BenchmarkDaemon/services=1/reals=3-2  5  20183496 ns/op  417.0 ready-ms  21.18 sighup-ms  32.0 rss-MiB
BenchmarkDaemon/services=1000/reals=3-2  5  20183496 ns/op  1507.0 ready-ms  230.18 sighup-ms  81.5 rss-MiB
BenchmarkDaemon/services=1/reals=10/silent-2  5  20544127 ns/op  481.0 ready-ms  21.54 sighup-ms  30.0 rss-MiB
`
	maps := `pkg: github.com/xlbd/xlbd/pkg/maps
BenchmarkMapMemory/conns-2   1   131072 entries   17.00 map-MiB
BenchmarkMapMemory/other-2   1   15.47 map-MiB
BenchmarkMapMemory/total-2   1   84.60 map-MiB
`
	apply := `pkg: github.com/xlbd/xlbd/pkg/dataplane/xdp
BenchmarkApply/reals=10000-2   10  166255468 ns/op  166.3 ms/apply
BenchmarkApplyOneWeight/sched=wlc-2  10  19801179 ns/op  19.80 ms/apply
`
	vrrp := `pkg: github.com/xlbd/xlbd/internal/e2e
BenchmarkVRRPFailover-2   	       1	150094364515 ns/op	       613.3 keepalived-v2-graceful-max-ms	       610.0 keepalived-v2-graceful-median-ms	       610.0 keepalived-v2-graceful-min-ms	         0.2590 keepalived-v2-graceful-prio0-ms	      3515 keepalived-v2-hung-max-ms	      3111 keepalived-v2-hung-median-ms	      2759 keepalived-v2-hung-min-ms	         1.001 v2-graceful-xlbd/keepalived	         0.9996 v2-hung-xlbd/keepalived	       613.1 xlbd-v2-graceful-max-ms	       610.9 xlbd-v2-graceful-median-ms	       610.3 xlbd-v2-graceful-min-ms	         0.5330 xlbd-v2-graceful-prio0-ms	      3509 xlbd-v2-hung-max-ms	      3110 xlbd-v2-hung-median-ms	      2707 xlbd-v2-hung-min-ms
--- BENCH: BenchmarkVRRPFailover-2
    vrrp_bench_test.go:121: row         | xlbd                    | keepalived              | xlbd/keepalived (ms from the signal to the VIP on lb2, median [min–max] of 5)
        v2-graceful |   610.9 [ 610.3– 613.1] |   610.0 [ 610.0– 613.3] | 1.001
BenchmarkVRRPInstances-2   	       1	     64455 ns/op	        12.00 backup-cpu-ms/s	         1.618 late-max-ms	         1.110 late-p99-ms	        27.00 master-cpu-ms/s
`
	health := `pkg: github.com/xlbd/xlbd/internal/e2e
BenchmarkHealthChecks/lb_algo=rr-2         	       1	7658498261 ns/op	        13.60 applier-p50-ms	        20.31 apply-max-ms	        14.59 apply-p50-ms	         1.018 checks-ratio	         0.2800 cpu-core	         7.442 late-max-ms	         3.554 late-p99-ms	         7.961 srv-late-p99-ms	        30.27 storm-apply-max-ms	        25.62 storm-apply-p99-ms
`
	gobench := `pkg: github.com/xlbd/xlbd/pkg/config
BenchmarkParse/lb.yaml/services=100-2   56   20412286 ns/op   4.88 MB/s   11303043 B/op   167955 allocs/op
BenchmarkParse/lb.yaml/services=100-2   56   20012286 ns/op   4.83 MB/s   11303043 B/op   167955 allocs/op
BenchmarkParse/lb.yaml/services=100-2   56   20212286 ns/op   4.85 MB/s   11303043 B/op   167955 allocs/op
pkg: github.com/xlbd/xlbd/pkg/sched
BenchmarkLookupMH-2   40000000   28.1 ns/op   0 B/op   0 allocs/op
`
	md, _ := render(t, "", nil, daemon, maps, apply, vrrp, health, gobench)
	expect(t, md,
		"| services × reals each | ready ms | SIGHUP ms | RSS idle MiB |",
		"| 1 × 3 | 417 (407–417) | 21.2 (20.2–21.2) | 32.0 (31.2–32.0) |",
		"| 1000 × 3 | 1507 (1407–1507) | 230.2 (220.2–230.2) | 81.5 (80.5–81.5) |",
		"| 1 × 10 silent | 491 (481–491) | 21.5 (20.5–21.5) | 30.0 |",
		"| conns | 131072 | 17.0 |",
		"| other |  | 15.5 |",
		"| **total** (target ≤ 128) | | **84.6** |",
		"| whole pool replaced (every real added, every old one removed) | reals=10000 | 166.30 | 10,000 reals: < 1000 |",
		"| one real's weight, 10,000 reals present | sched=wlc | 19.80 | < 10 |",
		"| one real out of a 1,000-real service and back, 10,000 present | | not run: none of the inputs has BenchmarkApplyRealDown | < 10 |",
		"of 5 failovers per row and implementation;",
		"| VRRPv2, advert_int 1 s, master stopped (SIGTERM: it sends priority 0) | 610.9 (610.3–613.1) | 610.0 (610.0–613.3) | 1.001 | 0.5 | 0.3 |",
		"| VRRPv2, advert_int 1 s, master hung (SIGSTOP) | 3110.0 (2707.0–3509.0) | 3111.0 (2759.0–3515.0) | 1.000 |  |  |",
		"| 27.0 | 12.0 | 1.11 | 1.62 |",
		"| rr | 0.280 | 3.55 | 7.44 | 7.96 | 1.018 |",
		"| rr | 14.6 | 20.3 | 13.6 | 25.6 | 30.3 |",
		"| Parse/lb.yaml/services=100 | 20.2 (20.0–20.4) ms | 10.8 MiB | 167955 | 4.85 (4.83–4.88) MB/s |",
		"| LookupMH | 28 ns | 0 B | 0 |  |",
		"pkg/reconcile: not run: none of the inputs has BenchmarkPlan.",
	)
	// The v3 rows had no run: no empty rows for them.
	if strings.Contains(md, "VRRPv3") {
		t.Errorf("rows without figures:\n%s", md)
	}
}

func TestSelects(t *testing.T) {
	for _, c := range []struct {
		cmd, name string
		want      bool
	}{
		{"go test ./internal/e2e -bench Forwarding -benchtime 1x", "BenchmarkForwarding", true},
		{"go test ./internal/e2e -bench '^BenchmarkDaemon$' -run '^$'", "BenchmarkDaemon", true},
		{"go test ./internal/e2e -bench '^BenchmarkDaemon$' -run '^$'", "BenchmarkDaemonX", false},
		{"go test ./pkg/dataplane/xdp -bench 'PerPacket|NewFlowPerScheduler/(rr|wlc|sh|mh)/' -count 5", "BenchmarkNewFlowPerScheduler", true},
		{"go test ./pkg/dataplane/xdp -bench 'PerPacket|NewFlowPerScheduler/(rr|wlc|sh|mh)/' -count 5", "BenchmarkScrape", false},
		{"go test ./pkg/config -bench . -benchmem", "BenchmarkParse", true},
		{"go test ./pkg/config -run x", "BenchmarkParse", false},
	} {
		if got := selects(c.cmd, c.name); got != c.want {
			t.Errorf("selects(%q, %q) = %v, want %v", c.cmd, c.name, got, c.want)
		}
	}
}
