package lambda

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/worker"
)

// message is the queue.Message a record of an event source mapping
// stands for: its receipt, receive count and when it entered the queue.
func message(r events.SQSMessage) queue.Message {
	m := queue.Message{ID: r.MessageId, Body: r.Body, ReceiptHandle: r.ReceiptHandle}
	m.ReceiveCount, _ = strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	if ms, err := strconv.ParseInt(r.Attributes["SentTimestamp"], 10, 64); err == nil {
		m.SentAt = time.UnixMilli(ms)
	}
	if a, ok := r.MessageAttributes[queue.DeferredAttribute]; ok && a.StringValue != nil {
		m.Deferred, _ = strconv.Atoi(*a.StringValue)
	}
	return m
}

// mostReceivedFirst orders records by how often SQS handed them out, most
// first, otherwise as they came. Work the cut leaves to the next
// invocation spends a receive like a failure does: it should fall on the
// messages furthest from the DLQ.
func mostReceivedFirst(recs []events.SQSMessage) []events.SQSMessage {
	receives := func(r events.SQSMessage) int {
		n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
		return n
	}
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b events.SQSMessage) int { return receives(b) - receives(a) })
	return out
}

// Releaser makes messages visible again after a delay, and sends one
// never started on its last receive again; *queue.Queue satisfies it.
type Releaser interface {
	ChangeVisibility(ctx context.Context, d time.Duration, msgs ...queue.Message) ([]queue.Failure, error)
	SendAgainAll(ctx context.Context, delay time.Duration, msgs ...queue.Message) ([]queue.Failure, error)
}

// again reports whether a message whose work was never started (the
// deadline's pace left it out) on its receive number maxReceive, its last,
// is sent again as a new message rather than left to reach the DLQ
// untried: at most maxReceive times, so that a function that never gets
// to it (a batch too large for its timeout) still sends it there.
func again(m queue.Message, untried bool, maxReceive int) bool {
	return untried && maxReceive > 0 && m.ReceiveCount >= maxReceive && m.Deferred < maxReceive
}

// releaseTimeout bounds releasing an invocation's failed messages; the
// margin before the deadline leaves room for it.
const releaseTimeout = 5 * time.Second

// outcome is what became of one message of a batch.
type outcome struct {
	msg queue.Message
	err error
	// fields name what failed, for its line (source.FailureFields,
	// deliver.FailureFields).
	fields []zap.Field
	// now: no retry can help, or the deadline stopped its work; it comes
	// back at once (towards the DLQ in the first case) rather than after
	// the worker's backoff.
	now bool
	// wait is the least time it waits before it comes back
	// (deliver.RetryDelay).
	wait time.Duration
	// final: bound for the DLQ (no retry can help, or this was its last
	// receive); expected: a wait or the deadline, nothing wrong. They set
	// the level of its line: error is what an operator acts on.
	final, expected bool
	// again: never started, on its last receive: sent again as a new
	// message and acknowledged (Releaser.SendAgainAll), unless that fails.
	again bool
}

// respond reports the failed outcomes and releases them (best effort: a
// message not released comes back after its visibility timeout anyway),
// or sends them again (outcome.again).
func respond(ctx context.Context, outs []outcome, q Releaser, m *worker.Metrics, log *zap.Logger) events.SQSEventResponse {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	byDelay := map[time.Duration][]queue.Message{}
	// Within the invocation's own deadline too: work that outlived the
	// margin (a clean-up that runs to completion whatever the cut, under
	// throttling) must not have the release time the invocation out, which
	// would bring the whole batch back, its done messages with it.
	end := time.Now().Add(releaseTimeout)
	if d, ok := ctx.Deadline(); ok && d.Add(-time.Second).Before(end) {
		end = d.Add(-time.Second)
	}
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end)
	defer cancel()
	// Those sent again go together, ten to a call, in half the time: the
	// releases need the rest.
	var again []queue.Message
	for _, o := range outs {
		if o.err != nil && o.again {
			again = append(again, o.msg)
		}
	}
	notSent := map[string]error{}
	if len(again) > 0 && q != nil {
		sctx, cancel := context.WithDeadline(rctx, time.Now().Add(time.Until(end)/2))
		failures, _ := q.SendAgainAll(sctx, 0, again...)
		cancel()
		for _, f := range failures {
			notSent[f.Message.ID] = f.Err
		}
	}
	for _, o := range outs {
		if o.err == nil {
			m.Messages.WithLabelValues("acked").Inc()
			continue
		}
		if o.again && q == nil {
			o.again, o.final = false, true
		}
		if o.again {
			fields := append(o.fields, zap.String("message", o.msg.ID), zap.Int("receiveCount", o.msg.ReceiveCount), zap.Int("deferred", o.msg.Deferred+1))
			err := notSent[o.msg.ID]
			if err == nil {
				// Acknowledged: not reported.
				m.Messages.WithLabelValues("acked").Inc()
				m.Messages.WithLabelValues("requeued").Inc()
				log.Info("message not started on its last receive: sent again as a new message", fields...)
				continue
			}
			o.again, o.final = false, true
			m.Errors.WithLabelValues("send_again").Inc()
			log.Warn("message not started on its last receive; sending it again failed", append(fields, zap.Error(err))...)
		}
		m.Messages.WithLabelValues("released").Inc()
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: o.msg.ID})
		delay := max(worker.Backoff(o.msg.ReceiveCount), o.wait)
		if o.now {
			delay = 0
		}
		byDelay[delay] = append(byDelay[delay], o.msg)
		lvl, msg := zapcore.WarnLevel, "message not done: reported for redelivery"
		switch {
		case o.final:
			lvl, msg = zapcore.ErrorLevel, "message not done: bound for the DLQ"
		case o.expected:
			lvl = zapcore.InfoLevel
		}
		log.Log(lvl, msg, append(o.fields, zap.String("message", o.msg.ID), zap.Int("receiveCount", o.msg.ReceiveCount),
			zap.Duration("retryIn", delay), zap.Error(o.err))...)
	}
	if q == nil || len(byDelay) == 0 {
		return resp
	}
	if time.Until(end) <= 0 {
		m.Errors.WithLabelValues("release_message").Add(float64(len(resp.BatchItemFailures)))
		log.Warn("no time left to release messages: they come back after their visibility timeout", zap.Int("messages", len(resp.BatchItemFailures)))
		return resp
	}
	for delay, msgs := range byDelay {
		if failures, _ := q.ChangeVisibility(rctx, delay, msgs...); len(failures) > 0 {
			m.Errors.WithLabelValues("release_message").Add(float64(len(failures)))
			log.Warn("releasing messages failed: they come back after their visibility timeout", zap.Int("messages", len(failures)), zap.Error(failures[0].Err))
		}
	}
	return resp
}
