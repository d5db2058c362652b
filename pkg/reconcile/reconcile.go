// Package reconcile decides what the data plane should hold. Today that is
// the configuration as written; health checks will subtract the reals that
// are down (and add sorry servers) here, so that every change to the data
// plane takes this one path.
package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// MaxGroupRange is the most addresses one virtual_server_group range may
// expand to. The XDP data plane holds at most 4096 services, so a larger
// range could never be applied; it is left out with a note instead of
// being expanded into millions of services.
const MaxGroupRange = 4096

// Desired is the data-plane state for cfg, for no backend in particular.
// See Plan for what it leaves out.
func Desired(cfg *config.Config) dataplane.State {
	st, _, _ := Plan(cfg)
	return st
}

// Plan is PlanFor with no backend's limits.
func Plan(cfg *config.Config) (dataplane.State, []*config.Error, error) {
	return PlanFor(cfg, nil)
}

// PlanFor is the data-plane state for cfg together with notes on what of
// cfg the data plane is not given, each naming the file and line it comes
// from, for the daemon to log as warnings next to cfg.Warnings. With caps,
// what that backend cannot do is an error (or, for firewall marks, a note)
// naming the virtual server and the key, so that the daemon's start and
// `xlbd check` refuse the same configurations.
//
//   - A virtual_server fwmark N is a firewall-mark service for a backend
//     that has them (IPVS), else left out with a note; so are a group's
//     fwmark entries.
//   - A protocol the backend cannot balance (SCTP under XDP) leaves the
//     virtual server out with a note: its checks still run.
//   - A virtual_server group NAME becomes one service per address and port
//     of the group (ranges expanded), as keepalived adds each to IPVS.
//     Entries without a port (IPVS's "every port") and ranges wider than
//     MaxGroupRange are left out with a note.
//   - A service that another virtual server already gave (a group member
//     repeating a plain virtual server, or another group's member) is an
//     error, as IPVS refuses to add it; one that a group's own ranges
//     repeat is kept once, with a note.
//
// A real server with port 0, which only group and fwmark services have,
// gets the service's port, as IPVS forwards to the port the packet was
// sent to.
//
// The error, a config.ErrorList, lists what makes cfg unusable.
func PlanFor(cfg *config.Config, caps *dataplane.Capabilities) (dataplane.State, []*config.Error, error) {
	return PlanWith(cfg, caps, nil)
}

// Health is what health checks make of the configured real servers.
type Health interface {
	// Real says whether rs of vs is in the pool, and with which weight: a
	// real that is down is out, or in at weight 0 with
	// inhibit_on_failure; misc_dynamic may change the weight of one that
	// is up.
	Real(vs *config.VirtualServer, rs *config.RealServer) (in bool, weight int)
	// Sorry says whether vs's sorry server is in the pool, and with which
	// weight: 1 while the quorum is lost; with sorry_server_inhibit, 0
	// while it is not.
	Sorry(vs *config.VirtualServer) (in bool, weight int)
}

// PlanWith is PlanFor with the real servers' health: the pool is the
// configured real servers minus those that are down, with the sorry
// server while the quorum is lost. A nil h has every real server up and
// no sorry server serving.
func PlanWith(cfg *config.Config, caps *dataplane.Capabilities, h Health) (dataplane.State, []*config.Error, error) {
	return PlanHeld(cfg, caps, h, nil)
}

// VIPs says which of the addresses VRRP manages this node holds.
type VIPs interface {
	// Held reports whether addr, an address of some vrrp_instance, is
	// held here: its instance is MASTER.
	Held(addr netip.Addr) bool
}

// Instances says which vrrp_instances are MASTER here; a VIPs that has it
// lets IPVS's sync daemon follow its instance.
type Instances interface {
	Master(instance string) bool
}

