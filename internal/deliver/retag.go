package deliver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// ErrRetagBeforeWrite fails a delivery whose retag entry found the
// destination without the write the tags belong to: that write's own
// archive may still be on its way, with the tags read before the change,
// so the retag is tried again later (the message is released) rather than
// dropped.
var ErrRetagBeforeWrite = errors.New("tags changed for a write the destination does not hold yet")

// retag carries a change of a source object's tags (manifest.Object.Retag)
// to rt, onto the destination's copy of the very write the tags belong to:
// a destination holding a newer write keeps that write's tags, which its
// own event brought. A write older than tombstone.TTL cannot still be on
// its way (a message waits less long in a queue and its DLQ): it was never
// replicated, which is backfill's business, and the retag is skipped.
//
// On a versioned destination the tags are set on the version read; on an
// unversioned one a write landing between the read and the tagging call
// would get these tags (the same window as a conditional PUT's, see
// README).
func (w *Worker) retag(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) error {
	_, version, prov, err := w.state(ctx, o, rt)
	if err != nil {
		return w.failed(ctx, wr, o, rt, err)
	}
	mod := o.LastModified.UnixMilli()
	switch {
	case prov.ok && prov.modified > mod:
		// A later write: it came with the tags of its own. (A multipart
		// upload's Last-Modified is when it began: one completed after
		// another write can look older than it; see README.)
		w.skipped(wr, o, rt, "skipped_older")
		return nil
	case !prov.sameWrite(o):
		return w.notYetWritten(ctx, wr, o, rt)
	}
	// The destination holds the write the tags belong to.
	if err := w.setTags(ctx, rt, version, o.Tags); err != nil {
		return w.failed(ctx, wr, o, rt, err)
	}
	wr.t.retagged.Add(1)
	w.Metrics.Objects.WithLabelValues(wr.m.RuleID, "retagged").Inc()
	w.said(wr, o, rt, "retagged")
	w.runtime.Progress()
	return nil
}

// setTags replaces the tags of rt's object (of its version, if given).
func (w *Worker) setTags(ctx context.Context, rt config.Route, version *string, tags map[string]string) error {
	var err error
	if len(tags) == 0 {
		_, err = w.S3.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: &rt.Bucket, Key: &rt.Key, VersionId: version})
	} else {
		set := make([]s3types.Tag, 0, len(tags))
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			set = append(set, s3types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		_, err = w.S3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &rt.Bucket, Key: &rt.Key, VersionId: version,
			Tagging: &s3types.Tagging{TagSet: set}})
	}
	if err != nil {
		return fmt.Errorf("setting tags: %w", err)
	}
	return nil
}

// syncTags gives rt's object (version, if versioned), found to hold o's
// own write, o's tags if its differ (if ifNone, only if it has none), and
// reports whether it changed them.
// A refusal (a stack whose IAM predates the tagging grants, a store
// without the tagging API) is logged and counted, not a failed delivery:
// the write is there, and no retry would do better. Any other failure (a
// timeout, a 5xx) fails it, to be retried: this entry alone carries the
// change, and the archive's acknowledgement would lose it.
func (w *Worker) syncTags(ctx context.Context, wr *write, rt config.Route, version *string, o *manifest.Object, ifNone bool) (bool, error) {
	err := func() error {
		out, err := w.S3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &rt.Bucket, Key: &rt.Key, VersionId: version})
		switch {
		case awsapi.IsNotFound(err):
			return errUnchanged // deleted since: nothing to tag
		case err != nil:
			return fmt.Errorf("reading tags: %w", err)
		}
		if ifNone && len(out.TagSet) > 0 || maps.Equal(awsapi.TagMap(out.TagSet), o.Tags) {
			return errUnchanged
		}
		return w.setTags(ctx, rt, version, o.Tags)
	}()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errUnchanged):
		return false, nil
	}
	w.Metrics.Errors.WithLabelValues("tags").Inc()
	if !refused(err) {
		return false, fmt.Errorf("tags of s3://%s/%s: %w", rt.Bucket, rt.Key, err)
	}
	w.Log.Warn("tags of a write already delivered not updated", zap.String("archive", wr.m.ArchiveID),
		zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Error(err))
	return false, nil
}

// refused reports a failure no retry fixes: the service answered no (4xx,
// access denied, but not a 4xx that asks to try again: a request timeout,
// OperationAborted) or has no such API (501, NotImplemented).
func refused(err error) bool {
	return !awsapi.Transient(err) && (awsapi.Refused(err) || awsapi.IsAccessDenied(err)) || awsapi.Code(err) == "NotImplemented"
}

var errUnchanged = errors.New("tags unchanged")

// notYetWritten settles a retag whose write rt does not hold (absent, not
// xrc's, older, or another version of the same second): skipped when a
// propagated delete or the write's age says it will never come, else
// failed, to be retried.
func (w *Worker) notYetWritten(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) error {
	deleted, err := w.deletedSince(ctx, wr, o, rt)
	switch {
	case err != nil:
		return w.failed(ctx, wr, o, rt, err)
	case deleted:
		w.skipped(wr, o, rt, "skipped_deleted")
		return nil
	case w.Clock.Since(o.LastModified) > tombstone.TTL:
		w.Log.Warn("tags changed for an object never replicated here: skipped (xrc backfill copies it)",
			zap.String("archive", wr.m.ArchiveID), zap.String("bucket", rt.Bucket), zap.String("key", rt.Key))
		w.skipped(wr, o, rt, "skipped_absent")
		return nil
	default:
		// Counted apart from failed writes (result and error kind
		// retag_wait): it is expected while the write is on its way.
		w.Metrics.Objects.WithLabelValues(wr.m.RuleID, "retag_wait").Inc()
		w.said(wr, o, rt, "retag_wait")
		w.Metrics.Errors.WithLabelValues("retag_wait").Inc()
		return fmt.Errorf("tags of s3://%s/%s (source %s/%s): %w (source written %s)", rt.Bucket, rt.Key, o.Bucket, o.Key,
			ErrRetagBeforeWrite, o.LastModified.Format("2006-01-02T15:04:05Z"))
	}
}
