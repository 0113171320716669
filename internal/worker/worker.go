// Package worker is the runtime both xrc workers share. It long-polls the
// worker's SQS queue, holds each message while its work runs (extending its
// visibility), acknowledges or releases it, drains on shutdown and feeds the
// health check. A role (package source or target) only says what a message
// means, through Role.
//
// Guarantees:
//   - A message is deleted only when its role calls Ack. Invalid bodies are
//     released at once and reach the dead-letter queue after the queue's
//     maxReceiveCount; nothing is deleted on failure.
//   - No message stays counted as held for ever: an acknowledgement that
//     keeps failing, or a receipt the heartbeat finds gone, drops the message
//     from the held set (SQS delivers it again; processing is idempotent),
//     and a lost receipt cancels the message's work.
//   - /healthz turns unhealthy when the worker neither polls nor makes
//     progress on what it holds, so ECS replaces a stuck task.
//   - On shutdown, work gets the drain time; whatever is still held after it
//     is released at once rather than left hidden until its visibility ends.
package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/queue"
)

// Role is what differs between the workers.
type Role interface {
	// Start runs once, before the first receive. work is the context that
	// outlives the stop signal by the drain time.
	Start(work context.Context)
	// Handle takes over one valid message. stop ends when the worker stops
	// receiving; m.Context() ends when m's work must stop (drain time over,
	// or its receipt lost). Handle, or work it started, must call m.Ack or
	// m.Release; whatever is still held when Run ends is released.
	Handle(stop context.Context, m *Message)
	// Drain runs once receiving has stopped and every Handle has returned,
	// and returns when in-flight work is done or work is cancelled.
	Drain(work context.Context)
}

// Untried is a Role that readies a message the stop took before any
// Handle of it (a poll that answered after the stop) to be sent again, as
// its Handle would have: a relay on its last try (Message.SendAgainAs).
// It must not block.
type Untried interface {
	Untried(m *Message)
}

// Receive settings: SQS's maxima, which make long polling cheapest.
const (
	receiveMax  = 10
	receiveWait = 20 * time.Second // default of Options.ReceiveWait
	// pollMargin is how long past its wait a poll's answer may take.
	pollMargin = 5 * time.Second
	// receiveRetry spaces receives after a failed one, firstReceiveRetry
	// after the first failure of a run (a blip: the SDK does not retry
	// receives).
	receiveRetry      = 5 * time.Second
	firstReceiveRetry = time.Second
	// progressCheck is how often a worker that cannot receive (it holds
	// MaxHeld messages) looks for progress to report to the health check.
	progressCheck = 10 * time.Second
)

// Options configure a Runtime.
type Options struct {
	Queue *queue.Queue
	// Receivers is how many long polls run at once (default 1): one SQS
	// call returns at most 10 messages, and small objects would otherwise
	// wait on its round trip.
	Receivers int
	// ReceiveWait is how long one long poll waits (default and at most
	// 20 s). A poll in flight at the stop is waited for.
	ReceiveWait time.Duration
	// ReceiveMax is the most messages one receive asks for (default and
	// at most 10). A worker whose messages are heavy (an archive each)
	// takes one at a time and leaves the rest to other tasks.
	ReceiveMax int
	// MaxHeld bounds the messages held at once: the worker receives only
	// while it holds fewer. Backpressure: the rest waits in SQS, where
	// another task can take it.
	MaxHeld int
	// Visibility is how long a held message stays hidden; the heartbeat
	// extends it every third of that.
	Visibility time.Duration
	// Drain is the grace period in-flight work gets after the stop signal.
	Drain time.Duration
	// MaxReceiveCount is the queue's redrive limit (settings.worker): a
	// message the last poll brings after the stop, released untried on
	// that receive, goes to the dead-letter queue and is said so.
	MaxReceiveCount int
	// StopBudget bounds everything after the stop signal (default
	// DefaultStopBudget): what the drain leaves of it goes to the role's
	// clean-up, then to deleting and releasing messages, the last
	// releaseReserve of it to those alone.
	StopBudget time.Duration
	// Protector, if set, protects the task from scale-in and deployments
	// while it holds a message longer than ProtectAfter (protect.go).
	Protector    Protector
	ProtectAfter time.Duration
	Log          *zap.Logger
	Metrics      *Metrics
	Health       *health.Check
	Clock        clockwork.Clock // default: the real clock
}

