package xdp

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"time"
)

// pendingReal is a real whose next hop's MAC is not known yet.
type pendingReal struct {
	ri realIdent
	// weight is the configured weight, published with the MAC when
	// unusable says Apply wrote 0 for want of it. A real that is not
	// unusable (NAT, or one that keeps the path it had) only gets its path
	// rewritten.
	weight   int
	unusable bool
	// tree says the service's scheduler reads weights from the reals map;
	// the others' tables are built from the weights, and are rebuilt.
	tree bool
}

// How the resolver task asks the kernel again for a neighbour that did not
// answer: the kernel sends mcast_probes (3) ARP requests retrans_time (1 s)
// apart per request, then marks the entry FAILED; the task asks again after
// resolveRetryFirst, doubling up to resolveRetryMax.
var (
	resolveRetryFirst = 4 * time.Second
	resolveRetryMax   = 10 * time.Second
)

// settleTime is how long Backend.Apply gives the kernel, without holding
// anything, to resolve the next hops it has just been asked about, so that
// reals that answer at once (a LAN answers in well under a millisecond)
// are reachable when Apply returns. Silent ones cost it once per Apply that
// makes them pending, not once per real.
var settleTime = 100 * time.Millisecond

// takePending installs what an Apply found pending: a switched
// configuration replaces the pending set (a real no longer configured
// stops being pending); a failed Apply only adds to it.
func (t *Tables) takePending(pend map[uint32]pendingReal, switched bool) {
	if switched {
		t.pending = pend
	} else {
		maps.Copy(t.pending, pend)
	}
	if len(t.pending) > 0 {
		t.wake()
	}
}

