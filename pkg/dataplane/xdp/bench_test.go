package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/metrics"
)

// BenchmarkPerPacket measures the kernel-reported cost of one packet through
// the balancer (BPF_PROG_TEST_RUN, repeat=1, in a loop), interleaved with
// the trivial XDP_PASS program so that both see the same machine state. The
// x-trivial metric is the ratio of the two: the figure to compare across
// machines (Katran, measured the same way: established 2.7x, new flow 8x,
// non-VIP 1.6x).
func BenchmarkPerPacket(b *testing.B) {
	l := newLabSized(b, 1<<20)
	l.apply(b, goldenState())
	var pass bpf.PassObjects
	if err := bpf.LoadPassObjects(&pass, nil); err != nil {
		b.Fatal(err)
	}
	defer pass.Close()

	tun := fromClient(vipTUN, 80, layers.IPProtocolTCP).bytes(b)
	dr := fromClient(vipDR, 80, layers.IPProtocolTCP).bytes(b)
	nat := fromClient(vipNAT, 80, layers.IPProtocolTCP).bytes(b)
	other := fromClient(addrClient.Next(), 80, layers.IPProtocolTCP).bytes(b)
	const sportOff = 14 + 20

	cases := []struct {
		name string
		pkt  []byte
		new  bool // a new 5-tuple each packet
	}{
		{"established/tun", tun, false},
		{"established/dr", dr, false},
		{"established/nat", nat, false},
		{"new-flow/tun", tun, true},
		{"new-flow/dr", dr, true},
		{"new-flow/nat", nat, true},
		{"non-vip", other, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			pkt := append([]byte(nil), c.pkt...)
			var lb, base time.Duration
			var flow uint32
			l.w.Do(func() {
				for i := 0; i < b.N; i++ {
					if c.new {
						// Source address and port together make 2^32 distinct
						// flows; the IP checksum is fixed for the address.
						flow++
						binary.BigEndian.PutUint16(pkt[sportOff:], uint16(flow))
						pkt[14+12+2] = byte(flow >> 16)
						fixIPCsum(pkt[14:34])
					}
					_, d, err := runOnce(l.set.Program, pkt, l.f0)
					if err != nil {
						b.Fatal(err)
					}
					lb += d
					_, d, err = runOnce(pass.XdpPass, pkt, l.f0)
					if err != nil {
						b.Fatal(err)
					}
					base += d
				}
			})
			b.ReportMetric(float64(lb.Nanoseconds())/float64(b.N), "ns/pkt")
			b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "trivial-ns/pkt")
			b.ReportMetric(float64(lb)/float64(base), "x-trivial")
		})
	}
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
	l := newLabSized(b, 1<<20)
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
				// Every case starts from an empty table: a fuller one
				// costs more per insert, which is not the scheduler's.
				if err := l.set.Conns.Flush(); err != nil {
					b.Fatal(err)
				}
				pkt := fromClient(vipDR, 80, layers.IPProtocolTCP).bytes(b)
				var lb, base time.Duration
				var failed error
				l.w.Do(func() {
					for i := 0; i < b.N && failed == nil; i++ {
						flow++
						binary.BigEndian.PutUint16(pkt[14+20:], uint16(flow))
						pkt[14+12+2] = byte(flow >> 16)
						pkt[14+12+1] = byte(flow >> 24)
						fixIPCsum(pkt[14:34])
						v, d, err := runOnce(l.set.Program, pkt, l.f0)
						if err != nil || v != xdpTX {
							// Not b.Fatal: this runs on the lab's thread.
							failed = fmt.Errorf("flow %d: verdict %d, %v", flow, v, err)
							break
						}
						lb += d
						if _, d, err = runOnce(pass.XdpPass, pkt, l.f0); err != nil {
							failed = err
							break
						}
						base += d
					}
				})
				if failed != nil {
					b.Fatal(failed)
				}
				b.ReportMetric(float64(lb.Nanoseconds())/float64(b.N), "ns/pkt")
				b.ReportMetric(float64(lb)/float64(base), "x-trivial")
			})
		}
	}
}
