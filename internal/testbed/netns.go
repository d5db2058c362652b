// Package testbed builds network-namespace topologies (client, load balancer,
// bridge, real servers) for tests and for the demo program. Everything it
// creates lives in namespaces it made itself, so the host's interfaces and
// routes are never touched and teardown is just deleting those namespaces.
package testbed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// Cleanuper registers f to run when the topology is torn down; *testing.T's
// Cleanup fits.
type Cleanuper interface{ Cleanup(func()) }

// Cleanups is a Cleanuper for programs that have no *testing.T.
type Cleanups struct {
	mu sync.Mutex
	fs []func()
}

// Cleanup registers f.
func (c *Cleanups) Cleanup(f func()) {
	c.mu.Lock()
	c.fs = append(c.fs, f)
	c.mu.Unlock()
}

// Run runs the registered functions last-in first-out, each at most once, so
// that it may be called from both an error path and a deferred teardown.
func (c *Cleanups) Run() {
	for {
		c.mu.Lock()
		if len(c.fs) == 0 {
			c.mu.Unlock()
			return
		}
		f := c.fs[len(c.fs)-1]
		c.fs = c.fs[:len(c.fs)-1]
		c.mu.Unlock()
		f()
	}
}

// Netns is a named network namespace, as listed by `ip netns`.
type Netns struct {
	Name string
}

func (n *Netns) String() string { return n.Name }

type panicked struct{ v any }

// Do runs f on a fresh OS thread inside the namespace. The thread is never
// unlocked, so the Go runtime destroys it when f returns instead of handing a
// thread in the wrong namespace to other goroutines. Sockets opened by f stay
// in the namespace and may be used from any goroutine afterwards.
func (n *Netns) Do(f func() error) error {
	res := make(chan any, 1)
	go func() {
		runtime.LockOSThread()
		returned := false
		defer func() {
			if r := recover(); r != nil {
				res <- panicked{fmt.Sprintf("%v\n%s", r, debug.Stack())}
			} else if !returned {
				// t.FailNow and friends end the goroutine with
				// runtime.Goexit; the caller must not wait forever.
				res <- fmt.Errorf("netns %s: function called runtime.Goexit", n.Name)
			}
		}()
		h, err := netns.GetFromName(n.Name)
		if err != nil {
			returned = true
			res <- fmt.Errorf("netns %s: %w", n.Name, err)
			return
		}
		err = netns.Set(h)
		h.Close()
		if err != nil {
			returned = true
			res <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		err = f()
		returned = true
		res <- err
	}()
	switch r := (<-res).(type) {
	case nil:
		return nil
	case panicked:
		panic(fmt.Sprintf("in netns %s: %v", n.Name, r.v))
	default:
		return r.(error)
	}
}

// Command returns `ip netns exec NAME name args...`, not started; the caller
// owns the process.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs name in the namespace and returns its combined output; when it
// fails, the output is part of the error too.
func (n *Netns) Run(name string, args ...string) ([]byte, error) {
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip netns exec %s %s %s: %w: %s",
			n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Listen is net.Listen inside the namespace.
func (n *Netns) Listen(network, addr string) (l net.Listener, err error) {
	err = n.Do(func() error {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket inside the namespace.
func (n *Netns) ListenPacket(network, addr string) (c net.PacketConn, err error) {
	err = n.Do(func() error {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace.
func (n *Netns) Dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = n.Do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose connections start inside the namespace.
// Keep-alives are off so that every request is a new TCP connection (a new
// flow for the load balancer), and no proxy from the environment is used, so
// requests never leave the topology.
func (n *Netns) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       n.Dial,
			DisableKeepAlives: true,
		},
	}
}

// Ping sends ICMP echo requests to dst from inside the namespace until one is
// answered or ctx ends (after 3 s when ctx has no deadline). It exists because
// the test machines have no ping binary.
func (n *Netns) Ping(ctx context.Context, dst netip.Addr) error {
	if !dst.Is4() {
		return fmt.Errorf("ping %v: only IPv4", dst)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	c, err := n.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("ping %v from %s: %w", dst, n.Name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	id := uint16(time.Now().UnixNano())
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	// Resend now and then: the first request can be lost while the
	// neighbour entry is still being resolved.
	for seq := uint16(1); ; seq++ {
		if _, err := c.WriteTo(echoRequest(id, seq), to); err != nil {
			return fmt.Errorf("ping %v from %s: %w", dst, n.Name, err)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			m, from, err := c.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("ping %v from %s: no reply: %w", dst, n.Name, ctx.Err())
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("ping %v from %s: %w", dst, n.Name, err)
			}
			ip, ok := from.(*net.IPAddr)
			if ok && m >= 8 && buf[0] == 0 && ip.IP.Equal(to.IP) &&
				binary.BigEndian.Uint16(buf[4:]) == id {
				return nil
			}
		}
	}
}

func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "xlbd testbed....")
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}
