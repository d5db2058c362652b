package sched

import (
	"encoding/binary"
	"math/bits"
)

// HSipKey is hsiphash_key_t on a 64-bit kernel: two unsigned longs.
type HSipKey [2]uint64

// hsipHash is the kernel's hsiphash() on a 64-bit little-endian machine
// (x86_64, arm64), where lib/siphash.c makes "HalfSipHash-1-3" really
// SipHash-1-3 (one compression round per 8-byte word, three finalisation
// rounds) and truncates the 64-bit result to 32 bits. 32-bit kernels run a
// genuine HalfSipHash and give different values; they are not modelled.
func hsipHash(data []byte, k HSipKey) uint32 {
	v0 := uint64(0x736f6d6570736575) ^ k[0]
	v1 := uint64(0x646f72616e646f6d) ^ k[1]
	v2 := uint64(0x6c7967656e657261) ^ k[0]
	v3 := uint64(0x7465646279746573) ^ k[1]
	b := uint64(len(data)) << 56
	for len(data) >= 8 {
		m := binary.LittleEndian.Uint64(data)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		data = data[8:]
	}
	for i, c := range data {
		b |= uint64(c) << (8 * i)
	}
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return uint32(v0 ^ v1 ^ v2 ^ v3)
}

// sipRound is SIPHASH_PERMUTATION.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// HSipHash32 is hsiphash(&v, sizeof(v), key) for a host-order u32 on a
// little-endian 64-bit kernel, the call ip_vs_mh_hashkey makes. Spelled out
// for the BPF side: with the four SipHash constants c0..c3,
//
//	v0 = c0^k0, v1 = c1^k1, v2 = c2^k0, v3 = c3^k1
//	b  = 4<<56 | v
//	v3 ^= b; ROUND; v0 ^= b; v2 ^= 0xff; ROUND; ROUND; ROUND
//	return uint32(v0^v1^v2^v3)
func HSipHash32(v uint32, k HSipKey) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return hsipHash(b[:], k)
}
