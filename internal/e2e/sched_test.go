package e2e

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// writeService writes one NAT service on VIP:80 with extra service lines
// (indented like the other keys) over reals given as "HOST:WEIGHT".
func (l *natLab) writeService(t *testing.T, extra string, reals ...string) {
	t.Helper()
	l.writeServiceOn(t, 80, extra, reals...)
}

// writeServiceOn is writeService on another port of the VIP (0: every
// port).
func (l *natLab) writeServiceOn(t *testing.T, port uint16, extra string, reals ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: %d\n    lb_kind: NAT\n%s    real_servers:\n", l.top.VIP, port, extra)
	for _, r := range reals {
		host, weight, _ := strings.Cut(r, ":")
		fmt.Fprintf(&b, "      - { address: 10.50.2.%s, port: 8080, weight: %s }\n", host, weight)
	}
	if err := os.WriteFile(l.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientAddrs gives the client extra addresses in its subnet, so that
// connections can come from several clients.
func (l *natLab) clientAddrs(t *testing.T, hosts ...int) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	err := l.top.Client.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, h := range hosts {
			a := netip.AddrFrom4([4]byte{10, 50, 1, byte(h)})
			addr, _ := netlink.ParseAddr(a.String() + "/24")
			if err := netlink.AddrAdd(link, addr); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getFrom sends one HTTP request on a new connection from src and returns
// the real that answered.
func (l *natLab) getFrom(t *testing.T, src netip.Addr) string {
	t.Helper()
	return l.getFromPort(t, src, 80)
}

// getFromPort is getFrom to another port of the VIP.
func (l *natLab) getFromPort(t *testing.T, src netip.Addr, port uint16) string {
	t.Helper()
	var conn net.Conn
	err := l.top.Client.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		conn, err = d.Dial("tcp", netip.AddrPortFrom(l.top.VIP, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("response to %s: %v", src, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// wrr with weights 3:2:1 over 60 new connections: exactly 30/20/10.
func TestWeightedRoundRobin(t *testing.T) {
	l := newNATLab(t)
	l.writeService(t, "    lb_algo: wrr\n", "11:3", "12:2", "13:1")
	waitFor(t, l.daemon(t), "msg=ready")
	got := map[string]int{}
	for i := 0; i < 60; i++ {
		got[l.getFrom(t, netip.Addr{})]++
	}
	if got["r1"] != 30 || got["r2"] != 20 || got["r3"] != 10 {
		t.Errorf("wrr 3:2:1 over 60 connections: %v, want r1 30, r2 20, r3 10", got)
	}
}

// sh keeps each client address on one real, and spreads several clients.
func TestSourceHashing(t *testing.T) {
	l := newNATLab(t)
	l.writeService(t, "    lb_algo: sh\n", "11:1", "12:1", "13:1")
	waitFor(t, l.daemon(t), "msg=ready")
	clients := l.clientAddrs(t, 20, 21, 22, 23, 24, 25, 26, 27)
	reals := map[string]bool{}
	for _, c := range clients {
		first := l.getFrom(t, c)
		reals[first] = true
		for i := 0; i < 4; i++ {
			if got := l.getFrom(t, c); got != first {
				t.Fatalf("sh: client %s went to %s, then %s", c, first, got)
			}
		}
	}
	if len(reals) < 2 {
		t.Errorf("sh sent 8 clients all to %v", reals)
	}
}

// rr with persistence_timeout keeps a client on one real while another
// client is spread; granularity /24 makes a client network one client.
func TestPersistence(t *testing.T) {
	l := newNATLab(t)
	l.writeService(t, "    lb_algo: rr\n    persistence_timeout: 300\n    persistence_granularity: 255.255.255.0\n",
		"11:1", "12:1", "13:1")
	waitFor(t, l.daemon(t), "msg=ready")
	clients := l.clientAddrs(t, 30, 31, 32)
	first := l.getFrom(t, clients[0])
	for i := 0; i < 9; i++ {
		c := clients[i%len(clients)]
		if got := l.getFrom(t, c); got != first {
			t.Fatalf("persistent /24: connection %d from %s went to %s, the network's template says %s", i, c, got, first)
		}
	}
}

// wlc, the default scheduler, over connections the client holds open:
// weights 3:2:1 and 12 connections give 6/4/2, IPVS's least
// overhead/weight choice each time; that is, the program's tree followed
// every connection the reals took.
func TestWeightedLeastConnections(t *testing.T) {
	l := newNATLab(t)
	l.writeService(t, "", "11:3", "12:2", "13:1")
	waitFor(t, l.daemon(t), "msg=ready")
	got := map[string]int{}
	for i := 0; i < 12; i++ {
		got[l.longLived(t).get(t)]++
	}
	if want := map[string]int{"r1": 6, "r2": 4, "r3": 2}; !maps.Equal(got, want) {
		t.Fatalf("12 held connections over weights 3:2:1 went %v, want %v", got, want)
	}
}

// A port-0 service takes every port of its VIP, and with persistence one
// template per client covers them all (IPVS's port-0 services: FTP's data
// connections follow the control connection this way).
func TestPortZeroPersistence(t *testing.T) {
	l := newNATLab(t)
	l.writeServiceOn(t, 0, "    lb_algo: rr\n    persistence_timeout: 300\n", "11:1", "12:1", "13:1")
	waitFor(t, l.daemon(t), "msg=ready")
	clients := l.clientAddrs(t, 30, 31, 32)
	seen := map[string]bool{}
	for _, c := range clients {
		first := l.getFromPort(t, c, 80)
		seen[first] = true
		for _, port := range []uint16{443, 8000, 22, 80} {
			if got := l.getFromPort(t, c, port); got != first {
				t.Fatalf("client %s: port %d went to %s, its first connection (port 80) to %s", c, port, got, first)
			}
		}
	}
	// rr gave each client's template the next real.
	if len(seen) != len(clients) {
		t.Fatalf("3 clients' templates went to %v; rr over 3 reals gives each its own", seen)
	}
}

// Weight 0 drains: the established connection keeps working on its real,
// new connections avoid it.
func TestQuiesceDrains(t *testing.T) {
	l := newNATLab(t)
	l.writeService(t, "    lb_algo: rr\n", "11:1", "12:1", "13:1")
	d := l.daemon(t)
	waitFor(t, d, "msg=ready")
	ll := l.longLived(t)
	first := ll.get(t)
	host := map[string]string{"r1": "11", "r2": "12", "r3": "13"}[first]
	var reals []string
	for _, h := range []string{"11", "12", "13"} {
		w := "1"
		if h == host {
			w = "0"
		}
		reals = append(reals, h+":"+w)
	}
	l.writeService(t, "    lb_algo: rr\n", reals...)
	d.Signal(syscall.SIGHUP)
	waitFor(t, d, "msg=reloaded")
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 12; i++ {
		if got := l.getFrom(t, netip.Addr{}); got == first {
			t.Fatalf("new connection %d went to quiesced %s", i, first)
		}
		if got := ll.get(t); got != first {
			t.Fatalf("the established connection moved from quiesced %s to %s", first, got)
		}
	}
}
