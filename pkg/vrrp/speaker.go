package vrrp

// The speaker: the sockets that carry adverts, one per interface and address
// family, shared by every instance on it and demultiplexed by VRID. It
// knows nothing of states or timers; an instance hands it adverts to send
// and gets back the ones that passed the checks keepalived makes before its
// state machine sees a packet (vrrp.c: vrrp_check_packet and the read path
// of vrrp_scheduler.c). What needs an instance's configuration beyond the
// addressing (password, interval, VIP list) is left to the instance.
//
// One shared socket rather than keepalived's socket per instance group keeps
// hundreds of instances to one file descriptor and one reader goroutine,
// and the VRID byte is looked up before anything else so that adverts of
// routers nobody here runs cost a table index.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Defaults for vrrp_mcast_group4 and vrrp_mcast_group6 (RFC 5798 5.1.1.2
// and 5.1.2.2).
var (
	DefaultGroup4 = netip.MustParseAddr("224.0.0.18")
	DefaultGroup6 = netip.MustParseAddr("ff02::12")
)

// ttlRequired is the TTL (hop limit) adverts are sent with and the only one
// accepted: a router that forwarded an advert would have lowered it, so 255
// proves the sender is on the link (RFC 5798 5.1.1.3).
const ttlRequired = 255

// tosInternetControl is the TOS keepalived sets on adverts (IPTOS_PREC_INTERNETCONTROL),
// so that networks with DSCP queues put them ahead of data.
const tosInternetControl = 0xc0

// maxPacket holds any advert: 255 IPv6 addresses and an IPv4 header with
// options still fit.
const maxPacket = 60 + headerLen + 255*16 + authLen

// Reason is why the speaker dropped a received advert.
type Reason uint8

// Reasons, as /metrics labels them.
const (
	ReasonTTL      Reason = iota // TTL or hop limit not 255
	ReasonLength                 // too short, or the length does not match the address count
	ReasonVersion                // not 2 or 3, or not the instance's version
	ReasonType                   // not an advertisement
	ReasonAuth                   // unknown authentication type
	ReasonChecksum               // neither checksum form matches
	ReasonFamily                 // addresses of the other family
	ReasonPeer                   // unicast instance, sender not in unicast_peer
	ReasonDst                    // multicast instance, not sent to the group
	ReasonQueue                  // the instance did not keep up with its channel
	ReasonVRID                   // no instance registered for the VRID
	ReasonRead                   // the socket returned an error
	numReasons
)

func (r Reason) String() string {
	switch r {
	case ReasonTTL:
		return "ttl"
	case ReasonLength:
		return "length"
	case ReasonVersion:
		return "version"
	case ReasonType:
		return "type"
	case ReasonAuth:
		return "auth_type"
	case ReasonChecksum:
		return "checksum"
	case ReasonFamily:
		return "family"
	case ReasonPeer:
		return "peer"
	case ReasonDst:
		return "destination"
	case ReasonQueue:
		return "queue_full"
	case ReasonVRID:
		return "unknown_vrid"
	case ReasonRead:
		return "read"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// reasonOf maps the codec's errors onto reasons.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrShort), errors.Is(err, ErrCountMismatch):
		return ReasonLength
	case errors.Is(err, ErrVersion):
		return ReasonVersion
	case errors.Is(err, ErrType):
		return ReasonType
	case errors.Is(err, ErrAuthType):
		return ReasonAuth
	case errors.Is(err, ErrChecksum):
		return ReasonChecksum
	}
	return ReasonFamily
}

// Counters are packet counts, read with Speaker.Counters.
type Counters struct {
	Sent     uint64
	Received uint64 // delivered to the instance
	Dropped  [numReasons]uint64
	// Forms counts delivered adverts by the checksum form that matched,
	// which tells which of keepalived's VRRPv3 forms a peer uses.
	Forms [2]uint64
}

type counters struct {
	sent, received atomic.Uint64
	dropped        [numReasons]atomic.Uint64
	forms          [2]atomic.Uint64
}

