package config

// The schema lists every keyword of every block once, for both front ends:
// its lb.yaml name, its keepalived.conf spelling and older names, its shape,
// and how keepalived.conf writes its arguments. A keyword keepalived knows
// but xlbd does not implement is listed in its block's ignored names, so that
// both syntaxes warn about it instead of calling it unknown.
//
// lb.yaml mirrors keepalived.conf with three rules:
//   - a block keepalived repeats (virtual_server, real_server, vrrp_instance,
//     vrrp_script, vrrp_sync_group, virtual_server_group, url) is a list under
//     the plural name (virtual_servers, ...); its header becomes keys
//     (name, or address and port, or fwmark, or group);
//   - a block of lines (virtual_ipaddress, track_script, unicast_peer,
//     notification_email, ...) is a list under the keyword's own name, each
//     line a scalar or, to give options, a mapping;
//   - a keyword with several arguments (smtp_server IP PORT, notify_master
//     SCRIPT USER GROUP, weight N reverse) is a mapping of named arguments,
//     or a scalar standing for the first one.
// Health checkers are a list under checkers, each item keyed by the
// checker's keepalived name: `- TCP_CHECK: {connect_timeout: 3}`. Keying by
// name, rather than a type key, keeps DNS_CHECK's own "type" keyword free and
// reads like keepalived.conf.

type kind uint8

const (
	kValue  kind = iota // one value: `priority 100`
	kFlag               // a keyword alone or with a boolean: `nopreempt`, `smtp_alert yes`
	kWords              // values on the keyword's line: `status_code 200 300-399`
	kValues             // a block of bare values: `group { VI_1 VI_2 }`
	kStruct             // named arguments: `smtp_server 10.0.0.1 25`
	kBlock              // one sub-block, merged if repeated: `global_defs { ... }`
	kItems              // a repeated block with a header: `real_server 10.0.0.2 80 { ... }`
	kLines              // a block whose lines are items: `virtual_ipaddress { 10.0.0.1/24 dev eth0 }`
)

// kaFunc turns a keepalived.conf statement (a header, a line of a block or
// a keyword with several arguments) into fields of n. It reports problems
// itself.
type kaFunc func(c *kaReader, n *rawNode, st *stmt)

type key struct {
	name string   // lb.yaml key, and keepalived keyword unless kws is set
	kws  []string // keepalived keywords when they differ from name
	old  []string // older names, accepted in both syntaxes
	kind kind
	sub  *block // fields of kStruct, kBlock, kItems and kLines entries

	// header marks fields that keepalived.conf writes in a block's header
	// (`virtual_server IP PORT`) and lb.yaml as keys; they are not
	// keywords inside the block.
	header bool
	// short is the field an lb.yaml scalar stands for (kStruct, kLines).
	short string
	// optional is the value of a kValue keepalived.conf gives alone
	// (`persistence_timeout` means 360).
	optional string
	// ka parses keepalived.conf arguments of kStruct keywords, headers of
	// kItems and lines of kLines.
	ka kaFunc
	// kaBody parses a kItems block that holds lines rather than keywords
	// (virtual_server_group).
	kaBody func(c *kaReader, n *rawNode, body []*stmt)
	// typed marks the checkers list: in lb.yaml each item is keyed by a
	// checker name, in keepalived.conf each checker keyword adds an item;
	// either way the item gets a checkerField.
	typed bool
	// yamlOnly marks what keepalived has no keyword for (settings it
	// leaves to sysctl): keepalived.conf does not accept it.
	yamlOnly bool
}

type block struct {
	name    string // for messages
	keys    []*key
	ignored map[string]bool
	yaml    map[string]*key // every accepted lb.yaml spelling
	kw      map[string]*key // every accepted keepalived.conf spelling
}

func newBlock(name string, keys []*key, ignored ...string) *block {
	b := &block{name: name, keys: keys, ignored: map[string]bool{}, yaml: map[string]*key{}, kw: map[string]*key{}}
	for _, k := range keys {
		b.yaml[k.name] = k
		for _, o := range k.old {
			b.yaml[o] = k
			b.kw[o] = k
		}
		if k.header || k.yamlOnly {
			continue
		}
		if len(k.kws) == 0 {
			b.kw[k.name] = k
		}
		for _, w := range k.kws {
			b.kw[w] = k
		}
	}
	for _, n := range ignored {
		b.ignored[n] = true
	}
	return b
}

