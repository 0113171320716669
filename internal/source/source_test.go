package source_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
)

// fixture is one provisioned deployment on the local stack.
type fixture struct {
	env   localstack.Env
	cfg   *config.Config
	dep   localstack.Deployment
	s3    *s3.Client
	sqs   *sqs.Client
	rule  *config.Rule
	stage string
}

func setup(t *testing.T, edit func(*config.Config)) *fixture {
	t.Helper()
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config("src")
	if edit != nil {
		edit(cfg)
	}
	dep, err := env.Provision(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s3c, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	sqsc, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, cfg: cfg, dep: dep, s3: s3c, sqs: sqsc, rule: &cfg.Rules[0], stage: cfg.Settings.Regions[0].StagingBucket}
}

// start runs a source worker until the returned stop is called; stop waits
// for Run to return and reports its error.
func (f *fixture) start(t *testing.T, log *zap.Logger) (w *source.Worker, stop func() error) {
	t.Helper()
	q := queue.New(f.sqs, f.dep.SourceQueues[f.rule.ID], f.cfg.Settings.Worker.VisibilityTimeout.D())
	w, err := source.New(source.Deps{
		Config:  f.cfg,
		Region:  "us-east-1",
		Queue:   q,
		S3:      f.s3,
		Log:     log,
		Metrics: source.NewMetrics(prometheus.NewRegistry(), func() float64 { return float64(q.Held()) }),
		Health:  health.New(time.Minute, time.Now),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = errors.New("worker did not stop within a minute")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return w, stop
}

type object struct {
	key      string
	data     []byte
	meta     map[string]string
	tags     map[string]string
	ctype    string
	encoding string
}

// mixedObjects returns n objects of the kinds the worker must handle.
func mixedObjects(n int, seed uint64) []object {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu")
	objs := make([]object, n)
	for i := range objs {
		o := object{key: fmt.Sprintf("data/o%04d.txt", i)}
		switch i % 10 {
		case 0:
			o.key = fmt.Sprintf("data/empty-%d", i) // 0 bytes
		case 1:
			o.key = fmt.Sprintf("data/ünïcødé/日本語-%d.json", i)
			o.ctype = "application/json"
		case 2:
			o.key = fmt.Sprintf("data/with space/a+b %d.csv", i)
		case 3:
			o.data = make([]byte, 64<<10+rng.IntN(64<<10)) // incompressible
			for j := range o.data {
				o.data[j] = byte(rng.Uint32())
			}
			o.key = fmt.Sprintf("data/bin/%d.jpg", i)
			o.ctype = "image/jpeg"
		case 4:
			o.tags = map[string]string{"team": "data", "n": fmt.Sprint(i), "empty": ""}
			o.meta = map[string]string{"origin": "test", "long": strings.Repeat("m", 200)}
		}
		if o.data == nil && i%10 != 0 {
			var b bytes.Buffer
			for size := rng.IntN(48 << 10); b.Len() < size; {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			o.data = b.Bytes()
		}
		if o.data == nil {
			o.data = []byte{}
		}
		objs[i] = o
	}
	return objs
}

func (f *fixture) put(t *testing.T, objs []object) {
	t.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for _, o := range objs {
		g.Go(func() error {
			in := &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: aws.String(o.key), Body: bytes.NewReader(o.data), Metadata: o.meta}
			if o.ctype != "" {
				in.ContentType = &o.ctype
			}
			if len(o.tags) > 0 {
				v := url.Values{}
				for k, val := range o.tags {
					v.Set(k, val)
				}
				in.Tagging = aws.String(v.Encode())
			}
			_, err := f.s3.PutObject(ctx, in)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// staged is every object found in the staging archives, by key.
type staged struct {
	obj  manifest.Object
	sum  string
	arch string
}

func (f *fixture) readStaging(t *testing.T) map[string]staged {
	t.Helper()
	ctx := context.Background()
	out := map[string]staged{}
	p := s3.NewListObjectsV2Paginator(f.s3, &s3.ListObjectsV2Input{Bucket: &f.stage, Prefix: aws.String(f.rule.ID + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Contents {
			get, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.stage, Key: item.Key})
			if err != nil {
				t.Fatal(err)
			}
			r, err := archive.NewReader(get.Body, archive.ReaderOptions{})
			if err != nil {
				t.Fatalf("archive %s: %v", *item.Key, err)
			}
			m := r.Manifest()
			if get.Metadata[source.MetaArchiveID] != m.ArchiveID {
				t.Errorf("staging metadata archive id %q != manifest %q", get.Metadata[source.MetaArchiveID], m.ArchiveID)
			}
			for _, o := range m.Objects {
				if o.Delete {
					out[o.Key] = staged{obj: o, arch: m.ArchiveID}
				}
			}
			for {
				_, o, body, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("archive %s: %v", *item.Key, err)
				}
				h := sha256.New()
				if _, err := io.Copy(h, body); err != nil {
					t.Fatalf("archive %s: %v", *item.Key, err)
				}
				out[o.Key] = staged{obj: *o, sum: hex.EncodeToString(h.Sum(nil)), arch: m.ArchiveID}
			}
			r.Close()
			get.Body.Close()
		}
	}
	return out
}

// waitStaged polls staging until want keys are archived.
func (f *fixture) waitStaged(t *testing.T, want int, within time.Duration) map[string]staged {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := f.readStaging(t)
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Second)
	}
}

// queueDepth returns visible + in-flight messages of a queue.
func (f *fixture) queueDepth(t *testing.T, url string) int {
	t.Helper()
	out, err := f.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl:       &url,
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, v := range out.Attributes {
		var k int
		fmt.Sscan(v, &k)
		n += k
	}
	return n
}

func TestArchivesMatchSources(t *testing.T) {
	f := setup(t, func(c *config.Config) { c.Rules[0].Batch.MaxObjects = 150 })
	_, stop := f.start(t, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	objs := mixedObjects(500, 1)
	f.put(t, objs)
	got := f.waitStaged(t, len(objs), 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(objs) {
		t.Fatalf("staged %d objects, want %d", len(got), len(objs))
	}
	archives := map[string]bool{}
	for _, o := range objs {
		s, ok := got[o.key]
		if !ok {
			t.Errorf("%q not staged", o.key)
			continue
		}
		archives[s.arch] = true
		want := sha256.Sum256(o.data)
		if s.sum != hex.EncodeToString(want[:]) || s.obj.Size != int64(len(o.data)) {
			t.Errorf("%q: staged digest/size differ", o.key)
		}
		if o.ctype != "" && s.obj.ContentType != o.ctype {
			t.Errorf("%q: content type %q, want %q", o.key, s.obj.ContentType, o.ctype)
		}
		if fmt.Sprint(s.obj.Tags) != fmt.Sprint(nilIfEmpty(o.tags)) || fmt.Sprint(s.obj.Metadata) != fmt.Sprint(nilIfEmpty(o.meta)) {
			t.Errorf("%q: tags %v meta %v, want %v %v", o.key, s.obj.Tags, s.obj.Metadata, o.tags, o.meta)
		}
		if len(s.obj.Destinations) != 1 || s.obj.Destinations[0].Key != o.key {
			t.Errorf("%q: destinations %+v", o.key, s.obj.Destinations)
		}
	}
	if len(archives) < 4 {
		t.Errorf("500 objects with maxObjects 150 went into %d archives, want >= 4", len(archives))
	}
	if n := f.queueDepth(t, f.dep.SourceQueues[f.rule.ID]); n != 0 {
		t.Errorf("%d messages left on the queue after everything was staged", n)
	}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
