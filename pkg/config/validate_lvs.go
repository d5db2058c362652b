package config

import (
	"encoding/hex"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlbd/xlbd/pkg/sched"
)

func (v *validator) virtualServerGroups(items []*rawNode) map[string]bool {
	seen := map[string]pos{}
	defined := map[string]bool{}
	for _, n := range items {
		name, named := v.uniqueName(n, "virtual_server_group", seen)
		if named {
			// Defined even if its entries are broken, so that users of
			// the group get no second message.
			defined[name] = true
		}
		g := VirtualServerGroup{Name: name, File: v.file(n.pos), Line: n.Line}
		errs := v.d.errCount()
		for _, m := range n.items("members") {
			if fw := m.val("fwmark"); fw != nil {
				if m.has("address") || m.has("port") {
					v.d.at(m.pos, "a virtual_server_group entry is either an address or a fwmark")
					continue
				}
				if mark, ok := v.intIn(fw, "fwmark", 1, math.MaxUint32); ok {
					g.FWMarks = append(g.FWMarks, uint32(mark))
				}
				continue
			}
			if !v.required(m.pos, "address", m.val("address")) {
				continue
			}
			r, ok := v.addressRange(m.val("address"))
			if val := m.val("port"); val != nil {
				r.Port, ok = v.port(val)
			}
			if ok {
				g.Ranges = append(g.Ranges, r)
			}
		}
		if len(n.items("members")) == 0 {
			v.d.warn(n.pos, "virtual_server_group %q has no entries", name)
		}
		if named && v.d.errCount() == errs {
			v.cfg.VirtualServerGroups = append(v.cfg.VirtualServerGroups, g)
		}
	}
	return defined
}

// addressRange reads "A.B.C.D", "A.B.C.D-E", "A.B.C.D-E.F.G.H" or
// "A.B.C.D/N".
func (v *validator) addressRange(val *rawValue) (AddressRange, bool) {
	if !usable(val) {
		return AddressRange{}, false
	}
	bad := func() (AddressRange, bool) {
		v.d.at(val.pos, "%q is not a valid IPv4 address or range", val.Text)
		return AddressRange{}, false
	}
	if p, err := netip.ParsePrefix(val.Text); err == nil {
		if !p.Addr().Is4() {
			return bad()
		}
		p = p.Masked()
		last := p.Addr().As4()
		hostBits := 32 - p.Bits()
		for i := 3; i >= 0 && hostBits > 0; i-- {
			n := min(hostBits, 8)
			last[i] |= byte(1<<n - 1)
			hostBits -= n
		}
		return AddressRange{First: p.Addr(), Last: netip.AddrFrom4(last)}, true
	}
	lo, hi, isRange := strings.Cut(val.Text, "-")
	first, err := netip.ParseAddr(lo)
	if err != nil || !first.Is4() {
		return bad()
	}
	if !isRange {
		return AddressRange{First: first, Last: first}, true
	}
	last, err := netip.ParseAddr(hi)
	if err != nil {
		// The short form replaces the last octet.
		n, err := strconv.ParseUint(hi, 10, 8)
		if err != nil {
			return bad()
		}
		b := first.As4()
		b[3] = byte(n)
		last = netip.AddrFrom4(b)
	}
	if !last.Is4() || last.Less(first) {
		return bad()
	}
	return AddressRange{First: first, Last: last}, true
}

// inherited holds what a virtual server passes to its real servers, and a
// real server to its checkers; keepalived resolves each setting at the
// lowest level that gives it.
type inherited struct {
	delayLoop        time.Duration
	connectTimeout   opt[time.Duration]
	delayBeforeRetry opt[time.Duration]
	warmup           opt[time.Duration]
	retry            opt[int]
	alpha            bool
	inhibit          bool
	virtualhost      string
}

type opt[T any] struct {
	v   T
	set bool
}

func (o opt[T]) or(def T) T {
	if o.set {
		return o.v
	}
	return def
}

// level says which block override reads: a virtual server's delay_loop,
// alpha and virtualhost are its own fields, read once with the rest of
// them, and a checker's virtualhost belongs to its HTTP settings.
type level uint8

const (
	levelVS level = iota
	levelRS
	levelChecker
)

