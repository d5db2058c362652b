package xdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
)

// Katran beside xlbd: with KATRAN_SRC naming a checkout of
// facebookincubator/katran, the per-packet benchmarks build its
// balancer.bpf.c the way its own Makefile-bpf does (clang -O2 for BPF, no
// feature defines), configure it as Katran's user space would for one VIP
// and three reals (a Maglev ring of 65537 slots, a per-CPU LRU for every
// CPU of LruSize/CPUs entries) and run it in the same loop. Nothing of
// Katran's source is copied here: only the layout of the maps it reads.

const (
	katranRingSize   = 65537   // RING_SIZE
	katranLRUSize    = 8000000 // KatranConfig's default LruSize
	katranMaxRealIdx = 4096
)

// katran is a loaded and configured Katran balancer.
type katran struct {
	coll *ebpf.Collection
	prog *ebpf.Program
}

func (k *katran) Close() {
	if k != nil {
		k.coll.Close()
	}
}

// katranConnRateKey is the stats entry where Katran counts new connections
// per second (MAX_VIPS + NEW_CONN_RATE_CNTR).
const katranConnRateKey = 512 + 2

// newRateWindow starts Katran's new-connection count over. Past
// MAX_CONN_RATE (125,000) new connections in a second on one CPU, Katran
// takes itself to be under a SYN flood and stops adding flows to its LRU,
// which makes its SYN about 2.5 times cheaper; the loop sends new flows
// faster than that, so without this Katran's new-flow figure would be its
// flood mode's whenever cases ran back to back within a second.
func (k *katran) newRateWindow() error {
	if k == nil {
		return nil
	}
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	// struct lb_stats {v1, v2} per CPU, all zero.
	return k.coll.Maps["stats"].Put(uint32(katranConnRateKey), make([][2]uint64, n))
}

// katranSrc is the Katran checkout to build, or "" with the reason the
// Katran columns are empty.
func katranSrc() (string, string) {
	dir := os.Getenv("KATRAN_SRC")
	if dir == "" {
		return "", "set KATRAN_SRC to a checkout of github.com/facebookincubator/katran (`make bench KATRAN_SRC=DIR`) for Katran's columns"
	}
	if _, err := os.Stat(filepath.Join(dir, "katran/lib/bpf/balancer.bpf.c")); err != nil {
		return "", fmt.Sprintf("KATRAN_SRC=%s has no katran/lib/bpf/balancer.bpf.c", dir)
	}
	return dir, ""
}

// buildKatran compiles balancer.bpf.c into dir.
func buildKatran(src, dir string) (string, error) {
	// glibc's headers, which balancer.bpf.c includes for memcpy, pick
	// their stubs by the target's word size; BPF has no 32-bit stubs file
	// and needs none.
	stubs := filepath.Join(dir, "include", "gnu")
	if err := os.MkdirAll(stubs, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stubs, "stubs-32.h"), nil, 0o644); err != nil {
		return "", err
	}
	obj := filepath.Join(dir, "balancer.bpf.o")
	cmd := exec.Command("clang", "-O2", "-g", "-target", "bpf", "-D__KERNEL__",
		"-Wno-unused-value", "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types",
		"-I", src, "-I", filepath.Join(src, "katran/lib/linux_includes"),
		"-I", "/usr/include/x86_64-linux-gnu", "-I", filepath.Join(dir, "include"),
		"-c", filepath.Join(src, "katran/lib/bpf/balancer.bpf.c"), "-o", obj)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building Katran: %v\n%s", err, out)
	}
	return obj, nil
}

// loadKatran builds, loads and configures Katran for vip:port/TCP with
// reals, sending to gwMAC.
func loadKatran(tb testing.TB, vip netip.Addr, port uint16, reals []netip.Addr, gwMAC net.HardwareAddr) (*katran, error) {
	src, why := katranSrc()
	if src == "" {
		return nil, fmt.Errorf("%s", why)
	}
	obj, err := buildKatran(src, tb.TempDir())
	if err != nil {
		return nil, err
	}
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading Katran: %w", err)
	}
	k := &katran{coll: coll, prog: coll.Programs["balancer_ingress"]}
	if k.prog == nil {
		coll.Close()
		return nil, fmt.Errorf("Katran's object has no balancer_ingress")
	}
	if err := k.configure(spec, vip, port, reals, gwMAC); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

func (k *katran) configure(spec *ebpf.CollectionSpec, vip netip.Addr, port uint16, reals []netip.Addr, gwMAC net.HardwareAddr) error {
	m := k.coll.Maps
	// struct vip_definition { union { __be32 vip; __be32 vipv6[4]; }; __u16 port; __u8 proto; }
	var vipKey [20]byte
	copy(vipKey[:4], vip.AsSlice())
	binary.BigEndian.PutUint16(vipKey[16:], port)
	vipKey[18] = 6
	// struct vip_meta { __u32 flags; __u32 vip_num; }
	if err := m["vip_map"].Put(vipKey[:], make([]byte, 8)); err != nil {
		return fmt.Errorf("vip_map: %w", err)
	}
	// struct real_definition { union { __be32 dst; __be32 dstv6[4]; }; __u8 flags; }
	for i, r := range reals {
		var def [20]byte
		copy(def[:4], r.AsSlice())
		if err := m["reals"].Put(uint32(i+1), def[:]); err != nil {
			return fmt.Errorf("reals: %w", err)
		}
	}
	ring := maglevRing(len(reals), katranRingSize)
	keys := make([]uint32, len(ring))
	vals := make([]uint32, len(ring))
	for i, r := range ring {
		keys[i], vals[i] = uint32(i), uint32(r+1) // vip_num 0's ring
	}
	if _, err := m["ch_rings"].BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("ch_rings: %w", err)
	}
	// struct ctl_value { union { __u64 value; __u32 ifindex; __u8 mac[6]; }; } at MAC_ADDR_POS 0.
	var mac [8]byte
	copy(mac[:], gwMAC)
	if err := m["ctl_array"].Put(uint32(0), mac[:]); err != nil {
		return fmt.Errorf("ctl_array: %w", err)
	}
	// A per-CPU LRU for every CPU, as KatranLb::initLrus makes them.
	inner := spec.Maps["lru_mapping"].InnerMap.Copy()
	inner.MaxEntries = uint32(katranLRUSize / runtime.NumCPU())
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		lru, err := ebpf.NewMap(inner)
		if err != nil {
			return fmt.Errorf("per-CPU LRU: %w", err)
		}
		err = m["lru_mapping"].Put(uint32(cpu), lru)
		lru.Close() // the outer map holds it
		if err != nil {
			return fmt.Errorf("lru_mapping: %w", err)
		}
	}
	return nil
}

// maglevRing is Maglev's lookup table of size m (a prime) over n equally
// weighted backends, as Katran's user space fills ch_rings.
func maglevRing(n, m int) []int {
	ring := make([]int, m)
	for i := range ring {
		ring[i] = -1
	}
	next := make([]int, n)
	offset, skip := make([]int, n), make([]int, n)
	for i := range n {
		h := uint64(i)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		offset[i] = int(h % uint64(m))
		skip[i] = int((h>>32)%uint64(m-1)) + 1
	}
	for filled := 0; filled < m; {
		for i := range n {
			for {
				c := (offset[i] + next[i]*skip[i]) % m
				next[i]++
				if ring[c] < 0 {
					ring[c] = i
					filled++
					break
				}
			}
			if filled == m {
				break
			}
		}
	}
	return ring
}
