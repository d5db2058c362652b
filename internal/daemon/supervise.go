package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// Task is one of the daemon's long-running jobs: the configuration
// reloader, the data-plane applier, the metrics server, the control socket;
// later each health checker and VRRP instance. Run works until ctx ends and
// then returns (its error is then ignored: the daemon is stopping anyway).
type Task struct {
	Name string
	Run  func(ctx context.Context) error
	// Policy says what a Run that ends by itself means.
	Policy Policy
}

// Policy is what the supervisor does with a task that ends before it is
// asked to.
type Policy uint8

const (
	// Stop ends the daemon with the task's error: it is one the daemon
	// cannot run without. Ending without an error counts as one.
	Stop Policy = iota
	// Restart logs the error and runs the task again, after a pause that
	// doubles while the task keeps failing soon after it starts.
	Restart
)

// errEnded is a task's Run returning nil although it was not asked to stop.
var errEnded = errors.New("ended without being asked to")

// supervisor runs tasks in one errgroup: the first task that stops the
// daemon cancels the others, and Run waits for all of them.
type supervisor struct {
	log *slog.Logger
	// minPause and maxPause bound the pause before a restart.
	minPause, maxPause time.Duration
}

func newSupervisor(log *slog.Logger) supervisor {
	return supervisor{log: log, minPause: time.Second, maxPause: 30 * time.Second}
}

// run runs tasks until ctx ends (nil) or one of them stops the daemon (its
// error, naming it). It returns once every task has returned.
func (s supervisor) run(ctx context.Context, tasks []Task) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, t := range tasks {
		g.Go(func() error { return s.keep(ctx, t) })
	}
	return g.Wait()
}

// keep runs t until ctx ends, restarting it as its policy says.
func (s supervisor) keep(ctx context.Context, t Task) error {
	pause := s.minPause
	for {
		began := time.Now()
		err := t.Run(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				s.log.Debug("task ended with an error while stopping", "task", t.Name, "err", err)
			}
			return nil
		}
		if err == nil {
			err = errEnded
		}
		if t.Policy != Restart {
			s.log.Error("task failed; stopping", "task", t.Name, "err", err)
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		// A task that ran for a good while before failing starts again
		// from the shortest pause: this failure is not the last one's.
		if time.Since(began) > s.maxPause {
			pause = s.minPause
		}
		s.log.Error("task failed; restarting it", "task", t.Name, "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, s.maxPause)
	}
}