func (c *counters) snapshot() Counters {
	var s Counters
	s.Sent, s.Received = c.sent.Load(), c.received.Load()
	for i := range c.dropped {
		s.Dropped[i] = c.dropped[i].Load()
	}
	for i := range c.forms {
		s.Forms[i] = c.forms[i].Load()
	}
	return s
}

// Received is an advert that passed the speaker's checks.
type Received struct {
	Advert Advert
	// Src and Dst are the IP header's addresses (Src without a zone).
	Src, Dst netip.Addr
	Form     ChecksumForm
	// At is when the speaker read it, the time to hand the state machine.
	At time.Time
}

// Instance is what the speaker needs of one vrrp_instance.
type Instance struct {
	Version int // 2 or 3; adverts of the other version are dropped
	// Src is unicast_src_ip or mcast_src_ip; zero for the interface's
	// primary address (the link-local one for IPv6).
	Src netip.Addr
	// Peers are unicast_peer: adverts go to each of them instead of the
	// group, and are accepted only from them.
	Peers []netip.Addr
	// Marshal chooses the VRRPv3 IPv4 checksum form sent; both are
	// accepted whatever it says.
	Marshal MarshalOptions
	// C receives the instance's adverts. The speaker never waits on it: an
	// advert that finds it full is dropped (ReasonQueue), so that one
	// stuck instance cannot make the others miss theirs.
	C chan<- Received
}

// Options tune a speaker.
type Options struct {
	// IPv6 makes a speaker for VRRPv3 over IPv6; IPv4 otherwise.
	IPv6 bool
	// Group is vrrp_mcast_group4 or vrrp_mcast_group6; zero for the
	// default.
	Group  netip.Addr
	Logger *slog.Logger
}

// Speaker sends and receives the adverts of every instance on one
// interface and address family.
type Speaker struct {
	ifi     *net.Interface
	v6      bool
	group   netip.Addr
	primary netip.Addr
	log     *slog.Logger
	conn    conn

	joinMu sync.Mutex
	joined bool

	// Indexed by VRID so that demultiplexing is one atomic load.
	inst      [256]atomic.Pointer[registered]
	unclaimed counters
}

type registered struct {
	Instance
	counters
}

// conn is the family-specific socket.
type conn interface {
	// read returns the VRRP message of the next packet and its header's
	// fields.
	read(b []byte) (msg []byte, src, dst netip.Addr, ttl int, err error)
	write(msg []byte, src, dst netip.Addr) error
	join(group netip.Addr) error
	setReadDeadline(time.Time) error
	close() error
}

// NewSpeaker opens the socket of protocol 112 on ifname. The interface's
// primary address is read once here (see Primary).
func NewSpeaker(ifname string, opts Options) (*Speaker, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("vrrp speaker: %w", err)
	}
	s := &Speaker{ifi: ifi, v6: opts.IPv6, group: opts.Group, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	if !s.group.IsValid() {
		s.group = DefaultGroup4
		if s.v6 {
			s.group = DefaultGroup6
		}
	}
	if s.group.Is6() != s.v6 || !s.group.IsMulticast() {
		return nil, fmt.Errorf("vrrp speaker on %s: %v is not an IPv%d multicast group", ifname, s.group, ipVersion(s.v6))
	}
	s.log = s.log.With("interface", ifname, "family", fmt.Sprintf("IPv%d", ipVersion(s.v6)))
	s.primary = primaryAddr(ifi, s.v6)
	if s.v6 {
		s.conn, err = listen6(ifi)
	} else {
		s.conn, err = listen4(ifi)
	}
	if err != nil {
		return nil, fmt.Errorf("vrrp speaker on %s: %w", ifname, err)
	}
	return s, nil
}

// Primary is the interface's primary address when the speaker was made:
// the source of adverts of instances with no Src of their own, and the
// address the state machine compares on equal priorities. It is invalid
// when the interface had none.
func (s *Speaker) Primary() netip.Addr { return s.primary }

