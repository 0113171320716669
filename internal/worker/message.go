package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/queue"
)

// settleTimeout bounds one attempt to acknowledge or release a message.
const settleTimeout = 5 * time.Second

// ackAttempts is how often Ack tries DeleteMessage before it gives up and
// lets the visibility timeout redeliver the message.
const ackAttempts = 3

// Message is one held SQS message and its parsed S3 events.
type Message struct {
	queue.Message
	// Events is the body parsed, before the message is held: the
	// heartbeat's lines name its objects.
	Events   events.Message
	parseErr error

	ctx    context.Context
	cancel context.CancelCauseFunc
	rt     *Runtime
	log    *zap.Logger
	// received is when it was received: held long, it protects the task.
	received time.Time
	// receivedAt is when it was received, on the runtime's clock, not
	// moved by Started: SQS hides it at most queue.MaxVisibility from then.
	receivedAt time.Time
	// holdEnds is when its visibility runs out unless the heartbeat
	// extends it (under rt.mu).
	holdEnds time.Time
	done     atomic.Bool // settled or lost
	// leftCut: its role released it after the drain cut its work, and
	// said what became of it; releaseHeld lets it go with the rest.
	leftCut atomic.Bool
	// sentAgain: the stop's release took it to send it again (SentAgain).
	sentAgain atomic.Bool
	// againBody, under the runtime's mu: the body to send it again with
	// (SendAgainAs); "" for its own.
	againBody string
}

// Context ends when the message's work must stop: the drain time is over,
// the message was settled, or its receipt was lost (cause ErrReceiptLost).
func (m *Message) Context() context.Context { return m.ctx }

// Log returns a logger naming the message.
func (m *Message) Log() *zap.Logger { return m.log }

// settling returns a context that outlives the work context: a message
// abandoned when the drain time is over must still be released.
func settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// Ack deletes the message: call it only once its work is durable. The
// delete runs in the background, batched with other messages acknowledged
// about the same time (up to 10 per DeleteMessageBatch, instead of a call
// per message), and the message stays held, its visibility extended, until
// it is done; Run waits for pending deletes before it returns. A delete is
// retried; if SQS keeps refusing, the message is dropped from the held set
// anyway, logged and counted, and comes back after its visibility timeout:
// its work is done, and redoing it is harmless.
func (m *Message) Ack() {
	if !m.done.CompareAndSwap(false, true) {
		return
	}
	m.rt.acks.add(m)
}

// Leave releases a message whose work never started (the worker is
// stopping) at once, with no backoff: its work failed for the stop, not
// for itself. Releases are batched, ten to a call and several calls at
// once, so thousands of messages waiting for a full batcher at SIGTERM
// take little of the stop's budget; and they are visible to other tasks
// during the drain, not after it (they were held to its end, a minute and
// more of every stop, when releases went one call each).
func (m *Message) Leave() { m.Release(0) }

// Release makes the message visible again after delay (0: now). Its receive
// count grows on the next delivery, so a message that keeps failing reaches
// the dead-letter queue. The change runs in the background, batched with
// other releases of the same delay (as Ack's deletes are); its context
// ends once it is done, and Run waits for pending releases before it
// returns. A failure is logged: the visibility timeout redelivers it
// anyway. A message whose work the end of the drain cut is
// released at once with the rest still held, whatever delay its caller
// asks: its work failed for the stop, not for itself, and thousands of
// releases one by one could outlast the stop timeout.
func (m *Message) Release(delay time.Duration) {
	if m.ctx.Err() != nil && m.rt.leftForShutdown(m) {
		return
	}
	if !m.done.CompareAndSwap(false, true) {
		return
	}
	m.rt.releases.add(delay, m)
}

// leftForShutdown reports whether m, its work cut, is still held and will
// be released by releaseHeld.
func (r *Runtime) leftForShutdown(m *Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, held := r.held[m.ReceiptHandle]
	left := held && !r.shutdown && r.cut.Load()
	if left {
		// Under the lock releaseHeld takes: it sees the role's word.
		m.leftCut.Store(true)
	}
	return left
}

