package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/uploads"
	"github.com/xrc-dev/xrc/internal/worker"
)

// A large object streams from the archive into a multipart upload whose
// parts are sent as they fill; the upload is completed only once the
// archive reader has checked the object's size and SHA-256 (its EOF), so a
// corrupt object is never visible. The upload is recorded (package
// uploads) before its first part: a delivery cut short (a task killed, an
// outage) leaves it for the next delivery of the archive, which lists the
// parts already there and sends only the others. It is aborted when the
// archive fails for good (Abandon) or its archive is gone (sweep.go).
//
// The transfer manager cannot resume an upload, hence this file.

// partsAtOnce bounds the parts of one object in flight; memory is at most
// partsAtOnce+1 part buffers.
const partsAtOnce = 4

// minPartSize is the smallest part a multipart upload sends: the largest
// object written in one PUT (manifest.SinglePutMax, bufferMax), so that no
// upload is of one part.
const minPartSize = manifest.SinglePutMax

// maxPartSize is S3's largest part.
const maxPartSize = 5 << 30

// partSize grows with the object so no upload needs more than 9,000 parts
// (S3 allows 10,000, of at most 5 GiB: the objects of 45,000-50,000 GiB
// need more than 9,000).
func partSize(size int64) int64 { return min(maxPartSize, max(minPartSize, size/9000+1)) }

// partMemory is the most part buffers' bytes one upload of size bytes
// holds: partsAtOnce+1 parts, or fewer for a small object: one per part,
// and one more that finds the end (a size of whole parts reads a part
// past its last to see EOF). An object of 17 MiB holds two parts, not
// five.
func partMemory(size int64) int64 {
	part := partSize(size)
	held := min(partsAtOnce+1, size/part+1) * part
	if part > minPartSize {
		// The buffer a part larger than minPartSize grew from (readPart
		// doubles it as the bytes come), live while its bytes move to
		// the next: less than a part.
		held += part
	}
	return held
}

