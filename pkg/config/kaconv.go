package config

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// kaReader walks keepalived.conf statements against the schema and builds
// the raw tree. Paths in its messages name blocks by keyword and header,
// "virtual_server[10.0.0.1 80].real_server[10.0.0.2 80].weight", since
// keepalived.conf has no list indexes.
type kaReader struct {
	d *diag
	// seen records the single-valued keywords given in each block. It is
	// kept per node rather than per statement list because a repeated
	// global_defs continues the first one.
	seen map[*rawNode]map[string]seenAt
}

// seenAt remembers where a keyword was given, for duplicate messages.
type seenAt struct {
	as string
	at pos
}

func (c *kaReader) block(n *rawNode, stmts []*stmt, b *block, path string) {
	if c.seen == nil {
		c.seen = map[*rawNode]map[string]seenAt{}
	}
	seen := c.seen[n]
	if seen == nil {
		seen = map[string]seenAt{}
		c.seen[n] = seen
	}
	for _, st := range stmts {
		kw := st.kw.text
		kpath := join(path, kw)
		k := b.kw[kw]
		if k == nil || st.kw.quoted {
			if b.ignored[kw] {
				c.d.warn(st.kw.pos(kpath), "keyword %q is not implemented by xlbd; ignored", kw)
				continue
			}
			if yk := b.yaml[kw]; yk != nil && yk.yamlOnly && !st.kw.quoted {
				c.d.at(st.kw.pos(kpath), "%q is an lb.yaml setting that keepalived has no keyword for (`xlbd convert` gives lb.yaml)", kw)
				n.Bad = true
				continue
			}
			c.d.at(st.kw.pos(kpath), "unknown keyword %q", kw)
			n.Bad = true
			continue
		}
		errs := c.d.errCount()
		c.keyword(n, st, k, kpath, seen)
		if c.d.errCount() != errs {
			n.Bad = true
		}
	}
}

func (c *kaReader) keyword(n *rawNode, st *stmt, k *key, kpath string, seen map[string]seenAt) {
	kw := st.kw.text
	at := st.kw.pos(kpath)
	takesBlock := k.kind == kValues || k.kind == kBlock || k.kind == kItems || k.kind == kLines
	switch {
	case st.hasBlock && !takesBlock:
		c.d.at(st.open.pos(kpath), "%s does not take a { } block", kw)
		return
	case !st.hasBlock && (k.kind == kValues || k.kind == kBlock || k.kind == kLines):
		c.d.at(at, "%s needs a { } block", kw)
		return
	}

	// Repeating a single-valued keyword is almost always a mistake that
	// keepalived would hide by keeping the last one.
	if k.kind == kValue || k.kind == kFlag || k.kind == kStruct {
		if f, dup := seen[k.name]; dup {
			if f.as == kw {
				c.d.at(at, "duplicate keyword %q (first at %s)", kw, c.d.where(f.at, at))
			} else {
				c.d.at(at, "duplicate keyword %q (already given as %q at %s)", kw, f.as, c.d.where(f.at, at))
			}
			return
		}
		seen[k.name] = seenAt{kw, at}
	}

	f := n.fields[k.name]
	if f == nil {
		f = &rawField{pos: at, as: kw}
		n.fields[k.name] = f
	}
	switch k.kind {
	case kValue:
		if k.ka != nil {
			sub := newNode(at)
			k.ka(c, sub, st)
			f.val = sub.val("")
			if f.val == nil {
				f.val = &rawValue{pos: at, Bad: true}
			}
			return
		}
		f.val = c.single(st, at, k.optional)
	case kFlag:
		switch len(st.args) {
		case 0:
			f.val = &rawValue{pos: at, Text: "true"}
		case 1:
			f.val = c.value(st.args[0], kpath)
		default:
			c.tooMany(st, at)
			f.val = &rawValue{pos: at, Bad: true}
		}
	case kWords:
		if len(st.args) == 0 {
			c.d.at(at, "%s needs a value", kw)
		}
		for _, a := range st.args {
			f.vals = append(f.vals, c.value(a, kpath))
		}
	case kValues:
		c.noArgs(st, at)
		for _, line := range st.block {
			if line.hasBlock {
				c.d.at(line.open.pos(kpath), "unexpected { } block in %s", kw)
			}
			for _, w := range append([]tok{line.kw}, line.args...) {
				f.vals = append(f.vals, c.value(w, kpath))
			}
		}
	case kStruct:
		f.node = newNode(at)
		errs := c.d.errCount()
		k.ka(c, f.node, st)
		f.node.Bad = c.d.errCount() != errs
	case kBlock:
		c.noArgs(st, at)
		if f.node == nil {
			f.node = newNode(at)
		}
		c.block(f.node, st.block, k.sub, kpath)
	case kItems:
		c.item(f, st, k, kpath)
	case kLines:
		c.noArgs(st, at)
		for _, line := range st.block {
			if line.hasBlock {
				c.d.at(line.open.pos(kpath), "unexpected { } block in %s", kw)
				continue
			}
			item := newNode(line.kw.pos(kpath))
			k.ka(c, item, line)
			f.items = append(f.items, item)
		}
	}
}

