// Package script runs keepalived's scripts (MISC_CHECK's misc_path,
// notify_up/notify_down, quorum_up/quorum_down, VRRP notify and track
// scripts) the way keepalived does: as script_user, after
// enable_script_security's checks, in a process group of their own that
// is killed whole when the script overstays its time.
package script

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// DefaultUser is the user keepalived runs scripts as when script_user is
// not set, if it exists.
const DefaultUser = "keepalived_script"

// DefaultKillGrace is how long keepalived lets a timed-out script handle
// SIGTERM before it sends SIGKILL to the script's process group.
const DefaultKillGrace = 2 * time.Second

// Errors a script is refused with (wrapped, with the script's name).
var (
	ErrNotFound      = errors.New("script not found")
	ErrNotExecutable = errors.New("script not executable")
	ErrInsecure      = errors.New("script path writable by a non-root user")
	ErrUser          = errors.New("script user or group unusable")
)

// Runner runs scripts. Its zero value runs them as keepalived would with
// an empty global_defs; it is safe for concurrent use.
type Runner struct {
	// User and Group are global_defs' script_user: whom scripts without a
	// user of their own run as. An empty User means keepalived_script if
	// that user exists, else the user xlbd runs as (root).
	User, Group string
	// Security is enable_script_security: refuse to run a script as root
	// when it or a directory above it is writable by someone else.
	Security bool
	// KillGrace is the time between SIGTERM and SIGKILL for a script
	// whose context expired; 0 means DefaultKillGrace.
	KillGrace time.Duration
	Log       *slog.Logger

	reaping sync.WaitGroup
}

// NewRunner returns a Runner with global_defs' script settings.
func NewRunner(g config.Global, log *slog.Logger) *Runner {
	return &Runner{User: g.ScriptUser, Group: g.ScriptGroup, Security: g.EnableScriptSecurity, Log: log}
}

// Result is how a script ended.
type Result struct {
	// ExitCode is the exit status, or -1 when the script was killed by a
	// signal or timed out.
	ExitCode int
	Signal   syscall.Signal // the signal that killed it, if one did
	TimedOut bool           // the context expired first; its group was killed
	Took     time.Duration
}

// OK reports whether the script exited with status 0.
func (r Result) OK() bool { return r.ExitCode == 0 && !r.TimedOut }

// Err is nil when the script exited with status 0, else an error saying
// how it ended.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	return errors.New(r.String())
}

// String says how the script ended in a few words: "exit status 1",
// "timeout", "signal killed".
func (r Result) String() string {
	switch {
	case r.TimedOut:
		return "timeout"
	case r.Signal != 0:
		return "signal " + r.Signal.String()
	}
	return fmt.Sprintf("exit status %d", r.ExitCode)
}

// Check vets s as keepalived does when it loads its configuration: the
// user exists, the script is found and executable by that user, and with
// enable_script_security a script run as root sits on a path only root
// can change. An insecure script that Security allows is logged.
func (r *Runner) Check(s config.Script) error {
	p, err := r.vet(s, nil)
	if err != nil {
		return err
	}
	if p.insecure {
		r.log().Warn("script path is writable by a non-root user and enable_script_security is off; it runs anyway",
			"script", p.args[0], "path", p.insecurePath)
	}
	return nil
}

func (r *Runner) vet(s config.Script, extra []string) (*prepared, error) {
	p, err := r.prepare(s, extra)
	if err != nil {
		return nil, err
	}
	if p.insecure && r.Security {
		return nil, fmt.Errorf("%s: %w (%s)", p.args[0], ErrInsecure, p.insecurePath)
	}
	return p, nil
}

