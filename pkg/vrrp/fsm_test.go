package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlbd/xlbd/pkg/config"
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	us    = time.Microsecond
	self  = netip.MustParseAddr("10.0.0.2")
	lower = netip.MustParseAddr("10.0.0.1")
	upper = netip.MustParseAddr("10.0.0.3")
)

// Timings worked out by hand from VRRP_TIMER_SKEW_CALC, so that a change of
// rounding shows up here rather than in a failover benchmark.
const (
	skew100 = 609375 * time.Microsecond // (256-100)*1e6/256
	skew150 = 414062 * time.Microsecond // 106*1e6/256 = 414062.5, truncated
	skew80  = 687500 * time.Microsecond
	skewMin = 3906 * time.Microsecond // 1e6/256 = 3906.25
	mdi100  = 3*time.Second + skew100
	mdi150  = 3*time.Second + skew150
)

const never = time.Duration(-1) // no deadline

func baseConfig() Config {
	return Config{
		Name:                "VI_1",
		Version:             2,
		Priority:            100,
		AdvertInt:           time.Second,
		PrimaryIP:           self,
		GARPDelay:           5 * time.Second,
		GARPRepeat:          5,
		GARPLowerPrioRepeat: 5,
		GARPLowerPrioDelay:  5 * time.Second,
	}
}

type step struct {
	at       time.Duration
	ev       Event
	want     []Action
	state    State
	deadline time.Duration // from t0; never for none
}

func notify(s State, p uint8) Notify { return Notify{Instance: "VI_1", State: s, Priority: p} }

func becomeMaster(p uint8) []Action {
	return []Action{AddVIPs{}, SendAdvert{p}, SendGARP{5, GARPBecomeMaster}, notify(Master, p)}
}

func adv(from netip.Addr, prio uint8) AdvertReceived {
	return AdvertReceived{From: from, Priority: prio, Interval: time.Second}
}

func run(t *testing.T, cfg Config, steps []step) {
	t.Helper()
	m := New(cfg, t0)
	for i, s := range steps {
		now := t0.Add(s.at)
		got := m.Handle(s.ev, now)
		if diff := cmp.Diff(s.want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Fatalf("step %d (%T at %v): actions (-want +got):\n%s", i, s.ev, s.at, diff)
		}
		if m.State() != s.state {
			t.Fatalf("step %d (%T at %v): state %v, want %v", i, s.ev, s.at, m.State(), s.state)
		}
		var want time.Time
		if s.deadline != never {
			want = t0.Add(s.deadline)
		}
		if got := m.Deadline(); !got.Equal(want) {
			t.Fatalf("step %d (%T at %v): deadline %v, want %v", i, s.ev, s.at, got.Sub(t0), s.deadline)
		}
	}
}

// masterAt returns steps that make a backup master by timeout at mdi.
func masterAt(mdi time.Duration, p uint8) []step {
	return []step{
		{0, Start{}, []Action{notify(Backup, p)}, Backup, mdi},
		{mdi, TimerFired{}, becomeMaster(p), Master, mdi + time.Second},
	}
}

