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
	"github.com/xrc-dev/xrc/internal/deliver"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/worker"
)

// Deliverer is the target worker's per-archive step (*deliver.Worker).
type Deliverer interface {
	DeliverVersion(ctx context.Context, bucket, key, version string) error
}

// abandoner is a Deliverer that keeps state for an archive's next delivery
// (resumable uploads) and must drop it when there will be none.
type abandoner interface {
	Abandon(ctx context.Context, key string)
}

// archivesAtOnce is how many archives an invocation delivers at once, as
// the Fargate target worker does: each already overlaps its writes.
const archivesAtOnce = config.TargetArchivesAtOnce

// Target handles a batch of the target queue: one archive per message,
// delivered by the target worker's own per-archive step. Large members
// stream from the archive into multipart uploads; nothing touches /tmp.
type Target struct {
	d          Deliverer
	staging    string
	maxReceive int
	visibility time.Duration
	q          Releaser
	margin     time.Duration
	log        *zap.Logger
	metrics    *worker.Metrics
	clock      clockwork.Clock
	pace       pace
}

// TargetOptions are a Target's collaborators.
type TargetOptions struct {
	Deliverer Deliverer
	// Staging is the region's staging bucket: events of other buckets are
	// ignored, as the Fargate worker ignores them.
	Staging string
	// MaxReceive is the queue's maxReceiveCount: a message failing its
	// last delivery has state the deliverer must drop (abandoner).
	MaxReceive int
	// Visibility is settings.worker.visibilityTimeout: how long a retag
	// that found its write not delivered yet waits (deliver.RetryDelay).
	Visibility time.Duration
	Queue      Releaser
	Margin     time.Duration // settings.lambda.margin
	Log        *zap.Logger
	Metrics    *worker.Metrics
	Clock      clockwork.Clock // default: the real clock
}

// NewTarget returns the target role's handler.
func NewTarget(o TargetOptions) *Target {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	return &Target{d: o.Deliverer, staging: o.Staging, maxReceive: o.MaxReceive, visibility: o.Visibility, q: o.Queue, margin: o.Margin, log: o.Log, metrics: o.Metrics, clock: o.Clock}
}

// Handle delivers the archives ev's messages announce and reports the
// messages whose archives are not delivered.
func (h *Target) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	work, cancel, at := cut(ctx, h.margin)
	defer cancel()
	outs := make([]outcome, len(ev.Records))
	// The first message announcing an archive, the most received, is the
	// one that starts whatever the pace says (begins).
	type job struct {
		out   *outcome
		refs  []xevents.ObjectRef
		bytes int64
	}
	var jobs []job
	for i, rec := range mostReceivedFirst(ev.Records) {
		outs[i].msg = message(rec)
		if refs, bytes := h.archives(&outs[i], rec.Body); len(refs) > 0 {
			jobs = append(jobs, job{&outs[i], refs, bytes})
		}
	}
	sem := make(chan struct{}, archivesAtOnce)
	var wg sync.WaitGroup
	for n, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h.handle(work, at, n == 0, j.out, j.refs, j.bytes)
		})
	}
	wg.Wait()
	return respond(ctx, outs, h.q, h.metrics, h.log), nil
}

// archives returns the staging archives one message announces, with their
// bytes; a message announcing none is settled in o.
func (h *Target) archives(o *outcome, body string) ([]xevents.ObjectRef, int64) {
	parsed, err := xevents.Parse([]byte(body))
	switch {
	case err != nil:
		h.metrics.Messages.WithLabelValues("invalid").Inc()
		o.err, o.now, o.final = fmt.Errorf("message %s: %w", o.msg.ID, err), true, true
		return nil, 0
	case parsed.Test:
		h.metrics.Messages.WithLabelValues("test").Inc()
		h.log.Info("s3:TestEvent received: notifications are wired", zap.String("message", o.msg.ID))
		return nil, 0
	case parsed.Relay != nil:
		h.metrics.Messages.WithLabelValues("invalid").Inc()
		o.err, o.now, o.final = fmt.Errorf("message %s: %w: a source's relay message (for %s) on a target queue", o.msg.ID, xevents.ErrInvalid, parsed.Relay.Key), true, true
		return nil, 0
	}
	var refs []xevents.ObjectRef
	var bytes int64
	for _, ref := range parsed.Refs {
		// Our own cleanup, a replicated delete marker; or a tag set on an
		// archive (the delivered tag while replication still copies it,
		// on a store whose ObjectCreated:* notifications include
		// tagging): its bytes are what was delivered, and delivering
		// them again would tag it again, without end.
		if ref.Removed() || ref.Retagged() {
			h.metrics.Messages.WithLabelValues("ignored").Inc()
			continue
		}
		if err := deliver.CheckStaging(h.staging, ref); err != nil {
			o.err, o.now, o.final = errors.Join(o.err, err), true, true
			o.fields = deliver.FailureFields([]xevents.ObjectRef{ref}, o.err)
			continue
		}
		refs = append(refs, ref)
		bytes += max(ref.Size, 0)
	}
	return refs, bytes
}

