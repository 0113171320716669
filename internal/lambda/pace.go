package lambda

import (
	"context"
	"sync"
	"time"
)

// pace is how fast this execution environment got through work so far, so
// an invocation starts only what it can finish before its cut. It is kept
// across warm invocations.
type pace struct {
	mu      sync.Mutex
	perByte time.Duration // smoothed, per MiB
	perItem time.Duration // smoothed, per object or archive
	seen    bool
}

// observe learns from one unit of work of bytes and items that took d.
func (p *pace) observe(bytes int64, items int, d time.Duration) {
	if d <= 0 || items == 0 {
		return
	}
	mib := max(float64(bytes)/(1<<20), 1.0/1024)
	byByte := time.Duration(float64(d) / mib)
	byItem := d / time.Duration(items)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen {
		p.perByte, p.perItem, p.seen = byByte, byItem, true
		return
	}
	// Half the weight to the newest: the environment's speed changes
	// little, the mix of work does.
	p.perByte = (p.perByte + byByte) / 2
	p.perItem = (p.perItem + byItem) / 2
}

// estimate is how long work of bytes and items should take: the larger of
// the two rates' answers, with half again for safety. Zero until something
// was observed: the first unit of work starts, and the cut stops it if it
// must.
func (p *pace) estimate(bytes int64, items int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen {
		return 0
	}
	e := max(time.Duration(float64(p.perByte)*float64(bytes)/(1<<20)), p.perItem*time.Duration(items))
	return e + e/2
}

// cut returns the context work runs in: cancelled margin before ctx's
// deadline (none without one), and that moment (zero without one).
func cut(ctx context.Context, margin time.Duration) (context.Context, context.CancelFunc, time.Time) {
	deadline, ok := ctx.Deadline()
	if !ok {
		c, cancel := context.WithCancel(ctx)
		return c, cancel, time.Time{}
	}
	at := deadline.Add(-margin)
	c, cancel := context.WithDeadline(ctx, at)
	return c, cancel, at
}

// fits reports whether work estimated to take est can start at now and
// end before the cut at (zero: no cut).
func fits(now, at time.Time, est time.Duration) bool {
	return at.IsZero() || now.Add(est).Before(at)
}
