package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
)

// A restart with --dont-release-dataplane re-learns health without
// flapping the pool: a real that was down when the daemon stopped is not
// put back before its checker has run (keepalived would start it up), and
// the live reals keep taking connections throughout.
func TestHealthSurvivesRestart(t *testing.T) {
	requireNetns(t)
	top, err := testbed.NewNAT(t, testbed.Options{Reals: 3, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	servers := make([]*hcServer, len(top.Reals))
	for i, ns := range top.Reals {
		servers[i] = &hcServer{ns: ns, name: fmt.Sprintf("r%d", i+1)}
		servers[i].mode.Store("")
		servers[i].start(t)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: 80\n    protocol: TCP\n    lb_algo: rr\n    lb_kind: NAT\n    delay_loop: %d\n    real_servers:\n",
		top.VIP, int(hcDelayLoop.Seconds()))
	for _, a := range top.RealAddrs {
		fmt.Fprintf(&b, "      - address: %s\n        port: 8080\n        checkers:\n          - TCP_CHECK: { connect_timeout: %d, retry: %d, delay_before_retry: %d }\n",
			a, int(hcConnTimeout.Seconds()), hcRetry, int(hcRetryDelay.Seconds()))
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(bpffs(t), "xlbd")
	ctl := ctlSocket(t)
	args := []string{"--config", cfg, "--pin-dir", pin, "--xdp-mode", "generic", "--control-socket", ctl,
		"--interface", top.LBFront, "--interface", top.LBBack}
	d := start(t, top.LB, xlbdBinary(t), append(args, "--dont-release-dataplane")...)
	waitFor(t, d, "msg=ready")

	tr := newPacedTraffic(top.Client.HTTPClient(), "http://"+top.VIP.String()+"/")
	defer tr.finish()
	servers[1].stop()
	time.Sleep(hcBound)
	settled := time.Now()

	d.Stop()
	if !strings.Contains(d.Output(), "data plane left running") {
		t.Fatalf("the daemon did not keep the data plane:\n%s", d.Output())
	}
	time.Sleep(500 * time.Millisecond) // no daemon: the data plane forwards alone
	d2 := start(t, top.LB, xlbdBinary(t), args...)
	waitFor(t, d2, "msg=ready")
	restarted := time.Now()
	// Long enough for every checker to run once and decide.
	time.Sleep(hcBound)

	by := tr.servedSince(settled)
	t.Logf("from %v after r2 failed, across the restart: %v", hcBound, by)
	if by["r2"] > 0 {
		logStatus(t, ctl)
		t.Errorf("%d new connections went to r2, down before the restart", by["r2"])
	}
	if errs := tr.failedSince(settled); len(errs) > 0 {
		t.Errorf("%d connections failed across the restart: %v", len(errs), errs)
	}
	if by := tr.servedSince(restarted); by["r1"] == 0 || by["r3"] == 0 {
		t.Errorf("the live reals did not all take connections after the restart: %v", by)
	}

	// r2 comes back through its checker.
	servers[1].start(t)
	time.Sleep(hcBackBound)
	back := time.Now()
	time.Sleep(2 * time.Second)
	if by := tr.servedSince(back); by["r2"] == 0 {
		logStatus(t, ctl)
		t.Errorf("r2 took no connection %v after it recovered: %v", hcBackBound, by)
	}
}
