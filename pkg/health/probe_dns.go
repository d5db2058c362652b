package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/xlbd/xlbd/pkg/config"
)

// dnsProber is DNS_CHECK: one query over UDP, recursion desired, as
// keepalived's check_dns.c sends it. Any answer to it with rcode NOERROR
// is up, whether or not it holds records; another rcode is down.
type dnsProber struct {
	ep    endpoint
	qtype uint16
	name  string
}

func newDNSProber(c config.Checker, ep endpoint) (Prober, error) {
	typ, name := config.DefaultDNSType, config.DefaultDNSName
	if c.DNS != nil {
		typ, name = firstSet(c.DNS.Type, typ), firstSet(c.DNS.Name, name)
	}
	qt, ok := dns.StringToType[strings.ToUpper(typ)]
	if !ok {
		return nil, fmt.Errorf("%s: unknown query type %q", c.Type, typ)
	}
	return &dnsProber{ep: ep, qtype: qt, name: dns.Fqdn(name)}, nil
}

func (p *dnsProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()
	conn, err := p.ep.dialUDP(ctx)
	if err != nil {
		return failed(start, reason(err))
	}
	defer conn.Close()

	q := new(dns.Msg)
	q.SetQuestion(p.name, p.qtype) // RD set, class IN, random id
	dc := &dns.Conn{Conn: conn}
	if err := dc.WriteMsg(q); err != nil {
		return failed(start, reason(err))
	}
	for {
		m, err := dc.ReadMsg()
		if err != nil {
			if _, ok := err.(net.Error); ok || (m == nil && !errors.Is(err, dns.ErrShortRead)) {
				return failed(start, reason(err))
			}
			continue // a short or malformed datagram; keep listening
		}
		// keepalived ignores what is not the answer to its query.
		if m.Id != q.Id || !m.Response {
			continue
		}
		if m.Rcode != dns.RcodeSuccess {
			return failed(start, "rcode "+dns.RcodeToString[m.Rcode])
		}
		return passed(start, "")
	}
}

// dialUDP returns a connected UDP socket bound to the local end, with
// its deadline tied to ctx. A connected socket gets ICMP errors: a read
// after port unreachable fails with ECONNREFUSED.
func (ep endpoint) dialUDP(ctx context.Context) (*net.UDPConn, error) {
	d := &net.Dialer{Control: setRecvErr}
	if ep.local.Addr().IsValid() || ep.local.Port() != 0 {
		var ip net.IP
		if ep.local.Addr().IsValid() {
			ip = ep.local.Addr().AsSlice()
		}
		d.LocalAddr = &net.UDPAddr{IP: ip, Port: int(ep.local.Port())}
	}
	c, err := d.DialContext(ctx, "udp", ep.remote.String())
	if err != nil {
		return nil, err
	}
	bound(ctx, c)
	return c.(*net.UDPConn), nil
}
