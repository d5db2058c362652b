package config

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// bounded runs f, a load of a bad configuration, and checks that it
// returns (in milliseconds when the machine is quiet; the bound is a hang
// detector, generous for a loaded CI machine), allocates less than maxAlloc bytes on the way,
// and keeps next to nothing once it has failed: the daemon runs a reload
// in its main loop and goes on after a failed one. It returns f's error.
func bounded(t *testing.T, maxAlloc uint64, f func() error) error {
	t.Helper()
	return boundedIn(t, 10*time.Second, maxAlloc, f)
}

// boundedIn is bounded with the time as a parameter.
func boundedIn(t *testing.T, maxTime time.Duration, maxAlloc uint64, f func() error) error {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		// Blocked on a FIFO, or reading /dev/zero until memory runs out:
		// stop the whole test binary rather than let it go on.
		panic(fmt.Sprintf("%s: the load did not return in 60s", t.Name()))
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(err)
	t.Logf("returned in %v, allocated %.2f MiB, kept %d KiB", took.Round(time.Microsecond), float64(alloc)/(1<<20), kept>>10)
	if took > maxTime {
		t.Errorf("took %v, want under %v", took, maxTime)
	}
	if alloc > maxAlloc {
		t.Errorf("allocated %d bytes, want at most %d", alloc, maxAlloc)
	}
	if kept > 1<<20 {
		t.Errorf("%d bytes still in use after the failed load, want under 1 MiB", kept)
	}
	return err
}

// deepYAML is n levels of block indentation, one space each.
func deepYAML(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	return b.String()
}

// lb.yaml nested past MaxNesting, or with more than MaxKeys keys in one
// block mapping, is refused before the YAML parser, whose time and memory
// grow with the square of either, sees it.
func TestYAMLShape(t *testing.T) {
	const size = 200 << 10
	deep := fmt.Sprintf("lists and mappings nested more than %d deep", MaxNesting)
	wide := fmt.Sprintf("more than %d keys in one mapping", MaxKeys)
	keys := func(n int, indent string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%sk%d: 1\n", indent, i)
		}
		return b.String()
	}
	for _, tt := range []struct {
		name, yaml string
		line       int    // of the error; 0: none
		want       string // the error, if not deep
	}{
		{"brackets", strings.Repeat("[", size), 1, ""},
		{"braces", strings.Repeat("{", size), 1, ""},
		{"maps in lists", "virtual_servers: " + strings.Repeat("[{a: ", size/5), 1, ""},
		{"brackets on lines", strings.Repeat("[\n", size/2), MaxNesting, ""},
		{"block indentation", deepYAML(640), MaxNesting + 1, ""},
		{"sequence entries", strings.Repeat("- ", size/2), 1, ""},
		{"indented sequences", func() string {
			var b strings.Builder
			for i := range 640 {
				b.WriteString(strings.Repeat("  ", i) + "-\n")
			}
			return b.String()
		}(), MaxNesting + 1, ""},
		{"indentation then brackets", deepYAML(40) + strings.Repeat(" ", 40) + "a: " + strings.Repeat("[", 40), 41, ""},
		// The parser's tokens are counted too: the scan of bytes reads a
		// "]" that opens nothing as plain text, the parser does not.
		{"what only the parser's tokens show", "a: ]" + strings.Repeat("[", 1000), 1, ""},

		{"at the limit", strings.Repeat("[", MaxNesting-1) + strings.Repeat("]", MaxNesting-1), 0, ""},
		{"indentation at the limit", deepYAML(MaxNesting), 0, ""},
		{"quoted", "a: '" + strings.Repeat("[", 1000) + "'\nb: \"" + strings.Repeat("{", 1000) + "\"\n", 0, ""},
		{"quoted with escapes", `a: ['it''s [', "\"[\\", '[']` + "\n", 0, ""},
		{"comment", "a: 1 # " + strings.Repeat("[", 1000) + "\n# " + strings.Repeat("{", 1000) + "\n", 0, ""},
		{"plain scalar", "a: x" + strings.Repeat("[", 1000) + "\n", 0, ""},
		{"block scalar", "a: |\n  " + strings.Repeat("[", 1000) + "\n" + strings.Repeat("   [[[[\n", 100) +
			"b: >-\n  " + strings.ReplaceAll(deepYAML(100), "\n", "\n  ") + "\nc: 1\n", 0, ""},
		{"documents", strings.Repeat(deepYAML(40)+"---\n", 10), 0, ""},

		{"keys", keys(size/8, ""), MaxKeys + 1, wide},
		{"keys in a list item", "a:\n  - b: 1\n" + keys(size/10, "    "), MaxKeys + 2, wide},
		{"keys at the limit", keys(MaxKeys, ""), 0, ""},
		{"keys in many mappings", strings.Repeat("- "+strings.TrimPrefix(keys(MaxKeys/2, "  "), "  "), 10), 0, ""},
		{"list items", "a:\n" + strings.Repeat("- b: 1\n", size/8), 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.line != 0 {
				err = bounded(t, 1<<20, func() error {
					_, err := Parse("lb.yaml", []byte(tt.yaml))
					return err
				})
			} else {
				_, err = Parse("lb.yaml", []byte(tt.yaml))
			}
			if tt.want == "" {
				tt.want = deep
			}
			want := fmt.Sprintf("lb.yaml:%d: %s", tt.line, tt.want)
			switch {
			case err == nil:
				t.Fatalf("no error")
			case tt.line != 0 && err.Error() != want:
				t.Errorf("err = %.300s\nwant %s", err, want)
			case tt.line == 0 && (strings.Contains(err.Error(), deep) || strings.Contains(err.Error(), wide)):
				t.Errorf("err = %.300s\nwant neither %q nor %q", err, deep, wide)
			}
		})
	}
}

