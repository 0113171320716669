package target

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// Provenance metadata (x-amz-meta-*) written on every destination object.
// Short names: S3 allows 2 KB of user metadata in all, and the source's own
// metadata comes first.
const (
	MetaSequencer = "xrc-seq"     // source event sequencer
	MetaVersion   = "xrc-version" // source version id
	MetaModified  = "xrc-mtime"   // source last-modified, Unix milliseconds
	MetaArchive   = "xrc-archive" // archive that carried it
	MetaSHA256    = "xrc-sha256"  // hex SHA-256 of the bytes
)

// maxMetadata is S3's limit on user metadata (keys and values, in bytes).
const maxMetadata = 2048

// bufferMax is the largest object read into memory and written with a
// single PUT; larger ones stream through a multipart upload.
const bufferMax = 8 << 20

// process verifies one staging archive, writes its objects for this region
// and deletes it from staging.
func (w *Worker) process(ctx context.Context, ref events.ObjectRef) error {
	start := w.Now()
	log := w.Log.With(zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))

	// Pass 1: read the whole archive without writing anything. Reading in
	// region is free; writing half an archive's objects before finding a
	// corrupt member is not undoable.
	m, digests, etag, size, err := w.verify(ctx, ref)
	if awsapi.IsNotFound(err) {
		// Already processed and deleted by an earlier delivery.
		log.Info("staging archive gone: already extracted")
		return nil
	}
	if err != nil {
		if errors.Is(err, archive.ErrInvalid) {
			w.Metrics.Archives.WithLabelValues("invalid").Inc()
			w.Metrics.VerifyFailures.Inc()
		} else {
			w.Metrics.Archives.WithLabelValues("failed").Inc()
		}
		return fmt.Errorf("verifying s3://%s/%s: %w", ref.Bucket, ref.Key, err)
	}
	log = log.With(zap.String("archive", m.ArchiveID), zap.String("rule", m.RuleID))

	// Pass 2: stream it again, now writing.
	if err := w.extract(ctx, ref, etag, m, digests, log); err != nil {
		w.Metrics.Archives.WithLabelValues("failed").Inc()
		return fmt.Errorf("archive %s (s3://%s/%s): %w", m.ArchiveID, ref.Bucket, ref.Key, err)
	}
	if _, err := w.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &ref.Bucket, Key: &ref.Key}); err != nil && !awsapi.IsNotFound(err) {
		// Everything is written; a leftover archive only costs storage
		// until lifecycle expiry, and a redelivery is harmless.
		w.Metrics.Errors.WithLabelValues("delete_staging").Inc()
		log.Warn("deleting staging archive", zap.Error(err))
	}
	took := w.Now().Sub(start)
	w.Metrics.Archives.WithLabelValues("done").Inc()
	w.Metrics.ArchiveBytes.WithLabelValues(m.RuleID).Add(float64(size))
	w.Metrics.ArchiveDuration.WithLabelValues(m.RuleID).Observe(took.Seconds())
	log.Info("archive extracted", zap.Int("objects", len(m.Objects)), zap.Int64("archiveBytes", size), zap.Duration("took", took))
	return nil
}

// open starts reading the staging archive, pinned to etag when known so both
// passes read the same bytes.
func (w *Worker) open(ctx context.Context, ref events.ObjectRef, etag string) (*archive.Reader, io.Closer, string, int64, error) {
	in := &s3.GetObjectInput{Bucket: &ref.Bucket, Key: &ref.Key}
	if etag != "" {
		in.IfMatch = &etag
	}
	out, err := w.S3.GetObject(ctx, in)
	if err != nil {
		return nil, nil, "", 0, err
	}
	r, err := archive.NewReader(out.Body, archive.ReaderOptions{})
	if err != nil {
		out.Body.Close()
		return nil, nil, "", 0, err
	}
	return r, out.Body, aws.ToString(out.ETag), aws.ToInt64(out.ContentLength), nil
}