func inSyncGroup(c *Config) { c.SyncGroup = "G" }

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestMachine(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*Config)
		steps []step
	}{
		{
			name:  "backup takes over after Master_Down_Interval",
			steps: masterAt(mdi100, 100),
		},
		{
			name: "timer before the deadline does nothing",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TimerFired{}, nil, Backup, mdi100},
			},
		},
		{
			name: "address owner is master at once",
			cfg:  func(c *Config) { c.Priority, c.InitialMaster = 255, true },
			steps: []step{
				{0, Start{}, becomeMaster(255), Master, time.Second},
			},
		},
		{
			name: "owner configured BACKUP waits Master_Down_Interval with skew of 255",
			cfg:  func(c *Config) { c.Priority = 255 },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 255)}, Backup, 3*time.Second + skewMin},
			},
		},
		{
			// keepalived 2.2.7's vrrp_init_state takes one interval
			// plus minimal skew only when the sync group is BACKUP.
			name: "state MASTER below 255 waits Master_Down_Interval",
			cfg:  func(c *Config) { c.InitialMaster = true },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second + skewMin, TimerFired{}, nil, Backup, mdi100},
				{mdi100, TimerFired{}, becomeMaster(100), Master, time.Second + mdi100},
			},
		},
		{
			name: "state MASTER below 255 stays backup when a higher master speaks",
			cfg:  func(c *Config) { c.InitialMaster = true },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{500 * time.Millisecond, adv(upper, 150), nil, Backup, 500*time.Millisecond + mdi100},
			},
		},
		{
			name: "state MASTER below 255 clears nopreempt and preempts a lower master",
			cfg:  func(c *Config) { c.InitialMaster, c.NoPreempt = true, true },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{500 * time.Millisecond, adv(upper, 50), nil, Backup, mdi100},
				{mdi100, TimerFired{}, becomeMaster(100), Master, time.Second + mdi100},
			},
		},
		{
			name: "adverts from a higher master keep resetting the down timer",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, adv(upper, 150), nil, Backup, time.Second + mdi100},
				{2 * time.Second, adv(upper, 150), nil, Backup, 2*time.Second + mdi100},
				{2*time.Second + mdi100, TimerFired{}, becomeMaster(100), Master, 3*time.Second + mdi100},
			},
		},
		{
			name: "backup follows an equal priority master whatever its address",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, adv(lower, 100), nil, Backup, time.Second + mdi100},
			},
		},
		{
			name: "preempt: lower priority adverts are discarded and the timer runs out",
			cfg:  func(c *Config) { c.Priority = 150 },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{time.Second, adv(lower, 100), nil, Backup, mdi150},
				{2 * time.Second, adv(lower, 100), nil, Backup, mdi150},
				{mdi150, TimerFired{}, becomeMaster(150), Master, mdi150 + time.Second},
				// The old master hears us and steps down; should it
				// not, we re-assert (see the lower priority cases).
			},
		},
		{
			name: "nopreempt: a lower priority master is followed",
			cfg:  func(c *Config) { c.Priority, c.NoPreempt = 150, true },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{time.Second, adv(lower, 100), nil, Backup, time.Second + mdi150},
				{2 * time.Second, adv(lower, 100), nil, Backup, 2*time.Second + mdi150},
			},
		},
		{
			name: "preempt_delay: lower adverts are followed until the delay ends",
			cfg:  func(c *Config) { c.Priority, c.PreemptDelay = 150, 3*time.Second },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				// The delay starts with the first lower advert (1 s)
				// and ends at 4 s.
				{1 * time.Second, adv(lower, 100), nil, Backup, 1*time.Second + mdi150},
				{2 * time.Second, adv(lower, 100), nil, Backup, 2*time.Second + mdi150},
				{3 * time.Second, adv(lower, 100), nil, Backup, 3*time.Second + mdi150},
				{4 * time.Second, adv(lower, 100), nil, Backup, 3*time.Second + mdi150},
				{5 * time.Second, adv(lower, 100), nil, Backup, 3*time.Second + mdi150},
				{3*time.Second + mdi150, TimerFired{}, becomeMaster(150), Master, 4*time.Second + mdi150},
			},
		},
		{
			name: "preempt_delay: a higher advert cancels the running delay",
			cfg:  func(c *Config) { c.Priority, c.PreemptDelay = 150, 3*time.Second },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{1 * time.Second, adv(lower, 100), nil, Backup, 1*time.Second + mdi150},
				{2 * time.Second, adv(upper, 200), nil, Backup, 2*time.Second + mdi150},
				// Restarted at 5 s, so the advert at 7 s is still
				// followed.
				{5 * time.Second, adv(lower, 100), nil, Backup, 5*time.Second + mdi150},
				{7 * time.Second, adv(lower, 100), nil, Backup, 7*time.Second + mdi150},
				{8 * time.Second, adv(lower, 100), nil, Backup, 7*time.Second + mdi150},
			},
		},
		{
			name: "priority 0 from the master: backup takes over after Skew_Time",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, adv(upper, 150), nil, Backup, time.Second + mdi100},
				{2 * time.Second, adv(upper, 0), nil, Backup, 2*time.Second + skew100},
				{2*time.Second + skew100, TimerFired{}, becomeMaster(100), Master, 3*time.Second + skew100},
			},
		},
		{
			name: "master answers priority 0 with an advert",
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(upper, 0), []Action{SendAdvert{100}}, Master, mdi100 + 1500*time.Millisecond},
			}),
		},
		{
			name: "master sends adverts every interval",
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + time.Second, TimerFired{}, []Action{SendAdvert{100}}, Master, mdi100 + 2*time.Second},
				{mdi100 + 2*time.Second, TimerFired{}, []Action{SendAdvert{100}}, Master, mdi100 + 3*time.Second},
			}),
		},
		{
			name: "master steps down for a higher priority",
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(lower, 150), []Action{RemoveVIPs{}, notify(Backup, 100)}, Backup, 2*mdi100 + 500*time.Millisecond},
			}),
		},
		{
			name: "master steps down for equal priority from a higher address",
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(upper, 100), []Action{RemoveVIPs{}, notify(Backup, 100)}, Backup, 2*mdi100 + 500*time.Millisecond},
			}),
		},
		{
			name: "master hearing equal priority from a lower address re-asserts",
			cfg:  func(c *Config) { c.GARPDelay = 0 },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(lower, 100),
					[]Action{SendAdvert{100}, SendGARP{5, GARPLowerPrio}}, Master, mdi100 + 1500*time.Millisecond},
			}),
		},
		{
			name: "split brain heals: lower master heard, advert and GARPs now and after the delay",
			cfg:  func(c *Config) { c.GARPDelay, c.GARPLowerPrioDelay = 0, 2500*time.Millisecond },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(upper, 50),
					[]Action{SendAdvert{100}, SendGARP{5, GARPLowerPrio}}, Master, mdi100 + 1500*time.Millisecond},
				{mdi100 + 1500*time.Millisecond, TimerFired{}, []Action{SendAdvert{100}}, Master, mdi100 + 2500*time.Millisecond},
				{mdi100 + 2500*time.Millisecond, TimerFired{}, []Action{SendAdvert{100}}, Master, mdi100 + 3*time.Second},
				{mdi100 + 3*time.Second, TimerFired{}, []Action{SendGARP{5, GARPLowerPrioDelayed}}, Master, mdi100 + 3500*time.Millisecond},
			}),
		},
		{
			name: "strict: a lower master gets neither advert nor GARPs",
			cfg:  func(c *Config) { c.Strict, c.GARPDelay = true, 0 },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(upper, 50), nil, Master, mdi100 + time.Second},
			}),
		},
		{
			name: "v2 interval mismatch is dropped and does not reset the timer",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, AdvertReceived{From: upper, Priority: 150, Interval: 2 * time.Second},
					[]Action{BadAdvert{From: upper, Reason: BadInterval, Dropped: true}}, Backup, mdi100},
			},
		},
		{
			name: "v2 interval mismatch cannot make a master step down",
			cfg:  func(c *Config) { c.GARPDelay = 0 },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, AdvertReceived{From: upper, Priority: 200, Interval: 3 * time.Second},
					[]Action{BadAdvert{From: upper, Reason: BadInterval, Dropped: true}}, Master, mdi100 + time.Second},
			}),
		},
		{
			name: "VIP list mismatch is dropped",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, AdvertReceived{From: upper, Priority: 150, Interval: time.Second, VIPMismatch: true},
					[]Action{BadAdvert{From: upper, Reason: BadVIPList, Dropped: true}}, Backup, mdi100},
			},
		},
		{
			name: "v3: interval mismatch is reported, the master's interval is learned",
			cfg:  func(c *Config) { c.Version = 3 },
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				// Master_Down_Interval = 3 x 2 s + (156 x 200 cs x 625/16) us.
				{time.Second, AdvertReceived{From: upper, Priority: 150, Interval: 2 * time.Second},
					[]Action{BadAdvert{From: upper, Reason: BadInterval}}, Backup, time.Second + 6*time.Second + 1218750*us},
				// Priority 0: Skew_Time with the learned interval.
				{2 * time.Second, AdvertReceived{From: upper, Priority: 0, Interval: 2 * time.Second},
					[]Action{BadAdvert{From: upper, Reason: BadInterval}}, Backup, 2*time.Second + 1218750*us},
			},
		},
		{
			name: "v3 at 100 ms: Skew_Time scales with the interval",
			cfg:  func(c *Config) { c.Version, c.AdvertInt = 3, 100*time.Millisecond },
			steps: []step{
				// 156 x 10 x 625 / 16 = 60937.5 us, truncated.
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, 300*time.Millisecond + 60937*us},
			},
		},
		{
			name: "v3: a master stepping down times the new master with its interval",
			cfg:  func(c *Config) { c.Version = 3 },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, AdvertReceived{From: upper, Priority: 150, Interval: 500 * time.Millisecond},
					[]Action{BadAdvert{From: upper, Reason: BadInterval}, RemoveVIPs{}, notify(Backup, 100)},
					// 3 x 500 ms + 156 x 50 x 625/16 us
					Backup, mdi100 + 500*time.Millisecond + 1500*time.Millisecond + 304687*us},
			}),
		},
		{
			name: "adverts are ignored in FAULT and before Start",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, adv(upper, 150), nil, Init, never},
				{0, TrackChanged{Kind: TrackInterface, Name: "eth0"}, nil, Init, never},
				{0, Start{}, []Action{notify(Fault, 100)}, Fault, never},
				{time.Second, adv(upper, 150), nil, Fault, never},
				{2 * time.Second, TimerFired{}, nil, Fault, never},
			},
		},
		{
			name: "tracked interface with weight 0: BACKUP to FAULT and back",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0"}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0"}, nil, Fault, never},
				{3 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0", Up: true}, []Action{notify(Backup, 100)}, Backup, 3*time.Second + mdi100},
			},
		},
		{
			name: "tracked interface with weight 0: MASTER to FAULT sends priority 0",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, TrackChanged{Kind: TrackInterface, Name: "eth0"},
					[]Action{SendAdvert{0}, RemoveVIPs{}, notify(Fault, 100)}, Fault, never},
			}),
		},
		{
			name: "reverse weight 0: FAULT while the object is up",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackScript, Name: "maint", Reverse: true}}
			},
			steps: []step{
				{0, TrackChanged{Kind: TrackScript, Name: "maint"}, nil, Init, never},
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TrackChanged{Kind: TrackScript, Name: "maint", Up: true}, []Action{notify(Fault, 100)}, Fault, never},
			},
		},
		{
			name: "address owner recovering from FAULT is master at once",
			cfg: func(c *Config) {
				c.Priority, c.InitialMaster = 255, true
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, Start{}, becomeMaster(255), Master, time.Second},
				{500 * time.Millisecond, TrackChanged{Kind: TrackInterface, Name: "eth0"},
					[]Action{SendAdvert{0}, RemoveVIPs{}, notify(Fault, 255)}, Fault, never},
				{2 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0", Up: true}, becomeMaster(255), Master, 3 * time.Second},
			},
		},
		{
			name: "script with weight 0 holds the instance in FAULT silently until its first result",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackScript, Name: "chk"}}
			},
			steps: []step{
				{0, Start{}, nil, Fault, never},
				{time.Second, TrackChanged{Kind: TrackScript, Name: "chk", Up: true}, []Action{notify(Backup, 100)}, Backup, time.Second + mdi100},
			},
		},
		{
			name: "script with weight 0 failing first notifies FAULT then",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackScript, Name: "chk"}}
			},
			steps: []step{
				{0, Start{}, nil, Fault, never},
				{time.Second, TrackChanged{Kind: TrackScript, Name: "chk"}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, TrackChanged{Kind: TrackScript, Name: "chk", Up: true}, []Action{notify(Backup, 100)}, Backup, 2*time.Second + mdi100},
			},
		},
		{
			name: "negative weight lowers the priority and moves the down timer by the skew",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth1", Weight: -20}}
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TrackChanged{Kind: TrackInterface, Name: "eth1"}, nil, Backup, mdi100 + skew80 - skew100},
				{mdi100 + skew80 - skew100, TimerFired{}, becomeMaster(80), Master, mdi100 + skew80 - skew100 + time.Second},
			},
		},
		{
			name: "master with lowered priority advertises it and yields to the backup",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackScript, Name: "chk", Weight: -30}}
			},
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 100*time.Millisecond, TrackChanged{Kind: TrackScript, Name: "chk"}, nil, Master, mdi100 + time.Second},
				{mdi100 + time.Second, TimerFired{}, []Action{SendAdvert{70}}, Master, mdi100 + 2*time.Second},
				// The backup at 90 preempts once its timer runs out.
				{mdi100 + 4*time.Second, adv(upper, 90), []Action{RemoveVIPs{}, notify(Backup, 70)}, Backup, mdi100 + 7*time.Second + 726562*us},
			}),
		},
		{
			name: "positive weight raises the priority, clamped at 254",
			cfg: func(c *Config) {
				c.Priority = 200
				c.Tracks = []Track{{Kind: TrackScript, Name: "chk", Weight: 100}}
			},
			steps: []step{
				{0, TrackChanged{Kind: TrackScript, Name: "chk", Up: true}, nil, Init, never},
				{0, Start{}, []Action{notify(Backup, 254)}, Backup, 3*time.Second + 7812*us},
			},
		},
		{
			name: "reverse weight counts the other way",
			cfg: func(c *Config) {
				c.Tracks = []Track{{Kind: TrackScript, Name: "chk", Weight: 20, Reverse: true}}
			},
			steps: []step{
				{0, TrackChanged{Kind: TrackScript, Name: "chk", Up: true}, nil, Init, never},
				{0, Start{}, []Action{notify(Backup, 80)}, Backup, 3*time.Second + skew80},
			},
		},
		{
			name: "priority is clamped at 1",
			cfg: func(c *Config) {
				c.Priority = 10
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth1", Weight: -50}}
			},
			steps: []step{
				{0, TrackChanged{Kind: TrackInterface, Name: "eth1"}, nil, Init, never},
				{0, Start{}, []Action{notify(Backup, 1)}, Backup, 3*time.Second + 996093*us},
			},
		},
		{
			name: "weights do not apply to the address owner",
			cfg: func(c *Config) {
				c.Priority, c.InitialMaster = 255, true
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth1", Weight: -50}}
			},
			steps: []step{
				{0, Start{}, becomeMaster(255), Master, time.Second},
				{100 * time.Millisecond, TrackChanged{Kind: TrackInterface, Name: "eth1"}, nil, Master, time.Second},
				{time.Second, TimerFired{}, []Action{SendAdvert{255}}, Master, 2 * time.Second},
			},
		},
		{
			name: "unknown tracked object is ignored",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TrackChanged{Kind: TrackInterface, Name: "eth9"}, nil, Backup, mdi100},
			},
		},
		{
			name: "stop as master sends priority 0 and releases the VIPs",
			cfg:  func(c *Config) { c.GARPDelay = 0 },
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 300*time.Millisecond, Stop{}, []Action{SendAdvert{0}, RemoveVIPs{}, notify(Stopped, 100)}, Stopped, never},
				{mdi100 + 400*time.Millisecond, Stop{}, nil, Stopped, never},
				{mdi100 + 500*time.Millisecond, adv(upper, 150), nil, Stopped, never},
			}),
		},
		{
			name: "stop as backup only notifies",
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, Stop{}, []Action{notify(Stopped, 100)}, Stopped, never},
				{2 * time.Second, Start{}, []Action{notify(Backup, 100)}, Backup, 2*time.Second + mdi100},
			},
		},
		{
			name: "GARP schedule: repeat at once, again after the delay, then every refresh",
			cfg: func(c *Config) {
				c.AdvertInt = 10 * time.Second // keep the adverts out of the way
				c.GARPDelay, c.GARPRefresh, c.GARPRefreshRepeat = 5*time.Second, 60*time.Second, 2
				c.Priority, c.InitialMaster = 255, true
			},
			steps: []step{
				{0, Start{}, becomeMaster(255), Master, 5 * time.Second},
				{5 * time.Second, TimerFired{}, []Action{SendGARP{5, GARPMasterDelay}}, Master, 10 * time.Second},
				{60 * time.Second, TimerFired{}, []Action{SendAdvert{255}}, Master, 65 * time.Second},
				{65 * time.Second, TimerFired{}, []Action{SendGARP{2, GARPRefresh}}, Master, 70 * time.Second},
				{120 * time.Second, TimerFired{}, []Action{SendAdvert{255}}, Master, 125 * time.Second},
				{125 * time.Second, TimerFired{}, []Action{SendGARP{2, GARPRefresh}}, Master, 130 * time.Second},
			},
		},
		{
			name: "leaving MASTER cancels pending GARPs",
			cfg: func(c *Config) {
				c.GARPRefresh = 30 * time.Second
			},
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, adv(upper, 150), []Action{RemoveVIPs{}, notify(Backup, 100)}, Backup, 2*mdi100 + 500*time.Millisecond},
				// Past the garp_master_delay batch's time: only the down
				// timer may be left.
				{mdi100 + 4*time.Second, adv(upper, 150), nil, Backup, 2*mdi100 + 4*time.Second},
			}),
		},
		{
			name: "sync: a BACKUP whose down timer has run out follows a peer to MASTER",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				// Its own TimerFired may not have come yet.
				{mdi100, SyncMaster{"VI_2"}, becomeMaster(100), Master, mdi100 + time.Second},
				{mdi100, TimerFired{}, nil, Master, mdi100 + time.Second},
				{mdi100 + 100*time.Millisecond, SyncMaster{"VI_3"}, nil, Master, mdi100 + time.Second},
			},
		},
		{
			name: "sync: a BACKUP still timing a master does not follow a peer",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, adv(upper, 150), nil, Backup, time.Second + mdi100},
				{mdi100, SyncMaster{"VI_2"}, nil, Backup, time.Second + mdi100},
				// Once the master has gone quiet it wants MASTER too.
				{time.Second + mdi100, SyncMaster{"VI_2"}, becomeMaster(100), Master, 2*time.Second + mdi100},
			},
		},
		{
			name: "sync: nopreempt keeps a BACKUP following a lower master when a peer goes MASTER",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Priority, c.NoPreempt = 150, true
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{time.Second, adv(lower, 100), nil, Backup, time.Second + mdi150},
				{mdi150, SyncMaster{"VI_2"}, nil, Backup, time.Second + mdi150},
			},
		},
		{
			name: "sync: preempt_delay keeps a BACKUP following a lower master when a peer goes MASTER",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Priority, c.PreemptDelay = 150, 10*time.Second
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{time.Second, adv(lower, 100), nil, Backup, time.Second + mdi150},
				{mdi150, SyncMaster{"VI_2"}, nil, Backup, time.Second + mdi150},
			},
		},
		{
			name: "sync: a BACKUP ignoring a lower master follows a peer once its timer has run out",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Priority = 150
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 150)}, Backup, mdi150},
				{time.Second, adv(lower, 100), nil, Backup, mdi150},
				{2 * time.Second, SyncMaster{"VI_2"}, nil, Backup, mdi150},
				{mdi150 + time.Second, SyncMaster{"VI_2"}, becomeMaster(150), Master, mdi150 + 2*time.Second},
			},
		},
		{
			name: "sync: MASTER steps down when a peer does, and only once",
			cfg:  inSyncGroup,
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, SyncBackup{"VI_2"}, []Action{RemoveVIPs{}, notify(Backup, 100)}, Backup, 2*mdi100 + 500*time.Millisecond},
				{mdi100 + 600*time.Millisecond, SyncBackup{"VI_3"}, nil, Backup, 2*mdi100 + 500*time.Millisecond},
				{mdi100 + 700*time.Millisecond, SyncMaster{"VI_2"}, nil, Backup, 2*mdi100 + 500*time.Millisecond},
			}),
		},
		{
			name: "sync: the address owner steps down with its peers too",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Priority, c.InitialMaster = 255, true
			},
			steps: []step{
				// Owners wanting MASTER start MASTER, as a group of them
				// does in keepalived.
				{0, Start{}, becomeMaster(255), Master, time.Second},
				{500 * time.Millisecond, SyncBackup{"VI_2"}, []Action{RemoveVIPs{}, notify(Backup, 255)}, Backup, 3500*time.Millisecond + skewMin},
			},
		},
		{
			name: "sync: state MASTER below 255 waits the full Master_Down_Interval in a group",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.InitialMaster, c.NoPreempt = true, true
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				// nopreempt is still cleared, as keepalived clears it
				// before it looks at the group.
				{time.Second, adv(lower, 50), nil, Backup, mdi100},
			},
		},
		{
			name: "sync: a peer in FAULT holds a BACKUP there until it recovers",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, SyncFault{"VI_2", true}, nil, Fault, never},
				{3 * time.Second, SyncMaster{"VI_3"}, nil, Fault, never},
				{3 * time.Second, SyncBackup{"VI_3"}, nil, Fault, never},
				{4 * time.Second, adv(upper, 150), nil, Fault, never},
				{5 * time.Second, SyncFault{"VI_2", false}, []Action{notify(Backup, 100)}, Backup, 5*time.Second + mdi100},
				{6 * time.Second, SyncFault{"VI_2", false}, nil, Backup, 5*time.Second + mdi100},
			},
		},
		{
			name: "sync: a peer in FAULT takes a MASTER there with priority 0",
			cfg:  inSyncGroup,
			steps: cat(masterAt(mdi100, 100), []step{
				{mdi100 + 500*time.Millisecond, SyncFault{"VI_2", true},
					[]Action{SendAdvert{0}, RemoveVIPs{}, notify(Fault, 100)}, Fault, never},
				{mdi100 + time.Second, SyncFault{"VI_2", false}, []Action{notify(Backup, 100)}, Backup, mdi100 + time.Second + mdi100},
			}),
		},
		{
			name: "sync: two peers in FAULT need two releases",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, SyncFault{"VI_3", true}, nil, Fault, never},
				{3 * time.Second, SyncFault{"VI_2", false}, nil, Fault, never},
				{4 * time.Second, SyncFault{"VI_3", false}, []Action{notify(Backup, 100)}, Backup, 4*time.Second + mdi100},
			},
		},
		{
			name: "sync: a release from a peer not held changes nothing",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, SyncFault{"VI_3", false}, nil, Fault, never},
			},
		},
		{
			name: "sync: events naming the instance itself are ignored",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_1", true}, nil, Backup, mdi100},
				{mdi100, SyncMaster{"VI_1"}, nil, Backup, mdi100},
			},
		},
		{
			name: "sync: own tracked object still down when the peer recovers",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0"}, nil, Fault, never},
				{3 * time.Second, SyncFault{"VI_2", false}, nil, Fault, never},
				{4 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0", Up: true}, []Action{notify(Backup, 100)}, Backup, 4*time.Second + mdi100},
			},
		},
		{
			name: "sync: a peer still in FAULT when the own tracked object recovers",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0"}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, SyncFault{"VI_2", true}, nil, Fault, never},
				{3 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0", Up: true}, nil, Fault, never},
				{4 * time.Second, SyncFault{"VI_2", false}, []Action{notify(Backup, 100)}, Backup, 4*time.Second + mdi100},
			},
		},
		{
			name: "sync: a peer in FAULT before Start makes the instance start in FAULT",
			cfg:  inSyncGroup,
			steps: []step{
				{0, SyncFault{"VI_2", true}, nil, Init, never},
				{0, SyncMaster{"VI_3"}, nil, Init, never},
				{0, Start{}, []Action{notify(Fault, 100)}, Fault, never},
				{time.Second, SyncFault{"VI_2", false}, []Action{notify(Backup, 100)}, Backup, time.Second + mdi100},
			},
		},
		{
			name: "sync: a stopped instance keeps its peers' faults for its next start",
			cfg:  inSyncGroup,
			steps: []step{
				{0, Start{}, []Action{notify(Backup, 100)}, Backup, mdi100},
				{time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 100)}, Fault, never},
				{2 * time.Second, Stop{}, []Action{notify(Stopped, 100)}, Stopped, never},
				{3 * time.Second, SyncFault{"VI_3", true}, nil, Stopped, never},
				{4 * time.Second, SyncFault{"VI_2", false}, nil, Stopped, never},
				{5 * time.Second, Start{}, []Action{notify(Fault, 100)}, Fault, never},
				{6 * time.Second, SyncFault{"VI_3", false}, []Action{notify(Backup, 100)}, Backup, 6*time.Second + mdi100},
			},
		},
		{
			name: "sync: the address owner recovers from FAULT as BACKUP in a group",
			cfg: func(c *Config) {
				inSyncGroup(c)
				c.Priority, c.InitialMaster = 255, true
				c.Tracks = []Track{{Kind: TrackInterface, Name: "eth0"}}
			},
			steps: []step{
				{0, Start{}, becomeMaster(255), Master, time.Second},
				{500 * time.Millisecond, TrackChanged{Kind: TrackInterface, Name: "eth0"},
					[]Action{SendAdvert{0}, RemoveVIPs{}, notify(Fault, 255)}, Fault, never},
				{2 * time.Second, TrackChanged{Kind: TrackInterface, Name: "eth0", Up: true},
					[]Action{notify(Backup, 255)}, Backup, 5*time.Second + skewMin},
				{3 * time.Second, SyncFault{"VI_2", true}, []Action{notify(Fault, 255)}, Fault, never},
				{4 * time.Second, SyncFault{"VI_2", false}, []Action{notify(Backup, 255)}, Backup, 7*time.Second + skewMin},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			run(t, cfg, tt.steps)
		})
	}
}

