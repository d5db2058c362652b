package sched

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLBLC(t *testing.T) {
	dst := ip("203.0.113.9")
	other := ip("203.0.113.10")
	var l LBLC
	ds := reals(1, 1, 1)

	// A new destination goes to the wlc choice: all idle, the first.
	if got := l.Schedule(0, ds, dst); got != 0 {
		t.Fatalf("first: got %d, want 0", got)
	}
	// It sticks while r1 is not lblc-overloaded, even if busier than the
	// others (active == weight is not overloaded).
	ds[0].Active = 1
	if got := l.Schedule(time.Second, ds, dst); got != 0 {
		t.Errorf("r1 at its weight: got %d, want 0", got)
	}
	// Another destination is scheduled independently: wlc avoids r1.
	if got := l.Schedule(time.Second, ds, other); got != 1 {
		t.Errorf("other destination: got %d, want 1", got)
	}
	// Overloaded in lblc's sense: active > weight and some real below half
	// its weight; the entry moves to the wlc choice.
	ds[0].Active, ds[1].Active = 2, 1
	if got := l.Schedule(2*time.Second, ds, dst); got != 2 {
		t.Errorf("r1 overloaded: got %d, want 2", got)
	}
	if got, _ := l.Lookup(dst); got != ds[2].AddrPort() {
		t.Errorf("entry now %v, want r3", got)
	}
	// With no real below half its weight, a busy real keeps its
	// destinations.
	ds[0].Active, ds[1].Active, ds[2].Active = 5, 5, 5
	if got := l.Schedule(3*time.Second, ds, dst); got != 2 {
		t.Errorf("everyone busy: got %d, want 2", got)
	}
	// IP_VS_DEST_F_OVERLOAD does not stop reuse of the entry.
	ds[2].Overloaded = true
	if got := l.Schedule(4*time.Second, ds, dst); got != 2 {
		t.Errorf("flag-overloaded entry real: got %d, want 2", got)
	}
	ds[2].Overloaded = false
	// Quiesced: rescheduled.
	ds[2].Weight = 0
	if got := l.Schedule(5*time.Second, ds, dst); got != 0 {
		t.Errorf("quiesced entry real: got %d, want 0", got)
	}
	ds[2].Weight = 1
	// Removed (not in the list): rescheduled.
	if got := l.Schedule(6*time.Second, ds[1:], dst); got != 0 {
		t.Errorf("removed entry real: got index %d of the shorter list, want 0 (r2)", got)
	}
}

func TestLBLCExpiry(t *testing.T) {
	dst := ip("203.0.113.9")
	l := LBLC{Expiration: time.Hour}
	ds := reals(1, 1)
	l.Schedule(0, ds, dst) // r1
	ds[0].Active = 1       // r1 busier, but not overloaded: entry holds
	if got := l.Schedule(59*time.Minute, ds, dst); got != 0 {
		t.Fatalf("before expiry: got %d", got)
	}
	// Use refreshed the entry: it lives an hour from 59m.
	l.Expire(time.Hour + 58*time.Minute)
	if l.Len() != 1 {
		t.Fatalf("entry gone before its expiration")
	}
	// An hour unused: gone, and wlc now prefers r2.
	if got := l.Schedule(time.Hour+59*time.Minute, ds, dst); got != 1 {
		t.Errorf("after expiry: got %d, want 1", got)
	}
	l.Expire(3 * time.Hour)
	if l.Len() != 0 {
		t.Errorf("Expire left %d entries", l.Len())
	}
	var d LBLC // default expiration
	d.Schedule(0, ds, dst)
	d.Expire(DefaultLBLCExpiration - 1)
	if d.Len() != 1 {
		t.Error("default expiration shorter than 24h")
	}
	d.Expire(DefaultLBLCExpiration)
	if d.Len() != 0 {
		t.Error("default expiration longer than 24h")
	}
}

func TestLBLCR(t *testing.T) {
	dst := ip("203.0.113.9")
	l := LBLCR{Expiration: time.Hour}
	ds := reals(1, 1, 1)
	set := func() []netip.AddrPort { return l.Set(dst) }

	if got := l.Schedule(0, ds, dst); got != 0 {
		t.Fatalf("first: got %d", got)
	}
	if diff := cmp.Diff([]netip.AddrPort{ds[0].AddrPort()}, set(), addrs); diff != "" {
		t.Errorf("set (-want +got):\n%s", diff)
	}
	// r1 overloaded in lblc's sense: wlc adds r2, newest first.
	ds[0].Active = 2
	if got := l.Schedule(time.Minute, ds, dst); got != 1 {
		t.Fatalf("r1 overloaded: got %d, want 1", got)
	}
	if diff := cmp.Diff([]netip.AddrPort{ds[1].AddrPort(), ds[0].AddrPort()}, set(), addrs); diff != "" {
		t.Errorf("set after growth (-want +got):\n%s", diff)
	}
	// Within the set the weighted least-loaded member serves.
	ds[0].Active, ds[1].Active = 0, 1
	if got := l.Schedule(2*time.Minute, ds, dst); got != 0 {
		t.Errorf("least loaded member: got %d, want 0", got)
	}
	// More than Expiration since the last change: the most loaded member
	// (r2) is dropped; the choice, made before, was r1.
	if got := l.Schedule(time.Minute+time.Hour+time.Second, ds, dst); got != 0 {
		t.Errorf("shrink step: got %d, want 0", got)
	}
	if diff := cmp.Diff([]netip.AddrPort{ds[0].AddrPort()}, set(), addrs); diff != "" {
		t.Errorf("set after shrink (-want +got):\n%s", diff)
	}
	// Unused for Expiration: the entry goes.
	l.Expire(time.Minute + 2*time.Hour + time.Second)
	if l.Len() != 0 {
		t.Errorf("entry survived expiration: %v", set())
	}
}

func TestLBLCRMemberRemoved(t *testing.T) {
	dst := ip("203.0.113.9")
	var l LBLCR
	ds := reals(1, 1)
	l.Schedule(0, ds, dst) // {r1}
	// r1 leaves the service: set_min finds nothing available; wlc picks r2
	// and adds it.
	if got := l.Schedule(time.Second, ds[1:], dst); got != 0 {
		t.Fatalf("got %d, want 0 (r2 in the shorter list)", got)
	}
	if diff := cmp.Diff([]netip.AddrPort{ds[1].AddrPort(), ds[0].AddrPort()}, l.Set(dst), addrs); diff != "" {
		t.Errorf("set (-want +got):\n%s", diff)
	}
}
