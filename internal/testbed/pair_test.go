package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func buildPair(t *testing.T, o PairOptions) *Pair {
	t.Helper()
	start := time.Now()
	p, err := NewPair(t, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v (%+v) built in %v", p, o, time.Since(start).Round(time.Millisecond))
	return p
}

func mustMAC(t *testing.T, p *Pair, ns *Netns, dev string) net.HardwareAddr {
	t.Helper()
	mac, err := p.MAC(ns, dev)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// unreachable fails t when from can ping dst within a second.
func unreachable(t *testing.T, from *Netns, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := from.Ping(ctx, dst); err == nil {
		t.Errorf("%s reaches %s", from, dst)
	}
}

func TestPair(t *testing.T) {
	requireTestbed(t)
	p := buildPair(t, PairOptions{NAT: true})
	ctx := ctxT(t)
	if len(p.Nodes) != 2 || p.LB1 != p.Nodes[0] || p.LB2 != p.Nodes[1] || len(p.Reals) != 3 {
		t.Fatalf("nodes %v, reals %v; want 2 and 3 by default", p.Nodes, p.Reals)
	}
	for _, ns := range p.Namespaces() {
		if !strings.HasPrefix(ns.Name, p.Prefix+"-") {
			t.Errorf("%s lacks the prefix %s", ns, p.Prefix)
		}
	}
	for _, port := range slices.Concat(p.FrontPorts, p.BackPorts) {
		if len(port) > 15 || !strings.HasPrefix(port, p.Prefix) {
			t.Errorf("bridge port %q", port)
		}
	}
	for i, n := range p.Nodes {
		for _, key := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/eth0/rp_filter", "net/ipv4/conf/eth1/rp_filter"} {
			want := "1"
			if strings.Contains(key, "rp_filter") {
				want = "0"
			}
			if got := readSysctl(t, n, key); got != want {
				t.Errorf("%s: %s = %s, want %s", n, key, got, want)
			}
		}
		for dev, a := range map[string]netip.Addr{p.Front: p.FrontAddrs[i], p.Back: p.BackAddrs[i]} {
			if ok, err := p.HasAddr(n, dev, a); err != nil || !ok {
				t.Errorf("%s/%s lacks %v: %v", n, dev, a, err)
			}
		}
		if err := p.Client.Ping(ctx, p.FrontAddrs[i]); err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Reals {
			if err := r.Ping(ctx, p.BackAddrs[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range []netip.Addr{p.VIP, p.GatewayVIP} {
		if hs := p.Holders(a); len(hs) > 0 {
			t.Errorf("%v held by %v before any VRRP daemon runs", a, hs)
		}
	}
	out, err := p.Reals[0].Run("ip", "-4", "route", "show", "default")
	if err != nil || !strings.Contains(string(out), "via "+p.GatewayVIP.String()) {
		t.Errorf("real's default route: %s %v", out, err)
	}
	if err := p.LB1.Ping(ctx, p.FrontAddrs[1]); err != nil {
		t.Fatal(err)
	}

	if err := p.Cut(true); err != nil {
		t.Fatal(err)
	}
	// Forget what the nodes learnt, so that the cut shows in ARP too.
	for _, n := range p.Nodes {
		if _, err := n.Run("ip", "neigh", "flush", "all"); err != nil {
			t.Fatal(err)
		}
	}
	unreachable(t, p.LB1, p.FrontAddrs[1])
	unreachable(t, p.LB2, p.BackAddrs[0])
	for i := range p.Nodes {
		if err := p.Client.Ping(ctx, p.FrontAddrs[i]); err != nil {
			t.Errorf("cut: %v", err)
		}
		if err := p.Reals[2].Ping(ctx, p.BackAddrs[i]); err != nil {
			t.Errorf("cut: %v", err)
		}
	}
	if err := p.Cut(false); err != nil {
		t.Fatal(err)
	}
	if err := p.LB1.Ping(ctx, p.FrontAddrs[1]); err != nil {
		t.Errorf("healed: %v", err)
	}
	if err := p.LB2.Ping(ctx, p.BackAddrs[0]); err != nil {
		t.Errorf("healed: %v", err)
	}
}

func TestPairCleanup(t *testing.T) {
	requireTestbed(t)
	var c Cleanups
	p, err := NewPair(&c, PairOptions{NAT: true, Nodes: 3, Reals: 1})
	if err != nil {
		c.Run()
		t.Fatal(err)
	}
	if len(p.Nodes) != 3 || !strings.HasSuffix(p.Nodes[2].Name, "-lb3") || p.FrontAddrs[2].String() != "10.50.1.13" || p.BackAddrs[2].String() != "10.50.2.13" {
		t.Errorf("third node %v %v %v", p.Nodes, p.FrontAddrs, p.BackAddrs)
	}
	if err := p.Nodes[2].Ping(ctxT(t), p.RealAddrs[0]); err != nil {
		t.Error(err)
	}
	if len(leftovers(t, p.Prefix)) == 0 {
		t.Fatal("no namespace with the prefix before cleanup")
	}
	c.Run()
	if left := leftovers(t, p.Prefix); len(left) > 0 {
		t.Errorf("left after cleanup: %q", left)
	}

	if _, err := NewPair(&c, PairOptions{Nodes: maxNodes + 1}); err == nil {
		t.Errorf("%d nodes accepted", maxNodes+1)
	}
	c.Run()
}

func requireKeepalived(t *testing.T) {
	t.Helper()
	requireTestbed(t)
	if _, err := os.Stat(KeepalivedPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func vrrpConf(router, state string, prio int) string {
	return fmt.Sprintf(`global_defs {
	router_id %s
}
vrrp_instance VI_1 {
	state %s
	interface eth0
	virtual_router_id 51
	priority %d
	advert_int 1
	authentication {
		auth_type PASS
		auth_pass xlbd
	}
	virtual_ipaddress {
		10.50.1.100/24 dev eth0
	}
}
`, router, state, prio)
}

// procState is the state letter of pid and its process group.
func procState(t *testing.T, pid int) (state, pgrp string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	return f[0], f[2]
}

func TestKeepalivedPair(t *testing.T) {
	requireKeepalived(t)
	p := buildPair(t, PairOptions{})
	start := time.Now()
	k1, err := StartKeepalived(t, p.LB1, vrrpConf("lb1", "MASTER", 150))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := StartKeepalived(t, p.LB2, vrrpConf("lb2", "BACKUP", 100))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("lb1 keepalived:\n%s\nlb2 keepalived:\n%s", k1.Output(), k2.Output())
		}
	}()
	wait := func(what string, d time.Duration, f func(context.Context) error) time.Duration {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		start := time.Now()
		if err := f(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(start)
		t.Logf("%s: %v", what, took.Round(time.Millisecond))
		return took
	}
	mac1, mac2 := mustMAC(t, p, p.LB1, "eth0"), mustMAC(t, p, p.LB2, "eth0")

	wait("lb1 MASTER after start", 10*time.Second, func(ctx context.Context) error {
		return p.WaitHolder(ctx, p.VIP, p.LB1)
	})
	t.Logf("started in %v", time.Since(start).Round(time.Millisecond))
	if err := k2.WaitFor("(VI_1) Entering BACKUP STATE", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Client.Ping(ctxT(t), p.VIP); err != nil {
		t.Fatal(err)
	}
	if got, err := p.ClientNeighMAC(p.VIP); err != nil || !bytes.Equal(got, mac1) {
		t.Fatalf("client resolved the VIP to %v (%v), want lb1's %v", got, err, mac1)
	}

	// Both parent and VRRP child are in the group the parent leads.
	vpid, err := k1.VRRPPid()
	if err != nil {
		t.Fatal(err)
	}
	if _, pgrp := procState(t, vpid); vpid == k1.Pid() || pgrp != fmt.Sprint(k1.Pid()) {
		t.Fatalf("VRRP child %d in group %s, parent %d", vpid, pgrp, k1.Pid())
	}

	// Split brain: the backup hears no adverts and takes the VIP too.
	if err := p.Cut(true); err != nil {
		t.Fatal(err)
	}
	wait("both MASTER after Cut", 10*time.Second, func(ctx context.Context) error {
		for ctx.Err() == nil {
			if len(p.Holders(p.VIP)) == 2 {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("holders %v", p.Holders(p.VIP))
	})
	if err := p.Cut(false); err != nil {
		t.Fatal(err)
	}
	wait("one MASTER after heal", 10*time.Second, func(ctx context.Context) error {
		return p.WaitHolder(ctx, p.VIP, p.LB1)
	})

	// A frozen master keeps the VIP but goes silent.
	if err := k1.Pause(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{k1.Pid(), vpid} {
		// Signals are delivered when the target is next scheduled.
		st := ""
		for range 100 {
			if st, _ = procState(t, pid); st == "T" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if st != "T" {
			t.Errorf("paused keepalived: pid %d in state %s", pid, st)
		}
	}
	wait("lb2 MASTER while lb1 is stopped", 10*time.Second, func(ctx context.Context) error {
		for ctx.Err() == nil {
			if ok, _ := p.HasAddr(p.LB2, "eth0", p.VIP); ok {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return ctx.Err()
	})
	if ok, _ := p.HasAddr(p.LB1, "eth0", p.VIP); !ok {
		t.Error("a stopped keepalived lost the VIP")
	}
	if err := k1.Resume(); err != nil {
		t.Fatal(err)
	}
	wait("lb1 alone again after SIGCONT", 10*time.Second, func(ctx context.Context) error {
		return p.WaitHolder(ctx, p.VIP, p.LB1)
	})

	// Resolve the VIP afresh, so that only lb2's gratuitous ARP can move
	// the entry after the failover.
	if _, err := p.Client.Run("ip", "neigh", "flush", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := p.Client.Ping(ctxT(t), p.VIP); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.ClientNeighMAC(p.VIP); !bytes.Equal(got, mac1) {
		t.Fatalf("client resolved the VIP to %v, want lb1's %v", got, mac1)
	}

	var stopped sync.WaitGroup
	stopped.Go(k1.Stop) // SIGTERM: priority 0 advert, VIP dropped
	failover := time.Now()
	wait("failover to lb2 after SIGTERM", 10*time.Second, func(ctx context.Context) error {
		return p.WaitHolder(ctx, p.VIP, p.LB2)
	})
	wait("client's neighbour entry follows", 5*time.Second, func(ctx context.Context) error {
		return p.WaitClientNeighMAC(ctx, p.VIP, mac2)
	})
	t.Logf("failover incl. gratuitous ARP: %v", time.Since(failover).Round(time.Millisecond))
	stopped.Wait()
	if err := k1.Signal(syscall.Signal(0)); err == nil {
		t.Error("lb1's keepalived still runs after Stop")
	}
	if err := p.Client.Ping(ctxT(t), p.VIP); err != nil {
		t.Fatal(err)
	}
}
