package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	yamllexer "github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// The YAML front end walks goccy/go-yaml's AST rather than decoding into
// structs: the decoder stops at the first problem and cannot tell where a
// missing key should have been, while the AST has a position for every key
// and value and lets us report every unknown key.

// yamlReader turns one YAML document into a raw tree.
type yamlReader struct {
	d *diag

	// anchors lists each anchor name's definitions in document order; an
	// alias refers to the last one before it.
	anchors map[string][]*ast.AnchorNode

	// budget bounds the nodes visited. Without aliases every node is seen
	// once; with them a small file can expand to a huge one ("billion
	// laughs"), which must not stall a reload.
	budget    int
	exhausted bool
}

func parseYAML(d *diag, data []byte) *rawNode {
	if len(data) > MaxFileSize {
		d.add(0, "", "%v", &sizeError{MaxFileSize})
		return newNode(pos{})
	}
	if err := yamlShape(data, maxShape); err != nil {
		d.add(err.line, "", "%v", err)
		return newNode(pos{})
	}
	f, err := parseBytes(data)
	if err != nil {
		line, msg := 0, err.Error()
		var ye yaml.Error
		var shape *shapeError
		if errors.As(err, &shape) {
			d.add(shape.line, "", "%v", shape)
			return newNode(pos{})
		}
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			line = tokenLine(ye.GetToken())
		}
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		d.add(line, "", "syntax error: %s", printable(msg))
		return newNode(pos{})
	}

	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			line := tokenLine(doc.Start)
			if line == 0 {
				line = startLine(doc.Body)
			}
			d.add(line, "", "more than one YAML document; lb.yaml must be a single document")
			break
		}
		body = doc.Body
	}
	if body == nil {
		// An empty file is a valid config with no services, as an empty
		// keepalived.conf is.
		return newNode(pos{})
	}

	r := &yamlReader{d: d, anchors: map[string][]*ast.AnchorNode{}, budget: 1<<20 + 4*len(data)}
	r.collectAnchors(body)
	raw := r.root(body)
	if r.exhausted {
		// What was read is a fraction of the document; validating it would
		// only add misleading messages.
		return newNode(pos{})
	}
	return raw
}

// parseBytes guards against a panic in the YAML library: a reload with a
// malformed file must fail with a message, not take the daemon down.
func parseBytes(data []byte) (f *ast.File, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("YAML parser failed: %v", p)
		}
	}()
	// The parser's time and memory grow with the square of the nesting
	// and of the keys in a mapping; yamlShape has had a cheap look, and
	// here the tokens tell exactly.
	tokens := yamllexer.Tokenize(string(data))
	if err := tokenShape(tokens, maxShape); err != nil {
		return nil, err
	}
	// Duplicate keys are allowed here only so that the parser does not stop
	// at the first one; the walk reports them together with everything else.
	return parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
}

// root reads the top-level mapping.
func (r *yamlReader) root(n ast.Node) *rawNode {
	root, _ := r.block(n, "", rootBlock, pos{Line: startLine(n)})
	return root
}

// block reads a mapping of b's keys into a node at p. ok is false when n
// is not a mapping at all, so that a list item can be dropped instead of
// having every required key reported missing.
func (r *yamlReader) block(n ast.Node, path string, b *block, p pos) (*rawNode, bool) {
	errs := r.d.errCount()
	node := newNode(p)
	entries, ok := r.mapping(n, path, b)
	for _, e := range entries {
		r.entry(node, e)
	}
	node.Bad = r.d.errCount() != errs
	return node, ok
}

func (r *yamlReader) entry(node *rawNode, e entry) {
	k := e.key
	f := &rawField{pos: pos{Line: e.line, Path: e.path}, as: e.as}
	node.fields[k.name] = f
	switch k.kind {
	case kValue, kFlag:
		f.val = r.scalar(e)
	case kWords, kValues:
		f.vals = r.scalars(e)
	case kStruct:
		f.node = r.structure(e, k)
	case kBlock:
		f.node, _ = r.block(e.value, e.path, k.sub, f.pos)
	case kItems, kLines:
		for i, item := range r.list(e.value, e.path) {
			path := e.path + "[" + strconv.Itoa(i) + "]"
			at := pos{Line: item.line, Path: path}
			var n *rawNode
			ok := true
			switch {
			case k.typed:
				n, ok = r.checker(item, at)
			case k.kind == kLines && k.short != "" && !r.isMapping(item.node):
				n = newNode(at)
				n.setVal(k.short, r.scalar(entry{line: item.line, path: path, value: item.node}))
				n.Bad = n.val(k.short).Bad
			default:
				n, ok = r.block(item.node, path, k.sub, at)
			}
			if ok {
				f.items = append(f.items, n)
			}
		}
	}
}

