// Package control is the daemon's local control socket and its client,
// `xlbd status`: JSON over HTTP on a unix socket that only root can open.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// DefaultSocket is where the daemon listens by default.
const DefaultSocket = "/run/xlbd/xlbd.sock"

// Report is everything `xlbd status` shows.
type Report struct {
	Config        string           `json:"config"`
	Started       time.Time        `json:"started"`
	LastReload    time.Time        `json:"last_reload"`
	ReloadsOK     int              `json:"reloads_ok"`
	ReloadsFailed int              `json:"reloads_failed"`
	Dataplane     dataplane.Status `json:"dataplane"`
	Health        []RealHealth     `json:"health,omitempty"`
	Quorum        []QuorumHealth   `json:"quorum,omitempty"`
	VRRP          []VRRPInstance   `json:"vrrp,omitempty"`
}

// Server answers on the control socket.
type Server struct {
	srv   *http.Server
	l     *net.UnixListener
	path  string
	fi    os.FileInfo // the socket file this server made
	close sync.Once
	err   error
}

// ErrNoDaemon means nothing listens on the control socket.
var ErrNoDaemon = errors.New("no xlbd daemon is running")

// ErrInUse means another process answers on the control socket.
var ErrInUse = errors.New("control socket in use")

// inUse is an ErrInUse with its own message.
type inUse string

func (e inUse) Error() string      { return string(e) }
func (inUse) Is(target error) bool { return target == ErrInUse }

// Listen makes the control socket at path, mode 0600; Serve answers on it.
// Only a stale socket (one nothing listens on any more) is replaced: a
// path that is not a socket is left alone, and a socket some process
// accepts connections on (another daemon) makes Listen fail, naming it.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode: make it 0600 from the
	// start, not after a window.
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the file itself, and only if it is still this one.
	l.SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{l: l, path: path, fi: fi}, nil
}

// removeStale clears path for a new socket: nothing there, or a socket no
// process accepts on (left by a daemon that died), which is removed.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s exists and is not a socket (%s); left alone: remove it, or choose another --control-socket",
			path, typeName(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		who := "another process"
		if pid := peerPid(c); pid > 0 {
			who = fmt.Sprintf("pid %d", pid)
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
				who = fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid)
			}
		}
		c.Close()
		return inUse(fmt.Sprintf("control socket %s: %s is listening there (another xlbd?); refusing to start (stop it, or choose another --control-socket)",
			path, who))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: cannot tell whether a daemon listens there, left alone: %w", path, err)
	}
	// Stale. Remove it unless it changed since it was looked at.
	if now, err := os.Lstat(path); err != nil || !os.SameFile(fi, now) {
		return fmt.Errorf("control socket %s changed while being checked; left alone", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: removing a stale one: %w", err)
	}
	return nil
}

// peerPid is the pid of the process that listens on the other end of a
// unix connection (0: unknown).
func peerPid(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	var pid int
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	}
	return "mode " + m.String()
}

// Serve answers with report on the socket, in the background.
func (s *Server) Serve(report func(context.Context) (Report, error)) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := report(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rep)
	})
	s.srv = NewHTTPServer(mux)
	go s.srv.Serve(netutil.LimitListener(s.l, MaxConns))
}

// Limits of the control socket and the metrics server: idle clients are
// closed and only so many are held at once (the rest wait in the kernel's
// backlog), so that a thousand idle keep-alive connections cost neither
// memory nor descriptors.
var (
	MaxConns    = 32
	IdleTimeout = 30 * time.Second
	ReadTimeout = 5 * time.Second
)

// NewHTTPServer is an HTTP server with those limits.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: 30 * time.Second, IdleTimeout: IdleTimeout}
}

// Close stops serving and removes the socket file if it is still the one
// Listen made. It may be called more than once.
func (s *Server) Close() error {
	s.close.Do(func() {
		if s.srv != nil {
			s.err = s.srv.Close()
		}
		s.l.Close()
		if now, err := os.Lstat(s.path); err == nil && os.SameFile(s.fi, now) {
			os.Remove(s.path)
		}
	})
	return s.err
}

