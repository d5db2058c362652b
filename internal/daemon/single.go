package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/maps"
)

// One daemon per pin directory. A second xlbd on the same pins would swap
// its own program and configuration into the first one's links and, on its
// way out, release them; so a daemon takes an exclusive lock on the pin
// directory before it touches the data plane, and holds it until it has
// exited (released the data plane, or left it for the next start to adopt).
//
// The lock is a flock on the directory itself: a bpffs takes no regular
// files, and a directory can be locked on any file system. Who holds it is
// read from /proc/locks.

// pinLock is the lock on a pin directory.
type pinLock struct {
	f   *os.File
	dir string
	// made is set when the directory did not exist before: a start that
	// fails before loading anything removes it again (when empty).
	made bool
}

// errInUse marks a refusal because another daemon owns a resource.
var errInUse = errors.New("in use by another daemon")

// inUse is a refusal to start: errors.Is(err, errInUse), and its message
// alone.
type inUse string

func (e inUse) Error() string      { return string(e) }
func (inUse) Is(target error) bool { return target == errInUse }

// lockPinDir makes dir (a bpffs is mounted there if none is) and locks it,
// or says which process holds it.
func lockPinDir(dir string) (*pinLock, error) { return lockDir(dir, maps.EnsureBPFFS) }

// lockDir locks dir, made by prepare when missing.
func lockDir(dir string, prepare func(string) error) (*pinLock, error) {
	_, err := os.Stat(dir)
	made := errors.Is(err, fs.ErrNotExist)
	for range 5 {
		if err := prepare(dir); err != nil {
			return nil, err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("pin dir %s: %w", dir, err)
		}
		f := os.NewFile(uintptr(fd), dir)
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, inUse(fmt.Sprintf("pin dir %s is locked by %s; refusing to start (stop it, or give this daemon its own --pin-dir)",
					dir, describeHolder(lockHolder(f))))
			}
			return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
		}
		// A daemon that releases the data plane removes the directory when
		// it is empty: hold the directory the path names now, not one that
		// was removed between open and flock.
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(dir, &now) == nil && held.Dev == now.Dev && held.Ino == now.Ino {
			return &pinLock{f: f, dir: dir, made: made}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock pin dir %s: it keeps being removed and made again", dir)
}

// release drops the lock. With failed set (nothing was loaded) a directory
// this daemon made is removed again if it is empty.
func (l *pinLock) release(failed bool) {
	if l == nil {
		return
	}
	if failed && l.made {
		os.Remove(l.dir)
	}
	l.f.Close()
}

// lockHolder is the pid holding a flock on f's file, from /proc/locks
// (0: not found).
func lockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer locks.Close()
	return parseLockHolder(locks, uint64(st.Dev), st.Ino)
}

// parseLockHolder finds in /proc/locks the pid of the process holding (not
// waiting for) a FLOCK on the file dev, ino. A line reads
//
//	1: FLOCK  ADVISORY  WRITE 17635 00:27:223415 0 EOF
//
// with the device as major:minor in hex; a waiter's has "->" after the
// number.
func parseLockHolder(r io.Reader, dev, ino uint64) int {
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// describeHolder names a process for a message: "xlbd (pid 1234: xlbd
// --config /etc/xlbd/lb.yaml ...)".
func describeHolder(pid int) string {
	if pid <= 0 {
		return "another process (its pid is not visible here)"
	}
	name := "another process"
	if comm := procComm(pid); comm != "" {
		name = comm
		if looksLikeXlbd(pid) {
			name = "another xlbd"
		}
	}
	cmd := procCmdline(pid)
	if cmd == "" {
		return fmt.Sprintf("%s (pid %d)", name, pid)
	}
	return fmt.Sprintf("%s (pid %d: %s)", name, pid, cmd)
}

func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procCmdline is a process's command line, spaces for NULs, cut at 200
// bytes.
func procCmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(string(stat), ')'); err == nil && i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// looksLikeXlbd reports whether pid runs this program: the same executable,
// or a command named as this one is (or xlbd). A pid file left by a dead
// daemon may name a pid the kernel has given to something else since.
func looksLikeXlbd(pid int) bool {
	if exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		if self, err := os.Stat("/proc/self/exe"); err == nil && os.SameFile(exe, self) {
			return true
		}
	}
	comm := procComm(pid)
	return comm != "" && (comm == "xlbd" || comm == procComm(os.Getpid()))
}

// pidFile is a --pid-file this daemon wrote.
type pidFile struct {
	path string
	pid  int
}

// claimPidFile writes our pid to path, refusing when the file names a live
// xlbd other than this process; a file left by a dead daemon (or naming a
// pid now used by something else) is replaced. The file appears with its
// content in one step (written aside, then linked in place), so another
// daemon never reads it empty.
func claimPidFile(path string, log *slog.Logger) (*pidFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	self := os.Getpid()
	tmp := fmt.Sprintf("%s.%d.tmp", path, self)
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(self)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	defer os.Remove(tmp)
	for range 5 {
		err := os.Link(tmp, path)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// A file system without hard links: create it in place.
			err = writeNew(path, self)
		}
		if err == nil {
			return &pidFile{path: path, pid: self}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pid file: %w", err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			continue // gone meanwhile: try again
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("pid file %s exists and is not a regular file; left alone", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("pid file: %w", err)
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr == nil && pid != self && alive(pid) && looksLikeXlbd(pid) {
			return nil, inUse(fmt.Sprintf("pid file %s names %s, which is running; refusing to start (stop it, or give this daemon its own --pid-file)",
				path, describeHolder(pid)))
		}
		// Stale: replace it, unless it changed since it was read.
		if now, err := os.Lstat(path); err != nil || !os.SameFile(fi, now) {
			continue
		}
		why := "its process is gone"
		switch {
		case perr != nil:
			why = "it holds no pid"
		case pid == self:
			why = "it names this process"
		case alive(pid):
			why = fmt.Sprintf("pid %d is not xlbd", pid)
		}
		log.Info("replacing a stale pid file", "pid_file", path, "had", strings.TrimSpace(string(b)), "because", why)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pid file: %w", err)
		}
	}
	return nil, fmt.Errorf("pid file %s: it keeps changing", path)
}

// writeNew creates path with pid in it, failing if it exists.
func writeNew(path string, pid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", pid)
	return errors.Join(err, f.Close())
}

// remove deletes the pid file if it still holds our pid: one another
// daemon has put there since is left alone.
func (p *pidFile) remove() {
	if p == nil {
		return
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid == p.pid {
		os.Remove(p.path)
	}
}
