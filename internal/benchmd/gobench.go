package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// goPackages says what each package's Go benchmarks measure.
var goPackages = map[string]string{
	"github.com/xlbd/xlbd/pkg/config": "config parse: a keepalived.conf of 100 virtual servers × 4 reals with TCP_CHECK or " +
		"HTTP_GET checkers and two VRRP instances, and the lb.yaml `xlbd convert` makes of it",
	"github.com/xlbd/xlbd/pkg/reconcile": "model: the configuration less the reals down made into the data plane's state " +
		"(reconcile.PlanHeld), on every reload and every health change",
	"github.com/xlbd/xlbd/pkg/sched":         "table builds: the schedulers' tables and picks over 1,000 reals",
	"github.com/xlbd/xlbd/pkg/dataplane/xdp": "metrics scrape: one Prometheus gather with 1,000 reals and 20,000 flows in the tables",
}

// goBenchPackages are the packages whose benchmarks the section expects,
// each with one of them, to say why there are none.
var goBenchPackages = []struct{ pkg, bench string }{
	{"github.com/xlbd/xlbd/pkg/config", "BenchmarkParse"},
	{"github.com/xlbd/xlbd/pkg/reconcile", "BenchmarkPlan"},
	{"github.com/xlbd/xlbd/pkg/sched", "BenchmarkBuildMHTable1000"},
	{"github.com/xlbd/xlbd/pkg/dataplane/xdp", "BenchmarkScrape"},
}

func init() {
	for _, p := range goBenchPackages {
		benchPackages[p.bench] = strings.TrimPrefix(p.pkg, module+"/")
	}
}

// writeGo is the Go benchmarks of the user-space hot paths: every
// benchmark that counted its allocations (-benchmem), by package.
func writeGo(b *doc, in *input) {
	fmt.Fprintf(b, "\n## Go benchmarks (hot user-space paths)\n\n"+
		"`go test -bench` with -benchmem: time, bytes and allocations per operation.\n\n")
	var ran []string
	for _, p := range goBenchPackages {
		ran = append(ran, p.bench)
	}
	b.WriteString(in.ran(ran...))
	byPkg := map[string][]string{}
	var pkgs []string
	for _, n := range in.order {
		if _, ok := in.res[n]["B/op"]; !ok {
			continue
		}
		p := in.pkg[n]
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
		byPkg[p] = append(byPkg[p], n)
	}
	var all []string
	for _, p := range pkgs {
		all = append(all, byPkg[p]...)
	}
	if len(all) > 0 {
		fmt.Fprintf(b, "%s\n", medians(in, all...))
	}
	for _, p := range pkgs {
		what := goPackages[p]
		if what == "" {
			what = "benchmarks"
		}
		fmt.Fprintf(b, "\n%s, %s:\n\n| benchmark | time/op | B/op | allocs/op | other |\n|---|---|---|---|---|\n",
			strings.TrimPrefix(p, "github.com/xlbd/xlbd/"), what)
		for _, n := range byPkg[p] {
			res := in.res[n]
			t, tok := statOf(res["ns/op"])
			by, bok := statOf(res["B/op"])
			al, aok := statOf(res["allocs/op"])
			var other []string
			for _, u := range slices.Sorted(maps.Keys(res)) {
				if u == "ns/op" || u == "B/op" || u == "allocs/op" {
					continue
				}
				s, _ := statOf(res[u])
				other = append(other, auto(s, true)+" "+u)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", strings.TrimPrefix(n, "Benchmark"), scaled(t, tok, nsUnits),
				scaled(by, bok, byteUnits), fig(al, aok, 0), strings.Join(other, ", "))
		}
	}
	for _, p := range goBenchPackages {
		if !slices.Contains(pkgs, p.pkg) {
			fmt.Fprintf(b, "\n%s: ", strings.TrimPrefix(p.pkg, "github.com/xlbd/xlbd/"))
			b.notRun(in.notRun(p.bench))
		}
	}
}

type unit struct {
	name string
	size float64
}

var (
	nsUnits   = []unit{{"s", 1e9}, {"ms", 1e6}, {"µs", 1e3}, {"ns", 1}}
	byteUnits = []unit{{"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
)

// scaled writes a statistic in the largest unit the median reaches, with
// three significant digits or so.
func scaled(s stat, ok bool, units []unit) string {
	if !ok {
		return "–"
	}
	u := units[len(units)-1]
	for _, c := range units {
		if s.med >= c.size {
			u = c
			break
		}
	}
	prec := 0
	switch m := s.med / u.size; {
	case u.size == 1:
	case m < 10:
		prec = 2
	case m < 100:
		prec = 1
	}
	return fig(stat{s.med / u.size, s.min / u.size, s.max / u.size}, true, prec) + " " + u.name
}
