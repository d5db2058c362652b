// Package maps holds typed Go views of the BPF maps of the balancer and of
// the IPIP decapsulator (DecapSet). Each map is owned by one type here;
// nothing else in xlbd reads or writes a map directly. The balancer's maps
// are pinned by name under one directory, so a restarted daemon finds its
// flows and counters, and bpftool shows them with BTF.
package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	xbpf "github.com/xlbd/xlbd/bpf"
)

// DefaultPinDir is where a production daemon pins its maps and links.
const DefaultPinDir = "/sys/fs/bpf/xlbd"

// Sizes compiled into bpf/xlb.c; user space must stay inside them.
const (
	MaxServices = 4096
	MaxReals    = 65536
	RingHalf    = 1048576
	// TreeHalf is each generation's room for tournament trees.
	TreeHalf = 4*MaxReals + 2*MaxServices + 1
)

// Default sizes of the tables Options can size: with the fixed arrays they
// take about 80 MiB of kernel memory on a 2-CPU VM (the per-CPU counters
// add about 3.5 MiB per CPU), which a small VM affords.
const (
	// DefaultConnTableSize is the connection table's (and, unless told
	// otherwise, the NAT table's) size: 131072 flows take 17 MiB, their
	// NAT entries 14 MiB.
	DefaultConnTableSize = 131072
	// DefaultPersistTableSize is the persistence templates' LRU (4 MiB):
	// one template per client network and service.
	DefaultPersistTableSize = 32768
	// DefaultLBLCTableSize is lblc's and lblcr's LRU of destinations
	// (2.5 MiB).
	DefaultLBLCTableSize = 16384
	// DefaultFragTableSize is the LRU of fragmented datagrams in flight
	// (1 MiB).
	DefaultFragTableSize = 8192
	// DefaultPMTUTableSize is the LRU of senders told a smaller MTU
	// (0.7 MiB).
	DefaultPMTUTableSize = 8192

	// MinTableSize and MaxTableSize bound every size Options take.
	MinTableSize = 64
	MaxTableSize = 1 << 26
)

// Scheduler kinds as the BPF program knows them.
type SchedKind uint32

const (
	SchedSequence = SchedKind(xbpf.XlbSchedKindSCHED_RR) // rr and wrr
	SchedSH       = SchedKind(xbpf.XlbSchedKindSCHED_SH)
	SchedDH       = SchedKind(xbpf.XlbSchedKindSCHED_DH)
	SchedMH       = SchedKind(xbpf.XlbSchedKindSCHED_MH)
	SchedLC       = SchedKind(xbpf.XlbSchedKindSCHED_LC)
	SchedWLC      = SchedKind(xbpf.XlbSchedKindSCHED_WLC)
	SchedSED      = SchedKind(xbpf.XlbSchedKindSCHED_SED)
	SchedNQ       = SchedKind(xbpf.XlbSchedKindSCHED_NQ)
	SchedFO       = SchedKind(xbpf.XlbSchedKindSCHED_FO)
	SchedOVF      = SchedKind(xbpf.XlbSchedKindSCHED_OVF)
	SchedTWOS     = SchedKind(xbpf.XlbSchedKindSCHED_TWOS)
	SchedLBLC     = SchedKind(xbpf.XlbSchedKindSCHED_LBLC)
	SchedLBLCR    = SchedKind(xbpf.XlbSchedKindSCHED_LBLCR)
)

// Flag sets of bpf/xlb_maps.h, typed as the fields that hold them.

// Service flags (svc_val.flags).
const (
	SvcPersist  = uint32(xbpf.XlbSvcFlagsSVC_F_PERSIST)
	SvcFallback = uint32(xbpf.XlbSvcFlagsSVC_F_FALLBACK)
	SvcPort     = uint32(xbpf.XlbSvcFlagsSVC_F_PORT)
	// SvcAllPorts marks a port-0 service, which takes every port.
	SvcAllPorts = uint32(xbpf.XlbSvcFlagsSVC_F_ALLPORTS)
	// SvcTmplNoPort makes persistence templates with port 0: port-0
	// services and FTP (port 21) share one per client and VIP.
	SvcTmplNoPort = uint32(xbpf.XlbSvcFlagsSVC_F_TMPL_NOPORT)
)

