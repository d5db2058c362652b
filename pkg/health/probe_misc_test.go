package health

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/script"
)

func miscChecker(cmd string, dynamic bool) config.Checker {
	return config.Checker{Type: config.CheckMisc, Misc: &config.MiscCheck{Path: config.Script{Cmd: cmd}, Dynamic: dynamic, Timeout: time.Second}}
}

func TestMiscCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exit := filepath.Join(dir, "exit")
	if err := os.WriteFile(exit, []byte("#!/bin/sh\nexit \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := netip0()
	for _, tt := range []struct {
		code    int
		dynamic bool
		ok      bool
		weight  int
		reason  string
	}{
		{0, false, true, NoWeight, ""},
		{1, false, false, NoWeight, "exit status 1"},
		{12, false, false, NoWeight, "exit status 12"},
		{0, true, true, NoWeight, ""}, // keepalived: 0 leaves the weight alone
		{1, true, false, NoWeight, "exit status 1"},
		{2, true, true, 0, "exit status 2"},
		{12, true, true, 10, "exit status 12"},
		{255, true, true, 253, "exit status 255"},
	} {
		r := probe(t, miscChecker(exit+" "+strconv.Itoa(tt.code), tt.dynamic), target, ProbeOptions{}, 2*time.Second)
		if r.OK != tt.ok || r.Weight != tt.weight || r.Reason != tt.reason {
			t.Errorf("exit %d dynamic %v: got %+v, want OK=%v weight %d reason %q", tt.code, tt.dynamic, r, tt.ok, tt.weight, tt.reason)
		}
	}
}

func TestMiscCheckTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hang := filepath.Join(dir, "hang")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := &script.Runner{KillGrace: 2 * time.Second}
	const timeout = 300 * time.Millisecond
	r := probe(t, miscChecker(hang, true), netip0(), ProbeOptions{Scripts: run}, timeout)
	if r.OK || r.Reason != "timeout" {
		t.Errorf("got %+v, want a timeout", r)
	}
	if r.Took > timeout+time.Second {
		t.Errorf("took %v, want about %v, not the kill grace", r.Took, timeout)
	}
	run.Wait()
}

func TestMiscCheckRefused(t *testing.T) {
	t.Parallel()
	r := probe(t, miscChecker("/nonexistent/xlbd-check", false), netip0(), ProbeOptions{}, time.Second)
	if r.OK || r.Reason != script.ErrNotFound.Error() {
		t.Errorf("got %+v, want %q", r, script.ErrNotFound)
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped the enable_script_security part: needs root (scripts run as root only then)")
	}
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(open, "check")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := &script.Runner{User: "root", Security: true}
	r = probe(t, miscChecker(p, false), netip0(), ProbeOptions{Scripts: run}, time.Second)
	if r.OK || r.Reason != script.ErrInsecure.Error() {
		t.Errorf("insecure script: got %+v, want %q", r, script.ErrInsecure)
	}
}
