package source

import (
	"context"
	"errors"
	"sync"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/worker"
)

// ErrUnroutable marks an object no retry can replicate (its key maps to no
// valid destination key): its message goes to the dead-letter queue
// without waiting out the retry backoff.
var ErrUnroutable = errors.New("object cannot be replicated")

// ErrTooLarge marks an object whose staging upload would need more memory
// than the task may give it (Deps.UploadMemory): no retry on a task of this
// size can fix it, and its message goes to the dead-letter queue as
// ErrUnroutable's does, rather than crash task after task.
var ErrTooLarge = errors.New("object too large for this task's memory")

// ErrArchived marks an object in an archive storage class (GLACIER,
// DEEP_ARCHIVE, or an archive tier of INTELLIGENT_TIERING) and not
// restored: S3 refuses to read it, whoever asks how often, so its message
// goes to the dead-letter queue at once, to be redriven once restored.
var ErrArchived = errors.New("object archived: not readable until restored")

// ErrCustomerKey marks an object encrypted with a customer-provided key
// (SSE-C): only its writer holds the key, and S3 refuses it to xrc however
// often it asks.
var ErrCustomerKey = errors.New("object encrypted with a customer-provided key (SSE-C): xrc cannot read it")

// Permanent reports a failure no retry can fix: its message goes back at
// once, towards the dead-letter queue.
func Permanent(err error) bool {
	return errors.Is(err, ErrUnroutable) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrArchived) || errors.Is(err, ErrCustomerKey)
}

// tracked follows one message until all its events are settled.
type tracked struct {
	w   *Worker
	msg *worker.Message

	mu        sync.Mutex
	staged    []Staging // what the message's objects added to the statistics
	pending   int
	failed    error
	permanent bool // every failure is one no retry can fix
	unstarted bool // every failure is an event refused for the stop
	stopped   bool // every failure is the stop's: refused, or its work cancelled
	started   bool // an event of it settled without failing
}

// Staging is what one staged object added to its rule's statistics
// (Item.Staged).
type Staging struct {
	Rule  string
	Delta stats.Delta
}

// record keeps what a staging of one of the message's objects added to
// the statistics (Item.Staged).
func (t *tracked) record(rule string, d stats.Delta) {
	t.mu.Lock()
	t.staged = append(t.staged, Staging{rule, d})
	t.mu.Unlock()
}

// Restaged tells the statistics that the objects of a message not
// acknowledged, which will come back, will be staged again (Item.Staged).
func (w *Worker) Restaged(staged []Staging) {
	byRule := map[string][]stats.Delta{}
	for _, s := range staged {
		byRule[s.Rule] = append(byRule[s.Rule], s.Delta)
	}
	for rule, ds := range byRule {
		w.levels.restaged(rule, ds, w.Clock.Now())
	}
}

// settle records the outcome of one of the message's events; when none is
// pending any more, the message is acknowledged (all succeeded) or released.
func (t *tracked) settle(err error) {
	t.mu.Lock()
	t.pending--
	if err == nil {
		t.started = true
	}
	if err != nil {
		if t.failed == nil {
			t.permanent, t.unstarted, t.stopped = true, true, true
		}
		t.failed = errors.Join(t.failed, err)
		t.permanent = t.permanent && Permanent(err)
		t.unstarted = t.unstarted && errors.Is(err, errStopping)
		t.stopped = t.stopped && (errors.Is(err, errStopping) || errors.Is(err, context.Canceled))
	}
	// Started: an event of it done, or staged (an archive staged whose
	// direct copy then failed).
	done, failed, permanent, unstarted, stopped, started, staged := t.pending == 0, t.failed, t.permanent, t.unstarted, t.stopped, t.started || len(t.staged) > 0, t.staged
	t.mu.Unlock()
	if !done {
		return
	}
	if failed == nil {
		t.msg.Ack()
		return
	}
	if t.msg.SentAgain() {
		// The stop's release sent it again (its work ran past the
		// budget): nothing here settles it.
		t.msg.Log().Info("message's work ended after the stop sent it again", zap.Error(failed))
		return
	}
	received := t.msg.ReceiveCount
	if r := t.msg.Events.Relay; r != nil {
		received = RelayTries(*r, t.msg.ReceiveCount, t.w.Config.Settings.Worker.MaxReceiveCount) // its earlier messages' receives too
	}
	comesBack := received < t.w.Config.Settings.Worker.MaxReceiveCount
	if comesBack {
		// What of it was staged is staged again.
		t.w.Restaged(staged)
	}
	if unstarted && !started && !comesBack && t.msg.SendAgainAtStop() {
		// Never started, on its last receive: sent again at the stop
		// rather than left to reach the DLQ untried (at most
		// maxReceiveCount times).
		return
	}
	if unstarted && comesBack {
		// Every failure was the stop refusing to start its work:
		// released with the rest at the stop (what of it was staged is
		// staged again on the next receive; the targets skip its objects
		// as already written).
		t.msg.Leave()
		return
	}
	delay := worker.Backoff(t.msg.ReceiveCount)
	if t.msg.Events.Relay != nil {
		delay = t.w.relayBackoff(received)
	}
	if permanent || t.msg.Events.Relay != nil && !comesBack {
		delay = 0 // towards the DLQ (a relay with receives of its own left)
	}
	cut := t.msg.Context().Err() != nil
	if cut && stopped && !started && !comesBack && t.msg.SendAgainAtStop() {
		// Its work cut by the stop on its last receive, nothing else
		// wrong, nothing of it done: sent again at the stop rather than
		// left to reach the DLQ for the stop (at most maxReceiveCount
		// times; a relay with its tries, handleRelay).
		t.msg.Log().Info("message's work cut by the stop on its last receive: to be sent again as a new message", zap.Error(failed))
		return
	}
	switch {
	case errors.Is(context.Cause(t.msg.Context()), worker.ErrReceiptLost):
		// Another receive holds it now; on its last receive, the
		// runtime said at error that it is bound for the DLQ.
		t.msg.Log().Info("message not acknowledged: its receipt was lost", zap.Error(failed))
	case permanent || !comesBack:
		// The line an operator redrives from, cut short or not: it names
		// the objects (an error staging the archive names none) and the
		// kind of failure.
		t.msg.Log().Error("message not acknowledged: bound for the DLQ", append(FailureFields(t.msg.Events, failed),
			zap.Bool("permanent", permanent), zap.Bool("cut", cut), zap.Error(failed))...)
	case cut:
		// Stopping (the drain time is over) or the receipt was lost:
		// nothing is wrong with the objects.
		t.msg.Log().Info("message not acknowledged: its work was cut short", zap.Error(failed))
	default:
		t.msg.Log().Warn("message not acknowledged: it will be retried", append(FailureFields(t.msg.Events, failed),
			zap.Duration("retryIn", delay), zap.Error(failed))...)
	}
	t.msg.Release(delay)
}

// FailureFields name, for the line that settles a message not
// acknowledged, the objects its events announce (an error staging their
// archive names none) and the kind of failure, on Fargate and Lambda
// alike: bucket and key for one object, the first of several; for a relay
// message, the archive and its direct region (kind relay).
func FailureFields(m events.Message, err error) []zap.Field {
	kind := errorKind(err)
	if m.Relay != nil {
		kind = "relay"
	}
	return append(worker.MessageFields(m), zap.String("kind", kind))
}