// Connection flags (conn_val.flags).
const (
	ConnActive   = uint32(xbpf.XlbConnFlagsCONN_F_ACTIVE)
	ConnPersist  = uint32(xbpf.XlbConnFlagsCONN_F_PERSIST)
	ConnNoOutput = uint32(xbpf.XlbConnFlagsCONN_F_NOOUTPUT)
	ConnPicked   = uint32(xbpf.XlbConnFlagsCONN_F_PICKED)
	ConnAssured  = uint32(xbpf.XlbConnFlagsCONN_F_ASSURED)
)

// Fragment flags (frag_val.flags; bits 8 and up hold a verdict).
const (
	// FragReply: a NAT reply, whose source becomes the entry's address.
	FragReply = uint32(xbpf.XlbFragFlagsFRAG_F_REPLY)
	// FragPass: the first fragment went to the kernel, so do the rest.
	FragPass = uint32(xbpf.XlbFragFlagsFRAG_F_PASS)
)

// NoReal marks an empty slot in a scheduler table.
const NoReal = 0xffffffff

// Forwarding modes as the BPF program knows them.
type Mode uint32

const (
	ModeNAT = Mode(xbpf.XlbLbModeMODE_NAT)
	ModeDR  = Mode(xbpf.XlbLbModeMODE_DR)
	ModeTUN = Mode(xbpf.XlbLbModeMODE_TUN)
)

func (m Mode) String() string {
	switch m {
	case ModeNAT:
		return "NAT"
	case ModeDR:
		return "DR"
	case ModeTUN:
		return "TUN"
	}
	return fmt.Sprintf("Mode(%d)", uint32(m))
}

// RealValid marks a reals entry in use (real_val.flags).
const RealValid = uint8(xbpf.XlbRealFlagsREAL_F_VALID)

// Aliases of the generated key and value types, so users need not import
// the bpf package.
type (
	SvcKey     = xbpf.XlbSvcKey
	SvcVal     = xbpf.XlbSvcVal
	RealVal    = xbpf.XlbRealVal
	RealLoad   = xbpf.XlbRealConns
	CtlVal     = xbpf.XlbCtlVal
	TrackCfg   = xbpf.XlbConnCfg
	ConnKey    = xbpf.XlbConnKey
	ConnVal    = xbpf.XlbConnVal
	TmplKey    = xbpf.XlbTmplKey
	TmplVal    = xbpf.XlbTmplVal
	NATVal     = xbpf.XlbNatVal
	NATRealKey = xbpf.XlbNatRealKey
	NATRealVal = xbpf.XlbNatRealVal
	NATSlotVal = xbpf.XlbNatSlot
	Stats      = xbpf.XlbStats
	GCResult   = xbpf.XlbGcResult
	LBLCKey    = xbpf.XlbLblcKey
	LBLCValue  = xbpf.XlbLblcVal
	TreeNode   = xbpf.XlbTnode
	TreePos    = xbpf.XlbTreePos
	FragKey    = xbpf.XlbFragKey
	FragVal    = xbpf.XlbFragVal
	HeldFrag   = xbpf.XlbHeldFrag
)

