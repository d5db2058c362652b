package main

import (
	"fmt"
	"strings"
)

const (
	daemonBench = "BenchmarkDaemon"
	mapMemory   = "BenchmarkMapMemory"
)

// applyBenches are issue 11's apply benchmarks, each with what one
// iteration changes and its target.
var applyBenches = []struct{ name, what, target string }{
	{"BenchmarkApply", "whole pool replaced (every real added, every old one removed)", "10,000 reals: < 1000"},
	{"BenchmarkApplyOneWeight", "one real's weight, 10,000 reals present", "< 10"},
	{"BenchmarkApplyRealDown", "one real out of a 1,000-real service and back, 10,000 present", "< 10"},
}

// writeControlPlane is the daemon's start, reload and idle footprint, the
// kernel memory of its maps, and Tables.Apply's times.
func writeControlPlane(b *doc, in *input) {
	fmt.Fprintf(b, "\n## Control plane\n\n### Daemon start, reload and memory\n\n"+
		"`xlbd --config lb.yaml` in a NAT lab (generic XDP), every service wlc NAT on one VIP: the time from\n"+
		"start to `msg=ready`, the mean time of SIGHUPs that change nothing (each to `msg=reloaded`), and\n"+
		"the daemon's resident memory (VmRSS) half a second after ready, before any reload. Silent reals\n"+
		"are routed on-link but never answer ARP.\n\n")
	b.WriteString(in.ran(daemonBench))
	if names := in.under(daemonBench); len(names) == 0 {
		b.notRun(in.notRun(daemonBench))
	} else {
		fmt.Fprintf(b, "%s\n\n", medians(in, names...))
		b.WriteString("| services × reals each | ready ms | SIGHUP ms | RSS idle MiB |\n|---|---|---|---|\n")
		for _, n := range names {
			s := func(unit string, prec int) string { v, ok := in.res.stat(n, unit); return fig(v, ok, prec) }
			fmt.Fprintf(b, "| %s | %s | %s | %s |\n", daemonCase(strings.TrimPrefix(n, daemonBench+"/")),
				s("ready-ms", 0), s("sighup-ms", 1), s("rss-MiB", 1))
		}
	}

	fmt.Fprintf(b, "\n### Kernel memory of the maps\n\n"+
		"Every map of the balancer loaded with the default sizes, as the kernel accounts it (memlock);\n"+
		"\"other\" is the maps `xlbd status` does not list (scratch, statistics). Issue 15's target: at most\n"+
		"128 MiB in all.\n\n")
	b.WriteString(in.ran(mapMemory))
	if names := in.under(mapMemory); len(names) == 0 {
		b.notRun(in.notRun(mapMemory))
	} else {
		b.WriteString("\n| table | entries | MiB |\n|---|---|---|\n")
		for _, n := range names {
			t := strings.TrimPrefix(n, mapMemory+"/")
			e, eok := in.res.stat(n, "entries")
			m, mok := in.res.stat(n, "map-MiB")
			if t == "total" {
				fmt.Fprintf(b, "| **total** (target ≤ 128) | | **%s** |\n", fig(m, mok, 1))
				continue
			}
			entries := ""
			if eok {
				entries = fmt.Sprintf("%.0f", e.med)
			}
			fmt.Fprintf(b, "| %s | %s | %s |\n", t, entries, fig(m, mok, 1))
		}
	}

	fmt.Fprintf(b, "\n### Applies\n\n"+
		"Tables.Apply on NAT pools in a lab namespace (no network waits: every real's neighbour is known),\n"+
		"services of up to 1,000 reals, their schedulers wlc and rr in turn; the mean time per apply of\n"+
		"states applied in alternation. Targets from issue 11 and the health issue, in ms.\n\n")
	var names []string
	for _, a := range applyBenches {
		names = append(names, a.name)
	}
	b.WriteString(in.ran(names...))
	some := false
	for _, a := range applyBenches {
		some = some || in.has(a.name)
	}
	if !some {
		b.notRun(in.notRun(applyBenches[0].name))
		return
	}
	var all []string
	for _, a := range applyBenches {
		all = append(all, in.under(a.name)...)
	}
	fmt.Fprintf(b, "%s\n\n| change | case | ms per apply | target |\n|---|---|---|---|\n", medians(in, all...))
	for _, a := range applyBenches {
		subs := in.under(a.name)
		if len(subs) == 0 {
			fmt.Fprintf(b, "| %s | | %s | %s |\n", a.what, in.notRun(a.name), a.target)
			continue
		}
		for _, n := range subs {
			v, ok := in.res.stat(n, "ms/apply")
			fmt.Fprintf(b, "| %s | %s | %s | %s |\n", a.what, strings.TrimPrefix(n, a.name+"/"), fig(v, ok, 2), a.target)
		}
	}
}

// daemonCase is "services=100/reals=10[/silent]" as "100 × 10".
func daemonCase(c string) string {
	var services, reals int
	if _, err := fmt.Sscanf(c, "services=%d/reals=%d", &services, &reals); err != nil {
		return c
	}
	s := fmt.Sprintf("%d × %d", services, reals)
	if strings.HasSuffix(c, "/silent") {
		s += " silent"
	}
	return s
}

// runsOf is how many values the benchmarks names have at most: the runs
// (-count) they had.
func runsOf(in *input, names ...string) int {
	runs := 0
	for _, n := range names {
		for _, vs := range in.res[n] {
			runs = max(runs, len(vs))
		}
	}
	return runs
}