// DefaultStopBudget is ECS's time from SIGTERM to SIGKILL, less 5 s for
// the process's own stop (servers, last metrics, logs). Past it, messages
// still held would stay hidden a whole visibility timeout.
const DefaultStopBudget = config.StopTimeout - 5*time.Second

// releaseReserve is the end of the stop budget kept for deleting and
// releasing messages, whatever the role's clean-up still does (a quarter
// of a shorter budget).
const releaseReserve = 10 * time.Second

// releaseTime is the end of the stop budget kept for deleting and releasing.
func (r *Runtime) releaseTime() time.Duration { return min(releaseReserve, r.StopBudget/4) }

// Runtime runs one worker's message loop.
type Runtime struct {
	Options

	mu       sync.Mutex
	held     map[string]*Message // by receipt handle
	reserved int                 // slots taken by receives in flight
	room     chan struct{}       // closed (and replaced) when a slot frees up

	// beat orders visibility changes: held by a heartbeat from its
	// snapshot to its change, and by a release around its own.
	beat sync.Mutex

	progress atomic.Int64
	handlers sync.WaitGroup
	acks     acks
	releases releases

	// cut is set when the drain time ends; shutdown (on mu) once
	// releaseHeld took what is still held.
	cut      atomic.Bool
	shutdown bool
	// late holds what polls brought after the stop, released once no
	// poll of this task is left to take it again (releaseLate).
	late []*Message
	// stopBy is when the stop budget ends (zero until the stop signal):
	// settling calls end by then.
	stopBy atomic.Pointer[time.Time]
}

// New returns a runtime; Run starts it.
func New(o Options) *Runtime {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	o.Receivers = max(o.Receivers, 1)
	if o.ReceiveMax <= 0 || o.ReceiveMax > receiveMax {
		o.ReceiveMax = receiveMax
	}
	o.MaxHeld = max(o.MaxHeld, 1)
	if o.StopBudget <= 0 {
		o.StopBudget = DefaultStopBudget
	}
	if o.ReceiveWait <= 0 || o.ReceiveWait > receiveWait {
		o.ReceiveWait = receiveWait
	}
	r := &Runtime{Options: o, held: map[string]*Message{}, room: make(chan struct{})}
	r.acks.rt = r
	r.acks.idle.L = &r.acks.mu
	r.acks.stopping = make(chan struct{})
	r.releases.rt = r
	r.releases.idle.L = &r.releases.mu
	return r
}

// Progress records that held work is moving (bytes read or written). A
// worker that holds all it may and reports no progress for the health
// check's limit is stuck.
func (r *Runtime) Progress() { r.progress.Add(1) }

// Moves returns how often held work has reported progress.
func (r *Runtime) Moves() int64 { return r.progress.Load() }

// Held returns how many messages are received and not yet settled.
func (r *Runtime) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// Run receives and hands messages to role until ctx ends, then drains:
// Handle calls finish, role.Drain gets the drain time, and what is still
// held is released.
func (r *Runtime) Run(ctx context.Context, role Role) error {
	// Work outlives ctx by the drain time, so a SIGTERM does not abort work
	// that is about to be durable.
	work, cancelWork := r.drainContext(ctx)
	defer cancelWork()
	role.Start(work)
	// Until the release, not the cut: messages left for shutdown stay
	// hidden while the role's clean-up runs.
	hb, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHB()
	go r.heartbeat(hb, ctx)
	go r.guard(ctx)

	r.Log.Info("receiving", zap.String("queue", r.Queue.URL()), zap.Int("receivers", r.Receivers), zap.Int("maxHeld", r.MaxHeld))
	var receivers sync.WaitGroup
	for range r.Receivers {
		receivers.Go(func() { r.receive(ctx, work, role) })
	}
	receivers.Wait()
	r.releaseLate()
	r.Log.Info("stopped receiving; draining", zap.Duration("drain", r.Drain))
	stopBy := r.stopped()
	reserve := r.releaseTime()
	// The work (a target's runs in Handle, a source's after it) and its
	// clean-up, until the release's reserve.
	if !r.within(stopBy.Add(-reserve), func() {
		r.handlers.Wait()
		role.Drain(work)
	}) {
		r.Log.Warn("stop budget nearly spent: releasing what is still held while the drain's clean-up goes on",
			zap.Duration("budget", r.StopBudget))
	}
	// Acknowledged messages are deleted, and settled ones released,
	// before anything still held is released.
	r.within(stopBy.Add(-reserve/2), func() {
		r.acks.wait()
		r.releases.wait()
	})
	stopHB()
	r.releaseHeld()
	r.Log.Info("stopped")
	return nil
}

