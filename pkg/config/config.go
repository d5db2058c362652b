// Package config reads xlbd's configuration into one validated model. It
// accepts two syntaxes for the same tree:
//
//   - keepalived.conf, as Keepalived 2.x writes it (keepalived.go), so that a
//     Keepalived installation can move over without rewriting its file;
//   - lb.yaml, the same tree written as YAML with Keepalived's keyword names
//     (yaml.go), so that an operator can map one file onto the other line by
//     line.
//
// Reading happens in two steps, as in mdlayher/corerad: a front end turns the
// source text into raw, position-carrying values (raw.go), and validate turns
// those into the model while checking meaning and applying Keepalived's
// defaults. Only the first step knows about the syntax, so both syntaxes give
// the same model and the same *Error values. Which keywords exist, and in
// which shape, is described once in schema.go for both front ends.
package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Protocol is a virtual service's transport protocol. Its values are IP
// protocol numbers so the data plane can compare them with the packet header
// without a translation table.
type Protocol uint8

// Protocols a virtual server can balance.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Kind is the forwarding method (keepalived's lb_kind). The zero value is
// deliberately not a valid kind, so an unset field cannot pass for NAT.
type Kind uint8

// Forwarding methods, named as in keepalived and IPVS.
const (
	NAT Kind = iota + 1
	DR
	TUN
)

