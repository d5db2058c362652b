package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// testSupervisor restarts without making tests wait.
func testSupervisor() supervisor {
	return supervisor{log: quietLog(), minPause: time.Millisecond, maxPause: 10 * time.Millisecond}
}

// untilDone is a task that works until asked to stop.
func untilDone(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func TestSupervisor(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		// tasks builds the tasks; stop ends the parent context.
		tasks   func(stop context.CancelFunc) []Task
		wantErr error  // errors.Is
		wantMsg string // the error's text
	}{
		{
			name: "a task that fails stops the daemon with its error, naming it",
			tasks: func(context.CancelFunc) []Task {
				return []Task{
					{Name: "worker", Run: untilDone},
					{Name: "config", Run: func(context.Context) error { return boom }},
				}
			},
			wantErr: boom,
			wantMsg: "config: boom",
		},
		{
			name: "a task that ends without error before being asked to stops the daemon",
			tasks: func(context.CancelFunc) []Task {
				return []Task{
					{Name: "worker", Run: untilDone},
					{Name: "applier", Run: func(context.Context) error { return nil }},
				}
			},
			wantErr: errEnded,
			wantMsg: "applier: ended without being asked to",
		},
		{
			name: "a restartable task is run again, whether it fails or just ends",
			tasks: func(stop context.CancelFunc) []Task {
				var runs atomic.Int32
				return []Task{
					{Name: "worker", Run: untilDone},
					{Name: "metrics", Policy: Restart, Run: func(ctx context.Context) error {
						switch runs.Add(1) {
						case 1:
							return boom
						case 2:
							return nil
						}
						stop() // third run: the daemon is told to stop
						return untilDone(ctx)
					}},
				}
			},
		},
		{
			name: "told to stop, every task returns and so does the supervisor, without error",
			tasks: func(stop context.CancelFunc) []Task {
				return []Task{
					{Name: "worker", Run: untilDone},
					{Name: "stopper", Run: func(ctx context.Context) error {
						stop()
						<-ctx.Done()
						return ctx.Err() // ignored: the daemon is stopping
					}},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			err := testSupervisor().run(ctx, tt.tasks(stop))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || err.Error() != tt.wantMsg {
				t.Fatalf("err = %v, want %q", err, tt.wantMsg)
			}
		})
	}
}

// A task that stops the daemon cancels the others' context: none of them
// is left running.
func TestSupervisorCancelsOthers(t *testing.T) {
	stopped := make(chan struct{})
	err := testSupervisor().run(context.Background(), []Task{
		{Name: "worker", Run: func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		}},
		{Name: "failing", Run: func(context.Context) error { return errors.New("no") }},
	})
	if err == nil {
		t.Fatal("no error")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("run returned before the other task did")
	}
}
