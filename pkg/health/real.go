package health

// maxWeight is the largest weight a real server can have (IPVS's
// IPVS_WEIGHT_LIMIT, keepalived's real_weight clamp).
const maxWeight = 65535

// aggregate is a real server's health from its checkers: up when all of
// them are (keepalived counts num_failed_checkers), and its effective
// weight: the configured weight moved by every checker that asks for one
// (keepalived's effective_weight = iweight + the sum of cur_weight, where
// a MISC_CHECK's cur_weight is its asked weight minus iweight), clamped as
// real_weight does; a FILE_CHECK's value moves it by the value × weight.
// A real server without checkers is always up.
func aggregate(configured int, checks []checkState) (up bool, weight int) {
	up, weight = true, configured
	for _, c := range checks {
		up = up && c.up
		switch {
		case c.relative:
			weight += c.delta
		case c.weight != NoWeight:
			weight += c.weight - configured
		}
	}
	return up, min(max(weight, 0), maxWeight)
}

// poolEntry says what the data plane should hold for a real server:
// whether it is in the virtual server's pool and with which weight. A down
// real leaves the pool, or stays at weight 0 with inhibit_on_failure; while
// the sorry server serves, every real is out (keepalived's
// perform_quorum_state removes the alive ones too), inhibited ones at
// weight 0.
func poolEntry(up bool, weight int, inhibit, sorryServing bool) (inPool bool, poolWeight int) {
	switch {
	case sorryServing:
		return inhibit, 0
	case up:
		return true, weight
	case inhibit:
		return true, 0
	}
	return false, 0
}

// sorryEntry is poolEntry for the sorry server: weight 1 (keepalived's
// alloc_ssvr) while serving; otherwise out, or at weight 0 with
// sorry_server_inhibit.
func sorryEntry(serving, inhibit bool) (inPool bool, poolWeight int) {
	switch {
	case serving:
		return true, 1
	case inhibit:
		return true, 0
	}
	return false, 0
}
