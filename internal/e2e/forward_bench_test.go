package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/internal/testenv"
)

const (
	fwdConnPort = 5202 // connect; iperf3 keeps bulkPort
	fwdUDPPort  = 5203 // udp64
	fwdDuration = 4 * time.Second
	fwdPayload  = 64
	// fwdWorkers is the connections in flight in connect: enough to keep
	// both CPUs of the test machines busy while some wait on the network.
	fwdWorkers = 8
	// fwdSources client addresses (10.50.1.160 up) give connect's 4-tuples
	// room: 64 × 28,000 ephemeral ports, far more than every run of a
	// path together, so each connection is a new flow for the LB.
	fwdSources = 64
	// fwdQuietWait bounds the wait for a quiet machine before each run:
	// 54 runs of -count 3 that all wait in vain add under 14 minutes, and
	// stay within the half hour of the command below.
	fwdQuietWait = 15 * time.Second
)

// BenchmarkForwarding is issue 15's forwarding rate: the same client → LB →
// real NAT topology, in each XDP topology mode, forwarded three ways —
// routing (the client sends to the real's address, the LB namespace routes;
// the floor), nft (nftables DNAT of the VIP in the LB namespace, the
// kernel's own balancer) and xlbd (NAT, rr, attached in that mode) — each
// with bulk TCP (iperf3, one stream), 64-byte UDP datagrams from one flow as
// fast as one socket sends them, and new TCP connections. Next to each rate
// is the CPU time spent during the run per packet or connection: that of
// the benchmark's processes and softirq threads (testbed.OwnCPU), not the
// whole machine's, which on a shared machine also holds other people's
// work. It is client, LB and real together, so the LB's share is the
// difference between paths, not the figure itself. tcp's packets are those
// the LB's two interfaces received, data and ACKs (aggregates where GRO
// and TSO made them, that is in generic mode); udp64's are the datagrams
// the real's sink read.
//
//	go test ./internal/e2e -run '^$' -bench Forwarding -benchtime 1x -count 3 -timeout 30m
func BenchmarkForwarding(b *testing.B) {
	requireNetns(b)
	for _, tool := range []string{"iperf3", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(b, fmt.Sprintf("%s is not installed (apt-get install iperf3 nftables): %v", tool, err))
		}
	}
	bin := xlbdBinary(b)
	for _, mode := range []string{"generic", "native"} {
		b.Run(mode, func(b *testing.B) { benchForwardingMode(b, bin, mode) })
	}
}

// fwdBench is one XDP mode's topology, shared by its three paths.
type fwdBench struct {
	top      *testbed.Topology
	srcs     []netip.Addr
	sink     *testbed.UDPSink
	accepted func() int64
	// verdicts reads xlbd's packet counts by verdict while xlbd runs.
	verdicts func() (map[string]uint64, error)
	xlbdPid  int // while xlbd runs
}

func benchForwardingMode(b *testing.B, bin, mode string) {
	top, err := testbed.NewNAT(b, testbed.Options{Reals: 1, VIPOnLB: true, XDPPeers: mode == "native"})
	if err != nil {
		b.Fatal(err)
	}
	f := &fwdBench{top: top, srcs: fwdClientAddrs(b, top)}
	if f.sink, err = testbed.NewUDPSink(b, top.Reals[0], fwdUDPPort); err != nil {
		b.Fatal(err)
	}
	accepted, err := testbed.ServeConnect(b, top.Reals[0], fwdConnPort)
	if err != nil {
		b.Fatal(err)
	}
	f.accepted = accepted.Load

	// xlbd last, so that neither the kernel paths run beside it nor its
	// flow table holds anything of theirs.
	b.Run("routing", func(b *testing.B) { f.paths(b, top.RealAddrs[0]) })
	b.Run("nft", func(b *testing.B) {
		fwdNft(b, top)
		f.paths(b, top.VIP)
	})
	b.Run("xlbd", func(b *testing.B) {
		d, ctl := fwdXlbd(b, bin, mode, top)
		f.verdicts = func() (map[string]uint64, error) {
			rep, err := hbStatus(bin, ctl)
			return rep.Dataplane.Verdicts, err
		}
		f.xlbdPid = d.Cmd.Process.Pid
		defer func() { f.verdicts, f.xlbdPid = nil, 0 }()
		f.paths(b, top.VIP)
	})
}

