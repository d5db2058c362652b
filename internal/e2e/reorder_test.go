package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
)

// A reordered datagram: 4000 bytes of UDP payload, cut by the test itself
// into 3 fragments of 1336 bytes of IP payload, sent last first.
const (
	reorderSize    = 4000
	reorderFrags   = 3
	reorderWait    = 3 * time.Second // for an answer; a fragment is held about a second
	reorderMetrics = "127.0.0.1:9469"
	heldExpiryWait = 2 * time.Second // after which a fragment whose first never came has expired
)

// Later fragments that reach the balancer before their datagram's first
// fragment (which holds the ports and is scheduled) are held by the daemon,
// which has them from XDP through a ring buffer, for about a second, and
// sent to the first fragment's real as soon as the first is forwarded; so a
// datagram whose fragments arrive in reverse order is answered in full. The
// client cuts its datagrams itself and sends them, last fragment first,
// through a raw socket, from the port of an ordinary UDP socket on which it
// reads the answer (in NAT the answer, 4003 bytes, comes back through the
// LB in fragments too). Each early fragment is counted as the verdict
// hold_fragment, none is left to the LB's kernel (pass_fragment), and the
// daemon counts what became of the held ones in
// xlbd_fragments_held_total{outcome}: sent, or expired when the first never
// came.
func TestReorderedFragments(t *testing.T) {
	requireNetns(t)
	bin := xlbdBinary(t)
	for _, s := range []scenario{
		{"NAT", "generic", true},
		{"DR", "generic", true},
	} {
		t.Run(s.name(), func(t *testing.T) { testReorderedFragments(t, bin, s) })
	}
}

