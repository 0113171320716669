package deliver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// requests counts a target's HEADs and PUTs of one destination bucket.
type requests struct {
	deliver.S3API
	bucket string

	mu                   sync.Mutex
	heads, puts, refused int
}

func (r *requests) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if aws.ToString(in.Bucket) == r.bucket {
		r.mu.Lock()
		r.heads++
		r.mu.Unlock()
	}
	return r.S3API.HeadObject(ctx, in, optFns...)
}

func (r *requests) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	out, err := r.S3API.PutObject(ctx, in, optFns...)
	if aws.ToString(in.Bucket) == r.bucket {
		r.mu.Lock()
		r.puts++
		if awsapi.IsPreconditionFailed(err) {
			r.refused++
		}
		r.mu.Unlock()
	}
	return out, err
}

func (r *requests) take() (heads, puts, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	heads, puts, refused = r.heads, r.puts, r.refused
	r.heads, r.puts, r.refused = 0, 0, 0
	return heads, puts, refused
}

// TestSmallWritesReadFirstOnlyWhenKeysExist: a small object whose key is
// new is written in one request, PUT If-None-Match, with no HEAD before it;
// when overwrites become common the worker reads first again, and every
// overwrite still lands, read once.
func TestSmallWritesReadFirstOnlyWhenKeysExist(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	rec := &requests{S3API: p.dst, bucket: dst}
	p.startSource(t)
	reg, _ := p.startTargetWith(t, rec, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	const n = 40
	objs := make([]dataset.Object, n)
	for i := range objs {
		objs[i] = dataset.Object{Key: fmt.Sprintf("data/opt/%02d.txt", i), ContentType: "text/plain", Data: []byte(fmt.Sprintf("first %d", i))}
	}
	written := func(want float64) bool {
		return poll(2*time.Minute, 200*time.Millisecond, func() bool {
			return metric(t, reg, "xrc_target_objects_total", "result", "written") >= want
		})
	}
	if err := dataset.Upload(ctx, p.src, p.cfg.Rules[0].SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	if !written(n) {
		t.Fatalf("%v of %d new objects written", metric(t, reg, "xrc_target_objects_total", "result", "written"), n)
	}
	if heads, puts, refused := rec.take(); heads != 0 || puts != n || refused != 0 {
		t.Errorf("%d new keys: %d HEADs, %d PUTs (%d refused); want no HEAD and one PUT each", n, heads, puts, refused)
	}

	for i := range objs {
		objs[i].Data = []byte(fmt.Sprintf("second %d", i))
	}
	if err := dataset.Upload(ctx, p.src, p.cfg.Rules[0].SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	if !written(2 * n) {
		t.Fatalf("%v of %d objects written after the overwrites", metric(t, reg, "xrc_target_objects_total", "result", "written"), 2*n)
	}
	heads, puts, refused := rec.take()
	// Each overwrite reads its key once, after a refused PUT or before its
	// PUT; a few guess wrong before the share of overwrites (7.4%) tips
	// the worker, up to the writes already in flight (concurrency).
	if heads != n || puts != n+refused || refused == 0 || refused > 3+p.cfg.Settings.Worker.Concurrency {
		t.Errorf("%d overwrites: %d HEADs, %d PUTs (%d refused); want %d HEADs, %d PUTs and 1-%d refused",
			n, heads, puts, refused, n, n+refused, 3+p.cfg.Settings.Worker.Concurrency)
	}
	if got := metric(t, reg, "xrc_target_put_refused_total"); int(got) != refused {
		t.Errorf("xrc_target_put_refused_total = %v, want %d", got, refused)
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, objs, identity, 8) {
		t.Error(err)
	}
}
