package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbd/xlbd/internal/control"
	"github.com/xlbd/xlbd/pkg/alert"
	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/dataplane"
	"github.com/xlbd/xlbd/pkg/health"
	"github.com/xlbd/xlbd/pkg/metrics"
	"github.com/xlbd/xlbd/pkg/reconcile"
	"github.com/xlbd/xlbd/pkg/script"
)

// NotifyTimeout bounds a notify_up, notify_down, quorum_up or quorum_down
// script; keepalived does not wait for them at all, but xlbd runs each
// real's in order, so one that hangs is killed after this.
const NotifyTimeout = 30 * time.Second

// checks is the daemon's side of the health checks: the Monitor, the
// configuration it checks, and where its events go (metrics, SMTP).
type checks struct {
	mon     *health.Monitor
	scripts atomic.Pointer[script.Runner]
	log     *slog.Logger
	// mail is the mailer for the current global_defs; a reload that
	// changes the mail settings replaces it and wakes mailChanged.
	mail        atomic.Pointer[mailer]
	mailChanged chan struct{}

	mu  sync.Mutex
	cfg *config.Config
	vss map[string]config.VirtualServer // by Key, for the mails' wording
	m   *metrics.Metrics                // nil until the daemon is ready
}

// newChecks builds the Monitor for cfg. initial is the data plane's state
// when it was adopted from a daemon that kept it: those reals keep it until
// their checkers have run once.
func (d *daemon) newChecks(cfg *config.Config, initial map[health.RealKey]health.Initial) *checks {
	c := &checks{log: d.log, mailChanged: make(chan struct{}, 1)}
	c.scripts.Store(script.NewRunner(cfg.Global, d.log))
	c.mon = health.New(health.Options{
		NewProber: func(chk config.Checker, target netip.AddrPort) (health.Prober, error) {
			return health.NewProber(chk, target, health.ProbeOptions{Scripts: c.scripts.Load(), Log: d.log})
		},
		Events: c,
		RunScript: func(ctx context.Context, s config.Script) error {
			// Notify and quorum scripts run in order per real or virtual
			// server: a hung one is killed rather than hold up the next.
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, NotifyTimeout)
				defer cancel()
			}
			res, err := c.scripts.Load().Run(ctx, s)
			return errors.Join(err, res.Err())
		},
		Initial:   initial,
		Attempted: c.attempted,
		Logger:    d.log,
	})
	c.update(cfg)
	return c
}

// mailer is an alert.Mailer with the settings it was made from.
type mailer struct {
	m   *alert.Mailer // nil: no mail
	cfg mailSettings
}

type mailSettings struct {
	to                     string
	from, server, routerID string
	port                   uint16
	timeout                time.Duration
}

func mailSettingsOf(g config.Global) mailSettings {
	return mailSettings{to: strings.Join(g.NotificationEmail, "\x00"), from: g.NotificationEmailFrom, server: g.SMTPServer,
		routerID: g.RouterID, port: g.SMTPPort, timeout: g.SMTPConnectTimeout}
}

// setMail makes a mailer for g unless the current one has its settings.
func (c *checks) setMail(g config.Global) {
	want := mailSettingsOf(g)
	if cur := c.mail.Load(); cur != nil && cur.cfg == want {
		return
	}
	c.mail.Store(&mailer{m: alert.New(g, c.log), cfg: want})
	select {
	case c.mailChanged <- struct{}{}:
	default:
	}
}

func (c *checks) send(a alert.Alert) { c.mail.Load().m.Send(a) }

// runMail delivers alerts with the current mailer until ctx ends; it is a
// Task. A mailer replaced by a reload goes on delivering what it holds,
// queued or in flight, for its smtp_connect_timeout, then stops.
func (c *checks) runMail(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	cur := c.mail.Load()
	for {
		mctx, cancel := context.WithCancel(ctx)
		m := cur.m
		wg.Go(func() { m.Run(mctx) })
		for cur == c.mail.Load() {
			select {
			case <-ctx.Done():
				cancel()
				return nil
			case <-c.mailChanged:
			}
		}
		time.AfterFunc(max(cur.cfg.timeout, time.Second), cancel)
		cur = c.mail.Load()
	}
}

// update gives the Monitor a new configuration; the checks that did not
// change keep their state and timers.
func (c *checks) update(cfg *config.Config) {
	vss := make(map[string]config.VirtualServer, len(cfg.VirtualServers))
	for _, vs := range cfg.VirtualServers {
		vss[vs.Key()] = vs
	}
	c.scripts.Store(script.NewRunner(cfg.Global, c.log))
	c.setMail(cfg.Global)
	c.mu.Lock()
	c.cfg, c.vss = cfg, vss
	c.mu.Unlock()
	c.mon.Update(cfg)
}

func (c *checks) config() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

func (c *checks) metrics() *metrics.Metrics {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m
}

func (c *checks) attempted(t config.CheckerType, feeds []health.RealKey, r health.Result, late time.Duration) {
	m := c.metrics()
	if m == nil {
		return
	}
	m.Health.Attempted(string(t), r.Took, late)
	for _, k := range feeds {
		m.Health.Checked(k.VS, netip.AddrPortFrom(k.Addr, k.Port).String(), string(t), r.OK)
	}
}

