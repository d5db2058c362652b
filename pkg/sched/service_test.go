package sched

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const sec = time.Second

var vip = ap("192.0.2.1:80")

func r(n int) netip.AddrPort { return rs(n, 1).AddrPort() }

// open sends a SYN from client (an "a.b.c.d:port" string) and returns the
// real's address, or "none".
func open(t *testing.T, s *Service, now time.Duration, client string) string {
	t.Helper()
	return send(t, s, now, Packet{Client: ap(client), VIP: vip, Flags: SYN})
}

func send(t *testing.T, s *Service, now time.Duration, p Packet) string {
	t.Helper()
	v, ok := s.Packet(now, p)
	if !ok {
		return "none"
	}
	if v.Dest >= 0 && s.Dests()[v.Dest].AddrPort() != v.Real {
		t.Fatalf("verdict index %d is %v, real %v", v.Dest, s.Dests()[v.Dest].AddrPort(), v.Real)
	}
	return realName(v.Real)
}

func realName(a netip.AddrPort) string {
	return fmt.Sprintf("r%d", a.Addr().As4()[3])
}

// loads renders "r1:active/inactive ..." in list order.
func loads(s *Service) string {
	var b []string
	for _, d := range s.Dests() {
		o := ""
		if d.Overloaded {
			o = "!"
		}
		b = append(b, fmt.Sprintf("%s:%d/%d%s", realName(d.AddrPort()), d.Active, d.Inactive, o))
	}
	return strings.Join(b, " ")
}

func TestServiceRR(t *testing.T) {
	s := mustNew(t, Config{Sched: "rr", VIP: vip.Addr(), Port: 80}, reals(1, 1, 1)...)
	var got []string
	for i := range 6 {
		got = append(got, open(t, s, sec, fmt.Sprintf("198.51.100.%d:1000", i)))
	}
	// Quiesce r2: no new connections, the existing ones continue.
	if err := s.SetWeight(2*sec, r(2), 0); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got = append(got, open(t, s, 3*sec, fmt.Sprintf("198.51.100.%d:2000", i)))
	}
	got = append(got, send(t, s, 4*sec, Packet{Client: ap("198.51.100.1:1000"), VIP: vip, Flags: ACK}))
	// A new real goes to the head of the list; the sequence restarts.
	if err := s.AddDest(5*sec, rs(4, 1)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got = append(got, open(t, s, 6*sec, fmt.Sprintf("198.51.100.%d:3000", i)))
	}
	want := "r1 r2 r3 r1 r2 r3 r1 r3 r1 r2 r4 r1 r3"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("got  %s\nwant %s", g, want)
	}
	if diff := cmp.Diff([]int{0, 1, 3}, must2(s.Sequence())); diff != "" {
		t.Errorf("sequence over r4 r1 r2(quiesced) r3 (-want +got):\n%s", diff)
	}
	// Packets for other addresses or ports are not the service's.
	if got := send(t, s, 7*sec, Packet{Client: ap("198.51.100.9:1"), VIP: ap("192.0.2.1:81"), Flags: SYN}); got != "none" {
		t.Errorf("other port scheduled to %s", got)
	}
	// A TCP segment without SYN does not start a connection.
	if got := send(t, s, 7*sec, Packet{Client: ap("198.51.100.9:1"), VIP: vip, Flags: ACK}); got != "none" {
		t.Errorf("bare ACK scheduled to %s", got)
	}
}

func must2(seq []int, _ uint64) []int { return seq }

func TestServiceWRRShares(t *testing.T) {
	s := mustNew(t, Config{Sched: "wrr", VIP: vip.Addr(), Port: 80, Proto: UDP}, reals(3, 2, 1)...)
	n := map[string]int{}
	for i := range 60 {
		n[send(t, s, sec, Packet{Client: netip.AddrPortFrom(client(i), 5000), VIP: vip})]++
	}
	if diff := cmp.Diff(map[string]int{"r1": 30, "r2": 20, "r3": 10}, n); diff != "" {
		t.Errorf("60 UDP flows over 3:2:1 (-want +got):\n%s", diff)
	}
}