// release makes ms (each marked done by its caller) visible after delay,
// ten to a call and several calls at once (queue.Queue.ChangeVisibility).
func (r *Runtime) release(delay time.Duration, ms []*Message) {
	if len(ms) == 0 {
		return
	}
	r.Metrics.Messages.WithLabelValues("released").Add(float64(len(ms)))
	// Under beat, and forgotten before they are let go: a heartbeat that
	// took them in its snapshot lands before this change, never after it
	// (which would hide them for a whole visibility timeout again).
	r.beat.Lock()
	defer r.beat.Unlock()
	msgs := make([]queue.Message, len(ms))
	for i, m := range ms {
		msgs[i] = m.Message
	}
	// settleTimeout for each round of calls, not for all: thousands of
	// messages at shutdown take many rounds.
	rounds := (len(msgs) + queue.MaxBatch*queue.BatchCalls - 1) / (queue.MaxBatch * queue.BatchCalls)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ms[0].ctx), time.Duration(rounds)*settleTimeout)
	ctx, stop := r.bounded(ctx)
	failures, _ := r.Queue.ChangeVisibility(ctx, delay, msgs...)
	stop()
	cancel()
	failed := make(map[string]queue.Failure, len(failures))
	for _, f := range failures {
		failed[f.Message.ReceiptHandle] = f
	}
	for _, m := range ms {
		r.forget(m)
		m.cancel(context.Canceled)
		if f, ok := failed[m.ReceiptHandle]; ok {
			r.Metrics.Errors.WithLabelValues("release_message").Inc()
			m.log.Warn("releasing message failed: it comes back after its visibility timeout", append(MessageFields(m.Events), zap.Error(f.Err))...)
		}
	}
}

// releases batches the releases of messages settled about the same time,
// by delay, as acks batches deletes: a source archive that fails settles
// its thousands of messages in a loop, and a ChangeMessageVisibility call
// each, in turn, held its builder 10-20 s per 1,000 messages. Until its
// release a message stays held (its visibility extended).
type releases struct {
	rt *Runtime

	mu       sync.Mutex
	idle     sync.Cond // on mu: signalled when flushing ends
	pending  map[time.Duration][]*Message
	flushing bool
}

// add queues m for release after delay and starts a flush if none is
// running.
func (l *releases) add(delay time.Duration, m *Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[time.Duration][]*Message{}
	}
	l.pending[delay] = append(l.pending[delay], m)
	if !l.flushing {
		l.flushing = true
		go l.flush()
	}
}

// flush releases pending messages until none is left, one delay at a
// time, as many at once as one round of Queue.ChangeVisibility sends.
func (l *releases) flush() {
	for {
		l.mu.Lock()
		var (
			delay time.Duration
			batch []*Message
		)
		for d, ms := range l.pending {
			n := min(len(ms), queue.MaxBatch*queue.BatchCalls)
			delay, batch = d, ms[:n]
			if l.pending[d] = ms[n:]; n == len(ms) {
				delete(l.pending, d)
			}
			break
		}
		if batch == nil {
			l.flushing = false
			l.idle.Broadcast()
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		l.rt.release(delay, batch)
	}
}

// wait returns once every message released so far is released or given
// up on.
func (l *releases) wait() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.flushing {
		l.idle.Wait()
	}
}

// acks batches the deletes of acknowledged messages.
type acks struct {
	rt *Runtime

	// stopping is closed once Run waits for the deletes: a worker shutting
	// down retries at once rather than after a pause.
	stopping chan struct{}
	stopOnce sync.Once
	mu       sync.Mutex
	idle     sync.Cond // on mu: signalled when flushing ends
	pending  []*Message
	flushing bool // a goroutine is running flush
}

// add queues m for deletion and starts a flush if none is running.
func (a *acks) add(m *Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = append(a.pending, m)
	if !a.flushing {
		a.flushing = true
		go a.flush()
	}
}

// flush deletes pending messages until none is left, as many at a time as
// Queue.Delete sends at once (BatchCalls calls of MaxBatch): an archive's
// thousands of messages ten at a time, one call after another, took their
// round trips in turn, holding their slots meanwhile, and at the stop ran
// out of time, leaving staged objects to be sent again.
func (a *acks) flush() {
	for {
		a.mu.Lock()
		n := min(len(a.pending), queue.MaxBatch*queue.BatchCalls)
		if n == 0 {
			a.flushing = false
			a.pending = nil
			a.idle.Broadcast()
			a.mu.Unlock()
			return
		}
		batch := a.pending[:n]
		a.pending = a.pending[n:]
		a.mu.Unlock()
		a.delete(batch)
	}
}

// wait returns once every message acknowledged so far is deleted or given
// up on.
func (a *acks) wait() {
	a.stopOnce.Do(func() { close(a.stopping) })
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.flushing {
		a.idle.Wait()
	}
}

