package testenv

import (
	"runtime"

	"github.com/vishvananda/netns"
)

// Worker runs functions on one OS thread inside a fresh, anonymous network
// namespace. BPF_PROG_TEST_RUN resolves ingress_ifindex and bpf_fib_lookup
// in the calling thread's namespace, so tests that need private links and
// routes run their program through a Worker.
type Worker struct {
	ch   chan func()
	done chan struct{}
}

// NewNetnsWorker starts a worker in a new network namespace, which goes
// away with it.
func NewNetnsWorker() (*Worker, error) {
	return start(func() (netns.NsHandle, error) { return netns.New() })
}

// Join starts another worker in w's namespace, so that a test can run
// programs on two threads at once.
func (w *Worker) Join() (*Worker, error) {
	var h netns.NsHandle
	var err error
	w.Do(func() { h, err = netns.Get() })
	if err != nil {
		return nil, err
	}
	return start(func() (netns.NsHandle, error) { return h, netns.Set(h) })
}

// start runs a worker on a thread that enter moves into a namespace.
func start(enter func() (netns.NsHandle, error)) (*Worker, error) {
	w := &Worker{ch: make(chan func()), done: make(chan struct{})}
	errc := make(chan error)
	go func() {
		// Never unlocked: the thread ends with the goroutine, so it is never
		// reused by the runtime in the wrong namespace.
		runtime.LockOSThread()
		ns, err := enter()
		if ns.IsOpen() {
			defer ns.Close()
		}
		errc <- err
		if err != nil {
			return
		}
		defer close(w.done)
		for f := range w.ch {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return w, nil
}

// Do runs f in the namespace and waits for it.
func (w *Worker) Do(f func()) {
	fin := make(chan struct{})
	w.ch <- func() { defer close(fin); f() }
	<-fin
}

// Close ends the worker and with it the namespace.
func (w *Worker) Close() {
	close(w.ch)
	<-w.done
}
