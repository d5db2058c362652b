package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/metrics"
)

// BenchmarkPerPacket measures the kernel-reported cost of one packet through
// the balancer (BPF_PROG_TEST_RUN, repeat=1, one call per packet),
// interleaved with the trivial XDP_PASS program, and with Katran's balancer
// when KATRAN_SRC names a checkout (katran_bench_test.go), so that all see
// the same machine state. The loop runs pinned to one CPU; each figure is
// the median over b.N calls. x-trivial and x-katran are the ratios to the
// trivial program and to Katran's matching case: the figures to compare
// across machines. above-trivial-ns is the balancer's own cost.
func BenchmarkPerPacket(b *testing.B) {
	// The default connection table, as a new user runs it, emptied by gc
	// after each case of new flows: a case's flows fit in it.
	l := benchLab(b, maps.DefaultConnTableSize)
	var pass bpf.PassObjects
	if err := bpf.LoadPassObjects(&pass, nil); err != nil {
		b.Fatal(err)
	}
	defer pass.Close()
	kat, err := loadKatran(b, vipTUN, 80, []netip.Addr{r1L2, r1L2.Next(), r1L2.Next().Next()}, macClient)
	if err != nil {
		b.Logf("no Katran columns: %v", err)
	}
	defer kat.Close()

	syn := func(vip netip.Addr) []byte { return fromClient(vip, 80, layers.IPProtocolTCP).bytes(b) }
	ack := func(vip netip.Addr) []byte {
		p := fromClient(vip, 80, layers.IPProtocolTCP)
		p.syn = false
		return p.bytes(b)
	}
	// The NAT flow's reply, from the real the first NAT SYN is given
	// (r1, as the golden tests show) back through the balancer.
	reply := pkt{srcMAC: realMAC(r1NAT), dstMAC: macB0, src: r1NAT, dst: addrClient, sport: 8080, dport: 40000,
		proto: layers.IPProtocolTCP, ttl: 64, id: 0x4321, df: true, payload: []byte("hello, client")}.bytes(b)
	other := fromClient(addrClient.Next(), 80, layers.IPProtocolTCP).bytes(b)

	cases := []struct {
		name    string
		pkt     []byte
		open    []byte // sent once first, to open the flow
		ifindex func(*lab) int
		new     bool   // a new 5-tuple each packet
		verdict uint32 // xlbd's, and Katran's for a case it has
		katran  []byte // Katran's matching packet (nil: none)
		full    bool   // into a connection table that is full
	}{
		{"established/tun", ack(vipTUN), syn(vipTUN), onF0, false, xdpTX, ack(vipTUN), false},
		{"established/dr", ack(vipDR), syn(vipDR), onF0, false, xdpTX, ack(vipTUN), false},
		// NAT leaves by the other interface: a redirect.
		{"established/nat", ack(vipNAT), syn(vipNAT), onF0, false, xdpRedirect, ack(vipTUN), false},
		{"nat-reply", reply, nil, onB0, false, xdpRedirect, nil, false},
		{"new-flow/tun", syn(vipTUN), nil, onF0, true, xdpTX, syn(vipTUN), false},
		{"new-flow/dr", syn(vipDR), nil, onF0, true, xdpTX, syn(vipTUN), false},
		{"new-flow/nat", syn(vipNAT), nil, onF0, true, xdpRedirect, syn(vipTUN), false},
		{"non-vip", other, nil, onF0, false, xdpPass, other, false},
		// A flood's new flows once it has filled the table: refused
		// (dropped) without evicting anyone. Katran's LRU would evict; it
		// has no matching case.
		{"new-flow-full/nat", syn(vipNAT), nil, onF0, true, xdpDrop, nil, true},
	}
	var flow uint32
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			l := l
			if c.full {
				l = fullLab(b, append([]byte(nil), c.pkt...), &flow)
			}
			if c.new {
				if err := kat.newRateWindow(); err != nil {
					b.Fatal(err)
				}
			}
			pkt := append([]byte(nil), c.pkt...)
			kpkt := append([]byte(nil), c.katran...)
			lb, base, kt := make([]uint32, 0, b.N), make([]uint32, 0, b.N), make([]uint32, 0, b.N)
			var failed error
			l.w.Do(func() {
				pinLastCPU()
				if c.open != nil {
					if _, _, err := runOnce(l.set.Program, c.open, l.f0); err != nil {
						failed = err
						return
					}
				}
				if kat != nil && kpkt != nil && !c.new {
					// Katran's LRU learns the flow from its first packet.
					runOnce(kat.prog, kpkt, c.ifindex(l))
				}
				for i := 0; i < b.N && failed == nil; i++ {
					if c.new {
						// Source address and port together make 2^32 distinct
						// flows; the IP checksum is fixed for the address.
						flow++
						for _, p := range [][]byte{pkt, kpkt} {
							if len(p) == 0 {
								continue
							}
							setFlow(p, flow)
						}
					}
					v, d, err := runOnce(l.set.Program, pkt, c.ifindex(l))
					if err != nil || v != c.verdict {
						failed = fmt.Errorf("xlbd: verdict %d (want %d), %v", v, c.verdict, err)
						break
					}
					lb = append(lb, uint32(d))
					_, d, err = runOnce(pass.XdpPass, pkt, c.ifindex(l))
					if err != nil {
						failed = err
						break
					}
					base = append(base, uint32(d))
					if kat != nil && len(kpkt) > 0 {
						v, d, err := runOnce(kat.prog, kpkt, c.ifindex(l))
						if want := katranVerdict(c.verdict); err != nil || v != want {
							failed = fmt.Errorf("Katran: verdict %d (want %d), %v", v, katranVerdict(c.verdict), err)
							break
						}
						kt = append(kt, uint32(d))
					}
				}
			})
			if failed != nil {
				b.Fatal(failed)
			}
			if c.new && !c.full {
				l.expireAll(b)
			}
			m, mb := median(lb), median(base)
			b.ReportMetric(m, "ns/pkt")
			b.ReportMetric(mb, "trivial-ns/pkt")
			b.ReportMetric(m/mb, "x-trivial")
			b.ReportMetric(m-mb, "above-trivial-ns")
			if len(kt) > 0 {
				mk := median(kt)
				b.ReportMetric(mk, "katran-ns/pkt")
				b.ReportMetric(mk/mb, "katran-x-trivial")
				b.ReportMetric(m/mk, "x-katran")
			}
		})
	}
}