// Register starts delivering vrid's adverts to in.C, replacing any earlier
// registration of vrid, until Unregister.
func (s *Speaker) Register(vrid uint8, in Instance) error {
	if in.Version != 2 && in.Version != 3 {
		return fmt.Errorf("%w: VRRP version %d", ErrVersion, in.Version)
	}
	if s.v6 && in.Version != 3 {
		// keepalived allows v2 over IPv6 outside vrrp_strict, but no
		// other implementation speaks it and RFC 3768 does not define it.
		return fmt.Errorf("%w: VRRPv%d over IPv6", ErrVersion, in.Version)
	}
	if in.C == nil {
		return errors.New("vrrp speaker: Register with no channel")
	}
	for _, ip := range append([]netip.Addr{in.Src}, in.Peers...) {
		if ip.IsValid() && ip.Is6() != s.v6 {
			return fmt.Errorf("%w: %v on an IPv%d speaker", ErrFamily, ip, ipVersion(s.v6))
		}
	}
	if len(in.Peers) == 0 {
		// Joined only once a multicast instance exists, so that a
		// unicast-only node sends no IGMP or MLD reports; a failed join
		// is tried again by the next Register.
		s.joinMu.Lock()
		if !s.joined {
			if err := s.conn.join(s.group); err != nil {
				s.joinMu.Unlock()
				return fmt.Errorf("vrrp speaker on %s: join %v: %w", s.ifi.Name, s.group, err)
			}
			s.joined = true
		}
		s.joinMu.Unlock()
	}
	r := &registered{Instance: in}
	r.Peers = make([]netip.Addr, len(in.Peers))
	for i, p := range in.Peers {
		r.Peers[i] = p.WithZone("")
	}
	s.inst[vrid].Store(r)
	return nil
}

// Unregister stops delivering vrid's adverts.
func (s *Speaker) Unregister(vrid uint8) { s.inst[vrid].Store(nil) }

// Send sends a from the instance registered for a.VRID: to the group, or to
// each unicast peer.
func (s *Speaker) Send(a Advert) error {
	r := s.inst[a.VRID].Load()
	if r == nil {
		return fmt.Errorf("vrrp speaker on %s: VRID %d is not registered", s.ifi.Name, a.VRID)
	}
	src := r.Src
	if !src.IsValid() {
		src = s.primary
	}
	if !src.IsValid() {
		return fmt.Errorf("vrrp speaker on %s: no IPv%d address to send VRID %d from", s.ifi.Name, ipVersion(s.v6), a.VRID)
	}
	dsts := r.Peers
	if len(dsts) == 0 {
		dsts = []netip.Addr{s.group}
	}
	var errs []error
	buf := make([]byte, 0, 64)
	for _, dst := range dsts {
		// Marshalled per destination: the pseudo-header holds it.
		msg, err := Append(buf[:0], a, src, dst, r.Marshal)
		buf = msg
		if err != nil {
			return fmt.Errorf("vrrp speaker on %s: %w", s.ifi.Name, err)
		}
		if err := s.conn.write(msg, src, dst); err != nil {
			errs = append(errs, fmt.Errorf("vrrp speaker on %s: send VRID %d to %v: %w", s.ifi.Name, a.VRID, dst, err))
			continue
		}
		r.sent.Add(1)
	}
	return errors.Join(errs...)
}

// Counters returns vrid's counts since it was registered, zero when it is
// not.
func (s *Speaker) Counters(vrid uint8) Counters {
	if r := s.inst[vrid].Load(); r != nil {
		return r.snapshot()
	}
	return Counters{}
}

// Unclaimed returns the counts of what could not be put down to a
// registered VRID: ReasonVRID, ReasonLength for packets too short to hold
// one, ReasonRead.
func (s *Speaker) Unclaimed() Counters { return s.unclaimed.snapshot() }

