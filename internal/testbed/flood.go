package testbed

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ServeEcho runs, in every real, a TCP server on port that answers each
// line it reads with the real's name, a colon and the line ("r2:hello\n"),
// so that a client sees both that its connection works and which real holds
// it. Listeners and accepted connections are closed by c's cleanups.
func ServeEcho(c Cleanuper, top *Topology, port int) error {
	for i, r := range top.Reals {
		name := fmt.Sprintf("r%d", i+1)
		l, err := r.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		var mu sync.Mutex
		conns := map[net.Conn]bool{}
		closed := false
		c.Cleanup(func() {
			l.Close()
			mu.Lock()
			closed = true
			for conn := range conns {
				conn.Close()
			}
			mu.Unlock()
		})
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				if closed {
					mu.Unlock()
					conn.Close()
					return
				}
				conns[conn] = true
				mu.Unlock()
				go func() {
					defer func() {
						conn.Close()
						mu.Lock()
						delete(conns, conn)
						mu.Unlock()
					}()
					sc := bufio.NewScanner(conn)
					for sc.Scan() {
						if _, err := fmt.Fprintf(conn, "%s:%s\n", name, sc.Text()); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	return nil
}

// FloodResult is what SYNFlood did.
type FloodResult struct {
	Sent    int           // SYNs the kernel took
	Failed  int           // sends refused (ENOBUFS and the like), not retried
	Elapsed time.Duration // from the first send to the last
}

// Rate is the SYNs sent per second.
func (r FloodResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// SYNFlood sends, from inside ns, up to n TCP SYNs to dst, each from a
// random address in src and a random port, through a raw socket
// (IPPROTO_RAW, so the IP header is ours; IP and TCP checksums are
// correct). It stops after n SYNs or when limit has passed, whichever comes
// first. The packets are routed by ns's own table towards dst; the spoofed
// sources should be unroutable from the other side, so that no answer ever
// comes back.
func SYNFlood(ns *Netns, dst netip.AddrPort, src netip.Prefix, n int, limit time.Duration) (FloodResult, error) {
	var res FloodResult
	if !dst.Addr().Is4() || !src.Addr().Is4() {
		return res, fmt.Errorf("SYN flood: IPv4 only (%v from %v)", dst, src)
	}
	src = src.Masked()
	raw, err := OpenRawIPv4(ns)
	if err != nil {
		return res, fmt.Errorf("SYN flood: %w", err)
	}
	defer raw.Close()

	base := src.Addr().As4()
	hostBits := 32 - src.Bits()
	randSrc := func() net.IP {
		a := base
		if hostBits > 0 {
			var h uint32
			if hostBits >= 32 {
				h = rand.Uint32()
			} else {
				// Neither the network nor the broadcast address.
				h = 1 + rand.Uint32N(max(1, uint32(1)<<hostBits-2))
			}
			v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
			v |= h
			a = [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		}
		return net.IP(a[:])
	}

	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocolTCP, DstIP: net.IP(dst.Addr().AsSlice())}
	tcp := &layers.TCP{DstPort: layers.TCPPort(dst.Port()), SYN: true, Window: 64240,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}
	var lastErr error
	begin := time.Now()
	deadline := begin.Add(limit)
	for i := 0; i < n; i++ {
		if i%256 == 0 && time.Now().After(deadline) {
			break
		}
		ip.SrcIP = randSrc()
		ip.Id = uint16(rand.Uint32())
		tcp.SrcPort = layers.TCPPort(1024 + rand.Uint32N(65536-1024))
		tcp.Seq = rand.Uint32()
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return res, err
		}
		if err := gopacket.SerializeLayers(buf, opts, ip, tcp); err != nil {
			return res, fmt.Errorf("SYN flood: build packet: %w", err)
		}
		if err := raw.Send(buf.Bytes()); err != nil {
			res.Failed++
			lastErr = err
			// Mostly ENOBUFS: let the queues drain a little.
			if res.Failed > 1000 && res.Sent == 0 {
				return res, fmt.Errorf("SYN flood from %s: every send fails: %w", ns, err)
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		res.Sent++
	}
	res.Elapsed = time.Since(begin)
	if res.Sent == 0 && lastErr != nil {
		return res, fmt.Errorf("SYN flood from %s: %w", ns, lastErr)
	}
	return res, nil
}
