package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/dataplane/registry"
)

// fakeBackend is a data plane that records what it is told.
type fakeBackend struct {
	caps    dataplane.Capabilities
	adopted bool
	// applyErr, when set, is what Apply returns.
	applyErr error
	// gate, when set, is what Apply waits on (or on ctx) before it records.
	gate chan struct{}

	mu      sync.Mutex
	applied []dataplane.State
	entered int // calls to Apply so far, counted on entry
	closed  []bool
}

func (f *fakeBackend) Apply(ctx context.Context, st dataplane.State) error {
	f.mu.Lock()
	f.entered++
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.applyErr != nil {
		return f.applyErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, st)
	return nil
}

func (f *fakeBackend) Status(context.Context) (dataplane.Status, error) {
	return dataplane.Status{Backend: "fake"}, nil
}

func (f *fakeBackend) Capabilities() dataplane.Capabilities { return f.caps }
func (f *fakeBackend) Adopted() bool                        { return f.adopted }

func (f *fakeBackend) Close(release bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, release)
	return nil
}

// appliedVIPs lists, per apply, the first service's VIP.
func (f *fakeBackend) appliedVIPs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, st := range f.applied {
		if len(st.Services) == 0 {
			out = append(out, "")
			continue
		}
		out = append(out, st.Services[0].VIP.String())
	}
	return out
}

func (f *fakeBackend) closes() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closed)
}

// fakeCaps run every scheduler but mh.
func fakeCaps() dataplane.Capabilities {
	return dataplane.Capabilities{
		Backend:    "fake",
		Schedulers: []string{"rr", "wrr", "lc", "wlc"},
		Kinds:      []dataplane.Kind{dataplane.NAT, dataplane.DR, dataplane.TUN},
		Protocols:  []uint8{6, 17},
		PortZero:   true,
	}
}

// registered is f as the registry would hand it out; built counts the
// backends made.
func registered(f *fakeBackend, built *int) *registry.Backend {
	return &registry.Backend{
		Name:         "fake",
		Capabilities: func() dataplane.Capabilities { return f.caps },
		New: func(registry.Options) (dataplane.Backend, error) {
			*built++
			return f, nil
		},
	}
}

// logBuffer is a log the daemon writes and the test reads, concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// waitLog waits until s appears n times in the log.
func (l *logBuffer) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(l.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d × %q in the log:\n%s", n, s, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// notes records sd_notify messages.
type notes struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notes) notify(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, strings.SplitN(s, "\n", 2)[0])
}

func (n *notes) get() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}
