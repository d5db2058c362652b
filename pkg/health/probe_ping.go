package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pingProber is PING_CHECK: one ICMP echo request; an echo reply from the
// target with the same identifier, sequence and data before the deadline
// is up. It uses an unprivileged ICMP datagram socket when
// net.ipv4.ping_group_range admits xlbd's group, else a raw socket (root
// or CAP_NET_RAW).
type pingProber struct {
	ep  endpoint
	seq atomic.Uint32
}

func (p *pingProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := p.ep.attempt(ctx)
	defer cancel()

	remote := p.ep.remote.Addr().Unmap()
	v6 := remote.Is6()
	conn, raw, err := listenICMP(v6, p.ep.local.Addr())
	if err != nil {
		return failed(start, "icmp socket: "+reason(err))
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })

	var id [2]byte
	data := make([]byte, 16)
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(data)
	echo := &icmp.Echo{ID: int(id[0])<<8 | int(id[1]), Seq: int(uint16(p.seq.Add(1))), Data: data}
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: echo}
	proto, replyType := 1, icmp.Type(ipv4.ICMPTypeEchoReply)
	if v6 {
		// The kernel fills in ICMPv6's checksum.
		msg.Type, proto, replyType = ipv6.ICMPTypeEchoRequest, 58, ipv6.ICMPTypeEchoReply
	}
	b, err := msg.Marshal(nil)
	if err != nil {
		return failed(start, reason(err))
	}
	var dst net.Addr = &net.IPAddr{IP: remote.AsSlice()}
	if !raw {
		dst = &net.UDPAddr{IP: remote.AsSlice()}
	}
	if _, err := conn.WriteTo(b, dst); err != nil {
		return failed(start, reason(err))
	}

	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return failed(start, reason(err))
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType || !sameIP(peer, remote) {
			continue
		}
		got, ok := m.Body.(*icmp.Echo)
		// A datagram socket's kernel replaces the identifier with its
		// own and delivers only the replies to it.
		if !ok || (raw && got.ID != echo.ID) || got.Seq != echo.Seq || !bytes.Equal(got.Data, data) {
			continue
		}
		return passed(start, "")
	}
}

func sameIP(a net.Addr, want netip.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		return false
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == want
}

// listenICMP opens an ICMP socket bound to local (any address if
// invalid): a datagram ping socket if allowed, else a raw one.
func listenICMP(v6 bool, local netip.Addr) (conn *icmp.PacketConn, raw bool, err error) {
	udp, ip, any := "udp4", "ip4:icmp", "0.0.0.0"
	if v6 {
		udp, ip, any = "udp6", "ip6:ipv6-icmp", "::"
	}
	addr := any
	if local.IsValid() {
		addr = local.String()
	}
	conn, err = icmp.ListenPacket(udp, addr)
	if err == nil {
		return conn, false, nil
	}
	if !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EPROTONOSUPPORT) {
		return nil, false, err
	}
	conn, err = icmp.ListenPacket(ip, addr)
	return conn, true, err
}
