package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlbd/xlbd/internal/testbed"
	"github.com/xlbd/xlbd/internal/testenv"
)

// foRow is a row of KEEPALIVED.md's failover table.
type foRow struct {
	name    string
	version int
	advert  string        // advert_int as keepalived.conf writes it
	every   time.Duration // the same
	hung    bool          // SIGSTOP the master; else SIGTERM (priority 0)
}

var foRows = []foRow{
	{"v2-graceful", 2, "1", time.Second, false},
	{"v2-hung", 2, "1", time.Second, true},
	{"v3-graceful", 3, "0.1", 100 * time.Millisecond, false},
	{"v3-hung", 3, "0.1", 100 * time.Millisecond, true},
}

var foImpls = []string{"xlbd", "keepalived"}

// foRounds is the number of failovers per row and implementation, for
// each b.N.
const foRounds = 5

// BenchmarkVRRPFailover is KEEPALIVED.md's failover table, xlbd against
// keepalived 2.2.7 in the same run. Each implementation has a pair per
// row: MASTER priority 150 on lb1, BACKUP priority 100 on lb2. A round
// starts both implementations' masters, waits until each holds the VIP,
// and then, one implementation after the other, signals its master once
// lb2 has heard it for at least a second: SIGTERM (graceful, it sends
// priority 0) or SIGSTOP (hung; resumed and stopped after the round). A
// sample is the time from the signal to the VIP's address event in lb2's
// namespace. The signal goes out at the same phase of the master's advert
// interval for both implementations, (i+½)/rounds in round i, counted from
// when the VIP appeared on lb1 (just after its first advert): a hung
// master's failover depends on when its last advert went out.
//
// Metrics: <impl>-<row>-{median,min,max}-ms, and <row>-xlbd/keepalived,
// the ratio of the medians.
//
//	go test ./internal/e2e -run '^$' -bench VRRPFailover -benchtime 1x
func BenchmarkVRRPFailover(b *testing.B) {
	requireNetns(b)
	if _, err := os.Stat(testbed.KeepalivedPath); err != nil {
		testenv.Skip(b, fmt.Sprintf("keepalived is not installed (make deps installs it): %v", err))
	}
	xlbdBinary(b) // built before any clock runs
	rounds := foRounds * b.N
	// Benchmark logs keep 9 lines: the table, then the samples.
	table := []string{fmt.Sprintf("%-11s | %-23s | %-23s | xlbd/keepalived (ms from the signal to the VIP on lb2, median [min–max] of %d)",
		"row", "xlbd", "keepalived", rounds)}
	var samples []string
	for _, row := range foRows {
		pairs := make([]*foPair, len(foImpls))
		for i, impl := range foImpls {
			pairs[i] = foNewPair(b, impl, row)
		}
		took := make([][]time.Duration, len(foImpls))
		zero := make([][]time.Duration, len(foImpls))
		for r := range rounds {
			// The masters start together: their waits for
			// Master_Down_Interval overlap.
			for _, fp := range pairs {
				fp.startMaster(b)
			}
			for _, fp := range pairs {
				fp.waitMaster(b)
			}
			phase := row.every * time.Duration(2*r+1) / time.Duration(2*rounds)
			for j := range pairs {
				i := (j + r) % len(pairs) // who goes first alternates
				took[i] = append(took[i], pairs[i].failover(b, phase))
				if !row.hung {
					zero[i] = append(zero[i], pairs[i].zero)
				}
			}
		}
		for _, fp := range pairs {
			fp.close()
		}
		line := fmt.Sprintf("%-11s", row.name)
		var medians []float64
		for i, impl := range foImpls {
			med, lo, hi := foStats(took[i])
			medians = append(medians, med)
			b.ReportMetric(med, impl+"-"+row.name+"-median-ms")
			b.ReportMetric(lo, impl+"-"+row.name+"-min-ms")
			b.ReportMetric(hi, impl+"-"+row.name+"-max-ms")
			line += fmt.Sprintf(" | %7.1f [%6.1f–%6.1f]", med, lo, hi)
		}
		samples = append(samples, fmt.Sprintf("%-11s xlbd %s; keepalived %s", row.name, foList(took[0]), foList(took[1])))
		if !row.hung {
			// Signal to priority 0 read on lb2: the stopping master's share.
			for i, impl := range foImpls {
				med, _, _ := foStats(zero[i])
				b.ReportMetric(med, impl+"-"+row.name+"-prio0-ms")
			}
			samples = append(samples, fmt.Sprintf("%-11s signal→priority 0 on lb2: xlbd %s; keepalived %s", row.name, foList(zero[0]), foList(zero[1])))
		}
		ratio := medians[0] / medians[1]
		b.ReportMetric(ratio, row.name+"-xlbd/keepalived")
		table = append(table, line+fmt.Sprintf(" | %.3f", ratio))
	}
	b.Log(strings.Join(append(table, samples...), "\n"))
}

