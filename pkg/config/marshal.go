package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MarshalYAML writes cfg as lb.yaml, leaving out whatever equals the
// default the parser would apply, so that `xlbd convert keepalived.conf`
// gives a file that reads like the original. Parsing the result gives cfg
// again, apart from positions (File and Line fields) and Warnings: settings
// keepalived inherits (a real server's retry, say) come out resolved into
// each checker, and keywords xlbd ignores are gone.
func MarshalYAML(cfg *Config) ([]byte, error) {
	m := &marshaler{cfg: cfg}
	var b strings.Builder
	writeYAML(&b, m.config(), 0)
	return []byte(b.String()), nil
}

// Dump writes cfg as lb.yaml with every default spelled out, for
// `xlbd check -v`: what xlbd will actually do, in the syntax of the
// configuration. It is valid lb.yaml itself.
func Dump(cfg *Config) string {
	m := &marshaler{cfg: cfg, full: true}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s, resolved with defaults\n", cfg.File)
	writeYAML(&b, m.config(), 0)
	return b.String()
}

// ymap is a YAML mapping that keeps its keys in order.
type ymap []ykv

type ykv struct {
	k string
	v any // ymap, []any, string, int, bool, or plain (written as is)
}

// plain is a scalar written without quotes: numbers of seconds.
type plain string

type marshaler struct {
	cfg  *Config
	full bool // write defaults too
}

// put adds key unless its value is the default and only differences are
// wanted.
func (m *marshaler) put(y *ymap, key string, v any, isDefault bool) {
	if v == "" {
		return // nothing to show, even in full
	}
	if m.full || !isDefault {
		*y = append(*y, ykv{key, v})
	}
}

// opt adds a value that has no default: written only when set.
func (m *marshaler) opt(y *ymap, key, v string) {
	if v != "" {
		*y = append(*y, ykv{key, v})
	}
}

func secs(d time.Duration) plain { return plain(formatSeconds(d)) }

func (m *marshaler) config() ymap {
	var y ymap
	if g := m.global(); len(g) > 0 {
		y = append(y, ykv{"global_defs", g})
	}
	scripts := map[string]VRRPScript{}
	if len(m.cfg.VRRPScripts) > 0 {
		var l []any
		for _, s := range m.cfg.VRRPScripts {
			scripts[s.Name] = s
			l = append(l, m.vrrpScript(s))
		}
		y = append(y, ykv{"vrrp_scripts", l})
	}
	if len(m.cfg.SyncGroups) > 0 {
		var l []any
		for _, sg := range m.cfg.SyncGroups {
			g := ymap{{"name", sg.Name}, {"group", strings2any(sg.Group)}}
			m.notify(&g, sg.Notify)
			m.put(&g, "smtp_alert", sg.SMTPAlert, sg.SMTPAlert == m.cfg.Global.SMTPAlert)
			l = append(l, g)
		}
		y = append(y, ykv{"vrrp_sync_groups", l})
	}
	if len(m.cfg.VRRPInstances) > 0 {
		var l []any
		for _, vi := range m.cfg.VRRPInstances {
			l = append(l, m.vrrpInstance(vi, scripts))
		}
		y = append(y, ykv{"vrrp_instances", l})
	}
	if len(m.cfg.VirtualServerGroups) > 0 {
		var l []any
		for _, g := range m.cfg.VirtualServerGroups {
			var members []any
			for _, r := range g.Ranges {
				a := r.First.String()
				if r.Last != r.First {
					a += "-" + r.Last.String()
				}
				e := ymap{{"address", a}}
				if r.Port != 0 {
					e = append(e, ykv{"port", int(r.Port)})
				}
				members = append(members, e)
			}
			for _, f := range g.FWMarks {
				members = append(members, ymap{{"fwmark", int(f)}})
			}
			l = append(l, ymap{{"name", g.Name}, {"members", members}})
		}
		y = append(y, ykv{"virtual_server_groups", l})
	}
	if len(m.cfg.VirtualServers) > 0 {
		var l []any
		for _, vs := range m.cfg.VirtualServers {
			l = append(l, m.virtualServer(vs))
		}
		y = append(y, ykv{"virtual_servers", l})
	}
	return y
}

func strings2any(s []string) []any {
	l := make([]any, len(s))
	for i, v := range s {
		l[i] = v
	}
	return l
}

