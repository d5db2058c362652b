package daemon

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

func stateFor(vip string) dataplane.State {
	return dataplane.State{Services: []dataplane.Service{{VIP: netip.MustParseAddr(vip), Port: 80, Protocol: 6}}}
}

// waitEntered waits until Apply has been called n times.
func waitEntered(t *testing.T, f *fakeBackend, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		got := f.entered
		f.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apply called %d times, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// States submitted while one is being applied collapse into the latest:
// the data plane never goes through the ones in between, and each
// submitter hears the result of the apply that carried its change.
func TestApplierLatestWins(t *testing.T) {
	f := &fakeBackend{gate: make(chan struct{})}
	a := newApplier(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.run(ctx)
	}()

	first := a.submit(stateFor("10.0.0.1"))
	waitEntered(t, f, 1)
	second := a.submit(stateFor("10.0.0.2"))
	third := a.submit(stateFor("10.0.0.3"))
	close(f.gate)
	for i, ch := range []<-chan error{first, second, third} {
		if err := <-ch; err != nil {
			t.Errorf("submission %d: %v", i+1, err)
		}
	}
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.3"}, f.appliedVIPs()); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	cancel()
	<-done
}

// An apply that fails says so to everyone waiting on it.
func TestApplierError(t *testing.T) {
	boom := errors.New("table full")
	f := &fakeBackend{applyErr: boom}
	a := newApplier(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.run(ctx)
	if err := a.apply(ctx, stateFor("10.0.0.1")); !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
}

// A submitter is never stuck on an applier that has stopped.
func TestApplierStopped(t *testing.T) {
	a := newApplier(&fakeBackend{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(ctx, stateFor("10.0.0.1")); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
