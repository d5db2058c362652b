package health

import "github.com/xlbd/xlbd/pkg/config"

// Real says whether rs of vs is in the pool and with which weight
// (reconcile.Health). A real the view does not know (a configuration the
// Monitor has not been given) is in with its configured weight.
func (v *View) Real(vs *config.VirtualServer, rs *config.RealServer) (bool, int) {
	r, ok := v.Reals[RealKey{VS: vs.Key(), Addr: rs.Address, Port: rs.Port}]
	if !ok {
		return true, rs.Weight
	}
	return r.InPool, r.PoolWeight
}

// Sorry says whether vs's sorry server is in the pool and with which
// weight (reconcile.Health).
func (v *View) Sorry(vs *config.VirtualServer) (bool, int) {
	s, ok := v.VirtualServers[vs.Key()]
	if !ok {
		return false, 0
	}
	return s.SorryInPool, s.SorryWeight
}
