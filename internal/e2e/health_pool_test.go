package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/maps"
)

// What health checks do to the pool (issue 12), end to end: misc_dynamic
// weights, inhibit_on_failure, the sorry server, quorum and notify scripts
// and a reload with a real down, each under a paced stream of new
// connections through the VIP of a NAT lab.
//
// Most reals here are checked by a MISC_CHECK whose script exits with the
// code in a file the test writes: the test decides a real's health without
// touching its HTTP server, so that established connections can be followed
// across the change and no connection fails because a server went away.
const (
	hpDelayLoop  = time.Second
	hpTimeout    = time.Second // connect_timeout, misc_timeout
	hpRetryDelay = time.Second
	// hpSettle is how long after the pool was seen to change a new
	// connection may still have been scheduled on the pool before: the
	// status poll's period and a SYN's trip.
	hpSettle = 150 * time.Millisecond
	// hpObserve is how long traffic is watched on each pool.
	hpObserve = 2 * time.Second
)

// hpBound is keepalived's rule for how long after a real's health changed
// the pool may still show the old state: delay_loop + retry ×
// delay_before_retry + connect_timeout (misc_timeout), plus a second.
func hpBound(retry int) time.Duration {
	return hpDelayLoop + time.Duration(retry)*hpRetryDelay + hpTimeout + time.Second
}

// poolLab is a NAT lab whose reals run an hcServer each (r1, r2, ...),
// with a config file, a control socket and pins of its own.
type poolLab struct {
	top     *testbed.Topology
	servers []*hcServer
	dir     string // control files and script output
	cfg     string
	ctl     string
	pin     string
	d       *testbed.Process
	metrics string // host:port of /metrics in the LB namespace, when asked
}

func newPoolLab(t *testing.T, reals int) *poolLab {
	t.Helper()
	requireNetns(t)
	top, err := testbed.NewNAT(t, testbed.Options{Reals: reals, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	l := &poolLab{top: top, dir: t.TempDir(), ctl: ctlSocket(t), pin: filepath.Join(bpffs(t), "xlbd")}
	l.cfg = filepath.Join(l.dir, "lb.yaml")
	for i, ns := range top.Reals {
		s := &hcServer{ns: ns, name: fmt.Sprintf("r%d", i+1)}
		s.mode.Store("")
		s.start(t)
		l.servers = append(l.servers, s)
		l.setExit(t, i, 0)
	}
	return l
}

// name is the hcServer name of the real at a ("r2"), or a itself.
func (l *poolLab) name(a netip.Addr) string {
	for i, r := range l.top.RealAddrs {
		if r == a {
			return fmt.Sprintf("r%d", i+1)
		}
	}
	return a.String()
}

// exitFile is where real i's MISC_CHECK reads its exit code.
func (l *poolLab) exitFile(i int) string { return filepath.Join(l.dir, fmt.Sprintf("exit-r%d", i+1)) }

// setExit makes real i's MISC_CHECK exit with code from its next run. The
// file is replaced whole: a script that read it half-written would exit 0.
func (l *poolLab) setExit(t *testing.T, i, code int) {
	t.Helper()
	tmp := l.exitFile(i) + ".new"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", code)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.exitFile(i)); err != nil {
		t.Fatal(err)
	}
}

// miscCheck is real i's checkers block: a MISC_CHECK that exits with the
// code in its file, retry 0.
func (l *poolLab) miscCheck(i int, dynamic bool) string {
	return fmt.Sprintf("        checkers:\n          - MISC_CHECK: { misc_path: \"/bin/sh -c 'exit $(cat %s)'\", misc_timeout: %d, misc_dynamic: %v, retry: 0, delay_before_retry: %d }\n",
		l.exitFile(i), int(hpTimeout.Seconds()), dynamic, int(hpRetryDelay.Seconds()))
}

// vsHeader is the virtual server on VIP:80 with its extra settings
// (indented four spaces) and the start of its real_servers.
func (l *poolLab) vsHeader(algo, extra string) string {
	return fmt.Sprintf("virtual_servers:\n  - address: %s\n    port: 80\n    protocol: TCP\n    lb_algo: %s\n    lb_kind: NAT\n    delay_loop: %d\n%s    real_servers:\n",
		l.top.VIP, algo, int(hpDelayLoop.Seconds()), extra)
}

// realHeader starts real i's entry with its weight and extra settings
// (indented eight spaces).
func (l *poolLab) realHeader(i, weight int, extra string) string {
	return fmt.Sprintf("      - address: %s\n        port: 8080\n        weight: %d\n%s", l.top.RealAddrs[i], weight, extra)
}

func (l *poolLab) writeConfig(t *testing.T, yaml string) {
	t.Helper()
	tmp := l.cfg + ".new"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.cfg); err != nil {
		t.Fatal(err)
	}
}

