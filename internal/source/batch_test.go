package source

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
)

// clock is a settable Now for the batcher.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// batcher runs batchLoop for rules and returns its input and output.
func batcher(t *testing.T, ctx context.Context, c *clock) (chan<- item, <-chan *batch) {
	t.Helper()
	w := &Worker{Deps: Deps{Now: c.Now}}
	in := make(chan item)
	out := make(chan *batch)
	done := make(chan struct{})
	go func() {
		w.batchLoop(ctx, in, out)
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("batchLoop did not return")
		}
	})
	return in, out
}

func rule(id string, objects, bytes int, age time.Duration) *config.Rule {
	return &config.Rule{ID: id, Batch: config.Batch{MaxObjects: objects, MaxBytes: config.ByteSize(bytes), MaxAge: config.Duration(age)}}
}

func obj(r *config.Rule, key string, size int64) item {
	return item{ref: events.ObjectRef{Bucket: "b", Key: key, Size: size}, rule: r}
}

// next waits for one batch; the batcher's ticker runs every 250 ms.
func next(t *testing.T, out <-chan *batch) *batch {
	t.Helper()
	select {
	case b, ok := <-out:
		if !ok {
			t.Fatal("batches closed")
		}
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
		return nil
	}
}

// none checks that no batch is handed over for a few ticks.
func none(t *testing.T, out <-chan *batch) {
	t.Helper()
	select {
	case b := <-out:
		t.Fatalf("unexpected batch of %d items (%s)", len(b.items), keys(b))
	case <-time.After(600 * time.Millisecond):
	}
}

func keys(b *batch) []string {
	var k []string
	for _, it := range b.items {
		k = append(k, it.ref.Key)
	}
	return k
}

func expect(t *testing.T, b *batch, r *config.Rule, want ...string) {
	t.Helper()
	got := keys(b)
	if b.rule != r || len(got) != len(want) {
		t.Fatalf("batch of rule %s holds %v, want rule %s with %v", b.rule.ID, got, r.ID, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("batch holds %v, want %v", got, want)
		}
	}
}

func TestBatchByCountBytesAndAge(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	in, out := batcher(t, context.Background(), c)
	byCount := rule("count", 3, 1<<20, time.Hour)
	byBytes := rule("bytes", 100, 10, time.Hour)

	for _, k := range []string{"a", "b", "c"} {
		in <- obj(byCount, k, 1)
	}
	expect(t, next(t, out), byCount, "a", "b", "c")

	in <- obj(byBytes, "x", 4)
	in <- obj(byBytes, "y", 4)
	none(t, out)
	in <- obj(byBytes, "z", 4) // 12 > 10: the open batch goes first
	expect(t, next(t, out), byBytes, "x", "y")
	in <- obj(byBytes, "huge", 10) // >= MaxBytes: alone, the open batch stays
	expect(t, next(t, out), byBytes, "huge")
	none(t, out)

	in <- obj(byCount, "d", 1)
	none(t, out) // and by now "d" is in its batch, opened before the clock moves
	c.advance(time.Hour)
	// Both open batches are now MaxAge old; either may come first.
	got := map[string][]string{}
	for range 2 {
		b := next(t, out)
		got[b.rule.ID] = keys(b)
	}
	if len(got["bytes"]) != 1 || got["bytes"][0] != "z" || len(got["count"]) != 1 || got["count"][0] != "d" {
		t.Fatalf("aged batches %v, want bytes:[z] count:[d]", got)
	}
	close(in)
	if b, ok := <-out; ok {
		t.Fatalf("batch of %v after close, want none", keys(b))
	}
}

// Draining: a cancelled context closes open batches at the next tick, and
// closing the input flushes what is left before the output closes.
func TestBatchFlushesWhenDraining(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	ctx, cancel := context.WithCancel(context.Background())
	in, out := batcher(t, ctx, c)
	r := rule("r", 100, 1<<20, time.Hour)
	in <- obj(r, "a", 1)
	in <- obj(r, "b", 1)
	none(t, out)
	cancel()
	expect(t, next(t, out), r, "a", "b")

	in <- obj(r, "c", 1)
	close(in)
	expect(t, next(t, out), r, "c")
	if _, ok := <-out; ok {
		t.Fatal("batches not closed after the input closed")
	}
}