// fwdClientAddrs gives the client fwdSources more addresses in its own /24
// and a route to the reals' network through the LB, for routing.
func fwdClientAddrs(b *testing.B, top *testbed.Topology) []netip.Addr {
	b.Helper()
	var srcs []netip.Addr
	for i := range fwdSources {
		srcs = append(srcs, netip.AddrFrom4([4]byte{10, 50, 1, byte(160 + i)}))
	}
	err := top.Client.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, a := range srcs {
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return fmt.Errorf("add %s: %w", a, err)
			}
		}
		reals := netip.PrefixFrom(top.LBBackAddr, 24).Masked()
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: top.LBFrontAddr.AsSlice(),
			Dst: &net.IPNet{IP: reals.Addr().AsSlice(), Mask: net.CIDRMask(reals.Bits(), 32)}})
	})
	if err != nil {
		b.Fatalf("%s: %v", top.Client, err)
	}
	return srcs
}

// fwdNft DNATs the VIP's three ports to the real, ports unchanged, as
// TestBulk's baseline does, until b ends.
func fwdNft(b *testing.B, top *testbed.Topology) {
	b.Helper()
	vip, realAddr := top.VIP.String(), top.RealAddrs[0].String()
	for _, args := range [][]string{
		{"add", "table", "ip", "xlbdfwd"},
		{"add", "chain", "ip", "xlbdfwd", "pre", "{ type nat hook prerouting priority -100; }"},
		{"add", "rule", "ip", "xlbdfwd", "pre", "ip", "daddr", vip, "tcp", "dport", fmt.Sprintf("{ %d, %d }", bulkPort, fwdConnPort),
			"dnat", "to", realAddr},
		{"add", "rule", "ip", "xlbdfwd", "pre", "ip", "daddr", vip, "udp", "dport", fmt.Sprint(fwdUDPPort), "dnat", "to", realAddr},
	} {
		if _, err := top.LB.Run("nft", args...); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		if _, err := top.LB.Run("nft", "delete", "table", "ip", "xlbdfwd"); err != nil {
			b.Error(err)
		}
	})
}

// fwdXlbd runs xlbd in the LB until b ends, balancing the VIP's three ports
// over the real in NAT, and returns it and its control socket.
func fwdXlbd(b *testing.B, bin, mode string, top *testbed.Topology) (*testbed.Process, string) {
	b.Helper()
	var cfg strings.Builder
	cfg.WriteString("virtual_servers:\n")
	for _, s := range []struct {
		port  int
		proto string
	}{{bulkPort, "TCP"}, {fwdConnPort, "TCP"}, {fwdUDPPort, "UDP"}} {
		fmt.Fprintf(&cfg, "  - address: %s\n    port: %d\n    protocol: %s\n    lb_algo: rr\n    lb_kind: NAT\n    real_servers:\n",
			top.VIP, s.port, s.proto)
		fmt.Fprintf(&cfg, "      - { address: %s, port: %d, weight: 1 }\n", top.RealAddrs[0], s.port)
	}
	path := filepath.Join(b.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	ctl := ctlSocket(b)
	d := start(b, top.LB, bin, "--config", path, "--pin-dir", bpffs(b), "--xdp-mode", mode,
		"--control-socket", ctl, "--interface", top.LBFront, "--interface", top.LBBack)
	if err := d.WaitFor("msg=ready", 20*time.Second); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			out, err := exec.Command(bin, "status", "--control-socket", ctl).CombinedOutput()
			b.Logf("xlbd status (%v):\n%s", err, out)
		}
	})
	return d, ctl
}

