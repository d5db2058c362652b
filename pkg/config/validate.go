package config

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The raw types are the contract between a front end and validate. They hold
// what the file said, not what it means: every value keeps its text and
// position, and a nil *rawValue means the key was absent. A front end
// reports syntax, unknown or duplicate keys and wrong shapes (a list where a
// value belongs); validate reports everything about meaning.

// pos locates something in the source for messages.
type pos struct {
	Line int
	Path string
}

// rawValue is one scalar as written.
type rawValue struct {
	pos
	Text  string // as written, without quotes
	IsInt bool   // the front end read an integer literal
	Int   int64  // its value, saturated at the int64 limits on overflow

	// Bad means the key was there but the front end already reported its
	// value (say, a list where a port belongs). Validate then skips it
	// instead of calling it missing or adding a second message.
	Bad bool
}

type rawConfig struct {
	VirtualServers []rawVirtualServer
}

// Bad on an item means the front end reported something inside it; the
// item is then left out of duplicate checks, whose messages would be noise.

type rawVirtualServer struct {
	pos
	Bad                                                bool
	Address, Port, Protocol, LBAlgo, LBKind, DelayLoop *rawValue
	RealServers                                        []rawRealServer
}

type rawRealServer struct {
	pos
	Bad                   bool
	Address, Port, Weight *rawValue
}

// validate builds the model from raw, reporting every problem to d. The
// returned config is only meaningful when d collected no errors.
func validate(d *diag, raw rawConfig) *Config {
	cfg := &Config{}
	seen := map[string]int{} // VirtualServer.Key → line
	for _, rvs := range raw.VirtualServers {
		vs, ok := validateVirtualServer(d, rvs)
		if !ok {
			continue
		}
		// Only a fully valid virtual server takes part in the duplicate
		// check: a half-parsed one could collide by accident and add noise.
		if first, dup := seen[vs.Key()]; dup {
			d.add(rvs.Line, rvs.Path, "duplicate virtual server %s (first at line %d)", vs.Key(), first)
			continue
		}
		seen[vs.Key()] = rvs.Line
		cfg.VirtualServers = append(cfg.VirtualServers, vs)
	}
	return cfg
}

func validateVirtualServer(d *diag, r rawVirtualServer) (VirtualServer, bool) {
	n := len(d.errs)
	vs := VirtualServer{
		Protocol:  DefaultProtocol,
		LBAlgo:    DefaultLBAlgo,
		LBKind:    DefaultLBKind,
		DelayLoop: DefaultDelayLoop,
		Line:      r.Line,
	}
	if required(d, r.pos, "address", r.Address) {
		vs.Address = addr(d, r.Address)
	}
	if required(d, r.pos, "port", r.Port) {
		vs.Port = port(d, r.Port)
	}
	if v := r.Protocol; usable(v) {
		switch strings.ToUpper(v.Text) {
		case "TCP":
			vs.Protocol = TCP
		case "UDP":
			vs.Protocol = UDP
		default:
			d.add(v.Line, v.Path, "unknown protocol %q (want TCP or UDP)", v.Text)
		}
	}
	if v := r.LBAlgo; usable(v) {
		// IPVS scheduler names are lower case; accepting any case costs
		// nothing and spares a reload failure over "RR".
		name := strings.ToLower(v.Text)
		switch implemented, known := schedulers[name]; {
		case !known:
			d.add(v.Line, v.Path, "unknown scheduler %q", v.Text)
		case !implemented:
			d.add(v.Line, v.Path, "lb_algo %q is not implemented yet (supported: %s)", v.Text, strings.Join(implementedSchedulers(), ", "))
		default:
			vs.LBAlgo = name
		}
	}
	if v := r.LBKind; usable(v) {
		switch strings.ToUpper(v.Text) {
		case "NAT":
			vs.LBKind = NAT
		case "DR":
			vs.LBKind = DR
		case "TUN":
			vs.LBKind = TUN
		default:
			d.add(v.Line, v.Path, "unknown lb_kind %q (want NAT, DR or TUN)", v.Text)
		}
	}
	if v := r.DelayLoop; usable(v) {
		if secs, ok := integer(d, v); ok {
			// The upper bound only keeps the Duration from overflowing;
			// any realistic interval is far below it.
			const maxSecs = math.MaxInt64 / int64(time.Second)
			switch {
			case secs < 1:
				d.add(v.Line, v.Path, "%s is not a valid delay_loop (at least 1 second)", v.Text)
			case secs > maxSecs:
				d.add(v.Line, v.Path, "%s seconds is too long for delay_loop", v.Text)
			default:
				vs.DelayLoop = time.Duration(secs) * time.Second
			}
		}
	}

	seen := map[netip.AddrPort]int{} // → line
	for _, rrs := range r.RealServers {
		rs, ok := validateRealServer(d, rrs)
		if !ok {
			continue
		}
		ap := netip.AddrPortFrom(rs.Address, rs.Port)
		if first, dup := seen[ap]; dup {
			d.add(rrs.Line, rrs.Path, "duplicate real server %s (first at line %d)", ap, first)
			continue
		}
		seen[ap] = rrs.Line
		vs.RealServers = append(vs.RealServers, rs)
	}
	return vs, !r.Bad && len(d.errs) == n
}

func validateRealServer(d *diag, r rawRealServer) (RealServer, bool) {
	n := len(d.errs)
	rs := RealServer{Weight: DefaultWeight, Line: r.Line}
	if required(d, r.pos, "address", r.Address) {
		rs.Address = addr(d, r.Address)
	}
	if required(d, r.pos, "port", r.Port) {
		rs.Port = port(d, r.Port)
	}
	if v := r.Weight; usable(v) {
		if w, ok := integer(d, v); ok {
			if w < 0 || w > 65535 {
				d.add(v.Line, v.Path, "%s is not a valid weight (0-65535)", v.Text)
			} else {
				rs.Weight = int(w)
			}
		}
	}
	return rs, !r.Bad && len(d.errs) == n
}

func implementedSchedulers() []string {
	var names []string
	for name, ok := range schedulers {
		if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// required reports a missing key at the item's line, since the key itself
// has no line.
func required(d *diag, item pos, key string, v *rawValue) bool {
	if v == nil {
		d.add(item.Line, item.Path, "missing required key %q", key)
		return false
	}
	return true
}

// usable reports whether v is present and worth checking.
func usable(v *rawValue) bool { return v != nil && !v.Bad }

func addr(d *diag, v *rawValue) netip.Addr {
	if v.Bad {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(v.Text)
	switch {
	case err != nil:
		d.add(v.Line, v.Path, "%q is not a valid IPv4 address", v.Text)
	case !a.Is4():
		d.add(v.Line, v.Path, "%q is not an IPv4 address (IPv6 is not supported yet)", v.Text)
	default:
		return a
	}
	return netip.Addr{}
}

func port(d *diag, v *rawValue) uint16 {
	p, ok := integer(d, v)
	if !ok {
		return 0
	}
	// keepalived accepts port 0 only for fwmark services, which xlbd does
	// not have, so 0 is always a mistake here.
	if p < 1 || p > 65535 {
		d.add(v.Line, v.Path, "%s is not a valid port (1-65535)", v.Text)
		return 0
	}
	return uint16(p)
}

func integer(d *diag, v *rawValue) (int64, bool) {
	if v.Bad {
		return 0, false
	}
	if !v.IsInt {
		d.add(v.Line, v.Path, "%q is not an integer", v.Text)
		return 0, false
	}
	return v.Int, true
}
