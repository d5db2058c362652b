package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// bigDatagram is the UDP payload the client sends: over its 1500-byte link
// its kernel cuts it into 7 fragments (6 of 1480 bytes of IP payload and one
// of 128), and the answer, "rN:" and the same bytes, is 7 fragments too.
const (
	bigDatagram   = 9000
	bigFragments  = 7
	fragTryWait   = 1500 * time.Millisecond
	fragExchTries = 3
)

// Datagrams larger than the client's MTU reach a UDP virtual service in
// fragments. The balancer schedules the first fragment, which carries the
// ports, like any datagram and sends the later ones of the same datagram
// (same source, destination, protocol and IP id) to the same real; NAT
// rewrites every fragment, and the fragments of a NAT real's large answer
// on the way back. None of them is left to the LB's kernel, which would
// reassemble the datagram and answer "port unreachable" itself.
func TestFragmented(t *testing.T) {
	requireNetns(t)
	bin := xlbdBinary(t)
	for _, s := range []scenario{
		{"NAT", "generic", true},
		{"NAT", "native", true},
		{"DR", "generic", true},
		{"DR", "native", true},
		{"TUN", "generic", true},
		{"TUN", "native", true},
	} {
		t.Run(s.name(), func(t *testing.T) { testFragmented(t, bin, s) })
	}
}

func testFragmented(t *testing.T, bin string, s scenario) {
	opts := testbed.Options{Reals: 3, VIPOnLB: s.vipOnLB, XDPPeers: s.xdpMode == "native"}
	if s.kind == "TUN" {
		// Room for the outer header on a 1500-byte fragment: a fragment
		// has no DF, so one that does not fit is dropped.
		opts.MTU = 1600
	}
	top := topology(t, s.kind, opts)
	_, udpPort := s.ports()
	if err := testbed.ServeRealsUDP(t, top, udpPort); err != nil {
		t.Fatal(err)
	}
	if s.kind == "TUN" {
		for _, r := range top.Reals {
			// The reals' answers go straight to the client, whose
			// bridge port has an MTU of 1500: the bridge drops
			// fragments of 1600 bytes (unless br_netfilter, with
			// bridge-nf-call-iptables=1, happens to fragment them
			// again, as it does on some hosts).
			if _, err := r.Run("ip", "route", "add", top.ClientAddr.String()+"/32", "dev", top.RealLink, "mtu", "1500"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, start(t, r, bin, "decap", "--interface", top.RealLink, "--xdp-mode", s.xdpMode), "ready")
		}
	}

	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	s.config(t, cfg, top, 3)
	ctl := ctlSocket(t)
	lbIfs := []string{"--interface", top.LBFront}
	if top.LBBack != top.LBFront {
		lbIfs = append(lbIfs, "--interface", top.LBBack)
	}
	d := start(t, top.LB, bin, append([]string{"--config", cfg, "--pin-dir", bpffs(t), "--xdp-mode", s.xdpMode, "--control-socket", ctl}, lbIfs...)...)
	waitFor(t, d, "msg=ready")
	waitReachable(t, ctl)

	before := verdicts(t, bin, ctl)
	t.Cleanup(func() {
		// Registered after the daemon's start, so it runs while the
		// daemon still answers.
		if after, err := readVerdicts(bin, ctl); err != nil {
			t.Logf("verdicts: %v", err)
		} else {
			t.Logf("verdicts grown during the test: %s", verdictDelta(before, after))
		}
	})
	vip := fmt.Sprintf("%s:53", top.VIP)
	var smalls, bigs int

	// Small datagrams first, one flow per real (round robin): whatever
	// fails below fails for the size alone. In NAT they also let the LB
	// learn the reals' MACs.
	warm := map[string]int{}
	for i := range 3 {
		c := dialNoDF(t, top, vip)
		name, err := exchange(c, []byte(fmt.Sprintf("warm-up-%d", i)))
		if err != nil {
			t.Fatalf("small datagram to %s on flow %d (from %s): %v", vip, i, c.LocalAddr(), err)
		}
		warm[name]++
		smalls++
	}
	if len(warm) != 3 {
		t.Errorf("three small-datagram flows went to %v, want one on each real", warm)
	}

	// 9000-byte datagrams, two on each of six flows: every one answered in
	// full, each flow by one real, the flows spread by round robin.
	flowsPerReal := map[string]int{}
	for i := range 6 {
		c := dialNoDF(t, top, vip)
		var first string
		for j := range 2 {
			msg := payload(t, bigDatagram)
			name, err := exchange(c, msg)
			if err != nil {
				t.Fatalf("%d-byte datagram %d on flow %d (from %s) to %s: %v", bigDatagram, j, i, c.LocalAddr(), vip, err)
			}
			bigs++
			if j == 0 {
				first = name
				flowsPerReal[name]++
			} else if name != first {
				t.Errorf("flow %d: datagram 0 answered by %s, datagram 1 by %s; want one real per flow", i, first, name)
			}
		}
	}
	for _, r := range []string{"r1", "r2", "r3"} {
		if flowsPerReal[r] != 2 {
			t.Errorf("six flows of %d-byte datagrams went %v, want 2 on each of r1, r2, r3 (rr)", bigDatagram, flowsPerReal)
			break
		}
	}

	// A mix from four source ports at once: small and 9000-byte datagrams
	// interleaved, so that the fragments of several datagrams are on the
	// wire together and a flow that small datagrams opened carries large
	// ones, and the other way round.
	type flowResult struct {
		reals         map[string]int
		smalls, bigs  int
		err           error
		local, failed string
	}
	results := make([]flowResult, 4)
	var wg sync.WaitGroup
	for g := range results {
		c := dialNoDF(t, top, vip)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[g]
			res.reals = map[string]int{}
			res.local = c.LocalAddr().String()
			for j := range 8 {
				var msg []byte
				if (g+j)%2 == 0 {
					msg = payload(t, bigDatagram)
				} else {
					msg = []byte(fmt.Sprintf("small-%d-%d", g, j))
				}
				name, err := exchange(c, msg)
				if err != nil {
					res.err = err
					res.failed = fmt.Sprintf("datagram %d (%d bytes)", j, len(msg))
					return
				}
				res.reals[name]++
				if len(msg) == bigDatagram {
					res.bigs++
				} else {
					res.smalls++
				}
			}
		}()
	}
	wg.Wait()
	mixReals := map[string]bool{}
	for g, res := range results {
		smalls += res.smalls
		bigs += res.bigs
		if res.err != nil {
			t.Errorf("mixed flow %d (from %s): %s: %v", g, res.local, res.failed, res.err)
			continue
		}
		if len(res.reals) != 1 {
			t.Errorf("mixed flow %d (from %s) was answered by %v, want a single real", g, res.local, res.reals)
		}
		for r := range res.reals {
			mixReals[r] = true
		}
	}
	if len(mixReals) < 2 && !t.Failed() {
		t.Errorf("four mixed flows all went to %v, want them spread over the reals", mixReals)
	}

	// Nothing was left to the LB's kernel, and the balancer forwarded
	// every fragment (and in NAT every fragment of the answers).
	after := verdicts(t, bin, ctl)
	for _, v := range []string{"pass_fragment", "pass_malformed"} {
		if _, ok := after[v]; !ok {
			t.Errorf("xlbd status has no verdict %s: %v", v, after)
		} else if after[v] != before[v] {
			t.Errorf("verdict %s grew by %d: packets went to the LB's kernel", v, after[v]-before[v])
		}
	}
	want := uint64(bigs*bigFragments + smalls)
	if s.kind == "NAT" {
		want *= 2 // the answers come back through the LB
	}
	var fwd uint64
	for n, v := range after {
		if strings.HasPrefix(n, "fwd_") {
			fwd += v - before[n]
		}
	}
	if fwd < want {
		t.Errorf("the fwd_* verdicts grew by %d for %d small and %d %d-byte datagrams, want at least %d (%s)",
			fwd, smalls, bigs, bigDatagram, want, verdictDelta(before, after))
	}
}