func (m *marshaler) global() ymap {
	g := m.cfg.Global
	var y ymap
	m.opt(&y, "router_id", g.RouterID)
	if len(g.NotificationEmail) > 0 {
		y = append(y, ykv{"notification_email", strings2any(g.NotificationEmail)})
	}
	m.opt(&y, "notification_email_from", g.NotificationEmailFrom)
	if g.SMTPServer != "" {
		if g.SMTPPort == DefaultSMTPPort && !m.full {
			y = append(y, ykv{"smtp_server", g.SMTPServer})
		} else {
			y = append(y, ykv{"smtp_server", ymap{{"address", g.SMTPServer}, {"port", int(g.SMTPPort)}}})
		}
	}
	m.put(&y, "smtp_connect_timeout", secs(g.SMTPConnectTimeout), g.SMTPConnectTimeout == DefaultSMTPConnectTimeout)
	m.put(&y, "smtp_alert", g.SMTPAlert, !g.SMTPAlert)
	if g.ScriptUser != "" {
		y = append(y, ykv{"script_user", userValue(g.ScriptUser, g.ScriptGroup)})
	}
	m.put(&y, "enable_script_security", g.EnableScriptSecurity, !g.EnableScriptSecurity)
	m.put(&y, "vrrp_version", g.VRRPVersion, g.VRRPVersion == DefaultVRRPVersion)
	m.put(&y, "vrrp_strict", g.VRRPStrict, !g.VRRPStrict)
	m.put(&y, "vrrp_garp_master_delay", secs(g.VRRPGarpMasterDelay), g.VRRPGarpMasterDelay == DefaultGarpMasterDelay)
	m.put(&y, "vrrp_garp_master_repeat", g.VRRPGarpMasterRepeat, g.VRRPGarpMasterRepeat == DefaultGarpMasterRepeat)
	m.put(&y, "vrrp_garp_master_refresh", secs(g.VRRPGarpMasterRefresh), g.VRRPGarpMasterRefresh == 0)
	m.put(&y, "vrrp_mcast_group4", g.VRRPMcastGroup4.String(), g.VRRPMcastGroup4 == DefaultMcastGroup4)
	m.put(&y, "v3_checksum_as_v2", g.V3ChecksumAsV2, !g.V3ChecksumAsV2)
	t := g.LVSTimeouts
	m.put(&y, "lvs_timeouts", ymap{{"tcp", secs(t.TCP)}, {"tcpfin", secs(t.TCPFin)}, {"udp", secs(t.UDP)}},
		t == LVSTimeouts{DefaultLVSTimeoutTCP, DefaultLVSTimeoutTCPFin, DefaultLVSTimeoutUDP})
	if sd := g.LVSSyncDaemon; sd != nil {
		// Unset options are IPVS's own choices (the id: the instance's
		// virtual_router_id), which have no value to spell out.
		d := ymap{{"interface", sd.Interface}, {"instance", sd.Instance}}
		for _, o := range []struct {
			key string
			v   int
			set bool
		}{{"id", sd.SyncID, sd.SyncID >= 0}, {"maxlen", sd.MaxLen, sd.MaxLen > 0}, {"port", sd.Port, sd.Port > 0}, {"ttl", sd.TTL, sd.TTL > 0}} {
			if o.set {
				d = append(d, ykv{o.key, o.v})
			}
		}
		if sd.Group.IsValid() {
			d = append(d, ykv{"group", sd.Group.String()})
		}
		y = append(y, ykv{"lvs_sync_daemon", d})
	}
	var sys ymap
	sc := g.LVSSysctl
	m.put(&sys, "expire_quiescent_template", sc.ExpireQuiescentTemplate, !sc.ExpireQuiescentTemplate)
	m.put(&sys, "conn_reuse_mode", sc.ConnReuseMode, sc.ConnReuseMode == DefaultConnReuseMode)
	m.put(&sys, "sloppy_tcp", sc.SloppyTCP, !sc.SloppyTCP)
	if len(sys) > 0 {
		y = append(y, ykv{"lvs_sysctl", sys})
	}
	return y
}

func userValue(user, group string) any {
	if group == "" {
		return user
	}
	return ymap{{"user", user}, {"group", group}}
}

