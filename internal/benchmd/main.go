// Command benchmd turns `go test -bench` output of the per-packet
// benchmarks (several -count runs) into BENCHMARKS.md: medians with min and
// max over the runs, xlbd beside the trivial XDP program and, when the run
// had KATRAN_SRC, beside Katran, with the machine and the date.
//
//	go run ./internal/benchmd bench.txt > BENCHMARKS.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// results are each benchmark's metrics, one value per run, by unit.
type results map[string]map[string][]float64

// parse reads benchmark lines: "BenchmarkX/a/b-2  N  v unit  v unit ...".
func parse(r io.Reader) (results, []string, error) {
	res := results{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix
			}
		}
		if res[name] == nil {
			res[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %v", sc.Text(), err)
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return res, order, sc.Err()
}

// stat is the median of vs with its range.
type stat struct{ med, min, max float64 }

func statOf(vs []float64) (stat, bool) {
	if len(vs) == 0 {
		return stat{}, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return stat{s[len(s)/2], s[0], s[len(s)-1]}, true
}

func (r results) stat(name, unit string) (stat, bool) { return statOf(r[name][unit]) }

// cell formats a statistic: "0.72 (0.70–0.75)".
func cell(s stat, ok bool, prec int) string {
	if !ok {
		return "–"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if s.min == s.max {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.min), f(s.max))
}

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

func machine() string {
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s", runtime.NumCPU(), model, kernel)
}

func main() {
	katran := flag.String("katran", "", "the KATRAN_SRC the run had (\"\": none)")
	flag.Parse()
	in := io.Reader(os.Stdin)
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	res, order, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := write(os.Stdout, res, order, *katran); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func write(w io.Writer, res results, order []string, katran string) error {
	b := &strings.Builder{}
	runs := 0
	for _, n := range order {
		runs = max(runs, len(res[n]["ns/pkt"]))
	}
	fmt.Fprintf(b, "# Benchmarks\n\nWritten by `make bench` on %s: %s. Every figure is the median of %d runs, with the\n"+
		"lowest and highest in brackets; each run's figure is itself the median over its calls.\n\n",
		time.Now().UTC().Format("2006-01-02"), machine(), runs)

	fmt.Fprintf(b, "## Per packet (BPF_PROG_TEST_RUN)\n\n"+
		"One packet per call, the loop pinned to one CPU, each call of the balancer followed by one of\n"+
		"the trivial XDP_PASS program (and of Katran's balancer) on the same packet, so that all see the\n"+
		"same machine. The kernel's clock moves in steps of about 10 ns: compare the ratios.\n\n")
	if katran == "" {
		fmt.Fprintf(b, "Katran's columns are empty: run `make bench KATRAN_SRC=DIR` with DIR a checkout of\n"+
			"github.com/facebookincubator/katran; its balancer.bpf.c is built as its Makefile-bpf does (clang -O2\n"+
			"for BPF, no feature defines) and configured for the same VIP and three reals (Maglev ring,\n"+
			"per-CPU LRUs of 8,000,000 / CPUs entries, as KatranLb sets them up).\n\n")
	} else {
		fmt.Fprintf(b, "Katran: balancer.bpf.c from `%s`, built as its Makefile-bpf does (clang -O2 for BPF, no feature\n"+
			"defines), one VIP and three reals, Maglev ring, per-CPU LRUs of 8,000,000 / CPUs entries. Katran\n"+
			"forwards by IPIP only: each xlbd case is set beside Katran's packet of the same kind (an ACK of a\n"+
			"known flow, a SYN of a new one, a packet for no VIP).\n\n", katran)
	}
	fmt.Fprintf(b, "| case | xlbd ns | trivial ns | xlbd ÷ trivial | xlbd ns above trivial | Katran ns | xlbd ÷ Katran | target |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|\n")
	const pp = "BenchmarkPerPacket/"
	for _, n := range order {
		c, ok := strings.CutPrefix(n, pp)
		if !ok {
			continue
		}
		s := func(unit string, prec int) string { v, ok := res.stat(n, unit); return cell(v, ok, prec) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c, s("ns/pkt", 0), s("trivial-ns/pkt", 0),
			s("x-trivial", 2), s("above-trivial-ns", 0), s("katran-ns/pkt", 0), s("x-katran", 2), targets[c])
	}

	// New flows per scheduler, as a ratio to rr's with as many reals.
	const ps = "BenchmarkNewFlowPerScheduler/"
	type cellKey struct{ sched, n string }
	cells := map[cellKey]string{}
	var scheds, sizes []string
	for _, n := range order {
		c, ok := strings.CutPrefix(n, ps)
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
		rr, rok := res.stat(ps+"rr/"+size, "above-trivial-ns")
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
	_, err := io.WriteString(w, b.String())
	return err
}
