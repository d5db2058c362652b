// Package metrics exports xlbd's state to Prometheus from its own
// registry. Data-plane counters are read from the per-CPU BPF maps when
// scraped, so forwarding does no per-packet work for them.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlbd/xlbd/pkg/dataplane"
)

// DefaultAddr is where /metrics is served: localhost only unless told.
const DefaultAddr = "127.0.0.1:9469"

// StatusFunc returns the data plane's current status.
type StatusFunc func(ctx context.Context) (dataplane.Status, error)

// Metrics holds the registry and the series the daemon updates itself.
type Metrics struct {
	Registry *prometheus.Registry
	// Reloads counts configuration reloads by result (ok, failed).
	Reloads *prometheus.CounterVec
	// LastReload is when the configuration was last loaded successfully.
	LastReload prometheus.Gauge
	// Health is what the health checks found.
	Health *Health
}

// New builds the registry with the data-plane collector reading status.
func New(status StatusFunc, log *slog.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlbd_config_reloads_total",
			Help: "Configuration reloads by result (ok: applied, failed: the running configuration was kept).",
		}, []string{"result"}),
		LastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xlbd_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded and applied successfully (start counts).",
		}),
	}
	m.Reloads.WithLabelValues("ok")
	m.Reloads.WithLabelValues("failed")
	reg.MustRegister(m.Reloads, m.LastReload, &collector{status: status, log: log}, buildInfo())
	m.Health = newHealth(reg)
	return m
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func buildInfo() prometheus.Collector {
	version, revision, goVersion := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "xlbd_build_info",
		Help:        "Build of the running xlbd; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	}, func() float64 { return 1 })
}

var (
	svcLabels  = []string{"vip", "port", "protocol"}
	realLabels = []string{"vip", "port", "protocol", "real"}

	descSvcPackets = prometheus.NewDesc("xlbd_service_packets_total",
		"Packets of a virtual service, by direction (in: client to real; out: replies through the balancer, NAT only).",
		append(svcLabels, "direction"), nil)
	descSvcBytes = prometheus.NewDesc("xlbd_service_bytes_total",
		"IP bytes of a virtual service, by direction.", append(svcLabels, "direction"), nil)
	descSvcConns = prometheus.NewDesc("xlbd_service_connections_total",
		"New connections (flows) scheduled for a virtual service.", svcLabels, nil)
	descSvcInfo = prometheus.NewDesc("xlbd_service_info",
		"A configured virtual service with its scheduler and forwarding method; always 1.",
		append(svcLabels, "scheduler", "forwarding"), nil)
	descRealPackets = prometheus.NewDesc("xlbd_real_packets_total",
		"Packets to (in) and from (out, NAT only) a real server.", append(realLabels, "direction"), nil)
	descRealBytes = prometheus.NewDesc("xlbd_real_bytes_total",
		"IP bytes to (in) and from (out, NAT only) a real server.", append(realLabels, "direction"), nil)
	descRealConns = prometheus.NewDesc("xlbd_real_connections_total",
		"New connections (flows) sent to a real server.", realLabels, nil)
	descRealPicks = prometheus.NewDesc("xlbd_real_scheduler_picks_total",
		"Connections the scheduler chose a real server for (the others followed a persistence template).", realLabels, nil)
	descRealActive = prometheus.NewDesc("xlbd_real_active_connections",
		"Connections to a real server counted active by IPVS's rules (TCP handshake or established).", realLabels, nil)
	descRealInactive = prometheus.NewDesc("xlbd_real_inactive_connections",
		"Connections to a real server counted inactive (closing TCP, UDP).", realLabels, nil)
	descRealTemplates = prometheus.NewDesc("xlbd_real_persistence_templates",
		"Persistence templates pointing at a real server.", realLabels, nil)
	descRealOverloaded = prometheus.NewDesc("xlbd_real_overloaded",
		"1 while a real server is over its upper connection threshold (takes no new connections).", realLabels, nil)
	descRealWeight = prometheus.NewDesc("xlbd_real_weight",
		"Configured weight of a real server (0: quiesced, no new connections).", realLabels, nil)
	descRealReachable = prometheus.NewDesc("xlbd_real_reachable",
		"1 when the data plane can reach the real server (DR and TUN need its MAC address).", realLabels, nil)
	descVerdicts = prometheus.NewDesc("xlbd_verdict_packets_total",
		"Packets seen by the XDP balancer, by verdict (fwd_*: forwarded, pass_*: left to the kernel, drop_*: dropped).",
		[]string{"verdict"}, nil)
	descFlows = prometheus.NewDesc("xlbd_flow_table_entries",
		"Entries in the data plane's flow tables (conn: client flows; nat: NAT reply entries; persistence: templates).",
		[]string{"table"}, nil)
	descFlowCapacity = prometheus.NewDesc("xlbd_flow_table_capacity",
		"Size of a flow table: when the connection table is full, new flows are refused (verdict drop_conn_full).",
		[]string{"table"}, nil)
	descTableSize = prometheus.NewDesc("xlbd_table_size",
		"Entries a data-plane table can hold (for services, ring and pick_tree: one configuration generation's room).",
		[]string{"table"}, nil)
	descTableEntries = prometheus.NewDesc("xlbd_table_entries",
		"Entries of a data-plane table in use (for services, ring and pick_tree: by the active configuration).",
		[]string{"table"}, nil)
	descTableMemory = prometheus.NewDesc("xlbd_table_memory_bytes",
		"Kernel memory a data-plane table takes (the BPF map's memlock).", []string{"table"}, nil)
	descTablesMemory = prometheus.NewDesc("xlbd_tables_memory_bytes",
		"Kernel memory all of the data plane's BPF maps take.", nil, nil)
	descShed = prometheus.NewDesc("xlbd_flow_table_shed_total",
		"Half-open connections dropped from a connection table over three quarters full (IPVS's drop_entry).", nil, nil)
	descHeld = prometheus.NewDesc("xlbd_fragments_held_total",
		"Later fragments that came before their datagram's first and were held for it, by outcome (sent: where the first went; expired: no first came; dropped; passed: not for a VIP, left to the kernel).",
		[]string{"outcome"}, nil)
	descAttached = prometheus.NewDesc("xlbd_xdp_attached",
		"1 for each interface the balancer is attached to, with its XDP mode.", []string{"interface", "mode"}, nil)
	descBackend = prometheus.NewDesc("xlbd_dataplane_backend",
		"The data-plane backend in use; always 1.", []string{"backend"}, nil)
	descScrapeErrors = prometheus.NewDesc("xlbd_scrape_error",
		"1 when reading the data plane for this scrape failed.", nil, nil)
)