func (k Kind) String() string {
	switch k {
	case NAT:
		return "NAT"
	case DR:
		return "DR"
	case TUN:
		return "TUN"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Defaults applied when the configuration leaves a keyword out. They follow
// keepalived.
const (
	DefaultProtocol  = TCP
	DefaultLBKind    = NAT
	DefaultDelayLoop = 60 * time.Second
	DefaultWeight    = 1

	// DefaultLBAlgo is what keepalived balances with when lb_algo is left
	// out: IPVS's default scheduler, wlc.
	DefaultLBAlgo = "wlc"

	// DefaultPersistenceTimeout is what keepalived uses when
	// persistence_timeout is given without a value, or when only
	// persistence_granularity is given.
	DefaultPersistenceTimeout = 360 * time.Second
	DefaultQuorum             = 1

	DefaultSMTPPort           = 25
	DefaultSMTPConnectTimeout = 30 * time.Second
	DefaultVRRPVersion        = 2
	DefaultGarpMasterDelay    = 5 * time.Second
	DefaultGarpMasterRepeat   = 5
	DefaultPriority           = 100
	DefaultAdvertInt          = time.Second
	DefaultScriptInterval     = time.Second
	DefaultConnectTimeout     = 5 * time.Second
	DefaultHTTPProtocol       = "1.0"
	DefaultDNSType            = "SOA"
	DefaultDNSName            = "."

	// IPVS's own connection timeouts, which keepalived leaves in place when
	// lvs_timeouts does not change them.
	DefaultLVSTimeoutTCP    = 900 * time.Second
	DefaultLVSTimeoutTCPFin = 120 * time.Second
	DefaultLVSTimeoutUDP    = 300 * time.Second

	// DefaultConnReuseMode is IPVS's conn_reuse_mode.
	DefaultConnReuseMode = 1
)

// DefaultMcastGroup4 is where VRRP adverts go (RFC 5798's IANA address).
var DefaultMcastGroup4 = netip.MustParseAddr("224.0.0.18")

// Config is a validated configuration, whichever syntax it was read from.
type Config struct {
	File string // path of the main file, for messages

	Global              Global
	VRRPScripts         []VRRPScript
	SyncGroups          []SyncGroup
	VRRPInstances       []VRRPInstance
	VirtualServerGroups []VirtualServerGroup
	VirtualServers      []VirtualServer

	// Warnings lists keywords keepalived knows that xlbd does not
	// implement (and so ignores), and settings that are accepted but
	// probably not what was meant. They never stop a config from loading,
	// but an operator should see every one of them.
	Warnings []*Error
}

// Global is keepalived's global_defs block.
type Global struct {
	RouterID              string // lvs_id is the old name
	NotificationEmail     []string
	NotificationEmailFrom string
	SMTPServer            string // IP address or host name; empty means no mail
	SMTPPort              uint16
	SMTPConnectTimeout    time.Duration
	SMTPAlert             bool
	ScriptUser            string // empty: keepalived_script if it exists, else root
	ScriptGroup           string
	EnableScriptSecurity  bool
	VRRPVersion           int // 2 or 3
	VRRPStrict            bool
	VRRPGarpMasterDelay   time.Duration
	VRRPGarpMasterRepeat  int
	VRRPGarpMasterRefresh time.Duration // 0: no periodic gratuitous ARPs
	VRRPMcastGroup4       netip.Addr
	V3ChecksumAsV2        bool // default for every instance
	LVSTimeouts           LVSTimeouts
	LVSSysctl             LVSSysctl
	// LVSSyncDaemon is lvs_sync_daemon (nil: none).
	LVSSyncDaemon *LVSSyncDaemon
}

// LVSSyncDaemon is keepalived's lvs_sync_daemon: IPVS's connection
// synchronisation daemon on Interface, the master (sending) one while the
// VRRP instance Instance is MASTER, the backup (receiving) one otherwise.
type LVSSyncDaemon struct {
	Interface string
	Instance  string
	// SyncID is the daemon's id, 0-255; -1 takes the instance's
	// virtual_router_id, as keepalived does.
	SyncID int
	MaxLen int        // 0: IPVS's choice
	Port   int        // 0: IPVS's 8848
	TTL    int        // 0: IPVS's 1
	Group  netip.Addr // invalid: IPVS's 224.0.0.81
	File   string
	Line   int
}

// LVSTimeouts are the connection-tracking timeouts of lvs_timeouts.
type LVSTimeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// LVSSysctl are the net.ipv4.vs sysctls that change how the data plane
// schedules and tracks connections, under their IPVS names (lb.yaml's
// global_defs.lvs_sysctl). keepalived.conf has no keyword for them:
// keepalived leaves them to sysctl, which the XDP data plane does not read.
type LVSSysctl struct {
	// ExpireQuiescentTemplate drops a persistence template whose real
	// has weight 0 when a new connection would use it.
	ExpireQuiescentTemplate bool
	// ConnReuseMode 1 lets a SYN that finds a TCP connection in TIME_WAIT
	// or CLOSE start a new connection, scheduled afresh; 0 hands it to the
	// old one. IPVS's bit 2 (FIN_WAIT reuse for DR/TUN) is not implemented.
	ConnReuseMode int
	// SloppyTCP lets any TCP segment without RST start a connection, not
	// only a SYN (a flow that arrives mid-stream, after a failover).
	SloppyTCP bool
}

// Script is a command keepalived would run: a notify script, a
// vrrp_script's script, a MISC_CHECK's misc_path or a quorum command.
type Script struct {
	// Cmd is the command line as written: the program and its arguments,
	// with keepalived's quoting (see Args).
	Cmd string
	// User and Group to run it as; empty means the global script_user.
	User, Group string
}

// IsZero reports whether no script is configured.
func (s Script) IsZero() bool { return s.Cmd == "" }

// Args splits Cmd into the program and its arguments the way keepalived
// does: white space separates words, single and double quotes group them
// and a backslash escapes the next character.
func (s Script) Args() []string { return splitCommand(s.Cmd) }

// Notify is the set of scripts run on VRRP state changes.
type Notify struct {
	Master, Backup, Fault, Stop Script
	// Any is keepalived's plain "notify": run on every transition with
	// GROUP|INSTANCE, the name, the new state and the priority appended.
	Any Script
}

// VRRPScript is a vrrp_script block: a command run every Interval whose exit
// status tracking instances follow.
type VRRPScript struct {
	Name     string
	Script   Script // User and Group come from the block's user keyword
	Interval time.Duration
	Timeout  time.Duration // keepalived's default is the interval
	Weight   int           // -253..253; 0 means FAULT after Fall failures
	Reverse  bool
	Rise     int // successes needed to count as up
	Fall     int // failures needed to count as down
	File     string
	Line     int
}

// SyncGroup is a vrrp_sync_group: instances that change state together.
type SyncGroup struct {
	Name      string
	Group     []string // instance names, all defined
	Notify    Notify
	SMTPAlert bool
	File      string
	Line      int
}

// VRRPState is an instance's initial state.
type VRRPState uint8

// Initial states; keepalived starts an instance as BACKUP unless told
// otherwise.
const (
	Backup VRRPState = iota
	Master
)

func (s VRRPState) String() string {
	if s == Master {
		return "MASTER"
	}
	return "BACKUP"
}

// AuthType is VRRPv2 authentication.
type AuthType uint8

// Authentication types, numbered as on the wire (RFC 2338).
const (
	AuthNone AuthType = 0
	AuthPass AuthType = 1
	AuthAH   AuthType = 2
)

func (a AuthType) String() string {
	switch a {
	case AuthPass:
		return "PASS"
	case AuthAH:
		return "AH"
	}
	return "none"
}

// VRRPInstance is a vrrp_instance block.
type VRRPInstance struct {
	Name            string
	State           VRRPState
	Interface       string // may be empty only with unicast peers
	VirtualRouterID uint8  // 1-255
	Priority        uint8  // 1-255; 255 is the address owner
	AdvertInt       time.Duration
	// Version is 2 or 3: the global vrrp_version unless set, and always 3
	// for IPv6.
	Version      int
	NoPreempt    bool
	PreemptDelay time.Duration // 0-1000 s

	AuthType AuthType
	AuthPass string // at most 8 bytes: the rest is never sent

	VirtualIPAddresses         []VIP // all of one address family
	VirtualIPAddressesExcluded []VIP // not in adverts; any family
	TrackInterfaces            []TrackInterface
	TrackScripts               []TrackScript

	UnicastSrcIP netip.Addr
	UnicastPeers []netip.Addr // empty: multicast
	McastSrcIP   netip.Addr

	Notify    Notify
	SMTPAlert bool

	GarpMasterDelay   time.Duration
	GarpMasterRepeat  int
	GarpMasterRefresh time.Duration

	// Accept says whether the instance, when master, accepts packets to
	// its VIPs although it is not the address owner. keepalived's default
	// is true, except under vrrp_strict where only priority 255 accepts.
	Accept bool
	// V3ChecksumAsV2 leaves the IPv4 pseudo-header out of VRRPv3
	// checksums, as some routers expect; keepalived includes it by default.
	V3ChecksumAsV2 bool

	File string
	Line int
}

// IPv6 reports whether the instance runs over IPv6 (its VIPs are IPv6).
func (vi VRRPInstance) IPv6() bool {
	return len(vi.VirtualIPAddresses) > 0 && vi.VirtualIPAddresses[0].Prefix.Addr().Is6()
}

// VIP is one line of virtual_ipaddress: an address the master holds.
type VIP struct {
	Prefix netip.Prefix // the address with its prefix length (default /32, /128)
	Dev    string       // the instance's interface unless set
	Label  string
	Scope  string // site, link, host, nowhere or global; empty: the kernel's choice
}

// TrackInterface is one line of track_interface.
type TrackInterface struct {
	Name    string
	Weight  int // -253..253; 0 means FAULT when the interface is down
	Reverse bool
}

// TrackScript is one line of track_script; Weight and Reverse default to
// the vrrp_script's.
type TrackScript struct {
	Name    string // a defined VRRPScript
	Weight  int
	Reverse bool
}

// VirtualServerGroup is a virtual_server_group: addresses and firewall marks
// that share one set of real servers.
type VirtualServerGroup struct {
	Name    string
	Ranges  []AddressRange
	FWMarks []uint32
	File    string
	Line    int
}

// AddressRange is one address line of a virtual_server_group:
// "10.0.0.1-10 80", "10.0.0.1-10.0.1.9 80" or "10.0.0.0/29 80".
type AddressRange struct {
	First, Last netip.Addr // First <= Last, same family
	Port        uint16     // 0 when not given
}

// VirtualServer is one keepalived virtual_server: a service balanced over
// RealServers. Exactly one of Address, FWMark and Group identifies it.
type VirtualServer struct {
	Address netip.Addr // IPv4 only for now; invalid for fwmark and group services
	Port    uint16     // 1-65535 with Address; 0 otherwise
	FWMark  uint32     // non-zero for "virtual_server fwmark N"
	Group   string     // non-empty for "virtual_server group NAME"

	Protocol  Protocol
	LBAlgo    string // lower-case IPVS scheduler name
	LBKind    Kind
	DelayLoop time.Duration // health-check interval

	PersistenceTimeout time.Duration // 0: not persistent
	// PersistenceGranularity is the length of the netmask that groups
	// clients for persistence: 32 (each client on its own) unless set.
	PersistenceGranularity int

	Quorum     int // minimum summed weight of live real servers
	Hysteresis int
	QuorumUp   Script
	QuorumDown Script
	Alpha      bool // real servers start down until their checks pass
	Omega      bool // run quorum_down and notify_down scripts on shutdown
	HASuspend  bool
	OPS        bool // one-packet scheduling (UDP)
	// SchedFlags are IPVS's scheduler flags given: sh-port, sh-fallback,
	// mh-port, mh-fallback.
	SchedFlags []string
	// Virtualhost is the default Host header of HTTP_GET and SSL_GET
	// checkers.
	Virtualhost string
	SorryServer netip.AddrPort // invalid when there is none
	// SorryServerInhibit keeps the sorry server in the pool at weight 0
	// while it is not serving, instead of removing it.
	SorryServerInhibit bool
	// SMTPAlert mails quorum changes: smtp_alert, else global_defs'
	// smtp_alert_checker, else its smtp_alert, else off.
	SMTPAlert bool

	RealServers []RealServer // may be empty, as in keepalived
	File        string
	Line        int // line of the list item or block, for messages elsewhere
}

// RealServer is one backend of a virtual server.
type RealServer struct {
	Address netip.Addr
	Port    uint16 // 1-65535; 0 only under a fwmark virtual server
	Weight  int    // 0-65535; 0 keeps the server but sends it no new connections

	// InhibitOnFailure sets the weight to 0 instead of removing the
	// server when its checks fail (the virtual server's setting unless
	// set).
	InhibitOnFailure bool
	NotifyUp         Script
	NotifyDown       Script
	// SMTPAlert mails this server's health changes: smtp_alert, else
	// global_defs' smtp_alert_checker, else its smtp_alert, else on
	// (keepalived keeps this default, unlike its others, for backward
	// compatibility).
	SMTPAlert  bool
	UThreshold uint32 // IPVS connection limits; 0: none
	LThreshold uint32

	// Checkers decide whether the server is up: it is when all of them
	// are. Settings keepalived inherits from the real and virtual server
	// (delay_loop, retry, ...) are resolved into each checker.
	Checkers []Checker

	File string
	Line int // line of the list item or block, for messages elsewhere
}

// CheckerType names a health checker as keepalived does.
type CheckerType string

// Health checkers keepalived has; all of them can be written in a config.
const (
	CheckTCP  CheckerType = "TCP_CHECK"
	CheckHTTP CheckerType = "HTTP_GET"
	CheckSSL  CheckerType = "SSL_GET"
	CheckMisc CheckerType = "MISC_CHECK"
	CheckDNS  CheckerType = "DNS_CHECK"
	CheckSMTP CheckerType = "SMTP_CHECK"
	CheckUDP  CheckerType = "UDP_CHECK"
	CheckPing CheckerType = "PING_CHECK"
	CheckFile CheckerType = "FILE_CHECK"
)

// Checker is one health check of a real server. Fields that do not apply
// to its Type are zero.
type Checker struct {
	Type CheckerType

	// Where to connect; zero values mean the real server's address and
	// port.
	ConnectIP   netip.Addr
	ConnectPort uint16
	BindTo      netip.Addr
	BindPort    uint16

	ConnectTimeout   time.Duration
	Retry            int           // extra attempts before the server counts as down (nb_get_retry)
	DelayBeforeRetry time.Duration // pause between those attempts
	// Warmup bounds the random delay before the first check, spreading
	// checks out; 0 starts at once.
	Warmup         time.Duration
	DelayLoop      time.Duration // interval between checks
	Alpha          bool          // the server starts down until this check passes
	LogAllFailures bool

	HTTP      *HTTPCheck // HTTP_GET, SSL_GET
	Misc      *MiscCheck // MISC_CHECK
	DNS       *DNSCheck  // DNS_CHECK
	SMTP      *SMTPCheck // SMTP_CHECK
	UDP       *UDPCheck  // UDP_CHECK
	FileCheck *FileCheck // FILE_CHECK

	File string
	Line int
}

// HTTPCheck holds what HTTP_GET and SSL_GET add to the common settings.
type HTTPCheck struct {
	URLs         []URL // at least one
	HTTPProtocol string
	Virtualhost  string // checker, else real server, else virtual server setting
	EnableSNI    bool   // SSL_GET only
	SNIName      string // SSL_GET only
}

// URL is one url block: what to fetch and what counts as success.
type URL struct {
	Path        string
	Digest      string // lower-case MD5 hex of the body; empty: not checked
	StatusCodes []StatusRange
	Virtualhost string // the checker's unless set
}

// StatusRange is an inclusive range of HTTP status codes; a single code has
// Lo == Hi.
type StatusRange struct{ Lo, Hi int }

// MiscCheck runs a command: exit 0 is up, 1 is down and, with Dynamic,
// 2-255 is up with the weight set to the status minus 2.
type MiscCheck struct {
	Path    Script // misc_path; User and Group come from the user keyword
	Timeout time.Duration
	Dynamic bool
}

// DNSCheck queries the real server.
type DNSCheck struct {
	Type string // A, NS, CNAME, SOA, MX, TXT or AAAA
	Name string
}

// SMTPCheck speaks SMTP up to HELO.
type SMTPCheck struct {
	HeloName string // empty: the local host name
}

// UDPCheck sends a datagram; without RequireReply only ICMP errors fail it.
type UDPCheck struct {
	Payload      []byte // nil: random
	RequireReply bool
	// Reply is the expected start of the reply in lower-case hex, two
	// digits a byte, where x matches any digit; empty: any reply.
	Reply string
}

// FileCheck follows a track_file.
type FileCheck struct {
	TrackFile string
	Dynamic   bool
	Weight    int
	Reverse   bool
}

// Key identifies a virtual server the way IPVS does; no two virtual servers
// in a Config share one. Examples: "10.50.1.100:80/TCP", "fwmark:5" (IPVS
// keys firewall-mark services by the mark alone) and "group:web/TCP".
func (vs VirtualServer) Key() string {
	switch {
	case vs.FWMark != 0:
		return fmt.Sprintf("fwmark:%d", vs.FWMark)
	case vs.Group != "":
		return "group:" + vs.Group + "/" + vs.Protocol.String()
	}
	return netip.AddrPortFrom(vs.Address, vs.Port).String() + "/" + vs.Protocol.String()
}

// Formats accepted by LoadFormat.
const (
	FormatAuto       = ""
	FormatYAML       = "yaml"
	FormatKeepalived = "keepalived"
)

// Load reads and parses the file at path, choosing the syntax by its
// extension: .yaml and .yml are lb.yaml, anything else keepalived.conf
// (whose files rarely share a naming convention).
func Load(path string) (*Config, error) { return LoadFormat(path, FormatAuto) }

// LoadFormat is Load with the syntax forced: format is FormatYAML,
// FormatKeepalived or FormatAuto (""), as given to --config-format.
// keepalived.conf include directives are read relative to the including
// file. Only regular files are read, and no more than the limits in
// limits.go allow; a device, FIFO, socket or directory is refused without
// waiting on it.
func LoadFormat(path, format string) (*Config, error) {
	switch format {
	case FormatAuto:
		format = FormatKeepalived
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml":
			format = FormatYAML
		}
	case FormatYAML, FormatKeepalived:
	default:
		return nil, fmt.Errorf("unknown config format %q (want %q, %q or empty for automatic)", format, FormatYAML, FormatKeepalived)
	}
	data, err := readLimited(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	if format == FormatYAML {
		return Parse(path, data)
	}
	return ParseKeepalived(path, data, nil, nil)
}

// Parse parses data as lb.yaml; filename is used only in messages and in
// Config.File. Every problem found is returned at once as an ErrorList, so
// an operator can fix a file in one pass.
func Parse(filename string, data []byte) (*Config, error) {
	d := newDiag(filename, syntaxYAML)
	raw := parseYAML(d, data)
	return finish(d, raw)
}

// ParseKeepalived parses data as keepalived.conf. filename names it in
// messages and anchors relative include directives. readFile and glob
// serve include directives (brace expansion is done before glob is called);
// nil means the file system, as Load reads it (regular files only, within
// the limits in limits.go), and filepath.Glob, which tests replace to
// include files from memory. The size limits apply to what readFile
// returns too, and to data.
func ParseKeepalived(filename string, data []byte, readFile func(string) ([]byte, error), glob func(string) ([]string, error)) (*Config, error) {
	if glob == nil {
		glob = filepath.Glob
	}
	d := newDiag(filename, syntaxKeepalived)
	raw := parseKeepalived(d, filename, data, readFile, glob)
	return finish(d, raw)
}

func finish(d *diag, raw *rawNode) (*Config, error) {
	cfg := validate(d, raw)
	if err := d.err(); err != nil {
		return nil, err
	}
	cfg.File = d.file
	cfg.Warnings = d.warnings()
	return cfg, nil
}
