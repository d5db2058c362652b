// Command benchmd turns the `go test -bench` output make bench collects
// (one file per run, several -count runs each) into BENCHMARKS.md: medians
// with min and max over the runs, with the machine and the date. Its
// sections: per packet (xlbd beside the trivial XDP program and, when the
// run had KATRAN_SRC, beside Katran), forwarding rate through veths, the
// control plane, VRRP failover, health checks and the Go benchmarks of the
// hot user-space paths. A section whose benchmarks are missing says why
// ("not run: ...") instead of failing.
//
//	go run ./internal/benchmd build/bench-*.txt > BENCHMARKS.md
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

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

// fig is cell without a range that rounds away ("10.9", not "10.9
// (10.9–10.9)"); the per-packet section keeps cell's way.
func fig(s stat, ok bool, prec int) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if ok && f(s.min) == f(s.max) {
		s.min, s.max = s.med, s.med
	}
	return cell(s, ok, prec)
}

// auto is cell with about three significant digits.
func auto(s stat, ok bool) string {
	prec := 0
	switch m := math.Abs(s.med); {
	case m < 10:
		prec = 2
	case m < 100:
		prec = 1
	}
	return fig(s, ok, prec)
}

// medians is "Medians of N runs." for the benchmarks names.
func medians(in *input, names ...string) string {
	if n := runsOf(in, names...); n != 1 {
		return fmt.Sprintf("Medians of %d runs.", n)
	}
	return "One run."
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

// katranAt names the Katran checkout dir by its commit, when it is a git
// checkout.
func katranAt(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=8", "HEAD").Output()
	if err != nil {
		return fmt.Sprintf("`%s`", dir)
	}
	return fmt.Sprintf("a checkout of facebookincubator/katran at %s (`%s`)", strings.TrimSpace(string(out)), dir)
}

func main() {
	katran := flag.String("katran", "", "the KATRAN_SRC the run had (\"\": none)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: benchmd [--katran DIR] [FILE ...]   (no FILE: standard input)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	in := newInput()
	if flag.NArg() == 0 {
		if err := in.read("standard input", os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if os.IsNotExist(err) {
			// A part make bench did not get to: its sections say so.
			in.missing = append(in.missing, name)
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		err = in.read(name, f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if *katran != "" {
		*katran = katranAt(*katran)
	}
	notes, err := write(os.Stdout, in, *katran)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, n := range notes {
		fmt.Fprintln(os.Stderr, "benchmd:", n)
	}
}

// doc is BENCHMARKS.md being written, with the "not run" notes of its
// sections, which main repeats on standard error.
type doc struct {
	strings.Builder
	notes []string
}

// notRun writes why a section (or a table of one) is empty.
func (b *doc) notRun(why string) {
	b.notes = append(b.notes, why)
	fmt.Fprintf(b, "%s.\n", why)
}

// write writes BENCHMARKS.md; katran is how the per-packet section names
// Katran's source ("": the run had none). It returns the sections' "not
// run" notes.
func write(w io.Writer, in *input, katran string) ([]string, error) {
	b := &doc{}
	runs := 0
	for _, n := range in.order {
		if strings.HasPrefix(n, perPacket) {
			runs = max(runs, len(in.res[n]["ns/pkt"]))
		}
	}
	secs := 0
	for _, rn := range in.runs {
		secs += max(rn.secs, 0)
	}
	fmt.Fprintf(b, "# Benchmarks\n\nWritten by `make bench` on %s: %s. Every figure is the median of several runs, with the\n"+
		"lowest and highest in brackets", time.Now().UTC().Format("2006-01-02"), machine())
	if runs > 0 {
		fmt.Fprintf(b, ": %d runs for the per-packet figures, each itself the median over its calls;\n"+
			"the other sections say theirs.", runs)
	} else {
		b.WriteString("; each section says how many.")
	}
	if secs > 0 {
		fmt.Fprintf(b, " The runs took %s in all.", duration(secs))
	}
	b.WriteString("\n\n")
	writePerPacket(b, in, katran)
	writeForwarding(b, in)
	writeControlPlane(b, in)
	writeVRRP(b, in)
	writeHealth(b, in)
	writeGo(b, in)
	_, err := io.WriteString(w, b.String())
	return b.notes, err
}
