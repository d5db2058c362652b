package e2e

import (
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
)

// Health checks under a steady stream of new connections (issue 12): the
// HTTP server of one of three reals stops; within delay_loop + retry ×
// delay_before_retry + connect_timeout (+1 s) no new connection goes to it
// and none fails; it comes back and gets connections again.
const (
	hcDelayLoop   = time.Second
	hcRetry       = 1
	hcRetryDelay  = time.Second
	hcConnTimeout = time.Second
	// hcBound is how long after a real fails it may still be chosen.
	hcBound = hcDelayLoop + hcRetry*hcRetryDelay + hcConnTimeout + time.Second
	// hcBackBound is how long after a real recovers it may still be left
	// out: the next check, and its attempt.
	hcBackBound = hcDelayLoop + hcConnTimeout + time.Second
)

// hcServer is a real's HTTP server that a test can stop, start and make
// answer badly.
type hcServer struct {
	ns   *testbed.Netns
	name string
	mu   sync.Mutex
	srv  *http.Server
	// mode: "" answers 200 with the name; "503" answers 503; "body"
	// answers 200 with another body (a digest mismatch).
	mode atomic.Value
}

func (s *hcServer) start(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.ns.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := s.mode.Load().(string)
		switch {
		case m == "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case m == "body" && r.URL.Path == "/health":
			io.WriteString(w, "not what it was")
		case r.URL.Path == "/health":
			io.WriteString(w, "healthy")
		default:
			io.WriteString(w, s.name)
		}
	})}
	go s.srv.Serve(l)
	t.Cleanup(func() { s.stop() })
}

// stop closes the listener and every connection: connection refused.
func (s *hcServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func TestHealthChecks(t *testing.T) {
	for _, c := range []struct {
		name    string
		checker func(real string) string // the checkers block of a real, in lb.yaml
		// fail makes real s fail its checks; undo makes it pass again.
		fail, undo func(t *testing.T, s *hcServer)
	}{
		{"HTTP_GET", hcHTTP, hcStop, hcStart},
		{"TCP_CHECK", func(string) string { return "          - TCP_CHECK: { connect_port: 8080 }\n" }, hcStop, hcStart},
		{"MISC_CHECK", func(real string) string {
			return fmt.Sprintf("          - MISC_CHECK: { misc_path: \"/bin/bash -c 'exec 3<>/dev/tcp/%s/8080'\", misc_timeout: %d }\n",
				real, int(hcConnTimeout.Seconds()))
		}, hcStop, hcStart},
		{"HTTP_GET status", hcHTTP, hcMode("503"), hcMode("")},
		{"HTTP_GET digest", hcHTTP, hcMode("body"), hcMode("")},
	} {
		t.Run(c.name, func(t *testing.T) { testHealth(t, c.checker, c.fail, c.undo) })
	}
}

func hcHTTP(string) string {
	return fmt.Sprintf("          - HTTP_GET: { urls: [ { path: /health, digest: %s } ] }\n", hcDigestOf("healthy"))
}

func hcStop(_ *testing.T, s *hcServer)  { s.stop() }
func hcStart(t *testing.T, s *hcServer) { s.start(t) }
func hcMode(m string) func(*testing.T, *hcServer) {
	return func(_ *testing.T, s *hcServer) { s.mode.Store(m) }
}

func testHealth(t *testing.T, checker func(string) string, fail, undo func(*testing.T, *hcServer)) {
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
		fmt.Fprintf(&b, "      - address: %s\n        port: 8080\n        checkers:\n", a)
		chk := checker(a.String())
		// Common settings, as keepalived inherits them.
		chk = strings.Replace(chk, "{ ", fmt.Sprintf("{ connect_timeout: %d, retry: %d, delay_before_retry: %d, ",
			int(hcConnTimeout.Seconds()), hcRetry, int(hcRetryDelay.Seconds())), 1)
		b.WriteString(chk)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := ctlSocket(t)
	d := start(t, top.LB, xlbdBinary(t), "--config", cfg, "--pin-dir", filepath.Join(bpffs(t), "xlbd"), "--xdp-mode", "generic",
		"--control-socket", ctl, "--interface", top.LBFront, "--interface", top.LBBack)
	waitFor(t, d, "msg=ready")

	tr := newPacedTraffic(top.Client.HTTPClient(), "http://"+top.VIP.String()+"/")
	defer tr.finish()
	time.Sleep(2 * hcDelayLoop)
	if by := tr.servedSince(time.Time{}); by["r2"] == 0 {
		logStatus(t, ctl)
		t.Fatalf("r2 took no connection before it failed: %v", by)
	}

	failed := time.Now()
	fail(t, servers[1])
	time.Sleep(hcBound)
	settled := time.Now()
	time.Sleep(3 * time.Second)
	by := tr.servedSince(settled)
	t.Logf("from %v after r2 failed: %v", hcBound, by)
	if by["r2"] > 0 {
		logStatus(t, ctl)
		t.Errorf("%d new connections went to r2 more than %v after it failed", by["r2"], hcBound)
	}
	if errs := tr.failedSince(settled); len(errs) > 0 {
		t.Errorf("%d connections failed more than %v after r2 failed: %v", len(errs), hcBound, errs)
	}
	if !strings.Contains(d.Output(), "10.50.2.12") {
		t.Errorf("no log line about r2 going down:\n%s", d.Output())
	}
	t.Logf("r2 failed at %s", failed.Format("15:04:05.000"))

	undo(t, servers[1])
	time.Sleep(hcBackBound)
	back := time.Now()
	time.Sleep(3 * time.Second)
	by = tr.servedSince(back)
	t.Logf("from %v after r2 recovered: %v", hcBackBound, by)
	if by["r2"] == 0 {
		logStatus(t, ctl)
		t.Errorf("r2 took no new connection %v after it recovered", hcBackBound)
	}
	if errs := tr.failedSince(back); len(errs) > 0 {
		t.Errorf("%d connections failed after r2 recovered: %v", len(errs), errs)
	}
}

func hcDigestOf(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }
