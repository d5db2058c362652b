package e2e

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/testbed"
)

// In TUN mode a DF datagram that no longer fits with the outer header gets
// "fragmentation needed" from the VIP, as the kernel's tunnel would send, and
// the client's kernel lowers its path MTU to the VIP accordingly.
func TestTunnelPathMTU(t *testing.T) {
	requireNetns(t)
	bin := xlbdBinary(t)
	s := scenario{"TUN", "generic", true}
	top, err := testbed.NewL2(t, testbed.Options{Reals: 3, VIPOnLB: true})
	if err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort := s.ports()
	if err := testbed.ServeReals(t, top, httpPort, udpPort); err != nil {
		t.Fatal(err)
	}
	for _, r := range top.Reals {
		waitFor(t, start(t, r, bin, "decap", "--interface", "eth0"), "ready")
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	s.config(t, cfg, top, 3)
	ctl := ctlSocket(t)
	d := start(t, top.LB, bin, "--config", cfg, "--pin-dir", bpffs(t), "--xdp-mode", "generic", "--control-socket", ctl, "--interface", top.LBFront)
	waitFor(t, d, "msg=ready")
	waitReachable(t, ctl)

	c, err := top.Client.Dial(context.Background(), "udp", top.VIP.String()+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	})
	if serr != nil {
		t.Fatal(serr)
	}
	pathMTU := func() int {
		var mtu int
		raw.Control(func(fd uintptr) { mtu, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU) })
		if serr != nil {
			t.Fatal(serr)
		}
		return mtu
	}

	// Small datagrams go through the tunnel and are answered.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("small")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), ":small") {
		t.Fatalf("small datagram: %q, %v", buf[:n], err)
	}
	if got := pathMTU(); got != 1500 {
		t.Fatalf("path MTU before: %d, want 1500", got)
	}

	// 1481 bytes of IP (1453 of payload) need 1501 with the outer header.
	big := make([]byte, 1481-28)
	deadline := time.Now().Add(5 * time.Second)
	for pathMTU() != 1480 {
		if time.Now().After(deadline) {
			t.Fatalf("path MTU stayed %d after oversized DF datagrams, want 1480", pathMTU())
		}
		if _, err := c.Write(big); err != nil && !errors.Is(err, syscall.EMSGSIZE) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.Write(big); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("sending %d bytes after the ICMP: %v, want EMSGSIZE", len(big)+28, err)
	}
	// The largest datagram that fits goes through, once the error the ICMP
	// left pending on the socket is read.
	raw.Control(func(fd uintptr) { _, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(make([]byte, 1480-28)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || n < 1480-28 {
		t.Fatalf("largest datagram that fits: %d bytes back, %v", n, err)
	}
}
