package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/internal/testbed"
)

// vrrpConf is one vrrp_instance in keepalived.conf syntax: both keepalived
// and xlbd read the same file, which is the drop-in promise.
type vrrpConf struct {
	Name      string // instance name, VI_1 when empty
	VRID      int
	Version   int // 2 or 3
	State     string
	Priority  int
	AdvertInt string // "1", "0.1"
	Pass      string // auth_type PASS with this password (v2)
	NoPreempt bool
	// Unicast: the node's own front address and its peers'.
	UnicastSrc   netip.Addr
	UnicastPeers []netip.Addr
	VIPs         []string // "10.50.1.100/24 dev eth0"
	Extra        string   // more lines inside the instance
	Global       string   // lines of global_defs
	After        string   // blocks after the instance (virtual_server, ...)
}

func (c vrrpConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version %d\n%s}\n", "xlbd_e2e", c.Version, c.Global)
	b.WriteString(c.instance())
	b.WriteString(c.After)
	return b.String()
}

func (c vrrpConf) instance() string {
	var b strings.Builder
	name := c.Name
	if name == "" {
		name = "VI_1"
	}
	fmt.Fprintf(&b, "vrrp_instance %s {\n  state %s\n  interface eth0\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
		name, c.State, c.VRID, c.Priority, c.AdvertInt)
	if c.Version != 0 {
		fmt.Fprintf(&b, "  version %d\n", c.Version)
	}
	if c.Pass != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", c.Pass)
	}
	if c.NoPreempt {
		b.WriteString("  nopreempt\n")
	}
	if c.UnicastSrc.IsValid() {
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n", c.UnicastSrc)
		for _, p := range c.UnicastPeers {
			fmt.Fprintf(&b, "    %s\n", p)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("  virtual_ipaddress {\n")
	for _, v := range c.VIPs {
		fmt.Fprintf(&b, "    %s\n", v)
	}
	b.WriteString("  }\n")
	b.WriteString(c.Extra)
	b.WriteString("}\n")
	return b.String()
}

// vrrpNode is a VRRP daemon on one LB node: xlbd or keepalived.
type vrrpNode interface {
	// stop is SIGTERM and waiting for the exit.
	stop()
	pause() error
	resume() error
	output() string
	kind() string
}

type xlbdNode struct {
	t      testing.TB
	p      *testbed.Process
	ctl    string
	paused atomic.Bool
}

// stop sends SIGCONT only to a paused daemon: Go handles SIGCONT, so one
// sent anyway would wake a thread of the daemon just ahead of the SIGTERM
// that failovers are timed from (keepalived leaves SIGCONT to the kernel).
func (n *xlbdNode) stop() {
	if n.paused.Load() {
		n.resume()
	}
	n.p.Stop()
}

func (n *xlbdNode) pause() error {
	n.paused.Store(true)
	return n.p.Signal(syscall.SIGSTOP)
}

func (n *xlbdNode) resume() error {
	err := n.p.Signal(syscall.SIGCONT)
	if err == nil {
		n.paused.Store(false)
	}
	return err
}
func (n *xlbdNode) output() string { return n.p.Output() }
func (n *xlbdNode) kind() string   { return "xlbd" }

// status is the daemon's `xlbd status --json`.
func (n *xlbdNode) status() (control.Report, error) {
	var rep control.Report
	out, err := exec.Command(xlbdBinary(n.t), "status", "--json", "--control-socket", n.ctl).Output()
	if err != nil {
		return rep, err
	}
	return rep, json.Unmarshal(out, &rep)
}

func (n *xlbdNode) instance(name string) (control.VRRPInstance, error) {
	rep, err := n.status()
	if err != nil {
		return control.VRRPInstance{}, err
	}
	for _, v := range rep.VRRP {
		if v.Name == name {
			return v, nil
		}
	}
	return control.VRRPInstance{}, fmt.Errorf("no instance %s in status", name)
}

type keepalivedNode struct{ k *testbed.Keepalived }

func (n keepalivedNode) stop()          { n.k.Stop() } // resumes a paused one first
func (n keepalivedNode) pause() error   { return n.k.Pause() }
func (n keepalivedNode) resume() error  { return n.k.Resume() }
func (n keepalivedNode) output() string { return n.k.Output() }
func (n keepalivedNode) kind() string   { return "keepalived" }

// startXLBD runs xlbd on conf in ns, VRRP on eth0, XDP in generic mode on
// the node's interfaces.
func startXLBD(t testing.TB, ns *testbed.Netns, conf string, ifaces ...string) *xlbdNode {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(ifaces) == 0 {
		ifaces = []string{"eth0"}
	}
	n := &xlbdNode{t: t, ctl: filepath.Join(dir, "xlbd.sock")}
	args := []string{"--config", path, "--pin-dir", bpffs(t), "--xdp-mode", "generic", "--control-socket", n.ctl, "--metrics-addr", ""}
	for _, i := range ifaces {
		args = append(args, "--interface", i)
	}
	n.p = start(t, ns, xlbdBinary(t), args...)
	t.Cleanup(func() { n.resume() })
	if err := n.p.WaitFor(`msg=ready`, 20*time.Second); err != nil {
		t.Fatalf("xlbd in %s: %v\n%s", ns, err, n.p.Output())
	}
	return n
}

func startKeepalived(t testing.TB, ns *testbed.Netns, conf string) keepalivedNode {
	t.Helper()
	k, err := testbed.StartKeepalived(t, ns, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keepalived in %s:\n%s", ns, k.Output())
		}
	})
	return keepalivedNode{k}
}

func startNode(t testing.TB, kind string, ns *testbed.Netns, conf string) vrrpNode {
	if kind == "keepalived" {
		return startKeepalived(t, ns, conf)
	}
	return startXLBD(t, ns, conf)
}