// foPair is one implementation's pair for one row: the backup runs
// throughout, the master is started for each round.
type foPair struct {
	impl         string
	row          foRow
	p            *testbed.Pair
	mconf, bconf string
	master       vrrpNode
	backup       vrrpNode
	lb1, lb2     netns.NsHandle
	lb1VIP       *foAddrWatch  // the master's VIP, while it starts
	tMaster      time.Time     // when the master added the VIP
	t0           time.Time     // of the last failover: the signal
	took         time.Duration // and the VIP on lb2
	zero         time.Duration // and lb2 reading its priority 0 advert (graceful rows)
}

func foNewPair(b testing.TB, impl string, row foRow) *foPair {
	b.Helper()
	p, err := testbed.NewPair(b, testbed.PairOptions{})
	if err != nil {
		b.Fatal(err)
	}
	conf := func(state string, prio int) string {
		c := vrrpConf{VRID: 60 + row.version, Version: row.version, AdvertInt: row.advert,
			State: state, Priority: prio, VIPs: []string{p.VIP.String() + "/24 dev eth0"}}
		if row.version == 2 {
			c.Pass = "bench"
		}
		return c.String()
	}
	fp := &foPair{impl: impl, row: row, p: p, mconf: conf("MASTER", 150), bconf: conf("BACKUP", 100)}
	for _, h := range []struct {
		ns *testbed.Netns
		h  *netns.NsHandle
	}{{p.LB1, &fp.lb1}, {p.LB2, &fp.lb2}} {
		if *h.h, err = netns.GetFromName(h.ns.Name); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.h.Close() })
	}
	fp.backup = startNode(b, impl, p.LB2, fp.bconf)
	return fp
}

// startMaster starts lb1's daemon, watching for the VIP from before.
func (fp *foPair) startMaster(b testing.TB) {
	b.Helper()
	fp.lb1VIP = foWatch(b, fp.lb1, fp.p.LB1, fp.p.VIP)
	fp.master = startNode(b, fp.impl, fp.p.LB1, fp.mconf)
}

// waitMaster waits until lb1 has added the VIP.
func (fp *foPair) waitMaster(b testing.TB) {
	b.Helper()
	var err error
	fp.tMaster, err = fp.lb1VIP.wait(15 * time.Second)
	fp.lb1VIP.close()
	if err != nil {
		b.Fatalf("%s %s: %v\nmaster:\n%s", fp.impl, fp.row.name, err, fp.master.output())
	}
}