// readPart reads the next part of body, up to size bytes, into buf's
// memory. buf grows as the bytes come, not to size at once: a size an
// archive's manifest claims costs memory only for the bytes it holds (at
// most twice them; partMemory counts the buffer a growth copies from).
// err is io.EOF when body ended (with or without bytes read).
func readPart(body io.Reader, buf []byte, size int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			// Exactly: slices.Grow rounds a large slice up by a quarter
			// or more (a 17 MiB part took 20 MiB), past what the upload
			// memory budget counts a part as.
			grown := make([]byte, len(buf), len(buf)+min(size-len(buf), max(len(buf), minPartSize)))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// multipart writes o's body (in.Body, read from the archive) with the
// headers and conditions of in. S3 keeps a full-object CRC, which (unlike
// a SHA) it can combine across parts: the source object's own when it has
// one (checksum.go), checked by S3 on completion, else a CRC32C computed
// here.
func (w *Worker) multipart(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, in *s3.PutObjectInput) (version *string, err error) {
	u, have, err := w.resume(ctx, wr, o, in)
	if err != nil {
		return nil, err
	}
	c := recordedCRC(u)
	sum := w.ownChecksum(o)
	source := sum.value != "" && sum.alg == c
	parts, full, err := w.sendParts(ctx, u, c, have, in.Body, !source)
	if err != nil {
		return nil, w.takenOver(ctx, u, err) // the upload stays for the next delivery
	}
	if source {
		full = sum.value
	}
	if in.IfMatch != nil {
		// The condition names bytes, not a write, and the upload took
		// its time: a newer write of the same bytes (a rollback) landed
		// meanwhile would pass it, and be replaced by this older one.
		// Read again, so the window is the moment to the complete, as for
		// a PUT.
		etag, _, prov, err := w.state(ctx, o, rt)
		if err != nil {
			return nil, err // the upload stays for the next delivery
		}
		switch {
		case etag != *in.IfMatch:
			// Replaced or deleted meanwhile: the complete would be
			// refused (412, or 404 for a key gone), so decide again now.
			return nil, &refusedComplete{u: u, err: fmt.Errorf("s3://%s/%s changed during the upload", rt.Bucket, rt.Key)}
		case prov.newerOrSame(o):
			return nil, &refusedComplete{u: u, err: fmt.Errorf("s3://%s/%s: a write as new or newer, of the same bytes as the one read, landed during the upload", rt.Bucket, rt.Key)}
		}
	}
	cin := &s3.CompleteMultipartUploadInput{
		Bucket: in.Bucket, Key: in.Key, UploadId: &u.UploadID,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
		ChecksumType:    s3types.ChecksumTypeFullObject,
		IfMatch:         in.IfMatch,
		IfNoneMatch:     in.IfNoneMatch,
	}
	setCompleteCRC(cin, c, full)
	out, err := w.S3.CompleteMultipartUpload(ctx, cin)
	switch {
	case awsapi.Code(err) == "ConditionalRequestConflict":
		// 409: a write of the key raced the complete; S3 would have the
		// upload started over.
		w.abort(ctx, u)
		return nil, err
	case awsapi.IsPreconditionFailed(err):
		return nil, &refusedComplete{u: u, err: err}
	case err != nil:
		if source {
			err = checksumRefused(err, sum)
		}
		return nil, w.takenOver(ctx, u, err)
	}
	w.forget(ctx, u)
	return versionOf(out.VersionId), nil
}

// refusedComplete is a complete S3 refused on its condition (412): the
// key changed since it was read (another write completed first), or this
// very complete was applied and its answer lost, the SDK's retry then
// refused. A condition binds only the complete, not the parts: the upload
// is kept for the decision taken again (completeRefused).
type refusedComplete struct {
	u   uploads.Upload
	err error
}

func (e *refusedComplete) Error() string { return e.err.Error() }
func (e *refusedComplete) Unwrap() error { return e.err }

// completeRefused decides again for a large write whose complete was
// refused on its condition. The key holding this very write, the complete
// was applied and its answer lost (or another delivery of the object made
// it): applied, with the version written, for put to go on as after any
// write. Holding a newer write, the upload is
// of no use: aborted, the write skipped (decide has checked for a delete
// since). Holding an older one, the upload is kept and the delivery
// retried: it resumes the upload, sends no part again, and completes on
// the ETag it then reads.
func (w *Worker) completeRefused(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, rc *refusedComplete) (applied bool, version *string, err error) {
	_, version, prov, err := w.state(ctx, o, rt)
	if err != nil {
		return false, nil, errors.Join(rc, err)
	}
	if prov.holds(o) {
		// Aborted, not forgotten: another delivery of the object (its
		// archive restaged) may have made the write, this upload left.
		w.abort(ctx, rc.u)
		return true, version, nil
	}
	_, skip, err := w.decide(ctx, wr, o, rt)
	if err != nil {
		return false, nil, errors.Join(rc, err)
	}
	if skip == "" {
		return false, nil, rc
	}
	w.abort(ctx, rc.u)
	w.skipped(wr, o, rt, skip)
	return false, nil, nil
}

// takenOver says that u, gone under this delivery (NoSuchUpload), was
// completed or aborted by another delivery of the archive resuming it (a
// duplicate event, a lapsed visibility), or by the sweep once the
// archive left staging: a wait (uploads.ErrRecorded), as when two
// deliveries create uploads at once, not a failure of this one that
// would, on its last receive, abandon the other's uploads too. Only when
// that is all that went wrong: not beside a failure of the member's own
// (its bytes, a read of the archive), which a wait would hide. And only
// when u's record is gone or replaced, as each of those leaves it (they
// forget it, or record their own): one still recorded was aborted by
// nobody of xrc's, but by the destination's lifecycle rule (an upload
// that outlived its AbortIncompleteMultipartUpload days) or by hand, a
// failure to say as one (the next delivery starts the upload over).
func (w *Worker) takenOver(ctx context.Context, u uploads.Upload, err error) error {
	if err == nil || !onlyNoSuchUpload(err) {
		return err
	}
	wait := func() error {
		return fmt.Errorf("%w: upload %s of s3://%s/%s was completed or aborted by another delivery meanwhile (%v)", uploads.ErrRecorded, u.UploadID, u.Bucket, u.Key, err)
	}
	if ctx.Err() != nil {
		return wait() // cut (a stop, a deadline): no time to tell
	}
	// A delivery forgets the record after its complete or abort: read
	// again a little later before taking it for nobody's.
	recorded := func() bool {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
		defer cancel()
		rec, ok, gerr := w.Uploads.Get(gctx, u)
		if gerr != nil {
			// Taken for another delivery's doing, a wait, as before
			// the record was read: said, as the cause may be an abort
			// by nobody of xrc's.
			w.Metrics.Errors.WithLabelValues("uploads").Inc()
			w.Log.Warn("reading the record of an upload gone under its delivery", zap.String("bucket", u.Bucket), zap.String("key", u.Key),
				zap.String("uploadId", u.UploadID), zap.Error(gerr))
		}
		return gerr == nil && ok && rec.UploadID == u.UploadID
	}
	if recorded() {
		select {
		case <-w.Clock.After(forgetWait):
		case <-ctx.Done():
			return wait()
		}
		if recorded() {
			return fmt.Errorf("upload %s of s3://%s/%s is gone though no delivery completed or aborted it: aborted by the bucket's lifecycle rule (an upload older than its AbortIncompleteMultipartUpload days) or by hand; the next delivery starts it over: %w", u.UploadID, u.Bucket, u.Key, err)
		}
	}
	return wait()
}

// forgetWait is how long takenOver gives another delivery, which has
// completed or aborted an upload, to forget its record.
const forgetWait = 3 * time.Second

// onlyNoSuchUpload reports whether err is NoSuchUpload alone (joined
// errors all of it).
func onlyNoSuchUpload(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return !slices.ContainsFunc(j.Unwrap(), func(e error) bool { return !onlyNoSuchUpload(e) })
	}
	return awsapi.Code(err) == "NoSuchUpload"
}

