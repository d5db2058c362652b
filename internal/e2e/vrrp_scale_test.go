package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// The VRRP speaker's promise at scale: adverts leave on time whatever else
// the node does. The client listens to protocol 112 on the front bridge and
// timestamps every advert in the kernel (SO_TIMESTAMPNS), so that the
// intervals measured are the wire's, not the test's scheduling.
const (
	scaleVRRPInstances = 100
	scaleVRRPAdvert    = time.Second // advert_int 1
	// scaleVRRPLateBound is the longest interval between two adverts of
	// one VRID that passes: well under Master_Down_Interval (3 × 1 s +
	// skew, 3.6 s for a priority-100 backup), so that no backup would
	// have come near failing over.
	scaleVRRPLateBound = 1500 * time.Millisecond
	scaleVRRPWindow    = 10 * time.Second
)

// scaleVRRPVIP is instance i's VIP (i from 1): 10.50.1.101 to .200, clear
// of the client (.2), the nodes (.11, .12) and the pair's VIP (.100).
func scaleVRRPVIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 50, 1, byte(100 + i)}) }

// scaleVRRPConf is scaleVRRPInstances instances on eth0 at advert_int 1,
// VRIDs 1 to 100, each with its own VIP.
func scaleVRRPConf(state string, prio int) string {
	inst := func(i int) vrrpConf {
		return vrrpConf{Name: fmt.Sprintf("VI_%d", i), VRID: i, Version: 2, State: state, Priority: prio,
			AdvertInt: "1", VIPs: []string{scaleVRRPVIP(i).String() + "/24 dev eth0"}}
	}
	var rest strings.Builder
	for i := 2; i <= scaleVRRPInstances; i++ {
		rest.WriteString(inst(i).instance())
	}
	c := inst(1)
	c.After = rest.String()
	return c.String()
}

// scaleAdvert is one advert the client heard.
type scaleAdvert struct {
	at   time.Time // the kernel's receive timestamp
	src  netip.Addr
	vrid uint8
	prio uint8
}

// scaleListener records every VRRP advert reaching the client's eth0.
type scaleListener struct {
	fd   int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	adverts []scaleAdvert
	errs    []error
}

// scaleListen opens a raw protocol-112 socket in ns bound to ifname, joined
// to 224.0.0.18 there, with kernel receive timestamps; it records until the
// test ends.
func scaleListen(t testing.TB, ns *testbed.Netns, ifname string) *scaleListener {
	t.Helper()
	l := &scaleListener{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 112)
		if err != nil {
			return err
		}
		l.fd = fd
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return errors.Join(
			unix.BindToDevice(fd, ifname),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20),
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
			unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
				&unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 18}, Ifindex: int32(ifi.Index)}),
		)
	})
	if err != nil {
		if l.fd >= 0 {
			unix.Close(l.fd)
		}
		t.Fatalf("%s: VRRP listener on %s: %v", ns, ifname, err)
	}
	go l.run()
	t.Cleanup(func() {
		close(l.stop)
		<-l.done
		unix.Close(l.fd)
	})
	return l
}

func (l *scaleListener) run() {
	defer close(l.done)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(l.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			l.mu.Lock()
			l.errs = append(l.errs, err)
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		at := time.Now()
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SCM_TIMESTAMPNS && len(cm.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(cm.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(cm.Data[8:16]))
					at = time.Unix(sec, nsec)
				}
			}
		}
		// A raw IPv4 socket reads the IP header too.
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 {
			continue
		}
		src := netip.AddrFrom4([4]byte(buf[12:16]))
		l.mu.Lock()
		l.adverts = append(l.adverts, scaleAdvert{at: at, src: src, vrid: buf[ihl+1], prio: buf[ihl+2]})
		l.mu.Unlock()
	}
}

