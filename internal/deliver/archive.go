package deliver

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// ErrArchiveMissing marks a staging archive that is gone (lifecycle
// expiry, deleted by hand) although the ledger has no delivery of it in
// this region: its objects may never have arrived, which an operator must
// hear about.
var ErrArchiveMissing = errors.New("staging archive missing")

// Deliver is the whole per-archive step: it verifies the staging archive
// bucket/key, decides from this worker's config where its objects go,
// writes them, records the archive in the ledger and deletes it from
// staging. The Fargate loop, a Lambda handler and tests call it alike. An
// archive already delivered (gone from staging, in the ledger) is a
// success.
func (w *Worker) Deliver(ctx context.Context, bucket, key string) error {
	return w.DeliverVersion(ctx, bucket, key, "")
}

// DeliverVersion is Deliver of the version of bucket/key an event
// announced ("" or "null": the current one). Pinned, a key staged twice
// (a PUT the SDK sent again after S3 had applied it) has each version
// read and deleted by its own event's delivery: unpinned, two deliveries
// at once could both read and delete the newer, and leave the older for
// lifecycle.
func (w *Worker) DeliverVersion(ctx context.Context, bucket, key, version string) error {
	start := w.Clock.Now()
	log := w.Log.With(zap.String("bucket", bucket), zap.String("key", key))

	r, body, out, err := w.open(ctx, bucket, key, events.Version(version))
	if awsapi.IsNotFound(err) {
		return w.missing(ctx, bucket, key, log)
	}
	if err != nil {
		return w.failure(ctx, log, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err))
	}
	defer body.Close()
	defer r.Close()
	m := r.Manifest()
	log = log.With(zap.String("archive", m.ArchiveID), zap.String("rule", m.RuleID))
	p, err := w.resolve(key, aws.ToTime(out.LastModified), m)
	if err != nil {
		w.Metrics.Archives.WithLabelValues("rejected").Inc()
		err = fmt.Errorf("s3://%s/%s: %w", bucket, key, err)
		log.Warn("archive rejected by this region's config", zap.Error(err))
		return err
	}
	wr := &write{bucket: bucket, key: key, m: m, plan: p, t: &tally{}}
	size := aws.ToInt64(out.ContentLength)
	err = w.stream(ctx, r, wr)
	if err != nil {
		return w.failure(ctx, log, fmt.Errorf("archive %s (s3://%s/%s): %w", m.ArchiveID, bucket, key, err))
	}
	took := w.Clock.Since(start)
	// Everything is written: the record and the clean-up run to their end
	// whatever ctx does now (the drain's cut, a receipt lost), as an
	// upload's create and abort do. Cut, the archive stayed in staging
	// unrecorded, and a later event of it read as a lost archive.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*awsapi.AbortTimeout) // the record, then the clean-up
	defer cancel()
	entry := ledger.Entry{ArchiveID: m.ArchiveID, Region: w.Region, Rule: m.RuleID, StagingKey: key,
		Written: int(wr.t.written.Load()), Skipped: int(wr.t.skipped.Load()), Deleted: int(wr.t.deleted.Load()), Retagged: int(wr.t.retagged.Load()),
		ArchiveSize: size, ObjectBytes: wr.t.bytes.Load(), Latency: w.Clock.Since(m.CreatedAt), FinishedAt: w.Clock.Now().UTC()}
	if err := w.Ledger.Record(ctx, entry); err != nil {
		// Everything is written. Without a ledger entry the staging archive
		// stays (lifecycle removes it): deleting it would make a later
		// redelivery of this message look like a lost archive.
		w.Metrics.Errors.WithLabelValues("ledger").Inc()
		log.Warn("archive delivered but not recorded in the ledger; keeping it in staging", zap.Error(err))
	} else if st := w.stillCopied(ctx, bucket, key, out, m.RuleID); st != "" {
		// This is the source region's own target, and S3 Replication is
		// still copying the archive to other regions (or failed to), or
		// the source copies it to direct regions from here: a version
		// deleted before it is copied is never copied. Tagged delivered,
		// lifecycle removes it after a day (after the days an
		// undelivered archive waits for a rule with direct regions,
		// whose copies relay messages may make later); untagged, only
		// after those days. One whose replication failed is left as it
		// is: S3 Lifecycle expires no FAILED archive, which waits for
		// the operator to re-run it (S3 Batch Replication) or delete it.
		log.Info("archive delivered; left in staging for S3 Replication or the source's copies to other regions", zap.String("replicationStatus", string(st)))
		switch st {
		case statusUnknown:
			// Said by stillCopied; untagged, it waits the days
			// undelivered archives wait.
		case s3types.ReplicationStatusFailed:
			log.Warn("archive delivered here, but S3 Replication failed to copy it to other regions: left in staging (lifecycle expires no archive whose replication failed); re-run it with S3 Batch Replication, or run xrc backfill and delete it")
		default:
			if _, err := w.S3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &bucket, Key: &key, VersionId: out.VersionId,
				Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String(config.DeliveredTag), Value: aws.String("true")}}}}); err != nil {
				w.Metrics.Errors.WithLabelValues("tag_staging").Inc()
				log.Warn("tagging the staging archive delivered: lifecycle removes it only after the days undelivered ones wait", zap.Error(err))
			}
		}
	} else if _, err := w.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key, VersionId: out.VersionId}); err != nil && !awsapi.IsNotFound(err) {
		// A leftover archive only costs storage until lifecycle expiry,
		// and a redelivery is harmless. The version read is deleted:
		// staging is versioned, and a plain delete would only hide it
		// behind a delete marker, still billed.
		w.Metrics.Errors.WithLabelValues("delete_staging").Inc()
		log.Warn("deleting staging archive", zap.Error(err))
	}
	w.Metrics.Archives.WithLabelValues("done").Inc()
	w.Metrics.ArchiveBytes.WithLabelValues(m.RuleID).Add(float64(size))
	w.Metrics.ArchiveDuration.WithLabelValues(m.RuleID).Observe(took.Seconds())
	log.Info("archive delivered", zap.Int("objects", len(m.Objects)), zap.Int("written", entry.Written), zap.Int("skipped", entry.Skipped),
		zap.Int("deleted", entry.Deleted), zap.Int("retagged", entry.Retagged), zap.Int64("archiveBytes", size), zap.Duration("took", took))
	return nil
}

