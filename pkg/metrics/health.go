package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Health holds the health checks' series. The daemon feeds it: each
// attempt's result and each state change as they happen, the reals' states
// whenever they change.
type Health struct {
	up       *prometheus.GaugeVec
	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	late     prometheus.Histogram
	changes  *prometheus.CounterVec
	quorum   *prometheus.GaugeVec
}

func newHealth(reg *prometheus.Registry) *Health {
	h := &Health{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xlbd_real_up",
			Help: "Whether a real server's health checks find it up (1) or down (0).",
		}, []string{"virtual_server", "real"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlbd_health_checks_total",
			Help: "Health check attempts by checker and result (ok, failed).",
		}, []string{"virtual_server", "real", "checker", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xlbd_health_check_duration_seconds",
			Help:    "How long health check attempts took, by checker.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"checker"}),
		late: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xlbd_health_check_lateness_seconds",
			Help:    "How long after its scheduled time a health check attempt began.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlbd_real_state_changes_total",
			Help: "Times a real server's health changed, by the state it went to (up, down).",
		}, []string{"virtual_server", "real", "to"}),
		quorum: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xlbd_virtual_server_quorum_up",
			Help: "Whether a virtual server has its quorum (0: lost, the sorry server serves if there is one).",
		}, []string{"virtual_server"}),
	}
	reg.MustRegister(h.up, h.checks, h.duration, h.late, h.changes, h.quorum)
	return h
}

// Checked counts one attempt of a checker of a real.
func (h *Health) Checked(vs, real, checker string, ok bool) {
	result := "failed"
	if ok {
		result = "ok"
	}
	h.checks.WithLabelValues(vs, real, checker, result).Inc()
}

// Attempted records how long an attempt took and how late it began (once
// per attempt, however many reals it feeds).
func (h *Health) Attempted(checker string, took, late time.Duration) {
	h.duration.WithLabelValues(checker).Observe(took.Seconds())
	h.late.Observe(max(late, 0).Seconds())
}

// Changed counts a real's change of state.
func (h *Health) Changed(vs, real string, up bool) {
	to := "down"
	if up {
		to = "up"
	}
	h.changes.WithLabelValues(vs, real, to).Inc()
}

// RealState is one real's health for SetStates.
type RealState struct {
	VS, Real string
	Up       bool
}

// QuorumState is one virtual server's quorum for SetStates.
type QuorumState struct {
	VS string
	Up bool
}

// SetStates replaces every real's and virtual server's state: reals no
// longer configured lose their series.
func (h *Health) SetStates(reals []RealState, quorums []QuorumState) {
	h.up.Reset()
	for _, r := range reals {
		h.up.WithLabelValues(r.VS, r.Real).Set(b2f(r.Up))
	}
	h.quorum.Reset()
	for _, q := range quorums {
		h.quorum.WithLabelValues(q.VS).Set(b2f(q.Up))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
