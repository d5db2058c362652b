// Package vmtest runs shell scripts inside a qemu guest that boots Debian's
// own kernel, so that tests can use a real kernel IPVS even where the host
// kernel has none. scripts/ipvs-vm-image.sh (`make vm-image`) builds the
// image; the guest has busybox, ip, ipvsadm, nft and the IPVS, veth,
// bridge, nf_tables and sctp modules, and no network card, so all traffic
// stays inside guest namespaces.
//
// Each run appends a second cpio archive (the given files and the script)
// to the prebuilt initramfs, which is cheaper than rebuilding it: the
// kernel unpacks both, and later files win.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// File is one file to place in the guest, from Src on the host or from Data.
type File struct {
	Path string      // absolute path in the guest
	Src  string      // host file; when empty, Data is used
	Data []byte      // contents, when Src is empty
	Mode os.FileMode // permission bits; 0 means Src's, or 0644 for Data
}

const qemu = "qemu-system-x86_64"

// Image returns the directory holding vmlinux and base.cpio.gz.
func Image() (string, error) {
	dir := os.Getenv("XLBD_VM_IMAGE")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "build", "ipvs-vm")
	}
	for _, f := range []string{"vmlinux", "base.cpio.gz"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("no IPVS guest image in %s (%v): run `make vm-image`", dir, err)
		}
	}
	return dir, nil
}

// moduleRoot finds go.mod upwards from the working directory, which go test
// sets to the package's own directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory; set XLBD_VM_IMAGE")
		}
		dir = parent
	}
}

// Available returns nil when guests can be booted here, or why not.
func Available() error {
	if _, err := exec.LookPath(qemu); err != nil {
		return fmt.Errorf("%s is not installed (package qemu-system-x86): run `make vm-image`", qemu)
	}
	_, err := Image()
	return err
}

var exitLine = regexp.MustCompile(`XLBD-VM-EXIT (\d+)\s*$`)

// Run boots the image, runs script with sh as /test/run.sh after the
// guest's /init has loaded the modules and brought lo up, and returns the
// script's exit status. The guest console (kernel messages and the script's
// output) is copied to console as it arrives, when console is not nil.
// The guest is killed when ctx ends; a boot takes about 3 s.
func Run(ctx context.Context, image string, files []File, script string, console io.Writer) (rc int, err error) {
	tmp, err := os.MkdirTemp("", "xlbd-vmtest-")
	if err != nil {
		return -1, err
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initrd")
	if err := writeInitrd(initrd, filepath.Join(image, "base.cpio.gz"), files, script); err != nil {
		return -1, err
	}

	cmd := exec.CommandContext(ctx, qemu,
		// Never KVM: this machine's /dev/kvm cannot run the guest, and the
		// TCG boot is fast enough.
		"-accel", "tcg", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-nic", "none",
		// qboot boots as fast as SeaBIOS but, unlike it, does not clear
		// the terminal through the serial console.
		"-bios", "qboot.rom",
		"-kernel", filepath.Join(image, "vmlinux"), "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Bounds the wait for the output pipes should a straggler keep them open.
	cmd.WaitDelay = 5 * time.Second
	tail := &lineTail{max: 50}
	out := io.Writer(tail)
	if console != nil {
		out = io.MultiWriter(console, tail)
	}
	cmd.Stdout, cmd.Stderr = out, out

	runErr := cmd.Run()
	if rc, ok := tail.exit(); ok {
		return rc, nil
	}
	if ctx.Err() != nil {
		return -1, fmt.Errorf("guest killed: %w; last console lines:\n%s", ctx.Err(), tail)
	}
	return -1, fmt.Errorf("guest ended without XLBD-VM-EXIT (qemu: %v); last console lines:\n%s", runErr, tail)
}

// writeInitrd writes base followed by a cpio archive of files and script.
func writeInitrd(name, base string, files []File, script string) (err error) {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	b, err := os.Open(base)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, b)
	b.Close()
	if err != nil {
		return err
	}
	// The kernel finds the next archive only at a 4-byte boundary and skips
	// the zeros before it.
	if pad := (4 - n%4) % 4; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	w := bufio.NewWriter(f)
	all := append(files[:len(files):len(files)], File{Path: "/test/run.sh", Data: []byte(script), Mode: 0o755})
	if err := writeCPIO(w, all); err != nil {
		return err
	}
	return w.Flush()
}

// writeCPIO writes files as a newc ("070701") archive, with the parent
// directories of each file ahead of it, since the kernel does not create
// missing parents.
func writeCPIO(w io.Writer, files []File) error {
	cw := &cpioWriter{w: w, mtime: time.Now().Unix()}
	dirs := map[string]bool{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(f.Path) || p == "/" {
			return fmt.Errorf("vmtest: guest path %q is not an absolute file path", f.Path)
		}
		var parents []string
		for d := path.Dir(p); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		slices.Reverse(parents) // outermost first
		for _, d := range parents {
			if err := cw.header(d[1:], syscall.S_IFDIR|0o755, 0); err != nil {
				return err
			}
		}
		if err := cw.file(p[1:], f); err != nil {
			return err
		}
	}
	return cw.header("TRAILER!!!", 0, 0)
}

type cpioWriter struct {
	w     io.Writer
	ino   int
	mtime int64
}

func (c *cpioWriter) file(name string, f File) error {
	mode := f.Mode.Perm()
	var r io.Reader
	var size int64
	if f.Src != "" {
		src, err := os.Open(f.Src)
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("vmtest: %s is not a regular file", f.Src)
		}
		if f.Mode == 0 {
			mode = st.Mode().Perm()
		}
		r, size = src, st.Size()
	} else {
		if f.Mode == 0 {
			mode = 0o644
		}
		r, size = bytes.NewReader(f.Data), int64(len(f.Data))
	}
	if err := c.header(name, syscall.S_IFREG|uint32(mode), size); err != nil {
		return err
	}
	// A file that changes size while copied would shift every later entry.
	if n, err := io.Copy(c.w, io.LimitReader(r, size)); err != nil {
		return err
	} else if n != size {
		return fmt.Errorf("vmtest: %s shrank while being archived", f.Src)
	}
	return c.pad(size)
}

func (c *cpioWriter) header(name string, mode uint32, size int64) error {
	nlink := 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	ino := 0
	if name != "TRAILER!!!" {
		c.ino++
		ino = c.ino
	}
	// ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize, check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		ino, mode, 0, 0, nlink, c.mtime, size, 0, 0, 0, 0, len(name)+1, 0, name)
	if _, err := io.WriteString(c.w, hdr); err != nil {
		return err
	}
	return c.pad(int64(len(hdr)))
}

func (c *cpioWriter) pad(n int64) error {
	if p := (4 - n%4) % 4; p > 0 {
		_, err := c.w.Write(make([]byte, p))
		return err
	}
	return nil
}

// lineTail keeps the last max console lines and the last exit marker.
type lineTail struct {
	max     int
	partial []byte
	lines   []string
	rc      int
	seen    bool
}

func (t *lineTail) Write(p []byte) (int, error) {
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.add(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

func (t *lineTail) add(line string) {
	line = strings.TrimRight(line, "\r")
	if m := exitLine.FindStringSubmatch(line); m != nil {
		if rc, err := strconv.Atoi(m[1]); err == nil {
			t.rc, t.seen = rc, true
		}
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// exit flushes an unterminated last line, then returns the last marker.
func (t *lineTail) exit() (int, bool) {
	if len(t.partial) > 0 {
		t.add(string(t.partial))
		t.partial = nil
	}
	return t.rc, t.seen
}

func (t *lineTail) String() string { return strings.Join(t.lines, "\n") }
