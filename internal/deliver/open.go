package deliver

import (
	"context"
	"errors"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
)

// open starts reading a staging archive (its version, if not ""); the
// Reader has checked its manifest when it returns.
func (w *Worker) open(ctx context.Context, bucket, key, version string) (*archive.Reader, io.Closer, *s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if version != "" {
		in.VersionId = &version
	}
	out, err := w.S3.GetObject(ctx, in)
	if err != nil {
		return nil, nil, nil, err
	}
	// A reset mid-archive reads on from where it stopped, the same
	// version, or (unversioned) the same ETag: a delivery of GBs, paused
	// while another holds the memory, was started over, and on its last
	// receive its uploads abandoned.
	body := &awsapi.ResumingBody{Ctx: ctx, Body: out.Body, Size: aws.ToInt64(out.ContentLength), Tries: resumeTries,
		Reopen: func(ctx context.Context, byteRange string) (*s3.GetObjectOutput, error) {
			again := &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: &byteRange}
			switch v := versionOf(out.VersionId); {
			case v != nil:
				again.VersionId = v
			case aws.ToString(out.ETag) != "":
				again.IfMatch = out.ETag
			default:
				// Nothing to pin the rest to: another write's bytes
				// could follow these.
				return nil, errors.New("the archive's first answer named neither a version nor an ETag")
			}
			return w.S3.GetObject(ctx, again)
		},
		Resumed: func(at int64, try int, cause error) {
			w.Log.Info("staging archive's read resumed after failing mid-stream", zap.String("bucket", bucket), zap.String("key", key),
				zap.Int64("at", at), zap.Int("try", try), zap.NamedError("cause", cause))
		}}
	out.Body = body
	held := &heldManifest{w: w, ctx: ctx}
	r, err := archive.NewReader(&counted{r: body, c: w.Metrics.StagingRead, progress: w.runtime.Progress},
		archive.ReaderOptions{BeforeManifest: held.acquire, BeforeDecode: held.grow})
	if err != nil {
		held.Close()
		out.Body.Close()
		return nil, nil, nil, err
	}
	return r, closers{out.Body, held}, out, nil
}

// resumeTries is how many times in a row one archive's read resumes after
// failing mid-stream (a row ends awsapi.FreshRun bytes on).
const resumeTries = 3

// manifestCharge is what decoding and holding a manifest of size bytes
// takes: its bytes and its objects, about 3.5 times them (measured: a
// 63 MiB manifest of 100,000 objects with metadata, 163 MiB live decoded).
func manifestCharge(size int64) int64 { return 4 * size }

// heldManifest charges a delivery's manifest to the worker's manifest
// memory until the delivery ends: two archives' large manifests at once
// would take a small task past its memory. A charge above the whole
// budget takes all of it: one such manifest at a time, never refused.
type heldManifest struct {
	w   *Worker
	ctx context.Context
	n   int64
}

func (h *heldManifest) acquire(size int64) error {
	if h.w.manifestMem == nil {
		return nil
	}
	n := min(manifestCharge(size), h.w.manifestCap)
	if err := h.w.manifestMem.Acquire(h.ctx, n); err != nil {
		return err
	}
	h.n = n
	return nil
}

// grow raises the charge to cost, what decoding the manifest takes once
// its objects are counted (manifest.DecodedCost): a dense one (thousands
// of empty objects or entries) takes many times its bytes. The charge
// held is given back first, then the whole taken: two deliveries each
// holding theirs while waiting for more could wait for good. (While it
// waits, the manifest's bytes, read already, are held uncharged: at most
// manifest.MaxSize a delivery.)
func (h *heldManifest) grow(cost int64) error {
	if h.w.manifestMem == nil {
		return nil
	}
	n := min(cost, h.w.manifestCap)
	if n <= h.n {
		return nil
	}
	h.Close()
	if err := h.w.manifestMem.Acquire(h.ctx, n); err != nil {
		return err
	}
	h.n = n
	return nil
}

func (h *heldManifest) Close() error {
	if h.n > 0 {
		h.w.manifestMem.Release(h.n)
		h.n = 0
	}
	return nil
}

// closers closes each of its closers, returning the first error.
type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// counted counts the bytes read through it, and reports them as progress:
// reading past members written already (a redelivery's, read and checked
// but skipped) is work moving too, and a task doing nothing else was taken
// for stuck and replaced.
type counted struct {
	r        io.Reader
	c        prometheus.Counter
	progress func()
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.c.Add(float64(n))
	c.progress()
	if err != nil && err != io.EOF {
		err = &stagingReadError{err}
	}
	return n, err
}

// stagingReadError is a failure reading the staging archive (a reset
// past its resumptions, a timeout): neither the archive's fault nor a
// destination's, said kind staging_read.
type stagingReadError struct{ err error }

func (e *stagingReadError) Error() string { return e.err.Error() }
func (e *stagingReadError) Unwrap() error { return e.err }
