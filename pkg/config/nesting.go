package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/token"
)

// The YAML parser's time and memory grow with the square of how deeply a
// document nests (200 KB of "[" takes it gigabytes) and with the square of
// the keys in one block mapping (it recurses once per key). lb.yaml is
// therefore measured twice before it is parsed. yamlShape looks at the
// bytes, which costs nothing and stops a flood of brackets, indentation
// or keys where it passes the limit; tokenShape then counts on the YAML
// library's own tokens, which cost memory in proportion to the file
// (bounded by MaxFileSize) but cannot be misled by quoting the way a scan
// of bytes could be.

// shapeLimits are the limits yamlShape and tokenShape apply, as parameters
// for tests.
type shapeLimits struct{ depth, keys int }

var maxShape = shapeLimits{depth: MaxNesting, keys: MaxKeys}

// shapeError is what yamlShape and tokenShape find: the first line past a
// limit.
type shapeError struct {
	line int
	keys bool // too many keys in one mapping, rather than nested too deep
}

func (e *shapeError) Error() string {
	if e.keys {
		return fmt.Sprintf("more than %d keys in one mapping", MaxKeys)
	}
	return fmt.Sprintf("lists and mappings nested more than %d deep", MaxNesting)
}

// blockLevel is one open block collection: the column its entries begin at,
// and how many mapping keys it has had.
type blockLevel struct{ col, keys int }

// levels is a stack of open block collections, innermost last.
type levels []blockLevel

// indent moves to a node that begins at column col: it closes the levels
// deeper than col and opens col if it is deeper than the last. key says
// whether the node counts as a key of its level: a "- " entry does not,
// since the parser reads a sequence in one pass.
func (l *levels) indent(col int, key bool) {
	s := *l
	for len(s) > 0 && s[len(s)-1].col > col {
		s = s[:len(s)-1]
	}
	if len(s) == 0 || s[len(s)-1].col < col {
		s = append(s, blockLevel{col: col})
	}
	if key {
		s[len(s)-1].keys++
	}
	*l = s
}

// check returns an error at line n if the stack with flow open flow
// collections is past lim.
func (l levels) check(n, flow int, lim shapeLimits) *shapeError {
	if len(l)+flow > lim.depth {
		return &shapeError{line: n}
	}
	if len(l) > 0 && l[len(l)-1].keys > lim.keys {
		return &shapeError{line: n, keys: true}
	}
	return nil
}

