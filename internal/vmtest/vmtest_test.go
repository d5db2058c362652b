package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbd/xlbd/internal/testenv"
)

// boot runs script in a guest and returns its exit status and console.
func boot(t *testing.T, files []File, script string) (int, string) {
	t.Helper()
	if err := Available(); err != nil {
		testenv.Skip(t, err.Error())
	}
	image, err := Image()
	if err != nil {
		t.Fatal(err)
	}
	// TCG boots take seconds; the margin is for a loaded machine running
	// other test packages in parallel.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var console bytes.Buffer
	start := time.Now()
	rc, err := Run(ctx, image, files, script, &console)
	t.Logf("guest ran %v; console:\n%s", time.Since(start).Round(time.Millisecond), console.String())
	if err != nil {
		t.Fatal(err)
	}
	return rc, console.String()
}

func TestBoot(t *testing.T) {
	t.Parallel()
	rc, console := boot(t, nil, `
/sbin/ip addr add 10.0.0.1/32 dev lo
ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m && ipvsadm -Ln
`)
	if rc != 0 {
		t.Errorf("ipvsadm exited %d, want 0", rc)
	}
	for _, want := range []string{"TCP  10.0.0.1:80 rr", "-> 10.0.1.2:80"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	if rc, _ := boot(t, nil, "echo failing on purpose\nexit 3\n"); rc != 3 {
		t.Errorf("rc = %d, want 3", rc)
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "tool.sh")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho from-host-file\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: "/etc/xlbd/note.txt", Data: []byte("inline-data-42\n")},
		{Path: "/usr/local/bin/tool.sh", Src: src},
	}
	rc, console := boot(t, files, `
cat /etc/xlbd/note.txt || exit 10
/usr/local/bin/tool.sh || exit 11
`)
	if rc != 0 {
		t.Errorf("rc = %d, want 0", rc)
	}
	for _, want := range []string{"inline-data-42", "from-host-file"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// entry is one parsed newc record.
type entry struct {
	name  string
	mode  uint32
	nlink uint32
	data  string
}

// parseNewc reads a newc archive up to its trailer, checking the alignment
// the kernel relies on.
func parseNewc(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 || len(b) < off+110 {
			t.Fatalf("bad header offset %d of %d", off, len(b))
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		mode, nlink, size, namesize := field(1), field(4), int(field(6)), int(field(11))
		nameEnd := off + 110 + namesize
		if b[nameEnd-1] != 0 {
			t.Fatalf("name at %d is not NUL-terminated", off)
		}
		name := string(b[off+110 : nameEnd-1])
		dataOff := align(nameEnd)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, entry{name, mode, nlink, string(b[dataOff : dataOff+size])})
		off = align(dataOff + size)
	}
}

func TestCPIO(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("abcde"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: "/a/b/c.txt", Data: []byte("hello")},
		{Path: "/a/b/d", Data: nil, Mode: 0o600},
		{Path: "/x", Src: src},
		{Path: "/a/e/f", Data: []byte("123"), Mode: 0o755},
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, files); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	const dir, reg = syscall.S_IFDIR, syscall.S_IFREG
	want := []entry{
		{"a", dir | 0o755, 2, ""},
		{"a/b", dir | 0o755, 2, ""},
		{"a/b/c.txt", reg | 0o644, 1, "hello"},
		{"a/b/d", reg | 0o600, 1, ""},
		{"x", reg | 0o700, 1, "abcde"},
		{"a/e", dir | 0o755, 2, ""},
		{"a/e/f", reg | 0o755, 1, "123"},
	}
	got := parseNewc(t, buf.Bytes())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("archive holds\n%v\nwant\n%v", got, want)
	}

	for _, bad := range []string{"rel/path", "/", ""} {
		if err := writeCPIO(io.Discard, []File{{Path: bad}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}

	// GNU cpio, which the image script installs, must agree.
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Log("no cpio here; skipped the cross-check")
		return
	}
	cmd := exec.Command("cpio", "-i", "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	var names []string
	for _, e := range want {
		names = append(names, e.name)
	}
	if got, want := strings.Fields(string(out)), names; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -t lists %v, want %v", got, want)
	}
}

func TestLineTail(t *testing.T) {
	tail := &lineTail{max: 2}
	for _, chunk := range []string{"boot\r\nXLBD-VM-", "EXIT 1\r\nfake XLBD-VM-EXIT 7\r\n", "a\nb\nXLBD-VM-EXIT 4"} {
		if _, err := tail.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if rc, ok := tail.exit(); !ok || rc != 4 {
		t.Errorf("exit() = %d, %v; want 4, true", rc, ok)
	}
	if got := tail.String(); got != "b\nXLBD-VM-EXIT 4" {
		t.Errorf("tail = %q", got)
	}
}

// TestImageTools checks what the image promises to later tests: scheduler
// autoload, the sync daemon, SCTP services and packet marking with nft.
func TestImageTools(t *testing.T) {
	t.Parallel()
	rc, console := boot(t, nil, `
set -e
ip=/sbin/ip
$ip addr add 10.0.0.1/32 dev lo
$ip addr add 10.0.0.5/32 dev lo
modprobe ip_vs_sh
ipvsadm -A -t 10.0.0.1:80 -s sh
ipvsadm -A --sctp-service 10.0.0.1:80 -s rr
ipvsadm -A -f 7 -s wlc
ipvsadm -Ln
ipvsadm --start-daemon master --mcast-interface lo --syncid 5
ipvsadm -L --daemon
$ip netns add cl
$ip link add v0 type veth peer name v1
$ip link set v1 netns cl
$ip addr add 10.0.100.1/24 dev v0
$ip link set v0 up
$ip -n cl addr add 10.0.100.2/24 dev v1
$ip -n cl link set v1 up
$ip -n cl route add default via 10.0.100.1
nft add table ip mangle
nft add chain ip mangle prerouting '{ type filter hook prerouting priority -150; }'
nft add rule ip mangle prerouting ip daddr 10.0.0.5 meta mark set 7
nft add chain ip mangle input '{ type filter hook input priority 0; }'
nft add rule ip mangle input meta mark 7 counter
$ip netns exec cl ping -c 2 -W 2 10.0.0.5 >/dev/null
nft list chain ip mangle input
`)
	if rc != 0 {
		t.Errorf("rc = %d, want 0", rc)
	}
	for _, want := range []string{
		"TCP  10.0.0.1:80 sh",
		"SCTP 10.0.0.1:80 rr",
		"FWM  7 wlc",
		"master sync daemon (mcast=lo, syncid=5",
		"meta mark 0x00000007 counter packets 2 ",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}
