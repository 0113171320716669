package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// put writes one object to one destination, conditional on etag (the ETag
// read; "" requires the key to be absent).
func (w *Worker) put(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, sum []byte, body io.Reader, etag string) error {
	in := &s3.PutObjectInput{
		Bucket:             &rt.Bucket,
		Key:                &rt.Key,
		Body:               body,
		ContentLength:      aws.Int64(o.Size),
		Metadata:           w.metadata(wr.m, o, sum),
		ContentType:        optional(o.ContentType),
		ContentEncoding:    optional(o.ContentEncoding),
		ContentDisposition: optional(o.ContentDisposition),
		ContentLanguage:    optional(o.ContentLanguage),
		CacheControl:       optional(o.CacheControl),
		// S3 Replication and CopyObject keep it: a website destination
		// would serve the object's bytes instead of the redirect.
		WebsiteRedirectLocation: optional(o.WebsiteRedirect),
	}
	tags := tagging(o.Tags)
	late := lateTags(o)
	if !late {
		in.Tagging = optional(tags)
	}
	if t, err := http.ParseTime(o.Expires); err == nil {
		in.Expires = &t
	}
	class := o.StorageClass
	if rt.StorageClass != "" {
		class = rt.StorageClass
	}
	if class != "" && class != "STANDARD" {
		in.StorageClass = s3types.StorageClass(class)
	}
	if rt.KMSKeyID != "" {
		in.ServerSideEncryption = s3types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = &rt.KMSKeyID
		in.BucketKeyEnabled = aws.Bool(true)
	}
	if etag != "" {
		in.IfMatch = &etag
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	started := w.Clock.Now()
	multipart := o.Size > bufferMax
	var version *string // the version written, on a versioned bucket
	var err error
	if !multipart {
		own := w.ownChecksum(o)
		putChecksum(in, own, sum)
		out, err := w.S3.PutObject(ctx, in, rawExpires(o)...)
		if err != nil {
			return checksumRefused(err, own)
		}
		version = versionOf(out.VersionId)
	} else if version, err = w.multipart(ctx, wr, o, rt, in); err != nil {
		rc := (*refusedComplete)(nil)
		if !errors.As(err, &rc) {
			return err
		}
		var applied bool
		if applied, version, err = w.completeRefused(ctx, wr, o, rt, rc); !applied {
			return err
		}
	}
	w.runtime.Progress()
	// Counted once the write is known to stay: one a delete overtook is
	// removed again at once, as if the delete had been read first. (One
	// whose check failed stands, until the retry decides again.)
	deleted, derr := w.undoIfDeleted(ctx, wr, o, rt)
	if multipart {
		w.abortStale(ctx, rt, wr.m.CreatedAt, started)
	}
	switch {
	case deleted && derr != nil:
		// To be removed, and not yet: the retry finishes it.
		return &afterWrite{derr}
	case deleted:
		w.skipped(wr, o, rt, "skipped_deleted")
		return nil
	}
	wr.t.written.Add(1)
	wr.t.bytes.Add(o.Size)
	w.Metrics.Objects.WithLabelValues(wr.m.RuleID, "written").Inc()
	w.said(wr, o, rt, "written")
	w.Metrics.Bytes.WithLabelValues(wr.m.RuleID).Add(float64(o.Size))
	w.Metrics.Latency.WithLabelValues(wr.m.RuleID).Observe(w.Clock.Since(o.LastModified).Seconds())
	if derr != nil {
		return &afterWrite{derr}
	}
	if late {
		// On the version written, not on one written since; in an
		// unversioned bucket, on whatever the key holds, so at once
		// (a newer write landing in between gets these tags). Failing,
		// the delivery is retried, and finding this write there without
		// tags, gives it them (decide).
		if err := w.setTags(ctx, rt, version, o.Tags); err != nil {
			return &afterWrite{fmt.Errorf("tags of s3://%s/%s, set after the write: %w", rt.Bucket, rt.Key, err)}
		}
	}
	return nil
}

// rawExpires sends o's Expires as the source held it when it is no HTTP
// date ("0" and "-1" are common, meaning already expired): S3 keeps any
// string a PUT gives, and the SDK's field takes a date only.
func rawExpires(o *manifest.Object) []func(*s3.Options) {
	if _, err := http.ParseTime(o.Expires); err == nil || o.Expires == "" {
		return nil
	}
	return []func(*s3.Options){s3.WithAPIOptions(smithyhttp.SetHeaderValue("Expires", o.Expires))}
}

// afterWrite is a failure once the write was made: of what follows it
// (late tags, the check for a delete). Not the write's own condition
// lost: its caller must not take it for one, and write again.
type afterWrite struct{ err error }

func (e *afterWrite) Error() string { return e.err.Error() }
func (e *afterWrite) Unwrap() error { return e.err }

// writeLost reports a put whose own condition did not hold (412), or
// whose key was deleted since the read (404, for a put on its ETag):
// nothing was written, and the write is decided again.
func writeLost(err error, etag string) bool {
	var aw *afterWrite
	if errors.As(err, &aw) {
		return false
	}
	return awsapi.IsPreconditionFailed(err) || etag != "" && awsapi.IsNotFound(err)
}

// undoIfDeleted closes the window between reading the tombstone and
// writing: a delete of the key propagated meanwhile (its tombstone put
// after our read, finding nothing to delete) must not be undone by our
// older write, so the write is removed again, conditional on its own ETag.
// It reports whether a delete covers the write (removed again, or gone).
func (w *Worker) undoIfDeleted(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) (bool, error) {
	deleted, err := w.deletedSince(ctx, wr, o, rt)
	if err != nil || !deleted {
		return false, err
	}
	left, err := w.undo(ctx, o, rt)
	return !left, err
}

// undo removes o's write from rt, found to be overtaken by a delete, if
// the destination holds it (an earlier attempt may have written it and
// failed before its own undo). left reports xrc's object there that
// nothing tells from o's write: kept.
func (w *Worker) undo(ctx context.Context, o *manifest.Object, rt config.Route) (left bool, err error) {
	etag, _, prov, err := w.state(ctx, o, rt)
	if err == nil && etag != "" && !prov.holds(o) && prov.unidentified(o) {
		// o's write or a newer one, and nothing says which: kept, as a
		// newer write removed would be lost for good, and said.
		w.Metrics.Errors.WithLabelValues("undo_unidentified").Inc()
		w.Log.Warn("a delete covers this write, and the destination's object, xrc's, carries nothing to tell it from a newer write (its metadata left no room for a sequencer or time): left in place, the source's delete not applied",
			zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.String("source_key", o.Key))
		return true, nil
	}
	if err != nil || etag == "" || !prov.holds(o) {
		return false, err // gone already, or no longer our write
	}
	_, err = w.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &rt.Bucket, Key: &rt.Key, IfMatch: &etag})
	switch {
	case awsapi.Code(err) == "PreconditionFailed":
		// Another write replaced ours since the read: what was to be
		// removed is gone, and the newer write stays. (Not a 409
		// ConditionalRequestConflict: an operation on the key in flight,
		// which may not replace ours; that one fails, to be retried.)
		return false, nil
	case err != nil && !awsapi.IsNotFound(err):
		return false, fmt.Errorf("removing s3://%s/%s, written while its delete was propagated: %w", rt.Bucket, rt.Key, err)
	}
	w.Log.Info("write overtaken by a delete: removed it again", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key))
	return false, nil
}

