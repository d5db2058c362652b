package sched

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"
)

// addrs lets go-cmp compare netip values, which have unexported fields.
var addrs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// rs is dest n at 10.0.0.n:80 with weight w.
func rs(n, w int) Dest {
	return Dest{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(n)}), Port: 80, Weight: w}
}

func reals(weights ...int) []Dest {
	out := make([]Dest, len(weights))
	for i, w := range weights {
		out[i] = rs(i+1, w)
	}
	return out
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

// client is a distinct client address per i, spread over a /16.
func client(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
}

func counts(table []int, n int) []int {
	c := make([]int, n)
	for _, d := range table {
		if d >= 0 {
			c[d]++
		}
	}
	return c
}

func mustNew(t testing.TB, cfg Config, dests ...Dest) *Service {
	t.Helper()
	s, err := New(cfg, dests...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// names maps dest indices to "r1".."rN" for readable diffs.
func names(idx []int) []string {
	out := make([]string, len(idx))
	for i, d := range idx {
		if d < 0 {
			out[i] = "-"
		} else {
			out[i] = fmt.Sprintf("r%d", d+1)
		}
	}
	return out
}
