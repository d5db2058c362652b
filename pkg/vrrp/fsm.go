package vrrp

// The VRRP state machine of one vrrp_instance, kept free of sockets, netlink
// and clocks in the manner of google/seesaw's HA engine: the speaker feeds it
// events stamped with the time, and carries out the actions it returns.
// Nothing here blocks, so one goroutine can drive hundreds of instances and
// a test can drive one through hours of protocol time in microseconds.
//
// The reference is keepalived 2.2.7 (the version KEEPALIVED.md measured and
// the interop tests run against), read in acassen/keepalived at tag v2.2.7:
// keepalived/vrrp/vrrp.c, vrrp_scheduler.c, vrrp_track.c and vrrp_notify.c.
// Where keepalived's git head has since changed behaviour, the comments say
// so. RFC 5798 section 6.4 is what keepalived itself follows.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// State is a VRRP instance's state.
type State uint8

// States, as keepalived names them in notify arguments. INIT is where a
// machine sits before Start; STOP after Stop.
const (
	Init State = iota
	Backup
	Master
	Fault
	Stopped
)

func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	case Stopped:
		return "STOP"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// prioOwner is the address owner's priority: it never waits to become
// master and tracking never changes it. prioStop is what a master sends
// when it leaves, so that backups take over after Skew_Time instead of
// Master_Down_Interval.
const (
	prioOwner uint8 = 255
	prioStop  uint8 = 0
)

// downTimerAdverts is keepalived's down_timer_adverts default
// (VRRP_DOWN_TIMER_ADVERTS): the 3 of RFC 5798's Master_Down_Interval.
// keepalived lets it be changed; xlbd's config has no keyword for it.
const downTimerAdverts = 3

// TrackKind says what a tracked object is; it only matters for naming, as
// keepalived applies the same weight rules to both.
type TrackKind uint8

// Tracked object kinds.
const (
	TrackInterface TrackKind = iota + 1
	TrackScript
)

func (k TrackKind) String() string {
	switch k {
	case TrackInterface:
		return "interface"
	case TrackScript:
		return "script"
	}
	return fmt.Sprintf("TrackKind(%d)", uint8(k))
}

// Track is one track_interface or track_script line.
type Track struct {
	Kind TrackKind
	Name string
	// Weight 0 puts the instance in FAULT while the object is down;
	// otherwise it moves the priority (vrrp_track.c: a positive weight is
	// added while up, a negative one while down).
	Weight  int
	Reverse bool
}

// Config is what the state machine needs of a vrrp_instance.
type Config struct {
	Name     string
	Version  int   // 2 or 3
	Priority uint8 // base priority, 1-255
	// InitialMaster is keepalived's wantstate MASTER: `state MASTER`, or
	// priority 255 without a state. Below 255 it only clears nopreempt
	// and preempt_delay: the first wait is Master_Down_Interval all the
	// same (see start).
	InitialMaster bool
	AdvertInt     time.Duration
	NoPreempt     bool
	PreemptDelay  time.Duration
	// PrimaryIP is the address adverts are sent from; equal priorities are
	// decided by comparing it with the sender's.
	PrimaryIP netip.Addr
	// VIPs are the addresses listed in adverts, for VIPsMatch.
	VIPs []netip.Addr

	GARPDelay         time.Duration // garp_master_delay; 0: no second batch
	GARPRepeat        int           // garp_master_repeat
	GARPRefresh       time.Duration // garp_master_refresh; 0: none
	GARPRefreshRepeat int           // garp_master_refresh_repeat
	// GARPLowerPrioRepeat and GARPLowerPrioDelay are what a master sends
	// on hearing a lower priority master (split brain healing).
	GARPLowerPrioRepeat int
	GARPLowerPrioDelay  time.Duration
	// LowerPrioNoAdvert stops the immediate advert a master sends on
	// hearing a lower priority one (keepalived's lower_prio_no_advert).
	LowerPrioNoAdvert bool
	// Strict is vrrp_strict, which New applies as vrrp_complete_instance
	// does.
	Strict bool

	// SyncGroup is the vrrp_sync_group the instance is in, if any. Its
	// members start and recover from FAULT as BACKUP with the full
	// Master_Down_Interval, because keepalived ignores `state MASTER` in
	// a group unless every member is an address owner wanting MASTER
	// (vrrp_complete_init), and an owner recovering from FAULT cannot
	// pass vrrp_sync_can_goto_master while its peers are still in FAULT.
	// Owners with InitialMaster still start MASTER at once: in a group of
	// such owners that is what keepalived does, and a group mixing owners
	// with others is one keepalived reports as a configuration error.
	SyncGroup string

	Tracks []Track
}

