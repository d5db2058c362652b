// Package config reads lb.yaml, xlbd's configuration, into a validated model.
//
// lb.yaml is keepalived.conf's tree written as YAML, using keepalived's
// keyword names, so that an operator moving from keepalived can map one file
// onto the other line by line.
//
// Reading happens in two steps, as in mdlayher/corerad: a front end turns the
// source text into raw, position-carrying values (see raw.go), and validate
// turns those into the model while checking semantics. Only the first step
// knows about YAML, so a later keepalived.conf front end can reuse the second
// and produce the same model and the same *Error values.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"
)

// Protocol is a virtual service's transport protocol. Its values are IP
// protocol numbers so the data plane can compare them with the packet header
// without a translation table.
type Protocol uint8

// Protocols a virtual server can balance.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
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

// Defaults applied when lb.yaml leaves a key out. They follow keepalived
// except for the scheduler, see DefaultLBAlgo.
const (
	DefaultProtocol  = TCP
	DefaultLBKind    = NAT
	DefaultDelayLoop = 60 * time.Second
	DefaultWeight    = 1

	// DefaultLBAlgo differs from keepalived, which leaves the scheduler to
	// IPVS's default (wlc). The data plane cannot do wlc yet, so defaulting to
	// it would make every config without lb_algo fail; once wlc is
	// implemented the default should switch to it to match keepalived.
	DefaultLBAlgo = "rr"
)

// schedulers holds every IPVS scheduler name keepalived accepts for lb_algo;
// true marks the ones the XDP data plane implements. Known-but-false names
// get a "not implemented yet" error rather than "unknown", so a config
// written for keepalived fails with an honest message. Implementing a
// scheduler means flipping its entry here and nothing else in this package.
var schedulers = map[string]bool{
	"rr":    true,
	"wrr":   false,
	"lc":    false,
	"wlc":   false,
	"lblc":  false,
	"lblcr": false,
	"dh":    false,
	"sh":    false,
	"sed":   false,
	"nq":    false,
	"mh":    false,
	"fo":    false,
	"ovf":   false,
	"twos":  false,
}

// Config is a validated lb.yaml.
type Config struct {
	File           string // path it was read from, for messages
	VirtualServers []VirtualServer
}

// VirtualServer is one keepalived virtual_server: a service address that is
// balanced over RealServers.
type VirtualServer struct {
	Address     netip.Addr // IPv4 only for now
	Port        uint16     // 1-65535
	Protocol    Protocol
	LBAlgo      string // lower-case IPVS scheduler name
	LBKind      Kind
	DelayLoop   time.Duration // health-check interval
	RealServers []RealServer  // may be empty, as in keepalived
	Line        int           // line of the list item, for messages elsewhere
}

// RealServer is one backend of a virtual server.
type RealServer struct {
	Address netip.Addr
	Port    uint16 // 1-65535
	Weight  int    // 0-65535; 0 keeps the server but sends it no new connections
	Line    int    // line of the list item, for messages elsewhere
}

// Key identifies a virtual server the way IPVS does (address, port,
// protocol); no two virtual servers in a Config share one. Example:
// "10.50.1.100:80/TCP".
func (vs VirtualServer) Key() string {
	return netip.AddrPortFrom(vs.Address, vs.Port).String() + "/" + vs.Protocol.String()
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses data as lb.yaml; filename is used only in messages and in
// Config.File. Every problem found is returned at once as an ErrorList, so
// an operator can fix a file in one pass.
func Parse(filename string, data []byte) (*Config, error) {
	d := &diag{file: filename}
	raw := parseYAML(d, data)
	cfg := validate(d, raw)
	if err := d.err(); err != nil {
		return nil, err
	}
	cfg.File = filename
	return cfg, nil
}