// Set is the loaded balancer: its program and every map.
type Set struct {
	Program   *ebpf.Program
	Ctl       *Ctl
	Services  *Services
	Ring      *Ring
	Reals     *Reals
	RR        *RR
	Conns     *Conns
	NAT       *NAT
	NATReals  *NATReals
	RealStats *Stats64
	SvcStats  *Stats64
	Verdicts  *Verdicts
	Filter    *Filter
	RealLoad  *RealLoads
	Track     *Track
	Persist   *Persist
	LBLC      *ebpf.Map
	Frags     *ebpf.Map
	PMTU      *ebpf.Map
	// Held is the ring of later fragments that came before their first
	// (struct held_frag), for the daemon to send on.
	Held  *ebpf.Map
	Trees *Trees
	// Routes controls the NAT route cache; RealRoutes and ClientRoutes
	// are its tables (struct rt_val by real id, and by client address).
	Routes       *Routes
	RealRoutes   *ebpf.Map
	ClientRoutes *ebpf.Map
	// NATSlots is nat_slots, which NATReals keeps; for tests.
	NATSlots *ebpf.Map
	// GC retires expired connections, templates and lblc entries (nil when
	// opened read-only).
	GC *GC
	// Clock, when set, replaces the packets' and gc's clocks; for tests.
	Clock *ebpf.Variable
	// PacketClock is the jiffy clock the program was loaded with;
	// PacketClockErr says why there is none (the coarse clock serves).
	PacketClock    JiffyClock
	PacketClockErr error
	// TickNs and TickBase are the program's copies (tick_ns, tick_base);
	// CheckClock turns the jiffy clock off through TickNs.
	TickNs, TickBase *ebpf.Variable
	// Rand, when set, replaces the two random draws of twos; for tests.
	Rand *ebpf.Variable

	PinDir string
	objs   xbpf.XlbObjects
}

// Options size the tables Load creates; 0 leaves a table at its default,
// or at the size of the map already pinned. Sizes are fixed once a map
// exists: a size that differs from a pinned map's is an error, as the
// kernel cannot resize it.
type Options struct {
	// ConnTableSize is the connection table's (IPVS's conn_tab):
	// when full, new flows are refused.
	ConnTableSize uint32
	// NATTableSize is the NAT reply table's, one entry per NAT flow
	// (0: ConnTableSize).
	NATTableSize uint32
	// PersistTableSize is the persistence templates' (LRU).
	PersistTableSize uint32
	// LBLCTableSize is lblc's and lblcr's destination table (LRU).
	LBLCTableSize uint32
	// FragTableSize is the fragmented datagrams' table (LRU).
	FragTableSize uint32
	// PMTUTableSize is the path MTU table (LRU).
	PMTUTableSize uint32
}

// tableSize is one sizeable map and the size Options ask for it.
type tableSize struct {
	name string // map name, as pinned
	want uint32 // 0: the default, or the pinned map's size
	def  uint32
}

func (o Options) tables() []tableSize {
	return []tableSize{
		{xbpf.XlbMapConns, o.ConnTableSize, DefaultConnTableSize},
		{xbpf.XlbMapNat, o.NATTableSize, 0}, // resolved to the connection table's
		{xbpf.XlbMapPersist, o.PersistTableSize, DefaultPersistTableSize},
		{xbpf.XlbMapLblcTable, o.LBLCTableSize, DefaultLBLCTableSize},
		{xbpf.XlbMapFrags, o.FragTableSize, DefaultFragTableSize},
		{xbpf.XlbMapPmtu, o.PMTUTableSize, DefaultPMTUTableSize},
	}
}

// Validate checks every size against MinTableSize and MaxTableSize.
func (o Options) Validate() error {
	for _, t := range o.tables() {
		if t.want != 0 && (t.want < MinTableSize || t.want > MaxTableSize) {
			return fmt.Errorf("%s table size %d: want %d to %d", t.name, t.want, MinTableSize, MaxTableSize)
		}
	}
	return nil
}

