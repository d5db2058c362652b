package vrrp

import (
	"testing"
	"time"
)

func TestDeadlineTimer(t *testing.T) {
	dt := newDeadlineTimer()
	defer dt.Stop()
	if dt.t != nil {
		t.Skip("no timerfd here: the fallback is a time.Timer")
	}

	// It fires at the deadline, never before.
	for range 5 {
		d := time.Now().Add(20 * time.Millisecond)
		dt.Reset(d)
		got := <-dt.C
		if got.Before(d) {
			t.Fatalf("fired %v before its deadline", d.Sub(got))
		}
		if late := time.Since(d); late > 50*time.Millisecond {
			t.Errorf("fired %v late", late)
		}
	}

	// A deadline in the past fires at once.
	dt.Reset(time.Now().Add(-time.Second))
	select {
	case <-dt.C:
	case <-time.After(time.Second):
		t.Fatal("a past deadline did not fire")
	}

	// Moving the deadline, even after the old one expired unread, leaves
	// nothing of it on C; a zero deadline disarms.
	dt.Reset(time.Now().Add(time.Millisecond))
	time.Sleep(10 * time.Millisecond)
	later := time.Now().Add(time.Hour)
	dt.Reset(later)
	dt.Reset(time.Time{})
	select {
	case got := <-dt.C:
		t.Fatalf("fired at %v after the deadline was moved and then cleared", got)
	case <-time.After(50 * time.Millisecond):
	}
}
