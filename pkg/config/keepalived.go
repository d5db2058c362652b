package config

import (
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"path/filepath"
	"strings"
	"syscall"
)

// The keepalived.conf front end works in three stages, like keepalived's own
// parser: the lexer turns lines into words and braces (splicing in included
// files), the parser groups them into statements with their blocks, and
// kaReader (kaconv.go) walks the statements against the schema to build the
// raw tree. The stages run together: the parser pulls each token from the
// lexer as it needs it, and kaReader takes each top-level statement once
// it is complete, so that a file costs its raw tree and its largest
// top-level block, not a token for every brace. Keepalived's grammar is
// line based: a statement ends at the end of its line or at a brace, so
// `track_script { chk }` is a block holding one statement and `auth_type
// PASS auth_pass x` on one line is one statement with three arguments, as
// keepalived reads it.

type tokKind uint8

const (
	tWord tokKind = iota
	tOpen
	tClose
	tEOL
	tEOF
)

type tok struct {
	kind   tokKind
	text   string
	quoted bool // a quoted "{" is a word, not a brace
	file   string
	line   int
}

func (t tok) pos(path string) pos { return pos{File: t.file, Line: t.line, Path: path} }

func (t tok) String() string {
	switch t.kind {
	case tOpen:
		return `"{"`
	case tClose:
		return `"}"`
	case tEOL:
		return "end of line"
	case tEOF:
		return "end of file"
	}
	return fmt.Sprintf("%q", t.text)
}

// lexer reads a file and its includes within the limits in limits.go,
// which keep a hostile or broken file from exhausting the daemon: includes
// can multiply, and nesting is recursion.
type lexer struct {
	d     *diag
	read  func(name string, limit int64) ([]byte, error)
	glob  func(string) ([]string, error)
	yield func(tok) bool // gives the parser a token; false: stop
	stop  bool           // yield returned false
	stack []string       // files being read, innermost last, for cycle detection

	total int64 // bytes read, every file together
	full  bool  // total reached MaxTotalSize and that was reported
	depth int   // "{" not closed yet, as the parser will count them
}

// parseKeepalived reads data, the file filename, and what it includes.
// readFile, if not nil, replaces the file system for includes; the limits
// apply to what it returns.
func parseKeepalived(d *diag, filename string, data []byte, readFile func(string) ([]byte, error), glob func(string) ([]string, error)) *rawNode {
	if len(data) > MaxFileSize {
		d.add(0, "", "%v", &sizeError{MaxFileSize})
		return newNode(pos{File: filename})
	}
	lx := &lexer{d: d, read: readLimited, glob: glob, total: int64(len(data))}
	if readFile != nil {
		lx.read = func(name string, limit int64) ([]byte, error) {
			data, err := readFile(name)
			if err == nil {
				err = tooLarge(name, data, limit)
			}
			return data, err
		}
	}
	next, stop := iter.Pull(func(yield func(tok) bool) {
		lx.yield = yield
		lx.file(filename, data)
		if !lx.stop {
			yield(tok{kind: tEOF, file: filename})
		}
	})
	defer stop()
	p := &stmtParser{d: d, pull: next}
	c := &kaReader{d: d}
	root := newNode(pos{File: filename})
	p.stmts(0, tok{}, func(st *stmt) { c.block(root, []*stmt{st}, rootBlock, "") })
	return root
}

func (lx *lexer) file(name string, data []byte) {
	lx.stack = append(lx.stack, filepath.Clean(name))
	defer func() { lx.stack = lx.stack[:len(lx.stack)-1] }()

	rest := string(data)
	for i := 0; rest != "" && !lx.stop; i++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		at := tok{file: name, line: i + 1}
		text := lx.decomment(strings.TrimSuffix(line, "\r"), at)
		if text == "" {
			continue
		}
		// keepalived's preprocessor is not implemented. The rest of such a
		// line is still read, so that its braces keep the blocks balanced
		// and later messages make sense.
		switch {
		case text[0] == '@':
			lx.d.at(at.pos(""), "conditional configuration (lines starting with @) is not supported")
			text = text[strings.IndexAny(text+" ", " \t"):]
		case text[0] == '$':
			lx.d.at(at.pos(""), "parameter definitions ($NAME=...) are not supported")
			continue
		case text[0] == '~':
			lx.d.at(at.pos(""), "~SEQ and ~LST lines are not supported")
			if i := strings.IndexByte(text, ')'); i >= 0 {
				text = text[i+1:]
			} else {
				text = ""
			}
		}
		if text = strings.TrimSpace(text); text == "" {
			continue
		}
		// keepalived recognises an include before splitting braces, so
		// a csh-style {a,b} pattern stays one word.
		var words [3]tok // enough to tell "include PATTERN" from a longer line
		n := 0
		lx.words(text, at, false, func(t tok) bool {
			words[n] = t
			n++
			return n < len(words)
		})
		if n == 2 && !words[0].quoted && isInclude(words[0].text) {
			if lx.depth <= MaxNesting { // else the parser skips it anyway
				lx.include(words[1], at)
			}
			continue
		}
		lx.words(text, at, true, lx.emit)
		lx.emit(tok{kind: tEOL, file: name, line: at.line})
	}
}

