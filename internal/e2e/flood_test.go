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
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/sched"
)

const (
	floodVIPPort  = 7                       // the service's port on the VIP
	floodEchoPort = 7007                    // where the reals' echo servers listen
	floodTable    = 1024                    // --conn-table-size
	floodSYNs     = 400000                  // at most; 70,000 to 190,000 a second here
	floodFor      = 1500 * time.Millisecond // the flood stops after floodSYNs or this long
)

// A SYN flood fills the connection table with half-open flows from spoofed
// addresses. It must not evict established connections: with an LRU table
// 600,000 spoofed SYNs pushed out idle established flows, whose next packet
// then found no entry and was answered with an RST by the LB's kernel (it
// holds the VIP). Now, while the table is full, new flows are refused and
// counted as drop_conn_full, and every established connection keeps its
// real server until its own timeout.
func TestSYNFlood(t *testing.T) {
	l := newNATLab(t)
	if err := testbed.ServeEcho(t, l.top, floodEchoPort); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: %d\n    protocol: TCP\n    lb_algo: rr\n    lb_kind: NAT\n    real_servers:\n",
		l.top.VIP, floodVIPPort)
	for _, a := range l.top.RealAddrs {
		fmt.Fprintf(&b, "      - { address: %s, port: %d, weight: 1 }\n", a, floodEchoPort)
	}
	if err := os.WriteFile(l.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d := l.daemon(t, "--conn-table-size", fmt.Sprint(floodTable), "--metrics-addr", "127.0.0.1:9469")
	waitFor(t, d, "msg=ready")
	vip := netip.AddrPortFrom(l.top.VIP, floodVIPPort)

	// Two established connections: one that goes silent, one that talks
	// every 20 ms for the whole test.
	idle := dialEcho(t, l.top.Client, vip)
	idleReal, err := idle.echo("idle-before")
	if err != nil {
		t.Fatalf("idle connection before the flood: %v", err)
	}
	act := startActive(t, l.top.Client, vip)
	time.Sleep(300 * time.Millisecond)
	if n, _, _ := act.counts(); n == 0 {
		t.Fatalf("active connection: no echo in 300 ms before the flood:\n%s", act.report())
	}
	before := scrapeFlood(t, l)

	res, err := testbed.SYNFlood(l.top.Client, vip, netip.MustParsePrefix("10.77.0.0/16"), floodSYNs, floodFor)
	if err != nil {
		t.Fatal(err)
	}
	floodEnd := time.Now()
	t.Logf("flood: %d SYNs sent (%d sends refused) in %v, %.0f SYN/s, to %v from 10.77.0.0/16",
		res.Sent, res.Failed, res.Elapsed.Round(time.Millisecond), res.Rate(), vip)
	during := scrapeFlood(t, l)
	t.Logf("right after the flood: conn table %v, nat table %v of %d; verdicts since before the flood: %s; connection table: %s",
		during.flows["conn"], during.flows["nat"], floodTable, during.since(before), connTableSummary(t, l.pin))
	if out, err := exec.Command(xlbdBinary(t), "status", "--control-socket", l.ctl).CombinedOutput(); err != nil {
		t.Errorf("xlbd status: %v\n%s", err, out)
	} else {
		t.Logf("xlbd status right after the flood:\n%s", out)
	}

	// The idle connection is the same connection on the same real.
	idleAfter, idleErr := idle.echo("idle-after")

	// The active one keeps talking a little longer, then stops.
	time.Sleep(500 * time.Millisecond)
	act.finish()
	ok, failed, maxRTT := act.counts()
	t.Logf("active connection: %d echoes from %s, %d failures, slowest %v", ok, act.real, failed, maxRTT.Round(time.Millisecond))

	// A new connection once the flood is over: the daemon's gc sheds the
	// half-open entries that have been silent for a second, so the client's
	// first or second SYN retransmission gets in (here 0.7 to 2 s after
	// the flood, 1 ms to 1.5 s after the first try). Were
	// they kept to their SYN_RECV timeout (60 s), the table would refuse
	// every new flow for a minute after each flood.
	newStart := time.Now()
	var newErr error
	var newReal string
	for time.Since(newStart) < 10*time.Second {
		var c *echoConn
		c, newErr = tryDialEcho(l.top.Client, vip, 10*time.Second-time.Since(newStart))
		if newErr == nil {
			newReal, newErr = c.echo("new")
			c.conn.Close()
			if newErr == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var newFailed string
	if newErr != nil {
		newFailed = fmt.Sprintf("no new connection within 10 s of the flood's end (%v): gc did not shed the half-open entries; connection table: %s",
			newErr, connTableSummary(t, l.pin))
	} else {
		t.Logf("new connection after the flood: served by %s after %v of trying, %v after the flood ended",
			newReal, time.Since(newStart).Round(time.Millisecond), time.Since(floodEnd).Round(time.Millisecond))
	}

	final := scrapeFlood(t, l)
	t.Logf("at the end: conn table %v, nat table %v; verdicts since before the flood: %s",
		final.flows["conn"], final.flows["nat"], final.since(before))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := control.Fetch(ctx, l.ctl)
	if err != nil {
		t.Errorf("control socket: %v", err)
	}

	// Verdicts: the flood must have filled the table.
	if _, known := final.verdicts["drop_conn_full"]; !known {
		t.Errorf("/metrics has no xlbd_verdict_packets_total{verdict=\"drop_conn_full\"}: this data plane does not refuse new flows when the connection table is full (verdicts: %s)",
			final.since(verdictSnap{}))
	} else if v := final.verdicts["drop_conn_full"] - before.verdicts["drop_conn_full"]; v == 0 {
		t.Errorf("drop_conn_full stayed 0 after %d SYNs into a table of %d: the flood did not fill the table (too small, or SYNs lost before the LB; verdicts: %s)",
			res.Sent, floodTable, final.since(before))
	}
	if err == nil && rep.Dataplane.Verdicts["drop_conn_full"] == 0 {
		t.Errorf("xlbd status shows no drop_conn_full packets: %v", rep.Dataplane.Verdicts)
	}

	// Established connections survived, on their reals.
	if idleErr != nil {
		t.Errorf("idle connection (on %s) after the flood: %v: the flood evicted an established connection", idleReal, idleErr)
	} else if idleAfter != idleReal {
		t.Errorf("idle connection moved from %s to %s", idleReal, idleAfter)
	}
	if failed > 0 || ok == 0 {
		t.Errorf("active connection (on %s): %d echoes, %d failures:\n%s", act.real, ok, failed, act.report())
	}
	if newFailed != "" {
		t.Error(newFailed)
	}
}

// echoConn is a connection to the echo service through the VIP.
type echoConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func tryDialEcho(ns *testbed.Netns, vip netip.AddrPort, timeout time.Duration) (*echoConn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		// No keep-alive probes: an idle connection sends nothing at all.
		d := net.Dialer{Timeout: timeout, KeepAlive: -1}
		var err error
		c, err = d.Dial("tcp", vip.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &echoConn{conn: c, br: bufio.NewReader(c)}, nil
}

func dialEcho(t *testing.T, ns *testbed.Netns, vip netip.AddrPort) *echoConn {
	t.Helper()
	c, err := tryDialEcho(ns, vip, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %v: %v", vip, err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// echo sends msg and returns the real that echoed it.
func (c *echoConn) echo(msg string) (string, error) {
	c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	who, got, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
	if !ok || got != msg {
		return "", fmt.Errorf("sent %q, got back %q", msg, line)
	}
	return who, nil
}

// active echoes on one connection every 20 ms until finished.
type active struct {
	c    *echoConn
	real string
	stop chan struct{}
	once sync.Once
	done chan struct{}

	mu     sync.Mutex
	ok     int
	failed int
	maxRTT time.Duration
	errs   []string
}

func startActive(t *testing.T, ns *testbed.Netns, vip netip.AddrPort) *active {
	t.Helper()
	a := &active{c: dialEcho(t, ns, vip), stop: make(chan struct{}), done: make(chan struct{})}
	who, err := a.c.echo("a-0")
	if err != nil {
		t.Fatalf("active connection: %v", err)
	}
	a.real = who
	go a.run()
	t.Cleanup(a.finish)
	return a
}

func (a *active) run() {
	defer close(a.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		t0 := time.Now()
		who, err := a.c.echo(fmt.Sprintf("a-%d", i))
		rtt := time.Since(t0)
		a.mu.Lock()
		if err == nil && who != a.real {
			err = fmt.Errorf("moved from %s to %s", a.real, who)
		}
		if err != nil {
			a.failed++
			a.errs = append(a.errs, fmt.Sprintf("echo %d at %s: %v", i, t0.Format("15:04:05.000"), err))
		} else {
			a.ok++
			a.maxRTT = max(a.maxRTT, rtt)
		}
		a.mu.Unlock()
		if err != nil {
			// A reset or timed-out connection stays broken.
			return
		}
	}
}

func (a *active) finish() {
	a.once.Do(func() { close(a.stop) })
	<-a.done
}

func (a *active) counts() (ok, failed int, maxRTT time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ok, a.failed, a.maxRTT
}

func (a *active) report() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.errs, "\n")
}

// verdictSnap is one scrape of the verdict counters and flow tables.
type verdictSnap struct {
	verdicts map[string]float64
	flows    map[string]float64
}

func scrapeFlood(t *testing.T, l *natLab) verdictSnap {
	t.Helper()
	families := scrapeMetrics(t, l.top.LB, "127.0.0.1:9469")
	s := verdictSnap{verdicts: map[string]float64{}, flows: map[string]float64{}}
	for _, m := range families["xlbd_verdict_packets_total"].GetMetric() {
		for _, p := range m.GetLabel() {
			if p.GetName() == "verdict" {
				s.verdicts[p.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for _, m := range families["xlbd_flow_table_entries"].GetMetric() {
		for _, p := range m.GetLabel() {
			if p.GetName() == "table" {
				s.flows[p.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return s
}

// since lists the verdicts that grew since prev, sorted by name.
func (s verdictSnap) since(prev verdictSnap) string {
	var parts []string
	for n, v := range s.verdicts {
		if d := v - prev.verdicts[n]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s +%.0f", n, d))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// connTableSummary counts the pinned connection table's entries by TCP
// state and by whether they are assured (never shed under pressure), as
// bpftool dumps them.
func connTableSummary(t *testing.T, pin string) string {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", pin+"/conns").Output()
	if err != nil {
		return fmt.Sprintf("(bpftool: %v)", err)
	}
	type val struct {
		State uint32 `json:"state"`
		Flags uint32 `json:"flags"`
		Dead  uint32 `json:"dead"`
	}
	var entries []struct {
		Value     json.RawMessage `json:"value"`
		Formatted *struct {
			Value val `json:"value"`
		} `json:"formatted"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return fmt.Sprintf("(bpftool output: %v)", err)
	}
	count := map[string]int{}
	for _, e := range entries {
		var v val
		if e.Formatted != nil {
			v = e.Formatted.Value
		} else if err := json.Unmarshal(e.Value, &v); err != nil {
			return fmt.Sprintf("(bpftool entry %s: %v)", e.Value, err)
		}
		k := sched.TCPState(v.State).String()
		if v.Flags&maps.ConnAssured != 0 {
			k += " assured"
		}
		if v.Dead != 0 {
			k += " dead"
		}
		count[k]++
	}
	var parts []string
	for k, n := range count {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d entries: %s", len(entries), strings.Join(parts, ", "))
}
