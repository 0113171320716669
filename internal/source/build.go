package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// S3API is the part of the S3 client the source worker uses.
// *s3.Client satisfies it.
type S3API interface {
	transfermanager.S3APIClient // head, get and (multipart) put
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
}

// Staging object metadata keys (x-amz-meta-*), so an operator listing the
// staging bucket sees what each archive holds without downloading it.
const (
	MetaArchiveID = "xrc-archive-id"
	MetaObjects   = "xrc-objects"
	MetaBytes     = "xrc-bytes"
	MetaLevel     = "xrc-level"
	MetaRule      = "xrc-rule"
)

// prefetchMax is the largest object fetched ahead into memory; larger ones
// are streamed from S3 straight into the archive when their turn comes.
const prefetchMax = 4 << 20

// entry is one manifest object and the items (events) it settles.
type entry struct {
	items []item
	obj   manifest.Object
}

// objectError marks a failure caused by one entry's object, so the archive
// can be rebuilt without it.
type objectError struct {
	index int
	err   error
}

func (e *objectError) Error() string { return e.err.Error() }
func (e *objectError) Unwrap() error { return e.err }

// archive builds, stages and settles one batch.
func (w *Worker) archive(ctx context.Context, b *batch) {
	log := w.Log.With(zap.String("rule", b.rule.ID))
	entries := w.plan(ctx, b, log)
	for attempt := 1; len(entries) > 0; attempt++ {
		id, n, err := w.stage(ctx, b, entries)
		if err == nil {
			for _, e := range entries {
				result := "archived"
				if e.obj.Delete {
					result = "deleted"
				}
				w.Metrics.Objects.WithLabelValues(b.rule.ID, result).Add(float64(len(e.items)))
				for _, it := range e.items {
					w.settle(ctx, it, nil)
				}
			}
			return
		}
		w.Metrics.Archives.WithLabelValues(b.rule.ID, "failed").Inc()
		var oe *objectError
		if errors.As(err, &oe) && attempt < 3 {
			// One object failed mid-stream: retry the archive without it and
			// let its message come back through the queue.
			bad := entries[oe.index]
			log.Warn("object failed while archiving; rebuilding the archive without it", zap.String("archive", id),
				zap.String("bucket", bad.obj.Bucket), zap.String("key", bad.obj.Key), zap.Error(err))
			w.fail(ctx, bad.items, err)
			entries = slices.Delete(entries, oe.index, oe.index+1)
			continue
		}
		w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
		log.Error("archive not staged; its messages will be retried", zap.String("archive", id),
			zap.Int("objects", n), zap.Error(err))
		for _, e := range entries {
			w.fail(ctx, e.items, err)
		}
		return
	}
}

func (w *Worker) fail(ctx context.Context, items []item, err error) {
	for _, it := range items {
		w.Metrics.Objects.WithLabelValues(it.rule.ID, "failed").Inc()
		w.settle(ctx, it, err)
	}
}

func errorKind(err error) string {
	switch {
	case awsapi.IsAccessDenied(err):
		return "access_denied"
	case awsapi.IsNotFound(err):
		return "not_found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "archive"
	}
}