// PlanHeld is PlanWith that leaves out the services on VRRP's addresses
// that this node does not hold, as IPVS balances only what is addressed to
// a local address: a BACKUP balances nothing of its instances' VIPs. They
// still count against the backend's limits, so that a configuration that
// fits on the MASTER fits on every node. A nil v holds every address.
func PlanHeld(cfg *config.Config, caps *dataplane.Capabilities, h Health, v VIPs) (dataplane.State, []*config.Error, error) {
	p := planner{cfg: cfg, caps: caps, health: h, vips: v, seen: map[svcKey]*config.VirtualServer{}}
	if v != nil {
		p.managed = map[netip.Addr]bool{}
		for _, vi := range cfg.VRRPInstances {
			for _, l := range [][]config.VIP{vi.VirtualIPAddresses, vi.VirtualIPAddressesExcluded} {
				for _, a := range l {
					p.managed[a.Prefix.Addr().Unmap()] = true
				}
			}
		}
	}
	p.st.Timeouts = timeouts(cfg.Global.LVSTimeouts)
	p.st.Tuning = tuning(cfg.Global.LVSSysctl)
	p.syncDaemon(cfg.Global.LVSSyncDaemon)
	groups := map[string]*config.VirtualServerGroup{}
	for i := range cfg.VirtualServerGroups {
		g := &cfg.VirtualServerGroups[i]
		groups[g.Name] = g
	}
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		switch {
		case vs.FWMark != 0:
			if !p.fwmarks() {
				p.note(vs, "%s; this one is only checked", p.noFWMark())
				continue
			}
			p.check(vs)
			if p.protocol(vs) {
				p.addMark(vs, vs.FWMark)
			}
		case vs.Group != "":
			g := groups[vs.Group]
			if g == nil {
				// Only a config built by hand gets here: the parser
				// rejects a group that is not defined.
				p.note(vs, "virtual_server_group %q is not defined; virtual server skipped", vs.Group)
				continue
			}
			p.check(vs)
			if p.protocol(vs) {
				p.group(vs, g)
			}
		default:
			p.check(vs)
			if p.protocol(vs) {
				p.add(vs, vs.Address, vs.Port)
			}
		}
	}
	p.checkTotals()
	if len(p.errs) > 0 {
		return p.st, p.notes, p.errs
	}
	return p.st, p.notes, nil
}

type svcKey struct {
	addr  netip.Addr
	port  uint16
	proto config.Protocol
}

type planner struct {
	cfg     *config.Config
	caps    *dataplane.Capabilities // nil: no backend's limits
	health  Health                  // nil: every real up
	vips    VIPs                    // nil: every address held
	managed map[netip.Addr]bool     // the addresses of vrrp_instances
	st      dataplane.State
	notes   []*config.Error
	errs    config.ErrorList
	seen    map[svcKey]*config.VirtualServer // which virtual server gave a service
	marks   map[uint32]*config.VirtualServer // and a firewall-mark service
	// services counts services, held or not, and reals real servers over
	// them; overSvc and overReal are
	// the virtual servers that went over the backend's limits first.
	services, reals   int
	overSvc, overReal *config.VirtualServer
}

func (p *planner) note(vs *config.VirtualServer, format string, args ...any) {
	file := vs.File
	if file == "" {
		file = p.cfg.File
	}
	// The Path is the virtual server's Key, which reads the same in both
	// syntaxes: "group:WEB/TCP", "10.50.1.100:80/TCP".
	p.notes = append(p.notes, &config.Error{File: file, Line: vs.Line, Path: vs.Key(), Msg: fmt.Sprintf(format, args...)})
}

func (p *planner) fail(vs *config.VirtualServer, format string, args ...any) {
	p.note(vs, format, args...)
	p.errs = append(p.errs, p.notes[len(p.notes)-1])
	p.notes = p.notes[:len(p.notes)-1]
}