// keepalived.conf blocks nested past MaxNesting cost no more than the
// error: the parser does not recurse into them and the lexer keeps no
// tokens for what is inside.
func TestKeepalivedNesting(t *testing.T) {
	const size = 200 << 10
	deep := fmt.Sprintf("blocks nested more than %d deep", MaxNesting)
	// Each "{" alone says it has no keyword, down to the one too deep.
	stray := strings.Repeat(`ka.conf:1: "{" without a keyword before it`+"\n", MaxNesting+1)
	for _, tt := range []struct {
		name, conf, want string
	}{
		{"braces", strings.Repeat("{", size),
			stray + "ka.conf:1: " + deep + "\n" + `ka.conf:1: unbalanced braces: this "{" is never closed`},
		{"balanced braces", strings.Repeat("{", size) + strings.Repeat("}", size),
			stray + "ka.conf:1: " + deep},
		{"blocks on lines", strings.Repeat("x {\n", size/4) + strings.Repeat("}\n", size/4),
			"ka.conf:1: x: unknown keyword \"x\"\nka.conf:65: " + deep},
		{"include inside", strings.Repeat("x {\n", 70) + "include /dev/zero\n" + strings.Repeat("}\n", 70),
			"ka.conf:1: x: unknown keyword \"x\"\nka.conf:65: " + deep},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := bounded(t, 4<<20, func() error {
				_, err := ParseKeepalived("ka.conf", []byte(tt.conf), nil, nil)
				return err
			})
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %.300v\nwant %s", err, tt.want)
			}
		})
	}
}

