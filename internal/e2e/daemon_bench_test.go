package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
)

// BenchmarkDaemon is issue 11's table, measured on the daemon as a user
// runs it: a NAT lab, lb.yaml with wlc, `xlbd --config` from start to
// msg=ready, then SIGHUPs that change nothing, each to msg=reloaded
// (sighup-ms is their mean over b.N). The silent pool's reals are routed
// on-link but held by no one: they never answer ARP. rss-MiB is issue
// 15's idle footprint: the daemon's VmRSS a moment after ready, before any
// reload.
//
//	go test ./internal/e2e/ -run '^$' -bench Daemon -benchtime 5x
func BenchmarkDaemon(b *testing.B) {
	for _, c := range []struct {
		services, reals int
		silent          bool
	}{
		{1, 3, false},
		{100, 10, false},
		{1000, 3, false},
		{10, 250, false},
		{4, 1000, false},
		{1, 10, true},
	} {
		name := fmt.Sprintf("services=%d/reals=%d", c.services, c.reals)
		if c.silent {
			name += "/silent"
		}
		b.Run(name, func(b *testing.B) {
			requireNetns(b)
			bin := xlbdBinary(b)
			top, err := testbed.NewNAT(b, testbed.Options{Reals: 1, VIPOnLB: true})
			if err != nil {
				b.Fatal(err)
			}
			// Real i of every service: an address of the real server's
			// (500 of them, ports 8080 and 8081) or, silent, one in
			// 10.50.6.0/24 that no one holds.
			addr := func(i int) (netip.Addr, int) { return scaleAddr(i % scaleAddrs), 8080 + i/scaleAddrs }
			if c.silent {
				addr = func(i int) (netip.Addr, int) { return netip.AddrFrom4([4]byte{10, 50, 6, byte(1 + i)}), 8080 }
				routeOnLink(b, top, netip.MustParsePrefix("10.50.6.0/24"))
			} else {
				scaleAddresses(b, top, min(c.reals, scaleAddrs))
			}
			var cfg strings.Builder
			cfg.WriteString("virtual_servers:\n")
			for s := 0; s < c.services; s++ {
				fmt.Fprintf(&cfg, "  - address: %s\n    port: %d\n    protocol: TCP\n    lb_algo: wlc\n    lb_kind: NAT\n    real_servers:\n",
					top.VIP, 1000+s)
				for i := 0; i < c.reals; i++ {
					a, p := addr(i)
					fmt.Fprintf(&cfg, "      - { address: %s, port: %d }\n", a, p)
				}
			}
			path := filepath.Join(b.TempDir(), "lb.yaml")
			if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			d := start(b, top.LB, bin, "--config", path, "--pin-dir", bpffs(b), "--xdp-mode", "generic",
				"--control-socket", ctlSocket(b), "--interface", top.LBFront, "--interface", top.LBBack)
			if err := d.WaitFor("msg=ready", scaleWithin); err != nil {
				b.Fatal(err)
			}
			ready := time.Since(t0)
			time.Sleep(500 * time.Millisecond) // what ready set going settles
			rss := vmRSS(b, d.Cmd.Process.Pid)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Signal(syscall.SIGHUP); err != nil {
					b.Fatal(err)
				}
				if err := scaleWaitCount(d, "msg=reloaded", i+1); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(ready.Milliseconds()), "ready-ms")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "sighup-ms")
			b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		})
	}
}

// vmRSS is the daemon's resident set in bytes (VmRSS of /proc/PID/status);
// pid must be xlbd itself, not a wrapper that started it.
func vmRSS(b testing.TB, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "Name:\txlbd\n") {
		b.Fatalf("pid %d is not the daemon:\n%s", pid, raw)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				return kb << 10
			}
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status:\n%s", pid, raw)
	return 0
}