// verify reads the archive once, checking every member, and returns its
// manifest and each object's SHA-256 (from the bytes actually read).
func (w *Worker) verify(ctx context.Context, ref events.ObjectRef) (*manifest.Manifest, map[int][]byte, string, int64, error) {
	r, body, etag, size, err := w.open(ctx, ref, "")
	if err != nil {
		return nil, nil, "", 0, err
	}
	defer body.Close()
	defer r.Close()
	digests := map[int][]byte{}
	h := sha256.New()
	for {
		i, _, data, err := r.Next()
		if err == io.EOF {
			return r.Manifest(), digests, etag, size, nil
		}
		if err != nil {
			return nil, nil, "", 0, err
		}
		h.Reset()
		if _, err := io.Copy(h, data); err != nil {
			return nil, nil, "", 0, err
		}
		digests[i] = h.Sum(nil)
	}
}

// extract writes every object of m meant for this region. Small objects are
// buffered and written concurrently; large ones stream in order.
func (w *Worker) extract(ctx context.Context, ref events.ObjectRef, etag string, m *manifest.Manifest, digests map[int][]byte, log *zap.Logger) error {
	r, body, _, _, err := w.open(ctx, ref, etag)
	if err != nil {
		return err
	}
	defer body.Close()
	defer r.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.Config.Settings.Worker.Concurrency)
	for i := range m.Objects {
		o := &m.Objects[i]
		if o.Delete && len(w.mine(o)) > 0 {
			g.Go(func() error { return w.deleteObject(gctx, m, o) })
		}
	}
	for {
		i, o, data, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errors.Join(err, g.Wait())
		}
		dests := w.mine(o)
		if len(dests) == 0 {
			continue // the reader drains and verifies it
		}
		sum := digests[i]
		if o.Size <= bufferMax {
			buf := make([]byte, o.Size)
			if _, err := io.ReadFull(data, buf); err != nil {
				return errors.Join(err, g.Wait())
			}
			for _, d := range dests {
				g.Go(func() error { return w.write(gctx, m, o, d, sum, bytes.NewReader(buf)) })
			}
			continue
		}
		// Large: one destination streams; the same bytes are teed to any
		// other destination of this region.
		if err := w.writeStream(gctx, m, o, dests, sum, data); err != nil {
			return errors.Join(err, g.Wait())
		}
	}
	return g.Wait()
}

// mine returns the destinations of o in this region.
func (w *Worker) mine(o *manifest.Object) []manifest.Destination {
	var out []manifest.Destination
	for _, d := range o.Destinations {
		if d.Region == w.Region {
			out = append(out, d)
		}
	}
	return out
}

func (w *Worker) writeStream(ctx context.Context, m *manifest.Manifest, o *manifest.Object, dests []manifest.Destination, sum []byte, data io.Reader) error {
	if len(dests) == 1 {
		return w.write(ctx, m, o, dests[0], sum, data)
	}
	g, gctx := errgroup.WithContext(ctx)
	pws := make([]*io.PipeWriter, len(dests))
	sinks := make([]io.Writer, len(dests))
	for k, d := range dests {
		pr, pw := io.Pipe()
		pws[k], sinks[k] = pw, pw
		g.Go(func() error {
			err := w.write(gctx, m, o, d, sum, pr)
			pr.CloseWithError(err)
			return err
		})
	}
	_, err := io.Copy(io.MultiWriter(sinks...), data)
	for _, pw := range pws {
		pw.CloseWithError(err)
	}
	return errors.Join(err, g.Wait())
}

// provenance is what a destination object says about its source write.
type provenance struct {
	ok        bool
	sequencer string
	version   string
	modified  int64
}

func readProvenance(md map[string]string) provenance {
	p := provenance{sequencer: md[MetaSequencer], version: md[MetaVersion]}
	p.modified, _ = strconv.ParseInt(md[MetaModified], 10, 64)
	p.ok = md[MetaArchive] != ""
	return p
}

