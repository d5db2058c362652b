package xdp

import (
	"flag"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/sched"
)

// TestDifferential replays random event sequences -- new connections,
// further packets of them (ACK, FIN, RST, SYN reusing a connection, no
// flag), UDP datagrams, NAT replies, weight (0: quiesce) and threshold
// changes, reals added and removed, several changes in one Apply, a daemon
// restart (new Tables adopting the maps), time passing from milliseconds to
// a day -- through the BPF program and through pkg/sched (the
// specification), and checks after every event that both chose the same
// real for every packet (or both none), that their connection entries agree
// (TCP state, expiry, real), that both keep the reals in the same IPVS list
// order, and that every real has the same active, inactive and persistent
// counts and overload flag. A NAT reply sent by a real that does not serve
// the connection (any more) must be left alone, as ip_vs_out leaves it. It
// covers every scheduler the data plane runs (with sh's and mh's flags),
// each without and with persistence (timeout and granularity), over one or
// two NAT, DR or TUN services, TCP or UDP.
//
// A sequence that diverges is shrunk (events dropped while the same check
// still fails) and reported with its seed and event log; -diff.seq replays
// one sequence, -diff.log prints the logs of passing sequences too.
//
// Known, intended differences, kept out of the comparison:
//
//  1. A packet of a connection whose real was removed: the model keeps the
//     connection (Dest -1, IPVS without expire_nodest_conn), the data plane
//     retires it and reschedules a SYN or passes anything else. Such packets
//     are not sent (checked against the model's connection at that instant);
//     once the model's entry has expired the client is compared again.
//  2. A real removed and added again gets a new identity in BPF (its
//     templates and lblc/lblcr entries are not revived); the generator
//     never re-adds a real within a sequence.
//  3. The BPF lblcr set holds at most 8 reals (IPVS's has no bound): an
//     lblcr service here never has more than 8 reals in a sequence.
//  4. With expire_quiescent_template, a template invalidated because its
//     real is quiesced is gone at once in BPF, with its count in the real's
//     persistent connections; IPVS unhashes it but counts it until its
//     timer ends it. Only the templates still in use (hashed) are compared
//     then. The count is reported, never used to schedule.
func TestDifferential(t *testing.T) {
	covered := map[string]bool{}
	for _, v := range diffVariants {
		covered[v.sched] = true
	}
	for _, s := range Schedulers() {
		if !covered[s] {
			t.Errorf("scheduler %q of the data plane has no differential variant", s)
		}
	}
	for _, v := range diffVariants {
		t.Run(v.name(), func(t *testing.T) {
			t.Parallel()
			dl := newDiffLab(t)
			for _, persist := range []bool{false, true} {
				t.Run(fmt.Sprintf("persist=%v", persist), func(t *testing.T) {
					dl.runVariant(t, v, persist)
				})
			}
		})
	}
}

var (
	diffSeqs   = flag.Int("diff.seqs", 0, "differential test: sequences per scheduler variant and persistence mode (0: default)")
	diffEvents = flag.Int("diff.events", 50, "differential test: events per sequence")
	diffSeq    = flag.Int("diff.seq", -1, "differential test: replay only this sequence index")
	diffSeed   = flag.Uint64("diff.seed", 0, "differential test: base seed (0: fixed per sub-test)")
	diffLog    = flag.Bool("diff.log", false, "differential test: print the event log of every sequence")
	diffSkip   = flag.String("diff.skip", "", "differential test: comma-separated event kinds not to generate "+
		"(new, packet, reply, weight, thresh, add, remove, batch, restart), to isolate a divergence")
)

// diffDefaultSeqs sequences of diffEvents events per variant and mode
// keep the whole test around a minute on two cores; -short runs a quarter.
const diffDefaultSeqs = 64

type diffVariant struct {
	sched string
	flags []string
}

func (v diffVariant) name() string {
	if len(v.flags) == 0 {
		return v.sched
	}
	return v.sched + "+" + strings.Join(v.flags, "+")
}

var diffVariants = []diffVariant{
	{sched: "rr"}, {sched: "wrr"}, {sched: "lc"}, {sched: "wlc"}, {sched: "sed"}, {sched: "nq"},
	{sched: "fo"}, {sched: "ovf"}, {sched: "twos"},
	{sched: "sh"}, {sched: "sh", flags: []string{"sh-fallback"}}, {sched: "sh", flags: []string{"sh-port"}},
	{sched: "sh", flags: []string{"sh-fallback", "sh-port"}},
	{sched: "dh"},
	{sched: "mh"}, {sched: "mh", flags: []string{"mh-fallback"}}, {sched: "mh", flags: []string{"mh-port"}},
	{sched: "mh", flags: []string{"mh-fallback", "mh-port"}},
	{sched: "lblc"}, {sched: "lblcr"},
}

// --- events -------------------------------------------------------------

type diffEvKind uint8

const (
	evTick    diffEvKind = iota // time passes
	evClient                    // a packet from a client to a VIP
	evReply                     // a NAT reply from the real to the client
	evWeight                    // a real's weight changes (0: quiesce)
	evThresh                    // a real's thresholds change
	evAdd                       // reals are added
	evRemove                    // a real is removed
	evBatch                     // several of the above in one Apply
	evRestart                   // the daemon restarts: new Tables adopting the maps, same State applied
)

// diffEvent is one step of a sequence. Events are data, valid in any
// state: replay skips what does not apply (a weight change of a real that is
// not configured, ...), so that a failing sequence can be shrunk by dropping
// events.
type diffEvent struct {
	at     time.Duration // since the start of the sequence
	kind   diffEvKind
	svc    int
	client netip.AddrPort
	flags  sched.TCPFlags
	rand   [2]uint32 // twos' draws, never both 0 (that selects real random numbers)
	addr   netip.Addr
	weight int
	uth    int
	lth    int
	add    []dataplane.Real
	sub    []diffEvent    // evBatch
	from   netip.AddrPort // evReply: sent by this real rather than the connection's
	prev   bool           // evReply: sent by the real that served the client's previous connection, if any
	order  uint64         // shuffles the configuration order of the reals on Apply
}

type diffSeqSpec struct {
	timeouts dataplane.Timeouts
	tuning   dataplane.Tuning
	svcs     []dataplane.Service // initial configuration, reals in config order
	events   []diffEvent
}

// --- generation -----------------------------------------------------------

type genSvc struct {
	cur     []dataplane.Real
	pool    []netip.Addr // never used yet in this sequence
	clients []netip.AddrPort
	rport   uint16
}

// pickClient prefers the most recently used clients, so that connections
// go through more of their life (and replies follow requests).
func (g *genSvc) pickClient(r *rand.Rand) netip.AddrPort {
	n := len(g.clients)
	if r.IntN(2) == 0 {
		return g.clients[n-1-r.IntN(min(n, 3))]
	}
	return g.clients[r.IntN(n)]
}

func randWeight(r *rand.Rand) int {
	switch x := r.IntN(20); {
	case x < 3:
		return 0
	case x < 5:
		if r.IntN(8) == 0 {
			return []int{100, 255, 1000}[r.IntN(3)] // mh shifts weights down
		}
		return []int{5, 7, 10}[r.IntN(3)]
	default:
		return 1 + r.IntN(4)
	}
}

func randThresholds(r *rand.Rand) (u, l int) {
	if r.IntN(3) != 0 {
		return 0, 0
	}
	u = 1 + r.IntN(6)
	if r.IntN(2) == 0 {
		l = r.IntN(u)
	}
	return u, l
}

