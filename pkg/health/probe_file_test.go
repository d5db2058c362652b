package health

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/config"
)

func TestFileCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	type want struct {
		OK     bool
		Weight int
	}
	for _, tt := range []struct {
		name    string
		content *string // nil: no file
		weight  int
		reverse bool
		want    want
	}{
		{"weight 0, 0", ptr("0\n"), 0, false, want{true, NoWeight}},
		{"weight 0, 1", ptr("1\n"), 0, false, want{false, NoWeight}},
		{"weight 0, no file reads 0", nil, 0, false, want{true, NoWeight}},
		{"weight 0, empty reads 0", ptr(""), 0, false, want{true, NoWeight}},
		{"weight 0, junk reads 0", ptr("up\n"), 0, false, want{true, NoWeight}},
		{"weight 0 reverse, 0", ptr("0"), 0, true, want{false, NoWeight}},
		{"weight 0 reverse, 5", ptr("5"), 0, true, want{true, NoWeight}},
		{"weight 10, 3 adds 30", ptr("3"), 10, false, want{true, 130}},
		{"weight 10, -3 takes 30", ptr(" -3 trailing"), 10, false, want{true, 70}},
		{"weight 10, -20 floors at 0", ptr("-20"), 10, false, want{true, 0}},
		{"weight 10 reverse, 3 takes 30", ptr("3"), 10, true, want{true, 70}},
		{"hex", ptr("0x10"), 1, false, want{true, 116}},
		{"octal", ptr("010"), 1, false, want{true, 108}},
		{"fault", ptr("-2147483648"), 1, false, want{false, NoWeight}},
		{"fault by product", ptr("-1073741824"), 2, false, want{false, NoWeight}},
		{"just above fault", ptr("-2147483647"), 1, false, want{true, 0}},
		{"weight 1, huge caps", ptr("2147483647"), 1, false, want{true, math.MaxInt32}},
	} {
		path := filepath.Join(dir, tt.name)
		if tt.content != nil {
			if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := config.Checker{Type: config.CheckFile, FileCheck: &config.FileCheck{TrackFile: path, Weight: tt.weight, Reverse: tt.reverse}}
		r := probe(t, c, netip0(), ProbeOptions{}, time.Second)
		// The value moves a configured weight of 100.
		w := r.Weight
		if r.OK && r.Relative {
			w = int(min(max(100+int64(r.Weight), 0), math.MaxInt32))
		}
		if diff := cmp.Diff(tt.want, want{r.OK, w}); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tt.name, diff)
		}
	}
}

func TestFileCheckByNameAndOutOfRange(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := config.Checker{Type: config.CheckFile, FileCheck: &config.FileCheck{TrackFile: "rs11", Weight: 0}}
	p, err := NewProber(c, netip0(), ProbeOptions{TrackFiles: map[string]string{"rs11": path}})
	if err != nil {
		t.Fatal(err)
	}
	write("1")
	if r := p.Probe(t.Context()); r.OK {
		t.Errorf("1: %+v, want down", r)
	}
	// keepalived ignores a number out of range and keeps the last state.
	write("99999999999")
	if r := p.Probe(t.Context()); r.OK {
		t.Errorf("out of range after 1: %+v, want still down", r)
	}
	write("0")
	if r := p.Probe(t.Context()); !r.OK {
		t.Errorf("0: %+v, want up", r)
	}
}

func TestStrtol(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"": 0, "42": 42, "  -7x": -7, "+3": 3, "0x1F": 31, "0X1f": 31, "017": 15, "0": 0,
		"08": 0, "0x": 0, "abc": 0, "12 34": 12, "\n5\n": 5,
	} {
		if got, ok := strtol(in); !ok || got != want {
			t.Errorf("strtol(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if _, ok := strtol("99999999999999999999"); ok {
		t.Error("overflow not reported")
	}
}

func ptr(s string) *string { return &s }
