package deliver

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
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
	us, err := w.Uploads.List(ctx, w.Region, "")
	if err != nil && ctx.Err() != nil {
		return
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
		_, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &u.StagingBucket, Key: &u.StagingKey})
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !awsapi.IsNotFound(err) {
			w.Metrics.Errors.WithLabelValues("uploads").Inc()
			w.Log.Warn("looking up the archive of a recorded upload", zap.String("key", u.StagingKey), zap.Error(err))
			continue
		}
		w.abort(ctx, u)
		w.Log.Info("aborted an upload whose archive is gone", zap.String("archive", u.ArchiveID), zap.String("bucket", u.Bucket),
			zap.String("key", u.Key), zap.String("uploadId", u.UploadID), zap.Time("started", u.Started))
	}
}