// resume returns the upload recorded for o's member and destination with
// the parts it already holds, or starts and records a new one.
func (w *Worker) resume(ctx context.Context, wr *write, o *manifest.Object, in *s3.PutObjectInput) (uploads.Upload, map[int32]s3types.Part, error) {
	want := uploads.Upload{Region: w.Region, StagingBucket: wr.bucket, StagingKey: wr.key, ArchiveID: wr.m.ArchiveID, Member: o.Member,
		Bucket: aws.ToString(in.Bucket), Key: aws.ToString(in.Key)}
	u, ok, err := w.Uploads.Get(ctx, want)
	if err != nil {
		return u, nil, err
	}
	if ok && u.ArchiveID == want.ArchiveID {
		have, err := w.listParts(ctx, u)
		if err == nil {
			var n int64
			for _, p := range have {
				n += aws.ToInt64(p.Size)
			}
			w.Log.Info("resuming an upload an earlier delivery left", zap.String("bucket", u.Bucket), zap.String("key", u.Key),
				zap.String("uploadId", u.UploadID), zap.Int("parts", len(have)), zap.Int64("bytes", n))
			return u, have, nil
		}
		if !awsapi.IsNotFound(err) {
			return u, nil, err
		}
		// Aborted (by a sweep, or a later write of the key) or completed
		// meanwhile: start over.
	}
	// A create cancelled in flight may open an upload nobody learns the id
	// of, and a created upload must be recorded before anything can cut us
	// short: both run to completion whatever ctx does.
	if err := ctx.Err(); err != nil {
		return u, nil, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
	defer cancel()
	crc := uploadCRC(w.ownChecksum(o))
	out, err := w.S3.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{
		Bucket: in.Bucket, Key: in.Key, Metadata: in.Metadata,
		ContentType: in.ContentType, ContentEncoding: in.ContentEncoding, ContentDisposition: in.ContentDisposition,
		ContentLanguage: in.ContentLanguage, CacheControl: in.CacheControl, Expires: in.Expires, Tagging: in.Tagging,
		WebsiteRedirectLocation: in.WebsiteRedirectLocation,
		StorageClass:            in.StorageClass, ServerSideEncryption: in.ServerSideEncryption, SSEKMSKeyId: in.SSEKMSKeyId,
		BucketKeyEnabled:  in.BucketKeyEnabled,
		ChecksumAlgorithm: s3types.ChecksumAlgorithm(crc), ChecksumType: s3types.ChecksumTypeFullObject,
	}, rawExpires(o)...)
	if err != nil {
		return u, nil, err
	}
	var replaced string
	prev := u
	if ok {
		replaced = u.UploadID
	}
	u = want
	u.UploadID, u.PartSize, u.Started, u.Checksum = aws.ToString(out.UploadId), partSize(o.Size), w.Clock.Now().UTC(), string(crc)
	// A timeout of its own: a create slowed by throttling must not leave
	// the record no time.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
	defer cancel()
	if err := w.Uploads.Put(rctx, u, replaced); err != nil {
		// Unrecorded, a kill would leave it to nobody; and so does an
		// abort that fails: neither the sweep nor Abandon can find it.
		if !w.abortAs(ctx, u, false) {
			w.Log.Warn("an upload neither recorded nor aborted is left to the bucket's lifecycle rule (AbortIncompleteMultipartUpload)",
				zap.String("bucket", u.Bucket), zap.String("key", u.Key), zap.String("uploadId", u.UploadID))
		}
		return u, nil, err
	}
	if ok && prev.ArchiveID != want.ArchiveID && w.Clock.Since(prev.Started) > queue.MaxVisibility {
		// Another archive's upload under this staging key (the key
		// written again with another archive): its record replaced, no
		// delivery or sweep would find it, its parts billed for good.
		// Only one no delivery can still hold (SQS hides a message 12
		// hours at most): two live deliveries of the key's two archives
		// would abort each other's uploads by turns.
		w.abort(ctx, prev)
	}
	return u, nil, nil
}

