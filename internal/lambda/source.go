package lambda

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/worker"
)

// Packer is the source worker's per-batch step (*source.Worker).
type Packer interface {
	Match(ref xevents.ObjectRef, sent time.Time, done func(error), log *zap.Logger) ([]source.Item, bool)
	Pack(ctx context.Context, rule *config.Rule, items []source.Item, closed time.Time)
	// Restaged: objects of messages reported failed, which come back,
	// will be staged again (source.Item.Staged).
	Restaged(staged []source.Staging)
	// Relay copies an archive to a direct region: a relay message's work
	// (xevents.Relay).
	Relay(ctx context.Context, r xevents.Relay) error
	// Requeue sends a relay whose turn never came again, its tries kept
	// (source.Worker.Requeue).
	Requeue(ctx context.Context, r xevents.Relay, received, deferred int, delay time.Duration) error
}

// builders is how many archives an invocation builds at once, as the
// Fargate worker does: one compresses while the other waits on S3.
const builders = 2

// ErrDeadline settles the objects an invocation did not start because
// they would not have been done before its deadline.
var ErrDeadline = errors.New("not started: the invocation's deadline is near")

// Source handles a batch of one rule's queue: its objects become archives
// in staging through the source worker's own per-batch step.
type Source struct {
	w          Packer
	q          Releaser // nil: failed messages come back after their visibility timeout
	margin     time.Duration
	maxReceive int
	log        *zap.Logger
	metrics    *worker.Metrics
	clock      clockwork.Clock
	pace       pace
}

// SourceOptions are a Source's collaborators.
type SourceOptions struct {
	Worker Packer
	Queue  Releaser
	Margin time.Duration // settings.lambda.margin
	// MaxReceive is the queue's maxReceiveCount: a message failing its
	// last receive is logged as bound for the DLQ.
	MaxReceive int
	Log        *zap.Logger
	Metrics    *worker.Metrics
	Clock      clockwork.Clock // default: the real clock
}

// NewSource returns the source role's handler.
func NewSource(o SourceOptions) *Source {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	return &Source{w: o.Worker, q: o.Queue, margin: o.Margin, maxReceive: o.MaxReceive, log: o.Log, metrics: o.Metrics, clock: o.Clock}
}

// tracked is one message of the batch until all its items are settled.
type tracked struct {
	out       outcome
	mu        sync.Mutex
	pending   int
	permanent bool             // every failure is one no retry can fix
	untried   bool             // every failure is ErrDeadline's: never started
	started   bool             // an object of it settled without failing
	staged    []source.Staging // what the message's objects added to the statistics
	events    *xevents.Message // nil: not parsed
}

func (t *tracked) record(rule string, d stats.Delta) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.staged = append(t.staged, source.Staging{Rule: rule, Delta: d})
}

func (t *tracked) settle(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending--
	if err == nil {
		t.started = true
		return
	}
	if t.out.err == nil {
		t.out.now, t.permanent, t.out.expected, t.untried = true, true, true, true
	}
	t.untried = t.untried && errors.Is(err, ErrDeadline)
	t.out.err = errors.Join(t.out.err, err)
	// Back at once when every failure is one no retry fixes (towards the
	// DLQ) or the deadline's (nothing wrong with the object).
	cut := cutBy(err)
	t.out.now = t.out.now && (source.Permanent(err) || cut)
	t.permanent = t.permanent && source.Permanent(err)
	t.out.expected = t.out.expected && cut
}

