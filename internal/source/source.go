// Package source is the source-region worker: it turns S3 event messages
// from a rule's SQS queue into compressed archives in the staging bucket.
//
// The guarantee it keeps: a message is deleted only after every object it
// names is in an archive durably stored in staging (or was deliberately
// skipped because the object is gone or was overwritten since the event).
// Everything else is released back to the queue and, after the queue's
// maxReceiveCount, lands in its dead-letter queue.
package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/drain"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/queue"
)

// Receive settings: SQS's maxima, which make long polling cheapest.
const (
	receiveBatch = 10
	receiveWait  = 20 * time.Second
)

// Deps are the worker's collaborators, built by the caller.
type Deps struct {
	Config  *config.Config
	Region  string        // the source region this worker serves
	RuleIDs []string      // rules to serve; empty means every rule of Region
	Queue   *queue.Queue  // the rules' event queue
	S3      S3API         // client for Region: watched buckets and staging
	Log     *zap.Logger   //
	Metrics *Metrics      //
	Health  *health.Check //
	Now     func() time.Time
	Writers func() *archive.Writer // optional: archive writers (reused across archives)
}

// Worker is a running source worker.
type Worker struct {
	Deps
	rules   []*config.Rule
	staging string
	drain   time.Duration
	writers sync.Pool
	settler queue.Settler

	mu       sync.Mutex
	messages map[string]*tracked // by receipt handle
}

// tracked follows one message until all its objects are settled.
type tracked struct {
	msg     queue.Message
	pending int
	failed  error
}

// item is one object event on its way into an archive.
type item struct {
	ref  events.ObjectRef
	rule *config.Rule
	msg  *tracked
}

// New checks deps and returns a worker.
func New(d Deps) (*Worker, error) {
	region, ok := d.Config.Region(d.Region)
	if !ok || !region.IsSource() {
		return nil, fmt.Errorf("region %q is not a source region in the config", d.Region)
	}
	w := &Worker{Deps: d, staging: region.StagingBucket, drain: d.Config.Settings.Worker.DrainTimeout.D(), messages: map[string]*tracked{},
		settler: queue.Settler{Queue: d.Queue, Log: d.Log, Messages: d.Metrics.Messages, Errors: d.Metrics.Errors}}
	if w.Now == nil {
		w.Now = time.Now
	}
	if d.Writers == nil {
		w.writers.New = func() any { return archive.NewWriter(archive.WriterOptions{}) }
	} else {
		w.writers.New = func() any { return d.Writers() }
	}
	for i := range d.Config.Rules {
		r := &d.Config.Rules[i]
		if r.SourceRegion == d.Region && (len(d.RuleIDs) == 0 || slices.Contains(d.RuleIDs, r.ID)) {
			w.rules = append(w.rules, r)
		}
	}
	if len(w.rules) == 0 {
		return nil, fmt.Errorf("no rules to serve in region %s (asked for %v)", d.Region, d.RuleIDs)
	}
	return w, nil
}

// Run receives and archives until ctx ends, then drains: it stops receiving,
// closes the open batches and gives in-flight archives the configured drain
// time. Whatever is not staged by then is released, never acknowledged.
func (w *Worker) Run(ctx context.Context) error {
	// Work outlives ctx by the drain time so a SIGTERM does not abort
	// archives that are about to be staged.
	work, cancelWork := drain.Context(ctx, w.drain, func() {
		w.Log.Warn("drain time over: abandoning in-flight archives", zap.Duration("drain", w.drain))
	})
	defer cancelWork()
	aw := w.writers.Get().(*archive.Writer)
	w.Log.Info("archiving", zap.String("encoder", aw.Encoder()), zap.Int("rules", len(w.rules)), zap.String("staging", w.staging))
	w.writers.Put(aw)

	hb, stopHB := context.WithCancel(work)
	defer stopHB()
	go w.Queue.Heartbeat(hb)

	items := make(chan item, 2*receiveBatch)
	batches := make(chan *batch)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.batchLoop(ctx, items, batches)
	}()
	for range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				w.archive(work, b)
			}
		}()
	}

	// Several long polls at once: one SQS call returns at most 10
	// messages, and small objects would otherwise wait on its round trip.
	var rg sync.WaitGroup
	for range receivers {
		rg.Go(func() { w.receiveLoop(ctx, items) })
	}
	w.Log.Info("source worker receiving", zap.String("queue", w.Queue.URL()), zap.Int("rules", len(w.rules)), zap.Int("receivers", receivers))
	rg.Wait()
	w.Log.Info("stopped receiving; draining", zap.Duration("drain", w.drain))
	close(items)
	wg.Wait()
	stopHB()

	// Anything still held was not staged: hand it back now rather than when
	// its visibility runs out, so another task can take it at once.
	w.mu.Lock()
	var left []queue.Message
	for _, t := range w.messages {
		left = append(left, t.msg)
	}
	w.messages = map[string]*tracked{}
	w.mu.Unlock()
	if len(left) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := w.Queue.Release(rctx, 0, left...); rerr != nil {
			w.Log.Warn("releasing unstaged messages", zap.Int("messages", len(left)), zap.Error(rerr))
		}
		w.Log.Info("released unstaged messages", zap.Int("messages", len(left)))
	}
	w.Log.Info("source worker stopped")
	return nil
}

