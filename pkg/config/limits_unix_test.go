//go:build unix

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The configuration reader takes only regular files, never blocks, and
// never reads more than the limits, whether the file is the main one, a
// named include or one a pattern found.
func TestReadOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(path(name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(path("fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", path("sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if err := os.Mkdir(path("conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path("conf.d/sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("conf.d/a.conf", "virtual_server 10.0.0.1 80 {\n}\n")
	if err := os.Symlink(path("fifo"), path("conf.d/fifo-link")); err != nil {
		t.Fatal(err)
	}
	// Sparse: the size is checked before anything is read.
	big, err := os.Create(path("big.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	big.Close()
	if err := os.Symlink("/dev/zero", path("zero.yaml")); err != nil {
		t.Fatal(err)
	}
	// loop/a.conf includes itself by a name that is longer each time,
	// which the cycle check (by name) cannot see; the depth limit ends it.
	if err := os.Mkdir(path("loop"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("loop/a.conf", "include sub/a.conf\n")
	if err := os.Symlink(".", path("loop/sub")); err != nil {
		t.Fatal(err)
	}

	notRegular := func(kind string) string { return "is " + kind + ", not a regular file" }
	for _, tt := range []struct {
		name     string
		main     string // the main file, or
		conf     string // keepalived.conf text read as dir/keepalived.conf
		want     string // the error, all of it or (for the main file) a part
		wantErr  error  // errors.Is, for the main file
		maxAlloc uint64
	}{
		{name: "main file /dev/zero", main: "/dev/zero", want: "/dev/zero: " + notRegular("a character device"), wantErr: ErrNotRegular},
		{name: "main file link to /dev/zero", main: path("zero.yaml"), want: notRegular("a character device"), wantErr: ErrNotRegular},
		{name: "main file FIFO", main: path("fifo"), want: notRegular("a named pipe (FIFO)"), wantErr: ErrNotRegular},
		{name: "main file socket", main: path("sock"), want: notRegular("a socket"), wantErr: ErrNotRegular},
		{name: "main file directory", main: path("conf.d"), want: notRegular("a directory"), wantErr: ErrNotRegular},
		{name: "main file too large", main: path("big.conf"), want: "larger than 4 MiB", wantErr: ErrTooLarge},
		{name: "main file missing", main: path("missing.conf"), want: "open " + path("missing.conf") + ": no such file or directory", wantErr: fs.ErrNotExist},

		{name: "include /dev/zero", conf: "include /dev/zero\n",
			want: `keepalived.conf:1: include: include "/dev/zero": /dev/zero: ` + notRegular("a character device")},
		{name: "include /dev/null", conf: "include /dev/null\n",
			want: `keepalived.conf:1: include: include "/dev/null": /dev/null: ` + notRegular("a character device")},
		{name: "include FIFO", conf: "global_defs {\n}\ninclude fifo\n",
			want: `keepalived.conf:3: include: include "fifo": ` + path("fifo") + ": " + notRegular("a named pipe (FIFO)")},
		{name: "include socket", conf: "include sock\n",
			want: `keepalived.conf:1: include: include "sock": ` + path("sock") + ": " + notRegular("a socket")},
		{name: "pattern finds a link to a FIFO", conf: "include conf.d/*\n",
			want: `keepalived.conf:1: include: include "conf.d/*": ` + path("conf.d/fifo-link") + ": " + notRegular("a named pipe (FIFO)")},
		{name: "include directory", conf: "include conf.d\n",
			want: `keepalived.conf:1: include: include "conf.d": ` + path("conf.d") + ` is a directory (include conf.d/* to read the files in it)`},
		{name: "pattern finds a directory", conf: "include conf.d/*.conf\n"}, // skipped, as keepalived does
		{name: "include too large", conf: "include big.conf\n",
			want: `keepalived.conf:1: include: include "big.conf": ` + path("big.conf") + ": larger than 4 MiB, the most xlbd reads of one configuration file"},
		{name: "include loop through a link", conf: "include loop/a.conf\n",
			want: path("loop"+strings.Repeat("/sub", MaxIncludeDepth-1)+"/a.conf") + ":1: include: includes nested more than 16 deep"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.maxAlloc == 0 {
				tt.maxAlloc = 1 << 20
			}
			if tt.main != "" {
				err := bounded(t, tt.maxAlloc, func() error {
					_, err := LoadFormat(tt.main, FormatKeepalived)
					return err
				})
				if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v\nwant one containing %q and matching %v", err, tt.want, tt.wantErr)
				}
				return
			}
			main := path("keepalived.conf")
			write("keepalived.conf", tt.conf)
			err := bounded(t, tt.maxAlloc, func() error {
				_, err := Load(main)
				return err
			})
			got := ""
			if err != nil {
				got = strings.ReplaceAll(err.Error(), main, "keepalived.conf")
			}
			if got != tt.want {
				t.Errorf("err = %s\nwant %s", got, tt.want)
			}
		})
	}
}

// The files of one configuration together are read up to MaxTotalSize.
func TestReadTotalSize(t *testing.T) {
	dir := t.TempDir()
	// Five includes of 3.5 MiB: each is under MaxFileSize, all are over
	// MaxTotalSize. Comments, so that what is read costs little to parse.
	line := "#" + strings.Repeat("x", 1023) + "\n"
	part := strings.Repeat(line, 3584)
	var main strings.Builder
	for i := range 5 {
		name := fmt.Sprintf("part%d.conf", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(part), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&main, "include %s\n", name)
	}
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(main.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := fmt.Sprintf(`%s:5: include: include "part4.conf": %s: with it the configuration is larger than 16 MiB, the most xlbd reads of a file and all it includes`,
		path, filepath.Join(dir, "part4.conf"))
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}

	// The same from a caller's readFile.
	files := memFS{}
	for i := range 5 {
		files[fmt.Sprintf("/k/part%d.conf", i)] = part
	}
	_, err = ParseKeepalived("/k/keepalived.conf", []byte("include part*.conf\n"), files.read, files.glob)
	want = `/k/keepalived.conf:1: include: include "part*.conf": /k/part4.conf: with it the configuration is larger than 16 MiB, the most xlbd reads of a file and all it includes`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// The size a file's metadata gives is not trusted: a file in /proc says 0
// and has more, and a file can grow while it is read. The read itself is
// limited.
func TestReadLimitWhileReading(t *testing.T) {
	const name = "/proc/self/maps"
	fi, err := os.Stat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Skipf("%s is not a regular file that says it is empty here", name)
	}
	if _, err := readLimited(name, 16); !errors.Is(err, ErrTooLarge) {
		t.Errorf("readLimited(%s, 16): %v, want ErrTooLarge", name, err)
	}
	data, err := readLimited(name, MaxFileSize)
	if err != nil || len(data) == 0 {
		t.Errorf("readLimited(%s): %d bytes, %v", name, len(data), err)
	}
}
