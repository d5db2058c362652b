package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Limits on what one configuration may make xlbd read and build. A reload
// runs in the daemon's main loop, so a file that never ends (/dev/zero), a
// read that never returns (a FIFO) or a document whose parse grows with
// the square of its nesting would stop the daemon from answering signals
// or take all the memory. Each limit is far beyond a real configuration:
// the data plane's largest (4096 services, 65536 real servers, a checker
// each) takes about 8 MiB as keepalived.conf and 7 to 10 MiB as lb.yaml.
const (
	// MaxFileSize is the largest file read: the main file or one include.
	MaxFileSize = 4 << 20

	// MaxTotalSize bounds the main file and every file it includes,
	// together.
	MaxTotalSize = 16 << 20

	// MaxFiles bounds the files of one configuration, the main one
	// included.
	MaxFiles = 1000

	// MaxIncludeDepth bounds includes within includes.
	MaxIncludeDepth = 16

	// MaxNesting bounds nested { } blocks in keepalived.conf, and in
	// lb.yaml nested collections: flow [ ] and { } and block indentation
	// levels together. A real configuration needs about ten.
	MaxNesting = 64

	// MaxKeys bounds the keys of one block mapping in lb.yaml, where a
	// real one has a few dozen at most.
	MaxKeys = 1000

	// MaxErrors bounds the errors one load returns, and separately the
	// warnings; past it they are counted, and a last entry says how many
	// were left out.
	MaxErrors = 1000
)

var (
	// ErrNotRegular is what reading a device, FIFO, socket or directory
	// as configuration gives (errors.Is); only regular files are read.
	ErrNotRegular = errors.New("not a regular file")

	// ErrTooLarge is what reading a file over MaxFileSize gives.
	ErrTooLarge = errors.New("file too large")
)

// notRegularError says what a file is instead of a regular file. It is
// also syscall.EISDIR for a directory, as os.ReadFile's error would be.
type notRegularError struct{ mode fs.FileMode }

func (e *notRegularError) Error() string {
	return "is " + fileKind(e.mode) + ", not a regular file"
}

func (e *notRegularError) Is(target error) bool {
	return target == ErrNotRegular || (target == syscall.EISDIR && e.mode.IsDir())
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// sizeError says that a file is over limit bytes.
type sizeError struct{ limit int64 }

func (e *sizeError) Error() string {
	return fmt.Sprintf("larger than %s, the most xlbd reads of one configuration file", sizeText(e.limit))
}

func (e *sizeError) Is(target error) bool { return target == ErrTooLarge }

// sizeText writes a limit as people think of it: "4 MiB".
func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readLimited reads a configuration file of at most limit bytes. Only a
// regular file (or a symbolic link to one) is read: anything else is
// refused before it is opened, since opening some devices has effects
// (a watchdog starts its timer) and opening a FIFO waits for a writer.
// The file is then opened without blocking and checked again, in case it
// was replaced in between, and read through a limit, so that a file that
// grows while it is read cannot go past it either. Errors are
// *fs.PathError naming the file; errors.Is finds ErrNotRegular,
// ErrTooLarge and fs.ErrNotExist.
func readLimited(name string, limit int64) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		// What makes stat fail (no such file, a directory on the way
		// that cannot be searched) makes open fail too; say "open", as
		// os.ReadFile did.
		if pe, ok := err.(*fs.PathError); ok {
			pe.Op = "open"
		}
		return nil, err
	}
	if err := checkRegular(name, fi, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK makes opening a FIFO return at once; on a regular file
	// it changes nothing. O_NOCTTY keeps a terminal put in the file's
	// place from becoming the daemon's controlling terminal.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkRegular(name, fi, limit); err != nil {
		return nil, err
	}

	// As os.ReadFile, with room for one byte past the size, so that
	// reaching the end needs no second allocation.
	data := make([]byte, 0, min(fi.Size(), limit)+1)
	r := io.LimitReader(f, limit+1)
	for {
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: name, Err: &sizeError{limit}}
	}
	return data, nil
}

func checkRegular(name string, fi fs.FileInfo, limit int64) error {
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "read", Path: name, Err: &notRegularError{fi.Mode()}}
	}
	if fi.Size() > limit {
		return &fs.PathError{Op: "read", Path: name, Err: &sizeError{limit}}
	}
	return nil
}

// tooLarge checks what a caller's readFile returned against limit.
func tooLarge(name string, data []byte, limit int64) error {
	if int64(len(data)) > limit {
		return &fs.PathError{Op: "read", Path: name, Err: &sizeError{limit}}
	}
	return nil
}
