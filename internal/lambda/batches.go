package lambda

import (
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/source"
)

// batch is items of one rule that will share an archive.
type batch struct {
	rule  *config.Rule
	items []source.Item
	bytes int64
	first bool // the invocation's first: it starts whatever the pace says
}

// batches groups items per rule, in the order they came, into the batches
// the rule's limits allow, as the Fargate batcher (source/batch.go) closes
// them by count and bytes: at most batch.maxObjects items and
// batch.maxBytes bytes, an object over maxBytes alone. Age needs no limit
// here: the mapping's batching window already bounded it.
func batches(items []source.Item) []*batch {
	var out []*batch
	open := map[*config.Rule]*batch{}
	for _, it := range items {
		r := it.Rule
		size := max(it.Ref.Size, 0)
		if size >= int64(r.Batch.MaxBytes) {
			out = append(out, &batch{rule: r, items: []source.Item{it}, bytes: size})
			continue
		}
		b := open[r]
		if b != nil && (b.bytes+size > int64(r.Batch.MaxBytes) || len(b.items) >= r.Batch.MaxObjects) {
			b = nil
		}
		if b == nil {
			b = &batch{rule: r}
			open[r] = b
			out = append(out, b)
		}
		b.items = append(b.items, it)
		b.bytes += size
	}
	return out
}
