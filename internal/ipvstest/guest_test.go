package ipvstest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// guest runs every scenario; it is TestIPVS inside the guest.
func guest(t *testing.T) {
	if err := testbed.Available(); err != nil {
		t.Fatalf("namespace labs cannot be built in the guest: %v", err)
	}
	t.Run("NAT", testNAT)
	t.Run("DR", testDR)
	t.Run("HealthCheck", testHealth)
	t.Run("FWMarkSCTPSyncDaemon", testFWMark)
	t.Run("AutoFallsBack", testAuto)
}

// lab is a namespace topology with xlbd on its LB, driving IPVS.
type lab struct {
	t    *testing.T
	top  *testbed.Topology
	dir  string
	conf string
	ctl  string
	d    *testbed.Process
	// servers are the reals' HTTP servers, by real index.
	servers []*http.Server
	port    int
}

func newLab(t *testing.T, mode testbed.Mode) *lab {
	top, err := testbed.New(t, mode, testbed.Options{Reals: 3, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := &lab{t: t, top: top, dir: dir, conf: filepath.Join(dir, "keepalived.conf"), ctl: filepath.Join(dir, "xlbd.sock"), port: 8080}
	if mode == testbed.L2 {
		l.port = 80 // DR cannot change the port
	}
	for i := range top.Reals {
		l.servers = append(l.servers, nil)
		l.serve(i)
	}
	return l
}

// serve starts real i's HTTP server, which answers with its name (r1...).
func (l *lab) serve(i int) {
	ln, err := l.top.Reals[i].Listen("tcp", fmt.Sprintf(":%d", l.port))
	if err != nil {
		l.t.Fatal(err)
	}
	name := fmt.Sprintf("r%d", i+1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bulk" {
			// A bulk transfer: 32 MiB of a pattern the client checks.
			w.Header().Set("Content-Length", fmt.Sprint(bulkSize))
			io.Copy(w, io.LimitReader(&pattern{}, bulkSize))
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	l.t.Cleanup(func() { srv.Close() })
	l.servers[i] = srv
}

func (l *lab) write(conf string) {
	l.t.Helper()
	if err := os.WriteFile(l.conf, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

func xlbdBin() string { return os.Getenv("XLBD_BIN") }

// start runs xlbd on the LB with the IPVS data plane and waits for it.
func (l *lab) start(extra ...string) {
	l.t.Helper()
	args := append([]string{"--config", l.conf, "--dataplane", "ipvs", "--control-socket", l.ctl,
		"--metrics-addr", "127.0.0.1:9901", "--interface", l.top.LBFront}, extra...)
	d, err := testbed.Start(l.t, l.top.LB, nil, xlbdBin(), args...)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("xlbd:\n%s", d.Output())
		}
	})
	l.d = d
	if err := d.WaitFor("msg=ready", 60*time.Second); err != nil {
		l.t.Fatal(err)
	}
}

// reload writes conf, sends SIGHUP and waits for the n-th reload.
func (l *lab) reload(conf string, n int) {
	l.t.Helper()
	l.write(conf)
	l.d.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(l.d.Output(), "msg=reloaded") < n {
		if time.Now().After(deadline) {
			l.t.Fatalf("no reload %d:\n%s", n, l.d.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *lab) ipvsadm(args ...string) string {
	l.t.Helper()
	out, err := l.top.LB.Run("ipvsadm", args...)
	if err != nil {
		l.t.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var spaces = regexp.MustCompile(`\s+`)

// table is `ipvsadm -Ln` without its headers and connection counts:
// "TCP 10.50.1.100:80 rr", "-> 10.50.2.11:8080 Masq 1", in the order of
// blocks, as IPVS lists services by hash and reals newest first.
func (l *lab) table() []string {
	l.t.Helper()
	var lines []string
	for _, line := range strings.Split(l.ipvsadm("-Ln"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || f[0] == "IP" || f[0] == "Prot" || (f[0] == "->" && f[1] == "RemoteAddress:Port"):
		case f[0] == "->":
			lines = append(lines, strings.Join(f[:4], " "))
		default:
			lines = append(lines, spaces.ReplaceAllString(strings.TrimSpace(line), " "))
		}
	}
	return blocks(lines)
}

// blocks sorts services, each followed by its sorted reals.
func blocks(lines []string) []string {
	var bs [][]string
	for _, l := range lines {
		if strings.HasPrefix(l, "->") && len(bs) > 0 {
			bs[len(bs)-1] = append(bs[len(bs)-1], l)
		} else {
			bs = append(bs, []string{l})
		}
	}
	for _, b := range bs {
		slices.Sort(b[1:])
	}
	slices.SortFunc(bs, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return slices.Concat(bs...)
}

// waitTable waits until `ipvsadm -Ln` reads want: a health check or a
// reload has its effect a moment after the daemon acts.
func (l *lab) waitTable(want []string, within time.Duration) {
	l.t.Helper()
	want = blocks(want)
	deadline := time.Now().Add(within)
	for {
		got := l.table()
		d := cmp.Diff(want, got)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("ipvsadm -Ln (-want +got):\n%s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// spread opens n connections to url from the client, one request each,
// and counts the answers by real.
func (l *lab) spread(n int, url string) map[string]int {
	l.t.Helper()
	c := l.top.Client.HTTPClient()
	c.Timeout = 10 * time.Second
	got := map[string]int{}
	for range n {
		resp, err := c.Get(url)
		if err != nil {
			l.t.Fatalf("GET %s: %v", url, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			l.t.Fatal(err)
		}
		got[string(b)]++
	}
	return got
}

func (l *lab) wantSpread(n int, url string, want map[string]int) {
	l.t.Helper()
	if got := l.spread(n, url); !cmp.Equal(got, want) {
		l.t.Errorf("%d connections to %s went %v, want %v", n, url, got, want)
	}
}

func (l *lab) status() control.Report {
	l.t.Helper()
	out, err := exec.Command(xlbdBin(), "status", "--json", "--control-socket", l.ctl).Output()
	if err != nil {
		l.t.Fatalf("xlbd status: %v", err)
	}
	var rep control.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		l.t.Fatal(err)
	}
	return rep
}

func (l *lab) realsConf(sched string, weights ...int) string {
	var b strings.Builder
	for i, w := range weights {
		fmt.Fprintf(&b, "    real_server %s %d {\n        weight %d\n    }\n", l.top.RealAddrs[i], l.port, w)
	}
	return b.String()
}

func natConf(l *lab, sched string, weights ...int) string {
	return fmt.Sprintf(`global_defs {
    lvs_timeouts tcp 600 tcpfin 60 udp 30
}
virtual_server %s 80 {
    lb_algo %s
    lb_kind NAT
    protocol TCP
%s}
virtual_server %s 53 {
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server %s 5353 {
    }
}
`, l.top.VIP, sched, l.realsConf(sched, weights...), l.top.VIP, l.top.RealAddrs[0])
}

func testNAT(t *testing.T) {
	l := newLab(t, testbed.NAT)
	// Someone else's service: xlbd must leave it alone.
	l.ipvsadm("-A", "-t", "10.50.1.1:22", "-s", "wlc")
	udp, err := l.top.Reals[0].ListenPacket("udp", ":5353")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(append([]byte("r1:"), buf[:n]...), from)
		}
	}()
	l.write(natConf(l, "rr", 1, 1, 1))
	l.start()
	vip := l.top.VIP.String()
	l.waitTable([]string{
		"TCP 10.50.1.1:22 wlc",
		"TCP " + vip + ":80 rr",
		"-> 10.50.2.11:8080 Masq 1", "-> 10.50.2.12:8080 Masq 1", "-> 10.50.2.13:8080 Masq 1",
		"UDP " + vip + ":53 rr",
		"-> 10.50.2.11:5353 Masq 1",
	}, 5*time.Second)
	if got := spaces.ReplaceAllString(l.ipvsadm("-L", "--timeout"), " "); !strings.Contains(got, "Timeout (tcp tcpfin udp): 600 60 30") {
		t.Errorf("lvs_timeouts: ipvsadm -L --timeout says %q", got)
	}

	l.wantSpread(30, "http://"+vip+"/", map[string]int{"r1": 10, "r2": 10, "r3": 10})

	// UDP through the VIP: the answer comes from the VIP.
	pc, err := l.top.Client.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: l.top.VIP.AsSlice(), Port: 53}
	pc.WriteTo([]byte("q"), dst)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "r1:q" || from.String() != dst.String() {
		t.Errorf("UDP through IPVS: %q from %v, %v", buf[:n], from, err)
	}

	// IPVS's own statistics, in `xlbd status` and /metrics. IPVS's
	// estimator fills the counters every 2 s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep := l.status()
		conns := map[netip.Addr]uint64{}
		for _, s := range rep.Dataplane.Services {
			if s.Port != 80 {
				continue
			}
			for _, r := range s.Reals {
				conns[r.Addr] = r.Connections
			}
		}
		ok := rep.Dataplane.Backend == "ipvs" && len(rep.Dataplane.Services) == 2
		for _, a := range l.top.RealAddrs {
			ok = ok && conns[a] == 10
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("xlbd status: backend %q, %d services (want only xlbd's 2), connections %v (want 10 each)",
				rep.Dataplane.Backend, len(rep.Dataplane.Services), conns)
		}
		time.Sleep(500 * time.Millisecond)
	}
	resp, err := l.top.LB.HTTPClient().Get("http://127.0.0.1:9901/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`xlbd_dataplane_backend{backend="ipvs"} 1`,
		`xlbd_real_connections_total{port="80",protocol="TCP",real="10.50.2.12:8080",vip="` + vip + `"} 10`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A bulk transfer through IPVS's NAT arrives whole.
	start := time.Now()
	resp, err = l.top.Client.HTTPClient().Get("http://" + vip + "/bulk")
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{bad: -1, started: true}
	n64, err := io.Copy(c, resp.Body)
	resp.Body.Close()
	if err != nil || n64 != bulkSize || c.bad >= 0 {
		t.Fatalf("bulk transfer: %d of %d bytes (first wrong byte at %d), %v", n64, bulkSize, c.bad, err)
	}
	t.Logf("bulk transfer through IPVS NAT: %d MiB in %.2f s (TCG guest)", bulkSize>>20, time.Since(start).Seconds())

	// A reload that changes the weights and removes a real.
	l.reload(natConf(l, "wrr", 3, 1), 1)
	l.waitTable([]string{
		"TCP 10.50.1.1:22 wlc",
		"TCP " + vip + ":80 wrr",
		"-> 10.50.2.11:8080 Masq 3", "-> 10.50.2.12:8080 Masq 1",
		"UDP " + vip + ":53 rr",
		"-> 10.50.2.11:5353 Masq 1",
	}, 5*time.Second)
	l.wantSpread(40, "http://"+vip+"/", map[string]int{"r1": 30, "r2": 10})
	// wrr 3:2:1.
	l.reload(natConf(l, "wrr", 3, 2, 1), 2)
	l.waitTable([]string{
		"TCP 10.50.1.1:22 wlc",
		"TCP " + vip + ":80 wrr",
		"-> 10.50.2.11:8080 Masq 3", "-> 10.50.2.12:8080 Masq 2", "-> 10.50.2.13:8080 Masq 1",
		"UDP " + vip + ":53 rr",
		"-> 10.50.2.11:5353 Masq 1",
	}, 5*time.Second)
	l.wantSpread(60, "http://"+vip+"/", map[string]int{"r1": 30, "r2": 20, "r3": 10})

	// A bad reload keeps the running configuration.
	l.write("virtual_server " + vip + " 80 {\n    lb_algo nosuch\n}\n")
	l.d.Signal(syscall.SIGHUP)
	if err := l.d.WaitFor("reload failed", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	l.waitTable([]string{
		"TCP 10.50.1.1:22 wlc",
		"TCP " + vip + ":80 wrr",
		"-> 10.50.2.11:8080 Masq 3", "-> 10.50.2.12:8080 Masq 2", "-> 10.50.2.13:8080 Masq 1",
		"UDP " + vip + ":53 rr",
		"-> 10.50.2.11:5353 Masq 1",
	}, time.Second)

	// Stopping takes xlbd's services out of IPVS and nothing else.
	l.d.Stop()
	l.waitTable([]string{"TCP 10.50.1.1:22 wlc"}, time.Second)
}

func testDR(t *testing.T) {
	l := newLab(t, testbed.L2)
	vip := l.top.VIP.String()
	l.write(fmt.Sprintf("virtual_server %s 80 {\n    lb_algo rr\n    lb_kind DR\n%s}\n", vip, l.realsConf("rr", 1, 1, 1)))
	l.start()
	l.waitTable([]string{
		"TCP " + vip + ":80 rr",
		"-> 10.50.1.11:80 Route 1", "-> 10.50.1.12:80 Route 1", "-> 10.50.1.13:80 Route 1",
	}, 5*time.Second)
	l.wantSpread(30, "http://"+vip+"/", map[string]int{"r1": 10, "r2": 10, "r3": 10})
}

// A real whose check fails goes to weight 0 with inhibit_on_failure and
// out of IPVS without it, as keepalived does; it comes back when it
// answers again.
func testHealth(t *testing.T) {
	l := newLab(t, testbed.NAT)
	vip := l.top.VIP.String()
	var reals strings.Builder
	for i, a := range l.top.RealAddrs {
		inhibit := ""
		if i == 1 {
			inhibit = "        inhibit_on_failure\n"
		}
		fmt.Fprintf(&reals, "    real_server %s 8080 {\n%s        TCP_CHECK {\n            connect_timeout 1\n            retry 0\n        }\n    }\n", a, inhibit)
	}
	l.write(fmt.Sprintf("virtual_server %s 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n%s}\n", vip, reals.String()))
	l.start()
	all := []string{"TCP " + vip + ":80 rr", "-> 10.50.2.11:8080 Masq 1", "-> 10.50.2.12:8080 Masq 1", "-> 10.50.2.13:8080 Masq 1"}
	l.waitTable(all, 20*time.Second)

	l.servers[1].Close()
	l.servers[2].Close()
	l.waitTable([]string{"TCP " + vip + ":80 rr", "-> 10.50.2.11:8080 Masq 1", "-> 10.50.2.12:8080 Masq 0"}, 20*time.Second)
	l.wantSpread(6, "http://"+vip+"/", map[string]int{"r1": 6})

	l.serve(1)
	l.serve(2)
	l.waitTable(all, 20*time.Second)
	l.wantSpread(6, "http://"+vip+"/", map[string]int{"r1": 2, "r2": 2, "r3": 2})
}

// Firewall-mark and SCTP services, which only IPVS balances, and IPVS's
// sync daemon following a VRRP instance.
func testFWMark(t *testing.T) {
	l := newLab(t, testbed.NAT)
	vip := l.top.VIP.String()
	for _, rule := range [][]string{
		{"add", "table", "ip", "mangle"},
		{"add", "chain", "ip", "mangle", "prerouting", "{ type filter hook prerouting priority -150; }"},
		{"add", "rule", "ip", "mangle", "prerouting", "ip", "daddr", vip, "tcp", "dport", "80", "meta", "mark", "set", "7"},
	} {
		if out, err := l.top.LB.Run("nft", rule...); err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(rule, " "), err, out)
		}
	}
	l.write(fmt.Sprintf(`global_defs {
    lvs_sync_daemon %[1]s VI_1 id 7
}
vrrp_instance VI_1 {
    interface %[1]s
    state MASTER
    priority 255
    virtual_router_id 51
    advert_int 1
    virtual_ipaddress {
        10.50.1.200/32
    }
}
virtual_server fwmark 7 {
    lb_algo rr
    lb_kind NAT
%[2]s}
virtual_server %[3]s 38412 {
    protocol SCTP
    lb_algo rr
    lb_kind NAT
    real_server %[4]s 38412 {
    }
}
`, l.top.LBFront, l.realsConf("rr", 1, 1, 1), vip, l.top.RealAddrs[0]))
	l.start()
	l.waitTable([]string{
		"FWM 7 rr",
		"-> 10.50.2.11:8080 Masq 1", "-> 10.50.2.12:8080 Masq 1", "-> 10.50.2.13:8080 Masq 1",
		"SCTP " + vip + ":38412 rr",
		"-> 10.50.2.11:38412 Masq 1",
	}, 5*time.Second)
	l.wantSpread(30, "http://"+vip+"/", map[string]int{"r1": 10, "r2": 10, "r3": 10})

	want := fmt.Sprintf("master sync daemon (mcast=%s, syncid=7", l.top.LBFront)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := l.ipvsadm("-L", "--daemon")
		if strings.Contains(got, want) && !strings.Contains(got, "backup sync daemon") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipvsadm -L --daemon: %q, want %q alone", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := exec.Command(xlbdBin(), "status", "--control-socket", l.ctl).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FWM  7 rr NAT") {
		t.Errorf("xlbd status (%v) does not show the fwmark service:\n%s", err, out)
	}
	// On the way out the sync daemon stops with the services.
	l.d.Stop()
	if got := l.ipvsadm("-L", "--daemon"); strings.TrimSpace(got) != "" {
		t.Errorf("sync daemon left running: %q", got)
	}
}

// --dataplane auto takes IPVS where XDP cannot load: a daemon without
// CAP_BPF or CAP_SYS_ADMIN, only CAP_NET_ADMIN, as in a container that
// grants no more.
func testAuto(t *testing.T) {
	l := newLab(t, testbed.NAT)
	vip := l.top.VIP.String()
	l.write(fmt.Sprintf("virtual_server %s 80 {\n    lb_algo rr\n    lb_kind NAT\n%s}\n", vip, l.realsConf("rr", 1, 1, 1)))
	const nobody = 65534
	pin := filepath.Join(l.dir, "bpf")
	if err := os.Mkdir(pin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", pin, "bpf", 0, "mode=0755"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(pin, unix.MNT_DETACH) })
	for _, p := range []string{l.dir, pin} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	// t.TempDir's parent is root's alone.
	if err := os.Chmod(filepath.Dir(l.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xlbdBin(), "--config", l.conf, "--dataplane", "auto", "--pin-dir", pin,
		"--control-socket", l.ctl, "--metrics-addr", "", "--interface", l.top.LBFront)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN},
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Started from a thread in the LB's namespace, which the child
	// inherits: `ip netns exec` would need the privileges taken away.
	if err := l.top.LB.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("xlbd:\n%s", out.String())
		}
	})
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "msg=ready") {
		select {
		case <-exited:
			t.Fatalf("xlbd --dataplane auto exited:\n%s", out.String())
		case <-deadline:
			t.Fatalf("xlbd --dataplane auto did not start:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	log := out.String()
	if !strings.Contains(log, "XDP cannot run here, using IPVS") || !strings.Contains(log, "dataplane=ipvs") {
		t.Errorf("auto did not say it fell back to IPVS:\n%s", log)
	}
	l.waitTable([]string{"TCP " + vip + ":80 rr", "-> 10.50.2.11:8080 Masq 1", "-> 10.50.2.12:8080 Masq 1", "-> 10.50.2.13:8080 Masq 1"}, 5*time.Second)
	l.wantSpread(30, "http://"+vip+"/", map[string]int{"r1": 10, "r2": 10, "r3": 10})
	if rep := l.status(); rep.Dataplane.Backend != "ipvs" {
		t.Errorf("xlbd status says backend %q", rep.Dataplane.Backend)
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const bulkSize = 32 << 20

// pattern is an endless stream whose byte at offset i is i mod 251, so
// that a lost, repeated or reordered segment shows.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// checker compares what it is given with pattern; bad is the offset of
// the first byte that differs (-1: none yet).
type checker struct {
	off, bad int64
	started  bool
}

func (c *checker) Write(b []byte) (int, error) {
	if !c.started {
		c.bad, c.started = -1, true
	}
	for i, v := range b {
		if c.bad < 0 && v != byte((c.off+int64(i))%251) {
			c.bad = c.off + int64(i)
		}
	}
	c.off += int64(len(b))
	return len(b), nil
}
