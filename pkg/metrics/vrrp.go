package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// VRRPInstance is what /metrics exports of one vrrp_instance, read when
// scraped.
type VRRPInstance struct {
	Name              string
	State             string // INIT, BACKUP, MASTER, FAULT, STOP
	Priority          uint8
	EffectivePriority uint8
	Transitions       uint64
	Sent, Received    uint64
	Errors            map[string]uint64 // by reason
	GARPs             uint64
}

// VRRPStates are the states xlbd_vrrp_state has a series for, so that a
// dashboard can graph each as 0 or 1.
var VRRPStates = []string{"INIT", "BACKUP", "MASTER", "FAULT", "STOP"}

var (
	vrrpState = prometheus.NewDesc("xlbd_vrrp_state",
		"Whether a VRRP instance is in a state (1) or not (0).", []string{"instance", "state"}, nil)
	vrrpPriority = prometheus.NewDesc("xlbd_vrrp_priority",
		"A VRRP instance's configured priority.", []string{"instance"}, nil)
	vrrpEffPriority = prometheus.NewDesc("xlbd_vrrp_effective_priority",
		"A VRRP instance's priority after track_interface and track_script weights.", []string{"instance"}, nil)
	vrrpTransitions = prometheus.NewDesc("xlbd_vrrp_transitions_total",
		"State changes of a VRRP instance.", []string{"instance"}, nil)
	vrrpSent = prometheus.NewDesc("xlbd_vrrp_adverts_sent_total",
		"VRRP advertisements sent (one per unicast peer).", []string{"instance"}, nil)
	vrrpReceived = prometheus.NewDesc("xlbd_vrrp_adverts_received_total",
		"VRRP advertisements received that passed the packet checks.", []string{"instance"}, nil)
	vrrpErrors = prometheus.NewDesc("xlbd_vrrp_advert_errors_total",
		"VRRP advertisements dropped or mismatching, by reason (auth, ttl, checksum, interval, vip_list, version, ...).",
		[]string{"instance", "reason"}, nil)
	vrrpGARPs = prometheus.NewDesc("xlbd_vrrp_gratuitous_arps_total",
		"Gratuitous ARPs and unsolicited neighbour advertisements a VRRP instance sent.", []string{"instance"}, nil)
)

// SetVRRP exports the instances read is called for at each scrape.
func (m *Metrics) SetVRRP(read func() []VRRPInstance) {
	m.Registry.MustRegister(vrrpCollector(read))
}

type vrrpCollector func() []VRRPInstance

func (c vrrpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{vrrpState, vrrpPriority, vrrpEffPriority, vrrpTransitions, vrrpSent, vrrpReceived, vrrpErrors, vrrpGARPs} {
		ch <- d
	}
}

func (c vrrpCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c() {
		for _, s := range VRRPStates {
			ch <- prometheus.MustNewConstMetric(vrrpState, prometheus.GaugeValue, b2f(v.State == s), v.Name, s)
		}
		ch <- prometheus.MustNewConstMetric(vrrpPriority, prometheus.GaugeValue, float64(v.Priority), v.Name)
		ch <- prometheus.MustNewConstMetric(vrrpEffPriority, prometheus.GaugeValue, float64(v.EffectivePriority), v.Name)
		ch <- prometheus.MustNewConstMetric(vrrpTransitions, prometheus.CounterValue, float64(v.Transitions), v.Name)
		ch <- prometheus.MustNewConstMetric(vrrpSent, prometheus.CounterValue, float64(v.Sent), v.Name)
		ch <- prometheus.MustNewConstMetric(vrrpReceived, prometheus.CounterValue, float64(v.Received), v.Name)
		ch <- prometheus.MustNewConstMetric(vrrpGARPs, prometheus.CounterValue, float64(v.GARPs), v.Name)
		for reason, n := range v.Errors {
			ch <- prometheus.MustNewConstMetric(vrrpErrors, prometheus.CounterValue, float64(n), v.Name, reason)
		}
	}
}
