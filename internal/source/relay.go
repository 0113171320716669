package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// relay copies the archive just staged at key (version) to the staging
// bucket of each region rule delivers to directly (config.Region.Direct),
// which S3 Replication does not reach: another partition, an S3-compatible
// store. It reads the archive back from this region's staging, which
// costs no transfer, and streams it there in parts of part bytes (within
// the staging upload's memory, which is done with its own). Each region's
// staging bucket announces the archive to its target queue.
//
// A region whose copy still fails after relayAttempts is left to a relay
// message on the worker's own queue (events.Relay, Relay), retried on its
// own: one region down (a store's outage, its credentials rotated) must
// not fail the archive every other region has, restage it on each receive
// and send its objects' messages to the DLQ. relay fails only when that
// message cannot be sent either.
func (w *Worker) relay(ctx context.Context, rule *config.Rule, key string, version *string, part int64, meta map[string]string) error {
	for _, reg := range w.Config.DirectRegions(rule) {
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
		switch {
		case err == nil:
			w.Log.Info("archive copied to a direct region", zap.String("rule", rule.ID), zap.String("key", key),
				zap.String("region", reg.Name), zap.String("bucket", reg.StagingBucket))
			continue
		case ctx.Err() != nil: // a stop is no failure of the copy
			return err
		}
		w.Metrics.Errors.WithLabelValues("relay").Inc()
		r := events.Relay{Region: reg.Name, Bucket: w.staging, Key: key, VersionID: aws.ToString(version)}
		if serr := w.sendRelay(ctx, r); serr != nil {
			return errors.Join(err, serr)
		}
		w.Log.Warn("copying an archive to a direct region failed: left to a relay message, retried on its own",
			zap.String("rule", rule.ID), zap.String("key", key), zap.String("region", reg.Name),
			zap.Duration("retryIn", w.relayBackoff(0)), zap.Error(err))
	}
	return nil
}

// relayAttempts bounds the tries of one copy before it is left to a relay
// message.
const relayAttempts = 3

// sendRelay queues r on the worker's own queue, visible after the first
// of its backoffs.
func (w *Worker) sendRelay(ctx context.Context, r events.Relay) error {
	body, err := events.EncodeRelay(r)
	if err != nil {
		return err
	}
	return w.Queue.Send(ctx, string(body), w.relayBackoff(0))
}

// RelayBackoff is how long a relay message waits before its receive
// number n+1 (n = 0: its first): a minute, doubling to 15 minutes, so
// that with the default maxReceiveCount of 5 a direct region may be down
// about half an hour before its copies reach the DLQ (a redrive copies
// them then, while their archives are still in staging).
func RelayBackoff(n int) time.Duration {
	return min(15*time.Minute, time.Minute<<min(max(n, 0), 4))
}

func (w *Worker) relayBackoff(n int) time.Duration {
	if w.RelayBackoff != nil {
		return w.RelayBackoff(n)
	}
	return RelayBackoff(n)
}

// Relay copies the archive r names to its direct region: the work of a
// relay message (relay). r is checked against the worker's own config, as
// any message: the archive must be in this region's staging bucket, under
// a rule this worker serves, and r's region one of that rule's direct
// regions.
func (w *Worker) Relay(ctx context.Context, r events.Relay) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: relay of s3://%s/%s to %s: %s", ErrUnroutable, r.Bucket, r.Key, r.Region, fmt.Sprintf(format, args...))
	}
	if r.Bucket != w.staging {
		return refuse("not this region's staging bucket %s", w.staging)
	}
	ruleID, _, err := manifest.ParseStagingKey(r.Key)
	if err != nil {
		return refuse("%v", err)
	}
	var rule *config.Rule
	for _, rl := range w.rules {
		if rl.ID == ruleID {
			rule = rl
		}
	}
	if rule == nil {
		return refuse("rule %s is not served by this worker", ruleID)
	}
	for _, reg := range w.Config.DirectRegions(rule) {
		if reg.Name != r.Region {
			continue
		}
		if err := w.relayTo(ctx, reg, r.Key, optional(r.VersionID), 0, nil); err != nil {
			if ctx.Err() == nil {
				w.Metrics.Errors.WithLabelValues("relay").Inc()
			}
			return err
		}
		w.Metrics.Archives.WithLabelValues(rule.ID, "relayed").Inc()
		w.Log.Info("archive copied to a direct region by its relay message", zap.String("rule", rule.ID), zap.String("key", r.Key),
			zap.String("region", reg.Name), zap.String("bucket", reg.StagingBucket))
		return nil
	}
	return refuse("not a direct region of rule %s", rule.ID)
}

// relayTo copies one archive to reg. Called by Relay (part 0, meta nil),
// it takes the part size from the archive's size, holds its buffers
// within the task's upload memory, and copies the archive's own metadata.
func (w *Worker) relayTo(ctx context.Context, reg config.Region, key string, version *string, part int64, meta map[string]string) error {
	out, err := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &w.staging, Key: &key, VersionId: version})
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s back to copy it to %s: %w", w.staging, key, reg.Name, err)
	}
	defer out.Body.Close()
	if part == 0 {
		part, meta = partSize(aws.ToInt64(out.ContentLength)), out.Metadata
		if w.uploadMem != nil {
			need := uploadBuffers(part)
			if err := w.uploadMem.Acquire(ctx, need); err != nil {
				return err
			}
			defer w.uploadMem.Release(need)
		}
	}
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