// delete deletes batch, retrying the messages SQS refused, and drops each
// from the held set once it is deleted or given up on.
func (a *acks) delete(batch []*Message) {
	left := batch
	for attempt := 1; len(left) > 0; attempt++ {
		msgs := make([]queue.Message, len(left))
		for i, m := range left {
			msgs[i] = m.Message
		}
		ctx, cancel := settling(left[0].ctx)
		ctx, stop := a.rt.bounded(ctx)
		failures, _ := a.rt.Queue.Delete(ctx, msgs...)
		stop()
		cancel()
		failed := make(map[string]queue.Failure, len(failures))
		for _, f := range failures {
			failed[f.Message.ReceiptHandle] = f
		}
		var retry []*Message
		for _, m := range left {
			f, ok := failed[m.ReceiptHandle]
			switch {
			case !ok:
				a.rt.Metrics.Messages.WithLabelValues("acked").Inc()
			case !f.ReceiptGone() && attempt < ackAttempts:
				retry = append(retry, m)
				continue
			case a.rt.MaxReceiveCount > 0 && m.ReceiveCount >= a.rt.MaxReceiveCount:
				// Its next receive takes it to the DLQ: the line an
				// operator finds it by, as every path there has.
				a.rt.Metrics.Errors.WithLabelValues("delete_message").Inc()
				m.log.Error("acknowledging message failed on its last receive: bound for the DLQ, its work done (a redrive does it again, harmlessly)", append(MessageFields(m.Events), zap.Error(f.Err))...)
			default:
				a.rt.Metrics.Errors.WithLabelValues("delete_message").Inc()
				m.log.Warn("acknowledging message failed: it will be delivered again after its visibility timeout", append(MessageFields(m.Events), zap.Error(f.Err))...)
			}
			a.rt.forget(m)
			m.cancel(context.Canceled)
		}
		if left = retry; len(left) > 0 {
			select {
			case <-a.stopping:
			case <-a.rt.Clock.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
	}
}

// Started says the message's work starts now, after it waited its turn
// (a relay behind others): task protection counts how long work is held
// from here, as waiting, a stop would cut nothing.
func (m *Message) Started() {
	m.rt.mu.Lock()
	defer m.rt.mu.Unlock()
	m.received = m.rt.Clock.Now()
}

// lose drops a message whose receipt SQS no longer accepts and cancels its
// work: another delivery owns it now.
func (m *Message) lose(err error) {
	if !m.done.CompareAndSwap(false, true) {
		return
	}
	// Counted and said before the work is cancelled: what its end
	// triggers (a role's failure line, a test) finds it counted.
	m.rt.Metrics.Errors.WithLabelValues("receipt_lost").Inc()
	if m.rt.MaxReceiveCount > 0 && m.ReceiveCount >= m.rt.MaxReceiveCount {
		// Visible again after its last receive: the next one takes it
		// to the DLQ whatever its work does now, and nothing here can
		// settle it any more. The line an operator redrives from.
		m.log.Error("message receipt lost on its last receive: bound for the DLQ unless another receive of it finished its work (a redrive is then harmless)",
			append(MessageFields(m.Events), zap.Bool("cut", true), zap.String("cause", "receipt lost"), zap.Error(err))...)
	} else {
		m.log.Warn("message receipt lost: stopping its work; it will be delivered again", append(MessageFields(m.Events), zap.Error(err))...)
	}
	m.rt.forget(m)
	m.cancel(ErrReceiptLost)
}

// parse acts on m's body as hold parsed it. An invalid body is released
// at once (no retry can fix it, but only the dead-letter queue may keep
// it, which it reaches after maxReceiveCount quick retries) and S3's test
// event is acknowledged; it returns false for both, as nothing is left to
// do.
func (r *Runtime) parse(m *Message) bool {
	switch {
	case m.parseErr != nil:
		r.Metrics.Messages.WithLabelValues("invalid").Inc()
		m.log.Error("invalid message: releasing it towards the dead-letter queue", zap.Error(m.parseErr))
		m.Release(0)
		return false
	case m.Events.Test:
		r.Metrics.Messages.WithLabelValues("test").Inc()
		m.log.Info("s3:TestEvent received: notifications are wired")
		m.Ack()
		return false
	}
	return true
}

// MessageFields name what a message is about, for the lines that settle
// it: the objects its events announce (RefFields), or a relay's archive
// and direct region (events.Relay).
func MessageFields(m events.Message) []zap.Field {
	if r := m.Relay; r != nil {
		return []zap.Field{zap.String("bucket", r.Bucket), zap.String("key", r.Key), zap.String("region", r.Region)}
	}
	return RefFields(m.Refs)
}

// RefFields name the objects a message's events announce, for the lines
// that settle it (an operator filters on bucket and key): bucket and key
// for one, the first ten of several.
func RefFields(refs []events.ObjectRef) []zap.Field {
	switch len(refs) {
	case 0:
		return nil
	case 1:
		return []zap.Field{zap.String("bucket", refs[0].Bucket), zap.String("key", refs[0].Key)}
	}
	const most = 10
	keys := make([]string, 0, min(len(refs), most))
	for _, r := range refs[:min(len(refs), most)] {
		keys = append(keys, r.Bucket+"/"+r.Key)
	}
	return []zap.Field{zap.Strings("objects", keys), zap.Int("events", len(refs))}
}