// benchLab is a lab with the golden state applied and the NAT route
// cache on, as the daemon runs it (its route watcher turns the cache on).
func benchLab(b *testing.B, conns uint32) *lab {
	l := newLabSized(b, conns)
	l.apply(b, goldenState())
	if _, err := l.set.Routes.Bump(true); err != nil {
		b.Fatal(err)
	}
	return l
}

// expireAll has gc retire every flow, as if their timeouts had passed,
// then gives the program the real clock back.
func (l *lab) expireAll(b *testing.B) {
	// Far beyond any timeout, and far from 0, which is the real clock.
	l.diffSetClock(b, 1<<62)
	if err := l.set.Clock.Set(uint64(0)); err != nil {
		b.Fatal(err)
	}
}

// fullConns is the connection table of fullLab: small enough to fill in
// a moment, large enough that its hash buckets are what a full default
// table's are.
const fullConns = 1 << 16

// fullLab is a lab whose connection table new flows of syn (numbered on
// from *flow) have filled.
func fullLab(b *testing.B, syn []byte, flow *uint32) *lab {
	l := benchLab(b, fullConns)
	var err error
	l.w.Do(func() {
		for n := 0; n <= fullConns && err == nil; n++ {
			*flow++
			setFlow(syn, *flow)
			var v uint32
			if v, _, err = runOnce(l.set.Program, syn, l.f0); err == nil && v == xdpDrop {
				return
			}
		}
		err = fmt.Errorf("%d new flows did not fill a table of %d: %v", fullConns+1, fullConns, err)
	})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// katranVerdict is Katran's verdict where xlbd's is v: Katran sends every
// balanced packet back out where it came (XDP_TX).
func katranVerdict(v uint32) uint32 {
	if v == xdpRedirect {
		return xdpTX
	}
	return v
}

// setFlow makes a TCP packet (Ethernet, IPv4 without options) flow number
// flow of 2^32: its source port and the low bytes of its source address,
// with the IP checksum fixed.
func setFlow(p []byte, flow uint32) {
	binary.BigEndian.PutUint16(p[14+20:], uint16(flow))
	p[14+12+2] = byte(flow >> 16)
	p[14+12+1] = byte(flow >> 24)
	fixIPCsum(p[14:34])
}

// median of the kernel's durations, in ns.
func median(d []uint32) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2])
}

// pinLastCPU keeps the calling (locked) thread on the last CPU: the
// kernel's clock for BPF_PROG_TEST_RUN moves in steps, and a thread that
// migrates mid-run pays cold caches.
func pinLastCPU() {
	var set unix.CPUSet
	set.Set(runtime.NumCPU() - 1)
	unix.SchedSetaffinity(0, &set)
}

// progRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr.
type progRunAttr struct {
	ProgFD      uint32
	Retval      uint32
	DataSizeIn  uint32
	DataSizeOut uint32
	DataIn      uint64
	DataOut     uint64
	Repeat      uint32
	Duration    uint32
	CtxSizeIn   uint32
	CtxSizeOut  uint32
	CtxIn       uint64
	CtxOut      uint64
	Flags       uint32
	CPU         uint32
	BatchSize   uint32
	_           uint32
}

