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
	"strconv"
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
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/metrics"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
)

// fixture is one provisioned deployment on the local stack.
type fixture struct {
	env   localstack.Env
	cfg   *config.Config
	dep   localstack.Deployment
	s3    *s3.Client // the test's own client
	sqs   *sqs.Client
	rule  *config.Rule
	stage string
	// worker is the S3 client workers get: built as cmd/xrc-source builds
	// it (awsapi), so tests and benchmarks run its settings.
	worker source.S3API
	// uploadMemory is the workers' Deps.UploadMemory.
	uploadMemory int64
	// sqsAPI, when set, is the workers' SQS client in place of sqs.
	sqsAPI queue.API
}

func setup(t testing.TB, edit func(*config.Config)) *fixture {
	t.Helper()
	env, cfg, dep := localstack.Deploy(t, "src", edit)
	ctx := context.Background()
	s3c, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	sqsc, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	awsCfg, err := awsapi.Load(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	region, _ := cfg.Region("us-east-1")
	f := &fixture{env: env, cfg: cfg, dep: dep, s3: s3c, sqs: sqsc, rule: &cfg.Rules[0], stage: cfg.Settings.Regions[0].StagingBucket,
		worker: awsapi.S3(awsCfg, region)}
	// The stack is shared: localstack.Deploy removes the watched and
	// destination buckets and the queues of a passing test; the staging
	// buckets go here, once replicated. (Tests may repoint the config's
	// staging bucket.)
	stg1, stg2 := cfg.Settings.Regions[0].StagingBucket, cfg.Settings.Regions[1].StagingBucket
	t.Cleanup(func() {
		if !t.Failed() {
			f.removeStaging(t, stg1, stg2)
		}
	})
	return f
}

// removeStaging removes the staging buckets once the bridge has handled
// MinIO's replication events for every archive in them, so that nothing of
// this test is still in flight through MinIO's event queue, which every
// test shares (localstack.Deploy's removePassed).
func (f *fixture) removeStaging(t testing.TB, stg1, stg2 string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.replicated(ctx, stg1); err != nil {
		t.Logf("cleanup: keeping staging buckets %s and %s: %v", stg1, stg2, err)
		return
	}
	for _, b := range [][2]string{{"us-east-1", stg1}, {"eu-west-1", stg2}} {
		if err := f.env.RemoveBucket(ctx, b[0], b[1]); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}

// replicated waits until the target queue holds an event for every archive
// in staging bucket stg1, that is until the bridge has turned each archive's
// replication-completed event into its replica's event.
func (f *fixture) replicated(ctx context.Context, stg1 string) error {
	archives := 0
	p := s3.NewListObjectsV2Paginator(f.s3, &s3.ListObjectsV2Input{Bucket: &stg1})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		archives += len(page.Contents)
	}
	target := f.dep.TargetQueues["eu-west-1"]
	for {
		out, err := f.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: &target, AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"},
		})
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
		if err != nil {
			return err
		}
		if n >= archives {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d archives replicated: %w", n, archives, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stats returns the fleet statistics of the fixture's deployment (DynamoDB
// Local).
func (f *fixture) stats(t testing.TB) *stats.Store {
	t.Helper()
	ddb, err := f.env.DynamoDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stats.New(ddb, f.cfg.TableName(), time.Now)
}

// running is one source worker started by fixture.start.
type running struct {
	w    *source.Worker
	reg  *prometheus.Registry // the worker's metrics
	done chan struct{}        // closed when Run returns
	err  error                // Run's result, once done is closed
	stop func() error
}

// exited reports whether Run has returned.
func (r *running) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// metric returns the sum of the worker's series name whose labels include
// the given name, value pairs.
func (r *running) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return gathered(t, r.reg, name, labels...)
}

// start runs a source worker until the returned stop is called (or the test
// ends); stop cancels Run's context, as SIGTERM does in main, waits for Run
// to return and reports its error.
func (f *fixture) start(t testing.TB, log *zap.Logger) *running {
	t.Helper()
	return f.startWithStats(t, log, f.stats(t))
}

// startWithStats is start with the given fleet statistics.
func (f *fixture) startWithStats(t testing.TB, log *zap.Logger, st source.Stats) *running {
	t.Helper()
	w, reg := f.newWorker(t, log, st)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, reg: reg, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case <-r.done:
				stopErr = r.err
			case <-time.After(time.Minute):
				stopErr = errors.New("worker did not stop within a minute")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { r.stop() })
	return r
}