// override reads the settings n gives on top of inh.
func (v *validator) override(n *rawNode, inh inherited, l level) inherited {
	if l != levelVS {
		v.setSeconds(&inh.delayLoop, n.val("delay_loop"), "delay_loop", time.Second)
		v.setFlag(&inh.alpha, n.val("alpha"))
	}
	if l == levelRS {
		v.setText(&inh.virtualhost, n.val("virtualhost"))
	}
	if l != levelChecker {
		v.setFlag(&inh.inhibit, n.val("inhibit_on_failure"))
	}
	if d, ok := v.seconds(n.val("connect_timeout"), "connect_timeout", time.Millisecond); ok {
		inh.connectTimeout = opt[time.Duration]{d, true}
	}
	if d, ok := v.seconds(n.val("delay_before_retry"), "delay_before_retry", 0); ok {
		inh.delayBeforeRetry = opt[time.Duration]{d, true}
	}
	if d, ok := v.seconds(n.val("warmup"), "warmup", 0); ok {
		inh.warmup = opt[time.Duration]{d, true}
	}
	if r, ok := v.intIn(n.val("retry"), "retry", 0, math.MaxInt32); ok {
		inh.retry = opt[int]{int(r), true}
	}
	return inh
}

func (v *validator) virtualServers(items []*rawNode, groups map[string]bool) {
	seen := map[string]pos{} // VirtualServer.Key → where
	for _, n := range items {
		vs, ok := v.virtualServer(n, groups)
		if !ok {
			continue
		}
		// Only a fully valid virtual server takes part in the duplicate
		// check: a half-parsed one could collide by accident and add noise.
		if first, dup := seen[vs.Key()]; dup {
			v.d.at(n.pos, "duplicate virtual server %s (first at %s)", vs.Key(), v.d.where(first, n.pos))
			continue
		}
		seen[vs.Key()] = n.pos
		v.cfg.VirtualServers = append(v.cfg.VirtualServers, vs)
	}
}

