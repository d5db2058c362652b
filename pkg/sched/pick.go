package sched

// The pickers below are the schedule callbacks of the connection-counting
// schedulers. Each is one pass over the list in order, so ties go to the
// dest nearest the head of the list, and each returns -1 where IPVS returns
// NULL ("no destination available"). Load comparisons are cross-multiplied,
// as in the kernel (no division): h1/w1 > h2/w2 is h1*w2 > h2*w1 for
// positive weights.

// PickLC is ip_vs_lc_schedule: the least ip_vs_dest_conn_overhead among
// dests that are neither quiesced (weight 0) nor overloaded; weights do not
// scale the load.
func PickLC(dests []Dest) int {
	least, loh := -1, 0
	for i, d := range dests {
		if d.Overloaded || d.Weight == 0 {
			continue
		}
		if doh := d.Overhead(); least < 0 || doh < loh {
			least, loh = i, doh
		}
	}
	return least
}

// PickWLC is ip_vs_wlc_schedule, also __ip_vs_lblc_schedule and
// __ip_vs_lblcr_schedule: the least overhead/weight. The first dest with
// weight > 0 that is not overloaded seeds the search; later ones only need
// to be not overloaded, a weight of 0 can never compare lower.
func PickWLC(dests []Dest) int {
	return pickWeighted(dests, Dest.Overhead)
}

// sedOverhead is ip_vs_sed_dest_overhead (and ip_vs_nq_dest_overhead):
// active connections plus the one being scheduled; inactive ones are not
// counted.
func sedOverhead(d Dest) int { return d.Active + 1 }

// PickSED is ip_vs_sed_schedule: the least (active+1)/weight.
func PickSED(dests []Dest) int {
	return pickWeighted(dests, sedOverhead)
}

func pickWeighted(dests []Dest, overhead func(Dest) int) int {
	least := -1
	var loh int64
	for i, d := range dests {
		if least < 0 {
			if d.usable() {
				least, loh = i, int64(overhead(d))
			}
			continue
		}
		if d.Overloaded {
			continue
		}
		doh := int64(overhead(d))
		if loh*int64(d.Weight) > doh*int64(dests[least].Weight) {
			least, loh = i, doh
		}
	}
	return least
}

// PickNQ is ip_vs_nq_schedule: the first idle dest (no active
// connections) in list order if there is one, else as PickSED.
func PickNQ(dests []Dest) int {
	least := -1
	var loh int64
	for i, d := range dests {
		if !d.usable() {
			continue
		}
		if d.Active == 0 {
			return i
		}
		doh := int64(sedOverhead(d))
		if least < 0 || loh*int64(d.Weight) > doh*int64(dests[least].Weight) {
			least, loh = i, doh
		}
	}
	return least
}

// PickFO is ip_vs_fo_schedule (weighted failover): the highest weight among
// dests that are not overloaded, the first one on ties.
func PickFO(dests []Dest) int {
	h, hw := -1, 0
	for i, d := range dests {
		if !d.Overloaded && d.Weight > hw {
			h, hw = i, d.Weight
		}
	}
	return h
}

// PickOVF is ip_vs_ovf_schedule (overflow): the highest weight among dests
// that are not overloaded and whose active connections do not exceed their
// weight, the first one on ties.
func PickOVF(dests []Dest) int {
	h, hw := -1, 0
	for i, d := range dests {
		if d.Overloaded || d.Active > d.Weight || d.Weight == 0 {
			continue
		}
		if h < 0 || d.Weight > hw {
			h, hw = i, d.Weight
		}
	}
	return h
}

// PickTWOS is ip_vs_twos_schedule (power of two choices) with its two
// prandom_u32() draws passed in as r1 and r2, so that a differential test can
// feed both sides the same numbers. Each draw selects a dest with
// probability proportional to weight (a draw of r % (sum+1) walks the list
// subtracting weights until <= 0); the second choice wins only when its
// overhead/weight is strictly lower. The products are 32-bit ints in the
// kernel and wrap the same way here.
func PickTWOS(dests []Dest, r1, r2 uint32) int {
	total, choice1 := int32(0), -1
	for i, d := range dests {
		if d.usable() {
			total += int32(d.Weight)
			choice1 = i
		}
	}
	if choice1 < 0 {
		return -1
	}
	total++
	rw1, rw2 := int32(r1%uint32(total)), int32(r2%uint32(total))
	choice2 := -1
	w1, w2 := int32(-1), int32(-1)
	var oh1, oh2 int32
	for i, d := range dests {
		if !d.usable() {
			continue
		}
		w := int32(d.Weight)
		rw1 -= w
		rw2 -= w
		if rw1 <= 0 && w1 == -1 {
			choice1, w1, oh1 = i, w, int32(d.Overhead())
		}
		if rw2 <= 0 && w2 == -1 {
			choice2, w2, oh2 = i, w, int32(d.Overhead())
		}
		if w1 != -1 && w2 != -1 {
			break
		}
	}
	if choice2 >= 0 && w2*oh1 > w1*oh2 {
		return choice2
	}
	return choice1
}

// lblcOverloaded is is_overloaded in ip_vs_lblc.c and ip_vs_lblcr.c (not
// IP_VS_DEST_F_OVERLOAD): the dest has more active connections than its
// weight while some dest of the service is below half its weight.
func lblcOverloaded(d Dest, dests []Dest) bool {
	if d.Active <= d.Weight {
		return false
	}
	for _, o := range dests {
		if o.Active*2 < o.Weight {
			return true
		}
	}
	return false
}