// ConfigFrom builds the machine's Config from a validated instance.
// primaryIP is the interface's primary address of the instance's family;
// unicast_src_ip or mcast_src_ip win over it, as in keepalived's
// vrrp_saddr_cmp. Global settings the instance does not carry (vrrp_strict)
// are left for the caller to set.
func ConfigFrom(vi config.VRRPInstance, primaryIP netip.Addr) Config {
	src := primaryIP
	switch {
	case vi.UnicastSrcIP.IsValid():
		src = vi.UnicastSrcIP
	case vi.McastSrcIP.IsValid():
		src = vi.McastSrcIP
	}
	c := Config{
		Name:     vi.Name,
		Version:  vi.Version,
		Priority: vi.Priority,
		// The model cannot tell `state BACKUP` from no state, and a
		// priority 255 instance without a state wants MASTER in
		// keepalived, which is by far the usual way to write an owner.
		InitialMaster:     vi.State == config.Master || vi.Priority == prioOwner,
		AdvertInt:         vi.AdvertInt,
		NoPreempt:         vi.NoPreempt,
		PreemptDelay:      vi.PreemptDelay,
		PrimaryIP:         src,
		GARPDelay:         vi.GarpMasterDelay,
		GARPRepeat:        vi.GarpMasterRepeat,
		GARPRefresh:       vi.GarpMasterRefresh,
		GARPRefreshRepeat: 1,
		// keepalived defaults vrrp_garp_lower_prio_{repeat,delay} to the
		// global garp_master ones (vrrp_complete_init); the instance's are
		// the global ones unless overridden.
		GARPLowerPrioRepeat: vi.GarpMasterRepeat,
		GARPLowerPrioDelay:  vi.GarpMasterDelay,
	}
	for _, v := range vi.VirtualIPAddresses {
		c.VIPs = append(c.VIPs, v.Prefix.Addr())
	}
	for _, t := range vi.TrackInterfaces {
		c.Tracks = append(c.Tracks, Track{Kind: TrackInterface, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse})
	}
	for _, t := range vi.TrackScripts {
		c.Tracks = append(c.Tracks, Track{Kind: TrackScript, Name: t.Name, Weight: t.Weight, Reverse: t.Reverse})
	}
	return c
}