func (v *validator) virtualServer(n *rawNode, groups map[string]bool) (VirtualServer, bool) {
	errs := v.d.errCount()
	vs := VirtualServer{
		Protocol:               DefaultProtocol,
		LBAlgo:                 DefaultLBAlgo,
		LBKind:                 DefaultLBKind,
		DelayLoop:              DefaultDelayLoop,
		PersistenceGranularity: 32,
		Quorum:                 DefaultQuorum,
		File:                   v.file(n.pos),
		Line:                   n.Line,
	}
	switch fw, grp := n.val("fwmark"), n.val("group"); {
	case fw != nil || grp != nil:
		if fw != nil && grp != nil || n.has("address") || n.has("port") {
			v.d.at(n.pos, "address and port, fwmark and group exclude one another")
			break
		}
		if fw != nil {
			if mark, ok := v.intIn(fw, "fwmark", 1, math.MaxUint32); ok {
				vs.FWMark = uint32(mark)
			}
		} else if name, ok := v.text(grp); ok {
			vs.Group = name
			if !groups[name] {
				v.d.at(grp.pos, "virtual_server_group %q is not defined", name)
			}
		}
	default:
		if v.required(n.pos, "address", n.val("address")) {
			vs.Address, _ = v.ip4(n.val("address"))
		}
		if v.required(n.pos, "port", n.val("port")) {
			vs.Port, _ = v.servicePort(n.val("port"))
		}
	}
	if val := n.val("protocol"); usable(val) {
		switch strings.ToUpper(val.Text) {
		case "TCP":
			vs.Protocol = TCP
		case "UDP":
			vs.Protocol = UDP
		case "SCTP":
			// Which data plane balances it is the plan's to say.
			vs.Protocol = SCTP
		default:
			v.d.at(val.pos, "unknown protocol %q (want TCP, UDP or SCTP)", val.Text)
		}
	}
	if val := n.val("lb_algo"); usable(val) {
		// Every IPVS scheduler is accepted (pkg/sched holds the list):
		// which of them the chosen data plane runs is its to say, when the
		// configuration is planned for it. IPVS's names are lower case;
		// accepting any case spares a reload failure over "RR".
		name := strings.ToLower(val.Text)
		if slices.Contains(sched.Schedulers, name) {
			vs.LBAlgo = name
		} else {
			v.d.at(val.pos, "unknown scheduler %q", val.Text)
		}
	}
	if val := n.val("lb_kind"); usable(val) {
		switch strings.ToUpper(val.Text) {
		case "NAT":
			vs.LBKind = NAT
		case "DR":
			vs.LBKind = DR
		case "TUN":
			vs.LBKind = TUN
		default:
			v.d.at(val.pos, "unknown lb_kind %q (want NAT, DR or TUN)", val.Text)
		}
	}
	v.setSeconds(&vs.DelayLoop, n.val("delay_loop"), "delay_loop", time.Second)
	if t, ok := v.intIn(n.val("persistence_timeout"), "persistence_timeout", 1, math.MaxUint32); ok {
		vs.PersistenceTimeout = time.Duration(t) * time.Second
	}
	if val := n.val("persistence_granularity"); usable(val) {
		if bits, ok := maskBits(val.Text); ok {
			vs.PersistenceGranularity = bits
			if vs.PersistenceTimeout == 0 {
				vs.PersistenceTimeout = DefaultPersistenceTimeout
			}
		} else {
			v.d.at(val.pos, "%q is not a valid IPv4 netmask", val.Text)
		}
	}
	v.setInt(&vs.Quorum, n.val("quorum"), "quorum", 1, math.MaxInt32)
	v.setInt(&vs.Hysteresis, n.val("hysteresis"), "hysteresis", 0, math.MaxInt32)
	vs.QuorumUp = v.script(n.node("quorum_up"))
	vs.QuorumDown = v.script(n.node("quorum_down"))
	v.setFlag(&vs.Alpha, n.val("alpha"))
	v.setFlag(&vs.Omega, n.val("omega"))
	v.setFlag(&vs.HASuspend, n.val("ha_suspend"))
	v.setFlag(&vs.OPS, n.val("ops"))
	for _, f := range []string{"sh-port", "sh-fallback", "mh-port", "mh-fallback"} {
		var on bool
		v.setFlag(&on, n.val(f))
		if on {
			vs.SchedFlags = append(vs.SchedFlags, f)
		}
	}
	v.setText(&vs.Virtualhost, n.val("virtualhost"))
	if s := n.node("sorry_server"); s != nil && v.requiredIn(s, "address") {
		if a, ok := v.ip4(s.val("address")); ok {
			port := vs.Port
			if val := s.val("port"); val != nil {
				port, ok = v.port(val)
			}
			if ok {
				vs.SorryServer = netip.AddrPortFrom(a, port)
			}
		}
	}

	v.setFlag(&vs.SorryServerInhibit, n.val("sorry_server_inhibit"))
	if vs.SorryServerInhibit && !vs.SorryServer.IsValid() && n.node("sorry_server") == nil {
		// keepalived ignores it too, with the same complaint.
		v.d.warn(n.pos, "sorry_server_inhibit without sorry_server is ignored")
		vs.SorryServerInhibit = false
	}
	vs.SMTPAlert = v.smtpAlertVS
	v.setFlag(&vs.SMTPAlert, n.val("smtp_alert"))

	if vs.Address.IsValid() && vs.Port == 0 && vs.PersistenceTimeout == 0 {
		// ip_vs_schedule: "port zero only supported in persistent services".
		v.d.warn(n.pos, "a port-0 (every port) virtual server without persistence_timeout balances nothing: IPVS schedules port-0 services only through persistence templates")
	}
	inh := v.override(n, inherited{delayLoop: vs.DelayLoop, alpha: vs.Alpha, virtualhost: vs.Virtualhost}, levelVS)
	seen := map[netip.AddrPort]pos{}
	for _, r := range n.items("real_servers") {
		rs, ok := v.realServer(r, vs, inh)
		if !ok {
			continue
		}
		ap := netip.AddrPortFrom(rs.Address, rs.Port)
		if first, dup := seen[ap]; dup {
			v.d.at(r.pos, "duplicate real server %s (first at %s)", ap, v.d.where(first, r.pos))
			continue
		}
		seen[ap] = r.pos
		vs.RealServers = append(vs.RealServers, rs)
	}
	return vs, !n.Bad && v.d.errCount() == errs
}

// maskBits reads a contiguous IPv4 netmask ("255.255.255.0") or a prefix
// length.
func maskBits(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, n >= 1 && n <= 32
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for m&(1<<31) != 0 {
		ones++
		m <<= 1
	}
	return ones, m == 0 && ones > 0
}

func (v *validator) realServer(n *rawNode, vs VirtualServer, inh inherited) (RealServer, bool) {
	errs := v.d.errCount()
	rs := RealServer{Weight: DefaultWeight, File: v.file(n.pos), Line: n.Line}
	if v.required(n.pos, "address", n.val("address")) {
		rs.Address, _ = v.ip4(n.val("address"))
	}
	switch val := n.val("port"); {
	case val != nil:
		rs.Port, _ = v.servicePort(val)
	case vs.FWMark != 0 || vs.Group != "":
		// Port 0: the port the packet was sent to.
	case v.d.syntax == syntaxKeepalived:
		// IPVS uses the service's port for a real server without one.
		rs.Port = vs.Port
	default:
		v.required(n.pos, "port", nil)
	}
	v.setInt(&rs.Weight, n.val("weight"), "weight", 0, 65535)
	inh = v.override(n, inh, levelRS)
	rs.InhibitOnFailure = inh.inhibit
	rs.NotifyUp = v.script(n.node("notify_up"))
	rs.NotifyDown = v.script(n.node("notify_down"))
	rs.SMTPAlert = v.smtpAlertRS
	v.setFlag(&rs.SMTPAlert, n.val("smtp_alert"))
	if t, ok := v.intIn(n.val("uthreshold"), "uthreshold", 0, math.MaxUint32); ok {
		rs.UThreshold = uint32(t)
	}
	if t, ok := v.intIn(n.val("lthreshold"), "lthreshold", 0, math.MaxUint32); ok {
		rs.LThreshold = uint32(t)
	}
	for _, c := range n.items("checkers") {
		if ck, ok := v.checker(c, inh); ok {
			rs.Checkers = append(rs.Checkers, ck)
		}
	}
	return rs, !n.Bad && v.d.errCount() == errs
}