// Run reads adverts until ctx ends or the speaker is closed.
func (s *Speaker) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.setReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, maxPacket)
	for {
		msg, src, dst, ttl, err := s.conn.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.unclaimed.dropped[ReasonRead].Add(1)
			s.log.Warn("VRRP read failed", "err", err)
			// A socket that keeps failing must not spin a core.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.receive(msg, src, dst, ttl, time.Now())
	}
}

func (s *Speaker) receive(msg []byte, src, dst netip.Addr, ttl int, now time.Time) {
	if len(msg) < 2 {
		s.unclaimed.dropped[ReasonLength].Add(1)
		return
	}
	vrid := msg[1]
	r := s.inst[vrid].Load()
	if r == nil {
		s.unclaimed.dropped[ReasonVRID].Add(1)
		return
	}
	drop := func(why Reason, err error) {
		// The first of each kind is a warning, the rest debug: a
		// misconfigured peer sends one a second per instance, and the
		// counters are what status and /metrics show.
		level := slog.LevelDebug
		if r.dropped[why].Add(1) == 1 {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "VRRP advert dropped", "vrid", vrid, "src", src, "dst", dst, "reason", why, "err", err)
	}
	if ttl != ttlRequired {
		drop(ReasonTTL, fmt.Errorf("TTL %d", ttl))
		return
	}
	if len(r.Peers) > 0 {
		if !contains(r.Peers, src) {
			drop(ReasonPeer, nil)
			return
		}
	} else if dst != s.group {
		drop(ReasonDst, nil)
		return
	}
	a, form, err := Parse(msg, src, dst)
	if err != nil {
		drop(reasonOf(err), err)
		return
	}
	if a.Version != r.Version {
		drop(ReasonVersion, fmt.Errorf("VRRPv%d, instance speaks v%d", a.Version, r.Version))
		return
	}
	select {
	case r.C <- Received{Advert: a, Src: src, Dst: dst, Form: form, At: now}:
		r.received.Add(1)
		if r.forms[form&1].Add(1) == 1 && a.Version == 3 && !s.v6 {
			// Which form a keepalived peer uses depends on its
			// version and v3_checksum_as_v2: worth saying once.
			s.log.Info("VRRPv3 peer heard", "vrid", vrid, "src", src, "checksum", form)
		}
	default:
		drop(ReasonQueue, nil)
	}
}

// Close closes the socket; Run returns.
func (s *Speaker) Close() error { return s.conn.close() }

func contains(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// primaryAddr is what keepalived takes as the interface's address: the
// first IPv4 one (the kernel lists the primary first), or the link-local
// IPv6 one, which RFC 5798 5.1.2.1 makes the source of IPv6 adverts.
func primaryAddr(ifi *net.Interface, v6 bool) netip.Addr {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !v6 && ip.Is4() || v6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	return netip.Addr{}
}

// listenRaw opens a raw socket bound to the interface, as keepalived binds
// its own: adverts are link-local by definition, and a unicast advert for a
// local address that came in on another interface belongs to another
// instance (or none).
func listenRaw(network, laddr string, ifi *net.Interface) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifi.Name) }); err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), network, laddr)
}

// conn4 writes its own IPv4 header (IP_HDRINCL): that sets TTL, TOS and
// source per packet without socket options that apply to all instances,
// and reading gives the header back with the TTL in it.
type conn4 struct {
	ifi *net.Interface
	rc  *ipv4.RawConn
}

