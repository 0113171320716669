package deliver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
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

// writes runs a pipeline whose target counts its HEADs and PUTs of the
// destination bucket; upload writes objs at the source and waits until the
// target has written want objects in all.
func writes(t *testing.T, edit func(*config.Config)) (p *pipeline, rec *requests, reg *prometheus.Registry, upload func(objs []dataset.Object, want float64)) {
	t.Helper()
	p = newPipeline(t, edit)
	rec = &requests{S3API: p.dst, bucket: p.cfg.Rules[0].Destinations[0].Bucket}
	p.startSource(t)
	reg, _ = p.startTargetWith(t, rec, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	upload = func(objs []dataset.Object, want float64) {
		t.Helper()
		if err := dataset.Upload(context.Background(), p.src, p.cfg.Rules[0].SourceBucket, objs, 8); err != nil {
			t.Fatal(err)
		}
		if !poll(2*time.Minute, 200*time.Millisecond, func() bool {
			return metric(t, reg, "xrc_target_objects_total", "result", "written") >= want
		}) {
			t.Fatalf("%v of %v objects written", metric(t, reg, "xrc_target_objects_total", "result", "written"), want)
		}
	}
	return p, rec, reg, upload
}

func smallObjects(n int, version string) []dataset.Object {
	objs := make([]dataset.Object, n)
	for i := range objs {
		objs[i] = dataset.Object{Key: fmt.Sprintf("data/opt/%02d.txt", i), ContentType: "text/plain", Data: []byte(fmt.Sprintf("%s %d", version, i))}
	}
	return objs
}

// TestSmallWritesReadFirstOnlyWhenKeysExist: a small object whose key is
// new is written in one request, PUT If-None-Match, with no HEAD before it;
// when overwrites become common the worker reads first again, and every
// overwrite still lands, read once.
func TestSmallWritesReadFirstOnlyWhenKeysExist(t *testing.T) {
	t.Parallel()
	p, rec, reg, upload := writes(t, nil)
	const n = 40
	upload(smallObjects(n, "first"), n)
	if heads, puts, refused := rec.take(); heads != 0 || puts != n || refused != 0 {
		t.Errorf("%d new keys: %d HEADs, %d PUTs (%d refused); want no HEAD and one PUT each", n, heads, puts, refused)
	}

	objs := smallObjects(n, "second")
	upload(objs, 2*n)
	heads, puts, refused := rec.take()
	// Each overwrite reads its key once, after a refused PUT or before its
	// PUT. Three refusals after 40 new keys tip the share of overwrites
	// over 7.4%; writes already under way when the third comes back
	// guessed too: up to concurrency per archive, two archives at a time.
	most := 3 + 2*p.cfg.Settings.Worker.Concurrency - 1
	if heads != n || puts != n+refused || refused == 0 || refused > most {
		t.Errorf("%d overwrites: %d HEADs, %d PUTs (%d refused); want %d HEADs, %d PUTs and 1-%d refused",
			n, heads, puts, refused, n, n+refused, most)
	}
	if got := metric(t, reg, "xrc_target_put_refused_total"); int(got) != refused {
		t.Errorf("xrc_target_put_refused_total = %v, want %d", got, refused)
	}
	for _, err := range dataset.Check(context.Background(), p.dst, rec.bucket, objs, identity, 8) {
		t.Error(err)
	}
}

// TestSmallWritesReadFirstUnlessStoreRefuses: on an S3-compatible store not
// declared to refuse a PUT whose If-None-Match fails (s3ConditionalWrites),
// which might overwrite a newer object instead, every write reads its key
// first.
func TestSmallWritesReadFirstUnlessStoreRefuses(t *testing.T) {
	t.Parallel()
	_, rec, _, upload := writes(t, func(c *config.Config) { c.Settings.Regions[1].S3ConditionalWrites = false })
	const n = 20
	upload(smallObjects(n, "first"), n)
	if heads, puts, refused := rec.take(); heads != n || puts != n || refused != 0 {
		t.Errorf("%d new keys: %d HEADs, %d PUTs (%d refused); want a HEAD and a PUT each", n, heads, puts, refused)
	}
}
