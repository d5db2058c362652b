package control

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// RealHealth is what the health checks make of one real server of a
// virtual server.
type RealHealth struct {
	VirtualServer string          `json:"virtual_server"` // its Key(): "10.50.1.100:80/TCP"
	Real          string          `json:"real"`           // address:port
	Up            bool            `json:"up"`
	Since         time.Time       `json:"since"`
	Weight        int             `json:"weight"` // what the data plane is given while up
	Checkers      []CheckerHealth `json:"checkers"`
}

// CheckerHealth is one checker of a real server.
type CheckerHealth struct {
	Type   string    `json:"type"`   // TCP_CHECK, HTTP_GET, ...
	Target string    `json:"target"` // what it connects to, or the script
	Up     bool      `json:"up"`
	Since  time.Time `json:"since"`
	// Last is when the last attempt ended; zero before the first.
	Last     time.Time     `json:"last,omitempty"`
	OK       bool          `json:"ok"`     // the last attempt's result
	Reason   string        `json:"reason"` // why it failed ("timeout", "status 503") or a note
	Took     time.Duration `json:"took"`
	Failures int           `json:"failures"` // consecutive failed attempts
	Attempts uint64        `json:"attempts"`
	// Late is how long after its time the last attempt began.
	Late time.Duration `json:"late"`
}

// QuorumHealth is a virtual server's quorum.
type QuorumHealth struct {
	VirtualServer string `json:"virtual_server"`
	Up            bool   `json:"up"`
	Sorry         bool   `json:"sorry_server"` // the sorry server serves
	WeightSum     int    `json:"weight_sum"`   // of the live reals
	Quorum        int    `json:"quorum"`
	Hysteresis    int    `json:"hysteresis"`
}

// formatHealth writes the reals' health, one line per checker.
func formatHealth(w io.Writer, r Report) error {
	if len(r.Health) == 0 && len(r.Quorum) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nHealth checks")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Virtual server\tReal\tState\tSince\tChecker\tTarget\tLast\tFailures\t")
	state := func(up bool) string {
		if up {
			return "up"
		}
		return "down"
	}
	since := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	for _, h := range r.Health {
		if len(h.Checkers) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(none)\t\t\t\t\n", h.VirtualServer, h.Real, state(h.Up), since(h.Since))
		}
		for i, c := range h.Checkers {
			vs, rs, st, sn := h.VirtualServer, h.Real, state(h.Up), since(h.Since)
			if i > 0 {
				vs, rs, st, sn = "", "", "", ""
			}
			last := "not run yet"
			if !c.Last.IsZero() {
				last = "ok"
				if !c.OK {
					last = "failed"
				}
				if c.Reason != "" {
					last += ": " + c.Reason
				}
				last += fmt.Sprintf(" (%s, %v)", c.Last.Format(time.TimeOnly), c.Took.Round(time.Millisecond))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%d\t\n", vs, rs, st, sn, c.Type, state(c.Up), c.Target, last, c.Failures)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, q := range r.Quorum {
		sorry := ""
		if q.Sorry {
			sorry = ", sorry server serving"
		}
		fmt.Fprintf(w, "quorum of %s: %s (live weight %d, quorum %d ± %d%s)\n", q.VirtualServer, state(q.Up), q.WeightSum,
			q.Quorum, q.Hysteresis, sorry)
	}
	return nil
}
