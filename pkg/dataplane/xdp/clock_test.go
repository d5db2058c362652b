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
// A base moved by 10 s moves the packets' time by as much (they do read
// the jiffy clock), gc measures that skew, and CheckClock turns the jiffy
// clock off, after which packets read the coarse clock.
func TestPacketClock(t *testing.T) {
	l := newLab(t)
	if err := l.set.PacketClockErr; err != nil {
		t.Fatalf("no jiffy clock found: %v", err)
	}
	tick := l.set.PacketClock.Tick
	t.Logf("tick %d ns", tick)
	var loaded uint64
	if err := l.set.TickNs.Get(&loaded); err != nil || loaded != tick {
		t.Fatalf("program's tick_ns %d (%v), want %d", loaded, err, tick)
	}
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
	send := func(name string, shift uint64, within uint64) {
		t.Helper()
		before := mono()
		if v, _ := l.run(t, l.set.Program, udp, l.f0); v != xdpTX {
			t.Fatalf("%s: verdict %d, want XDP_TX", name, v)
		}
		after := mono()
		cv, ok := l.diffConn(netip.AddrPortFrom(addrClient, 40000), netip.AddrPortFrom(vipDR, 53), 17)
		if !ok {
			t.Fatalf("%s: no connection entry", name)
		}
		at := cv.Expires - timeout - shift
		if at+within+slack < before || at > after+slack {
			t.Errorf("%s: the program's clock read %d (less %d), CLOCK_MONOTONIC was %d to %d",
				name, at, shift, before, after)
		}
	}
	send("first datagram", 0, tick)
	time.Sleep(300 * time.Millisecond)
	send("300 ms later", 0, tick)

	shift := uint64(10 * time.Second)
	if err := l.set.TickBase.Set(l.set.PacketClock.Base + shift); err != nil {
		t.Fatal(err)
	}
	send("base moved 10 s", shift, tick)
	res, err := l.set.GC.Run()
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Skew - int64(shift); d > int64(slack) || d < -int64(tick+slack) {
		t.Errorf("gc measured a skew of %d ns, want about %d", res.Skew, shift)
	}
	if err := l.set.CheckClock(res.Skew); err == nil {
		t.Fatal("CheckClock let a clock 10 s off run on")
	}
	if err := l.set.TickNs.Get(&loaded); err != nil || loaded != 0 {
		t.Fatalf("program's tick_ns %d (%v) after CheckClock, want 0", loaded, err)
	}
	// The coarse clock: also as of the last tick.
	send("coarse clock", 0, tick)
	if err := l.set.CheckClock(res.Skew); err != nil {
		t.Errorf("CheckClock reported again: %v", err)
	}
}
