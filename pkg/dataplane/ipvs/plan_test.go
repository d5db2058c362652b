package ipvs

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

var (
	vip  = netip.MustParseAddr("10.0.0.1")
	vip2 = netip.MustParseAddr("10.0.0.2")
	rs1  = netip.MustParseAddr("10.0.1.2")
	rs2  = netip.MustParseAddr("10.0.2.2")
	rs3  = netip.MustParseAddr("10.0.3.2")
)

func svc(addr netip.Addr, port uint16, sched string) ipvs.Service {
	return ipvs.Service{Family: ipvs.INET, Address: addr, Port: port, Protocol: ipvs.TCP, Scheduler: sched, Netmask: netmask.MaskFrom(32, 32)}
}

func dest(addr netip.Addr, w uint32, m ipvs.ForwardType) ipvs.Destination {
	return ipvs.Destination{Family: ipvs.INET, Address: addr, Port: 80, Weight: w, FwdMethod: m}
}

// step is an op as the tests write it.
type step struct {
	Kind string
	Svc  string
	Dest string
	W    uint32
}

func steps(ops []op) []step {
	var out []step
	for _, o := range ops {
		s := step{Kind: o.kind.String(), Svc: describe(o.svc)}
		if o.kind >= removeDest {
			s.Dest, s.W = describeDest(o.dest), o.dest.Weight
		}
		out = append(out, s)
	}
	return out
}