// sizeTables sets the sizeable maps of spec: what o asks, else what a map
// pinned in pinDir already has (a restart adopting the data plane keeps its
// tables whatever the defaults now are), else the default.
func sizeTables(spec *ebpf.CollectionSpec, pinDir string, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	var conns uint32
	for _, t := range o.tables() {
		size := t.want
		pinned, err := pinnedSize(pinDir, t.name)
		if err != nil {
			return err
		}
		switch {
		case pinned != 0 && size != 0 && size != pinned:
			return fmt.Errorf("%s table: %d entries asked, but the map pinned in %s has %d and cannot be resized "+
				"(ask for %d, or start after a daemon that released the data plane)", t.name, size, pinDir, pinned, pinned)
		case pinned != 0:
			size = pinned
		case size == 0 && t.name == xbpf.XlbMapNat:
			size = conns
		case size == 0:
			size = t.def
		}
		if t.name == xbpf.XlbMapConns {
			conns = size
		}
		spec.Maps[t.name].MaxEntries = size
	}
	return nil
}

// pinnedSize is the number of entries of the map pinned as name in pinDir,
// 0 when there is none.
func pinnedSize(pinDir, name string) (uint32, error) {
	if pinDir == "" {
		return 0, nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pinned map %s: %w", name, err)
	}
	defer m.Close()
	return m.MaxEntries(), nil
}

// Load loads the balancer with its maps pinned in pinDir ("" pins
// nothing). Maps already pinned there are reused, which is how a restart
// keeps established flows and counters.
func Load(pinDir string, o Options) (*Set, error) {
	spec, err := xbpf.LoadXlb()
	if err != nil {
		return nil, fmt.Errorf("load balancer spec: %w", err)
	}
	if err := sizeTables(spec, pinDir, o); err != nil {
		return nil, err
	}
	pc, pcErr := FindJiffyClock()
	if pcErr == nil {
		if err := spec.Variables[xbpf.XlbVarTickNs].Set(pc.Tick); err != nil {
			return nil, fmt.Errorf("load balancer spec: %w", err)
		}
		if err := spec.Variables[xbpf.XlbVarTickBase].Set(pc.Base); err != nil {
			return nil, fmt.Errorf("load balancer spec: %w", err)
		}
	}
	var opts ebpf.CollectionOptions
	if pinDir != "" {
		if err := EnsureBPFFS(pinDir); err != nil {
			return nil, err
		}
		opts.Maps.PinPath = pinDir
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	s := &Set{PinDir: pinDir}
	if err := spec.LoadAndAssign(&s.objs, &opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load balancer: %+v", ve)
		}
		return nil, fmt.Errorf("load balancer (pinned maps in %s): %w", pinDir, err)
	}
	s.Program = s.objs.XdpLb
	s.wrap()
	s.GC = &GC{prog: s.objs.Gc, connMax: s.objs.Conns.MaxEntries()}
	s.RealLoad.clear = s.objs.ClearOverload
	s.Trees.build = s.objs.Trees
	s.Clock = s.objs.NowOverride
	s.PacketClock, s.PacketClockErr = pc, pcErr
	s.TickNs, s.TickBase = s.objs.TickNs, s.objs.TickBase
	s.Rand = s.objs.RandOverride
	return s, nil
}

func (s *Set) wrap() {
	m := &s.objs.XlbMaps
	s.Ctl = &Ctl{m.Ctl}
	s.Services = &Services{m.Services}
	s.Ring = &Ring{m.Ring}
	s.Reals = &Reals{m.Reals}
	s.RR = &RR{m.Rr}
	s.Conns = &Conns{m.Conns}
	s.NAT = &NAT{m.Nat}
	s.NATReals = &NATReals{m: m.NatReals, slots: m.NatSlots, haveSlots: map[uint32]NATSlotVal{}}
	s.RealStats = &Stats64{m.RealStats}
	s.SvcStats = &Stats64{m.SvcStats}
	s.Verdicts = &Verdicts{m.Verdicts}
	s.Filter = &Filter{m: m.AddrFilter}
	s.RealLoad = &RealLoads{m: m.RealLoad}
	s.Track = &Track{m.TrackCfg}
	s.Persist = &Persist{m.Persist}
	s.LBLC = m.LblcTable
	s.Frags = m.Frags
	s.PMTU = m.Pmtu
	s.Held = m.Held
	s.Trees = &Trees{nodes: m.PickTree, pos: m.RealTree}
	s.Routes = &Routes{m.RouteCtl}
	s.RealRoutes = m.RealRt
	s.ClientRoutes = m.ClientRt
	s.NATSlots = m.NatSlots
}

