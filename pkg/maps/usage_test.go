package maps

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	xbpf "github.com/xlbd/xlbd/bpf"
	"github.com/xlbd/xlbd/internal/testenv"
)

func load(t *testing.T, pinDir string, o Options) *Set {
	t.Helper()
	s, err := Load(pinDir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sizes(s *Set) map[string]uint32 {
	m := &s.objs.XlbMaps
	return map[string]uint32{
		xbpf.XlbMapConns: m.Conns.MaxEntries(), xbpf.XlbMapNat: m.Nat.MaxEntries(),
		xbpf.XlbMapPersist: m.Persist.MaxEntries(), xbpf.XlbMapLblcTable: m.LblcTable.MaxEntries(),
		xbpf.XlbMapFrags: m.Frags.MaxEntries(), xbpf.XlbMapPmtu: m.Pmtu.MaxEntries(),
	}
}

// The defaults suit a small VM: every map of the balancer together takes
// at most 128 MiB of kernel memory on this machine.
func TestDefaultSizesAndMemory(t *testing.T) {
	testenv.RequireRoot(t)
	s := load(t, "", Options{})
	want := map[string]uint32{
		xbpf.XlbMapConns: DefaultConnTableSize, xbpf.XlbMapNat: DefaultConnTableSize,
		xbpf.XlbMapPersist: DefaultPersistTableSize, xbpf.XlbMapLblcTable: DefaultLBLCTableSize,
		xbpf.XlbMapFrags: DefaultFragTableSize, xbpf.XlbMapPmtu: DefaultPMTUTableSize,
	}
	got := sizes(s)
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d entries, want %d", name, got[name], n)
		}
	}
	// The object's own sizes are the defaults too, so that it reads the
	// same without pkg/maps.
	spec, err := xbpf.LoadXlb()
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range want {
		if spec.Maps[name].MaxEntries != n {
			t.Errorf("bpf/xlb_maps.h sizes %s with %d entries, pkg/maps's default is %d", name, spec.Maps[name].MaxEntries, n)
		}
	}
	mem := s.Memory()
	if mem == 0 {
		testenv.Skip(t, "the kernel reports no memlock for BPF maps")
	}
	t.Logf("maps at defaults: %.1f MiB", float64(mem)/(1<<20))
	if mem > 128<<20 {
		t.Errorf("maps at defaults take %.1f MiB, over 128 MiB", float64(mem)/(1<<20))
	}
	u, err := s.Usage(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tu := range u {
		t.Logf("%-12s %8d entries, %6d used, %6.1f MiB", tu.Name, tu.Size, tu.Used, float64(tu.Memory)/(1<<20))
		if tu.Used != 0 || tu.Size <= 0 || tu.Memory == 0 {
			t.Errorf("fresh %s: %+v", tu.Name, tu)
		}
	}
}

func TestSizesSet(t *testing.T) {
	testenv.RequireRoot(t)
	o := Options{ConnTableSize: 1024, NATTableSize: 512, PersistTableSize: 256, LBLCTableSize: 128,
		FragTableSize: 64, PMTUTableSize: 100}
	s := load(t, "", o)
	want := map[string]uint32{xbpf.XlbMapConns: 1024, xbpf.XlbMapNat: 512, xbpf.XlbMapPersist: 256,
		xbpf.XlbMapLblcTable: 128, xbpf.XlbMapFrags: 64, xbpf.XlbMapPmtu: 100}
	got := sizes(s)
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d entries, want %d", name, got[name], n)
		}
	}
	if s.GC.connMax != 1024 {
		t.Errorf("gc sheds from a table of %d, want 1024", s.GC.connMax)
	}
	// The NAT table follows the connection table unless sized itself.
	if n := sizes(load(t, "", Options{ConnTableSize: 2048}))[xbpf.XlbMapNat]; n != 2048 {
		t.Errorf("nat: %d entries, want the connection table's 2048", n)
	}
	for _, bad := range []Options{{ConnTableSize: 63}, {PMTUTableSize: MaxTableSize + 1}} {
		if _, err := Load("", bad); err == nil || !strings.Contains(err.Error(), "want 64 to") {
			t.Errorf("Load(%+v): %v, want a range error", bad, err)
		}
	}
}

// A restart adopting pinned maps keeps their sizes, whatever the defaults;
// asking for another size is an error that says why.
func TestSizesOfPinnedMaps(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	if err := EnsureBPFFS(dir); err != nil {
		testenv.Skip(t, err.Error())
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	first, err := Load(dir, Options{ConnTableSize: 1024, LBLCTableSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	first.Close() // the pins stay
	s := load(t, dir, Options{})
	got := sizes(s)
	if got[xbpf.XlbMapConns] != 1024 || got[xbpf.XlbMapNat] != 1024 || got[xbpf.XlbMapLblcTable] != 4096 ||
		got[xbpf.XlbMapPersist] != DefaultPersistTableSize {
		t.Errorf("adopted sizes %v", got)
	}
	s2 := load(t, dir, Options{ConnTableSize: 1024})
	s2.Close()
	_, err = Load(dir, Options{ConnTableSize: 2048})
	if err == nil || !strings.Contains(err.Error(), "conns table: 2048 entries asked, but the map pinned") {
		t.Errorf("resizing a pinned table: %v", err)
	}
	if err := s.Unpin(); err != nil {
		t.Error(err)
	}
}
