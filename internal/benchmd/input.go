package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results are each benchmark's metrics, one value per run, by unit.
type results map[string]map[string][]float64

// run is one `go test` invocation of make bench: the Makefile writes the
// command before its output and its exit status and duration after, so
// that a section can say what was run and, when it has nothing, why.
type run struct {
	file string
	cmd  string // "" when the file does not say
	exit int    // -1: the file does not say (the run was cut short, or hand-made)
	secs int    // -1: unknown
	// skipped and failed give, by benchmark, the first line it logged.
	skipped, failed map[string]string
	// problem is the first error of the run that no benchmark logged: a
	// build failure, a panic.
	problem string
}

// input is everything benchmd was given.
type input struct {
	res     results
	order   []string         // the benchmarks, as they first appear
	iters   map[string][]int // b.N of each line
	pkg     map[string]string
	runOf   map[string]*run
	runs    []*run
	missing []string // files named but not there
}

func newInput() *input {
	return &input{res: results{}, iters: map[string][]int{}, pkg: map[string]string{}, runOf: map[string]*run{}}
}

var (
	exitLine = regexp.MustCompile(`^# exit status (\d+)(?: after (\d+) s)?$`)
	// fileLine is the "name_test.go:12: " that testing puts before a
	// logged entry.
	fileLine = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)
)

// trimName drops the GOMAXPROCS suffix go test adds to a benchmark's name.
func trimName(name string) string {
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// read adds one file of `go test -bench` output: benchmark lines
// "BenchmarkX/a/b-2  N  v unit  v unit ...", what skipped or failed, and
// the "# go test ..." and "# exit status N after S s" lines make bench
// writes around a run.
func (in *input) read(file string, r io.Reader) error {
	rn := &run{file: file, exit: -1, secs: -1, skipped: map[string]string{}, failed: map[string]string{}}
	in.runs = append(in.runs, rn)
	pkg := ""
	// A logged entry is "    file_test.go:12: text", continued by lines
	// indented deeper. go test -v streams entries under the benchmark's
	// name line, before its "--- SKIP:" or "--- FAIL:"; without -v they
	// follow "--- FAIL:" (and a skip is not shown at all). Either way the
	// last entry is what ended the benchmark. last holds it by benchmark,
	// cur is the benchmark entries belong to, verdict the map a "--- "
	// line's entries go to.
	last := map[string]string{}
	cur := ""
	var verdict map[string]string
	// buildErr is set after a "# package" header of the compiler's.
	buildErr := false
	problem := func(s string) {
		if rn.problem == "" {
			rn.problem = strings.TrimSpace(s)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			t := strings.TrimSpace(line)
			if m := fileLine.FindString(t); m != "" {
				last[cur] = strings.TrimPrefix(t, m)
				if verdict != nil {
					verdict[cur] = last[cur]
				}
			}
			continue
		}
		verdict = nil
		if buildErr {
			buildErr = false
			problem(line)
		}
		switch {
		case strings.HasPrefix(line, "# go test "):
			rn.cmd = strings.TrimPrefix(line, "# ")
			continue
		case exitLine.MatchString(line):
			m := exitLine.FindStringSubmatch(line)
			rn.exit, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				rn.secs, _ = strconv.Atoi(m[2])
			}
			continue
		case strings.HasPrefix(line, "# "):
			buildErr = true
			continue
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		case strings.HasPrefix(line, "--- SKIP: "), strings.HasPrefix(line, "--- FAIL: "):
			verdict = rn.skipped
			if strings.HasPrefix(line, "--- FAIL: ") {
				verdict = rn.failed
			}
			cur = strings.Fields(line)[2]
			verdict[cur] = last[cur]
			continue
		case strings.HasPrefix(line, "--- BENCH: "):
			cur = ""
			continue
		case strings.HasPrefix(line, "panic: "), strings.HasSuffix(line, "[build failed]"),
			strings.HasPrefix(line, "FAIL\t") && strings.Contains(line, "[setup failed]"):
			problem(line)
			continue
		}
		f := strings.Fields(line)
		if len(f) == 1 && strings.HasPrefix(f[0], "Benchmark") {
			cur = f[0] // -v: the benchmark starts
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue // a log line that happens to start with a name
		}
		name := trimName(f[0])
		if in.res[name] == nil {
			in.res[name] = map[string][]float64{}
			in.order = append(in.order, name)
			in.pkg[name] = pkg
			in.runOf[name] = rn
		}
		in.iters[name] = append(in.iters[name], n)
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%s: %q: %v", file, line, err)
			}
			in.res[name][f[i+1]] = append(in.res[name][f[i+1]], v)
		}
	}
	return sc.Err()
}

// has reports whether any benchmark named name, or under it, has results.
func (in *input) has(name string) bool {
	return slices.ContainsFunc(in.order, func(n string) bool { return n == name || strings.HasPrefix(n, name+"/") })
}

// under lists the benchmarks under name (name/...), in order.
func (in *input) under(name string) []string {
	var out []string
	for _, n := range in.order {
		if strings.HasPrefix(n, name+"/") {
			out = append(out, n)
		}
	}
	return out
}

