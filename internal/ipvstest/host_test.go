// Package ipvstest runs xlbd's IPVS data plane against a real kernel IPVS.
// The host kernel has none, so TestIPVS boots Debian's kernel under qemu
// (internal/vmtest) with a static xlbd and this package's own test binary,
// and runs the same TestIPVS inside the guest, where the scenarios build
// namespace labs and send real traffic through IPVS.
package ipvstest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testenv"
	"github.com/xlbd/xlbd/internal/vmtest"
)

// guestEnv is set inside the guest: TestIPVS runs the scenarios there.
const guestEnv = "XLBD_IPVS_GUEST"

func TestIPVS(t *testing.T) {
	if os.Getenv(guestEnv) == "1" {
		guest(t)
		return
	}
	if err := vmtest.Available(); err != nil {
		testenv.Skip(t, fmt.Sprintf("cannot boot the IPVS guest: %v", err))
	}
	image, err := vmtest.Image()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xlbd, test := filepath.Join(dir, "xlbd"), filepath.Join(dir, "ipvstest.test")
	for _, args := range [][]string{
		{"build", "-o", xlbd, "github.com/xlbd/xlbd/cmd/xlbd"},
		{"test", "-c", "-o", test, "github.com/xlbd/xlbd/internal/ipvstest"},
	} {
		cmd := exec.Command("go", args...)
		// Static: the guest has busybox and little else.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run := "-test.run=^TestIPVS$"
	if testing.Verbose() {
		run += " -test.v"
	}
	script := fmt.Sprintf("export %s=1 XLBD_BIN=/test/xlbd CI=%s\ncd /tmp && /test/ipvstest.test -test.v %s -test.timeout=12m\n",
		guestEnv, os.Getenv("CI"), run)
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	var console bytes.Buffer
	start := time.Now()
	rc, err := vmtest.Run(ctx, image, []vmtest.File{
		{Path: "/test/xlbd", Src: xlbd, Mode: 0o755},
		{Path: "/test/ipvstest.test", Src: test, Mode: 0o755},
	}, script, &console)
	t.Logf("guest ran %.1f s", time.Since(start).Seconds())
	// The guest's test lines, as they would read on the host.
	var results []string
	sc := bufio.NewScanner(strings.NewReader(console.String()))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "--- ") || strings.HasPrefix(strings.TrimSpace(l), "ipvs_test.go") ||
			strings.HasPrefix(strings.TrimSpace(l), "guest_test.go") {
			results = append(results, l)
		}
	}
	if err != nil || rc != 0 {
		t.Fatalf("the IPVS guest failed (rc %d, %v); its console:\n%s", rc, err, console.String())
	}
	t.Logf("in the guest:\n%s", strings.Join(results, "\n"))
	if !strings.Contains(console.String(), "--- PASS: TestIPVS") {
		t.Fatalf("the guest did not report TestIPVS passing; its console:\n%s", console.String())
	}
}