// maxUploadPages bounds the listing of a key's uploads (keys it prefixes
// included): what is left beyond is left to the bucket's lifecycle rule.
const maxUploadPages = 10

// abortStale aborts multipart uploads of rt's key that started before our
// own write and that no delivery recorded: uploads left by a Create whose
// answer was lost or a kill before its record, whose parts would stay
// billed until a lifecycle rule removed them. They are cleaned up here or
// nowhere. A recorded upload is another delivery's (a newer version's
// write that started first, say) and is left to it, or to the sweep once
// its archive has left staging. Only uploads begun since the archive was
// made (made, less the clocks' skew) can be an earlier delivery's of it;
// older ones may be another application's, which xrc does not touch (an
// archive that does not say when it was made has none). before is this
// clock's, Initiated S3's: a clock running ahead can abort an unrecorded
// upload just created (duplicate work); no margin is allowed for it, as it
// would leak the ones left.
func (w *Worker) abortStale(ctx context.Context, rt config.Route, made, before time.Time) {
	if made.IsZero() {
		return
	}
	since := made.Add(-awsapi.ClockSkew)
	var uploads []s3types.MultipartUpload
	pages := s3.NewListMultipartUploadsPaginator(w.S3, &s3.ListMultipartUploadsInput{Bucket: &rt.Bucket, Prefix: &rt.Key},
		func(o *s3.ListMultipartUploadsPaginatorOptions) { o.StopOnDuplicateToken = true }) // a store that repeats its markers
	for n := 0; pages.HasMorePages() && n < maxUploadPages; n++ {
		out, err := pages.NextPage(ctx)
		if err != nil {
			w.Metrics.Errors.WithLabelValues("list_uploads").Inc()
			w.Log.Warn("listing stale multipart uploads", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Error(err))
			return
		}
		uploads = append(uploads, out.Uploads...)
	}
	since = since.Truncate(time.Second) // S3 dates uploads to the second
	var recorded map[string]bool        // read once there is a candidate
	for _, u := range uploads {
		if aws.ToString(u.Key) != rt.Key || u.Initiated == nil || u.Initiated.Before(since) || !u.Initiated.Before(before) {
			continue
		}
		if recorded == nil {
			us, err := w.Uploads.List(ctx, w.Region, "")
			if err != nil {
				// Unknown whose they are: left for the next write of the key.
				w.Metrics.Errors.WithLabelValues("uploads").Inc()
				w.Log.Warn("listing recorded uploads before aborting stale ones", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Error(err))
				return
			}
			recorded = make(map[string]bool, len(us))
			for _, r := range us {
				recorded[r.UploadID] = true
			}
		}
		if recorded[aws.ToString(u.UploadId)] {
			continue
		}
		_, err := w.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &rt.Bucket, Key: &rt.Key, UploadId: u.UploadId})
		if err != nil && !awsapi.IsNotFound(err) {
			w.Metrics.Errors.WithLabelValues("abort_upload").Inc()
			w.Log.Warn("aborting a stale multipart upload", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Error(err))
			continue
		}
		w.Log.Info("aborted a multipart upload an earlier attempt left behind", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key),
			zap.String("uploadId", aws.ToString(u.UploadId)), zap.Time("initiated", *u.Initiated))
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// taggingHeaderMax bounds the tags sent with a write, in its x-amz-tagging
// header. S3 refuses a PUT whose headers pass 8 KB (RequestHeaderSectionTooLarge),
// on every try, and 2 KB of metadata and the signature share them; ten tags
// of S3's longest, escaped (non-ASCII, or '/', ':', '@'), come to 16 KB.
// Longer tags are set after the write (PutObjectTagging takes them in its
// body): for a moment the object is there without them.
const taggingHeaderMax = 2 << 10

