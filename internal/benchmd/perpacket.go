package main

import (
	"fmt"
	"slices"
	"strings"
)

const (
	perPacket    = "BenchmarkPerPacket/"
	perScheduler = "BenchmarkNewFlowPerScheduler/"
)

// targets are issue 15's: xlbd ÷ Katran per case.
var targets = map[string]string{
	"established/dr":  "≤ 0.75",
	"established/tun": "≤ 0.75",
	"established/nat": "≤ 0.75",
	"new-flow/tun":    "≤ 0.75",
	"new-flow/nat":    "≤ 0.75",
	"new-flow/dr":     "≤ 0.75",
	"non-vip":         "≤ 0.6",
}

// writePerPacket is BPF_PROG_TEST_RUN's figures: xlbd beside the trivial
// program and Katran, then each scheduler's new flow beside rr's.
func writePerPacket(b *doc, in *input, katran string) {
	res := in.res
	fmt.Fprintf(b, "## Per packet (BPF_PROG_TEST_RUN)\n\n"+
		"One packet per call, the loop pinned to one CPU, each call of the balancer followed by one of\n"+
		"the trivial XDP_PASS program (and of Katran's balancer) on the same packet, so that all see the\n"+
		"same machine. The kernel's clock moves in steps of about 10 ns: compare the ratios.\n\n")
	if !in.has(strings.TrimSuffix(perPacket, "/")) {
		b.notRun(in.notRun(strings.TrimSuffix(perPacket, "/")))
	} else {
		if katran == "" {
			fmt.Fprintf(b, "Katran's columns are empty: run `make bench KATRAN_SRC=DIR` with DIR a checkout of\n"+
				"github.com/facebookincubator/katran; its balancer.bpf.c is built as its Makefile-bpf does (clang -O2\n"+
				"for BPF, no feature defines) and configured for the same VIP and three reals (Maglev ring,\n"+
				"per-CPU LRUs of 8,000,000 / CPUs entries, as KatranLb sets them up).\n\n")
		} else {
			fmt.Fprintf(b, "Katran: balancer.bpf.c from %s, built as its Makefile-bpf does (clang -O2 for BPF, no feature\n"+
				"defines), one VIP and three reals, Maglev ring, per-CPU LRUs of 8,000,000 / CPUs entries. Katran\n"+
				"forwards by IPIP only: each xlbd case is set beside Katran's packet of the same kind (an ACK of a\n"+
				"known flow, a SYN of a new one, a packet for no VIP).\n\n", katran)
		}
		fmt.Fprintf(b, "| case | xlbd ns | trivial ns | xlbd ÷ trivial | xlbd ns above trivial | Katran ns | xlbd ÷ Katran | target |\n")
		fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|\n")
		for _, n := range in.order {
			c, ok := strings.CutPrefix(n, perPacket)
			if !ok {
				continue
			}
			s := func(unit string, prec int) string { v, ok := res.stat(n, unit); return cell(v, ok, prec) }
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c, s("ns/pkt", 0), s("trivial-ns/pkt", 0),
				s("x-trivial", 2), s("above-trivial-ns", 0), s("katran-ns/pkt", 0), s("x-katran", 2), targets[c])
		}
		writeRelative(b, in, "new-flow-full/nat", "new-flow/nat", 1.5,
			"A new NAT flow into a full connection table (refused, nothing evicted) costs %s× one with room (target ≤ %.1f×: %s).")
		writeRelative(b, in, "nat-reply", "established/nat", 1,
			"A NAT reply costs %s× an established NAT packet (target ≤ %.0f×: %s).")
	}

	// New flows per scheduler, as a ratio to rr's with as many reals.
	type cellKey struct{ sched, n string }
	cells := map[cellKey]string{}
	var scheds, sizes []string
	for _, n := range in.order {
		c, ok := strings.CutPrefix(n, perScheduler)
		if !ok {
			continue
		}
		sched, size, _ := strings.Cut(c, "/")
		if !slices.Contains(scheds, sched) {
			scheds = append(scheds, sched)
		}
		if !slices.Contains(sizes, size) {
			sizes = append(sizes, size)
		}
		v, vok := res.stat(n, "above-trivial-ns")
		rr, rok := res.stat(perScheduler+"rr/"+size, "above-trivial-ns")
		text := cell(v, vok, 0) + " ns"
		if vok && rok && rr.med > 0 {
			text += fmt.Sprintf(", %.2f× rr", v.med/rr.med)
		}
		cells[cellKey{sched, size}] = text
	}
	if len(scheds) > 0 {
		fmt.Fprintf(b, "\n## New flow per scheduler (DR, ns above the trivial program, and the ratio to rr)\n\n")
		fmt.Fprintf(b, "Target: wlc, sh and mh within 1.2× of rr.\n\n| scheduler |")
		for _, n := range sizes {
			fmt.Fprintf(b, " %s reals |", n)
		}
		fmt.Fprintf(b, "\n|---|")
		for range sizes {
			fmt.Fprintf(b, "---|")
		}
		fmt.Fprintln(b)
		for _, sc := range scheds {
			fmt.Fprintf(b, "| %s |", sc)
			for _, n := range sizes {
				fmt.Fprintf(b, " %s |", cells[cellKey{sc, n}])
			}
			fmt.Fprintln(b)
		}
	}
}

// writeRelative says case c's cost above the trivial program as a multiple
// of base's, against a target multiple; nothing when either was not run.
func writeRelative(b *doc, in *input, c, base string, target float64, format string) {
	v, vok := in.res.stat(perPacket+c, "above-trivial-ns")
	r, rok := in.res.stat(perPacket+base, "above-trivial-ns")
	if !vok || !rok || r.med <= 0 {
		return
	}
	verdict := "met"
	if v.med/r.med > target {
		verdict = "missed"
	}
	fmt.Fprintf(b, "\n"+format+"\n", fmt.Sprintf("%.2f", v.med/r.med), target, verdict)
}
