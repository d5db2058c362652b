package sched

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// mhPrimes is primes[] of ip_vs_mh.c, the possible lookup table sizes.
var mhPrimes = [...]int{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071}

// MHParams are the compile-time and per-service constants of ip_vs_mh.c.
type MHParams struct {
	// Size is IP_VS_MH_TAB_SIZE, a prime.
	Size int
	// Bits is IP_VS_MH_TAB_BITS, the number of significant bits kept of
	// weight/gcd (larger weights are shifted right so that the table does
	// not have to be huge).
	Bits int
	// Key1 hashes the table offset of a dest and every lookup; Key2 the
	// skip of a dest. IPVS does not draw them at random:
	// generate_hash_secret sets the fixed values of DefaultMH.
	Key1, Key2 HSipKey
}

// MHParamsForIndex gives the parameters for CONFIG_IP_VS_MH_TAB_INDEX
// (8..17): size primes[index-8], bits index/2, the kernel's keys.
func MHParamsForIndex(index int) (MHParams, error) {
	if index < 8 || index > 17 {
		return MHParams{}, fmt.Errorf("mh table index %d out of range 8..17", index)
	}
	return MHParams{
		Size: mhPrimes[index-8],
		Bits: index / 2,
		Key1: HSipKey{2654435761, 2654435761},
		Key2: HSipKey{2654446892, 2654446892},
	}, nil
}

// DefaultMH is the kernel default, CONFIG_IP_VS_MH_TAB_INDEX=12: a table of
// 4093 entries and 6 weight bits.
var DefaultMH = MHParams{
	Size: 4093,
	Bits: 6,
	Key1: HSipKey{2654435761, 2654435761},
	Key2: HSipKey{2654446892, 2654446892},
}

// HashMH is ip_vs_mh_hashkey before the modulo: the 64-bit kernel's
// hsiphash of the u32 offset + port + fold(addr) (wrapping), where port is
// in host order and offset is 0 except for fallback probes. For a lookup the
// address is the client's and port its source port with mh-port, else 0;
// for building the table it is the real server's address and port.
func HashMH(addr netip.Addr, port uint16, key HSipKey, offset uint32) uint32 {
	return HSipHash32(offset+uint32(port)+FoldAddr(addr), key)
}

// BuildMHTable is ip_vs_mh_reassign: the Maglev lookup table, p.Size
// entries of dest indices.
//
// Weights are last weights (Dest.LastWeight), so a quiesced real keeps its
// entries and lookups skip it (or fail over with mh-fallback) rather than
// the whole table moving. ip_vs_mh_gcd_weight and ip_vs_mh_shift_weight
// reduce them: g is the gcd of the positive last weights, shift is
// fls(max/g) - p.Bits (at least 0), and a dest takes turns =
// (lastweight/g) >> shift entries per round, at least 1 if its last weight
// is non-zero; a dest added with weight 0 takes none.
//
// ip_vs_mh_permutate gives dest d the preference list
// offset_d + j*skip_d (mod Size) with
//
//	offset_d = HashMH(d.Addr, d.Port, Key1, 0) % Size
//	skip_d   = HashMH(d.Addr, d.Port, Key2, 0) % (Size-1) + 1
//
// and ip_vs_mh_populate goes round the list, each dest claiming its next
// free preferred slot turns times in a row, until the table is full. With
// no positive last weight the table is empty (all -1). IPVS refuses more
// dests than slots (-EINVAL), and so does this.
func BuildMHTable(dests []Dest, p MHParams) ([]int, error) {
	m := p.Size
	if len(dests) > m {
		return nil, fmt.Errorf("mh: %d dests exceed the %d-entry table", len(dests), m)
	}
	table := make([]int, m)
	for i := range table {
		table[i] = -1
	}
	g, maxW := 0, 0
	for _, d := range dests {
		if w := d.lastWeight(); w > 0 {
			g = gcd(w, g)
		}
		maxW = max(maxW, d.lastWeight())
	}
	if g < 1 {
		return table, nil
	}
	shift := max(bits.Len(uint(maxW/g))-p.Bits, 0)

	type setup struct{ perm, skip, turns int }
	ds := make([]setup, len(dests))
	for i, d := range dests {
		off := int(HashMH(d.Addr, d.Port, p.Key1, 0) % uint32(m))
		skip := int(HashMH(d.Addr, d.Port, p.Key2, 0)%uint32(m-1)) + 1
		lw := d.lastWeight()
		turns := (lw / g) >> shift
		if turns == 0 && lw != 0 {
			turns = 1
		}
		ds[i] = setup{perm: off, skip: skip, turns: turns}
	}

	taken := make([]bool, m)
	n := 0
	for {
		for i := range ds {
			s := &ds[i]
			for t := 0; t < s.turns; t++ {
				for taken[s.perm] {
					s.perm += s.skip
					if s.perm >= m {
						s.perm -= m
					}
				}
				taken[s.perm] = true
				table[s.perm] = i
				if n++; n == m {
					return table, nil
				}
			}
		}
	}
}

// LookupMH is ip_vs_mh_get and, with fallback (mh-fallback),
// ip_vs_mh_get_fallback. addr is the client address; port its source port
// with mh-port, else 0. The first slot is HashMH(addr, port, Key1, 0) %
// Size; if its dest is unusable, fallback probes the slots
// HashMH(addr, port, Key1, (ihash+i) % Size) % Size for i = 0..Size-1.
func LookupMH(table []int, dests []Dest, p MHParams, addr netip.Addr, port uint16, fallback bool) int {
	m := uint32(p.Size)
	ihash := HashMH(addr, port, p.Key1, 0) % m
	d := table[ihash]
	if d < 0 {
		return -1
	}
	if dests[d].usable() {
		return d
	}
	if !fallback {
		return -1
	}
	for off := uint32(0); off < m; off++ {
		roff := (off + ihash) % m
		d = table[HashMH(addr, port, p.Key1, roff)%m]
		if d < 0 {
			return -1
		}
		if dests[d].usable() {
			return d
		}
	}
	return -1
}