// between returns the adverts heard in [from, to).
func (l *scaleListener) between(from, to time.Time) []scaleAdvert {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []scaleAdvert
	for _, a := range l.adverts {
		if !a.at.Before(from) && a.at.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

func (l *scaleListener) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// scaleTiming is what the adverts of one sender over a window say.
type scaleTiming struct {
	counts    map[uint8]int             // adverts by VRID
	intervals map[uint8][]time.Duration // between consecutive adverts, by VRID
	// edges are the gaps from the window's start to each VRID's first
	// advert and from its last to the window's end: a VRID that stops
	// altogether shows there.
	edges    map[uint8]time.Duration
	lateness []time.Duration // |interval − advert_int|, all VRIDs
	prios    map[uint8]bool  // priorities seen
}

func scaleTimings(ads []scaleAdvert, src netip.Addr, from, to time.Time) scaleTiming {
	st := scaleTiming{counts: map[uint8]int{}, intervals: map[uint8][]time.Duration{},
		edges: map[uint8]time.Duration{}, prios: map[uint8]bool{}}
	last := map[uint8]time.Time{}
	for _, a := range ads {
		if a.src != src {
			continue
		}
		st.counts[a.vrid]++
		st.prios[a.prio] = true
		if prev, ok := last[a.vrid]; ok {
			iv := a.at.Sub(prev)
			st.intervals[a.vrid] = append(st.intervals[a.vrid], iv)
			st.lateness = append(st.lateness, (iv - scaleVRRPAdvert).Abs())
		} else {
			st.edges[a.vrid] = a.at.Sub(from)
		}
		last[a.vrid] = a.at
	}
	for vrid, at := range last {
		st.edges[vrid] = max(st.edges[vrid], to.Sub(at))
	}
	return st
}

// check reports every VRID of vrids whose adverts from the sender were
// missing or late beyond scaleVRRPLateBound.
func (st scaleTiming) check(t testing.TB, what string, vrids []uint8, window time.Duration) {
	t.Helper()
	want := int(window/scaleVRRPAdvert) - 1
	bad := 0
	for _, v := range vrids {
		ivs := st.intervals[v]
		worst := time.Duration(0)
		if len(ivs) > 0 {
			worst = slices.Max(ivs)
		}
		if st.counts[v] < want || worst >= scaleVRRPLateBound || st.edges[v] >= scaleVRRPLateBound {
			if bad++; bad <= 10 {
				t.Errorf("%s VRID %d: %d adverts in %v (want %d at least), longest interval %v, window edge gap %v (bound %v)",
					what, v, st.counts[v], window, want, worst.Round(time.Millisecond), st.edges[v].Round(time.Millisecond), scaleVRRPLateBound)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d VRIDs missing or late in all", what, bad)
	}
}

func (st scaleTiming) summary() string {
	if len(st.lateness) == 0 {
		return "no intervals"
	}
	var longest time.Duration
	for _, ivs := range st.intervals {
		longest = max(longest, slices.Max(ivs))
	}
	return fmt.Sprintf("%d intervals over %d VRIDs: |interval − 1 s| p50 %.2f ms, p99 %.2f ms, max %.2f ms; longest interval %v",
		len(st.lateness), len(st.intervals), hbMS(scalePct(st.lateness, 50)), hbMS(scalePct(st.lateness, 99)),
		hbMS(slices.Max(st.lateness)), longest.Round(10*time.Microsecond))
}

// scalePct is the p-th percentile of ds (nearest rank).
func scalePct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// scalePid is the daemon's pid: `ip netns exec` execs it in place.
func scalePid(t testing.TB, n *xlbdNode) int {
	t.Helper()
	pid := n.p.Cmd.Process.Pid
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "xlbd" {
		t.Fatalf("pid %d is %q, not the daemon", pid, comm)
	}
	return pid
}

// scaleStates is the instances' states by name, checked against want; it
// fails the test on a status that cannot be read.
func scaleStates(t testing.TB, n *xlbdNode) map[string]control.VRRPInstance {
	t.Helper()
	rep, err := n.status()
	if err != nil {
		t.Fatalf("xlbd status: %v", err)
	}
	m := map[string]control.VRRPInstance{}
	for _, v := range rep.VRRP {
		m[v.Name] = v
	}
	return m
}

// scaleWaitStates waits until every one of n instances is in state, with
// master as its master.
func scaleWaitStates(t testing.TB, node *xlbdNode, n int, state, master string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := scaleStates(t, node)
		ok := 0
		for _, v := range m {
			if v.State == state && v.Master == master {
				ok++
			}
		}
		if ok == n && len(m) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d of %d instances %s with master %s", within, ok, len(m), state, master)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scaleSameStates checks that every instance is still in state with the
// transitions it had before.
func scaleSameStates(t testing.TB, what string, before, after map[string]control.VRRPInstance, state string) {
	t.Helper()
	bad := 0
	for name, b := range before {
		a, ok := after[name]
		if !ok || a.State != state || a.Transitions != b.Transitions {
			if bad++; bad <= 10 {
				t.Errorf("%s %s: state %s → %s, transitions %d → %d; want %s throughout", what, name, b.State, a.State, b.Transitions, a.Transitions, state)
			}
		}
	}
	if len(after) != len(before) {
		t.Errorf("%s: %d instances, then %d", what, len(before), len(after))
	}
}

// scaleVIPsHeld counts the VIPs of instances 1..n that ns holds on eth0.
func scaleVIPsHeld(t testing.TB, p *testbed.Pair, ns *testbed.Netns, n int) int {
	t.Helper()
	held := 0
	for i := 1; i <= n; i++ {
		ok, err := p.HasAddr(ns, "eth0", scaleVRRPVIP(i))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			held++
		}
	}
	return held
}

// scaleManyRun is the measured part of TestVRRPManyInstances and
// BenchmarkVRRPInstances: 100 instances, MASTER on lb1 and BACKUP on lb2,
// a quiet window of adverts.
type scaleManyRun struct {
	timing           scaleTiming
	backupAdverts    int
	window           time.Duration
	masterCPU, bkCPU time.Duration
}

func scaleMany(t testing.TB) scaleManyRun {
	t.Helper()
	requireNetns(t)
	p, err := testbed.NewPair(t, testbed.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lst := scaleListen(t, p.Client, "eth0")
	lb1 := startXLBD(t, p.LB1, scaleVRRPConf("MASTER", 150))
	lb1Addr := p.FrontAddrs[0].String()
	scaleWaitStates(t, lb1, scaleVRRPInstances, "MASTER", lb1Addr, 15*time.Second)
	lb2 := startXLBD(t, p.LB2, scaleVRRPConf("BACKUP", 100))
	scaleWaitStates(t, lb2, scaleVRRPInstances, "BACKUP", lb1Addr, 15*time.Second)
	if n := scaleVIPsHeld(t, p, p.LB1, scaleVRRPInstances); n != scaleVRRPInstances {
		t.Fatalf("lb1 holds %d of the %d VIPs", n, scaleVRRPInstances)
	}
	pid1, pid2 := scalePid(t, lb1), scalePid(t, lb2)

	s1, s2 := scaleStates(t, lb1), scaleStates(t, lb2)
	c1, c2, t0 := procCPU(t, pid1), procCPU(t, pid2), time.Now()
	time.Sleep(scaleVRRPWindow)
	d1, d2, t1 := procCPU(t, pid1), procCPU(t, pid2), time.Now()
	scaleSameStates(t, "lb1", s1, scaleStates(t, lb1), "MASTER")
	scaleSameStates(t, "lb2", s2, scaleStates(t, lb2), "BACKUP")
	if n := scaleVIPsHeld(t, p, p.LB1, scaleVRRPInstances); n != scaleVRRPInstances {
		t.Errorf("lb1 holds %d of the %d VIPs after the window", n, scaleVRRPInstances)
	}
	if n := scaleVIPsHeld(t, p, p.LB2, scaleVRRPInstances); n != 0 {
		t.Errorf("lb2 (BACKUP) holds %d VIPs", n)
	}
	if err := lst.err(); err != nil {
		t.Fatalf("listener: %v", err)
	}
	ads := lst.between(t0, t1)
	r := scaleManyRun{
		timing: scaleTimings(ads, p.FrontAddrs[0], t0, t1),
		window: t1.Sub(t0), masterCPU: d1 - c1, bkCPU: d2 - c2,
	}
	for _, a := range ads {
		if a.src == p.FrontAddrs[1] {
			r.backupAdverts++
		}
	}
	return r
}

func scaleVRIDs(n int) []uint8 {
	v := make([]uint8, n)
	for i := range v {
		v[i] = uint8(i + 1)
	}
	return v
}

// TestVRRPManyInstances: 100 instances at advert_int 1 on one interface,
// xlbd MASTER of all on lb1 and BACKUP of all on lb2. Over 10 s every
// VRID's adverts from lb1 come at most scaleVRRPLateBound apart, lb2 stays
// BACKUP of all 100 without a transition and sends nothing, and lb1 holds
// every VIP throughout.
func TestVRRPManyInstances(t *testing.T) {
	r := scaleMany(t)
	t.Logf("lb1 (MASTER ×%d) over %v: %s", scaleVRRPInstances, r.window.Round(time.Millisecond), r.timing.summary())
	t.Logf("CPU over the window: lb1 %v (%.1f%% of a core), lb2 %v (%.1f%%)",
		r.masterCPU, 100*r.masterCPU.Seconds()/r.window.Seconds(), r.bkCPU, 100*r.bkCPU.Seconds()/r.window.Seconds())
	r.timing.check(t, "lb1", scaleVRIDs(scaleVRRPInstances), r.window)
	if len(r.timing.counts) != scaleVRRPInstances {
		t.Errorf("adverts from lb1 for %d VRIDs, want %d", len(r.timing.counts), scaleVRRPInstances)
	}
	if r.backupAdverts != 0 {
		t.Errorf("lb2 (BACKUP) sent %d adverts in the window", r.backupAdverts)
	}
}

// BenchmarkVRRPInstances reports, for 100 instances at advert_int 1 (lb1
// MASTER, lb2 BACKUP), the master's CPU per second of wall time (and the
// backup's) and how far the master's advert intervals stray from 1 s,
// measured at the client over a 10 s window:
//
//	go test ./internal/e2e/ -run '^$' -bench VRRPInstances -benchtime 1x
func BenchmarkVRRPInstances(b *testing.B) {
	var lat []time.Duration
	var cpu1, cpu2, window time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := scaleMany(b)
		b.StartTimer()
		lat = append(lat, r.timing.lateness...)
		cpu1 += r.masterCPU
		cpu2 += r.bkCPU
		window += r.window
	}
	if len(lat) == 0 {
		b.Fatal("no advert intervals")
	}
	b.ReportMetric(1000*cpu1.Seconds()/window.Seconds(), "master-cpu-ms/s")
	b.ReportMetric(1000*cpu2.Seconds()/window.Seconds(), "backup-cpu-ms/s")
	b.ReportMetric(hbMS(scalePct(lat, 99)), "late-p99-ms")
	b.ReportMetric(hbMS(slices.Max(lat)), "late-max-ms")
}

// Issue: VRRP timers never wait for the data plane. 10 virtual servers ×
// 1,000 reals on the VRRP VIP (one real address, 1,000 ports each), all
// their weights changed by each SIGHUP.
const (
	scaleBigServices = 10
	scaleBigReals    = 1000
	scaleBigReloads  = 4 // at least; reloads go on back to back until the window is over
)

// scaleBigWeight is the weight of service s's real r in the configuration
// of base.
func scaleBigWeight(base, s, r int) int { return base + (s+r)%7 }

func scaleBigConf(p *testbed.Pair, weight int) string {
	var vs strings.Builder
	ra := p.RealAddrs[0]
	for s := 0; s < scaleBigServices; s++ {
		fmt.Fprintf(&vs, "virtual_server %s %d {\n  lb_algo wlc\n  lb_kind NAT\n  protocol TCP\n", p.VIP, 80+s)
		for r := 0; r < scaleBigReals; r++ {
			fmt.Fprintf(&vs, "  real_server %s %d { weight %d }\n", ra, 10000+r, scaleBigWeight(weight, s, r))
		}
		vs.WriteString("}\n")
	}
	return vrrpConf{VRID: 60, Version: 2, State: "MASTER", Priority: 150, AdvertInt: "1",
		VIPs: []string{p.VIP.String() + "/24 dev eth0"}, After: vs.String()}.String()
}

// TestVRRPAdvertsDuringBigApply: xlbd MASTER of one instance whose VIP
// carries 10,000 reals; SIGHUPs that change every real's weight, back to
// back for 10 s, do not make an advert late (scaleVRRPLateBound), and the
// instance stays MASTER without a transition.
func TestVRRPAdvertsDuringBigApply(t *testing.T) {
	requireNetns(t)
	p, err := testbed.NewPair(t, testbed.PairOptions{NAT: true, Reals: 1})
	if err != nil {
		t.Fatal(err)
	}
	lst := scaleListen(t, p.Client, "eth0")
	t0 := time.Now()
	lb1 := startXLBD(t, p.LB1, scaleBigConf(p, 1), "eth0", "eth1")
	t.Logf("%d reals: ready after %v", scaleBigServices*scaleBigReals, time.Since(t0).Round(time.Millisecond))
	i := slices.Index(lb1.p.Cmd.Args, "--config")
	if i < 0 {
		t.Fatalf("no --config in %q", lb1.p.Cmd.Args)
	}
	path := lb1.p.Cmd.Args[i+1]
	lb1Addr := p.FrontAddrs[0].String()
	scaleWaitStates(t, lb1, 1, "MASTER", lb1Addr, 10*time.Second)
	waitHolder(t, p, p.VIP, p.LB1, 5*time.Second)
	pid := scalePid(t, lb1)

	before := scaleStates(t, lb1)
	c0, w0 := procCPU(t, pid), time.Now()
	var took []time.Duration
	base := 1
	for n := 1; n <= scaleBigReloads || time.Since(w0) < scaleVRRPWindow; n++ {
		base = 1 + n%2*10 // 11, 1, 11, ...: every weight changes
		if err := os.WriteFile(path, []byte(scaleBigConf(p, base)), 0o600); err != nil {
			t.Fatal(err)
		}
		r0 := time.Now()
		if err := lb1.p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := scaleWaitCount(lb1.p, "msg=reloaded", n); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(r0))
		if strings.Contains(lb1.p.Output(), "reload failed") {
			t.Fatalf("reload %d failed:\n%s", n, lb1.p.Output())
		}
	}
	// One more advert interval after the last reload.
	time.Sleep(scaleVRRPAdvert + 200*time.Millisecond)
	c1, w1 := procCPU(t, pid), time.Now()
	scaleSameStates(t, "lb1", before, scaleStates(t, lb1), "MASTER")
	soleHolder(t, p, p.VIP, p.LB1, 200*time.Millisecond)
	if err := lst.err(); err != nil {
		t.Fatalf("listener: %v", err)
	}
	st := scaleTimings(lst.between(w0, w1), p.FrontAddrs[0], w0, w1)
	scaleBigApplied(t, lb1, base)
	slices.Sort(took)
	t.Logf("%d reloads of %d reals each (every weight changed), SIGHUP to msg=reloaded: min %v, median %v, max %v; daemon CPU %.0f%% of a core over %v",
		len(took), scaleBigServices*scaleBigReals, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond),
		took[len(took)-1].Round(time.Millisecond), 100*(c1-c0).Seconds()/w1.Sub(w0).Seconds(), w1.Sub(w0).Round(time.Millisecond))
	t.Logf("adverts from lb1 meanwhile: %s", st.summary())
	st.check(t, "lb1", []uint8{60}, w1.Sub(w0))
	if !st.prios[150] || len(st.prios) != 1 {
		t.Errorf("priorities advertised: %v, want 150 only", st.prios)
	}
}

// scaleBigApplied checks that the data plane has every real of
// scaleBigConf(base) with its weight: the reloads were applied, not only
// read.
func scaleBigApplied(t *testing.T, n *xlbdNode, base int) {
	t.Helper()
	rep, err := n.status()
	if err != nil {
		t.Fatalf("xlbd status: %v", err)
	}
	if len(rep.Dataplane.Services) != scaleBigServices {
		t.Fatalf("%d services in the data plane, want %d", len(rep.Dataplane.Services), scaleBigServices)
	}
	bad := 0
	for _, svc := range rep.Dataplane.Services {
		s := int(svc.Port) - 80
		if len(svc.Reals) != scaleBigReals {
			t.Errorf("service %v:%d has %d reals, want %d", svc.VIP, svc.Port, len(svc.Reals), scaleBigReals)
		}
		for _, rs := range svc.Reals {
			if want := scaleBigWeight(base, s, int(rs.Port)-10000); rs.Weight != want {
				if bad++; bad <= 5 {
					t.Errorf("service %d real %v:%d weight %d, want %d", svc.Port, rs.Addr, rs.Port, rs.Weight, want)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d reals with the weight of an earlier configuration", bad)
	}
}