// failover signals the master at phase past one of its adverts, a second
// or more after it added the VIP, and returns the time until the VIP is
// on lb2. The master is stopped when it returns.
func (fp *foPair) failover(b testing.TB, phase time.Duration) time.Duration {
	b.Helper()
	p := fp.p
	// lb2, MASTER after the last round, gives the VIP up once it hears
	// lb1.
	waitHolder(b, p, p.VIP, p.LB1, 5*time.Second)
	w := foWatch(b, fp.lb2, p.LB2, p.VIP)
	defer w.close()
	at := fp.tMaster.Add(phase)
	earliest := fp.tMaster.Add(time.Second)
	if now := time.Now(); now.After(earliest) {
		earliest = now
	}
	for at.Before(earliest) {
		at = at.Add(fp.row.every)
	}
	time.Sleep(time.Until(at))

	var zero *foZeroWatch
	if !fp.row.hung {
		zero = foWatchZero(b, p.LB2)
		defer zero.close()
	}
	var stopped chan struct{}
	fp.t0 = time.Now()
	if fp.row.hung {
		if err := fp.master.pause(); err != nil {
			b.Fatal(err)
		}
	} else {
		// Timed from the signal, as TestVRRPInterop does: keepalived
		// exits a while after it has sent priority 0.
		stopped = make(chan struct{})
		go func() { fp.master.stop(); close(stopped) }()
	}
	t, err := w.wait(5*fp.row.every + 5*time.Second)
	if err != nil {
		b.Fatalf("%s %s: %v (holders %v)\nmaster:\n%s\nbackup:\n%s", fp.impl, fp.row.name, err,
			p.Holders(p.VIP), fp.master.output(), fp.backup.output())
	}
	fp.took = t.Sub(fp.t0)
	fp.zero = 0
	if zero != nil {
		if tz, ok := zero.first(); ok {
			fp.zero = tz.Sub(fp.t0)
		}
	}
	if stopped != nil {
		<-stopped
	} else {
		fp.master.stop() // resumes it first
	}
	fp.master = nil
	return fp.took
}

// foZeroWatch notes when a namespace first reads a VRRP advert with
// priority 0: it splits a graceful failover into the stopping master's
// part and the backup's.
type foZeroWatch struct {
	c  net.PacketConn
	at chan time.Time
}

func foWatchZero(b testing.TB, ns *testbed.Netns) *foZeroWatch {
	b.Helper()
	c, err := ns.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		b.Fatalf("VRRP socket in %s: %v", ns, err)
	}
	w := &foZeroWatch{c: c, at: make(chan time.Time, 1)}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 2 && buf[2] == 0 {
				w.at <- time.Now()
				return
			}
		}
	}()
	return w
}

func (w *foZeroWatch) first() (time.Time, bool) {
	select {
	case t := <-w.at:
		return t, true
	case <-time.After(time.Second):
		return time.Time{}, false
	}
}

func (w *foZeroWatch) close() { w.c.Close() }

func (fp *foPair) close() {
	if fp.master != nil {
		fp.master.stop()
	}
	fp.backup.stop()
}

// foAddrWatch follows address events in a namespace for one address.
type foAddrWatch struct {
	ns      *testbed.Netns
	a       netip.Addr
	updates chan netlink.AddrUpdate
	errs    chan error
	done    chan struct{}
}

func foWatch(b testing.TB, h netns.NsHandle, ns *testbed.Netns, a netip.Addr) *foAddrWatch {
	b.Helper()
	w := &foAddrWatch{ns: ns, a: a, updates: make(chan netlink.AddrUpdate, 64),
		errs: make(chan error, 1), done: make(chan struct{})}
	err := netlink.AddrSubscribeWithOptions(w.updates, w.done, netlink.AddrSubscribeOptions{
		Namespace: &h,
		ErrorCallback: func(err error) {
			select {
			case w.errs <- err:
			default:
			}
		},
	})
	if err != nil {
		b.Fatalf("address events in %s: %v", ns, err)
	}
	return w
}

// wait returns when the address was added.
func (w *foAddrWatch) wait(limit time.Duration) (time.Time, error) {
	timeout := time.After(limit)
	for {
		select {
		case u, ok := <-w.updates:
			if !ok {
				return time.Time{}, fmt.Errorf("address events in %s ended", w.ns)
			}
			if u.NewAddr && u.LinkAddress.IP.Equal(w.a.AsSlice()) {
				return time.Now(), nil
			}
		case err := <-w.errs:
			return time.Time{}, fmt.Errorf("address events in %s: %w", w.ns, err)
		case <-timeout:
			return time.Time{}, fmt.Errorf("%s did not add %v within %v", w.ns, w.a, limit)
		}
	}
}

func (w *foAddrWatch) close() { close(w.done) }

// foStats is the median, minimum and maximum of d in milliseconds.
func foStats(d []time.Duration) (med, lo, hi float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	n := len(s)
	med = (ms(s[(n-1)/2]) + ms(s[n/2])) / 2
	return med, ms(s[0]), ms(s[n-1])
}

func foList(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, fmt.Sprint(x.Round(100*time.Microsecond)))
	}
	return strings.Join(s, " ")
}