// newWorker returns a source worker of the fixture, not running, and the
// registry of its metrics.
func (f *fixture) newWorker(t testing.TB, log *zap.Logger, st source.Stats) (*source.Worker, *prometheus.Registry) {
	t.Helper()
	var api queue.API = f.sqs
	if f.sqsAPI != nil {
		api = f.sqsAPI
	}
	q := queue.New(api, f.dep.SourceQueues[f.rule.ID])
	reg := prometheus.NewRegistry()
	w, err := source.New(source.Deps{
		Config:  f.cfg,
		Region:  "us-east-1",
		Queue:   q,
		S3:      f.worker,
		Log:     log,
		Metrics: source.NewMetrics(reg),
		Health:  health.New(time.Minute, time.Now),
		Stats:   st,

		UploadMemory: f.uploadMemory,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// gathered sums the series of metric name in g whose labels include the
// given name, value pairs.
func gathered(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, err := metrics.Sum(g, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// observed returns a logger that writes to the test log (info and up) and
// records every entry (debug and up) for assertions.
func observed(t testing.TB) (*zap.Logger, *observer.ObservedLogs) {
	return localstack.ObservedLogger(t, zap.DebugLevel)
}

// eventually polls cond every interval until it holds (true) or within has
// passed (false).
var eventually = localstack.Eventually

type object struct {
	key   string
	data  []byte
	meta  map[string]string
	tags  map[string]string
	ctype string
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

func (f *fixture) put(t testing.TB, objs []object) {
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

// staged is one object (or deletion) found in a staging archive.
type staged struct {
	obj  manifest.Object
	sum  string
	arch string
}

// readStaging returns every object found in the staging archives, by key.
// A key in several archives keeps one of them: use readArchives to see all.
func (f *fixture) readStaging(t testing.TB) map[string]staged {
	t.Helper()
	out := map[string]staged{}
	for _, s := range f.readArchives(t) {
		out[s.obj.Key] = s
	}
	return out
}

// readArchives returns every entry of every staging archive of the rule,
// verifying each archive while reading it.
func (f *fixture) readArchives(t testing.TB) []staged {
	t.Helper()
	ctx := context.Background()
	var out []staged
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
				if !o.HasMember() {
					out = append(out, staged{obj: o, arch: m.ArchiveID})
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
				out = append(out, staged{obj: *o, sum: hex.EncodeToString(h.Sum(nil)), arch: m.ArchiveID})
			}
			r.Close()
			get.Body.Close()
		}
	}
	return out
}

// waitStaged polls staging until want keys are archived.
func (f *fixture) waitStaged(t testing.TB, want int, within time.Duration) map[string]staged {
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

// queueDepth returns every message of a queue: visible, in flight or
// delayed. local-aws-sqs counts in-flight messages in
// ApproximateNumberOfMessages too (AWS counts only visible ones there), so
// adding ApproximateNumberOfMessagesNotVisible would count them twice.
func (f *fixture) queueDepth(t testing.TB, url string) int {
	t.Helper()
	out, err := f.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl:       &url,
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, v := range out.Attributes {
		k, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("queue %s: attribute value %q: %v", url, v, err)
		}
		n += k
	}
	return n
}

func TestArchivesMatchSources(t *testing.T) {
	f := setup(t, func(c *config.Config) { c.Rules[0].Batch.MaxObjects = 150 })
	stop := f.start(t, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))).stop
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
