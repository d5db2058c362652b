package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/maps"
)

// HoldWait is how long a held fragment waits for its datagram's first
// fragment. The real's kernel would wait 30 s for the rest of a datagram;
// a reordered fragment is a few packets early, not seconds.
const HoldWait = time.Second

// holdMax bounds the fragments waiting at once (the ring holds about 2000).
const holdMax = 4096

// fragOut sends what the holder places: a frame out of a link, or an IP
// datagram to the kernel's own routing.
type fragOut interface {
	link(ifindex int, frame []byte) error
	kernel(dgram []byte) error
}

type heldFrame struct {
	frame   []byte
	ifindex uint32
	at      time.Time
}

// holder takes the later fragments the program held because they came
// before their datagram's first fragment (bpf/xlb.c, hold), waits for the
// first to be placed, and sends them where it went, as the program would
// have (placeFragment); those that wait in vain are dropped and counted.
type holder struct {
	set   *maps.Set
	log   *slog.Logger
	isVIP func(netip.Addr) bool
	out   fragOut
	now   func() time.Time

	mu      sync.Mutex
	pending []heldFrame

	// Counts by outcome: sent (where the first went), expired (no first
	// came), dropped (no room, or nowhere to send it), passed (not for a
	// VIP after all: the kernel routes it).
	sent, expired, dropped, passed atomic.Uint64
}

// Counts reports the holder's outcomes.
func (h *holder) Counts() map[string]uint64 {
	return map[string]uint64{"sent": h.sent.Load(), "expired": h.expired.Load(),
		"dropped": h.dropped.Load(), "passed": h.passed.Load()}
}

// take accepts one record of the held ring.
func (h *holder) take(rec []byte) {
	var hf maps.HeldFrag
	if len(rec) < int(unsafe.Sizeof(hf)) {
		h.dropped.Add(1)
		return
	}
	n := binary.NativeEndian.Uint32(rec[0:4])
	ifindex := binary.NativeEndian.Uint32(rec[4:8])
	if n < 14+20 || int(n) > len(rec)-8 {
		h.dropped.Add(1)
		return
	}
	frame := append([]byte(nil), rec[8:8+n]...)
	dst := netip.AddrFrom4([4]byte(frame[14+16 : 14+20]))
	if !h.isVIP(dst) {
		// The program's address filter is a hash: another address can
		// share a VIP's bucket. Its fragment is the kernel's to route.
		if err := h.out.kernel(frame[14:]); err != nil {
			h.dropped.Add(1)
			return
		}
		h.passed.Add(1)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) >= holdMax {
		h.dropped.Add(1)
		return
	}
	h.pending = append(h.pending, heldFrame{frame: frame, ifindex: ifindex, at: h.now()})
}

// release sends every waiting fragment whose first has been placed and
// drops those that waited too long. It reports how many still wait.
func (h *holder) release() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	keep := h.pending[:0]
	for _, p := range h.pending {
		done, err := h.place(p)
		switch {
		case err != nil:
			h.log.Debug("held fragment dropped", "err", err)
			h.dropped.Add(1)
		case done:
			h.sent.Add(1)
		case now.Sub(p.at) >= HoldWait:
			h.expired.Add(1)
		default:
			keep = append(keep, p)
		}
	}
	clear(h.pending[len(keep):])
	h.pending = keep
	return len(h.pending)
}

// place sends p if its datagram's first fragment has been placed.
func (h *holder) place(p heldFrame) (bool, error) {
	ip := p.frame[14:]
	k := maps.FragKey{
		Src:   binary.NativeEndian.Uint32(ip[12:16]),
		Dst:   binary.NativeEndian.Uint32(ip[16:20]),
		Id:    binary.NativeEndian.Uint16(ip[4:6]),
		Proto: ip[9],
	}
	var fv maps.FragVal
	if err := h.set.Frags.Lookup(&k, &fv); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, err
	}
	r, err := h.set.Reals.Get(fv.RealId)
	if err != nil {
		return false, err
	}
	if r.Flags&maps.RealValid == 0 || r.Serial != fv.Serial {
		return false, errors.New("the first fragment's real is gone")
	}
	ifindex, out, toKernel, err := placeFragment(p.frame, fv, r)
	if err != nil {
		return false, err
	}
	if toKernel {
		return true, h.out.kernel(out[14:])
	}
	return true, h.out.link(ifindex, out)
}