// TestSplitBrain runs two machines against each other through a cut link
// and checks that one MASTER remains within one advert interval of the
// link's return, and that it re-announces the VIPs.
func TestSplitBrain(t *testing.T) {
	a := baseConfig()
	a.Priority = 150
	b := baseConfig()
	b.PrimaryIP = upper
	ma, mb := New(a, t0), New(b, t0)
	ma.Handle(Start{}, t0)
	mb.Handle(Start{}, t0)
	// Link cut from the start: both time out and become MASTER.
	ma.Handle(TimerFired{}, ma.Deadline())
	mb.Handle(TimerFired{}, mb.Deadline())
	if ma.State() != Master || mb.State() != Master {
		t.Fatalf("states %v %v, want both MASTER", ma.State(), mb.State())
	}
	// The link returns; b's next advert reaches a first.
	now := mb.Deadline()
	mb.Handle(TimerFired{}, now)
	got := ma.Handle(AdvertReceived{From: upper, Priority: 100, Interval: time.Second}, now)
	want := []Action{SendAdvert{150}, SendGARP{5, GARPLowerPrio}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("a hearing b (-want +got):\n%s", diff)
	}
	got = mb.Handle(AdvertReceived{From: self, Priority: 150, Interval: time.Second}, now)
	want = []Action{RemoveVIPs{}, notify(Backup, 100)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("b hearing a (-want +got):\n%s", diff)
	}
	if ma.State() != Master || mb.State() != Backup {
		t.Fatalf("states %v %v, want MASTER BACKUP", ma.State(), mb.State())
	}
	if st := mb.Status(); st.Master != self || st.MasterPriority != 150 || !st.Since.Equal(now) {
		t.Errorf("b's status %+v", st)
	}
}

