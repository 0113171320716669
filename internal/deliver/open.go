package deliver

import (
	"context"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/archive"
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
	r, err := archive.NewReader(&counted{r: out.Body, c: w.Metrics.StagingRead, progress: w.runtime.Progress}, archive.ReaderOptions{})
	if err != nil {
		out.Body.Close()
		return nil, nil, nil, err
	}
	return r, out.Body, out, nil
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
	return n, err
}