// within runs f and waits for it until deadline; it reports whether f
// returned. Past the deadline f goes on, unwaited for.
func (r *Runtime) within(deadline time.Time, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-r.Clock.After(deadline.Sub(r.Clock.Now())):
		return false
	}
}

// stopped returns when the stop budget ends, counted from the first call:
// the stop signal's (drainContext), or Run's once receiving stopped.
func (r *Runtime) stopped() time.Time {
	by := r.Clock.Now().Add(r.StopBudget)
	r.stopBy.CompareAndSwap(nil, &by)
	return *r.stopBy.Load()
}

// bounded ends ctx by the stop budget's end, once the stop has come
// (counted on Clock, then waited in real time).
func (r *Runtime) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if by := r.stopBy.Load(); by != nil {
		return context.WithTimeout(ctx, by.Sub(r.Clock.Now()))
	}
	return ctx, func() {}
}

// drainContext returns the work context: not cancelled with stop, but
// r.Drain after it (logging that the drain time is over), or by cancel.
func (r *Runtime) drainContext(stop context.Context) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(stop))
	go func() {
		select {
		case <-stop.Done():
		case <-work.Done():
			return
		}
		r.stopped()
		t := r.Clock.NewTimer(r.Drain)
		defer t.Stop()
		select {
		case <-t.Chan():
			r.Log.Warn("drain time over: abandoning in-flight work", zap.Duration("drain", r.Drain))
			r.cut.Store(true)
			cancel()
		case <-work.Done():
		}
	}()
	return work, cancel
}

// receive is one long-poll loop.
func (r *Runtime) receive(stop, work context.Context, role Role) {
	answered := true // the last poll's
	moved := r.progress.Load()
	for stop.Err() == nil {
		n := r.reserve(stop)
		if n == 0 || stop.Err() != nil {
			r.unreserve(n)
			continue // stopping: no poll starts after the stop
		}
		if answered {
			// Only a loop whose polls get answers beats: a task whose
			// every receive fails (access denied, the queue or its key
			// gone) turns unhealthy and is replaced, not left logging.
			r.Health.Beat()
		}
		start := r.Clock.Now()
		qms, err := r.poll(work, n)
		r.Metrics.ReceiveDuration.Observe(r.Clock.Since(start).Seconds())
		// Held in the very step that frees their reservation: between the
		// two, another receiver (woken by a message forgotten) would see
		// the slots free and poll past MaxHeld.
		msgs := r.hold(work, qms, n)
		first := answered // a first failure: Receive makes one attempt
		answered = err == nil
		if stop.Err() != nil {
			if u, ok := role.(Untried); ok {
				for _, m := range msgs {
					if m.parseErr == nil {
						u.Untried(m)
					}
				}
			}
			late := make([]*Message, 0, len(msgs))
			r.mu.Lock()
			for _, m := range msgs {
				if m.done.CompareAndSwap(false, true) {
					r.markSendAgain(m)
					late = append(late, m)
				}
			}
			r.late = append(r.late, late...)
			r.mu.Unlock()
			return
		}
		if err != nil {
			if p := r.progress.Load(); p != moved {
				// Held work still moves: finishing it beats failing
				// receives, and a new task would fail them too.
				moved = p
				r.Health.Beat()
			}
			r.Metrics.Errors.WithLabelValues("receive").Inc()
			wait := receiveRetry
			if first {
				wait = firstReceiveRetry
				r.Log.Warn("receiving messages failed; retrying", zap.Duration("in", wait), zap.Error(err))
			} else {
				r.Log.Error("receiving messages", zap.Error(err))
			}
			r.sleep(stop, wait)
			continue
		}
		for _, m := range msgs {
			if r.parse(m) {
				r.handlers.Go(func() { role.Handle(stop, m) })
			}
		}
	}
}

