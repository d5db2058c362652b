package vrrp

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// deadlineTimer wakes a runner at its machine's deadline. Go's timers wait
// in epoll_wait, whose timeout is in whole milliseconds, and fire 0.2 to
// 1 ms late; keepalived's timerfd fires within the kernel's 50 µs slack,
// and every takeover (Skew_Time, Master_Down_Interval) is a timer firing.
// So this one is a timerfd read through the netpoller, falling back to a
// time.Timer should timerfd_create fail.
type deadlineTimer struct {
	C <-chan time.Time

	t *time.Timer // the fallback

	fd       int
	f        *os.File // fd, for reads through the netpoller
	c        chan time.Time
	mu       sync.Mutex
	deadline time.Time // zero: disarmed
}

func newDeadlineTimer() *deadlineTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &deadlineTimer{C: t.C, t: t}
	}
	c := make(chan time.Time, 1)
	dt := &deadlineTimer{C: c, c: c, fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}
	go dt.read()
	return dt
}

// read sends when the timerfd expires, unless Reset has moved the
// deadline since: an expiry read just before a Reset is stale.
func (dt *deadlineTimer) read() {
	var buf [8]byte
	for {
		if _, err := dt.f.Read(buf[:]); err != nil {
			return // closed by Stop
		}
		now := time.Now()
		dt.mu.Lock()
		if !dt.deadline.IsZero() && !now.Before(dt.deadline) {
			select {
			case dt.c <- now:
			default:
			}
		}
		dt.mu.Unlock()
	}
}

// Reset arms the timer for deadline, or disarms it when deadline is zero;
// nothing from an earlier arming arrives on C after it.
func (dt *deadlineTimer) Reset(deadline time.Time) {
	if dt.t != nil {
		if deadline.IsZero() {
			dt.t.Stop()
		} else {
			dt.t.Reset(time.Until(deadline))
		}
		return
	}
	var spec unix.ItimerSpec
	if !deadline.IsZero() {
		// An all-zero value disarms: a deadline already past is 1 ns.
		spec.Value = unix.NsecToTimespec(max(int64(time.Until(deadline)), 1))
	}
	dt.mu.Lock()
	defer dt.mu.Unlock()
	dt.deadline = deadline
	select {
	case <-dt.c:
	default:
	}
	if err := unix.TimerfdSettime(dt.fd, 0, &spec, nil); err != nil {
		// Cannot happen with a valid fd and value; fall back for good
		// rather than never fire.
		dt.f.Close()
		t := time.NewTimer(time.Until(deadline))
		if deadline.IsZero() {
			t.Stop()
		}
		dt.t, dt.C = t, t.C
	}
}

// Stop releases the timer.
func (dt *deadlineTimer) Stop() {
	if dt.t != nil {
		dt.t.Stop()
	}
	if dt.f != nil {
		dt.f.Close()
	}
}
