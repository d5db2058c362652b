// Package dataplane defines the desired state that the reconciler hands to
// a forwarding backend, and the interface every backend (XDP today, IPVS
// later) implements. Backends are always given the whole state and work out
// the difference themselves, so a reload, a health flap and a restart take
// the same path.
package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Kind is a forwarding method, named as in keepalived's lb_kind.
type Kind uint8

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

// State is everything the data plane should forward.
type State struct {
	Services []Service
	// Timeouts are keepalived's lvs_timeouts; zero keeps IPVS's default.
	Timeouts Timeouts
	// Tuning are IPVS's sysctls; the zero value is IPVS's defaults.
	Tuning Tuning
	// SyncDaemon is IPVS's connection synchronisation daemon
	// (lvs_sync_daemon); nil runs none. Only a backend whose Capabilities
	// have SyncDaemon is given one.
	SyncDaemon *SyncDaemon
}

// SyncDaemon is keepalived's lvs_sync_daemon as the data plane runs it: a
// MASTER multicasts its connections to the BACKUPs, which take them over
// when the VIPs move to them, so that established flows survive.
type SyncDaemon struct {
	// Master is true while the VRRP instance the daemon follows is
	// MASTER; otherwise the node runs the backup (receiving) daemon.
	Master    bool
	Interface string
	SyncID    uint8
	MaxLen    uint16     // largest sync message (0: the kernel's choice)
	Group     netip.Addr // multicast group (invalid: IPVS's 224.0.0.81)
	Port      uint16     // UDP port (0: IPVS's 8848)
	TTL       uint8      // multicast TTL (0: IPVS's 1)
}

// Timeouts are IPVS's connection timeouts that keepalived can set.
type Timeouts struct {
	TCP    time.Duration // ESTABLISHED (900 s)
	TCPFin time.Duration // FIN_WAIT (120 s)
	UDP    time.Duration // 300 s
}

// Tuning are the net.ipv4.vs sysctls that change how connections are
// scheduled and tracked. Each field's zero value is IPVS's default, so a
// State without them behaves as IPVS out of the box.
type Tuning struct {
	// ExpireQuiescentTemplate is expire_quiescent_template: a persistence
	// template whose real has weight 0 is dropped when a new connection
	// would follow it, and the client is scheduled afresh.
	ExpireQuiescentTemplate bool
	// NoConnReuse is conn_reuse_mode=0: a SYN that finds its TCP
	// connection in TIME_WAIT or CLOSE continues it, on the same real,
	// instead of starting a new one scheduled afresh (mode 1, the default).
	NoConnReuse bool
	// SloppyTCP is sloppy_tcp: any TCP segment without RST may start a
	// connection, not only a SYN.
	SloppyTCP bool
}

// Service is one virtual service.
type Service struct {
	VIP      netip.Addr
	Port     uint16
	Protocol uint8 // IP protocol number: 6 TCP, 17 UDP, 132 SCTP
	// FWMark, when not 0, makes this a firewall-mark service: it balances
	// the packets netfilter marked with it, whatever their address, and
	// VIP and Port are unset. Only a backend whose Capabilities have
	// FWMark is given one.
	FWMark uint32
	Sched  string
	// SchedFlags are IPVS's scheduler flags: "sh-fallback", "sh-port",
	// "mh-fallback", "mh-port".
	SchedFlags []string
	// OnePacket is keepalived's ops: every UDP datagram is scheduled on
	// its own (IPVS only).
	OnePacket bool
	Kind      Kind
	// PersistTimeout > 0 makes the service persistent: a client (its
	// address masked to PersistPrefix bits) sticks to its real server.
	PersistTimeout time.Duration
	PersistPrefix  int // 0: the whole address
	Reals          []Real
}

// Key names the service in logs and maps: "10.50.1.100:80/TCP", or
// "fwmark:5" for a firewall-mark service.
func (s Service) Key() string {
	if s.FWMark != 0 {
		return FWMarkKey(s.FWMark)
	}
	return ServiceKey(s.VIP, s.Port, s.Protocol)
}

// FWMarkKey names a firewall-mark service, as keepalived does.
func FWMarkKey(mark uint32) string { return fmt.Sprintf("fwmark:%d", mark) }

// ServiceKey formats a service identity.
func ServiceKey(vip netip.Addr, port uint16, proto uint8) string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(vip, port), ProtocolName(proto))
}

// Real is one real server of a service. Weight 0 means quiesced: it takes
// no new flows and keeps the ones it has.
type Real struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
	// UThreshold and LThreshold are the connection counts at which the real
	// counts as overloaded and stops being so (0: none).
	UThreshold, LThreshold int
}