// listParts returns the parts u holds by number.
func (w *Worker) listParts(ctx context.Context, u uploads.Upload) (map[int32]s3types.Part, error) {
	have := map[int32]s3types.Part{}
	pg := s3.NewListPartsPaginator(w.S3, &s3.ListPartsInput{Bucket: &u.Bucket, Key: &u.Key, UploadId: &u.UploadID})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range page.Parts {
			have[aws.ToInt32(p.PartNumber)] = p
		}
	}
	return have, nil
}

// sendParts reads body to its end in parts of u.PartSize, sending those u
// does not already hold with the same size and checksum c. It returns the
// parts to complete and, if asked for, the object's full checksum c. It
// returns an error, never the parts, when body fails: the archive reader
// reports a size or digest mismatch there.
func (w *Worker) sendParts(ctx context.Context, u uploads.Upload, c checksum.Algorithm, have map[int32]s3types.Part, body io.Reader, wantFull bool) ([]s3types.CompletedPart, string, error) {
	// Buffers are tokens: reading the next part waits for one to be free.
	pool := make(chan []byte, partsAtOnce+1)
	for range partsAtOnce + 1 {
		pool <- nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(partsAtOnce)
	var (
		mu      sync.Mutex
		parts   []s3types.CompletedPart
		full    = c.New()
		resumed int64
	)
	for n := int32(1); ; n++ {
		data, err := readPart(body, <-pool, int(u.PartSize))
		k, last := len(data), err == io.EOF
		if err != nil && !last {
			return nil, "", errors.Join(err, g.Wait())
		}
		if k == 0 {
			break // the object ended on a part boundary
		}
		if wantFull {
			full.Write(data)
		}
		sum := c.Sum(data)
		if p, ok := have[n]; ok && aws.ToInt64(p.Size) == int64(k) && partCRC(p, c) == sum {
			cp := s3types.CompletedPart{PartNumber: aws.Int32(n), ETag: p.ETag}
			setCompletedCRC(&cp, c, sum)
			mu.Lock()
			parts = append(parts, cp)
			mu.Unlock()
			resumed += int64(k)
			pool <- data
		} else {
			g.Go(func() error {
				defer func() { pool <- data }()
				in := &s3.UploadPartInput{Bucket: &u.Bucket, Key: &u.Key, UploadId: &u.UploadID,
					PartNumber: aws.Int32(n), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(k))}
				setPartCRC(in, c, sum)
				out, err := w.S3.UploadPart(gctx, in)
				if err != nil {
					return fmt.Errorf("part %d of upload %s: %w", n, u.UploadID, err)
				}
				cp := s3types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag}
				setCompletedCRC(&cp, c, sum)
				mu.Lock()
				parts = append(parts, cp)
				mu.Unlock()
				w.runtime.Progress()
				return nil
			})
		}
		if last {
			break
		}
		if gctx.Err() != nil {
			break // g.Wait has the error
		}
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	w.Metrics.ResumedBytes.Add(float64(resumed))
	slices.SortFunc(parts, func(a, b s3types.CompletedPart) int {
		return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber))
	})
	return parts, checksum.Encode(full.Sum(nil)), nil
}

