package xdp

import (
	"testing"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/maps"
)

// Status shows every table's size next to what the configuration and the
// flows use of it.
func TestTableStatus(t *testing.T) {
	l := newLab(t)
	st := natState(real2(11, 1), real2(12, 1), real2(13, 1))
	st.Services = append(st.Services, dataplane.Service{VIP: vipDR, Port: 80, Protocol: 6, Sched: "wlc",
		Kind: dataplane.DR, Reals: reals(1, 80, 2)})
	l.apply(t, st)
	for i := range 5 {
		l.sendFlow(t, uint16(42000+i))
	}
	var s dataplane.Status
	s.Flows, s.NATFlows, s.Templates = -1, -1, -1
	if err := tableStatus(l.set, &s); err != nil {
		t.Fatal(err)
	}
	got := map[string]dataplane.TableStatus{}
	for _, ts := range s.Tables {
		got[ts.Name] = ts
		if ts.Memory == 0 {
			t.Errorf("%s: no memory reported", ts.Name)
		}
	}
	want := map[string][2]int{ // size, used
		// The NAT flows' reals are unshared: no reverse entries.
		"conns": {4096, 5}, "nat": {4096, 0}, "persist": {maps.DefaultPersistTableSize, 0},
		"lblc_table": {maps.DefaultLBLCTableSize, 0}, "frags": {maps.DefaultFragTableSize, 0},
		"pmtu": {maps.DefaultPMTUTableSize, 0}, "client_rt": {16384, 0}, "services": {maps.MaxServices, 2}, "reals": {maps.MaxReals, 5},
		// rr's sequence of 3 and its 3 members; wlc's 2 members only.
		"ring": {maps.RingHalf, 8},
		// wlc's tree: 2 leaves, 4 nodes.
		"pick_tree": {maps.TreeHalf, 4},
	}
	for name, w := range want {
		if g := got[name]; g.Size != w[0] || g.Used != w[1] {
			t.Errorf("%s: size %d, used %d; want %d, %d", name, g.Size, g.Used, w[0], w[1])
		}
	}
	if len(got) != len(want) {
		t.Errorf("tables %v", s.Tables)
	}
	if s.TablesMemory == 0 || s.TablesMemory < got["conns"].Memory+got["ring"].Memory {
		t.Errorf("all maps take %d bytes", s.TablesMemory)
	}
	// Counts Status has made already are not made again.
	s2 := dataplane.Status{Flows: 1234, NATFlows: 5, Templates: 0}
	if err := tableStatus(l.set, &s2); err != nil {
		t.Fatal(err)
	}
	if s2.Tables[0].Name != "conns" || s2.Tables[0].Used != 1234 {
		t.Errorf("conns %+v, want the count Status gave", s2.Tables[0])
	}
}
