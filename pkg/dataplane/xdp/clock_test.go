package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/sched"
)

// The packets' jiffy clock is CLOCK_MONOTONIC as of the last tick: a UDP
// datagram's entry expires the UDP timeout after the datagram was sent, to
// within one tick, and a later datagram moves it by the time between them.
func TestPacketClock(t *testing.T) {
	l := newLab(t)
	if err := l.set.PacketClockErr; err != nil {
		t.Fatalf("no jiffy clock found: %v", err)
	}
	tick := l.set.PacketClock.Tick
	t.Logf("tick %d ns", tick)
	l.apply(t, goldenState())
	mono := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano())
	}
	udp := fromClient(vipDR, 53, layers.IPProtocolUDP).bytes(t)
	timeout := uint64(sched.DefaultTimeouts().UDP)
	// The base is late by the sampling and by how late the kernel was with
	// its tick (the least of three): slack for that.
	const slack = uint64(2 * time.Millisecond)
	for i, gap := range []time.Duration{0, 300 * time.Millisecond} {
		time.Sleep(gap)
		before := mono()
		if v, _ := l.run(t, l.set.Program, udp, l.f0); v != xdpTX {
			t.Fatalf("datagram %d: verdict %d, want XDP_TX", i, v)
		}
		after := mono()
		cv, ok := l.diffConn(netip.AddrPortFrom(addrClient, 40000), netip.AddrPortFrom(vipDR, 53), 17)
		if !ok {
			t.Fatalf("datagram %d: no connection entry", i)
		}
		at := cv.Expires - timeout
		if at+tick+slack < before || at > after+slack {
			t.Errorf("datagram %d: the program's clock read %d, CLOCK_MONOTONIC was %d to %d (tick %d)",
				i, at, before, after, tick)
		}
	}
}