func TestServiceConnectionCounting(t *testing.T) {
	s := mustNew(t, Config{Sched: "rr", VIP: vip.Addr(), Port: 80, Kind: DR}, reals(1)...)
	c := ap("198.51.100.1:1000")
	step := func(now time.Duration, f TCPFlags, wantState TCPState, wantLoads string) {
		t.Helper()
		v, ok := s.Packet(now, Packet{Client: c, VIP: vip, Flags: f})
		if !ok || v.State != wantState {
			t.Errorf("at %v: state %v ok %v, want %v", now, v.State, ok, wantState)
		}
		if got := loads(s); got != wantLoads {
			t.Errorf("at %v: loads %s, want %s", now, got, wantLoads)
		}
	}
	step(0, SYN, TCPSynRecv, "r1:1/0") // handshake states count as active
	step(sec, ACK, TCPEstablished, "r1:1/0")
	step(2*sec, FIN|ACK, TCPFinWait, "r1:0/1") // DR: the input-only table
	info, _ := s.Conn(c, vip)
	if info.Expires != 2*sec+120*sec || info.Active {
		t.Errorf("FIN_WAIT conn: %+v", info)
	}
	s.Expire(121 * sec)
	if loads(s) != "r1:0/1" {
		t.Errorf("expired early: %s", loads(s))
	}
	s.Expire(122 * sec)
	if _, ok := s.Conn(c, vip); ok || loads(s) != "r1:0/0" {
		t.Errorf("not expired at FIN_WAIT timeout: %s", loads(s))
	}

	// A SYN never answered lives SYN_RECV's 60 s.
	open(t, s, 200*sec, "198.51.100.2:1000")
	s.Expire(259 * sec)
	if loads(s) != "r1:1/0" {
		t.Errorf("SYN_RECV: %s", loads(s))
	}
	s.Expire(260 * sec)
	if loads(s) != "r1:0/0" {
		t.Errorf("SYN_RECV after 60 s: %s", loads(s))
	}
}

func TestServiceNATStates(t *testing.T) {
	s := mustNew(t, Config{Sched: "rr", VIP: vip.Addr(), Port: 80, Kind: NAT}, reals(1)...)
	c := ap("198.51.100.1:1000")
	var got []string
	for i, p := range []Packet{
		{Client: c, VIP: vip, Flags: SYN},
		{Client: c, VIP: vip, Flags: SYN | ACK, Reply: true},
		{Client: c, VIP: vip, Flags: ACK},
		{Client: c, VIP: vip, Flags: FIN | ACK},
		{Client: c, VIP: vip, Flags: FIN | ACK, Reply: true},
		{Client: c, VIP: vip, Flags: ACK},
	} {
		v, ok := s.Packet(time.Duration(i)*sec, p)
		if !ok {
			t.Fatalf("packet %d dropped", i)
		}
		got = append(got, v.State.String())
	}
	want := "SYN_RECV SYN_RECV ESTABLISHED CLOSE_WAIT TIME_WAIT TIME_WAIT"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("states %s, want %s", g, want)
	}
	// A reply without a connection is not scheduled.
	if got := send(t, s, 9*sec, Packet{Client: ap("198.51.100.2:1"), VIP: vip, Flags: SYN | ACK, Reply: true}); got != "none" {
		t.Errorf("reply created a connection to %s", got)
	}
}

func TestServiceUDP(t *testing.T) {
	cfg := Config{Sched: "rr", VIP: vip.Addr(), Port: 80, Proto: UDP}
	cfg.Timeouts = DefaultTimeouts()
	cfg.Timeouts.SetLVSTimeouts(0, 0, 100*sec)
	s := mustNew(t, cfg, reals(1, 1)...)
	p := Packet{Client: ap("198.51.100.1:53"), VIP: vip}
	send(t, s, 0, p)
	if got := send(t, s, 50*sec, p); got != "r1" {
		t.Errorf("second datagram went to %s", got)
	}
	if loads(s) != "r1:0/1 r2:0/0" {
		t.Errorf("UDP connections count as inactive: %s", loads(s))
	}
	s.Expire(149 * sec)
	if loads(s) != "r1:0/1 r2:0/0" {
		t.Errorf("expired before udp timeout after the last datagram: %s", loads(s))
	}
	s.Expire(150 * sec)
	if loads(s) != "r1:0/0 r2:0/0" {
		t.Errorf("not expired: %s", loads(s))
	}
}

