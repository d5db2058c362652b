package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// A second xlbd started by hand on the first one's pin dir, pid file,
// control socket or metrics address refuses to start before it touches
// anything, naming the first; the first keeps forwarding with its own
// configuration, pins, pid file and socket.
func TestSecondDaemon(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1", "13:1")
	pidFile := filepath.Join(t.TempDir(), "run", "xlbd.pid")
	d1 := l.daemon(t, "--pid-file", pidFile, "--metrics-addr", "127.0.0.1:9469")
	waitFor(t, d1, "msg=ready")
	pid1 := d1.Cmd.Process.Pid
	client := l.top.Client.HTTPClient()
	client.Timeout = 5 * time.Second

	// The first daemon's configuration: r1, r2, r3. The stranger's: r4 alone.
	servedBy := func(what string) {
		t.Helper()
		seen := map[string]int{}
		for range 9 {
			seen[get(t, client, "http://"+l.top.VIP.String()+"/")]++
		}
		if len(seen) != 3 || seen["r1"] == 0 || seen["r2"] == 0 || seen["r3"] == 0 {
			t.Errorf("%s: 9 new connections served %v, want r1, r2 and r3 only", what, seen)
		}
	}
	servedBy("daemon 1 alone")
	pins := pinNames(t, l.pin)
	progs := xdpProgs(t, l.top.LB, l.top.LBFront, l.top.LBBack)
	if len(pins) == 0 || len(progs) != 2 {
		t.Fatalf("daemon 1: pins %v, XDP programs %v", pins, progs)
	}

	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte(fmt.Sprintf(`virtual_servers:
  - address: %s
    port: 80
    lb_algo: rr
    lb_kind: NAT
    real_servers:
      - { address: 10.50.2.14, port: 8080, weight: 1 }
`, l.top.VIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another pin dir on the same bpffs, another pid file, socket and
	// metrics address: each case shares exactly one thing with daemon 1.
	otherPin := filepath.Join(filepath.Dir(l.pin), "other")
	otherPid := filepath.Join(t.TempDir(), "other.pid")
	otherCtl := filepath.Join(t.TempDir(), "other.sock")
	const otherMetrics = "127.0.0.1:9470"
	byPid := fmt.Sprintf("pid %d", pid1)
	for _, tc := range []struct {
		name                       string
		pin, pidFile, ctl, metrics string
		want                       []string
	}{
		{"same pin dir", l.pin, otherPid, otherCtl, otherMetrics,
			[]string{"pin dir " + l.pin + " is locked by another xlbd (" + byPid, "refusing to start"}},
		{"same pid file", otherPin, pidFile, otherCtl, otherMetrics,
			[]string{"pid file " + pidFile + " names another xlbd (" + byPid, "refusing to start"}},
		{"same control socket", otherPin, otherPid, l.ctl, otherMetrics,
			[]string{"control socket " + l.ctl + ": xlbd (" + byPid + ") is listening there", "refusing to start"}},
		{"same metrics address", otherPin, otherPid, otherCtl, "127.0.0.1:9469",
			[]string{"--metrics-addr 127.0.0.1:9469: cannot serve metrics there", "address already in use"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, took := runToExit(t, l.top.LB, "--config", other, "--pin-dir", tc.pin, "--xdp-mode", "generic",
				"--pid-file", tc.pidFile, "--control-socket", tc.ctl, "--metrics-addr", tc.metrics,
				"--interface", l.top.LBFront, "--interface", l.top.LBBack)
			t.Logf("second daemon, exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
			if code == 0 {
				t.Errorf("second daemon exited 0:\n%s", out)
			}
			if took > 10*time.Second {
				t.Errorf("second daemon took %v to give up", took)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("second daemon's output lacks %q:\n%s", w, out)
				}
			}
			for _, never := range []string{"attached", "adopted", "msg=ready", "released"} {
				if strings.Contains(out, never) {
					t.Errorf("second daemon got as far as %q:\n%s", never, out)
				}
			}
			// It left nothing of its own either.
			for _, p := range []string{otherPin, otherPid, otherCtl} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("second daemon left %s: %v", p, err)
				}
			}

			// Daemon 1 is untouched: running, its program on both links, its
			// pins, its pid file, socket and metrics, its configuration.
			if err := d1.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("daemon 1 exited (%v):\n%s", err, d1.Output())
			}
			if got := pinNames(t, l.pin); !slices.Equal(got, pins) {
				t.Errorf("pins are now %v, were %v", got, pins)
			}
			if got := xdpProgs(t, l.top.LB, l.top.LBFront, l.top.LBBack); !slices.Equal(got, progs) {
				t.Errorf("XDP programs are now %v, were %v", got, progs)
			}
			if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid1) {
				t.Errorf("daemon 1's pid file: %q, %v", b, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rep, err := control.Fetch(ctx, l.ctl); err != nil || rep.Config != l.cfg {
				t.Errorf("daemon 1's control socket: %+v, %v", rep.Config, err)
			}
			if resp, err := l.top.LB.HTTPClient().Get("http://127.0.0.1:9469/metrics"); err != nil {
				t.Errorf("daemon 1's metrics: %v", err)
			} else {
				resp.Body.Close()
			}
			servedBy("after the second daemon")
		})
	}

	d1.Stop()
	if !d1.Cmd.ProcessState.Success() {
		t.Errorf("daemon 1 exit: %v\n%s", d1.Cmd.ProcessState, d1.Output())
	}
	if !strings.Contains(d1.Output(), "data plane released") {
		t.Errorf("daemon 1 did not release the data plane:\n%s", d1.Output())
	}
	for _, p := range []string{l.pin, pidFile, l.ctl} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after daemon 1 stopped: %v", p, err)
		}
	}
}

