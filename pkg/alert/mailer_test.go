package alert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	netmail "net/mail"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xlbd/xlbd/pkg/config"
)

// received is one message the test SMTP server accepted.
type received struct {
	from string
	to   []string
	data []byte
}

// smtpServer is an in-process SMTP server on 127.0.0.1 that records what
// it accepts.
type smtpServer struct {
	addr string
	msgs chan received
}

func startSMTP(t *testing.T, l net.Listener, tlsConfig *tls.Config) *smtpServer {
	t.Helper()
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &smtpServer{addr: l.Addr().String(), msgs: make(chan received, 16)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{msgs: s.msgs}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = tlsConfig
	srv.ReadTimeout = 5 * time.Second
	srv.WriteTimeout = 5 * time.Second
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return s
}

// wait returns the next message, failing the test after d.
func (s *smtpServer) wait(t *testing.T, d time.Duration) received {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(d):
		t.Fatalf("no mail reached %s within %v", s.addr, d)
	}
	return received{}
}

type session struct {
	msgs chan<- received
	cur  received
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.msgs <- s.cur
	return nil
}

// hangingServer accepts TCP connections and never says a word.
func hangingServer(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
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
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l
}

func global(addr string, timeout time.Duration) config.Global {
	ap := netip.MustParseAddrPort(addr)
	return config.Global{
		RouterID:              "LB_EDGE_1",
		NotificationEmail:     []string{"ops@example.com", "On call <oncall@example.com>"},
		NotificationEmailFrom: "keepalived@example.com",
		SMTPServer:            ap.Addr().String(),
		SMTPPort:              ap.Port(),
		SMTPConnectTimeout:    timeout,
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run starts m.Run and stops it (waiting for it) when the test ends, so no
// worker logs after the test has returned.
func run(t *testing.T, m *Mailer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// eventually waits up to d for cond.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, d)
}

func TestMailArrives(t *testing.T) {
	srv := startSMTP(t, nil, nil)
	m := New(global(srv.addr, 5*time.Second), testLogger(t))
	if m == nil {
		t.Fatal("New returned nil")
	}
	run(t, m)

	at := time.Date(2026, 3, 1, 9, 44, 8, 0, time.FixedZone("", 3600))
	a := RealServerAlert(vsTCP, rs1, false, CheckerBody(config.CheckTCP, false, "timeout"))
	a.At = at
	m.Send(a)
	got := srv.wait(t, 5*time.Second)

	if got.from != "keepalived@example.com" {
		t.Errorf("MAIL FROM %q", got.from)
	}
	if want := []string{"ops@example.com", "oncall@example.com"}; !slices.Equal(got.to, want) {
		t.Errorf("RCPT TO %q, want %q", got.to, want)
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, got.data)
	}
	for h, want := range map[string]string{
		"Subject":  "[LB_EDGE_1] Realserver [192.168.1.10]:tcp:8080 of virtual server [10.0.0.1]:tcp:80 - DOWN",
		"From":     "<keepalived@example.com>",
		"To":       `<ops@example.com>, "On call" <oncall@example.com>`,
		"X-Mailer": "xlbd",
		"Date":     "Sun, 01 Mar 2026 09:44:08 +0100",
	} {
		if g := msg.Header.Get(h); g != want {
			t.Errorf("%s: %q, want %q", h, g, want)
		}
	}
	body, _ := io.ReadAll(msg.Body)
	if want := "=> TCP CHECK failed on service <=\r\n"; string(body) != want {
		t.Errorf("body %q, want %q\nmail:\n%s", body, want, got.data)
	}
	eventually(t, 2*time.Second, "sent counted", func() bool { return m.Sent() == 1 })
	if m.Failed() != 0 || m.Dropped() != 0 {
		t.Errorf("failed %d dropped %d, want 0 0", m.Failed(), m.Dropped())
	}
}

// keepalived never uses STARTTLS; neither does xlbd, so a relay offering it
// with a certificate nobody can verify still gets the alert in plain text.
func TestNoSTARTTLS(t *testing.T) {
	srv := startSMTP(t, nil, selfSigned(t))
	m := New(global(srv.addr, 5*time.Second), testLogger(t))
	run(t, m)
	m.Send(VRRPAlert("VI_1", StateMaster))
	got := srv.wait(t, 5*time.Second)
	msg, err := netmail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	if s := msg.Header.Get("Subject"); s != "[LB_EDGE_1] VRRP Instance VI_1 - Entering MASTER state" {
		t.Errorf("Subject %q", s)
	}
}

// A server that accepts the connection and never answers costs the caller
// nothing, fails the mail after smtp_connect_timeout, and does not hold up a
// mailer whose server works.
func TestHangingServer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hang := hangingServer(t)
	dead := New(global(hang.Addr().String(), timeout), testLogger(t))
	run(t, dead)
	srv := startSMTP(t, nil, nil)
	live := New(global(srv.addr, timeout), testLogger(t))
	run(t, live)

	began := time.Now()
	dead.Send(VRRPAlert("VI_1", StateMaster))
	live.Send(VRRPAlert("VI_1", StateBackup))
	if d := time.Since(began); d > 50*time.Millisecond {
		t.Errorf("Send took %v", d)
	}
	srv.wait(t, 2*time.Second)
	if d := time.Since(began); d >= timeout {
		t.Errorf("the working server's mail took %v, as long as the hanging one's timeout", d)
	}
	eventually(t, 5*time.Second, "hanging delivery failed", func() bool { return dead.Failed() == 1 })
	if d := time.Since(began); d < timeout || d > timeout+2*time.Second {
		t.Errorf("delivery failed after %v, want about %v", d, timeout)
	}
	if dead.Sent() != 0 || live.Sent() != 1 {
		t.Errorf("sent: hanging %d, live %d", dead.Sent(), live.Sent())
	}
}