// emit gives t to the parser, unless it lies inside a block nested deeper
// than MaxNesting: the parser reports that block and skips it, and a file
// of nothing but "{" would otherwise cost the parser a step for every
// byte. It returns false when the parser wants no more.
func (lx *lexer) emit(t tok) bool {
	switch t.kind {
	case tOpen:
		lx.depth++
		if lx.depth > MaxNesting+1 {
			return true
		}
	case tClose:
		if lx.depth == 0 {
			break // the parser reports a "}" that closes nothing
		}
		lx.depth--
		if lx.depth > MaxNesting {
			return true
		}
	default:
		if lx.depth > MaxNesting {
			return true
		}
	}
	if !lx.stop && !lx.yield(t) {
		lx.stop = true
	}
	return !lx.stop
}

// isInclude accepts keepalived's include variants, whose extra strictness
// xlbd applies to every include anyway.
func isInclude(w string) bool {
	switch w {
	case "include", "includer", "includem", "includew", "includeb", "includea":
		return true
	}
	return false
}

// decomment strips a comment ('#' or '!' outside double quotes, as in
// keepalived, which ignores single quotes here) and surrounding white
// space; "\#" and "\!" outside quotes stand for the characters themselves.
func (lx *lexer) decomment(line string, at tok) string {
	var b strings.Builder
	quote := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && !quote && i+1 < len(line) && (line[i+1] == '#' || line[i+1] == '!'):
			i++
			c = line[i]
		case !quote && (c == '#' || c == '!'):
			return strings.TrimSpace(b.String())
		}
		b.WriteByte(c)
	}
	if quote {
		lx.d.at(at.pos(""), "unterminated quote")
	}
	return strings.TrimSpace(b.String())
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

// words splits a decommented line as keepalived's alloc_strvec does: white
// space separates words, a double-quoted string is one word without its
// quotes, and (with braces) an unquoted '{' or '}' is a tok of its own
// wherever it appears. It gives each tok to yield, in order, until yield
// returns false, so that a line of a million braces costs no list.
func (lx *lexer) words(text string, at tok, braces bool, yield func(tok) bool) {
	mk := func(kind tokKind, s string, quoted bool) tok {
		return tok{kind: kind, text: s, quoted: quoted, file: at.file, line: at.line}
	}
	for i := 0; i < len(text); {
		var t tok
		c := text[i]
		switch {
		case isSpace(c):
			i++
			continue
		case c == '"':
			end := strings.IndexByte(text[i+1:], '"')
			if end < 0 {
				// decomment has reported it; the rest is the word.
				t = mk(tWord, text[i+1:], true)
				i = len(text)
				break
			}
			t = mk(tWord, text[i+1:i+1+end], true)
			i += end + 2
		case braces && c == '{':
			t = mk(tOpen, "{", false)
			i++
		case braces && c == '}':
			t = mk(tClose, "}", false)
			i++
		default:
			j := i
			for j < len(text) && !isSpace(text[j]) && text[j] != '"' && !(braces && (text[j] == '{' || text[j] == '}')) {
				j++
			}
			t = mk(tWord, text[i:j], false)
			i = j
		}
		if !yield(t) {
			return
		}
	}
}

// include splices the files matching pattern in place of the directive.
// Relative patterns are relative to the including file, as keepalived
// changes into its directory while reading it.
func (lx *lexer) include(pattern, at tok) {
	p := at.pos("include")
	cur := lx.stack[len(lx.stack)-1]
	if lx.full {
		return // the configuration is already over MaxTotalSize
	}
	if len(lx.stack) > MaxIncludeDepth {
		lx.d.at(p, "includes nested more than %d deep", MaxIncludeDepth)
		return
	}
	type match struct {
		name string
		glob bool // found by a pattern, not named
	}
	var matches []match
	for _, pat := range expandBraces(pattern.text) {
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(cur), pat)
		}
		m, err := lx.glob(pat)
		if err != nil {
			lx.d.at(p, "include %q: %v", pattern.text, err)
			return
		}
		if len(m) == 0 && !hasGlobMeta(pat) {
			lx.d.at(p, "include %q: no such file", pattern.text)
		}
		for _, name := range m {
			matches = append(matches, match{name, hasGlobMeta(pat)})
		}
	}
	if len(matches) == 0 && hasGlobMeta(pattern.text) {
		// keepalived's plain include allows an empty conf.d, but an
		// operator may well have expected files there.
		lx.d.warn(p, "include %q matches no files", pattern.text)
	}
	for _, mt := range matches {
		m := mt.name
		if i := indexOf(lx.stack, filepath.Clean(m)); i >= 0 {
			chain := append(append([]string{}, lx.stack[i:]...), m)
			lx.d.at(p, "include cycle: %s", strings.Join(chain, " -> "))
			continue
		}
		if len(lx.d.files) >= MaxFiles {
			lx.d.at(p, "more than %d files included", MaxFiles)
			return
		}
		limit := min(MaxFileSize, MaxTotalSize-lx.total)
		data, err := lx.read(m, limit)
		switch {
		case errors.Is(err, syscall.EISDIR) && mt.glob:
			continue // keepalived skips directories a pattern matches
		case errors.Is(err, syscall.EISDIR):
			lx.d.at(p, "include %q: %s is a directory (include %s to read the files in it)", pattern.text, m, filepath.Join(pattern.text, "*"))
			continue
		case errors.Is(err, ErrTooLarge) && limit < MaxFileSize:
			lx.d.at(p, "include %q: %s: with it the configuration is larger than %s, the most xlbd reads of a file and all it includes", pattern.text, m, sizeText(MaxTotalSize))
			lx.full = true
			return
		case err != nil:
			lx.d.at(p, "include %q: %s", pattern.text, pathErr(err))
			continue
		}
		lx.total += int64(len(data))
		lx.d.files = append(lx.d.files, m)
		lx.file(m, data)
	}
}

