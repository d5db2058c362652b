package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// The seed's LVS-NAT setup behind a VRRP pair of xlbd nodes: each node
// holds, while MASTER, the service VIP on its front and the reals' gateway
// on its back, both in one vrrp_sync_group so that they move together, and
// balances the VIP's service only while MASTER.
const (
	// natPace is the period of the client's new connections, and
	// natTimeout the most each may take.
	natPace    = 50 * time.Millisecond
	natTimeout = 300 * time.Millisecond
	// natStable is how many new connections in a row must succeed once
	// the service is back.
	natStable = 20
)

// natMode is how the MASTER goes away.
type natMode struct {
	name string
	sig  syscall.Signal
	// dies: the whole node dies with its daemon, see natNode.kill.
	dies bool
	// bound is the longest failover outage: Master_Down_Interval (3
	// adverts and lb2's skew, 0.61 s) after a crash, the skew alone
	// after the priority 0 of a stop; a dead daemon's data plane goes on
	// serving, all but connections in flight when the addresses move.
	bound time.Duration
}

// natPreemptBound is the longest outage when lb1 takes the addresses back.
const natPreemptBound = time.Second

// TestVRRPNATFailover runs a stream of new connections through the VIP of
// a NAT service balanced by a VRRP pair of xlbd nodes while the MASTER
// goes away (its node crashes, its daemon alone crashes, or it stops), and
// while it comes back and preempts: both addresses move together, the
// BACKUP balances nothing until it is MASTER, and after the outage new
// connections succeed again, through the other node, on every real. It
// also follows connections established before each move.
func TestVRRPNATFailover(t *testing.T) {
	requireNetns(t)
	modes := []natMode{
		{name: "SIGKILL-node-dies", sig: syscall.SIGKILL, dies: true, bound: 4500 * time.Millisecond},
		{name: "SIGKILL-daemon", sig: syscall.SIGKILL, bound: time.Second},
		{name: "SIGTERM", sig: syscall.SIGTERM, bound: 1500 * time.Millisecond},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			natFailover(t, m)
		})
	}
}

