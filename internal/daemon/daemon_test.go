package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
)

// harness runs the daemon on a fake backend, with a loader that can be
// made to block; it needs no privileges.
type harness struct {
	t      *testing.T
	conf   string
	f      *fakeBackend
	built  int
	log    logBuffer
	notes  notes
	reload chan struct{}
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	loads int
	// gates[n], when set, holds the nth load after it has read the file
	// and before it parses it.
	gates map[int]chan struct{}
	// returned is signalled each time a load returns.
	returned chan int
}

func newHarness(t *testing.T, vip string) *harness {
	h := &harness{
		t:        t,
		conf:     filepath.Join(t.TempDir(), "lb.yaml"),
		f:        &fakeBackend{caps: fakeCaps()},
		reload:   make(chan struct{}),
		gates:    map[int]chan struct{}{},
		returned: make(chan int, 16),
	}
	h.write(vip, "rr")
	return h
}

// write makes the configuration one service on vip.
func (h *harness) write(vip, sched string) {
	h.t.Helper()
	text := fmt.Sprintf("virtual_servers:\n  - { address: %s, port: 80, lb_algo: %s }\n", vip, sched)
	if err := os.WriteFile(h.conf, []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// gate makes the nth load wait until the returned channel is closed.
func (h *harness) gate(n int) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := make(chan struct{})
	h.gates[n] = g
	return g
}

func (h *harness) load(path, _ string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.loads++
	n := h.loads
	g := h.gates[n]
	h.mu.Unlock()
	defer func() { h.returned <- n }()
	if g != nil {
		<-g
	}
	return config.Parse(path, data)
}

func (h *harness) loadCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loads
}

// waitLoads waits until n loads have begun.
func (h *harness) waitLoads(n int) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.loadCount() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d loads, want %d", h.loadCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// start runs the daemon; a reload blocked for longer than reloadTimeout
// fails.
func (h *harness) start(reloadTimeout time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	o := Options{ConfigPath: h.conf, Interfaces: []string{"lo"}, Log: h.log.logger(), Notify: h.notes.notify}
	hk := hooks{load: h.load, backend: registered(h.f, &h.built), reloadTimeout: reloadTimeout}
	go func() { h.done <- runWith(ctx, o, h.reload, hk) }()
	h.t.Cleanup(func() {
		cancel()
		<-h.done
		if h.t.Failed() {
			h.t.Logf("daemon log:\n%s", h.log.String())
		}
	})
}

// stop cancels the daemon and returns what Run returned.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func (h *harness) wait() error {
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return")
		return nil
	}
}

// A reload that blocks (in the loader here) never stops the daemon from
// being stopped: SIGTERM is served at once, not after the reload's
// deadline.
func TestReloadBlockedStopsPromptly(t *testing.T) {
	h := newHarness(t, "10.0.0.1")
	defer close(h.gate(2))
	h.start(time.Hour)
	h.log.waitLog(t, "msg=ready", 1)
	h.reload <- struct{}{}
	h.waitLoads(2)
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"READY=1", "RELOADING=1", "STOPPING=1"}, h.notes.get()); diff != "" {
		t.Errorf("sd_notify (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{true}, h.f.closes()); diff != "" {
		t.Errorf("Close(release) calls (-want +got):\n%s", diff)
	}
	if strings.Contains(h.log.String(), "reload failed") {
		t.Errorf("a reload cut short by stopping is logged as failed:\n%s", h.log.String())
	}
}

// A reload that does not finish within its deadline fails and the running
// configuration stays; what it reads once it does finish is dropped, so
// it never undoes a later reload.
func TestReloadDeadline(t *testing.T) {
	h := newHarness(t, "10.0.0.1")
	stuck := h.gate(2)
	h.start(50 * time.Millisecond)
	h.log.waitLog(t, "msg=ready", 1)

	h.write("10.0.0.2", "rr")
	h.reload <- struct{}{}
	h.log.waitLog(t, "reload failed; keeping the running configuration", 1)
	if !strings.Contains(h.log.String(), "given up after 50ms") {
		t.Errorf("the failed reload does not say it was given up:\n%s", h.log.String())
	}

	h.write("10.0.0.3", "rr")
	h.reload <- struct{}{}
	h.log.waitLog(t, "msg=reloaded", 1)

	// The stuck read of 10.0.0.2 finishes now.
	close(stuck)
	for n := range h.returned {
		if n == 2 {
			break
		}
	}
	h.reload <- struct{}{}
	h.log.waitLog(t, "msg=reloaded", 2)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.3", "10.0.0.3"}, h.f.appliedVIPs()); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	want := []string{"READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}
	if diff := cmp.Diff(want, h.notes.get()); diff != "" {
		t.Errorf("sd_notify (-want +got):\n%s", diff)
	}
}

// Reloads asked for while one runs are done once, after it.
func TestReloadsCoalesced(t *testing.T) {
	h := newHarness(t, "10.0.0.1")
	g := h.gate(2)
	h.start(time.Hour)
	h.log.waitLog(t, "msg=ready", 1)
	for range 4 {
		h.reload <- struct{}{} // taken at once, the first reload running or not
	}
	close(g)
	h.log.waitLog(t, "msg=reloaded", 2)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if n := h.loadCount(); n != 3 {
		t.Errorf("%d loads, want 3: the start, the first reload, one for the three asked for during it", n)
	}
}

// A reload the backend cannot run fails with the file, line and key, and
// keeps the running configuration.
func TestReloadRefusedByBackend(t *testing.T) {
	h := newHarness(t, "10.0.0.1")
	h.start(time.Hour)
	h.log.waitLog(t, "msg=ready", 1)
	h.write("10.0.0.2", "mh")
	h.reload <- struct{}{}
	h.log.waitLog(t, "reload failed; keeping the running configuration", 1)
	want := h.conf + ":2: 10.0.0.2:80/TCP: lb_algo mh: the FAKE data plane does not run this scheduler"
	if !strings.Contains(h.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, h.log.String())
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10.0.0.1"}, h.f.appliedVIPs()); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// The daemon refuses at start what the backend cannot run, naming the
// file, line and key, before it builds the backend.
func TestStartRefusedByBackend(t *testing.T) {
	h := newHarness(t, "10.0.0.1")
	h.write("10.0.0.1", "mh")
	h.start(time.Hour)
	err := h.wait()
	var list config.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v, want a config.ErrorList", err)
	}
	want := []string{h.conf + ":2: 10.0.0.1:80/TCP: lb_algo mh: the FAKE data plane does not run this scheduler (it runs rr, wrr, lc, wlc)"}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if h.built != 0 {
		t.Errorf("the backend was built %d times, want none", h.built)
	}
}

// A start that fails leaves a data plane adopted from a previous daemon
// running, and releases one it made.
func TestFailedStartRelease(t *testing.T) {
	for _, adopted := range []bool{false, true} {
		t.Run(fmt.Sprintf("adopted=%v", adopted), func(t *testing.T) {
			h := newHarness(t, "10.0.0.1")
			h.f.adopted = adopted
			h.f.applyErr = errors.New("table full")
			h.start(time.Hour)
			err := h.wait()
			if err == nil || err.Error() != "apply "+h.conf+": table full" {
				t.Fatalf("err = %v", err)
			}
			if diff := cmp.Diff([]bool{!adopted}, h.f.closes(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Close(release) calls (-want +got):\n%s", diff)
			}
		})
	}
}
