// Package health runs keepalived's health checkers against real servers
// and turns their results into up, down and weight changes with
// keepalived's rules (retry, delay_before_retry, delay_loop, warmup,
// alpha, quorum and hysteresis).
//
// A Prober makes one check attempt and knows sockets; what to do with its
// Result (retry, count, decide) knows no sockets and no clocks.
package health

import (
	"context"
	"net/netip"
	"time"
)

// Result is the outcome of one check attempt.
type Result struct {
	OK bool
	// Weight is the weight the check asks for (MISC_CHECK with
	// misc_dynamic: exit status - 2; FILE_CHECK with weight); NoWeight
	// when the check says nothing of weight.
	Weight int
	// Relative makes Weight a change of the real server's configured
	// weight (FILE_CHECK's value × weight) rather than the weight itself.
	Relative bool
	// Reason says why a check failed, in a few words fit for a log line
	// and a status column: "timeout", "connection refused", "status 503",
	// "digest mismatch", "exit status 1". Empty when OK, or a short note
	// ("status 200").
	Reason string
	Took   time.Duration
}

// NoWeight is Result.Weight for a check that says nothing of weight.
const NoWeight = -1

// Prober makes one check attempt against its target. It returns by ctx's
// deadline (connect_timeout bounds the whole attempt: connect, request
// and the full answer), a timed-out attempt being a failed Result, not an
// error.
type Prober interface {
	Probe(ctx context.Context) Result
}

// RealKey names a real server of a virtual server: VS is the virtual
// server's Key() ("10.50.1.100:80/TCP").
type RealKey struct {
	VS   string
	Addr netip.Addr
	Port uint16
}
