package main

import (
	"fmt"
	"slices"
	"strings"
)

const (
	vrrpFailover  = "BenchmarkVRRPFailover"
	vrrpInstances = "BenchmarkVRRPInstances"
)

// failoverRows says what each of BenchmarkVRRPFailover's rows does, in
// KEEPALIVED.md's order.
var failoverRows = []struct{ name, what string }{
	{"v2-graceful", "VRRPv2, advert_int 1 s, master stopped (SIGTERM: it sends priority 0)"},
	{"v2-hung", "VRRPv2, advert_int 1 s, master hung (SIGSTOP)"},
	{"v3-graceful", "VRRPv3, advert_int 0.1 s, master stopped (SIGTERM)"},
	{"v3-hung", "VRRPv3, advert_int 0.1 s, master hung (SIGSTOP)"},
}

// failoverRounds is BenchmarkVRRPFailover's failovers per row and
// implementation for each b.N (foRounds).
const failoverRounds = 5

// writeVRRP is failover time, xlbd beside keepalived, and what 100
// instances cost.
func writeVRRP(b *doc, in *input) {
	fmt.Fprintf(b, "\n## VRRP\n\n### Failover, xlbd beside keepalived\n\n"+
		"A pair per row and implementation in network namespaces: MASTER priority 150 on lb1, BACKUP\n"+
		"priority 100 on lb2. Each round starts both implementations' masters, then signals each (taking\n"+
		"turns to go first) at the same phase of its advert interval; a sample is the time from the signal\n"+
		"to the VIP's address event on lb2. keepalived is the system's (`make deps` installs it).\n\n")
	b.WriteString(in.ran(vrrpFailover))
	if !in.has(vrrpFailover) {
		b.notRun(in.notRun(vrrpFailover))
	} else {
		res := in.res[vrrpFailover]
		n := 0
		for _, it := range in.iters[vrrpFailover] {
			n += it * failoverRounds
		}
		fmt.Fprintf(b, "ms from the signal to the VIP on lb2: median (min–max) of %d failovers per row and implementation", n)
		if runs := len(in.iters[vrrpFailover]); runs > 1 {
			fmt.Fprintf(b, " (the median of %d runs' medians, the extremes of all)", runs)
		}
		b.WriteString("; for graceful rows, also the time from the signal to lb2 reading the priority 0 advert.\n\n")
		b.WriteString("| row | xlbd ms | keepalived ms | xlbd ÷ keepalived | signal → priority 0, xlbd ms | keepalived ms |\n|---|---|---|---|---|---|\n")
		rows := slices.Clone(failoverRows)
		for unit := range res {
			if r, ok := strings.CutSuffix(unit, "-xlbd/keepalived"); ok &&
				!slices.ContainsFunc(rows, func(x struct{ name, what string }) bool { return x.name == r }) {
				rows = append(rows, struct{ name, what string }{r, r})
			}
		}
		for _, r := range rows {
			if _, ok := res[r.name+"-xlbd/keepalived"]; !ok {
				continue
			}
			ms := func(impl string) string {
				p := impl + "-" + r.name
				med, ok := statOf(res[p+"-median-ms"])
				lo, _ := statOf(res[p+"-min-ms"])
				hi, _ := statOf(res[p+"-max-ms"])
				return fig(stat{med.med, lo.min, hi.max}, ok, 1)
			}
			prio0 := func(impl string) string {
				if s, ok := statOf(res[impl+"-"+r.name+"-prio0-ms"]); ok {
					return fig(s, ok, 1)
				}
				return ""
			}
			ratio, ok := statOf(res[r.name+"-xlbd/keepalived"])
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", r.what, ms("xlbd"), ms("keepalived"), fig(ratio, ok, 3),
				prio0("xlbd"), prio0("keepalived"))
		}
	}

	fmt.Fprintf(b, "\n### 100 instances\n\n"+
		"xlbd MASTER of 100 instances at advert_int 1 on lb1, BACKUP of them on lb2, over a quiet window\n"+
		"of 10 s: each daemon's CPU per second of wall time, and how far the master's advert intervals,\n"+
		"seen at the client, stray from 1 s.\n\n")
	b.WriteString(in.ran(vrrpInstances))
	if !in.has(vrrpInstances) {
		b.notRun(in.notRun(vrrpInstances))
		return
	}
	s := func(unit string, prec int) string {
		v, ok := in.res.stat(vrrpInstances, unit)
		return fig(v, ok, prec)
	}
	fmt.Fprintf(b, "%s\n\n| master CPU ms/s | backup CPU ms/s | advert lateness p99 ms | max ms |\n|---|---|---|---|\n",
		medians(in, vrrpInstances))
	fmt.Fprintf(b, "| %s | %s | %s | %s |\n", s("master-cpu-ms/s", 1), s("backup-cpu-ms/s", 1), s("late-p99-ms", 2), s("late-max-ms", 2))
}
