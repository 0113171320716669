package source

import (
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// batchTick is how often open batches are checked for age.
const batchTick = 250 * time.Millisecond

// batch is the items of one rule that will share an archive.
type batch struct {
	rule   *config.Rule
	items  []Item
	bytes  int64
	opened time.Time
	closed time.Time
}

// batchLoop groups items per rule and hands a batch to the builders when it
// reaches the rule's object count or byte size, or gets old enough. An object
// larger than the byte limit travels alone. When items closes (the worker is
// draining) every open batch is flushed at once.
func (w *Worker) batchLoop(items <-chan Item, out chan<- *batch) {
	defer close(out)
	open := map[*config.Rule]*batch{}
	flush := func(b *batch) {
		// An oversized object travels in a batch of its own that was never
		// open: the rule's open batch must stay open, not be forgotten.
		if open[b.rule] == b {
			delete(open, b.rule)
		}
		b.closed = w.Clock.Now()
		// Builders run on the work context; a draining worker still sends.
		out <- b
	}
	tick := w.Clock.NewTicker(batchTick)
	defer tick.Stop()
	for {
		select {
		case it, ok := <-items:
			if !ok {
				for _, b := range open {
					flush(b)
				}
				return
			}
			r := it.Rule
			size := max(it.Ref.Size, 0)
			if size >= int64(r.Batch.MaxBytes) {
				flush(&batch{rule: r, items: []Item{it}, bytes: size, opened: w.Clock.Now()})
				continue
			}
			b := open[r]
			if b != nil && b.bytes+size > int64(r.Batch.MaxBytes) {
				flush(b)
				b = nil
			}
			if b == nil {
				b = &batch{rule: r, opened: w.Clock.Now()}
				open[r] = b
			}
			b.items = append(b.items, it)
			b.bytes += size
			if len(b.items) >= r.Batch.MaxObjects {
				flush(b)
			}
		case <-tick.Chan():
			now := w.Clock.Now()
			for _, b := range open {
				if now.Sub(b.opened) >= b.rule.Batch.MaxAge.D() {
					flush(b)
				}
			}
		}
	}
}
