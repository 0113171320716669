package source

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
)

// The batcher tests run in a synctest bubble: time is fake, so a test that
// waits an hour takes no time, and synctest.Wait says when the batcher has
// done all it will do, so "no batch" is checked without sleeping.

// batcher runs batchLoop and returns its input and output, and its
// metrics.
func batcher(t *testing.T) (chan<- Item, <-chan *batch, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	w := &Worker{Deps: Deps{Clock: clockwork.NewRealClock(), Metrics: m}}
	in := make(chan Item)
	out := make(chan *batch)
	done := make(chan struct{})
	go func() {
		w.batchLoop(in, out)
		close(done)
	}()
	t.Cleanup(func() { <-done })
	return in, out, m
}

// stopOnCleanup closes the batcher's input and drains its output when t
// ends. It runs before batcher's cleanup, so a failed check ends the test
// instead of leaving the batcher waiting.
func stopOnCleanup(t *testing.T, in chan<- Item, out <-chan *batch) {
	t.Cleanup(func() {
		close(in)
		for range out {
		}
	})
}

// closedBy checks how many batches of each rule each reason closed.
func closedBy(t *testing.T, m *Metrics, want map[[2]string]float64) {
	t.Helper()
	for k, n := range want {
		if got := testutil.ToFloat64(m.Batches.WithLabelValues(k[0], k[1])); got != n {
			t.Errorf("rule %s: %v batches closed by %s, want %v", k[0], got, k[1], n)
		}
	}
	if got := testutil.CollectAndCount(m.Batches); got != len(want) {
		t.Errorf("%d rule and reason pairs counted, want %d", got, len(want))
	}
}

func rule(id string, objects, bytes int, age time.Duration) *config.Rule {
	return &config.Rule{ID: id, Batch: config.Batch{MaxObjects: objects, MaxBytes: config.ByteSize(bytes), MaxAge: config.Duration(age)}}
}

func obj(r *config.Rule, key string, size int64) Item {
	return Item{Ref: events.ObjectRef{Bucket: "b", Key: key, Size: size}, Rule: r}
}

// next takes the batch the batcher has handed over.
func next(t *testing.T, out <-chan *batch) *batch {
	t.Helper()
	synctest.Wait()
	select {
	case b, ok := <-out:
		if !ok {
			t.Fatal("batches closed")
		}
		return b
	default:
		t.Fatal("no batch handed over")
		return nil
	}
}

// none checks that the batcher, having done all it can, holds its batches.
func none(t *testing.T, out <-chan *batch) {
	t.Helper()
	synctest.Wait()
	select {
	case b := <-out:
		t.Fatalf("unexpected batch of %d items (%s)", len(b.items), keys(b))
	default:
	}
}

func keys(b *batch) []string {
	var k []string
	for _, it := range b.items {
		k = append(k, it.Ref.Key)
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
	synctest.Test(t, func(t *testing.T) {
		in, out, m := batcher(t)
		byCount := rule("count", 3, 1<<20, time.Hour)
		byBytes := rule("bytes", 100, 10, time.Hour)

		for _, k := range []string{"a", "b", "c"} {
			in <- obj(byCount, k, 1)
		}
		expect(t, next(t, out), byCount, "a", "b", "c")

		// Slow start (TestBatchSlowStart): the idle rule's batches close at
		// 1, 2 and 4 bytes, then 8, then MaxBytes.
		for _, k := range []string{"w1", "w2", "w3"} {
			in <- obj(byBytes, k, 4)
			expect(t, next(t, out), byBytes, k)
		}
		in <- obj(byBytes, "v", 4)
		none(t, out)
		in <- obj(byBytes, "w", 4) // 8 bytes: full
		expect(t, next(t, out), byBytes, "v", "w")
		in <- obj(byBytes, "x", 4)
		in <- obj(byBytes, "y", 4)
		none(t, out)
		in <- obj(byBytes, "z", 4) // 12 > 10: the open batch goes first
		expect(t, next(t, out), byBytes, "x", "y")
		in <- obj(byBytes, "huge", 10) // >= MaxBytes: alone, the open batch stays
		expect(t, next(t, out), byBytes, "huge")
		none(t, out)

		in <- obj(byCount, "d", 1)
		time.Sleep(time.Hour - time.Second)
		none(t, out) // not yet MaxAge old
		time.Sleep(time.Second)
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
		closedBy(t, m, map[[2]string]float64{{"count", "objects"}: 1, {"count", "age"}: 1,
			{"bytes", "bytes"}: 5, {"bytes", "alone"}: 1, {"bytes", "age"}: 1})
	})
}

// Slow start: a rule idle for longer than its MaxAge closes its next batch
// at an eighth of MaxBytes, and each following one at twice the last, up to
// MaxBytes; a pause within MaxAge keeps the ramp where it was.
func TestBatchSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in, out, _ := batcher(t)
		stopOnCleanup(t, in, out)
		r := rule("r", 1000, 64, time.Minute)
		// send adds objects of 1 byte until the batch closes; it returns
		// how many it took.
		send := func() int {
			for n := 1; ; n++ {
				in <- obj(r, "k", 1)
				synctest.Wait()
				select {
				case b := <-out:
					if len(b.items) != n {
						t.Fatalf("batch of %d items after %d sent", len(b.items), n)
					}
					return n
				default:
				}
			}
		}
		check := func(want ...int) {
			t.Helper()
			for _, w := range want {
				if got := send(); got != w {
					t.Fatalf("batch closed at %d bytes, want %d", got, w)
				}
			}
		}
		check(8, 16, 32, 64, 64)
		time.Sleep(time.Minute) // within MaxAge of the last close: still warm
		check(64)
		time.Sleep(time.Minute + time.Second) // idle: cold again
		check(8, 16)
	})
}

