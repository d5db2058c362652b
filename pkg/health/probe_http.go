package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// maxHeader bounds an answer's header; keepalived's is 4 KiB.
const maxHeader = 64 << 10

// httpProber is HTTP_GET and SSL_GET. It speaks HTTP by hand, as
// keepalived does, rather than through net/http: the request is
// keepalived's byte for byte, and the digest is the MD5 of the body bytes
// as they arrive (with HTTP/1.1 a chunked body is hashed with its chunk
// framing, as keepalived and genhash do).
type httpProber struct {
	ep    endpoint
	tls   bool
	proto string // 1.0, 1.0C or 1.1
	urls  []httpURL
}

type httpURL struct {
	path   string
	host   string // Host header
	sni    string // "" sends none
	digest string
	codes  []config.StatusRange
}

func newHTTPProber(c config.Checker, ep endpoint, o ProbeOptions) (Prober, error) {
	h := c.HTTP
	if h == nil || len(h.URLs) == 0 {
		return nil, fmt.Errorf("%s: no url", c.Type)
	}
	p := &httpProber{ep: ep, tls: c.Type == config.CheckSSL, proto: h.HTTPProtocol}
	if p.proto == "" {
		p.proto = config.DefaultHTTPProtocol
	}
	for _, u := range h.URLs {
		vhost := firstSet(u.Virtualhost, h.Virtualhost, o.Virtualhost)
		hu := httpURL{path: u.Path, host: vhost, digest: strings.ToLower(u.Digest), codes: u.StatusCodes}
		if hu.path == "" {
			hu.path = "/"
		}
		if vhost == "" {
			// keepalived: the address and port connected to.
			hu.host = ep.remote.String()
		}
		if p.tls && h.EnableSNI {
			hu.sni = firstSet(h.SNIName, vhost)
		}
		if len(hu.codes) == 0 {
			hu.codes = []config.StatusRange{{Lo: 200, Hi: 299}}
		}
		p.urls = append(p.urls, hu)
	}
	return p, nil
}

func firstSet(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Probe fetches every url, each on a connection of its own as keepalived
// does; all must pass, and all share the attempt's one deadline.
func (p *httpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()
	note := ""
	for _, u := range p.urls {
		why, ok := p.get(ctx, u)
		if !ok {
			if len(p.urls) > 1 {
				why += " (" + u.path + ")"
			}
			return failed(start, why)
		}
		note = why
	}
	return passed(start, note)
}

func (p *httpProber) request(u httpURL) string {
	minor, conn := "0", ""
	switch p.proto {
	case "1.1":
		minor, conn = "1", "Connection: close\r\n"
	case "1.0C":
		conn = "Connection: close\r\n"
	}
	return "GET " + u.path + " HTTP/1." + minor + "\r\n" +
		"User-Agent: KeepAliveClient\r\n" + conn +
		"Host: " + u.host + "\r\n\r\n"
}

// get makes one request and judges its answer; the string is the reason
// of a failure or the note of a success.
func (p *httpProber) get(ctx context.Context, u httpURL) (string, bool) {
	raw, err := p.ep.dialTCP(ctx)
	if err != nil {
		return reason(err), false
	}
	defer raw.Close()
	var conn net.Conn = raw
	if p.tls {
		// keepalived does not verify the server's certificate.
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: u.sni}) //nolint:gosec
		if err := tc.HandshakeContext(ctx); err != nil {
			why := reason(err)
			if !strings.HasPrefix(why, "tls: ") {
				why = "tls: " + why
			}
			return why, false
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, p.request(u)); err != nil {
		return reason(err), false
	}

	br := bufio.NewReaderSize(conn, 4096)
	status, length, err := readHeader(br)
	if err != nil {
		return reason(err), false
	}
	var sum hash.Hash
	if u.digest != "" {
		sum = md5.New()
	}
	body := io.Reader(br)
	if length >= 0 {
		body = io.LimitReader(br, length)
	}
	// keepalived judges the answer only once it has all of it: a slow
	// body fails the check at the deadline even with a good status.
	dst := io.Discard
	if sum != nil {
		dst = sum
	}
	if _, err := io.Copy(dst, body); err != nil && !(p.tls && errors.Is(err, io.ErrUnexpectedEOF)) {
		// A TLS server that closes without close_notify has still sent
		// its answer; anything else is a failed read.
		return reason(err), false
	}
	if !statusIn(status, u.codes) {
		return "status " + strconv.Itoa(status), false
	}
	if sum != nil && hex.EncodeToString(sum.Sum(nil)) != u.digest {
		return "digest mismatch", false
	}
	return "status " + strconv.Itoa(status), true
}

var errNoHeader = errors.New("no HTTP response")

// readHeader reads the answer's header up to the blank line and returns
// the status code and the Content-Length (-1 when absent or unreadable).
func readHeader(br *bufio.Reader) (status int, length int64, err error) {
	length = -1
	n := 0
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		n += len(line)
		if err != nil {
			if errors.Is(err, io.EOF) && n == 0 {
				return 0, -1, errNoHeader
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, -1, errors.New("header line too long")
			}
			return 0, -1, err
		}
		if n > maxHeader {
			return 0, -1, errors.New("header too long")
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			status = statusCode(line)
			if status == 0 {
				return 0, -1, errNoHeader
			}
			continue
		}
		if len(line) == 0 {
			return status, length, nil
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "Content-Length") {
			if l, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64); err == nil && l >= 0 {
				length = l
			}
		}
	}
}

// statusCode reads "HTTP/1.x NNN ..." as keepalived's
// extract_status_code does; 0 when there is none.
func statusCode(line []byte) int {
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return 0
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 || code > 599 {
		return 0
	}
	return code
}

func statusIn(code int, ranges []config.StatusRange) bool {
	for _, r := range ranges {
		if code >= r.Lo && code <= r.Hi {
			return true
		}
	}
	return false
}
