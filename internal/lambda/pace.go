package lambda

import (
	"context"
	"sync"
	"time"
)

// pace is how fast this execution environment got through work so far, so
// an invocation starts only what it can finish before its cut. It is kept
// across warm invocations.
//
// A unit's time is fitted as perItem·items + perMiB·MiB (least squares over
// the units seen, the newest weighing most): charging a unit's whole time
// to its bytes, or to its items, made a small archive's round trips read
// as a rate per MiB no large one could meet, and a warm environment never
// started large work again until the messages went to the DLQ.
type pace struct {
	mu sync.Mutex
	// Weighted sums over units of items², items·MiB, MiB², items·s and
	// MiB·s: the normal equations of the fit.
	ii, im, mm, is, ms float64
	seen               bool
}

// paceMemory is the weight of what was known when a unit comes: the
// environment's speed changes little, the mix of work does.
const paceMemory = 0.8

// observe learns from one unit of work of bytes and items that took d.
func (p *pace) observe(bytes int64, items int, d time.Duration) {
	if d <= 0 || items == 0 {
		return
	}
	n, b, s := float64(items), float64(bytes)/(1<<20), d.Seconds()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ii = p.ii*paceMemory + n*n
	p.im = p.im*paceMemory + n*b
	p.mm = p.mm*paceMemory + b*b
	p.is = p.is*paceMemory + n*s
	p.ms = p.ms*paceMemory + b*s
	p.seen = true
}

// measured reports whether the pace has seen any work finish: until it
// has, estimate says 0 for everything (and after, 0 for work of no bytes
// when only bytes were measured), which is no finding that it fits.
func (p *pace) measured() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// estimate is how long work of bytes and items should take, with half
// again for safety. Zero until something was observed: the first unit of
// work starts, and the cut stops it if it must.
//
// While the units seen cannot tell the two costs apart (all of one shape,
// or a fit that makes one negative), it takes the smaller of the two
// one-cost answers: work started that should not have been is cut and
// tried again, which costs no more receives than work left out, while an
// estimate too high leaves it out every time.
func (p *pace) estimate(bytes int64, items int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen {
		return 0
	}
	n, b := float64(items), float64(bytes)/(1<<20)
	var e float64
	perItem, perMiB, ok := p.fit()
	switch {
	case ok:
		e = perItem*n + perMiB*b
	case p.mm == 0: // only units without bytes
		e = p.is / p.ii * n
	default:
		e = min(p.is/p.ii*n, p.ms/p.mm*b)
	}
	// Bounded: a rate fitted on tiny units can extrapolate to anything.
	return time.Duration(min(1.5*e, maxEstimate.Seconds()) * float64(time.Second))
}

// maxEstimate is more than any invocation lasts (Lambda's maximum is 15
// minutes).
const maxEstimate = 24 * time.Hour

// begins decides whether a unit of work starts: an invocation's first
// always does (the cut stops it if it must), so that an estimate wrong on
// the high side, fitted on small units, cannot keep larger work out of
// every invocation until it reaches the DLQ; the others when the pace says
// they end before the cut at.
func begins(first bool, now, at time.Time, est time.Duration) bool {
	return first || fits(now, at, est)
}

// fit solves the normal equations; ok is false when they have no single
// answer with both costs at least zero.
func (p *pace) fit() (perItem, perMiB float64, ok bool) {
	det := p.ii*p.mm - p.im*p.im
	if det <= 1e-9*p.ii*p.mm {
		return 0, 0, false
	}
	perItem = (p.is*p.mm - p.ms*p.im) / det
	perMiB = (p.ms*p.ii - p.is*p.im) / det
	return perItem, perMiB, perItem >= 0 && perMiB >= 0
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