// waitHolder waits until want, and want alone, holds a; nil: no one.
func waitHolder(t testing.TB, p *testbed.Pair, a netip.Addr, want *testbed.Netns, limit time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	t0 := time.Now()
	if err := p.WaitHolder(ctx, a, want); err != nil {
		t.Fatalf("%v: want %v as the only holder within %v, have %v: %v", a, want, limit, p.Holders(a), err)
	}
	return time.Since(t0)
}

// soleHolder checks for d that want holds a and no other node does.
func soleHolder(t testing.TB, p *testbed.Pair, a netip.Addr, want *testbed.Netns, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if h := p.Holders(a); len(h) != 1 || h[0] != want {
			t.Fatalf("%v held by %v, want %v alone", a, h, want)
		}
	}
}

// TestVRRPInterop puts xlbd and Debian's keepalived in one VRRP pair, each
// as MASTER and as BACKUP, for VRRPv2 with PASS authentication, VRRPv3 over
// IPv4 and unicast: the VIP is on exactly one node, moves when the master
// stops (SIGTERM) or hangs (SIGSTOP), and comes back by preemption.
func TestVRRPInterop(t *testing.T) {
	requireNetns(t)
	if _, err := os.Stat(testbed.KeepalivedPath); err != nil {
		t.Fatalf("keepalived is not installed (make deps installs it): %v", err)
	}
	modes := []struct {
		name string
		conf func(p *testbed.Pair, node int) vrrpConf
	}{
		{"v2-pass", func(p *testbed.Pair, node int) vrrpConf {
			return vrrpConf{VRID: 51, Version: 2, AdvertInt: "1", Pass: "secret1"}
		}},
		{"v3", func(p *testbed.Pair, node int) vrrpConf {
			return vrrpConf{VRID: 52, Version: 3, AdvertInt: "1"}
		}},
		{"v2-unicast", func(p *testbed.Pair, node int) vrrpConf {
			return vrrpConf{VRID: 53, Version: 2, AdvertInt: "1", UnicastSrc: p.FrontAddrs[node],
				UnicastPeers: []netip.Addr{p.FrontAddrs[1-node]}}
		}},
	}
	for _, m := range modes {
		for _, master := range []string{"xlbd", "keepalived"} {
			backup := "keepalived"
			if master == "keepalived" {
				backup = "xlbd"
			}
			t.Run(fmt.Sprintf("%s/%s-master", m.name, master), func(t *testing.T) {
				t.Parallel()
				p, err := testbed.NewPair(t, testbed.PairOptions{})
				if err != nil {
					t.Fatal(err)
				}
				conf := func(node int, state string, prio int) string {
					c := m.conf(p, node)
					c.State, c.Priority = state, prio
					c.VIPs = []string{p.VIP.String() + "/24 dev eth0"}
					return c.String()
				}
				mconf, bconf := conf(0, "MASTER", 150), conf(1, "BACKUP", 100)
				mn := startNode(t, master, p.LB1, mconf)
				bn := startNode(t, backup, p.LB2, bconf)
				waitHolder(t, p, p.VIP, p.LB1, 10*time.Second)
				soleHolder(t, p, p.VIP, p.LB1, 1500*time.Millisecond)
				if err := p.Client.Ping(t.Context(), p.VIP); err != nil {
					t.Fatalf("client cannot reach the VIP: %v", err)
				}

				// The master hangs: the backup takes over, and gives the
				// VIP back when the master wakes (it preempts at once).
				if err := mn.pause(); err != nil {
					t.Fatal(err)
				}
				took := waitHolderExcept(t, p, p.VIP, p.LB2, p.LB1, 6*time.Second)
				t.Logf("%s master hung: %s took the VIP in %v", master, backup, took.Round(time.Millisecond))
				if err := mn.resume(); err != nil {
					t.Fatal(err)
				}
				waitHolder(t, p, p.VIP, p.LB1, 5*time.Second)

				// The master stops: priority 0 hands over within Skew.
				// Timed from the signal: keepalived takes a while to exit
				// after it has sent its priority 0.
				stopped := make(chan struct{})
				go func() { mn.stop(); close(stopped) }()
				took = waitHolder(t, p, p.VIP, p.LB2, 3*time.Second)
				<-stopped
				t.Logf("%s master stopped: %s took the VIP in %v", master, backup, took.Round(time.Millisecond))
				soleHolder(t, p, p.VIP, p.LB2, time.Second)

				// It comes back and preempts.
				startNode(t, master, p.LB1, mconf)
				waitHolder(t, p, p.VIP, p.LB1, 10*time.Second)
				soleHolder(t, p, p.VIP, p.LB1, time.Second)
				if x, ok := bn.(*xlbdNode); ok {
					v, err := x.instance("VI_1")
					if err != nil {
						t.Fatal(err)
					}
					if v.State != "BACKUP" || v.AdvertsReceived == 0 || v.Master != p.FrontAddrs[0].String() {
						t.Errorf("xlbd BACKUP's status: %+v", v)
					}
					if n := sumErrors(v.Errors); n != 0 {
						t.Errorf("xlbd counted errors from a keepalived peer: %v", v.Errors)
					}
				}
			})
		}
	}
}

// waitHolderExcept is waitHolder while old may keep the address too: a
// hung node cannot give it up.
func waitHolderExcept(t testing.TB, p *testbed.Pair, a netip.Addr, want, old *testbed.Netns, limit time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < limit {
		for _, h := range p.Holders(a) {
			if h == want {
				return time.Since(t0)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%v: %v did not take it within %v (holders %v)", a, want, limit, p.Holders(a))
	return 0
}

func sumErrors(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
