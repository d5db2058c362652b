package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/internal/testenv"
)

const (
	bulkPort = 5201 // iperf3, on the VIP and on the real
	// echoPort is the VIP's port of the integrity check; in NAT the real
	// listens on echoRealPortNAT, elsewhere on echoPort.
	echoPort        = 9000
	echoRealPortNAT = 19000
	bulkDuration    = 3 * time.Second
	// minBulkBytes is what must arrive in bulkDuration: a few MB, far
	// below any working path, far above the handful of segments that get
	// through when bulk forwarding is broken.
	minBulkBytes   = 10 << 20
	integrityBytes = 32 << 20
)

// bulkCase is one forwarding mode in one XDP mode.
type bulkCase struct {
	kind      string // lb_kind: NAT, DR, TUN
	xdpMode   string // generic, native
	mtu       int    // LB-to-real path MTU; 0 is the default 1500
	integrity bool   // also check 32 MiB both ways with SHA-256
}

func (c bulkCase) name() string {
	n := c.kind + "/" + c.xdpMode
	if c.mtu != 0 {
		n += fmt.Sprintf("/mtu%d", c.mtu)
	}
	return n
}

func (c bulkCase) echoRealPort() int {
	if c.kind == "NAT" {
		return echoRealPortNAT
	}
	return echoPort
}

