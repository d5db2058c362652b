package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const kaDir = "../../testdata/keepalived"

// Positions are checked by TestKeepalivedPositions; the model tables would
// drown in them.
var ignorePositions = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{}),
	cmpopts.IgnoreFields(Config{}, "File", "Warnings"),
	cmpopts.IgnoreFields(VirtualServer{}, "File", "Line"),
	cmpopts.IgnoreFields(RealServer{}, "File", "Line"),
	cmpopts.IgnoreFields(Checker{}, "File", "Line"),
	cmpopts.IgnoreFields(VRRPInstance{}, "File", "Line"),
	cmpopts.IgnoreFields(VRRPScript{}, "File", "Line"),
	cmpopts.IgnoreFields(SyncGroup{}, "File", "Line"),
	cmpopts.IgnoreFields(VirtualServerGroup{}, "File", "Line"),
	cmpopts.IgnoreFields(LVSSyncDaemon{}, "File", "Line"),
}

func loadKA(t *testing.T, name string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kaDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return ParseKeepalived(filepath.Join(kaDir, name), data, nil, nil)
}

// Constructors with keepalived's defaults, so that tables only spell out
// what a file sets.

func defaultGlobal() Global {
	return Global{
		SMTPPort:             25,
		SMTPConnectTimeout:   30 * time.Second,
		VRRPVersion:          2,
		VRRPGarpMasterDelay:  5 * time.Second,
		VRRPGarpMasterRepeat: 5,
		VRRPMcastGroup4:      ip("224.0.0.18"),
		LVSTimeouts:          LVSTimeouts{900 * time.Second, 120 * time.Second, 300 * time.Second},
		LVSSysctl:            LVSSysctl{ConnReuseMode: 1},
	}
}

func kvs(addr string, port uint16, reals ...RealServer) VirtualServer {
	v := VirtualServer{
		Port:                   port,
		Protocol:               TCP,
		LBAlgo:                 DefaultLBAlgo,
		LBKind:                 NAT,
		DelayLoop:              60 * time.Second,
		PersistenceGranularity: 32,
		Quorum:                 1,
		RealServers:            reals,
	}
	if addr != "" {
		v.Address = ip(addr)
	}
	return v
}

func krs(addr string, port uint16, checkers ...Checker) RealServer {
	return RealServer{Address: ip(addr), Port: port, Weight: 1, SMTPAlert: true, Checkers: checkers}
}

// chk is a checker with the defaults it gets under a virtual server whose
// delay_loop is delayLoop.
func chk(typ CheckerType, delayLoop time.Duration) Checker {
	retry, dbr := 1, time.Second
	c := Checker{Type: typ, ConnectTimeout: 5 * time.Second, DelayLoop: delayLoop, Warmup: delayLoop}
	switch typ {
	case CheckHTTP, CheckSSL:
		dbr = 3 * time.Second
		c.HTTP = &HTTPCheck{HTTPProtocol: "1.0"}
	case CheckMisc:
		retry = 0
		c.Misc = &MiscCheck{Timeout: delayLoop}
	case CheckDNS:
		retry, dbr = 3, delayLoop
		c.DNS = &DNSCheck{Type: "SOA", Name: "."}
	case CheckSMTP:
		c.SMTP = &SMTPCheck{}
	case CheckUDP:
		c.UDP = &UDPCheck{}
	case CheckFile:
		c.FileCheck = &FileCheck{}
	}
	c.Retry, c.DelayBeforeRetry = retry, dbr
	return c
}

func url(path string, codes ...StatusRange) URL {
	if codes == nil {
		codes = []StatusRange{{200, 299}}
	}
	return URL{Path: path, StatusCodes: codes}
}

func inst(name, iface string, vrid uint8, vips ...VIP) VRRPInstance {
	return VRRPInstance{
		Name:               name,
		Interface:          iface,
		VirtualRouterID:    vrid,
		Priority:           100,
		AdvertInt:          time.Second,
		Version:            2,
		VirtualIPAddresses: vips,
		GarpMasterDelay:    5 * time.Second,
		GarpMasterRepeat:   5,
		Accept:             true,
	}
}

func vip(prefix, dev string) VIP {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		a := ip(prefix)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return VIP{Prefix: p, Dev: dev}
}

