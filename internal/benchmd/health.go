package main

import (
	"fmt"
	"strings"
)

const healthChecks = "BenchmarkHealthChecks"

// writeHealth is the health issue's benchmark: 1,000 HTTP_GET checkers,
// what they cost, how late they run and how fast a verdict reaches the
// data plane.
func writeHealth(b *doc, in *input) {
	fmt.Fprintf(b, "\n## Health checks\n\n"+
		"1,000 real servers (500 addresses × 2 ports of one namespace, one NAT virtual server), each with\n"+
		"an HTTP_GET checker at delay_loop 1 s. Checking: the daemon's CPU over a quiet 10 s window (share\n"+
		"of one core); how late attempts start, by `xlbd status` and as the reals see it; checks run\n"+
		"against the rate of never-late checks. Verdicts: from the \"real server down\" log line to the\n"+
		"real gone from the pinned reals map, one real at a time (the applier's own time beside it), and\n"+
		"for the 500 reals of a port whose server stops (storm). Target (health issue): under 10 ms.\n\n")
	b.WriteString(in.ran(healthChecks))
	names := in.under(healthChecks)
	if len(names) == 0 {
		b.notRun(in.notRun(healthChecks))
		return
	}
	fmt.Fprintf(b, "%s\n\n", medians(in, names...))
	b.WriteString("| lb_algo | CPU, share of a core | late p99 ms | late max ms | late at the reals p99 ms | checks ÷ never-late rate |\n|---|---|---|---|---|---|\n")
	for _, n := range names {
		s := func(unit string, prec int) string { v, ok := in.res.stat(n, unit); return fig(v, ok, prec) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", healthCase(n), s("cpu-core", 3), s("late-p99-ms", 2),
			s("late-max-ms", 2), s("srv-late-p99-ms", 2), s("checks-ratio", 3))
	}
	b.WriteString("\n| lb_algo | verdict → data plane p50 ms | max ms | applier p50 ms | storm p99 ms | storm max ms |\n|---|---|---|---|---|---|\n")
	for _, n := range names {
		s := func(unit string, prec int) string { v, ok := in.res.stat(n, unit); return fig(v, ok, prec) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", healthCase(n), s("apply-p50-ms", 1), s("apply-max-ms", 1),
			s("applier-p50-ms", 1), s("storm-apply-p99-ms", 1), s("storm-apply-max-ms", 1))
	}
}

func healthCase(n string) string {
	c := strings.TrimPrefix(n, healthChecks+"/")
	return strings.TrimPrefix(c, "lb_algo=")
}