func TestDiff(t *testing.T) {
	web := svc(vip, 80, "rr")
	web2 := svc(vip2, 80, "rr")
	fwm := ipvs.Service{Family: ipvs.INET, FWMark: 7, Protocol: ipvs.TCP, Scheduler: "rr", Netmask: netmask.MaskFrom(32, 32)}
	// The kernel adds the hashed flag to every service it holds.
	hashed := web
	hashed.Flags |= ipvs.ServiceHashed
	wlc := web
	wlc.Scheduler = "wlc"
	persistent := web
	persistent.Flags, persistent.Timeout, persistent.Netmask = ipvs.ServicePersistent, 300, netmask.MaskFrom(24, 32)
	mine := func(ids ...ipvs.Service) func(svcID) bool {
		m := map[svcID]bool{}
		for _, s := range ids {
			m[idOf(s)] = true
		}
		return func(id svcID) bool { return m[id] }
	}
	tests := []struct {
		name       string
		have, want []entry
		owned      func(svcID) bool
		ops        []step
	}{
		{
			name:  "empty kernel: create the service, then its reals",
			want:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade), dest(rs2, 1, ipvs.Masquerade)}}},
			owned: mine(),
			ops: []step{
				{Kind: "create service", Svc: "10.0.0.1:80/TCP"},
				{Kind: "create real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.1.2:80", W: 1},
				{Kind: "create real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.2.2:80", W: 1},
			},
		},
		{
			name:  "the same state sends nothing, hashed flag or not",
			have:  []entry{{hashed, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			want:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			owned: mine(web),
		},
		{
			name: "weights change, a real goes, another comes",
			have: []entry{{web, []ipvs.Destination{dest(rs1, 3, ipvs.Masquerade), dest(rs2, 2, ipvs.Masquerade)}}},
			want: []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade), dest(rs3, 1, ipvs.Masquerade)}}},
			ops: []step{
				{Kind: "remove real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.2.2:80", W: 2},
				{Kind: "update real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.1.2:80", W: 1},
				{Kind: "create real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.3.2:80", W: 1},
			},
			owned: mine(web),
		},
		{
			name:  "weight 0 (inhibit_on_failure) is an update, not a removal",
			have:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			want:  []entry{{web, []ipvs.Destination{dest(rs1, 0, ipvs.Masquerade)}}},
			owned: mine(web),
			ops:   []step{{Kind: "update real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.1.2:80", W: 0}},
		},
		{
			name:  "forwarding method changes in place",
			have:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			want:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.DirectRoute)}}},
			owned: mine(web),
			ops:   []step{{Kind: "update real", Svc: "10.0.0.1:80/TCP", Dest: "10.0.1.2:80", W: 1}},
		},
		{
			name:  "a scheduler change is a service update; a dropped service goes",
			have:  []entry{{web, nil}, {web2, nil}},
			want:  []entry{{wlc, nil}},
			owned: mine(web, web2),
			ops: []step{
				{Kind: "remove service", Svc: "10.0.0.2:80/TCP"},
				{Kind: "update service", Svc: "10.0.0.1:80/TCP"},
			},
		},
		{
			name:  "persistence is a service update",
			have:  []entry{{hashed, nil}},
			want:  []entry{{persistent, nil}},
			owned: mine(web),
			ops:   []step{{Kind: "update service", Svc: "10.0.0.1:80/TCP"}},
		},
		{
			name:  "a service someone else made is left alone",
			have:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}, {web2, []ipvs.Destination{dest(rs2, 1, ipvs.Masquerade)}}},
			want:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			owned: mine(web),
		},
		{
			name:  "removals come before creations",
			have:  []entry{{web, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			want:  []entry{{fwm, []ipvs.Destination{dest(rs1, 1, ipvs.Masquerade)}}},
			owned: mine(web),
			ops: []step{
				{Kind: "remove service", Svc: "10.0.0.1:80/TCP"},
				{Kind: "create service", Svc: "fwmark:7"},
				{Kind: "create real", Svc: "fwmark:7", Dest: "10.0.1.2:80", W: 1},
			},
		},
		{
			name:  "a firewall-mark service is one service whatever its address",
			have:  []entry{{ipvs.Service{Family: ipvs.INET, FWMark: 7, Protocol: ipvs.TCP, Scheduler: "rr", Address: netip.IPv4Unspecified(), Netmask: netmask.MaskFrom(32, 32)}, nil}},
			want:  []entry{{fwm, nil}},
			owned: mine(fwm),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := steps(diff(tt.have, tt.want, tt.owned))
			if diff := cmp.Diff(tt.ops, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToEntry(t *testing.T) {
	tests := []struct {
		name string
		in   dataplane.Service
		want entry
		err  bool
	}{
		{
			name: "NAT rr, the default netmask",
			in: dataplane.Service{VIP: vip, Port: 80, Protocol: 6, Sched: "rr", Kind: dataplane.NAT,
				Reals: []dataplane.Real{{Addr: rs1, Port: 80, Weight: 3, UThreshold: 100, LThreshold: 50}}},
			want: entry{svc(vip, 80, "rr"), []ipvs.Destination{{Family: ipvs.INET, Address: rs1, Port: 80, Weight: 3, FwdMethod: ipvs.Masquerade, UpperThreshold: 100, LowerThreshold: 50}}},
		},
		{
			name: "DR sh with flags, persistent with granularity",
			in: dataplane.Service{VIP: vip, Port: 443, Protocol: 6, Sched: "sh", SchedFlags: []string{"sh-port", "sh-fallback"}, Kind: dataplane.DR,
				PersistTimeout: 360 * time.Second, PersistPrefix: 24, Reals: []dataplane.Real{{Addr: rs1, Port: 443, Weight: 1}}},
			want: entry{ipvs.Service{Family: ipvs.INET, Address: vip, Port: 443, Protocol: ipvs.TCP, Scheduler: "sh",
				Flags: ipvs.ServiceSchedulerOpt1 | ipvs.ServiceSchedulerOpt2 | ipvs.ServicePersistent, Timeout: 360, Netmask: netmask.MaskFrom(24, 32)},
				[]ipvs.Destination{{Family: ipvs.INET, Address: rs1, Port: 443, Weight: 1, FwdMethod: ipvs.DirectRoute}}},
		},
		{
			name: "TUN UDP with ops, no scheduler is wlc",
			in:   dataplane.Service{VIP: vip, Port: 53, Protocol: 17, OnePacket: true, Kind: dataplane.TUN, Reals: []dataplane.Real{{Addr: rs2, Port: 53, Weight: 1}}},
			want: entry{ipvs.Service{Family: ipvs.INET, Address: vip, Port: 53, Protocol: ipvs.UDP, Scheduler: "wlc", Flags: ipvs.ServiceOnePacket, Netmask: netmask.MaskFrom(32, 32)},
				[]ipvs.Destination{{Family: ipvs.INET, Address: rs2, Port: 53, Weight: 1, FwdMethod: ipvs.Tunnel}}},
		},
		{
			name: "firewall mark, real port 0 follows the packet",
			in:   dataplane.Service{FWMark: 7, Protocol: 6, Sched: "wrr", Kind: dataplane.DR, Reals: []dataplane.Real{{Addr: rs3, Weight: 2}}},
			want: entry{ipvs.Service{Family: ipvs.INET, FWMark: 7, Protocol: ipvs.TCP, Scheduler: "wrr", Netmask: netmask.MaskFrom(32, 32)},
				[]ipvs.Destination{{Family: ipvs.INET, Address: rs3, Weight: 2, FwdMethod: ipvs.DirectRoute}}},
		},
		{
			name: "SCTP",
			in:   dataplane.Service{VIP: vip, Port: 38412, Protocol: 132, Sched: "rr", Kind: dataplane.NAT},
			want: entry{svc: ipvs.Service{Family: ipvs.INET, Address: vip, Port: 38412, Protocol: ipvs.SCTP, Scheduler: "rr", Netmask: netmask.MaskFrom(32, 32)}},
		},
		{name: "unknown scheduler flag", in: dataplane.Service{VIP: vip, Port: 80, Protocol: 6, SchedFlags: []string{"sh-bogus"}, Kind: dataplane.NAT}, err: true},
		{name: "IPv6 VIP", in: dataplane.Service{VIP: netip.MustParseAddr("2001:db8::1"), Port: 80, Protocol: 6, Kind: dataplane.NAT}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := toEntry(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(entry{}), cmp.Comparer(func(a, b netmask.Mask) bool { return a.Equal(b) }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
