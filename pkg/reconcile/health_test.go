package reconcile

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
)

// fakeHealth is health as a table: reals by address, not listed = up at
// their configured weight.
type fakeHealth struct {
	down    map[string]bool // out of the pool
	inhibit map[string]bool // in at weight 0
	weight  map[string]int  // up with this weight
	sorry   bool
}

func (f fakeHealth) Real(_ *config.VirtualServer, rs *config.RealServer) (bool, int) {
	a := rs.Address.String()
	switch {
	case f.down[a]:
		return false, 0
	case f.inhibit[a]:
		return true, 0
	}
	if w, ok := f.weight[a]; ok {
		return true, w
	}
	return true, rs.Weight
}

func (f fakeHealth) Sorry(vs *config.VirtualServer) (bool, int) {
	switch {
	case f.sorry:
		return true, 1
	case vs.SorryServerInhibit:
		return true, 0
	}
	return false, 0
}

func TestPlanWithHealth(t *testing.T) {
	rs := func(a string, w int) config.RealServer {
		return config.RealServer{Address: netip.MustParseAddr(a), Port: 8080, Weight: w}
	}
	vs := func(sorry string, inhibit bool) *config.Config {
		v := config.VirtualServer{Address: addr("10.50.1.100"), Port: 80, Protocol: config.TCP, LBAlgo: "wlc",
			LBKind: config.NAT, RealServers: []config.RealServer{rs("10.50.2.11", 1), rs("10.50.2.12", 2), rs("10.50.2.13", 3)}}
		if sorry != "" {
			v.SorryServer = netip.MustParseAddrPort(sorry)
			v.SorryServerInhibit = inhibit
		}
		return &config.Config{VirtualServers: []config.VirtualServer{v}}
	}
	real := func(a string, port uint16, w int) dataplane.Real {
		return dataplane.Real{Addr: addr(a), Port: port, Weight: w}
	}
	for _, c := range []struct {
		name string
		cfg  *config.Config
		h    Health
		want []dataplane.Real
	}{
		{"no health", vs("", false), nil,
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 3)}},
		{"all up", vs("", false), fakeHealth{},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 3)}},
		{"one down", vs("", false), fakeHealth{down: map[string]bool{"10.50.2.12": true}},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.13", 8080, 3)}},
		{"one inhibited", vs("", false), fakeHealth{inhibit: map[string]bool{"10.50.2.12": true}},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 0), real("10.50.2.13", 8080, 3)}},
		{"dynamic weight", vs("", false), fakeHealth{weight: map[string]int{"10.50.2.13": 7}},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 7)}},
		{"sorry server idle", vs("10.50.2.99:80", false), fakeHealth{},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 3)}},
		{"sorry server, no health", vs("10.50.2.99:80", true), nil,
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 3)}},
		{"sorry server idle, inhibited", vs("10.50.2.99:0", true), fakeHealth{},
			[]dataplane.Real{real("10.50.2.11", 8080, 1), real("10.50.2.12", 8080, 2), real("10.50.2.13", 8080, 3), real("10.50.2.99", 80, 0)}},
		{"sorry server serving", vs("10.50.2.99:8000", false),
			fakeHealth{down: map[string]bool{"10.50.2.11": true, "10.50.2.12": true, "10.50.2.13": true}, sorry: true},
			[]dataplane.Real{real("10.50.2.99", 8000, 1)}},
		{"sorry server beside inhibited reals", vs("10.50.2.99:8000", true),
			fakeHealth{inhibit: map[string]bool{"10.50.2.11": true, "10.50.2.12": true, "10.50.2.13": true}, sorry: true},
			[]dataplane.Real{real("10.50.2.11", 8080, 0), real("10.50.2.12", 8080, 0), real("10.50.2.13", 8080, 0), real("10.50.2.99", 8000, 1)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, _, err := PlanWith(c.cfg, nil, c.h)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, st.Services[0].Reals, cmpAddr); diff != "" {
				t.Errorf("reals (-want +got):\n%s", diff)
			}
		})
	}
}