// cutBy reports whether err is the deadline's: work put off, or cut.
func cutBy(err error) bool {
	return errors.Is(err, ErrDeadline) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Handle archives the objects ev's messages name and reports the messages
// whose objects are not all durably staged (or deliberately skipped).
func (h *Source) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	work, cancel, at := cut(ctx, h.margin)
	defer cancel()
	msgs := make([]*tracked, len(ev.Records))
	var items []source.Item
	var relays sync.WaitGroup
	for i, rec := range mostReceivedFirst(ev.Records) {
		t := &tracked{out: outcome{msg: message(rec)}}
		msgs[i] = t
		log := h.log.With(zap.String("message", t.out.msg.ID), zap.Int("receiveCount", t.out.msg.ReceiveCount))
		parsed, err := xevents.Parse([]byte(rec.Body))
		switch {
		case err != nil:
			h.metrics.Messages.WithLabelValues("invalid").Inc()
			t.out.err, t.out.now, t.out.final = fmt.Errorf("message %s: %w", t.out.msg.ID, err), true, true
			continue
		case parsed.Test:
			h.metrics.Messages.WithLabelValues("test").Inc()
			log.Info("s3:TestEvent received: notifications are wired")
			continue
		}
		t.events = &parsed
		if r := parsed.Relay; r != nil {
			// Beside the batches, as the Fargate worker does, its tries
			// counted over the messages it was sent as (Relay.Tries).
			tries := source.RelayTries(*r, t.out.msg.ReceiveCount, h.maxReceive)
			last := h.maxReceive > 0 && tries >= h.maxReceive
			if h.maxReceive > 0 && tries > h.maxReceive {
				// Its last try failed and said so: on its way to the DLQ,
				// said at error again by its own last receive.
				t.out.err, t.out.now, t.out.expected = fmt.Errorf("relay of s3://%s/%s to %s: its copy was tried maxReceiveCount times", r.Bucket, r.Key, r.Region), true, true
				continue
			}
			t.pending, t.out.wait = 1, source.RelayBackoff(tries)
			relays.Go(func() {
				err := h.w.Relay(work, *r)
				if errors.Is(err, source.ErrNoTurn) && h.requeue(ctx, log, *r, t.out.msg.ReceiveCount, t.out.msg.Deferred, tries) {
					// Tried nothing: sent again, its tries kept, as the
					// Fargate worker does, so that a redrive of more
					// relays than an invocation copies spends no receive
					// on those left waiting (on the last, the DLQ).
					t.settle(nil)
					return
				}
				t.settle(err)
				t.mu.Lock()
				// Cut by the deadline, it waits its backoff too; failed on
				// its last try, it goes towards the DLQ at once.
				t.out.now = t.permanent || last && !t.out.expected
				t.out.final = t.out.final || last && !t.out.expected
				t.mu.Unlock()
			})
			continue
		}
		covered := false
		for _, ref := range parsed.Refs {
			mine, matched := h.w.Match(ref, t.out.msg.SentAt, t.settle, log)
			for i := range mine {
				mine[i].Staged = t.record
			}
			if !matched {
				log.Debug("no rule covers object; acknowledging", zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
			}
			covered = covered || matched
			t.pending += len(mine)
			items = append(items, mine...)
		}
		if t.pending == 0 {
			h.metrics.Messages.WithLabelValues(source.NothingToDo(parsed, covered)).Inc() // as the Fargate worker counts it
		}
	}

	queue := make(chan *batch)
	var wg sync.WaitGroup
	for range builders {
		wg.Go(func() {
			for b := range queue {
				h.pack(work, at, b)
			}
		})
	}
	for i, b := range batches(items) {
		b.first = i == 0
		queue <- b
	}
	close(queue)
	wg.Wait()
	relays.Wait()

	outs := make([]outcome, len(msgs))
	for i, t := range msgs {
		t.mu.Lock()
		if t.pending > 0 && t.out.err == nil {
			// Pack settles every item it is given; this cannot happen,
			// and if it did, the message must not be reported done.
			t.out.err = fmt.Errorf("message %s: %d objects not settled", t.out.msg.ID, t.pending)
		}
		if t.out.err != nil && !t.out.final {
			t.out.final = t.permanent || (h.maxReceive > 0 && t.out.msg.ReceiveCount >= h.maxReceive)
			if again(t.out.msg, t.untried && !t.started && len(t.staged) == 0, h.maxReceive) {
				t.out.again, t.out.final = true, false
			}
		}
		if t.out.err != nil && t.events != nil {
			t.out.fields = source.FailureFields(*t.events, t.out.err)
		}
		if t.out.err != nil && (h.maxReceive == 0 || t.out.msg.ReceiveCount < h.maxReceive) {
			// It comes back, and what of it was staged is staged again.
			h.w.Restaged(t.staged)
		}
		outs[i] = t.out
		t.mu.Unlock()
	}
	// (A message sent again added nothing to the statistics: again needs
	// it so. A delete's or retag's archive adds nothing, and such a
	// message may be sent again after one was staged, as on Fargate: a
	// target takes the same entry twice.)
	return respond(ctx, outs, h.q, h.metrics, h.log), nil
}

// requeue sends relay r, cut before its turn, again after its backoff as a
// new message with its tries kept, and reports whether it was sent (the
// message it came in is then acknowledged).
func (h *Source) requeue(ctx context.Context, log *zap.Logger, r xevents.Relay, received, deferred, tries int) bool {
	sctx, cancel := context.WithTimeout(ctx, requeueTimeout)
	defer cancel()
	delay := source.RelayBackoff(max(tries, 1))
	if err := h.w.Requeue(sctx, r, received, deferred, delay); err != nil {
		h.metrics.Errors.WithLabelValues("requeue").Inc()
		log.Warn("relay cut before its turn; sending it again failed: it comes back as it is", zap.String("key", r.Key), zap.String("region", r.Region), zap.Error(err))
		return false
	}
	h.metrics.Messages.WithLabelValues("requeued").Inc()
	log.Info("relay cut before its turn: sent again, its tries kept", zap.String("key", r.Key), zap.String("region", r.Region),
		zap.Int("tries", tries-1), zap.Duration("retryIn", delay))
	return true
}

// requeueTimeout bounds sending a relay again, within the margin.
const requeueTimeout = 5 * time.Second

// pack stages one batch through the worker's Pack, unless it would not be
// done before the cut at; then its items are settled with ErrDeadline.
func (h *Source) pack(ctx context.Context, at time.Time, b *batch) {
	start := h.clock.Now()
	est := h.pace.estimate(b.bytes, len(b.items))
	if ctx.Err() != nil || !begins(b.first, start, at, est) {
		h.log.Info("deadline near: leaving a batch to the next invocation", zap.String("rule", b.rule.ID),
			zap.Int("objects", len(b.items)), zap.Duration("estimate", est), zap.Time("cutAt", at))
		for _, it := range b.items {
			it.Done(ErrDeadline)
		}
		return
	}
	failed := false
	paced := !b.first && h.pace.measured()
	var mu sync.Mutex
	items := make([]source.Item, len(b.items))
	for i, it := range b.items {
		done := it.Done
		it.Done = func(err error) {
			if err != nil {
				mu.Lock()
				failed = true
				mu.Unlock()
				if paced && ctx.Err() != nil && cutBy(err) {
					// Started as the pace said it fit, cut all the same:
					// nothing of it was staged, and the next invocation
					// may start it first. Untried, so on its last receive
					// it is sent again, as a Fargate worker's stop sends
					// what it cut, not taken to the DLQ (a first batch
					// cut is: it never fits; so is one started with no
					// pace measured, which may not either).
					err = fmt.Errorf("%w: %w", ErrDeadline, err)
				}
			}
			done(err)
		}
		items[i] = it
	}
	h.w.Pack(ctx, b.rule, items, start)
	if !failed && ctx.Err() == nil {
		// Not a batch the cut ended: staged all the same (a direct
		// region's copy cut and left to a relay), its time is the hang's,
		// which would keep later batches out of warm invocations.
		h.pace.observe(b.bytes, len(b.items), h.clock.Since(start))
	}
	if failed && b.first && ctx.Err() != nil {
		// The invocation's first batch starts whatever the pace says; cut
		// by the deadline all the same, it does not fit one invocation,
		// and (a staging upload does not resume) it never will: its
		// messages reach the DLQ. Said, so that it is not a mystery.
		h.metrics.Errors.WithLabelValues("invocation_too_short").Inc()
		h.log.Error("an invocation's first batch was cut by the deadline: its objects take longer than one invocation to stage, and will until the DLQ; raise settings.lambda.timeout (15 min at most) or run the rule on fargate or hybrid compute",
			zap.String("rule", b.rule.ID), zap.Int("objects", len(b.items)), zap.Int64("bytes", b.bytes), zap.Duration("took", h.clock.Since(start)))
	}
}