func testReorderedFragments(t *testing.T, bin string, s scenario) {
	top := topology(t, s.kind, testbed.Options{Reals: 3, VIPOnLB: s.vipOnLB})
	_, udpPort := s.ports()
	if err := testbed.ServeRealsUDP(t, top, udpPort); err != nil {
		t.Fatal(err)
	}
	// Captures printed only when the test fails: the order in which the
	// client sent the fragments, and what reached each real.
	capture(t, top.Client, "eth0")
	for _, r := range top.Reals {
		capture(t, r, top.RealLink)
	}

	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	s.config(t, cfg, top, 3)
	ctl := ctlSocket(t)
	lbIfs := []string{"--interface", top.LBFront}
	if top.LBBack != top.LBFront {
		lbIfs = append(lbIfs, "--interface", top.LBBack)
	}
	d := start(t, top.LB, bin, append([]string{"--config", cfg, "--pin-dir", bpffs(t), "--xdp-mode", s.xdpMode,
		"--control-socket", ctl, "--metrics-addr", reorderMetrics}, lbIfs...)...)
	waitFor(t, d, "msg=ready")
	waitReachable(t, ctl)

	vip := netip.AddrPortFrom(top.VIP, 53)
	// Small datagrams first, one flow per real (round robin): the LB
	// learns the reals' MACs, and whatever fails below fails for the order
	// of the fragments alone.
	for i := range 3 {
		c := dialNoDF(t, top, vip.String())
		if _, err := exchange(c, []byte(fmt.Sprintf("warm-up-%d", i))); err != nil {
			t.Fatalf("small datagram to %s on flow %d (from %s): %v", vip, i, c.LocalAddr(), err)
		}
	}

	before := verdicts(t, bin, ctl)
	t.Cleanup(func() {
		if after, err := readVerdicts(bin, ctl); err != nil {
			t.Logf("verdicts: %v", err)
		} else {
			t.Logf("verdicts grown during the test: %s", verdictDelta(before, after))
		}
	})
	if _, ok := before["hold_fragment"]; !ok {
		t.Errorf("xlbd status has no verdict hold_fragment (%s): this data plane does not hold fragments that come before their first",
			verdictNames(before))
	}
	heldBefore, heldOK := heldFragments(t, top)
	if !heldOK {
		t.Errorf("/metrics has no xlbd_fragments_held_total: this daemon does not hold fragments that come before their first")
	}

	raw, err := testbed.OpenRawIPv4(top.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	l := &reorderLab{t: t, top: top, raw: raw, vip: vip, id: uint16(1 + rand.N(60000))}

	// Six new flows, one reversed datagram each: all answered, spread over
	// the reals by round robin as if they had come in order.
	answered := 0
	flows := make([]*reorderFlow, 6)
	perReal := map[string]int{}
	for i := range flows {
		f := l.flow()
		flows[i] = f
		msg := payload(t, reorderSize)
		id := l.sendReversed(f, msg)
		name, err := f.answer(msg, reorderWait)
		if err != nil {
			t.Errorf("reversed datagram on new flow %d (from %s, IP id %d): %v", i, f.src, id, err)
			continue
		}
		answered++
		f.real = name
		perReal[name]++
	}
	if answered == len(flows) {
		for _, r := range []string{"r1", "r2", "r3"} {
			if perReal[r] != 2 {
				t.Errorf("six new flows of reversed datagrams went %v, want 2 on each of r1, r2, r3 (rr)", perReal)
				break
			}
		}
	}

	// A second reversed datagram on two of those flows: the first fragment
	// follows the flow's connection, and the held ones follow it.
	for i, f := range flows[:2] {
		msg := payload(t, reorderSize)
		id := l.sendReversed(f, msg)
		name, err := f.answer(msg, reorderWait)
		if err != nil {
			t.Errorf("second reversed datagram on flow %d (from %s, IP id %d): %v", i, f.src, id, err)
			continue
		}
		answered++
		if f.real != "" && name != f.real {
			t.Errorf("flow %d (from %s): first datagram answered by %s, second by %s; want one real per flow", i, f.src, f.real, name)
		}
	}

	// Three datagrams from three new flows on the wire together: every
	// later fragment of all three first, then the three first fragments.
	// Held fragments are told apart by their datagram (source, destination,
	// protocol, IP id), not by their arrival.
	together := make([]*reorderFlow, 3)
	msgs := make([][]byte, 3)
	frags := make([][][]byte, 3)
	ids := make([]uint16, 3)
	for i := range together {
		together[i] = l.flow()
		msgs[i] = payload(t, reorderSize)
		frags[i], ids[i] = l.fragments(together[i], msgs[i])
	}
	for i := range together {
		for j := len(frags[i]) - 1; j > 0; j-- {
			l.send(frags[i][j])
			l.early++
		}
	}
	for i := range together {
		l.send(frags[i][0])
	}
	for i, f := range together {
		if _, err := f.answer(msgs[i], reorderWait); err != nil {
			t.Errorf("datagram %d of three sent together, later fragments first (from %s, IP id %d): %v", i, f.src, ids[i], err)
			continue
		}
		answered++
	}

	// The first fragment 300 ms after the later ones: they wait for it.
	{
		f := l.flow()
		msg := payload(t, reorderSize)
		frags, id := l.fragments(f, msg)
		for j := len(frags) - 1; j > 0; j-- {
			l.send(frags[j])
			l.early++
		}
		time.Sleep(300 * time.Millisecond)
		l.send(frags[0])
		if _, err := f.answer(msg, reorderWait); err != nil {
			t.Errorf("datagram whose first fragment came 300 ms after the later ones (from %s, IP id %d): %v", f.src, id, err)
		} else {
			answered++
		}
	}

	// Every early fragment was held, none went to the LB's kernel, and the
	// daemon sent on at least those of the answered datagrams.
	after := verdicts(t, bin, ctl)
	checkHeldVerdicts(t, before, after, l.early)
	heldAfter, _ := heldFragments(t, top)
	if heldOK {
		want := float64(answered * (reorderFrags - 1))
		if got := heldAfter["sent"] - heldBefore["sent"]; got < want {
			t.Errorf("xlbd_fragments_held_total{outcome=\"sent\"} grew by %v for %d answered reversed datagrams, want at least %v (held: %s)",
				got, answered, want, heldDelta(heldBefore, heldAfter))
		}
	}

	// The first fragment lost: the later ones are held, never sent, and
	// expire; the real never sees them and nothing answers.
	f := l.flow()
	msg := payload(t, reorderSize)
	lost, id := l.fragments(f, msg)
	for j := len(lost) - 1; j > 0; j-- {
		l.send(lost[j])
		l.early++
	}
	if name, err := f.answer(msg, heldExpiryWait); err == nil {
		t.Errorf("a datagram whose first fragment was never sent (from %s, IP id %d) was answered by %s", f.src, id, name)
	} else if !isTimeout(err) {
		t.Errorf("a datagram whose first fragment was never sent (from %s, IP id %d): %v, want no answer", f.src, id, err)
	}
	if heldOK {
		wantExpired := float64(len(lost) - 1)
		var heldNow map[string]float64
		deadline := time.Now().Add(5 * time.Second)
		for {
			heldNow, _ = heldFragments(t, top)
			if heldNow["expired"]-heldAfter["expired"] >= wantExpired || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got := heldNow["expired"] - heldAfter["expired"]; got < wantExpired {
			t.Errorf("xlbd_fragments_held_total{outcome=\"expired\"} grew by %v in %s after %d fragments whose first never came, want at least %v (held: %s)",
				got, heldExpiryWait+5*time.Second, len(lost)-1, wantExpired, heldDelta(heldAfter, heldNow))
		}
		if got := heldNow["sent"] - heldAfter["sent"]; got != 0 {
			t.Errorf("xlbd_fragments_held_total{outcome=\"sent\"} grew by %v while only fragments whose first never came were held", got)
		}

		// The first fragment, now that the others have expired: it is
		// forwarded alone, and nothing held is sent after it.
		l.send(lost[0])
		if name, err := f.answer(msg, time.Second); err == nil {
			t.Errorf("a datagram whose later fragments had expired before its first came (from %s, IP id %d) was answered by %s", f.src, id, name)
		}
		heldEnd, _ := heldFragments(t, top)
		if got := heldEnd["sent"] - heldNow["sent"]; got != 0 {
			t.Errorf("xlbd_fragments_held_total{outcome=\"sent\"} grew by %v when the first fragment came after the later ones had expired", got)
		}
		t.Logf("xlbd_fragments_held_total grew during the test: %s", heldDelta(heldBefore, heldEnd))
	}
	checkHeldVerdicts(t, before, verdicts(t, bin, ctl), l.early)
}

// checkHeldVerdicts checks that hold_fragment grew by at least early, the
// later fragments sent before their first, and that pass_fragment did not
// grow.
func checkHeldVerdicts(t *testing.T, before, after map[string]uint64, early int) {
	t.Helper()
	if _, ok := after["hold_fragment"]; ok {
		if got := after["hold_fragment"] - before["hold_fragment"]; got < uint64(early) {
			t.Errorf("verdict hold_fragment grew by %d for %d fragments sent before their first, want at least %d (%s)",
				got, early, early, verdictDelta(before, after))
		}
	}
	if got := after["pass_fragment"] - before["pass_fragment"]; got != 0 {
		t.Errorf("verdict pass_fragment grew by %d (%d fragments were sent before their first): fragments went to the LB's kernel (%s)",
			got, early, verdictDelta(before, after))
	}
}

type reorderLab struct {
	t     *testing.T
	top   *testbed.Topology
	raw   *testbed.RawIPv4
	vip   netip.AddrPort
	id    uint16 // the next datagram's IP id
	early int    // later fragments sent before their first
}

// reorderFlow is a client UDP socket whose port the raw datagrams come
// from: the answers arrive on it.
type reorderFlow struct {
	pc   *net.UDPConn
	src  netip.AddrPort
	real string // the real that answered its first datagram
}

func (l *reorderLab) flow() *reorderFlow {
	l.t.Helper()
	pc, err := l.top.Client.ListenPacket("udp", netip.AddrPortFrom(l.top.ClientAddr, 0).String())
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { pc.Close() })
	uc := pc.(*net.UDPConn)
	return &reorderFlow{pc: uc, src: uc.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// fragments cuts msg, from f to the VIP, into reorderFrags fragments with a
// new IP id.
func (l *reorderLab) fragments(f *reorderFlow, msg []byte) ([][]byte, uint16) {
	l.t.Helper()
	id := l.id
	l.id++
	if l.id == 0 {
		l.id = 1
	}
	frags, err := testbed.UDPFragments(f.src, l.vip, id, msg, reorderFrags)
	if err != nil {
		l.t.Fatal(err)
	}
	if len(frags) != reorderFrags {
		l.t.Fatalf("%d bytes cut into %d fragments, want %d", len(msg), len(frags), reorderFrags)
	}
	return frags, id
}

func (l *reorderLab) send(pkt []byte) {
	l.t.Helper()
	if err := l.raw.Send(pkt); err != nil {
		l.t.Fatal(err)
	}
}

// sendReversed sends msg from f in fragments, last first, and returns the
// datagram's IP id.
func (l *reorderLab) sendReversed(f *reorderFlow, msg []byte) uint16 {
	l.t.Helper()
	frags, id := l.fragments(f, msg)
	for j := len(frags) - 1; j >= 0; j-- {
		l.send(frags[j])
		if j > 0 {
			l.early++
		}
	}
	return id
}

// answer waits up to wait for "NAME:" and msg on f and returns NAME.
// Anything else that arrives is skipped, and reported if nothing right
// does.
func (f *reorderFlow) answer(msg []byte, wait time.Duration) (string, error) {
	buf := make([]byte, 1<<16)
	f.pc.SetReadDeadline(time.Now().Add(wait))
	var wrong error
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			err = fmt.Errorf("no answer in %s: %w", wait, err)
			if wrong != nil {
				err = fmt.Errorf("%w (and before that a %v)", err, wrong)
			}
			return "", err
		}
		name, rest, ok := bytes.Cut(buf[:n], []byte(":"))
		if ok && bytes.Equal(rest, msg) {
			return string(name), nil
		}
		wrong = fmt.Errorf("wrong answer from %s: %d bytes, %q..., want \"rN:\" and the %d bytes sent", from, n, buf[:min(n, 16)], len(msg))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// heldFragments scrapes xlbd_fragments_held_total by outcome from the
// daemon's /metrics inside the LB's namespace; ok is false when the series
// is absent.
func heldFragments(t *testing.T, top *testbed.Topology) (held map[string]float64, ok bool) {
	t.Helper()
	families := scrapeMetrics(t, top.LB, reorderMetrics)
	held = map[string]float64{}
	fam, ok := families["xlbd_fragments_held_total"]
	for _, m := range fam.GetMetric() {
		for _, p := range m.GetLabel() {
			if p.GetName() == "outcome" {
				held[p.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return held, ok
}

func heldDelta(before, after map[string]float64) string {
	var parts []string
	for _, o := range []string{"sent", "expired", "dropped"} {
		parts = append(parts, fmt.Sprintf("%s +%v", o, after[o]-before[o]))
	}
	return strings.Join(parts, ", ")
}

func verdictNames(v map[string]uint64) string {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	sort.Strings(names)
	return "verdicts: " + strings.Join(names, " ")
}

// capture runs tcpdump on dev in ns for the test's length; its output (IP
// ids, offsets and MF of every UDP packet and fragment) is printed only if
// the test fails.
func capture(t *testing.T, ns *testbed.Netns, dev string) {
	t.Helper()
	p := start(t, ns, "tcpdump", "-l", "-nn", "-v", "-c", "300", "-i", dev, "udp")
	waitFor(t, p, "listening on")
}