func value(name string, old ...string) *key { return &key{name: name, old: old, kind: kValue} }
func flag(name string) *key                 { return &key{name: name, kind: kFlag} }
func header(name string) *key               { return &key{name: name, kind: kValue, header: true} }

func structKey(name, short string, sub *block, ka kaFunc) *key {
	return &key{name: name, kind: kStruct, short: short, sub: sub, ka: ka}
}

func lineKey(name, short string, sub *block, ka kaFunc) *key {
	return &key{name: name, kind: kLines, short: short, sub: sub, ka: ka}
}

func itemsKey(name, kw string, sub *block, ka kaFunc) *key {
	return &key{name: name, kws: []string{kw}, kind: kItems, sub: sub, ka: ka}
}

// Argument shapes shared by several keywords.
var (
	scriptFields  = newBlock("script", []*key{value("script"), value("user"), value("group")})
	userFields    = newBlock("user", []*key{value("user"), value("group")})
	addrPortShape = newBlock("address", []*key{value("address"), value("port")})
	weightFields  = newBlock("weight", []*key{value("value"), flag("reverse")})
)

func notifyKey(name string) *key { return structKey(name, "script", scriptFields, kaNotify) }
func userKey(name string) *key   { return structKey(name, "user", userFields, kaUser) }

var globalBlock = newBlock("global_defs", []*key{
	value("router_id", "lvs_id"),
	{name: "notification_email", kind: kValues},
	value("notification_email_from"),
	structKey("smtp_server", "address", addrPortShape, kaAddrPort),
	value("smtp_connect_timeout"),
	flag("smtp_alert"),
	flag("smtp_alert_checker"),
	userKey("script_user"),
	flag("enable_script_security"),
	value("vrrp_version"),
	flag("vrrp_strict"),
	value("vrrp_garp_master_delay"),
	value("vrrp_garp_master_repeat"),
	value("vrrp_garp_master_refresh"),
	value("vrrp_mcast_group4"),
	flag("v3_checksum_as_v2"),
	structKey("lvs_timeouts", "", newBlock("lvs_timeouts", []*key{value("tcp"), value("tcpfin"), value("udp")}), kaLVSTimeouts),
	structKey("lvs_sync_daemon", "", newBlock("lvs_sync_daemon", []*key{value("interface"), value("instance"),
		value("id"), value("maxlen"), value("port"), value("ttl"), value("group")}), kaLVSSyncDaemon),
	{name: "lvs_sysctl", kind: kBlock, yamlOnly: true, sub: newBlock("lvs_sysctl", []*key{
		flag("expire_quiescent_template"), value("conn_reuse_mode"), flag("sloppy_tcp"),
	})},
},
	"tmp_config_directory", "config_save_dir", "process_names", "process_name",
	"vrrp_process_name", "checker_process_name", "bfd_process_name", "use_symlink_paths",
	"set_supplementary_groups", "startup_script", "startup_script_timeout", "shutdown_script",
	"shutdown_script_timeout", "smtp_helo_name", "smtp_alert_vrrp",
	"checker_log_all_failures", "no_email_faults", "vrrp_mcast_group6", "default_interface",
	"lvs_flush", "lvs_flush_on_stop", "vrrp_garp_lower_prio_repeat",
	"vrrp_garp_lower_prio_delay", "vrrp_garp_master_refresh_repeat", "vrrp_garp_interval",
	"vrrp_gna_interval", "vrrp_min_garp", "vrrp_garp_extra_if", "vrrp_down_timer_adverts",
	"vrrp_lower_prio_no_advert", "vrrp_higher_prio_send_advert", "nftables", "nftables_priority",
	"nftables_counters", "nftables_ifindex", "nftables_ipvs", "nftables_ipvs_priority",
	"nftables_ipvs_start_fwmark", "vrrp_iptables", "vrrp_ipsets", "disable_local_igmp",
	"vrrp_check_unicast_src", "vrrp_skip_check_adv_addr", "vrrp_notify_priority_changes",
	"max_auto_priority", "min_auto_priority_delay", "vrrp_priority", "checker_priority",
	"bfd_priority", "vrrp_no_swap", "checker_no_swap", "bfd_no_swap", "vrrp_cpu_affinity",
	"checker_cpu_affinity", "bfd_cpu_affinity", "vrrp_rt_priority", "checker_rt_priority",
	"bfd_rt_priority", "vrrp_rlimit_rttime", "checker_rlimit_rttime", "bfd_rlimit_rttime",
	"snmp_socket", "enable_snmp_vrrp", "enable_snmp_checker", "enable_snmp_rfc",
	"enable_snmp_rfcv2", "enable_snmp_rfcv3", "enable_snmp_keepalived", "enable_traps",
	"snmp_vs_stats_update_interval", "snmp_rs_stats_update_interval", "enable_dbus",
	"dbus_service_name", "dbus_no_interface_name", "notify_fifo", "notify_fifo_script",
	"vrrp_notify_fifo", "vrrp_notify_fifo_script", "lvs_notify_fifo", "lvs_notify_fifo_script",
	"fifo_write_vrrp_states_on_reload", "dynamic_interfaces", "vrrp_netlink_cmd_rcv_bufs",
	"vrrp_netlink_cmd_rcv_bufs_force", "vrrp_netlink_monitor_rcv_bufs",
	"vrrp_netlink_monitor_rcv_bufs_force", "lvs_netlink_cmd_rcv_bufs",
	"lvs_netlink_cmd_rcv_bufs_force", "lvs_netlink_monitor_rcv_bufs",
	"lvs_netlink_monitor_rcv_bufs_force", "process_monitor_rcv_bufs",
	"process_monitor_rcv_bufs_force", "vrrp_rx_bufs_policy", "vrrp_rx_bufs_multiplier",
	"rs_init_notifies", "no_checker_emails", "umask", "vrrp_startup_delay",
	"vrrp_delay_after_boot", "log_unknown_vrids", "vmac_prefix", "vmac_addr_prefix",
	"random_seed", "reload_check_config", "include_check", "reload_time_file", "reload_repeat",
	"reload_file", "data_use_instance", "state_file_location", "stats_file_location",
	"json_file_location", "json_version", "iproute_usr_dir", "iproute_etc_dir",
	"linkbeat_use_polling", "net_namespace", "net_namespace_ipvs", "namespace_with_ipsets",
	"instance", "use_pid_dir", "child_wait_time",
)