// smtpAlertDefaults resolves what smtp_alert a virtual and a real server
// get when they say nothing (keepalived's check_data.c): global_defs'
// smtp_alert_checker, else its smtp_alert (already read into g), else off
// for a virtual server and on for a real server.
func (v *validator) smtpAlertDefaults(global *rawNode, g *Global) {
	switch {
	case global.val("smtp_alert_checker") != nil:
		var on bool
		v.setFlag(&on, global.val("smtp_alert_checker"))
		v.smtpAlertVS, v.smtpAlertRS = on, on
	case global.val("smtp_alert") != nil:
		v.smtpAlertVS, v.smtpAlertRS = g.SMTPAlert, g.SMTPAlert
	}
}

// checkerDefaultsFor gives keepalived's defaults for what a checker leaves
// out, given its (already resolved) delay_loop.
func checkerDefaultsFor(t CheckerType, delayLoop time.Duration) (retry int, delayBeforeRetry time.Duration) {
	switch t {
	case CheckMisc:
		return 0, time.Second
	case CheckDNS:
		return 3, delayLoop
	case CheckHTTP, CheckSSL:
		return 1, 3 * time.Second
	}
	return 1, time.Second
}

func (v *validator) checker(n *rawNode, inh inherited) (Checker, bool) {
	errs := v.d.errCount()
	typ := CheckerType(n.val(checkerField).Text)
	c := Checker{Type: typ, File: v.file(n.pos), Line: n.Line}
	allowed := checkerTypes[typ]
	for name, f := range n.fields {
		if name != checkerField && !slices.Contains(allowed, name) {
			v.d.at(f.pos, "%s does not apply to %s", f.as, typ)
		}
	}

	inh = v.override(n, inh, levelChecker)
	c.DelayLoop = inh.delayLoop
	retry, dbr := checkerDefaultsFor(typ, c.DelayLoop)
	c.ConnectTimeout = inh.connectTimeout.or(DefaultConnectTimeout)
	c.Retry = inh.retry.or(retry)
	c.DelayBeforeRetry = inh.delayBeforeRetry.or(dbr)
	c.Warmup = inh.warmup.or(c.DelayLoop)
	c.Alpha = inh.alpha
	v.setFlag(&c.LogAllFailures, n.val("log_all_failures"))
	c.ConnectIP, _ = v.ip4(n.val("connect_ip"))
	c.BindTo, _ = v.ip4(n.val("bindto"))
	if val := n.val("connect_port"); val != nil {
		c.ConnectPort, _ = v.port(val)
	}
	if val := n.val("bind_port"); val != nil {
		c.BindPort, _ = v.port(val)
	}

	switch typ {
	case CheckHTTP, CheckSSL:
		h := &HTTPCheck{HTTPProtocol: DefaultHTTPProtocol, Virtualhost: inh.virtualhost}
		v.setText(&h.Virtualhost, n.val("virtualhost"))
		if val := n.val("http_protocol"); usable(val) {
			switch p := strings.ToUpper(val.Text); p {
			case "1.0", "1.0C", "1.1":
				h.HTTPProtocol = p
			default:
				v.d.at(val.pos, "unknown http_protocol %q (want 1.0, 1.0C or 1.1)", val.Text)
			}
		}
		v.setFlag(&h.EnableSNI, n.val("enable_sni"))
		v.setText(&h.SNIName, n.val("sni_name"))
		for _, u := range n.items("urls") {
			h.URLs = append(h.URLs, v.url(u, h.Virtualhost))
		}
		if len(n.items("urls")) == 0 && !n.Bad {
			v.d.at(n.pos, "%s needs at least one url", typ)
		}
		c.HTTP = h
	case CheckMisc:
		m := &MiscCheck{Timeout: c.DelayLoop}
		if v.required(n.pos, "misc_path", n.val("misc_path")) {
			v.setText(&m.Path.Cmd, n.val("misc_path"))
		}
		v.setSeconds(&m.Timeout, n.val("misc_timeout"), "misc_timeout", time.Millisecond)
		v.setFlag(&m.Dynamic, n.val("misc_dynamic"))
		if u := n.node("user"); u != nil {
			if v.requiredIn(u, "user") {
				v.setText(&m.Path.User, u.val("user"))
			}
			v.setText(&m.Path.Group, u.val("group"))
		}
		c.Misc = m
	case CheckDNS:
		d := &DNSCheck{Type: DefaultDNSType, Name: DefaultDNSName}
		if val := n.val("type"); usable(val) {
			if t := strings.ToUpper(val.Text); slices.Contains(dnsTypes, t) {
				d.Type = t
			} else {
				v.d.at(val.pos, "unknown DNS query type %q (want %s)", val.Text, strings.Join(dnsTypes, ", "))
			}
		}
		v.setText(&d.Name, n.val("name"))
		c.DNS = d
	case CheckSMTP:
		c.SMTP = &SMTPCheck{}
		v.setText(&c.SMTP.HeloName, n.val("helo_name"))
	case CheckUDP:
		u := &UDPCheck{}
		if val := n.val("payload"); usable(val) {
			if b, ok := parseHex(val.Text, false); ok {
				u.Payload, _ = hex.DecodeString(b)
			} else {
				v.d.at(val.pos, "%q is not a hex string", val.Text)
			}
		}
		if val := n.val("require_reply"); usable(val) {
			if b, isBool := boolText(val.Text); isBool {
				u.RequireReply = b
			} else if h, ok := parseHex(val.Text, true); ok {
				u.RequireReply, u.Reply = true, h
			} else {
				v.d.at(val.pos, "%q is not a hex string (x matches any digit)", val.Text)
			}
		}
		c.UDP = u
	case CheckFile:
		f := &FileCheck{}
		if v.required(n.pos, "track_file", n.val("track_file")) {
			v.setText(&f.TrackFile, n.val("track_file"))
		}
		v.setFlag(&f.Dynamic, n.val("dynamic"))
		f.Weight, f.Reverse = v.weight(n.node("weight"), math.MaxInt32)
		c.FileCheck = f
	}
	return c, !n.Bad && v.d.errCount() == errs
}

