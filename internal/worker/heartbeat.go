package worker

import (
	"context"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/queue"
)

// heartbeat extends every held message's visibility each third of it. A
// message whose receipt is gone is dropped and its work cancelled; other
// failures are logged and counted, and tried again on the next beat.
func (r *Runtime) heartbeat(ctx context.Context) {
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
		// leave the next beats undone.
		bctx, cancel := context.WithCancel(ctx)
		timer := r.Clock.AfterFunc(r.Visibility/3, cancel)
		failures, err := r.Queue.ChangeVisibility(bctx, r.Visibility, held...)
		timer.Stop()
		cancel()
		r.beat.Unlock()
		if err != nil && ctx.Err() == nil {
			r.Metrics.Errors.WithLabelValues("heartbeat").Inc()
			r.Log.Warn("extending the visibility of held messages", zap.Int("messages", len(held)), zap.Error(err))
		}
		for _, f := range failures {
			m := byReceipt[f.Message.ReceiptHandle]
			switch {
			case f.ReceiptGone():
				m.lose(f.Err)
			case f.Code != "": // whole-call failures were counted above
				r.Metrics.Errors.WithLabelValues("heartbeat").Inc()
				m.log.Warn("extending the visibility of a held message", zap.Error(f.Err))
			}
		}
	}
}
