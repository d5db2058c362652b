package script

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: needs root (%s); running as uid %d", why, os.Geteuid())
	}
}

func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	r := &Runner{}
	tests := []struct {
		body string
		args string
		want Result
	}{
		{body: "exit 0", want: Result{ExitCode: 0}},
		{body: "exit 1", want: Result{ExitCode: 1}},
		{body: "exit 255", want: Result{ExitCode: 255}},
		{body: `exit "$2"`, args: " a 42", want: Result{ExitCode: 42}},
		{body: "kill -9 $$", want: Result{ExitCode: -1, Signal: syscall.SIGKILL}},
	}
	for i, tt := range tests {
		p := writeScript(t, dir, "s"+strconv.Itoa(i), tt.body)
		res, err := r.Run(context.Background(), config.Script{Cmd: p + tt.args})
		if err != nil {
			t.Fatalf("%q: %v", tt.body, err)
		}
		res.Took = 0
		if (res.Err() == nil) != (tt.want.ExitCode == 0) {
			t.Errorf("%q: Err() = %v", tt.body, res.Err())
		}
		if res != tt.want {
			t.Errorf("%q: got %+v (%s), want %+v", tt.body, res, res, tt.want)
		}
	}
}

func TestExtraArgsAndQuoting(t *testing.T) {
	dir := t.TempDir()
	p := writeScript(t, dir, "args", `[ "$1" = "a b" ] && [ "$2" = MASTER ] && [ $# -eq 2 ]`)
	res, err := (&Runner{}).Run(context.Background(), config.Script{Cmd: `"` + p + `" "a b"`}, "MASTER")
	if err != nil || !res.OK() {
		t.Fatalf("got %v, %v; want exit status 0", res, err)
	}
}

func TestNoShebangRunsThroughShell(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "plain")
	if err := os.WriteFile(p, []byte("exit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := (&Runner{}).Run(context.Background(), config.Script{Cmd: p})
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("got %v, %v; want exit status 3", res, err)
	}
}

func TestFileTest(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runner{}
	if res, err := r.Run(context.Background(), config.Script{Cmd: "<" + present}); err != nil || !res.OK() {
		t.Errorf("<present: got %v, %v; want success", res, err)
	}
	if res, err := r.Run(context.Background(), config.Script{Cmd: "<" + filepath.Join(dir, "absent")}); err != nil || res.OK() {
		t.Errorf("<absent: got %v, %v; want failure", res, err)
	}
}

func TestRefused(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runner{}
	for _, tt := range []struct {
		cmd  string
		want error
	}{
		{filepath.Join(dir, "absent"), ErrNotFound},
		{"no-such-command-xlbd", ErrNotFound},
		{noexec, ErrNotExecutable},
		{"", ErrNotFound},
	} {
		_, err := r.Run(context.Background(), config.Script{Cmd: tt.cmd})
		if !errors.Is(err, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.cmd, err, tt.want)
		}
	}
}

// procState returns a process's state letter from /proc, or 0 when the
// process is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2]
	}
	return 0
}