func scriptValue(s Script) any {
	if s.User == "" && s.Group == "" {
		return s.Cmd
	}
	y := ymap{{"script", s.Cmd}}
	if s.User != "" {
		y = append(y, ykv{"user", s.User})
	}
	if s.Group != "" {
		y = append(y, ykv{"group", s.Group})
	}
	return y
}

func (m *marshaler) script(y *ymap, key string, s Script) {
	if !s.IsZero() {
		*y = append(*y, ykv{key, scriptValue(s)})
	}
}

func (m *marshaler) notify(y *ymap, n Notify) {
	m.script(y, "notify_master", n.Master)
	m.script(y, "notify_backup", n.Backup)
	m.script(y, "notify_fault", n.Fault)
	m.script(y, "notify_stop", n.Stop)
	m.script(y, "notify", n.Any)
}

func weightValue(w int, reverse bool) any {
	if !reverse {
		return w
	}
	return ymap{{"value", w}, {"reverse", true}}
}

func (m *marshaler) vrrpScript(s VRRPScript) ymap {
	y := ymap{{"name", s.Name}, {"script", s.Script.Cmd}}
	if s.Script.User != "" {
		y = append(y, ykv{"user", userValue(s.Script.User, s.Script.Group)})
	}
	m.put(&y, "interval", secs(s.Interval), s.Interval == DefaultScriptInterval)
	m.put(&y, "timeout", secs(s.Timeout), s.Timeout == s.Interval)
	m.put(&y, "weight", weightValue(s.Weight, s.Reverse), s.Weight == 0 && !s.Reverse)
	m.put(&y, "rise", s.Rise, s.Rise == 1)
	m.put(&y, "fall", s.Fall, s.Fall == 1)
	return y
}

func (m *marshaler) vrrpInstance(vi VRRPInstance, scripts map[string]VRRPScript) ymap {
	g := m.cfg.Global
	y := ymap{{"name", vi.Name}}
	m.put(&y, "state", vi.State.String(), vi.State == Backup)
	m.opt(&y, "interface", vi.Interface)
	y = append(y, ykv{"virtual_router_id", int(vi.VirtualRouterID)})
	m.put(&y, "priority", int(vi.Priority), vi.Priority == DefaultPriority)
	m.put(&y, "advert_int", secs(vi.AdvertInt), vi.AdvertInt == DefaultAdvertInt)
	defVersion := g.VRRPVersion
	if vi.IPv6() {
		defVersion = 3
	}
	m.put(&y, "version", vi.Version, vi.Version == defVersion)
	m.put(&y, "nopreempt", vi.NoPreempt, !vi.NoPreempt)
	m.put(&y, "preempt_delay", secs(vi.PreemptDelay), vi.PreemptDelay == 0)
	if vi.AuthType != AuthNone {
		a := ymap{{"auth_type", vi.AuthType.String()}}
		m.opt(&a, "auth_pass", vi.AuthPass)
		y = append(y, ykv{"authentication", a})
	}
	vips := func(key string, list []VIP) {
		if len(list) == 0 {
			return
		}
		var l []any
		for _, v := range list {
			addr := v.Prefix.String()
			if v.Prefix.IsSingleIP() && !m.full {
				addr = v.Prefix.Addr().String()
			}
			e := ymap{{"address", addr}}
			m.put(&e, "dev", v.Dev, v.Dev == vi.Interface)
			m.opt(&e, "label", v.Label)
			m.opt(&e, "scope", v.Scope)
			if len(e) == 1 {
				l = append(l, addr)
			} else {
				l = append(l, e)
			}
		}
		y = append(y, ykv{key, l})
	}
	vips("virtual_ipaddress", vi.VirtualIPAddresses)
	vips("virtual_ipaddress_excluded", vi.VirtualIPAddressesExcluded)
	if len(vi.TrackInterfaces) > 0 {
		var l []any
		for _, t := range vi.TrackInterfaces {
			e := ymap{{"name", t.Name}}
			m.put(&e, "weight", t.Weight, t.Weight == 0)
			m.put(&e, "reverse", t.Reverse, !t.Reverse)
			l = append(l, shortest(e))
		}
		y = append(y, ykv{"track_interface", l})
	}
	if len(vi.TrackScripts) > 0 {
		var l []any
		for _, t := range vi.TrackScripts {
			s := scripts[t.Name]
			e := ymap{{"name", t.Name}}
			m.put(&e, "weight", t.Weight, t.Weight == s.Weight)
			m.put(&e, "reverse", t.Reverse, t.Reverse == s.Reverse)
			l = append(l, shortest(e))
		}
		y = append(y, ykv{"track_script", l})
	}
	if vi.UnicastSrcIP.IsValid() {
		y = append(y, ykv{"unicast_src_ip", vi.UnicastSrcIP.String()})
	}
	if len(vi.UnicastPeers) > 0 {
		var l []any
		for _, p := range vi.UnicastPeers {
			l = append(l, p.String())
		}
		y = append(y, ykv{"unicast_peer", l})
	}
	if vi.McastSrcIP.IsValid() {
		y = append(y, ykv{"mcast_src_ip", vi.McastSrcIP.String()})
	}
	m.notify(&y, vi.Notify)
	m.put(&y, "smtp_alert", vi.SMTPAlert, vi.SMTPAlert == g.SMTPAlert)
	m.put(&y, "garp_master_delay", secs(vi.GarpMasterDelay), vi.GarpMasterDelay == g.VRRPGarpMasterDelay)
	m.put(&y, "garp_master_repeat", vi.GarpMasterRepeat, vi.GarpMasterRepeat == g.VRRPGarpMasterRepeat)
	m.put(&y, "garp_master_refresh", secs(vi.GarpMasterRefresh), vi.GarpMasterRefresh == g.VRRPGarpMasterRefresh)
	m.put(&y, "accept", vi.Accept, vi.Accept == defaultAccept(g, vi.Priority))
	m.put(&y, "v3_checksum_as_v2", vi.V3ChecksumAsV2, vi.V3ChecksumAsV2 == g.V3ChecksumAsV2)
	return y
}