// runOnce runs prog once on pkt arriving on ifindex and returns the
// kernel-reported duration. cilium/ebpf's Benchmark cannot pass a context,
// and without one the packet arrives on lo, which would turn every XDP_TX of
// the balancer into a redirect.
func runOnce(prog *ebpf.Program, pkt []byte, ifindex int) (uint32, time.Duration, error) {
	md := xdpMd{DataEnd: uint32(len(pkt)), IngressIfindex: uint32(ifindex)}
	attr := progRunAttr{
		ProgFD:     uint32(prog.FD()),
		DataSizeIn: uint32(len(pkt)),
		DataIn:     uint64(uintptr(unsafe.Pointer(&pkt[0]))),
		Repeat:     1,
		CtxSizeIn:  uint32(unsafe.Sizeof(md)),
		CtxIn:      uint64(uintptr(unsafe.Pointer(&md))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(pkt)
	runtime.KeepAlive(&md)
	if errno != 0 {
		return 0, 0, errno
	}
	return attr.Retval, time.Duration(attr.Duration), nil
}

// BenchmarkScrape is one Prometheus scrape with 1000 real servers: every
// counter read from the per-CPU maps and the flow tables counted.
func BenchmarkScrape(b *testing.B) {
	l := newLabSized(b, 1<<18)
	var st dataplane.State
	for s := 0; s < 4; s++ {
		svc := dataplane.Service{VIP: vipNAT, Port: uint16(80 + s), Protocol: 6, Sched: "rr", Kind: dataplane.NAT}
		for h := 1; h <= 250; h++ {
			svc.Reals = append(svc.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, 2, byte(h)}), Port: 8080, Weight: 1})
		}
		st.Services = append(st.Services, svc)
	}
	l.apply(b, st)
	// Some flows in the tables, as a busy balancer has.
	pkt := fromClient(vipNAT, 80, layers.IPProtocolTCP).bytes(b)
	l.w.Do(func() {
		for i := 0; i < 20000; i++ {
			binary.BigEndian.PutUint16(pkt[14+20:], uint16(i))
			if _, _, err := runOnce(l.set.Program, pkt, l.f0); err != nil {
				b.Fatal(err)
			}
		}
	})
	be := &Backend{Tables: l.tables, Set: l.set}
	m := metrics.New(be.Status, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mfs, err := m.Registry.Gather()
		if err != nil {
			b.Fatal(err)
		}
		if len(mfs) == 0 {
			b.Fatal("empty scrape")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/scrape")
}

// BenchmarkNewFlowPerScheduler is the new-flow cost of each scheduler with
// 3, 100 and 1000 reals (DR, so that no route lookup is in the figure),
// beside the trivial program in the same run.
func BenchmarkNewFlowPerScheduler(b *testing.B) {
	l := newLabSized(b, maps.DefaultConnTableSize)
	var pass bpf.PassObjects
	if err := bpf.LoadPassObjects(&pass, nil); err != nil {
		b.Fatal(err)
	}
	defer pass.Close()
	// Flows must be new across sub-benchmarks too: the service and its
	// reals keep their ids from one to the next.
	var flow uint32
	for _, name := range Schedulers() {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				svc := dataplane.Service{VIP: vipDR, Port: 80, Protocol: 6, Sched: name, Kind: dataplane.DR}
				for i := 0; i < n; i++ {
					w := 1 + i%3
					if name == "ovf" {
						// ovf refuses reals with more active connections than
						// their weight, and nothing expires here.
						w = 1<<22 + i%3
					}
					svc.Reals = append(svc.Reals, dataplane.Real{
						Addr: netip.AddrFrom4([4]byte{10, 50, 1, byte(11 + i%200)}), Port: uint16(1000 + i), Weight: w})
				}
				l.apply(b, dataplane.State{Services: []dataplane.Service{svc}})
				// Every case starts from an empty table (a fuller one
				// costs more per insert, which is not the scheduler's),
				// its reals' counts given back.
				l.expireAll(b)
				pkt := fromClient(vipDR, 80, layers.IPProtocolTCP).bytes(b)
				lb, base := make([]uint32, 0, b.N), make([]uint32, 0, b.N)
				var failed error
				l.w.Do(func() {
					pinLastCPU()
					for i := 0; i < b.N && failed == nil; i++ {
						flow++
						setFlow(pkt, flow)
						v, d, err := runOnce(l.set.Program, pkt, l.f0)
						if err != nil || v != xdpTX {
							// Not b.Fatal: this runs on the lab's thread.
							failed = fmt.Errorf("flow %d: verdict %d, %v", flow, v, err)
							break
						}
						lb = append(lb, uint32(d))
						if _, d, err = runOnce(pass.XdpPass, pkt, l.f0); err != nil {
							failed = err
							break
						}
						base = append(base, uint32(d))
					}
				})
				if failed != nil {
					b.Fatal(failed)
				}
				m, mb := median(lb), median(base)
				b.ReportMetric(m, "ns/pkt")
				b.ReportMetric(m/mb, "x-trivial")
				b.ReportMetric(m-mb, "above-trivial-ns")
			})
		}
	}
}