func TestServiceWLC(t *testing.T) {
	s := mustNew(t, Config{Sched: "wlc", VIP: vip.Addr(), Port: 80}, reals(1, 2)...)
	var got []string
	for i := range 4 {
		got = append(got, open(t, s, sec, fmt.Sprintf("198.51.100.%d:1000", i)))
	}
	// overhead/weight: 0/1 0/2 -> r1; 256/1 0/2 -> r2; 256/1 256/2 -> r2;
	// 256/1 512/2 tie -> r1 (first).
	if g := strings.Join(got, " "); g != "r1 r2 r2 r1" {
		t.Errorf("wlc picks %s", g)
	}
}

func TestServiceThresholds(t *testing.T) {
	ds := reals(1, 1)
	ds[0].UpperThreshold = 2
	s := mustNew(t, Config{Sched: "rr", VIP: vip.Addr(), Port: 80, Kind: DR}, ds...)
	var got []string
	for i := range 5 {
		got = append(got, open(t, s, 0, fmt.Sprintf("198.51.100.%d:1000", i)))
	}
	if g := strings.Join(got, " "); g != "r1 r2 r1 r2 r2" {
		t.Errorf("picks %s: r1 should be skipped once it reaches u_threshold 2", g)
	}
	if loads(s) != "r1:2/0! r2:3/0" {
		t.Errorf("loads %s", loads(s))
	}
	// Close one of r1's: 1*4 < 2*3 clears the flag when it expires.
	send(t, s, sec, Packet{Client: ap("198.51.100.0:1000"), VIP: vip, Flags: ACK})
	send(t, s, 2*sec, Packet{Client: ap("198.51.100.0:1000"), VIP: vip, Flags: RST})
	s.Expire(11 * sec)
	if loads(s) != "r1:1/1! r2:3/0" {
		t.Errorf("CLOSE still counted until it expires: %s", loads(s))
	}
	if got := open(t, s, 12*sec, "198.51.100.9:1000"); got != "r1" {
		t.Errorf("after r1 fell below 3/4 of its threshold: %s (%s)", got, loads(s))
	}
	// Raising the threshold clears the flag at once (__ip_vs_update_dest).
	open(t, s, 13*sec, "198.51.100.10:1000")
	open(t, s, 13*sec, "198.51.100.11:1000")
	if !s.Dests()[0].Overloaded {
		t.Fatalf("r1 not overloaded: %s", loads(s))
	}
	d := s.Dests()[0]
	d.UpperThreshold = 10
	if err := s.UpdateDest(14*sec, d); err != nil {
		t.Fatal(err)
	}
	if s.Dests()[0].Overloaded {
		t.Errorf("raising u_threshold left r1 overloaded")
	}
}

func persistent(sched string) Config {
	return Config{Sched: sched, VIP: vip.Addr(), Port: 80, PersistTimeout: 300 * sec, PersistPrefix: 24}
}