// stillCopied reports, as its replication status (or "direct"), whether
// the staging archive out (this region's own target has just delivered
// it) must stay for copies to other regions: S3 Replication still copying
// it or failed to, or the source copying it to direct regions from here;
// "" once its copies are done. The status read with the archive is read
// again: minutes of delivery later, replication has often completed, and
// a delivered tag would then only be replicated to replicas their own
// targets may have deleted already (as failed operations, an alarm).
func (w *Worker) stillCopied(ctx context.Context, bucket, key string, out *s3.GetObjectOutput, rule string) s3types.ReplicationStatus {
	if w.copiedFromHere(rule) {
		return "direct"
	}
	if st := out.ReplicationStatus; st != s3types.ReplicationStatusPending && st != s3types.ReplicationStatusFailed {
		return ""
	}
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key, VersionId: out.VersionId})
	if err != nil {
		// Not known: tagged, it might be a replica's tag change that
		// fails; kept untagged.
		w.Metrics.Errors.WithLabelValues("tag_staging").Inc()
		w.Log.Warn("reading the delivered archive's replication status again failed: left in staging untagged, lifecycle removes it after the days undelivered ones wait",
			zap.String("bucket", bucket), zap.String("key", key), zap.Error(err))
		return statusUnknown
	}
	if head.ReplicationStatus == s3types.ReplicationStatusComplete || head.ReplicationStatus == s3types.ReplicationStatusCompleted {
		return ""
	}
	if head.ReplicationStatus == s3types.ReplicationStatusFailed {
		return head.ReplicationStatus
	}
	return out.ReplicationStatus // not known to be done: kept
}