// Backend forwards packets for a State.
type Backend interface {
	// Apply makes the data plane forward st, changing only what differs.
	Apply(ctx context.Context, st State) error
	// Status reports what is forwarded and the counters so far.
	Status(ctx context.Context) (Status, error)
	// Capabilities are what the backend can forward; the registry also
	// knows them without building a backend.
	Capabilities() Capabilities
	// Adopted reports whether the backend found a data plane left running
	// by a daemon that kept it: a start that fails must leave that one
	// forwarding (Close(false)) rather than release it.
	Adopted() bool
	// Close stops forwarding, or with release=false leaves the data plane
	// running for the next daemon to adopt.
	Close(release bool) error
}

// Counters are a service's or a real's traffic so far. In is towards the
// real servers; out is replies through the balancer (NAT only: in DR and
// TUN replies bypass it).
type Counters struct {
	Connections uint64 `json:"connections"`
	// Picks are connections the scheduler chose the real for; the others
	// followed a persistence template.
	Picks      uint64 `json:"scheduler_picks"`
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
}

// RealStatus is one real server as the data plane holds it.
type RealStatus struct {
	Addr     netip.Addr `json:"address"`
	Port     uint16     `json:"port"`
	Weight   int        `json:"weight"`
	Counters `json:"counters"`
	// ActiveConns and InactiveConns are IPVS's activeconns and inactconns;
	// PersistConns the persistence templates pointing at the real.
	ActiveConns   uint32 `json:"active_connections"`
	InactiveConns uint32 `json:"inactive_connections"`
	PersistConns  uint32 `json:"persistent_templates"`
	Overloaded    bool   `json:"overloaded"`
	// Reachable is false for a DR or TUN real whose MAC is not known yet:
	// it takes no new flows.
	Reachable bool `json:"reachable"`
}

// ServiceStatus is one virtual service with its reals.
type ServiceStatus struct {
	VIP      netip.Addr `json:"vip"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"`
	// FWMark is set for a firewall-mark service, which has no VIP.
	FWMark uint32 `json:"fwmark,omitempty"`
	Sched  string `json:"scheduler"`
	Kind   string `json:"forwarding"`
	// Persistence is the persistence timeout, 0 when not persistent.
	Persistence   time.Duration `json:"persistence_timeout"`
	PersistPrefix int           `json:"persistence_prefix,omitempty"`
	Counters      `json:"counters"`
	Reals         []RealStatus `json:"reals"`
}

// Attachment is the balancer on one interface.
type Attachment struct {
	Interface string `json:"interface"`
	Mode      string `json:"mode"` // native or generic
}

// Status is what a backend reports for `xlbd status` and the metrics.
type Status struct {
	Backend     string            `json:"backend"` // xdp or ipvs
	Attachments []Attachment      `json:"attachments"`
	Services    []ServiceStatus   `json:"services"`
	Verdicts    map[string]uint64 `json:"verdicts,omitempty"`
	// Flows is the number of entries in the connection table, NATFlows
	// in the NAT reply table; -1 when unknown.
	Flows     int `json:"flows"`
	NATFlows  int `json:"nat_flows"`
	Templates int `json:"persistence_templates"`
	// FlowCapacity is the connection table's size (0: unknown); Shed
	// counts the half-open entries dropped to make room since start.
	FlowCapacity int    `json:"flow_capacity,omitempty"`
	Shed         uint64 `json:"shed,omitempty"`
	// FragmentsHeld counts the later fragments held for their first, by
	// outcome: sent, expired, dropped, passed.
	FragmentsHeld map[string]uint64 `json:"fragments_held,omitempty"`
	// Tables are the data plane's tables, each with its size and how much
	// of it is in use; TablesMemory is the kernel memory all of them take,
	// in bytes (0: unknown).
	Tables       []TableStatus `json:"tables,omitempty"`
	TablesMemory uint64        `json:"tables_memory_bytes,omitempty"`
}

// TableStatus is one table of the data plane.
type TableStatus struct {
	Name string `json:"name"`
	Size int    `json:"size"`
	Used int    `json:"used"` // -1: unknown
	// Memory is the kernel memory the table takes, in bytes (0: unknown).
	Memory uint64 `json:"memory_bytes,omitempty"`
}

// ProtocolName is "TCP", "UDP", "SCTP" or "proto N".
func ProtocolName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return fmt.Sprintf("proto %d", p)
}