// syncRig relays transitions between the members of a sync group the way
// the Sync* event docs ask of the runner, delivering in order, so that
// tests see whether relays die out.
type syncRig struct {
	t       *testing.T
	names   []string
	members map[string]*Machine
}

func newSyncRig(t *testing.T, cfgs ...Config) *syncRig {
	r := &syncRig{t: t, members: map[string]*Machine{}}
	for _, c := range cfgs {
		c.SyncGroup = "G"
		r.names = append(r.names, c.Name)
		r.members[c.Name] = New(c, t0)
	}
	return r
}

// handle feeds one member an event and relays until the group is quiet.
func (r *syncRig) handle(name string, ev Event, at time.Duration) {
	r.t.Helper()
	type delivery struct {
		to string
		ev Event
	}
	queue := []delivery{{name, ev}}
	for n := 0; len(queue) > 0; n++ {
		if n > 10*len(r.names) {
			r.t.Fatalf("%T to %s at %v: relays do not die out", ev, name, at)
		}
		d := queue[0]
		queue = queue[1:]
		m := r.members[d.to]
		before := m.Status()
		m.Handle(d.ev, t0.Add(at))
		after := m.Status()
		var out []Event
		if after.OwnFault != before.OwnFault {
			out = append(out, SyncFault{Member: d.to, Held: after.OwnFault})
		}
		if after.State == Master && before.State != Master {
			out = append(out, SyncMaster{Member: d.to})
		}
		if after.State == Backup && before.State == Master {
			out = append(out, SyncBackup{Member: d.to})
		}
		for _, e := range out {
			for _, p := range r.names {
				if p != d.to {
					queue = append(queue, delivery{p, e})
				}
			}
		}
	}
}

