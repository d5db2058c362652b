package sched

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hsiphashVectors are test_vectors_hsiphash of the kernel's
// lib/siphash_kunit.c for 64-bit kernels: hsiphash of the bytes 0..i-1
// under the key 00 01 .. 0f.
var hsiphashVectors = [64]uint32{
	0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67,
	0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352,
	0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c,
	0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123,
	0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4,
	0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91,
	0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
	0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd,
	0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0,
	0x73f0bce6, 0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148,
	0xf7a644ee, 0x0f1837f2, 0x4b6694e0, 0xb7bbb3a8,
}

func TestHSipHashKernelVectors(t *testing.T) {
	key := HSipKey{0x0706050403020100, 0x0f0e0d0c0b0a0908}
	in := make([]byte, 64)
	for i := range in {
		in[i] = byte(i)
	}
	for i, want := range hsiphashVectors {
		if got := hsipHash(in[:i], key); got != want {
			t.Errorf("hsiphash of %d bytes = %#08x, want %#08x", i, got, want)
		}
	}
	// The u32 form mh uses: bytes 00 01 02 03 are the little-endian u32
	// 0x03020100.
	if got := HSipHash32(0x03020100, key); got != hsiphashVectors[4] {
		t.Errorf("HSipHash32 = %#08x, want %#08x", got, hsiphashVectors[4])
	}
}

func TestMHParams(t *testing.T) {
	p, err := MHParamsForIndex(12)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultMH, p); diff != "" {
		t.Errorf("index 12 is not the default (-default +index 12):\n%s", diff)
	}
	p8, _ := MHParamsForIndex(8)
	p17, _ := MHParamsForIndex(17)
	if p8.Size != 251 || p8.Bits != 4 || p17.Size != 131071 || p17.Bits != 8 {
		t.Errorf("index 8: %d/%d, index 17: %d/%d", p8.Size, p8.Bits, p17.Size, p17.Bits)
	}
	if _, err := MHParamsForIndex(7); err == nil {
		t.Error("index 7 accepted")
	}
}