// Run runs s with extra appended to its arguments and waits for it to
// exit or for ctx to end, whichever is first. When ctx ends, the script's
// process group gets SIGTERM and, KillGrace later (or as soon as the
// script itself has gone), SIGKILL; Run returns at once with TimedOut and
// the group is reaped in the background (see Wait). The error is for a
// script that could not be started: refused, not found, unknown user.
func (r *Runner) Run(ctx context.Context, s config.Script, extra ...string) (Result, error) {
	p, err := r.vet(s, extra)
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1, TimedOut: true}, nil
	}

	start := time.Now()
	cmd := p.command()
	if err := cmd.Start(); err != nil {
		if !errors.Is(err, syscall.ENOEXEC) {
			return Result{ExitCode: -1}, fmt.Errorf("%s: %w", p.args[0], err)
		}
		// No #! line: keepalived hands such a script to the shell.
		cmd = p.command()
		cmd.Path = "/bin/sh"
		cmd.Args = append([]string{"sh", p.path}, p.args[1:]...)
		if err := cmd.Start(); err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("%s: %w", p.args[0], err)
		}
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		// Wait reaps the leader; stdio is /dev/null, so no copying
		// goroutine can keep it waiting on the script's children.
		_ = cmd.Wait()
		close(exited)
	}()

	select {
	case <-exited:
		return resultOf(cmd.ProcessState, time.Since(start)), nil
	case <-ctx.Done():
	}

	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	r.reaping.Add(1)
	go func() {
		defer r.reaping.Done()
		grace := r.KillGrace
		if grace <= 0 {
			grace = DefaultKillGrace
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
		}
		// Also when the leader obeyed SIGTERM: its children may not have,
		// and they are still in its group.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}()
	r.log().Debug("script timed out, process group killed", "script", p.args[0], "pgid", pgid)
	return Result{ExitCode: -1, TimedOut: true, Took: time.Since(start)}, nil
}

// Wait waits until every script that Run gave up on has been killed and
// reaped.
func (r *Runner) Wait() { r.reaping.Wait() }

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

func resultOf(ps *os.ProcessState, took time.Duration) Result {
	res := Result{ExitCode: ps.ExitCode(), Took: took}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal()
	}
	return res
}

// prepared is a script ready to start.
type prepared struct {
	args []string
	// path is what is executed: the script with symlinks resolved, so
	// the file vetted is the file run. Empty for a shell command.
	path         string
	shell        string // a "</path" test run through sh -c
	id           identity
	insecure     bool
	insecurePath string
}

func (p *prepared) command() *exec.Cmd {
	cmd := &exec.Cmd{Path: p.path, Args: p.args, Env: scriptEnv(), Dir: "/"}
	if p.shell != "" {
		cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", p.shell}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !p.id.self {
		// Groups empty clears root's supplementary groups, as keepalived.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: p.id.uid, Gid: p.id.gid, Groups: p.id.groups}
	}
	// No Pdeathsig: Go ties it to the forking OS thread, which the
	// runtime may retire long before xlbd exits.
	return cmd
}

func (r *Runner) prepare(s config.Script, extra []string) (*prepared, error) {
	args := append(s.Args(), extra...)
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("empty script: %w", ErrNotFound)
	}
	id, err := r.identity(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", args[0], err)
	}
	p := &prepared{args: args, id: id}
	// keepalived's one exception: "</some/file" only tests that a file
	// can be opened, through the shell, and is not vetted.
	if a0 := args[0]; a0[0] == '<' && strings.HasPrefix(strings.TrimLeft(a0[1:], " \t"), "/") {
		p.shell = shellQuote(args)
		return p, nil
	}
	if err := p.resolve(); err != nil {
		return nil, err
	}
	return p, nil
}

// scriptEnv is xlbd's environment without what could subvert a script
// run as root, as keepalived drops it.
func scriptEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "IFS", "LD_PRELOAD", "LD_LIBRARY_PATH":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// shellQuote joins args for sh -c as keepalived's cmd_str does: each in
// single quotes, except a leading redirection.
func shellQuote(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i == 0 && (a[0] == '<' || a[0] == '>') {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
