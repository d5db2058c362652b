package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	dl  = 10 * time.Second // delay_loop
	dbr = 2 * time.Second  // delay_before_retry
)

var (
	ok   = Result{OK: true, Weight: NoWeight}
	fail = Result{Reason: "timeout", Weight: NoWeight}
)

func w(n int) Result { return Result{OK: true, Weight: n} }

// step is one result and what must follow it.
type step struct {
	r       Result
	verdict verdict
	up      bool
	delay   time.Duration
	weight  int
}

func TestCheckState(t *testing.T) {
	tests := []struct {
		name   string
		flavor flavor
		retry  int
		alpha  bool
		steps  []step
	}{
		{
			name: "tcp: one failure is enough before the first success", flavor: flavorTCP, retry: 2,
			steps: []step{
				{fail, verdictDown, false, dl, NoWeight},
				{fail, verdictRetry, false, dbr, NoWeight}, // down: retries cycle, nothing to say
				{fail, verdictRetry, false, dbr, NoWeight},
				{fail, verdictSame, false, dl, NoWeight},
				{ok, verdictUp, true, dl, NoWeight},
			},
		},
		{
			name: "tcp: retry+1 failures after a success", flavor: flavorTCP, retry: 2,
			steps: []step{
				{ok, verdictUp, true, dl, NoWeight}, // first run confirms up
				{fail, verdictRetry, true, dbr, NoWeight},
				{ok, verdictSame, true, dl, NoWeight}, // a success resets the count
				{fail, verdictRetry, true, dbr, NoWeight},
				{fail, verdictRetry, true, dbr, NoWeight},
				{fail, verdictDown, false, dl, NoWeight},
				{ok, verdictUp, true, dl, NoWeight},
			},
		},
		{
			name: "tcp: retry 0", flavor: flavorTCP, retry: 0,
			steps: []step{
				{ok, verdictUp, true, dl, NoWeight},
				{fail, verdictDown, false, dl, NoWeight},
				{fail, verdictSame, false, dl, NoWeight},
			},
		},
		{
			name: "tcp: alpha starts down", flavor: flavorTCP, retry: 1, alpha: true,
			steps: []step{
				{fail, verdictDown, false, dl, NoWeight}, // first run: confirmed down
				{ok, verdictUp, true, dl, NoWeight},
			},
		},
		{
			name: "http: down after retry+1, back after two passes", flavor: flavorHTTP, retry: 1,
			steps: []step{
				{ok, verdictUp, true, dl, NoWeight},
				{fail, verdictRetry, true, dbr, NoWeight},
				{fail, verdictDown, false, dl, NoWeight}, // max(delay_before_retry, delay_loop)
				{fail, verdictSame, false, dl, NoWeight},
				{ok, verdictSame, false, dl, NoWeight}, // failed url passes: check all again
				{ok, verdictUp, true, dl, NoWeight},
			},
		},
		{
			name: "http: first failure is enough", flavor: flavorHTTP, retry: 3,
			steps: []step{
				{fail, verdictDown, false, dl, NoWeight},
				{ok, verdictSame, false, dl, NoWeight},
				{fail, verdictSame, false, dbr, NoWeight}, // failed_url cleared: delay_before_retry
				{ok, verdictUp, true, dl, NoWeight},
			},
		},
		{
			name: "misc: dynamic weight, failure drops it", flavor: flavorMisc, retry: 1,
			steps: []step{
				{w(5), verdictUp, true, dl, 5},
				{w(7), verdictSame, true, dl, 7},
				{fail, verdictRetry, true, dbr, 7},
				{ok, verdictSame, true, dl, NoWeight}, // exit 0: the configured weight again
				{fail, verdictRetry, true, dbr, NoWeight},
				{fail, verdictDown, false, dl, NoWeight},
				{fail, verdictSame, false, dl, NoWeight},
				{w(3), verdictUp, true, dl, 3},
			},
		},
		{
			name: "misc: default retry 0", flavor: flavorMisc, retry: 0,
			steps: []step{
				{ok, verdictUp, true, dl, NoWeight},
				{fail, verdictDown, false, dl, NoWeight},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy{flavor: tt.flavor, retry: tt.retry, delayLoop: dl, delayBeforeRetry: dbr}
			s := newCheckState(p, tt.alpha)
			for i, st := range tt.steps {
				d := s.step(p, st.r)
				type out struct {
					Verdict verdict
					Up      bool
					Delay   time.Duration
					Weight  int
				}
				got := out{d.verdict, s.up, d.delay, s.weight}
				want := out{st.verdict, st.up, st.delay, st.weight}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("step %d (%+v): (-want +got)\n%s", i, st.r, diff)
				}
				if d.fromStart != (tt.flavor == flavorMisc) {
					t.Errorf("step %d: fromStart = %v", i, d.fromStart)
				}
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	tests := []struct {
		old      checkState
		newRetry int
		want     int
	}{
		{checkState{up: true, hasRun: true, retryIt: 2}, 5, 2},
		{checkState{up: true, hasRun: true, retryIt: 4}, 3, 2}, // one more failure to go down
		{checkState{up: true, hasRun: true, retryIt: 1}, 0, 0},
		{checkState{up: true, retryIt: 1}, 3, 3}, // never ran: one failure is enough
	}
	for _, tt := range tests {
		if got := tt.old.migrate(tt.newRetry); got.retryIt != tt.want || got.up != tt.old.up || got.hasRun != tt.old.hasRun {
			t.Errorf("%+v.migrate(%d) = %+v, want retryIt %d", tt.old, tt.newRetry, got, tt.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	up := checkState{up: true, weight: NoWeight}
	down := checkState{weight: NoWeight}
	tests := []struct {
		name       string
		configured int
		checks     []checkState
		up         bool
		weight     int
	}{
		{"no checkers: up", 3, nil, true, 3},
		{"all up", 3, []checkState{up, up}, true, 3},
		{"one down", 3, []checkState{up, down}, false, 3},
		{"dynamic", 3, []checkState{up, {up: true, weight: 10}}, true, 10},
		{"dynamic clamped", 3, []checkState{{up: true, weight: 70000}}, true, maxWeight},
		{"file: relative", 10, []checkState{{up: true, weight: NoWeight, relative: true, delta: -3}}, true, 7},
		{"file and misc", 10, []checkState{{up: true, weight: NoWeight, relative: true, delta: -1}, {up: true, weight: 20}}, true, 19},
		{"file below zero", 10, []checkState{{up: true, weight: NoWeight, relative: true, delta: -30}}, true, 0},
	}
	for _, tt := range tests {
		if up, weight := aggregate(tt.configured, tt.checks); up != tt.up || weight != tt.weight {
			t.Errorf("%s: aggregate = %v, %d; want %v, %d", tt.name, up, weight, tt.up, tt.weight)
		}
	}
}

func TestPoolEntry(t *testing.T) {
	tests := []struct {
		up, inhibit, sorry bool
		in                 bool
		weight             int
	}{
		{up: true, in: true, weight: 5},
		{up: false, in: false},
		{up: false, inhibit: true, in: true, weight: 0},
		{up: true, sorry: true, in: false},
		{up: true, inhibit: true, sorry: true, in: true, weight: 0},
	}
	for _, tt := range tests {
		if in, weight := poolEntry(tt.up, 5, tt.inhibit, tt.sorry); in != tt.in || weight != tt.weight {
			t.Errorf("poolEntry(up %v, inhibit %v, sorry %v) = %v, %d; want %v, %d", tt.up, tt.inhibit, tt.sorry, in, weight, tt.in, tt.weight)
		}
	}
}

func TestQuorum(t *testing.T) {
	type crossing struct {
		sum     int
		init    bool
		crossed bool
		up      bool
		sorryIn bool
	}
	tests := []struct {
		name                      string
		quorum, hysteresis, total int
		sorry                     bool
		steps                     []crossing
	}{
		{
			name: "start up, lose, regain with hysteresis", quorum: 3, hysteresis: 1, total: 5,
			steps: []crossing{
				{sum: 5, init: true, crossed: true, up: true}, // "Starting with quorum up"
				{sum: 2, crossed: false, up: true},            // 2 >= 3-1
				{sum: 1, crossed: true, up: false},
				{sum: 3, crossed: false, up: false}, // needs 3+1
				{sum: 4, crossed: true, up: true},
			},
		},
		{
			name: "start down without sorry server says nothing", quorum: 1, total: 2,
			steps: []crossing{
				{sum: 0, init: true},
				{sum: 1, crossed: true, up: true},
			},
		},
		{
			name: "start down with sorry server puts it in", quorum: 1, total: 2, sorry: true,
			steps: []crossing{
				{sum: 0, init: true, crossed: true, sorryIn: true},
				{sum: 0, init: true}, // a reload does not repeat it
				{sum: 1, crossed: true, up: true},
				{sum: 0, crossed: true, sorryIn: true},
			},
		},
		{
			name: "quorum above the total is lowered", quorum: 10, total: 2,
			steps: []crossing{
				{sum: 2, init: true, crossed: true, up: true},
				{sum: 1, crossed: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := quorumState{hasSorry: tt.sorry}
			q.quorum, q.hysteresis = effectiveQuorum(tt.quorum, tt.hysteresis, tt.total)
			for i, st := range tt.steps {
				c := q.update(st.sum, st.init)
				if c.crossed != st.crossed || q.up != st.up || c.sorryIn != st.sorryIn {
					t.Fatalf("step %d (sum %d): crossed %v up %v sorryIn %v; want %v %v %v", i, st.sum, c.crossed, q.up, c.sorryIn, st.crossed, st.up, st.sorryIn)
				}
			}
		})
	}
}