// poll is one long poll for up to n messages. It is not cut short by the
// stop, nor by the end of a drain shorter than the wait: SQS goes on
// handing a cancelled poll messages that nobody then reads, hidden for a
// visibility timeout (aws-sdk-go-v2#2068). It ends by its wait (and a
// margin for the answer).
func (r *Runtime) poll(work context.Context, n int) ([]queue.Message, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(work), r.ReceiveWait+pollMargin)
	defer cancel()
	return r.Queue.Receive(ctx, n, r.ReceiveWait, r.Visibility)
}

// reserve waits until fewer than MaxHeld messages are held or being
// received, and takes up to receiveMax of the free slots. While it waits,
// the health check is fed only if held work makes progress.
func (r *Runtime) reserve(stop context.Context) int {
	t := r.Clock.NewTicker(progressCheck)
	defer t.Stop()
	last := r.progress.Load()
	for {
		r.mu.Lock()
		free := r.MaxHeld - len(r.held) - r.reserved
		room := r.room
		if free > 0 {
			n := min(free, r.ReceiveMax)
			r.reserved += n
			r.mu.Unlock()
			return n
		}
		r.mu.Unlock()
		select {
		case <-stop.Done():
			return 0
		case <-room:
		case <-t.Chan():
			// Waiting behind long work is not being stuck; holding
			// messages nothing moves is.
			if p := r.progress.Load(); p != last {
				last = p
				r.Health.Beat()
			}
		}
	}
}

func (r *Runtime) unreserve(n int) {
	r.mu.Lock()
	r.reserved -= n
	r.mu.Unlock()
}

