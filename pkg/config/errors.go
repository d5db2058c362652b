package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem has no single line
	Path string // where in the tree: "virtual_servers[0].port" in lb.yaml, "virtual_server[10.0.0.1 80].delay_loop" in keepalived.conf; may be empty
	Msg  string
}

// Error formats e as "FILE:LINE: PATH: message", the shape editors and
// compilers use, so the location is clickable in most terminals.
func (e *Error) Error() string { return e.format("") }

// Warning formats e as a warning: "FILE:LINE: warning: PATH: message".
func (e *Error) Warning() string { return e.format("warning: ") }

func (e *Error) format(tag string) string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(tag)
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one file, sorted by line.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find an individual *Error as well as the list.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// syntax says which front end is reading, for the few messages that name
// the unit of configuration: a YAML "key" or a keepalived.conf "keyword".
type syntax uint8

const (
	syntaxYAML syntax = iota
	syntaxKeepalived
)

func (s syntax) word() string {
	if s == syntaxKeepalived {
		return "keyword"
	}
	return "key"
}

// diag collects errors and warnings for one configuration, which may span
// several files (keepalived.conf includes), so that parsing and validation
// can go on after the first problem.
type diag struct {
	file   string // the main file; positions with no file of their own are in it
	syntax syntax
	files  []string // every file read, in order, for sorting
	errs   ErrorList
	warns  []*Error

	// nerr and nwarn count every problem found, which past MaxErrors is
	// more than errs and warns hold.
	nerr, nwarn int
}

func newDiag(file string, s syntax) *diag {
	return &diag{file: file, syntax: s, files: []string{file}}
}

// add reports an error in the main file.
func (d *diag) add(line int, path, format string, args ...any) {
	d.at(pos{Line: line, Path: path}, format, args...)
}

// at reports an error at p.
func (d *diag) at(p pos, format string, args ...any) {
	// A broken file can have an error on every line; keeping them all
	// would hold on to far more memory than the file itself.
	if d.nerr++; d.nerr <= MaxErrors {
		d.errs = append(d.errs, d.newError(p, format, args...))
	}
}

// warn records a warning at p.
func (d *diag) warn(p pos, format string, args ...any) {
	if d.nwarn++; d.nwarn <= MaxErrors {
		d.warns = append(d.warns, d.newError(p, format, args...))
	}
}

// errCount is the number of errors found so far, for callers that check
// whether a step found any.
func (d *diag) errCount() int { return d.nerr }

func (d *diag) newError(p pos, format string, args ...any) *Error {
	file := p.File
	if file == "" {
		file = d.file
	}
	return &Error{File: file, Line: p.Line, Path: p.Path, Msg: fmt.Sprintf(format, args...)}
}

// where formats p for messages that point back at an earlier place: just
// the line within the same file, the file and line across files.
func (d *diag) where(p, from pos) string {
	if d.fileOf(p) == d.fileOf(from) {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("%s:%d", d.fileOf(p), p.Line)
}

func (d *diag) fileOf(p pos) string {
	if p.File == "" {
		return d.file
	}
	return p.File
}

// sort orders problems by file, in the order the files were read, then by
// line. The sort is stable so that problems on one line stay in the order
// they were found, which follows the file.
func (d *diag) sort(l []*Error) {
	rank := make(map[string]int, len(d.files))
	for i, f := range d.files {
		if _, ok := rank[f]; !ok {
			rank[f] = i
		}
	}
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := cmp.Compare(rank[a.File], rank[b.File]); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}

// err returns the collected errors, sorted, or nil.
func (d *diag) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	d.sort(d.errs)
	return ErrorList(d.more(d.errs, d.nerr, "errors"))
}

func (d *diag) warnings() []*Error {
	d.sort(d.warns)
	return d.more(d.warns, d.nwarn, "warnings")
}

// more ends a list cut at MaxErrors with an entry that says so, at the
// place of the last one kept so that the list stays in order.
func (d *diag) more(l []*Error, found int, what string) []*Error {
	if found <= len(l) {
		return l
	}
	last := l[len(l)-1]
	return append(l, &Error{File: last.File, Line: last.Line, Msg: fmt.Sprintf("too many %s: %d more not shown", what, found-len(l))})
}
