package config

// The raw types are the contract between a front end and validate. They hold
// what the file said, not what it means: every value keeps its text and
// position, and a missing field means the keyword was absent. A front end
// reports syntax, unknown or duplicate keywords and wrong shapes (a list
// where a value belongs); validate reports everything about meaning.
//
// The tree is generic rather than one struct per block: both front ends
// fill it by walking the same schema (schema.go), and validate reads fields
// by their lb.yaml names. Typed raw structs would need every keyword spelled
// out three times.

// pos locates something in the source for messages.
type pos struct {
	File string // empty: the main file
	Line int
	Path string
}

// rawValue is one scalar as written.
type rawValue struct {
	pos
	Text  string // as written, without quotes
	IsInt bool   // the front end read an integer literal
	Int   int64  // its value, saturated at the int64 limits on overflow

	// Bad means the keyword was there but the front end already reported
	// its value (say, a list where a port belongs). Validate then skips it
	// instead of calling it missing or adding a second message.
	Bad bool
}

// rawNode is a block (a YAML mapping): a virtual server, a checker, the
// address and port of a sorry_server.
type rawNode struct {
	pos
	// Bad means the front end reported something inside the block; the
	// block is then left out of duplicate and reference checks, whose
	// messages would be noise.
	Bad    bool
	fields map[string]*rawField
}

// rawField is one keyword of a block. Which member is set depends on the
// keyword's kind in the schema.
type rawField struct {
	pos               // the keyword itself
	as    string      // the name it was written as, for messages about old names
	val   *rawValue   // kValue, kFlag
	vals  []*rawValue // kWords, kValues
	node  *rawNode    // kStruct, kBlock
	items []*rawNode  // kItems, kLines
}

func newNode(p pos) *rawNode { return &rawNode{pos: p, fields: map[string]*rawField{}} }

func (n *rawNode) field(name string) *rawField {
	if n == nil {
		return nil
	}
	return n.fields[name]
}

func (n *rawNode) has(name string) bool { return n.field(name) != nil }

func (n *rawNode) val(name string) *rawValue {
	if f := n.field(name); f != nil {
		return f.val
	}
	return nil
}

func (n *rawNode) vals(name string) []*rawValue {
	if f := n.field(name); f != nil {
		return f.vals
	}
	return nil
}

func (n *rawNode) node(name string) *rawNode {
	if f := n.field(name); f != nil {
		return f.node
	}
	return nil
}

func (n *rawNode) items(name string) []*rawNode {
	if f := n.field(name); f != nil {
		return f.items
	}
	return nil
}

// setVal stores a single value, for front ends that synthesise one (a
// header's address, a checker's type).
func (n *rawNode) setVal(name string, v *rawValue) {
	n.fields[name] = &rawField{pos: v.pos, as: name, val: v}
}
