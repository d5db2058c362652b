package reconcile

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane/xdp"
)

// BenchmarkPlan is the model step the daemon takes on every reload and on
// every health change: the configuration, less the reals the health
// checks hold down, made into the data plane's state for the XDP
// backend's limits. 100 services × 10 reals is a busy balancer; 10 × 1,000
// is issue 11's 10,000 reals.
func BenchmarkPlan(b *testing.B) {
	caps := xdp.Capabilities()
	for _, c := range []struct{ services, reals, down int }{
		{100, 10, 0},
		{100, 10, 1},
		{10, 1000, 0},
		{10, 1000, 1},
	} {
		b.Run(fmt.Sprintf("services=%d/reals=%d/down=%d", c.services, c.reals, c.down), func(b *testing.B) {
			cfg := benchConfig(b, c.services, c.reals)
			// Down in every service: a real address that several
			// services share fails for all of them.
			var h Health
			if c.down > 0 {
				d := downSet{}
				for i := 0; i < c.down; i++ {
					d[benchReal(7*i+3)] = true
				}
				h = d
			}
			want := c.services*c.reals - c.services*c.down
			b.ReportAllocs()
			for b.Loop() {
				st, _, err := PlanHeld(cfg, &caps, h, nil)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, s := range st.Services {
					n += len(s.Reals)
				}
				if n != want {
					b.Fatalf("%d reals planned, want %d", n, want)
				}
			}
		})
	}
}

// benchReal is real i of a service: 250 addresses on one port, then the
// next port.
func benchReal(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 50, 2, byte(1 + i%250)}), uint16(8080+i/250))
}

// downSet holds the reals it lists down, by address and port.
type downSet map[netip.AddrPort]bool

func (d downSet) Real(_ *config.VirtualServer, rs *config.RealServer) (bool, int) {
	if d[netip.AddrPortFrom(rs.Address, rs.Port)] {
		return false, 0
	}
	return true, rs.Weight
}

func (downSet) Sorry(*config.VirtualServer) (bool, int) { return false, 0 }

// benchConfig is lb.yaml with services NAT services of reals reals each,
// every real with a TCP_CHECK, as the daemon holds it after parsing.
func benchConfig(b *testing.B, services, reals int) *config.Config {
	b.Helper()
	var y strings.Builder
	y.WriteString("virtual_servers:\n")
	for s := 0; s < services; s++ {
		fmt.Fprintf(&y, "  - address: 10.50.1.100\n    port: %d\n    protocol: TCP\n    lb_algo: %s\n    lb_kind: NAT\n    real_servers:\n",
			1000+s, []string{"wlc", "rr"}[s%2])
		for i := 0; i < reals; i++ {
			r := benchReal(i)
			fmt.Fprintf(&y, "      - { address: %s, port: %d, weight: %d, checkers: [ TCP_CHECK ] }\n", r.Addr(), r.Port(), 1+i%5)
		}
	}
	cfg, err := config.Parse("lb.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}