// paths checks that dst forwards TCP and UDP at all, with a connection
// from every client address so that the LB knows all their neighbours
// before anything is timed, then runs the three kinds of traffic to it.
func (f *fwdBench) paths(b *testing.B, dst netip.Addr) {
	warm, err := testbed.Connect(f.top.Client, netip.AddrPortFrom(dst, fwdConnPort), f.srcs, fwdWorkers, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if warm.Done < int64(len(f.srcs)) || warm.Failed > 0 {
		b.Fatalf("warm-up to %s: %d connections, %d failed (%v)", dst, warm.Done, warm.Failed, warm.Err)
	}
	r0 := f.sink.Received()
	if _, _, err := testbed.BlastUDP(f.top.Client, netip.AddrPortFrom(dst, fwdUDPPort), fwdPayload, 100*time.Millisecond); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if f.sink.Received() == r0 {
		b.Fatalf("no UDP datagram to %s:%d reached the real", dst, fwdUDPPort)
	}

	b.Run("tcp", func(b *testing.B) { f.tcp(b, dst) })
	b.Run("udp64", func(b *testing.B) { f.udp64(b, dst) })
	b.Run("connect", func(b *testing.B) { f.connect(b, dst) })
}

// fwdQuiet waits, up to fwdQuietWait, until the rest of the machine has
// used less than a fifth of a CPU for half a second: on a shared machine
// others' work comes and goes, and a run beside it loses CPUs it wants,
// which lowers its rate far more than its CPU per unit.
func fwdQuiet(b *testing.B) {
	b.Helper()
	const window = 500 * time.Millisecond
	begin := time.Now()
	for {
		o0, m0 := fwdCPUs(b)
		time.Sleep(window)
		o1, m1 := fwdCPUs(b)
		others := (m1 - m0) - (o1 - o0)
		waited := time.Since(begin).Round(100 * time.Millisecond)
		if others < window/5 {
			if waited > 2*window {
				b.Logf("waited %v for the machine to be quiet", waited)
			}
			return
		}
		if waited > fwdQuietWait {
			b.Logf("the machine stayed busy for %v (others used %v of the last %v): measuring anyway", waited, others, window)
			return
		}
	}
}

func fwdCPUs(b *testing.B) (own, machine time.Duration) {
	b.Helper()
	own, err := testbed.OwnCPU()
	if err != nil {
		b.Fatal(err)
	}
	if machine, err = testbed.MachineCPU(); err != nil {
		b.Fatal(err)
	}
	return own, machine
}

// fwdSample is the counters a measurement is the difference of.
type fwdSample struct {
	cpu, machine time.Duration
	daemon       time.Duration // xlbd's user space, part of cpu
	lbRx         uint64
	verdicts     map[string]uint64 // xlbd's, nil without
}

// begin and end take the counters around a run. xlbd's verdicts are read
// outside the CPU window: `xlbd status` is a process of ours.
func (f *fwdBench) begin(b *testing.B) fwdSample {
	b.Helper()
	fwdQuiet(b)
	v := f.readVerdicts(b)
	s := f.counters(b)
	s.verdicts = v
	return s
}

func (f *fwdBench) end(b *testing.B) fwdSample {
	b.Helper()
	s := f.counters(b)
	s.verdicts = f.readVerdicts(b)
	return s
}

func (f *fwdBench) readVerdicts(b *testing.B) map[string]uint64 {
	b.Helper()
	if f.verdicts == nil {
		return nil
	}
	v, err := f.verdicts()
	if err != nil {
		b.Fatalf("xlbd status: %v", err)
	}
	return v
}

func (f *fwdBench) counters(b *testing.B) fwdSample {
	b.Helper()
	var s fwdSample
	var err error
	s.cpu, s.machine = fwdCPUs(b)
	if f.xlbdPid != 0 {
		s.daemon = procCPU(b, f.xlbdPid)
	}
	if s.lbRx, err = f.top.LB.RxPackets(f.top.LBFront, f.top.LBBack); err != nil {
		b.Fatal(err)
	}
	return s
}

// cpu is the CPU time between s0 and s1, logged next to what the whole
// machine used: a big difference means someone else took CPUs the run
// wanted, which lowers its rate far more than its CPU per unit.
func (f *fwdBench) cpu(b *testing.B, s0, s1 fwdSample) time.Duration {
	own, machine := s1.cpu-s0.cpu, s1.machine-s0.machine
	busy := ""
	if machine-own > machine/5 {
		busy = ": someone else was busy, the rate is too low"
	}
	b.Logf("CPU: %v ours, %v the whole machine's%s", own.Round(time.Millisecond), machine.Round(time.Millisecond), busy)
	if f.xlbdPid != 0 {
		b.Logf("CPU of xlbd's process (not its XDP program): %v", s1.daemon-s0.daemon)
	}
	if s1.verdicts != nil {
		// What xlbd did with the run's packets: a path that works
		// through the kernel instead (pass) shows here.
		var parts []string
		for _, v := range slices.Sorted(maps.Keys(s1.verdicts)) {
			if d := s1.verdicts[v] - s0.verdicts[v]; d > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", v, d))
			}
		}
		b.Logf("xlbd verdicts: %s", strings.Join(parts, ", "))
	}
	return own
}

