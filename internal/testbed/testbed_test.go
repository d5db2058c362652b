package testbed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func requireTestbed(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func build(t *testing.T, mode Mode, o Options) *Topology {
	t.Helper()
	start := time.Now()
	topo, err := New(t, mode, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v topology %s (%+v) built in %v", mode, topo.Prefix, o, time.Since(start).Round(time.Millisecond))
	return topo
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serveTCP answers every connection to addr in ns with reply.
func serveTCP(t *testing.T, ns *Netns, addr, reply string) {
	t.Helper()
	l, err := ns.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, reply)
			c.Close()
		}
	}()
}

func dialRead(ctx context.Context, ns *Netns, addr string) (string, error) {
	c, err := ns.Dial(ctx, "tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func linkMAC(t *testing.T, ns *Netns, name string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func neighMAC(t *testing.T, ns *Netns, dev string, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		ns, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		for _, n := range ns {
			if n.IP.Equal(ip.AsSlice()) {
				mac = n.HardwareAddr
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func readSysctl(t *testing.T, ns *Netns, key string) string {
	t.Helper()
	var v []byte
	err := ns.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

func TestTopologies(t *testing.T) {
	requireTestbed(t)
	for _, mode := range []Mode{NAT, L2} {
		for _, onLB := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/VIPOnLB=%v", mode, onLB), func(t *testing.T) {
				topo := build(t, mode, Options{VIPOnLB: onLB})
				ctx := ctxT(t)
				if len(topo.Reals) != 3 || len(topo.RealAddrs) != 3 {
					t.Fatalf("%d reals, %d addresses; want 3 by default", len(topo.Reals), len(topo.RealAddrs))
				}
				if err := topo.Client.Ping(ctx, topo.LBFrontAddr); err != nil {
					t.Fatal(err)
				}
				for i, r := range topo.Reals {
					addr := netip.AddrPortFrom(topo.RealAddrs[i], 8080).String()
					serveTCP(t, r, addr, r.Name)
					got, err := dialRead(ctx, topo.LB, addr)
					if err != nil || got != r.Name {
						t.Fatalf("LB -> %s: %q, %v; want %q", addr, got, err, r.Name)
					}
				}

				if onLB {
					// Only the LB may answer ARP for the VIP: in L2 the
					// reals hold it too.
					if err := topo.Client.Ping(ctx, topo.VIP); err != nil {
						t.Fatal(err)
					}
					got := neighMAC(t, topo.Client, "eth0", topo.VIP)
					want := linkMAC(t, topo.LB, topo.LBFront)
					if !bytes.Equal(got, want) {
						t.Errorf("client resolved the VIP to %v, want the LB's %v", got, want)
					}
				} else {
					out, err := topo.Client.Run("ip", "-4", "route", "get", topo.VIP.String())
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(string(out), "via "+topo.LBFrontAddr.String()) {
						t.Errorf("client route to the VIP: %s", out)
					}
				}

				switch mode {
				case NAT:
					// The reals' default route (the client has no route
					// back to the reals' subnet, as with IPVS NAT).
					if err := topo.Reals[0].Ping(ctx, topo.LBFrontAddr); err != nil {
						t.Fatal(err)
					}
				case L2:
					if err := topo.Client.Ping(ctx, topo.RealAddrs[0]); err != nil {
						t.Fatal(err)
					}
					for _, r := range topo.Reals {
						for key, want := range map[string]string{
							"net/ipv4/conf/eth0/arp_ignore":   "1",
							"net/ipv4/conf/eth0/arp_announce": "2",
							"net/ipv4/conf/all/arp_ignore":    "1",
							"net/ipv4/conf/all/arp_announce":  "2",
							"net/ipv4/conf/all/rp_filter":     "0",
							"net/ipv4/conf/eth0/rp_filter":    "0",
						} {
							if got := readSysctl(t, r, key); got != want {
								t.Errorf("%s: %s = %s, want %s", r, key, got, want)
							}
						}
						out, err := r.Run("ip", "-4", "addr", "show", "dev", "lo")
						if err != nil {
							t.Fatal(err)
						}
						if !strings.Contains(string(out), topo.VIP.String()+"/32") {
							t.Errorf("%s: no VIP on lo: %s", r, out)
						}
					}
				}
				if got := readSysctl(t, topo.LB, "net/ipv4/ip_forward"); got != "1" {
					t.Errorf("LB ip_forward = %s", got)
				}
				for _, ns := range topo.Namespaces() {
					out, err := ns.Run("ip", "-6", "addr")
					if err != nil {
						t.Fatal(err)
					}
					if len(bytes.TrimSpace(out)) > 0 {
						t.Errorf("%s has IPv6 addresses: %s", ns, out)
					}
				}
			})
		}
	}
}

// names lists every namespace and bridge port name of a topology.
func names(t *testing.T, topo *Topology) []string {
	t.Helper()
	var ns []string
	for _, n := range topo.Namespaces() {
		ns = append(ns, n.Name)
	}
	out, err := topo.Bridge.Run("ip", "-o", "link", "show", "master", "br0")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		port, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if len(port) > 15 {
			t.Errorf("interface name %q longer than 15", port)
		}
		ns = append(ns, port)
	}
	for _, n := range ns {
		if !strings.HasPrefix(n, topo.Prefix) {
			t.Errorf("%q lacks the prefix %q", n, topo.Prefix)
		}
	}
	return ns
}