// A server that speaks too slowly is cut off at smtp_connect_timeout
// overall, not per command.
func TestSlowServerBoundedOverall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// A greeting that dribbles out a byte every 50 ms: each read
		// finds data well within the timeout.
		for _, b := range []byte("220-slow\r\n220-slow\r\n220-slow\r\n220 slow\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })

	const timeout = 400 * time.Millisecond
	m := New(global(l.Addr().String(), timeout), testLogger(t))
	run(t, m)
	began := time.Now()
	m.Send(VRRPAlert("VI_1", StateFault))
	eventually(t, 5*time.Second, "slow delivery failed", func() bool { return m.Failed() == 1 })
	if d := time.Since(began); d > timeout+time.Second {
		t.Errorf("failed after %v, want about %v", d, timeout)
	}
}

// An SMTP server that is down and comes back: the alert sent meanwhile
// fails, the next one goes out.
func TestServerBack(t *testing.T) {
	const timeout = 300 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens: connection refused

	m := New(global(addr, timeout), testLogger(t))
	run(t, m)
	m.Send(VRRPAlert("VI_1", StateBackup))
	eventually(t, 5*time.Second, "refused delivery failed", func() bool { return m.Failed() == 1 })

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := startSMTP(t, l, nil)
	m.Send(VRRPAlert("VI_1", StateMaster))
	got := srv.wait(t, 5*time.Second)
	msg, err := netmail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	if s := msg.Header.Get("Subject"); s != "[LB_EDGE_1] VRRP Instance VI_1 - Entering MASTER state" {
		t.Errorf("Subject %q", s)
	}
	eventually(t, 2*time.Second, "sent counted", func() bool { return m.Sent() == 1 })
}

