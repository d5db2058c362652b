package health

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// probe runs one attempt of c against target with the given deadline.
func probe(t *testing.T, c config.Checker, target netip.AddrPort, o ProbeOptions, timeout time.Duration) Result {
	t.Helper()
	p, err := NewProber(c, target, o)
	if err != nil {
		t.Fatalf("NewProber: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Probe(ctx)
}

func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// closedPort returns a loopback address:port nothing listens on.
func closedPort(t *testing.T, network string) netip.AddrPort {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return addrOf(t, c.LocalAddr())
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return addrOf(t, l.Addr())
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func httpChecker(typ config.CheckerType, urls ...config.URL) config.Checker {
	return config.Checker{Type: typ, ConnectTimeout: time.Second, HTTP: &config.HTTPCheck{URLs: urls, HTTPProtocol: "1.0"}}
}

func url(path string, codes ...config.StatusRange) config.URL {
	if len(codes) == 0 {
		codes = []config.StatusRange{{Lo: 200, Hi: 299}}
	}
	return config.URL{Path: path, StatusCodes: codes}
}

func webHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/302", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("0123456789", 100000)) // no Content-Length: read to EOF
	})
	return mux
}

func TestTCPCheck(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := config.Checker{Type: config.CheckTCP, ConnectTimeout: time.Second}
	if r := probe(t, c, addrOf(t, l.Addr()), ProbeOptions{}, time.Second); !r.OK || r.Weight != NoWeight {
		t.Errorf("listening port: %+v, want OK", r)
	}
	if r := probe(t, c, closedPort(t, "tcp"), ProbeOptions{}, time.Second); r.OK || r.Reason != "connection refused" {
		t.Errorf("closed port: %+v, want connection refused", r)
	}
}

func TestConnectAndBindOverrides(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := addrOf(t, l.Addr())
	bindPort := closedPort(t, "tcp").Port()
	peer := make(chan netip.AddrPort, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			peer <- addrOf(t, c.RemoteAddr())
			c.Close()
		}
	}()
	c := config.Checker{
		Type: config.CheckTCP, ConnectTimeout: time.Second,
		ConnectIP: netip.MustParseAddr("127.0.0.1"), ConnectPort: srv.Port(),
		BindTo: netip.MustParseAddr("127.0.0.1"), BindPort: bindPort,
	}
	// The real server's own address:port is closed; connect_port wins.
	if r := probe(t, c, closedPort(t, "tcp"), ProbeOptions{}, time.Second); !r.OK {
		t.Fatalf("got %+v, want OK through connect_ip/connect_port", r)
	}
	if got := <-peer; got.Port() != bindPort {
		t.Errorf("server saw the check from %v, want port %d (bind_port)", got, bindPort)
	}
}

func TestHTTPGet(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(webHandler())
	t.Cleanup(srv.Close)
	target := addrOf(t, srv.Listener.Addr())
	withDigest := func(u config.URL, d string) config.URL { u.Digest = d; return u }

	for _, tt := range []struct {
		name   string
		urls   []config.URL
		ok     bool
		reason string
	}{
		{"200", []config.URL{url("/ok")}, true, "status 200"},
		{"503", []config.URL{url("/503")}, false, "status 503"},
		{"503 accepted", []config.URL{url("/503", config.StatusRange{Lo: 500, Hi: 503})}, true, "status 503"},
		{"302 in a list", []config.URL{url("/302", config.StatusRange{Lo: 200, Hi: 200}, config.StatusRange{Lo: 302, Hi: 302})}, true, "status 302"},
		{"404", []config.URL{url("/nope")}, false, "status 404"},
		{"digest", []config.URL{withDigest(url("/ok"), md5hex("hello"))}, true, "status 200"},
		{"digest upper case", []config.URL{withDigest(url("/ok"), strings.ToUpper(md5hex("hello")))}, true, "status 200"},
		{"digest mismatch", []config.URL{withDigest(url("/ok"), md5hex("goodbye"))}, false, "digest mismatch"},
		{"big body digest", []config.URL{withDigest(url("/big"), md5hex(strings.Repeat("0123456789", 100000)))}, true, "status 200"},
		{"all urls pass", []config.URL{url("/ok"), withDigest(url("/ok"), md5hex("hello"))}, true, "status 200"},
		{"one url fails", []config.URL{url("/ok"), url("/503")}, false, "status 503 (/503)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := probe(t, httpChecker(config.CheckHTTP, tt.urls...), target, ProbeOptions{}, 2*time.Second)
			if r.OK != tt.ok || r.Reason != tt.reason || r.Weight != NoWeight {
				t.Errorf("got %+v, want OK=%v reason %q", r, tt.ok, tt.reason)
			}
		})
	}

	if r := probe(t, httpChecker(config.CheckHTTP, url("/ok")), closedPort(t, "tcp"), ProbeOptions{}, time.Second); r.OK || r.Reason != "connection refused" {
		t.Errorf("closed port: %+v, want connection refused", r)
	}
}