func natFailover(t *testing.T, m natMode) {
	p, err := testbed.NewPair(t, testbed.PairOptions{NAT: true})
	if err != nil {
		t.Fatal(err)
	}
	natServeReals(t, p)
	lb1 := natNewNode(t, p, 0, "MASTER", 150)
	lb2 := natNewNode(t, p, 1, "BACKUP", 100)
	lb1.start(t)
	lb2.start(t)

	natWaitHolds(t, p, p.LB1, nil, 10*time.Second)
	natCheckService(t, lb1, p.VIP, true, 2*time.Second, "lb1 MASTER")
	natCheckService(t, lb2, p.VIP, false, 0, "lb2 BACKUP")
	for _, vi := range []string{"VI_EXT", "VI_INT"} {
		if v, err := lb2.x.instance(vi); err != nil || v.State != "BACKUP" {
			t.Fatalf("lb2 %s: %+v (%v), want BACKUP", vi, v, err)
		}
	}

	tr := natStartTraffic(t, p)
	warm := time.Now()
	tr.waitStable(t, warm, 5*time.Second, "through lb1")
	// Connections established through lb1: one used while lb2 is MASTER,
	// one left idle until lb1 is MASTER again.
	held := natDialHeld(t, p)
	idle := natDialHeld(t, p)

	// The MASTER goes away.
	killed := time.Now()
	lb1.kill(t, p, m)
	except := (*testbed.Netns)(nil)
	if m.sig == syscall.SIGKILL && !m.dies {
		// A live node whose daemon was killed keeps the addresses:
		// nobody removes them.
		except = p.LB1
	}
	took := natWaitHolds(t, p, p.LB2, except, 8*time.Second)
	t.Logf("%s: lb2 holds both VIPs %v after the signal", m.name, took.Round(time.Millisecond))
	natCheckService(t, lb2, p.VIP, true, 2*time.Second, "lb2 MASTER")
	out := tr.outage(t, killed, 8*time.Second, "failover to lb2")
	t.Logf("%s: failover outage %v", m.name, out.Round(time.Millisecond))
	if out > m.bound {
		t.Errorf("failover outage %v, want at most %v", out.Round(time.Millisecond), m.bound)
	}
	if except != nil {
		t.Logf("%s: lb1's dead daemon left %v holding %v and %v", m.name, p.Holders(p.VIP), p.VIP, p.GatewayVIP)
	}
	held.probe(t, false, "connection established through lb1, used through lb2")
	// One established through lb2, for the way back.
	back := natDialHeld(t, p)

	// lb1 comes back (after a reboot, for a node that died) and
	// preempts: both addresses move back together.
	if m.dies {
		lb1.reboot(t, p)
	}
	restarted := time.Now()
	lb1.start(t)
	if except != nil {
		// The new daemon starts in BACKUP and first takes off what the
		// killed one left, as keepalived does: until lb1 preempts, lb2
		// alone holds the addresses.
		natWaitHolds(t, p, p.LB2, nil, time.Second)
		// And balances nothing on the VIP with the data plane it
		// adopted.
		natCheckService(t, lb1, p.VIP, false, time.Second, "lb1 restarted, BACKUP")
	}
	took = natWaitHolds(t, p, p.LB1, nil, 10*time.Second)
	t.Logf("%s: lb1 holds both VIPs again %v after its restart", m.name, took.Round(time.Millisecond))
	natCheckService(t, lb2, p.VIP, false, 2*time.Second, "lb2 BACKUP again")
	natCheckService(t, lb1, p.VIP, true, 2*time.Second, "lb1 MASTER again")
	out = tr.outage(t, restarted, 8*time.Second, "preemption by lb1")
	t.Logf("%s: preemption outage %v", m.name, out.Round(time.Millisecond))
	if out > natPreemptBound {
		t.Errorf("preemption outage %v, want at most %v", out.Round(time.Millisecond), natPreemptBound)
	}
	back.probe(t, false, "connection established through lb2, used after lb1 took over")
	// Only a daemon that died alone left its flows in the pinned
	// connection table, which its successor adopts: lb1 forwards the
	// idle connection again as before.
	idle.probe(t, m.sig == syscall.SIGKILL && !m.dies, "connection established through lb1, idle until lb1 was MASTER again")
	tr.finish()
}

// natNode is an LB node: its keepalived.conf and pins outlive the daemon,
// as on a real node, so that a restart finds what the last daemon left.
type natNode struct {
	ns   *testbed.Netns
	conf string
	pin  string
	x    *xlbdNode
}

func natNewNode(t *testing.T, p *testbed.Pair, i int, state string, prio int) *natNode {
	t.Helper()
	dir := t.TempDir()
	n := &natNode{ns: p.Nodes[i], conf: filepath.Join(dir, "keepalived.conf"), pin: bpffs(t)}
	if err := os.WriteFile(n.conf, []byte(natConf(p, state, prio)), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// natConf is the node's keepalived.conf: the sync group, its two
// instances, and the NAT virtual server on the VIP with no checker (every
// real is up).
func natConf(p *testbed.Pair, state string, prio int) string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id xlbd_nat_e2e\n}\n")
	b.WriteString("vrrp_sync_group G {\n  group {\n    VI_EXT\n    VI_INT\n  }\n}\n")
	for _, vi := range []struct {
		name, dev string
		vrid      int
		vip       netip.Addr
	}{{"VI_EXT", p.Front, 61, p.VIP}, {"VI_INT", p.Back, 62, p.GatewayVIP}} {
		fmt.Fprintf(&b, "vrrp_instance %s {\n  state %s\n  interface %s\n  virtual_router_id %d\n  priority %d\n  advert_int 1\n",
			vi.name, state, vi.dev, vi.vrid, prio)
		fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s/24 dev %s\n  }\n}\n", vi.vip, vi.dev)
	}
	fmt.Fprintf(&b, "virtual_server %s 80 {\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n", p.VIP)
	for _, r := range p.RealAddrs {
		fmt.Fprintf(&b, "  real_server %s 80 {\n  }\n", r)
	}
	b.WriteString("}\n")
	return b.String()
}