// Fetch asks the daemon at path for its report.
func Fetch(ctx context.Context, path string) (Report, error) {
	var rep Report
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://xlbd/v1/status", nil)
	if err != nil {
		return rep, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return rep, fmt.Errorf("%w (nothing listens on %s)", ErrNoDaemon, path)
		}
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return rep, fmt.Errorf("daemon: %s", strings.TrimSpace(string(b)))
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// Format writes the report as `ipvsadm -Ln --stats` does, with what
// ipvsadm cannot show.
func Format(w io.Writer, r Report) error {
	var att []string
	for _, a := range r.Dataplane.Attachments {
		att = append(att, fmt.Sprintf("%s (%s)", a.Interface, a.Mode))
	}
	fmt.Fprintf(w, "xlbd: %s data plane on %s\n", r.Dataplane.Backend, strings.Join(att, ", "))
	fmt.Fprintf(w, "config %s, running since %s, last loaded %s (%d reloads, %d failed)\n",
		r.Config, r.Started.Format(time.RFC3339), r.LastReload.Format(time.RFC3339), r.ReloadsOK, r.ReloadsFailed)
	fmt.Fprintf(w, "flows: %d in the connection table", r.Dataplane.Flows)
	if r.Dataplane.FlowCapacity > 0 {
		fmt.Fprintf(w, " of %d", r.Dataplane.FlowCapacity)
	}
	if r.Dataplane.Shed > 0 {
		fmt.Fprintf(w, " (%d half-open shed)", r.Dataplane.Shed)
	}
	fmt.Fprintf(w, ", %d NAT reply entries, %d persistence templates\n\n", r.Dataplane.NATFlows, r.Dataplane.Templates)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Prot LocalAddress:Port Scheduler Forward [persistent]\tActiveConn\tInActConn\tConns\tInPkts\tOutPkts\tInBytes\tOutBytes\t")
	fmt.Fprintln(tw, "  -> RemoteAddress:Port Weight Reachable\t\t\t\t\t\t\t\t")
	for _, s := range r.Dataplane.Services {
		persist := ""
		if s.Persistence > 0 {
			persist = fmt.Sprintf(" persistent %d", int(s.Persistence.Seconds()))
			if s.PersistPrefix > 0 && s.PersistPrefix < 32 {
				persist += fmt.Sprintf(" mask /%d", s.PersistPrefix)
			}
		}
		var act, inact uint32
		for _, rs := range s.Reals {
			act += rs.ActiveConns
			inact += rs.InactiveConns
		}
		prot, addr := s.Protocol, netip.AddrPortFrom(s.VIP, s.Port).String()
		if s.FWMark != 0 {
			prot, addr = "FWM", strconv.FormatUint(uint64(s.FWMark), 10) // as ipvsadm -Ln
		}
		fmt.Fprintf(tw, "%s  %s %s %s%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", prot, addr,
			s.Sched, s.Kind, persist, act, inact, s.Connections, s.PacketsIn, s.PacketsOut, s.BytesIn, s.BytesOut)
		for _, rs := range s.Reals {
			reach := "yes"
			if !rs.Reachable {
				reach = "no"
			}
			if rs.Overloaded {
				reach += " overloaded"
			}
			fmt.Fprintf(tw, "  -> %s %d %s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", netip.AddrPortFrom(rs.Addr, rs.Port),
				rs.Weight, reach, rs.ActiveConns, rs.InactiveConns, rs.Connections, rs.PacketsIn, rs.PacketsOut,
				rs.BytesIn, rs.BytesOut)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := formatVRRP(w, r); err != nil {
		return err
	}
	if err := formatHealth(w, r); err != nil {
		return err
	}
	if err := formatTables(w, r.Dataplane); err != nil {
		return err
	}
	var names []string
	for n, c := range r.Dataplane.Verdicts {
		if c > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, r.Dataplane.Verdicts[n]))
	}
	_, err := fmt.Fprintf(w, "\npackets by verdict: %s\n", strings.Join(parts, ", "))
	return err
}

// formatTables writes each table's occupancy next to its size, and the
// kernel memory the tables take.
func formatTables(w io.Writer, st dataplane.Status) error {
	if len(st.Tables) == 0 {
		return nil
	}
	nw := len("all maps")
	for _, t := range st.Tables {
		nw = max(nw, len(t.Name))
	}
	fmt.Fprintf(w, "\n%-*s %9s %9s %6s %10s\n", nw, "Table", "Used", "Size", "Full", "Memory")
	for _, t := range st.Tables {
		used, full := "?", "?"
		if t.Used >= 0 {
			used = fmt.Sprint(t.Used)
			if t.Size > 0 {
				full = fmt.Sprintf("%.1f%%", 100*float64(t.Used)/float64(t.Size))
			}
		}
		fmt.Fprintf(w, "%-*s %9s %9d %6s %10s\n", nw, t.Name, used, t.Size, full, mib(t.Memory))
	}
	if st.TablesMemory > 0 {
		fmt.Fprintf(w, "%-*s %9s %9s %6s %10s\n", nw, "all maps", "", "", "", mib(st.TablesMemory))
	}
	return nil
}

func mib(b uint64) string {
	if b == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
