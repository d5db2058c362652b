package e2e

import (
	"fmt"
	"io"
	"net"
	netmail "net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/maps"
)

// SMTP alerts of issue 12, end to end: the daemon in the LB namespace
// mails keepalived's alert for each state change of a real server to an
// SMTP server the test runs in that namespace, and a dead SMTP server (one
// that accepts and never answers, one that refuses) delays no failover.
const (
	hsRouterID = "xlbd-smtp"
	hsFrom     = "xlbd@lb.example.com"
	// hsMailWithin is how long after the state change its mail may take
	// to arrive: it is sent at once, asynchronously.
	hsMailWithin = 2 * time.Second
	// hsDeadTimeout is smtp_connect_timeout against a dead SMTP server:
	// longer than hcBound, so that a mail that held up the checks would
	// show as a late failover.
	hsDeadTimeout = 5 * time.Second
)

var hsTo = []string{"ops@example.com", "oncall@example.org"}

// hsMail is one mail the test SMTP server accepted.
type hsMail struct {
	at   time.Time
	from string   // MAIL FROM
	rcpt []string // RCPT TO
	msg  *netmail.Message
	body string
}

func (m hsMail) subject() string { return m.msg.Header.Get("Subject") }

// hsSMTP is an SMTP server (emersion/go-smtp) inside a namespace that
// records every mail it accepts.
type hsSMTP struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  []hsMail
	errs []string
}

func hsStartSMTP(t *testing.T, ns *testbed.Netns) *hsSMTP {
	t.Helper()
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hsSMTP{addr: netip.MustParseAddrPort(l.Addr().String())}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &hsSession{s: s}, nil }))
	srv.Domain = "smtp.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return s
}

