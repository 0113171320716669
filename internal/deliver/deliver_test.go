package deliver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
	"github.com/xrc-dev/xrc/internal/verify"
)

// pipeline is a provisioned deployment with both workers running in-process.
type pipeline struct {
	env      localstack.Env
	cfg      *config.Config
	dep      localstack.Deployment
	src, dst *s3.Client
	sqs      *sqs.Client
	ddb      *dynamodb.Client
	log      *zap.Logger
	logs     *observer.ObservedLogs // everything log wrote at info and above
}

func newPipeline(t testing.TB, edit func(*config.Config)) *pipeline {
	t.Helper()
	env, cfg, dep := localstack.Deploy(t, "tgt", edit)
	ctx := context.Background()
	var err error
	log, logs := localstack.ObservedLogger(t, zap.InfoLevel)
	p := &pipeline{env: env, cfg: cfg, dep: dep, log: log, logs: logs}
	if p.src, err = env.S3(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	// Through the proxy that judges a DeleteObject's If-Match as S3 does
	// (MinIO ignores it): the workers' deletes and undos, and what the
	// tests wrap around them, are conditional as on AWS.
	if p.dst, err = env.S3Conditional(ctx, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	if p.sqs, err = env.SQS(ctx); err != nil {
		t.Fatal(err)
	}
	if p.ddb, err = env.DynamoDB(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// run starts a worker; the returned stop cancels it and waits for Run.
func run(t testing.TB, start func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- start(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				err = errors.New("worker did not stop within a minute")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (p *pipeline) startSource(t testing.TB) func() error {
	_, stop := p.startSourceReg(t)
	return stop
}

// startSourceReg starts a source worker, its deps edited by edits, and
// returns its metrics too.
func (p *pipeline) startSourceReg(t testing.TB, edits ...func(*source.Deps)) (*prometheus.Registry, func() error) {
	rule := p.cfg.Rules[0]
	q := queue.New(p.sqs, p.dep.SourceQueues[rule.ID])
	reg := prometheus.NewRegistry()
	awsCfg, err := awsapi.Load(context.Background(), "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	// Unchecked (awsapi.S3): TestDirectRegion runs one without its
	// direct region's credentials.
	direct, err := source.DirectClients(p.cfg, "us-east-1", nil, func(r config.Region) (source.S3API, error) { return awsapi.S3(awsCfg, r), nil })
	if err != nil {
		t.Fatal(err)
	}
	d := source.Deps{Config: p.cfg, Region: "us-east-1", Queue: q, S3: p.src, Log: p.log.Named("source"),
		Metrics: source.NewMetrics(reg), Health: health.New(time.Minute, time.Now), Stats: stats.New(p.ddb, p.cfg.TableName(), time.Now),
		Direct: direct}
	for _, edit := range edits {
		edit(&d)
	}
	w, err := source.New(d)
	if err != nil {
		t.Fatal(err)
	}
	return reg, run(t, w.Run)
}

func (p *pipeline) startTarget(t testing.TB) (*prometheus.Registry, func() error) {
	return p.startTargetWith(t, p.dst, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
}

// startTargetWith starts a target worker on the given clients, holding the
// messages it receives hidden for visibility.
func (p *pipeline) startTargetWith(t testing.TB, s3c deliver.S3API, sqsc queue.API, visibility time.Duration) (*prometheus.Registry, func() error) {
	reg := prometheus.NewRegistry()
	cfg := *p.cfg
	cfg.Settings.Worker.VisibilityTimeout = config.Duration(visibility)
	w := p.targetWorker(t, deliver.Deps{Config: &cfg, Queue: queue.New(sqsc, p.dep.TargetQueues["eu-west-1"]), S3: s3c, Metrics: deliver.NewMetrics(reg)})
	return reg, run(t, w.Run)
}

// targetWorker builds eu-west-1's target worker from d, the stack's
// table, config and logger standing in for what d leaves out.
func (p *pipeline) targetWorker(t testing.TB, d deliver.Deps) *deliver.Worker {
	t.Helper()
	if d.Config == nil {
		d.Config = p.cfg
	}
	if d.S3 == nil {
		d.S3 = p.dst
	}
	table := d.Config.TableName()
	if d.Tombstones == nil {
		d.Tombstones = tombstone.New(p.ddb, table, time.Now)
	}
	if d.Metrics == nil {
		d.Metrics = deliver.NewMetrics(prometheus.NewRegistry())
	}
	d.Region, d.Ledger, d.Uploads = "eu-west-1", ledger.New(p.ddb, table, time.Now), uploads.New(p.ddb, table, time.Now)
	if d.Log == nil {
		d.Log = p.log.Named("target")
	}
	d.Health = health.New(time.Minute, time.Now)
	w, err := deliver.New(d)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitDest polls the destination bucket until it holds n keys.
func (p *pipeline) waitDest(t testing.TB, n int, within time.Duration) int {
	t.Helper()
	bucket := p.cfg.Rules[0].Destinations[0].Bucket
	deadline := time.Now().Add(within)
	for {
		got := p.count(t, p.dst, bucket, "")
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Second)
	}
}

func (p *pipeline) count(t testing.TB, client *s3.Client, bucket, prefix string) int {
	t.Helper()
	return len(listKeys(t, client, bucket, prefix))
}

// keys lists every key in a destination bucket.
func (p *pipeline) keys(t testing.TB, bucket string) []string {
	t.Helper()
	return listKeys(t, p.dst, bucket, "")
}

func listKeys(t testing.TB, client *s3.Client, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	pg := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for pg.HasMorePages() {
		page, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func (p *pipeline) depth(t testing.TB, url string) int {
	t.Helper()
	out, err := p.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range out.Attributes {
		k, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("queue attribute %q: %v", v, err)
		}
		n += k
	}
	return n
}

func TestPipeline(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Batch.MaxObjects = 300 })
	p.startSource(t)
	_, stopTarget := p.startTarget(t)

	objs := dataset.Mixed("data/", 1000, 7)
	big := dataset.Object{Key: "data/big/300mib.txt", ContentType: "text/plain", Data: dataset.Text(newRand(), 300<<20)}
	ctx := context.Background()
	bucket := p.cfg.Rules[0].SourceBucket
	if err := dataset.Upload(ctx, p.src, bucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	if err := dataset.Put(ctx, p.src, bucket, &big); err != nil {
		t.Fatal(err)
	}
	// The same key written twice in quick succession: the newest must win.
	over := dataset.Object{Key: "data/overwrite.txt", ContentType: "text/plain"}
	for i := range 2 {
		over.Data = []byte(fmt.Sprintf("version %d", i))
		if err := dataset.Put(ctx, p.src, bucket, &over); err != nil {
			t.Fatal(err)
		}
	}
	all := append(append(objs, big), over)
	if got := p.waitDest(t, len(all), 5*time.Minute); got != len(all) {
		t.Fatalf("destination has %d objects, want %d", got, len(all))
	}
	// Let any stale archive (the first overwrite) arrive and be judged.
	deadline := time.Now().Add(time.Minute)
	for p.depth(t, p.dep.TargetQueues["eu-west-1"]) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if err := stopTarget(); err != nil {
		t.Fatal(err)
	}
	for _, err := range dataset.Check(ctx, p.dst, p.cfg.Rules[0].Destinations[0].Bucket, all, identity, 16) {
		t.Error(err)
	}
	// xrc verify, run on what the pipeline wrote, finds nothing to report
	// and proves every object equal by a digest. The destinations keep
	// the source objects' own checksums, so it reads no source object but
	// the large one, whose multipart upload left it only a checksum of
	// its parts' checksums.
	for _, hash := range []bool{false, true} {
		var mu sync.Mutex
		var diffs []verify.Difference
		sum, err := verify.Run(ctx, verify.Options{Rule: &p.cfg.Rules[0], Source: p.src, HashSources: hash,
			Destinations: map[string]verify.S3API{p.cfg.Settings.Regions[1].Name: p.dst}}, func(d verify.Difference) error {
			mu.Lock()
			defer mu.Unlock()
			diffs = append(diffs, d)
			return nil
		})
		if err != nil || len(diffs) != 0 {
			t.Errorf("xrc verify after the pipeline: %v, differences %+v", err, diffs)
		}
		for _, d := range sum.Destinations {
			unchecked, hashed := int64(1), int64(0)
			if hash {
				unchecked, hashed = 0, 1
			}
			if d.Compared != int64(len(all)) || d.Equal != d.Compared-unchecked || d.Hashed != hashed {
				t.Errorf("xrc verify (hashing sources %v): %+v, want all %d objects compared, %d proved equal, %d source read",
					hash, d, len(all), int64(len(all))-unchecked, hashed)
			}
		}
	}
	stagingDst := p.cfg.Settings.Regions[1].StagingBucket
	// Not hidden behind a delete marker, still billed: gone, every version.
	versions, err := p.dst.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &stagingDst})
	if err != nil {
		t.Fatal(err)
	}
	if n, m := len(versions.Versions), len(versions.DeleteMarkers); n != 0 || m != 0 {
		t.Errorf("target staging bucket still holds %d archive versions and %d delete markers", n, m)
	}
	for name, url := range map[string]string{"source": p.dep.SourceQueues["r1"], "target": p.dep.TargetQueues["eu-west-1"]} {
		if n := p.depth(t, url); n != 0 {
			t.Errorf("%s queue still holds %d messages", name, n)
		}
	}
}

func identity(k string) string { return k }

// TestReplayIsHarmless delivers an archive a second time: every object must
// be skipped as already written, the destination left untouched.
func TestReplayIsHarmless(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	p.startSource(t)
	reg, _ := p.startTarget(t)
	bucket := p.cfg.Rules[0].SourceBucket
	o := dataset.Object{Key: "data/a.txt", Data: []byte("first"), ContentType: "text/plain"}
	if err := dataset.Put(ctx, p.src, bucket, &o); err != nil {
		t.Fatal(err)
	}
	if got := p.waitDest(t, 1, time.Minute); got != 1 {
		t.Fatal("object not replicated")
	}
	// Replay the same archive by staging it again, under its own key (a
	// key naming another archive would be rejected): the redelivery must
	// be a no-op.
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	before, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &o.Key})
	if err != nil {
		t.Fatal(err)
	}
	stg := p.cfg.Settings.Regions[0].StagingBucket
	list, err := p.src.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &stg})
	if err != nil || len(list.Contents) == 0 {
		t.Fatalf("no source archive to replay: %v", err)
	}
	key := aws.ToString(list.Contents[0].Key)
	archive, err := p.src.GetObject(ctx, &s3.GetObjectInput{Bucket: &stg, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(archive.Body)
	archive.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &stg, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for skipped(t, reg) < 1 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	if skipped(t, reg) < 1 {
		t.Fatal("replayed archive was not skipped as older-or-same")
	}
	after, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &o.Key})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(before.ETag) != aws.ToString(after.ETag) || !before.LastModified.Equal(*after.LastModified) {
		t.Error("replayed archive rewrote the destination object")
	}
}

func skipped(t testing.TB, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "xrc_target_objects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && strings.HasPrefix(l.GetValue(), "skipped") {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// metricValue is the counter name{label=value} of reg (0: none yet).
func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(3, 4)) }

// TestDirectRegion: a target region S3 Replication cannot reach (another
// partition, an S3-compatible store: direct) gets each archive from the
// source, which copies it into that region's staging bucket with the
// region's own credentials (s3Credentials); its target delivers it as any.
// With credentials S3 refuses, the copy fails, but not the archive: its
// objects' messages are done (every other region has it) and the copy is
// left to a relay message on the source's queue, retried after its own
// backoff, which copies it once the credentials are right (read again
// after the refusal), staged once. While the region's copies fail, a new
// archive's is left to a relay message untried.
func TestDirectRegion(t *testing.T) {
	// Not parallel: t.Setenv.
	p := newPipeline(t, func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_DIRECT"
		// Relays retried every 1.5 s outlast the checks below, however
		// slow a loaded machine makes them (three tries were spent in 8 s
		// under CI's load, their archives in the DLQ).
		c.Settings.Worker.MaxReceiveCount = 40
	})
	ctx := context.Background()
	// Nothing replicates the source's staging bucket.
	if _, err := p.src.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: &p.cfg.Settings.Regions[0].StagingBucket}); err == nil {
		t.Fatal("the source's staging bucket is replicated to a direct region")
	}
	objs := dataset.Mixed("data/direct/", 40, 11)
	if err := dataset.Upload(ctx, p.src, p.cfg.Rules[0].SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XRC_TEST_DIRECT_ACCESS_KEY_ID", "AKIAXRCTESTWRONG")
	t.Setenv("XRC_TEST_DIRECT_SECRET_ACCESS_KEY", "wrong")
	// Distinct: the first receive's wait, and a failed receive's.
	const first, again = 2 * time.Second, 1500 * time.Millisecond
	reg, stopSource := p.startSourceReg(t, func(d *source.Deps) {
		d.RelayWait = func(n int) time.Duration {
			if n == 0 {
				return first
			}
			return again
		}
	})
	p.startTarget(t)
	if !poll(time.Minute, 200*time.Millisecond, func() bool {
		return metric(t, reg, "xrc_source_errors_total", "kind", "relay") >= 1 &&
			metric(t, reg, "xrc_source_messages_total", "result", "acked") >= float64(len(objs))
	}) {
		t.Fatalf("after a minute: %v failed copies to the direct region (want some), %v messages acknowledged (want %d)",
			metric(t, reg, "xrc_source_errors_total", "kind", "relay"), metric(t, reg, "xrc_source_messages_total", "result", "acked"), len(objs))
	}
	// The region's copies failing, the next archive's is not tried.
	more := dataset.Mixed("data/direct-more/", 5, 12)
	if err := dataset.Upload(ctx, p.src, p.cfg.Rules[0].SourceBucket, more, 8); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, more...)
	handedOff := func(tries int64) bool {
		for _, l := range p.logEntries("the direct region's copies are failing: archive left to a relay message without trying") {
			if l["tries"] == tries && l["region"] == "eu-west-1" {
				return true
			}
		}
		return false
	}
	if !poll(time.Minute, 100*time.Millisecond, func() bool {
		return handedOff(0) && metric(t, reg, "xrc_source_messages_total", "result", "acked") >= float64(len(objs))
	}) {
		t.Fatal("an archive staged while the direct region's copies fail was not left to a relay message untried")
	}
	// A relay whose copy fails comes back after its backoff.
	if !poll(time.Minute, 100*time.Millisecond, func() bool {
		for _, l := range p.logEntries("message not acknowledged: it will be retried") {
			if l["kind"] == "relay" && l["retryIn"] == again {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no relay retried after %v", again)
	}
	// Not copied with the worker's own credentials either: the region's
	// staging bucket got nothing.
	if n := p.count(t, p.dst, p.cfg.Settings.Regions[1].StagingBucket, ""); n != 0 {
		t.Fatalf("%d archives copied to the direct region with credentials S3 refuses", n)
	}
	t.Setenv("XRC_TEST_DIRECT_ACCESS_KEY_ID", os.Getenv("AWS_ACCESS_KEY_ID"))
	t.Setenv("XRC_TEST_DIRECT_SECRET_ACCESS_KEY", os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if got := p.waitDest(t, len(objs), 3*time.Minute); got != len(objs) {
		t.Fatalf("destination has %d objects, want %d", got, len(objs))
	}
	for _, err := range dataset.Check(ctx, p.dst, p.cfg.Rules[0].Destinations[0].Bucket, objs, identity, 8) {
		t.Error(err)
	}
	if n := metric(t, reg, "xrc_source_archives_total", "result", "relayed"); n < 1 {
		t.Errorf("%v archives copied by relay messages, want some", n)
	}
	// Staged once: nothing restaged, the statistics count each object once.
	if err := stopSource(); err != nil { // writes the statistics left
		t.Fatal(err)
	}
	hs, err := stats.New(p.ddb, p.cfg.TableName(), time.Now).Since(ctx, p.cfg.Rules[0].ID, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var in, restaged, total int64
	for _, h := range hs {
		in, restaged = in+h.In, restaged+h.Restaged
	}
	for _, o := range objs {
		total += int64(len(o.Data))
	}
	if in != total || restaged != 0 {
		t.Errorf("statistics: %d bytes in, %d restaged, for %d bytes staged once", in, restaged, total)
	}
	if n := p.depth(t, queueURL(t, p.sqs, p.cfg.SourceQueueName(p.cfg.Rules[0].ID)+"-dlq")); n != 0 {
		t.Errorf("source DLQ holds %d messages", n)
	}
}

// TestRelaysRefused: a relay message (events.Relay) is checked against the
// worker's own config like any message: one naming another bucket than
// this region's staging, a rule this worker does not serve, or a region
// that is not one of its rule's direct regions goes to the source's DLQ at
// once (permanent, kind relay), copying nothing, and so does one whose
// archive is gone from staging; on a target queue a relay is invalid, and
// goes to the target's DLQ.
func TestRelaysRefused(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_REFUSED" // never read: nothing is copied
	})
	ctx := context.Background()
	staging := p.cfg.Settings.Regions[0].StagingBucket
	send := func(url string, r events.Relay) {
		t.Helper()
		body, err := events.EncodeRelay(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := queue.New(p.sqs, url).Send(ctx, string(body), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	srcQueue := p.dep.SourceQueues[p.cfg.Rules[0].ID]
	why := map[string]string{ // key -> what its line must say
		"r1/2026/12/06/a.tar.zst":    "not this region's staging bucket",
		"nope/2026/12/06/b.tar.zst":  "rule nope is not served by this worker",
		"r1/2026/12/06/c.tar.zst":    "not a direct region of rule r1",
		"r1/2026/12/06/gone.tar.zst": "is gone from staging before its copy to eu-west-1 was made: run xrc backfill",
		// Its earlier messages' receives past maxReceiveCount (a relay
		// redriven from the DLQ keeps its body): tried all the same.
		"r1/2026/12/06/spent.tar.zst": "is gone from staging before its copy",
	}
	send(srcQueue, events.Relay{Region: "eu-west-1", Bucket: "not-staging", Key: "r1/2026/12/06/a.tar.zst"})
	send(srcQueue, events.Relay{Region: "eu-west-1", Bucket: staging, Key: "nope/2026/12/06/b.tar.zst"})
	send(srcQueue, events.Relay{Region: "us-east-1", Bucket: staging, Key: "r1/2026/12/06/c.tar.zst"})
	send(srcQueue, events.Relay{Region: "eu-west-1", Bucket: staging, Key: "r1/2026/12/06/gone.tar.zst", VersionID: "6f1b7d2e-3c1a-4a8e-9d7b-2f5e8c9a1b3c"})
	send(srcQueue, events.Relay{Region: "eu-west-1", Bucket: staging, Key: "r1/2026/12/06/spent.tar.zst", Tries: 100})
	send(p.dep.TargetQueues["eu-west-1"], events.Relay{Region: "eu-west-1", Bucket: staging, Key: "r1/2026/12/06/d.tar.zst"})
	// An archive's event from a bucket that is not the region's staging
	// (a name changed or mistyped): refused towards the DLQ, not
	// acknowledged with a warning while its objects never arrive.
	foreign := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put",` +
		`"s3":{"bucket":{"name":"not-staging"},"object":{"key":"r1/2026/12/06/e.tar.zst","size":100,"sequencer":"0055AED6DCD90281E5"}}}]}`
	if err := queue.New(p.sqs, p.dep.TargetQueues["eu-west-1"]).Send(ctx, foreign, 0, 0); err != nil {
		t.Fatal(err)
	}
	p.startSource(t)
	p.startTarget(t)
	srcDLQ := queueURL(t, p.sqs, p.cfg.SourceQueueName(p.cfg.Rules[0].ID)+"-dlq")
	tgtDLQ := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	if !poll(time.Minute, 200*time.Millisecond, func() bool { return p.depth(t, srcDLQ) == len(why) && p.depth(t, tgtDLQ) == 2 }) {
		t.Fatalf("after a minute: source DLQ %d (want %d), target DLQ %d (want 2: a relay, an archive of another bucket)", p.depth(t, srcDLQ), len(why), p.depth(t, tgtDLQ))
	}
	foreignSaid := false
	for _, l := range p.logEntries("archive not delivered: message bound for the DLQ") {
		foreignSaid = foreignSaid || l["kind"] == "rejected" && strings.Contains(fmt.Sprint(l["error"]), "s3://not-staging/r1/2026/12/06/e.tar.zst: not this region's staging bucket")
	}
	if !foreignSaid {
		t.Error("no line says the archive of another bucket is bound for the DLQ, and why")
	}
	// Said as any permanent failure, naming why (a relay whose earlier
	// messages' receives are spent says so on its receives after).
	said := map[string]bool{}
	for _, l := range p.logEntries("message not acknowledged: bound for the DLQ") {
		key, _ := l["key"].(string)
		if l["kind"] != "relay" {
			t.Errorf("line of a refused relay of %s: %v", key, l)
		}
		if l["permanent"] == true && strings.Contains(fmt.Sprint(l["error"]), why[key]) {
			said[key] = true
		}
	}
	if len(said) != len(why) {
		t.Errorf("lines bound for the DLQ say why for %v, want the %d relays' keys", said, len(why))
	}
	if n := p.count(t, p.dst, p.cfg.Settings.Regions[1].StagingBucket, ""); n != 0 {
		t.Errorf("%d objects in the direct region's staging", n)
	}
}