// yamlShape finds the first line of data where flow collections ([ ] and
// { }) and block indentation levels together nest deeper than lim.depth,
// or where a block mapping has more than lim.keys keys. It reads YAML only
// as far as counting needs: comments, quoted strings and block scalars (|
// and >) are passed over, so that brackets written in them do not count,
// and a bracket inside a plain scalar in block context ("path: /a[1]")
// does not open anything. Where it reads YAML differently from the parser
// it may count less than the parser would, never much more on a real
// file; tokenShape has the last word.
func yamlShape(data []byte, lim shapeLimits) *shapeError {
	var (
		block  levels
		flow   int  // open flow collections
		start  bool // at the start of a node, where "[" or a quote opens one
		scalar = -1 // in a block scalar: the column its lines are indented past
		text   = -1 // and the indentation of its first line, once read
	)
	for n := 1; len(data) > 0; n++ {
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		col := 0
		for col < len(l) && l[col] == ' ' {
			col++
		}
		blank := len(bytes.TrimSpace(l[col:])) == 0
		if scalar >= 0 {
			if text < 0 && !blank && col > scalar {
				text = col
			}
			if blank || (text >= 0 && col >= text) {
				continue
			}
			scalar, text = -1, -1
		}
		if blank || l[col] == '#' {
			continue
		}

		i := col
		if flow == 0 {
			start = true
			if col == 0 && len(l) >= 3 && (string(l[:3]) == "---" || string(l[:3]) == "...") && (len(l) == 3 || isBlank(l[3])) {
				block = block[:0] // a new document
				i = 3
			} else {
				block.indent(col, !isEntry(l, col))
			}
		}
		if err := block.check(n, flow, lim); err != nil {
			return err
		}
		node, tok := col, col // where the current node and token begin
		for i < len(l) {
			c := l[i]
			switch {
			case isBlank(c):
				i++
				continue
			case c == '#' && (i == 0 || isBlank(l[i-1])):
				i = len(l) // a comment
				continue
			}
			if start {
				tok = i
			}
			switch {
			case start && (c == '\'' || c == '"'):
				i = skipQuoted(l, i)
				start = false
				continue
			case c == '[' || c == '{':
				if start || flow > 0 {
					flow++
					if err := block.check(n, flow, lim); err != nil {
						return err
					}
					start = true
					i++
					continue
				}
			case (c == ']' || c == '}') && flow > 0:
				flow--
				start = false
				i++
				continue
			case c == ',' && flow > 0:
				start = true
				i++
				continue
			case start && flow == 0 && (c == '-' || c == '?' || c == ':') && (i+1 == len(l) || isBlank(l[i+1])):
				// "- ", "? " or ": " before a node on the same line: a
				// level deeper, at the node's column.
				node = i
				j := i + 1
				for j < len(l) && isBlank(l[j]) {
					j++
				}
				if j < len(l) && l[j] != '#' {
					block.indent(j, !isEntry(l, j))
					if err := block.check(n, flow, lim); err != nil {
						return err
					}
				}
				i = j
				continue
			case c == ':' && (i+1 == len(l) || isBlank(l[i+1]) || (flow > 0 && strings.IndexByte(",[]{}", l[i+1]) >= 0)):
				// A key's ": ", after which a value begins.
				node = tok
				start = true
				i++
				continue
			case start && (c == '&' || c == '!'):
				// An anchor or a tag: the node comes after it.
				for i < len(l) && !isBlank(l[i]) {
					i++
				}
				continue
			case start && flow == 0 && (c == '|' || c == '>'):
				// A block scalar: its lines are indented past the node
				// that holds it, as far as the first of them.
				scalar, text = node, -1
				i = len(l)
				continue
			}
			start = false // inside a plain scalar
			i++
		}
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// isEntry says whether l has a block sequence entry ("- ") at i.
func isEntry(l []byte, i int) bool {
	return l[i] == '-' && (i+1 == len(l) || isBlank(l[i+1]))
}

// skipQuoted returns the index just past the quoted string that begins at
// l[i], or len(l) if it goes on past the line. A string that goes on is
// not followed onto the next lines: counting what is in it is the safer
// mistake.
func skipQuoted(l []byte, i int) int {
	q := l[i]
	for i++; i < len(l); i++ {
		switch {
		case q == '"' && l[i] == '\\':
			i++
		case l[i] == q && q == '\'' && i+1 < len(l) && l[i+1] == '\'':
			i++ // '' is a quote inside '...'
		case l[i] == q:
			return i + 1
		}
	}
	return len(l)
}

// tokenShape is yamlShape on the parser's tokens.
func tokenShape(tks token.Tokens, lim shapeLimits) *shapeError {
	var block levels
	flow, line := 0, 0
	for i, tk := range tks {
		p := tk.Position
		if p == nil || tk.Type == token.CommentType {
			continue
		}
		// A block scalar's text is one token after its | or > header,
		// placed where it likes (column 0 at times): not a level.
		scalar := i > 0 && (tks[i-1].Type == token.LiteralType || tks[i-1].Type == token.FoldedType)
		if flow == 0 && p.Line != line && !scalar {
			if tk.Type == token.DocumentHeaderType {
				block = block[:0]
			} else {
				block.indent(p.Column, tk.Type != token.SequenceEntryType)
			}
		}
		line = p.Line
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType, token.MappingKeyType:
			if flow == 0 && i+1 < len(tks) {
				if next := tks[i+1]; next.Type != token.CommentType && next.Position != nil && next.Position.Line == p.Line {
					block.indent(next.Position.Column, next.Type != token.SequenceEntryType)
				}
			}
		}
		if err := block.check(p.Line, flow, lim); err != nil {
			return err
		}
	}
	return nil
}
