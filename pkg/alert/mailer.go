package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wneessen/go-mail"

	"github.com/xlbd/xlbd/pkg/config"
)

const (
	// QueueSize bounds the alerts waiting for delivery. A flapping pool
	// behind a dead SMTP server must cost a bounded amount of memory; the
	// alerts past it are dropped and counted.
	QueueSize = 256

	// workers deliver in parallel, as keepalived opens one connection per
	// alert: a hanging server then holds up a few mails per
	// smtp_connect_timeout, not the whole queue one after the other.
	workers = 4

	// keepalived's MAX_HEADERS_LENGTH and MAX_BODY_LENGTH buffers (core/smtp.h)
	// cut subject and body at these lengths.
	maxSubject = 255
	maxBody    = 511

	// mailer names xlbd where keepalived writes "X-Mailer: Keepalived".
	mailer = "xlbd"
)

// Mailer delivers alerts to global_defs' smtp_server. A nil *Mailer (no
// smtp_server or no notification_email) accepts every call and sends
// nothing, so callers need not check.
type Mailer struct {
	log      *slog.Logger
	host     string
	port     int
	addr     string // host:port, for log lines
	timeout  time.Duration
	routerID string
	helo     string
	from     string
	to       []string

	queue chan Alert

	sent, failed, dropped atomic.Uint64
}

// New returns the mailer global_defs asks for, or nil when it asks for
// none: keepalived sends mail only when both smtp_server and
// notification_email are set. Unset router_id, notification_email_from
// and smtp_connect_timeout take keepalived's defaults (the host name,
// user@host name, 30 s).
func New(g config.Global, log *slog.Logger) *Mailer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if g.SMTPServer == "" || len(g.NotificationEmail) == 0 {
		return nil
	}
	hostname, err := os.Hostname()
	if err != nil || hostname == "" {
		hostname = "localhost"
	}
	m := &Mailer{
		log: log,
		// keepalived takes an IPv6 address bare; brackets are tolerated
		// here so a "[::1]" written out of habit still works.
		host:     strings.TrimSuffix(strings.TrimPrefix(g.SMTPServer, "["), "]"),
		port:     int(g.SMTPPort),
		timeout:  g.SMTPConnectTimeout,
		routerID: g.RouterID,
		helo:     hostname,
		from:     g.NotificationEmailFrom,
		queue:    make(chan Alert, QueueSize),
	}
	if m.port == 0 {
		m.port = config.DefaultSMTPPort
	}
	if m.timeout <= 0 {
		m.timeout = config.DefaultSMTPConnectTimeout
	}
	if m.routerID == "" {
		m.routerID = hostname
	}
	if m.from == "" {
		name := "root"
		if u, err := user.Current(); err == nil && u.Username != "" {
			name = u.Username
		}
		m.from = name + "@" + hostname
	}
	m.addr = net.JoinHostPort(m.host, strconv.Itoa(m.port))
	if _, err := netmail.ParseAddress(m.from); err != nil {
		log.Error("SMTP alerts disabled: notification_email_from is not a mail address", "from", m.from, "err", err)
		return nil
	}
	// A bad address would fail every mail at RCPT; keepalived would send
	// it anyway, but leaving it out lets the others get their alerts.
	for _, to := range g.NotificationEmail {
		if _, err := netmail.ParseAddress(to); err != nil {
			log.Warn("notification_email is not a mail address; not mailing it", "to", to, "err", err)
			continue
		}
		m.to = append(m.to, to)
	}
	if len(m.to) == 0 {
		log.Error("SMTP alerts disabled: no usable notification_email")
		return nil
	}
	return m
}