func TestPersistenceGranularity(t *testing.T) {
	s := mustNew(t, persistent("rr"), reals(1, 1, 1)...)
	got := []string{
		open(t, s, 0, "198.51.100.10:1000"),
		open(t, s, sec, "198.51.100.20:2000"), // same /24: the template
		open(t, s, 2*sec, "203.0.113.5:3000"), // rr moves on
		open(t, s, 3*sec, "198.51.100.30:4000"),
	}
	if diff := cmp.Diff([]string{"r1", "r1", "r2", "r1"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	want := []TemplateInfo{
		{Client: ip("198.51.100.0"), VIP: vip.Addr(), VPort: 80, Real: r(1), Expires: 303 * sec, Controlled: 3},
		{Client: ip("203.0.113.0"), VIP: vip.Addr(), VPort: 80, Real: r(2), Expires: 302 * sec, Controlled: 1},
	}
	if diff := cmp.Diff(want, s.Templates(), addrs); diff != "" {
		t.Errorf("templates (-want +got):\n%s", diff)
	}
	if n := s.PersistConns(r(1)); n != 1 {
		t.Errorf("r1 persistconns %d", n)
	}
	if info, _ := s.Conn(ap("198.51.100.20:2000"), vip); !info.Persistent {
		t.Errorf("connection through a template not marked persistent")
	}
}

func TestPersistenceQuiescedReal(t *testing.T) {
	for _, expire := range []bool{false, true} {
		t.Run(fmt.Sprintf("expire_quiescent_template=%v", expire), func(t *testing.T) {
			cfg := persistent("rr")
			cfg.Sysctl.ExpireQuiescentTemplate = expire
			s := mustNew(t, cfg, reals(1, 1, 1)...)
			open(t, s, 0, "198.51.100.10:1000")
			if err := s.SetWeight(sec, r(1), 0); err != nil {
				t.Fatal(err)
			}
			got := open(t, s, 2*sec, "198.51.100.11:1000")
			want := "r1" // IPVS keeps feeding a quiesced real its clients
			if expire {
				want = "r2" // template invalidated, rr over r2 r3
			}
			if got != want {
				t.Errorf("same /24 after quiescing r1: %s, want %s", got, want)
			}
			if tpl := s.Templates(); len(tpl) != 1 || realName(tpl[0].Real) != want {
				t.Errorf("templates %+v", tpl)
			}
		})
	}
}

func TestPersistenceRemovedReal(t *testing.T) {
	s := mustNew(t, persistent("rr"), reals(1, 1, 1)...)
	open(t, s, 0, "198.51.100.10:1000")
	if err := s.RemoveDest(sec, r(1)); err != nil {
		t.Fatal(err)
	}
	if got := open(t, s, 2*sec, "198.51.100.11:1000"); got != "r2" {
		t.Errorf("after removing r1: %s, want r2", got)
	}
	// The removed real's connection carries on (Dest -1 in the verdict).
	v, ok := s.Packet(3*sec, Packet{Client: ap("198.51.100.10:1000"), VIP: vip, Flags: ACK})
	if !ok || v.Dest != -1 || v.Real != r(1) {
		t.Errorf("old connection: %+v %v", v, ok)
	}
	if d, ok := s.Schedule(3*sec, Packet{Client: ap("198.51.100.10:1000"), VIP: vip, Flags: ACK}); ok || d != -1 {
		t.Errorf("Schedule for a removed real's connection: %d %v", d, ok)
	}
	// Re-adding r1 does not revive the template: it was invalidated when
	// looked up.
	if err := s.AddDest(4*sec, rs(1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := open(t, s, 5*sec, "198.51.100.12:1000"); got != "r2" {
		t.Errorf("after re-adding r1: %s, want r2", got)
	}
	// r1 came back with its live connection counted.
	if loads(s) != "r1:1/0 r2:2/0 r3:0/0" {
		t.Errorf("loads %s", loads(s))
	}
}

func TestPersistenceRealBackBeforeLookup(t *testing.T) {
	s := mustNew(t, persistent("rr"), reals(1, 1, 1)...)
	open(t, s, 0, "198.51.100.10:1000")
	s.RemoveDest(sec, r(1))
	s.AddDest(2*sec, rs(1, 1))
	if got := open(t, s, 3*sec, "198.51.100.11:1000"); got != "r1" {
		t.Errorf("template not looked up while r1 was out: %s, want r1", got)
	}
}

func TestPersistenceTemplateLifetime(t *testing.T) {
	t.Run("expires persistence_timeout after last use", func(t *testing.T) {
		cfg := persistent("rr")
		cfg.Kind = DR
		s := mustNew(t, cfg, reals(1, 1)...)
		c := ap("198.51.100.10:1000")
		open(t, s, 0, c.String())
		send(t, s, sec, Packet{Client: c, VIP: vip, Flags: ACK})
		send(t, s, 2*sec, Packet{Client: c, VIP: vip, Flags: RST}) // CLOSE, gone at 12 s
		s.Expire(299 * sec)
		if len(s.Templates()) != 1 {
			t.Fatalf("template gone before 300 s")
		}
		s.Expire(300 * sec)
		if len(s.Templates()) != 0 {
			t.Fatalf("template alive at 300 s: %+v", s.Templates())
		}
		if got := open(t, s, 301*sec, "198.51.100.11:1000"); got != "r2" {
			t.Errorf("after expiry: %s, want r2", got)
		}
	})
	t.Run("held while it controls connections, then 60 s steps", func(t *testing.T) {
		cfg := persistent("rr")
		cfg.Kind = DR
		s := mustNew(t, cfg, reals(1, 1)...)
		c := ap("198.51.100.10:1000")
		open(t, s, 0, c.String())
		send(t, s, sec, Packet{Client: c, VIP: vip, Flags: ACK}) // ESTABLISHED until 901 s
		s.Expire(300 * sec)
		if tpl := s.Templates(); len(tpl) != 1 || tpl[0].Expires != 360*sec || tpl[0].Controlled != 1 {
			t.Fatalf("at 300 s: %+v", tpl)
		}
		s.Expire(901 * sec) // pushed to 960 at 900; the connection went at 901
		if tpl := s.Templates(); len(tpl) != 1 || tpl[0].Expires != 960*sec || tpl[0].Controlled != 0 {
			t.Fatalf("at 901 s: %+v", tpl)
		}
		// A new connection through it now rearms it by 60 s, not 300 s.
		if got := open(t, s, 950*sec, "198.51.100.11:1000"); got != "r1" {
			t.Fatalf("at 950 s: %s", got)
		}
		if tpl := s.Templates(); len(tpl) != 1 || tpl[0].Expires != 1010*sec {
			t.Fatalf("after reuse at 950 s: %+v", tpl)
		}
		// The SYN_RECV connection and the template both fire at 1010 s;
		// the connection goes first, so the template is not extended.
		s.Expire(1010 * sec)
		if tpl := s.Templates(); len(tpl) != 0 {
			t.Errorf("at 1010 s: %+v", tpl)
		}
		if n := s.PersistConns(r(1)); n != 0 {
			t.Errorf("persistconns %d", n)
		}
	})
}

func TestPersistencePortZeroFWMarkFTP(t *testing.T) {
	t.Run("port 0", func(t *testing.T) {
		cfg := persistent("rr")
		cfg.Port = 0
		s := mustNew(t, cfg, reals(1, 1)...)
		a := send(t, s, 0, Packet{Client: ap("198.51.100.1:1000"), VIP: ap("192.0.2.1:80"), Flags: SYN})
		b := send(t, s, 0, Packet{Client: ap("198.51.100.1:1001"), VIP: ap("192.0.2.1:443"), Flags: SYN})
		o := send(t, s, 0, Packet{Client: ap("203.0.113.1:1000"), VIP: ap("192.0.2.1:443"), Flags: SYN})
		if a != "r1" || b != "r1" || o != "r2" {
			t.Errorf("port-0 persistence: %s %s %s, want r1 r1 r2", a, b, o)
		}
		if tpl := s.Templates(); tpl[0].VPort != 0 {
			t.Errorf("template vport %d", tpl[0].VPort)
		}
		cfg.PersistTimeout = 0
		np := mustNew(t, cfg, reals(1)...)
		if got := send(t, np, 0, Packet{Client: ap("198.51.100.1:1000"), VIP: ap("192.0.2.1:80"), Flags: SYN}); got != "none" {
			t.Errorf("non-persistent port-0 service scheduled to %s", got)
		}
	})
	t.Run("fwmark", func(t *testing.T) {
		cfg := persistent("rr")
		cfg.FWMark, cfg.VIP, cfg.Port = 7, netip.Addr{}, 0
		s := mustNew(t, cfg, reals(1, 1)...)
		a := send(t, s, 0, Packet{Client: ap("198.51.100.1:1000"), VIP: ap("192.0.2.1:80"), Flags: SYN})
		b := send(t, s, 0, Packet{Client: ap("198.51.100.1:1001"), VIP: ap("192.0.2.99:443"), Flags: SYN})
		if a != "r1" || b != "r1" {
			t.Errorf("fwmark persistence: %s %s", a, b)
		}
		want := []TemplateInfo{{Client: ip("198.51.100.0"), FWMark: 7, Real: r(1), Expires: 300 * sec, Controlled: 2}}
		if diff := cmp.Diff(want, s.Templates(), addrs); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("ftp", func(t *testing.T) {
		cfg := persistent("rr")
		cfg.Port = 21
		s := mustNew(t, cfg, reals(1)...)
		send(t, s, 0, Packet{Client: ap("198.51.100.1:1000"), VIP: ap("192.0.2.1:21"), Flags: SYN})
		if tpl := s.Templates(); len(tpl) != 1 || tpl[0].VPort != 0 {
			t.Errorf("FTP template: %+v", tpl)
		}
	})
}

func TestServiceConnReuse(t *testing.T) {
	for _, noReuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoConnReuse=%v", noReuse), func(t *testing.T) {
			cfg := Config{Sched: "rr", VIP: vip.Addr(), Port: 80, Kind: DR}
			cfg.Sysctl.NoConnReuse = noReuse
			s := mustNew(t, cfg, reals(1, 1)...)
			c := ap("198.51.100.1:1000")
			open(t, s, 0, c.String())
			send(t, s, sec, Packet{Client: c, VIP: vip, Flags: ACK})
			send(t, s, 2*sec, Packet{Client: c, VIP: vip, Flags: RST}) // CLOSE
			v, _ := s.Packet(3*sec, Packet{Client: c, VIP: vip, Flags: SYN})
			if noReuse {
				if v.New || realName(v.Real) != "r1" || v.State != TCPSynRecv {
					t.Errorf("SYN on CLOSE without reuse: %+v", v)
				}
				return
			}
			if !v.New || realName(v.Real) != "r2" {
				t.Errorf("SYN on CLOSE: %+v, want a new connection to r2", v)
			}
			// The old entry is still counted until the next timer tick.
			if loads(s) != "r1:0/1 r2:1/0" {
				t.Errorf("loads %s", loads(s))
			}
			s.Expire(3 * sec)
			if loads(s) != "r1:0/0 r2:1/0" {
				t.Errorf("old entry not gone: %s", loads(s))
			}
			if info, _ := s.Conn(c, vip); info.Real != r(2) {
				t.Errorf("connection table holds %+v", info)
			}
		})
	}
}

func TestServiceConnReusePersistent(t *testing.T) {
	cfg := persistent("rr")
	cfg.Kind = DR
	s := mustNew(t, cfg, reals(1, 1)...)
	c := ap("198.51.100.1:1000")
	open(t, s, 0, c.String())
	open(t, s, 0, "203.0.113.1:1000") // r2, moves rr on
	send(t, s, sec, Packet{Client: c, VIP: vip, Flags: ACK})
	send(t, s, 2*sec, Packet{Client: c, VIP: vip, Flags: RST})
	v, _ := s.Packet(3*sec, Packet{Client: c, VIP: vip, Flags: SYN})
	if !v.New || realName(v.Real) != "r1" {
		t.Errorf("SYN on a persistent CLOSE connection: %+v, want a new connection through the template to r1", v)
	}
	s.Expire(3 * sec)
	if tpl := s.Templates(); len(tpl) != 2 || tpl[0].Controlled != 1 {
		t.Errorf("templates %+v", tpl)
	}
}

func TestServiceHashing(t *testing.T) {
	t.Run("sh", func(t *testing.T) {
		for _, fallback := range []bool{false, true} {
			cfg := Config{Sched: "sh", VIP: vip.Addr(), Port: 80}
			if fallback {
				cfg.Flags = SHFallback
			}
			s := mustNew(t, cfg, reals(1, 1, 1)...)
			first := open(t, s, 0, "198.51.100.7:1000")
			if got := open(t, s, 0, "198.51.100.7:1001"); got != first {
				t.Fatalf("same client, other port: %s then %s", first, got)
			}
			n := int(first[1] - '0')
			s.SetWeight(sec, r(n), 0)
			got := open(t, s, 2*sec, "198.51.100.7:1002")
			switch {
			case !fallback && got != "none":
				t.Errorf("quiesced %s without sh-fallback: got %s", first, got)
			case fallback && (got == "none" || got == first):
				t.Errorf("quiesced %s with sh-fallback: got %s", first, got)
			}
		}
	})
	t.Run("mh quiesce keeps the table", func(t *testing.T) {
		s := mustNew(t, Config{Sched: "mh", Flags: MHFallback, VIP: vip.Addr(), Port: 80}, reals(1, 1, 1)...)
		before := s.Table()
		first := open(t, s, 0, "198.51.100.7:1000")
		n := int(first[1] - '0')
		s.SetWeight(sec, r(n), 0)
		if diff := cmp.Diff(before, s.Table()); diff != "" {
			t.Errorf("quiescing changed the mh table:\n%s", diff)
		}
		if got := open(t, s, 2*sec, "198.51.100.7:1001"); got == "none" || got == first {
			t.Errorf("mh-fallback: %s", got)
		}
		s.SetWeight(3*sec, r(n), 1)
		if got := open(t, s, 4*sec, "198.51.100.7:1002"); got != first {
			t.Errorf("back from quiesce: %s, want %s", got, first)
		}
	})
	t.Run("dh and lblc key on the destination", func(t *testing.T) {
		for _, sched := range []string{"dh", "lblc", "lblcr"} {
			// Weights above the connection count: lblc's overload rule
			// (active > weight) would otherwise move the destination.
			s := mustNew(t, Config{Sched: sched, FWMark: 1}, reals(10, 10, 10)...)
			dst := ap("203.0.113.80:80")
			first := send(t, s, 0, Packet{Client: ap("198.51.100.1:1000"), VIP: dst, Flags: SYN})
			for i := 2; i < 6; i++ {
				c := netip.AddrPortFrom(client(i), 1000)
				if got := send(t, s, 0, Packet{Client: c, VIP: dst, Flags: SYN}); got != first {
					t.Errorf("%s: client %v to the same destination went to %s, first to %s", sched, c, got, first)
				}
			}
		}
	})
}

func TestServiceTWOSAndSecureTCP(t *testing.T) {
	cfg := Config{Sched: "twos", VIP: vip.Addr(), Port: 80, Kind: DR}
	cfg.Sysctl.SecureTCP = true
	s := mustNew(t, cfg, reals(1, 1)...)
	v, ok := s.Packet(0, Packet{Client: ap("198.51.100.1:1000"), VIP: vip, Flags: SYN, Rand: [2]uint32{2, 2}})
	if !ok || realName(v.Real) != "r2" || v.State != TCPSynAck {
		t.Errorf("twos with draws 2,2 under secure_tcp: %+v %v", v, ok)
	}
	if loads(s) != "r1:0/0 r2:1/0" {
		t.Errorf("SYNACK counts as active: %s", loads(s))
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg   Config
		dests []Dest
		want  string
	}{
		{Config{Sched: "foo"}, nil, `unknown scheduler "foo"`},
		{Config{Sched: "rr", Proto: 132}, nil, "protocol 132"},
		{Config{Sched: "rr"}, reals(1, 1)[:1:1], ""},
		{Config{Sched: "rr"}, append(reals(1), rs(1, 2)), "duplicate real"},
		{Config{Sched: "mh", MH: MHParams{Size: 2, Bits: 1}}, reals(1, 1, 1), "exceed"},
		{Config{Sched: "rr", PersistPrefix: 129}, nil, "prefix"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg, tt.dests...)
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v): %v, want %q", tt.cfg, err, tt.want)
		}
	}
	s := mustNew(t, Config{Sched: "rr"}, reals(1)...)
	if err := s.AddDest(0, rs(1, 1)); err == nil {
		t.Error("duplicate AddDest accepted")
	}
	if err := s.RemoveDest(0, r(9)); err == nil {
		t.Error("RemoveDest of an unknown real accepted")
	}
	if err := s.SetWeight(0, r(9), 1); err == nil {
		t.Error("SetWeight of an unknown real accepted")
	}
}
