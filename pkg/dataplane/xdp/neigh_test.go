package xdp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// fakeNeigh is the lab's resolver with a neighbour table the test
// controls: a silent address has a route but no MAC until the test makes
// it answer, which it reports as the kernel would.
type fakeNeigh struct {
	l          *lab
	mu         sync.Mutex
	silent     map[netip.Addr]bool
	solicited  map[netip.Addr]int
	events     chan<- NeighEvent
	subscribed chan struct{}
}

func newFakeNeigh(l *lab, silent ...netip.Addr) *fakeNeigh {
	f := &fakeNeigh{l: l, silent: map[netip.Addr]bool{}, solicited: map[netip.Addr]int{}, subscribed: make(chan struct{})}
	for _, a := range silent {
		f.silent[a] = true
	}
	return f
}

func (f *fakeNeigh) Resolve(ctx context.Context, ip netip.Addr) (L2, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l2, err := fixedResolver{f.l}.Resolve(ctx, ip)
	if err == nil && f.silent[ip] {
		l2.DstMAC = nil
		return L2{}, &PendingError{Path: l2, Next: ip}
	}
	return l2, err
}

func (f *fakeNeigh) Solicit(ifindex int, ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.solicited[ip]++
	return nil
}

func (f *fakeNeigh) Subscribe(ch chan<- NeighEvent, done <-chan struct{}) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = ch
	close(f.subscribed)
	return nil
}

func (f *fakeNeigh) asked(ip netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.solicited[ip]
}

// answer makes ip resolve (with mac, when given) and reports it.
func (f *fakeNeigh) answer(ip netip.Addr, mac net.HardwareAddr) {
	f.mu.Lock()
	delete(f.silent, ip)
	if mac != nil {
		f.l.macs = map[netip.Addr]net.HardwareAddr{ip: mac}
	}
	ch := f.events
	f.mu.Unlock()
	ch <- NeighEvent{Ifindex: f.l.f0, IP: ip, Usable: true}
}

func (f *fakeNeigh) mute(ip netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.silent[ip] = true
}

// resolvingLab is a lab whose tables resolve through f, with the resolver
// task running.
func resolvingLab(t *testing.T, silent ...netip.Addr) (*lab, *fakeNeigh) {
	t.Helper()
	l := newLab(t)
	f := newFakeNeigh(l, silent...)
	var err error
	if l.tables, err = NewTables(l.set, f, nil); err != nil {
		t.Fatal(err)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		l.tables.RunResolver(f, done)
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
	})
	select {
	case <-f.subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("the resolver task did not subscribe to neighbour changes")
	}
	return l, f
}

func (l *lab) entry(t *testing.T, a netip.Addr) (uint32, maps.RealVal) {
	t.Helper()
	id, ok := l.tables.RealID(vipDR, 80, 6, a, 80)
	if !ok {
		t.Fatalf("no real %s", a)
	}
	v, err := l.set.Reals.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return id, v
}

func (l *lab) reachable(t *testing.T, a netip.Addr) bool {
	t.Helper()
	st, err := l.tables.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		for _, r := range s.Reals {
			if r.Addr == a {
				return r.Reachable
			}
		}
	}
	t.Fatalf("no real %s in the status", a)
	return false
}

// drFlow sends the first packet of a new DR flow from sport and returns the
// MAC it was sent to.
func (l *lab) drFlow(t *testing.T, sport uint16) string {
	t.Helper()
	p := fromClient(vipDR, 80, layers.IPProtocolTCP)
	p.sport = sport
	verdict, out := l.run(t, l.set.Program, p.bytes(t), l.f0)
	if verdict != xdpTX && verdict != xdpRedirect {
		t.Fatalf("flow %d: verdict %s, want TX or REDIRECT", sport, verdictName[verdict])
	}
	return net.HardwareAddr(out[0:6]).String()
}

// pendingAddrs lists the pending reals' addresses.
func (t *Tables) pendingAddrs() []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []netip.Addr
	for _, p := range t.pending {
		out = append(out, p.ri.addr)
	}
	return out
}

func waitUntil(t *testing.T, bound time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(time.Millisecond)
	}
}