func (p *planner) group(vs *config.VirtualServer, g *config.VirtualServerGroup) {
	if p.fwmarks() {
		for _, m := range g.FWMarks {
			p.addMark(vs, m)
		}
	} else if len(g.FWMarks) > 0 {
		marks := make([]string, len(g.FWMarks))
		for i, m := range g.FWMarks {
			marks[i] = fmt.Sprint(m)
		}
		p.note(vs, "fwmark %s of virtual_server_group %q skipped: %s", strings.Join(marks, ", "), g.Name, p.noFWMark())
	}
	for _, r := range g.Ranges {
		if r.Port == 0 && vs.PersistenceTimeout == 0 && rangeSize(r) > 0 {
			p.note(vs, "%s of virtual_server_group %q balances nothing: it has no port (every port), which IPVS schedules only with persistence_timeout", rangeString(r), g.Name)
		}
		switch n := rangeSize(r); {
		case n == 0:
			p.note(vs, "%s of virtual_server_group %q skipped: not an IPv4 range", rangeString(r), g.Name)
		case r.Port == 0 && p.caps != nil && !p.caps.PortZero:
			p.fail(vs, "%s of virtual_server_group %q: %s cannot hold a service on every port (an entry without a port)", rangeString(r), g.Name, p.dataplane())
		case n > MaxGroupRange:
			p.note(vs, "%s of virtual_server_group %q skipped: %d addresses, more than the %d services the data plane holds", rangeString(r), g.Name, n, MaxGroupRange)
		default:
			for a := r.First; a.IsValid() && !r.Last.Less(a); a = a.Next() {
				p.add(vs, a, r.Port)
			}
		}
	}
}

// addMark appends vs's firewall-mark service unless an earlier virtual
// server gave the mark already, which IPVS refuses.
func (p *planner) addMark(vs *config.VirtualServer, mark uint32) {
	if first, dup := p.marks[mark]; dup {
		if first != vs {
			p.fail(vs, "fwmark %d is given twice: virtual server %s at %s:%d gives it already (IPVS refuses a service twice)",
				mark, first.Key(), first.File, first.Line)
			return
		}
		p.note(vs, "fwmark %d skipped: the group repeats it", mark)
		return
	}
	if p.marks == nil {
		p.marks = map[uint32]*config.VirtualServer{}
	}
	p.marks[mark] = vs
	p.count(vs)
	// A marked packet's address is the firewall rule's to say, so VRRP
	// does not take these in and out with its addresses: the rule matches
	// only what reaches the node.
	s := p.service(vs, netip.Addr{}, 0)
	s.FWMark = mark
	p.st.Services = append(p.st.Services, s)
}

// add appends vs's service at addr:port unless an earlier virtual server
// gave it already.
func (p *planner) add(vs *config.VirtualServer, addr netip.Addr, port uint16) {
	k := svcKey{addr, port, vs.Protocol}
	if first, dup := p.seen[k]; dup {
		if first != vs {
			p.fail(vs, "service %s/%s is given twice: virtual server %s at %s:%d gives it already (IPVS refuses a service twice)",
				netip.AddrPortFrom(addr, port), vs.Protocol, first.Key(), first.File, first.Line)
			return
		}
		p.note(vs, "service %s/%s skipped: the group's ranges repeat it", netip.AddrPortFrom(addr, port), vs.Protocol)
		return
	}
	p.seen[k] = vs
	p.count(vs)
	if p.managed[addr] && !p.vips.Held(addr) {
		return
	}
	p.st.Services = append(p.st.Services, p.service(vs, addr, port))
}

// service is vs's data-plane service at addr:port.
func (p *planner) service(vs *config.VirtualServer, addr netip.Addr, port uint16) dataplane.Service {
	s := dataplane.Service{
		VIP:        addr,
		Port:       port,
		Protocol:   uint8(vs.Protocol),
		Sched:      vs.LBAlgo,
		SchedFlags: vs.SchedFlags,
		OnePacket:  vs.OPS,
		Kind:       kind(vs.LBKind),
	}
	if vs.PersistenceTimeout > 0 {
		s.PersistTimeout = vs.PersistenceTimeout
		s.PersistPrefix = vs.PersistenceGranularity
	}
	for i := range vs.RealServers {
		rs := &vs.RealServers[i]
		r := dataplane.Real{
			Addr:       rs.Address,
			Port:       rs.Port,
			Weight:     rs.Weight,
			UThreshold: int(rs.UThreshold),
			LThreshold: int(rs.LThreshold),
		}
		if p.health != nil {
			in, w := p.health.Real(vs, rs)
			if !in {
				continue
			}
			r.Weight = w
		}
		if r.Port == 0 {
			r.Port = port
		}
		s.Reals = append(s.Reals, r)
	}
	// keepalived adds the sorry server (weight 1) when the quorum is lost
	// and removes it when it is back; sorry_server_inhibit keeps it at
	// weight 0 instead.
	if vs.SorryServer.IsValid() && p.health != nil {
		in, w := p.health.Sorry(vs)
		r := dataplane.Real{Addr: vs.SorryServer.Addr(), Port: vs.SorryServer.Port(), Weight: w}
		if r.Port == 0 {
			r.Port = port
		}
		if in && !slices.ContainsFunc(s.Reals, func(o dataplane.Real) bool { return o.Addr == r.Addr && o.Port == r.Port }) {
			s.Reals = append(s.Reals, r)
		}
	}
	return s
}