// abort aborts u and forgets it, on a context of its own: it runs when the
// caller's may be over.
func (w *Worker) abort(ctx context.Context, u uploads.Upload) { w.abortAs(ctx, u, false) }

// abortAs is abort; an orphan's upload (no delivery will complete it: the
// sweep's orphaned) that the role may no longer abort is forgotten all
// the same, said once, rather than warned of at every sweep for the
// record's month. It reports whether the upload is gone.
func (w *Worker) abortAs(ctx context.Context, u uploads.Upload, orphan bool) (aborted bool) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
	defer cancel()
	start := w.Clock.Now()
	_, err := w.S3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &u.Bucket, Key: &u.Key, UploadId: &u.UploadID})
	if err != nil && worker.Frozen(w.Clock, start, awsapi.AbortTimeout) {
		return false // in flight at a freeze (Lambda): the record is kept, the sweep tries again
	}
	fields := []zap.Field{zap.String("bucket", u.Bucket), zap.String("key", u.Key), zap.String("uploadId", u.UploadID), zap.Error(err)}
	switch {
	case err == nil, awsapi.IsNotFound(err):
		aborted = true
	case orphan && awsapi.IsAccessDenied(err):
		w.Metrics.Errors.WithLabelValues("abort_upload").Inc()
		w.Log.Warn("forgetting an upload whose rule no longer writes here, which this role may no longer abort: its parts stay billed until the bucket's lifecycle aborts incomplete uploads, or it is aborted by hand", fields...)
	default:
		w.Metrics.Errors.WithLabelValues("abort_upload").Inc()
		w.Log.Warn("aborting an upload", fields...)
		return false // keep the record: the sweep tries again
	}
	w.forget(actx, u)
	return aborted
}

// abortOwn aborts the upload an earlier attempt of this archive recorded
// for o at rt, which no delivery of it will complete now that rt holds the
// same or a newer write (or a delete covers it): abortStale spares
// recorded uploads, and the sweep waits for the archive to leave staging,
// days if its ledger entry fails, with the parts billed meanwhile.
func (w *Worker) abortOwn(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) {
	want := uploads.Upload{Region: w.Region, StagingBucket: wr.bucket, StagingKey: wr.key, ArchiveID: wr.m.ArchiveID, Member: o.Member,
		Bucket: rt.Bucket, Key: rt.Key}
	u, ok, err := w.Uploads.Get(ctx, want)
	if err != nil {
		// Left to the sweep.
		w.Metrics.Errors.WithLabelValues("uploads").Inc()
		w.Log.Warn("reading the upload record of a skipped member", zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Error(err))
		return
	}
	if ok && u.ArchiveID == want.ArchiveID {
		w.abort(ctx, u)
	}
}

// forget deletes u's record; a leftover record only costs the sweep a
// ListParts.
func (w *Worker) forget(ctx context.Context, u uploads.Upload) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
	defer cancel()
	if err := w.Uploads.Delete(ctx, u); err != nil {
		w.Metrics.Errors.WithLabelValues("uploads").Inc()
		w.Log.Warn("forgetting an upload", zap.String("bucket", u.Bucket), zap.String("key", u.Key), zap.Error(err))
	}
}

// Abandon aborts the uploads a failed archive left for resuming: its
// message will not be delivered again (its last attempt, or an archive no
// retry can fix). Each call is bounded on its own; once ctx ends it stops
// between uploads, leaving the rest to a redrive or the sweep.
func (w *Worker) Abandon(ctx context.Context, stagingKey string) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), awsapi.AbortTimeout)
	us, err := w.Uploads.List(lctx, w.Region, stagingKey)
	cancel()
	if err != nil {
		w.Metrics.Errors.WithLabelValues("uploads").Inc()
		w.Log.Warn("listing the uploads of an abandoned archive", zap.String("key", stagingKey), zap.Error(err))
		return
	}
	for _, u := range us {
		if ctx.Err() != nil {
			return
		}
		if w.abortAs(ctx, u, false) { // else said, and kept for the sweep
			w.Log.Info("aborted the upload of an abandoned archive", zap.String("archive", u.ArchiveID), zap.String("bucket", u.Bucket),
				zap.String("key", u.Key), zap.String("uploadId", u.UploadID))
		}
	}
}