func script(name, cmd string) VRRPScript {
	return VRRPScript{Name: name, Script: Script{Cmd: cmd}, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
}

func cfgOf(f func(*Config)) *Config {
	c := &Config{Global: defaultGlobal()}
	f(c)
	return c
}

// goodKeepalived lists every good testdata/keepalived file with the model
// it must give.
var goodKeepalived = map[string]*Config{
	"01-minimal.conf": cfgOf(func(c *Config) {
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, krs("10.50.2.11", 8080), krs("10.50.2.12", 8080))}
	}),
	"02-global-defs.conf": cfgOf(func(c *Config) {
		c.Global = Global{
			RouterID:              "LB_EDGE_1",
			NotificationEmail:     []string{"ops@example.com", "On call <oncall@example.com>"},
			NotificationEmailFrom: "keepalived@example.com",
			SMTPServer:            "192.0.2.25",
			SMTPPort:              2525,
			SMTPConnectTimeout:    10 * time.Second,
			SMTPAlert:             true,
			ScriptUser:            "keepalived_script",
			ScriptGroup:           "keepalived",
			EnableScriptSecurity:  true,
			VRRPVersion:           3,
			VRRPStrict:            true,
			VRRPGarpMasterDelay:   10 * time.Second,
			VRRPGarpMasterRepeat:  2,
			VRRPGarpMasterRefresh: 60 * time.Second,
			VRRPMcastGroup4:       ip("224.0.0.19"),
			V3ChecksumAsV2:        true,
			LVSTimeouts:           LVSTimeouts{7200 * time.Second, 60 * time.Second, 30 * time.Second},
			LVSSysctl:             LVSSysctl{ConnReuseMode: 1},
		}
	}),
	"03-old-names.conf": cfgOf(func(c *Config) {
		c.Global.RouterID = "OLD_LB"
		check := chk(CheckTCP, 10*time.Second)
		check.ConnectPort, check.Retry = 53, 4
		rs := krs("10.50.2.11", 53, check)
		rs.Weight = 3
		vs := kvs("10.50.1.100", 53, rs)
		vs.Protocol, vs.LBKind, vs.DelayLoop = UDP, DR, 10*time.Second
		vs.LBAlgo = "rr" // lvs_sched RR
		c.VirtualServers = []VirtualServer{vs}
	}),
	"04-comments.conf": cfgOf(func(c *Config) {
		c.Global.RouterID = "hash#tag"
		c.Global.NotificationEmailFrom = "ops#1@example.com"
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, krs("10.50.2.11", 8080))}
	}),
	"05-one-line-blocks.conf": cfgOf(func(c *Config) {
		c.VRRPScripts = []VRRPScript{script("chk", "/bin/true")}
		vi1 := inst("VI_1", "eth0", 7, vip("10.50.1.100/24", "eth0"))
		vi1.TrackScripts = []TrackScript{{Name: "chk"}}
		vi1.AuthType = AuthAH
		c.VRRPInstances = []VRRPInstance{vi1, inst("VI_2", "eth0", 8, vip("10.50.1.101", "eth0"))}
		rs := krs("10.50.2.11", 8080)
		rs.Weight = 2
		check := chk(CheckTCP, 60*time.Second)
		check.ConnectTimeout = 2 * time.Second
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, rs), kvs("10.50.1.100", 443, krs("10.50.2.11", 8443, check))}
	}),
	"06-include.conf": cfgOf(func(c *Config) {
		c.Global.RouterID = "FROM_CONF_D"
		c.VRRPScripts = []VRRPScript{script("chk_web", "/usr/local/bin/check-web"), script("chk_dns", "/usr/local/bin/check-dns")}
		vi := inst("VI_1", "eth0", 51, vip("10.50.1.100/24", "eth0"))
		vi.TrackScripts = []TrackScript{{Name: "chk_web"}, {Name: "chk_dns"}}
		c.VRRPInstances = []VRRPInstance{vi}
		dns := kvs("10.50.1.100", 53, krs("10.50.2.21", 53))
		dns.Protocol = UDP
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, krs("10.50.2.11", 80)), dns}
	}),
	"07-vrrp-instance.conf": cfgOf(func(c *Config) {
		vi := inst("VI_EDGE", "eth0", 51,
			VIP{Prefix: netip.MustParsePrefix("10.50.1.100/24"), Dev: "eth0", Label: "eth0:vip", Scope: "global"},
			vip("10.50.1.101", "eth0"))
		vi.State = Master
		vi.Priority = 150
		vi.AdvertInt = 2 * time.Second
		vi.NoPreempt = true
		vi.PreemptDelay = 30 * time.Second
		vi.AuthType, vi.AuthPass = AuthPass, "secret1"
		vi.VirtualIPAddressesExcluded = []VIP{vip("10.60.0.1/32", "eth1"), vip("2001:db8::100/64", "eth1")}
		vi.TrackInterfaces = []TrackInterface{{Name: "eth1"}, {Name: "eth2", Weight: -20}, {Name: "eth3", Weight: 10, Reverse: true}}
		vi.UnicastSrcIP = ip("10.50.1.2")
		vi.UnicastPeers = []netip.Addr{ip("10.50.1.3"), ip("10.50.1.4")}
		vi.Notify = Notify{
			Master: Script{Cmd: "/etc/keepalived/notify.sh MASTER"},
			Backup: Script{Cmd: "/etc/keepalived/notify.sh BACKUP", User: "nobody", Group: "nogroup"},
			Fault:  Script{Cmd: "/etc/keepalived/fault.sh"},
			Stop:   Script{Cmd: "/etc/keepalived/stop.sh"},
			Any:    Script{Cmd: "/etc/keepalived/any.sh"},
		}
		vi.SMTPAlert = true
		vi.GarpMasterDelay, vi.GarpMasterRepeat, vi.GarpMasterRefresh = time.Second, 3, 30*time.Second
		vi.Accept = false
		c.VRRPInstances = []VRRPInstance{vi}
	}),
	"08-vrrp-script.conf": cfgOf(func(c *Config) {
		haproxy := script("chk_haproxy", "/usr/bin/killall -0 haproxy")
		haproxy.Script.User, haproxy.Script.Group = "haproxy", "haproxy"
		haproxy.Interval, haproxy.Timeout = 2*time.Second, 1500*time.Millisecond
		haproxy.Weight, haproxy.Reverse, haproxy.Rise, haproxy.Fall = -30, true, 3, 2
		web := script("chk_web", "curl -fs http://localhost/")
		web.Weight, web.Reverse = 15, true
		c.VRRPScripts = []VRRPScript{haproxy, script("chk_file", `/usr/bin/test -f "/run/lb up"`), web}
		vi := inst("VI_1", "eth0", 1, vip("10.50.1.100", "eth0"))
		vi.TrackScripts = []TrackScript{{"chk_haproxy", -30, true}, {"chk_file", 5, false}, {"chk_web", 20, false}}
		c.VRRPInstances = []VRRPInstance{vi}
	}),
	"09-sync-group.conf": cfgOf(func(c *Config) {
		c.SyncGroups = []SyncGroup{{
			Name:  "VG_1",
			Group: []string{"VI_OUT", "VI_IN"},
			Notify: Notify{
				Master: Script{Cmd: "/etc/keepalived/group.sh master"},
				Backup: Script{Cmd: "/etc/keepalived/group.sh backup"},
				Fault:  Script{Cmd: "/etc/keepalived/group.sh fault"},
				Any:    Script{Cmd: "/etc/keepalived/group-any.sh", User: "root"},
			},
		}}
		c.VRRPInstances = []VRRPInstance{
			inst("VI_OUT", "eth0", 10, vip("192.0.2.10/24", "eth0")),
			inst("VI_IN", "eth1", 10, vip("10.50.2.1/24", "eth1")),
		}
	}),
	"10-vrrp-v3-ipv6.conf": cfgOf(func(c *Config) {
		v6 := inst("VI_6", "eth0", 60, vip("fe80::1/64", "eth0"), vip("2001:db8::1/64", "eth0"))
		v6.Priority, v6.AdvertInt, v6.Version = 255, 250*time.Millisecond, 3
		v4 := inst("VI_4", "eth0", 60, vip("10.50.1.100", "eth0"))
		v4.AdvertInt, v4.Version = 100*time.Millisecond, 3
		c.VRRPInstances = []VRRPInstance{v6, v4}
	}),
	"11-virtual-server-group.conf": cfgOf(func(c *Config) {
		c.VirtualServerGroups = []VirtualServerGroup{{
			Name: "WEB",
			Ranges: []AddressRange{
				{ip("10.50.1.100"), ip("10.50.1.100"), 80},
				{ip("10.50.1.101"), ip("10.50.1.110"), 80},
				{ip("10.50.1.200"), ip("10.50.2.5"), 8080},
				{ip("10.50.3.0"), ip("10.50.3.3"), 443},
				{ip("10.50.4.1"), ip("10.50.4.1"), 0},
			},
			FWMarks: []uint32{7},
		}}
		vs := kvs("", 0, krs("10.50.2.11", 80))
		vs.Group, vs.LBKind = "WEB", DR
		c.VirtualServers = []VirtualServer{vs}
	}),
	"12-fwmark.conf": cfgOf(func(c *Config) {
		check := chk(CheckTCP, 60*time.Second)
		check.ConnectPort = 80
		vs := kvs("", 0, krs("10.50.2.11", 0, check), krs("10.50.2.12", 0))
		vs.FWMark, vs.LBKind, vs.PersistenceTimeout = 5, DR, 600*time.Second
		c.VirtualServers = []VirtualServer{vs}
	}),
	"25-ipvs.conf": cfgOf(func(c *Config) {
		c.Global.LVSSyncDaemon = &LVSSyncDaemon{Interface: "eth1", Instance: "VI_SYNC", SyncID: 9, MaxLen: 1400, Port: 8850, TTL: 2, Group: ip("224.0.0.99")}
		c.VRRPInstances = []VRRPInstance{inst("VI_SYNC", "eth0", 61, vip("10.50.1.100", "eth0"))}
		sctp := kvs("10.50.1.100", 38412, krs("10.50.2.11", 38412))
		sctp.Protocol, sctp.LBAlgo = SCTP, "rr"
		fwm := kvs("", 0, krs("10.50.2.12", 0))
		fwm.FWMark, fwm.LBAlgo = 7, "wlc"
		c.VirtualServers = []VirtualServer{sctp, fwm}
	}),
	"13-virtual-server-options.conf": cfgOf(func(c *Config) {
		rs1 := krs("10.50.2.11", 53)
		rs1.Weight = 2
		rs1.NotifyUp = Script{Cmd: "/etc/keepalived/rs.sh up"}
		rs1.NotifyDown = Script{Cmd: "/etc/keepalived/rs.sh down"}
		rs1.UThreshold, rs1.LThreshold = 1000, 100
		rs2 := krs("10.50.2.12", 53)
		rs2.InhibitOnFailure = true
		vs := kvs("10.50.1.100", 53, rs1, rs2)
		vs.Protocol = UDP
		vs.DelayLoop = 15 * time.Second
		vs.PersistenceTimeout, vs.PersistenceGranularity = 360*time.Second, 24
		vs.Quorum, vs.Hysteresis = 3, 1
		vs.QuorumUp = Script{Cmd: "/etc/keepalived/quorum.sh up"}
		vs.QuorumDown = Script{Cmd: "/etc/keepalived/quorum.sh down", User: "nobody"}
		vs.Alpha, vs.Omega, vs.HASuspend, vs.OPS = true, true, true, true
		vs.Virtualhost = "dns.example.com"
		vs.SorryServer = netip.MustParseAddrPort("10.50.9.1:5353")
		vs2 := kvs("10.50.1.101", 25)
		vs2.PersistenceTimeout, vs2.PersistenceGranularity = 360*time.Second, 16
		vs2.SorryServer = netip.MustParseAddrPort("10.50.9.2:25")
		c.VirtualServers = []VirtualServer{vs, vs2}
	}),
	"14-tcp-check.conf": cfgOf(func(c *Config) {
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, krs("10.50.2.11", 8080, Checker{
			Type:             CheckTCP,
			ConnectIP:        ip("10.50.3.11"),
			ConnectPort:      8081,
			BindTo:           ip("10.50.1.2"),
			BindPort:         40000,
			ConnectTimeout:   2500 * time.Millisecond,
			Retry:            2,
			DelayBeforeRetry: 4 * time.Second,
			Warmup:           0,
			DelayLoop:        10 * time.Second,
			Alpha:            true,
			LogAllFailures:   true,
		}))}
	}),
	"15-http-get.conf": cfgOf(func(c *Config) {
		h1 := chk(CheckHTTP, 20*time.Second)
		h1.ConnectTimeout = 3 * time.Second
		h1.HTTP = &HTTPCheck{
			HTTPProtocol: "1.1",
			Virtualhost:  "www.example.com",
			URLs: []URL{
				{Path: "/healthz", StatusCodes: []StatusRange{{200, 200}, {204, 204}, {300, 399}}, Virtualhost: "www.example.com"},
				{Path: "/index.html", Digest: "9b3a0c85a887a256d6939da88aabd8cd", StatusCodes: []StatusRange{{200, 299}}, Virtualhost: "static.example.com"},
			},
		}
		h2 := chk(CheckHTTP, 20*time.Second)
		u := url("/")
		u.Virtualhost = "rs12.example.com"
		h2.HTTP = &HTTPCheck{HTTPProtocol: "1.0", Virtualhost: "rs12.example.com", URLs: []URL{u}}
		vs := kvs("10.50.1.100", 80, krs("10.50.2.11", 8080, h1), krs("10.50.2.12", 8080, h2))
		vs.DelayLoop, vs.Virtualhost = 20*time.Second, "www.example.com"
		c.VirtualServers = []VirtualServer{vs}
	}),
	"16-ssl-get.conf": cfgOf(func(c *Config) {
		s := chk(CheckSSL, 60*time.Second)
		s.HTTP = &HTTPCheck{HTTPProtocol: "1.0C", EnableSNI: true, SNIName: "www.example.com", URLs: []URL{url("/", StatusRange{200, 200})}}
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 443, krs("10.50.2.11", 443, s))}
	}),
	"17-misc-check.conf": cfgOf(func(c *Config) {
		m1 := chk(CheckMisc, 60*time.Second)
		m1.Misc = &MiscCheck{Path: Script{Cmd: "/usr/local/bin/check-mysql --host 10.50.2.11 --port 3306", User: "mysql"}, Timeout: 5 * time.Second, Dynamic: true}
		m2 := chk(CheckMisc, 60*time.Second)
		m2.Retry = 2
		m2.Misc = &MiscCheck{Path: Script{Cmd: "/usr/local/bin/check-replication 'lag < 10'"}, Timeout: 60 * time.Second}
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 3306, krs("10.50.2.11", 3306, m1, m2))}
	}),
	"18-other-checkers.conf": cfgOf(func(c *Config) {
		d1 := chk(CheckDNS, 60*time.Second)
		d1.DNS = &DNSCheck{Type: "A", Name: "www.example.com"}
		u1 := chk(CheckUDP, 60*time.Second)
		u1.UDP = &UDPCheck{Payload: []byte{0xab, 0x12, 0x0f, 0x03, 0x45, 0x06}, RequireReply: true, Reply: "0a0bxx"}
		u2 := chk(CheckUDP, 60*time.Second)
		u2.UDP = &UDPCheck{RequireReply: true}
		dns := kvs("10.50.1.100", 53, krs("10.50.2.11", 53, d1, chk(CheckDNS, 60*time.Second), u1, u2, chk(CheckPing, 60*time.Second)))
		dns.Protocol = UDP
		smtp := chk(CheckSMTP, 60*time.Second)
		smtp.ConnectTimeout = 10 * time.Second
		smtp.SMTP = &SMTPCheck{HeloName: "mail.example.com"}
		file := chk(CheckFile, 60*time.Second)
		file.FileCheck = &FileCheck{TrackFile: "rs11", Dynamic: true, Weight: 10, Reverse: true}
		c.VirtualServers = []VirtualServer{dns, kvs("10.50.1.100", 25, krs("10.50.2.11", 25, smtp, file))}
	}),
	"19-inheritance.conf": cfgOf(func(c *Config) {
		inherit := func(typ CheckerType, delayLoop, connect time.Duration) Checker {
			k := chk(typ, delayLoop)
			k.ConnectTimeout, k.Retry, k.DelayBeforeRetry, k.Warmup, k.Alpha = connect, 4, 2*time.Second, 5*time.Second, true
			return k
		}
		t2 := inherit(CheckTCP, 12*time.Second, 8*time.Second)
		t2.Retry, t2.Alpha = 9, false
		rs1 := krs("10.50.2.11", 80, inherit(CheckTCP, 12*time.Second, 8*time.Second), t2)
		rs1.InhibitOnFailure = true
		misc := inherit(CheckMisc, 30*time.Second, 7*time.Second)
		misc.Misc = &MiscCheck{Path: Script{Cmd: "/bin/true"}, Timeout: 30 * time.Second}
		rs2 := krs("10.50.2.12", 80, misc, inherit(CheckDNS, 30*time.Second, 7*time.Second))
		rs2.InhibitOnFailure = true
		vs := kvs("10.50.1.100", 80, rs1, rs2)
		vs.DelayLoop, vs.Alpha = 30*time.Second, true
		c.VirtualServers = []VirtualServer{vs}
	}),
	"20-not-implemented.conf": cfgOf(func(c *Config) {
		c.Global.RouterID = "LB1"
		vi := inst("VI_1", "eth0", 51, vip("10.50.1.100/24", "eth0"))
		vi.UnicastPeers = []netip.Addr{ip("10.50.1.3")}
		c.VRRPInstances = []VRRPInstance{vi}
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, krs("10.50.2.11", 80, chk(CheckTCP, 60*time.Second)))}
	}),
	"21-empty.conf": cfgOf(func(*Config) {}),
	"22-classic.conf": cfgOf(func(c *Config) {
		c.Global.NotificationEmail = []string{"acassen@firewall.loc", "failover@firewall.loc", "sysadmin@firewall.loc"}
		c.Global.NotificationEmailFrom = "Alexandre.Cassen@firewall.loc"
		c.Global.SMTPServer = "192.168.200.1"
		c.Global.RouterID = "LVS_DEVEL"
		vi := inst("VI_1", "eth0", 51, vip("192.168.200.16", "eth0"), vip("192.168.200.17", "eth0"), vip("192.168.200.18", "eth0"))
		vi.State, vi.AuthType, vi.AuthPass = Master, AuthPass, "1111"
		c.VRRPInstances = []VRRPInstance{vi}
		s := chk(CheckSSL, 6*time.Second)
		s.ConnectTimeout, s.Retry = 3*time.Second, 3
		u1, u2 := url("/"), url("/mrtg/")
		u1.Digest, u2.Digest = "ff20ad2481f97b1754ef3e12ecd3a9cc", "9b3a0c85a887a256d6939da88aabd8cd"
		s.HTTP.URLs = []URL{u1, u2}
		vs := kvs("192.168.200.100", 443, krs("192.168.201.100", 443, s))
		vs.DelayLoop, vs.PersistenceTimeout = 6*time.Second, 50*time.Second
		vs.LBAlgo = "rr"
		c.VirtualServers = []VirtualServer{vs}
	}),
	"24-everything.conf": everything,
	"23-brace-layout.conf": cfgOf(func(c *Config) {
		r1, r2 := krs("10.50.2.11", 8080), krs("10.50.2.12", 8080)
		r1.Weight, r2.Weight = 5, 6
		c.VirtualServers = []VirtualServer{kvs("10.50.1.100", 80, r1, r2)}
	}),
}