func (s *hsSMTP) mails() []hsMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// waitMail waits for a mail whose subject ends with suffix, received
// after from.
func (s *hsSMTP) waitMail(t *testing.T, suffix string, from time.Time, within time.Duration) (hsMail, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, m := range s.mails() {
			if !m.at.Before(from) && strings.HasSuffix(m.subject(), suffix) {
				return m, true
			}
		}
		if time.Now().After(deadline) {
			return hsMail{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type hsSession struct {
	s    *hsSMTP
	from string
	rcpt []string
}

func (x *hsSession) Reset()        { x.from, x.rcpt = "", nil }
func (x *hsSession) Logout() error { return nil }
func (x *hsSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *hsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.rcpt = append(x.rcpt, to)
	return nil
}
func (x *hsSession) Data(r io.Reader) error {
	m, err := netmail.ReadMessage(r)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(m.Body)
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if err != nil {
		x.s.errs = append(x.s.errs, err.Error())
		return err
	}
	x.s.got = append(x.s.got, hsMail{at: time.Now(), from: x.from, rcpt: slices.Clone(x.rcpt), msg: m, body: string(body)})
	return nil
}

// hsHangingSMTP accepts connections inside ns and never says a word; it
// counts the connections.
func hsHangingSMTP(t *testing.T, ns *testbed.Netns) (netip.AddrPort, func() int) {
	t.Helper()
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return netip.MustParseAddrPort(l.Addr().String()), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// hsRefusingSMTP is a port of 127.0.0.1 in ns where nothing listens.
func hsRefusingSMTP(t *testing.T, ns *testbed.Netns) netip.AddrPort {
	t.Helper()
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	return a
}

// hsLab is the NAT lab of TestHealthChecks with HTTP_GET checkers, an lb.yaml
// with global_defs for mail, and the daemon.
type hsLab struct {
	top     *testbed.Topology
	servers []*hcServer
	cfg     string
	pin     string
	ctl     string
	d       *testbed.Process
	set     *maps.Set
}

func newHSLab(t *testing.T) *hsLab {
	t.Helper()
	requireNetns(t)
	top, err := testbed.NewNAT(t, testbed.Options{Reals: 3, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	l := &hsLab{top: top, cfg: filepath.Join(t.TempDir(), "lb.yaml"), pin: filepath.Join(bpffs(t), "xlbd"), ctl: ctlSocket(t)}
	for i, ns := range top.Reals {
		s := &hcServer{ns: ns, name: fmt.Sprintf("r%d", i+1)}
		s.mode.Store("")
		s.start(t)
		l.servers = append(l.servers, s)
	}
	return l
}

// write writes lb.yaml: global_defs mailing smtp as router routerID, and
// reals with smtp_alert off where quiet says so.
func (l *hsLab) write(t *testing.T, routerID string, smtpServer netip.AddrPort, timeout time.Duration, quiet map[int]bool) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs:\n  router_id: %s\n  notification_email: [%s]\n  notification_email_from: %s\n", routerID, strings.Join(hsTo, ", "), hsFrom)
	fmt.Fprintf(&b, "  smtp_server: {address: %s, port: %d}\n  smtp_connect_timeout: %d\n  smtp_alert: true\n",
		smtpServer.Addr(), smtpServer.Port(), int(timeout.Seconds()))
	fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: 80\n    protocol: TCP\n    lb_algo: rr\n    lb_kind: NAT\n    delay_loop: %d\n    real_servers:\n",
		l.top.VIP, int(hcDelayLoop.Seconds()))
	for i, a := range l.top.RealAddrs {
		fmt.Fprintf(&b, "      - address: %s\n        port: 8080\n", a)
		if quiet[i] {
			b.WriteString("        smtp_alert: false\n")
		}
		fmt.Fprintf(&b, "        checkers:\n          - HTTP_GET: { connect_timeout: %d, retry: %d, delay_before_retry: %d, urls: [ { path: /health, digest: %s } ] }\n",
			int(hcConnTimeout.Seconds()), hcRetry, int(hcRetryDelay.Seconds()), hcDigestOf("healthy"))
	}
	if err := os.WriteFile(l.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *hsLab) start(t *testing.T) {
	t.Helper()
	l.d = start(t, l.top.LB, xlbdBinary(t), "--config", l.cfg, "--pin-dir", l.pin, "--xdp-mode", "generic",
		"--control-socket", l.ctl, "--interface", l.top.LBFront, "--interface", l.top.LBBack)
	waitFor(t, l.d, "msg=ready")
	set, err := maps.OpenPinned(l.pin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	l.set = set
}

// rsSubject is keepalived's subject for real i going up or down.
func (l *hsLab) rsSubject(routerID string, i int, state string) string {
	return fmt.Sprintf("[%s] Realserver [%s]:tcp:8080 of virtual server [%s]:tcp:80 - %s", routerID, l.top.RealAddrs[i], l.top.VIP, state)
}

// watchGone polls the pinned reals map every millisecond, from now on,
// until real i is no longer a valid entry, and then sends when that was
// seen on the channel; it gives up, sending the zero time, after within.
func (l *hsLab) watchGone(t *testing.T, i int, within time.Duration) <-chan time.Time {
	t.Helper()
	id := weightRealID(t, l.set, l.top.RealAddrs[i])
	ch := make(chan time.Time, 1)
	go func() {
		deadline := time.Now().Add(within)
		for {
			v, err := l.set.Reals.Get(id)
			if err != nil || v.Flags&maps.RealValid == 0 || maps.Addr(v.Ip) != l.top.RealAddrs[i] {
				ch <- time.Now()
				return
			}
			if time.Now().After(deadline) {
				ch <- time.Time{}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return ch
}

// hsWaitLog waits until the daemon's output has s, at most until deadline.
func hsWaitLog(p *testbed.Process, s string, deadline time.Time) bool {
	for !strings.Contains(p.Output(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func TestHealthSMTPAlert(t *testing.T) {
	t.Run("delivered", testSMTPDelivered)
	t.Run("hanging server", func(t *testing.T) { testSMTPDead(t, true) })
	t.Run("refusing server", func(t *testing.T) { testSMTPDead(t, false) })
}

// r2 fails and recovers: one DOWN and one UP mail, worded as keepalived's,
// from notification_email_from to every notification_email. r3, with
// smtp_alert off, fails and recovers at the same time and mails nothing.
// A SIGHUP that moves smtp_server and router_id sends the next alert to
// the new server, under the new name.
func testSMTPDelivered(t *testing.T) {
	l := newHSLab(t)
	mx := hsStartSMTP(t, l.top.LB)
	quiet := map[int]bool{2: true}
	l.write(t, hsRouterID, mx.addr, 5*time.Second, quiet)
	l.start(t)

	tr := newPacedTraffic(l.top.Client.HTTPClient(), "http://"+l.top.VIP.String()+"/")
	defer tr.finish()
	time.Sleep(2 * hcDelayLoop)
	// At start keepalived mails the virtual server's quorum
	// (do_vs_notifies, init), and no real server that starts up.
	quorum := fmt.Sprintf("[%s] Virtualserver [%s]:tcp:80 - UP", hsRouterID, l.top.VIP)
	start := mx.mails()
	if got := hsSubjects(start); !slices.Equal(got, []string{quorum}) {
		t.Errorf("mails at start:\n  %s\nwant exactly:\n  %s", strings.Join(got, "\n  "), quorum)
	} else {
		hsCheckMail(t, start[0], quorum, "=> Starting with quorum up 1+0=1 <= 3 <=")
	}

	gone := l.watchGone(t, 1, hcBound+hsMailWithin)
	failed := time.Now()
	l.servers[1].stop()
	l.servers[2].stop()
	down, ok := mx.waitMail(t, " - DOWN", failed, hcBound+hsMailWithin)
	if !ok {
		logStatus(t, l.ctl)
		t.Fatalf("no DOWN mail within %v of r2 failing; mails: %v\n%s", hcBound+hsMailWithin, hsSubjects(mx.mails()), l.d.Output())
	}
	t.Logf("DOWN mail %v after r2 failed: %q", down.at.Sub(failed).Round(time.Millisecond), down.subject())
	hsCheckMail(t, down, l.rsSubject(hsRouterID, 1, "DOWN"), "=> CHECK failed on service : HTTP/SSL request failed <=")
	if at := <-gone; at.IsZero() {
		t.Errorf("r2 still in the data plane %v after it failed", hcBound+hsMailWithin)
	} else {
		t.Logf("r2 out of the data plane %v after it failed, its DOWN mail received %v after that",
			at.Sub(failed).Round(time.Millisecond), down.at.Sub(at).Round(time.Millisecond))
	}

	time.Sleep(time.Second) // r3's DOWN, had it been mailed
	restarted := time.Now()
	l.servers[1].start(t)
	l.servers[2].start(t)
	up, ok := mx.waitMail(t, " - UP", restarted, hcBackBound+hsMailWithin)
	if !ok {
		logStatus(t, l.ctl)
		t.Fatalf("no UP mail within %v of r2 recovering; mails: %v", hcBackBound+hsMailWithin, hsSubjects(mx.mails()))
	}
	t.Logf("UP mail %v after r2 recovered: %q", up.at.Sub(restarted).Round(time.Millisecond), up.subject())
	hsCheckMail(t, up, l.rsSubject(hsRouterID, 1, "UP"), "=> CHECK succeed on service <=")
	time.Sleep(time.Second) // r3's UP, had it been mailed

	// One mail per state change, none for r3.
	want := []string{quorum, l.rsSubject(hsRouterID, 1, "DOWN"), l.rsSubject(hsRouterID, 1, "UP")}
	if got := hsSubjects(mx.mails()); !slices.Equal(got, want) {
		t.Errorf("mails received:\n  %s\nwant exactly:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if n := strings.Count(l.d.Output(), "SMTP alert sent"); n != len(want) {
		t.Errorf("daemon logged %d × \"SMTP alert sent\", want %d", n, len(want))
	}
	time.Sleep(time.Until(restarted.Add(hcBackBound + time.Second)))
	if by := tr.servedSince(restarted.Add(hcBackBound)); by["r2"] == 0 {
		t.Errorf("r2 took no connection after it recovered: %v", by)
	}

	// A reload that moves smtp_server and renames the router: keepalived
	// rereads global_defs, so the next alert goes to the new server.
	mx2 := hsStartSMTP(t, l.top.LB)
	l.write(t, hsRouterID+"-2", mx2.addr, 5*time.Second, quiet)
	l.d.Signal(syscall.SIGHUP)
	waitFor(t, l.d, "msg=reloaded")
	failed = time.Now()
	l.servers[1].stop()
	if m, ok := mx2.waitMail(t, " - DOWN", failed, hcBound+hsMailWithin); ok {
		hsCheckMail(t, m, l.rsSubject(hsRouterID+"-2", 1, "DOWN"), "=> CHECK failed on service : HTTP/SSL request failed <=")
	} else {
		t.Errorf("after a SIGHUP that moved smtp_server to %s and router_id to %s-2, r2's DOWN mail did not reach the new server within %v; "+
			"the old server (%s) got: %v", mx2.addr, hsRouterID, hcBound+hsMailWithin, mx.addr, hsSubjects(mx.mails()[len(want):]))
	}
	if errs := tr.failedSince(failed.Add(hcBound)); len(errs) > 0 {
		t.Errorf("%d connections failed more than %v after r2 failed: %v", len(errs), hcBound, errs)
	}
}

// With smtp_server dead, r2 still leaves the pool within hcBound of failing
// and comes back within hcBackBound, and the daemon logs the mail it could
// not send.
func testSMTPDead(t *testing.T, hanging bool) {
	l := newHSLab(t)
	var srv netip.AddrPort
	conns := func() int { return -1 }
	if hanging {
		srv, conns = hsHangingSMTP(t, l.top.LB)
	} else {
		srv = hsRefusingSMTP(t, l.top.LB)
	}
	l.write(t, hsRouterID, srv, hsDeadTimeout, nil)
	l.start(t)

	tr := newPacedTraffic(l.top.Client.HTTPClient(), "http://"+l.top.VIP.String()+"/")
	defer tr.finish()
	time.Sleep(2 * hcDelayLoop)
	if by := tr.servedSince(time.Time{}); by["r2"] == 0 {
		t.Fatalf("r2 took no connection before it failed: %v", by)
	}

	goneCh := l.watchGone(t, 1, hcBound+hsDeadTimeout)
	failed := time.Now()
	l.servers[1].stop()
	gone := <-goneCh
	switch {
	case gone.IsZero():
		logStatus(t, l.ctl)
		t.Errorf("r2 still in the data plane %v after it failed", hcBound+hsDeadTimeout)
	case gone.Sub(failed) > hcBound:
		t.Errorf("r2 left the data plane %v after it failed, want within %v (delay_loop + retry × delay_before_retry + connect_timeout + 1 s) as without SMTP",
			gone.Sub(failed).Round(time.Millisecond), hcBound)
	default:
		t.Logf("r2 left the data plane %v after it failed (bound %v)", gone.Sub(failed).Round(time.Millisecond), hcBound)
	}
	settled := failed.Add(hcBound)
	time.Sleep(time.Until(settled.Add(2 * time.Second)))
	if by := tr.servedSince(settled); by["r2"] > 0 {
		t.Errorf("%d new connections went to r2 more than %v after it failed", by["r2"], hcBound)
	}
	if errs := tr.failedSince(settled); len(errs) > 0 {
		t.Errorf("%d connections failed more than %v after r2 failed: %v", len(errs), hcBound, errs)
	}

	restarted := time.Now()
	l.servers[1].start(t)
	time.Sleep(hcBackBound)
	back := time.Now()
	time.Sleep(2 * time.Second)
	if by := tr.servedSince(back); by["r2"] == 0 {
		logStatus(t, l.ctl)
		t.Errorf("r2 took no new connection %v after it recovered, with the SMTP server dead: %v", hcBackBound, by)
	}

	// The DOWN mail's failure is logged: at once when refused, after
	// smtp_connect_timeout when the server hangs.
	// The line about r2's DOWN mail (the quorum's at start fails too).
	notSent := "SMTP alert not sent\" server=" + srv.String() + " subject=\"" + l.rsSubject(hsRouterID, 1, "DOWN") + "\""
	logged := hsWaitLog(l.d, notSent, failed.Add(hcBound+hsDeadTimeout+2*time.Second))
	out := l.d.Output()
	if !logged {
		t.Errorf("the daemon did not log the failed delivery to %s (no %q):\n%s", srv, notSent, out)
	} else {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, notSent) {
				t.Logf("%s", line)
				if !strings.Contains(line, "level=WARN") {
					t.Errorf("the failed delivery is not logged as a warning: %s", line)
				}
			}
		}
	}
	if hanging {
		if n := conns(); n == 0 {
			t.Errorf("the hanging SMTP server got no connection: no mail was attempted")
		} else {
			t.Logf("the hanging SMTP server got %d connections; UP mail %v after r2 recovered still pending or failed", n, time.Since(restarted).Round(time.Millisecond))
		}
	}
	if strings.Contains(out, "SMTP alert sent") {
		t.Errorf("the daemon logged a mail as sent to a dead SMTP server:\n%s", out)
	}
}

func hsSubjects(ms []hsMail) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.subject())
	}
	return s
}

// hsCheckMail checks a mail against keepalived's: subject, body line,
// sender and recipients in the envelope and the headers.
func hsCheckMail(t *testing.T, m hsMail, subject, body string) {
	t.Helper()
	if got := m.subject(); got != subject {
		t.Errorf("subject\n got %q\nwant %q", got, subject)
	}
	if got := strings.TrimRight(m.body, "\r\n"); got != body {
		t.Errorf("body of %q\n got %q\nwant %q", subject, got, body)
	}
	if m.from != hsFrom {
		t.Errorf("MAIL FROM %q, want %q", m.from, hsFrom)
	}
	if !slices.Equal(slices.Sorted(slices.Values(m.rcpt)), slices.Sorted(slices.Values(hsTo))) {
		t.Errorf("RCPT TO %v, want %v", m.rcpt, hsTo)
	}
	if from, err := m.msg.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != hsFrom {
		t.Errorf("From: %q (%v), want %s", m.msg.Header.Get("From"), err, hsFrom)
	}
	to, err := m.msg.Header.AddressList("To")
	var addrs []string
	for _, a := range to {
		addrs = append(addrs, a.Address)
	}
	if err != nil || !slices.Equal(addrs, hsTo) {
		t.Errorf("To: %q (%v), want %v", m.msg.Header.Get("To"), err, hsTo)
	}
	if d, err := m.msg.Header.Date(); err != nil || time.Since(d) > time.Minute || time.Until(d) > time.Second {
		t.Errorf("Date: %q (%v), want about now", m.msg.Header.Get("Date"), err)
	}
	if x := m.msg.Header.Get("X-Mailer"); x == "" {
		t.Errorf("no X-Mailer header (keepalived writes one)")
	}
}