func mhParams(t *testing.T, index int) MHParams {
	t.Helper()
	p, err := MHParamsForIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMHEqualShares(t *testing.T) {
	for _, index := range []int{8, 12} {
		p := mhParams(t, index)
		tab, err := BuildMHTable(reals(1, 1, 1), p)
		if err != nil {
			t.Fatal(err)
		}
		// Each round every dest claims one slot, so the shares differ by
		// at most one, the earlier dests taking the remainder.
		q, r := p.Size/3, p.Size%3
		want := []int{q, q, q}
		for i := range r {
			want[i]++
		}
		if diff := cmp.Diff(want, counts(tab, 3)); diff != "" {
			t.Errorf("size %d: slots per dest (-want +got):\n%s", p.Size, diff)
		}
	}
}

func TestMHWeights(t *testing.T) {
	p := mhParams(t, 8) // 251 slots
	tab, _ := BuildMHTable(reals(2, 1), p)
	// turns 2 and 1: rounds of 3; 251 = 83*3 + 2, the last round's 2 to r1.
	if diff := cmp.Diff([]int{168, 83}, counts(tab, 2)); diff != "" {
		t.Errorf("2:1 (-want +got):\n%s", diff)
	}
	// gcd reduces: 40:20 is 2:1.
	tab2, _ := BuildMHTable(reals(40, 20), p)
	if diff := cmp.Diff(tab, tab2); diff != "" {
		t.Errorf("40:20 differs from 2:1:\n%s", diff)
	}
	// Big weights are shifted to IP_VS_MH_TAB_BITS: 1000/1 has fls 10, 6
	// bits in the default table, shift 4: turns 62 and max(1>>4, 1) = 1.
	// 4093 = 64*63 + 61.
	big, _ := BuildMHTable(reals(1000, 1), DefaultMH)
	if diff := cmp.Diff([]int{64*62 + 61, 64}, counts(big, 2)); diff != "" {
		t.Errorf("1000:1 (-want +got):\n%s", diff)
	}
	// A dest added with weight 0 (last weight 0) takes no slot.
	z, _ := BuildMHTable(reals(1, 0, 1), p)
	if c := counts(z, 3); c[1] != 0 || c[0]+c[2] != p.Size {
		t.Errorf("weight-0 dest took slots: %v", c)
	}
	// Nothing usable: empty table.
	e, _ := BuildMHTable(reals(0, 0), p)
	if c := counts(e, 2); c[0]+c[1] != 0 {
		t.Errorf("all-zero table not empty: %v", c)
	}
	if _, err := BuildMHTable(make([]Dest, 252), p); err == nil {
		t.Error("252 dests accepted in a 251-slot table")
	}
}

func TestMHMinimalDisruption(t *testing.T) {
	for _, index := range []int{8, 12} {
		p := mhParams(t, index)
		ds := reals(1, 1, 1)
		before, _ := BuildMHTable(ds, p)
		after, _ := BuildMHTable(ds[:2], p) // r3 removed
		kept, moved := 0, 0
		for i := range before {
			switch {
			case before[i] == 2:
				if after[i] != 0 && after[i] != 1 {
					t.Fatalf("slot %d of the removed real went to %d", i, after[i])
				}
			case before[i] == after[i]:
				kept++
			default:
				moved++
			}
		}
		// Maglev keeps most slots of the surviving reals; a perfect
		// consistent hash would keep all.
		if frac := float64(kept) / float64(kept+moved); frac < 0.95 {
			t.Errorf("size %d: only %.2f of the surviving reals' slots kept (%d moved)", p.Size, frac, moved)
		}
		t.Logf("size %d: removing 1 of 3 reals moved %d of %d other slots", p.Size, moved, kept+moved)
	}
}

func TestMHQuiesceKeepsSlots(t *testing.T) {
	p := mhParams(t, 8)
	ds := reals(1, 1, 1)
	before, _ := BuildMHTable(ds, p)
	ds[1].LastWeight, ds[1].Weight = 1, 0
	after, _ := BuildMHTable(ds, p)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("quiescing r2 changed the table:\n%s", diff)
	}
	var n, redirected int
	for i := range 2000 {
		c := client(i)
		if after[HashMH(c, 0, p.Key1, 0)%uint32(p.Size)] != 1 {
			if got, want := LookupMH(after, ds, p, c, 0, false), after[HashMH(c, 0, p.Key1, 0)%uint32(p.Size)]; got != want {
				t.Fatalf("client %s: got %d, want its slot's %d", c, got, want)
			}
			continue
		}
		n++
		if got := LookupMH(after, ds, p, c, 0, false); got != -1 {
			t.Errorf("client %s of quiesced r2 without mh-fallback: got %d", c, got)
		}
		if got := LookupMH(after, ds, p, c, 0, true); got == 0 || got == 2 {
			redirected++
		}
	}
	if n == 0 || redirected != n {
		t.Errorf("mh-fallback redirected %d of %d clients of the quiesced real", redirected, n)
	}
}

func TestMHPort(t *testing.T) {
	ds := reals(1, 1, 1, 1)
	tab, _ := BuildMHTable(ds, DefaultMH)
	c := ip("198.51.100.7")
	seen := map[int]bool{}
	for port := uint16(1000); port < 1032; port++ {
		seen[LookupMH(tab, ds, DefaultMH, c, port, false)] = true
	}
	if len(seen) < 2 {
		t.Errorf("mh-port: 32 ports of one client all went to %v", seen)
	}
	if a, b := LookupMH(tab, ds, DefaultMH, c, 0, false), LookupMH(tab, ds, DefaultMH, c, 0, false); a != b {
		t.Errorf("lookup not stable: %d then %d", a, b)
	}
}