// config writes an lb.yaml with two services on the VIP, iperf3's and the
// echo server's, each over the one real that runs them: iperf3's control and
// data connections must all reach the same server.
func (c bulkCase) config(t *testing.T, path string, top *testbed.Topology) {
	t.Helper()
	var b strings.Builder
	b.WriteString("virtual_servers:\n")
	for _, p := range [][2]int{{bulkPort, bulkPort}, {echoPort, c.echoRealPort()}} {
		fmt.Fprintf(&b, "  - address: %s\n    port: %d\n    protocol: TCP\n    lb_algo: rr\n    lb_kind: %s\n    real_servers:\n",
			top.VIP, p[0], c.kind)
		fmt.Fprintf(&b, "      - { address: %s, port: %d, weight: 1 }\n", top.RealAddrs[0], p[1])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bulkFlow is what one iperf3 run sends.
type bulkFlow struct {
	streams int  // -P
	reverse bool // -R: the real sends, the client receives
}

func (f bulkFlow) name() string {
	n := fmt.Sprintf("%d stream", f.streams)
	if f.streams > 1 {
		n += "s"
	}
	if f.reverse {
		n += " -R"
	}
	return n
}

func (f bulkFlow) args() []string {
	if f.reverse {
		return []string{"-R"}
	}
	return nil
}

// flows are the runs of a forwarding mode. Uploads with 1 and 4 streams
// everywhere; in NAT the replies come back through the balancer too, so a
// download (-R) as well.
func (c bulkCase) flows() []bulkFlow {
	f := []bulkFlow{{streams: 1}, {streams: 4}}
	if c.kind == "NAT" {
		f = append(f, bulkFlow{streams: 1, reverse: true})
	}
	return f
}

// bulkFigure is one iperf3 measurement, kept for the summary.
type bulkFigure struct {
	name    string // "NAT/generic/1 stream"
	xdpMode string
	flow    bulkFlow
	res     testbed.IperfResult
	err     error
}

type bulkRun struct {
	bin string
	mu  sync.Mutex
	// baseline is nft DNAT on the NAT topology prepared for an XDP mode,
	// by XDP mode and flow.
	baseline map[string]map[bulkFlow]*bulkFigure
	figures  []*bulkFigure
}

// Bulk TCP through the balancer with iperf3, in every forwarding mode and
// both XDP modes, with 1 and 4 streams (and NAT's replies with -R); the
// data must arrive (speed is not
// asserted) and, once per mode, 32 MiB of random bytes must come back
// intact. The same run measures nftables DNAT on the NAT topology and reports
// every xlbd figure as a ratio to it.
func TestBulk(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		testenv.Skip(t, fmt.Sprintf("iperf3 is not installed (apt-get install iperf3): %v", err))
	}
	r := &bulkRun{bin: xlbdBinary(t), baseline: map[string]map[bulkFlow]*bulkFigure{}}
	for _, c := range []bulkCase{
		// NAT first: their topologies also give the nft baseline.
		{kind: "NAT", xdpMode: "generic", integrity: true},
		{kind: "NAT", xdpMode: "native", integrity: true},
		{kind: "DR", xdpMode: "generic", integrity: true},
		{kind: "DR", xdpMode: "native", integrity: true},
		{kind: "TUN", xdpMode: "generic", integrity: true},
		{kind: "TUN", xdpMode: "native", integrity: true},
		// Room for the outer header: no ICMP, no lowered MSS.
		{kind: "TUN", xdpMode: "generic", mtu: 1600},
		{kind: "TUN", xdpMode: "native", mtu: 1600},
	} {
		t.Run(c.name(), func(t *testing.T) { r.run(t, c) })
	}
	r.summary(t)
}

func (r *bulkRun) run(t *testing.T, c bulkCase) {
	top := topology(t, c.kind, testbed.Options{Reals: 1, VIPOnLB: true, XDPPeers: c.xdpMode == "native", MTU: c.mtu})
	realNS := top.Reals[0]
	if c.integrity {
		serveEchoHash(t, realNS, c.echoRealPort())
	}

	if c.kind == "NAT" {
		t.Run("nft-DNAT", func(t *testing.T) { r.nftBaseline(t, c, top) })
	}

	if c.kind == "TUN" {
		waitFor(t, start(t, realNS, r.bin, "decap", "--interface", top.RealLink, "--xdp-mode", c.xdpMode), "ready")
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	c.config(t, cfg, top)
	ctl := ctlSocket(t)
	lbIfs := []string{"--interface", top.LBFront}
	if top.LBBack != top.LBFront {
		lbIfs = append(lbIfs, "--interface", top.LBBack)
	}
	d := start(t, top.LB, r.bin, append([]string{"--config", cfg, "--pin-dir", bpffs(t), "--xdp-mode", c.xdpMode,
		"--control-socket", ctl}, lbIfs...)...)
	waitFor(t, d, "msg=ready")
	waitReachable(t, ctl)
	// Runs before the daemon is stopped: what the balancer did with the
	// packets, all of `xlbd status` when something failed.
	t.Cleanup(func() { r.logStatus(t, ctl) })

	vip := netip.AddrPortFrom(top.VIP, bulkPort)
	for _, fl := range c.flows() {
		t.Run("xlbd/"+fl.name(), func(t *testing.T) {
			if f := r.iperf(t, c.name(), c.xdpMode, top, vip, fl); f.err == nil {
				t.Logf("%s\n    (%s)", r.ratio(f), f.res)
			}
		})
	}
	if c.integrity {
		t.Run("integrity", func(t *testing.T) {
			checkEchoHash(t, top, netip.AddrPortFrom(top.VIP, echoPort))
		})
	}
}

// nftBaseline measures the kernel's own DNAT of the VIP to the real on the
// same topology, without xlbd; the table is gone before xlbd starts.
func (r *bulkRun) nftBaseline(t *testing.T, c bulkCase, top *testbed.Topology) {
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.Skip(t, fmt.Sprintf("nft is not installed (apt-get install nftables), no baseline: %v", err))
	}
	realAddr := top.RealAddrs[0]
	for _, args := range [][]string{
		{"add", "table", "ip", "xlbdbulk"},
		{"add", "chain", "ip", "xlbdbulk", "pre", "{ type nat hook prerouting priority -100; }"},
		{"add", "rule", "ip", "xlbdbulk", "pre", "ip", "daddr", top.VIP.String(), "tcp", "dport", fmt.Sprint(bulkPort),
			"dnat", "to", netip.AddrPortFrom(realAddr, bulkPort).String()},
	} {
		if _, err := top.LB.Run("nft", args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := top.LB.Run("nft", "list", "ruleset")
			t.Logf("nft list ruleset in %s:\n%s", top.LB, out)
		}
		if _, err := top.LB.Run("nft", "delete", "table", "ip", "xlbdbulk"); err != nil {
			t.Error(err)
		}
	})
	vip := netip.AddrPortFrom(top.VIP, bulkPort)
	for _, fl := range c.flows() {
		t.Run(fl.name(), func(t *testing.T) {
			f := r.iperf(t, "nft DNAT/"+c.xdpMode, c.xdpMode, top, vip, fl)
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.baseline[c.xdpMode] == nil {
				r.baseline[c.xdpMode] = map[bulkFlow]*bulkFigure{}
			}
			r.baseline[c.xdpMode][fl] = f
			if f.err == nil {
				t.Logf("%s: %s", f.name, f.res)
			}
		})
	}
}

// iperf runs iperf3 from the client to dst for bulkDuration, with the server
// on the first real, and records the figure; it fails t unless the data
// arrived, and logs nothing else.
func (r *bulkRun) iperf(t *testing.T, name, xdpMode string, top *testbed.Topology, dst netip.AddrPort, fl bulkFlow) *bulkFigure {
	t.Helper()
	f := &bulkFigure{name: name + "/" + fl.name(), xdpMode: xdpMode, flow: fl}
	r.mu.Lock()
	r.figures = append(r.figures, f)
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(t.Context(), bulkDuration+20*time.Second)
	defer cancel()
	f.res, f.err = testbed.Iperf(ctx, t, top.Client, top.Reals[0], dst, fl.streams, bulkDuration, fl.args()...)
	switch {
	case f.err != nil:
		t.Errorf("%s: %v (%s)", f.name, f.err, f.res)
	case f.res.ReceivedBytes < minBulkBytes:
		f.err = fmt.Errorf("only %d bytes arrived", f.res.ReceivedBytes)
		t.Errorf("%s: %d bytes arrived in %v, want at least %d: %s", f.name, f.res.ReceivedBytes, bulkDuration, minBulkBytes, f.res)
	}
	return f
}