// everything is the model of 24-everything.conf and of its lb.yaml twin,
// testdata/config/full.yaml.
var everything = cfgOf(func(c *Config) {
	c.Global.RouterID = "LB1"
	c.Global.NotificationEmail = []string{"ops@example.com"}
	c.Global.SMTPServer = "192.0.2.25"
	c.Global.ScriptUser = "keepalived_script"
	c.Global.LVSTimeouts = LVSTimeouts{600 * time.Second, 120 * time.Second, 60 * time.Second}
	web := script("chk_web", "/usr/local/bin/check-web --quick")
	web.Interval, web.Timeout, web.Weight, web.Fall = 2*time.Second, 2*time.Second, -20, 3
	c.VRRPScripts = []VRRPScript{web}
	c.SyncGroups = []SyncGroup{{Name: "VG_1", Group: []string{"VI_1", "VI_2"}, Notify: Notify{Any: Script{Cmd: "/etc/keepalived/notify.sh", User: "root"}}}}
	vi1 := inst("VI_1", "eth0", 51, vip("10.50.1.100/24", "eth0"), VIP{Prefix: netip.MustParsePrefix("10.50.1.101/24"), Dev: "eth0", Label: "eth0:1"})
	vi1.State, vi1.Priority = Master, 150
	vi1.AuthType, vi1.AuthPass = AuthPass, "s3cret"
	vi1.TrackInterfaces = []TrackInterface{{Name: "eth1", Weight: -10}}
	vi1.TrackScripts = []TrackScript{{Name: "chk_web", Weight: -20}}
	vi1.Notify.Master = Script{Cmd: "/etc/keepalived/notify.sh master"}
	vi2 := inst("VI_2", "eth1", 52, vip("10.50.2.100/24", "eth1"))
	vi2.Version, vi2.AdvertInt = 3, 500*time.Millisecond
	vi2.UnicastSrcIP, vi2.UnicastPeers = ip("10.50.2.1"), []netip.Addr{ip("10.50.2.2")}
	c.VRRPInstances = []VRRPInstance{vi1, vi2}
	c.VirtualServerGroups = []VirtualServerGroup{{
		Name:    "DNS",
		Ranges:  []AddressRange{{ip("10.50.1.53"), ip("10.50.1.53"), 53}, {ip("10.50.1.54"), ip("10.50.1.55"), 53}},
		FWMarks: []uint32{9},
	}}
	dnsCheck := chk(CheckDNS, 60*time.Second)
	dnsCheck.DNS.Name = "example.com"
	dns := kvs("", 0, krs("10.50.2.21", 53, dnsCheck))
	dns.Group, dns.Protocol = "DNS", UDP
	http := chk(CheckHTTP, 10*time.Second)
	http.ConnectTimeout = 3 * time.Second
	http.HTTP.URLs = []URL{url("/healthz", StatusRange{200, 299}, StatusRange{301, 301})}
	misc := chk(CheckMisc, 10*time.Second)
	misc.Misc.Path.Cmd, misc.Misc.Dynamic = "/usr/local/bin/check-app 10.50.2.11", true
	rs1 := krs("10.50.2.11", 80, http, misc)
	rs1.Weight = 2
	web80 := kvs("10.50.1.100", 80, rs1, krs("10.50.2.12", 80, chk(CheckTCP, 10*time.Second)))
	web80.DelayLoop, web80.LBKind, web80.PersistenceTimeout = 10*time.Second, DR, 300*time.Second
	web80.SorryServer = netip.MustParseAddrPort("10.50.9.1:8080")
	web80.LBAlgo = "rr"
	c.VirtualServers = []VirtualServer{dns, web80}
})