// VIPsMatch reports whether an advert's address list is the instance's, as
// vrrp_in_chk_vips checks it: same count, and every VIP present.
func VIPsMatch(want, got []netip.Addr) bool {
	if len(want) != len(got) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Event is an input to Handle.
type Event interface{ isEvent() }

// Start brings the instance up (vrrp_init_state).
type Start struct{}

// Stop shuts the instance down gracefully: a master sends priority 0 and
// releases its VIPs.
type Stop struct{}

// TimerFired says the deadline returned by Deadline has come.
type TimerFired struct{}

// AdvertReceived is an advertisement for this VRID that passed the codec's
// and the speaker's checks (checksum, TTL, auth, version). The interval and
// VIP list checks are left to the machine because whether a failure drops
// the advert or is only reported depends on the version.
type AdvertReceived struct {
	From     netip.Addr
	Priority uint8
	// Interval is the advert's interval: whole seconds in v2, centiseconds
	// in v3.
	Interval time.Duration
	// VIPMismatch is !VIPsMatch(cfg.VIPs, addresses in the advert).
	VIPMismatch bool
}

// TrackChanged reports a tracked interface's link state or a tracked
// script's result after rise/fall. A tracked interface counts as up until
// told otherwise, so the speaker should report the down ones before Start;
// a tracked script counts as not yet run (keepalived's SCRIPT_INIT_STATE_INIT)
// until its first report.
type TrackChanged struct {
	Kind TrackKind
	Name string
	Up   bool
}

// SyncMaster: another member of the instance's sync group became MASTER.
// keepalived (vrrp_sync_master) carries the group's BACKUP members along so
// that all its addresses move together; the runner feeds this to the other
// members whenever one enters MASTER.
//
// Only a BACKUP whose down timer has run out by now follows: that is what
// vrrp_sync_can_goto_master asks of every member (wantstate MASTER), so a
// member still hearing a live master, or holding back under nopreempt or
// preempt_delay, stays BACKUP rather than take its VRID from the master it
// follows. keepalived also holds back the member whose timer ran out
// first, re-arming it, until every peer's has run out too: it prefers a
// BACKUP group to a split one, and without that two nodes whose members'
// priorities disagree take the group from each other every
// Master_Down_Interval. The machine cannot see its peers, so that wait is
// the runner's: it should feed TimerFired to a BACKUP member only once the
// Deadline of every BACKUP peer has passed too, and feed it to them all
// then (the first to go MASTER carries the others). Meanwhile the waiting
// member's Deadline stays in the past.
type SyncMaster struct{ Member string }

// SyncBackup: another member left MASTER for BACKUP.
// keepalived (vrrp_sync_backup) makes the group's other masters step down
// with it, because a group is meant to be MASTER on one node as a whole:
// the member that heard a better master has handed over its VRID, so the
// rest must too. The runner feeds it whenever a member goes from MASTER to
// BACKUP; members not MASTER ignore it.
type SyncBackup struct{ Member string }

// SyncFault: another member entered FAULT (Held true) or left it (Held false).
// keepalived (vrrp_sync_fault, num_member_fault) holds every member in
// FAULT while any member's own tracked objects keep it there, counting the
// faulty members so that each must recover before the group leaves FAULT.
//
// "Entered FAULT" here means Status().OwnFault became true, not that
// State() became FAULT: the runner relays changes of OwnFault. A member held
// in FAULT only by its peers must not hold them in turn, or no member could
// ever leave FAULT again; and a member whose own objects fail while a peer
// already holds it in FAULT changes no State, yet must count as faulty.
// The runner should relay a member's faults even to peers not yet started,
// which then start in FAULT.
type SyncFault struct {
	Member string
	Held   bool
}

func (Start) isEvent()          {}
func (Stop) isEvent()           {}
func (TimerFired) isEvent()     {}
func (AdvertReceived) isEvent() {}
func (TrackChanged) isEvent()   {}
func (SyncMaster) isEvent()     {}
func (SyncBackup) isEvent()     {}
func (SyncFault) isEvent()      {}

// Action is something the speaker or VIP manager must do, in order.
type Action interface{ isAction() }

// SendAdvert sends one advertisement with this priority.
type SendAdvert struct{ Priority uint8 }

// AddVIPs adds virtual_ipaddress and virtual_ipaddress_excluded.
type AddVIPs struct{}

// RemoveVIPs removes them.
type RemoveVIPs struct{}

// GARPReason says why gratuitous ARPs are due, for logs and metrics.
type GARPReason uint8

// Reasons for SendGARP.
const (
	GARPBecomeMaster     GARPReason = iota + 1 // on entering MASTER
	GARPMasterDelay                            // garp_master_delay after that
	GARPRefresh                                // every garp_master_refresh
	GARPLowerPrio                              // a lower priority master was heard
	GARPLowerPrioDelayed                       // garp_lower_prio_delay after that
)

func (r GARPReason) String() string {
	switch r {
	case GARPBecomeMaster:
		return "become-master"
	case GARPMasterDelay:
		return "master-delay"
	case GARPRefresh:
		return "refresh"
	case GARPLowerPrio:
		return "lower-prio"
	case GARPLowerPrioDelayed:
		return "lower-prio-delayed"
	}
	return fmt.Sprintf("GARPReason(%d)", uint8(r))
}

// SendGARP sends Count rounds of gratuitous ARPs (unsolicited neighbour
// adverts for IPv6) for every VIP and excluded VIP, as
// vrrp_send_link_update does.
type SendGARP struct {
	Count int
	Why   GARPReason
}

// Notify runs notify_<state> as written, and the generic notify script with
// Args appended.
type Notify struct {
	Instance string
	State    State
	Priority uint8
}

// Args are what keepalived appends to the generic notify script
// (notify_script_exec): INSTANCE, name, state, priority.
func (n Notify) Args() []string {
	return []string{"INSTANCE", n.Instance, n.State.String(), strconv.Itoa(int(n.Priority))}
}

// BadAdvertReason names a check an advert failed.
type BadAdvertReason uint8

// Reasons for BadAdvert.
const (
	BadInterval BadAdvertReason = iota + 1
	BadVIPList
)

func (r BadAdvertReason) String() string {
	switch r {
	case BadInterval:
		return "interval"
	case BadVIPList:
		return "vip-list"
	}
	return fmt.Sprintf("BadAdvertReason(%d)", uint8(r))
}

// BadAdvert asks for a log line and a count. Dropped says the advert was
// otherwise ignored; a VRRPv3 interval mismatch is only reported.
type BadAdvert struct {
	From    netip.Addr
	Reason  BadAdvertReason
	Dropped bool
}

func (SendAdvert) isAction() {}
func (AddVIPs) isAction()    {}
func (RemoveVIPs) isAction() {}
func (SendGARP) isAction()   {}
func (Notify) isAction()     {}
func (BadAdvert) isAction()  {}

// Status is what `xlbd status` shows of an instance.
type Status struct {
	State             State
	Priority          uint8 // configured
	EffectivePriority uint8 // after tracking
	Master            netip.Addr
	MasterPriority    uint8
	Since             time.Time // last transition
	Why               string    // of the last transition
	// OwnFault says the instance's own tracked objects hold it in FAULT,
	// as opposed to sync group peers only; see SyncFault.
	OwnFault bool
}

type trackState int8

const (
	trackUnknown trackState = iota
	trackUp
	trackDown
)

// Machine is one instance's state machine. It is not safe for concurrent
// use: one goroutine owns it.
type Machine struct {
	cfg   Config
	state State
	track []trackState // parallel to cfg.Tracks
	eff   uint8

	// masterAdverInt is RFC 5798's Master_Adver_Interval: the master's
	// interval in v3, always ours in v2.
	masterAdverInt time.Duration

	// timer is the MASTER's next advert or the BACKUP's master down
	// timer (keepalived's single sands per instance).
	timer       time.Time
	garpAt      time.Time
	refreshAt   time.Time
	lowerGARPAt time.Time
	preemptAt   time.Time // zero: the preempt delay is not running

	// faultNotified tells a FAULT entered while waiting for scripts'
	// first results (silent in keepalived) from a real one.
	faultNotified bool

	// heldBy lists the sync group peers in FAULT, in the order they
	// entered it; the instance stays in FAULT until it is empty.
	heldBy []string

	master     netip.Addr
	masterPrio uint8
	since      time.Time
	why        string
}

// New returns a machine in INIT. It applies keepalived's corrections of
// contradictory settings (vrrp_complete_instance) so that the rest of the
// code need not re-check them.
func New(cfg Config, now time.Time) *Machine {
	if cfg.Version == 0 {
		cfg.Version = config.DefaultVRRPVersion
	}
	if cfg.AdvertInt <= 0 {
		cfg.AdvertInt = config.DefaultAdvertInt
	}
	if cfg.Priority == 0 {
		cfg.Priority = config.DefaultPriority
		if cfg.InitialMaster {
			cfg.Priority = prioOwner
		}
	}
	if cfg.GARPRepeat <= 0 {
		cfg.GARPRepeat = config.DefaultGarpMasterRepeat
	}
	if cfg.GARPRefreshRepeat <= 0 {
		cfg.GARPRefreshRepeat = 1
	}
	owner := cfg.Priority == prioOwner
	if cfg.Strict {
		cfg.InitialMaster = owner
		cfg.PreemptDelay = 0
		cfg.LowerPrioNoAdvert = true
		cfg.GARPLowerPrioRepeat = 0
		cfg.GARPLowerPrioDelay = 0
	}
	if owner {
		cfg.NoPreempt = false
	}
	if cfg.InitialMaster {
		cfg.NoPreempt = false
		cfg.PreemptDelay = 0
	}
	if cfg.NoPreempt {
		cfg.PreemptDelay = 0
	}
	m := &Machine{
		cfg:            cfg,
		state:          Init,
		track:          make([]trackState, len(cfg.Tracks)),
		masterAdverInt: cfg.AdvertInt,
		since:          now,
		why:            "configured",
	}
	for i, t := range cfg.Tracks {
		if t.Kind == TrackInterface {
			m.track[i] = trackUp
		}
	}
	m.eff = m.effectivePriority()
	return m
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Deadline is when the speaker must send TimerFired; zero when no timer runs.
func (m *Machine) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{m.timer, m.garpAt, m.refreshAt, m.lowerGARPAt} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// Status returns the instance's state for display.
func (m *Machine) Status() Status {
	return Status{
		State:             m.state,
		Priority:          m.cfg.Priority,
		EffectivePriority: m.eff,
		Master:            m.master,
		MasterPriority:    m.masterPrio,
		Since:             m.since,
		Why:               m.why,
		OwnFault:          m.ownFault(),
	}
}

// ownFault is keepalived's num_script_if_fault or num_script_init counted
// in the group's num_member_fault or num_member_init: only a started
// instance holds its peers.
func (m *Machine) ownFault() bool {
	if m.state != Fault {
		return false
	}
	held, _ := m.faults()
	return held
}

// Handle applies one event and returns what to do, in order.
func (m *Machine) Handle(ev Event, now time.Time) []Action {
	switch ev := ev.(type) {
	case Start:
		return m.start(now)
	case Stop:
		return m.stop(now)
	case TimerFired:
		return m.fire(now)
	case AdvertReceived:
		return m.advert(ev, now)
	case TrackChanged:
		return m.trackChanged(ev, now)
	case SyncMaster:
		return m.syncMaster(ev, now)
	case SyncBackup:
		return m.syncBackup(ev, now)
	case SyncFault:
		return m.syncFault(ev, now)
	}
	return nil
}

func (m *Machine) owner() bool { return m.cfg.Priority == prioOwner }

// skew is Skew_Time for a priority, computed in microseconds exactly as
// VRRP_TIMER_SKEW_CALC does so that timings match keepalived's to the
// microsecond: v2 ignores the interval ((256-p)/256 s, RFC 3768), v3 scales
// it by Master_Adver_Interval in centiseconds (RFC 5798).
func (m *Machine) skewFor(p uint32) time.Duration {
	if m.cfg.Version == 3 {
		cs := uint64(m.masterAdverInt / (10 * time.Millisecond))
		return time.Duration(uint64(p)*cs*625/16) * time.Microsecond
	}
	return time.Duration(uint64(p)*1000000/256) * time.Microsecond
}

// skew uses 255 for an owner whatever its effective priority, as
// VRRP_TIMER_SKEW does.
func (m *Machine) skew() time.Duration {
	p := m.eff
	if m.owner() {
		p = prioOwner
	}
	return m.skewFor(256 - uint32(p))
}

// masterDown is Master_Down_Interval (VRRP_MS_DOWN_TIMER).
func (m *Machine) masterDown() time.Duration {
	return downTimerAdverts*m.masterAdverInt + m.skew()
}

// effectivePriority sums the weights the way vrrp_track.c does: a positive
// weight counts while its object is up, a negative one while it is down,
// reverse swaps the two, an object not yet reported counts for nothing;
// the sum is clamped to 1-254 and never applies to an owner
// (vrrp_set_effective_priority).
func (m *Machine) effectivePriority() uint8 {
	if m.owner() {
		return prioOwner
	}
	total := int(m.cfg.Priority)
	for i, t := range m.cfg.Tracks {
		if t.Weight == 0 || m.track[i] == trackUnknown {
			continue
		}
		var c int
		if m.track[i] == trackUp {
			c = max(t.Weight, 0)
		} else {
			c = min(t.Weight, 0)
		}
		if t.Reverse {
			c = -c
		}
		total += c
	}
	return uint8(min(max(total, 1), int(prioOwner)-1))
}

// faults says whether a weight 0 object holds the instance in FAULT, and
// whether any of them has actually failed rather than not reported yet
// (keepalived's num_script_init, which keeps an instance in FAULT without
// notifying).
func (m *Machine) faults() (held, failed bool) {
	for i, t := range m.cfg.Tracks {
		if t.Weight != 0 {
			continue
		}
		switch m.track[i] {
		case trackUnknown:
			held = true
		case trackUp, trackDown:
			if (m.track[i] == trackUp) == t.Reverse {
				held, failed = true, true
			}
		}
	}
	return held, failed
}

func (m *Machine) transition(s State, now time.Time, why string) {
	m.state = s
	m.since = now
	m.why = why
}

func (m *Machine) notify() Action {
	return Notify{Instance: m.cfg.Name, State: m.state, Priority: m.eff}
}

func (m *Machine) clearMasterTimers() {
	m.garpAt, m.refreshAt, m.lowerGARPAt = time.Time{}, time.Time{}, time.Time{}
}

// start follows vrrp_init_state.
func (m *Machine) start(now time.Time) []Action {
	if m.state != Init && m.state != Stopped {
		return nil
	}
	m.masterAdverInt = m.cfg.AdvertInt
	m.eff = m.effectivePriority()
	m.master, m.masterPrio, m.preemptAt = netip.Addr{}, 0, time.Time{}
	held, failed := m.faults()
	if held || len(m.heldBy) > 0 {
		why := "tracked object down at start"
		if !failed && len(m.heldBy) > 0 {
			why = m.peerWhy(m.heldBy[0], "in FAULT at start")
		}
		m.transition(Fault, now, why)
		m.timer = time.Time{}
		// keepalived notifies every member of a group held in FAULT by a
		// failed member at start (vrrp_complete_init). It keeps quiet
		// when the member is only waiting for scripts' first results,
		// which a peer cannot tell from SyncFault.
		m.faultNotified = failed || len(m.heldBy) > 0
		if m.faultNotified {
			return []Action{m.notify()}
		}
		return nil
	}
	if m.cfg.InitialMaster && m.owner() {
		// keepalived enters BACKUP with a 1 µs master down timer
		// ("the simplest way to become master"); going straight to
		// MASTER gives the same actions without the extra wake-up.
		return m.gotoMaster(now, "address owner at start")
	}
	m.transition(Backup, now, "start")
	// `state MASTER` below 255 waits the full Master_Down_Interval too,
	// as RFC 5798 6.4.1 says: vrrp_init_state's shorter wait
	// (master_adver_int + VRRP_TIMER_SKEW_MIN) needs new_state BACKUP,
	// which is the sync group's state, and only a reload finds a group
	// there; a lone instance's new_state is its wantstate, MASTER.
	// keepalived 2.2.7 measured: MASTER 3.44 s after a lone start at
	// priority 150, advert_int 1.
	m.timer = now.Add(m.masterDown())
	return []Action{m.notify()}
}

// gotoMaster follows vrrp_state_goto_master, vrrp_state_master_tx and
// vrrp_state_become_master. The addresses go on before the advert (keepalived
// sends it first): a failover is done when the VIP is here, and the sendmsg
// before it only delays that; the old master still hears the advert before
// our gratuitous ARPs claim the VIPs, which is what the order is for.
func (m *Machine) gotoMaster(now time.Time, why string) []Action {
	m.transition(Master, now, why)
	m.master, m.masterPrio = m.cfg.PrimaryIP, m.eff
	m.masterAdverInt = m.cfg.AdvertInt
	m.timer = now.Add(m.cfg.AdvertInt)
	m.clearMasterTimers()
	// keepalived git head's schedule (vrrp_state_become_master): the
	// second batch after garp_master_delay, the refreshes from then on.
	// 2.2.7 checked the refresh only at advert ticks, from the transition.
	if m.cfg.GARPDelay > 0 {
		m.garpAt = now.Add(m.cfg.GARPDelay)
	}
	if m.cfg.GARPRefresh > 0 {
		m.refreshAt = now.Add(m.cfg.GARPDelay + m.cfg.GARPRefresh)
	}
	return []Action{
		AddVIPs{},
		SendAdvert{Priority: m.eff},
		SendGARP{Count: m.cfg.GARPRepeat, Why: GARPBecomeMaster},
		m.notify(),
	}
}

// leaveMaster follows vrrp_state_leave_master. Going to FAULT tells the
// backups with priority 0 so they take over after Skew_Time; stepping down
// to a better master needs no such advert, the better master is there.
func (m *Machine) leaveMaster(to State, now time.Time, why string) []Action {
	var acts []Action
	if to == Fault {
		// keepalived sends this twice (leave_master, then
		// restore_interface with advF); one is enough.
		acts = append(acts, SendAdvert{Priority: prioStop})
	}
	acts = append(acts, RemoveVIPs{})
	m.clearMasterTimers()
	m.transition(to, now, why)
	if to == Backup {
		m.preemptAt = time.Time{}
		m.timer = now.Add(m.masterDown())
	} else {
		m.timer = time.Time{}
		m.faultNotified = true
	}
	return append(acts, m.notify())
}

// stop follows restore_vrrp_interfaces and notify_shutdown.
func (m *Machine) stop(now time.Time) []Action {
	if m.state == Stopped {
		return nil
	}
	var acts []Action
	if m.state == Master {
		acts = append(acts, SendAdvert{Priority: prioStop}, RemoveVIPs{})
	}
	m.transition(Stopped, now, "stopped")
	m.timer = time.Time{}
	m.clearMasterTimers()
	return append(acts, m.notify())
}

func due(t, now time.Time) bool { return !t.IsZero() && !now.Before(t) }

// fire follows vrrp_dispatcher_read_timeout and the gratuitous ARP threads
// of vrrp_scheduler.c.
func (m *Machine) fire(now time.Time) []Action {
	switch m.state {
	case Backup:
		if due(m.timer, now) {
			return m.gotoMaster(now, "master down timer expired")
		}
	case Master:
		var acts []Action
		if due(m.timer, now) {
			acts = append(acts, SendAdvert{Priority: m.eff})
			m.timer = now.Add(m.cfg.AdvertInt)
		}
		if due(m.garpAt, now) {
			acts = append(acts, SendGARP{Count: m.cfg.GARPRepeat, Why: GARPMasterDelay})
			m.garpAt = time.Time{}
		}
		if due(m.lowerGARPAt, now) {
			acts = append(acts, SendGARP{Count: m.cfg.GARPLowerPrioRepeat, Why: GARPLowerPrioDelayed})
			m.lowerGARPAt = time.Time{}
		}
		if due(m.refreshAt, now) {
			acts = append(acts, SendGARP{Count: m.cfg.GARPRefreshRepeat, Why: GARPRefresh})
			m.refreshAt = now.Add(m.cfg.GARPRefresh)
		}
		return acts
	}
	return nil
}

// advert follows vrrp_dispatcher_read: vrrp_check_packet's interval and
// VIP checks, then vrrp_state_backup or vrrp_state_master_rx.
func (m *Machine) advert(a AdvertReceived, now time.Time) []Action {
	if m.state != Backup && m.state != Master {
		// vrrp_dispatcher_read drops adverts in FAULT and INIT
		// without a word.
		return nil
	}
	var acts []Action
	if a.Interval != m.cfg.AdvertInt {
		if m.cfg.Version == 2 {
			// RFC 3768 MUST; keepalived: "to prevent concurrent VRID
			// running => multiple master in 1 VRID".
			return []Action{BadAdvert{From: a.From, Reason: BadInterval, Dropped: true}}
		}
		// RFC 5798 only says SHOULD; keepalived logs and goes on, and
		// a backup then times the master with its interval.
		acts = append(acts, BadAdvert{From: a.From, Reason: BadInterval})
	}
	if a.VIPMismatch {
		// keepalived up to 2.3.2 drops it (VRRP_PACKET_KO); 2.3.3 and
		// later log, count and process it. xlbd follows 2.2.7: an
		// advert for other addresses is not our virtual router.
		return append(acts, BadAdvert{From: a.From, Reason: BadVIPList, Dropped: true})
	}
	// keepalived's dispatcher re-arms a master's advert timer after any
	// advert it reads, even a dropped one (vrrp_dispatcher_read calls
	// vrrp_init_instance_sands), so a stream of bad adverts can keep it
	// silent and its backups flapping. xlbd re-arms only when it sends.
	if m.state == Backup {
		return append(acts, m.backupRx(a, now)...)
	}
	return append(acts, m.masterRx(a, now)...)
}

// learnInterval sets Master_Adver_Interval from a v3 advert we accept
// (RFC 5798 6.4.2; update_master_adver_int).
func (m *Machine) learnInterval(a AdvertReceived) {
	if m.cfg.Version == 3 && a.Interval > 0 {
		m.masterAdverInt = a.Interval
	}
}

// backupRx follows vrrp_state_backup. Note that a backup applies no
// address tie-break: equal priority counts as a master to follow
// (RFC 5798 6.4.2).
func (m *Machine) backupRx(a AdvertReceived, now time.Time) []Action {
	preemptHeld := m.cfg.PreemptDelay > 0 && (m.preemptAt.IsZero() || m.preemptAt.After(now))
	switch {
	case a.Priority == prioStop:
		m.timer = now.Add(m.skew())
	case m.cfg.NoPreempt || a.Priority >= m.eff || preemptHeld:
		m.learnInterval(a)
		m.timer = now.Add(m.masterDown())
		m.master, m.masterPrio = a.From, a.Priority
		if m.cfg.PreemptDelay > 0 {
			if a.Priority >= m.eff {
				m.preemptAt = time.Time{}
			} else if m.preemptAt.IsZero() {
				m.preemptAt = now.Add(m.cfg.PreemptDelay)
			}
		}
	default:
		// A lower priority master and we may preempt: leave the down
		// timer running so it expires and we take over.
		m.master, m.masterPrio = a.From, a.Priority
	}
	return nil
}

// masterRx follows vrrp_state_master_rx.
func (m *Machine) masterRx(a AdvertReceived, now time.Time) []Action {
	cmp := a.From.Compare(m.cfg.PrimaryIP)
	switch {
	case a.Priority == prioStop:
		// Another master is leaving: assert ourselves at once so its
		// backups do not start an election.
		m.timer = now.Add(m.cfg.AdvertInt)
		return []Action{SendAdvert{Priority: m.eff}}
	case a.Priority < m.eff || (a.Priority == m.eff && cmp < 0):
		// A lower master exists, so there was a split brain or we were
		// not scheduled: advertise now so it steps down within one
		// interval, and re-announce the VIPs' MAC, which its gratuitous
		// ARPs pointed elsewhere (issue 13).
		var acts []Action
		if !m.cfg.LowerPrioNoAdvert {
			acts = append(acts, SendAdvert{Priority: m.eff})
			m.timer = now.Add(m.cfg.AdvertInt)
		}
		if m.cfg.GARPLowerPrioRepeat > 0 {
			acts = append(acts, SendGARP{Count: m.cfg.GARPLowerPrioRepeat, Why: GARPLowerPrio})
			if m.cfg.GARPLowerPrioDelay > 0 {
				m.lowerGARPAt = now.Add(m.cfg.GARPLowerPrioDelay)
			}
		}
		return acts
	case a.Priority > m.eff || (a.Priority == m.eff && cmp > 0):
		m.learnInterval(a)
		m.master, m.masterPrio = a.From, a.Priority
		why := fmt.Sprintf("higher priority %d advert from %s", a.Priority, a.From)
		if a.Priority == m.eff {
			why = fmt.Sprintf("equal priority advert from higher address %s", a.From)
		}
		return m.leaveMaster(Backup, now, why)
	}
	// Our own priority from our own address: a looped back advert or a
	// duplicate address; keepalived only logs it.
	return nil
}

// trackChanged follows down_instance, try_up_instance and
// vrrp_set_effective_priority.
func (m *Machine) trackChanged(ev TrackChanged, now time.Time) []Action {
	i := -1
	for j, t := range m.cfg.Tracks {
		if t.Kind == ev.Kind && t.Name == ev.Name {
			i = j
			break
		}
	}
	if i < 0 {
		return nil
	}
	ts := trackDown
	if ev.Up {
		ts = trackUp
	}
	if m.track[i] == ts {
		return nil
	}
	m.track[i] = ts

	oldSkew := m.skew()
	m.eff = m.effectivePriority()
	if m.state == Backup && !m.timer.IsZero() {
		// Priority only enters the down timer through Skew_Time.
		// keepalived shifts sands by the change of the whole
		// ms_down_timer, which after a priority 0 advert or an ignored
		// one is not Master_Down_Interval; shifting by the skew
		// difference is what that code means.
		m.timer = m.timer.Add(m.skew() - oldSkew)
	}

	held, failed := m.faults()
	what := fmt.Sprintf("%s %s", m.cfg.Tracks[i].Kind, ev.Name)
	switch {
	case m.state == Init || m.state == Stopped:
		return nil
	case failed && m.state == Master:
		return m.leaveMaster(Fault, now, what+" failed")
	case failed && m.state == Backup:
		m.transition(Fault, now, what+" failed")
		m.timer = time.Time{}
		m.faultNotified = true
		return []Action{m.notify()}
	case failed && m.state == Fault && !m.faultNotified:
		// Held silently for scripts' first results, and this is the
		// first real failure: keepalived notifies FAULT now.
		m.faultNotified = true
		m.why = what + " failed"
		return []Action{m.notify()}
	case !held && m.state == Fault && len(m.heldBy) == 0:
		return m.leaveFault(now, what+" recovered")
	}
	return nil
}

// leaveFault follows try_up_instance and vrrp_state_leave_fault.
func (m *Machine) leaveFault(now time.Time, why string) []Action {
	m.faultNotified = false
	m.masterAdverInt = m.cfg.AdvertInt
	if m.cfg.InitialMaster && m.owner() && m.cfg.SyncGroup == "" {
		return m.gotoMaster(now, why+", address owner")
	}
	m.transition(Backup, now, why)
	m.preemptAt = time.Time{}
	m.timer = now.Add(m.masterDown())
	return []Action{m.notify()}
}

// peerWhy names the sync group peer behind a transition.
func (m *Machine) peerWhy(member, what string) string {
	if m.cfg.SyncGroup == "" {
		return fmt.Sprintf("sync group peer %s %s", member, what)
	}
	return fmt.Sprintf("sync group %s peer %s %s", m.cfg.SyncGroup, member, what)
}

// syncMaster follows vrrp_sync_master's vrrp_state_goto_master of each
// member, which vrrp_sync_can_goto_master lets through only for a member
// that wants MASTER; a member in FAULT wants FAULT.
func (m *Machine) syncMaster(ev SyncMaster, now time.Time) []Action {
	if m.state != Backup || !due(m.timer, now) || ev.Member == m.cfg.Name {
		return nil
	}
	return m.gotoMaster(now, m.peerWhy(ev.Member, "became MASTER"))
}

// syncBackup follows vrrp_sync_backup. Members in FAULT are left alone:
// keepalived would pull them to BACKUP too, but a member can only leave
// MASTER for BACKUP while no member is in FAULT, so there are none.
func (m *Machine) syncBackup(ev SyncBackup, now time.Time) []Action {
	if m.state != Master || ev.Member == m.cfg.Name {
		return nil
	}
	return m.leaveMaster(Backup, now, m.peerWhy(ev.Member, "left MASTER for BACKUP"))
}

// syncFault follows vrrp_sync_fault and, for a release, try_up_instance's
// count of the group's faulty members.
func (m *Machine) syncFault(ev SyncFault, now time.Time) []Action {
	if ev.Member == m.cfg.Name {
		// Holding itself, it could never leave FAULT.
		return nil
	}
	i := slices.Index(m.heldBy, ev.Member)
	if ev.Held == (i >= 0) {
		return nil
	}
	if !ev.Held {
		m.heldBy = slices.Delete(m.heldBy, i, i+1)
		if held, _ := m.faults(); m.state != Fault || held || len(m.heldBy) > 0 {
			return nil
		}
		return m.leaveFault(now, m.peerWhy(ev.Member, "left FAULT"))
	}
	m.heldBy = append(m.heldBy, ev.Member)
	why := m.peerWhy(ev.Member, "in FAULT")
	switch m.state {
	case Master:
		return m.leaveMaster(Fault, now, why)
	case Backup:
		m.transition(Fault, now, why)
		m.timer = time.Time{}
		m.faultNotified = true
		return []Action{m.notify()}
	}
	// Already in FAULT, where keepalived's vrrp_sync_fault leaves a member
	// be; or not started, and Start will see heldBy.
	return nil
}