// wake tells the resolver task to look at the pending reals.
func (t *Tables) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// settle waits, at most bound and without holding mu, until none of the
// reals in fresh is pending any more. It returns at once when no resolver
// task runs.
func (t *Tables) settle(ctx context.Context, fresh []uint32, bound time.Duration) {
	if len(fresh) == 0 || !t.resolving.Load() {
		return
	}
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		left := 0
		for _, id := range fresh {
			if _, ok := t.pending[id]; ok {
				left++
			}
		}
		published := t.published
		t.mu.Unlock()
		if left == 0 {
			return
		}
		select {
		case <-published:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// hop is a neighbour: a link and an address on it.
type hop struct {
	ifindex int
	ip      netip.Addr
}

type retry struct {
	at    time.Time
	every time.Duration
}

// RunResolver is the resolver task: it has the kernel resolve the next hops
// of the pending reals (n.Solicit), follows the neighbour table
// (n.Subscribe), and publishes each pending real whose next hop has become
// usable: one write of its entry in the reals map, with its MAC and, if it
// was unreachable, its configured weight. It returns when done is closed.
func (t *Tables) RunResolver(n Neighbours, done <-chan struct{}) {
	t.resolving.Store(true)
	defer t.resolving.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()

	var events <-chan NeighEvent
	subscribe := func() bool {
		ch := make(chan NeighEvent, 1024)
		if err := n.Subscribe(ch, done); err != nil {
			t.log.Warn("cannot follow the neighbour table; polling it", "err", err)
			return false
		}
		events = ch
		return true
	}
	resubscribe := time.NewTimer(time.Hour)
	resubscribe.Stop()
	if !subscribe() {
		resubscribe.Reset(5 * time.Second)
	}
	poll := time.NewTimer(time.Hour)
	defer poll.Stop()
	retries := map[hop]retry{}
	var waiting map[hop]bool
	for {
		select {
		case <-done:
			return
		case <-t.kick:
		case <-poll.C:
		case <-resubscribe.C:
			if !subscribe() {
				resubscribe.Reset(5 * time.Second)
				continue
			}
			// Changes may have been missed meanwhile: look again.
		case ev, ok := <-events:
			if !ok {
				events = nil
				t.log.Debug("neighbour events stopped; subscribing again")
				resubscribe.Reset(time.Second)
				continue
			}
			if !ev.Usable || !waiting[hop{ev.Ifindex, ev.IP}] {
				continue
			}
			// Replies to one round of requests come together: take them
			// in one pass.
			gather := time.NewTimer(2 * time.Millisecond)
		gathering:
			for {
				select {
				case _, ok := <-events:
					if !ok {
						events = nil
						resubscribe.Reset(time.Second)
						break gathering
					}
				case <-gather.C:
					break gathering
				}
			}
			gather.Stop()
		}
		var next time.Duration
		waiting, next = t.resolvePass(ctx, n, retries, time.Now())
		poll.Reset(next)
	}
}

// resolvePass looks up every pending real, publishes those whose next hop
// is now usable, and asks the kernel again for the others when their
// retry is due. It returns the next hops still waiting, and when to look
// again at the latest.
func (t *Tables) resolvePass(ctx context.Context, n Neighbours, retries map[hop]retry, now time.Time) (map[hop]bool, time.Duration) {
	t.mu.Lock()
	pending := maps.Clone(t.pending)
	t.mu.Unlock()
	waiting := map[hop]bool{}
	if len(pending) == 0 {
		clear(retries)
		return waiting, time.Hour
	}

	res := resolverFor(t.res)
	found := map[uint32]L2{}
	for id, p := range pending {
		l2, err := res.Resolve(ctx, p.ri.addr)
		var unresolved *PendingError
		switch {
		case err == nil:
			found[id] = l2
		case errors.As(err, &unresolved):
			waiting[hop{unresolved.Path.Ifindex, unresolved.Next}] = true
		}
		// Anything else (no route): stays pending, looked at again below.
	}
	if len(found) > 0 {
		t.publish(ctx, pending, found)
	}

	for h := range retries {
		if !waiting[h] {
			delete(retries, h)
		}
	}
	next := resolveRetryMax
	for h := range waiting {
		r, asked := retries[h]
		if !asked || !now.Before(r.at) {
			if err := n.Solicit(h.ifindex, h.ip); err != nil {
				level := t.log.Debug
				if !asked {
					level = t.log.Warn
				}
				level("cannot ask the kernel to resolve a neighbour", "neighbour", h.ip, "ifindex", h.ifindex, "err", err)
			}
			every := resolveRetryFirst
			if asked {
				every = min(2*r.every, resolveRetryMax)
			}
			r = retry{at: now.Add(every), every: every}
			retries[h] = r
		}
		next = min(next, r.at.Sub(now))
	}
	return waiting, max(next, 10*time.Millisecond)
}

// publish writes the paths found for reals that are still pending as they
// were when looked up, one write of the reals map per real, then has the
// schedulers take the reals that became usable.
func (t *Tables) publish(ctx context.Context, looked map[uint32]pendingReal, found map[uint32]L2) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		close(t.published)
		t.published = make(chan struct{})
	}()
	retable, trees := false, false
	for id, l2 := range found {
		p, ok := t.pending[id]
		if !ok || p != looked[id] {
			continue // an Apply was here since
		}
		delete(t.pending, id)
		v, ok := t.realVals[id]
		if !ok || t.realIDs[p.ri] != id {
			continue
		}
		nv := withL2(v, l2)
		if p.unusable {
			nv.Weight = uint32(p.weight)
			if nv.Weight > 0 {
				nv.LastWeight = nv.Weight
			}
		}
		if nv == v {
			continue
		}
		if err := t.set.Reals.Put(id, nv); err != nil {
			t.log.Warn("cannot publish a real server's path", "real", p.ri.addr, "err", err)
			t.pending[id] = p
			continue
		}
		t.realVals[id] = nv
		t.lastWeight[id] = int(nv.LastWeight)
		if p.unusable {
			t.log.Info("real server reachable", "real", p.ri.addr, "mac", l2.DstMAC.String(), "weight", nv.Weight)
		} else if nv.Dmac != v.Dmac {
			t.log.Info("real server's path changed", "real", p.ri.addr, "mac", l2.DstMAC.String(), "ifindex", l2.Ifindex, "mtu", l2.MTU)
		}
		if nv.Weight != v.Weight {
			if p.tree {
				trees = true
			} else {
				retable = true
			}
		}
	}
	switch {
	case retable:
		// rr, wrr, sh, dh and mh read tables built from the weights:
		// rebuild them, as a reload of the same configuration would.
		pend := map[uint32]pendingReal{}
		switched := false
		if err := t.apply(ctx, t.state, resolverFor(t.res), pend, &switched); err != nil {
			t.log.Warn("rebuilding scheduler tables for reachable real servers", "err", err)
		}
		t.takePending(pend, switched)
	case trees:
		if _, err := t.set.Trees.Build(t.gen); err != nil {
			t.log.Warn("rebuilding scheduler trees", "err", err)
		}
	}
}