// fwdReport sets b's two figures: rate, and CPU nanoseconds per unit, and
// drops ns/op, which here would be only the run's length.
func fwdReport(b *testing.B, rate float64, rateUnit string, cpu time.Duration, units int64, cpuUnit string) {
	b.ReportMetric(rate, rateUnit)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(units), cpuUnit)
	b.ReportMetric(0, "ns/op")
}

func (f *fwdBench) tcp(b *testing.B, dst netip.Addr) {
	ctx, cancel := context.WithTimeout(b.Context(), fwdDuration+20*time.Second)
	defer cancel()
	s0 := f.begin(b)
	res, err := testbed.Iperf(ctx, b, f.top.Client, f.top.Reals[0], netip.AddrPortFrom(dst, bulkPort), 1, fwdDuration)
	s1 := f.end(b)
	if err != nil {
		b.Fatalf("iperf3 to %s: %v (%s)", dst, err, res)
	}
	if res.ReceivedBytes < minBulkBytes {
		b.Fatalf("iperf3 to %s: %d bytes arrived, want at least %d: %s", dst, res.ReceivedBytes, minBulkBytes, res)
	}
	pkts := int64(s1.lbRx - s0.lbRx)
	b.Logf("%s; LB received %d packets, %.0f bytes each on average", res, pkts, float64(res.ReceivedBytes)/float64(pkts))
	fwdReport(b, res.Gbps(), "Gbit/s", f.cpu(b, s0, s1), pkts, "cpu-ns/pkt")
}

func (f *fwdBench) udp64(b *testing.B, dst netip.Addr) {
	r0, s0 := f.sink.Received(), f.begin(b)
	sent, took, err := testbed.BlastUDP(f.top.Client, netip.AddrPortFrom(dst, fwdUDPPort), fwdPayload, fwdDuration)
	if err != nil {
		b.Fatal(err)
	}
	// What is still in the LB's and the real's queues when the sender
	// stops is part of the run.
	time.Sleep(50 * time.Millisecond)
	s1, r1 := f.end(b), f.sink.Received()
	got := r1 - r0
	b.Logf("sent %d datagrams in %v, the real read %d (%.1f%%), the LB received %d packets",
		sent, took.Round(time.Millisecond), got, 100*float64(got)/float64(max(sent, 1)), s1.lbRx-s0.lbRx)
	if got == 0 {
		b.Fatalf("none of %d datagrams to %s:%d reached the real", sent, dst, fwdUDPPort)
	}
	fwdReport(b, float64(got)/took.Seconds(), "pkt/s", f.cpu(b, s0, s1), got, "cpu-ns/pkt")
}

func (f *fwdBench) connect(b *testing.B, dst netip.Addr) {
	a0, s0 := f.accepted(), f.begin(b)
	res, err := testbed.Connect(f.top.Client, netip.AddrPortFrom(dst, fwdConnPort), f.srcs, fwdWorkers, fwdDuration)
	s1, a1 := f.end(b), f.accepted()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d connections in %v, %d failed (%v); the real accepted %d; the LB received %d packets",
		res.Done, res.Elapsed.Round(time.Millisecond), res.Failed, res.Err, a1-a0, s1.lbRx-s0.lbRx)
	if res.Done == 0 {
		b.Fatalf("no connection to %s:%d completed: %v", dst, fwdConnPort, res.Err)
	}
	fwdReport(b, float64(res.Done)/res.Elapsed.Seconds(), "conn/s", f.cpu(b, s0, s1), res.Done, "cpu-ns/conn")
}