// syncDaemon is lvs_sync_daemon for a backend that runs IPVS's sync
// daemon: the master daemon while its instance is MASTER here, the backup
// one otherwise (and without a VRRP view), as keepalived switches them.
func (p *planner) syncDaemon(sd *config.LVSSyncDaemon) {
	if sd == nil {
		return
	}
	if p.caps != nil && !p.caps.SyncDaemon {
		file := cmp.Or(sd.File, p.cfg.File)
		p.notes = append(p.notes, &config.Error{File: file, Line: sd.Line, Path: "global_defs.lvs_sync_daemon",
			Msg: p.dataplane() + " has no connection sync daemon; ignored"})
		return
	}
	d := &dataplane.SyncDaemon{Interface: sd.Interface, MaxLen: uint16(sd.MaxLen), Group: sd.Group, Port: uint16(sd.Port), TTL: uint8(sd.TTL)}
	id := sd.SyncID
	for _, vi := range p.cfg.VRRPInstances {
		if vi.Name == sd.Instance && id < 0 {
			id = int(vi.VirtualRouterID)
		}
	}
	d.SyncID = uint8(max(id, 0))
	if in, ok := p.vips.(Instances); ok {
		d.Master = in.Master(sd.Instance)
	}
	p.st.SyncDaemon = d
}

// timeouts passes on the lvs_timeouts that differ from IPVS's own; the
// model fills in IPVS's defaults for what lvs_timeouts leaves out, and the
// data plane reads zero as "IPVS's default".
func timeouts(t config.LVSTimeouts) dataplane.Timeouts {
	var out dataplane.Timeouts
	if t.TCP != config.DefaultLVSTimeoutTCP {
		out.TCP = t.TCP
	}
	if t.TCPFin != config.DefaultLVSTimeoutTCPFin {
		out.TCPFin = t.TCPFin
	}
	if t.UDP != config.DefaultLVSTimeoutUDP {
		out.UDP = t.UDP
	}
	return out
}

// tuning passes on lvs_sysctl, whose zero value in the State is IPVS's
// defaults.
func tuning(s config.LVSSysctl) dataplane.Tuning {
	return dataplane.Tuning{
		ExpireQuiescentTemplate: s.ExpireQuiescentTemplate,
		NoConnReuse:             s.ConnReuseMode == 0,
		SloppyTCP:               s.SloppyTCP,
	}
}

// rangeSize counts the addresses of an IPv4 range.
func rangeSize(r config.AddressRange) uint64 {
	if !r.First.Is4() || !r.Last.Is4() || r.Last.Less(r.First) {
		return 0
	}
	return uint64(u32(r.Last)) - uint64(u32(r.First)) + 1
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func rangeString(r config.AddressRange) string {
	s := r.First.String()
	if r.Last != r.First {
		s += "-" + r.Last.String()
	}
	if r.Port != 0 {
		s += fmt.Sprintf(" port %d", r.Port)
	}
	return s
}

func kind(k config.Kind) dataplane.Kind {
	switch k {
	case config.DR:
		return dataplane.DR
	case config.TUN:
		return dataplane.TUN
	}
	return dataplane.NAT
}
