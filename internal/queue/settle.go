package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
)

// settleTimeout bounds acknowledging or releasing one message.
const settleTimeout = 5 * time.Second

// Settler ends a message's stay with a worker, the same way for both
// workers: it acknowledges or releases it, counts the outcome and logs what
// went wrong. It never deletes a message it was not told to acknowledge.
type Settler struct {
	Queue    *Queue
	Log      *zap.Logger
	Messages *prometheus.CounterVec // by result: acked, released, invalid, test
	Errors   *prometheus.CounterVec // by kind
}

// settling returns a context that outlives ctx: a worker's work context is
// cancelled when its drain time is over, and a message abandoned then must
// still be released, or it stays hidden until its visibility timeout ends.
func settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// Ack deletes m: call it only once its work is durable. A failure is logged,
// not returned: the work is done and a redelivery only repeats it.
func (s Settler) Ack(ctx context.Context, m Message) {
	ctx, cancel := settling(ctx)
	defer cancel()
	if err := s.Queue.Delete(ctx, m); err != nil {
		s.Errors.WithLabelValues("delete_message").Inc()
		s.Log.Warn("acknowledging message", zap.String("message", m.ID), zap.Error(err))
		return
	}
	s.Messages.WithLabelValues("acked").Inc()
}

// Release hands m back for another try after delay. A failure is logged: the
// visibility timeout redelivers it anyway.
func (s Settler) Release(ctx context.Context, m Message, delay time.Duration) {
	ctx, cancel := settling(ctx)
	defer cancel()
	s.Messages.WithLabelValues("released").Inc()
	if err := s.Queue.Release(ctx, delay, m); err != nil {
		s.Log.Warn("releasing message", zap.String("message", m.ID), zap.Error(err))
	}
}

// Parse decodes m's S3 event body. An invalid body is released at once (no
// retry can fix it, but only the dead-letter queue may keep it, which it
// reaches after maxReceiveCount quick retries) and S3's test event is
// acknowledged; ok is false for both, as nothing is left to do.
func (s Settler) Parse(ctx context.Context, m Message) (msg events.Message, ok bool) {
	log := s.Log.With(zap.String("message", m.ID), zap.Int("receiveCount", m.ReceiveCount))
	parsed, err := events.Parse([]byte(m.Body))
	switch {
	case err != nil:
		s.Messages.WithLabelValues("invalid").Inc()
		log.Error("invalid message: releasing it towards the dead-letter queue", zap.Error(err))
		s.Release(ctx, m, 0)
		return events.Message{}, false
	case parsed.Test:
		s.Messages.WithLabelValues("test").Inc()
		log.Info("s3:TestEvent received: notifications are wired")
		s.Ack(ctx, m)
		return events.Message{}, false
	}
	return parsed, true
}
