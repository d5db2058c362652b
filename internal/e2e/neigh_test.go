package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/pkg/maps"
)

// TestSilentRealsDoNotHoldUpApply's configuration and bounds.
const (
	silentReals = 100 // 10.50.1.150 - 10.50.1.249: nobody answers ARP for them
	silentFirst = 150
	heavyWeight = 3 // r1's weight after the reload

	// Measured here: ready 1.3 s, a SIGHUP 20-45 ms, status under 50 ms,
	// wake-up 0.6 s; when Apply waited for ARP, ready and each SIGHUP took
	// 2.5 minutes. The bounds tell the two apart on a loaded CI machine.
	readyBound  = 20 * time.Second // start to msg=ready
	reachBound  = 10 * time.Second // ready to the answering reals reachable
	reloadBound = 10 * time.Second // SIGHUP to the new weight in the reals map
	statusBound = 5 * time.Second  // any one `xlbd status`
	wakeUpBound = 30 * time.Second // a silent address that starts answering, to reachable
	// measureWithin is how long to wait at all, so that a slow build still
	// reports its times.
	measureWithin = 300 * time.Second
	pollEvery     = 20 * time.Millisecond
)

// A DR service whose reals include 100 addresses nobody answers ARP for:
// the daemon is ready, reloads and answers `xlbd status` at once, traffic
// to the three answering reals flows throughout, and a silent address that
// comes to life is found and takes new flows within seconds.
func TestSilentRealsDoNotHoldUpApply(t *testing.T) {
	requireNetns(t)
	bin := xlbdBinary(t)
	// r4 loses its address: it is the machine that comes up later, at
	// 10.50.1.150, one of the silent addresses.
	top, err := testbed.NewL2(t, testbed.Options{Reals: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := testbed.ServeReals(t, top, 80, 53); err != nil {
		t.Fatal(err)
	}
	r4 := top.Reals[3]
	if _, err := r4.Run("ip", "addr", "flush", "dev", top.RealLink); err != nil {
		t.Fatal(err)
	}

	pin := bpffs(t)
	ctl := ctlSocket(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	silent := make([]netip.Addr, silentReals)
	for i := range silent {
		silent[i] = netip.AddrFrom4([4]byte{10, 50, 1, byte(silentFirst + i)})
	}
	writeConfig := func(r1Weight int) {
		var b strings.Builder
		fmt.Fprintf(&b, "virtual_servers:\n  - address: %s\n    port: 80\n    protocol: TCP\n    lb_algo: wrr\n    lb_kind: DR\n    real_servers:\n",
			top.VIP)
		for i, a := range top.RealAddrs[:3] {
			w := 1
			if i == 0 {
				w = r1Weight
			}
			fmt.Fprintf(&b, "      - { address: %s, port: 80, weight: %d }\n", a, w)
		}
		for _, a := range silent {
			fmt.Fprintf(&b, "      - { address: %s, port: 80, weight: 1 }\n", a)
		}
		if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(1)

	begin := time.Now()
	d := start(t, top.LB, bin, "--config", cfg, "--pin-dir", pin, "--xdp-mode", "generic",
		"--control-socket", ctl, "--interface", top.LBFront)
	if err := d.WaitFor("msg=ready", measureWithin); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(begin)
	t.Logf("start with %d silent reals: ready after %v (bound %v)", silentReals, ready.Round(time.Millisecond), readyBound)
	if ready > readyBound {
		t.Errorf("ready after %v, want within %v", ready, readyBound)
	}

	set, err := maps.OpenPinned(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	// entry is the TCP real at a, as the program sees it. Ids are found
	// with one walk of the map (a slow one: every slot is read), and stay.
	ids := map[netip.Addr]uint32{}
	entry := func(a netip.Addr) (maps.RealVal, bool) {
		id, ok := ids[a]
		if !ok {
			reals, err := set.Reals.Valid()
			if err != nil {
				t.Fatal(err)
			}
			for id, v := range reals {
				if v.Proto == 6 {
					ids[maps.Addr(v.Ip)] = id
				}
			}
			if id, ok = ids[a]; !ok {
				return maps.RealVal{}, false
			}
		}
		v, err := set.Reals.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return v, v.Flags&maps.RealValid != 0 && maps.Addr(v.Ip) == a
	}
	// waitReachable waits until every address in as has a MAC and the
	// weight w in the reals map.
	waitReachable := func(bound time.Duration, w func(netip.Addr) uint32, as ...netip.Addr) time.Duration {
		t.Helper()
		t0 := time.Now()
		for {
			missing := ""
			for _, a := range as {
				v, ok := entry(a)
				if !ok || v.Dmac == [6]uint8{} || v.Weight != w(a) {
					missing = fmt.Sprintf("%s: %+v (present %v)", a, v, ok)
					break
				}
			}
			if missing == "" {
				return time.Since(t0)
			}
			if time.Since(t0) > bound {
				t.Fatalf("not reachable within %v: %s", bound, missing)
			}
			time.Sleep(pollEvery)
		}
	}
	one := func(netip.Addr) uint32 { return 1 }
	entry(top.RealAddrs[0]) // the walk that finds the ids, not to be timed
	reach := waitReachable(measureWithin, one, top.RealAddrs[:3]...)
	t.Logf("answering reals reachable %v after ready (bound %v)", reach.Round(time.Millisecond), reachBound)
	if reach > reachBound {
		t.Errorf("answering reals reachable %v after ready, want within %v", reach, reachBound)
	}
	for _, a := range silent {
		if v, ok := entry(a); !ok || v.Weight != 0 || v.Dmac != [6]uint8{} {
			t.Fatalf("silent real %s: %+v (present %v), want an entry with weight 0 and no MAC", a, v, ok)
		}
	}

	// Traffic and `xlbd status` from here to the end.
	traffic := newVIPStream(t, top)
	status := newStatusLoop(bin, ctl)

	// A reload that changes r1's weight.
	writeConfig(heavyWeight)
	t0 := time.Now()
	d.Signal(syscall.SIGHUP)
	if err := d.WaitFor("msg=reloaded", measureWithin); err != nil {
		t.Fatal(err)
	}
	reload := time.Since(t0)
	heavy := func(a netip.Addr) uint32 {
		if a == top.RealAddrs[0] {
			return heavyWeight
		}
		return 1
	}
	waitReachable(measureWithin, heavy, top.RealAddrs[:3]...)
	inMap := time.Since(t0)
	t.Logf("reload changing one weight with %d silent reals: reloaded after %v, weight in the map after %v (bound %v)",
		silentReals, reload.Round(time.Millisecond), inMap.Round(time.Millisecond), reloadBound)
	if inMap > reloadBound {
		t.Errorf("reload applied after %v, want within %v", inMap, reloadBound)
	}
	time.Sleep(time.Second) // some traffic on the new weights
	if got := traffic.served(); strings.Contains(got, "r4") || !strings.Contains(got, "r1") {
		t.Errorf("before the late real lives, new connections went to %s, want only r1, r2, r3", got)
	}

	// 10.50.1.150 comes to life on r4, which answers ARP for it (arp_ignore=1:
	// the address is on the interface asked).
	late := silent[0]
	if _, err := r4.Run("ip", "addr", "add", netip.PrefixFrom(late, 24).String(), "dev", top.RealLink); err != nil {
		t.Fatal(err)
	}
	wake := waitReachable(measureWithin, heavy, late)
	t.Logf("silent address %s answering: reachable after %v (bound %v)", late, wake.Round(time.Millisecond), wakeUpBound)
	if wake > wakeUpBound {
		t.Errorf("%s reachable after %v, want within %v", late, wake, wakeUpBound)
	}
	// It takes new flows: wrr 3:1:1:1 gives it one in six.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(traffic.served(), "r4") {
		if time.Now().After(deadline) {
			t.Fatalf("no new connection reached %s (r4) within 10 s of it being reachable: served %s", late, traffic.served())
		}
		time.Sleep(pollEvery)
	}

	traffic.finish(t, "r1 r2 r3 r4")
	status.finish(t)
	for _, a := range silent[1:] {
		if v, ok := entry(a); !ok || v.Weight != 0 || v.Dmac != [6]uint8{} {
			t.Fatalf("silent real %s: %+v (present %v), want weight 0 and no MAC", a, v, ok)
		}
	}
}

// vipStream sends new HTTP connections to the VIP one after the other and
// counts who answered.
type vipStream struct {
	stop chan struct{}
	done sync.WaitGroup
	mu   sync.Mutex
	by   map[string]int
	errs []string
}

func newVIPStream(t *testing.T, top *testbed.Topology) *vipStream {
	s := &vipStream{stop: make(chan struct{}), by: map[string]int{}}
	client := top.Client.HTTPClient()
	client.Timeout = 3 * time.Second
	url := fmt.Sprintf("http://%s:80/", top.VIP)
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			resp, err := client.Get(url)
			var body []byte
			if err == nil {
				buf := make([]byte, 64)
				n, _ := resp.Body.Read(buf)
				body = buf[:n]
				resp.Body.Close()
			}
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, err.Error())
			} else {
				s.by[string(body)]++
			}
			s.mu.Unlock()
			client.CloseIdleConnections()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return s
}

func (s *vipStream) served() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.by)
}