// checkerField holds a checker's type in the raw tree. It is not a keyword
// (DNS_CHECK has its own "type"), so no file can set it.
const checkerField = "@checker"

var dnsTypes = []string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"}

func (v *validator) url(n *rawNode, virtualhost string) URL {
	u := URL{Virtualhost: virtualhost}
	if v.required(n.pos, "path", n.val("path")) {
		v.setText(&u.Path, n.val("path"))
	}
	if val := n.val("digest"); usable(val) {
		if b, err := hex.DecodeString(val.Text); err != nil || len(b) != 16 {
			v.d.at(val.pos, "%q is not an MD5 digest (32 hex digits)", val.Text)
		} else {
			u.Digest = strings.ToLower(val.Text)
		}
	}
	for _, val := range n.vals("status_code") {
		if r, ok := statusRange(val.Text); ok {
			u.StatusCodes = append(u.StatusCodes, r)
		} else if usable(val) {
			v.d.at(val.pos, "%q is not a valid status_code (a code or range within 100-599)", val.Text)
		}
	}
	if len(u.StatusCodes) == 0 {
		u.StatusCodes = []StatusRange{{200, 299}}
	}
	v.setText(&u.Virtualhost, n.val("virtualhost"))
	return u
}

func statusRange(s string) (StatusRange, bool) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
		return StatusRange{}, false
	}
	return StatusRange{l, h}, true
}

func boolText(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

// parseHex reads keepalived's free-format hex: words of hex digits, each
// read two digits to a byte with a lone last digit making a byte of its
// own ("Ab12f 3" is AB 12 0F 03). With wild, x stands for any digit. It
// returns lower-case digits, two per byte.
func parseHex(s string, wild bool) (string, bool) {
	var b strings.Builder
	words := strings.Fields(s)
	if len(words) == 0 {
		return "", false
	}
	for _, w := range words {
		for _, c := range strings.ToLower(w) {
			if !strings.ContainsRune("0123456789abcdef", c) && !(wild && c == 'x') {
				return "", false
			}
		}
		w = strings.ToLower(w)
		for len(w) >= 2 {
			b.WriteString(w[:2])
			w = w[2:]
		}
		if w != "" {
			b.WriteString("0" + w)
		}
	}
	return b.String(), true
}