// start runs the daemon in the LB namespace and waits until it is ready.
func (l *poolLab) start(t *testing.T, withMetrics bool) {
	t.Helper()
	args := []string{"--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "generic", "--control-socket", l.ctl,
		"--interface", l.top.LBFront, "--interface", l.top.LBBack}
	if withMetrics {
		l.metrics = freeLoopbackPort(t, l.top.LB)
		args = append(args, "--metrics-addr", l.metrics)
	}
	l.d = start(t, l.top.LB, xlbdBinary(t), args...)
	waitFor(t, l.d, "msg=ready")
}

// freeLoopbackPort is a 127.0.0.1 port nothing listens on in ns: the LB
// namespace is the test's own, so nothing else takes it before the daemon.
func freeLoopbackPort(t *testing.T, ns *testbed.Netns) string {
	t.Helper()
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func (l *poolLab) traffic() *pacedTraffic {
	return newPacedTraffic(l.top.Client.HTTPClient(), "http://"+l.top.VIP.String()+"/")
}

func (l *poolLab) status(t *testing.T) control.Report {
	t.Helper()
	out, err := exec.Command(xlbdBinary(t), "status", "--json", "--control-socket", l.ctl).Output()
	if err != nil {
		t.Fatalf("xlbd status --json: %v", err)
	}
	var rep control.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("xlbd status --json: %v\n%s", err, out)
	}
	return rep
}

// pool is what the data plane holds for VIP:80/TCP: each real's weight by
// name.
func (l *poolLab) pool(rep control.Report) map[string]int {
	p := map[string]int{}
	for _, s := range rep.Dataplane.Services {
		if s.VIP != l.top.VIP || s.Port != 80 || s.Protocol != "TCP" {
			continue
		}
		for _, r := range s.Reals {
			p[l.name(r.Addr)] = r.Weight
		}
	}
	return p
}

// health is the status' health of real i.
func (l *poolLab) health(rep control.Report, i int) (control.RealHealth, bool) {
	want := netip.AddrPortFrom(l.top.RealAddrs[i], 8080).String()
	for _, h := range rep.Health {
		if h.Real == want {
			return h, true
		}
	}
	return control.RealHealth{}, false
}

func (l *poolLab) quorum(rep control.Report) control.QuorumHealth {
	for _, q := range rep.Quorum {
		if q.VirtualServer == netip.AddrPortFrom(l.top.VIP, 80).String()+"/TCP" {
			return q
		}
	}
	return control.QuorumHealth{}
}

