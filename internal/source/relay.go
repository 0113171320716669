package source

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// relay copies the archive just staged at key (version) to the staging
// bucket of each region rule delivers to directly (config.Region.Direct),
// which S3 Replication does not reach: another partition, an S3-compatible
// store. It reads the archive back from this region's staging, which
// costs no transfer, and streams it there in parts of part bytes (within
// the staging upload's memory, which is done with its own). Each region's
// staging bucket announces the archive to its target queue.
func (w *Worker) relay(ctx context.Context, rule *config.Rule, key string, version *string, part int64, meta map[string]string) error {
	for _, reg := range w.Config.DirectRegions(rule) {
		// Tried again here first: failed, the whole archive is built,
		// staged and replicated again.
		var err error
		for attempt := 1; attempt <= relayAttempts; attempt++ {
			if err = w.relayTo(ctx, reg, key, version, part, meta); err == nil || ctx.Err() != nil || attempt == relayAttempts {
				break
			}
			w.Log.Warn("copying an archive to a direct region failed", zap.String("key", key), zap.String("region", reg.Name),
				zap.Int("attempt", attempt), zap.Error(err))
			select {
			case <-ctx.Done():
			case <-w.Clock.After(time.Duration(attempt) * time.Second):
			}
		}
		if err != nil {
			if ctx.Err() == nil { // a stop is no failure of the copy
				w.Metrics.Errors.WithLabelValues("relay").Inc()
			}
			return err
		}
		w.Log.Info("archive copied to a direct region", zap.String("rule", rule.ID), zap.String("key", key),
			zap.String("region", reg.Name), zap.String("bucket", reg.StagingBucket))
	}
	return nil
}

// relayAttempts bounds the tries of one copy before its archive fails.
const relayAttempts = 3

func (w *Worker) relayTo(ctx context.Context, reg config.Region, key string, version *string, part int64, meta map[string]string) error {
	out, err := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &w.staging, Key: &key, VersionId: version})
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s back to copy it to %s: %w", w.staging, key, reg.Name, err)
	}
	defer out.Body.Close()
	up := awsapi.NewUploader(w.Direct[reg.Name], func(o *transfermanager.Options) {
		o.PartSizeBytes = part
		o.MultipartUploadThreshold = part
		o.Concurrency = uploadConcurrency
	})
	// Progress as it streams: a long copy (a slow link to another
	// partition, a large archive) while the worker holds all it may is
	// not a stuck worker for the health check.
	body := &trackingReader{r: out.Body, progress: w.runtime.Progress}
	if _, err := up.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &reg.StagingBucket, Key: &key, Body: body,
		ContentType: aws.String("application/zstd"), Metadata: meta}); err != nil {
		return fmt.Errorf("copying archive s3://%s/%s to s3://%s (direct region %s): %w", w.staging, key, reg.StagingBucket, reg.Name, err)
	}
	return nil
}
