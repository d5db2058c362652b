package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/script"
)

// ProbeOptions carries what a checker's probe needs from outside its
// config.Checker.
type ProbeOptions struct {
	// Virtualhost is the last default of HTTP_GET and SSL_GET's Host
	// header (and SNI name), after the url's and the checker's: the
	// virtual server's virtualhost when the config did not resolve it.
	Virtualhost string
	// Scripts runs MISC_CHECK's misc_path with global_defs' script_user
	// and enable_script_security; nil means keepalived's defaults.
	Scripts *script.Runner
	// TrackFiles maps a track_file name to the file it reads. FILE_CHECK's
	// track_file is looked up here, and used as a path when absent.
	TrackFiles map[string]string
	Log        *slog.Logger
}

// NewProber returns the Prober of checker c against the real server at
// target. c.ConnectIP and c.ConnectPort override target; c.BindTo and
// c.BindPort set the local end.
func NewProber(c config.Checker, target netip.AddrPort, o ProbeOptions) (Prober, error) {
	ep := endpoint{remote: target, timeout: c.ConnectTimeout}
	if c.ConnectIP.IsValid() {
		ep.remote = netip.AddrPortFrom(c.ConnectIP, ep.remote.Port())
	}
	if c.ConnectPort != 0 {
		ep.remote = netip.AddrPortFrom(ep.remote.Addr(), c.ConnectPort)
	}
	ep.local = netip.AddrPortFrom(c.BindTo, c.BindPort)
	if ep.timeout <= 0 {
		ep.timeout = config.DefaultConnectTimeout
	}
	needsPort := func() error {
		if !ep.remote.Addr().IsValid() {
			return fmt.Errorf("%s: no address to check", c.Type)
		}
		if ep.remote.Port() == 0 {
			return fmt.Errorf("%s: no port to check (set connect_port)", c.Type)
		}
		return nil
	}
	switch c.Type {
	case config.CheckTCP:
		if err := needsPort(); err != nil {
			return nil, err
		}
		return &tcpProber{ep}, nil
	case config.CheckHTTP, config.CheckSSL:
		if err := needsPort(); err != nil {
			return nil, err
		}
		return newHTTPProber(c, ep, o)
	case config.CheckSMTP:
		if err := needsPort(); err != nil {
			return nil, err
		}
		helo := smtpDefaultHelo
		if c.SMTP != nil && c.SMTP.HeloName != "" {
			helo = c.SMTP.HeloName
		}
		return &smtpProber{ep: ep, helo: helo}, nil
	case config.CheckDNS:
		if err := needsPort(); err != nil {
			return nil, err
		}
		return newDNSProber(c, ep)
	case config.CheckUDP:
		if err := needsPort(); err != nil {
			return nil, err
		}
		return newUDPProber(c, ep)
	case config.CheckPing:
		if !ep.remote.Addr().IsValid() {
			return nil, fmt.Errorf("%s: no address to check", c.Type)
		}
		return &pingProber{ep: ep}, nil
	case config.CheckMisc:
		return newMiscProber(c, o)
	case config.CheckFile:
		return newFileProber(c, o)
	}
	return nil, fmt.Errorf("%s: no prober for this checker", c.Type)
}

// endpoint is where a network probe goes and comes from.
type endpoint struct {
	remote netip.AddrPort
	local  netip.AddrPort // address or port may be zero
	// timeout bounds an attempt whose context has no deadline
	// (connect_timeout; the caller normally sets the deadline).
	timeout time.Duration
}

// attempt gives ctx the endpoint's timeout unless it has a deadline.
func (ep endpoint) attempt(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, ep.timeout)
}

func (ep endpoint) dialer() *net.Dialer {
	d := &net.Dialer{}
	if ep.local.Addr().IsValid() || ep.local.Port() != 0 {
		var ip net.IP
		if ep.local.Addr().IsValid() {
			ip = ep.local.Addr().AsSlice()
		}
		d.LocalAddr = &net.TCPAddr{IP: ip, Port: int(ep.local.Port())}
	}
	return d
}

// dialTCP connects within ctx and ties the connection's deadline to ctx,
// so every later read and write is bounded by the same deadline: a server
// that answers one byte a second cannot stretch the attempt.
func (ep endpoint) dialTCP(ctx context.Context) (net.Conn, error) {
	conn, err := ep.dialer().DialContext(ctx, "tcp", ep.remote.String())
	if err != nil {
		return nil, err
	}
	bound(ctx, conn)
	return conn, nil
}

// bound sets conn's deadline to ctx's and makes cancelling ctx unblock
// conn at once. The connection must be closed by the caller.
func bound(ctx context.Context, conn net.Conn) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// reason turns an error into a few words for Result.Reason.
func reason(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRINUSE):
		return "bind address in use"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "bind address not available"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	// The innermost message, without "dial tcp 1.2.3.4:80:" prefixes.
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// failed is a failed Result.
func failed(start time.Time, why string) Result {
	return Result{Weight: NoWeight, Reason: why, Took: time.Since(start)}
}

// passed is a successful Result saying nothing of weight.
func passed(start time.Time, note string) Result {
	return Result{OK: true, Weight: NoWeight, Reason: note, Took: time.Since(start)}
}

// tcpProber is TCP_CHECK: the server is up when it accepts a connection.
type tcpProber struct{ ep endpoint }

func (p *tcpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()
	conn, err := p.ep.dialTCP(ctx)
	if err != nil {
		return failed(start, reason(err))
	}
	conn.Close()
	return passed(start, "")
}
