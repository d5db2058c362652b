package sched

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRRSequence(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    []int
	}{
		{"all", []int{1, 1, 1}, []int{0, 1, 2}},
		{"weights ignored", []int{5, 1, 3}, []int{0, 1, 2}},
		{"quiesced skipped", []int{1, 0, 1}, []int{0, 2}},
		{"none", []int{0, 0}, []int{}},
		{"empty", nil, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, RRSequence(reals(tt.weights...))); diff != "" {
				t.Errorf("RRSequence (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWRRSequence(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string
	}{
		// Passes cw=4: r1; cw=3: r1 r2; cw=2: r1 r2 r3; cw=1: r1 r2 r3.
		{"4:3:2", []int{4, 3, 2}, "r1 r1 r2 r1 r2 r3 r1 r2 r3"},
		{"3:2:1", []int{3, 2, 1}, "r1 r1 r2 r1 r2 r3"},
		{"equal", []int{2, 2, 2}, "r1 r2 r3"},
		// gcd 2, mw = 4-1 = 3: passes cw=3 and cw=1.
		{"gcd 2", []int{4, 2}, "r1 r1 r2"},
		{"quiesced", []int{2, 0, 1}, "r1 r1 r3"},
		{"heaviest last", []int{1, 1, 3}, "r3 r3 r1 r2 r3"},
		{"all quiesced", []int{0, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := reals(tt.weights...)
			got := strings.Join(names(WRRSequence(ds)), " ")
			if got != tt.want {
				t.Errorf("WRRSequence(%v) = %q, want %q", tt.weights, got, tt.want)
			}
			if n := WRRSequenceLen(ds); n != len(WRRSequence(ds)) {
				t.Errorf("WRRSequenceLen = %d, sequence has %d", n, len(WRRSequence(ds)))
			}
		})
	}
}

func TestWRRShares(t *testing.T) {
	seq := WRRSequence(reals(3, 2, 1))
	var got []int
	for range 10 { // 60 connections, ten periods
		got = append(got, seq...)
	}
	if diff := cmp.Diff([]int{30, 20, 10}, counts(got, 3)); diff != "" {
		t.Errorf("shares of 60 connections with weights 3:2:1 (-want +got):\n%s", diff)
	}
}

// ipvsWRR transcribes ip_vs_wrr_schedule with its mark (cl = -1 is the list
// head), to check WRRSequence against the kernel's own loop.
type ipvsWRR struct{ cl, cw, mw, di int }

func newIPVSWRR(ds []Dest) *ipvsWRR {
	di, mw := wrrParams(ds)
	return &ipvsWRR{cl: -1, cw: mw, mw: mw, di: di}
}

func (m *ipvsWRR) schedule(ds []Dest) int {
	dest := m.cl
	if m.mw == 0 {
		return -1
	}
	last, stop := dest, -2
	lastPass, restarted := false, false
	for {
		for dest++; dest < len(ds); dest++ {
			if !ds[dest].Overloaded && ds[dest].Weight >= m.cw {
				m.cl = dest
				return dest
			}
			if dest == stop {
				m.cl = dest
				return -1
			}
		}
		dest = -1
		m.cw -= m.di
		if m.cw <= 0 {
			m.cw = m.mw
			if lastPass || last == -1 {
				m.cl = dest
				return -1
			}
			restarted = true
		}
		lastPass = m.cw <= m.di
		if lastPass && restarted && last != -1 {
			stop = last
		}
	}
}

func TestWRRSequenceMatchesKernelLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		n := 1 + r.IntN(8)
		ws := make([]int, n)
		for i := range ws {
			ws[i] = r.IntN(7) * (1 + r.IntN(3)) // zeros and shared factors
		}
		ds := reals(ws...)
		seq := WRRSequence(ds)
		m := newIPVSWRR(ds)
		for k := range 3*len(seq) + 5 {
			want := -1
			if len(seq) > 0 {
				want = seq[k%len(seq)]
			}
			if got := m.schedule(ds); got != want {
				t.Fatalf("iter %d weights %v pick %d: kernel loop %d, sequence %d", iter, ws, k, got, want)
			}
		}
	}
}

func TestNextInSequence(t *testing.T) {
	ds := reals(1, 1, 1)
	ds[1].Overloaded = true
	seq := RRSequence(ds)
	var got []int
	var c uint64
	for range 4 {
		var d int
		d, c = NextInSequence(seq, ds, c)
		got = append(got, d)
	}
	if diff := cmp.Diff([]int{0, 2, 0, 2}, got); diff != "" {
		t.Errorf("rr skipping overloaded r2 (-want +got):\n%s", diff)
	}
	if c != 6 {
		t.Errorf("counter after 4 picks over one skip each other time = %d, want 6", c)
	}
	ds[0].Overloaded, ds[2].Overloaded = true, true
	if d, next := NextInSequence(seq, ds, 7); d != -1 || next != 10 {
		t.Errorf("all overloaded: got %d, %d; want -1, 10", d, next)
	}
	if d, next := NextInSequence(nil, ds, 7); d != -1 || next != 7 {
		t.Errorf("empty sequence: got %d, %d; want -1, 7", d, next)
	}
}
