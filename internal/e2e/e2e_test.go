// Package e2e runs the real xlbd binary in network namespaces and sends it
// real TCP and UDP traffic, in every forwarding mode and both XDP modes.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/pkg/maps"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// xlbdBinary builds cmd/xlbd once per test run.
func xlbdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xlbd-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "xlbd")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/xlbd/xlbd/cmd/xlbd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func requireNetns(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	if err := testbed.Available(); err != nil {
		testenv.Skip(t, fmt.Sprintf("network namespaces unavailable: %v", err))
	}
}

// bpffs mounts a private bpffs for the daemon's pins: the host's
// /sys/fs/bpf is invisible inside `ip netns exec`, a mount elsewhere is not.
func bpffs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// ctlSocket is a control socket path of the test's own: the default one
// under /run is shared by every namespace.
func ctlSocket(t testing.TB) string { return filepath.Join(t.TempDir(), "xlbd.sock") }

func start(t testing.TB, ns *testbed.Netns, name string, args ...string) *testbed.Process {
	t.Helper()
	p, err := testbed.Start(t, ns, nil, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s %s in %s:\n%s", name, strings.Join(args, " "), ns.Name, p.Output())
		}
	})
	return p
}

func waitFor(t *testing.T, p *testbed.Process, s string) {
	t.Helper()
	if err := p.WaitFor(s, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitReachable waits until `xlbd status` shows every real reachable. The
// daemon is ready, or reloaded, before the kernel has resolved the
// neighbours of new DR and TUN reals (it never waits on the network for
// long), and until then they take no new flows: a test that counts
// connections per real waits for them first.
func waitReachable(t *testing.T, ctl string) {
	t.Helper()
	bin := xlbdBinary(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(bin, "status", "--json", "--control-socket", ctl).Output()
		var missing []string
		if err == nil {
			var rep control.Report
			if err = json.Unmarshal(out, &rep); err == nil {
				for _, s := range rep.Dataplane.Services {
					for _, r := range s.Reals {
						if !r.Reachable {
							missing = append(missing, r.Addr.String())
						}
					}
				}
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reals not reachable within 20 s: %v (status: %v)", missing, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type scenario struct {
	kind    string // lb_kind
	xdpMode string
	vipOnLB bool
}

func (s scenario) name() string {
	n := s.kind + "/" + s.xdpMode
	if !s.vipOnLB {
		n += "/vip-routed"
	}
	return n
}

// config writes an lb.yaml for the scenario with the first n reals.
func (s scenario) config(t *testing.T, path string, top *testbed.Topology, n int) {
	t.Helper()
	httpPort, udpPort := s.ports()
	var b strings.Builder
	b.WriteString("virtual_servers:\n")
	for _, svc := range []struct {
		proto    string
		vip, dst int
	}{{"TCP", 80, httpPort}, {"UDP", 53, udpPort}} {
		fmt.Fprintf(&b, "  - address: %s\n    port: %d\n    protocol: %s\n    lb_algo: rr\n    lb_kind: %s\n    real_servers:\n",
			top.VIP, svc.vip, svc.proto, s.kind)
		for _, a := range top.RealAddrs[:n] {
			fmt.Fprintf(&b, "      - { address: %s, port: %d, weight: 1 }\n", a, svc.dst)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ports are where the reals listen: NAT can change the port, DR and TUN
// cannot.
func (s scenario) ports() (httpPort, udpPort int) {
	if s.kind == "NAT" {
		return 8080, 5353
	}
	return 80, 53
}

func TestForwarding(t *testing.T) {
	requireNetns(t)
	bin := xlbdBinary(t)
	for _, s := range []scenario{
		{"NAT", "generic", true},
		{"NAT", "native", true},
		{"NAT", "generic", false},
		{"DR", "generic", true},
		{"DR", "native", true},
		{"TUN", "generic", true},
		{"TUN", "native", true},
	} {
		t.Run(s.name(), func(t *testing.T) { testForwarding(t, bin, s) })
	}
}

// topology builds the lab a forwarding method needs: routed for NAT, one
// segment for DR and TUN.
func topology(t *testing.T, kind string, opts testbed.Options) *testbed.Topology {
	t.Helper()
	newTop := testbed.NewL2
	if kind == "NAT" {
		newTop = testbed.NewNAT
	}
	top, err := newTop(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func testForwarding(t *testing.T, bin string, s scenario) {
	top := topology(t, s.kind, testbed.Options{Reals: 4, VIPOnLB: s.vipOnLB, XDPPeers: s.xdpMode == "native"})

	httpPort, udpPort := s.ports()
	if err := testbed.ServeReals(t, top, httpPort, udpPort); err != nil {
		t.Fatal(err)
	}
	if s.kind == "TUN" {
		for _, r := range top.Reals {
			waitFor(t, start(t, r, bin, "decap", "--interface", "eth0", "--xdp-mode", s.xdpMode), "ready")
		}
	}

	pin := bpffs(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	s.config(t, cfg, top, 3)
	lbIfs := []string{"--interface", top.LBFront}
	if top.LBBack != top.LBFront {
		lbIfs = append(lbIfs, "--interface", top.LBBack)
	}
	ctl := ctlSocket(t)
	d := start(t, top.LB, bin, append([]string{"--config", cfg, "--pin-dir", pin, "--xdp-mode", s.xdpMode, "--control-socket", ctl}, lbIfs...)...)
	waitFor(t, d, "msg=ready")
	waitReachable(t, ctl)

	vip := top.VIP.String()
	client := top.Client.HTTPClient()
	client.Timeout = 5 * time.Second

	// Round robin over three reals: 30 new connections, exactly 10 each.
	served := map[string]int{}
	for i := 0; i < 30; i++ {
		served[get(t, client, "http://"+vip+"/")]++
	}
	for _, r := range []string{"r1", "r2", "r3"} {
		if served[r] != 10 {
			t.Errorf("connections per real: %v, want 10 each on r1, r2, r3", served)
			break
		}
	}
	// The counters in the pinned maps saw the same.
	set, err := maps.OpenPinned(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	reals, err := set.Reals.Valid()
	if err != nil {
		t.Fatal(err)
	}
	conns := map[netip.Addr]uint64{}
	for id, v := range reals {
		if v.Proto != 6 {
			continue
		}
		st, err := set.RealStats.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		conns[maps.Addr(v.Ip)] = st.Conns
	}
	for _, a := range top.RealAddrs[:3] {
		if conns[a] != 10 {
			t.Errorf("real_stats connections: %v, want 10 for each of %v", conns, top.RealAddrs[:3])
			break
		}
	}

	// The balancer, not the kernel, carried them.
	verdicts, err := set.Verdicts.All()
	if err != nil {
		t.Fatal(err)
	}
	fwd := map[string]string{"NAT": "fwd_nat", "DR": "fwd_dr", "TUN": "fwd_tun"}[s.kind]
	for i, n := range maps.VerdictNames {
		if n == fwd && verdicts[i] < 30*3 {
			t.Errorf("verdict %s counted %d packets for 30 HTTP exchanges", n, verdicts[i])
		}
		if n == "fwd_nat_reply" && s.kind == "NAT" && verdicts[i] < 30*3 {
			t.Errorf("verdict %s counted %d packets for 30 HTTP exchanges", n, verdicts[i])
		}
	}

	// UDP request/response through the VIP; the answer comes from VIP:53.
	udpCheck(t, top)

	// A long-lived connection keeps its real while the pool grows.
	conn, err := top.Client.Dial(context.Background(), "tcp", vip+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != vip+":80" {
		t.Errorf("client connected to %s, want the VIP", got)
	}
	br := bufio.NewReader(conn)
	first := keepAliveGet(t, conn, br)
	s.config(t, cfg, top, 4)
	d.Signal(syscall.SIGHUP)
	waitFor(t, d, "msg=reloaded")
	waitReachable(t, ctl)
	for i := 0; i < 5; i++ {
		if got := keepAliveGet(t, conn, br); got != first {
			t.Fatalf("long-lived connection moved from %s to %s after the pool grew", first, got)
		}
	}
	served = map[string]int{}
	for i := 0; i < 8; i++ {
		served[get(t, client, "http://"+vip+"/")]++
	}
	if served["r4"] != 2 {
		t.Errorf("after adding r4, 8 new connections went %v, want 2 on each of 4 reals", served)
	}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keepAliveGet(t *testing.T, conn net.Conn, br *bufio.Reader) string {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("keep-alive response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func udpCheck(t *testing.T, top *testbed.Topology) {
	t.Helper()
	pc, err := top.Client.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	vip := &net.UDPAddr{IP: top.VIP.AsSlice(), Port: 53}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("query-%d", i)
		var reply string
		for try := 0; try < 3 && reply == ""; try++ {
			if _, err := pc.WriteTo([]byte(msg), vip); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				continue
			}
			if from.String() != vip.String() {
				t.Errorf("UDP reply from %s, want %s", from, vip)
			}
			reply = string(buf[:n])
		}
		name, echoed, ok := strings.Cut(reply, ":")
		if !ok || echoed != msg {
			t.Fatalf("UDP query %q: reply %q", msg, reply)
		}
		seen[name] = true
	}
	// One client socket is one flow: all its queries reach one real.
	if len(seen) != 1 {
		t.Errorf("one UDP flow was answered by %v, want a single real", seen)
	}
}