var vrrpScriptBlock = newBlock("vrrp_script", []*key{
	header("name"),
	{name: "script", kind: kValue, ka: kaCommand},
	value("interval"),
	value("timeout"),
	structKey("weight", "value", weightFields, kaWeight),
	value("rise"),
	value("fall"),
	userKey("user"),
}, "init_fail")

var syncGroupBlock = newBlock("vrrp_sync_group", []*key{
	header("name"),
	{name: "group", kind: kValues},
	notifyKey("notify_master"),
	notifyKey("notify_backup"),
	notifyKey("notify_fault"),
	notifyKey("notify_stop"),
	notifyKey("notify"),
	flag("smtp_alert"),
},
	"track_interface", "track_script", "track_file", "track_process", "track_bfd",
	"notify_deleted", "global_tracking", "sync_group_tracking_weight", "notify_priority_changes",
)

var vipBlock = newBlock("virtual_ipaddress", []*key{value("address"), value("dev"), value("label"), value("scope")})

var vrrpInstanceBlock = newBlock("vrrp_instance", []*key{
	header("name"),
	value("state"),
	value("interface"),
	value("virtual_router_id"),
	value("priority"),
	value("advert_int"),
	value("version"),
	flag("nopreempt"),
	flag("preempt"),
	value("preempt_delay"),
	{name: "authentication", kind: kBlock, sub: newBlock("authentication", []*key{value("auth_type"), value("auth_pass")})},
	lineKey("virtual_ipaddress", "address", vipBlock, kaVIP),
	lineKey("virtual_ipaddress_excluded", "address", vipBlock, kaVIP),
	lineKey("track_interface", "name", newBlock("track_interface", []*key{value("name"), value("weight"), flag("reverse")}), kaTrack),
	lineKey("track_script", "name", newBlock("track_script", []*key{value("name"), value("weight"), flag("reverse")}), kaTrack),
	value("unicast_src_ip"),
	lineKey("unicast_peer", "address", newBlock("unicast_peer", []*key{value("address")}), kaPeer),
	value("mcast_src_ip"),
	notifyKey("notify_master"),
	notifyKey("notify_backup"),
	notifyKey("notify_fault"),
	notifyKey("notify_stop"),
	notifyKey("notify"),
	flag("smtp_alert"),
	value("garp_master_delay"),
	value("garp_master_repeat"),
	value("garp_master_refresh"),
	flag("accept"),
	flag("no_accept"),
	flag("v3_checksum_as_v2"),
},
	"use_vmac", "use_vmac_addr", "vmac_xmit_base", "use_ipvlan", "unicast_fault_no_peer",
	"check_unicast_src", "old_unicast_checksum", "native_ipv6", "vrf", "dont_track_primary",
	"track_file", "track_process", "track_bfd", "mcast_dst_ip", "track_src_ip", "unicast_ttl",
	"no_virtual_ipaddress", "promote_secondaries", "linkbeat_use_polling", "virtual_routes",
	"virtual_rules", "skip_check_adv_addr", "strict_mode", "debug", "notify_deleted",
	"notify_master_rx_lower_pri", "notify_priority_changes", "lvs_sync_daemon_interface",
	"garp_master_refresh_repeat", "garp_lower_prio_delay", "garp_lower_prio_repeat",
	"down_timer_adverts", "timer_expired_backup", "garp_extra_if", "vmac_garp_intvl",
	"lower_prio_no_advert", "higher_prio_send_advert", "kernel_rx_buf_size", "auth_hmac",
)