// The same configuration in both syntaxes gives the same model, warnings
// included.
func TestYAMLMatchesKeepalived(t *testing.T) {
	ka, err := loadKA(t, "24-everything.conf")
	if err != nil {
		t.Fatal(err)
	}
	y, err := parseTestdata(t, "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(everything, y, ignorePositions); diff != "" {
		t.Errorf("full.yaml (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ka, y, ignorePositions); diff != "" {
		t.Errorf("keepalived.conf and lb.yaml differ (-keepalived +yaml):\n%s", diff)
	}
	// Group virtual servers are balanced (expanded by reconcile): no warning.
	if len(ka.Warnings) != 0 || len(y.Warnings) != 0 {
		t.Errorf("warnings:\n%v\n%v", ka.Warnings, y.Warnings)
	}
}

// goodKeepalivedFiles lists the good files in testdata, so that a new one
// cannot go untested.
func goodKeepalivedFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(kaDir, "*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var good []string
	for _, f := range files {
		if !strings.HasPrefix(filepath.Base(f), "bad-") {
			good = append(good, filepath.Base(f))
		}
	}
	return good
}

func TestKeepalivedGood(t *testing.T) {
	files := goodKeepalivedFiles(t)
	if len(files) < 20 {
		t.Errorf("only %d good keepalived.conf files in testdata", len(files))
	}
	for _, f := range files {
		if goodKeepalived[f] == nil {
			t.Errorf("%s has no expected model in goodKeepalived", f)
		}
	}
	for name, want := range goodKeepalived {
		t.Run(name, func(t *testing.T) {
			got, err := loadKA(t, name)
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if diff := cmp.Diff(want, got, ignorePositions); diff != "" {
				t.Errorf("model mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeepalivedBad(t *testing.T) {
	tests := map[string][]string{ // file → errors, as FILE:LINE: PATH: message
		"bad-unknown-keyword.conf": {
			`bad-unknown-keyword.conf:3: global_defs.routerid: unknown keyword "routerid"`,
			`bad-unknown-keyword.conf:6: vrrp_instanse: unknown keyword "vrrp_instanse"`,
			`bad-unknown-keyword.conf:13: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080].wieght: unknown keyword "wieght"`,
			`bad-unknown-keyword.conf:14: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080].TCP_CHEK: unknown keyword "TCP_CHEK"`,
		},
		"bad-unbalanced-open.conf": {
			`bad-unbalanced-open.conf:1: unbalanced braces: this "{" is never closed`,
			`bad-unbalanced-open.conf:5: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080].real_server: unknown keyword "real_server"`,
		},
		"bad-unbalanced-close.conf": {
			`bad-unbalanced-close.conf:6: unbalanced braces: "}" closes no block`,
		},
		"bad-reference.conf": {
			`bad-reference.conf:13: vrrp_instance[VI_1].track_script: track_script "chk_dns" is not a defined vrrp_script`,
			`bad-reference.conf:19: vrrp_sync_group[VG_1].group: "VI_1" is not a defined vrrp_instance`,
			`bad-reference.conf:20: vrrp_sync_group[VG_1].group: "VI_2" is not a defined vrrp_instance`,
			`bad-reference.conf:24: virtual_server[group NOPE]: virtual_server_group "NOPE" is not defined`,
		},
		"bad-dup-vrid.conf": {
			`bad-dup-vrid.conf:19: vrrp_instance[VI_3].virtual_router_id: virtual_router_id 51 is already used on eth0 by vrrp_instance "VI_1" (line 1)`,
		},
		"bad-duplicates.conf": {
			`bad-duplicates.conf:5: vrrp_instance[VI_1].priority: duplicate keyword "priority" (first at line 4)`,
			`bad-duplicates.conf:8: vrrp_instance[VI_1].virtual_ipaddress: duplicate address 10.50.1.100 (first at line 7)`,
			`bad-duplicates.conf:12: vrrp_instance[VI_1].track_interface: track_interface "eth1" is listed twice (first at line 11)`,
			`bad-duplicates.conf:16: vrrp_instance[VI_1]: duplicate vrrp_instance "VI_1" (first at line 1)`,
			`bad-duplicates.conf:26: virtual_server[10.50.1.100 80].lvs_sched: duplicate keyword "lvs_sched" (already given as "lb_algo" at line 25)`,
			`bad-duplicates.conf:29: virtual_server[10.50.1.100 80].real_server[10.50.2.11 8080]: duplicate real server 10.50.2.11:8080 (first at line 27)`,
			`bad-duplicates.conf:37: virtual_server[10.50.1.100 443]: duplicate virtual server 10.50.1.100:443/TCP (first at line 34)`,
		},
		"bad-ranges.conf": {
			`bad-ranges.conf:3: vrrp_script[chk].interval: 0 is not a valid interval (at least 0.001 seconds)`,
			`bad-ranges.conf:4: vrrp_script[chk].weight: 300 is not a valid weight (-253 to 253)`,
			`bad-ranges.conf:5: vrrp_script[chk].rise: 0 is not a valid rise (at least 1)`,
			`bad-ranges.conf:10: vrrp_instance[VI_1].virtual_router_id: 0 is not a valid virtual_router_id (1-255)`,
			`bad-ranges.conf:11: vrrp_instance[VI_1].priority: 256 is not a valid priority (1-255)`,
			`bad-ranges.conf:12: vrrp_instance[VI_1].advert_int: advert_int 0.5 needs VRRP version 3: version 2 counts whole seconds`,
			`bad-ranges.conf:13: vrrp_instance[VI_1].preempt_delay: 2000 is not a valid preempt_delay (0-1000 seconds)`,
			`bad-ranges.conf:15: vrrp_instance[VI_1].track_interface: 254 is not a valid weight (-253 to 253)`,
			`bad-ranges.conf:18: vrrp_instance[VI_1].virtual_ipaddress: "10.50.1.300/24" is not a valid IP address or prefix`,
			`bad-ranges.conf:19: vrrp_instance[VI_1].virtual_ipaddress: "10.50.1.100/33" is not a valid IP address or prefix`,
			`bad-ranges.conf:23: virtual_server[10.50.1.100 70000]: 70000 is not a valid port (0-65535; 0: every port)`,
			`bad-ranges.conf:24: virtual_server[10.50.1.100 70000].delay_loop: 0 is not a valid delay_loop (at least 1 second)`,
			`bad-ranges.conf:25: virtual_server[10.50.1.100 70000].quorum: 0 is not a valid quorum (at least 1)`,
			`bad-ranges.conf:27: virtual_server[10.50.1.100 70000].real_server[10.50.2.11 8080].weight: -1 is not a valid weight (0-65535)`,
			`bad-ranges.conf:29: virtual_server[10.50.1.100 70000].real_server[10.50.2.11 8080].TCP_CHECK.connect_port: 0 is not a valid port (1-65535)`,
			`bad-ranges.conf:30: virtual_server[10.50.1.100 70000].real_server[10.50.2.11 8080].TCP_CHECK.connect_timeout: 0 is not a valid connect_timeout (at least 0.001 seconds)`,
			`bad-ranges.conf:31: virtual_server[10.50.1.100 70000].real_server[10.50.2.11 8080].TCP_CHECK.retry: -1 is not a valid retry (at least 0)`,
		},
		"bad-many.conf": {
			`bad-many.conf:3: global_defs.smtp_server: "smtp" is not an integer`,
			`bad-many.conf:4: global_defs.vrrp_version: 4 is not a valid vrrp_version (2-3)`,
			`bad-many.conf:7: vrrp_instance[VI_1]: missing required keyword "interface" (only unicast instances may leave it out)`,
			`bad-many.conf:8: vrrp_instance[VI_1].state: unknown state "PRIMARY" (want MASTER or BACKUP)`,
			`bad-many.conf:11: vrrp_instance[VI_1].authentication.auth_type: unknown auth_type "MD5" (want PASS or AH)`,
			`bad-many.conf:14: vrrp_instance[VI_1].virtual_ipaddress: virtual_ipaddress option dev needs a value`,
			`bad-many.conf:18: virtual_server[10.50.1.256 80]: "10.50.1.256" is not a valid IPv4 address`,
			`bad-many.conf:19: virtual_server[10.50.1.256 80].protocol: unknown protocol "GRE" (want TCP, UDP or SCTP)`,
			`bad-many.conf:21: virtual_server[10.50.1.256 80].lb_kind: unknown lb_kind "FNAT" (want NAT, DR or TUN)`,
			`bad-many.conf:22: virtual_server[10.50.1.256 80].real_server[10.50.2.11 8o]: "8o" is not an integer`,
			`bad-many.conf:26: virtual_server[10.50.1.256 80].real_server[10.50.2.11 8o].HTTP_GET.url.digest: "nothex" is not an MD5 digest (32 hex digits)`,
			`bad-many.conf:27: virtual_server[10.50.1.256 80].real_server[10.50.2.11 8o].HTTP_GET.url.status_code: "700" is not a valid status_code (a code or range within 100-599)`,
			`bad-many.conf:30: virtual_server[10.50.1.256 80].real_server[10.50.2.11 8o].HTTP_GET.misc_path: misc_path does not apply to HTTP_GET`,
			`bad-many.conf:32: virtual_server[10.50.1.256 80].real_server[10.50.2.11 8o].HTTP_GET: HTTP_GET needs at least one url`,
		},
		"bad-include.conf": {
			`bad-include.conf:2: include: include "does-not-exist.conf": no such file`,
			`cycle/b.conf:4: include: include cycle: ` + kaDir + `/cycle/a.conf -> ` + kaDir + `/cycle/b.conf -> ` + kaDir + `/cycle/a.conf`,
		},
		"bad-advanced-syntax.conf": {
			`bad-advanced-syntax.conf:1: conditional configuration (lines starting with @) is not supported`,
			`bad-advanced-syntax.conf:3: parameter definitions ($NAME=...) are not supported`,
			`bad-advanced-syntax.conf:4: ~SEQ and ~LST lines are not supported`,
			`bad-advanced-syntax.conf:4: virtual_server[10.50.1.$i 80]: "10.50.1.$i" is not a valid IPv4 address`,
			`bad-advanced-syntax.conf:7: unterminated quote`,
		},
		"bad-headers.conf": {
			`bad-headers.conf:1: virtual_server[10.50.1.100]: virtual_server needs IP PORT, fwmark N or group NAME`,
			`bad-headers.conf:3: virtual_server[10.50.1.100 80 90]: virtual_server needs IP PORT, fwmark N or group NAME`,
			`bad-headers.conf:5: vrrp_instance: vrrp_instance needs a name`,
			`bad-headers.conf:5: vrrp_instance: missing required keyword "virtual_router_id"`,
			`bad-headers.conf:5: vrrp_instance: missing required keyword "interface" (only unicast instances may leave it out)`,
			`bad-headers.conf:8: virtual_server[10.50.1.101 80].real_server: real_server needs IP [PORT]`,
			`bad-headers.conf:10: virtual_server[10.50.1.101 80].nopreempt: unknown keyword "nopreempt"`,
			`bad-headers.conf:12: vrrp_script[a b]: vrrp_script needs a name`,
			`bad-headers.conf:12: vrrp_script[a b]: missing required keyword "script"`,
			`bad-headers.conf:15: global_defs.router_id: router_id needs a value`,
			`bad-headers.conf:16: global_defs.notification_email: notification_email needs a { } block`,
			`bad-headers.conf:17: global_defs.smtp_alert: smtp_alert takes a single value, got 2: "yes no" (one keyword per line)`,
		},
	}

	files, err := filepath.Glob(filepath.Join(kaDir, "bad-*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if tests[filepath.Base(f)] == nil {
			t.Errorf("%s has no expected errors in TestKeepalivedBad", f)
		}
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadKA(t, name)
			if err == nil {
				t.Fatalf("ParseKeepalived succeeded, want errors; got %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("ParseKeepalived returned a config along with errors")
			}
			for i := range want {
				want[i] = kaDir + "/" + want[i]
			}
			if diff := cmp.Diff(strings.Join(want, "\n"), err.Error()); diff != "" {
				t.Errorf("error text mismatch (-want +got):\n%s", diff)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) != len(want) {
				t.Errorf("got %d errors as %T, want an ErrorList of %d", len(list), err, len(want))
			}
		})
	}
}

// Every item records the file and line it came from, included files
// included, so that later messages (health checks, VRRP) can point at it.
func TestKeepalivedPositions(t *testing.T) {
	cfg, err := loadKA(t, "06-include.conf")
	if err != nil {
		t.Fatal(err)
	}
	type at struct {
		File string
		Line int
	}
	var got []at
	for _, s := range cfg.VRRPScripts {
		got = append(got, at{s.File, s.Line})
	}
	for _, vi := range cfg.VRRPInstances {
		got = append(got, at{vi.File, vi.Line})
	}
	for _, vs := range cfg.VirtualServers {
		got = append(got, at{vs.File, vs.Line})
		for _, rs := range vs.RealServers {
			got = append(got, at{rs.File, rs.Line})
		}
	}
	want := []at{
		{kaDir + "/conf.d/20-scripts.conf", 1},
		{kaDir + "/include/nested.inc", 1},
		{kaDir + "/06-include.conf", 5},
		{kaDir + "/include/web.vs", 1},
		{kaDir + "/include/web.vs", 2},
		{kaDir + "/include/dns.vs", 1},
		{kaDir + "/include/dns.vs", 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
	if cfg.File != kaDir+"/06-include.conf" {
		t.Errorf("File = %q", cfg.File)
	}

	cfg, err = loadKA(t, "22-classic.conf")
	if err != nil {
		t.Fatal(err)
	}
	vs := cfg.VirtualServers[0]
	if vs.Line != 32 || vs.RealServers[0].Line != 39 || vs.RealServers[0].Checkers[0].Line != 41 || cfg.VRRPInstances[0].Line != 15 {
		t.Errorf("lines: vs %d, rs %d, checker %d, instance %d; want 32, 39, 41, 15",
			vs.Line, vs.RealServers[0].Line, vs.RealServers[0].Checkers[0].Line, cfg.VRRPInstances[0].Line)
	}
}

func TestKeepalivedWarnings(t *testing.T) {
	tests := map[string][]string{
		"20-not-implemented.conf": {
			`5: global_defs.vrrp_skip_check_adv_addr: keyword "vrrp_skip_check_adv_addr" is not implemented by xlbd; ignored`,
			`6: global_defs.enable_snmp_vrrp: keyword "enable_snmp_vrrp" is not implemented by xlbd; ignored`,
			`9: static_ipaddress: keyword "static_ipaddress" is not implemented by xlbd; ignored`,
			`13: SSL: keyword "SSL" is not implemented by xlbd; ignored`,
			`20: vrrp_instance[VI_1].use_vmac: keyword "use_vmac" is not implemented by xlbd; ignored`,
			`22: vrrp_instance[VI_1].virtual_ipaddress: virtual_ipaddress option "brd" is not implemented by xlbd; ignored`,
			`25: vrrp_instance[VI_1].unicast_peer: unicast_peer option "min_ttl" is not implemented by xlbd; ignored`,
			`27: vrrp_instance[VI_1].virtual_routes: keyword "virtual_routes" is not implemented by xlbd; ignored`,
			`33: virtual_server[10.50.1.100 80].hashed: keyword "hashed" is not implemented by xlbd; ignored`,
			`35: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].snmp_name: keyword "snmp_name" is not implemented by xlbd; ignored`,
			`36: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].BFD_CHECK: keyword "BFD_CHECK" is not implemented by xlbd; ignored`,
			`40: virtual_server[10.50.1.100 80].real_server[10.50.2.11 80].TCP_CHECK.bind_if: keyword "bind_if" is not implemented by xlbd; ignored`,
		},
		"07-vrrp-instance.conf": {
			`1: vrrp_instance[VI_EDGE]: nopreempt has no effect with state MASTER: the instance takes over at start`,
		},
	}
	for _, name := range goodKeepalivedFiles(t) {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadKA(t, name)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.Error())
			}
			var want []string
			for _, w := range tests[name] {
				want = append(want, kaDir+"/"+name+":"+w)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// Both syntaxes must give one model: whatever keepalived.conf says,
// MarshalYAML must write lb.yaml that parses back to it.
func TestRoundTrip(t *testing.T) {
	for _, name := range goodKeepalivedFiles(t) {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadKA(t, name)
			if err != nil {
				t.Fatal(err)
			}
			for _, full := range []bool{false, true} {
				var y []byte
				if full {
					y = []byte(Dump(cfg))
				} else if y, err = MarshalYAML(cfg); err != nil {
					t.Fatal(err)
				}
				back, err := Parse("lb.yaml", y)
				if err != nil {
					t.Fatalf("lb.yaml (full %v) does not parse:\n%v\n%s", full, err, y)
				}
				if diff := cmp.Diff(cfg, back, ignorePositions); diff != "" {
					t.Errorf("round trip (full %v) changed the model (-keepalived +yaml):\n%s\n%s", full, diff, y)
				}
			}
		})
	}
}

func TestMarshalYAMLShape(t *testing.T) {
	cfg, err := loadKA(t, "22-classic.conf")
	if err != nil {
		t.Fatal(err)
	}
	y, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `global_defs:
  router_id: LVS_DEVEL
  notification_email:
    - acassen@firewall.loc
    - failover@firewall.loc
    - sysadmin@firewall.loc
  notification_email_from: Alexandre.Cassen@firewall.loc
  smtp_server: 192.168.200.1
vrrp_instances:
  - name: VI_1
    state: MASTER
    interface: eth0
    virtual_router_id: 51
    authentication:
      auth_type: PASS
      auth_pass: "1111"
    virtual_ipaddress:
      - 192.168.200.16
      - 192.168.200.17
      - 192.168.200.18
virtual_servers:
  - address: 192.168.200.100
    port: 443
    lb_algo: rr
    delay_loop: 6
    persistence_timeout: 50
    real_servers:
      - address: 192.168.201.100
        port: 443
        checkers:
          - SSL_GET:
              connect_timeout: 3
              retry: 3
              urls:
                - path: /
                  digest: ff20ad2481f97b1754ef3e12ecd3a9cc
                - path: /mrtg/
                  digest: 9b3a0c85a887a256d6939da88aabd8cd
`
	if diff := cmp.Diff(want, string(y)); diff != "" {
		t.Errorf("MarshalYAML (-want +got):\n%s", diff)
	}
}

func TestLoadFormat(t *testing.T) {
	ka := filepath.Join(kaDir, "01-minimal.conf")
	yml := filepath.Join(testdataDir, "example.yaml")
	for _, tt := range []struct {
		path, format string
		wantErr      string
	}{
		{ka, "", ""},
		{ka, FormatKeepalived, ""},
		{yml, "", ""},
		{yml, FormatYAML, ""},
		{ka, FormatYAML, "the top level must be a mapping"},
		{yml, FormatKeepalived, `unknown keyword "virtual_servers:"`},
		{ka, "json", `unknown config format "json"`},
	} {
		cfg, err := LoadFormat(tt.path, tt.format)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("LoadFormat(%s, %q): %v", tt.path, tt.format, err)
		case tt.wantErr == "" && len(cfg.VirtualServers) != 1:
			t.Errorf("LoadFormat(%s, %q): %d virtual servers, want 1", tt.path, tt.format, len(cfg.VirtualServers))
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("LoadFormat(%s, %q) = %v, want an error containing %q", tt.path, tt.format, err, tt.wantErr)
		}
	}
	if _, err := Load(filepath.Join(kaDir, "missing.conf")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// memFS serves include directives from memory, as ParseKeepalived's
// callers may.
type memFS map[string]string

func (m memFS) read(name string) ([]byte, error) {
	if s, ok := m[name]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (m memFS) glob(pattern string) ([]string, error) {
	var out []string
	for name := range m {
		if ok, err := filepath.Match(pattern, name); err != nil {
			return nil, err
		} else if ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func TestKeepalivedInjectedIncludes(t *testing.T) {
	files := memFS{
		"/etc/keepalived/vs/b.conf": "virtual_server 10.0.0.1 81 {\n}\n",
		"/etc/keepalived/vs/a.conf": "virtual_server 10.0.0.1 80 {\n}\n",
		"/etc/keepalived/self.conf": "include self.conf\n",
		"/etc/keepalived/x/y.conf":  "include ../vs/a.conf\n",
		"/etc/keepalived/broken":    "virtual_server 10.0.0.1 80 {\n  bogus\n}\n",
	}
	tests := []struct {
		name, main, want string
		ports            []uint16
	}{
		{name: "glob in sorted order", main: "include vs/*.conf\n", ports: []uint16{80, 81}},
		{name: "brace expansion", main: "include vs/{b,a}.conf\n", ports: []uint16{81, 80}},
		{name: "relative to the including file", main: "include x/y.conf\n", ports: []uint16{80}},
		{name: "absolute", main: "include /etc/keepalived/vs/b.conf\n", ports: []uint16{81}},
		{name: "empty glob", main: "include none/*.conf\n"},
		{name: "self include", main: "include self.conf\n",
			want: "/etc/keepalived/self.conf:1: include: include cycle: /etc/keepalived/self.conf -> /etc/keepalived/self.conf"},
		{name: "error in an included file", main: "# one\ninclude broken\n",
			want: `/etc/keepalived/broken:2: virtual_server[10.0.0.1 80].bogus: unknown keyword "bogus"`},
		{name: "unreadable", main: "include missing.conf\n",
			want: `/etc/keepalived/keepalived.conf:1: include: include "missing.conf": no such file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseKeepalived("/etc/keepalived/keepalived.conf", []byte(tt.main), files.read, files.glob)
			if tt.want != "" {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v\nwant %s", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ports []uint16
			for _, vs := range cfg.VirtualServers {
				ports = append(ports, vs.Port)
			}
			if !slices.Equal(ports, tt.ports) {
				t.Errorf("ports %v, want %v", ports, tt.ports)
			}
		})
	}
}

func TestKeepalivedInline(t *testing.T) {
	tests := []struct {
		name, conf, want string
	}{
		{"empty", "", ""},
		{"quoted brace is a word", "global_defs {\n router_id \"{\"\n}\n", ""},
		{"keyword in quotes is not a keyword", "\"global_defs\" {\n}\n", `ka.conf:1: global_defs: unknown keyword "global_defs"`},
		{"stray open brace", "{\n}\n", `ka.conf:1: "{" without a keyword before it`},
		{"value where a block belongs", "global_defs router_id x\n", `ka.conf:1: global_defs: global_defs needs a { } block`},
		{"block where a value belongs", "global_defs {\n router_id { x }\n}\n", `ka.conf:2: global_defs.router_id: router_id does not take a { } block`},
		{"deep nesting", strings.Repeat("x {\n", 70) + strings.Repeat("}\n", 70),
			"ka.conf:1: x: unknown keyword \"x\"\nka.conf:65: blocks nested more than 64 deep"},
		{"deep nesting unclosed", strings.Repeat("x {\n", 70),
			"ka.conf:1: x: unknown keyword \"x\"\nka.conf:64: unbalanced braces: this \"{\" is never closed\nka.conf:65: blocks nested more than 64 deep"},
		{"persistence_timeout alone", "virtual_server 10.0.0.1 80 {\n persistence_timeout\n}\n", ""},
		{"weight option", "vrrp_script s {\n script x\n weight 2 sideways\n}\n", `ka.conf:3: vrrp_script[s].weight: unknown weight option "sideways" (want reverse or noreverse)`},
		{"tunnel type", "virtual_server 10.0.0.1 80 {\n lb_kind TUN type gue port 6080\n}\n", `ka.conf:2: virtual_server[10.0.0.1 80].lb_kind: lb_kind options "type gue port 6080" are not implemented yet (only IPIP tunnelling)`},
		{"ipip tunnel", "virtual_server 10.0.0.1 80 {\n lb_kind TUN type ipip\n}\n", ""},
		{"v3 interval too long", "vrrp_instance v {\n interface e\n virtual_router_id 1\n version 3\n advert_int 41\n}\n",
			`ka.conf:5: vrrp_instance[v].advert_int: 41 is not a valid advert_int for VRRP version 3 (0.01-40.95 seconds)`},
		{"IPv6 with version 2", "vrrp_instance v {\n interface e\n virtual_router_id 1\n version 2\n virtual_ipaddress {\n  2001:db8::1\n }\n}\n",
			`ka.conf:4: vrrp_instance[v].version: VRRP version 2 cannot carry IPv6 addresses (use version 3)`},
		{"mixed families", "vrrp_instance v {\n interface e\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n  2001:db8::1\n }\n}\n",
			`ka.conf:6: vrrp_instance[v].virtual_ipaddress: 2001:db8::1 mixes address families in virtual_ipaddress (put the other family in virtual_ipaddress_excluded)`},
		{"unicast without interface needs dev", "vrrp_instance v {\n virtual_router_id 1\n unicast_peer {\n  10.0.0.2\n }\n virtual_ipaddress {\n  10.0.0.1\n  10.0.0.3 dev eth1\n }\n}\n",
			`ka.conf:7: vrrp_instance[v].virtual_ipaddress: 10.0.0.1/32 needs dev when the vrrp_instance has no interface`},
		{"strict forbids authentication", "global_defs {\n vrrp_strict\n}\nvrrp_instance v {\n interface e\n virtual_router_id 1\n authentication {\n  auth_type PASS\n  auth_pass x\n }\n}\n",
			`ka.conf:7: vrrp_instance[v].authentication: authentication is not allowed with vrrp_strict`},
		{"auth_pass required", "vrrp_instance v {\n interface e\n virtual_router_id 1\n authentication {\n  auth_type PASS\n }\n}\n",
			`ka.conf:4: vrrp_instance[v].authentication: missing required keyword "auth_pass"`},
		{"instance in two sync groups", "vrrp_instance a {\n interface e\n virtual_router_id 1\n}\nvrrp_instance b {\n interface e\n virtual_router_id 2\n}\n" +
			"vrrp_sync_group g1 {\n group {\n  a b\n }\n}\nvrrp_sync_group g2 {\n group {\n  a b\n }\n}\n",
			"ka.conf:16: vrrp_sync_group[g2].group: vrrp_instance \"a\" is already in vrrp_sync_group \"g1\"\n" +
				"ka.conf:16: vrrp_sync_group[g2].group: vrrp_instance \"b\" is already in vrrp_sync_group \"g1\""},
		{"checker option of another checker", "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  MISC_CHECK {\n   misc_path x\n   connect_port 80\n  }\n }\n}\n",
			`ka.conf:5: virtual_server[10.0.0.1 80].real_server[10.0.0.2 80].MISC_CHECK.connect_port: connect_port does not apply to MISC_CHECK`},
		{"fwmark with address", "virtual_server_group g {\n fwmark 0\n 10.0.0.1-0\n}\n",
			"ka.conf:2: virtual_server_group[g]: 0 is not a valid fwmark (1-4294967295)\n" +
				`ka.conf:3: virtual_server_group[g]: "10.0.0.1-0" is not a valid IPv4 address or range`},
		{"real server port defaults to the service's", "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 {\n }\n real_server 10.0.0.2 80 {\n }\n}\n",
			`ka.conf:4: virtual_server[10.0.0.1 80].real_server[10.0.0.2 80]: duplicate real server 10.0.0.2:80 (first at line 2)`},
		{"notify without a script", "vrrp_instance v {\n interface e\n virtual_router_id 1\n notify_master\n}\n",
			`ka.conf:4: vrrp_instance[v].notify_master: notify_master needs a script ("/path/script args" in quotes when it has arguments) and optionally USER [GROUP]`},
		{"repeated global_defs continue each other", "global_defs {\n router_id a\n}\nglobal_defs {\n router_id b\n smtp_alert\n}\n",
			`ka.conf:5: global_defs.router_id: duplicate keyword "router_id" (first at line 2)`},
		{"CRLF line ends", "global_defs {\r\n router_id x\r\n}\r\n", ""},
		{"lvs_timeouts", "global_defs {\n lvs_timeouts tcp 1 tcp 2 sctp 3\n}\n",
			"ka.conf:2: global_defs.lvs_timeouts: lvs_timeouts gives tcp twice\n" +
				`ka.conf:2: global_defs.lvs_timeouts: unknown lvs_timeouts protocol "sctp" (want tcp, tcpfin or udp)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeepalived("ka.conf", []byte(tt.conf), memFS{}.read, memFS{}.glob)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestScriptArgs(t *testing.T) {
	tests := []struct {
		cmd  string
		want []string
	}{
		{"/bin/true", []string{"/bin/true"}},
		{"/usr/bin/killall -0 haproxy", []string{"/usr/bin/killall", "-0", "haproxy"}},
		{`/usr/bin/test -f "/run/lb up"`, []string{"/usr/bin/test", "-f", "/run/lb up"}},
		{`/x 'a b' c\ d "e\"f" ''`, []string{"/x", "a b", "c d", `e"f`, ""}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := (Script{Cmd: tt.cmd}).Args(); !slices.Equal(got, tt.want) {
			t.Errorf("Args(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestExpandBraces(t *testing.T) {
	tests := map[string][]string{
		"a.conf":         {"a.conf"},
		"{a,b}.conf":     {"a.conf", "b.conf"},
		"x/{a,{b,c}d}/*": {"x/a/*", "x/bd/*", "x/cd/*"},
		"{,cat,dog}":     {"", "cat", "dog"},
		"unbalanced{a,b": {"unbalanced{a,b"},
		"stray}close{a}": {"stray}closea"},
	}
	for in, want := range tests {
		if got := expandBraces(in); !slices.Equal(got, want) {
			t.Errorf("expandBraces(%q) = %q, want %q", in, got, want)
		}
	}
}
