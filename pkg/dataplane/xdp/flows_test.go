package xdp

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"

	xbpf "github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// natState is one NAT service over the given reals of 10.50.2.0/24.
func natState(rs ...dataplane.Real) dataplane.State {
	return dataplane.State{Services: []dataplane.Service{
		{VIP: vipNAT, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT, Reals: rs},
	}}
}

func real2(host byte, weight int) dataplane.Real {
	return dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, 2, host}), Port: 8080, Weight: weight}
}

// sendFlow sends one packet of the client flow from sport and returns the
// real it went to.
func (l *lab) sendFlow(t *testing.T, sport uint16) netip.Addr {
	t.Helper()
	return l.sendFlowFrom(t, addrClient, sport)
}

// sendFlowFrom is sendFlow from another client address.
func (l *lab) sendFlowFrom(t *testing.T, client netip.Addr, sport uint16) netip.Addr {
	t.Helper()
	p := fromClient(vipNAT, 80, layers.IPProtocolTCP)
	p.src, p.sport = client, sport
	verdict, out := l.run(t, l.set.Program, p.bytes(t), l.f0)
	if verdict != xdpRedirect {
		t.Fatalf("flow %d: verdict %s, want REDIRECT", sport, verdictName[verdict])
	}
	return netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
}

func TestRoundRobinSpreadsNewFlowsEvenly(t *testing.T) {
	l := newLab(t)
	l.apply(t, natState(real2(11, 1), real2(12, 1), real2(13, 1)))
	got := map[netip.Addr]int{}
	for i := 0; i < 30; i++ {
		got[l.sendFlow(t, uint16(41000+i))]++
	}
	want := map[netip.Addr]int{
		netip.MustParseAddr("10.50.2.11"): 10,
		netip.MustParseAddr("10.50.2.12"): 10,
		netip.MustParseAddr("10.50.2.13"): 10,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flows per real (-want +got):\n%s", diff)
	}
	id, _ := l.tables.RealID(vipNAT, 80, 6, netip.MustParseAddr("10.50.2.12"), 8080)
	var st maps.Stats
	var err error
	l.w.Do(func() { st, err = l.set.RealStats.Get(id) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Conns != 10 || st.PktsIn != 10 {
		t.Errorf("10.50.2.12 counters: %+v, want 10 connections and 10 packets", st)
	}
}

func TestFlowKeepsRealWhilePoolChanges(t *testing.T) {
	l := newLab(t)
	l.apply(t, natState(real2(11, 1), real2(12, 1)))
	first := l.sendFlow(t, 42000)
	second := l.sendFlow(t, 42001)
	if first == second {
		t.Fatalf("two new flows went to the same real %s under rr", first)
	}
	// Add reals, reorder, quiesce one of the others: established flows stay.
	l.apply(t, natState(real2(14, 1), real2(13, 1), real2(12, 0), real2(11, 1)))
	for i := 0; i < 5; i++ {
		if got := l.sendFlow(t, 42000); got != first {
			t.Fatalf("after adding reals flow 42000 moved from %s to %s", first, got)
		}
		if got := l.sendFlow(t, 42001); got != second {
			t.Fatalf("quiesced real lost its flow 42001: %s -> %s", second, got)
		}
	}
	// The quiesced real takes no new flows.
	for i := 0; i < 9; i++ {
		if got := l.sendFlow(t, uint16(43000+i)); got == netip.MustParseAddr("10.50.2.12") {
			t.Fatalf("new flow %d went to quiesced real 10.50.2.12", 43000+i)
		}
	}
}

func TestRemovedRealLosesItsFlows(t *testing.T) {
	l := newLab(t)
	l.apply(t, natState(real2(11, 1), real2(12, 1)))
	first := l.sendFlow(t, 44000)
	var keep dataplane.Real
	for _, r := range []dataplane.Real{real2(11, 1), real2(12, 1)} {
		if r.Addr != first {
			keep = r
		}
	}
	l.apply(t, natState(keep))
	if got := l.sendFlow(t, 44000); got != keep.Addr {
		t.Fatalf("flow of removed real %s went to %s, want the remaining %s", first, got, keep.Addr)
	}
	// Re-adding the real gives it a fresh id; the flow stays where it is now.
	l.apply(t, natState(keep, dataplane.Real{Addr: first, Port: 8080, Weight: 1}))
	if got := l.sendFlow(t, 44000); got != keep.Addr {
		t.Fatalf("flow moved back to %s after its real returned", got)
	}
}

func TestApplyRejectsWhatItCannotForward(t *testing.T) {
	l := newLab(t)
	l.apply(t, natState(real2(11, 1)))
	bad := natState(real2(11, 1))
	bad.Services[0].Sched = "foo"
	var err error
	l.w.Do(func() { err = l.tables.Apply(t.Context(), bad) })
	if err == nil {
		t.Fatal("Apply accepted scheduler foo, which the data plane cannot run")
	}
	// The old configuration still forwards.
	if got := l.sendFlow(t, 45000); got != netip.MustParseAddr("10.50.2.11") {
		t.Fatalf("after a rejected apply the flow went to %s", got)
	}
}

// The Go names of the verdict counters follow enum verdict in xlb.c.
func TestVerdictNamesMatchProgram(t *testing.T) {
	spec, err := xbpf.LoadXlb()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("verdict", &e); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range e.Values {
		if v.Name != "VERDICT_MAX" {
			got = append(got, v.Name)
		}
	}
	var want []string
	for _, n := range maps.VerdictNames {
		want = append(want, "VERDICT_"+strings.ToUpper(n))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdict names (-Go +BPF):\n%s", diff)
	}
}

// A DR real replaced by another machine (new MAC) is found by RefreshL2
// and its flows follow it, without a reload.
func TestRefreshL2FollowsNewMAC(t *testing.T) {
	l := newLab(t)
	l.apply(t, dataplane.State{Services: []dataplane.Service{
		{VIP: vipDR, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.DR, Reals: reals(1, 80, 1)},
	}})
	in := fromClient(vipDR, 80, layers.IPProtocolTCP).bytes(t)
	_, out := l.run(t, l.set.Program, in, l.f0)
	if got := net.HardwareAddr(out[0:6]).String(); got != realMAC(r1L2).String() {
		t.Fatalf("before: dst MAC %s, want %s", got, realMAC(r1L2))
	}
	moved := mustMAC("02:aa:bb:cc:dd:ee")
	l.macs = map[netip.Addr]net.HardwareAddr{r1L2: moved}
	var err error
	l.w.Do(func() { err = l.tables.RefreshL2(t.Context()) })
	if err != nil {
		t.Fatal(err)
	}
	_, out = l.run(t, l.set.Program, in, l.f0)
	if got := net.HardwareAddr(out[0:6]).String(); got != moved.String() {
		t.Fatalf("after refresh: dst MAC %s, want %s", got, moved)
	}
}