func (c *kaReader) item(f *rawField, st *stmt, k *key, kpath string) {
	seg := st.kw.text
	if len(st.args) > 0 {
		words := make([]string, len(st.args))
		for i, a := range st.args {
			words[i] = a.text
		}
		seg += "[" + strings.Join(words, " ") + "]"
	}
	path := strings.TrimSuffix(kpath, st.kw.text) + seg
	n := newNode(st.kw.pos(path))
	errs := c.d.errCount()
	k.ka(c, n, st)
	if k.kaBody != nil {
		k.kaBody(c, n, st.block)
	} else {
		c.block(n, st.block, k.sub, path)
	}
	if c.d.errCount() != errs {
		n.Bad = true
	}
	f.items = append(f.items, n)
}

// value turns a word into a raw value; keepalived does not distinguish
// quoted numbers from bare ones, so neither does this.
func (c *kaReader) value(t tok, path string) *rawValue {
	v := &rawValue{pos: t.pos(path), Text: t.text}
	if i, err := strconv.ParseInt(t.text, 10, 64); err == nil {
		v.IsInt, v.Int = true, i
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		v.IsInt, v.Int = true, math.MaxInt64
		if strings.HasPrefix(t.text, "-") {
			v.Int = math.MinInt64
		}
	}
	return v
}

func (c *kaReader) single(st *stmt, at pos, optional string) *rawValue {
	switch len(st.args) {
	case 0:
		if optional != "" {
			return &rawValue{pos: at, Text: optional, IsInt: true, Int: mustInt(optional)}
		}
		c.d.at(at, "%s needs a value", st.kw.text)
		return &rawValue{pos: at, Bad: true}
	case 1:
		return c.value(st.args[0], at.Path)
	}
	c.tooMany(st, at)
	return &rawValue{pos: at, Bad: true}
}

func mustInt(s string) int64 {
	i, _ := strconv.ParseInt(s, 10, 64)
	return i
}

func (c *kaReader) tooMany(st *stmt, at pos) {
	words := make([]string, len(st.args))
	for i, a := range st.args {
		words[i] = a.text
	}
	c.d.at(at, "%s takes a single value, got %d: %q (one keyword per line)", st.kw.text, len(st.args), strings.Join(words, " "))
}

func (c *kaReader) noArgs(st *stmt, at pos) {
	if len(st.args) > 0 {
		c.d.at(at, "%s takes no value before its { } block, got %q", st.kw.text, st.args[0].text)
	}
}

// args checks an argument count for the ka functions below.
func (c *kaReader) args(st *stmt, at pos, min, max int, want string) bool {
	if len(st.args) < min || len(st.args) > max {
		c.d.at(at, "%s needs %s", st.kw.text, want)
		return false
	}
	return true
}