// collector reads the data plane at scrape time.
type collector struct {
	status StatusFunc
	log    *slog.Logger
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSvcPackets, descSvcBytes, descSvcConns, descSvcInfo, descRealPackets,
		descRealBytes, descRealConns, descRealPicks, descRealActive, descRealInactive, descRealTemplates,
		descRealOverloaded, descRealWeight, descRealReachable, descVerdicts, descFlows, descAttached,
		descBackend, descScrapeErrors, descFlowCapacity, descShed, descHeld, descTableSize, descTableEntries,
		descTableMemory, descTablesMemory} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.status(ctx)
	if err != nil {
		if c.log != nil {
			c.log.Warn("metrics: reading the data plane", "err", err)
		}
		ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, 0)
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range st.Services {
		vip := s.VIP.String()
		if s.FWMark != 0 {
			vip = dataplane.FWMarkKey(s.FWMark) // a firewall-mark service has no address
		}
		sl := []string{vip, strconv.Itoa(int(s.Port)), s.Protocol}
		gauge(descSvcInfo, 1, append(sl, s.Sched, s.Kind)...)
		counter(descSvcPackets, s.PacketsIn, append(sl, "in")...)
		counter(descSvcPackets, s.PacketsOut, append(sl, "out")...)
		counter(descSvcBytes, s.BytesIn, append(sl, "in")...)
		counter(descSvcBytes, s.BytesOut, append(sl, "out")...)
		counter(descSvcConns, s.Connections, sl...)
		for _, r := range s.Reals {
			rl := append(append([]string(nil), sl...), netip.AddrPortFrom(r.Addr, r.Port).String())
			counter(descRealPackets, r.PacketsIn, append(rl, "in")...)
			counter(descRealPackets, r.PacketsOut, append(rl, "out")...)
			counter(descRealBytes, r.BytesIn, append(rl, "in")...)
			counter(descRealBytes, r.BytesOut, append(rl, "out")...)
			counter(descRealConns, r.Connections, rl...)
			counter(descRealPicks, r.Picks, rl...)
			gauge(descRealActive, float64(r.ActiveConns), rl...)
			gauge(descRealInactive, float64(r.InactiveConns), rl...)
			gauge(descRealTemplates, float64(r.PersistConns), rl...)
			ovl := 0.0
			if r.Overloaded {
				ovl = 1
			}
			gauge(descRealOverloaded, ovl, rl...)
			gauge(descRealWeight, float64(r.Weight), rl...)
			reach := 0.0
			if r.Reachable {
				reach = 1
			}
			gauge(descRealReachable, reach, rl...)
		}
	}
	for v, n := range st.Verdicts {
		counter(descVerdicts, n, v)
	}
	if st.Flows >= 0 {
		gauge(descFlows, float64(st.Flows), "conn")
	}
	if st.NATFlows >= 0 {
		gauge(descFlows, float64(st.NATFlows), "nat")
	}
	if st.FlowCapacity > 0 {
		gauge(descFlowCapacity, float64(st.FlowCapacity), "conn")
	}
	if st.Backend == "xdp" {
		counter(descShed, st.Shed)
	}
	for outcome, n := range st.FragmentsHeld {
		counter(descHeld, n, outcome)
	}
	if st.Templates >= 0 {
		gauge(descFlows, float64(st.Templates), "persistence")
	}
	for _, t := range st.Tables {
		gauge(descTableSize, float64(t.Size), t.Name)
		if t.Used >= 0 {
			gauge(descTableEntries, float64(t.Used), t.Name)
		}
		if t.Memory > 0 {
			gauge(descTableMemory, float64(t.Memory), t.Name)
		}
	}
	if st.TablesMemory > 0 {
		gauge(descTablesMemory, float64(st.TablesMemory))
	}
	for _, a := range st.Attachments {
		gauge(descAttached, 1, a.Interface, a.Mode)
	}
	gauge(descBackend, 1, st.Backend)
}