// waitPool waits until the data plane holds exactly want, for at most
// within after since; it returns when it saw it (the zero time when it did
// not, after reporting an error).
func (l *poolLab) waitPool(t *testing.T, since time.Time, within time.Duration, want map[string]int, what string) time.Time {
	t.Helper()
	var got map[string]int
	for {
		got = l.pool(l.status(t))
		if equalPool(got, want) {
			now := time.Now()
			t.Logf("%s: pool %v after %v (bound %v)", what, got, now.Sub(since).Round(time.Millisecond), within)
			return now
		}
		if time.Since(since) > within {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	logStatus(t, l.ctl)
	t.Errorf("%s: pool %v more than %v later, want %v", what, got, within, want)
	return time.Time{}
}

func equalPool(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// observe lets traffic run for d after from and returns who served the
// connections that started after from; connections that failed are errors.
func observe(t *testing.T, tr *pacedTraffic, from time.Time, d time.Duration, what string) map[string]int {
	t.Helper()
	time.Sleep(time.Until(from.Add(d)))
	by := tr.servedSince(from)
	t.Logf("%s: new connections %v", what, by)
	if errs := tr.failedSince(from); len(errs) > 0 {
		t.Errorf("%s: %d connections failed: %v", what, len(errs), errs)
	}
	return by
}

// keepAlive is a keep-alive connection through the VIP and the real that
// answers it.
type keepAlive struct {
	conn net.Conn
	br   *bufio.Reader
	real string
}

// dialKeepAlive opens keep-alive connections until one is answered by
// want ("" takes the first), closing the others.
func (l *poolLab) dialKeepAlive(t *testing.T, want string) *keepAlive {
	t.Helper()
	for try := 0; try < 12; try++ {
		conn, err := l.top.Client.Dial(context.Background(), "tcp", l.top.VIP.String()+":80")
		if err != nil {
			t.Fatal(err)
		}
		ka := &keepAlive{conn: conn, br: bufio.NewReader(conn)}
		ka.real = keepAliveGet(t, conn, ka.br)
		if want == "" || ka.real == want {
			t.Cleanup(func() { conn.Close() })
			return ka
		}
		conn.Close()
	}
	t.Fatalf("no keep-alive connection to %s in 12 tries", want)
	return nil
}

// TestHealthMiscDynamic: a MISC_CHECK with misc_dynamic whose script exits
// with 2+w sets the real's weight to w in the data plane, and wrr shares
// new connections accordingly; exit 2 quiesces it (up, weight 0, no new
// connections); exit 0 gives it its configured weight back.
func TestHealthMiscDynamic(t *testing.T) {
	l := newPoolLab(t, 3)
	var b strings.Builder
	b.WriteString(l.vsHeader("wrr", ""))
	for i := range l.top.RealAddrs {
		b.WriteString(l.realHeader(i, 1, "") + l.miscCheck(i, true))
	}
	l.writeConfig(t, b.String())
	l.start(t, false)
	tr := l.traffic()
	defer tr.finish()
	l.waitPool(t, time.Now(), hpBound(0), map[string]int{"r1": 1, "r2": 1, "r3": 1}, "start")

	// Exit 5: weight 3 for r2, 3 of every 5 new connections.
	changed := time.Now()
	l.setExit(t, 1, 5)
	seen := l.waitPool(t, changed, hpBound(0), map[string]int{"r1": 1, "r2": 3, "r3": 1}, "r2 exits 5")
	if seen.IsZero() {
		return
	}
	set, err := maps.OpenPinned(l.pin)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if v, err := set.Reals.Get(weightRealID(t, set, l.top.RealAddrs[1])); err != nil || v.Weight != 3 {
		t.Errorf("r2 in the pinned reals map: %+v (%v), want weight 3", v, err)
	}
	if h, ok := l.health(l.status(t), 1); !ok || !h.Up || h.Weight != 3 {
		t.Errorf("status health of r2: %+v, want up with weight 3", h)
	}
	by := observe(t, tr, seen.Add(hpSettle), 3*time.Second, "r2 at weight 3")
	total := by["r1"] + by["r2"] + by["r3"]
	if share := float64(by["r2"]) / float64(max(total, 1)); total < 30 || share < 0.5 || share > 0.7 {
		t.Errorf("r2 at weight 3 of 5 took %d of %d new connections (%.2f), want about 0.6", by["r2"], total, share)
	}
	if by["r1"] == 0 || by["r3"] == 0 {
		t.Errorf("r1 and r3 at weight 1 took %v", by)
	}

	// Exit 2: weight 0, up but quiesced.
	changed = time.Now()
	l.setExit(t, 1, 2)
	seen = l.waitPool(t, changed, hpBound(0), map[string]int{"r1": 1, "r2": 0, "r3": 1}, "r2 exits 2")
	if seen.IsZero() {
		return
	}
	if h, ok := l.health(l.status(t), 1); !ok || !h.Up || h.Weight != 0 {
		t.Errorf("status health of r2: %+v, want up with weight 0", h)
	}
	if by := observe(t, tr, seen.Add(hpSettle), hpObserve, "r2 at weight 0"); by["r2"] > 0 {
		t.Errorf("r2 at weight 0 took %d new connections", by["r2"])
	}

	// Exit 0: the configured weight again (keepalived's cur_weight 0).
	changed = time.Now()
	l.setExit(t, 1, 0)
	seen = l.waitPool(t, changed, hpBound(0), map[string]int{"r1": 1, "r2": 1, "r3": 1}, "r2 exits 0")
	if seen.IsZero() {
		return
	}
	if by := observe(t, tr, seen.Add(hpSettle), hpObserve, "r2 back at weight 1"); by["r2"] == 0 || by["r2"]*5 < by["r1"]+by["r3"] {
		t.Errorf("r2 back at weight 1 took %v, want about a third", by)
	}
}

// TestHealthInhibitOnFailure: a failed real with inhibit_on_failure stays
// in the data plane at weight 0; it takes no new connection, and a
// keep-alive connection it held before keeps being answered by it.
func TestHealthInhibitOnFailure(t *testing.T) {
	l := newPoolLab(t, 3)
	var b strings.Builder
	b.WriteString(l.vsHeader("rr", ""))
	for i := range l.top.RealAddrs {
		extra := ""
		if i == 1 {
			extra = "        inhibit_on_failure: true\n"
		}
		b.WriteString(l.realHeader(i, 1, extra) + l.miscCheck(i, false))
	}
	l.writeConfig(t, b.String())
	l.start(t, false)
	l.waitPool(t, time.Now(), hpBound(0), map[string]int{"r1": 1, "r2": 1, "r3": 1}, "start")
	ka := l.dialKeepAlive(t, "r2")
	tr := l.traffic()
	defer tr.finish()
	time.Sleep(time.Second)

	failed := time.Now()
	l.setExit(t, 1, 1)
	seen := l.waitPool(t, failed, hpBound(0), map[string]int{"r1": 1, "r2": 0, "r3": 1}, "r2 fails, inhibited")
	if seen.IsZero() {
		return
	}
	if h, ok := l.health(l.status(t), 1); !ok || h.Up || h.Weight != 0 {
		t.Errorf("status health of r2: %+v, want down with weight 0", h)
	}
	// The keep-alive connection, all along.
	from := seen.Add(hpSettle)
	for time.Now().Before(from.Add(hpObserve)) {
		if got := keepAliveGet(t, ka.conn, ka.br); got != "r2" {
			t.Fatalf("keep-alive connection established on r2 answered by %s after r2 was inhibited", got)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if by := observe(t, tr, from, hpObserve, "r2 inhibited"); by["r2"] > 0 {
		t.Errorf("r2, down and inhibited, took %d new connections", by["r2"])
	}
	if out := l.d.Output(); !strings.Contains(out, "exit status 1") {
		t.Errorf("no log line with the reason r2 went down (exit status 1):\n%s", out)
	}

	back := time.Now()
	l.setExit(t, 1, 0)
	seen = l.waitPool(t, back, hpBound(0), map[string]int{"r1": 1, "r2": 1, "r3": 1}, "r2 recovers")
	if seen.IsZero() {
		return
	}
	if by := observe(t, tr, seen.Add(hpSettle), hpObserve, "r2 recovered"); by["r2"] == 0 {
		t.Errorf("r2 took no new connection after it recovered: %v", by)
	}
	if got := keepAliveGet(t, ka.conn, ka.br); got != "r2" {
		t.Errorf("keep-alive connection established on r2 answered by %s", got)
	}
}

// TestHealthSorryServer: with every real down, new connections go to the
// sorry server (r4); one real back, they leave it. Connections established
// before stay where they were. With sorry_server_inhibit the sorry server
// sits in the pool at weight 0 while it does not serve.
func TestHealthSorryServer(t *testing.T) {
	for _, inhibit := range []bool{false, true} {
		name := "sorry_server"
		if inhibit {
			name = "sorry_server_inhibit"
		}
		t.Run(name, func(t *testing.T) { testSorryServer(t, inhibit) })
	}
}

func testSorryServer(t *testing.T, inhibit bool) {
	l := newPoolLab(t, 4)
	extra := fmt.Sprintf("    sorry_server: { address: %s, port: 8080 }\n", l.top.RealAddrs[3])
	if inhibit {
		extra += "    sorry_server_inhibit: true\n"
	}
	var b strings.Builder
	b.WriteString(l.vsHeader("rr", extra))
	for i := range 3 {
		b.WriteString(l.realHeader(i, 1, "") + l.miscCheck(i, false))
	}
	l.writeConfig(t, b.String())
	l.start(t, false)
	idle := map[string]int{}
	if inhibit {
		idle["r4"] = 0
	}
	want := func(reals ...string) map[string]int {
		m := map[string]int{}
		for k, v := range idle {
			m[k] = v
		}
		for _, r := range reals {
			m[r] = 1
		}
		return m
	}
	seen := l.waitPool(t, time.Now(), hpBound(0), want("r1", "r2", "r3"), "start")
	if seen.IsZero() {
		return
	}
	ka := l.dialKeepAlive(t, "")
	tr := l.traffic()
	defer tr.finish()
	if by := observe(t, tr, seen.Add(hpSettle), time.Second, "every real up"); by["r4"] > 0 {
		t.Errorf("the sorry server took %d new connections while every real was up", by["r4"])
	}

	down := time.Now()
	for i := range 3 {
		l.setExit(t, i, 1)
	}
	seen = l.waitPool(t, down, hpBound(0), map[string]int{"r4": 1}, "every real down")
	if seen.IsZero() {
		return
	}
	if q := l.quorum(l.status(t)); q.Up || !q.Sorry {
		t.Errorf("status quorum: %+v, want down with the sorry server serving", q)
	}
	by := observe(t, tr, seen.Add(hpSettle), hpObserve, "every real down")
	if by["r4"] == 0 || len(by) != 1 {
		t.Errorf("with every real down new connections went to %v, want the sorry server r4 only", by)
	}
	// The reals left the pool (keepalived's perform_quorum_state): their
	// flows end, as IPVS's do when a destination goes, but none moves.
	switch got, err := keepAliveTry(&longLived{ka.conn, ka.br}); {
	case err != nil:
		t.Logf("keep-alive connection established on %s, out of the pool: %v", ka.real, err)
	case got != ka.real:
		t.Errorf("keep-alive connection established on %s answered by %s once every real was down", ka.real, got)
	}

	back := time.Now()
	l.setExit(t, 1, 0)
	seen = l.waitPool(t, back, hpBound(0), want("r2"), "r2 back")
	if seen.IsZero() {
		return
	}
	if q := l.quorum(l.status(t)); !q.Up || q.Sorry {
		t.Errorf("status quorum: %+v, want up without the sorry server", q)
	}
	by = observe(t, tr, seen.Add(hpSettle), hpObserve, "r2 back")
	if by["r2"] == 0 || len(by) != 1 {
		t.Errorf("with r2 back new connections went to %v, want r2 only", by)
	}
}

// TestHealthScripts: quorum_up and quorum_down run once per crossing of
// the quorum (2 of three reals of weight 1), and quorum_up once at start
// as keepalived does ("Starting with quorum up": init_service_vs finds the
// quorum down as set_quorum_states left it before any real was alive);
// notify_up and notify_down run once per change of a real, not at start
// (keepalived runs them at start only with rs_init_notifies), and, as
// keepalived's notify_exec, with no arguments of their own.
func TestHealthScripts(t *testing.T) {
	l := newPoolLab(t, 3)
	quorumFile := filepath.Join(l.dir, "quorum")
	notifyFile := func(i int) string { return filepath.Join(l.dir, fmt.Sprintf("notify-r%d", i+1)) }
	// sh -c 'CMD' sh: whatever xlbd appends lands in $1... and in $#.
	script := func(line, file string) string {
		return fmt.Sprintf("\"/bin/sh -c 'echo %s $# $* >> %s' sh\"", line, file)
	}
	var b strings.Builder
	b.WriteString(l.vsHeader("rr", fmt.Sprintf("    quorum: 2\n    quorum_up: %s\n    quorum_down: %s\n",
		script("up", quorumFile), script("down", quorumFile))))
	for i := range l.top.RealAddrs {
		b.WriteString(l.realHeader(i, 1, fmt.Sprintf("        notify_up: %s\n        notify_down: %s\n",
			script("up", notifyFile(i)), script("down", notifyFile(i)))) + l.miscCheck(i, false))
	}
	l.writeConfig(t, b.String())
	l.start(t, false)

	// lines reads a script's output file.
	lines := func(file string) []string {
		b, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 0:
			case len(f) == 2 && f[1] == "0":
				out = append(out, f[0])
			default:
				out = append(out, fmt.Sprintf("%q", line))
			}
		}
		return out
	}
	// waitLines waits (scripts run after the change, on their own) until
	// file holds want; more, or another, is an error at once.
	waitLines := func(file string, want []string, what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			got := lines(file)
			if strings.Join(got, " ") == strings.Join(want, " ") {
				return
			}
			if len(got) > len(want) || time.Now().After(deadline) {
				raw, _ := os.ReadFile(file)
				t.Errorf("%s: %s holds %q, want %v (each line a state and the script's argument count, 0)", what, filepath.Base(file), raw, want)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	up := []bool{true, true, true}
	wantPool := func() map[string]int {
		m := map[string]int{}
		for i, u := range up {
			if u {
				m[fmt.Sprintf("r%d", i+1)] = 1
			}
		}
		return m
	}
	l.waitPool(t, time.Now(), hpBound(0), wantPool(), "start")
	wantQuorum := []string{"up"}
	wantNotify := make([][]string, 3)
	waitLines(quorumFile, wantQuorum, "start")
	// Every checker has run and found its real up: still no notify.
	for ran := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		all := true
		for _, h := range l.status(t).Health {
			for _, c := range h.Checkers {
				all = all && !c.Last.IsZero()
			}
		}
		if all {
			break
		}
		if time.Since(ran) > hpBound(0) {
			logStatus(t, l.ctl)
			t.Fatalf("not every checker ran within %v of the start", hpBound(0))
		}
	}
	time.Sleep(200 * time.Millisecond) // a script that would run, has
	for i := range 3 {
		waitLines(notifyFile(i), nil, "start")
	}

	steps := []struct {
		real    int
		up      bool
		quorum  string // "up" or "down" when the step crosses
		weights int    // alive weight after it, for the log
	}{
		{0, false, "", 2},
		{1, false, "down", 1},
		{2, false, "", 0},
		{0, true, "", 1},
		{1, true, "up", 2},
		{2, true, "", 3},
		{2, false, "", 2},
		{0, false, "down", 1},
		{0, true, "up", 2},
	}
	for n, s := range steps {
		state := map[bool]string{true: "up", false: "down"}[s.up]
		what := fmt.Sprintf("step %d: r%d %s (alive weight %d)", n+1, s.real+1, state, s.weights)
		code := 1
		if s.up {
			code = 0
		}
		up[s.real] = s.up
		changed := time.Now()
		l.setExit(t, s.real, code)
		if l.waitPool(t, changed, hpBound(0), wantPool(), what).IsZero() {
			return
		}
		wantNotify[s.real] = append(wantNotify[s.real], state)
		if s.quorum != "" {
			wantQuorum = append(wantQuorum, s.quorum)
		}
		waitLines(notifyFile(s.real), wantNotify[s.real], what)
		waitLines(quorumFile, wantQuorum, what)
		if q := l.quorum(l.status(t)); q.Up != (wantQuorum[len(wantQuorum)-1] == "up") || q.WeightSum != s.weights {
			t.Errorf("%s: status quorum %+v, want up=%v with weight sum %d", what, q, wantQuorum[len(wantQuorum)-1] == "up", s.weights)
		}
	}
	// Nothing more comes while nothing changes.
	time.Sleep(1500 * time.Millisecond)
	waitLines(quorumFile, wantQuorum, "at rest")
	for i := range 3 {
		waitLines(notifyFile(i), wantNotify[i], "at rest")
	}
}

// TestHealthReloadKeepsRealDown: a SIGHUP with an unrelated change (r3's
// weight) under traffic, while r2 is down, does not put r2 back in the
// pool, not even for a moment, and the pool's Prometheus counters go on
// from where they were.
func TestHealthReloadKeepsRealDown(t *testing.T) {
	const retry = 1
	l := newPoolLab(t, 3)
	config := func(w3 int) string {
		var b strings.Builder
		b.WriteString(l.vsHeader("wrr", ""))
		for i := range l.top.RealAddrs {
			w := 1
			if i == 2 {
				w = w3
			}
			b.WriteString(l.realHeader(i, w, "") + fmt.Sprintf("        checkers:\n          - TCP_CHECK: { connect_timeout: %d, retry: %d, delay_before_retry: %d }\n",
				int(hpTimeout.Seconds()), retry, int(hpRetryDelay.Seconds())))
		}
		return b.String()
	}
	l.writeConfig(t, config(1))
	l.start(t, true)
	tr := l.traffic()
	defer tr.finish()
	time.Sleep(time.Second)
	r2 := netip.AddrPortFrom(l.top.RealAddrs[1], 8080).String()
	isR2 := func(real string) bool { return real == r2 }
	upR2 := realCounters(scrapeMetrics(t, l.top.LB, l.metrics))

	failed := time.Now()
	l.servers[1].stop()
	seen := l.waitPool(t, failed, hpBound(retry), map[string]int{"r1": 1, "r3": 1}, "r2 stopped")
	if seen.IsZero() {
		return
	}
	// A connection that reached r2 as it stopped fails: count from the
	// pool without it.
	settled := seen.Add(hpSettle)
	time.Sleep(500 * time.Millisecond)
	before := realCounters(scrapeMetrics(t, l.top.LB, l.metrics))

	l.writeConfig(t, config(2))
	reloaded := time.Now()
	if err := l.d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, l.d, "msg=reloaded")
	// Watch the pool for as long as r2's checker could take to decide
	// anything, and a second more: r2 never in it, r3 at its new weight.
	var weighted bool
	for time.Since(reloaded) < hpBound(retry)+time.Second {
		p := l.pool(l.status(t))
		if _, in := p["r2"]; in {
			logStatus(t, l.ctl)
			t.Fatalf("r2, down, is in the pool %v after the reload: %v", time.Since(reloaded).Round(time.Millisecond), p)
		}
		weighted = weighted || equalPool(p, map[string]int{"r1": 1, "r3": 2})
		time.Sleep(50 * time.Millisecond)
	}
	if !weighted {
		logStatus(t, l.ctl)
		t.Errorf("r3's new weight 2 never reached the pool after the reload")
	}
	if h, ok := l.health(l.status(t), 1); !ok || h.Up {
		t.Errorf("status health of r2 after the reload: %+v, want down", h)
	}
	by := observe(t, tr, settled, 0, "from r2's removal through the reload")
	if by["r2"] > 0 {
		t.Errorf("r2, down, took %d new connections across the reload", by["r2"])
	}
	if by := tr.servedSince(reloaded); by["r1"] == 0 || by["r3"] == 0 {
		t.Errorf("after the reload new connections went to %v, want r1 and r3", by)
	}

	after := realCounters(scrapeMetrics(t, l.top.LB, l.metrics))
	checkCounters(t, before, after, func(real string) bool { return !isR2(real) }, "the reload")
	for _, i := range []int{0, 2} {
		real := "real=" + netip.AddrPortFrom(l.top.RealAddrs[i], 8080).String()
		found := false
		for k, v := range after {
			if strings.HasPrefix(k, "xlbd_real_connections_total{") && strings.Contains(k, real) && strings.Contains(k, "protocol=TCP") {
				found = true
				if !(v > before[k]) {
					t.Errorf("%s: %v before the reload, %v after, want more (traffic went on)", k, before[k], v)
				}
			}
		}
		if !found {
			t.Errorf("no xlbd_real_connections_total for r%d in /metrics", i+1)
		}
	}

	// r2 back after the reload: in the pool again, with its counters from
	// before it went down (the data plane keeps a removed real's id and
	// counters for it), and new connections.
	back := time.Now()
	l.servers[1].start(t)
	seen = l.waitPool(t, back, hpBound(0), map[string]int{"r1": 1, "r2": 1, "r3": 2}, "r2 restarted")
	if seen.IsZero() {
		return
	}
	if by := observe(t, tr, seen.Add(hpSettle), hpObserve, "r2 back"); by["r2"] == 0 {
		t.Errorf("r2 took no new connection after it came back: %v", by)
	}
	checkCounters(t, upR2, realCounters(scrapeMetrics(t, l.top.LB, l.metrics)), isR2, "r2's removal, the reload and its return")
}

// realCounters are the counter samples of /metrics that have a real label,
// by family and labels.
func realCounters(families map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, f := range families {
		if f.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, m := range f.GetMetric() {
			var lbls []string
			real := false
			for _, p := range m.GetLabel() {
				real = real || p.GetName() == "real"
				lbls = append(lbls, p.GetName()+"="+p.GetValue())
			}
			if !real {
				continue
			}
			sort.Strings(lbls)
			out[name+"{"+strings.Join(lbls, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

// checkCounters reports every counter of the reals keep accepts that is
// lower after than before, or gone; there must be some.
func checkCounters(t *testing.T, before, after map[string]float64, keep func(real string) bool, across string) {
	t.Helper()
	n := 0
	for k, v := range before {
		real := k[strings.Index(k, "real=")+5:]
		real = real[:strings.IndexAny(real, ",}")]
		if !keep(real) {
			continue
		}
		n++
		w, ok := after[k]
		switch {
		case !ok:
			t.Errorf("%s = %v before %s, gone after", k, v, across)
		case w < v:
			t.Errorf("%s = %v before %s, %v after: the counter went back", k, v, across, w)
		}
	}
	t.Logf("%d counters compared across %s", n, across)
	if n == 0 {
		t.Errorf("no counter with a real label in /metrics: %v", before)
	}
}