func (r *syncRig) want(step string, states ...State) {
	r.t.Helper()
	for i, n := range r.names {
		if got := r.members[n].State(); got != states[i] {
			r.t.Fatalf("%s: %s is %v, want %v", step, n, got, states[i])
		}
	}
}

func (r *syncRig) wantWhy(name, why string) {
	r.t.Helper()
	if got := r.members[name].Status().Why; got != why {
		r.t.Errorf("%s: why %q, want %q", name, got, why)
	}
}

func syncMember(name string, prio uint8, tracks ...Track) Config {
	c := baseConfig()
	c.Name, c.Priority, c.Tracks = name, prio, tracks
	return c
}

func TestSyncGroup(t *testing.T) {
	eth0 := func(up bool) TrackChanged { return TrackChanged{Kind: TrackInterface, Name: "eth0", Up: up} }
	wire := Track{Kind: TrackInterface, Name: "eth0"}

	t.Run("members go MASTER together and stop relaying", func(t *testing.T) {
		r := newSyncRig(t, syncMember("A", 150), syncMember("B", 100))
		r.handle("A", Start{}, 0)
		r.handle("B", Start{}, 0)
		r.want("start", Backup, Backup)
		// The runner waits for the later deadline, B's, then fires.
		r.handle("A", TimerFired{}, mdi100)
		r.want("A's timer", Master, Master)
		r.wantWhy("A", "master down timer expired")
		r.wantWhy("B", "sync group G peer A became MASTER")
		r.handle("B", TimerFired{}, mdi100)
		r.want("B's timer", Master, Master)
	})

	t.Run("a peer still hearing its master stays BACKUP, no ping-pong", func(t *testing.T) {
		r := newSyncRig(t, syncMember("A", 150), syncMember("B", 100))
		r.handle("A", Start{}, 0)
		r.handle("B", Start{}, 0)
		r.handle("B", adv(upper, 200), time.Second)
		// A runner that did not wait: A goes alone, B does not follow.
		r.handle("A", TimerFired{}, mdi150)
		r.want("A's timer", Master, Backup)
		r.handle("B", adv(upper, 200), 2*time.Second)
		r.want("B's master speaks", Master, Backup)
	})

	t.Run("members step down together and stop relaying", func(t *testing.T) {
		r := newSyncRig(t, syncMember("A", 100), syncMember("B", 100))
		r.handle("A", Start{}, 0)
		r.handle("B", Start{}, 0)
		r.handle("A", TimerFired{}, mdi100)
		r.want("masters", Master, Master)
		r.handle("B", adv(upper, 200), mdi100+time.Second)
		r.want("B hears a better master", Backup, Backup)
		r.wantWhy("A", "sync group G peer B left MASTER for BACKUP")
		// Their timers run again and the group comes back as one.
		r.handle("B", TimerFired{}, 2*mdi100+time.Second)
		r.want("timers", Master, Master)
	})

	t.Run("FAULT held by two faulty members needs both to recover", func(t *testing.T) {
		r := newSyncRig(t, syncMember("A", 100, wire), syncMember("B", 100, wire), syncMember("C", 100))
		for _, n := range r.names {
			r.handle(n, Start{}, 0)
		}
		r.handle("C", TimerFired{}, mdi100)
		r.want("masters", Master, Master, Master)

		r.handle("A", eth0(false), 5*time.Second)
		r.want("A down", Fault, Fault, Fault)
		r.wantWhy("C", "sync group G peer A in FAULT")
		if r.members["B"].Status().OwnFault || !r.members["A"].Status().OwnFault {
			t.Fatalf("OwnFault: A %v B %v, want true false", r.members["A"].Status().OwnFault, r.members["B"].Status().OwnFault)
		}
		// B's own failure changes no state but must count.
		r.handle("B", eth0(false), 6*time.Second)
		r.want("B down", Fault, Fault, Fault)
		r.handle("A", eth0(true), 7*time.Second)
		r.want("A up", Fault, Fault, Fault)
		r.handle("B", eth0(true), 8*time.Second)
		r.want("B up", Backup, Backup, Backup)
		r.wantWhy("B", "interface eth0 recovered")
		r.wantWhy("C", "sync group G peer B left FAULT")
		r.handle("A", TimerFired{}, 8*time.Second+mdi100)
		r.want("timers", Master, Master, Master)
	})

	t.Run("a member starting with a tracked object down holds the others", func(t *testing.T) {
		r := newSyncRig(t, syncMember("A", 100, wire), syncMember("B", 100))
		r.handle("A", eth0(false), 0)
		r.handle("B", Start{}, 0)
		r.handle("A", Start{}, 0)
		r.want("start", Fault, Fault)
		r.handle("A", eth0(true), time.Second)
		r.want("A up", Backup, Backup)
	})
}

