// Package control is the daemon's local control socket and its client,
// `xlbd status`: JSON over HTTP on a unix socket that only root can open.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
}

// Server answers on the control socket.
type Server struct {
	srv  *http.Server
	path string
}

// ErrNoDaemon means nothing listens on the control socket.
var ErrNoDaemon = errors.New("no xlbd daemon is running")

// Listen serves report on a unix socket at path, mode 0600. A socket left
// by a daemon that died is replaced; one a live daemon answers on is not.
func Listen(path string, report func(context.Context) (Report, error)) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another xlbd answers there", path)
	}
	os.Remove(path)
	// The socket is created with the umask's mode: make it 0600 from the
	// start, not after a window.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
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
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, path: path}
	go s.srv.Serve(l)
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.srv.Close()
	os.Remove(s.path)
	return err
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
		fmt.Fprintf(tw, "%s  %s %s %s%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.Protocol, netip.AddrPortFrom(s.VIP, s.Port),
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