// handle delivers the archives of one message into o.
func (h *Target) handle(ctx context.Context, at time.Time, first bool, o *outcome, refs []xevents.ObjectRef, bytes int64) {
	log := h.log.With(zap.String("message", o.msg.ID), zap.Int("receiveCount", o.msg.ReceiveCount))
	start := h.clock.Now()
	if est := h.pace.estimate(bytes, len(refs)); ctx.Err() != nil || !begins(first, start, at, est) {
		log.Info("deadline near: leaving an archive to the next invocation", zap.Duration("estimate", est), zap.Time("cutAt", at))
		if o.err != nil {
			// One of its records already refused (CheckStaging): bound for
			// the DLQ, as it is.
			o.err = errors.Join(o.err, ErrDeadline)
			return
		}
		o.err, o.now, o.expected = ErrDeadline, true, true
		o.again = again(o.msg, true, h.maxReceive)
		o.final = o.msg.ReceiveCount >= h.maxReceive && !o.again
		o.fields = deliver.FailureFields(refs, o.err)
		return
	}
	permanent := true
	// An archive rejected wrote nothing: any upload recorded under its key
	// is the genuine archive's, not to abandon.
	var ours []xevents.ObjectRef
	for _, ref := range refs {
		err := h.d.DeliverVersion(ctx, ref.Bucket, ref.Key, ref.VersionID)
		if err != nil {
			o.err = errors.Join(o.err, err)
			permanent = permanent && deliver.Permanent(err)
		}
		if !errors.Is(err, deliver.ErrRejected) {
			ours = append(ours, ref)
		}
	}
	o.final = permanent || o.msg.ReceiveCount >= h.maxReceive
	if o.err != nil {
		o.fields = deliver.FailureFields(refs, o.err)
	}
	switch {
	case o.err == nil:
		h.pace.observe(bytes, len(refs), h.clock.Since(start))
	case ctx.Err() != nil:
		// Cut by the deadline: nothing is wrong with the archive.
		o.now, o.expected = true, true
	case deliver.Waiting(o.err):
		// Another delivery of the archive (a duplicate event, or a Fargate
		// task of a hybrid region) is writing its large objects, or a
		// retag waits for its write: the uploads are the other's, not to
		// abandon, even on this message's last receive.
		o.expected = true
		o.wait = deliver.RetryDelay(o.err, o.msg.ReceiveCount, h.visibility)
	default:
		o.now = permanent
		o.wait = deliver.RetryDelay(o.err, o.msg.ReceiveCount, h.visibility)
		if a, ok := h.d.(abandoner); ok && o.final {
			// No later delivery will resume this one's work.
			h.abandon(ctx, a, at, ours, log)
		}
	}
}

// abandon drops the resumable state of refs' archives, waiting for it no
// later than half the margin past the cut (the other half is the
// releases'): past the deadline the whole batch would come back, what it
// delivered included. What is not done by then (S3 or the table slow) is
// left: a redrive resumes those uploads, and the sweep aborts them once
// their archive has left staging.
func (h *Target) abandon(ctx context.Context, a abandoner, at time.Time, refs []xevents.ObjectRef, log *zap.Logger) {
	// Ended when given up: a frozen environment thawed by a later
	// invocation must not go on aborting uploads a redrive may be resuming.
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, ref := range refs {
			if actx.Err() != nil {
				return
			}
			a.Abandon(actx, ref.Key)
		}
	}()
	if at.IsZero() {
		<-done
		return
	}
	select {
	case <-done:
	case <-h.clock.After(at.Add(h.margin / 2).Sub(h.clock.Now())):
		log.Warn("abandoning the archive's uploads did not end in time: left for a redrive to resume, or the sweep to abort")
	}
}