// Idle: a batch nothing has joined for the rule's Idle, and for ten of its
// mean gaps, has seen the end of its burst: it closes when a builder is
// free to take it, long before MaxAge; while none is, it keeps filling. A
// trickle's pauses and a lone object do not close it.
func TestBatchClosesWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in, out, m := batcher(t)
		stopOnCleanup(t, in, out)
		r := rule("r", 100, 1<<20, time.Minute)
		r.Batch.Idle = config.Duration(time.Second)
		// burst sends n objects 10 ms apart and returns when the last went.
		burst := func(n int, prefix string) time.Time {
			for i := range n {
				if i > 0 {
					time.Sleep(10 * time.Millisecond)
				}
				in <- obj(r, fmt.Sprint(prefix, i), 1)
			}
			return time.Now()
		}
		last := burst(20, "a")
		b := <-out // a free builder
		if took := time.Since(last); took < time.Second || took > 1250*time.Millisecond {
			t.Fatalf("batch handed over %v after its burst, want 1s (Idle)", took)
		}
		if len(b.items) != 20 {
			t.Fatalf("batch of %d items, want the burst's 20", len(b.items))
		}

		// No builder free: the ended batch stays open and takes what comes.
		burst(20, "b")
		time.Sleep(3 * time.Second)
		none(t, out)
		burst(1, "c")
		b = <-out
		if len(b.items) != 21 {
			t.Fatalf("batch of %d items, want 21", len(b.items))
		}

		// A trickle, an object every 500 ms: pauses of Idle do not end it;
		// ten of its gaps (5 s) with nothing do.
		time.Sleep(2 * time.Minute) // cold again
		for i := range 4 {
			if i > 0 {
				time.Sleep(500 * time.Millisecond)
			}
			in <- obj(r, fmt.Sprint("t", i), 1)
		}
		last = time.Now()
		<-out
		if took := time.Since(last); took < 5*time.Second || took > 5250*time.Millisecond {
			t.Fatalf("trickle's batch handed over %v after its last object, want 5s (ten of its gaps)", took)
		}

		// A lone object waits for MaxAge.
		time.Sleep(2 * time.Minute)
		start := time.Now()
		in <- obj(r, "alone", 1)
		<-out
		if took := time.Since(start); took < time.Minute {
			t.Fatalf("a lone object's batch handed over after %v, want MaxAge (1m)", took)
		}
		closedBy(t, m, map[[2]string]float64{{"r", "idle"}: 3, {"r", "age"}: 1})
	})
}

// Draining: closing the input flushes every open batch at once, before the
// output closes.
func TestBatchFlushesWhenDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in, out, m := batcher(t)
		r := rule("r", 100, 1<<20, time.Hour)
		r2 := rule("r2", 100, 1<<20, time.Hour)
		in <- obj(r, "a", 1)
		in <- obj(r, "b", 1)
		in <- obj(r2, "c", 1)
		none(t, out)
		close(in)
		got := map[string][]string{}
		for range 2 {
			b := next(t, out)
			got[b.rule.ID] = keys(b)
		}
		if len(got["r"]) != 2 || len(got["r2"]) != 1 {
			t.Fatalf("flushed %v, want r:[a b] r2:[c]", got)
		}
		if _, ok := <-out; ok {
			t.Fatal("batches not closed after the input closed")
		}
		closedBy(t, m, map[[2]string]float64{{"r", "drain"}: 1, {"r2", "drain"}: 1})
	})
}
