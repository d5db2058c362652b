package health

import (
	"context"
	"io"
	"net/textproto"
	"strconv"
	"time"
)

// smtpDefaultHelo is keepalived's helo_name default (SMTP_DEFAULT_HELO).
const smtpDefaultHelo = "smtpchecker.keepalived.org"

// smtpProber is SMTP_CHECK (keepalived's check_smtp.c): banner 220, HELO
// answered 250, QUIT answered with anything. Unlike keepalived, which
// reads only a reply's first line, multi-line replies ("220-...") are
// read whole, as RFC 5321 has them.
type smtpProber struct {
	ep   endpoint
	helo string
}

func (p *smtpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()
	conn, err := p.ep.dialTCP(ctx)
	if err != nil {
		return failed(start, reason(err))
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)

	expect := func(what string, want int) (string, bool) {
		code, _, err := tp.ReadResponse(0)
		if err != nil {
			if _, isProto := err.(*textproto.Error); !isProto {
				return reason(err), false
			}
		}
		if code != want {
			return what + " " + strconv.Itoa(code), false
		}
		return "", true
	}
	if why, ok := expect("banner", 220); !ok {
		return failed(start, why)
	}
	if err := tp.PrintfLine("HELO %s", p.helo); err != nil {
		return failed(start, reason(err))
	}
	if why, ok := expect("HELO", 250); !ok {
		return failed(start, why)
	}
	if err := tp.PrintfLine("QUIT"); err != nil {
		return failed(start, reason(err))
	}
	if _, err := tp.ReadLine(); err != nil && err != io.EOF {
		return failed(start, reason(err))
	} else if err == io.EOF {
		return failed(start, "closed before QUIT reply")
	}
	return passed(start, "")
}