var vsgBlock = newBlock("virtual_server_group", []*key{
	header("name"),
	{name: "members", kind: kLines, header: true, sub: newBlock("member", []*key{value("address"), value("port"), value("fwmark")})},
})

// Settings a virtual or real server passes down to its checkers.
func checkerDefaults() []*key {
	return []*key{
		value("connect_timeout"),
		value("retry", "nb_get_retry"),
		value("delay_before_retry"),
		value("warmup"),
	}
}

var urlBlock = newBlock("url", []*key{
	value("path"),
	value("digest"),
	{name: "status_code", kind: kWords},
	value("virtualhost"),
}, "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset", "tls_compliant")

var checkerBlock = newBlock("checker", append(checkerDefaults(),
	value("connect_ip"),
	value("connect_port"),
	value("bindto"),
	value("bind_port"),
	value("delay_loop"),
	flag("alpha"),
	flag("log_all_failures"),
	itemsKey("urls", "url", urlBlock, kaNoArgs),
	value("http_protocol"),
	value("virtualhost"),
	flag("enable_sni"),
	value("sni_name"),
	&key{name: "misc_path", kind: kValue, ka: kaCommand},
	value("misc_timeout"),
	flag("misc_dynamic"),
	userKey("user"),
	value("type"),
	value("name"),
	value("helo_name"),
	&key{name: "payload", kind: kValue, ka: kaJoin},
	&key{name: "require_reply", kind: kValue, ka: kaJoin, optional: "true"},
	value("track_file"),
	flag("dynamic"),
	structKey("weight", "value", weightFields, kaWeight),
), "bind_if", "fwmark", "fast_recovery", "tls_compliant", "min_reply_length", "max_reply_length")