// run reads the ring until stop closes, releasing what it holds as firsts
// arrive. The ring is polled briefly while fragments wait, so that one is
// sent within a few milliseconds of its first.
func (h *holder) run(stop <-chan struct{}) {
	rd, err := ringbuf.NewReader(h.set.Held)
	if err != nil {
		h.log.Warn("held fragments: cannot read the ring; reordered fragments will be lost", "err", err)
		return
	}
	go func() {
		<-stop
		rd.Close()
	}()
	var rec ringbuf.Record
	for {
		wait := 100 * time.Millisecond
		if h.release() > 0 {
			wait = 2 * time.Millisecond
		}
		rd.SetDeadline(time.Now().Add(wait))
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			h.take(rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			h.log.Warn("held fragments: reading the ring", "err", err)
			return
		}
	}
}

// placeFragment does to a later fragment what the program does when it
// knows where the first went (bpf/xlb.c, later_fragment): DR readdresses
// the frame to the real, TUN encapsulates it, NAT rewrites the address the
// first had rewritten and sends it the first's way (or, when the first
// went to the kernel, hands it to the kernel too). The IP header checksum
// is recomputed rather than updated: the result is the same.
func placeFragment(frame []byte, fv maps.FragVal, r maps.RealVal) (ifindex int, out []byte, toKernel bool, err error) {
	if len(frame) < 14+20 || frame[14]>>4 != 4 {
		return 0, nil, false, errors.New("not an IPv4 frame")
	}
	ip := frame[14:]
	hlen := int(ip[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:4]))
	if hlen < 20 || tot < hlen || tot > len(ip) {
		return 0, nil, false, errors.New("bad IPv4 header")
	}
	switch maps.Mode(r.Mode) {
	case maps.ModeDR:
		out = append([]byte(nil), frame[:14+tot]...)
		copy(out[0:6], r.Dmac[:])
		copy(out[6:12], r.Smac[:])
		return int(r.Ifindex), out, false, nil
	case maps.ModeTUN:
		if tot+20 > int(r.Mtu) {
			return 0, nil, false, fmt.Errorf("%d bytes do not fit the tunnel's MTU %d", tot+20, r.Mtu)
		}
		out = make([]byte, 14+20+tot)
		copy(out[0:6], r.Dmac[:])
		copy(out[6:12], r.Smac[:])
		binary.BigEndian.PutUint16(out[12:14], 0x0800)
		o := out[14:34]
		o[0] = 0x45
		o[1] = ip[1] // TOS, TTL and DF from the inner header, as IPVS
		binary.BigEndian.PutUint16(o[2:4], uint16(tot+20))
		o[6] = ip[6] & 0x40
		o[8] = ip[8]
		o[9] = 4
		binary.NativeEndian.PutUint32(o[12:16], r.LbIp)
		binary.NativeEndian.PutUint32(o[16:20], r.Ip)
		setIPChecksum(o)
		copy(out[34:], ip[:tot])
		return int(r.Ifindex), out, false, nil
	case maps.ModeNAT:
		if ip[8] <= 1 {
			return 0, nil, false, errors.New("TTL expired")
		}
		out = append([]byte(nil), frame[:14+tot]...)
		o := out[14:]
		at := 16
		if fv.Flags&maps.FragReply != 0 {
			at = 12
		}
		binary.NativeEndian.PutUint32(o[at:at+4], fv.Addr)
		if fv.Flags&maps.FragPass != 0 {
			setIPChecksum(o[:hlen])
			return 0, out, true, nil
		}
		o[8]--
		setIPChecksum(o[:hlen])
		copy(out[0:6], fv.Dmac[:])
		copy(out[6:12], fv.Smac[:])
		return int(fv.Ifindex), out, false, nil
	}
	return 0, nil, false, fmt.Errorf("unknown forwarding mode %d", r.Mode)
}

func setIPChecksum(h []byte) {
	h[10], h[11] = 0, 0
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(h[10:12], ^uint16(s))
}

// sockets sends frames out of links (AF_PACKET) and datagrams to the
// kernel's routing (a raw IP socket that takes the header as given).
type sockets struct {
	packet, raw int
}

func newSockets() (*sockets, error) {
	p, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(p)
		return nil, fmt.Errorf("raw IP socket: %w", err)
	}
	return &sockets{packet: p, raw: r}, nil
}

func (s *sockets) link(ifindex int, frame []byte) error {
	sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Protocol: htons(0x0800)}
	copy(sa.Addr[:], frame[0:6])
	return unix.Sendto(s.packet, frame, 0, sa)
}

func (s *sockets) kernel(dgram []byte) error {
	return unix.Sendto(s.raw, dgram, 0, &unix.SockaddrInet4{Addr: [4]byte(dgram[16:20])})
}

func (s *sockets) close() {
	unix.Close(s.packet)
	unix.Close(s.raw)
}

func htons(v uint16) uint16 { return binary.NativeEndian.Uint16([]byte{byte(v >> 8), byte(v)}) }