// isMapping reports whether n is a mapping, resolving aliases without
// reporting anything (the caller reads n again and reports then).
func (r *yamlReader) isMapping(n ast.Node) bool {
	for range 64 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			a := r.anchorFor(v)
			if a == nil {
				return false
			}
			n = a.Value
		case *ast.MappingNode, *ast.MappingValueNode:
			return true
		default:
			return false
		}
	}
	return false
}

// structure reads a keyword with named arguments: a mapping of them, or a
// scalar standing for the first.
func (r *yamlReader) structure(e entry, k *key) *rawNode {
	at := pos{Line: e.line, Path: e.path}
	if k.short == "" || r.isMapping(e.value) {
		n, _ := r.block(e.value, e.path, k.sub, at)
		return n
	}
	n := newNode(at)
	v := r.scalar(e)
	n.setVal(k.short, v)
	n.Bad = v.Bad
	return n
}

// scalars reads a list of values; a single value counts as a list of one,
// and an empty key as an empty list.
func (r *yamlReader) scalars(e entry) []*rawValue {
	n, ok := r.resolve(e.value, e.path)
	if !ok {
		return []*rawValue{{pos: pos{Line: e.line, Path: e.path}, Bad: true}}
	}
	switch n.(type) {
	case *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		var vals []*rawValue
		for i, item := range r.list(n, e.path) {
			vals = append(vals, r.scalar(entry{line: item.line, path: e.path + "[" + strconv.Itoa(i) + "]", value: item.node}))
		}
		return vals
	}
	return []*rawValue{r.scalar(e)}
}

// checker reads one item of checkers: a mapping with the checker's name as
// its only key, `- TCP_CHECK: {connect_timeout: 3}`, or just the name.
func (r *yamlReader) checker(item listItem, at pos) (*rawNode, bool) {
	n, ok := r.resolve(item.node, at.Path)
	if !ok {
		return nil, false
	}
	var name string
	var body ast.Node
	var nameLine int
	switch v := n.(type) {
	case *ast.StringNode:
		name, nameLine = v.Value, startLine(v)
	case *ast.MappingNode:
		if len(v.Values) == 1 && v.Values[0] != nil && v.Values[0].Key != nil {
			name, nameLine, body = keyText(v.Values[0].Key), tokenLine(v.Values[0].Key.GetToken()), v.Values[0].Value
		}
	case *ast.MappingValueNode:
		if v.Key != nil {
			name, nameLine, body = keyText(v.Key), tokenLine(v.Key.GetToken()), v.Value
		}
	}
	if name == "" {
		r.d.add(startLine(n), at.Path, "expected a checker: a mapping with one key such as TCP_CHECK, got %s", describe(n))
		return nil, false
	}
	path := at.Path + "." + name
	if _, known := checkerTypes[CheckerType(name)]; !known {
		if realServerBlock.ignored[name] {
			r.d.warn(pos{Line: nameLine, Path: path}, "checker %q is not implemented by xlbd; ignored", name)
		} else {
			r.d.add(nameLine, path, "unknown checker %q", name)
		}
		return nil, false
	}
	errs := r.d.errCount()
	var node *rawNode
	if body == nil {
		node = newNode(at)
	} else if node, ok = r.block(body, path, checkerBlock, at); !ok {
		return nil, false
	}
	node.setVal(checkerField, &rawValue{pos: pos{Line: nameLine, Path: path}, Text: name})
	node.Bad = r.d.errCount() != errs
	return node, true
}

// entry is one known key of a mapping.
type entry struct {
	key   *key
	as    string // the key as written
	line  int    // line of the key
	path  string // path including the key as written
	value ast.Node
}