// ratio says f as a multiple of the nft baseline in the same XDP mode's
// topology with the same flow.
func (r *bulkRun) ratio(f *bulkFigure) string {
	s := fmt.Sprintf("%s: %.2f Gbit/s", f.name, f.res.Gbps())
	r.mu.Lock()
	b := r.baseline[f.xdpMode][f.flow]
	r.mu.Unlock()
	if b == nil || b.err != nil || b.res.ReceivedBps == 0 {
		return s + " (no nft DNAT baseline)"
	}
	return fmt.Sprintf("%s = %.2f x nft DNAT (%.2f Gbit/s, %s topology)",
		s, f.res.ReceivedBps/b.res.ReceivedBps, b.res.Gbps(), f.xdpMode)
}

// summary prints every figure again in one block, for the closing note.
func (r *bulkRun) summary(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "bulk TCP through the VIP, iperf3 -t %v, receiver's rate; not asserted, noisy from run to run\n"+
		"(ratios are to nft DNAT on the NAT topology of the same XDP mode; native's has tx checksumming, hence TSO, off in client and real):\n",
		bulkDuration.Seconds())
	r.mu.Lock()
	figures := slices.Clone(r.figures)
	r.mu.Unlock()
	for _, f := range figures {
		if f.err != nil {
			fmt.Fprintf(&b, "  %s: FAILED: %s\n", f.name, firstLine(f.err.Error()))
			continue
		}
		if strings.HasPrefix(f.name, "nft DNAT") {
			fmt.Fprintf(&b, "  %s: %.2f Gbit/s\n", f.name, f.res.Gbps())
			continue
		}
		fmt.Fprintf(&b, "  %s\n", r.ratio(f))
	}
	t.Logf("%s", b.String())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// logStatus logs the verdict counts from `xlbd status`, or all of it when t
// failed.
func (r *bulkRun) logStatus(t *testing.T, ctl string) {
	out, err := exec.Command(r.bin, "status", "--control-socket", ctl).CombinedOutput()
	if err != nil || t.Failed() {
		t.Logf("xlbd status (%v):\n%s", err, out)
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "packets by verdict") {
			t.Logf("%s", line)
		}
	}
}

// serveEchoHash runs, in ns on port, a TCP server that sends back every byte
// it receives and, once the client has closed its side, the SHA-256 of what
// it received.
func serveEchoHash(t *testing.T, ns *testbed.Netns, port int) {
	t.Helper()
	l, err := ns.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				h := sha256.New()
				if _, err := io.Copy(c, io.TeeReader(c, h)); err != nil {
					return
				}
				c.Write(h.Sum(nil))
			}()
		}
	}()
}

var integrityData = sync.OnceValue(func() []byte {
	b := make([]byte, integrityBytes)
	rand.NewChaCha8([32]byte{'x', 'l', 'b', 'd'}).Read(b)
	return b
})

// checkEchoHash sends integrityBytes of pseudo-random data to dst from the
// client and checks that the real received exactly them (its SHA-256) and
// that the echo came back unchanged.
func checkEchoHash(t *testing.T, top *testbed.Topology, dst netip.AddrPort) {
	t.Helper()
	data := integrityData()
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := top.Client.Dial(ctx, "tcp4", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	// 64 MiB through the balancer take well under a second when it works;
	// when it does not, fail soon.
	c.SetDeadline(begin.Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.CopyN(h, c, int64(len(data)))
	if err != nil {
		t.Fatalf("echo: %d of %d bytes came back: %v (sending: %v)", n, len(data), err, <-werr)
	}
	if err := <-werr; err != nil {
		t.Fatalf("sending %d bytes: %v", len(data), err)
	}
	digest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the real's SHA-256: %v", err)
	}
	took := time.Since(begin)
	if !bytes.Equal(digest, want[:]) {
		t.Errorf("the real received data with SHA-256 %x, want %x (sent)", digest, want)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("the echo came back with SHA-256 %x, want %x (sent)", got, want)
	}
	if !t.Failed() {
		t.Logf("%d MiB to %s and back intact (SHA-256 %x...) in %v", len(data)>>20, dst, want[:6], took.Round(time.Millisecond))
	}
}