func (s *vipStream) finish(t *testing.T, allowed string) {
	t.Helper()
	close(s.stop)
	s.done.Wait()
	t.Logf("connections through the VIP: %v, %d failed", s.by, len(s.errs))
	if len(s.errs) > 0 {
		t.Errorf("%d connections through the VIP failed: %v", len(s.errs), s.errs)
	}
	for who := range s.by {
		if !strings.Contains(" "+allowed+" ", " "+who+" ") {
			t.Errorf("a connection was answered by %q, want one of %s", who, allowed)
		}
	}
}

// statusLoop runs `xlbd status` over and over and keeps the slowest.
type statusLoop struct {
	stop    chan struct{}
	done    sync.WaitGroup
	n       int
	slowest time.Duration
	errs    []string
}

func newStatusLoop(bin, ctl string) *statusLoop {
	s := &statusLoop{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			t0 := time.Now()
			out, err := exec.Command(bin, "status", "--control-socket", ctl).CombinedOutput()
			s.slowest = max(s.slowest, time.Since(t0))
			s.n++
			if err != nil {
				s.errs = append(s.errs, fmt.Sprintf("%v: %s", err, out))
			}
		}
	}()
	return s
}

func (s *statusLoop) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	s.done.Wait()
	t.Logf("xlbd status: %d calls, slowest %v (bound %v)", s.n, s.slowest.Round(time.Millisecond), statusBound)
	if len(s.errs) > 0 {
		t.Errorf("xlbd status failed %d times: %v", len(s.errs), s.errs)
	}
	if s.slowest > statusBound {
		t.Errorf("slowest xlbd status took %v, want within %v", s.slowest, statusBound)
	}
}