func TestUniqueNames(t *testing.T) {
	requireTestbed(t)
	var (
		wg    sync.WaitGroup
		topos [2]*Topology
		errs  [2]error
	)
	for i, mode := range []Mode{NAT, L2} {
		wg.Go(func() { topos[i], errs[i] = New(t, mode, Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if topos[0].Prefix == topos[1].Prefix {
		t.Fatalf("both topologies have prefix %s", topos[0].Prefix)
	}
	a, b := names(t, topos[0]), names(t, topos[1])
	t.Logf("%v\n%v", a, b)
	for _, n := range a {
		if slices.Contains(b, n) {
			t.Errorf("%s is in both topologies", n)
		}
	}
}

// leftovers lists the namespaces and host links whose names contain prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	var left []string
	for _, cmd := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link", "show"}} {
		out, err := hostRun(cmd...)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, prefix) {
				left = append(left, line)
			}
		}
	}
	return left
}

func TestCleanup(t *testing.T) {
	requireTestbed(t)
	for _, mode := range []Mode{NAT, L2} {
		t.Run(mode.String(), func(t *testing.T) {
			var c Cleanups
			topo, err := New(&c, mode, Options{XDPPeers: true})
			if err != nil {
				c.Run()
				t.Fatal(err)
			}
			if len(leftovers(t, topo.Prefix)) == 0 {
				t.Fatal("no namespace with the prefix before cleanup")
			}
			start := time.Now()
			c.Run()
			t.Logf("teardown %v", time.Since(start).Round(time.Millisecond))
			if left := leftovers(t, topo.Prefix); len(left) > 0 {
				t.Errorf("left after cleanup: %q", left)
			}
			c.Run() // a second run is harmless
		})
	}

	t.Run("failed build", func(t *testing.T) {
		// veth's maximum MTU is 65535: this fails after the namespaces
		// exist, and New must remove them before it returns.
		var c Cleanups
		_, err := New(&c, NAT, Options{MTU: 70000})
		if err == nil {
			c.Run()
			t.Fatal("MTU 70000 accepted")
		}
		t.Log(err)
		prefix := regexp.MustCompile(`xt[0-9a-f]{4}`).FindString(err.Error())
		if prefix == "" {
			t.Fatalf("error does not name the prefix: %v", err)
		}
		if left := leftovers(t, prefix); len(left) > 0 {
			t.Errorf("left after a failed build: %q", left)
		}
	})
}

