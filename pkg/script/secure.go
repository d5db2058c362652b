package script

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/xlbd/xlbd/pkg/config"
)

// identity is whom a script runs as.
type identity struct {
	uid, gid uint32
	groups   []uint32
	// self: run as xlbd itself, without changing credentials.
	self bool
}

// identity resolves keepalived's rule: the script's own user (and group),
// else script_user, else keepalived_script if it exists, else root. A
// group that starts with ':' also sets the user's supplementary groups.
// When xlbd is not root it cannot change user, and runs every script as
// itself.
func (r *Runner) identity(s config.Script) (identity, error) {
	if os.Geteuid() != 0 {
		return identity{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), self: true}, nil
	}
	// Root stays root but, as in keepalived, without its supplementary
	// groups.
	root := identity{uid: 0, gid: uint32(os.Getegid()), groups: []uint32{}}
	name, group := s.User, s.Group
	if name == "" {
		name, group = r.User, r.Group
	}
	if name == "" {
		if _, err := user.Lookup(DefaultUser); err != nil {
			if r.Security {
				// keepalived 2.2: "Unable to set default user
				// keepalived_script for script", and the script is ignored.
				return identity{}, fmt.Errorf("%w: enable_script_security needs script_user or a %s user", ErrUser, DefaultUser)
			}
			return root, nil
		}
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return identity{}, fmt.Errorf("%w: %v", ErrUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return identity{}, fmt.Errorf("%w: user %s has no numeric ids", ErrUser, name)
	}
	id := identity{uid: uint32(uid), gid: uint32(gid), groups: []uint32{}}
	if rest, sup := strings.CutPrefix(group, ":"); sup {
		group = rest
		gids, err := u.GroupIds()
		if err != nil {
			return identity{}, fmt.Errorf("%w: groups of %s: %v", ErrUser, name, err)
		}
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				id.groups = append(id.groups, uint32(n))
			}
		}
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return identity{}, fmt.Errorf("%w: %v", ErrUser, err)
		}
		n, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return identity{}, fmt.Errorf("%w: group %s has no numeric id", ErrUser, group)
		}
		id.gid = uint32(n)
	}
	return id, nil
}

// resolve finds the file to execute and vets it as keepalived's
// check_script_secure does: a bare name is searched in PATH, the file
// must be executable by the script's user, and when that user (or group)
// is root, or the file is set-uid/gid root, every part of the path as
// written and as resolved must be safe (see unsafe).
func (p *prepared) resolve() error {
	name := p.args[0]
	if !strings.Contains(name, "/") {
		found, err := p.searchPath(name)
		if err != nil {
			return err
		}
		name = found
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return fmt.Errorf("%s: %w", p.args[0], ErrNotFound)
	}
	abs = filepath.Clean(abs)
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", p.args[0], ErrNotFound)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(real, &st); err != nil {
		return fmt.Errorf("%s: %w", p.args[0], ErrNotFound)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || !executable(&st, p.id.uid, p.id.gid) {
		return fmt.Errorf("%s: %w by uid %d gid %d", p.args[0], ErrNotExecutable, p.id.uid, p.id.gid)
	}
	p.path = real

	asRoot := p.id.uid == 0 || p.id.gid == 0 ||
		(st.Uid == 0 && st.Mode&syscall.S_IXUSR != 0 && st.Mode&syscall.S_ISUID != 0) ||
		(st.Gid == 0 && st.Mode&syscall.S_IXGRP != 0 && st.Mode&syscall.S_ISGID != 0)
	if !asRoot {
		return nil
	}
	for _, path := range []string{abs, real} {
		bad, err := unsafe(path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.args[0], err)
		}
		if bad != "" {
			p.insecure, p.insecurePath = true, bad
			return nil
		}
	}
	return nil
}

// searchPath looks name up in PATH as keepalived's find_path (glibc's
// execvpe) does, for a regular file the script's user may execute.
func (p *prepared) searchPath(name string) (string, error) {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/bin:/usr/bin"
	}
	denied := false
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		f := filepath.Join(dir, name)
		var st syscall.Stat_t
		if syscall.Stat(f, &st) != nil {
			continue
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFREG && executable(&st, p.id.uid, p.id.gid) {
			return f, nil
		}
		denied = true
	}
	if denied {
		return "", fmt.Errorf("%s: %w in PATH", name, ErrNotExecutable)
	}
	return "", fmt.Errorf("%s: %w in PATH", name, ErrNotFound)
}

// executable is keepalived's is_executable: root needs any x bit, the
// owner the user's, the group the group's, anyone else the others'.
func executable(st *syscall.Stat_t, uid, gid uint32) bool {
	m := st.Mode
	switch {
	case uid == 0:
		return m&(syscall.S_IXUSR|syscall.S_IXGRP|syscall.S_IXOTH) != 0
	case uid == st.Uid:
		return m&syscall.S_IXUSR != 0
	case gid == st.Gid:
		return m&syscall.S_IXGRP != 0
	}
	return m&syscall.S_IXOTH != 0
}

// unsafe walks path from / to its last element as keepalived's
// check_security does, without following symbolic links, and returns the
// first part that a non-root user could change: one not owned by root, or
// a regular file or a directory without the sticky bit that is
// group-writable by a non-root group or world-writable. "" means safe.
func unsafe(path string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	cur := "/"
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			cur = filepath.Join(cur, parts[i])
		}
		last := i == len(parts)-1
		var st syscall.Stat_t
		if err := syscall.Lstat(cur, &st); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotFound, &fs.PathError{Op: "lstat", Path: cur, Err: err})
		}
		typ := st.Mode & syscall.S_IFMT
		// A directory may be a symbolic link that root owns (/bin on a
		// merged-/usr system): no one else can point it elsewhere, and
		// the resolved path is walked too.
		if (!last && typ != syscall.S_IFDIR && typ != syscall.S_IFLNK) || (last && typ != syscall.S_IFREG && typ != syscall.S_IFLNK) {
			return "", fmt.Errorf("%w: wrong file type at %s", ErrNotExecutable, cur)
		}
		if st.Uid != 0 {
			return cur, nil
		}
		modeChecked := (typ == syscall.S_IFDIR && st.Mode&syscall.S_ISVTX == 0) || typ == syscall.S_IFREG
		writable := (st.Gid != 0 && st.Mode&syscall.S_IWGRP != 0) || st.Mode&syscall.S_IWOTH != 0
		if modeChecked && writable {
			return cur, nil
		}
	}
	return "", nil
}