// HealthEvent counts state changes and mails them where smtp_alert says
// so; the Monitor logs them and runs their scripts.
func (c *checks) HealthEvent(e health.Event) {
	c.mu.Lock()
	vs, known := c.vss[e.VS]
	m := c.m
	c.mu.Unlock()
	switch e.Kind {
	case health.RealUp, health.RealDown:
		if m != nil && !e.Init {
			m.Health.Changed(e.VS, e.Real.String(), e.Kind == health.RealUp)
		}
	case health.CheckerUp, health.CheckerDown:
		if e.SMTPAlert && known {
			up := e.Kind == health.CheckerUp
			c.send(alert.RealServerAlert(vs, e.Real, up, alert.CheckerBody(e.Checker, up, e.Reason)))
		}
	case health.QuorumUp, health.QuorumDown:
		if e.SMTPAlert && known {
			c.send(alert.QuorumAlert(vs, e.Kind == health.QuorumUp, e.Init, int64(e.Threshold), int64(e.Weight)))
		}
	}
}

// plan is the data-plane state for the configuration as the health checks
// find its reals now.
func (d *daemon) planHealth(cfg *config.Config) (dataplane.State, error) {
	caps := d.kind.Capabilities()
	if d.be != nil {
		caps = d.be.Capabilities()
	}
	var held reconcile.VIPs
	if d.vr != nil {
		held = d.vr
	}
	st, _, err := reconcile.PlanHeld(cfg, &caps, d.hc.mon.View(), held)
	return st, err
}

// follow re-plans the pool each time the health checks or VRRP change it
// (a VRRP instance takes or gives up its addresses), and
// hands it to the applier (the latest wins); it is a Task.
func (d *daemon) follow(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.hc.mon.Changes():
		case <-d.vr.changed:
		}
		t0 := time.Now()
		st, err := d.planHealth(d.hc.config())
		if err != nil {
			// The configuration planned before; only a bug gets here.
			d.log.Error("planning the pool after a health change", "err", err)
			continue
		}
		if !d.apply.applied(st) {
			done := d.apply.submit(st)
			go func() {
				select {
				case err := <-done:
					if err != nil {
						d.log.Error("applying a health change", "err", err)
						return
					}
					d.log.Debug("health change applied", "took", time.Since(t0))
				case <-ctx.Done():
				}
			}()
		}
		// After the pool: /metrics can wait, the data plane not.
		d.publishHealth()
	}
}

// publishHealth sets the reals' and quorums' states in /metrics.
func (d *daemon) publishHealth() {
	m := d.hc.metrics()
	if m == nil {
		return
	}
	v := d.hc.mon.View()
	reals := make([]metrics.RealState, 0, len(v.Reals))
	for k, r := range v.Reals {
		reals = append(reals, metrics.RealState{VS: k.VS, Real: netip.AddrPortFrom(k.Addr, k.Port).String(), Up: r.Up})
	}
	quorums := make([]metrics.QuorumState, 0, len(v.VirtualServers))
	for k, s := range v.VirtualServers {
		quorums = append(quorums, metrics.QuorumState{VS: k, Up: s.QuorumUp})
	}
	m.Health.SetStates(reals, quorums)
}

// healthReport is the health part of `xlbd status`, in configuration
// order.
func (d *daemon) healthReport() ([]control.RealHealth, []control.QuorumHealth) {
	cfg := d.hc.config()
	v := d.hc.mon.View()
	var reals []control.RealHealth
	var quorums []control.QuorumHealth
	for _, vs := range cfg.VirtualServers {
		key := vs.Key()
		if q, ok := v.VirtualServers[key]; ok {
			quorums = append(quorums, control.QuorumHealth{VirtualServer: key, Up: q.QuorumUp, Sorry: q.SorryServing,
				WeightSum: q.AliveWeight, Quorum: q.Quorum, Hysteresis: q.Hysteresis})
		}
		for _, rs := range vs.RealServers {
			r, ok := v.Reals[health.RealKey{VS: key, Addr: rs.Address, Port: rs.Port}]
			if !ok {
				continue
			}
			rh := control.RealHealth{VirtualServer: key, Real: netip.AddrPortFrom(rs.Address, rs.Port).String(), Up: r.Up,
				Since: r.Since, Weight: r.PoolWeight}
			for _, c := range r.Checkers {
				ch := control.CheckerHealth{Type: string(c.Type), Target: c.Target.String(), Up: c.Up, Since: c.Since,
					OK: c.Last.OK, Reason: c.Last.Reason, Took: c.Last.Took, Failures: c.Failures, Attempts: c.Attempts, Late: c.Late}
				if c.HasRun {
					ch.Last = c.LastAt
				}
				rh.Checkers = append(rh.Checkers, ch)
			}
			reals = append(reals, rh)
		}
	}
	return reals, quorums
}

// adoptedHealth is what an adopted data plane holds of cfg's reals, for
// health.Options.Initial: a real it holds with a weight is up, one it does
// not hold (or holds at weight 0 though configured higher) is down.
func adoptedHealth(cfg *config.Config, st dataplane.Status) map[health.RealKey]health.Initial {
	held := map[string]map[netip.AddrPort]int{}
	for _, s := range st.Services {
		k := dataplane.ServiceKey(s.VIP, s.Port, protoNum(s.Protocol))
		held[k] = map[netip.AddrPort]int{}
		for _, r := range s.Reals {
			held[k][netip.AddrPortFrom(r.Addr, r.Port)] = r.Weight
		}
	}
	out := map[health.RealKey]health.Initial{}
	for _, vs := range cfg.VirtualServers {
		reals, ok := held[vs.Key()]
		if !ok {
			continue // a group or a new service: its checks decide
		}
		for _, rs := range vs.RealServers {
			w, in := reals[netip.AddrPortFrom(rs.Address, rs.Port)]
			up := in && (w > 0 || rs.Weight == 0)
			out[health.RealKey{VS: vs.Key(), Addr: rs.Address, Port: rs.Port}] = health.Initial{Up: up, Weight: w}
		}
	}
	return out
}

func protoNum(name string) uint8 {
	for _, p := range []uint8{6, 17, 132} {
		if dataplane.ProtocolName(p) == name {
			return p
		}
	}
	return 0
}