// checkerTypes are the checker keywords of a real server, with the fields
// each accepts beyond the checker defaults. MISC_CHECK and FILE_CHECK do not
// connect anywhere, so keepalived gives them fewer.
var checkerTypes = map[CheckerType][]string{
	CheckTCP:  connectFields,
	CheckPing: connectFields,
	CheckHTTP: append([]string{"urls", "http_protocol", "virtualhost"}, connectFields...),
	CheckSSL:  append([]string{"urls", "http_protocol", "virtualhost", "enable_sni", "sni_name"}, connectFields...),
	CheckMisc: append([]string{"misc_path", "misc_timeout", "misc_dynamic", "user"}, timingFields...),
	CheckDNS:  append([]string{"type", "name"}, connectFields...),
	CheckSMTP: append([]string{"helo_name"}, connectFields...),
	CheckUDP:  append([]string{"payload", "require_reply"}, connectFields...),
	CheckFile: {"track_file", "dynamic", "weight"},
}

var (
	timingFields  = []string{"alpha", "connect_timeout", "retry", "delay_before_retry", "warmup", "delay_loop", "log_all_failures"}
	connectFields = append([]string{"connect_ip", "connect_port", "bindto", "bind_port"}, timingFields...)
)

var realServerBlock = newBlock("real_server", append(checkerDefaults(),
	header("address"),
	header("port"),
	value("weight"),
	flag("inhibit_on_failure"),
	notifyKey("notify_up"),
	notifyKey("notify_down"),
	value("uthreshold"),
	value("lthreshold"),
	value("virtualhost"),
	flag("alpha"),
	value("delay_loop"),
	flag("smtp_alert"),
	&key{name: "checkers", kws: checkerKeywords(), kind: kItems, sub: checkerBlock, ka: kaChecker, typed: true},
), "lvs_method", "snmp_name", "BFD_CHECK")

func checkerKeywords() []string {
	return []string{"TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "DNS_CHECK", "SMTP_CHECK", "UDP_CHECK", "PING_CHECK", "FILE_CHECK"}
}

var virtualServerBlock = newBlock("virtual_server", append(checkerDefaults(),
	header("address"),
	header("port"),
	header("fwmark"),
	header("group"),
	value("protocol"),
	value("lb_algo", "lvs_sched"),
	&key{name: "lb_kind", old: []string{"lvs_method"}, kind: kValue, ka: kaLBKind},
	value("delay_loop"),
	&key{name: "persistence_timeout", kind: kValue, optional: "360"},
	value("persistence_granularity"),
	value("quorum"),
	value("hysteresis"),
	notifyKey("quorum_up"),
	notifyKey("quorum_down"),
	flag("alpha"),
	flag("omega"),
	flag("ha_suspend"),
	flag("ops"),
	flag("sh-port"),
	flag("sh-fallback"),
	flag("mh-port"),
	flag("mh-fallback"),
	flag("inhibit_on_failure"),
	value("virtualhost"),
	structKey("sorry_server", "address", addrPortShape, kaAddrPort),
	flag("sorry_server_inhibit"),
	flag("smtp_alert"),
	itemsKey("real_servers", "real_server", realServerBlock, kaRealServer),
),
	"ip_family", "hashed", "flag-1", "flag-2", "flag-3", "persistence_engine", "snmp_name",
	"sorry_server_lvs_method", "weight", "nat_mask",
)

var rootBlock = newBlock("", []*key{
	{name: "global_defs", kind: kBlock, sub: globalBlock},
	itemsKey("vrrp_scripts", "vrrp_script", vrrpScriptBlock, kaName),
	itemsKey("vrrp_sync_groups", "vrrp_sync_group", syncGroupBlock, kaName),
	itemsKey("vrrp_instances", "vrrp_instance", vrrpInstanceBlock, kaName),
	{name: "virtual_server_groups", kws: []string{"virtual_server_group"}, kind: kItems, sub: vsgBlock, ka: kaName, kaBody: kaGroupBody},
	itemsKey("virtual_servers", "virtual_server", virtualServerBlock, kaVirtualServer),
},
	"net_namespace", "net_namespace_ipvs", "namespace_with_ipsets", "instance", "use_pid_dir",
	"linkbeat_use_polling", "child_wait_time", "linkbeat_interfaces", "track_group",
	"static_ipaddress", "static_routes", "static_rules", "track_file", "vrrp_track_file",
	"vrrp_track_process", "bfd_instance", "garp_group", "interface_up_down_delays", "SSL",
)
