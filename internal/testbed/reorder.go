package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// UDPFragments builds the IPv4 UDP datagram src -> dst carrying payload,
// with IP identification id and no DF, and cuts it into n fragments of
// nearly equal size, as a sending kernel would: every fragment but the last
// carries a multiple of 8 bytes of IP payload and MF, the offsets count in
// 8-byte units, every header has its own correct checksum, and the UDP
// checksum, in the first fragment, covers the whole datagram. The
// fragments are returned in datagram order (the first, with the UDP
// header, at index 0), each a complete IP packet.
func UDPFragments(src, dst netip.AddrPort, id uint16, payload []byte, n int) ([][]byte, error) {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return nil, fmt.Errorf("UDP fragments: IPv4 only (%v -> %v)", src, dst)
	}
	if n < 1 {
		return nil, fmt.Errorf("UDP fragments: %d fragments", n)
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	whole := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(whole, opts, ip, udp, gopacket.Payload(payload)); err != nil {
		return nil, fmt.Errorf("UDP fragments: build datagram: %w", err)
	}
	body := whole.Bytes()[20:] // UDP header and payload: what is cut
	if len(body) > 0xffff-20 {
		return nil, fmt.Errorf("UDP fragments: %d bytes of payload do not fit in a datagram", len(payload))
	}
	chunk := (len(body) + n - 1) / n
	chunk = (chunk + 7) &^ 7
	if chunk*(n-1) >= len(body) {
		return nil, fmt.Errorf("UDP fragments: %d bytes cannot make %d fragments", len(body), n)
	}
	frags := make([][]byte, 0, n)
	for off := 0; off < len(body); off += chunk {
		end := min(off+chunk, len(body))
		fip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
			SrcIP: ip.SrcIP, DstIP: ip.DstIP, FragOffset: uint16(off / 8)}
		if end < len(body) {
			fip.Flags = layers.IPv4MoreFragments
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, fip, gopacket.Payload(body[off:end])); err != nil {
			return nil, fmt.Errorf("UDP fragments: build fragment at %d: %w", off, err)
		}
		frags = append(frags, append([]byte(nil), buf.Bytes()...))
	}
	return frags, nil
}

// RawIPv4 is a raw IPv4 socket opened in a namespace (IPPROTO_RAW, so the IP
// header, fragment fields included, is the caller's): the namespace's
// kernel routes each packet by its destination and sends it as it is,
// without reassembling or reordering anything.
type RawIPv4 struct {
	fd int
	ns *Netns
}

// OpenRawIPv4 opens a raw IPv4 socket in ns.
func OpenRawIPv4(ns *Netns) (*RawIPv4, error) {
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket in %s: %w", ns, err)
	}
	return &RawIPv4{fd: fd, ns: ns}, nil
}

// Send sends one IPv4 packet, header included, to the destination its
// header names.
func (r *RawIPv4) Send(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return errors.New("raw send: not an IPv4 packet")
	}
	to := &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	for {
		err := unix.Sendto(r.fd, pkt, 0, to)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("raw send from %s to %v: %w", r.ns, net.IP(pkt[16:20]), err)
		}
		return nil
	}
}

// Close closes the socket.
func (r *RawIPv4) Close() error { return unix.Close(r.fd) }