// receivers is how many long polls run at once.
const receivers = 2

// builders is how many archives are built at once: one compresses while the
// other waits on S3, which is what two vCPUs can use.
const builders = 2

func (w *Worker) maxHeld() int {
	n := 0
	for _, r := range w.rules {
		n += 2 * r.Batch.MaxObjects
	}
	return max(n, 100)
}

func (w *Worker) receiveLoop(ctx context.Context, items chan<- item) {
	for ctx.Err() == nil {
		w.Health.Beat()
		if w.Queue.Held() >= w.maxHeld() {
			// Backpressure: archives are behind; let SQS hold the rest.
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		start := w.Now()
		msgs, err := w.Queue.Receive(ctx, receiveBatch, receiveWait)
		w.Metrics.ReceiveDuration.Observe(w.Now().Sub(start).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.Metrics.Errors.WithLabelValues("receive").Inc()
			w.Log.Error("receiving messages", zap.Error(err))
			sleep(ctx, 5*time.Second)
			continue
		}
		for _, m := range msgs {
			w.handle(ctx, m, items)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// handle parses one message and queues its objects for batching.
func (w *Worker) handle(ctx context.Context, m queue.Message, items chan<- item) {
	parsed, ok := w.settler.Parse(ctx, m)
	if !ok {
		return
	}
	log := w.Log.With(zap.String("message", m.ID), zap.Int("receiveCount", m.ReceiveCount))
	t := &tracked{msg: m}
	var mine []item
	for _, ref := range parsed.Refs {
		matched := false
		for _, r := range w.rules {
			if !r.Matches(ref.Bucket, ref.Key) {
				continue
			}
			matched = true
			if ref.Removed() && !r.Deletes {
				continue
			}
			mine = append(mine, item{ref: ref, rule: r, msg: t})
		}
		if !matched {
			log.Info("no rule covers object; acknowledging", zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
		}
	}
	if len(mine) == 0 {
		w.Metrics.Messages.WithLabelValues("unmatched").Inc()
		w.settler.Ack(ctx, m)
		return
	}
	t.pending = len(mine)
	w.mu.Lock()
	w.messages[m.ReceiptHandle] = t
	w.mu.Unlock()
	for _, it := range mine {
		if !w.send(ctx, items, it) {
			// Draining: the batcher flushes what it has; this item never
			// made it, so its message must not be acknowledged.
			w.settle(context.WithoutCancel(ctx), it, errors.New("worker stopping"))
		}
	}
}

// send hands it to the batcher. While the batcher pushes back (archives are
// slow, e.g. a multi-GB object uploading) the loop is waiting, not stuck, so
// it keeps the health check fed.
func (w *Worker) send(ctx context.Context, items chan<- item, it item) bool {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case items <- it:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			w.Health.Beat()
		}
	}
}

// settle records the outcome of one item; when its message has no pending
// items left, the message is acknowledged (all succeeded) or released.
func (w *Worker) settle(ctx context.Context, it item, err error) {
	w.mu.Lock()
	t := it.msg
	t.pending--
	if err != nil && t.failed == nil {
		t.failed = err
	}
	done := t.pending == 0
	if done {
		delete(w.messages, t.msg.ReceiptHandle)
	}
	w.mu.Unlock()
	if !done {
		return
	}
	if t.failed != nil {
		w.Log.Warn("message not acknowledged: it will be retried", zap.String("message", t.msg.ID),
			zap.Int("receiveCount", t.msg.ReceiveCount), zap.Error(t.failed))
		w.settler.Release(ctx, t.msg, queue.Backoff(t.msg.ReceiveCount))
		return
	}
	w.settler.Ack(ctx, t.msg)
}