// plan collapses the batch's events per key (the newest sequencer wins) and
// gathers each object's metadata. Objects gone or overwritten since their
// event are settled as skipped: the event of whatever replaced them carries
// the newer state, and archiving the newer bytes under the older event's
// identity could mix two versions.
func (w *Worker) plan(ctx context.Context, b *batch, log *zap.Logger) []entry {
	byKey := map[string]*entry{}
	var order []*entry
	for _, it := range b.items {
		k := it.ref.Bucket + "\x00" + it.ref.Key
		e := byKey[k]
		if e == nil {
			e = &entry{}
			byKey[k] = e
			order = append(order, e)
		}
		e.items = append(e.items, it)
	}
	newest := func(e *entry) events.ObjectRef {
		ref := e.items[0].ref
		for _, it := range e.items[1:] {
			if events.CompareSequencer(it.ref.Sequencer, ref.Sequencer) >= 0 {
				ref = it.ref
			}
		}
		return ref
	}

	type outcome struct {
		keep bool
		err  error
	}
	results := make([]outcome, len(order))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.Config.Settings.Worker.Concurrency)
	for i, e := range order {
		ref := newest(e)
		e.obj = w.baseObject(b, ref)
		if ref.Removed() {
			e.obj.Delete = true
			results[i] = outcome{keep: true}
			continue
		}
		g.Go(func() error {
			keep, err := w.describe(gctx, &e.obj, ref)
			results[i] = outcome{keep, err}
			return nil
		})
	}
	_ = g.Wait()

	var entries []entry
	for i, e := range order {
		switch r := results[i]; {
		case r.err != nil:
			log.Warn("reading object metadata", zap.String("bucket", e.obj.Bucket), zap.String("key", e.obj.Key), zap.Error(r.err))
			w.Metrics.Errors.WithLabelValues(errorKind(r.err)).Inc()
			w.fail(ctx, e.items, r.err)
		case !r.keep:
			w.Metrics.Objects.WithLabelValues(b.rule.ID, "skipped").Add(float64(len(e.items)))
			for _, it := range e.items {
				w.settle(ctx, it, nil)
			}
		default:
			entries = append(entries, *e)
		}
	}
	return entries
}

func (w *Worker) baseObject(b *batch, ref events.ObjectRef) manifest.Object {
	o := manifest.Object{
		Bucket:            ref.Bucket,
		Key:               ref.Key,
		VersionID:         ref.VersionID,
		Sequencer:         ref.Sequencer,
		ETag:              ref.ETag,
		LastModified:      ref.EventTime.UTC(),
		ChecksumAlgorithm: "SHA256",
	}
	for _, d := range b.rule.Destinations {
		o.Destinations = append(o.Destinations, manifest.Destination{
			Region:       d.Region,
			Bucket:       d.Bucket,
			Key:          b.rule.DestinationKey(d, ref.Key),
			StorageClass: d.StorageClass,
			KMSKeyID:     d.KMSKeyID,
		})
	}
	return o
}

