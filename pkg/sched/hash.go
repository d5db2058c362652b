package sched

import (
	"encoding/binary"
	"net/netip"
)

// Table sizes of the hashing schedulers with the kernel's default
// CONFIG_IP_VS_SH_TAB_BITS and CONFIG_IP_VS_DH_TAB_BITS (8).
const (
	SHTabBits = 8
	SHTabSize = 1 << SHTabBits // IP_VS_SH_TAB_SIZE
	DHTabBits = 8
	DHTabSize = 1 << DHTabBits // IP_VS_DH_TAB_SIZE
)

// GoldenRatio32 is GOLDEN_RATIO_32 of include/linux/hash.h.
const GoldenRatio32 = 0x61C88647

// Hash32 is the kernel's generic hash_32(val, bits): multiply by
// GOLDEN_RATIO_32 modulo 2^32 and keep the top bits.
func Hash32(val uint32, bits uint) uint32 {
	return (val * GoldenRatio32) >> (32 - bits)
}

// FoldAddr is the addr_fold of ip_vs_sh_hashkey, ip_vs_dh_hashkey and
// ip_vs_mh_hashkey, already converted with ntohl: an IPv4 address as a
// big-endian uint32; an IPv6 address as the XOR of its four big-endian
// 32-bit words (XOR commutes with the byte swap, so folding then ntohl, as
// the kernel does, is the same).
func FoldAddr(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	return binary.BigEndian.Uint32(b[0:4]) ^ binary.BigEndian.Uint32(b[4:8]) ^
		binary.BigEndian.Uint32(b[8:12]) ^ binary.BigEndian.Uint32(b[12:16])
}

// HashSH is ip_vs_sh_hashkey: the bucket of the source table for a client
// address, its source port (pass 0 unless the service has sh-port) and a
// probe offset (0 for the first lookup):
//
//	(offset + hash_32(port + fold(addr), 8)) & 255
//
// with all arithmetic in uint32.
func HashSH(addr netip.Addr, port uint16, offset uint32) uint32 {
	return (offset + Hash32(uint32(port)+FoldAddr(addr), SHTabBits)) & (SHTabSize - 1)
}

// HashDH is ip_vs_dh_hashkey: hash_32(fold(daddr), 8).
func HashDH(addr netip.Addr) uint32 {
	return Hash32(FoldAddr(addr), DHTabBits)
}

// BuildSHTable is ip_vs_sh_reassign: walk the list cyclically, giving each
// dest as many consecutive buckets as its current weight before moving to
// the next, until all 256 buckets are filled. A quiesced dest (weight 0)
// still takes one bucket, where lookups find it unusable. An empty pool
// leaves every bucket -1.
func BuildSHTable(dests []Dest) []int {
	t := make([]int, SHTabSize)
	if len(dests) == 0 {
		for i := range t {
			t[i] = -1
		}
		return t
	}
	p, count := 0, 0
	for i := range t {
		t[i] = p
		count++
		if count >= dests[p].Weight {
			p = (p + 1) % len(dests)
			count = 0
		}
	}
	return t
}

// LookupSH is ip_vs_sh_get and, with fallback (sh-fallback),
// ip_vs_sh_get_fallback. port is the client's source port, used only with
// sh-port (pass 0 otherwise). Without fallback an unusable bucket (weight 0
// or overloaded) means no dest. With fallback the probes are
// HashSH(addr, port, (ihash+i) % 256) for i = 0..255, ihash being the first
// bucket, stopping at the first usable dest.
func LookupSH(table []int, dests []Dest, addr netip.Addr, port uint16, fallback bool) int {
	ihash := HashSH(addr, port, 0)
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
	for off := uint32(0); off < SHTabSize; off++ {
		roff := (off + ihash) % SHTabSize
		d = table[HashSH(addr, port, roff)]
		if d < 0 {
			return -1
		}
		if dests[d].usable() {
			return d
		}
	}
	return -1
}

// BuildDHTable is ip_vs_dh_reassign: one bucket per dest in list order,
// cyclically. Unlike sh, dh ignores weights when filling the table (a
// weight of 0 only makes lookups fail).
func BuildDHTable(dests []Dest) []int {
	t := make([]int, DHTabSize)
	for i := range t {
		if len(dests) == 0 {
			t[i] = -1
		} else {
			t[i] = i % len(dests)
		}
	}
	return t
}

// LookupDH is ip_vs_dh_get plus the availability test of
// ip_vs_dh_schedule, keyed by the packet's destination address. There is no
// fallback.
func LookupDH(table []int, dests []Dest, daddr netip.Addr) int {
	d := table[HashDH(daddr)]
	if d < 0 || !dests[d].usable() {
		return -1
	}
	return d
}