// newerOrSame reports whether the destination already holds o's write or a
// later one. Sequencers order writes of one key; without them the source's
// last-modified time does.
func (p provenance) newerOrSame(o *manifest.Object) bool {
	if !p.ok {
		return false // not written by xrc: xrc owns its destinations
	}
	if p.sequencer != "" && o.Sequencer != "" {
		return events.CompareSequencer(p.sequencer, o.Sequencer) >= 0
	}
	mod := o.LastModified.UnixMilli()
	return p.modified > mod || p.modified == mod && p.version == o.VersionID
}

// state reads the destination key: its ETag (empty if absent) and provenance.
func (w *Worker) state(ctx context.Context, d manifest.Destination) (string, provenance, error) {
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.Bucket, Key: &d.Key})
	if awsapi.IsNotFound(err) {
		return "", provenance{}, nil
	}
	if err != nil {
		return "", provenance{}, fmt.Errorf("head %s/%s: %w", d.Bucket, d.Key, err)
	}
	return aws.ToString(head.ETag), readProvenance(head.Metadata), nil
}

// write puts one object into one destination, unless the destination already
// holds the same or a newer write. The put is conditional on what was read,
// so a concurrent writer of a newer version wins the race.
func (w *Worker) write(ctx context.Context, m *manifest.Manifest, o *manifest.Object, d manifest.Destination, sum []byte, body io.Reader) error {
	log := w.Log.With(zap.String("archive", m.ArchiveID), zap.String("bucket", d.Bucket), zap.String("key", d.Key))
	seeker, canRetry := body.(io.Seeker)
	for attempt := 1; ; attempt++ {
		etag, prov, err := w.state(ctx, d)
		if err != nil {
			return err
		}
		if prov.newerOrSame(o) {
			w.Metrics.Objects.WithLabelValues(m.RuleID, "skipped_older").Inc()
			log.Debug("destination holds the same or a newer write; skipping")
			return nil
		}
		err = w.put(ctx, m, o, d, sum, body, etag)
		if err == nil {
			w.Metrics.Objects.WithLabelValues(m.RuleID, "written").Inc()
			w.Metrics.Bytes.WithLabelValues(m.RuleID).Add(float64(o.Size))
			w.Metrics.Latency.WithLabelValues(m.RuleID).Observe(w.Now().Sub(o.LastModified).Seconds())
			return nil
		}
		if awsapi.IsPreconditionFailed(err) && canRetry && attempt < 3 {
			// Someone wrote the key between our read and our write: decide
			// again against what is there now.
			if _, serr := seeker.Seek(0, io.SeekStart); serr == nil {
				continue
			}
		}
		w.Metrics.Objects.WithLabelValues(m.RuleID, "failed").Inc()
		w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
		return fmt.Errorf("writing s3://%s/%s (source %s/%s): %w", d.Bucket, d.Key, o.Bucket, o.Key, err)
	}
}

func errorKind(err error) string {
	switch {
	case awsapi.IsAccessDenied(err):
		return "access_denied"
	case awsapi.IsNotFound(err):
		return "not_found"
	case awsapi.IsPreconditionFailed(err):
		return "precondition_failed"
	default:
		return "write"
	}
}