// shortest writes a line item with only a name as the bare name.
func shortest(e ymap) any {
	if len(e) == 1 {
		return e[0].v
	}
	return e
}

func (m *marshaler) virtualServer(vs VirtualServer) ymap {
	var y ymap
	switch {
	case vs.FWMark != 0:
		y = ymap{{"fwmark", int(vs.FWMark)}}
	case vs.Group != "":
		y = ymap{{"group", vs.Group}}
	default:
		y = ymap{{"address", vs.Address.String()}, {"port", int(vs.Port)}}
	}
	m.put(&y, "protocol", vs.Protocol.String(), vs.Protocol == DefaultProtocol)
	m.put(&y, "lb_algo", vs.LBAlgo, vs.LBAlgo == DefaultLBAlgo)
	m.put(&y, "lb_kind", vs.LBKind.String(), vs.LBKind == DefaultLBKind)
	m.put(&y, "delay_loop", secs(vs.DelayLoop), vs.DelayLoop == DefaultDelayLoop)
	if vs.PersistenceTimeout != 0 {
		y = append(y, ykv{"persistence_timeout", int(vs.PersistenceTimeout / time.Second)})
	}
	if vs.PersistenceTimeout != 0 {
		// Any granularity makes a service persistent, so it is written
		// only for one that is.
		m.put(&y, "persistence_granularity", maskString(vs.PersistenceGranularity), vs.PersistenceGranularity == 32)
	}
	m.put(&y, "quorum", vs.Quorum, vs.Quorum == DefaultQuorum)
	m.put(&y, "hysteresis", vs.Hysteresis, vs.Hysteresis == 0)
	m.script(&y, "quorum_up", vs.QuorumUp)
	m.script(&y, "quorum_down", vs.QuorumDown)
	m.put(&y, "alpha", vs.Alpha, !vs.Alpha)
	m.put(&y, "omega", vs.Omega, !vs.Omega)
	m.put(&y, "ha_suspend", vs.HASuspend, !vs.HASuspend)
	m.put(&y, "ops", vs.OPS, !vs.OPS)
	for _, f := range vs.SchedFlags {
		m.put(&y, f, true, false)
	}
	m.opt(&y, "virtualhost", vs.Virtualhost)
	if vs.SorryServer.IsValid() {
		if vs.SorryServer.Port() == vs.Port && !m.full {
			y = append(y, ykv{"sorry_server", vs.SorryServer.Addr().String()})
		} else {
			y = append(y, ykv{"sorry_server", ymap{{"address", vs.SorryServer.Addr().String()}, {"port", int(vs.SorryServer.Port())}}})
		}
	}
	m.put(&y, "sorry_server_inhibit", vs.SorryServerInhibit, !vs.SorryServerInhibit)
	// Global smtp_alert is written only when on, and smtp_alert_checker
	// not at all (it is resolved into each server): what a server leaves
	// out reads back as the global smtp_alert for a virtual server and as
	// on for a real server.
	m.put(&y, "smtp_alert", vs.SMTPAlert, vs.SMTPAlert == m.cfg.Global.SMTPAlert)
	if len(vs.RealServers) > 0 {
		var l []any
		for _, rs := range vs.RealServers {
			l = append(l, m.realServer(vs, rs))
		}
		y = append(y, ykv{"real_servers", l})
	}
	return y
}

