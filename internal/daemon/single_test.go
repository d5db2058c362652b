package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHelperProcess is not a test: started by the tests below with
// XLBD_TEST_SLEEP set, it is a live process running this program (as a
// second xlbd would be), until killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("XLBD_TEST_SLEEP") == "" {
		t.Skip("helper process")
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

// liveTwin starts a process running this test binary: looksLikeXlbd says
// yes for it.
func liveTwin(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "XLBD_TEST_SLEEP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// liveStranger starts a process that is not xlbd.
func liveStranger(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// deadPid is the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writePid(t *testing.T, path string, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readPid(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPidFile(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name    string
		content func(t *testing.T) string // "" : no file
		refuse  bool
	}{
		{"absent", nil, false},
		{"dead process", func(t *testing.T) string { return strconv.Itoa(deadPid(t)) }, false},
		{"garbage", func(*testing.T) string { return "not a pid" }, false},
		{"empty", func(*testing.T) string { return "" }, false},
		{"our own pid", func(*testing.T) string { return self }, false},
		{"live process that is not xlbd", func(t *testing.T) string { return strconv.Itoa(liveStranger(t)) }, false},
		{"live xlbd", func(t *testing.T) string { return strconv.Itoa(liveTwin(t)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run", "xlbd.pid")
			var was string
			if tc.content != nil {
				os.MkdirAll(filepath.Dir(path), 0o755)
				was = tc.content(t) + "\n"
				writePid(t, path, was)
			}
			pf, err := claimPidFile(path, quietLog())
			if tc.refuse {
				if err == nil || !errors.Is(err, errInUse) {
					t.Fatalf("claimPidFile over a live xlbd's file: %v", err)
				}
				pid := strings.TrimSpace(was)
				if !strings.Contains(err.Error(), "pid "+pid) || !strings.Contains(err.Error(), path) {
					t.Errorf("refusal %q does not name pid %s and the file", err, pid)
				}
				if got := readPid(t, path); got != pid {
					t.Errorf("the live daemon's pid file now says %q, want %s", got, pid)
				}
				entries, _ := os.ReadDir(filepath.Dir(path))
				if len(entries) != 1 {
					t.Errorf("files left beside the pid file: %v", entries)
				}
				return
			}
			if err != nil {
				t.Fatalf("claimPidFile: %v", err)
			}
			if got := readPid(t, path); got != self {
				t.Errorf("pid file says %q, want %s", got, self)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Errorf("files left beside the pid file: %v", entries)
			}
			pf.remove()
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("pid file still there after remove: %v", err)
			}
		})
	}
}

// A pid file another daemon has written since is not ours to remove.
func TestPidFileRemoveOnlyOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlbd.pid")
	pf, err := claimPidFile(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	writePid(t, path, "4242\n")
	pf.remove()
	if got := readPid(t, path); got != "4242" {
		t.Errorf("remove deleted or changed another's pid file: %q", got)
	}
}

func TestPidFileNotRegular(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlbd.pid")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := claimPidFile(path, quietLog()); err == nil {
		t.Fatal("claimed a directory as pid file")
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("directory at the pid file's path touched: %v", err)
	}
}

func TestAlive(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if alive(deadPid(t)) {
		t.Error("a reaped process is alive")
	}
	// A zombie (exited, not yet reaped) is not.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var info unix.Siginfo
	// Wait for the exit without reaping it.
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if alive(cmd.Process.Pid) {
		t.Error("a zombie is alive")
	}
	if !looksLikeXlbd(liveTwin(t)) {
		t.Error("a process running this binary does not look like xlbd")
	}
	if looksLikeXlbd(liveStranger(t)) {
		t.Error("sleep looks like xlbd")
	}
}

// A second lock on a directory fails and names the holder.
func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pins")
	mkdir := func(d string) error { return os.MkdirAll(d, 0o700) }
	l, err := lockDir(dir, mkdir)
	if err != nil {
		t.Fatal(err)
	}
	if !l.made {
		t.Error("lockDir made the directory but does not say so")
	}
	_, err = lockDir(dir, mkdir)
	if err == nil || !errors.Is(err, errInUse) {
		t.Fatalf("second lock: %v", err)
	}
	// The holder here is this very process.
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Errorf("refusal %q does not name %s and the directory", err, want)
	}
	l.release(false)
	l2, err := lockDir(dir, mkdir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if l2.made {
		t.Error("directory was there, yet lockDir says it made it")
	}
	l2.release(true)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("a directory the lock did not make was removed: %v", err)
	}

	// A failed start removes the (empty) directory it made, not one it found.
	dir2 := filepath.Join(t.TempDir(), "fresh")
	l3, err := lockDir(dir2, mkdir)
	if err != nil {
		t.Fatal(err)
	}
	l3.release(true)
	if _, err := os.Stat(dir2); !os.IsNotExist(err) {
		t.Errorf("failed start left the directory it made: %v", err)
	}
}

// The lock follows the directory the path names: one removed and made
// again is locked anew.
func TestLockDirReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pins")
	mkdir := func(d string) error { return os.MkdirAll(d, 0o700) }
	l, err := lockDir(dir, mkdir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.release(false)
	// What a releasing daemon does on its way out.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	l2, err := lockDir(dir, mkdir)
	if err != nil {
		t.Fatalf("lock on the new directory: %v", err)
	}
	l2.release(false)
}

func TestParseLockHolder(t *testing.T) {
	const procLocks = `1: POSIX  ADVISORY  WRITE 812 00:1a:1001 0 EOF
2: FLOCK  ADVISORY  WRITE 17635 00:27:223415 0 EOF
2: -> FLOCK  ADVISORY  WRITE 17700 00:27:223415 0 EOF
3: FLOCK  ADVISORY  WRITE 900 103:02:223415 0 EOF
`
	for _, tc := range []struct {
		dev, ino uint64
		want     int
	}{
		{unix.Mkdev(0, 0x27), 223415, 17635},
		{unix.Mkdev(0x103, 2), 223415, 900},
		{unix.Mkdev(0, 0x1a), 1001, 0}, // a POSIX lock is not ours
		{unix.Mkdev(0, 0x27), 1, 0},
	} {
		if got := parseLockHolder(strings.NewReader(procLocks), tc.dev, tc.ino); got != tc.want {
			t.Errorf("dev %x ino %d: holder %d, want %d", tc.dev, tc.ino, got, tc.want)
		}
	}
}
