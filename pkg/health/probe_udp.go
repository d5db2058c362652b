package health

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// udpDefaultPayload is what keepalived sends without a payload: its
// 32-byte buffer filled with this text, repeated.
var udpDefaultPayload = func() []byte {
	const s = "keepalived check - "
	b := make([]byte, 32)
	for i := range b {
		b[i] = s[i%len(s)]
	}
	return b
}()

// udpMaxReply is keepalived's default max_reply_length: with an expected
// reply, a longer one fails the check.
const udpMaxReply = 255

// udpProber is UDP_CHECK (keepalived's check_udp.c): send one datagram on
// a connected socket. An ICMP destination-unreachable fails it. Without
// require_reply silence until the deadline passes it, so a healthy check
// always takes the whole connect_timeout; with require_reply a reply is
// needed, and with an expected reply it must match the pattern over the
// shorter of the two.
type udpProber struct {
	ep           endpoint
	payload      []byte
	requireReply bool
	want, mask   []byte // mask bits set: must match
}

func newUDPProber(c config.Checker, ep endpoint) (Prober, error) {
	p := &udpProber{ep: ep, payload: udpDefaultPayload}
	if u := c.UDP; u != nil {
		if len(u.Payload) > 0 {
			p.payload = u.Payload
		}
		p.requireReply = u.RequireReply || u.Reply != ""
		if u.Reply != "" {
			var err error
			if p.want, p.mask, err = replyPattern(u.Reply); err != nil {
				return nil, fmt.Errorf("%s: require_reply: %v", c.Type, err)
			}
		}
	}
	return p, nil
}

// replyPattern reads hex digits where x matches any digit.
func replyPattern(s string) (want, mask []byte, err error) {
	s = strings.ToLower(strings.Join(strings.Fields(s), ""))
	if len(s)%2 == 1 {
		return nil, nil, fmt.Errorf("%q has an odd number of digits", s)
	}
	for i := 0; i < len(s); i += 2 {
		var w, m byte
		for j, c := range []byte{s[i], s[i+1]} {
			shift := 4 * (1 - j)
			if c == 'x' {
				continue
			}
			v, err := hex.DecodeString("0" + string(c))
			if err != nil {
				return nil, nil, fmt.Errorf("%q is not a hex digit", c)
			}
			w |= v[0] << shift
			m |= 0xf << shift
		}
		want, mask = append(want, w), append(mask, m)
	}
	return want, mask, nil
}

func (p *udpProber) matches(got []byte) bool {
	if len(got) > udpMaxReply {
		return false
	}
	for i := 0; i < len(got) && i < len(p.want); i++ {
		if (got[i]^p.want[i])&p.mask[i] != 0 {
			return false
		}
	}
	return true
}

func (p *udpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()
	conn, err := p.ep.dialUDP(ctx)
	if err != nil {
		return failed(start, reason(err))
	}
	defer conn.Close()
	if _, err := conn.Write(p.payload); err != nil {
		return failed(start, reason(err))
	}
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The socket's deadline is ctx's; cancelling ctx also sets it.
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return failed(start, "canceled")
		case p.requireReply:
			return failed(start, "no reply")
		}
		return passed(start, "no reply, no ICMP error")
	default:
		return failed(start, reason(err))
	}
	if p.want != nil && !p.matches(buf[:n]) {
		return failed(start, "reply mismatch")
	}
	return passed(start, "")
}

// setRecvErr turns on IP_RECVERR, as keepalived does, so that every ICMP
// destination unreachable fails the socket's next read, not only the
// "hard" port and protocol unreachables.
func setRecvErr(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, syscall.IPV6_RECVERR, 1)
		} else {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_RECVERR, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