func TestXDPPeers(t *testing.T) {
	requireTestbed(t)
	for _, mode := range []Mode{NAT, L2} {
		t.Run(mode.String(), func(t *testing.T) {
			topo := build(t, mode, Options{XDPPeers: true, VIPOnLB: true})
			for _, p := range []Link{topo.LBFrontPeer, topo.LBBackPeer} {
				out, err := hostRun("ip", "-n", p.NS.Name, "link", "show", "dev", p.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(out), "xdp") {
					t.Errorf("%s/%s has no XDP program: %s", p.NS, p.Name, out)
				}
			}
			// The LB's own interfaces stay free for xlbd's program.
			for _, dev := range []string{topo.LBFront, topo.LBBack} {
				out, err := topo.LB.Run("ip", "link", "show", "dev", dev)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(out), "xdp") {
					t.Errorf("LB %s has an XDP program: %s", dev, out)
				}
			}
			for _, ns := range append([]*Netns{topo.Client}, topo.Reals...) {
				out, err := ns.Run("ethtool", "-k", "eth0")
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(out), "tx-checksumming: off") {
					t.Errorf("%s: tx checksumming still on:\n%s", ns, out)
				}
			}
			// Plain forwarding still works with the peer programs.
			if err := topo.Client.Ping(ctxT(t), topo.VIP); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMTU(t *testing.T) {
	requireTestbed(t)
	for _, mode := range []Mode{NAT, L2} {
		t.Run(mode.String(), func(t *testing.T) {
			topo := build(t, mode, Options{MTU: 1600, Reals: 2, XDPPeers: true})
			mtu := func(ns *Netns, dev string) int {
				var m int
				if err := ns.Do(func() error {
					l, err := netlink.LinkByName(dev)
					if err == nil {
						m = l.Attrs().MTU
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return m
			}
			check := func(ns *Netns, dev string, want int) {
				if got := mtu(ns, dev); got != want {
					t.Errorf("%s/%s MTU %d, want %d", ns, dev, got, want)
				}
			}
			check(topo.LB, topo.LBBack, 1600)
			check(topo.LBBackPeer.NS, topo.LBBackPeer.Name, 1600)
			check(topo.Client, "eth0", 1500)
			if mode == NAT {
				check(topo.LB, topo.LBFront, 1500)
			}
			for i, r := range topo.Reals {
				check(r, "eth0", 1600)
				check(topo.Bridge, fmt.Sprintf("%s-r%d", topo.Prefix, i+1), 1600)
			}
			// A full-size frame crosses the bigger-MTU path.
			ctx := ctxT(t)
			addr := netip.AddrPortFrom(topo.RealAddrs[0], 9000).String()
			big := strings.Repeat("x", 100000)
			serveTCP(t, topo.Reals[0], addr, big)
			if got, err := dialRead(ctx, topo.LB, addr); err != nil || got != big {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestHTTPClientNewConnections(t *testing.T) {
	requireTestbed(t)
	topo := build(t, NAT, Options{Reals: 1})
	l, err := topo.Reals[0].Listen("tcp4", netip.AddrPortFrom(topo.RealAddrs[0], 80).String())
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	hc := topo.LB.HTTPClient()
	for range 3 {
		resp, err := hc.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests, want 3", n)
	}
}

func TestDo(t *testing.T) {
	requireTestbed(t)
	topo := build(t, L2, Options{Reals: 1})
	var names []string
	err := topo.Client.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"lo", "eth0"}) {
		t.Errorf("interfaces in the client: %v", names)
	}
	if err := topo.Client.Do(func() error { return io.ErrUnexpectedEOF }); err != io.ErrUnexpectedEOF {
		t.Errorf("Do returned %v", err)
	}
}

// hostRun runs a read-only command in the host's namespaces.
func hostRun(args ...string) ([]byte, error) {
	out, err := osexec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%v: %w: %s", args, err, out)
	}
	return out, nil
}

func TestDoPanicAndGoexit(t *testing.T) {
	requireTestbed(t)
	topo := build(t, L2, Options{Reals: 1})
	if err := topo.Client.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Goexit in Do: no error")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "boom") {
			t.Errorf("recovered %v, want the panic from inside Do", r)
		}
	}()
	topo.Client.Do(func() error { panic("boom") })
}