// Send queues a for delivery and returns at once. When the queue is full
// the alert is dropped, logged and counted: a state change must never wait
// for mail. The zero Alert (a state keepalived does not mail) is ignored.
func (m *Mailer) Send(a Alert) {
	if m == nil || a.Subject == "" {
		return
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	select {
	case m.queue <- a:
	default:
		n := m.dropped.Add(1)
		m.log.Warn("SMTP alert dropped: too many waiting for the SMTP server",
			"subject", m.subject(a), "queued", QueueSize, "dropped", n)
	}
}

// Run delivers queued alerts, one mail each, until ctx ends. Each mail
// (connect and the whole SMTP dialogue) gets smtp_connect_timeout; one that
// fails is logged, counted and not retried, as in keepalived. Alerts still
// queued when ctx ends stay queued for Drain or a later Run.
func (m *Mailer) Run(ctx context.Context) error {
	if m == nil {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case a := <-m.queue:
					m.deliver(ctx, a)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// Drain delivers what is queued, for the shutdown alerts (VRRP "Stopping",
// omega's "Shutting down") queued after Run has stopped; it returns when
// the queue is empty or ctx ends, whose deadline should be short.
func (m *Mailer) Drain(ctx context.Context) {
	if m == nil {
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				select {
				case a := <-m.queue:
					m.deliver(ctx, a)
				default:
					return
				}
			}
		})
	}
	wg.Wait()
}

// Sent counts the alerts the SMTP server accepted.
func (m *Mailer) Sent() uint64 {
	if m == nil {
		return 0
	}
	return m.sent.Load()
}

// Failed counts the alerts whose delivery failed.
func (m *Mailer) Failed() uint64 {
	if m == nil {
		return 0
	}
	return m.failed.Load()
}

// Dropped counts the alerts Send dropped because the queue was full.
func (m *Mailer) Dropped() uint64 {
	if m == nil {
		return 0
	}
	return m.dropped.Load()
}

// Queued is how many alerts wait for delivery.
func (m *Mailer) Queued() int {
	if m == nil {
		return 0
	}
	return len(m.queue)
}

func (m *Mailer) deliver(ctx context.Context, a Alert) {
	subject := m.subject(a)
	if err := m.mail(ctx, a); err != nil {
		m.failed.Add(1)
		m.log.Warn("SMTP alert not sent", "server", m.addr, "subject", subject, "err", err)
		return
	}
	m.sent.Add(1)
	m.log.Info("SMTP alert sent", "server", m.addr, "subject", subject)
}

// mail sends one alert over a connection of its own.
func (m *Mailer) mail(ctx context.Context, a Alert) error {
	msg, err := m.message(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	// go-mail bounds the dial and each command by its timeout, so a server
	// that answers slowly could hold a mail for many of them. Closing the
	// connection when ctx ends bounds the whole dialogue, and stops it at
	// once when the daemon stops.
	dial := func(dctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(dctx, network, address)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = conn.Close() })
		return conn, nil
	}
	c, err := mail.NewClient(m.host,
		mail.WithPort(m.port),
		mail.WithTimeout(m.timeout),
		mail.WithHELO(m.helo),
		// keepalived speaks plain SMTP and never STARTTLS; opportunistic
		// TLS would make a server offering STARTTLS with a certificate we
		// cannot verify (the usual internal relay) refuse every alert.
		mail.WithTLSPolicy(mail.NoTLS),
		mail.WithoutNoop(),
		mail.WithDialContextFunc(dial),
	)
	if err != nil {
		return err
	}
	err = c.DialAndSendWithContext(ctx, msg)
	// Once ctx has closed the connection, go-mail's error only says so
	// (several times over); the timeout is the news.
	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return fmt.Errorf("no complete answer within smtp_connect_timeout (%v)", m.timeout)
	}
	return err
}

// message composes the mail as keepalived's body_cmd does: Date, From,
// Subject, X-Mailer and To headers, and the body line.
func (m *Mailer) message(a Alert) (*mail.Msg, error) {
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent(), mail.WithEncoding(mail.NoEncoding))
	if err := msg.From(m.from); err != nil {
		return nil, err
	}
	if err := msg.To(m.to...); err != nil {
		return nil, err
	}
	msg.Subject(m.subject(a))
	msg.SetDateWithValue(a.At)
	msg.SetGenHeader(mail.HeaderXMailer, mailer)
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, clip(a.Body, maxBody)+"\r\n")
	return msg, nil
}

// subject is the mail's subject: keepalived puts "[router_id] " first.
func (m *Mailer) subject(a Alert) string {
	return formatSubject(m.routerID, a)
}

func formatSubject(routerID string, a Alert) string {
	return clip("["+routerID+"] "+a.Subject, maxSubject)
}

// clip cuts s to at most n bytes, on a rune boundary where keepalived's
// snprintf would cut through one.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