// statusUnknown is stillCopied's answer when the status could not be read
// again.
const statusUnknown s3types.ReplicationStatus = "unknown"

// failure counts and logs a delivery that did not finish, with the
// archive's fields (log), and returns err. Expected waits and stops are
// neither counted nor logged as failures: on-call reads those.
func (w *Worker) failure(ctx context.Context, log *zap.Logger, err error) error {
	switch {
	case ctx.Err() != nil:
		w.Metrics.Archives.WithLabelValues("interrupted").Inc()
		log.Info("archive delivery interrupted: the worker is stopping or the message was settled", zap.Error(err))
	case Waiting(err):
		w.Metrics.Archives.WithLabelValues("waiting").Inc()
		log.Info("archive waits: another delivery is writing its objects or a retag waits for its write", zap.Error(err))
	case errors.Is(err, manifest.ErrUnsupported):
		// Not corrupt: this target is older than the source that wrote it.
		w.Metrics.Archives.WithLabelValues("unsupported").Inc()
		log.Warn("archive not delivered: a newer xrc wrote it; upgrade this region's target, then redrive the DLQ", zap.Error(err))
	case errors.Is(err, archive.ErrInvalid):
		w.Metrics.Archives.WithLabelValues("invalid").Inc()
		w.Metrics.VerifyFailures.Inc()
		log.Warn("archive not delivered: it failed verification", zap.Error(err))
	default:
		w.Metrics.Archives.WithLabelValues("failed").Inc()
		log.Warn("archive not delivered", zap.Error(err))
	}
	return err
}

// missing handles a staging archive that is not there: delivered before
// (this message is a redelivery) if the ledger says so, lost otherwise.
func (w *Worker) missing(ctx context.Context, bucket, key string, log *zap.Logger) error {
	_, id, err := manifest.ParseStagingKey(key)
	if err != nil {
		w.Metrics.Archives.WithLabelValues("missing").Inc()
		return fmt.Errorf("%w: s3://%s/%s is gone and %v", ErrArchiveMissing, bucket, key, err)
	}
	e, ok, err := w.Ledger.Get(ctx, id, w.Region)
	if err != nil {
		w.Metrics.Errors.WithLabelValues("ledger").Inc()
		return fmt.Errorf("s3://%s/%s is gone; looking it up in the ledger: %w", bucket, key, err)
	}
	// The delivery must be of this very key: an archive staged under
	// another key whose manifest claims this id (a second deployment
	// sharing the bucket, a hand-made archive) delivered something else.
	if ok && (e.StagingKey == "" || e.StagingKey == key) {
		log.Info("staging archive gone: already delivered", zap.String("archive", id), zap.Time("deliveredAt", e.FinishedAt))
		return nil
	}
	if ok {
		w.Metrics.Archives.WithLabelValues("missing").Inc()
		return fmt.Errorf("%w: s3://%s/%s (archive %s) is gone from staging, and the ledger's delivery of that id in %s was of s3://%s/%s",
			ErrArchiveMissing, bucket, key, id, w.Region, bucket, e.StagingKey)
	}
	w.Metrics.Archives.WithLabelValues("missing").Inc()
	return fmt.Errorf("%w: s3://%s/%s (archive %s) is gone from staging and the ledger has no delivery of it in %s: it expired or was deleted before delivery",
		ErrArchiveMissing, bucket, key, id, w.Region)
}

// copiedFromHere reports whether rule's source workers copy its archives
// from this region's staging bucket to direct regions (config
// Region.Direct): this region is its source region, and its archives must
// stay until the copies are made.
func (w *Worker) copiedFromHere(rule string) bool {
	r, ok := w.Config.Rule(rule)
	return ok && r.SourceRegion == w.Region && len(w.Config.DirectRegions(r)) > 0
}