func (w *Worker) put(ctx context.Context, m *manifest.Manifest, o *manifest.Object, d manifest.Destination, sum []byte, body io.Reader, etag string) error {
	in := &transfermanager.UploadObjectInput{
		Bucket:             &d.Bucket,
		Key:                &d.Key,
		Body:               body,
		ContentLength:      aws.Int64(o.Size),
		Metadata:           w.metadata(m, o, sum),
		ContentType:        optional(o.ContentType),
		ContentEncoding:    optional(o.ContentEncoding),
		ContentDisposition: optional(o.ContentDisposition),
		ContentLanguage:    optional(o.ContentLanguage),
		CacheControl:       optional(o.CacheControl),
		Tagging:            optional(tagging(o.Tags)),
	}
	if t, err := http.ParseTime(o.Expires); err == nil {
		in.Expires = &t
	}
	class := o.StorageClass
	if d.StorageClass != "" {
		class = d.StorageClass
	}
	if class != "" && class != "STANDARD" {
		in.StorageClass = tmtypes.StorageClass(class)
	}
	if d.KMSKeyID != "" {
		in.ServerSideEncryption = tmtypes.ServerSideEncryptionAwsKms
		in.SSEKMSKeyID = &d.KMSKeyID
		in.BucketKeyEnabled = aws.Bool(true)
	}
	if etag != "" {
		in.IfMatch = &etag
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	if o.Size <= bufferMax {
		// One PUT: S3 checks the SHA-256 we computed from the archive and
		// keeps it as the object's checksum, for users to verify.
		in.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmSha256
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum))
	} else {
		// Multipart: S3 keeps a full-object CRC32C, which (unlike SHA-256) it
		// can combine across parts. CRC64NVME would do on AWS, but MinIO
		// cannot complete such uploads.
		in.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32c
		in.ChecksumType = tmtypes.ChecksumTypeFullObject
	}
	tm := awsapi.NewUploader(w.S3, func(opts *transfermanager.Options) {
		opts.PartSizeBytes = max(16<<20, o.Size/9000+1)
		opts.Concurrency = 4
		opts.MultipartUploadThreshold = bufferMax + 1
	})
	_, err := tm.UploadObject(ctx, in)
	return err
}

// metadata is the source's user metadata plus xrc provenance, dropping
// provenance (never the user's metadata) if S3's 2 KB limit would be passed.
func (w *Worker) metadata(m *manifest.Manifest, o *manifest.Object, sum []byte) map[string]string {
	md := make(map[string]string, len(o.Metadata)+5)
	used := 0
	for k, v := range o.Metadata {
		md[k] = v
		used += len(k) + len(v)
	}
	prov := [][2]string{
		{MetaArchive, m.ArchiveID},
		{MetaSequencer, o.Sequencer},
		{MetaModified, strconv.FormatInt(o.LastModified.UnixMilli(), 10)},
		{MetaVersion, o.VersionID},
		{MetaSHA256, hex.EncodeToString(sum)},
	}
	for _, kv := range prov {
		if kv[1] == "" {
			continue
		}
		if used+len(kv[0])+len(kv[1]) > maxMetadata {
			w.Log.Warn("user metadata leaves no room for xrc provenance; ordering falls back to overwrite",
				zap.String("bucket", o.Bucket), zap.String("key", o.Key), zap.String("dropped", kv[0]))
			break
		}
		md[kv[0]] = kv[1]
		used += len(kv[0]) + len(kv[1])
	}
	return md
}

// tagging encodes tags as the x-amz-tagging query string, sorted so the
// request is deterministic.
func tagging(tags map[string]string) string {
	if len(tags) == 0 {
		return ""
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = url.QueryEscape(k) + "=" + url.QueryEscape(tags[k])
	}
	return strings.Join(parts, "&")
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deleteObject propagates a source delete to this region's destinations,
// unless a destination holds a write newer than the delete.
func (w *Worker) deleteObject(ctx context.Context, m *manifest.Manifest, o *manifest.Object) error {
	for _, d := range w.mine(o) {
		etag, prov, err := w.state(ctx, d)
		if err != nil {
			return err
		}
		if etag == "" {
			continue
		}
		if prov.ok && prov.sequencer != "" && o.Sequencer != "" && events.CompareSequencer(prov.sequencer, o.Sequencer) > 0 {
			w.Metrics.Objects.WithLabelValues(m.RuleID, "delete_skipped").Inc()
			continue
		}
		if _, err := w.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.Bucket, Key: &d.Key}); err != nil && !awsapi.IsNotFound(err) {
			w.Metrics.Objects.WithLabelValues(m.RuleID, "failed").Inc()
			return fmt.Errorf("deleting s3://%s/%s (source delete of %s/%s): %w", d.Bucket, d.Key, o.Bucket, o.Key, err)
		}
		w.Metrics.Objects.WithLabelValues(m.RuleID, "deleted").Inc()
	}
	return nil
}
