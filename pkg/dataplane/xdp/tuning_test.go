package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/sched"
)

// Each of IPVS's sysctls in dataplane.Tuning changes what the program does
// with the same packets; the zero Tuning is IPVS's defaults.

// tuningLab is a lab with the program's clock stopped at a fixed instant.
func tuningLab(t *testing.T) *lab {
	l := newLab(t)
	l.diffSetClock(t, 1000*time.Hour)
	return l
}

// drService is a DR service over two reals of f0's segment, rr picking
// 10.50.1.11 first.
func drService(persist time.Duration, w11, w12 int) dataplane.Service {
	return dataplane.Service{VIP: vipDR, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.DR,
		PersistTimeout: persist, Reals: []dataplane.Real{
			{Addr: netip.MustParseAddr("10.50.1.12"), Port: 80, Weight: w12},
			{Addr: netip.MustParseAddr("10.50.1.11"), Port: 80, Weight: w11},
		}}
}

var (
	tuneVIP    = netip.AddrPortFrom(vipDR, 80)
	tuneClient = netip.MustParseAddrPort("10.50.1.2:40000")
	tuneR11    = netip.MustParseAddr("10.50.1.11")
	tuneR12    = netip.MustParseAddr("10.50.1.12")
)

func (l *lab) send(t *testing.T, client netip.AddrPort, flags sched.TCPFlags) diffObserved {
	t.Helper()
	return l.diffClientPacket(t, dataplane.DR, client, tuneVIP, 6, flags)
}

func TestTuningWrittenToTrackCfg(t *testing.T) {
	l := newLab(t)
	for _, tu := range []dataplane.Tuning{{}, {ExpireQuiescentTemplate: true}, {NoConnReuse: true}, {SloppyTCP: true}} {
		l.apply(t, dataplane.State{Tuning: tu})
		c, err := l.set.Track.Get()
		if err != nil {
			t.Fatal(err)
		}
		got := dataplane.Tuning{ExpireQuiescentTemplate: c.ExpireQuiescentTemplate != 0, NoConnReuse: c.NoConnReuse != 0,
			SloppyTCP: c.SloppyTcp != 0}
		if got != tu {
			t.Errorf("track_cfg holds %+v, want %+v", got, tu)
		}
	}
}

// sloppy_tcp: a segment without SYN (a flow seen mid-stream, as after a
// failover) starts a connection only with it on.
func TestTuningSloppyTCP(t *testing.T) {
	for _, sloppy := range []bool{false, true} {
		l := tuningLab(t)
		l.apply(t, dataplane.State{Services: []dataplane.Service{drService(0, 1, 1)},
			Tuning: dataplane.Tuning{SloppyTCP: sloppy}})
		o := l.send(t, tuneClient, sched.ACK)
		_, conn := l.diffConn(tuneClient, tuneVIP, 6)
		if o.fwd != sloppy || conn != sloppy {
			t.Errorf("sloppy_tcp %v: an ACK without a connection: forwarded %v (%s), entry %v; want %v",
				sloppy, o.fwd, verdictName[o.verdict], conn, sloppy)
		}
		// RST never starts one.
		rst := netip.AddrPortFrom(tuneClient.Addr(), 40001)
		if o := l.send(t, rst, sched.RST|sched.ACK); o.fwd {
			t.Errorf("sloppy_tcp %v: an RST started a connection to %s", sloppy, o.real)
		}
	}
}

// conn_reuse_mode: a SYN on a connection in CLOSE starts a new one,
// scheduled afresh (mode 1, the default), or continues the old one on its
// real (mode 0).
func TestTuningConnReuse(t *testing.T) {
	for _, noReuse := range []bool{false, true} {
		l := tuningLab(t)
		l.apply(t, dataplane.State{Services: []dataplane.Service{drService(0, 1, 1)},
			Tuning: dataplane.Tuning{NoConnReuse: noReuse}})
		if o := l.send(t, tuneClient, sched.SYN); o.real != tuneR11 {
			t.Fatalf("first SYN went to %v (%s), want %s", o.real, verdictName[o.verdict], tuneR11)
		}
		l.send(t, tuneClient, sched.ACK)
		l.send(t, tuneClient, sched.RST) // CLOSE
		o := l.send(t, tuneClient, sched.SYN)
		want := tuneR12 // rr's next
		if noReuse {
			want = tuneR11
		}
		if o.real != want {
			t.Errorf("conn_reuse_mode %d: SYN on a closed connection went to %v (%s), want %s",
				map[bool]int{false: 1, true: 0}[noReuse], o.real, verdictName[o.verdict], want)
		}
	}
}

// expire_quiescent_template: a persistence template whose real was
// quiesced keeps sending the client there (off, the default) or is dropped
// and the client scheduled afresh (on).
func TestTuningExpireQuiescentTemplate(t *testing.T) {
	for _, expire := range []bool{false, true} {
		l := tuningLab(t)
		tu := dataplane.Tuning{ExpireQuiescentTemplate: expire}
		l.apply(t, dataplane.State{Services: []dataplane.Service{drService(300*time.Second, 1, 1)}, Tuning: tu})
		if o := l.send(t, tuneClient, sched.SYN); o.real != tuneR11 {
			t.Fatalf("first SYN went to %v (%s), want %s", o.real, verdictName[o.verdict], tuneR11)
		}
		l.apply(t, dataplane.State{Services: []dataplane.Service{drService(300*time.Second, 0, 1)}, Tuning: tu})
		other := netip.AddrPortFrom(tuneClient.Addr(), 40001)
		o := l.send(t, other, sched.SYN)
		want := tuneR11
		if expire {
			want = tuneR12
		}
		if o.real != want {
			t.Errorf("expire_quiescent_template %v: the client's next connection went to %v (%s), want %s",
				expire, o.real, verdictName[o.verdict], want)
		}
	}
}
