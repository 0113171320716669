package deliver

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/uploads"
	"github.com/xrc-dev/xrc/internal/worker"
)

// A task killed during the last delivery of an archive leaves an upload
// nobody resumes: Abandon never ran. Every task therefore sweeps the
// region's recorded uploads when it starts and every sweepEvery, aborting
// those whose staging archive is gone (delivered, or expired with its
// message in the DLQ): no delivery can come back to them. An upload whose
// archive is still in staging is kept, for a redrive from the DLQ to
// resume.
const (
	sweepEvery = 10 * time.Minute
	// sweepMinAge spares uploads just recorded, whatever their archive.
	sweepMinAge = 10 * time.Minute
	// sweepCallTimeout bounds each of the sweep's calls, so that one in
	// flight when Lambda froze the environment is told from a failure
	// at the thaw (worker.Frozen).
	sweepCallTimeout = 30 * time.Second
)

func (w *Worker) sweepLoop(ctx context.Context) {
	t := w.Clock.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		w.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}

func (w *Worker) sweep(ctx context.Context) {
	start := w.Clock.Now()
	lctx, cancel := context.WithTimeout(ctx, sweepCallTimeout)
	us, err := w.Uploads.List(lctx, w.Region, "")
	cancel()
	if err != nil && (ctx.Err() != nil || worker.Frozen(w.Clock, start, sweepCallTimeout)) {
		return // stopping, or frozen mid-call: the next sweep goes on
	}
	if err != nil {
		w.Metrics.Errors.WithLabelValues("uploads").Inc()
		w.Log.Warn("listing recorded uploads", zap.Error(err))
		return
	}
	now := w.Clock.Now()
	for _, u := range us {
		if ctx.Err() != nil {
			return // stopping: the next task's sweep goes on
		}
		if now.Sub(u.Started) < sweepMinAge {
			continue
		}
		start := w.Clock.Now()
		hctx, cancel := context.WithTimeout(ctx, sweepCallTimeout)
		_, err := w.S3.HeadObject(hctx, &s3.HeadObjectInput{Bucket: &u.StagingBucket, Key: &u.StagingKey})
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() != nil || worker.Frozen(w.Clock, start, sweepCallTimeout) {
			return
		}
		if awsapi.IsAccessDenied(err) && w.orphaned(u) {
			// Its archive may be in a DLQ, kept for a redrive the
			// config no longer allows.
			if w.abortAs(ctx, u, true) {
				w.Log.Info("aborted an upload whose rule no longer writes here", zap.String("archive", u.ArchiveID), zap.String("bucket", u.Bucket),
					zap.String("key", u.Key), zap.String("uploadId", u.UploadID))
			}
			continue
		}
		if !awsapi.IsNotFound(err) {
			w.Metrics.Errors.WithLabelValues("uploads").Inc()
			w.Log.Warn("looking up the archive of a recorded upload", zap.String("key", u.StagingKey), zap.Error(err))
			continue
		}
		if !w.abortAs(ctx, u, w.orphaned(u)) {
			continue
		}
		w.Log.Info("aborted an upload whose archive is gone", zap.String("archive", u.ArchiveID), zap.String("bucket", u.Bucket),
			zap.String("key", u.Key), zap.String("uploadId", u.UploadID), zap.Time("started", u.Started))
	}
}

// orphaned reports whether no delivery will complete u: its rule is gone
// from the config, or no longer writes u's bucket and prefix from this
// region. The role then may not read its archive any more (a 403 for
// ever, not the 404 of an archive gone), nor write there (IAM grants a
// destination's prefix).
func (w *Worker) orphaned(u uploads.Upload) bool {
	id, _, _ := strings.Cut(u.StagingKey, "/")
	rule, ok := w.Config.Rule(id)
	if !ok {
		return true
	}
	for _, d := range rule.Destinations {
		if d.Region == w.Region && d.Bucket == u.Bucket && strings.HasPrefix(u.Key, rule.DestinationKey(d, rule.Prefix)) {
			return false
		}
	}
	return true
}