// A keepalived.conf of nothing but braces or unknown keywords costs
// little memory: the parser takes tokens from the lexer one at a time, and
// each top-level statement is read into the tree and let go.
func TestKeepalivedFlood(t *testing.T) {
	const size = 2 << 20
	for _, tt := range []struct{ name, line, want string }{
		{"closing braces", "}\n", `ka.conf:1: unbalanced braces: "}" closes no block`},
		{"empty blocks", "{}\n", `ka.conf:1: "{" without a keyword before it`},
		{"unknown keywords", "x\n", `ka.conf:1: x: unknown keyword "x"`},
		{"unknown blocks", "x {\n}\n", `ka.conf:1: x: unknown keyword "x"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conf := []byte(strings.Repeat(tt.line, size/len(tt.line)))
			err := boundedIn(t, 30*time.Second, 256<<20, func() error {
				_, err := ParseKeepalived("ka.conf", conf, nil, nil)
				return err
			})
			list, ok := err.(ErrorList)
			if !ok || len(list) != MaxErrors+1 || list[0].Error() != tt.want {
				t.Errorf("%d errors, the first %v\nwant %d, the first %s", len(list), list[0], MaxErrors+1, tt.want)
			}
		})
	}
}

// Data handed to Parse and ParseKeepalived, and what a caller's readFile
// returns, is held to the same size limits as files read from disk.
func TestSizeLimits(t *testing.T) {
	big := make([]byte, MaxFileSize+1)
	want := "lb.yaml: larger than 4 MiB, the most xlbd reads of one configuration file"
	if _, err := Parse("lb.yaml", big); err == nil || err.Error() != want {
		t.Errorf("Parse: %v\nwant %s", err, want)
	}
	want = "ka.conf: larger than 4 MiB, the most xlbd reads of one configuration file"
	if _, err := ParseKeepalived("ka.conf", big, nil, nil); err == nil || err.Error() != want {
		t.Errorf("ParseKeepalived: %v\nwant %s", err, want)
	}
	files := memFS{"/k/big.conf": string(big)}
	want = `/k/ka.conf:1: include: include "big.conf": /k/big.conf: larger than 4 MiB, the most xlbd reads of one configuration file`
	if _, err := ParseKeepalived("/k/ka.conf", []byte("include big.conf\n"), files.read, files.glob); err == nil || err.Error() != want {
		t.Errorf("include: %v\nwant %s", err, want)
	}

	// More files than MaxFiles.
	files = memFS{}
	for i := range MaxFiles {
		files[fmt.Sprintf("/k/%04d.conf", i)] = ""
	}
	want = fmt.Sprintf(`/k/ka.conf:1: include: more than %d files included`, MaxFiles)
	if _, err := ParseKeepalived("/k/ka.conf", []byte("include *.conf\n"), files.read, files.glob); err == nil || err.Error() != want {
		t.Errorf("many files: %v\nwant %s", err, want)
	}
}

// A file with an error on every line returns MaxErrors of them and a
// count of the rest, not a list bigger than the file.
func TestErrorLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		parse  func() error
		errors int
	}{
		{"keepalived.conf", func() error {
			_, err := ParseKeepalived("ka.conf", []byte(strings.Repeat("}\n", 100000)), nil, nil)
			return err
		}, 100000},
		{"lb.yaml", func() error {
			// Two errors a line: an unknown key and no address.
			data := "virtual_servers:\n" + strings.Repeat("- {x: 1, port: 1}\n", 10000)
			_, err := Parse("lb.yaml", []byte(data))
			return err
		}, 20000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := boundedIn(t, 30*time.Second, 512<<20, tt.parse)
			list, ok := err.(ErrorList)
			if !ok || len(list) != MaxErrors+1 {
				t.Fatalf("got %d errors (%T), want %d", len(list), err, MaxErrors+1)
			}
			last := list[MaxErrors-1]
			want := fmt.Sprintf("%s:%d: too many errors: %d more not shown", last.File, last.Line, tt.errors-MaxErrors)
			if got := list[MaxErrors].Error(); got != want {
				t.Errorf("last error %s\nwant %s", got, want)
			}
		})
	}

	// Warnings likewise.
	conf := "virtual_server 10.0.0.1 80 {\n" + strings.Repeat(" hashed\n", 2*MaxErrors) + "}\n"
	cfg, err := ParseKeepalived("ka.conf", []byte(conf), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ka.conf:%d: warning: too many warnings: %d more not shown", MaxErrors+1, MaxErrors)
	if n := len(cfg.Warnings); n != MaxErrors+1 || cfg.Warnings[n-1].Warning() != want {
		t.Errorf("%d warnings, the last %s\nwant %d, the last %s", n, cfg.Warnings[n-1].Warning(), MaxErrors+1, want)
	}
}