func TestNewAppliesKeepalivedCorrections(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero values take keepalived's defaults",
			in:   Config{},
			want: Config{Version: 2, Priority: 100, AdvertInt: time.Second, GARPRepeat: 5, GARPRefreshRepeat: 1},
		},
		{
			name: "state MASTER without priority is the owner",
			in:   Config{InitialMaster: true},
			want: Config{Version: 2, Priority: 255, InitialMaster: true, AdvertInt: time.Second, GARPRepeat: 5, GARPRefreshRepeat: 1},
		},
		{
			name: "nopreempt resets preempt_delay",
			in:   Config{Priority: 100, NoPreempt: true, PreemptDelay: time.Second},
			want: Config{Version: 2, Priority: 100, NoPreempt: true, AdvertInt: time.Second, GARPRepeat: 5, GARPRefreshRepeat: 1},
		},
		{
			name: "owner resets nopreempt",
			in:   Config{Priority: 255, NoPreempt: true},
			want: Config{Version: 2, Priority: 255, AdvertInt: time.Second, GARPRepeat: 5, GARPRefreshRepeat: 1},
		},
		{
			name: "strict: state follows ownership, no lower priority reaction",
			in: Config{Priority: 100, InitialMaster: true, Strict: true, PreemptDelay: time.Second,
				GARPLowerPrioRepeat: 5, GARPLowerPrioDelay: time.Second},
			want: Config{Version: 2, Priority: 100, Strict: true, LowerPrioNoAdvert: true,
				AdvertInt: time.Second, GARPRepeat: 5, GARPRefreshRepeat: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(tt.in, t0).cfg
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigFrom(t *testing.T) {
	vi := config.VRRPInstance{
		Name:            "VI_1",
		State:           config.Backup,
		VirtualRouterID: 51,
		Priority:        150,
		AdvertInt:       time.Second,
		Version:         2,
		NoPreempt:       true,
		VirtualIPAddresses: []config.VIP{
			{Prefix: netip.MustParsePrefix("10.0.0.100/32")},
			{Prefix: netip.MustParsePrefix("10.0.0.101/24")},
		},
		VirtualIPAddressesExcluded: []config.VIP{{Prefix: netip.MustParsePrefix("192.0.2.1/32")}},
		TrackInterfaces:            []config.TrackInterface{{Name: "eth1", Weight: -20}},
		TrackScripts:               []config.TrackScript{{Name: "chk", Weight: 0, Reverse: true}},
		UnicastSrcIP:               netip.MustParseAddr("10.0.0.9"),
		GarpMasterDelay:            5 * time.Second,
		GarpMasterRepeat:           3,
		GarpMasterRefresh:          time.Minute,
	}
	want := Config{
		Name:                "VI_1",
		Version:             2,
		Priority:            150,
		AdvertInt:           time.Second,
		NoPreempt:           true,
		PrimaryIP:           netip.MustParseAddr("10.0.0.9"),
		VIPs:                []netip.Addr{netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("10.0.0.101")},
		GARPDelay:           5 * time.Second,
		GARPRepeat:          3,
		GARPRefresh:         time.Minute,
		GARPRefreshRepeat:   1,
		GARPLowerPrioRepeat: 3,
		GARPLowerPrioDelay:  5 * time.Second,
		Tracks: []Track{
			{Kind: TrackInterface, Name: "eth1", Weight: -20},
			{Kind: TrackScript, Name: "chk", Reverse: true},
		},
	}
	got := ConfigFrom(vi, self)
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	vi.UnicastSrcIP = netip.Addr{}
	if got := ConfigFrom(vi, self).PrimaryIP; got != self {
		t.Errorf("PrimaryIP without unicast_src_ip = %v, want %v", got, self)
	}
	vi.Priority, vi.State = 255, config.Backup
	if !ConfigFrom(vi, self).InitialMaster {
		t.Error("priority 255 without state MASTER: InitialMaster = false, want true")
	}
}

func TestVIPsMatch(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	tests := []struct {
		want, got []netip.Addr
		ok        bool
	}{
		{[]netip.Addr{a, b}, []netip.Addr{b, a}, true},
		{[]netip.Addr{a, b}, []netip.Addr{a}, false},
		{[]netip.Addr{a, b}, []netip.Addr{a, c}, false},
		{nil, nil, true},
	}
	for _, tt := range tests {
		if got := VIPsMatch(tt.want, tt.got); got != tt.ok {
			t.Errorf("VIPsMatch(%v, %v) = %v, want %v", tt.want, tt.got, got, tt.ok)
		}
	}
}

func TestNotifyArgs(t *testing.T) {
	got := Notify{Instance: "VI_1", State: Master, Priority: 150}.Args()
	want := []string{"INSTANCE", "VI_1", "MASTER", "150"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := Stopped.String(); got != "STOP" {
		t.Errorf("Stopped.String() = %q, want STOP", got)
	}
}
