package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

var available = sync.OnceValue(probe)

// Available reports why topologies cannot be built here, or nil when they
// can. It really creates a namespace with a bridge and a veth pair, inside
// that namespace only, and deletes it again. The result is cached.
func Available() error { return available() }

func probe() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("testbed needs Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("testbed needs root (network namespaces, veth, bridge): euid is %d", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("testbed needs iproute2's ip for Netns.Run/Command: %w", err)
	}
	prefix, release, err := newPrefix("xtp")
	if err != nil {
		return err
	}
	defer release()
	if err := prepareNetnsDir(); err != nil {
		return fmt.Errorf("testbed unavailable: %w", err)
	}
	name := prefix + "-probe"
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends up in the probe namespace and
		// must die with this goroutine.
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("cannot create a network namespace: %w", err)
			return
		}
		h.Close()
		defer netns.DeleteNamed(name)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			errc <- fmt.Errorf("cannot create a bridge in a network namespace: %w", err)
			return
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a", MasterIndex: br.Index}, PeerName: "b"}
		if err := netlink.LinkAdd(v); err != nil {
			errc <- fmt.Errorf("cannot create a veth pair in a network namespace: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("testbed unavailable: %w", err)
	}
	return nil
}