// describe fills o from HEAD and tagging. keep is false when the object is
// gone or no longer the version the event announced.
func (w *Worker) describe(ctx context.Context, o *manifest.Object, ref events.ObjectRef) (keep bool, err error) {
	log := w.Log.With(zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(ref.VersionID)})
	if awsapi.IsNotFound(err) {
		log.Info("object gone since its event; skipping")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("head %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	etag := strings.Trim(aws.ToString(head.ETag), `"`)
	if ref.VersionID == "" && ref.ETag != "" && etag != ref.ETag {
		log.Info("object overwritten since its event; skipping (the newer write has its own event)",
			zap.String("eventETag", ref.ETag), zap.String("currentETag", etag))
		return false, nil
	}
	if aws.ToBool(head.DeleteMarker) {
		log.Info("object version is a delete marker; skipping")
		return false, nil
	}
	o.Size = aws.ToInt64(head.ContentLength)
	o.ETag = etag
	if head.VersionId != nil && *head.VersionId != "null" {
		o.VersionID = *head.VersionId
	}
	if head.LastModified != nil {
		o.LastModified = head.LastModified.UTC()
	}
	o.StorageClass = string(head.StorageClass)
	if o.StorageClass == "" {
		o.StorageClass = "STANDARD"
	}
	o.ContentType = aws.ToString(head.ContentType)
	o.ContentEncoding = aws.ToString(head.ContentEncoding)
	o.ContentDisposition = aws.ToString(head.ContentDisposition)
	o.ContentLanguage = aws.ToString(head.ContentLanguage)
	o.CacheControl = aws.ToString(head.CacheControl)
	o.Expires = aws.ToString(head.ExpiresString)
	if len(head.Metadata) > 0 {
		o.Metadata = head.Metadata
	}
	if aws.ToInt32(head.TagCount) > 0 {
		tags, err := w.S3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(o.VersionID)})
		if awsapi.IsNotFound(err) {
			log.Info("object gone since its event; skipping")
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("tags of %s/%s: %w", ref.Bucket, ref.Key, err)
		}
		o.Tags = make(map[string]string, len(tags.TagSet))
		for _, t := range tags.TagSet {
			o.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return true, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewArchiveID returns a time-ordered unique archive id.
func (w *Worker) newArchiveID() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return w.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// StagingKey is where an archive is stored: <rule>/<yyyy>/<mm>/<dd>/<id>.tar.zst.
// The rule prefix lets replication rules route per rule; the date keeps
// listings navigable.
func StagingKey(rule, id string, m *manifest.Manifest) string {
	return path.Join(rule, m.CreatedAt.Format("2006/01/02"), id+".tar.zst")
}

// stage writes one archive of entries and uploads it to staging, streaming:
// S3 GET -> archive writer -> zstd -> multipart upload, through a pipe.
func (w *Worker) stage(ctx context.Context, b *batch, entries []entry) (id string, n int, err error) {
	id = w.newArchiveID()
	m := &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    id,
		CreatedAt:    w.Now().UTC(),
		SourceRegion: w.Region,
		RuleID:       b.rule.ID,
		Level:        b.rule.Level,
		Objects:      make([]manifest.Object, len(entries)),
	}
	var total int64
	for i, e := range entries {
		m.Objects[i] = e.obj
		if !e.obj.Delete {
			m.Objects[i].Member = manifest.MemberName(i, e.obj.Key)
			total += e.obj.Size
		}
	}
	key := StagingKey(b.rule.ID, id, m)
	log := w.Log.With(zap.String("rule", b.rule.ID), zap.String("archive", id))

	uploader := awsapi.NewUploader(w.S3, func(o *transfermanager.Options) {
		// Parts must be >= 5 MiB and at most 10,000 per upload; size them
		// from the uncompressed total, which bounds the archive.
		o.PartSizeBytes = max(8<<20, (total+total/64+(1<<20))/9000)
		o.Concurrency = 2
	})
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		_, err := uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{
			Bucket:      &w.staging,
			Key:         &key,
			Body:        pr,
			ContentType: aws.String("application/zstd"),
			Metadata: map[string]string{
				MetaArchiveID: id,
				MetaObjects:   strconv.Itoa(len(entries)),
				MetaBytes:     strconv.FormatInt(total, 10),
				MetaLevel:     strconv.Itoa(m.Level),
				MetaRule:      b.rule.ID,
			},
		})
		// Unblock the writer if the upload failed before reading it all.
		pr.CloseWithError(err)
		uploaded <- err
	}()

	aw := w.writers.Get().(*archive.Writer)
	defer w.writers.Put(aw)
	werr := w.write(ctx, aw, pw, m)
	pw.CloseWithError(werr)
	uerr := <-uploaded
	var oe *objectError
	switch {
	case werr != nil && (errors.As(werr, &oe) || uerr == nil):
		return id, len(entries), werr
	case uerr != nil:
		// The writer's error, if any, is only the closed pipe.
		return id, len(entries), fmt.Errorf("uploading archive to s3://%s/%s: %w", w.staging, key, uerr)
	}
	dur := w.Now().Sub(b.closed)
	w.Metrics.Archives.WithLabelValues(b.rule.ID, "staged").Inc()
	w.Metrics.BytesIn.WithLabelValues(b.rule.ID).Add(float64(total))
	w.Metrics.BytesOut.WithLabelValues(b.rule.ID).Add(float64(aw.Written()))
	w.Metrics.ArchiveDuration.WithLabelValues(b.rule.ID).Observe(dur.Seconds())
	w.Metrics.BatchObjects.WithLabelValues(b.rule.ID).Observe(float64(len(entries)))
	log.Info("archive staged", zap.String("bucket", w.staging), zap.String("key", key),
		zap.Int("objects", len(entries)), zap.Int64("bytesIn", total), zap.Int64("bytesOut", aw.Written()),
		zap.Int("level", m.Level), zap.Duration("took", dur))
	return id, len(entries), nil
}

// write streams the archive into dst. Small objects are fetched ahead, up to
// the worker's concurrency, so S3 latency overlaps compression; large ones
// stream through when their turn comes, so memory stays bounded whatever the
// object sizes.
func (w *Worker) write(ctx context.Context, aw *archive.Writer, dst io.Writer, m *manifest.Manifest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := aw.Begin(dst, m); err != nil {
		return err
	}
	type fetched struct {
		data []byte
		err  error
	}
	futures := make([]chan fetched, len(m.Objects))
	slots := make(chan struct{}, w.Config.Settings.Worker.Concurrency)
	for i := range m.Objects {
		if o := &m.Objects[i]; !o.Delete && o.Size <= prefetchMax {
			futures[i] = make(chan fetched, 1)
		}
	}
	go func() {
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				data, err := w.fetchAll(ctx, &m.Objects[i])
				f <- fetched{data, err}
			}()
		}
	}()

	level := m.Level
	for i := range m.Objects {
		o := &m.Objects[i]
		if o.Delete {
			continue
		}
		if want := levelFor(o, m.Level); want != level {
			if err := aw.SetLevel(want); err != nil {
				return err
			}
			level = want
		}
		var err error
		if f := futures[i]; f != nil {
			var r fetched
			select {
			case r = <-f:
			case <-ctx.Done():
				return ctx.Err()
			}
			<-slots
			if r.err != nil {
				return &objectError{i, r.err}
			}
			_, err = aw.WriteObject(i, &sliceReader{b: r.data})
		} else {
			err = w.streamObject(ctx, aw, i, o)
		}
		if err != nil {
			return err
		}
	}
	return aw.Close()
}

func (w *Worker) get(ctx context.Context, o *manifest.Object) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{Bucket: &o.Bucket, Key: &o.Key}
	// Pin the exact version HEAD described, so the bytes and the manifest
	// can never come from two different writes.
	if o.VersionID != "" {
		in.VersionId = &o.VersionID
	} else {
		in.IfMatch = aws.String(`"` + o.ETag + `"`)
	}
	out, err := w.S3.GetObject(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", o.Bucket, o.Key, err)
	}
	return out.Body, nil
}

func (w *Worker) fetchAll(ctx context.Context, o *manifest.Object) ([]byte, error) {
	body, err := w.get(ctx, o)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data := make([]byte, o.Size)
	if _, err := io.ReadFull(body, data); err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, err)
	}
	return data, nil
}

// streamObject copies one large object from S3 into the archive. A failure
// reading from S3 is the object's; a failure writing is the archive's.
func (w *Worker) streamObject(ctx context.Context, aw *archive.Writer, i int, o *manifest.Object) error {
	body, err := w.get(ctx, o)
	if err != nil {
		return &objectError{i, err}
	}
	defer body.Close()
	src := &trackingReader{r: body}
	if _, err := aw.WriteObject(i, src); err != nil {
		if src.err != nil {
			return &objectError{i, fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, src.err)}
		}
		return err
	}
	return nil
}

// trackingReader remembers the reader's own error, telling source failures
// from sink failures.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// sliceReader is a bytes.Reader without the seek machinery.
type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// levelFor stores already-compressed content at the fastest level: zstd
// cannot shrink it and higher levels only burn CPU.
func levelFor(o *manifest.Object, level int) int {
	if level <= 1 || !precompressed(o) {
		return level
	}
	return 1
}

var compressedTypes = []string{"image/", "video/", "audio/", "application/zip", "application/gzip", "application/x-gzip",
	"application/zstd", "application/x-bzip2", "application/x-xz", "application/x-7z-compressed", "application/vnd.apache.parquet"}

var compressedExts = []string{".gz", ".tgz", ".zst", ".bz2", ".xz", ".zip", ".7z", ".jpg", ".jpeg", ".png", ".gif", ".webp",
	".mp4", ".mov", ".mkv", ".mp3", ".aac", ".parquet", ".orc", ".avro", ".snappy", ".lz4", ".br"}

func precompressed(o *manifest.Object) bool {
	if o.ContentEncoding == "gzip" || o.ContentEncoding == "br" || o.ContentEncoding == "zstd" {
		return true
	}
	for _, t := range compressedTypes {
		if strings.HasPrefix(o.ContentType, t) && o.ContentType != "image/svg+xml" {
			return true
		}
	}
	ext := strings.ToLower(path.Ext(o.Key))
	return slices.Contains(compressedExts, ext)
}