// Stopping the daemon does not wait for a hanging SMTP server.
func TestRunStopsPromptly(t *testing.T) {
	hang := hangingServer(t)
	m := New(global(hang.Addr().String(), 30*time.Second), testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.Send(VRRPAlert("VI_1", StateMaster))
	eventually(t, 2*time.Second, "alert taken", func() bool { return m.Queued() == 0 })
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run still waiting for the SMTP server after ctx ended")
	}
	if m.Failed() != 1 {
		t.Errorf("failed %d, want 1", m.Failed())
	}
}

func TestQueueOverflow(t *testing.T) {
	m := New(global("127.0.0.1:25", time.Second), testLogger(t)) // Run not started: nothing drains
	began := time.Now()
	for range QueueSize + 3 {
		m.Send(VRRPAlert("VI_1", StateMaster))
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("%d Sends took %v", QueueSize+3, d)
	}
	if m.Dropped() != 3 || m.Queued() != QueueSize {
		t.Errorf("dropped %d queued %d, want 3 %d", m.Dropped(), m.Queued(), QueueSize)
	}
	m.Send(Alert{}) // the zero Alert is no alert
	if m.Dropped() != 3 {
		t.Errorf("zero Alert counted as dropped")
	}
}

// Drain delivers what was queued after Run stopped: shutdown alerts.
func TestDrain(t *testing.T) {
	srv := startSMTP(t, nil, nil)
	m := New(global(srv.addr, 5*time.Second), testLogger(t))
	m.Send(VRRPAlert("VI_1", StateStop))
	m.Send(VRRPGroupAlert("G1", StateStop))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.Drain(ctx)
	if m.Sent() != 2 || m.Queued() != 0 {
		t.Errorf("sent %d queued %d, want 2 0", m.Sent(), m.Queued())
	}
	srv.wait(t, time.Second)
	srv.wait(t, time.Second)
}

func TestDisabled(t *testing.T) {
	for name, g := range map[string]config.Global{
		"no server":     {NotificationEmail: []string{"ops@example.com"}},
		"no recipients": {SMTPServer: "127.0.0.1"},
		"bad recipient": {SMTPServer: "127.0.0.1", NotificationEmail: []string{"not an address"}},
		"bad from":      {SMTPServer: "127.0.0.1", NotificationEmail: []string{"ops@example.com"}, NotificationEmailFrom: "a@@b"},
	} {
		t.Run(name, func(t *testing.T) {
			m := New(g, testLogger(t))
			if m != nil {
				t.Fatalf("New = %+v, want nil", m)
			}
			m.Send(VRRPAlert("VI_1", StateMaster))
			m.Drain(context.Background())
			if m.Sent()+m.Failed()+m.Dropped() != 0 || m.Queued() != 0 {
				t.Error("nil Mailer counted something")
			}
			// Run on a nil Mailer lasts until ctx ends, as a daemon task must.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			began := time.Now()
			if err := m.Run(ctx); err != nil || time.Since(began) < 20*time.Millisecond {
				t.Errorf("Run = %v after %v", err, time.Since(began))
			}
		})
	}
}

// keepalived's defaults: router_id is the host name, the sender
// user@host, the port 25 and the timeout 30 s.
func TestDefaults(t *testing.T) {
	m := New(config.Global{SMTPServer: "[::1]", NotificationEmail: []string{"ops@example.com", "bad"}}, testLogger(t))
	if m == nil {
		t.Fatal("New returned nil")
	}
	if m.routerID == "" || m.routerID != m.helo {
		t.Errorf("router id %q, helo %q: want the host name", m.routerID, m.helo)
	}
	if m.from != "" && m.from[len(m.from)-len(m.helo)-1:] != "@"+m.helo {
		t.Errorf("from %q, want user@%s", m.from, m.helo)
	}
	if m.addr != "[::1]:25" || m.timeout != 30*time.Second {
		t.Errorf("addr %s timeout %v", m.addr, m.timeout)
	}
	if !slices.Equal(m.to, []string{"ops@example.com"}) {
		t.Errorf("to %q", m.to)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.invalid"},
		DNSNames:     []string{"relay.invalid"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