func (c *kaReader) set(n *rawNode, name string, t tok) {
	n.setVal(name, c.value(t, n.Path))
}

// The ka functions below parse keepalived.conf arguments; see kaFunc.

func kaName(c *kaReader, n *rawNode, st *stmt) {
	if !c.args(st, n.pos, 1, 1, "a name") {
		n.setVal("name", &rawValue{pos: n.pos, Bad: true})
		return
	}
	c.set(n, "name", st.args[0])
}

func kaVirtualServer(c *kaReader, n *rawNode, st *stmt) {
	a := st.args
	switch {
	case len(a) == 2 && a[0].text == "fwmark":
		c.set(n, "fwmark", a[1])
	case len(a) == 2 && a[0].text == "group":
		c.set(n, "group", a[1])
	case len(a) == 2:
		c.set(n, "address", a[0])
		c.set(n, "port", a[1])
	default:
		c.d.at(n.pos, "virtual_server needs IP PORT, fwmark N or group NAME")
		n.setVal("address", &rawValue{pos: n.pos, Bad: true})
		n.setVal("port", &rawValue{pos: n.pos, Bad: true})
	}
}

// kaRealServer leaves a missing port absent; validate gives it the
// virtual server's port, as IPVS does.
func kaRealServer(c *kaReader, n *rawNode, st *stmt) {
	if !c.args(st, n.pos, 1, 2, "IP [PORT]") {
		n.setVal("address", &rawValue{pos: n.pos, Bad: true})
		n.setVal("port", &rawValue{pos: n.pos, Bad: true})
		return
	}
	c.set(n, "address", st.args[0])
	if len(st.args) == 2 {
		c.set(n, "port", st.args[1])
	}
}

func kaChecker(c *kaReader, n *rawNode, st *stmt) {
	n.setVal(checkerField, &rawValue{pos: n.pos, Text: st.kw.text})
	c.noArgs(st, n.pos)
}

func kaNoArgs(c *kaReader, n *rawNode, st *stmt) { c.noArgs(st, n.pos) }

func kaAddrPort(c *kaReader, n *rawNode, st *stmt) {
	if c.args(st, n.pos, 1, 2, "IP [PORT]") {
		c.set(n, "address", st.args[0])
		if len(st.args) == 2 {
			c.set(n, "port", st.args[1])
		}
	}
}

func kaUser(c *kaReader, n *rawNode, st *stmt) {
	if c.args(st, n.pos, 1, 2, "USER [GROUP]") {
		c.set(n, "user", st.args[0])
		if len(st.args) == 2 {
			c.set(n, "group", st.args[1])
		}
	}
}

func kaNotify(c *kaReader, n *rawNode, st *stmt) {
	if c.args(st, n.pos, 1, 3, `a script ("/path/script args" in quotes when it has arguments) and optionally USER [GROUP]`) {
		c.set(n, "script", st.args[0])
		if len(st.args) >= 2 {
			c.set(n, "user", st.args[1])
		}
		if len(st.args) == 3 {
			c.set(n, "group", st.args[2])
		}
	}
}

// kaCommand keeps every word as the command, as keepalived does for script
// and misc_path; a single (usually quoted) word is the whole command line.
func kaCommand(c *kaReader, n *rawNode, st *stmt) {
	if !c.args(st, n.pos, 1, math.MaxInt, "a command") {
		return
	}
	cmd := st.args[0].text
	if len(st.args) > 1 {
		// The words as written: Script.Args splits them the way
		// keepalived does, honouring single quotes too.
		words := make([]string, len(st.args))
		for i, a := range st.args {
			words[i] = a.text
			if a.quoted {
				words[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a.text) + `"`
			}
		}
		cmd = strings.Join(words, " ")
	}
	n.setVal("", &rawValue{pos: st.args[0].pos(n.Path), Text: cmd})
}

