package sched

import "testing"

// load sets (weight, active, inactive) per dest; o marks overloaded.
type load struct {
	w, act, inact int
	o             bool
}

func loaded(ls ...load) []Dest {
	ds := make([]Dest, len(ls))
	for i, l := range ls {
		ds[i] = rs(i+1, l.w)
		ds[i].Active, ds[i].Inactive, ds[i].Overloaded = l.act, l.inact, l.o
	}
	return ds
}

func TestPickers(t *testing.T) {
	tests := []struct {
		name  string
		pick  func([]Dest) int
		dests []Dest
		want  int
	}{
		{"lc least overhead", PickLC, loaded(load{1, 2, 0, false}, load{1, 1, 0, false}, load{1, 1, 5, false}), 1},
		{"lc active costs 256 inactive", PickLC, loaded(load{1, 1, 0, false}, load{1, 0, 255, false}), 1},
		{"lc 256 inactive tie with one active, first wins", PickLC, loaded(load{1, 1, 0, false}, load{1, 0, 256, false}), 0},
		{"lc ignores weight", PickLC, loaded(load{100, 2, 0, false}, load{1, 1, 0, false}), 1},
		{"lc skips quiesced", PickLC, loaded(load{0, 0, 0, false}, load{1, 9, 0, false}), 1},
		{"lc skips overloaded", PickLC, loaded(load{1, 0, 0, true}, load{1, 9, 0, false}), 1},
		{"lc tie first", PickLC, loaded(load{1, 1, 0, false}, load{1, 1, 0, false}), 0},
		{"lc none", PickLC, loaded(load{0, 0, 0, false}, load{1, 0, 0, true}), -1},

		{"wlc normalised by weight", PickWLC, loaded(load{1, 1, 0, false}, load{3, 2, 0, false}), 1},
		{"wlc 2/1 vs 4/2 tie first", PickWLC, loaded(load{1, 2, 0, false}, load{2, 4, 0, false}), 0},
		{"wlc inactive counts", PickWLC, loaded(load{1, 0, 10, false}, load{1, 0, 9, false}), 1},
		{"wlc quiesced never wins", PickWLC, loaded(load{1, 5, 0, false}, load{0, 0, 0, false}), 0},
		{"wlc quiesced first skipped", PickWLC, loaded(load{0, 0, 0, false}, load{2, 5, 0, false}, load{1, 2, 0, false}), 2},
		{"wlc overloaded skipped", PickWLC, loaded(load{1, 5, 0, false}, load{1, 0, 0, true}), 0},
		{"wlc none", PickWLC, loaded(load{0, 0, 0, false}), -1},

		// sed: (active+1)/weight; inactive ignored.
		{"sed", PickSED, loaded(load{1, 0, 0, false}, load{3, 1, 0, false}), 1},     // 1/1 vs 2/3
		{"sed tie", PickSED, loaded(load{1, 1, 0, false}, load{2, 3, 0, false}), 0}, // 2/1 vs 4/2
		{"sed ignores inactive", PickSED, loaded(load{1, 0, 100, false}, load{1, 1, 0, false}), 0},
		{"wlc would differ", PickWLC, loaded(load{1, 0, 0, false}, load{3, 1, 0, false}), 0}, // 0 vs 256/3

		{"nq idle first in list order", PickNQ, loaded(load{5, 3, 0, false}, load{1, 0, 50, false}, load{9, 0, 0, false}), 1},
		{"nq idle but quiesced skipped", PickNQ, loaded(load{0, 0, 0, false}, load{1, 4, 0, false}, load{2, 4, 0, false}), 2},
		{"nq idle but overloaded skipped", PickNQ, loaded(load{1, 0, 0, true}, load{1, 4, 0, false}), 1},
		{"nq sed when none idle", PickNQ, loaded(load{1, 1, 0, false}, load{3, 2, 0, false}), 1}, // 2/1 vs 3/3
		{"nq none", PickNQ, loaded(load{0, 0, 0, false}), -1},

		{"fo highest weight", PickFO, loaded(load{1, 0, 0, false}, load{3, 9, 0, false}, load{3, 0, 0, false}), 1},
		{"fo skips overloaded", PickFO, loaded(load{1, 0, 0, false}, load{3, 0, 0, true}), 0},
		{"fo none", PickFO, loaded(load{0, 0, 0, false}), -1},

		{"ovf highest weight under its weight", PickOVF, loaded(load{2, 0, 0, false}, load{5, 5, 0, false}), 1},
		{"ovf overflows", PickOVF, loaded(load{2, 0, 0, false}, load{5, 6, 0, false}), 0},
		{"ovf none", PickOVF, loaded(load{1, 2, 0, false}), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pick(tt.dests); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPickTWOS(t *testing.T) {
	ds := loaded(load{1, 0, 0, false}, load{2, 0, 0, false}, load{0, 0, 0, false}, load{1, 0, 0, false})
	// total = 1+2+1 = 4, draws are r % 5. A draw of 0 or 1 lands on r1
	// (1-1 <= 0), 2-3 on r2, 4 on r4; the quiesced r3 takes none.
	tests := []struct {
		r1, r2 uint32
		want   int
	}{
		{0, 0, 0},
		{2, 3, 1},
		{4, 4, 3},
		{5, 9, 0}, // 5%5=0, 9%5=4: equal load, the first choice stays
	}
	for _, tt := range tests {
		if got := PickTWOS(ds, tt.r1, tt.r2); got != tt.want {
			t.Errorf("PickTWOS(r1=%d, r2=%d) = %d, want %d", tt.r1, tt.r2, got, tt.want)
		}
	}
	// The second choice wins when strictly less loaded per weight.
	ds[0].Active = 1
	if got := PickTWOS(ds, 0, 4); got != 3 {
		t.Errorf("less loaded second choice: got %d, want 3", got)
	}
	if got := PickTWOS(loaded(load{0, 0, 0, false}), 1, 2); got != -1 {
		t.Errorf("no usable dest: got %d", got)
	}
}
