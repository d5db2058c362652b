package health

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/xlbd/xlbd/pkg/config"
)

func netip0() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

// dnsServer serves a small zone on a loopback UDP port.
func dnsServer(t *testing.T) (netip.AddrPort, func() *dns.Msg) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last *dns.Msg
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		last = q.Copy()
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		switch q.Question[0].Name {
		case "www.example.com.":
			rr, _ := dns.NewRR("www.example.com. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case "empty.example.com.", ".":
		case "nx.example.com.":
			m.Rcode = dns.RcodeNameError
		case "refused.example.com.":
			m.Rcode = dns.RcodeRefused
		case "silent.example.com.":
			return
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return addrOf(t, pc.LocalAddr()), func() *dns.Msg {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

func TestDNSCheck(t *testing.T) {
	t.Parallel()
	target, lastQuery := dnsServer(t)
	for _, tt := range []struct {
		typ, name string
		ok        bool
		reason    string
	}{
		{"A", "www.example.com", true, ""},
		{"AAAA", "empty.example.com", true, ""}, // NOERROR without records is up
		{"", "", true, ""},                      // keepalived's default: SOA of "."
		{"A", "nx.example.com", false, "rcode NXDOMAIN"},
		{"MX", "refused.example.com", false, "rcode REFUSED"},
		{"A", "silent.example.com", false, "timeout"},
	} {
		c := config.Checker{Type: config.CheckDNS, DNS: &config.DNSCheck{Type: tt.typ, Name: tt.name}}
		r := probe(t, c, target, ProbeOptions{}, 300*time.Millisecond)
		if r.OK != tt.ok || r.Reason != tt.reason {
			t.Errorf("%s %s: got %+v, want OK=%v %q", tt.typ, tt.name, r, tt.ok, tt.reason)
		}
	}
	q := lastQuery()
	if !q.RecursionDesired || q.Question[0].Qclass != dns.ClassINET {
		t.Errorf("query %v: want RD set and class IN, as keepalived", q)
	}
	c := config.Checker{Type: config.CheckDNS}
	if r := probe(t, c, target, ProbeOptions{}, time.Second); !r.OK {
		t.Errorf("default query: %+v", r)
	}
	if q := lastQuery(); q.Question[0].Name != "." || q.Question[0].Qtype != dns.TypeSOA {
		t.Errorf("default query %v, want . SOA", q.Question[0])
	}
	if r := probe(t, c, closedPort(t, "udp"), ProbeOptions{}, time.Second); r.OK || r.Reason != "connection refused" {
		t.Errorf("closed port: got %+v, want connection refused", r)
	}
}

type smtpBackend struct {
	mu    sync.Mutex
	helos []string
}

func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.helos = append(b.helos, c.Hostname())
	b.mu.Unlock()
	return smtpSession{}, nil
}

type smtpSession struct{}

func (smtpSession) Reset()                               {}
func (smtpSession) Logout() error                        { return nil }
func (smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

func (b *smtpBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.helos[len(b.helos)-1]
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSMTPCheck(t *testing.T) {
	t.Parallel()
	be := &smtpBackend{}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	l := listenLoopback(t)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	target := addrOf(t, l.Addr())

	c := config.Checker{Type: config.CheckSMTP, SMTP: &config.SMTPCheck{}}
	if r := probe(t, c, target, ProbeOptions{}, time.Second); !r.OK {
		t.Fatalf("go-smtp server: %+v", r)
	}
	if got := be.last(); got != smtpDefaultHelo {
		t.Errorf("HELO %q, want keepalived's default %q", got, smtpDefaultHelo)
	}
	c.SMTP.HeloName = "lb1.example.com"
	if r := probe(t, c, target, ProbeOptions{}, time.Second); !r.OK {
		t.Fatalf("go-smtp server: %+v", r)
	}
	if got := be.last(); got != "lb1.example.com" {
		t.Errorf("HELO %q, want helo_name", got)
	}
	if r := probe(t, c, closedPort(t, "tcp"), ProbeOptions{}, time.Second); r.OK || r.Reason != "connection refused" {
		t.Errorf("closed port: got %+v", r)
	}
}

// TestSMTPConversations runs hand-rolled servers that go wrong at each
// step.
func TestSMTPConversations(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		banner string
		helo   string // answer to HELO
		quit   string // answer to QUIT
		ok     bool
		reason string
	}{
		{"good", "220 mx ready\r\n", "250 mx\r\n", "221 bye\r\n", true, ""},
		{"multi-line banner", "220-mx ready\r\n220 really\r\n", "250 mx\r\n", "221 bye\r\n", true, ""},
		{"busy", "554 go away\r\n", "", "", false, "banner 554"},
		{"helo refused", "220 mx\r\n", "550 no\r\n", "", false, "HELO 550"},
		{"no banner", "", "", "", false, "timeout"},
		{"closed after helo", "220 mx\r\n", "250 mx\r\n", "", false, "closed before QUIT reply"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := listenLoopback(t)
			t.Cleanup(func() { l.Close() })
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if tt.banner == "" {
					time.Sleep(time.Second)
					return
				}
				io.WriteString(c, tt.banner)
				br := bufio.NewReader(c)
				for _, answer := range []string{tt.helo, tt.quit} {
					if _, err := br.ReadString('\n'); err != nil || answer == "" {
						return
					}
					io.WriteString(c, answer)
				}
			}()
			c := config.Checker{Type: config.CheckSMTP}
			r := probe(t, c, addrOf(t, l.Addr()), ProbeOptions{}, 300*time.Millisecond)
			if r.OK != tt.ok || r.Reason != tt.reason {
				t.Errorf("got %+v, want OK=%v %q", r, tt.ok, tt.reason)
			}
		})
	}
}

// udpServer answers each datagram with reply(datagram), or not at all
// when reply returns nil.
func udpServer(t *testing.T, reply func([]byte) []byte) (netip.AddrPort, func() []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	var last []byte
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			last = bytes.Clone(buf[:n])
			mu.Unlock()
			if r := reply(buf[:n]); r != nil {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	return addrOf(t, pc.LocalAddr()), func() []byte { mu.Lock(); defer mu.Unlock(); return last }
}

func TestUDPCheck(t *testing.T) {
	t.Parallel()
	echo, _ := udpServer(t, func(b []byte) []byte { return b })
	silent, _ := udpServer(t, func([]byte) []byte { return nil })
	big, _ := udpServer(t, func([]byte) []byte { return make([]byte, 300) })
	closed := closedPort(t, "udp")
	const timeout = 300 * time.Millisecond
	for _, tt := range []struct {
		name   string
		target netip.AddrPort
		u      config.UDPCheck
		ok     bool
		reason string
	}{
		{"echo", echo, config.UDPCheck{}, true, ""},
		{"silent passes without require_reply", silent, config.UDPCheck{}, true, "no reply, no ICMP error"},
		{"closed port", closed, config.UDPCheck{}, false, "connection refused"},
		{"closed port, require_reply", closed, config.UDPCheck{RequireReply: true}, false, "connection refused"},
		{"silent, require_reply", silent, config.UDPCheck{RequireReply: true}, false, "no reply"},
		{"echo, require_reply", echo, config.UDPCheck{RequireReply: true}, true, ""},
		{"reply matches", echo, config.UDPCheck{Payload: []byte{0xab, 0xcd, 0xef}, RequireReply: true, Reply: "abcdef"}, true, ""},
		{"reply matches with x", echo, config.UDPCheck{Payload: []byte{0xab, 0xcd, 0xef}, RequireReply: true, Reply: "axxdxx"}, true, ""},
		{"reply longer than pattern", echo, config.UDPCheck{Payload: []byte{0xab, 0xcd, 0xef}, RequireReply: true, Reply: "ab"}, true, ""},
		{"reply shorter than pattern", echo, config.UDPCheck{Payload: []byte{0xab}, RequireReply: true, Reply: "abcdef"}, true, ""},
		{"reply mismatch", echo, config.UDPCheck{Payload: []byte{0xab, 0xcd, 0xef}, RequireReply: true, Reply: "abce"}, false, "reply mismatch"},
		{"reply over 255 bytes", big, config.UDPCheck{RequireReply: true, Reply: "00"}, false, "reply mismatch"},
		{"big reply without pattern", big, config.UDPCheck{RequireReply: true}, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := tt.u
			c := config.Checker{Type: config.CheckUDP, UDP: &u}
			r := probe(t, c, tt.target, ProbeOptions{}, timeout)
			if r.OK != tt.ok || r.Reason != tt.reason {
				t.Errorf("got %+v, want OK=%v %q", r, tt.ok, tt.reason)
			}
		})
	}
	t.Run("default payload", func(t *testing.T) {
		t.Parallel()
		echo, lastEcho := udpServer(t, func(b []byte) []byte { return b })
		c := config.Checker{Type: config.CheckUDP, UDP: &config.UDPCheck{RequireReply: true}}
		if r := probe(t, c, echo, ProbeOptions{}, timeout); !r.OK {
			t.Fatalf("got %+v", r)
		}
		if got, want := string(lastEcho()), "keepalived check - keepalived ch"; got != want {
			t.Errorf("payload %q, want %q", got, want)
		}
	})
}

func TestPingCheck(t *testing.T) {
	t.Parallel()
	conn, raw, err := listenICMP(false, netip.Addr{})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("skipped: no ICMP socket allowed (not root, and net.ipv4.ping_group_range excludes this group): %v", err)
		}
		t.Fatal(err)
	}
	conn.Close()
	t.Logf("ICMP socket kind: raw=%v", raw)
	c := config.Checker{Type: config.CheckPing}
	if r := probe(t, c, netip.MustParseAddrPort("127.0.0.1:0"), ProbeOptions{}, time.Second); !r.OK {
		t.Errorf("ping 127.0.0.1: %+v", r)
	}
}