// diffMix is how often each kind of event is generated.
var diffMix = []struct {
	name   string
	weight int
}{
	// A restart is rare: reading the maps back takes ~100 ms.
	{"new", 150}, {"packet", 130}, {"reply", 80}, {"weight", 30}, {"thresh", 15}, {"add", 25}, {"remove", 16},
	{"batch", 16}, {"restart", 1}, {"tick", 77},
}

func pickKind(r *rand.Rand) string {
	total := 0
	for _, k := range diffMix {
		total += k.weight
	}
	x := r.IntN(total)
	for _, k := range diffMix {
		if x < k.weight {
			if slices.Contains(strings.Split(*diffSkip, ","), k.name) {
				return "tick"
			}
			return k.name
		}
		x -= k.weight
	}
	return "tick"
}

func genSequence(r *rand.Rand, v diffVariant, persist bool, nEvents int) *diffSeqSpec {
	spec := &diffSeqSpec{}
	// Timeouts short enough that established connections expire within a
	// sequence now and then, or IPVS's defaults.
	spec.timeouts = dataplane.Timeouts{
		TCP:    []time.Duration{0, 0, 60 * time.Second, 5 * time.Second}[r.IntN(4)],
		TCPFin: []time.Duration{0, 10 * time.Second}[r.IntN(2)],
		UDP:    []time.Duration{0, 20 * time.Second}[r.IntN(2)],
	}
	nsvc := 1 + r.IntN(2)
	gs := make([]*genSvc, 0, nsvc)
	seen := map[svcIdent]bool{}
	for len(gs) < nsvc {
		kind := []dataplane.Kind{dataplane.NAT, dataplane.DR, dataplane.TUN}[r.IntN(3)]
		proto := uint8(6)
		port := []uint16{80, 443, 8443}[r.IntN(3)]
		if r.IntN(4) == 0 {
			proto, port = 17, 53
		}
		// Port 0: every port, which IPVS schedules only with persistence.
		if (persist && r.IntN(4) == 0) || r.IntN(20) == 0 {
			port = 0
		}
		vip := netip.AddrFrom4([4]byte{10, 50, 1, byte(100 + r.IntN(100))})
		if seen[svcIdent{vip, port, proto}] {
			continue
		}
		seen[svcIdent{vip, port, proto}] = true
		s := dataplane.Service{VIP: vip, Port: port, Protocol: proto, Sched: v.sched, SchedFlags: v.flags, Kind: kind}
		if persist {
			s.PersistTimeout = []time.Duration{3 * time.Second, 30 * time.Second, 120 * time.Second,
				360 * time.Second, 900 * time.Second}[r.IntN(5)]
			s.PersistPrefix = []int{0, 32, 24, 24, 16}[r.IntN(5)]
		}
		net := byte(1)
		if kind == dataplane.NAT {
			net = 2
		}
		g := &genSvc{rport: uint16(8080 + len(gs))}
		for h := diffFirstReal; h <= diffLastReal; h++ {
			g.pool = append(g.pool, netip.AddrFrom4([4]byte{10, 50, net, byte(h)}))
		}
		r.Shuffle(len(g.pool), func(a, b int) { g.pool[a], g.pool[b] = g.pool[b], g.pool[a] })
		g.pool = g.pool[:12]
		if v.sched == "lblcr" {
			g.pool = g.pool[:8] // known deviation 3
		}
		for n := 1 + r.IntN(4); n > 0; n-- {
			rl := g.newReal(r)
			g.cur = append(g.cur, rl)
			s.Reals = append(s.Reals, rl)
		}
		spec.svcs = append(spec.svcs, s)
		gs = append(gs, g)
	}
	// A few client addresses in a few /24s, so that they repeat and the
	// persistence granularity matters.
	var addrs []netip.Addr
	for n := 2 + r.IntN(7); len(addrs) < n; {
		a := netip.AddrFrom4([4]byte{10, 60, byte(1 + r.IntN(3)), byte(1 + r.IntN(4))})
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	nextPort := uint16(20000 + r.IntN(20000))

	steps := []time.Duration{2 * time.Second, 3 * time.Second, 10 * time.Second, 20 * time.Second,
		30 * time.Second, 60 * time.Second, 120 * time.Second, 300 * time.Second, 900 * time.Second}
	var at time.Duration
	for len(spec.events) < nEvents {
		switch x := r.IntN(100); {
		case x < 65:
		case x < 85: // 1 ms .. 30 s, log-uniform
			at += time.Duration(float64(time.Millisecond) * math.Pow(30000, r.Float64()))
		case x < 95: // exactly a timeout: entries armed by the last packet expire now
			at += steps[r.IntN(len(steps))]
		case x < 99: // 30 s .. 30 min
			at += time.Duration(float64(30*time.Second) * math.Pow(60, r.Float64()))
		default: // past lblc's expiration
			at += 25 * time.Hour
		}
		ev := diffEvent{at: at, svc: r.IntN(len(gs)), kind: evTick, order: r.Uint64()}
		s, g := spec.svcs[ev.svc], gs[ev.svc]
		ev.rand = [2]uint32{r.Uint32(), r.Uint32()}
		if ev.rand == [2]uint32{} {
			ev.rand[0] = 1
		}
		kind := pickKind(r)
		if (kind == "packet" || kind == "reply") && len(g.clients) == 0 {
			kind = "new"
		}
		switch kind {
		case "new":
			ev.kind = evClient
			ev.client = netip.AddrPortFrom(addrs[r.IntN(len(addrs))], nextPort)
			nextPort++
			g.clients = append(g.clients, ev.client)
			if s.Protocol == 6 {
				ev.flags = sched.SYN
				switch r.IntN(10) {
				case 0:
					ev.flags = sched.ACK // no connection: passed
				case 1:
					ev.flags = sched.SYN | sched.ACK
				}
			}
		case "packet":
			ev.kind = evClient
			ev.client = g.pickClient(r)
			g.touch(ev.client)
			if s.Protocol == 6 {
				ev.flags = []sched.TCPFlags{sched.ACK, sched.ACK, sched.ACK, sched.ACK, sched.FIN | sched.ACK,
					sched.FIN | sched.ACK, sched.FIN, sched.RST, sched.RST | sched.ACK, sched.SYN, sched.SYN,
					sched.SYN | sched.ACK, 0, sched.SYN | sched.FIN, sched.SYN | sched.RST}[r.IntN(15)]
			}
		case "reply":
			if s.Kind != dataplane.NAT {
				break
			}
			ev.kind = evReply
			ev.client = g.pickClient(r)
			switch x := r.IntN(10); {
			case x < 2 && len(g.cur) > 0:
				ev.from = netip.AddrPortFrom(g.cur[r.IntN(len(g.cur))].Addr, g.rport)
			case x < 5:
				ev.prev = true
			}
			if s.Protocol == 6 {
				ev.flags = []sched.TCPFlags{sched.SYN | sched.ACK, sched.ACK, sched.ACK, sched.FIN | sched.ACK,
					sched.FIN, sched.RST}[r.IntN(6)]
			}
		case "weight", "thresh", "add", "remove":
			genPoolChange(r, kind, &ev, g, nil)
		case "batch":
			// Several changes in one Apply, each to a different real, and
			// none to a real added by the batch itself: the data plane only
			// sees the end result, the model every step.
			touched := map[netip.Addr]bool{}
			for n := 2 + r.IntN(3); n > 0; n-- {
				sub := diffEvent{at: at, svc: r.IntN(len(gs)), kind: evTick, order: r.Uint64()}
				k := []string{"weight", "weight", "thresh", "add", "remove"}[r.IntN(5)]
				if slices.Contains(strings.Split(*diffSkip, ","), k) {
					continue
				}
				genPoolChange(r, k, &sub, gs[sub.svc], touched)
				if sub.kind != evTick {
					ev.sub = append(ev.sub, sub)
				}
			}
			if len(ev.sub) > 0 {
				ev.kind = evBatch
			}
		case "restart":
			ev.kind = evRestart
		}
		spec.events = append(spec.events, ev)
	}
	// IPVS's sysctls, drawn last so that the rest of a seed's sequence
	// stays what it was before they were.
	spec.tuning = dataplane.Tuning{ExpireQuiescentTemplate: r.IntN(4) == 0, NoConnReuse: r.IntN(4) == 0,
		SloppyTCP: r.IntN(4) == 0}
	return spec
}

// touch makes c the most recently used client.
func (g *genSvc) touch(c netip.AddrPort) {
	if i := slices.Index(g.clients, c); i >= 0 {
		g.clients = append(slices.Delete(g.clients, i, i+1), c)
	}
}

func (g *genSvc) newReal(r *rand.Rand) dataplane.Real {
	u, l := randThresholds(r)
	rl := dataplane.Real{Addr: g.pool[0], Port: g.rport, Weight: randWeight(r), UThreshold: u, LThreshold: l}
	g.pool = g.pool[1:]
	return rl
}

// genPoolChange fills ev with a change of the pool of g, leaving it a tick
// when there is nothing to change; reals in touched (if not nil) are left
// alone and the changed ones are added to it.
func genPoolChange(r *rand.Rand, kind string, ev *diffEvent, g *genSvc, touched map[netip.Addr]bool) {
	var cand []int
	for i, rl := range g.cur {
		if touched == nil || !touched[rl.Addr] {
			cand = append(cand, i)
		}
	}
	mark := func(a netip.Addr) {
		if touched != nil {
			touched[a] = true
		}
	}
	switch kind {
	case "weight":
		if len(cand) == 0 {
			return
		}
		i := cand[r.IntN(len(cand))]
		w := randWeight(r)
		for w == g.cur[i].Weight {
			w = randWeight(r)
		}
		g.cur[i].Weight = w
		ev.kind, ev.addr, ev.weight = evWeight, g.cur[i].Addr, w
		mark(ev.addr)
	case "thresh":
		if len(cand) == 0 {
			return
		}
		i := cand[r.IntN(len(cand))]
		u, l := randThresholds(r)
		for u == g.cur[i].UThreshold && l == g.cur[i].LThreshold {
			u, l = randThresholds(r)
		}
		g.cur[i].UThreshold, g.cur[i].LThreshold = u, l
		ev.kind, ev.addr, ev.uth, ev.lth = evThresh, g.cur[i].Addr, u, l
		mark(ev.addr)
	case "add":
		if len(g.pool) == 0 {
			return
		}
		n := 1
		if r.IntN(4) == 0 && len(g.pool) > 1 {
			n = 2
		}
		for ; n > 0; n-- {
			rl := g.newReal(r)
			g.cur = append(g.cur, rl)
			ev.add = append(ev.add, rl)
			mark(rl.Addr)
		}
		ev.kind = evAdd
	case "remove":
		if len(cand) == 0 {
			return
		}
		i := cand[r.IntN(len(cand))]
		ev.kind, ev.addr = evRemove, g.cur[i].Addr
		mark(ev.addr)
		g.cur = slices.Delete(g.cur, i, i+1)
	}
}

// --- replay ---------------------------------------------------------------

// diffLab is a lab reused by every sequence of a variant: each sequence
// starts from an empty configuration a day after the previous one ended, by
// when every connection, template and lblc entry has expired and gc has
// removed it; reals get fresh ids.
type diffLab struct {
	*lab
	next time.Duration
}

func newDiffLab(t *testing.T) *diffLab {
	l := newLabSized(t, 2048)
	l.diffPrepare(t)
	return &diffLab{lab: l, next: 1000 * time.Hour}
}

type diffFailure struct {
	step   int // index of the event, -1: the initial configuration
	what   string
	detail string
}

type diffStats struct {
	packets, forwarded, newConns, replies, skipped, poolChanges int
}

type diffRSvc struct {
	svc      dataplane.Service // as configured now
	model    *sched.Service
	gone     map[netip.Addr]bool // removed reals
	lastReal map[netip.AddrPort]netip.AddrPort
	// prevReal is the real of a client's connection before a SYN reused
	// it and it went to another real.
	prevReal map[netip.AddrPort]netip.AddrPort
}

type diffRun struct {
	t     *testing.T
	dl    *diffLab
	spec  *diffSeqSpec
	base  time.Duration
	clock time.Duration
	svcs  []*diffRSvc
	log   []string
	stats diffStats
	// inBatch is set while the changes of an evBatch are applied.
	inBatch bool
}

func (r *diffRun) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func modelConfig(s dataplane.Service, to dataplane.Timeouts) sched.Config {
	var flags sched.Flags
	for _, f := range s.SchedFlags {
		switch f {
		case "sh-fallback", "mh-fallback":
			flags |= sched.SHFallback
		case "sh-port", "mh-port":
			flags |= sched.SHPort
		}
	}
	kind := map[dataplane.Kind]sched.Kind{dataplane.NAT: sched.NAT, dataplane.DR: sched.DR, dataplane.TUN: sched.TUN}[s.Kind]
	timeouts := sched.DefaultTimeouts()
	timeouts.SetLVSTimeouts(to.TCP, to.TCPFin, to.UDP)
	return sched.Config{Sched: s.Sched, Flags: flags, Proto: sched.Proto(s.Protocol), Kind: kind,
		VIP: s.VIP, Port: s.Port, PersistTimeout: s.PersistTimeout, PersistPrefix: s.PersistPrefix,
		Timeouts: timeouts}
}

// modelDest is the model's view of a configured real. A DR or TUN real
// the data plane cannot resolve "takes no new flows" (Tables.Apply): to
// the model it has weight 0. (The lab resolves 10.50.1.0/24 and
// 10.50.2.0/24 only.)
func modelDest(s dataplane.Service, rl dataplane.Real) sched.Dest {
	w := rl.Weight
	if b := rl.Addr.As4(); s.Kind != dataplane.NAT && (b[0] != 10 || b[1] != 50 || (b[2] != 1 && b[2] != 2)) {
		w = 0
	}
	return sched.Dest{Addr: rl.Addr, Port: rl.Port, Weight: w, UpperThreshold: rl.UThreshold, LowerThreshold: rl.LThreshold}
}

func realString(rl dataplane.Real) string {
	s := fmt.Sprintf("%s w%d", rl.Addr, rl.Weight)
	if rl.UThreshold != 0 || rl.LThreshold != 0 {
		s += fmt.Sprintf(" u%d/l%d", rl.UThreshold, rl.LThreshold)
	}
	return s
}

func svcString(s dataplane.Service) string {
	p := ""
	if s.PersistTimeout > 0 {
		p = fmt.Sprintf(" persistence %v/%d", s.PersistTimeout, s.PersistPrefix)
	}
	var rs []string
	for _, rl := range s.Reals {
		rs = append(rs, realString(rl))
	}
	return fmt.Sprintf("%s %s %s%s%s reals(config order) [%s]", s.Key(), s.Kind, s.Sched,
		strings.Join(append([]string{""}, s.SchedFlags...), " "), p, strings.Join(rs, ", "))
}

func (r *diffRun) state() dataplane.State {
	st := dataplane.State{Timeouts: r.spec.timeouts, Tuning: r.spec.tuning}
	for _, s := range r.svcs {
		st.Services = append(st.Services, s.svc)
	}
	return st
}

func (r *diffRun) apply() *diffFailure {
	var err error
	r.dl.w.Do(func() { err = r.dl.tables.Apply(r.t.Context(), r.state()) })
	if err != nil {
		return &diffFailure{what: "apply", detail: err.Error()}
	}
	return nil
}

func (r *diffRun) setClock(now time.Duration) {
	if now != r.clock {
		r.dl.diffSetClock(r.t, now)
		r.clock = now
	}
}

// replay runs events from a clean lab and returns the first divergence.
func (dl *diffLab) replay(t *testing.T, spec *diffSeqSpec, events []diffEvent) (*diffFailure, *diffRun) {
	r := &diffRun{t: t, dl: dl, spec: spec}
	// Start clean: nothing configured, everything of the last sequence expired.
	r.dl.w.Do(func() {
		if err := dl.tables.Apply(t.Context(), dataplane.State{}); err != nil {
			t.Fatalf("clear: %v", err)
		}
	})
	r.base = dl.next
	r.setClock(r.base)
	defer func() { dl.next = r.clock + 25*time.Hour }()

	r.logf("timeouts tcp=%v tcpfin=%v udp=%v (0: default)", spec.timeouts.TCP, spec.timeouts.TCPFin, spec.timeouts.UDP)
	r.logf("sysctl expire_quiescent_template=%v conn_reuse_mode=%d sloppy_tcp=%v", spec.tuning.ExpireQuiescentTemplate,
		map[bool]int{false: 1, true: 0}[spec.tuning.NoConnReuse], spec.tuning.SloppyTCP)
	for i, s := range spec.svcs {
		cfg := modelConfig(s, spec.timeouts)
		cfg.Sysctl = sched.Sysctl{ExpireQuiescentTemplate: spec.tuning.ExpireQuiescentTemplate,
			NoConnReuse: spec.tuning.NoConnReuse, SloppyTCP: spec.tuning.SloppyTCP}
		m, err := sched.New(cfg)
		if err != nil {
			t.Fatalf("model: %v", err)
		}
		for _, rl := range s.Reals {
			if err := m.AddDest(r.base, modelDest(s, rl)); err != nil {
				t.Fatalf("model: %v", err)
			}
		}
		s.Reals = slices.Clone(s.Reals)
		r.svcs = append(r.svcs, &diffRSvc{svc: s, model: m, gone: map[netip.Addr]bool{},
			lastReal: map[netip.AddrPort]netip.AddrPort{}, prevReal: map[netip.AddrPort]netip.AddrPort{}})
		r.logf("svc%d %s", i, svcString(s))
	}
	if f := r.apply(); f != nil {
		f.step = -1
		return f, r
	}
	if f := r.check(); f != nil {
		f.step = -1
		return f, r
	}
	for i, ev := range events {
		now := r.base + ev.at
		r.setClock(now)
		f := r.step(ev)
		if f == nil {
			f = r.check()
		}
		if f != nil {
			f.step = i
			r.logf("    DIVERGENCE (%s): %s", f.what, f.detail)
			return f, r
		}
	}
	return nil, r
}

func (r *diffRun) step(ev diffEvent) *diffFailure {
	now := r.base + ev.at
	s := r.svcs[ev.svc]
	vip := vipOf(s.svc, ev.client)
	prefix := fmt.Sprintf("%-14v svc%d", ev.at, ev.svc)
	s.model.Expire(now)
	switch ev.kind {
	case evTick:
		r.logf("%s tick", prefix)
	case evClient:
		// Known deviation 1: the model still has the connection, with a
		// removed real.
		if ci, ok := s.model.Conn(ev.client, vip); ok && s.gone[ci.Real.Addr()] {
			r.stats.skipped++
			r.logf("%s client %s %s: skipped, its real %s was removed", prefix, ev.client,
				tcpFlagsString(ev.flags), ci.Real.Addr())
			return nil
		}
		if s.svc.Sched == "twos" {
			if err := r.dl.set.Rand.Set(ev.rand); err != nil {
				r.t.Fatalf("set rand: %v", err)
			}
		}
		v, ok := s.model.Packet(now, sched.Packet{Client: ev.client, VIP: vip, Flags: ev.flags, Rand: ev.rand})
		o := r.dl.diffClientPacket(r.t, s.svc.Kind, ev.client, vip, s.svc.Protocol, ev.flags)
		r.stats.packets++
		desc := fmt.Sprintf("%s client %s %s", prefix, ev.client, tcpFlagsString(ev.flags))
		if s.svc.Sched == "twos" {
			desc += fmt.Sprintf(" rand %d,%d", ev.rand[0], ev.rand[1])
		}
		model := "no connection"
		if ok {
			model = fmt.Sprintf("%s %s", v.Real.Addr(), v.State)
			if v.New {
				model += " (new)"
				r.stats.newConns++
			}
			if last, ok := s.lastReal[ev.client]; ok && last != v.Real {
				s.prevReal[ev.client] = last
			}
			s.lastReal[ev.client] = v.Real
		}
		bpf := verdictName[o.verdict]
		if o.fwd {
			bpf += " " + o.real.String()
			r.stats.forwarded++
		}
		r.logf("%s: model %s; bpf %s", desc, model, bpf)
		if ok && v.Dest < 0 {
			return &diffFailure{what: "model", detail: "the model forwards to a removed real"}
		}
		if ok != o.fwd {
			return &diffFailure{what: "forward", detail: fmt.Sprintf("model %s, bpf %s", model, bpf)}
		}
		if ok && v.Real.Addr() != o.real {
			return &diffFailure{what: "real", detail: fmt.Sprintf("model %s, bpf %s", model, bpf)}
		}
		return r.checkConn(s, ev.client, now)
	case evReply:
		ci, ok := s.model.Conn(ev.client, vip)
		if ok && s.gone[ci.Real.Addr()] {
			r.stats.skipped++
			r.logf("%s reply to %s %s: skipped, its real %s was removed", prefix, ev.client,
				tcpFlagsString(ev.flags), ci.Real.Addr())
			return nil
		}
		from := ev.from
		if ev.prev {
			from = s.prevReal[ev.client]
		}
		if ok && from.IsValid() && from != ci.Real {
			// A reply from a real that does not serve the connection (any
			// more): ip_vs_out looks connections up by the real's address
			// and port too, finds none and leaves the packet alone.
			o := r.dl.diffReplyPacket(r.t, from, ev.client, s.svc.Protocol, ev.flags)
			r.stats.replies++
			r.logf("%s stale reply %s -> %s %s (connection is on %s): bpf %s", prefix, from, ev.client,
				tcpFlagsString(ev.flags), ci.Real, verdictName[o.verdict])
			if o.fwd {
				return &diffFailure{what: "stale reply", detail: fmt.Sprintf(
					"bpf forwarded a reply from %s for a connection on %s", from, ci.Real)}
			}
			return r.checkConn(s, ev.client, now)
		}
		real := s.lastReal[ev.client]
		if ok {
			real = ci.Real
		}
		if !real.IsValid() {
			r.logf("%s reply to %s: skipped, no real ever served it", prefix, ev.client)
			return nil
		}
		v, mok := s.model.Packet(now, sched.Packet{Client: ev.client, VIP: vip, Flags: ev.flags, Reply: true})
		o := r.dl.diffReplyPacket(r.t, real, ev.client, s.svc.Protocol, ev.flags)
		r.stats.replies++
		model := "no connection"
		if mok {
			model = "forwarded, " + v.State.String()
		}
		r.logf("%s reply %s -> %s %s: model %s; bpf %s", prefix, real, ev.client, tcpFlagsString(ev.flags),
			model, verdictName[o.verdict])
		if mok != o.fwd {
			return &diffFailure{what: "reply", detail: fmt.Sprintf("model %s, bpf %s", model, verdictName[o.verdict])}
		}
		return r.checkConn(s, ev.client, now)
	case evWeight, evThresh, evAdd, evRemove:
		if r.poolChange(ev, now, prefix) {
			r.stats.poolChanges++
			return r.apply()
		}
	case evBatch:
		r.logf("%-14v batch:", ev.at)
		changed := false
		r.inBatch = true
		defer func() { r.inBatch = false }()
		for _, sub := range ev.sub {
			changed = r.poolChange(sub, now, fmt.Sprintf("%-14s svc%d", "", sub.svc)) || changed
		}
		if changed {
			r.stats.poolChanges++
			return r.apply()
		}
	case evRestart:
		// The daemon restarts: new Tables adopt what the maps hold, then
		// the same configuration is applied. Nothing may change for the
		// flows or the schedulers (IPVS's state lives in the kernel).
		r.logf("%s restart: new Tables adopt the maps, same State applied", prefix)
		var err error
		r.dl.w.Do(func() {
			r.dl.tables, err = NewTables(r.dl.set, fixedResolver{r.dl.lab}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		})
		if err != nil {
			return &diffFailure{what: "restart", detail: err.Error()}
		}
		return r.apply()
	}
	return nil
}

// poolChange applies a weight, threshold, add or remove event to the
// configuration and to the model (not yet to the data plane), and reports
// whether it changed anything. Events that do not apply any more (after
// shrinking) are skipped.
func (r *diffRun) poolChange(ev diffEvent, now time.Duration, prefix string) bool {
	s := r.svcs[ev.svc]
	find := func(a netip.Addr) int {
		return slices.IndexFunc(s.svc.Reals, func(x dataplane.Real) bool { return x.Addr == a })
	}
	switch ev.kind {
	case evWeight:
		i := find(ev.addr)
		if i < 0 || s.svc.Reals[i].Weight == ev.weight {
			r.logf("%s weight %s -> %d: skipped (not configured or unchanged)", prefix, ev.addr, ev.weight)
			return false
		}
		s.svc.Reals[i].Weight = ev.weight
		r.logf("%s weight %s -> %d", prefix, ev.addr, ev.weight)
		if err := s.model.SetWeight(now, netip.AddrPortFrom(ev.addr, s.svc.Reals[i].Port), modelDest(s.svc, s.svc.Reals[i]).Weight); err != nil {
			r.t.Fatalf("model: %v", err)
		}
	case evThresh:
		i := find(ev.addr)
		if i < 0 || (s.svc.Reals[i].UThreshold == ev.uth && s.svc.Reals[i].LThreshold == ev.lth) {
			r.logf("%s thresholds %s -> u%d/l%d: skipped (not configured or unchanged)", prefix, ev.addr, ev.uth, ev.lth)
			return false
		}
		rl := &s.svc.Reals[i]
		rl.UThreshold, rl.LThreshold = ev.uth, ev.lth
		r.logf("%s thresholds %s -> u%d/l%d", prefix, ev.addr, ev.uth, ev.lth)
		if err := s.model.UpdateDest(now, modelDest(s.svc, *rl)); err != nil {
			r.t.Fatalf("model: %v", err)
		}
	case evAdd:
		var add []dataplane.Real
		for _, rl := range ev.add {
			if s.gone[rl.Addr] || find(rl.Addr) >= 0 {
				continue // known deviation 3: never re-add
			}
			add = append(add, rl)
		}
		if len(add) == 0 {
			r.logf("%s add: skipped (already there or removed before)", prefix)
			return false
		}
		// The new reals keep their relative order among the others,
		// which are shuffled: Tables keeps the configured ones where they
		// were whatever their configuration order, and pushes the new ones
		// on the head of the list in configuration order, as the model's
		// AddDest one after the other.
		// In a batch the reals added by earlier changes of the batch must
		// stay in front of these (the model added them first), so the
		// others are not shuffled and these go after them.
		rnd := rand.New(rand.NewPCG(ev.order, 1))
		old := slices.Clone(s.svc.Reals)
		var merged []dataplane.Real
		if r.inBatch {
			merged, old = old, nil
		} else {
			rnd.Shuffle(len(old), func(a, b int) { old[a], old[b] = old[b], old[a] })
		}
		for _, rl := range add {
			k := rnd.IntN(len(old) + 1)
			merged = append(merged, old[:k]...)
			merged = append(merged, rl)
			old = old[k:]
		}
		merged = append(merged, old...)
		s.svc.Reals = merged
		var names []string
		for _, rl := range add {
			names = append(names, realString(rl))
			if err := s.model.AddDest(now, modelDest(s.svc, rl)); err != nil {
				r.t.Fatalf("model: %v", err)
			}
		}
		r.logf("%s add %s (config order now %s)", prefix, strings.Join(names, ", "), addrsOf(merged))
	case evRemove:
		i := find(ev.addr)
		if i < 0 {
			r.logf("%s remove %s: skipped (not configured)", prefix, ev.addr)
			return false
		}
		ap := netip.AddrPortFrom(ev.addr, s.svc.Reals[i].Port)
		s.svc.Reals = slices.Delete(s.svc.Reals, i, i+1)
		s.gone[ev.addr] = true
		r.logf("%s remove %s", prefix, ev.addr)
		if err := s.model.RemoveDest(now, ap); err != nil {
			r.t.Fatalf("model: %v", err)
		}
	}
	return true
}

func addrsOf(rs []dataplane.Real) string {
	var s []string
	for _, rl := range rs {
		s = append(s, rl.Addr.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

// vipOf is where a client sends its packets: a port-0 service gets them on
// several ports (none that another service of the sequence has), each
// client always on the same one.
func vipOf(s dataplane.Service, client netip.AddrPort) netip.AddrPort {
	if s.Port != 0 {
		return netip.AddrPortFrom(s.VIP, s.Port)
	}
	return netip.AddrPortFrom(s.VIP, []uint16{5000, 6000, 7000}[client.Port()%3])
}

// checkConn compares the connection entries of a client on both sides.
func (r *diffRun) checkConn(s *diffRSvc, client netip.AddrPort, now time.Duration) *diffFailure {
	vip := vipOf(s.svc, client)
	ci, mok := s.model.Conn(client, vip)
	cv, bok := r.dl.diffConn(client, vip, s.svc.Protocol)
	bLive := bok && cv.Dead == 0 && time.Duration(cv.Expires) > now
	if !mok {
		if bLive {
			return &diffFailure{what: "conn", detail: fmt.Sprintf("model has no connection for %s; bpf has one in state %s expiring in %v",
				client, sched.TCPState(cv.State), time.Duration(cv.Expires)-now)}
		}
		return nil
	}
	if !bLive {
		return &diffFailure{what: "conn", detail: fmt.Sprintf("model has a connection for %s (%s, expires in %v); bpf none",
			client, ci.State, ci.Expires-now)}
	}
	if s.svc.Protocol == 6 && sched.TCPState(cv.State) != ci.State {
		return &diffFailure{what: "conn", detail: fmt.Sprintf("%s: model state %s, bpf %s", client, ci.State, sched.TCPState(cv.State))}
	}
	if time.Duration(cv.Expires) != ci.Expires {
		return &diffFailure{what: "conn", detail: fmt.Sprintf("%s: model expires in %v, bpf in %v", client,
			ci.Expires-now, time.Duration(cv.Expires)-now)}
	}
	if id, ok := r.dl.tables.RealID(s.svc.VIP, s.svc.Port, s.svc.Protocol, ci.Real.Addr(), ci.Real.Port()); !ok || id != cv.RealId {
		return &diffFailure{what: "conn", detail: fmt.Sprintf("%s: model real %s (id %d), bpf real id %d", client, ci.Real, id, cv.RealId)}
	}
	return nil
}

// check compares, for every service, the list order and every real's
// counters.
func (r *diffRun) check() *diffFailure {
	if f := r.checkTrees(); f != nil {
		return f
	}
	for i, s := range r.svcs {
		s.model.Expire(r.clock)
		si := svcIdent{s.svc.VIP, s.svc.Port, s.svc.Protocol}
		r.dl.tables.mu.Lock()
		order := slices.Clone(r.dl.tables.order[si])
		r.dl.tables.mu.Unlock()
		dests := s.model.Dests()
		var mo, bo []string
		for _, d := range dests {
			mo = append(mo, d.Addr.String())
		}
		for _, ri := range order {
			bo = append(bo, ri.addr.String())
		}
		if !slices.Equal(mo, bo) {
			return &diffFailure{what: "order", detail: fmt.Sprintf("svc%d list order: model %v, tables %v", i, mo, bo)}
		}
		var mismatch []string
		var all []string
		for _, d := range dests {
			id, ok := r.dl.tables.RealID(s.svc.VIP, s.svc.Port, s.svc.Protocol, d.Addr, d.Port)
			if !ok {
				return &diffFailure{what: "counts", detail: fmt.Sprintf("svc%d: no id for real %s", i, d.Addr)}
			}
			ld, err := r.dl.set.RealLoad.Get(id)
			if err != nil {
				r.t.Fatalf("real load: %v", err)
			}
			mp := s.model.PersistConns(d.AddrPort())
			if r.spec.tuning.ExpireQuiescentTemplate { // known deviation 4
				mp = 0
				for _, tpl := range s.model.Templates() {
					if tpl.Real == d.AddrPort() {
						mp++
					}
				}
			}
			m := fmt.Sprintf("a%d i%d p%d%s", d.Active, d.Inactive, mp, ovl(d.Overloaded))
			b := fmt.Sprintf("a%d i%d p%d%s", ld.Active, ld.Inactive, ld.Persist, ovl(ld.Overloaded != 0))
			all = append(all, fmt.Sprintf("%s %s", d.Addr, m))
			if m != b {
				mismatch = append(mismatch, fmt.Sprintf("%s: model %s, bpf %s", d.Addr, m, b))
			}
		}
		if len(mismatch) > 0 {
			return &diffFailure{what: "counts", detail: fmt.Sprintf("svc%d %s", i, strings.Join(mismatch, "; "))}
		}
		if len(r.log) > 0 && len(all) > 0 {
			r.log[len(r.log)-1] += fmt.Sprintf("   | svc%d %s", i, strings.Join(all, ", "))
		}
	}
	return nil
}

// checkTrees compares every scheduler tree of the active generation, as
// the packets and gc have kept it up to date, with the same tree rebuilt
// from the counts: a difference is a missed or wrong update.
func (r *diffRun) checkTrees() *diffFailure {
	r.dl.tables.mu.Lock()
	gen := r.dl.tables.gen
	r.dl.tables.mu.Unlock()
	svcs, err := r.dl.set.Services.All()
	if err != nil {
		r.t.Fatalf("services: %v", err)
	}
	read := func() map[maps.SvcKey][]maps.TreeNode {
		out := map[maps.SvcKey][]maps.TreeNode{}
		for k, v := range svcs {
			if uint32(k.Gen) != gen || v.TreeOff == 0 {
				continue
			}
			base := gen*maps.TreeHalf + v.TreeOff
			meta, err := r.dl.set.Trees.Node(base)
			if err != nil {
				r.t.Fatalf("tree: %v", err)
			}
			for i := uint32(1); i < 2*meta.W; i++ {
				n, err := r.dl.set.Trees.Node(base + i)
				if err != nil {
					r.t.Fatalf("tree: %v", err)
				}
				out[k] = append(out[k], n)
			}
		}
		return out
	}
	kept := read()
	if _, err := r.dl.set.Trees.Build(gen); err != nil {
		r.t.Fatalf("build trees: %v", err)
	}
	built := read()
	for k, nodes := range kept {
		if d := cmp.Diff(built[k], nodes); d != "" {
			return &diffFailure{what: "tree", detail: fmt.Sprintf("%s:%d: tree kept up to date differs from one rebuilt (-rebuilt +kept):\n%s",
				maps.Addr(k.Vip), maps.Port(k.Port), d)}
		}
	}
	return nil
}

func ovl(b bool) string {
	if b {
		return " OVERLOADED"
	}
	return ""
}

// diffShrinkTime bounds the time spent shrinking one failing sequence.
const diffShrinkTime = 750 * time.Millisecond

// shrink drops events from a failing sequence while the same check still
// fails, and returns the shortest failing list found.
func (dl *diffLab) shrink(t *testing.T, spec *diffSeqSpec, f *diffFailure) []diffEvent {
	evs := slices.Clone(spec.events[:f.step+1])
	deadline := time.Now().Add(diffShrinkTime)
	n := 2
	for len(evs) >= 2 && time.Now().Before(deadline) {
		chunk := (len(evs) + n - 1) / n
		reduced := false
		for start := 0; start < len(evs) && time.Now().Before(deadline); start += chunk {
			cand := slices.Concat(evs[:start], evs[min(start+chunk, len(evs)):])
			if g, _ := dl.replay(t, spec, cand); g != nil && g.what == f.what {
				evs = cand[:g.step+1]
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if !reduced {
			if chunk == 1 {
				break
			}
			n = min(n*2, len(evs))
		}
	}
	return evs
}

func (dl *diffLab) runVariant(t *testing.T, v diffVariant, persist bool) {
	seqs := *diffSeqs
	if seqs == 0 {
		seqs = diffDefaultSeqs
		if testing.Short() {
			seqs /= 4
		}
	}
	seed := *diffSeed
	if seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(t.Name()))
		seed = h.Sum64()
	}
	var total diffStats
	failures := map[string]int{}
	var others []string
	shrunk := false
	for i := 0; i < seqs; i++ {
		if *diffSeq >= 0 && i != *diffSeq {
			continue
		}
		rnd := rand.New(rand.NewPCG(seed, uint64(i)))
		spec := genSequence(rnd, v, persist, *diffEvents)
		f, run := dl.replay(t, spec, spec.events)
		total.packets += run.stats.packets
		total.forwarded += run.stats.forwarded
		total.newConns += run.stats.newConns
		total.replies += run.stats.replies
		total.skipped += run.stats.skipped
		total.poolChanges += run.stats.poolChanges
		if f == nil {
			if *diffLog {
				t.Logf("sequence %d (seed %d,%d):\n%s", i, seed, i, strings.Join(run.log, "\n"))
			}
			continue
		}
		failures[f.what]++
		repro := fmt.Sprintf("go test ./pkg/dataplane/xdp -run '^%s$' -diff.seed=%d -diff.seq=%d -v", t.Name(), seed, i)
		if shrunk && *diffSeq < 0 {
			if len(others) < 10 {
				others = append(others, fmt.Sprintf("sequence %d, event %d (%s): %s", i, f.step, f.what, f.detail))
			}
			continue
		}
		shrunk = true
		msg := fmt.Sprintf("sequence %d (seed %d,%d) diverges at event %d (%s): %s\nreproduce: %s\n",
			i, seed, i, f.step, f.what, f.detail, repro)
		small := dl.shrink(t, spec, f)
		if g, srun := dl.replay(t, spec, small); g != nil {
			msg += fmt.Sprintf("shrunk to %d of %d events:\n%s\n", len(small), f.step+1, strings.Join(srun.log, "\n"))
		}
		msg += fmt.Sprintf("full log:\n%s", strings.Join(run.log, "\n"))
		t.Error(msg)
	}
	if len(others) > 0 {
		t.Errorf("more diverging sequences (-diff.seq=N to replay one):\n%s", strings.Join(others, "\n"))
	}
	t.Logf("%d sequences x %d events: %d client packets (%d forwarded, %d new connections), %d NAT replies, "+
		"%d pool changes, %d packets skipped (known deviation 1); diverging sequences by check: %v",
		seqs, *diffEvents, total.packets, total.forwarded, total.newConns, total.replies, total.poolChanges,
		total.skipped, failures)
}

// TestDifferentialRegressions replays, each in a fresh lab, the shortest
// event sequences found (by TestDifferential's shrinking, or by reading the
// code and then confirmed here) on which the data plane and the model
// disagree. Each case names the side that is wrong; it passes once the
// data plane (or the model) is fixed.
func TestDifferentialRegressions(t *testing.T) {
	for _, c := range diffRegressions(t) {
		t.Run(c.name, func(t *testing.T) {
			dl := newDiffLab(t)
			f, run := dl.replay(t, c.spec, c.spec.events)
			if f != nil {
				t.Errorf("%s\n%s: %s\nlog:\n%s", c.why, f.what, f.detail, strings.Join(run.log, "\n"))
			}
		})
	}
}

type diffRegression struct {
	name string
	why  string
	spec *diffSeqSpec
}

func diffRegressions(t *testing.T) []diffRegression {
	ip := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	real1 := func(host byte, w int) dataplane.Real {
		return dataplane.Real{Addr: netip.AddrFrom4([4]byte{10, 50, 1, host}), Port: 8080, Weight: w}
	}
	dr := func(sched string, rs ...dataplane.Real) dataplane.Service {
		return dataplane.Service{VIP: ip("10.50.1.150"), Port: 80, Protocol: 6, Sched: sched, Kind: dataplane.DR, Reals: rs}
	}
	A, B, C := ip("10.50.1.11"), ip("10.50.1.12"), ip("10.50.1.13")
	c1, c2, c3, c4 := ap("10.60.1.1:1001"), ap("10.60.1.2:1002"), ap("10.60.1.3:1003"), ap("10.60.1.4:1004")
	syn := func(at time.Duration, c netip.AddrPort) diffEvent {
		return diffEvent{at: at, kind: evClient, client: c, flags: sched.SYN, rand: [2]uint32{1, 1}}
	}
	var out []diffRegression

	// A: raising or removing the upper threshold clears the overload flag
	// (__ip_vs_update_dest; model setDest). Tables.putReal only rewrites
	// the reals entry; real_load.overloaded stays set until a connection
	// ends, so the real takes no new connections meanwhile.
	a := real1(11, 1)
	a.UThreshold = 1
	out = append(out, diffRegression{name: "threshold-removed-keeps-overload",
		why: "Tables.putReal (xdp.go) did not clear real_load.overloaded when u_threshold was removed or raised (found at ac0b6dc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("wlc", a)}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evThresh, addr: A},
			syn(2*time.Second, c2),
		}}})

	// B: the model restarts rr/wrr on every edit of a real (rebuild on
	// UpdateDest); Tables' pool signature holds only ids and weights, so
	// a threshold-only edit does not reset the counter.
	bt := real1(11, 1)
	out = append(out, diffRegression{name: "threshold-edit-restarts-rr",
		why: "the model restarts rr/wrr on any UpdateDest; Tables.Apply's pool signature (xdp.go) held only ids and weights (found at ac0b6dc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("rr", real1(12, 1), bt)}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evThresh, addr: A, uth: 5},
			syn(2*time.Second, c2),
		}}})

	// C: a SYN on a TIME_WAIT/CLOSE connection expires it before
	// scheduling (ip_vs_in: ip_vs_conn_expire_now, then
	// ip_vs_try_to_schedule), even when no real can take the new one. xdp_lb
	// returns PASS_NO_REAL before conn_retire(old): the old entry lives on
	// (counted, and later segments are forwarded to its real).
	out = append(out, diffRegression{name: "syn-reuse-without-real-keeps-old-conn",
		why: "bpf/xlb.c xdp_lb returned PASS_NO_REAL before retiring `old` (found at ac0b6dc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("rr", real1(11, 1))}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evClient, client: c1, flags: sched.FIN | sched.ACK},
			{at: 2 * time.Second, kind: evWeight, addr: A, weight: 0},
			syn(3*time.Second, c1),
			{at: 4 * time.Second, kind: evClient, client: c1, flags: sched.ACK},
		}}})

	// C': the same when the SYN carries RST: IPVS expires the old
	// connection (is_new_conn is th->syn alone), then tcp_conn_schedule
	// does not schedule a SYN+RST; xdp_lb passes it (PASS_NO_CONN) and
	// keeps the old connection.
	out = append(out, diffRegression{name: "syn-rst-on-time-wait-keeps-old-conn",
		why: "bpf/xlb.c xdp_lb returned PASS_NO_CONN for a SYN+RST that found a TIME_WAIT/CLOSE connection without retiring `old` (found at 46457cc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("rr", real1(11, 1))}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evClient, client: c1, flags: sched.FIN | sched.ACK},
			{at: 2 * time.Second, kind: evClient, client: c1, flags: sched.SYN | sched.RST},
			{at: 3 * time.Second, kind: evClient, client: c1, flags: sched.ACK},
		}}})

	// D: a template replaced (its real removed) in the same clock tick as
	// it was made: the new one has the same key and the same born, so the
	// old template's connection, when it ends, is counted off the new one
	// (conn_retire matches by tk and born); n_control underflows and the
	// template never expires.
	pd := dr("rr", real1(12, 1), real1(11, 1))
	pd.PersistTimeout = 30 * time.Second
	c1b := ap("10.60.1.1:1011")
	out = append(out, diffRegression{name: "template-replaced-in-same-tick-never-expires",
		why: "bpf/xlb.c xlb_new_conn told template instances apart by born = now, not unique within a clock tick (found at ac0b6dc, fixed in 14afc7f)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{pd}, events: []diffEvent{
			syn(0, c1),
			{at: 0, kind: evRemove, addr: A},
			syn(0, c1b),
			{at: 2 * time.Hour, kind: evTick},
		}}})

	// E: lblc's is_overloaded looks for a real with activeconns*2 <
	// weight; half_cb tests active < weight/2, wrong for odd weights.
	out = append(out, diffRegression{name: "lblc-half-weight-rounding",
		why: "bpf/xlb_sched.h half_cb tested active < weight/2 instead of active*2 < weight (found at ac0b6dc, fixed in 46457cc)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("lblc", real1(12, 1), real1(11, 2))}, events: []diffEvent{
			syn(0, c1), syn(0, c2), syn(0, c3), syn(0, c4),
		}}})

	// F: a NAT reply to a client whose address falls in a filter bucket
	// of a VIP takes the VIP path, where a TCP segment without SYN and
	// without connection is passed (PASS_NO_CONN) before the NAT-reply
	// fallback is tried.
	vip := ip("10.50.1.100")
	var cf netip.Addr
	for a := ip("10.60.0.1"); diffClientNet.Contains(a); a = a.Next() {
		if maps.Bucket(a) == maps.Bucket(vip) {
			cf = a
			break
		}
	}
	if !cf.IsValid() {
		t.Fatalf("no client address in %s shares the filter bucket of %s", diffClientNet, vip)
	}
	cfp := netip.AddrPortFrom(cf, 40000)
	out = append(out, diffRegression{name: "nat-reply-to-client-in-vip-filter-bucket",
		why: fmt.Sprintf("data plane wrong: bpf/xlb.c xdp_lb passes a non-SYN reply to %s (same addr_filter bucket as VIP %s) with PASS_NO_CONN, never trying nat_reply", cf, vip),
		spec: &diffSeqSpec{svcs: []dataplane.Service{{VIP: vip, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
			Reals: []dataplane.Real{{Addr: ip("10.50.2.11"), Port: 8080, Weight: 1}}}}, events: []diffEvent{
			syn(0, cfp),
			{at: time.Millisecond, kind: evReply, client: cfp, flags: sched.SYN | sched.ACK},
			{at: 2 * time.Millisecond, kind: evReply, client: cfp, flags: sched.ACK},
		}}})

	// G: after a restart NewTables hands out ids from 0 again and serials
	// from the highest serial of the reals still configured; a real added
	// then can take the id and serial of a removed real whose connections
	// live on. They count on the new real: its counter underflows when
	// they end (and their packets go to the new real meanwhile).
	out = append(out, diffRegression{name: "restart-reuses-id-and-serial-of-removed-real",
		why: "data plane wrong: NewTables (xdp.go) restarts nextReal at 0 and serial at the max over valid reals only, so (id, serial) of a removed real with live flows is handed out again",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("wlc", real1(11, 1), real1(12, 1))}, events: []diffEvent{
			syn(0, c1), // to B, the head of the list
			{at: 0, kind: evRemove, addr: B},
			{at: time.Second, kind: evRestart},
			{at: time.Second, kind: evAdd, add: []dataplane.Real{real1(13, 1)}},
			{at: 2 * time.Minute, kind: evTick},
		}}})
	_ = C

	// H: a quiesced real keeps its mh slots (last_weight). NewTables
	// adopts lastWeight only from reals with weight > 0, so after a
	// restart the mh table is rebuilt without the quiesced real: clients
	// hashing to its slots go elsewhere instead of getting no real (or
	// falling back).
	mhs := dr("mh", real1(12, 1), real1(11, 1))
	m, err := sched.New(modelConfig(mhs, dataplane.Timeouts{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, rl := range mhs.Reals {
		if err := m.AddDest(0, sched.Dest{Addr: rl.Addr, Port: rl.Port, Weight: rl.Weight}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetWeight(0, netip.AddrPortFrom(A, 8080), 0); err != nil {
		t.Fatal(err)
	}
	var ch netip.AddrPort
	for h := 1; h < 255 && !ch.IsValid(); h++ {
		a := netip.AddrFrom4([4]byte{10, 60, 1, byte(h)})
		if sched.LookupMH(m.Table(), m.Dests(), sched.DefaultMH, a, 0, false) < 0 {
			ch = netip.AddrPortFrom(a, 1000)
		}
	}
	out = append(out, diffRegression{name: "restart-forgets-last-weight-of-quiesced-real",
		why: "NewTables (xdp.go) adopted lastWeight only from weight > 0, so mh tables changed across a restart (found at ac0b6dc, fixed in 14afc7f)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{mhs}, events: []diffEvent{
			{at: 0, kind: evWeight, addr: A, weight: 0},
			{at: time.Second, kind: evRestart},
			syn(2*time.Second, ch),
		}}})

	// I: the rr/wrr counter restarts after a daemon restart (Tables.pool
	// is not adopted, so the first Apply sees a changed pool).
	out = append(out, diffRegression{name: "restart-resets-rr-counter",
		why: "NewTables (xdp.go) did not adopt the pool signature, so the first Apply after a restart reset rr/wrr (found at ac0b6dc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("rr", real1(12, 1), real1(11, 1))}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evRestart},
			syn(2*time.Second, c2),
		}}})
	// L: a SYN that reuses a TIME_WAIT/CLOSE connection: in IPVS the old
	// connection is still bound when the new one is (ip_vs_conn_expire_now
	// only rearms its timer), so the new one's overload check counts both
	// (model: Packet). xdp_lb retires the old one before real_bind of the
	// new one, so the real is not marked overloaded.
	lt := real1(11, 1)
	lt.UThreshold, lt.LThreshold = 2, 1
	out = append(out, diffRegression{name: "syn-reuse-old-conn-not-counted-in-overload-check",
		why: "bpf/xlb.c xdp_lb called conn_retire(old) before real_bind(new) (found at 46457cc, fixed in 153717e)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("wlc", lt)}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evClient, client: c1, flags: sched.FIN | sched.ACK},
			syn(2*time.Second, c1),
			syn(3*time.Second, c2),
		}}})

	// J: a DR or TUN real that does not resolve "takes no new flows"
	// (Tables.Apply gives it weight 0 in the rr/wrr/sh/dh/mh tables), but
	// its reals entry keeps the configured weight, which is what the
	// scanning schedulers (lc, wlc, sed, nq, fo, ovf, twos, lblc) read: they
	// pick it, and the program sends the packet to ifindex 0 with a zero
	// MAC.
	out = append(out, diffRegression{name: "unresolved-real-picked-by-wlc",
		why: "putReal (xdp.go) wrote the configured weight to the reals entry of an unresolved DR/TUN real, which pick_cb (bpf/xlb_sched.h) reads (found at ac0b6dc, fixed in 14afc7f)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("wlc", real1(11, 1),
			dataplane.Real{Addr: ip("10.50.3.11"), Port: 8080, Weight: 1})}, events: []diffEvent{
			syn(0, c1),
		}}})

	// K: NAT reply entries are keyed by the reply's 5-tuple and only
	// removed by gc once the client's connection is gone. When a SYN
	// reuses a closing connection and it goes to another real, the old
	// real's entry stays: its packets are translated and move the new
	// connection's state. ip_vs_out finds no connection for them.
	nat := dataplane.Service{VIP: ip("10.50.1.160"), Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
		Reals: []dataplane.Real{{Addr: ip("10.50.2.12"), Port: 8080, Weight: 1}, {Addr: ip("10.50.2.11"), Port: 8080, Weight: 1}}}
	out = append(out, diffRegression{name: "nat-reply-from-previous-real-after-reuse",
		why: "data plane wrong: bpf/xlb.c nat_reply accepts a reply from a real that no longer serves the client's connection (stale nat entry)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{nat}, events: []diffEvent{
			syn(0, c1), // to 10.50.2.11
			{at: time.Millisecond, kind: evReply, client: c1, flags: sched.SYN | sched.ACK},
			{at: 2 * time.Millisecond, kind: evClient, client: c1, flags: sched.FIN | sched.ACK},
			syn(3*time.Millisecond, c1), // reuses the TIME_WAIT connection: to 10.50.2.12
			{at: 4 * time.Millisecond, kind: evReply, client: c1, flags: sched.RST, prev: true},
		}}})
	// E: a removed real's tree position is not rewritten by a restarted
	// daemon (it adopts valid reals only), so when the removed real's last
	// connection expired, xlb_tree_fix wrote its (unusable) leaf over the
	// leaf that position now belongs to: B vanished from the tree and the
	// next connection went to A.
	out = append(out, diffRegression{name: "removed-real-stale-tree-position",
		why: "bpf/xlb_tree.h xlb_tree_fix trusted real_tree positions left from an older configuration (found and fixed in the tree change)",
		spec: &diffSeqSpec{svcs: []dataplane.Service{dr("wlc", real1(11, 1), real1(12, 1), real1(13, 1))}, events: []diffEvent{
			syn(0, c1),
			{at: time.Second, kind: evRemove, addr: C},
			{at: 2 * time.Second, kind: evRestart},
			{at: 100 * time.Second, kind: evTick},
			syn(101*time.Second, c2),
		}}})

	return out
}
