package deliver

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// propagateDelete carries a source delete to this region's destinations of
// the object. It records a tombstone first, so an older create arriving
// later (or being written right now) cannot bring the object back. Then it
// removes the destination object only if xrc wrote it, only if it is not
// newer than the delete, and only the version it read (If-Match on its
// ETag), so a newer write landing in between is never removed.
func (w *Worker) propagateDelete(ctx context.Context, wr *write, o *manifest.Object, routes []config.Route) error {
	for _, rt := range routes {
		err := w.Tombstones.Put(ctx, tombstone.Tombstone{Bucket: rt.Bucket, Key: rt.Key, Sequencer: o.Sequencer, At: o.LastModified, ArchiveID: wr.m.ArchiveID})
		if err != nil {
			return w.failed(ctx, wr, o, rt, err)
		}
		if err := w.deleteOne(ctx, wr, o, rt); err != nil {
			return w.failed(ctx, wr, o, rt, err)
		}
		// An archive of thousands of deletes is work that moves: the
		// health check must not take it for a stuck task.
		w.runtime.Progress()
	}
	return nil
}

func (w *Worker) deleteOne(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) error {
	log := w.Log.With(zap.String("archive", wr.m.ArchiveID), zap.String("bucket", rt.Bucket), zap.String("key", rt.Key))
	for attempt := 1; ; attempt++ {
		etag, _, prov, err := w.state(ctx, o, rt)
		switch {
		case err != nil:
			return err
		case etag == "":
			if err := w.bucketThere(ctx, rt.Bucket); err != nil {
				return err
			}
			w.skipped(wr, o, rt, "delete_absent")
			return nil
		case !prov.ok:
			// Someone else's object at a key xrc maps to: not ours to delete.
			w.skipped(wr, o, rt, "delete_not_ours")
			log.Debug("destination object not written by xrc: delete not propagated")
			return nil
		}
		switch prov.againstDelete(o) {
		case newerThanDelete:
			w.skipped(wr, o, rt, "delete_skipped")
			log.Debug("destination holds a write newer than the delete: kept")
			return nil
		case unknownOrder:
			// xrc's write with no sequencer and no time (the source's own
			// metadata left room for xrc's marks only): it may be newer
			// than the delete, delivered first, and removed would be
			// lost for good. Kept, the source and the destination differ
			// until the key's next write or delete.
			w.skipped(wr, o, rt, "delete_unordered")
			log.Warn("the destination's write carries no sequencer or time (its metadata left no room for them): delete not propagated, as it may remove a newer write")
			return nil
		}
		_, err = w.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &rt.Bucket, Key: &rt.Key, IfMatch: &etag})
		switch {
		case awsapi.IsNotFound(err) && awsapi.Code(err) != "NoSuchBucket":
			// Gone between the read and the delete (removed by hand, or by
			// another delivery of this delete): nothing was deleted here.
			w.skipped(wr, o, rt, "delete_absent")
			return nil
		case err == nil:
			wr.t.deleted.Add(1)
			w.Metrics.Objects.WithLabelValues(wr.m.RuleID, "deleted").Inc()
			w.said(wr, o, rt, "deleted")
			return nil
		case awsapi.IsPreconditionFailed(err) && attempt < 3:
			continue // written meanwhile: decide again on what is there now
		default:
			return fmt.Errorf("deleting (source delete of %s/%s): %w", o.Bucket, o.Key, err)
		}
	}
}

// bucketThere fails for a destination bucket that does not exist: a
// HEAD's 404 names no bucket, and every delete of a misnamed or removed
// bucket read as a key absent, acknowledged in silence (its writes fail
// loudly). A bucket found is not asked about again. Any other answer (a
// store that does not serve HeadBucket, a policy refusing it, a timeout)
// proves nothing missing: the delete goes on, said at warn.
func (w *Worker) bucketThere(ctx context.Context, bucket string) error {
	if _, ok := w.buckets.Load(bucket); ok {
		return nil
	}
	_, err := w.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	switch {
	case err == nil:
		w.buckets.Store(bucket, true)
	case awsapi.IsNotFound(err):
		return fmt.Errorf("destination bucket %s does not exist: %w", bucket, err)
	default:
		w.Metrics.Errors.WithLabelValues("bucket_check").Inc()
		w.Log.Warn("could not tell whether a destination bucket exists: a delete of a key it lacks is taken as done", zap.String("bucket", bucket), zap.Error(err))
	}
	return nil
}
