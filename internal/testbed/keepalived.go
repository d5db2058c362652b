package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// KeepalivedPath is Debian's keepalived, the reference VRRP implementation
// xlbd is compared with.
const KeepalivedPath = "/usr/sbin/keepalived"

// Keepalived is a keepalived running only its VRRP subsystem in the
// foreground inside a namespace, logging to its output. Output and WaitFor
// come from Process; the Cleanuper given to StartKeepalived ends it,
// paused or not.
//
// keepalived is two processes: the parent, which only watches and respawns
// its child, and the VRRP child, which sends the adverts, holds the VIPs and
// sends gratuitous ARP. Both are in one process group led by the parent.
type Keepalived struct {
	*Process
	NS  *Netns
	Dir string // holds keepalived.conf and the pid files

	paused atomic.Bool
}

// StartKeepalived writes conf to a fresh temporary directory and runs
// keepalived on it in ns. Nothing outside that directory and ns is touched:
// the configuration and every pid file are there (so that keepalived instances of
// concurrent tests never see each other's pid files and refuse to start),
// logging goes to the console only (no syslog), and only VRRP runs, so
// neither IPVS nor BFD is needed.
func StartKeepalived(c Cleanuper, ns *Netns, conf string) (k *Keepalived, err error) {
	if _, err := os.Stat(KeepalivedPath); err != nil {
		return nil, fmt.Errorf("keepalived: %w", err)
	}
	dir, err := os.MkdirTemp("", "xlbd-keepalived-")
	if err != nil {
		return nil, err
	}
	c.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := ns.Command(KeepalivedPath,
		"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", path,
		"--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"),
		"--bfd_pid", filepath.Join(dir, "bfd.pid"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so that the VRRP child can be paused and
		// killed together with the parent.
		Setpgid: true,
		// Should the test binary die without cleanups (a -timeout
		// panic), the parent dies too, and keepalived makes its child
		// follow. The signal really comes when the forking thread
		// exits, hence startOnSpawner.
		Pdeathsig: syscall.SIGKILL,
	}
	// The VRRP child inherits the output pipe; should it outlive the
	// parent, Wait must not hang on it.
	cmd.WaitDelay = 2 * time.Second
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	if err := startOnSpawner(cmd); err != nil {
		return nil, fmt.Errorf("start keepalived in %s: %w", ns, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	k = &Keepalived{Process: p, NS: ns, Dir: dir}
	c.Cleanup(k.Stop)
	return k, nil
}

// Pid is the parent's pid, which is also the process group's id
// (`ip netns exec` execs keepalived without forking).
func (k *Keepalived) Pid() int { return k.Cmd.Process.Pid }

// VRRPPid is the pid of the VRRP child, as it wrote it to its pid file once
// started.
func (k *Keepalived) VRRPPid() (int, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, "vrrp.pid"))
	if err != nil {
		return 0, fmt.Errorf("keepalived VRRP child: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Signal sends sig to the parent only, which is where keepalived expects
// SIGTERM (orderly stop: the child sends priority 0 and drops the VIPs) and
// SIGHUP (reload); it relays them to the child itself.
func (k *Keepalived) Signal(sig os.Signal) error { return k.Cmd.Process.Signal(sig) }

// signalGroup sends sig to the parent and the VRRP child at once. Once the
// parent is reaped its pid may be reused, by a group leader too, so then
// only a VRRP child still in our group is signalled.
func (k *Keepalived) signalGroup(sig syscall.Signal) error {
	select {
	case <-k.exited:
		return k.signalOrphan(sig)
	default:
	}
	err := syscall.Kill(-k.Pid(), sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (k *Keepalived) signalOrphan(sig syscall.Signal) error {
	pid, err := k.VRRPPid()
	if err != nil {
		return nil // never started, or removed its pid file on exit
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	// pid (comm) state ppid pgrp ...
	comm, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || !strings.HasSuffix(comm, "(keepalived") || len(f) < 3 || f[2] != strconv.Itoa(k.Pid()) {
		return nil
	}
	return syscall.Kill(pid, sig)
}

// Pause freezes keepalived with SIGSTOP, as a hung master: it keeps its VIPs
// but sends no more adverts. The signal goes to the whole process group: the
// VRRP child is the one that matters, since it sends the adverts (stopping
// only the parent changes nothing on the wire), and the parent is frozen
// too so that a frozen daemon is frozen throughout.
func (k *Keepalived) Pause() error {
	k.paused.Store(true)
	return k.signalGroup(syscall.SIGSTOP)
}

// Resume undoes Pause with SIGCONT to the whole group.
func (k *Keepalived) Resume() error {
	err := k.signalGroup(syscall.SIGCONT)
	if err == nil {
		k.paused.Store(false)
	}
	return err
}

// Kill ends keepalived with SIGKILL to the whole group, as a crash: the
// VIPs stay on the interfaces and no priority 0 advert is sent.
func (k *Keepalived) Kill() {
	k.signalGroup(syscall.SIGKILL)
	<-k.exited
	k.paused.Store(false)
}

// Exited is closed when the parent has exited.
func (k *Keepalived) Exited() <-chan struct{} { return k.exited }

// Stop ends keepalived in order (SIGTERM to the parent, which stops the
// child, drops the VIPs and sends priority 0) and waits; after 10 s it
// kills the group. A paused keepalived is resumed first, or SIGTERM would
// stay pending.
func (k *Keepalived) Stop() {
	if k.paused.Load() {
		k.Resume()
	}
	k.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(10 * time.Second):
		k.Kill()
	}
	// The parent waits for its child before exiting, but make sure
	// nothing of the group survives.
	k.signalGroup(syscall.SIGKILL)
}

// spawner is a thread that never exits, in the host's namespaces.
// Pdeathsig fires when the thread that forked the child exits, not the
// process, and any other thread may exit: Netns.Do's goroutines lock their
// thread and end, and one of them may have been scheduled on the very
// thread that forked keepalived a moment before, killing it at once.
var spawner = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
})

func startOnSpawner(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawner() <- func() { errc <- cmd.Start() }
	return <-errc
}