// mapping returns the known keys of n in file order, reporting unknown and
// repeated ones and warning about keys keepalived knows but xlbd does not
// implement. ok is false when n is not a mapping at all. An empty item
// ("- ") counts as an empty mapping, whose missing keys are the useful
// message.
func (r *yamlReader) mapping(n ast.Node, path string, b *block) (_ []entry, ok bool) {
	n, ok = r.resolve(n, path)
	if !ok {
		return nil, false
	}
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	case *ast.NullNode:
		return nil, true
	default:
		if path == "" {
			r.d.add(startLine(n), "", "the top level must be a mapping, got %s", describe(n))
		} else {
			r.d.add(startLine(n), path, "expected a mapping, got %s", describe(n))
		}
		return nil, false
	}

	type firstKey struct {
		key  string
		line int
	}
	seen := map[string]firstKey{}
	var entries []entry
	for _, p := range pairs {
		if p == nil || p.Key == nil {
			continue
		}
		name, line := keyText(p.Key), tokenLine(p.Key.GetToken())
		kpath := join(path, name)
		if _, merge := p.Key.(*ast.MergeKeyNode); merge {
			r.d.add(line, kpath, "merge keys (<<) are not supported")
			continue
		}
		k := b.yaml[name]
		if k == nil {
			switch plural := pluralOf(b, name); {
			case b.ignored[name]:
				r.d.warn(pos{Line: line, Path: kpath}, "key %q is not implemented by xlbd; ignored", name)
			case plural != "":
				r.d.add(line, kpath, "unknown key %q (lb.yaml lists these under %q)", name, plural)
			default:
				r.d.add(line, kpath, "unknown key %q", name)
			}
			continue
		}
		if f, dup := seen[k.name]; dup {
			if f.key == name {
				r.d.add(line, kpath, "duplicate key %q (first at line %d)", name, f.line)
			} else {
				r.d.add(line, kpath, "duplicate key %q (already given as %q at line %d)", name, f.key, f.line)
			}
			continue
		}
		seen[k.name] = firstKey{name, line}
		entries = append(entries, entry{key: k, as: name, line: line, path: kpath, value: p.Value})
	}
	return entries, true
}

// pluralOf finds the lb.yaml list that holds what keepalived.conf calls
// name, for a hint when a keepalived keyword is used as a YAML key.
func pluralOf(b *block, name string) string {
	for _, k := range b.keys {
		if k.kind == kItems && slices.Contains(k.kws, name) {
			return k.name
		}
	}
	return ""
}

// listItem is one element of a YAML list with the line of its "-".
type listItem struct {
	line int
	node ast.Node
}

// list returns the items of a list; an empty value ("real_servers:") is an
// empty list.
func (r *yamlReader) list(n ast.Node, path string) []listItem {
	n, ok := r.resolve(n, path)
	if !ok {
		return nil
	}
	switch s := n.(type) {
	case *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		items := make([]listItem, 0, len(s.Values))
		for i, v := range s.Values {
			// In block style the "-" is where a reader looks for the item;
			// in flow style the entry token is the preceding comma.
			line := 0
			if !s.IsFlowStyle && i < len(s.Entries) && s.Entries[i] != nil {
				line = tokenLine(s.Entries[i].Start)
			}
			if line == 0 {
				line = startLine(v)
			}
			items = append(items, listItem{line: line, node: v})
		}
		return items
	}
	r.d.add(startLine(n), path, "expected a list, got %s", describe(n))
	return nil
}

// scalar reads the value of a key that takes a single value.
func (r *yamlReader) scalar(e entry) *rawValue {
	v := &rawValue{pos: pos{Line: e.line, Path: e.path}}
	n, ok := r.resolve(e.value, e.path)
	if !ok {
		v.Bad = true
		return v
	}
	if l := startLine(n); l > 0 {
		v.Line = l
	}
	switch s := n.(type) {
	case *ast.StringNode:
		v.Text = s.Value
		// The parser leaves integers too large for 64 bits as strings;
		// they are still integers, just out of every range we check.
		if s.Token != nil && s.Token.Type == token.StringType {
			if _, err := strconv.ParseInt(s.Value, 10, 64); errors.Is(err, strconv.ErrRange) {
				v.IsInt = true
				v.Int = math.MaxInt64
				if strings.HasPrefix(s.Value, "-") {
					v.Int = math.MinInt64
				}
			}
		}
	case *ast.IntegerNode:
		v.Text = s.Token.Value
		v.IsInt = true
		switch i := s.Value.(type) {
		case int64:
			v.Int = i
		case uint64:
			v.Int = math.MaxInt64
			if i <= math.MaxInt64 {
				v.Int = int64(i)
			}
		default:
			v.IsInt = false
		}
	case *ast.LiteralNode:
		if s.Value != nil {
			v.Text = s.Value.Value
		}
	case *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		v.Text = n.GetToken().Value
	case *ast.NullNode:
		r.d.add(v.Line, v.Path, "missing value")
		v.Bad = true
	default:
		r.d.add(v.Line, v.Path, "expected a single value, got %s", describe(n))
		v.Bad = true
	}
	return v
}