// objectHeaderMax bounds what an object's own headers take in a write
// (metadata, Content-*, tags), leaving S3's 8 KB for the rest: the
// signature (a session token of 1 KB and more), checksum, condition,
// encryption. Each metadata key counts twice, as its x-amz-meta- line and
// in the signature's SignedHeaders: 2 KB of metadata in 100 keys takes
// near 5 KB.
const objectHeaderMax = 5 << 10

// provenanceHeaders is what xrc's own metadata keys (provenance.go) add.
const provenanceHeaders = 576

// lateTags reports o's tags too long to go with its write: longer than
// taggingHeaderMax, or than what its other headers leave of
// objectHeaderMax.
func lateTags(o *manifest.Object) bool {
	if len(o.Tags) == 0 {
		return false // nothing to set after the write
	}
	tags := len(tagging(o.Tags))
	if tags > taggingHeaderMax {
		return true
	}
	n := tags + provenanceHeaders
	for k, v := range o.Metadata {
		n += 2*len("x-amz-meta-"+k) + len(v) + 4 // ": ", CRLF; "," or ";" in SignedHeaders
	}
	for _, v := range []string{o.ContentType, o.ContentEncoding, o.ContentDisposition, o.ContentLanguage, o.CacheControl, o.Expires, o.WebsiteRedirect} {
		if v != "" {
			n += len("content-disposition: ") + len(v) + 2
		}
	}
	return n > objectHeaderMax
}