// start runs xlbd on the node, XDP in generic mode on both interfaces.
func (n *natNode) start(t *testing.T) {
	t.Helper()
	ctl := filepath.Join(t.TempDir(), "xlbd.sock")
	x := &xlbdNode{t: t, ctl: ctl}
	x.p = start(t, n.ns, xlbdBinary(t), "--config", n.conf, "--pin-dir", n.pin, "--xdp-mode", "generic",
		"--control-socket", ctl, "--metrics-addr", "", "--interface", "eth0", "--interface", "eth1")
	if err := x.p.WaitFor(`msg=ready`, 20*time.Second); err != nil {
		t.Fatalf("xlbd in %s: %v", n.ns, err)
	}
	n.x = x
}

// kill ends the node's daemon with m.sig and waits for its exit. With
// m.dies the node dies with it: its interfaces go down. That is a crashed
// node (power lost, kernel panic) as its peers and neighbours see it: it
// answers no ARP and forwards nothing, whatever it had configured. Taking
// the addresses off by hand instead would model a node that cleaned up,
// which a crashed one never does. A SIGKILL without m.dies is the daemon
// alone crashing on a live node: the VIPs stay on its interfaces and its
// pinned XDP program keeps balancing whatever still reaches it.
func (n *natNode) kill(t *testing.T, p *testbed.Pair, m natMode) {
	t.Helper()
	if m.sig == syscall.SIGKILL {
		n.x.resume()
		if err := n.x.p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		n.x.p.Cmd.Process.Wait()
	} else {
		n.x.stop()
	}
	if m.dies {
		for _, dev := range []string{p.Front, p.Back} {
			if _, err := n.ns.Run("ip", "link", "set", dev, "down"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// reboot brings a dead node back as a reboot would: without the addresses
// and the XDP programs it had (the pins went with the bpffs), links up.
func (n *natNode) reboot(t *testing.T, p *testbed.Pair) {
	t.Helper()
	// The pins go, and with them the links that kept the XDP programs
	// attached.
	for _, dev := range []string{p.Front, p.Back} {
		if err := os.Remove(filepath.Join(n.pin, "link_"+dev)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Unmount(n.pin, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	n.pin = bpffs(t)
	for _, x := range []struct {
		dev string
		a   netip.Addr
	}{{p.Front, p.VIP}, {p.Back, p.GatewayVIP}} {
		if _, err := n.ns.Run("ip", "addr", "del", x.a.String()+"/24", "dev", x.dev); err != nil {
			t.Fatal(err)
		}
		if _, err := n.ns.Run("ip", "link", "set", x.dev, "up"); err != nil {
			t.Fatal(err)
		}
		// The kernel releases the links a little later.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, err := n.ns.Run("ip", "link", "show", x.dev)
			if err == nil && !strings.Contains(string(out), "xdp") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the reboot: %s (%v)", x.dev, out, err)
			}
		}
	}
}

// natHolds reports which of the two VIPs ns holds on an interface that is
// up: a dead node's addresses on its downed links are nobody's.
func natHolds(ns *testbed.Netns, vips ...netip.Addr) ([]bool, error) {
	held := make([]bool, len(vips))
	err := ns.Do(func() error {
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			i := slices.IndexFunc(vips, func(v netip.Addr) bool { return a.IP.Equal(v.AsSlice()) })
			if i < 0 {
				continue
			}
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return err
			}
			if l.Attrs().Flags&net.FlagUp != 0 {
				held[i] = true
			}
		}
		return nil
	})
	return held, err
}

// natWaitHolds waits until want holds both VIPs and no other node but
// except holds either; it returns how long that took.
func natWaitHolds(t *testing.T, p *testbed.Pair, want, except *testbed.Netns, limit time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	var last string
	for {
		ok := true
		var b strings.Builder
		for _, n := range p.Nodes {
			h, err := natHolds(n, p.VIP, p.GatewayVIP)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %v/%v ", n, h[0], h[1])
			switch n {
			case want:
				ok = ok && h[0] && h[1]
			case except:
			default:
				ok = ok && !h[0] && !h[1]
			}
		}
		last = b.String()
		if ok {
			return time.Since(t0)
		}
		if time.Since(t0) > limit {
			t.Fatalf("want %s alone to hold %v and %v within %v; holds (front/back VIP): %s", want, p.VIP, p.GatewayVIP, limit, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// natCheckService checks, until within has passed, that the node's data
// plane has (or has not) a service on vip.
func natCheckService(t *testing.T, n *natNode, vip netip.Addr, want bool, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rep, err := n.x.status()
		if err != nil {
			t.Fatalf("%s: xlbd status: %v", what, err)
		}
		has := slices.ContainsFunc(rep.Dataplane.Services, func(s dataplane.ServiceStatus) bool { return s.VIP == vip })
		if has == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: data plane has a service on %v: %v, want %v (services %+v)", what, vip, has, want, rep.Dataplane.Services)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natServeReals runs an HTTP server on port 80 of every real, answering
// with its name (r1, r2, ...).
func natServeReals(t *testing.T, p *testbed.Pair) {
	t.Helper()
	for i, r := range p.Reals {
		name := fmt.Sprintf("r%d", i+1)
		l, err := r.Listen("tcp", ":80")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, name)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
}

// natAttempt is one new connection of the client's stream.
type natAttempt struct {
	start, end time.Time
	real       string // who answered; "" when it failed
	err        error
}

// natTraffic opens a new connection to the VIP every natPace, each a GET
// with natTimeout, and records them all.
type natTraffic struct {
	mu   sync.Mutex
	log  []natAttempt
	stop chan struct{}
	done chan struct{}
}

func natStartTraffic(t *testing.T, p *testbed.Pair) *natTraffic {
	tr := &natTraffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for {
			a := natAttempt{start: time.Now()}
			a.real, a.err = natGet(p)
			a.end = time.Now()
			tr.mu.Lock()
			tr.log = append(tr.log, a)
			tr.mu.Unlock()
			select {
			case <-tr.stop:
				return
			case <-time.After(time.Until(a.start.Add(natPace))):
			}
		}
	}()
	t.Cleanup(tr.finish)
	return tr
}

// natGet is one GET on a new connection to the VIP, all within
// natTimeout. Not net/http's client: its transport goes on dialing after
// the request timed out, and the SYNs it retransmits would reach the new
// MASTER later as connections no one counts.
func natGet(p *testbed.Pair) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), natTimeout)
	defer cancel()
	conn, err := p.Client.Dial(ctx, "tcp", netip.AddrPortFrom(p.VIP, 80).String())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (tr *natTraffic) finish() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

// since is the attempts that started at or after from.
func (tr *natTraffic) since(from time.Time) []natAttempt {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	i := slices.IndexFunc(tr.log, func(a natAttempt) bool { return !a.start.Before(from) })
	if i < 0 {
		return nil
	}
	return slices.Clone(tr.log[i:])
}

// lastOKBefore is the last attempt that succeeded and ended before t.
func (tr *natTraffic) lastOKBefore(t time.Time) (natAttempt, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i := len(tr.log) - 1; i >= 0; i-- {
		if a := tr.log[i]; a.err == nil && a.end.Before(t) {
			return a, true
		}
	}
	return natAttempt{}, false
}

// waitStable waits until natStable connections in a row that started
// after from succeeded, spread over every real.
func (tr *natTraffic) waitStable(t *testing.T, from time.Time, limit time.Duration, what string) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(natPace) {
		as := tr.since(from)
		if n := len(as); n >= natStable && natAllOK(as[n-natStable:]) {
			natCheckSpread(t, as[n-natStable:], what)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d new connections in a row succeeded within %v: %s", what, natStable, limit, natSummary(as))
		}
	}
}

// outage waits, after the event at from, for the service to come back:
// the first failure after from, the last success before it, and the first
// success after it, which must start natStable successes in a row spread
// over every real. The outage is from the end of the last success before
// to the end of the first one after; zero when no connection failed.
func (tr *natTraffic) outage(t *testing.T, from time.Time, limit time.Duration, what string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(limit)
	var as []natAttempt
	for ; ; time.Sleep(natPace) {
		as = tr.since(from)
		f := slices.IndexFunc(as, func(a natAttempt) bool { return a.err != nil })
		if f >= 0 {
			ok := slices.IndexFunc(as[f:], func(a natAttempt) bool { return a.err == nil })
			if ok >= 0 && len(as) >= f+ok+natStable {
				first, after := as[f], as[f+ok:f+ok+natStable]
				if !natAllOK(after) {
					t.Fatalf("%s: after the first success since the outage, not %d in a row succeeded: %s", what, natStable, natSummary(as))
				}
				natCheckSpread(t, after, what)
				last, okBefore := tr.lastOKBefore(first.start)
				if !okBefore {
					t.Fatalf("%s: no success before the outage", what)
				}
				failed := 0
				for _, a := range as[f : f+ok] {
					if a.err != nil {
						failed++
					}
				}
				t.Logf("%s: last success %v after the event, first failure %v (%v), first success again %v (%s), %d failed",
					what, last.end.Sub(from).Round(time.Millisecond), first.start.Sub(from).Round(time.Millisecond), natShort(first.err),
					after[0].end.Sub(from).Round(time.Millisecond), after[0].real, failed)
				return after[0].end.Sub(last.end)
			}
		} else if len(as) >= 2*natStable && time.Since(from) > limit/2 {
			// Nothing failed: no outage.
			natCheckSpread(t, as[len(as)-natStable:], what)
			t.Logf("%s: no connection failed", what)
			return 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: service not back within %v: %s", what, limit, natSummary(as))
		}
	}
}

func natAllOK(as []natAttempt) bool {
	return !slices.ContainsFunc(as, func(a natAttempt) bool { return a.err != nil })
}

// natCheckSpread checks that round robin spread as over every real.
func natCheckSpread(t *testing.T, as []natAttempt, what string) {
	t.Helper()
	by := map[string]int{}
	var order []string
	for _, a := range as {
		by[a.real]++
		order = append(order, a.real)
	}
	for _, r := range []string{"r1", "r2", "r3"} {
		if by[r] < len(as)/3-1 {
			t.Errorf("%s: %d new connections went %v (in turn %v), want a third on each of r1, r2, r3", what, len(as), by, order)
			return
		}
	}
}

// natSummary is as in runs: "12×r, 3×err(timeout), ...".
func natSummary(as []natAttempt) string {
	var parts []string
	cur, n := "", 0
	flush := func() {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d×%s", n, cur))
		}
	}
	for _, a := range as {
		k := "ok"
		if a.err != nil {
			k = "err(" + natShort(a.err) + ")"
		}
		if k != cur {
			flush()
			cur, n = k, 0
		}
		n++
	}
	flush()
	return strings.Join(parts, ", ")
}

// natShort names an error by its kind.
func natShort(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return err.Error()
}

// natHeld is an established keep-alive connection through the VIP.
type natHeld struct {
	conn net.Conn
	br   *bufio.Reader
	real string
}

func natDialHeld(t *testing.T, p *testbed.Pair) *natHeld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := p.Client.Dial(ctx, "tcp", netip.AddrPortFrom(p.VIP, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := &natHeld{conn: conn, br: bufio.NewReader(conn)}
	if h.real, err = h.get(time.Second); err != nil {
		t.Fatalf("keep-alive connection: %v", err)
	}
	return h
}

func (h *natHeld) get(limit time.Duration) (string, error) {
	h.conn.SetDeadline(time.Now().Add(limit))
	if _, err := io.WriteString(h.conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// probe makes one more request on the connection and checks what became
// of it: answered by the real it was on when survive, else reset at once
// (the node now holding the VIP has no entry for it, passes the segment
// to its stack, which has no socket on port 80).
func (h *natHeld) probe(t *testing.T, survive bool, what string) {
	t.Helper()
	t0 := time.Now()
	got, err := h.get(2 * time.Second)
	d := time.Since(t0).Round(time.Millisecond)
	if err != nil {
		t.Logf("%s: on %s, %s after %v", what, h.real, natShort(err), d)
	} else {
		t.Logf("%s: on %s, answered by %s in %v", what, h.real, got, d)
	}
	switch {
	case survive && (err != nil || got != h.real):
		t.Errorf("%s: want it answered by %s, got %q, %v", what, h.real, got, err)
	case !survive && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("%s: want it reset, got %q, %v", what, got, err)
	}
}