// args splits a command line as the shell would for the simple quoting
// make bench uses: words, and single-quoted strings.
func args(cmd string) []string {
	var out []string
	var w strings.Builder
	quoted, inWord := false, false
	for _, c := range cmd {
		switch {
		case c == '\'':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out
}

// selects reports whether cmd's -bench pattern takes the top-level
// benchmark name, as go test matches it (the part before the first
// unbracketed slash).
func selects(cmd, name string) bool {
	a := args(cmd)
	i := slices.Index(a, "-bench")
	if i < 0 || i+1 >= len(a) {
		return false
	}
	pat := a[i+1]
	depth := 0
top:
	for j, c := range pat {
		switch c {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '/':
			if depth == 0 {
				pat = pat[:j]
				break top
			}
		}
	}
	re, err := regexp.Compile(pat)
	return err == nil && re.MatchString(name)
}

// benchPackages are the packages of the benchmarks the sections show,
// so that a run's command says whether it was to run one: its -bench
// pattern may take every name, as "." does.
var benchPackages = map[string]string{
	perPacket[:len(perPacket)-1]:       "pkg/dataplane/xdp",
	perScheduler[:len(perScheduler)-1]: "pkg/dataplane/xdp",
	forwarding:                         "internal/e2e",
	daemonBench:                        "internal/e2e",
	vrrpFailover:                       "internal/e2e",
	vrrpInstances:                      "internal/e2e",
	healthChecks:                       "internal/e2e",
	mapMemory:                          "pkg/maps",
	"BenchmarkApply":                   "pkg/dataplane/xdp",
	"BenchmarkApplyOneWeight":          "pkg/dataplane/xdp",
	"BenchmarkApplyRealDown":           "pkg/dataplane/xdp",
}

// hasPackage reports whether cmd tests pkg (a path in this module).
func hasPackage(cmd, pkg string) bool {
	return slices.ContainsFunc(args(cmd), func(a string) bool {
		return a == "./"+pkg || a == module+"/"+pkg
	})
}

const module = "github.com/xlbd/xlbd"

// produced reports whether rn has results for name or under it.
func (in *input) produced(rn *run, name string) bool {
	return slices.ContainsFunc(in.order, func(n string) bool {
		return (n == name || strings.HasPrefix(n, name+"/")) && in.runOf[n] == rn
	})
}

// runsFor are the runs that had benchmark name or, when none had, those
// that were to have it: their command names its package (when benchmd
// knows it) and its -bench pattern takes it.
func (in *input) runsFor(name string) []*run {
	var out []*run
	for _, rn := range in.runs {
		if in.produced(rn, name) {
			out = append(out, rn)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, rn := range in.runs {
		pkg, known := benchPackages[name]
		if rn.cmd != "" && selects(rn.cmd, name) && (!known || hasPackage(rn.cmd, pkg)) {
			out = append(out, rn)
		}
	}
	return out
}

// ran is "Run: `cmd` (N s), as root." for the runs of names, one a line.
func (in *input) ran(names ...string) string {
	var seen []*run
	var b strings.Builder
	for _, name := range names {
		for _, rn := range in.runsFor(name) {
			if slices.Contains(seen, rn) || rn.cmd == "" {
				continue
			}
			seen = append(seen, rn)
			fmt.Fprintf(&b, "Run: `%s`", rn.cmd)
			if rn.secs >= 0 {
				fmt.Fprintf(&b, " (%s)", duration(rn.secs))
			}
			b.WriteString(", as root.\n")
		}
	}
	return b.String()
}

func duration(secs int) string {
	if secs < 120 {
		return fmt.Sprintf("%d s", secs)
	}
	return fmt.Sprintf("%.1f min", float64(secs)/60)
}

// notRun says why there are no results for name (a top-level benchmark),
// as "not run: ...".
func (in *input) notRun(name string) string {
	// The first benchmark under name that skipped or failed, preferring
	// one that said why: a parent fails with its failing child, silent.
	verdict := ""
	for _, rn := range in.runs {
		for _, kind := range []struct {
			m    map[string]string
			verb string
		}{{rn.skipped, "skipped"}, {rn.failed, "failed"}} {
			for _, n := range slices.Sorted(maps.Keys(kind.m)) {
				if n != name && !strings.HasPrefix(n, name+"/") {
					continue
				}
				if why := kind.m[n]; why != "" {
					return fmt.Sprintf("not run: %s %s: %s", n, kind.verb, why)
				}
				if verdict == "" {
					verdict = fmt.Sprintf("not run: %s %s", n, kind.verb)
				}
			}
		}
	}
	if verdict != "" {
		return verdict
	}
	for _, rn := range in.runsFor(name) {
		switch {
		case rn.exit > 0 && rn.problem != "":
			return fmt.Sprintf("not run: `%s` failed (exit status %d): %s", rn.cmd, rn.exit, rn.problem)
		case rn.exit > 0:
			return fmt.Sprintf("not run: `%s` failed (exit status %d)", rn.cmd, rn.exit)
		case rn.exit < 0:
			return fmt.Sprintf("not run: `%s` did not finish (%s has no exit status)", rn.cmd, rn.file)
		default:
			return fmt.Sprintf("not run: `%s` has no %s (not in this checkout?)", rn.cmd, name)
		}
	}
	why := fmt.Sprintf("not run: none of the inputs has %s", name)
	if len(in.missing) > 0 {
		why += fmt.Sprintf(" (missing: %s)", strings.Join(in.missing, ", "))
	}
	return why
}
