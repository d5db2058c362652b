package health

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
)

// fileProber is FILE_CHECK, with keepalived 2.2's track_file rules
// (trackers/track_file.c, check/check_file.c): the file holds an integer
// (strtol base 0: "12", "0x1f", "-3"; unreadable or empty reads 0).
//   - weight 0: 0 is up and anything else down; reverse swaps them.
//   - weight w: the value times w (times -1 with reverse) is added to the
//     real server's configured weight; a product at or below -2^31
//     (keepalived's IPVS_WEIGHT_FAULT) is down.
//
// keepalived applies the weight whether or not "dynamic" is given (its
// parser has no such keyword, only its manual), so Dynamic changes
// nothing here. keepalived watches the file with inotify; here it is
// read on each check.
type fileProber struct {
	path    string
	weight  int64
	reverse bool
	// last is the value last read: keepalived keeps the old state when
	// the file holds a number out of range.
	last atomic.Int64
}

func newFileProber(c config.Checker, o ProbeOptions) (Prober, error) {
	f := c.FileCheck
	if f == nil || f.TrackFile == "" {
		return nil, fmt.Errorf("%s: no track_file", c.Type)
	}
	path := f.TrackFile
	if p, ok := o.TrackFiles[f.TrackFile]; ok {
		path = p
	} else if !strings.Contains(path, "/") {
		return nil, fmt.Errorf("%s: track_file %q is not defined", c.Type, f.TrackFile)
	}
	return &fileProber{path: path, weight: int64(f.Weight), reverse: f.Reverse}, nil
}

const ipvsWeightFault = math.MinInt32 // keepalived's IPVS_WEIGHT_FAULT

func (p *fileProber) Probe(context.Context) Result {
	start := time.Now()
	v, ok := readTrackFile(p.path)
	if ok {
		p.last.Store(v)
	} else {
		v = p.last.Load()
	}
	note := "value " + strconv.FormatInt(v, 10)
	if p.weight == 0 {
		if (v != 0) != p.reverse {
			return failed(start, note)
		}
		return passed(start, note)
	}
	mult := int64(1)
	if p.reverse {
		mult = -1
	}
	delta := v * p.weight * mult // |v| <= 2^31, |weight| < 2^31: no overflow
	if delta <= ipvsWeightFault {
		return failed(start, note)
	}
	r := passed(start, note)
	r.Weight, r.Relative = int(max(min(delta, math.MaxInt32), math.MinInt32)), true
	return r
}

// readTrackFile reads the file as keepalived's process_track_file does:
// at most 127 bytes, strtol with base 0. ok is false for a number outside
// [-2^31, 2^31] (keepalived ignores such a value).
func readTrackFile(path string) (v int64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, true
	}
	defer f.Close()
	buf := make([]byte, 127)
	n, _ := f.Read(buf)
	v, ok = strtol(string(buf[:n]))
	if !ok || v < math.MinInt32 || v > math.MaxInt32+1 {
		return 0, false
	}
	return v, true
}

// strtol parses the leading integer of s like C's strtol(s, NULL, 0): an
// empty or non-numeric start is 0; ok is false on overflow.
func strtol(s string) (int64, bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isDigit(s[2], 16):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base = 8
	}
	end := 0
	for end < len(s) && isDigit(s[end], base) {
		end++
	}
	if end == 0 {
		return 0, true
	}
	u, err := strconv.ParseInt(s[:end], base, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		u = -u
	}
	return u, true
}

func isDigit(c byte, base int) bool {
	var v int
	switch {
	case c >= '0' && c <= '9':
		v = int(c - '0')
	case c >= 'a' && c <= 'f':
		v = int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		v = int(c-'A') + 10
	default:
		return false
	}
	return v < base
}