// An Apply does not wait for a real whose MAC is unknown: the real is
// written unreachable and takes no flows; when its neighbour answers the
// resolver task publishes its MAC and weight, and new flows reach it. With
// a scheduler of tables (rr) and one of trees (wlc).
func TestPendingRealPublishedWhenResolved(t *testing.T) {
	for _, sched := range []string{"rr", "wlc"} {
		t.Run(sched, func(t *testing.T) {
			r11, r12 := netip.MustParseAddr("10.50.1.11"), netip.MustParseAddr("10.50.1.12")
			l, f := resolvingLab(t, r12)
			st := dataplane.State{Services: []dataplane.Service{{VIP: vipDR, Port: 80, Protocol: 6, Sched: sched,
				Kind: dataplane.DR, Reals: []dataplane.Real{{Addr: r11, Port: 80, Weight: 1}}}}}
			l.apply(t, st) // the first Apply of a lab loads things; time the second
			st.Services[0].Reals = append(st.Services[0].Reals, dataplane.Real{Addr: r12, Port: 80, Weight: 2})
			t0 := time.Now()
			l.apply(t, st)
			took := time.Since(t0)
			t.Logf("apply adding a pending real: %v", took)
			if took > 250*time.Millisecond {
				t.Errorf("apply adding a pending real took %v", took)
			}

			id12, v := l.entry(t, r12)
			if v.Weight != 0 || v.Dmac != [6]uint8{} || v.Flags&maps.RealValid == 0 {
				t.Fatalf("pending real's entry %+v, want valid, weight 0, no MAC", v)
			}
			if l.reachable(t, r12) || !l.reachable(t, r11) {
				t.Fatalf("status: %s reachable %v, %s reachable %v; want false, true", r12, l.reachable(t, r12), r11, l.reachable(t, r11))
			}
			waitUntil(t, 2*time.Second, "the kernel asked to resolve "+r12.String(), func() bool { return f.asked(r12) > 0 })
			for i := range 6 {
				if got := l.drFlow(t, uint16(46000+i)); got != realMAC(r11).String() {
					t.Fatalf("new flow %d sent to %s, want %s (the only reachable real)", i, got, realMAC(r11))
				}
			}

			f.answer(r12, nil)
			// The event, not the periodic retry (resolveRetryFirst), publishes it.
			waitUntil(t, resolveRetryFirst/2, "published", func() bool {
				var v maps.RealVal
				var err error
				l.w.Do(func() { v, err = l.set.Reals.Get(id12) })
				return err == nil && v.Dmac == [6]uint8(realMAC(r12)) && v.Weight == 2
			})
			if !l.reachable(t, r12) {
				t.Error("status: published real not reachable")
			}
			if n := len(l.tables.pendingAddrs()); n != 0 {
				t.Errorf("%d reals still pending", n)
			}
			got := map[string]int{}
			for i := range 3 {
				got[l.drFlow(t, uint16(47000+i))]++
			}
			if got[realMAC(r12).String()] == 0 {
				t.Errorf("after it resolved, no new flow went to %s: %v", r12, got)
			}
			// Existing flows stay where they were.
			if got := l.drFlow(t, 46000); got != realMAC(r11).String() {
				t.Errorf("established flow moved to %s", got)
			}
		})
	}
}

// A real removed from the configuration stops being pending; one whose
// neighbour entry vanished keeps its path while RefreshL2 has the kernel
// resolve it again, without waiting, and follows a new MAC.
func TestPendingFollowsConfigAndRefresh(t *testing.T) {
	r11, r13 := netip.MustParseAddr("10.50.1.11"), netip.MustParseAddr("10.50.1.13")
	l, f := resolvingLab(t, r13)
	svc := func(rs ...netip.Addr) dataplane.State {
		s := dataplane.Service{VIP: vipDR, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.DR}
		for _, a := range rs {
			s.Reals = append(s.Reals, dataplane.Real{Addr: a, Port: 80, Weight: 1})
		}
		return dataplane.State{Services: []dataplane.Service{s}}
	}
	l.apply(t, svc(r11, r13))
	if got := l.tables.pendingAddrs(); len(got) != 1 || got[0] != r13 {
		t.Fatalf("pending %v, want [%s]", got, r13)
	}
	l.apply(t, svc(r11))
	if got := l.tables.pendingAddrs(); len(got) != 0 {
		t.Fatalf("pending %v after the real was removed, want none", got)
	}

	f.mute(r11)
	t0 := time.Now()
	var err error
	l.w.Do(func() { err = l.tables.RefreshL2(t.Context()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RefreshL2 with a vanished neighbour: %v", time.Since(t0))
	if _, v := l.entry(t, r11); v.Dmac != [6]uint8(realMAC(r11)) || v.Weight != 1 {
		t.Fatalf("entry %+v, want the old MAC and weight kept", v)
	}
	waitUntil(t, 2*time.Second, "the kernel asked to resolve "+r11.String(), func() bool { return f.asked(r11) > 0 })
	if got := l.drFlow(t, 48000); got != realMAC(r11).String() {
		t.Fatalf("flow sent to %s while re-resolving, want %s", got, realMAC(r11))
	}
	moved := mustMAC("02:aa:bb:cc:dd:01")
	f.answer(r11, moved)
	waitUntil(t, resolveRetryFirst/2, "new MAC published", func() bool {
		_, v := l.entry(t, r11)
		return v.Dmac == [6]uint8(moved) && v.Weight == 1
	})
	if got := l.drFlow(t, 48000); got != moved.String() {
		t.Fatalf("flow sent to %s after the MAC changed, want %s", got, moved)
	}
}
