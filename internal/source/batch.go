package source

import (
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// batch is the items of one rule that will share an archive.
type batch struct {
	rule   *config.Rule
	items  []Item
	bytes  int64
	limit  int64 // the bytes at which it closes (ramp)
	opened time.Time
	joined time.Time // when its last item came
	closed time.Time
}

// Slow start. Nothing crosses regions until an archive is staged whole (S3
// Replication copies objects, not streams), so the first archive of a
// burst sets when the transfer starts. A rule that has been idle, no batch
// closed within its MaxAge, closes its next batch at 1/rampStart of
// MaxBytes, and each batch after at twice the one before, up to MaxBytes:
// the first bytes are staged after an eighth of the wait, and a steady
// stream still gets full archives from its fourth on. The cost is a few
// smaller archives per burst, a few requests each.
const rampStart = 8

// burstGap is how many of a batch's mean gaps between objects must pass
// with none before it counts as the end of a burst. A trickle (an object
// every few seconds) pauses between objects as long as Idle or longer:
// closing its batches at each pause would send archives of an object or
// two, each paying its requests and compressing without its neighbours,
// where MaxAge would have gathered them. A burst's objects come
// milliseconds apart, so a second without one is hundreds of its gaps.
const burstGap = 10

// ended reports whether b's burst is over at now: nothing has joined for
// idle, nor for burstGap of its mean gaps. A lone object says nothing of
// the rate and waits for MaxAge.
func (b *batch) ended(now time.Time, idle time.Duration) bool {
	n := len(b.items)
	if n < 2 {
		return false
	}
	gap := b.joined.Sub(b.opened) / time.Duration(n-1)
	return now.Sub(b.joined) >= max(idle, burstGap*gap)
}

// ramp is where a rule's batch size stands in its slow start.
type ramp struct {
	limit  int64     // the last batch's
	closed time.Time // when it closed
}

// next is the byte size at which a batch of r opened at now closes.
func (rp ramp) next(r *config.Rule, now time.Time) int64 {
	full := int64(r.Batch.MaxBytes)
	if rp.closed.IsZero() || now.Sub(rp.closed) > r.Batch.MaxAge.D() {
		return max(full/rampStart, 1)
	}
	return min(full, 2*rp.limit)
}

// batchLoop groups items per rule and hands a batch to the builders when it
// reaches the rule's object count or byte size (smaller after idle: slow
// start), or gets old enough. An object larger than the byte limit travels
// alone. When items closes (the worker is draining) every open batch is
// flushed at once.
//
// A batch nothing has joined for the rule's Idle, and for burstGap times
// the mean gap between its objects, is the end of a burst: waiting out
// MaxAge (30 s by default) for objects that are not coming would hold its
// objects back from the transfer for nothing. It closes as soon as a
// builder is free to take it; while both are busy it keeps filling, since
// closing it would only queue a smaller archive.
func (w *Worker) batchLoop(items <-chan Item, out chan<- *batch) {
	defer close(out)
	open := map[*config.Rule]*batch{}
	ramps := map[*config.Rule]ramp{} // a rule never batched: the zero ramp, cold
	// handedOver forgets b, a builder's now, and counts what closed it.
	handedOver := func(b *batch, by string) {
		// An oversized object travels in a batch of its own that was never
		// open: the rule's open batch must stay open, not be forgotten.
		if open[b.rule] == b {
			delete(open, b.rule)
		}
		if b.limit > 0 {
			ramps[b.rule] = ramp{limit: b.limit, closed: b.closed}
		}
		w.Metrics.Batches.WithLabelValues(b.rule.ID, by).Inc()
	}
	flush := func(b *batch, by string) {
		b.closed = w.Clock.Now()
		// Builders run on the work context; a draining worker still sends.
		out <- b
		handedOver(b, by)
	}
	// offer hands b over only if a builder is waiting for it.
	offer := func(b *batch) {
		b.closed = w.Clock.Now()
		select {
		case out <- b:
			handedOver(b, "idle")
		default:
		}
	}
	tick := w.Clock.NewTicker(config.BatchTick)
	defer tick.Stop()
	for {
		select {
		case it, ok := <-items:
			if !ok {
				for _, b := range open {
					flush(b, "drain")
				}
				return
			}
			r := it.Rule
			size := max(it.Ref.Size, 0)
			now := w.Clock.Now()
			if size >= int64(r.Batch.MaxBytes) {
				flush(&batch{rule: r, items: []Item{it}, bytes: size, opened: now}, "alone")
				continue
			}
			b := open[r]
			if b != nil && b.bytes+size > b.limit {
				flush(b, "bytes")
				b = nil
			}
			if b == nil {
				b = &batch{rule: r, opened: now, limit: ramps[r].next(r, now)}
				open[r] = b
			}
			b.items = append(b.items, it)
			b.bytes += size
			b.joined = now
			switch {
			case len(b.items) >= r.Batch.MaxObjects:
				flush(b, "objects")
			case b.bytes >= b.limit:
				flush(b, "bytes")
			}
		case <-tick.Chan():
			now := w.Clock.Now()
			for _, b := range open {
				switch idle := b.rule.Batch.Idle.D(); {
				case now.Sub(b.opened) >= b.rule.Batch.MaxAge.D():
					flush(b, "age")
				case idle > 0 && b.ended(now, idle):
					offer(b)
				}
			}
		}
	}
}
