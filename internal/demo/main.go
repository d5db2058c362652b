// Command demo is `make demo`: for each forwarding mode it builds a
// network-namespace lab (client, LB, three real servers), runs xlbd on a
// config from testdata, sends 30 HTTP requests through the VIP, prints
// which real served each and the per-real counters read from the pinned
// maps, and removes everything again.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/maps"
)

func main() {
	bin := flag.String("xlbd", "bin/xlbd", "the xlbd binary")
	testdata := flag.String("testdata", "testdata", "directory with demo-{nat,dr,tun}.yaml")
	modes := flag.String("modes", "NAT,DR,TUN", "forwarding modes to show")
	xdpMode := flag.String("xdp-mode", "auto", "passed to xlbd")
	verbose := flag.Bool("v", false, "show xlbd's log")
	flag.Parse()

	abs, err := filepath.Abs(*bin)
	if err != nil {
		fail(err)
	}
	if err := testbed.Available(); err != nil {
		fail(fmt.Errorf("the demo needs root and network namespaces: %w", err))
	}
	for _, m := range strings.Split(*modes, ",") {
		if err := demo(abs, *testdata, strings.ToUpper(strings.TrimSpace(m)), *xdpMode, *verbose); err != nil {
			fail(fmt.Errorf("%s: %w", m, err))
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	os.Exit(1)
}

func demo(bin, testdata, mode, xdpMode string, verbose bool) error {
	c := &testbed.Cleanups{}
	defer c.Run()
	// Ctrl-C still removes the lab.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			c.Run()
			os.Exit(130)
		}
	}()

	opts := testbed.Options{Reals: 3, VIPOnLB: true}
	var top *testbed.Topology
	var err error
	httpPort := 80
	switch mode {
	case "NAT":
		top, err = testbed.NewNAT(c, opts)
		httpPort = 8080
	case "DR", "TUN":
		top, err = testbed.NewL2(c, opts)
	default:
		return fmt.Errorf("unknown mode")
	}
	if err != nil {
		return err
	}
	fmt.Printf("\n=== %s: client %s -> VIP %s:80 -> reals %v (namespaces %s-*)\n",
		mode, top.ClientAddr, top.VIP, top.RealAddrs, top.Prefix)
	if err := testbed.ServeReals(c, top, httpPort, 5353); err != nil {
		return err
	}
	var echo io.Writer
	if verbose {
		echo = os.Stderr
	}
	if mode == "TUN" {
		for _, r := range top.Reals {
			p, err := testbed.Start(c, r, echo, bin, "decap", "--interface", "eth0")
			if err != nil {
				return err
			}
			if err := p.WaitFor("ready", 20*time.Second); err != nil {
				return err
			}
		}
	}

	pin, err := os.MkdirTemp("", "xlbd-demo-bpf")
	if err != nil {
		return err
	}
	c.Cleanup(func() { os.Remove(pin) })
	if err := unix.Mount("bpf", pin, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	c.Cleanup(func() { unix.Unmount(pin, unix.MNT_DETACH) })

	cfg := filepath.Join(testdata, "demo-"+strings.ToLower(mode)+".yaml")
	sock := filepath.Join(pin, "..", filepath.Base(pin)+".sock")
	args := []string{"--config", cfg, "--pin-dir", pin, "--xdp-mode", xdpMode, "--interface", top.LBFront,
		"--control-socket", sock}
	if top.LBBack != top.LBFront {
		args = append(args, "--interface", top.LBBack)
	}
	fmt.Printf("$ ip netns exec %s %s %s\n", top.LB.Name, filepath.Base(bin), strings.Join(args, " "))
	d, err := testbed.Start(c, top.LB, echo, bin, args...)
	if err != nil {
		return err
	}
	if err := d.WaitFor("msg=ready", 20*time.Second); err != nil {
		return err
	}

	client := top.Client.HTTPClient()
	client.Timeout = 5 * time.Second
	var served []string
	for i := 0; i < 30; i++ {
		resp, err := client.Get("http://" + top.VIP.String() + "/")
		if err != nil {
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		served = append(served, string(b))
	}
	fmt.Println("30 HTTP requests, one new TCP connection each, served by:")
	for i := 0; i < len(served); i += 10 {
		fmt.Printf("  %2d-%2d: %s\n", i+1, i+10, strings.Join(served[i:i+10], " "))
	}
	if err := printCounters(pin); err != nil {
		return err
	}
	fmt.Printf("$ xlbd status\n")
	out, err := exec.Command(bin, "status", "--control-socket", sock).CombinedOutput()
	fmt.Print(string(out))
	return err
}

func printCounters(pin string) error {
	set, err := maps.OpenPinned(pin)
	if err != nil {
		return err
	}
	defer set.Close()
	reals, err := set.Reals.Valid()
	if err != nil {
		return err
	}
	type row struct {
		addr netip.Addr
		port uint16
		st   maps.Stats
	}
	var rows []row
	for id, v := range reals {
		st, err := set.RealStats.Get(id)
		if err != nil {
			return err
		}
		rows = append(rows, row{maps.Addr(v.Ip), maps.Port(v.Port), st})
	}
	slices.SortFunc(rows, func(a, b row) int { return a.addr.Compare(b.addr) })
	fmt.Printf("per-real counters from the pinned maps (bpftool map dump pinned %s/real_stats):\n", pin)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "  real\tconnections\tpackets in\tbytes in\tpackets out\tbytes out\t")
	for _, r := range rows {
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%d\t%d\t\n", netip.AddrPortFrom(r.addr, r.port),
			r.st.Conns, r.st.PktsIn, r.st.BytesIn, r.st.PktsOut, r.st.BytesOut)
	}
	w.Flush()
	if len(rows) == 0 {
		return fmt.Errorf("no real servers in the pinned maps")
	}
	return nil
}
