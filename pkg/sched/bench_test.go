package sched

import (
	"fmt"
	"net/netip"
	"testing"
)

// bigPool is 1000 reals in 10.0.x.y with weights 1..10.
func bigPool() []Dest {
	ds := make([]Dest, 1000)
	for i := range ds {
		ds[i] = Dest{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 8080, Weight: 1 + i%10, Active: i % 7, Inactive: i % 13}
	}
	return ds
}

func BenchmarkRRSequence1000(b *testing.B) {
	ds := bigPool()
	for b.Loop() {
		RRSequence(ds)
	}
}

func BenchmarkWRRSequence1000(b *testing.B) {
	ds := bigPool()
	for b.Loop() {
		WRRSequence(ds)
	}
	b.ReportMetric(float64(WRRSequenceLen(ds)), "entries")
}

func BenchmarkBuildSHTable1000(b *testing.B) {
	ds := bigPool()
	for b.Loop() {
		BuildSHTable(ds)
	}
}

func BenchmarkBuildDHTable1000(b *testing.B) {
	ds := bigPool()
	for b.Loop() {
		BuildDHTable(ds)
	}
}

func BenchmarkBuildMHTable1000(b *testing.B) {
	for _, index := range []int{12, 16} {
		p, _ := MHParamsForIndex(index)
		b.Run(fmt.Sprintf("size=%d", p.Size), func(b *testing.B) {
			ds := bigPool()
			for b.Loop() {
				if _, err := BuildMHTable(ds, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLookupMH(b *testing.B) {
	ds := bigPool()
	tab, _ := BuildMHTable(ds, DefaultMH)
	c := netip.MustParseAddr("198.51.100.7")
	for b.Loop() {
		LookupMH(tab, ds, DefaultMH, c, 0, true)
	}
}

func BenchmarkPickWLC1000(b *testing.B) {
	ds := bigPool()
	for b.Loop() {
		PickWLC(ds)
	}
}
