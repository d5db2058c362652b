package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator builds the model from a raw tree, reporting every problem to d
// and applying keepalived's defaults. The returned config is only
// meaningful when d collected no errors.
type validator struct {
	d   *diag
	cfg *Config
	// smtpAlertVS and smtpAlertRS are what a virtual and a real server
	// without smtp_alert get: keepalived's global settings are unset
	// until given, which Global's plain booleans cannot say.
	smtpAlertVS, smtpAlertRS bool
}

func validate(d *diag, raw *rawNode) *Config {
	v := &validator{d: d, cfg: &Config{}}
	v.cfg.Global = v.global(raw.node("global_defs"))
	scripts := v.vrrpScripts(raw.items("vrrp_scripts"))
	v.vrrpInstances(raw.items("vrrp_instances"), scripts)
	v.syncGroups(raw.items("vrrp_sync_groups"))
	v.syncDaemon(raw.node("global_defs"))
	groups := v.virtualServerGroups(raw.items("virtual_server_groups"))
	v.virtualServers(raw.items("virtual_servers"), groups)
	return v.cfg
}

func (v *validator) file(p pos) string { return v.d.fileOf(p) }

// required reports a missing keyword at the item's line, since the keyword
// itself has no line.
func (v *validator) required(item pos, key string, val *rawValue) bool {
	if val == nil {
		v.d.at(item, "missing required %s %q", v.d.syntax.word(), key)
		return false
	}
	return true
}

// requiredIn is required for a keyword's named arguments (n is a kStruct
// node): when the front end already reported the arguments as malformed,
// a missing one is part of that message, not a second problem.
func (v *validator) requiredIn(n *rawNode, key string) bool {
	if n.val(key) == nil && n.Bad {
		return false
	}
	return v.required(n.pos, key, n.val(key))
}

// usable reports whether val is present and worth checking.
func usable(val *rawValue) bool { return val != nil && !val.Bad }

// text returns a value that must not be empty.
func (v *validator) text(val *rawValue) (string, bool) {
	if !usable(val) {
		return "", false
	}
	if strings.TrimSpace(val.Text) == "" {
		v.d.at(val.pos, "empty value")
		return "", false
	}
	return val.Text, true
}

// setText stores a non-empty value in dst if val is given.
func (v *validator) setText(dst *string, val *rawValue) {
	if s, ok := v.text(val); ok {
		*dst = s
	}
}

func (v *validator) integer(val *rawValue) (int64, bool) {
	if !usable(val) {
		return 0, false
	}
	if !val.IsInt {
		v.d.at(val.pos, "%q is not an integer", val.Text)
		return 0, false
	}
	return val.Int, true
}

// intIn reads an integer in [lo, hi]; what names it in the message.
func (v *validator) intIn(val *rawValue, what string, lo, hi int64) (int64, bool) {
	i, ok := v.integer(val)
	if !ok {
		return 0, false
	}
	if i < lo || i > hi {
		switch {
		case hi == math.MaxInt32:
			v.d.at(val.pos, "%s is not a valid %s (at least %d)", val.Text, what, lo)
		case lo < 0:
			v.d.at(val.pos, "%s is not a valid %s (%d to %d)", val.Text, what, lo, hi)
		default:
			v.d.at(val.pos, "%s is not a valid %s (%d-%d)", val.Text, what, lo, hi)
		}
		return 0, false
	}
	return i, true
}

// setInt stores an integer in [lo, hi] in dst if val is given.
func (v *validator) setInt(dst *int, val *rawValue, what string, lo, hi int64) {
	if i, ok := v.intIn(val, what, lo, hi); ok {
		*dst = int(i)
	}
}

// boolean reads keepalived's <BOOL>, which YAML's true and false are
// spellings of.
func (v *validator) boolean(val *rawValue) (bool, bool) {
	if !usable(val) {
		return false, false
	}
	switch strings.ToLower(val.Text) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	v.d.at(val.pos, "%q is not a boolean (want true, false, yes, no, on or off)", val.Text)
	return false, false
}