// Close releases the file descriptors; pinned maps stay.
func (s *Set) Close() error {
	if s.Program == nil {
		s.closeMaps()
		return nil
	}
	return s.objs.Close()
}

// Unpin removes every map's pin, so the maps go away with the last user.
func (s *Set) Unpin() error {
	var errs []error
	for _, m := range s.allMaps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// EnsureBPFFS makes dir exist on a bpffs, mounting one there if needed.
// `ip netns exec` gives every command a fresh /sys without the host's
// bpffs, so the default pin dir usually needs this.
func EnsureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin dir: %w", err)
	}
	if onBPFFS(dir) {
		return nil
	}
	// Mount on the parent when it is /sys/fs/bpf itself, as tools expect,
	// else on dir.
	target := dir
	if parent := filepath.Dir(dir); parent == "/sys/fs/bpf" {
		target = parent
	}
	if err := unix.Mount("bpf", target, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", target, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin dir: %w", err)
	}
	return nil
}

func onBPFFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.BPF_FS_MAGIC
}

// Be32 turns an IPv4 address into the __be32 the program compares: the
// network-order bytes read as a host-order integer.
func Be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// Addr is the inverse of Be32.
func Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// Be16 turns a port into the __be16 the program compares.
func Be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// Port is the inverse of Be16.
func Port(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

// OpenPinned opens the maps a running daemon pinned in dir, for reading
// counters and tables from outside it (the demo, tests, `xlbd status`).
// The returned Set has no Program.
func OpenPinned(dir string) (*Set, error) {
	s := &Set{PinDir: dir}
	m := &s.objs.XlbMaps
	for name, dst := range map[string]**ebpf.Map{
		xbpf.XlbMapConns: &m.Conns, xbpf.XlbMapCtl: &m.Ctl, xbpf.XlbMapNat: &m.Nat,
		xbpf.XlbMapRealStats: &m.RealStats, xbpf.XlbMapReals: &m.Reals, xbpf.XlbMapRing: &m.Ring,
		xbpf.XlbMapRr: &m.Rr, xbpf.XlbMapServices: &m.Services, xbpf.XlbMapSvcStats: &m.SvcStats,
		xbpf.XlbMapVerdicts: &m.Verdicts, xbpf.XlbMapAddrFilter: &m.AddrFilter,
		xbpf.XlbMapRealLoad: &m.RealLoad, xbpf.XlbMapTrackCfg: &m.TrackCfg, xbpf.XlbMapPersist: &m.Persist,
		xbpf.XlbMapLblcTable: &m.LblcTable, xbpf.XlbMapPickTree: &m.PickTree, xbpf.XlbMapRealTree: &m.RealTree,
		xbpf.XlbMapFrags: &m.Frags, xbpf.XlbMapPmtu: &m.Pmtu,
	} {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			s.closeMaps()
			return nil, fmt.Errorf("open pinned map: %w", err)
		}
		*dst = mp
	}
	s.wrap()
	return s, nil
}

func (s *Set) closeMaps() {
	for _, mp := range s.allMaps() {
		if mp != nil {
			mp.Close()
		}
	}
}

func (s *Set) allMaps() []*ebpf.Map {
	// Every map bpf2go generated, so that a map added to the C source is
	// never left pinned (or open) by mistake.
	v := reflect.ValueOf(&s.objs.XlbMaps).Elem()
	var out []*ebpf.Map
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out = append(out, m)
		}
	}
	return out
}
