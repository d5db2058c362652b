package main

import (
	"fmt"
	"slices"
	"strings"
)

const forwarding = "BenchmarkForwarding"

// forwardTraffic are BenchmarkForwarding's kinds of traffic with their
// rate's unit and the CPU unit that goes with it.
var forwardTraffic = []struct {
	name, title, rate, cpu string
	prec                   int // of the rate
}{
	{"tcp", "TCP", "Gbit/s", "cpu-ns/pkt", 2},
	{"udp64", "UDP 64 B", "pkt/s", "cpu-ns/pkt", 0},
	{"connect", "new connections", "conn/s", "cpu-ns/conn", 0},
}

var forwardPaths = []string{"routing", "nft", "xlbd"}

var forwardPathTitles = map[string]string{
	"routing": "plain routing",
	"nft":     "nftables DNAT",
	"xlbd":    "xlbd",
}

// writeForwarding is issue 15's forwarding rate through veths: per XDP
// mode, each path's rates against plain routing's, and the CPU it adds
// to routing's per packet and per connection.
func writeForwarding(b *doc, in *input) {
	fmt.Fprintf(b, "\n## Forwarding rate (veth namespaces)\n\n"+
		"A client, the balancer and the real servers in network namespaces joined by veths; the same\n"+
		"traffic through plain kernel routing (no NAT), nftables DNAT doing xlbd's NAT job, and xlbd's\n"+
		"XDP program, in the same run: bulk TCP (iperf3), 64-byte UDP, and new TCP connections. CPU is\n"+
		"the benchmark's (its own process, everything it started, xlbd and iperf3 included, and the\n"+
		"kernel's softirq threads: veth forwarding runs there or in the sender), per packet or per\n"+
		"connection: routing's own, and what nftables and xlbd add to it. The machine's CPU would count\n"+
		"other people's processes too. go test -count repeats each case on its own, one after the other, so ratios and added CPU\n"+
		"set each run of nftables and xlbd against the median of routing's runs. On 2 cores the traffic\n"+
		"generator dominates: issue 15's aim is xlbd at or above plain routing in every rate, its added\n"+
		"CPU per packet under nftables'.\n\n")
	b.WriteString(in.ran(forwarding))
	if !in.has(forwarding) {
		b.notRun(in.notRun(forwarding))
		return
	}
	var modes []string
	for _, n := range in.under(forwarding) {
		if f := strings.Split(n, "/"); len(f) == 4 && !slices.Contains(modes, f[1]) {
			modes = append(modes, f[1])
		}
	}
	fmt.Fprintf(b, "%s\n", medians(in, in.under(forwarding)...))
	for _, mode := range modes {
		writeForwardMode(b, in, mode)
	}
}

func writeForwardMode(b *doc, in *input, mode string) {
	fmt.Fprintf(b, "\n### %s XDP\n\n| path |", mode)
	for _, t := range forwardTraffic {
		fmt.Fprintf(b, " %s %s | ÷ routing | CPU %s |", t.title, t.rate, strings.TrimPrefix(t.cpu, "cpu-"))
	}
	b.WriteString(" target: ≥ routing, added ns/pkt < nftables' |\n|---|")
	for range forwardTraffic {
		b.WriteString("---|---|---|")
	}
	b.WriteString("---|\n")
	vals := func(path, traffic, unit string) []float64 {
		return in.res[fmt.Sprintf("%s/%s/%s/%s", forwarding, mode, path, traffic)][unit]
	}
	above := func(path, traffic, unit string) (stat, bool) {
		return against(vals(path, traffic, unit), vals("routing", traffic, unit), func(x, y float64) float64 { return x - y })
	}
	for _, path := range forwardPaths {
		fmt.Fprintf(b, "| %s |", forwardPathTitles[path])
		var missed []string
		for _, t := range forwardTraffic {
			rate, rok := statOf(vals(path, t.name, t.rate))
			ratio, qok := against(vals(path, t.name, t.rate), vals("routing", t.name, t.rate), func(x, y float64) float64 { return x / y })
			var cpu string
			if path == "routing" {
				s, ok := statOf(vals(path, t.name, t.cpu))
				cpu = fig(s, ok, 0)
			} else {
				s, ok := above(path, t.name, t.cpu)
				cpu = signed(s, ok, 0)
			}
			fmt.Fprintf(b, " %s | %s | %s |", fig(rate, rok, t.prec), fig(ratio, qok, 2), cpu)
			if path != "xlbd" {
				continue
			}
			if !qok {
				missed = append(missed, t.title+" not measured")
			} else if ratio.med < 1 {
				missed = append(missed, fmt.Sprintf("%s %.2f×", t.title, ratio.med))
			}
			if t.cpu == "cpu-ns/pkt" {
				x, xok := above("xlbd", t.name, t.cpu)
				n, nok := above("nft", t.name, t.cpu)
				if xok && nok && x.med >= n.med {
					missed = append(missed, fmt.Sprintf("%s +%.0f ns/pkt, nftables +%.0f", t.title, x.med, n.med))
				}
			}
		}
		switch {
		case path != "xlbd":
			b.WriteString(" |\n")
		case len(missed) == 0:
			b.WriteString(" met |\n")
		default:
			fmt.Fprintf(b, " missed: %s |\n", strings.Join(missed, "; "))
		}
	}
}

// against is the statistic of f(x, median of base) over the values x of
// vs.
func against(vs, base []float64, f func(x, y float64) float64) (stat, bool) {
	b, ok := statOf(base)
	if !ok {
		return stat{}, false
	}
	out := make([]float64, len(vs))
	for i, x := range vs {
		out[i] = f(x, b.med)
	}
	return statOf(out)
}

// signed is cell with the sign shown: a difference.
func signed(s stat, ok bool, prec int) string {
	if !ok {
		return "–"
	}
	f := func(v float64) string { return fmt.Sprintf("%+.*f", prec, v) }
	if s.min == s.max {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s to %s)", f(s.med), f(s.min), f(s.max))
}
