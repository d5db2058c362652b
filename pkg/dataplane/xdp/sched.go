package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
	"github.com/xlbd/xlbd/pkg/sched"
)

// schedKinds maps IPVS scheduler names to what the BPF program runs.
var schedKinds = map[string]maps.SchedKind{
	"rr": maps.SchedSequence, "wrr": maps.SchedSequence,
	"sh": maps.SchedSH, "dh": maps.SchedDH, "mh": maps.SchedMH,
	"lc": maps.SchedLC, "wlc": maps.SchedWLC, "sed": maps.SchedSED, "nq": maps.SchedNQ,
	"fo": maps.SchedFO, "ovf": maps.SchedOVF, "twos": maps.SchedTWOS, "lblc": maps.SchedLBLC,
	"lblcr": maps.SchedLBLCR,
}

// Schedulers lists the IPVS scheduler names the XDP data plane runs.
func Schedulers() []string {
	var out []string
	for n := range schedKinds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func schedName(s string) string {
	if s == "" {
		return "wlc" // IPVS's default, as keepalived leaves it
	}
	return s
}

// member is one real of a service in IPVS list order, as the scheduler
// tables see it.
type member struct {
	id         uint32
	addr       netip.Addr
	port       uint16
	weight     int
	lastWeight int
}

// schedTables builds, with pkg/sched (the specification), what the
// program reads for a service: the sequence or lookup table of real ids
// (NoReal in empty slots) and the flags.
func schedTables(s dataplane.Service, members []member) (table []uint32, flags uint32, err error) {
	dests := make([]sched.Dest, len(members))
	for i, m := range members {
		dests[i] = sched.Dest{Addr: m.addr, Port: m.port, Weight: m.weight, LastWeight: m.lastWeight}
	}
	for _, f := range s.SchedFlags {
		switch f {
		case "sh-fallback", "mh-fallback":
			flags |= maps.SvcFallback
		case "sh-port", "mh-port":
			flags |= maps.SvcPort
		default:
			return nil, 0, fmt.Errorf("unknown scheduler flag %q", f)
		}
	}
	if s.PersistTimeout > 0 {
		flags |= maps.SvcPersist
	}
	var idx []int
	switch schedName(s.Sched) {
	case "rr":
		idx = sched.RRSequence(dests)
	case "wrr":
		idx = sched.WRRSequence(dests)
	case "sh":
		idx = sched.BuildSHTable(dests)
	case "dh":
		idx = sched.BuildDHTable(dests)
	case "mh":
		if idx, err = sched.BuildMHTable(dests, sched.DefaultMH); err != nil {
			return nil, 0, err
		}
	default:
		return nil, flags, nil
	}
	return toIDs(idx, members), flags, nil
}

func toIDs(idx []int, members []member) []uint32 {
	table := make([]uint32, len(idx))
	for i, d := range idx {
		if d < 0 || d >= len(members) {
			table[i] = maps.NoReal
		} else {
			table[i] = members[d].id
		}
	}
	return table
}

// trackConfig is IPVS's connection tracking as pkg/sched specifies it:
// the TCP state tables, which states are active, the timeouts and the
// sysctls that change what a packet may start or reuse.
func trackConfig(to dataplane.Timeouts, tu dataplane.Tuning) maps.TrackCfg {
	var c maps.TrackCfg
	rows := []sched.TCPFlags{sched.SYN, sched.FIN, sched.ACK, sched.RST}
	for tbl := sched.Input; tbl <= sched.InputOnly; tbl++ {
		for r, f := range rows {
			for st := sched.TCPState(0); st < sched.NumTCPStates; st++ {
				c.TcpNext[tbl][r][st] = uint8(sched.TCPTransition(st, tbl, f, false))
			}
		}
	}
	timeouts := sched.DefaultTimeouts()
	timeouts.SetLVSTimeouts(to.TCP, to.TCPFin, to.UDP)
	for st := sched.TCPState(0); st < sched.NumTCPStates; st++ {
		if st.Active() {
			c.TcpActive[st] = 1
		}
		c.TcpTimeout[st] = uint64(timeouts.TCP[st])
	}
	c.UdpTimeout = uint64(timeouts.UDP)
	c.TmplExtension = uint64(60 * time.Second)
	c.LblcExpirationS = uint32(sched.DefaultLBLCExpiration / time.Second)
	c.ExpireQuiescentTemplate = b32(tu.ExpireQuiescentTemplate)
	c.NoConnReuse = b32(tu.NoConnReuse)
	c.SloppyTcp = b32(tu.SloppyTCP)
	return c
}

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
