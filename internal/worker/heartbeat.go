package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/jonboulle/clockwork"
	"github.com/xrc-dev/xrc/internal/queue"
)

// beatGrace is how long a beat in flight when the heartbeat stops may go
// on: the final release waits for it.
const beatGrace = 2 * time.Second

// refusal reports whether f says SQS did not extend the message: an
// entry's error, a message not sent (past SQS's 12 hours), or a call SQS
// answered with an error (throttled). A call cut or unanswered (a
// timeout, a reset connection) may have been applied.
func refusal(f queue.Failure) bool {
	var ae smithy.APIError
	return f.Code != "" || errors.As(f.Err, &ae)
}

// holdEnd is when a hold extended at now by visibility runs out: a whole
// visibility on, but not past SQS's cap, queue.MaxVisibility from the
// receive, less the minute the queue keeps short of it (what it asks for
// there): taken as a whole visibility, a hold near the cap was counted
// hours past it, and a message SQS showed again was worked on while
// another task had it.
func holdEnd(now, received time.Time, visibility time.Duration) time.Time {
	end := now.Add(visibility)
	if last := received.Add(queue.MaxVisibility - time.Minute); !received.IsZero() && end.After(last) {
		return last
	}
	return end
}

// errHoldLapsed is why a message whose visibility ran out, its
// extensions refused, is dropped.
var errHoldLapsed = errors.New("its visibility ran out, its extensions refused: SQS may have handed it to another worker")

// heartbeat extends every held message's visibility each third of it,
// until ctx ends; stop is the stop signal. A message whose receipt is
// gone is dropped and its work cancelled, and so is one whose visibility
// ran out while SQS refused its extensions (before the stop); other
// failures are logged and counted, and tried again on the next beat.
func (r *Runtime) heartbeat(ctx, stop context.Context) {
	t := r.Clock.NewTicker(r.Visibility / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		// Under beat: a release (message.go) waits for this beat's change.
		r.beat.Lock()
		if ctx.Err() != nil { // stopped while the tick was taken: no new beat
			r.beat.Unlock()
			return
		}
		if by := r.stopBy.Load(); by != nil && !r.Clock.Now().Before(by.Add(-r.releaseTime())) {
			// Past the release's reserve: the release comes before any
			// visibility this beat would buy runs out.
			r.beat.Unlock()
			continue
		}
		now := r.Clock.Now()
		// Not once the stop has come: its release settles what is held,
		// and its beats may be skipped or cut.
		running := r.stopBy.Load() == nil
		r.mu.Lock()
		held := make([]queue.Message, 0, len(r.held))
		byReceipt := make(map[string]*Message, len(r.held))
		for h, m := range r.held {
			held = append(held, m.Message)
			byReceipt[h] = m
		}
		r.mu.Unlock()
		if len(held) == 0 {
			r.beat.Unlock()
			continue
		}
		// Bounded by the next beat: the SDK sets no response timeout,
		// and a call that hangs would hold beat, so every release, and
		// leave the next beats undone. Once the stop has come (before
		// or during the beat), by the release's reserve too, and by
		// beatGrace after the heartbeat's own stop, which comes right
		// before the final release: not cut at once, as a change
		// cancelled in flight may still reach SQS after that release and
		// hide the released messages again.
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var timersMu sync.Mutex
		timers := []clockwork.Timer{r.Clock.AfterFunc(r.Visibility/3, cancel)}
		cut := func(d time.Duration) {
			timersMu.Lock()
			timers = append(timers, r.Clock.AfterFunc(d, cancel))
			timersMu.Unlock()
		}
		stopReserve := context.AfterFunc(stop, func() { cut(r.stopped().Add(-r.releaseTime()).Sub(r.Clock.Now())) })
		stopGrace := context.AfterFunc(ctx, func() { cut(beatGrace) })
		failures, err := r.Queue.ChangeVisibility(bctx, r.Visibility, held...)
		stopReserve()
		stopGrace()
		timersMu.Lock()
		for _, t := range timers {
			t.Stop()
		}
		timersMu.Unlock()
		cancel()
		r.beat.Unlock()
		if err != nil && ctx.Err() == nil {
			r.Metrics.Errors.WithLabelValues("heartbeat").Inc()
			r.Log.Warn("extending the visibility of held messages", zap.Int("messages", len(held)), zap.Error(err))
		}
		refused := make(map[string]bool, len(failures))
		for _, f := range failures {
			refused[f.Message.ReceiptHandle] = refusal(f)
		}
		var lapsed []*Message
		r.mu.Lock()
		for h, m := range byReceipt {
			switch {
			case !refused[h]:
				// Extended, or perhaps (a call cut by its bound, or
				// unanswered, may have been applied): from now at
				// least, as SQS counts from its answer.
				if end := holdEnd(now, m.receivedAt, r.Visibility); end.After(m.holdEnds) {
					m.holdEnds = end
				}
			case running && !now.Before(m.holdEnds):
				// Refused, and the last extension ran out: SQS may
				// have handed it to another worker already, whose work
				// would race this one, and whose receipt makes this
				// one's delete a no-op counted acknowledged.
				lapsed = append(lapsed, m)
			}
		}
		r.mu.Unlock()
		for _, f := range failures {
			m := byReceipt[f.Message.ReceiptHandle]
			switch {
			case f.ReceiptGone():
				m.lose(f.Err)
			case f.Code != "": // whole-call failures were counted above
				r.Metrics.Errors.WithLabelValues("heartbeat").Inc()
				m.log.Warn("extending the visibility of a held message", append(MessageFields(m.Events), zap.Error(f.Err))...)
			}
		}
		for _, m := range lapsed {
			m.lose(errHoldLapsed) // after a gone receipt's own (once)
		}
	}
}