// rawServer answers every connection with reply after reading the
// request's header, and records the requests.
type rawServer struct {
	l        net.Listener
	mu       sync.Mutex
	requests []string
}

func newRawServer(t *testing.T, serve func(net.Conn)) *rawServer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var req strings.Builder
				for {
					line, err := br.ReadString('\n')
					req.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				s.mu.Lock()
				s.requests = append(s.requests, req.String())
				s.mu.Unlock()
				serve(c)
			}()
		}
	}()
	return s
}

func (s *rawServer) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return ""
	}
	return s.requests[len(s.requests)-1]
}

func TestHTTPRequestAsKeepalived(t *testing.T) {
	t.Parallel()
	s := newRawServer(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") })
	target := addrOf(t, s.l.Addr())
	for _, tt := range []struct {
		name        string
		proto       string
		urlVhost    string
		checkVhost  string
		optVhost    string
		wantRequest string
	}{
		{"1.0 no vhost", "1.0", "", "", "", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: " + target.String() + "\r\n\r\n"},
		{"1.0C", "1.0C", "", "", "", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: " + target.String() + "\r\n\r\n"},
		{"1.1", "1.1", "", "c.example", "", "GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: c.example\r\n\r\n"},
		{"url vhost wins", "1.0", "u.example", "c.example", "v.example", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: u.example\r\n\r\n"},
		{"virtual server vhost", "1.0", "", "", "v.example", "GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: v.example\r\n\r\n"},
	} {
		u := url("/p?q=1")
		u.Virtualhost = tt.urlVhost
		c := httpChecker(config.CheckHTTP, u)
		c.HTTP.HTTPProtocol, c.HTTP.Virtualhost = tt.proto, tt.checkVhost
		r := probe(t, c, target, ProbeOptions{Virtualhost: tt.optVhost}, time.Second)
		if !r.OK {
			t.Errorf("%s: %+v", tt.name, r)
		}
		if got := s.last(); got != tt.wantRequest {
			t.Errorf("%s: request\n%q\nwant\n%q", tt.name, got, tt.wantRequest)
		}
	}
}

func TestHTTPBadAnswers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, answer, reason string
	}{
		{"empty", "", "no HTTP response"},
		{"garbage", "hello there\r\n\r\n", "no HTTP response"},
		{"no status", "HTTP/1.0\r\n\r\n", "no HTTP response"},
		{"truncated header", "HTTP/1.0 200 OK\r\nServer: x\r\n", "connection closed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRawServer(t, func(c net.Conn) { io.WriteString(c, tt.answer) })
			r := probe(t, httpChecker(config.CheckHTTP, url("/")), addrOf(t, s.l.Addr()), ProbeOptions{}, time.Second)
			if r.OK || r.Reason != tt.reason {
				t.Errorf("got %+v, want failure %q", r, tt.reason)
			}
		})
	}
}

// TestHTTPShortBody: like keepalived, a body shorter than its
// Content-Length is only worth a log line; the digest still judges it.
func TestHTTPShortBody(t *testing.T) {
	t.Parallel()
	s := newRawServer(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc") })
	target := addrOf(t, s.l.Addr())
	if r := probe(t, httpChecker(config.CheckHTTP, url("/")), target, ProbeOptions{}, time.Second); !r.OK {
		t.Errorf("got %+v, want OK", r)
	}
	u := url("/")
	u.Digest = md5hex("abc")
	if r := probe(t, httpChecker(config.CheckHTTP, u), target, ProbeOptions{}, time.Second); !r.OK {
		t.Errorf("digest of what came: got %+v, want OK", r)
	}
}

// TestHTTPTrickle: a server that sends its answer one byte at a time,
// each byte well within the timeout, fails the check at the deadline:
// connect_timeout bounds the whole attempt, not each read.
func TestHTTPTrickle(t *testing.T) {
	t.Parallel()
	answer := "HTTP/1.0 200 OK\r\n\r\n" + strings.Repeat("x", 40)
	for _, tt := range []struct {
		name string
		from int // the bytes before this offset come at once
	}{
		{"header", 0},
		{"body", strings.Index(answer, "\r\n\r\n") + 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRawServer(t, func(c net.Conn) {
				io.WriteString(c, answer[:tt.from])
				for i := tt.from; i < len(answer); i++ {
					if _, err := io.WriteString(c, answer[i:i+1]); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
			const timeout = 500 * time.Millisecond
			r := probe(t, httpChecker(config.CheckHTTP, url("/")), addrOf(t, s.l.Addr()), ProbeOptions{}, timeout)
			if r.OK || r.Reason != "timeout" {
				t.Errorf("got %+v, want a timeout", r)
			}
			if r.Took < timeout-50*time.Millisecond || r.Took > timeout+time.Second {
				t.Errorf("took %v, want about %v", r.Took, timeout)
			}
		})
	}
}

// TestHTTPNoDeadlineUsesConnectTimeout: a caller that sets no deadline
// still gets one, the checker's connect_timeout.
func TestHTTPNoDeadlineUsesConnectTimeout(t *testing.T) {
	t.Parallel()
	s := newRawServer(t, func(c net.Conn) { time.Sleep(3 * time.Second) })
	c := httpChecker(config.CheckHTTP, url("/"))
	c.ConnectTimeout = 300 * time.Millisecond
	p, err := NewProber(c, addrOf(t, s.l.Addr()), ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Probe(context.Background())
	if r.OK || r.Reason != "timeout" || r.Took > time.Second {
		t.Errorf("got %+v, want a timeout after about 300ms", r)
	}
}

func TestSSLGet(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sni []string
	srv := httptest.NewUnstartedServer(webHandler())
	srv.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = append(sni, h.ServerName)
		mu.Unlock()
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close()
	target := addrOf(t, srv.Listener.Addr())
	lastSNI := func() string {
		mu.Lock()
		defer mu.Unlock()
		return sni[len(sni)-1]
	}

	u := url("/ok")
	u.Digest = md5hex("hello")
	c := httpChecker(config.CheckSSL, u)
	// The test server's certificate is self-signed: keepalived does not
	// verify, and neither does the check.
	if r := probe(t, c, target, ProbeOptions{}, 2*time.Second); !r.OK {
		t.Fatalf("SSL_GET: %+v", r)
	}
	if got := lastSNI(); got != "" {
		t.Errorf("SNI %q sent without enable_sni", got)
	}

	c.HTTP.EnableSNI, c.HTTP.Virtualhost = true, "www.example.com"
	if r := probe(t, c, target, ProbeOptions{}, 2*time.Second); !r.OK {
		t.Fatalf("SSL_GET with SNI: %+v", r)
	}
	if got := lastSNI(); got != "www.example.com" {
		t.Errorf("SNI %q, want the virtualhost", got)
	}
	c.HTTP.SNIName = "sni.example.com"
	if r := probe(t, c, target, ProbeOptions{}, 2*time.Second); !r.OK {
		t.Fatalf("SSL_GET with sni_name: %+v", r)
	}
	if got := lastSNI(); got != "sni.example.com" {
		t.Errorf("SNI %q, want sni_name", got)
	}

	c503 := httpChecker(config.CheckSSL, url("/503"))
	if r := probe(t, c503, target, ProbeOptions{}, 2*time.Second); r.OK || r.Reason != "status 503" {
		t.Errorf("SSL_GET /503: %+v", r)
	}
	// TLS to a plain HTTP server fails the handshake.
	plain := httptest.NewServer(webHandler())
	defer plain.Close()
	if r := probe(t, c503, addrOf(t, plain.Listener.Addr()), ProbeOptions{}, 2*time.Second); r.OK || !strings.HasPrefix(r.Reason, "tls: ") {
		t.Errorf("SSL_GET against plain HTTP: %+v", r)
	}
}

func TestNewProberErrors(t *testing.T) {
	t.Parallel()
	target := netip.MustParseAddrPort("127.0.0.1:80")
	for _, c := range []config.Checker{
		{Type: "BFD_CHECK"},
		{Type: config.CheckHTTP},
		{Type: config.CheckMisc},
		{Type: config.CheckFile, FileCheck: &config.FileCheck{TrackFile: "undefined-name"}},
		{Type: config.CheckDNS, DNS: &config.DNSCheck{Type: "BOGUS"}},
	} {
		if _, err := NewProber(c, target, ProbeOptions{}); err == nil {
			t.Errorf("%s: no error", c.Type)
		}
	}
	if _, err := NewProber(config.Checker{Type: config.CheckTCP}, netip.MustParseAddrPort("127.0.0.1:0"), ProbeOptions{}); err == nil {
		t.Error("TCP_CHECK without a port: no error")
	}
}
