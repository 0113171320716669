package source_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/source"
)

// counting passes every call through to S3 and counts the HEADs and GETs
// of each key.
type counting struct {
	source.S3API
	mu          sync.Mutex
	heads, gets map[string]int
}

func (c *counting) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	c.mu.Lock()
	c.heads[aws.ToString(in.Key)]++
	c.mu.Unlock()
	return c.S3API.HeadObject(ctx, in, optFns...)
}

func (c *counting) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	c.gets[aws.ToString(in.Key)]++
	c.mu.Unlock()
	return c.S3API.GetObject(ctx, in, optFns...)
}

// A small object costs one GET, which describes it and brings its bytes;
// a larger one a HEAD, then a GET when its turn in the archive comes. An
// event that understates the size (a backfill listing, an overwrite) costs
// one GET more, never a wrong archive. Either way S3's SHA-256 of the
// object reaches the manifest.
func TestObjectsReadInOneRequestWhenSmall(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ctx := context.Background()
	count := &counting{S3API: f.worker, heads: map[string]int{}, gets: map[string]int{}}
	f.worker = count

	rng := rand.New(rand.NewPCG(7, 7))
	type sized struct {
		object
		claim  int  // the size the event reports
		sha256 bool // uploaded with a SHA-256 S3 keeps
		heads  int  // requests expected
		gets   int
	}
	var objs []sized
	add := func(name string, size, claim int, sha bool) {
		o := sized{object: object{key: "data/read/" + name, data: dataset.Text(rng, size)}, claim: claim, sha256: sha}
		if o.data == nil {
			o.data = []byte{}
		}
		switch {
		case claim <= source.InlineMax && size <= source.InlineMax:
			o.gets = 1
		case claim <= source.InlineMax:
			o.gets = 2 // read as small, found large, read again in turn
		default:
			o.heads, o.gets = 1, 1
		}
		objs = append(objs, o)
	}
	for _, size := range []int{0, 1, source.InlineMax, source.InlineMax + 1, 1 << 20, 5 << 20} {
		add(fmt.Sprint(size), size, size, false)
	}
	add("sha-small", 10<<10, 10<<10, true)
	add("sha-large", 1<<20, 1<<20, true)
	add("understated-1MiB", 1<<20, 12, false)
	add("understated-5MiB", 5<<20, 12, false)

	// Upload with S3's own events dropped (they would race the ones sent
	// below, and MinIO may deliver one twice), then send events that
	// report the sizes above.
	if err := f.env.UnrouteEvents(ctx, f.rule.SourceBucket); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		in := &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: aws.String(o.key), Body: bytes.NewReader(o.data)}
		if o.sha256 {
			in.ChecksumAlgorithm = s3types.ChecksumAlgorithmSha256
		}
		if _, err := f.s3.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range objs {
		f.send(t, sizedEventBody(f.rule.SourceBucket, o.key, md5hex(o.data), "0055AED6DCD90281E5", o.claim))
	}

	r := f.start(t, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	got := f.waitStaged(t, len(objs), 2*time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		s, ok := got[o.key]
		switch {
		case !ok:
			t.Errorf("%q not staged", o.key)
			continue
		case s.sum != digest(o.data) || s.obj.Size != int64(len(o.data)):
			t.Errorf("%q: staged %d bytes with digest %s, want %d with %s", o.key, s.obj.Size, s.sum, len(o.data), digest(o.data))
		}
		if o.sha256 && s.obj.SHA256 != digest(o.data) {
			t.Errorf("%q: manifest SHA-256 %q, want S3's %q", o.key, s.obj.SHA256, digest(o.data))
		}
		// The object's own checksum, for the destinations to be written
		// with: the SDK's default CRC32 unless it was put with a SHA-256.
		alg, sum := "CRC32", checksum.CRC32.Sum(o.data)
		if o.sha256 {
			h := sha256.Sum256(o.data)
			alg, sum = "SHA256", base64.StdEncoding.EncodeToString(h[:])
		}
		if s.obj.ChecksumAlgorithm != alg || s.obj.Checksum != sum {
			t.Errorf("%q: manifest checksum %s %q, want the source's %s %q", o.key, s.obj.ChecksumAlgorithm, s.obj.Checksum, alg, sum)
		}
		if h, g := count.heads[o.key], count.gets[o.key]; h != o.heads || g != o.gets {
			t.Errorf("%q (%d bytes, event says %d): %d HEAD and %d GET, want %d and %d", o.key, len(o.data), o.claim, h, g, o.heads, o.gets)
		}
	}
}
