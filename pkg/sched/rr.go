package sched

// The data plane cannot keep IPVS's rr/wrr cursor (a pointer into a list,
// updated under a lock), so both schedulers become a sequence of dest
// indices that the BPF program walks with one atomic counter per service:
// dest = seq[counter % len(seq)]. An overloaded entry is skipped by taking
// the next counter value (NextInSequence). When the pool changes the daemon
// writes the new sequence and resets the counter to 0.

// RRSequence is the order ip_vs_rr_schedule hands out connections in a
// steady pool: every dest with weight > 0 once, in list order.
//
// IPVS keeps its cursor on the last chosen dest across pool changes (and
// steps back one entry when that dest is deleted, ip_vs_rr_del_dest); the
// model restarts at the first dest instead. That is the only difference.
func RRSequence(dests []Dest) []int {
	seq := make([]int, 0, len(dests))
	for i, d := range dests {
		if d.Weight > 0 {
			seq = append(seq, i)
		}
	}
	return seq
}

// wrrParams are ip_vs_wrr_gcd_weight and the mark->mw computation of
// ip_vs_wrr_init_svc: di is the gcd of the positive weights (1 when there
// are none) and mw the maximum weight lowered by di-1, so that the last pass
// runs with cw = 1 and still catches a weight that dropped below di.
func wrrParams(dests []Dest) (di, mw int) {
	maxW := 0
	for _, d := range dests {
		if d.Weight > 0 {
			di = gcd(d.Weight, di)
		}
		maxW = max(maxW, d.Weight)
	}
	if di == 0 {
		di = 1
	}
	return di, maxW - (di - 1)
}

// WRRSequenceLen is len(WRRSequence(dests)), sum(weight)/gcd(weights),
// without building it: weights up to 65535 over many reals make sequences
// too long for a BPF map, and the daemon must check before building.
func WRRSequenceLen(dests []Dest) int {
	di, _ := wrrParams(dests)
	n := 0
	for _, d := range dests {
		if d.Weight > 0 {
			n += d.Weight / di
		}
	}
	return n
}

// WRRSequence is one period of ip_vs_wrr_schedule in a steady pool. The
// scheduler makes passes over the list with a current weight cw starting at
// mw and decreasing by di down to 1, choosing in each pass every dest whose
// weight is >= cw; weights 4:3:2 (A, B, C) give A A B A B C A B C. Each dest
// appears weight/gcd times, so the period is sum(weight)/gcd.
//
// On a pool change ip_vs_wrr_dest_changed moves the cursor to the list head
// but keeps cw (rounded to a pass boundary), so IPVS resumes mid-period; the
// model restarts the period at cw = mw.
func WRRSequence(dests []Dest) []int {
	di, mw := wrrParams(dests)
	seq := make([]int, 0, WRRSequenceLen(dests))
	for cw := mw; cw > 0; cw -= di {
		for i, d := range dests {
			if d.Weight >= cw {
				seq = append(seq, i)
			}
		}
	}
	return seq
}

// NextInSequence is the per-connection step of rr and wrr: starting at
// counter it takes seq entries until one is usable (weight > 0, not
// overloaded), as ip_vs_rr_schedule and ip_vs_wrr_schedule skip
// IP_VS_DEST_F_OVERLOAD dests. It returns the dest index (-1 when all
// len(seq) candidates are unusable, IPVS's "no destination available") and
// the counter value after the attempts: each candidate looked at costs one
// increment, which is what a BPF loop of atomic fetch-and-adds does.
func NextInSequence(seq []int, dests []Dest, counter uint64) (dest int, next uint64) {
	n := uint64(len(seq))
	for i := uint64(0); i < n; i++ {
		d := seq[(counter+i)%n]
		if d >= 0 && d < len(dests) && dests[d].usable() {
			return d, counter + i + 1
		}
	}
	return -1, counter + n
}
