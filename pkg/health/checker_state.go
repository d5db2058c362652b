package health

import (
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// flavor is how a checker type counts failures and schedules its next
// attempt. keepalived 2.2 has three sets of rules, one per epilog:
// check_tcp.c (tcp_epilog, also followed by SMTP, DNS, UDP and PING),
// check_http.c (epilog and timeout_epilog, HTTP_GET and SSL_GET) and
// check_misc.c (misc_check_child_thread, MISC_CHECK and, here, FILE_CHECK).
type flavor uint8

const (
	flavorTCP flavor = iota
	flavorHTTP
	flavorMisc
)

func flavorOf(t config.CheckerType) flavor {
	switch t {
	case config.CheckHTTP, config.CheckSSL:
		return flavorHTTP
	case config.CheckMisc, config.CheckFile:
		return flavorMisc
	}
	return flavorTCP
}

// policy is what the decision needs from a checker's configuration.
type policy struct {
	flavor           flavor
	retry            int
	delayLoop        time.Duration
	delayBeforeRetry time.Duration
	logAllFailures   bool
}

func policyOf(c config.Checker) policy {
	return policy{
		flavor:           flavorOf(c.Type),
		retry:            c.Retry,
		delayLoop:        c.DelayLoop,
		delayBeforeRetry: c.DelayBeforeRetry,
		logAllFailures:   c.LogAllFailures,
	}
}

// checkState is one checker's memory between attempts, named after
// keepalived's checker_t fields.
type checkState struct {
	up     bool // is_up
	hasRun bool // has_run: a first result has been decided on
	// retryIt counts failures since the last decision (retry_it). It
	// starts at retry, so that before any success a single failure is
	// enough (check_data.c: "For non alpha mode, one failure is enough
	// initially").
	retryIt int
	// failedURL is HTTP's failed_url: once down, a success only clears it
	// and the next full pass, a delay_loop later, brings the checker up.
	failedURL bool
	// weight is the weight the last success asked for, NoWeight when it
	// asked for none (or the checker is down: keepalived drops cur_weight).
	weight int
	// relative says the last success asked for delta more than the
	// configured weight (FILE_CHECK) rather than for weight.
	relative bool
	delta    int
}

// newCheckState is a checker that has not run yet: alpha starts it down.
func newCheckState(p policy, alpha bool) checkState {
	return checkState{up: !alpha, retryIt: p.retry, weight: NoWeight}
}

// verdict says what one result did.
type verdict uint8

const (
	// verdictRetry: a failure with retries left; nothing changes but the
	// next attempt comes after delay_before_retry.
	verdictRetry verdict = iota + 1
	// verdictSame: nothing to report (a success while up, a failure while
	// down).
	verdictSame
	verdictUp   // the checker went up (or ran first and is up)
	verdictDown // the checker went down (or ran first and is down)
)

// decision is the outcome of step.
type decision struct {
	verdict verdict
	// changed is true when up flipped; verdictUp and verdictDown without
	// it are a first run confirming the starting state, which keepalived
	// reports (update_svr_checker_state) but which changes nothing.
	changed bool
	// weightChanged: the dynamic weight differs from before.
	weightChanged bool
	// delay until the next attempt, counted from the attempt's end, or
	// from its start when fromStart (MISC_CHECK: last_ran + delay).
	delay     time.Duration
	fromStart bool
	// log says whether the failure is worth a log line although it
	// decided nothing (log_all_failures).
	log bool
}

// step applies one result to s with keepalived's rules for p's flavor.
func (s *checkState) step(p policy, r Result) decision {
	wasUp, oldWeight, oldRel, oldDelta := s.up, s.weight, s.relative, s.delta
	var d decision
	switch p.flavor {
	case flavorHTTP:
		d = s.stepHTTP(p, r)
	case flavorMisc:
		d = s.stepMisc(p, r)
	default:
		d = s.stepTCP(p, r)
	}
	d.changed = s.up != wasUp
	d.weightChanged = s.weight != oldWeight || s.relative != oldRel || s.delta != oldDelta
	return d
}

// stepTCP is check_tcp.c's tcp_epilog.
func (s *checkState) stepTCP(p policy, r Result) decision {
	if !r.OK && s.retryIt < p.retry {
		s.retryIt++
		s.hasRun = true
		return decision{verdict: verdictRetry, delay: p.delayBeforeRetry, log: p.logAllFailures && s.up}
	}
	d := decision{verdict: verdictSame, delay: p.delayLoop}
	s.retryIt = 0
	switch {
	case r.OK && (!s.up || !s.hasRun):
		d.verdict = verdictUp
		s.up = true
	case !r.OK && (s.up || !s.hasRun):
		d.verdict = verdictDown
		s.up = false
	}
	s.setWeight(r)
	s.hasRun = true
	return d
}

// stepHTTP is check_http.c's epilog and timeout_epilog, for a Prober that
// fetches every url in one attempt (keepalived fetches one url per
// attempt; a failure of any url is a failure of the attempt here).
func (s *checkState) stepHTTP(p policy, r Result) decision {
	if r.OK {
		// REGISTER_CHECKER_NEW
		d := decision{verdict: verdictSame, delay: p.delayLoop}
		s.retryIt = 0
		if s.failedURL {
			// "If the failed URL is now up, check all the URLs": up only
			// after the next full pass.
			s.failedURL = false
			return d
		}
		if !s.up || !s.hasRun {
			d.verdict = verdictUp
			s.up = true
			s.hasRun = true
		}
		s.setWeight(r)
		return d
	}
	if s.up || !s.hasRun {
		// timeout_epilog then REGISTER_CHECKER_RETRY.
		s.hasRun = true
		s.retryIt++
		if s.retryIt <= p.retry {
			return decision{verdict: verdictRetry, delay: p.delayBeforeRetry, log: p.logAllFailures}
		}
		d := decision{verdict: verdictSame}
		if s.up {
			d.verdict = verdictDown
		}
		s.up = false
		s.failedURL = true
		s.dropWeight()
		d.delay = max(p.delayBeforeRetry, p.delayLoop)
		return d
	}
	// REGISTER_CHECKER_FAILED: down already; poll the failed url.
	d := decision{verdict: verdictSame, delay: p.delayBeforeRetry}
	if s.failedURL {
		d.delay = max(p.delayBeforeRetry, p.delayLoop)
	}
	return d
}

// stepMisc is check_misc.c's misc_check_child_thread.
func (s *checkState) stepMisc(p policy, r Result) decision {
	d := decision{verdict: verdictSame, fromStart: true}
	switch {
	case r.OK:
		if !s.up || !s.hasRun {
			d.verdict = verdictUp
			s.up = true
		}
		s.retryIt = 0
		s.setWeight(r)
	case s.up || !s.hasRun:
		if s.retryIt < p.retry {
			s.retryIt++
			d.verdict, d.log = verdictRetry, p.logAllFailures
		} else {
			s.retryIt = 0
			s.dropWeight()
			d.verdict = verdictDown
			s.up = false
		}
	}
	s.hasRun = true
	d.delay = p.delayLoop
	if s.retryIt > 0 {
		d.delay = p.delayBeforeRetry
	}
	return d
}

// setWeight takes a success's weight: MISC_CHECK exit 0 (NoWeight) puts
// the configured weight back, as keepalived's cur_weight = 0 does.
func (s *checkState) setWeight(r Result) {
	switch {
	case r.OK && r.Relative:
		s.weight, s.relative, s.delta = NoWeight, true, r.Weight
	case r.OK:
		s.weight, s.relative, s.delta = r.Weight, false, 0
	case !s.up:
		s.dropWeight()
	}
}

func (s *checkState) dropWeight() { s.weight, s.relative, s.delta = NoWeight, false, 0 }

// migrate carries old's state into a checker whose timing settings changed
// on a reload (ipwrapper.c migrate_checkers): up and has_run carry over;
// failures counted so far carry over, but never reach the new retry, so
// that one more failure is needed to go down.
func (s checkState) migrate(newRetry int) checkState {
	n := s
	n.retryIt = 0
	if s.retryIt > 0 && newRetry > 0 {
		n.retryIt = min(s.retryIt, newRetry-1)
	}
	if !s.hasRun {
		n.retryIt = newRetry
	}
	return n
}