// hold adds received messages to the held set in place of the reserved
// slots they were polled for.
func (r *Runtime) hold(work context.Context, qms []queue.Message, reserved int) []*Message {
	ms := make([]*Message, len(qms))
	now := r.Clock.Now()
	for i, qm := range qms {
		ctx, cancel := context.WithCancelCause(work)
		// WithLazy: the fields are encoded only if the message logs,
		// which most never do.
		ms[i] = &Message{Message: qm, ctx: ctx, cancel: cancel, rt: r, received: now, receivedAt: now, holdEnds: now.Add(r.Visibility),
			log: r.Log.WithLazy(zap.String("message", qm.ID), zap.Int("receiveCount", qm.ReceiveCount))}
		ms[i].Events, ms[i].parseErr = events.Parse([]byte(qm.Body)) // settled by parse, once held
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range ms {
		r.held[m.ReceiptHandle] = m
	}
	r.reserved -= reserved
	r.Metrics.Held.Set(float64(len(r.held))) // under mu: in the order of the changes
	return ms
}

// forget drops m from the held set and wakes a receiver waiting for room.
func (r *Runtime) forget(m *Message) {
	r.mu.Lock()
	delete(r.held, m.ReceiptHandle)
	r.Metrics.Held.Set(float64(len(r.held)))
	close(r.room)
	r.room = make(chan struct{})
	r.mu.Unlock()
	r.Progress()
}

// releaseLate releases what polls brought after the stop, untried. Only
// once every poll has ended: a message released while another receiver's
// long poll still waits would be taken by it, to be released again, one
// receive of its maxReceiveCount spent for nothing.
func (r *Runtime) releaseLate() {
	r.mu.Lock()
	late := r.late
	r.late = nil
	r.mu.Unlock()
	late = r.releaseThenSendAgain(late)
	if len(late) > 0 {
		r.Log.Info("released what the last poll brought after the stop", zap.Int("messages", len(late)))
	}
	r.lastReceives(late, "its last receive came after the stop, and it was released untried")
}

// releaseHeld releases every message still held: its work did not finish.
func (r *Runtime) releaseHeld() {
	r.mu.Lock()
	r.shutdown = true
	left := make([]*Message, 0, len(r.held))
	for _, m := range r.held {
		if m.done.CompareAndSwap(false, true) {
			// Marked to send again in the step that takes it, under the
			// lock SendAgainAtStop reads it with: a role asking
			// meanwhile is never told it is bound for the DLQ.
			r.markSendAgain(m)
			left = append(left, m)
		}
	}
	r.mu.Unlock()
	left = r.releaseThenSendAgain(left)
	if len(left) > 0 {
		r.Log.Info("released unfinished messages", zap.Int("messages", len(left)))
	}
	r.lastReceives(left, "still held at the stop, its work unfinished")
}

// deferrable reports whether m, its work cut or never started by the stop,
// is on its last receive and may be sent again as a new message rather
// than reach the DLQ untried: at most MaxReceiveCount times
// (queue.DeferredAttribute), so that work a task never gets to still
// reaches it. Not a body that does not parse (it is what fails). A relay
// counts its tries in its body, over the messages it was sent as: its
// role says when it is on its last, with the body to send (SendAgainAs).
// Under mu.
func (r *Runtime) deferrable(m *Message) bool {
	last := m.ReceiveCount >= r.MaxReceiveCount
	if m.Events.Relay != nil {
		last = m.againBody != ""
	}
	return r.MaxReceiveCount > 0 && last && m.Deferred < r.MaxReceiveCount && m.parseErr == nil
}

// SendAgainAs says that m, a relay, is on its last try, and sets the body
// it is sent again with if the stop sends it again (SendAgainAtStop, or
// its work still running at the release), its tries counted in it.
func (m *Message) SendAgainAs(body string) {
	m.rt.mu.Lock()
	defer m.rt.mu.Unlock()
	m.againBody = body
}

// markSendAgain marks m, just taken for the stop's release (under mu),
// to be sent again if it is deferrable (not if its role released it after
// the cut and said what became of it): from here a role asking is told
// (SentAgain), and the runtime says what becomes of it.
func (r *Runtime) markSendAgain(m *Message) {
	if r.deferrable(m) && !m.leftCut.Load() {
		m.sentAgain.Store(true)
	}
}

// releaseThenSendAgain releases msgs (marked done by the caller, their
// work undone for the stop, under markSendAgain), but for those marked to
// send again: they are sent again as new messages, ten to a call, and
// deleted, within the stop budget, after the others' release (which must
// not wait for them); those that could not be sent are released then,
// said at error. It returns the messages released.
func (r *Runtime) releaseThenSendAgain(msgs []*Message) []*Message {
	var rest, send []*Message
	for _, m := range msgs {
		if m.sentAgain.Load() {
			send = append(send, m)
		} else {
			rest = append(rest, m)
		}
	}
	r.release(0, rest)
	failed := r.sendAgain(send)
	r.release(0, failed)
	return append(rest, failed...)
}

// AfterPolls is how long until this task's polls in flight are over: a
// message sent again at the stop is visible no sooner, or one of them
// would take it back.
func (r *Runtime) AfterPolls() time.Duration { return r.ReceiveWait + pollMargin }

// sendAgain sends msgs again and deletes them (releaseThenSendAgain),
// returning those it could not send. The sends take at most half of what
// is left of the stop budget: the deletes, and the release of what failed,
// need the rest.
func (r *Runtime) sendAgain(send []*Message) []*Message {
	if len(send) == 0 {
		return nil
	}
	var rest []*Message
	rounds := (len(send) + queue.MaxBatch*queue.BatchCalls - 1) / (queue.MaxBatch * queue.BatchCalls)
	call := func(share float64, f func(ctx context.Context) ([]queue.Failure, error)) map[string]queue.Failure {
		limit := time.Duration(rounds) * settleTimeout
		if by := r.stopBy.Load(); by != nil {
			limit = min(limit, time.Duration(share*float64(by.Sub(r.Clock.Now()))))
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(limit, 0))
		defer cancel()
		failures, _ := f(ctx)
		failed := make(map[string]queue.Failure, len(failures))
		for _, f := range failures {
			failed[f.Message.ReceiptHandle] = f
		}
		return failed
	}
	// Visible once this task's polls in flight are over: one would take
	// a copy back, on its last receive again, spending a deferral.
	bodies := messagesOf(send)
	r.mu.Lock()
	for i, m := range send {
		if m.againBody != "" {
			bodies[i].Body = m.againBody
		}
	}
	r.mu.Unlock()
	notSent := call(0.5, func(ctx context.Context) ([]queue.Failure, error) {
		return r.Queue.SendAgainAll(ctx, r.AfterPolls(), bodies...)
	})
	var sent []*Message
	for _, m := range send {
		if f, ok := notSent[m.ReceiptHandle]; ok {
			// Released towards the DLQ, said at error there: a role
			// whose work ends later is no longer told it was sent.
			r.mu.Lock()
			m.sentAgain.Store(false)
			r.mu.Unlock()
			r.Metrics.Errors.WithLabelValues("send_again").Inc()
			m.log.Warn("message on its last receive, its work not done for the stop: sending it again failed", append(MessageFields(m.Events), zap.Error(f.Err))...)
			rest = append(rest, m)
			continue
		}
		sent = append(sent, m)
	}
	// Deleted in calls of their own: sending must not take their time. A
	// delete that fails leaves the old one to reach the DLQ beside its
	// copy, said below; the copy's work is harmless twice.
	notDeleted := call(0.5, func(ctx context.Context) ([]queue.Failure, error) { return r.Queue.Delete(ctx, messagesOf(sent)...) })
	for _, m := range sent {
		r.forget(m)
		m.cancel(context.Canceled)
		fields := append(MessageFields(m.Events), zap.Int("deferred", m.Deferred+1))
		r.Metrics.Messages.WithLabelValues("requeued").Inc()
		if f, ok := notDeleted[m.ReceiptHandle]; ok {
			r.Metrics.Errors.WithLabelValues("delete_message").Inc()
			m.log.Warn("message on its last receive sent again for the stop, but deleting it failed: it may also reach the DLQ", append(fields, zap.Error(f.Err))...)
			continue
		}
		r.Metrics.Messages.WithLabelValues("acked").Inc()
		m.log.Info("message on its last receive, its work not done for the stop: sent again as a new message", fields...)
	}
	return rest
}

func messagesOf(ms []*Message) []queue.Message {
	out := make([]queue.Message, len(ms))
	for i, m := range ms {
		out[i] = m.Message
	}
	return out
}

// SendAgainAtStop reports whether m, on its last receive and its work
// never started or cut by the stop, is sent again as a new message when
// the worker releases what it still holds (in batches, within the stop
// budget; a failed send said there), rather than released to reach the
// DLQ untried: its role then leaves m as it is. False if it is not on its
// last receive (a relay: its last try, SendAgainAs) or was sent again
// MaxReceiveCount times already: its role settles it as before.
func (m *Message) SendAgainAtStop() bool {
	// Under the lock the stop's release marks it with: not between its
	// taking the message and its marking.
	m.rt.mu.Lock()
	defer m.rt.mu.Unlock()
	if m.sentAgain.Load() {
		return true // the stop's release took it, its work running past the budget
	}
	return m.rt.deferrable(m) && !m.done.Load()
}

// SentAgain reports whether the stop's release took m to send it again
// (its work ran past the stop budget): a role that ends its work after
// that must not settle it, nor say it is bound for the DLQ.
func (m *Message) SentAgain() bool {
	m.rt.mu.Lock()
	defer m.rt.mu.Unlock()
	return m.sentAgain.Load()
}

// lastReceives logs, for each of msgs released on its last receive, the
// line an operator redrives from, as every path to the DLQ has, unless
// its role released it and said so itself.
func (r *Runtime) lastReceives(msgs []*Message, cause string) {
	for _, m := range msgs {
		if r.MaxReceiveCount > 0 && m.ReceiveCount >= r.MaxReceiveCount && !m.leftCut.Load() {
			m.log.Error("message not acknowledged: bound for the DLQ", append(MessageFields(m.Events), zap.Bool("cut", true), zap.String("cause", cause))...)
		}
	}
}

func (r *Runtime) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-r.Clock.After(d):
	}
}

// ErrReceiptLost is the cause of a message context cancelled because SQS no
// longer accepts the message's receipt: it is, or will be, delivered again,
// and whatever this delivery does can no longer be acknowledged.
var ErrReceiptLost = errors.New("message receipt lost")