// kaJoin keeps every word, for hex strings keepalived lets contain spaces.
func kaJoin(c *kaReader, n *rawNode, st *stmt) {
	if len(st.args) == 0 {
		if st.kw.text == "require_reply" {
			n.setVal("", &rawValue{pos: n.pos, Text: "true"})
			return
		}
		c.d.at(n.pos, "%s needs a value", st.kw.text)
		return
	}
	words := make([]string, len(st.args))
	for i, a := range st.args {
		words[i] = a.text
	}
	n.setVal("", &rawValue{pos: st.args[0].pos(n.Path), Text: strings.Join(words, " ")})
}

func kaWeight(c *kaReader, n *rawNode, st *stmt) {
	if !c.args(st, n.pos, 1, 2, "N [reverse]") {
		return
	}
	c.set(n, "value", st.args[0])
	if len(st.args) == 2 {
		switch r := st.args[1]; r.text {
		case "reverse":
			n.setVal("reverse", &rawValue{pos: r.pos(n.Path), Text: "true"})
		case "noreverse":
			n.setVal("reverse", &rawValue{pos: r.pos(n.Path), Text: "false"})
		default:
			c.d.at(r.pos(n.Path), "unknown weight option %q (want reverse or noreverse)", r.text)
		}
	}
}

func kaLVSTimeouts(c *kaReader, n *rawNode, st *stmt) {
	a := st.args
	if len(a) == 0 || len(a)%2 != 0 {
		c.d.at(n.pos, "lvs_timeouts needs [tcp N] [tcpfin N] [udp N]")
		return
	}
	c.options(n, a, "lvs_timeouts", "protocol", "tcp", "tcpfin", "udp")
}

// kaLVSSyncDaemon reads "lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N]
// [maxlen N] [port N] [ttl N] [group IP]".
func kaLVSSyncDaemon(c *kaReader, n *rawNode, st *stmt) {
	a := st.args
	if len(a) < 2 || len(a)%2 != 0 {
		c.d.at(n.pos, "lvs_sync_daemon needs INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]")
		return
	}
	c.set(n, "interface", a[0])
	c.set(n, "instance", a[1])
	c.options(n, a[2:], "lvs_sync_daemon", "option", "id", "maxlen", "port", "ttl", "group")
}

