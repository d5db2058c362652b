package maps

import (
	"testing"

	"github.com/xlbd/xlbd/internal/testenv"
)

// BenchmarkMapMemory is the kernel memory of the balancer's maps with the
// default sizes, as the kernel accounts it (memlock): a sub-benchmark per
// table Usage reports, "other" for the maps it does not (scratch and
// statistics), and "total", which issue 15 wants at most 128 MiB. Nothing
// is timed: the figures are what `make bench` records.
//
//	go test ./pkg/maps -run '^$' -bench MapMemory -benchtime 1x
func BenchmarkMapMemory(b *testing.B) {
	testenv.RequireRoot(b)
	s, err := Load("", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	total := s.Memory()
	if total == 0 {
		testenv.Skip(b, "the kernel reports no memlock for BPF maps")
	}
	u, err := s.Usage(nil)
	if err != nil {
		b.Fatal(err)
	}
	report := func(name string, mem uint64, entries int) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(mem)/(1<<20), "map-MiB")
			if entries > 0 {
				b.ReportMetric(float64(entries), "entries")
			}
		})
	}
	var listed uint64
	for _, t := range u {
		report(t.Name, t.Memory, t.Size)
		listed += t.Memory
	}
	report("other", total-listed, 0)
	report("total", total, 0)
}