// pathErr writes a file error as "FILE: what", without the operation
// *fs.PathError puts first.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func hasGlobMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// expandBraces expands csh-style alternatives, "a{b,c}d" into "abd" and
// "acd", which keepalived's glob(GLOB_BRACE) accepts and Go's does not.
func expandBraces(p string) []string {
	depth, open := 0, -1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth > 0 {
				continue
			}
			var out []string
			for _, alt := range splitTopLevel(p[open+1 : i]) {
				out = append(out, expandBraces(p[:open]+alt+p[i+1:])...)
			}
			return out
		}
	}
	return []string{p}
}

func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// stmt is a keyword with its arguments and, if it has one, its block.
type stmt struct {
	kw       tok
	args     []tok
	hasBlock bool
	open     tok // the "{" of the block
	block    []*stmt
}

type stmtParser struct {
	d     *diag
	pull  func() (tok, bool) // the lexer's next token
	ahead tok                // the token peek has seen
	has   bool               // ahead is set
	// unclosed is set once a missing "}" has been reported, so that
	// every enclosing block does not report it again.
	unclosed bool
}

func (p *stmtParser) peek() tok {
	if !p.has {
		t, ok := p.pull()
		if !ok {
			t = tok{kind: tEOF}
		}
		p.ahead, p.has = t, true
	}
	return p.ahead
}

func (p *stmtParser) next() tok {
	t := p.peek()
	if t.kind != tEOF {
		p.has = false
	}
	return t
}

// stmts reads statements up to the "}" closing open (or the end of input
// at depth 0). If top is not nil it is given each statement as soon as it
// is complete, instead of the list.
func (p *stmtParser) stmts(depth int, open tok, top func(*stmt)) []*stmt {
	var list []*stmt
	for {
		t := p.next()
		switch t.kind {
		case tEOF:
			if depth > 0 && !p.unclosed {
				p.unclosed = true
				p.d.at(open.pos(""), `unbalanced braces: this "{" is never closed`)
			}
			return list
		case tEOL:
		case tClose:
			if depth > 0 {
				return list
			}
			p.d.at(t.pos(""), `unbalanced braces: "}" closes no block`)
		case tOpen:
			p.d.at(t.pos(""), `"{" without a keyword before it`)
			p.block(depth, t)
		case tWord:
			st := &stmt{kw: t}
			for p.peek().kind == tWord {
				st.args = append(st.args, p.next())
			}
			// keepalived also accepts the "{" on the next line. The line
			// ends passed over on the way mean nothing here if none comes.
			for p.peek().kind == tEOL {
				p.next()
			}
			if p.peek().kind == tOpen {
				st.hasBlock = true
				st.open = p.next()
				st.block = p.block(depth, st.open)
			}
			if top != nil {
				top(st)
			} else {
				list = append(list, st)
			}
		}
	}
}

func (p *stmtParser) block(depth int, open tok) []*stmt {
	if depth+1 > MaxNesting {
		p.d.at(open.pos(""), "blocks nested more than %d deep", MaxNesting)
		// Skip to the matching brace without recursing.
		for n := 1; n > 0; {
			switch p.next().kind {
			case tOpen:
				n++
			case tClose:
				n--
			case tEOF:
				return nil // stmts reports the unclosed block
			}
		}
		return nil
	}
	return p.stmts(depth+1, open, nil)
}

// splitCommand splits a command line like keepalived's
// alloc_strvec_quoted_escaped: white space separates words, single and
// double quotes group them (and are removed), and a backslash escapes the
// next character.
func splitCommand(s string) []string {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case isSpace(c) || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}
