package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func report(context.Context) (Report, error) { return Report{Config: "test.yaml"}, nil }

func fetch(t *testing.T, path string) (Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Fetch(ctx, path)
}

func TestListenServeClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "xlbd.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	s.Serve(report)
	if rep, err := fetch(t, path); err != nil || rep.Config != "test.yaml" {
		t.Errorf("status: %+v, %v", rep, err)
	}
	s.Close()
	s.Close() // twice is fine
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := fetch(t, path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("status after Close: %v", err)
	}
}

// A path that is not a socket is never removed.
func TestListenNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "xlbd.sock")
	if err := os.WriteFile(file, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "subdir.sock")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, sub, link} {
		if s, err := Listen(path); err == nil {
			s.Close()
			t.Errorf("Listen on %s succeeded", path)
		} else if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen on %s: %v, want it to say it is not a socket", path, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Errorf("regular file at the socket path changed: %q, %v", b, err)
	}
	if fi, err := os.Lstat(sub); err != nil || !fi.IsDir() {
		t.Errorf("directory at the socket path changed: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink at the socket path changed: %v", err)
	}
}

// A socket a live process listens on makes a second Listen fail, naming
// the process, and keeps answering.
func TestListenLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlbd.sock")
	first, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Serve(report)
	_, err = Listen(path)
	if err == nil || !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: %v", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not name %s", err, want)
	}
	if _, err := fetch(t, path); err != nil {
		t.Errorf("first server after a refused second: %v", err)
	}
}

// A socket nothing listens on (its daemon died) is replaced.
func TestListenStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlbd.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // as a killed daemon leaves it
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	s.Serve(report)
	if _, err := fetch(t, path); err != nil {
		t.Errorf("status on the replacing socket: %v", err)
	}
}

// Close removes the socket only if it is still the one Listen made.
func TestCloseLeavesAnothersSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlbd.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(report)
	// Someone removed ours and put their own there.
	os.Remove(path)
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed a socket that was not its own: %v", err)
	}
}

// Idle clients neither pile up nor keep others out: at most MaxConns are
// held at once, each is closed after ReadTimeout without a request, and a
// status request gets through behind them.
func TestIdleConnectionsAreCapped(t *testing.T) {
	defer func(m int, r, i time.Duration) { MaxConns, ReadTimeout, IdleTimeout = m, r, i }(MaxConns, ReadTimeout, IdleTimeout)
	MaxConns, ReadTimeout, IdleTimeout = 4, 200*time.Millisecond, 200*time.Millisecond
	path := filepath.Join(t.TempDir(), "xlbd.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Serve(report)

	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	base := fds()
	const idle = 40
	var conns []net.Conn
	for range idle {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if held := fds() - base - idle; held > MaxConns {
		t.Errorf("the server holds %d connections, want at most %d", held, MaxConns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rep, err := Fetch(ctx, path); err != nil || rep.Config != "test.yaml" {
		t.Errorf("status behind %d idle clients: %+v, %v", idle, rep, err)
	}
	// The idle ones were closed by the server.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed == 0 {
		t.Error("no idle client was closed")
	}
}
