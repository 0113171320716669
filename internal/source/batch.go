package source

import (
	"context"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// batch is the items of one rule that will share an archive.
type batch struct {
	rule   *config.Rule
	items  []item
	bytes  int64
	opened time.Time
	closed time.Time
}

// batchLoop groups items per rule and hands a batch to the builders when it
// reaches the rule's object count or byte size, or gets old enough. An object
// larger than the byte limit travels alone. When items closes (the worker is
// draining) every open batch is flushed at once.
func (w *Worker) batchLoop(ctx context.Context, items <-chan item, out chan<- *batch) {
	defer close(out)
	open := map[*config.Rule]*batch{}
	flush := func(b *batch) {
		// An oversized object travels in a batch of its own that was never
		// open: the rule's open batch must stay open, not be forgotten.
		if open[b.rule] == b {
			delete(open, b.rule)
		}
		b.closed = w.Now()
		// Builders run on the work context; a draining worker still sends.
		out <- b
	}
	tick := time.NewTicker(250 * time.Millisecond)
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
			r := it.rule
			size := max(it.ref.Size, 0)
			if size >= int64(r.Batch.MaxBytes) {
				flush(&batch{rule: r, items: []item{it}, bytes: size, opened: w.Now()})
				continue
			}
			b := open[r]
			if b != nil && b.bytes+size > int64(r.Batch.MaxBytes) {
				flush(b)
				b = nil
			}
			if b == nil {
				b = &batch{rule: r, opened: w.Now()}
				open[r] = b
			}
			b.items = append(b.items, it)
			b.bytes += size
			if len(b.items) >= r.Batch.MaxObjects {
				flush(b)
			}
		case <-tick.C:
			now := w.Now()
			for _, b := range open {
				if now.Sub(b.opened) >= b.rule.Batch.MaxAge.D() || ctx.Err() != nil {
					flush(b)
				}
			}
		}
	}
}