func maskString(bits int) string {
	var mask [4]byte
	for i := range bits {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(mask).String()
}

func (m *marshaler) realServer(vs VirtualServer, rs RealServer) ymap {
	y := ymap{{"address", rs.Address.String()}}
	if rs.Port != 0 {
		y = append(y, ykv{"port", int(rs.Port)})
	}
	m.put(&y, "weight", rs.Weight, rs.Weight == DefaultWeight)
	m.put(&y, "inhibit_on_failure", rs.InhibitOnFailure, !rs.InhibitOnFailure)
	m.script(&y, "notify_up", rs.NotifyUp)
	m.script(&y, "notify_down", rs.NotifyDown)
	m.put(&y, "smtp_alert", rs.SMTPAlert, rs.SMTPAlert)
	m.put(&y, "uthreshold", int(rs.UThreshold), rs.UThreshold == 0)
	m.put(&y, "lthreshold", int(rs.LThreshold), rs.LThreshold == 0)
	if len(rs.Checkers) > 0 {
		var l []any
		for _, c := range rs.Checkers {
			l = append(l, ymap{{string(c.Type), m.checker(vs, c)}})
		}
		y = append(y, ykv{"checkers", l})
	}
	return y
}

func (m *marshaler) checker(vs VirtualServer, c Checker) ymap {
	allowed := checkerTypes[c.Type]
	var y ymap
	put := func(key string, v any, isDefault bool) {
		if slices.Contains(allowed, key) {
			m.put(&y, key, v, isDefault)
		}
	}
	if c.ConnectIP.IsValid() {
		put("connect_ip", c.ConnectIP.String(), false)
	}
	if c.ConnectPort != 0 {
		put("connect_port", int(c.ConnectPort), false)
	}
	if c.BindTo.IsValid() {
		put("bindto", c.BindTo.String(), false)
	}
	if c.BindPort != 0 {
		put("bind_port", int(c.BindPort), false)
	}
	retry, dbr := checkerDefaultsFor(c.Type, c.DelayLoop)
	put("connect_timeout", secs(c.ConnectTimeout), c.ConnectTimeout == DefaultConnectTimeout)
	put("retry", c.Retry, c.Retry == retry)
	put("delay_before_retry", secs(c.DelayBeforeRetry), c.DelayBeforeRetry == dbr)
	put("warmup", secs(c.Warmup), c.Warmup == c.DelayLoop)
	put("delay_loop", secs(c.DelayLoop), c.DelayLoop == vs.DelayLoop)
	put("alpha", c.Alpha, c.Alpha == vs.Alpha)
	put("log_all_failures", c.LogAllFailures, !c.LogAllFailures)
	switch {
	case c.HTTP != nil:
		h := c.HTTP
		var urls []any
		for _, u := range h.URLs {
			e := ymap{{"path", u.Path}}
			m.opt(&e, "digest", u.Digest)
			var codes []any
			for _, r := range u.StatusCodes {
				if r.Lo == r.Hi {
					codes = append(codes, r.Lo)
				} else {
					codes = append(codes, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
				}
			}
			m.put(&e, "status_code", codes, len(u.StatusCodes) == 1 && u.StatusCodes[0] == StatusRange{200, 299})
			m.put(&e, "virtualhost", u.Virtualhost, u.Virtualhost == h.Virtualhost)
			urls = append(urls, e)
		}
		y = append(y, ykv{"urls", urls})
		put("http_protocol", h.HTTPProtocol, h.HTTPProtocol == DefaultHTTPProtocol)
		put("virtualhost", h.Virtualhost, h.Virtualhost == vs.Virtualhost)
		put("enable_sni", h.EnableSNI, !h.EnableSNI)
		if h.SNIName != "" {
			put("sni_name", h.SNIName, false)
		}
	case c.Misc != nil:
		y = append(y, ykv{"misc_path", c.Misc.Path.Cmd})
		if c.Misc.Path.User != "" {
			y = append(y, ykv{"user", userValue(c.Misc.Path.User, c.Misc.Path.Group)})
		}
		put("misc_timeout", secs(c.Misc.Timeout), c.Misc.Timeout == c.DelayLoop)
		put("misc_dynamic", c.Misc.Dynamic, !c.Misc.Dynamic)
	case c.DNS != nil:
		put("type", c.DNS.Type, c.DNS.Type == DefaultDNSType)
		put("name", c.DNS.Name, c.DNS.Name == DefaultDNSName)
	case c.SMTP != nil:
		m.opt(&y, "helo_name", c.SMTP.HeloName)
	case c.UDP != nil:
		if c.UDP.Payload != nil {
			y = append(y, ykv{"payload", quoted(hex.EncodeToString(c.UDP.Payload))})
		}
		switch {
		case c.UDP.Reply != "":
			y = append(y, ykv{"require_reply", quoted(c.UDP.Reply)})
		case c.UDP.RequireReply:
			y = append(y, ykv{"require_reply", true})
		}
	case c.FileCheck != nil:
		y = append(y, ykv{"track_file", c.FileCheck.TrackFile})
		m.put(&y, "dynamic", c.FileCheck.Dynamic, !c.FileCheck.Dynamic)
		m.put(&y, "weight", weightValue(c.FileCheck.Weight, c.FileCheck.Reverse), c.FileCheck.Weight == 0 && !c.FileCheck.Reverse)
	}
	return y
}

// quoted is a string always written in quotes, for hex digits that would
// otherwise read as a number.
type quoted string

// plainScalar matches strings YAML reads back as the same string without
// quotes. Anything else, including whatever could read as a number,
// boolean or null, is quoted.
var plainScalar = regexp.MustCompile(`^[A-Za-z0-9_/.][A-Za-z0-9_/.@+=,-]*$`)

func scalarText(v any) string {
	switch s := v.(type) {
	case plain:
		return string(s)
	case quoted:
		return strconv.Quote(string(s))
	case int:
		return strconv.Itoa(s)
	case bool:
		return strconv.FormatBool(s)
	case string:
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "null", "y", "n", ".inf", ".nan":
			return strconv.Quote(s)
		}
		if plainScalar.MatchString(s) && !looksNumeric(s) {
			return s
		}
		return strconv.Quote(s)
	}
	panic(fmt.Sprintf("config: cannot write %T as YAML", v))
}

// writeYAML writes v in block style, indent spaces in.
func writeYAML(b *strings.Builder, v ymap, indent int) {
	pad := strings.Repeat(" ", indent)
	for _, kv := range v {
		b.WriteString(pad)
		writeEntry(b, kv, indent)
	}
}

func writeEntry(b *strings.Builder, kv ykv, indent int) {
	b.WriteString(scalarText(kv.k))
	b.WriteString(":")
	writeValue(b, kv.v, indent)
}

// writeValue writes what follows "key:" or "-".
func writeValue(b *strings.Builder, v any, indent int) {
	switch x := v.(type) {
	case ymap:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return
		}
		b.WriteString("\n")
		writeYAML(b, x, indent+2)
	case []any:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return
		}
		b.WriteString("\n")
		pad := strings.Repeat(" ", indent+2)
		for _, item := range x {
			b.WriteString(pad + "-")
			if m, ok := item.(ymap); ok && len(m) > 0 {
				b.WriteString(" ")
				writeEntry(b, m[0], indent+4)
				for _, kv := range m[1:] {
					b.WriteString(strings.Repeat(" ", indent+4))
					writeEntry(b, kv, indent+4)
				}
				continue
			}
			writeValue(b, item, indent+2)
		}
	default:
		b.WriteString(" " + scalarText(v) + "\n")
	}
}

func looksNumeric(s string) bool {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return true
	}
	_, err := strconv.ParseInt(s, 0, 64)
	return err == nil || strings.Trim(s, "0123456789_") == ""
}
