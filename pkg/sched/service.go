package sched

import (
	"cmp"
	"container/heap"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Proto is the service's transport protocol (IPPROTO_*).
type Proto uint8

// Protocols the model knows.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// Kind is the forwarding method. It matters to scheduling only through the
// TCP state table: with DR and TUN the replies bypass the balancer, IPVS
// sets IP_VS_CONN_F_NOOUTPUT on the connections and tracks them with the
// input-only table.
type Kind uint8

// Forwarding methods.
const (
	NAT Kind = iota
	DR
	TUN
)

// Flags are the scheduler flags of a service (IP_VS_SVC_F_SCHED1..2); sh
// and mh give the same bits their own names.
type Flags uint32

// Scheduler flags, with the kernel's values.
const (
	SHFallback Flags = 0x0008 // IP_VS_SVC_F_SCHED_SH_FALLBACK
	SHPort     Flags = 0x0010 // IP_VS_SVC_F_SCHED_SH_PORT
	MHFallback Flags = 0x0008 // IP_VS_SVC_F_SCHED_MH_FALLBACK
	MHPort     Flags = 0x0010 // IP_VS_SVC_F_SCHED_MH_PORT
)

// Schedulers lists the IPVS scheduler names the model implements.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// Sysctl holds the net.ipv4.vs sysctls that change scheduling.
type Sysctl struct {
	// ExpireQuiescentTemplate: a persistence template whose real has
	// weight 0 is invalidated when next looked up, so the client is
	// rescheduled; off (the default) keeps sending it to the quiesced real.
	ExpireQuiescentTemplate bool
	// SecureTCP selects tcp_states_dos (secure_tcp in force).
	SecureTCP bool
	// SloppyTCP lets any TCP segment without RST start a connection, not
	// only a SYN.
	SloppyTCP bool
	// NoConnReuse is conn_reuse_mode=0. By default (mode 1) a SYN that
	// finds a TCP connection in TIME_WAIT or CLOSE expires it and schedules
	// afresh.
	NoConnReuse bool
	// LBLCExpiration and LBLCRExpiration are lblc_expiration and
	// lblcr_expiration; 0 means DefaultLBLCExpiration.
	LBLCExpiration  time.Duration
	LBLCRExpiration time.Duration
}

// ftpPort is FTPPORT: persistent FTP services get templates with port 0 so
// that the data connections of a client follow its control connection.
const ftpPort = 21

// templateExtension is how far ip_vs_conn_expire pushes a template that
// still controls connections, and its timeout from then on.
const templateExtension = 60 * time.Second

// Config describes one IPVS virtual service.
type Config struct {
	Sched string // IPVS scheduler name, see Schedulers
	Flags Flags
	Proto Proto // 0 means TCP
	Kind  Kind

	// VIP and Port are the virtual address; Port 0 catches every port and
	// needs persistence (as in IPVS). With FWMark != 0 the service is
	// firewall-mark based: every packet given to it belongs to it, and VIP
	// and Port are ignored.
	VIP    netip.Addr
	Port   uint16
	FWMark uint32

	// PersistTimeout > 0 makes the service persistent (IP_VS_SVC_F_PERSISTENT,
	// svc->timeout).
	PersistTimeout time.Duration
	// PersistPrefix is the persistence granularity as a prefix length
	// (svc->netmask): clients whose addresses agree on it share a
	// template. 0 means the whole address.
	PersistPrefix int

	// Timeouts are the connection timeouts; the zero value means
	// DefaultTimeouts().
	Timeouts Timeouts
	Sysctl   Sysctl
	// MH is the mh table configuration; the zero value means DefaultMH.
	MH MHParams
}

// Packet is one packet of a connection, named by the connection's client
// and virtual addresses whichever way it travels.
type Packet struct {
	Client netip.AddrPort // source of client-to-server packets
	VIP    netip.AddrPort // their destination (any address for fwmark services)
	Flags  TCPFlags       // ignored for UDP
	// Reply marks a server-to-client packet, which only the NAT data path
	// sees; it never creates a connection.
	Reply bool
	// Rand are the two prandom_u32() values twos draws (PickTWOS); other
	// schedulers ignore them.
	Rand [2]uint32
}

// Verdict says what became of a packet.
type Verdict struct {
	// Dest is the real's index in Dests(), -1 when the connection's real
	// has since been removed (IPVS keeps forwarding such connections to it
	// unless expire_nodest_conn is set).
	Dest  int
	Real  netip.AddrPort
	New   bool     // the packet created the connection
	State TCPState // after the packet; TCPNone for UDP
}

// ConnInfo describes a connection entry.
type ConnInfo struct {
	Client, VIP netip.AddrPort
	Real        netip.AddrPort
	State       TCPState
	Active      bool          // counted in the real's activeconns
	Expires     time.Duration // when its timer fires unless a packet comes
	Persistent  bool          // controlled by a persistence template
}

// TemplateInfo describes a persistence template (a connection entry with
// IP_VS_CONN_F_TEMPLATE).
type TemplateInfo struct {
	Client     netip.Addr // masked with the granularity
	VIP        netip.Addr // invalid for a fwmark template
	VPort      uint16     // 0 for port-0, fwmark and FTP services
	FWMark     uint32
	Real       netip.AddrPort
	Expires    time.Duration
	Controlled int // n_control: connections created through it still alive
}

// Service is the model of one IPVS virtual service with its reals and its
// connection entries. Methods taking now process every timer due by then
// first; now must not go backwards.
type Service struct {
	cfg   Config
	list  []*dest // svc->destinations
	index map[*dest]int
	trash map[netip.AddrPort]*dest

	seq     []int  // rr, wrr
	counter uint64 // rr, wrr
	table   []int  // sh, dh, mh
	lblc    LBLC
	lblcr   LBLCR

	conns     map[connKey]*conn
	templates map[tmplKey]*conn
	timers    timerHeap
	serial    uint64
}

// dest is ip_vs_dest: the scheduling view plus what only the service
// tracks. Connections point at it, so it outlives its removal from the
// list (IPVS's trash) and comes back with its counters when re-added.
type dest struct {
	Dest
	persist int // persistconns
}

type connKey struct{ client, vip netip.AddrPort }

type tmplKey struct {
	proto  Proto // 0 (IPPROTO_IP) for fwmark templates
	snet   netip.Addr
	vaddr  netip.Addr
	fwmark uint32
	vport  uint16
}

// conn is ip_vs_conn, for both connections and templates.
type conn struct {
	key      connKey
	tkey     tmplKey
	template bool
	hashed   bool // a template still findable (not invalidated)
	d        *dest
	state    TCPState
	inactive bool // IP_VS_CONN_F_INACTIVE
	noOutput bool // IP_VS_CONN_F_NOOUTPUT
	timeout  time.Duration
	expires  time.Duration
	control  *conn
	nControl int
	gen      uint64
	serial   uint64
	gone     bool
}

// New makes a service with dests as its list, in list order.
func New(cfg Config, dests ...Dest) (*Service, error) {
	if !slices.Contains(Schedulers, cfg.Sched) {
		return nil, fmt.Errorf("unknown scheduler %q", cfg.Sched)
	}
	switch cfg.Proto {
	case 0:
		cfg.Proto = TCP
	case TCP, UDP:
	default:
		return nil, fmt.Errorf("protocol %d not modelled", cfg.Proto)
	}
	if cfg.Kind > TUN {
		return nil, fmt.Errorf("unknown forwarding kind %d", cfg.Kind)
	}
	if cfg.PersistPrefix < 0 || cfg.PersistPrefix > 128 {
		return nil, fmt.Errorf("persistence prefix %d out of range", cfg.PersistPrefix)
	}
	if cfg.Timeouts == (Timeouts{}) {
		cfg.Timeouts = DefaultTimeouts()
	}
	if cfg.MH.Size == 0 {
		cfg.MH = DefaultMH
	}
	if cfg.MH.Size < 2 {
		return nil, fmt.Errorf("mh table size %d too small", cfg.MH.Size)
	}
	s := &Service{
		cfg:       cfg,
		trash:     make(map[netip.AddrPort]*dest),
		conns:     make(map[connKey]*conn),
		templates: make(map[tmplKey]*conn),
		lblc:      LBLC{Expiration: cfg.Sysctl.LBLCExpiration},
		lblcr:     LBLCR{Expiration: cfg.Sysctl.LBLCRExpiration},
	}
	for _, d := range dests {
		if s.find(d.AddrPort()) >= 0 {
			return nil, fmt.Errorf("duplicate real %s", d.AddrPort())
		}
		nd := &dest{}
		s.setDest(nd, d, true)
		s.list = append(s.list, nd)
	}
	if cfg.Sched == "mh" && len(s.list) > cfg.MH.Size {
		return nil, fmt.Errorf("mh: %d reals exceed the %d-entry table", len(s.list), cfg.MH.Size)
	}
	s.rebuild()
	return s, nil
}

func (s *Service) find(ap netip.AddrPort) int {
	for i, d := range s.list {
		if d.AddrPort() == ap {
			return i
		}
	}
	return -1
}

// setDest is the part of __ip_vs_update_dest that the model needs: weight,
// last weight (kept at the latest non-zero weight, or set on add), the
// thresholds, and clearing the overload flag when the upper threshold is
// removed or raised.
func (s *Service) setDest(d *dest, u Dest, add bool) {
	d.Addr, d.Port = u.Addr, u.Port
	if add || u.Weight != 0 {
		d.LastWeight = u.Weight
	}
	d.Weight = u.Weight
	if u.UpperThreshold == 0 || u.UpperThreshold > d.UpperThreshold {
		d.Overloaded = false
	}
	d.UpperThreshold, d.LowerThreshold = u.UpperThreshold, u.LowerThreshold
}

// rebuild redoes what the schedulers' add_dest, del_dest and upd_dest
// callbacks do: rr and wrr restart their sequence (see RRSequence and
// WRRSequence for how IPVS differs), sh, dh and mh rebuild their tables.
// lblc and lblcr keep their entries, as IPVS does.
func (s *Service) rebuild() {
	s.index = make(map[*dest]int, len(s.list))
	for i, d := range s.list {
		s.index[d] = i
	}
	snap := s.Dests()
	s.counter = 0
	switch s.cfg.Sched {
	case "rr":
		s.seq = RRSequence(snap)
	case "wrr":
		s.seq = WRRSequence(snap)
	case "sh":
		s.table = BuildSHTable(snap)
	case "dh":
		s.table = BuildDHTable(snap)
	case "mh":
		// The size was checked when the real was added.
		s.table, _ = BuildMHTable(snap, s.cfg.MH)
	}
}

// Dests returns the reals in list order with their current counters and
// overload flags.
func (s *Service) Dests() []Dest {
	out := make([]Dest, len(s.list))
	for i, d := range s.list {
		out[i] = d.Dest
	}
	return out
}

// Sequence returns the rr/wrr sequence and the counter the next connection
// starts from; nil for other schedulers.
func (s *Service) Sequence() ([]int, uint64) {
	return slices.Clone(s.seq), s.counter
}

// Table returns the sh, dh or mh table; nil for other schedulers.
func (s *Service) Table() []int { return slices.Clone(s.table) }

// AddDest is ip_vs_add_dest: the real goes to the head of the list. A real
// removed earlier comes back with the connections and counters it still
// has (ip_vs_trash_get_dest), and persistence templates pointing at it that
// were not looked up meanwhile become valid again. Counters and the overload
// flag in d are ignored: connections own them.
func (s *Service) AddDest(now time.Duration, d Dest) error {
	s.Expire(now)
	ap := d.AddrPort()
	if s.find(ap) >= 0 {
		return fmt.Errorf("real %s already exists", ap)
	}
	if s.cfg.Sched == "mh" && len(s.list)+1 > s.cfg.MH.Size {
		return fmt.Errorf("mh: %d reals exceed the %d-entry table", len(s.list)+1, s.cfg.MH.Size)
	}
	nd := s.trash[ap]
	if nd == nil {
		nd = &dest{}
	}
	delete(s.trash, ap)
	s.setDest(nd, d, true)
	s.list = slices.Insert(s.list, 0, nd)
	s.rebuild()
	return nil
}

// UpdateDest is ip_vs_edit_dest: new weight and thresholds for an existing
// real (d names it by address and port; counters in d are ignored).
func (s *Service) UpdateDest(now time.Duration, d Dest) error {
	s.Expire(now)
	i := s.find(d.AddrPort())
	if i < 0 {
		return fmt.Errorf("no real %s", d.AddrPort())
	}
	s.setDest(s.list[i], d, false)
	s.rebuild()
	return nil
}

// SetWeight changes only the weight of a real; weight 0 quiesces it.
func (s *Service) SetWeight(now time.Duration, addr netip.AddrPort, weight int) error {
	i := s.find(addr)
	if i < 0 {
		return fmt.Errorf("no real %s", addr)
	}
	u := s.list[i].Dest
	u.Weight = weight
	return s.UpdateDest(now, u)
}

// RemoveDest is ip_vs_del_dest: the real leaves the list (and the sh, dh,
// mh tables and rr/wrr sequences) at once; its connections live on until
// they expire, and templates pointing at it are invalidated when next looked
// up (ip_vs_check_template: not IP_VS_DEST_F_AVAILABLE).
func (s *Service) RemoveDest(now time.Duration, addr netip.AddrPort) error {
	s.Expire(now)
	i := s.find(addr)
	if i < 0 {
		return fmt.Errorf("no real %s", addr)
	}
	s.trash[addr] = s.list[i]
	s.list = slices.Delete(s.list, i, i+1)
	s.rebuild()
	return nil
}

// Schedule processes p as Packet does and returns the index in Dests() of
// the real that gets it; ok is false when the packet gets no real (not a
// connection start and no connection, no real available, or the
// connection's real has been removed).
func (s *Service) Schedule(now time.Duration, p Packet) (dest int, ok bool) {
	v, ok := s.Packet(now, p)
	if !ok || v.Dest < 0 {
		return -1, false
	}
	return v.Dest, true
}

// Packet is ip_vs_in (and ip_vs_out for replies) for one packet: find the
// connection by client and virtual address; if there is none, and the
// packet may start one (UDP; TCP with SYN, or any segment with sloppy_tcp,
// never with RST; never a reply), schedule it (ip_vs_schedule); then update
// the TCP state and rearm the connection's timer. ok is false when the packet
// gets no connection.
func (s *Service) Packet(now time.Duration, p Packet) (Verdict, bool) {
	s.Expire(now)
	if !s.match(p) {
		return Verdict{Dest: -1}, false
	}
	k := connKey{p.Client, p.VIP}
	c := s.conns[k]
	if p.Reply {
		if c == nil {
			return Verdict{Dest: -1}, false
		}
		s.transition(c, Output, p.Flags)
		s.arm(c, now)
		return s.verdict(c, false), true
	}
	if c != nil && s.reusable(c, p) {
		// ip_vs_conn_expire_now: the old entry's timer fires at the next
		// tick, after this packet, so it is still counted while the new
		// connection is scheduled.
		delete(s.conns, k)
		c.expires = now
		s.push(c)
		c = nil
	}
	isNew := false
	if c == nil {
		if !s.mayStart(p) {
			return Verdict{Dest: -1}, false
		}
		if c = s.schedule(now, p); c == nil {
			return Verdict{Dest: -1}, false
		}
		isNew = true
	}
	s.transition(c, Input, p.Flags)
	s.arm(c, now)
	return s.verdict(c, isNew), true
}

// match is the service lookup of ip_vs_service_find reduced to one
// service; a port-0 service catches every port of its address.
func (s *Service) match(p Packet) bool {
	if s.cfg.FWMark != 0 {
		return true
	}
	return p.VIP.Addr() == s.cfg.VIP && (s.cfg.Port == 0 || p.VIP.Port() == s.cfg.Port)
}

// mayStart is the test of tcp_conn_schedule and udp_conn_schedule.
func (s *Service) mayStart(p Packet) bool {
	if s.cfg.Proto != TCP {
		return true
	}
	return (p.Flags&SYN != 0 || s.cfg.Sysctl.SloppyTCP) && p.Flags&RST == 0
}

// reusable is the conn_reuse_mode part of ip_vs_in with mode 1:
// is_new_conn (a TCP SYN) meeting is_new_conn_expected (a connection in
// TIME_WAIT or CLOSE). Since Linux 5.9 this includes connections controlled
// by a persistence template (they are rescheduled through it); earlier
// kernels left those alone.
func (s *Service) reusable(c *conn, p Packet) bool {
	return !s.cfg.Sysctl.NoConnReuse && s.cfg.Proto == TCP && p.Flags&SYN != 0 &&
		(c.state == TCPTimeWait || c.state == TCPClose)
}

func (s *Service) verdict(c *conn, isNew bool) Verdict {
	i, ok := s.index[c.d]
	if !ok {
		i = -1
	}
	return Verdict{Dest: i, Real: c.d.AddrPort(), New: isNew, State: c.state}
}

// schedule is ip_vs_schedule.
func (s *Service) schedule(now time.Duration, p Packet) *conn {
	if s.cfg.PersistTimeout > 0 {
		return s.schedPersist(now, p)
	}
	// Port zero is only supported in persistent services.
	if s.cfg.FWMark == 0 && p.VIP.Port() != s.cfg.Port {
		return nil
	}
	d := s.pick(now, p)
	if d == nil {
		return nil
	}
	return s.newConn(connKey{p.Client, p.VIP}, d)
}

// schedPersist is ip_vs_sched_persist: the template key is the client
// address masked to the granularity with client port 0, and the virtual
// address and port -- port 0 for port-0 and FTP services; protocol
// IPPROTO_IP and the mark instead of the address for fwmark services. A
// valid template decides the real without consulting the scheduler, even
// when that real is quiesced or overloaded; otherwise the scheduler picks
// and a template is made. Either way the template's timer restarts with its
// timeout and the new connection is counted under it.
func (s *Service) schedPersist(now time.Duration, p Packet) *conn {
	key := s.templateKey(p)
	ct := s.templates[key]
	if ct != nil && !s.checkTemplate(ct) {
		// Invalidated: unhashed so that it is never found again, but left
		// to its timer, which is not restarted.
		delete(s.templates, key)
		ct.hashed = false
		ct = nil
	}
	var d *dest
	if ct == nil {
		if d = s.pick(now, p); d == nil {
			return nil
		}
		ct = s.newTemplate(key, d)
	} else {
		d = ct.d
	}
	c := s.newConn(connKey{p.Client, p.VIP}, d)
	c.control = ct // ip_vs_control_add
	ct.nControl++
	s.arm(ct, now) // ip_vs_conn_put(ct)
	return c
}

func (s *Service) templateKey(p Packet) tmplKey {
	k := tmplKey{proto: s.cfg.Proto, snet: maskAddr(p.Client.Addr(), s.cfg.PersistPrefix), vaddr: p.VIP.Addr()}
	switch {
	case p.VIP.Port() == s.cfg.Port:
		if s.cfg.Port != ftpPort {
			k.vport = p.VIP.Port()
		}
	case s.cfg.FWMark != 0:
		k.proto, k.vaddr, k.fwmark = 0, netip.Addr{}, s.cfg.FWMark
	}
	return k
}

func maskAddr(a netip.Addr, bits int) netip.Addr {
	if bits <= 0 || bits >= a.BitLen() {
		return a
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// checkTemplate is ip_vs_check_template.
func (s *Service) checkTemplate(ct *conn) bool {
	if _, avail := s.index[ct.d]; !avail {
		return false
	}
	return !(s.cfg.Sysctl.ExpireQuiescentTemplate && ct.d.Weight == 0)
}

// pick calls the scheduler.
func (s *Service) pick(now time.Duration, p Packet) *dest {
	snap := s.Dests()
	var i int
	switch s.cfg.Sched {
	case "rr", "wrr":
		i, s.counter = NextInSequence(s.seq, snap, s.counter)
	case "lc":
		i = PickLC(snap)
	case "wlc":
		i = PickWLC(snap)
	case "sed":
		i = PickSED(snap)
	case "nq":
		i = PickNQ(snap)
	case "fo":
		i = PickFO(snap)
	case "ovf":
		i = PickOVF(snap)
	case "twos":
		i = PickTWOS(snap, p.Rand[0], p.Rand[1])
	case "sh":
		i = LookupSH(s.table, snap, p.Client.Addr(), s.hashPort(p, SHPort), s.cfg.Flags&SHFallback != 0)
	case "dh":
		i = LookupDH(s.table, snap, p.VIP.Addr())
	case "mh":
		i = LookupMH(s.table, snap, s.cfg.MH, p.Client.Addr(), s.hashPort(p, MHPort), s.cfg.Flags&MHFallback != 0)
	case "lblc":
		i = s.lblc.Schedule(now, snap, p.VIP.Addr())
	case "lblcr":
		i = s.lblcr.Schedule(now, snap, p.VIP.Addr())
	}
	if i < 0 {
		return nil
	}
	return s.list[i]
}

func (s *Service) hashPort(p Packet, flag Flags) uint16 {
	if s.cfg.Flags&flag != 0 {
		return p.Client.Port()
	}
	return 0
}

// newConn is ip_vs_conn_new with ip_vs_bind_dest for a connection: it
// starts inactive (dests' conn_flags carry IP_VS_CONN_F_INACTIVE) in state
// NONE, and the state machine moves it on its first packet.
func (s *Service) newConn(k connKey, d *dest) *conn {
	s.serial++
	c := &conn{key: k, d: d, inactive: true, noOutput: s.cfg.Kind != NAT, timeout: newConnTimeout, serial: s.serial}
	d.Inactive++
	s.checkOverload(d)
	s.conns[k] = c
	return c
}

// newTemplate is ip_vs_conn_new with IP_VS_CONN_F_TEMPLATE: counted in
// persistconns, not in the connection counters, with the persistence
// timeout.
func (s *Service) newTemplate(k tmplKey, d *dest) *conn {
	s.serial++
	c := &conn{tkey: k, template: true, hashed: true, d: d, timeout: s.cfg.PersistTimeout, serial: s.serial}
	d.persist++
	s.checkOverload(d)
	s.templates[k] = c
	return c
}

// checkOverload is the end of ip_vs_bind_dest.
func (s *Service) checkOverload(d *dest) {
	if d.UpperThreshold != 0 && d.Active+d.Inactive >= d.UpperThreshold {
		d.Overloaded = true
	}
}

// transition is tcp_state_transition / udp_state_transition: the new
// state, the move between activeconns and inactconns when activity changes,
// and the timeout of the new state.
func (s *Service) transition(c *conn, table TCPTable, flags TCPFlags) {
	if s.cfg.Proto != TCP {
		c.timeout = s.cfg.Timeouts.UDP
		return
	}
	if c.noOutput {
		if table == Output {
			c.noOutput = false
		} else {
			table = InputOnly
		}
	}
	ns := TCPTransition(c.state, table, flags, s.cfg.Sysctl.SecureTCP)
	if ns != c.state {
		switch {
		case !c.inactive && !ns.Active():
			c.d.Active--
			c.d.Inactive++
			c.inactive = true
		case c.inactive && ns.Active():
			c.d.Active++
			c.d.Inactive--
			c.inactive = false
		}
	}
	c.state = ns
	c.timeout = s.cfg.Timeouts.TCP[ns]
}

// arm is the timer restart of ip_vs_conn_put: the entry expires its
// timeout after now.
func (s *Service) arm(c *conn, now time.Duration) {
	c.expires = now + c.timeout
	s.push(c)
}

func (s *Service) push(c *conn) {
	c.gen++
	heap.Push(&s.timers, timer{at: c.expires, c: c, gen: c.gen})
}

// Expire fires every timer due by now, in time order.
func (s *Service) Expire(now time.Duration) {
	for len(s.timers) > 0 && s.timers[0].at <= now {
		t := heap.Pop(&s.timers).(timer)
		if t.c.gone || t.gen != t.c.gen {
			continue
		}
		s.fire(t.c, t.at)
	}
	s.lblc.Expire(now)
	s.lblcr.Expire(now)
}

// fire is ip_vs_conn_expire. A template that still controls connections
// is pushed back by 60 s, and 60 s becomes its timeout, so from then on each
// new connection through it extends it by 60 s only, not by the persistence
// timeout (the kernel never restores svc->timeout).
func (s *Service) fire(c *conn, at time.Duration) {
	if c.nControl > 0 {
		c.timeout = templateExtension
		c.expires = at + templateExtension
		s.push(c)
		return
	}
	c.gone = true
	if c.template {
		if c.hashed && s.templates[c.tkey] == c {
			delete(s.templates, c.tkey)
		}
	} else if s.conns[c.key] == c {
		delete(s.conns, c.key)
	}
	if c.control != nil {
		c.control.nControl-- // ip_vs_control_del
	}
	s.unbind(c)
}

// unbind is ip_vs_unbind_dest: drop the counter, then clear the overload
// flag below the lower threshold, or below 3/4 of the upper one when there
// is no lower, or unconditionally when there are no thresholds.
func (s *Service) unbind(c *conn) {
	d := c.d
	switch {
	case c.template:
		d.persist--
	case c.inactive:
		d.Inactive--
	default:
		d.Active--
	}
	total := d.Active + d.Inactive
	switch {
	case d.LowerThreshold != 0:
		if total < d.LowerThreshold {
			d.Overloaded = false
		}
	case d.UpperThreshold != 0:
		if total*4 < d.UpperThreshold*3 {
			d.Overloaded = false
		}
	default:
		d.Overloaded = false
	}
}

// Conn returns the connection entry of client and vip.
func (s *Service) Conn(client, vip netip.AddrPort) (ConnInfo, bool) {
	c, ok := s.conns[connKey{client, vip}]
	if !ok {
		return ConnInfo{}, false
	}
	return s.connInfo(c), true
}

// Conns returns every connection entry, ordered by client then VIP.
func (s *Service) Conns() []ConnInfo {
	out := make([]ConnInfo, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, s.connInfo(c))
	}
	slices.SortFunc(out, func(a, b ConnInfo) int {
		return cmp.Or(a.Client.Compare(b.Client), a.VIP.Compare(b.VIP))
	})
	return out
}

func (s *Service) connInfo(c *conn) ConnInfo {
	return ConnInfo{
		Client: c.key.client, VIP: c.key.vip, Real: c.d.AddrPort(),
		State: c.state, Active: !c.inactive, Expires: c.expires, Persistent: c.control != nil,
	}
}

// Templates returns the valid persistence templates, ordered by client.
func (s *Service) Templates() []TemplateInfo {
	out := make([]TemplateInfo, 0, len(s.templates))
	for k, c := range s.templates {
		out = append(out, TemplateInfo{
			Client: k.snet, VIP: k.vaddr, VPort: k.vport, FWMark: k.fwmark,
			Real: c.d.AddrPort(), Expires: c.expires, Controlled: c.nControl,
		})
	}
	slices.SortFunc(out, func(a, b TemplateInfo) int {
		return cmp.Or(a.Client.Compare(b.Client), a.VIP.Compare(b.VIP), cmp.Compare(a.VPort, b.VPort))
	})
	return out
}

// PersistConns is a real's persistconns (templates bound to it).
func (s *Service) PersistConns(addr netip.AddrPort) int {
	if i := s.find(addr); i >= 0 {
		return s.list[i].persist
	}
	if d := s.trash[addr]; d != nil {
		return d.persist
	}
	return 0
}

// timer is one pending expiry; gen tells a stale one (the entry was
// rearmed since) from the live one.
type timer struct {
	at  time.Duration
	c   *conn
	gen uint64
}

// timerHeap orders timers by time; at equal times connections fire before
// templates, so that a template whose last connection expires at the same
// instant expires with it rather than being extended, and otherwise in
// creation order.
type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.c.template != b.c.template {
		return !a.c.template
	}
	return a.c.serial < b.c.serial
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
