package sched

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHashSHValues(t *testing.T) {
	// Expected values computed independently from the kernel formula
	// ((port + ntohl(fold)) * 0x61C88647 mod 2^32) >> 24.
	tests := []struct {
		addr string
		port uint16
		want uint32
	}{
		{"0.0.0.1", 0, 97},
		{"10.0.0.1", 0, 39},
		{"10.0.0.1", 80, 182},
		{"192.168.1.200", 12345, 234},
		{"2001:db8::1", 0, 63},
		{"::1", 0, 97}, // folds to 1, like 0.0.0.1
	}
	for _, tt := range tests {
		if got := HashSH(ip(tt.addr), tt.port, 0); got != tt.want {
			t.Errorf("HashSH(%s, %d) = %d, want %d", tt.addr, tt.port, got, tt.want)
		}
	}
	if got := HashSH(ip("10.0.0.1"), 0, 250); got != (250+39)&255 {
		t.Errorf("offset wraps: got %d", got)
	}
	if got, want := HashDH(ip("10.0.0.1")), uint32(39); got != want {
		t.Errorf("HashDH(10.0.0.1) = %d, want %d", got, want)
	}
}

func TestFoldAddr(t *testing.T) {
	a := ip("2001:db8:1:2:3:4:5:6")
	want := uint32(0x20010db8 ^ 0x00010002 ^ 0x00030004 ^ 0x00050006)
	if got := FoldAddr(a); got != want {
		t.Errorf("FoldAddr(%s) = %#x, want %#x", a, got, want)
	}
	if got := FoldAddr(ip("192.0.2.1")); got != 0xc0000201 {
		t.Errorf("FoldAddr(192.0.2.1) = %#x", got)
	}
}

func TestBuildSHTable(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		head    []int // first buckets
		counts  []int
	}{
		{"equal", []int{1, 1, 1}, []int{0, 1, 2, 0, 1, 2}, []int{86, 85, 85}},
		{"weighted 1:2:1", []int{1, 2, 1}, []int{0, 1, 1, 2, 0, 1, 1, 2}, []int{64, 128, 64}},
		// A quiesced dest still takes one bucket per round.
		{"quiesced", []int{2, 0, 1}, []int{0, 0, 1, 2, 0, 0, 1, 2}, []int{128, 64, 64}},
		{"one", []int{5}, []int{0, 0, 0, 0, 0, 0}, []int{256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := BuildSHTable(reals(tt.weights...))
			if len(tab) != SHTabSize {
				t.Fatalf("table size %d", len(tab))
			}
			if diff := cmp.Diff(tt.head, tab[:len(tt.head)]); diff != "" {
				t.Errorf("first buckets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.counts, counts(tab, len(tt.weights))); diff != "" {
				t.Errorf("buckets per dest (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(-1, BuildSHTable(nil)[17]); diff != "" {
		t.Errorf("empty pool: %s", diff)
	}
}

func TestSHStickyAndSpread(t *testing.T) {
	ds := reals(1, 2, 1)
	tab := BuildSHTable(ds)
	c := client(7)
	first := LookupSH(tab, ds, c, 0, false)
	for range 5 {
		if got := LookupSH(tab, ds, c, 0, false); got != first {
			t.Fatalf("client %s moved from %d to %d", c, first, got)
		}
	}
	// 10000 clients spread roughly 1:2:1.
	got := make([]int, 3)
	for i := range 10000 {
		got[LookupSH(tab, ds, client(i), 0, false)]++
	}
	want := []float64{0.25, 0.5, 0.25}
	for i := range got {
		if share := float64(got[i]) / 10000; share < want[i]-0.05 || share > want[i]+0.05 {
			t.Errorf("dest %d got share %.3f, want about %.2f (counts %v)", i, share, want[i], got)
		}
	}
}

func TestSHPort(t *testing.T) {
	ds := reals(1, 1, 1, 1)
	tab := BuildSHTable(ds)
	c := ip("198.51.100.7")
	seen := map[int]bool{}
	for port := uint16(1000); port < 1064; port++ {
		seen[LookupSH(tab, ds, c, port, false)] = true
	}
	if len(seen) < 2 {
		t.Errorf("sh-port: 64 source ports of one client all went to %v", seen)
	}
}

func TestSHFallback(t *testing.T) {
	ds := reals(1, 1, 1)
	ds[1].Weight = 0 // quiesced: still in one bucket of three, unusable
	tab := BuildSHTable(ds)
	var victim netip.Addr
	for i := range 1000 {
		if tab[HashSH(client(i), 0, 0)] == 1 {
			victim = client(i)
			break
		}
	}
	if !victim.IsValid() {
		t.Fatal("no client hashes to the quiesced real")
	}
	if got := LookupSH(tab, ds, victim, 0, false); got != -1 {
		t.Errorf("without sh-fallback: got %d, want -1", got)
	}
	got := LookupSH(tab, ds, victim, 0, true)
	if got != 0 && got != 2 {
		t.Errorf("with sh-fallback: got %d, want a usable real", got)
	}
	// The kernel's probe order: buckets HashSH(addr, 0, (ihash+i)%256).
	ihash := HashSH(victim, 0, 0)
	want := -1
	for i := uint32(0); i < SHTabSize; i++ {
		if d := tab[HashSH(victim, 0, (ihash+i)%SHTabSize)]; ds[d].usable() {
			want = d
			break
		}
	}
	if got != want {
		t.Errorf("fallback chose %d, kernel probe order gives %d", got, want)
	}
	// Overloaded reals are skipped the same way; nothing usable: none.
	for i := range ds {
		ds[i].Overloaded = true
	}
	if got := LookupSH(tab, ds, victim, 0, true); got != -1 {
		t.Errorf("all unusable: got %d", got)
	}
}

func TestDH(t *testing.T) {
	ds := reals(5, 1, 1)
	tab := BuildDHTable(ds)
	// Weights do not shape the dh table: one bucket per real in turn.
	if diff := cmp.Diff([]int{0, 1, 2, 0, 1, 2}, tab[:6]); diff != "" {
		t.Errorf("dh table (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{86, 85, 85}, counts(tab, 3)); diff != "" {
		t.Errorf("dh buckets per real (-want +got):\n%s", diff)
	}
	// Keyed by the packet's destination, whatever the client.
	dst := ip("203.0.113.50")
	want := LookupDH(tab, ds, dst)
	if want != tab[HashDH(dst)] {
		t.Fatalf("LookupDH = %d, bucket holds %d", want, tab[HashDH(dst)])
	}
	ds[want].Weight = 0
	if got := LookupDH(tab, ds, dst); got != -1 {
		t.Errorf("quiesced real: got %d, want -1 (dh has no fallback)", got)
	}
	if got := LookupDH(BuildDHTable(nil), nil, dst); got != -1 {
		t.Errorf("empty: got %d", got)
	}
}