// resolve looks through anchors, aliases and tags to the node that holds
// the data. ok false means there is none and the problem was reported.
func (r *yamlReader) resolve(n ast.Node, path string) (_ ast.Node, ok bool) {
	if r.exhausted {
		return nil, false
	}
	if r.budget--; r.budget < 0 {
		r.exhausted = true
		r.d.add(startLine(n), path, "document too large after expanding aliases")
		return nil, false
	}
	// Each step moves to a node that starts later in the file or to an
	// anchor's value, so a cycle is impossible; the bound is a safeguard.
	for range 64 {
		switch v := n.(type) {
		case nil:
			// The parser writes "key:" as a null node, but be safe.
			return &ast.NullNode{BaseNode: &ast.BaseNode{}, Token: &token.Token{Value: "null"}}, true
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			// A tag would change how a value is read ("!!str 80"), and
			// honouring only some of them would be a trap.
			tag := ""
			if v.Start != nil {
				tag = v.Start.Value
			}
			r.d.add(startLine(v), path, "YAML tags (%s) are not supported", tag)
			return nil, false
		case *ast.AliasNode:
			target := r.anchorFor(v)
			if target == nil {
				r.d.add(startLine(v), path, "alias %q refers to no earlier anchor", keyText(v.Value))
				return nil, false
			}
			n = target.Value
		default:
			return n, true
		}
	}
	r.d.add(startLine(n), path, "too many nested anchors and aliases")
	return nil, false
}

func (r *yamlReader) anchorFor(alias *ast.AliasNode) *ast.AnchorNode {
	if alias.Value == nil {
		return nil
	}
	at := tokenOffset(alias.GetToken())
	var found *ast.AnchorNode
	for _, a := range r.anchors[keyText(alias.Value)] {
		if tokenOffset(a.GetToken()) < at {
			found = a
		}
	}
	return found
}

// collectAnchors records anchors anywhere in the document, since an alias
// may refer to one under a key the walk never visits.
func (r *yamlReader) collectAnchors(n ast.Node) {
	switch v := n.(type) {
	case *ast.AnchorNode:
		if v.Name != nil {
			name := keyText(v.Name)
			r.anchors[name] = append(r.anchors[name], v)
		}
		r.collectAnchors(v.Value)
	case *ast.MappingNode:
		for _, p := range v.Values {
			r.collectAnchors(p)
		}
	case *ast.MappingValueNode:
		if v != nil {
			r.collectAnchors(v.Key)
			r.collectAnchors(v.Value)
		}
	case *ast.MappingKeyNode:
		r.collectAnchors(v.Value)
	case *ast.SequenceNode:
		for _, item := range v.Values {
			r.collectAnchors(item)
		}
	case *ast.TagNode:
		r.collectAnchors(v.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// keyText is how a key (or anchor or alias name) appears in messages.
func keyText(n ast.Node) string {
	switch k := n.(type) {
	case nil:
		return ""
	case *ast.StringNode:
		if k != nil {
			return k.Value
		}
	case *ast.MappingKeyNode:
		return keyText(k.Value)
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "nothing"
	}
	return n.Type().String()
}

// startLine is the line where a reader would say n begins: for a block
// mapping that is its first key, not the ':' the parser anchors it to.
func startLine(n ast.Node) int {
	switch v := n.(type) {
	case nil:
		return 0
	case *ast.MappingNode:
		if v != nil && !v.IsFlowStyle && len(v.Values) > 0 && v.Values[0] != nil && v.Values[0].Key != nil {
			return tokenLine(v.Values[0].Key.GetToken())
		}
	case *ast.MappingValueNode:
		if v != nil && v.Key != nil {
			return tokenLine(v.Key.GetToken())
		}
	}
	return tokenLine(n.GetToken())
}

func tokenLine(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

func tokenOffset(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Offset
}

// printable keeps a message on one readable line; the parser quotes the
// offending character raw, which for a tab is invisible.
func printable(s string) string {
	return strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s)
}
