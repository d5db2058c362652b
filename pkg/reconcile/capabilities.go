package reconcile

import (
	"cmp"
	"strings"

	"github.com/xlbd/xlbd/pkg/config"
)

// dataplane names the backend planned for in messages.
func (p *planner) dataplane() string {
	if p.caps == nil || p.caps.Backend == "" {
		return "the data plane"
	}
	return "the " + p.caps.Title() + " data plane"
}

// fwmarks reports whether the backend planned for balances firewall-mark
// services.
func (p *planner) fwmarks() bool { return p.caps != nil && p.caps.FWMark }

// noFWMark says why a firewall-mark service is left out.
func (p *planner) noFWMark() string {
	if p.caps == nil {
		return "no data plane was named that matches firewall marks"
	}
	return p.dataplane() + " cannot match firewall marks"
}

// protocol reports whether the backend balances vs's protocol, noting
// that vs is left out when it does not.
func (p *planner) protocol(vs *config.VirtualServer) bool {
	if p.caps == nil || p.caps.Protocol(uint8(vs.Protocol)) {
		return true
	}
	p.note(vs, "protocol %s: %s cannot balance it; this one is only checked", vs.Protocol, p.dataplane())
	return false
}

// check fails vs for each of its settings the backend cannot run. A
// setting is checked once per virtual server, not once per service a
// group expands to.
func (p *planner) check(vs *config.VirtualServer) {
	c := p.caps
	if c == nil {
		return
	}
	dp := p.dataplane()
	if s := cmp.Or(vs.LBAlgo, config.DefaultLBAlgo); !c.Scheduler(s) {
		p.fail(vs, "lb_algo %s: %s does not run this scheduler (it runs %s)", s, dp, strings.Join(c.Schedulers, ", "))
	}
	if k := kind(vs.LBKind); !c.Kind(k) {
		p.fail(vs, "lb_kind %s: %s cannot forward this way", k, dp)
	}
	if c.IPv6 {
		return
	}
	if vs.Address.Is6() {
		p.fail(vs, "address %s: %s balances IPv4 services only", vs.Address, dp)
	}
	for _, rs := range vs.RealServers {
		if rs.Address.Is6() {
			p.fail(vs, "real_server %s: %s forwards to IPv4 real servers only", rs.Address, dp)
		}
	}
}

// count adds a service of vs to the totals, noting the virtual server
// that goes over a limit first: the error names it.
func (p *planner) count(vs *config.VirtualServer) {
	p.services++
	p.reals += len(vs.RealServers)
	if p.caps == nil {
		return
	}
	if limit := p.caps.MaxServices; limit > 0 && p.services > limit && p.overSvc == nil {
		p.overSvc = vs
	}
	if limit := p.caps.MaxReals; limit > 0 && p.reals > limit && p.overReal == nil {
		p.overReal = vs
	}
}

// checkTotals fails a configuration with more services or real servers
// than the backend holds.
func (p *planner) checkTotals() {
	if p.overSvc != nil {
		p.fail(p.overSvc, "%d services in all: %s holds at most %d (this virtual server goes over)",
			p.services, p.dataplane(), p.caps.MaxServices)
	}
	if p.overReal != nil {
		p.fail(p.overReal, "%d real servers summed over services: %s holds at most %d (this virtual server goes over)",
			p.reals, p.dataplane(), p.caps.MaxReals)
	}
}
