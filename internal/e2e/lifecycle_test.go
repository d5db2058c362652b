package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
)

// natLab is a NAT topology with four reals serving, a bpffs and a config
// path, ready for a daemon.
type natLab struct {
	top *testbed.Topology
	pin string
	cfg string
	ctl string
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	requireNetns(t)
	top, err := testbed.NewNAT(t, testbed.Options{Reals: 4, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := testbed.ServeReals(t, top, 8080, 5353); err != nil {
		t.Fatal(err)
	}
	return &natLab{top: top, pin: filepath.Join(bpffs(t), "xlbd"), cfg: filepath.Join(t.TempDir(), "lb.yaml"), ctl: ctlSocket(t)}
}

// writeConfig writes a NAT service over reals given as "HOST:WEIGHT"
// (host 11 is r1), and a UDP service on port 53 over the same reals.
func (l *natLab) writeConfig(t *testing.T, reals ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: 80\n    lb_algo: rr\n    lb_kind: NAT\n    real_servers:\n", l.top.VIP)
	for _, r := range reals {
		host, weight, _ := strings.Cut(r, ":")
		fmt.Fprintf(&b, "      - { address: 10.50.2.%s, port: 8080, weight: %s }\n", host, weight)
	}
	fmt.Fprintf(&b, "  - address: %s\n    port: 53\n    protocol: UDP\n    lb_algo: rr\n    lb_kind: NAT\n    real_servers:\n", l.top.VIP)
	for _, r := range reals {
		host, weight, _ := strings.Cut(r, ":")
		fmt.Fprintf(&b, "      - { address: 10.50.2.%s, port: 5353, weight: %s }\n", host, weight)
	}
	if err := os.WriteFile(l.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *natLab) daemon(t *testing.T, extra ...string) *testbed.Process {
	t.Helper()
	args := append([]string{"--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "generic", "--control-socket", l.ctl,
		"--interface", l.top.LBFront, "--interface", l.top.LBBack}, extra...)
	return start(t, l.top.LB, xlbdBinary(t), args...)
}

// longLived is one keep-alive HTTP connection through the VIP.
type longLived struct {
	conn net.Conn
	br   *bufio.Reader
}

func (l *natLab) longLived(t *testing.T) *longLived {
	t.Helper()
	c, err := l.top.Client.Dial(context.Background(), "tcp", l.top.VIP.String()+":80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &longLived{conn: c, br: bufio.NewReader(c)}
}

func (ll *longLived) get(t *testing.T) string { t.Helper(); return keepAliveGet(t, ll.conn, ll.br) }

// stream opens new connections through the VIP back to back until stopped
// and counts the ones that failed.
type stream struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func (l *natLab) stream() *stream {
	s := &stream{stop: make(chan struct{})}
	client := l.top.Client.HTTPClient()
	client.Timeout = 3 * time.Second
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			resp, err := client.Get("http://" + l.top.VIP.String() + "/")
			if err == nil {
				resp.Body.Close()
				s.ok.Add(1)
				continue
			}
			s.failed.Add(1)
			s.mu.Lock()
			s.errs = append(s.errs, err.Error())
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *stream) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	s.done.Wait()
	if s.failed.Load() > 0 || s.ok.Load() == 0 {
		t.Errorf("stream of new connections: %d ok, %d failed: %v", s.ok.Load(), s.failed.Load(), s.errs)
	}
}

// Ten reloads that add, quiesce and remove reals, and one with a broken
// file, under a stream of new connections and one long-lived connection.
func TestReloadUnderTraffic(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1", "13:1")
	d := l.daemon(t)
	waitFor(t, d, "msg=ready")

	ll := l.longLived(t)
	first := ll.get(t)
	s := l.stream()
	// Reals are quiesced (weight 0) one reload before they are removed, as
	// an admin drains them: removing a real ends its flows, by design.
	// The long-lived connection's real always stays.
	steps := [][]string{
		{"11:1", "12:1", "13:1", "14:1"},
		{"11:1", "12:1", "13:0", "14:1"},
		{"11:1", "12:1", "14:1"},
		{"11:1", "12:1", "14:1", "13:1"},
		{"11:1", "12:1", "14:0", "13:1"},
		{"11:1", "12:1", "13:1"},
		{"11:2", "12:1", "13:1", "14:3"},
		{"11:1", "12:0", "13:1", "14:1"},
		{"11:1", "13:1", "14:1"},
		{"11:1", "12:1", "13:1", "14:1"},
	}
	// Keep the long-lived connection's real in every step.
	keep := map[string]string{"r1": "11", "r2": "12", "r3": "13", "r4": "14"}[first]
	for i, step := range steps {
		if !hasHost(step, keep) {
			step = append(step, keep+":1")
		}
		l.writeConfig(t, step...)
		d.Signal(syscall.SIGHUP)
		waitForCount(t, d, "msg=reloaded", i+1)
		time.Sleep(150 * time.Millisecond)
		if got := ll.get(t); got != first {
			t.Fatalf("reload %d: long-lived connection moved from %s to %s", i+1, first, got)
		}
	}
	// A broken file: logged, and the running configuration stays.
	if err := os.WriteFile(l.cfg, []byte("virtual_servers:\n  - address: 10.50.1.100\n    port: 99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	waitFor(t, d, "reload failed; keeping the running configuration")
	if !strings.Contains(d.Output(), "lb.yaml:3: virtual_servers[0].port") {
		t.Errorf("the broken reload's log does not name file, line and key:\n%s", d.Output())
	}
	time.Sleep(200 * time.Millisecond)
	if got := ll.get(t); got != first {
		t.Fatalf("after a broken reload the long-lived connection moved from %s to %s", first, got)
	}
	s.finish(t)
	t.Logf("%d new connections through %d reloads", s.ok.Load(), len(steps)+1)
}

func hasHost(step []string, host string) bool {
	for _, r := range step {
		if strings.HasPrefix(r, host+":") {
			return true
		}
	}
	return false
}

func waitForCount(t *testing.T, p *testbed.Process, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.Output(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d × %q:\n%s", n, s, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With --dont-release-dataplane a restart under traffic loses no flow: the
// program keeps forwarding while no daemon runs and the next one adopts it.
func TestRestartKeepsFlows(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1", "13:1")
	d := l.daemon(t, "--dont-release-dataplane")
	waitFor(t, d, "msg=ready")
	ll := l.longLived(t)
	first := ll.get(t)
	s := l.stream()
	time.Sleep(200 * time.Millisecond)

	d.Stop()
	if !strings.Contains(d.Output(), "data plane left running") {
		t.Fatalf("daemon did not keep the data plane:\n%s", d.Output())
	}
	// No daemon: the pinned link still forwards.
	for i := 0; i < 3; i++ {
		if got := ll.get(t); got != first {
			t.Fatalf("without a daemon the long-lived connection moved from %s to %s", first, got)
		}
	}
	time.Sleep(200 * time.Millisecond)

	d2 := l.daemon(t)
	waitFor(t, d2, "msg=ready")
	if !strings.Contains(d2.Output(), "adopted data plane state") {
		t.Errorf("second daemon did not adopt the pinned state:\n%s", d2.Output())
	}
	time.Sleep(200 * time.Millisecond)
	if got := ll.get(t); got != first {
		t.Fatalf("after the restart the long-lived connection moved from %s to %s", first, got)
	}
	s.finish(t)

	// Without the flag the second daemon removes everything on exit.
	d2.Stop()
	if entries, err := os.ReadDir(l.pin); !os.IsNotExist(err) {
		t.Errorf("pin dir left after a releasing exit: %v %v", entries, err)
	}
	if out, _ := l.top.LB.Run("ip", "link", "show", "dev", l.top.LBFront); strings.Contains(string(out), "xdp") {
		t.Errorf("XDP still attached after a releasing exit:\n%s", out)
	}
}

// The daemon tells systemd READY, RELOADING and STOPPING over the socket
// in NOTIFY_SOCKET, and writes its pid file.
func TestSystemdNotifyAndPidFile(t *testing.T) {
	l := newNATLab(t)
	l.writeConfig(t, "11:1", "12:1")
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, want) {
				t.Fatalf("sd_notify message %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no sd_notify %q", want)
		}
	}

	pidFile := filepath.Join(t.TempDir(), "run", "xlbd.pid")
	args := []string{"--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "generic", "--pid-file", pidFile, "--control-socket", l.ctl,
		"--interface", l.top.LBFront, "--interface", l.top.LBBack}
	cmd := l.top.LB.Command(xlbdBinary(t), args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	var out strings.Builder
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("daemon output:\n%s", out.String())
		}
	})

	next("READY=1")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	// `ip netns exec` execs the daemon in place, so the pid is the command's.
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid != cmd.Process.Pid {
		t.Errorf("pid file says %q, daemon is %d", b, cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit on SIGTERM")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

// The unit file is valid for systemd and asks for what the daemon needs.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../packaging/xlbd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF CAP_NET_RAW CAP_SYS_ADMIN\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; the unit's syntax is not verified")
	}
	dir := t.TempDir()
	fixed := strings.ReplaceAll(string(unit), "/usr/local/sbin/xlbd", xlbdBinary(t))
	if err := os.WriteFile(filepath.Join(dir, "xlbd.service"), []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", filepath.Join(dir, "xlbd.service")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