// setFlag stores a flag's value in dst if it is given.
func (v *validator) setFlag(dst *bool, val *rawValue) {
	if b, ok := v.boolean(val); ok {
		*dst = b
	}
}

// maxSeconds keeps every timer far from overflowing a time.Duration.
const maxSeconds = 1 << 31

// seconds reads keepalived's <TIMER>: seconds with up to microsecond
// decimals. min is the smallest valid value.
func (v *validator) seconds(val *rawValue, what string, min time.Duration) (time.Duration, bool) {
	if !usable(val) {
		return 0, false
	}
	d, ok := parseSeconds(val.Text)
	switch {
	case !ok:
		v.d.at(val.pos, "%q is not a number of seconds", val.Text)
	case d < 0:
		v.d.at(val.pos, "%s is not a valid %s (at least %s)", val.Text, what, formatSecondsUnit(min))
	case d > maxSeconds*time.Second:
		v.d.at(val.pos, "%s seconds is too long for %s", val.Text, what)
	case d < min:
		v.d.at(val.pos, "%s is not a valid %s (at least %s)", val.Text, what, formatSecondsUnit(min))
	default:
		return d, true
	}
	return 0, false
}

func (v *validator) setSeconds(dst *time.Duration, val *rawValue, what string, min time.Duration) {
	if d, ok := v.seconds(val, what, min); ok {
		*dst = d
	}
}

// parseSeconds parses "[-]digits[.digits]"; digits past microseconds are
// dropped, as keepalived's timers have microsecond resolution.
func parseSeconds(s string) (time.Duration, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
		return 0, false
	}
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 12 {
		return maxSeconds*time.Second + 1, true // and keep ParseInt in range
	}
	w, _ := strconv.ParseInt("0"+whole, 10, 64)
	if w > maxSeconds {
		return maxSeconds*time.Second + 1, true
	}
	frac = (frac + "000000")[:6]
	f, _ := strconv.ParseInt(frac, 10, 64)
	d := time.Duration(w)*time.Second + time.Duration(f)*time.Microsecond
	if neg {
		d = -d
	}
	return d, true
}

// formatSeconds writes d the way the configuration does: seconds, with
// decimals only when needed.
func formatSeconds(d time.Duration) string {
	s := strconv.FormatInt(int64(d/time.Second), 10)
	if f := d % time.Second; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", int64(f/time.Microsecond)), "0")
	}
	return s
}

func formatSecondsUnit(d time.Duration) string {
	if d == time.Second {
		return "1 second"
	}
	return formatSeconds(d) + " seconds"
}

// ip4 reads an IPv4 address; xlbd's balancer does not do IPv6 yet.
func (v *validator) ip4(val *rawValue) (netip.Addr, bool) {
	if !usable(val) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(val.Text)
	switch {
	case err != nil:
		v.d.at(val.pos, "%q is not a valid IPv4 address", val.Text)
	case !a.Is4():
		v.d.at(val.pos, "%q is not an IPv4 address (IPv6 is not supported yet)", val.Text)
	default:
		return a, true
	}
	return netip.Addr{}, false
}

