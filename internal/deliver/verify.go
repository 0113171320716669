package deliver

import (
	"context"
	"crypto/sha256"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// verified is what the verify pass learnt about one staging archive.
type verified struct {
	manifest *manifest.Manifest
	digest   [sha256.Size]byte // of the manifest member
	sums     [][]byte          // SHA-256 of each object, from the bytes read
	etag     string            // the staging object read
	size     int64
}

// open starts reading a staging archive. With v (the verify pass) it reads
// the same bytes again (If-Match on v's ETag) without decoding the manifest
// a second time.
func (w *Worker) open(ctx context.Context, bucket, key string, v *verified) (*archive.Reader, io.Closer, *s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	var opts archive.ReaderOptions
	if v != nil {
		in.IfMatch = &v.etag
		opts.Known, opts.KnownDigest = v.manifest, v.digest
	}
	out, err := w.S3.GetObject(ctx, in)
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := archive.NewReader(out.Body, opts)
	if err != nil {
		out.Body.Close()
		return nil, nil, nil, err
	}
	return r, out.Body, out, nil
}

// verify reads the whole archive without writing anything, checking every
// member. Reading in region is free; writing half an archive's objects
// before finding a corrupt member is not undoable.
func (w *Worker) verify(ctx context.Context, bucket, key string) (*verified, error) {
	r, body, out, err := w.open(ctx, bucket, key, nil)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	defer r.Close()
	v := &verified{manifest: r.Manifest(), digest: r.ManifestDigest(), etag: aws.ToString(out.ETag), size: aws.ToInt64(out.ContentLength)}
	v.sums = make([][]byte, len(v.manifest.Objects))
	h := sha256.New()
	for {
		i, _, data, err := r.Next()
		if err == io.EOF {
			return v, nil
		}
		if err != nil {
			return nil, err
		}
		h.Reset()
		if _, err := io.Copy(h, data); err != nil {
			return nil, err
		}
		v.sums[i] = h.Sum(nil)
		w.runtime.Progress()
	}
}