// options sets keyword's "NAME VALUE" pairs in a, each NAME one of names
// and given once.
func (c *kaReader) options(n *rawNode, a []tok, keyword, what string, names ...string) {
	for i := 0; i+1 < len(a); i += 2 {
		switch {
		case !slices.Contains(names, a[i].text):
			c.d.at(a[i].pos(n.Path), "unknown %s %s %q (want %s or %s)", keyword, what, a[i].text,
				strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		case n.has(a[i].text):
			c.d.at(a[i].pos(n.Path), "%s gives %s twice", keyword, a[i].text)
		default:
			c.set(n, a[i].text, a[i+1])
		}
	}
}

// kaLBKind accepts keepalived's tunnel options only where they describe
// what xlbd does (plain IPIP).
func kaLBKind(c *kaReader, n *rawNode, st *stmt) {
	if !c.args(st, n.pos, 1, math.MaxInt, "NAT, DR or TUN") {
		return
	}
	n.setVal("", c.value(st.args[0], n.Path))
	rest := st.args[1:]
	if len(rest) == 0 {
		return
	}
	if strings.EqualFold(st.args[0].text, "TUN") && len(rest) == 2 && rest[0].text == "type" && rest[1].text == "ipip" {
		return
	}
	words := make([]string, len(rest))
	for i, a := range rest {
		words[i] = a.text
	}
	c.d.at(rest[0].pos(n.Path), "%s options %q are not implemented yet (only IPIP tunnelling)", st.kw.text, strings.Join(words, " "))
}

// vipOptions lists what keepalived accepts after a virtual_ipaddress, with
// whether it takes a value.
var vipOptions = map[string]bool{
	"dev": true, "label": true, "scope": true, "brd": true, "broadcast": true, "peer": true,
	"preferred_lft": true, "track_group": true,
	"home": false, "-nodad": false, "nodad": false, "mngtmpaddr": false, "noprefixroute": false,
	"autojoin": false, "no_track": false, "use_vmac": false,
}

func kaVIP(c *kaReader, n *rawNode, st *stmt) {
	c.set(n, "address", st.kw)
	a := st.args
	for i := 0; i < len(a); i++ {
		opt := a[i]
		hasValue, known := vipOptions[opt.text]
		if !known {
			c.d.at(opt.pos(n.Path), "unknown virtual_ipaddress option %q", opt.text)
			return
		}
		if hasValue {
			if i+1 == len(a) {
				c.d.at(opt.pos(n.Path), "virtual_ipaddress option %s needs a value", opt.text)
				return
			}
			i++
		}
		switch opt.text {
		case "dev", "label", "scope":
			if n.has(opt.text) {
				c.d.at(opt.pos(n.Path), "virtual_ipaddress option %s given twice", opt.text)
				continue
			}
			c.set(n, opt.text, a[i])
		default:
			c.d.warn(opt.pos(n.Path), "virtual_ipaddress option %q is not implemented by xlbd; ignored", opt.text)
		}
	}
}

// kaTrack parses track_interface and track_script lines:
// NAME [weight N] [reverse|noreverse].
func kaTrack(c *kaReader, n *rawNode, st *stmt) {
	c.set(n, "name", st.kw)
	a := st.args
	for i := 0; i < len(a); i++ {
		switch opt := a[i]; opt.text {
		case "weight":
			if i+1 == len(a) {
				c.d.at(opt.pos(n.Path), "weight needs a value")
				return
			}
			i++
			c.set(n, "weight", a[i])
		case "reverse":
			n.setVal("reverse", &rawValue{pos: opt.pos(n.Path), Text: "true"})
		case "noreverse":
			n.setVal("reverse", &rawValue{pos: opt.pos(n.Path), Text: "false"})
		default:
			c.d.at(opt.pos(n.Path), "unknown option %q (want weight N, reverse or noreverse)", opt.text)
			return
		}
	}
}

func kaPeer(c *kaReader, n *rawNode, st *stmt) {
	c.set(n, "address", st.kw)
	a := st.args
	for i := 0; i < len(a); i += 2 {
		opt := a[i]
		if (opt.text != "min_ttl" && opt.text != "max_ttl") || i+1 == len(a) {
			c.d.at(opt.pos(n.Path), "unknown unicast_peer option %q (want min_ttl N or max_ttl N)", opt.text)
			return
		}
		c.d.warn(opt.pos(n.Path), "unicast_peer option %q is not implemented by xlbd; ignored", opt.text)
	}
}

// kaGroupBody reads a virtual_server_group's lines: "IP[-RANGE] [PORT]" or
// "fwmark N [inet|inet6]".
func kaGroupBody(c *kaReader, n *rawNode, body []*stmt) {
	f := &rawField{pos: n.pos, as: "members"}
	n.fields["members"] = f
	for _, line := range body {
		m := newNode(line.kw.pos(n.Path))
		switch {
		case line.hasBlock:
			c.d.at(line.open.pos(n.Path), "unexpected { } block in virtual_server_group")
			n.Bad = true
			continue
		case line.kw.text == "fwmark":
			if len(line.args) < 1 || len(line.args) > 2 {
				c.d.at(m.pos, "fwmark needs N [inet|inet6]")
				n.Bad = true
				continue
			}
			c.set(m, "fwmark", line.args[0])
			if len(line.args) == 2 {
				c.d.warn(line.args[1].pos(n.Path), "fwmark address family %q is not implemented by xlbd; ignored", line.args[1].text)
			}
		default:
			if len(line.args) > 1 {
				c.d.at(m.pos, "virtual_server_group entry needs IP[-RANGE] [PORT], got %d values", 1+len(line.args))
				n.Bad = true
				continue
			}
			c.set(m, "address", line.kw)
			if len(line.args) == 1 {
				c.set(m, "port", line.args[0])
			}
		}
		f.items = append(f.items, m)
	}
}
