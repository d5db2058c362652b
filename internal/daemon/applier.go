package daemon

import (
	"context"
	"reflect"
	"sync"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// applier is the one goroutine that calls Backend.Apply once the daemon
// runs. Whoever wants a state in the data plane (the reloader today; the
// reconciler fed by health checkers and VRRP later) submits the whole
// state; the latest wins. A state submitted while another is being applied
// replaces any that is still waiting, so a burst of events costs one apply
// of the last one, and an apply never runs on an outdated state.
type applier struct {
	be dataplane.Backend

	mu sync.Mutex
	// next is the state waiting to be applied, with everyone waiting on
	// it: the submitters of the states it replaced wait on it too, as
	// their change is part of it.
	next *submission
	wake chan struct{} // one pending wake-up is enough
	// last is the state last applied without an error.
	last *dataplane.State
}

type submission struct {
	st      dataplane.State
	waiters []chan error
}

func newApplier(be dataplane.Backend) *applier {
	return &applier{be: be, wake: make(chan struct{}, 1)}
}

// submit hands st to the applier. The channel receives the error of the
// apply that carried st, or of a later state that replaced it.
func (a *applier) submit(st dataplane.State) <-chan error {
	done := make(chan error, 1)
	a.mu.Lock()
	if a.next == nil {
		a.next = &submission{}
	}
	a.next.st = st
	a.next.waiters = append(a.next.waiters, done)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return done
}

// apply submits st and waits for its result, or for ctx to end.
func (a *applier) apply(ctx context.Context, st dataplane.State) error {
	select {
	case err := <-a.submit(st):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// applied reports whether st is what the data plane holds already: the
// last state applied, with nothing newer waiting.
func (a *applier) applied(st dataplane.State) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.next == nil && a.last != nil && reflect.DeepEqual(*a.last, st)
}

// run applies what is submitted until ctx ends; it is a Task.
func (a *applier) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		}
		a.mu.Lock()
		s := a.next
		a.next = nil
		a.mu.Unlock()
		if s == nil {
			continue
		}
		err := a.be.Apply(ctx, s.st)
		a.mu.Lock()
		if err == nil {
			a.last = &s.st
		}
		a.mu.Unlock()
		for _, w := range s.waiters {
			w <- err
		}
	}
}
