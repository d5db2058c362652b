package health

// quorumState is a virtual server's quorum and sorry server, after
// keepalived's ipwrapper.c (update_quorum_state, perform_quorum_state) and
// check_data.c (the quorum and hysteresis corrections).
type quorumState struct {
	quorum, hysteresis int
	hasSorry           bool

	up bool // quorum_state_up
	// sorryAlive: the sorry server is in service, and the real servers
	// out of the pool (perform_quorum_state removes the alive ones).
	sorryAlive bool
}

// effectiveQuorum corrects a configured quorum and hysteresis as
// keepalived's check_data.c does: a quorum above the summed weight of all
// real servers could never be met and is lowered to it, and hysteresis
// stays below quorum.
func effectiveQuorum(quorum, hysteresis, totalWeight int) (int, int) {
	quorum = min(quorum, totalWeight)
	if hysteresis >= quorum {
		hysteresis = max(quorum-1, 0)
	}
	return quorum, hysteresis
}

// quorumChange is what update did: nothing, or a crossing.
type quorumChange struct {
	crossed   bool
	up        bool // the new state
	threshold int  // the threshold it was measured against
	// sorryIn and sorryOut say the sorry server entered or left service.
	sorryIn, sorryOut bool
}

// update is update_quorum_state: weightSum is the summed weight of the
// alive real servers; init is true when the virtual server is (re)started,
// which may put the sorry server in service with the quorum already down.
func (q *quorumState) update(weightSum int, init bool) quorumChange {
	threshold := q.quorum + q.hysteresis
	if q.up {
		threshold = q.quorum - q.hysteresis
	}
	switch {
	case !q.up && weightSum >= threshold:
		q.up = true
		c := quorumChange{crossed: true, up: true, threshold: threshold}
		if q.sorryAlive {
			q.sorryAlive = false
			c.sorryOut = true
		}
		return c
	case q.up && (weightSum == 0 || weightSum < threshold),
		init && !q.up && q.hasSorry && !q.sorryAlive:
		q.up = false
		c := quorumChange{crossed: true, up: false, threshold: threshold}
		if q.hasSorry && !q.sorryAlive {
			q.sorryAlive = true
			c.sorryIn = true
		}
		return c
	}
	return quorumChange{up: q.up, threshold: threshold}
}