// TestTimeoutKillsGroup runs a script that forks a child and hangs, once
// dying to SIGTERM and once ignoring it (so that only SIGKILL ends it):
// Run returns at the deadline and the script and its child both die.
func TestTimeoutKillsGroup(t *testing.T) {
	for _, tt := range []struct{ name, trap string }{
		{"sigterm", ""},
		{"sigkill", "trap '' TERM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "pids")
			p := writeScript(t, dir, "hang", tt.trap+"\nsleep 60 &\necho $$ $! > "+pidFile+"\nwhile :; do sleep 1; done")
			// A long grace tells a Run that returns at the deadline from
			// one that waits for the kill, even on a loaded machine.
			r := &Runner{KillGrace: time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err := r.Run(ctx, config.Script{Cmd: p})
			took := time.Since(start)
			if err != nil || !res.TimedOut || res.String() != "timeout" {
				t.Fatalf("got %+v, %v; want a timeout", res, err)
			}
			if took >= 300*time.Millisecond+r.KillGrace {
				t.Errorf("Run returned %v after start, want about 300ms (the deadline), not after the kill grace", took)
			}
			done := make(chan struct{})
			go func() { r.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Wait did not return: the script was not reaped")
			}
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				n, _ := strconv.Atoi(f)
				pids = append(pids, n)
			}
			if len(pids) != 2 {
				t.Fatalf("pid file %q", b)
			}
			// The child is reparented to init when its parent dies, so it
			// may linger as a zombie until init reaps it: dead either way.
			deadline := time.Now().Add(3 * time.Second)
			for _, pid := range pids {
				for st := procState(pid); st != 0 && st != 'Z'; st = procState(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("pid %d still alive (state %c)", pid, st)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}

func TestExpiredContextDoesNotStart(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	p := writeScript(t, dir, "s", "touch "+mark)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := (&Runner{}).Run(ctx, config.Script{Cmd: p})
	if err != nil || !res.TimedOut {
		t.Fatalf("got %v, %v; want timeout", res, err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("script ran with an expired context")
	}
}

// publicDir returns a new directory that every user can reach.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xlbd-script-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunAsUser(t *testing.T) {
	needRoot(t, "switching to user nobody")
	dir := publicDir(t)
	// The exit status tells who ran the script: uid and gid mod 256.
	uid := writeScript(t, dir, "uid", `exit $(( $(id -u) % 256 ))`)
	gid := writeScript(t, dir, "gid", `exit $(( $(id -g) % 256 ))`)
	groups := writeScript(t, dir, "groups", `[ "$(id -G)" = "$(id -g)" ]`)
	for _, tt := range []struct {
		name   string
		r      *Runner
		s      config.Script
		expect int
	}{
		{"script user", &Runner{}, config.Script{Cmd: uid, User: "nobody"}, 65534 % 256},
		{"script_user", &Runner{User: "nobody"}, config.Script{Cmd: uid}, 65534 % 256},
		{"own user wins", &Runner{User: "root"}, config.Script{Cmd: uid, User: "nobody"}, 65534 % 256},
		{"group", &Runner{}, config.Script{Cmd: gid, User: "nobody", Group: "root"}, 0},
		{"default root", &Runner{}, config.Script{Cmd: uid}, 0},
		{"no supplementary groups", &Runner{}, config.Script{Cmd: groups}, 0},
	} {
		res, err := tt.r.Run(context.Background(), tt.s)
		if err != nil || res.ExitCode != tt.expect {
			t.Errorf("%s: got %v, %v; want exit status %d", tt.name, res, err, tt.expect)
		}
	}
	if _, err := (&Runner{}).Run(context.Background(), config.Script{Cmd: uid, User: "no-such-user-xlbd"}); !errors.Is(err, ErrUser) {
		t.Errorf("unknown user: got %v, want ErrUser", err)
	}
}

func TestNotRootRunsAsSelf(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("skipped: checks the non-root path; running as root (TestRunAsUser covers root)")
	}
	dir := t.TempDir()
	p := writeScript(t, dir, "s", "exit 0")
	res, err := (&Runner{User: "nobody", Security: true}).Run(context.Background(), config.Script{Cmd: p, User: "root"})
	if err != nil || !res.OK() {
		t.Fatalf("got %v, %v; want the script run as self", res, err)
	}
}

func TestScriptSecurity(t *testing.T) {
	needRoot(t, "chown to build insecure paths and run scripts as root and nobody")
	nobody := 65534

	base := publicDir(t)
	mk := func(path string, mode os.FileMode, owner int) string {
		t.Helper()
		if err := os.Mkdir(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask
			t.Fatal(err)
		}
		if err := os.Chown(path, owner, 0); err != nil {
			t.Fatal(err)
		}
		return path
	}
	safe := mk(filepath.Join(base, "safe"), 0o755, 0)
	worldDir := mk(filepath.Join(base, "world"), 0o777, 0)
	sticky := mk(filepath.Join(base, "sticky"), 0o777|os.ModeSticky, 0)
	nobodyDir := mk(filepath.Join(base, "nobody"), 0o755, nobody)

	ok := writeScript(t, safe, "ok", "exit 0")
	worldFile := writeScript(t, safe, "worldfile", "exit 0")
	if err := os.Chmod(worldFile, 0o757); err != nil {
		t.Fatal(err)
	}
	groupFile := writeScript(t, safe, "groupfile", "exit 0")
	if err := os.Chmod(groupFile, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(groupFile, 0, nobody); err != nil {
		t.Fatal(err)
	}
	rootGroupFile := writeScript(t, safe, "rootgroupfile", "exit 0")
	if err := os.Chmod(rootGroupFile, 0o775); err != nil {
		t.Fatal(err)
	}
	inWorld := writeScript(t, worldDir, "s", "exit 0")
	inSticky := writeScript(t, sticky, "s", "exit 0")
	inNobody := writeScript(t, nobodyDir, "s", "exit 0")
	nobodyFile := writeScript(t, safe, "nobodyfile", "exit 0")
	if err := os.Chown(nobodyFile, nobody, 0); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(safe, "link")
	if err := os.Symlink(inWorld, link); err != nil {
		t.Fatal(err)
	}

	// A directory that is a symbolic link, as /bin on a merged-/usr
	// system: fine when root owns it, not when someone else does.
	dirLink := filepath.Join(base, "dirlink")
	if err := os.Symlink(safe, dirLink); err != nil {
		t.Fatal(err)
	}
	nobodyLink := filepath.Join(base, "nobodylink")
	if err := os.Symlink(safe, nobodyLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(nobodyLink, nobody, 0); err != nil {
		t.Fatal(err)
	}

	secure := &Runner{User: "root", Security: true}
	for _, tt := range []struct {
		name string
		r    *Runner
		s    config.Script
		want error
	}{
		{"safe", secure, config.Script{Cmd: ok}, nil},
		{"world-writable file", secure, config.Script{Cmd: worldFile}, ErrInsecure},
		{"group-writable, non-root group", secure, config.Script{Cmd: groupFile}, ErrInsecure},
		{"group-writable, root group", secure, config.Script{Cmd: rootGroupFile}, nil},
		{"world-writable directory", secure, config.Script{Cmd: inWorld}, ErrInsecure},
		{"sticky world-writable directory", secure, config.Script{Cmd: inSticky}, nil},
		{"directory owned by nobody", secure, config.Script{Cmd: inNobody}, ErrInsecure},
		{"file owned by nobody", secure, config.Script{Cmd: nobodyFile}, ErrInsecure},
		{"symlink to an insecure script", secure, config.Script{Cmd: link}, ErrInsecure},
		{"through a directory link root owns", secure, config.Script{Cmd: filepath.Join(dirLink, "ok")}, nil},
		{"through a directory link nobody owns", secure, config.Script{Cmd: filepath.Join(nobodyLink, "ok")}, ErrInsecure},
		{"dot-dot path", secure, config.Script{Cmd: filepath.Join(worldDir, "..", "safe", "ok")}, nil},
		{"insecure but security off", &Runner{}, config.Script{Cmd: inWorld}, nil},
		{"insecure but run as nobody", secure, config.Script{Cmd: inWorld, User: "nobody"}, nil},
		{"no user for security", &Runner{Security: true}, config.Script{Cmd: ok}, ErrUser},
	} {
		if tt.want == ErrUser {
			if userExists(DefaultUser) {
				continue // keepalived_script exists here: the rule does not apply
			}
		}
		_, err := tt.r.Run(context.Background(), tt.s)
		if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
		if cerr := tt.r.Check(tt.s); !errors.Is(cerr, tt.want) && !(tt.want == nil && cerr == nil) {
			t.Errorf("%s: Check: got %v, want %v", tt.name, cerr, tt.want)
		}
	}
}

func userExists(name string) bool {
	b, err := os.ReadFile("/etc/passwd")
	return err == nil && strings.Contains("\n"+string(b), "\n"+name+":")
}
