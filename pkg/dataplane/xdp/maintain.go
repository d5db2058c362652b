package xdp

import (
	"context"
	"time"
)

// Periods of the maintenance task.
var (
	// retryPeriod: how often reals that only another Apply can make
	// reachable (no route, say) are tried again.
	retryPeriod = 2 * time.Second
	// refreshPeriod: how often the paths of reachable DR and TUN reals are
	// read again, so that a real replaced by another machine or a new
	// gateway is followed.
	refreshPeriod = 30 * time.Second
)

// maintain keeps the reals' layer-2 paths current until Close: work only
// the XDP data plane has, so it is the backend's own task rather than the
// daemon's.
func (b *Backend) maintain(retry, refresh time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.stopGC
		cancel()
	}()
	rt := time.NewTicker(retry)
	defer rt.Stop()
	ft := time.NewTicker(refresh)
	defer ft.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ft.C:
			if err := b.RefreshL2(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("refreshing real servers' paths", "err", err)
			}
		case <-rt.C:
			if err := b.reapply(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("re-resolving real servers", "err", err)
			}
		}
	}
}

// reapply applies the last state again when some of its reals lack a MAC
// that only an Apply can find. Holding applyMu, it never puts back a
// state older than one the daemon has applied since.
func (b *Backend) reapply(ctx context.Context) error {
	if len(b.Unresolved()) == 0 {
		return nil
	}
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	if b.last == nil {
		return nil
	}
	fresh, err := b.Tables.applyFresh(ctx, *b.last)
	b.Tables.settle(ctx, fresh, settleTime)
	return err
}