// ip reads an address of either family, for VRRP, which does both.
func (v *validator) ip(val *rawValue) (netip.Addr, bool) {
	if !usable(val) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(val.Text)
	if err != nil || a.Zone() != "" {
		v.d.at(val.pos, "%q is not a valid IP address", val.Text)
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (v *validator) port(val *rawValue) (uint16, bool) { return v.portFrom(val, 1, "1-65535") }

// servicePort is a virtual or real server's port, where 0 means every port
// (IPVS's port-0 services) or, for a real, the port the packet was sent to.
func (v *validator) servicePort(val *rawValue) (uint16, bool) {
	return v.portFrom(val, 0, "0-65535; 0: every port")
}

func (v *validator) portFrom(val *rawValue, lo int64, valid string) (uint16, bool) {
	p, ok := v.integer(val)
	if !ok {
		return 0, false
	}
	if p < lo || p > 65535 {
		v.d.at(val.pos, "%s is not a valid port (%s)", val.Text, valid)
		return 0, false
	}
	return uint16(p), true
}

// script reads a command with its optional user and group (a notify
// keyword's node).
func (v *validator) script(n *rawNode) Script {
	var s Script
	if n == nil {
		return s
	}
	if v.requiredIn(n, "script") {
		v.setText(&s.Cmd, n.val("script"))
	}
	v.setText(&s.User, n.val("user"))
	v.setText(&s.Group, n.val("group"))
	return s
}

func (v *validator) notify(n *rawNode) Notify {
	return Notify{
		Master: v.script(n.node("notify_master")),
		Backup: v.script(n.node("notify_backup")),
		Fault:  v.script(n.node("notify_fault")),
		Stop:   v.script(n.node("notify_stop")),
		Any:    v.script(n.node("notify")),
	}
}

// weight reads `weight N [reverse]` with N in [-limit, limit].
func (v *validator) weight(n *rawNode, limit int64) (w int, reverse bool) {
	if n == nil {
		return 0, false
	}
	if v.requiredIn(n, "value") {
		v.setInt(&w, n.val("value"), "weight", -limit, limit)
	}
	v.setFlag(&reverse, n.val("reverse"))
	return w, reverse
}

func (v *validator) global(n *rawNode) Global {
	g := Global{
		SMTPPort:             DefaultSMTPPort,
		SMTPConnectTimeout:   DefaultSMTPConnectTimeout,
		VRRPVersion:          DefaultVRRPVersion,
		VRRPGarpMasterDelay:  DefaultGarpMasterDelay,
		VRRPGarpMasterRepeat: DefaultGarpMasterRepeat,
		VRRPMcastGroup4:      DefaultMcastGroup4,
		LVSTimeouts:          LVSTimeouts{DefaultLVSTimeoutTCP, DefaultLVSTimeoutTCPFin, DefaultLVSTimeoutUDP},
		LVSSysctl:            LVSSysctl{ConnReuseMode: DefaultConnReuseMode},
	}
	v.smtpAlertVS, v.smtpAlertRS = false, true
	if n == nil {
		return g
	}
	v.setText(&g.RouterID, n.val("router_id"))
	for _, e := range n.vals("notification_email") {
		if s, ok := v.text(e); ok {
			g.NotificationEmail = append(g.NotificationEmail, s)
		}
	}
	v.setText(&g.NotificationEmailFrom, n.val("notification_email_from"))
	if s := n.node("smtp_server"); s != nil {
		if v.requiredIn(s, "address") {
			v.setText(&g.SMTPServer, s.val("address"))
		}
		if p, ok := v.port(s.val("port")); ok {
			g.SMTPPort = p
		}
	}
	v.setSeconds(&g.SMTPConnectTimeout, n.val("smtp_connect_timeout"), "smtp_connect_timeout", time.Second)
	v.setFlag(&g.SMTPAlert, n.val("smtp_alert"))
	v.smtpAlertDefaults(n, &g)
	if u := n.node("script_user"); u != nil {
		if v.requiredIn(u, "user") {
			v.setText(&g.ScriptUser, u.val("user"))
		}
		v.setText(&g.ScriptGroup, u.val("group"))
	}
	v.setFlag(&g.EnableScriptSecurity, n.val("enable_script_security"))
	v.setInt(&g.VRRPVersion, n.val("vrrp_version"), "vrrp_version", 2, 3)
	v.setFlag(&g.VRRPStrict, n.val("vrrp_strict"))
	v.setFlag(&g.V3ChecksumAsV2, n.val("v3_checksum_as_v2"))
	v.setSeconds(&g.VRRPGarpMasterDelay, n.val("vrrp_garp_master_delay"), "vrrp_garp_master_delay", 0)
	v.setInt(&g.VRRPGarpMasterRepeat, n.val("vrrp_garp_master_repeat"), "vrrp_garp_master_repeat", 1, 255)
	v.setSeconds(&g.VRRPGarpMasterRefresh, n.val("vrrp_garp_master_refresh"), "vrrp_garp_master_refresh", 0)
	if val := n.val("vrrp_mcast_group4"); usable(val) {
		if a, ok := v.ip(val); ok {
			if !a.Is4() || !a.IsMulticast() {
				v.d.at(val.pos, "%q is not an IPv4 multicast address", val.Text)
			} else {
				g.VRRPMcastGroup4 = a
			}
		}
	}
	if t := n.node("lvs_timeouts"); t != nil {
		if !t.has("tcp") && !t.has("tcpfin") && !t.has("udp") && !t.Bad {
			v.d.at(t.pos, "lvs_timeouts needs at least one of tcp, tcpfin and udp")
		}
		v.setSeconds(&g.LVSTimeouts.TCP, t.val("tcp"), "tcp timeout", time.Second)
		v.setSeconds(&g.LVSTimeouts.TCPFin, t.val("tcpfin"), "tcpfin timeout", time.Second)
		v.setSeconds(&g.LVSTimeouts.UDP, t.val("udp"), "udp timeout", time.Second)
	}
	if s := n.node("lvs_sysctl"); s != nil {
		v.setFlag(&g.LVSSysctl.ExpireQuiescentTemplate, s.val("expire_quiescent_template"))
		v.setFlag(&g.LVSSysctl.SloppyTCP, s.val("sloppy_tcp"))
		if val := s.val("conn_reuse_mode"); usable(val) {
			// IPVS takes any integer and reads bits 1 and 2; bit 2 alone
			// (FIN_WAIT reuse) is not implemented, so say so rather than
			// accept it and do less.
			if i, ok := v.integer(val); ok && (i == 2 || i == 3) {
				v.d.at(val.pos, "conn_reuse_mode %d: bit 2 (reusing FIN_WAIT connections of DR and TUN) is not implemented; want 0 or 1", i)
			} else if ok {
				v.setInt(&g.LVSSysctl.ConnReuseMode, val, "conn_reuse_mode", 0, 1)
			}
		}
	}
	return g
}

// uniqueName checks an item's name against the names already seen in its
// kind of block.
func (v *validator) uniqueName(n *rawNode, kind string, seen map[string]pos) (string, bool) {
	val := n.val("name")
	if !v.required(n.pos, "name", val) {
		return "", false
	}
	name, ok := v.text(val)
	if !ok {
		return "", false
	}
	if first, dup := seen[name]; dup {
		v.d.at(val.pos, "duplicate %s %q (first at %s)", kind, name, v.d.where(first, val.pos))
		return "", false
	}
	seen[name] = val.pos
	return name, true
}

func (v *validator) vrrpScripts(items []*rawNode) map[string]*VRRPScript {
	seen := map[string]pos{}
	for _, n := range items {
		s := VRRPScript{Interval: DefaultScriptInterval, Rise: 1, Fall: 1, File: v.file(n.pos), Line: n.Line}
		name, ok := v.uniqueName(n, "vrrp_script", seen)
		s.Name = name
		if v.required(n.pos, "script", n.val("script")) {
			v.setText(&s.Script.Cmd, n.val("script"))
		}
		v.setSeconds(&s.Interval, n.val("interval"), "interval", time.Millisecond)
		s.Timeout = s.Interval
		v.setSeconds(&s.Timeout, n.val("timeout"), "timeout", time.Millisecond)
		s.Weight, s.Reverse = v.weight(n.node("weight"), 253)
		v.setInt(&s.Rise, n.val("rise"), "rise", 1, math.MaxInt32)
		v.setInt(&s.Fall, n.val("fall"), "fall", 1, math.MaxInt32)
		if u := n.node("user"); u != nil {
			if v.requiredIn(u, "user") {
				v.setText(&s.Script.User, u.val("user"))
			}
			v.setText(&s.Script.Group, u.val("group"))
		}
		if ok {
			v.cfg.VRRPScripts = append(v.cfg.VRRPScripts, s)
		}
	}
	byName := map[string]*VRRPScript{}
	for i := range v.cfg.VRRPScripts {
		byName[v.cfg.VRRPScripts[i].Name] = &v.cfg.VRRPScripts[i]
	}
	return byName
}

// syncDaemon reads lvs_sync_daemon, whose instance must be defined.
func (v *validator) syncDaemon(g *rawNode) {
	n := g.node("lvs_sync_daemon")
	if n == nil {
		return
	}
	sd := &LVSSyncDaemon{SyncID: -1, File: v.file(n.pos), Line: n.Line}
	okIf, okInst := v.requiredIn(n, "interface"), v.requiredIn(n, "instance")
	ok := okIf && okInst
	v.setText(&sd.Interface, n.val("interface"))
	v.setText(&sd.Instance, n.val("instance"))
	if sd.Instance != "" && !slices.ContainsFunc(v.cfg.VRRPInstances, func(vi VRRPInstance) bool { return vi.Name == sd.Instance }) {
		v.d.at(n.val("instance").pos, "%q is not a defined vrrp_instance", sd.Instance)
		ok = false
	}
	v.setInt(&sd.SyncID, n.val("id"), "lvs_sync_daemon id", 0, 255)
	v.setInt(&sd.MaxLen, n.val("maxlen"), "lvs_sync_daemon maxlen", 1, 65507)
	v.setInt(&sd.Port, n.val("port"), "lvs_sync_daemon port", 1, 65535)
	v.setInt(&sd.TTL, n.val("ttl"), "lvs_sync_daemon ttl", 1, 255)
	if val := n.val("group"); usable(val) {
		if a, good := v.ip(val); good {
			if !a.Is4() || !a.IsMulticast() {
				v.d.at(val.pos, "%q is not an IPv4 multicast address", val.Text)
			} else {
				sd.Group = a
			}
		}
	}
	if ok {
		v.cfg.Global.LVSSyncDaemon = sd
	}
}

func (v *validator) syncGroups(items []*rawNode) {
	instances := map[string]bool{}
	for _, vi := range v.cfg.VRRPInstances {
		instances[vi.Name] = true
	}
	seen := map[string]pos{}
	member := map[string]string{} // instance → its sync group
	for _, n := range items {
		sg := SyncGroup{SMTPAlert: v.cfg.Global.SMTPAlert, File: v.file(n.pos), Line: n.Line}
		name, ok := v.uniqueName(n, "vrrp_sync_group", seen)
		sg.Name = name
		if !n.has("group") {
			v.d.at(n.pos, "missing required %s %q", v.d.syntax.word(), "group")
		}
		mine := map[string]bool{}
		for _, m := range n.vals("group") {
			inst, ok := v.text(m)
			switch {
			case !ok:
			case !instances[inst]:
				v.d.at(m.pos, "%q is not a defined vrrp_instance", inst)
			case mine[inst]:
				v.d.at(m.pos, "vrrp_instance %q is listed twice", inst)
			case member[inst] != "":
				v.d.at(m.pos, "vrrp_instance %q is already in vrrp_sync_group %q", inst, member[inst])
			default:
				mine[inst] = true
				if name != "" {
					member[inst] = name
				}
				sg.Group = append(sg.Group, inst)
			}
		}
		if len(n.vals("group")) == 1 {
			v.d.warn(n.pos, "vrrp_sync_group %q has only one vrrp_instance, so it synchronises nothing", name)
		}
		sg.Notify = v.notify(n)
		v.setFlag(&sg.SMTPAlert, n.val("smtp_alert"))
		if ok {
			v.cfg.SyncGroups = append(v.cfg.SyncGroups, sg)
		}
	}
}

func (v *validator) vrrpInstances(items []*rawNode, scripts map[string]*VRRPScript) {
	seen := map[string]pos{}
	type vridKey struct {
		iface string
		vrid  uint8
		v6    bool
	}
	vrids := map[vridKey]VRRPInstance{}
	for _, n := range items {
		vi, ok := v.vrrpInstance(n, scripts)
		name, named := v.uniqueName(n, "vrrp_instance", seen)
		vi.Name = name
		if !ok || !named || n.Bad {
			continue
		}
		// Instances on one interface share a socket and tell their
		// adverts apart by VRID alone.
		if vi.Interface != "" {
			k := vridKey{vi.Interface, vi.VirtualRouterID, vi.IPv6()}
			if other, dup := vrids[k]; dup {
				at := n.val("virtual_router_id").pos
				v.d.at(at, "virtual_router_id %d is already used on %s by vrrp_instance %q (%s)",
					vi.VirtualRouterID, vi.Interface, other.Name, v.d.where(pos{File: other.File, Line: other.Line}, at))
				continue
			}
			vrids[k] = vi
		}
		v.cfg.VRRPInstances = append(v.cfg.VRRPInstances, vi)
	}
}

func (v *validator) vrrpInstance(n *rawNode, scripts map[string]*VRRPScript) (VRRPInstance, bool) {
	g := v.cfg.Global
	errs := v.d.errCount()
	vi := VRRPInstance{
		Priority:          DefaultPriority,
		AdvertInt:         DefaultAdvertInt,
		GarpMasterDelay:   g.VRRPGarpMasterDelay,
		GarpMasterRepeat:  g.VRRPGarpMasterRepeat,
		GarpMasterRefresh: g.VRRPGarpMasterRefresh,
		SMTPAlert:         g.SMTPAlert,
		V3ChecksumAsV2:    g.V3ChecksumAsV2,
		File:              v.file(n.pos),
		Line:              n.Line,
	}
	if val := n.val("state"); usable(val) {
		switch strings.ToUpper(val.Text) {
		case "MASTER":
			vi.State = Master
		case "BACKUP":
			vi.State = Backup
		default:
			v.d.at(val.pos, "unknown state %q (want MASTER or BACKUP)", val.Text)
		}
	}
	v.setText(&vi.Interface, n.val("interface"))
	if v.required(n.pos, "virtual_router_id", n.val("virtual_router_id")) {
		if id, ok := v.intIn(n.val("virtual_router_id"), "virtual_router_id", 1, 255); ok {
			vi.VirtualRouterID = uint8(id)
		}
	}
	if p, ok := v.intIn(n.val("priority"), "priority", 1, 255); ok {
		vi.Priority = uint8(p)
	}
	v.setFlag(&vi.NoPreempt, n.val("nopreempt"))
	if preempt, ok := v.boolean(n.val("preempt")); ok {
		if preempt && vi.NoPreempt {
			v.d.at(n.val("preempt").pos, "preempt contradicts nopreempt")
		}
		vi.NoPreempt = !preempt
	}
	if d, ok := v.seconds(n.val("preempt_delay"), "preempt_delay", 0); ok {
		if d > 1000*time.Second {
			v.d.at(n.val("preempt_delay").pos, "%s is not a valid preempt_delay (0-1000 seconds)", n.val("preempt_delay").Text)
		} else {
			vi.PreemptDelay = d
		}
	}
	if vi.NoPreempt && vi.State == Master {
		v.d.warn(n.pos, "nopreempt has no effect with state MASTER: the instance takes over at start")
	}

	// Without an interface a VIP needs its own dev, but only a unicast
	// instance may lack one; otherwise the missing interface is the error.
	needDev := !n.has("interface") && len(n.items("unicast_peer")) > 0
	vi.VirtualIPAddresses = v.vips(n.items("virtual_ipaddress"), vi.Interface, true, needDev)
	vi.VirtualIPAddressesExcluded = v.vips(n.items("virtual_ipaddress_excluded"), vi.Interface, false, needDev)
	if len(n.items("virtual_ipaddress")) == 0 {
		v.d.warn(n.pos, "vrrp_instance has no virtual_ipaddress")
	}
	v6 := vi.IPv6()

	vi.Version = g.VRRPVersion
	if v6 {
		vi.Version = 3
	}
	if val := n.val("version"); usable(val) {
		if ver, ok := v.intIn(val, "version", 2, 3); ok {
			if v6 && ver == 2 {
				v.d.at(val.pos, "VRRP version 2 cannot carry IPv6 addresses (use version 3)")
			}
			vi.Version = int(ver)
		}
	}
	if val := n.val("advert_int"); usable(val) {
		if d, ok := v.seconds(val, "advert_int", 10*time.Millisecond); ok {
			switch {
			case vi.Version == 2 && d%time.Second != 0:
				v.d.at(val.pos, "advert_int %s needs VRRP version 3: version 2 counts whole seconds", val.Text)
			case vi.Version == 2 && d > 255*time.Second:
				v.d.at(val.pos, "%s is not a valid advert_int for VRRP version 2 (1-255 seconds)", val.Text)
			case vi.Version == 3 && d%(10*time.Millisecond) != 0:
				v.d.at(val.pos, "advert_int %s is finer than VRRP version 3's centiseconds", val.Text)
			case vi.Version == 3 && d > 40950*time.Millisecond:
				v.d.at(val.pos, "%s is not a valid advert_int for VRRP version 3 (0.01-40.95 seconds)", val.Text)
			default:
				vi.AdvertInt = d
			}
		}
	}

	if a := n.node("authentication"); a != nil {
		if val := a.val("auth_type"); v.required(a.pos, "auth_type", val) && usable(val) {
			switch strings.ToUpper(val.Text) {
			case "PASS":
				vi.AuthType = AuthPass
			case "AH":
				vi.AuthType = AuthAH
			default:
				v.d.at(val.pos, "unknown auth_type %q (want PASS or AH)", val.Text)
			}
		}
		if val := a.val("auth_pass"); usable(val) {
			vi.AuthPass = val.Text
			if len(vi.AuthPass) > 8 {
				v.d.warn(val.pos, "auth_pass is longer than 8 characters; only %q is used", vi.AuthPass[:8])
				vi.AuthPass = vi.AuthPass[:8]
			}
		} else if vi.AuthType == AuthPass && val == nil {
			v.d.at(a.pos, "missing required %s %q", v.d.syntax.word(), "auth_pass")
		}
		if vi.Version == 3 && vi.AuthType != AuthNone {
			v.d.at(a.pos, "authentication needs VRRP version 2 (version 3 has none)")
		}
		if g.VRRPStrict && vi.AuthType != AuthNone {
			v.d.at(a.pos, "authentication is not allowed with vrrp_strict")
		}
	}

	tracked := map[string]pos{}
	once := func(kind string, val *rawValue) (string, bool) {
		name, ok := v.text(val)
		if !ok {
			return "", false
		}
		if first, dup := tracked[kind+" "+name]; dup {
			v.d.at(val.pos, "%s %q is listed twice (first at %s)", kind, name, v.d.where(first, val.pos))
			return "", false
		}
		tracked[kind+" "+name] = val.pos
		return name, true
	}
	for _, t := range n.items("track_interface") {
		ti := TrackInterface{}
		if v.required(t.pos, "name", t.val("name")) {
			ti.Name, _ = once("track_interface", t.val("name"))
		}
		v.setInt(&ti.Weight, t.val("weight"), "weight", -253, 253)
		v.setFlag(&ti.Reverse, t.val("reverse"))
		vi.TrackInterfaces = append(vi.TrackInterfaces, ti)
	}
	for _, t := range n.items("track_script") {
		ts := TrackScript{}
		if v.required(t.pos, "name", t.val("name")) {
			if name, ok := once("track_script", t.val("name")); ok {
				ts.Name = name
				if s := scripts[name]; s != nil {
					ts.Weight, ts.Reverse = s.Weight, s.Reverse
				} else {
					v.d.at(t.val("name").pos, "track_script %q is not a defined vrrp_script", name)
				}
			}
		}
		v.setInt(&ts.Weight, t.val("weight"), "weight", -253, 253)
		v.setFlag(&ts.Reverse, t.val("reverse"))
		vi.TrackScripts = append(vi.TrackScripts, ts)
	}

	family := func(val *rawValue, what string) (netip.Addr, bool) {
		a, ok := v.ip(val)
		if ok && len(vi.VirtualIPAddresses) > 0 && a.Is6() != v6 {
			v.d.at(val.pos, "%s %s is not of the address family of the virtual_ipaddress", what, a)
			return a, false
		}
		return a, ok
	}
	if a, ok := family(n.val("unicast_src_ip"), "unicast_src_ip"); ok {
		vi.UnicastSrcIP = a
	}
	if a, ok := family(n.val("mcast_src_ip"), "mcast_src_ip"); ok {
		vi.McastSrcIP = a
	}
	for _, p := range n.items("unicast_peer") {
		if v.required(p.pos, "address", p.val("address")) {
			if a, ok := family(p.val("address"), "unicast_peer"); ok {
				vi.UnicastPeers = append(vi.UnicastPeers, a)
			}
		}
	}
	if len(vi.UnicastPeers) > 0 && g.VRRPStrict {
		v.d.at(n.field("unicast_peer").pos, "unicast_peer is not allowed with vrrp_strict")
	}
	if !n.has("interface") && len(n.items("unicast_peer")) == 0 {
		v.d.at(n.pos, "missing required %s %q (only unicast instances may leave it out)", v.d.syntax.word(), "interface")
	}

	vi.Notify = v.notify(n)
	v.setFlag(&vi.SMTPAlert, n.val("smtp_alert"))
	v.setSeconds(&vi.GarpMasterDelay, n.val("garp_master_delay"), "garp_master_delay", 0)
	v.setInt(&vi.GarpMasterRepeat, n.val("garp_master_repeat"), "garp_master_repeat", 1, 255)
	v.setSeconds(&vi.GarpMasterRefresh, n.val("garp_master_refresh"), "garp_master_refresh", 0)
	v.setFlag(&vi.V3ChecksumAsV2, n.val("v3_checksum_as_v2"))

	vi.Accept = defaultAccept(g, vi.Priority)
	accept, acceptSet := v.boolean(n.val("accept"))
	noAccept, noAcceptSet := v.boolean(n.val("no_accept"))
	switch {
	case acceptSet && noAcceptSet && accept == noAccept:
		v.d.at(n.val("no_accept").pos, "no_accept contradicts accept")
	case acceptSet:
		vi.Accept = accept
	case noAcceptSet:
		vi.Accept = !noAccept
	}
	return vi, v.d.errCount() == errs
}

// defaultAccept is keepalived's accept mode when neither accept nor
// no_accept is given: on, except that vrrp_strict follows RFC 5798 and
// accepts only as the address owner.
func defaultAccept(g Global, priority uint8) bool {
	return !g.VRRPStrict || priority == 255
}

var scopes = []string{"site", "link", "host", "nowhere", "global"}

func (v *validator) vips(items []*rawNode, iface string, sameFamily, needDev bool) []VIP {
	var vips []VIP
	seen := map[netip.Addr]pos{}
	for _, n := range items {
		vip := VIP{Dev: iface}
		val := n.val("address")
		if !v.required(n.pos, "address", val) || !usable(val) {
			continue
		}
		p, err := netip.ParsePrefix(val.Text)
		if err != nil {
			a, aerr := netip.ParseAddr(val.Text)
			if aerr != nil || a.Zone() != "" {
				v.d.at(val.pos, "%q is not a valid IP address or prefix", val.Text)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		vip.Prefix = p
		v.setText(&vip.Dev, n.val("dev"))
		v.setText(&vip.Label, n.val("label"))
		if s := n.val("scope"); usable(s) {
			if !slices.Contains(scopes, s.Text) {
				v.d.at(s.pos, "unknown scope %q (want %s)", s.Text, strings.Join(scopes, ", "))
			} else {
				vip.Scope = s.Text
			}
		}
		if vip.Dev == "" {
			if needDev {
				v.d.at(n.pos, "%s needs dev when the vrrp_instance has no interface", p)
			}
			continue
		}
		if first, dup := seen[p.Addr()]; dup {
			v.d.at(val.pos, "duplicate address %s (first at %s)", p.Addr(), v.d.where(first, val.pos))
			continue
		}
		seen[p.Addr()] = val.pos
		if sameFamily && len(vips) > 0 && vips[0].Prefix.Addr().Is6() != p.Addr().Is6() {
			v.d.at(val.pos, "%s mixes address families in virtual_ipaddress (put the other family in virtual_ipaddress_excluded)", p.Addr())
			continue
		}
		vips = append(vips, vip)
	}
	return vips
}