// dialNoDF connects a UDP socket from the client to addr, with its own
// source port, that lets the kernel fragment large datagrams.
func dialNoDF(t *testing.T, top *testbed.Topology, addr string) *net.UDPConn {
	t.Helper()
	c, err := top.Client.Dial(context.Background(), "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	uc := c.(*net.UDPConn)
	if err := testbed.NoDF(uc); err != nil {
		t.Fatal(err)
	}
	return uc
}

func payload(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Error(err)
	}
	return b
}

// exchange sends msg on c and waits for its answer, "NAME:" and msg, sending
// it again up to fragExchTries times in all. It returns the real's name.
// Answers to an earlier message that was sent twice are skipped.
func exchange(c *net.UDPConn, msg []byte) (string, error) {
	buf := make([]byte, 1<<16)
	var last, wrong error
	for range fragExchTries {
		if _, err := c.Write(msg); err != nil {
			last = fmt.Errorf("write: %w", err)
			continue
		}
		c.SetReadDeadline(time.Now().Add(fragTryWait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				last = fmt.Errorf("no answer: %w", err)
				if wrong != nil {
					last = fmt.Errorf("%w (and before that a %v)", last, wrong)
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					last = fmt.Errorf("%w (ICMP port unreachable: a kernel with no socket on the port, the LB's, reassembled the datagram)", last)
				}
				break
			}
			name, rest, ok := bytes.Cut(buf[:n], []byte(":"))
			if ok && bytes.Equal(rest, msg) {
				return string(name), nil
			}
			wrong = fmt.Errorf("wrong answer: %d bytes, %q..., want \"rN:\" and the %d bytes sent", n, buf[:min(n, 16)], len(msg))
		}
	}
	return "", fmt.Errorf("%d tries: %w", fragExchTries, last)
}

func readVerdicts(bin, ctl string) (map[string]uint64, error) {
	out, err := exec.Command(bin, "status", "--json", "--control-socket", ctl).Output()
	if err != nil {
		return nil, fmt.Errorf("xlbd status --json: %w", err)
	}
	var rep control.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("xlbd status --json: %w\n%s", err, out)
	}
	return rep.Dataplane.Verdicts, nil
}

func verdicts(t *testing.T, bin, ctl string) map[string]uint64 {
	t.Helper()
	v, err := readVerdicts(bin, ctl)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// verdictDelta lists the verdicts that grew from before to after.
func verdictDelta(before, after map[string]uint64) string {
	var parts []string
	for n, v := range after {
		if v != before[n] {
			parts = append(parts, fmt.Sprintf("%s +%d", n, v-before[n]))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