func listen4(ifi *net.Interface) (*conn4, error) {
	pc, err := listenRaw(fmt.Sprintf("ip4:%d", ProtocolNumber), "0.0.0.0", ifi)
	if err != nil {
		return nil, err
	}
	rc, err := ipv4.NewRawConn(pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	if err := rc.SetMulticastInterface(ifi); err != nil {
		rc.Close()
		return nil, fmt.Errorf("multicast interface: %w", err)
	}
	// Off so that a node never hears its own adverts as a peer's.
	if err := rc.SetMulticastLoopback(false); err != nil {
		rc.Close()
		return nil, fmt.Errorf("multicast loopback: %w", err)
	}
	return &conn4{ifi: ifi, rc: rc}, nil
}

func (c *conn4) read(b []byte) ([]byte, netip.Addr, netip.Addr, int, error) {
	h, p, _, err := c.rc.ReadFrom(b)
	if err != nil {
		return nil, netip.Addr{}, netip.Addr{}, 0, err
	}
	src, _ := netip.AddrFromSlice(h.Src.To4())
	dst, _ := netip.AddrFromSlice(h.Dst.To4())
	return p, src, dst, h.TTL, nil
}

func (c *conn4) write(msg []byte, src, dst netip.Addr) error {
	h := &ipv4.Header{
		Version:  ipv4.Version,
		Len:      ipv4.HeaderLen,
		TOS:      tosInternetControl,
		TotalLen: ipv4.HeaderLen + len(msg),
		TTL:      ttlRequired,
		Protocol: ProtocolNumber,
		Src:      src.AsSlice(),
		Dst:      dst.AsSlice(),
	}
	return c.rc.WriteTo(h, msg, nil)
}

func (c *conn4) join(group netip.Addr) error {
	return c.rc.JoinGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()})
}

func (c *conn4) setReadDeadline(t time.Time) error { return c.rc.SetReadDeadline(t) }
func (c *conn4) close() error                      { return c.rc.Close() }

// conn6 cannot write IPv6 headers (there is no IP_HDRINCL for IPv6), so hop
// limit, traffic class and source travel as socket options and ancillary
// data, and the header's fields come back the same way.
type conn6 struct {
	ifi *net.Interface
	pc  *ipv6.PacketConn
}

func listen6(ifi *net.Interface) (*conn6, error) {
	raw, err := listenRaw(fmt.Sprintf("ip6:%d", ProtocolNumber), "::", ifi)
	if err != nil {
		return nil, err
	}
	pc := ipv6.NewPacketConn(raw)
	for _, set := range []struct {
		what string
		err  func() error
	}{
		{"multicast interface", func() error { return pc.SetMulticastInterface(ifi) }},
		{"multicast loopback", func() error { return pc.SetMulticastLoopback(false) }},
		{"multicast hop limit", func() error { return pc.SetMulticastHopLimit(ttlRequired) }},
		{"hop limit", func() error { return pc.SetHopLimit(ttlRequired) }},
		{"traffic class", func() error { return pc.SetTrafficClass(tosInternetControl) }},
		// The checksum is left to Parse (no IPV6_CHECKSUM), so that a
		// bad one is counted instead of silently dropped by the kernel.
		{"control messages", func() error { return pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true) }},
	} {
		if err := set.err(); err != nil {
			pc.Close()
			return nil, fmt.Errorf("%s: %w", set.what, err)
		}
	}
	return &conn6{ifi: ifi, pc: pc}, nil
}

func (c *conn6) read(b []byte) ([]byte, netip.Addr, netip.Addr, int, error) {
	n, cm, from, err := c.pc.ReadFrom(b)
	if err != nil {
		return nil, netip.Addr{}, netip.Addr{}, 0, err
	}
	var src, dst netip.Addr
	if ip, ok := from.(*net.IPAddr); ok {
		src, _ = netip.AddrFromSlice(ip.IP)
	}
	ttl := -1
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
		ttl = cm.HopLimit
	}
	if !dst.IsValid() {
		return nil, src, dst, 0, errors.New("no destination address in the control message")
	}
	return b[:n], src, dst, ttl, nil
}

func (c *conn6) write(msg []byte, src, dst netip.Addr) error {
	cm := &ipv6.ControlMessage{
		TrafficClass: tosInternetControl,
		HopLimit:     ttlRequired,
		Src:          src.AsSlice(),
		IfIndex:      c.ifi.Index,
	}
	_, err := c.pc.WriteTo(msg, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: c.ifi.Name})
	return err
}

func (c *conn6) join(group netip.Addr) error {
	return c.pc.JoinGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()})
}

func (c *conn6) setReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }
func (c *conn6) close() error                      { return c.pc.Close() }