// A start that fails never releases a data plane it did not create: after
// a daemon that kept the data plane, a start that fails (on the metrics
// address before it loads anything; on an interface after it adopted the
// links) leaves it forwarding, for the next start to adopt.
func TestSecondDaemonFailedStartKeepsAdopted(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1", "13:1")
	d1 := l.daemon(t, "--dont-release-dataplane")
	waitFor(t, d1, "msg=ready")
	ll := l.longLived(t)
	first := ll.get(t)
	client := l.top.Client.HTTPClient()
	client.Timeout = 5 * time.Second
	d1.Stop()
	if !strings.Contains(d1.Output(), "data plane left running") {
		t.Fatalf("daemon 1 did not keep the data plane:\n%s", d1.Output())
	}
	pins := pinNames(t, l.pin)

	forwarding := func(what string) {
		t.Helper()
		if got := ll.get(t); got != first {
			t.Errorf("%s: the long-lived connection moved from %s to %s", what, first, got)
		}
		for range 3 {
			get(t, client, "http://"+l.top.VIP.String()+"/")
		}
		if got := pinNames(t, l.pin); !slices.Equal(got, pins) {
			t.Errorf("%s: pins are now %v, were %v", what, got, pins)
		}
	}
	forwarding("no daemon")

	// The metrics address is taken: refused before anything is loaded.
	taken, err := l.top.LB.Listen("tcp", "127.0.0.1:9469")
	if err != nil {
		t.Fatal(err)
	}
	out, code, _ := runToExit(t, l.top.LB, "--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "generic",
		"--control-socket", l.ctl, "--metrics-addr", "127.0.0.1:9469", "--interface", l.top.LBFront, "--interface", l.top.LBBack)
	taken.Close()
	if code == 0 || !strings.Contains(out, "--metrics-addr 127.0.0.1:9469: cannot serve metrics there") {
		t.Errorf("start with the metrics address taken: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "adopted") || strings.Contains(out, "released") {
		t.Errorf("start with the metrics address taken touched the data plane:\n%s", out)
	}
	forwarding("after a start that failed on the metrics address")

	// An interface that takes no native XDP (loopback has no XDP driver):
	// the start fails in the middle of attaching, after it adopted the two
	// pinned links.
	out, code, _ = runToExit(t, l.top.LB, "--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "native",
		"--control-socket", l.ctl, "--interface", l.top.LBFront, "--interface", l.top.LBBack, "--interface", "lo")
	if code == 0 || !strings.Contains(out, "interface lo: attach XDP") {
		t.Errorf("start with lo in native mode: exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "adopted data plane state") {
		t.Errorf("the failing start did not get as far as adopting:\n%s", out)
	}
	forwarding("after a start that failed attaching")

	// The next good start adopts it all, and releases it on its way out.
	d3 := l.daemon(t)
	waitFor(t, d3, "msg=ready")
	if !strings.Contains(d3.Output(), "adopted data plane state") {
		t.Errorf("daemon 3 did not adopt:\n%s", d3.Output())
	}
	forwarding("daemon 3")
	d3.Stop()
	if _, err := os.Stat(l.pin); !os.IsNotExist(err) {
		t.Errorf("pin dir left after daemon 3 released: %v", err)
	}
}

// runToExit runs xlbd in ns and waits for it to exit, at most 30 s.
func runToExit(t *testing.T, ns *testbed.Netns, args ...string) (out string, code int, took time.Duration) {
	t.Helper()
	cmd := ns.Command(xlbdBinary(t), args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("xlbd %s still running after 30 s:\n%s", strings.Join(args, " "), b.String())
	}
	return b.String(), cmd.ProcessState.ExitCode(), time.Since(begin)
}

// pinNames lists what is pinned in dir.
func pinNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("pin dir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

var xdpProgID = regexp.MustCompile(`prog/xdp id (\d+)`)

// xdpProgs are the ids of the XDP programs on the interfaces.
func xdpProgs(t *testing.T, ns *testbed.Netns, ifaces ...string) []string {
	t.Helper()
	var ids []string
	for _, ifname := range ifaces {
		out, err := ns.Run("ip", "-d", "link", "show", "dev", ifname)
		if err != nil {
			t.Fatal(err)
		}
		m := xdpProgID.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no XDP program on %s:\n%s", ifname, out)
		}
		ids = append(ids, string(m[1]))
	}
	return ids
}
