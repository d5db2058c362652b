package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xlbd/xlbd/pkg/config"
	"github.com/xlbd/xlbd/pkg/script"
)

// miscProber is MISC_CHECK: it runs misc_path through the script runner.
type miscProber struct {
	run     *script.Runner
	script  config.Script
	dynamic bool
	timeout time.Duration
}

func newMiscProber(c config.Checker, o ProbeOptions) (Prober, error) {
	if c.Misc == nil || c.Misc.Path.IsZero() {
		return nil, fmt.Errorf("%s: no misc_path", c.Type)
	}
	p := &miscProber{run: o.Scripts, script: c.Misc.Path, dynamic: c.Misc.Dynamic, timeout: c.Misc.Timeout}
	if p.run == nil {
		p.run = &script.Runner{Log: o.Log}
	}
	if p.timeout <= 0 {
		p.timeout = c.DelayLoop // keepalived's misc_timeout default
	}
	if p.timeout <= 0 {
		p.timeout = config.DefaultConnectTimeout
	}
	return p, nil
}

// Probe runs the script once. keepalived 2.2 (check_misc.c): exit 0 is
// up, leaving the weight alone; with misc_dynamic 2-255 is up with the
// weight set to status-2; anything else, a signal or the timeout is down.
func (p *miscProber) Probe(ctx context.Context) Result {
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	res, err := p.run.Run(ctx, p.script)
	if err != nil {
		return failed(start, scriptRefusal(err))
	}
	switch code := res.ExitCode; {
	case res.TimedOut || res.Signal != 0:
		return failed(start, res.String())
	case code == 0:
		return passed(start, "")
	case p.dynamic && code >= 2 && code <= 255:
		r := passed(start, res.String())
		r.Weight = code - 2
		return r
	}
	return failed(start, res.String())
}

// scriptRefusal names why a script could not run, in a few words.
func scriptRefusal(err error) string {
	for _, e := range []error{script.ErrInsecure, script.ErrNotFound, script.ErrNotExecutable, script.ErrUser} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "script: " + reason(err)
}
