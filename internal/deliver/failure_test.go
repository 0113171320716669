package deliver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// TestMissingDestinationBucket extracts an archive into a destination
// bucket that does not exist: the message is retried with backoff, then
// dead-lettered, the error log names the bucket, and the worker neither
// creates the bucket nor deletes the staging archive.
func TestMissingDestinationBucket(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	if err := p.env.RemoveBucket(ctx, "eu-west-1", dst); err != nil {
		t.Fatal(err)
	}
	reg, _ := p.startTarget(t)

	rng := newRand()
	objs := []dataset.Object{
		{Key: "data/a.txt", ContentType: "text/plain", Data: dataset.Text(rng, 1000)},
		{Key: "data/b.txt", ContentType: "text/plain", Data: dataset.Text(rng, 2000)},
		{Key: "data/big.txt", ContentType: "text/plain", Data: dataset.Text(rng, deliver.BufferMax+1<<20)}, // multipart path
	}
	staging := p.cfg.Settings.Regions[1].StagingBucket
	putStaging(t, p.dst, staging, "r1/no-bucket.tar.zst", writeArchive(t, manifestFor("no-bucket", objs, p.cfg, nil), objs))

	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	tq := p.dep.TargetQueues["eu-west-1"]
	if !poll(2*time.Minute, time.Second, func() bool { return p.depth(t, dlq) > 0 && p.depth(t, tq) == 0 }) {
		t.Fatalf("after 2 minutes: DLQ %d messages (want > 0), target queue %d (want 0)", p.depth(t, dlq), p.depth(t, tq))
	}

	var naming []map[string]any
	for _, e := range p.released() {
		if strings.Contains(fmt.Sprint(e["error"]), "s3://"+dst+"/") {
			naming = append(naming, e)
		}
	}
	if len(naming) < 2 {
		t.Fatalf("%d error log lines name bucket %s, want one per attempt (at least 2); all: %v",
			len(naming), dst, p.released())
	}
	if e := naming[0]; e["archive"] != "no-bucket" || e["rule"] != "r1" || e["kind"] != "not_found" {
		t.Errorf("released naming archive %v, rule %v, kind %v: want no-bucket, r1, not_found", e["archive"], e["rule"], e["kind"])
	}
	// Not an invalid archive: released with a backoff, not straight away.
	if d, _ := naming[0]["retryIn"].(time.Duration); d <= 0 {
		t.Errorf("first failure released with retryIn %v, want a backoff > 0", d)
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "not_found"); n == 0 {
		t.Error("no not_found error counted")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "written"); n != 0 {
		t.Errorf("%v objects counted as written", n)
	}
	if _, err := p.dst.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &dst}); err == nil {
		t.Errorf("destination bucket %s exists: the worker must not create it", dst)
	}
	if n := p.count(t, p.dst, staging, ""); n != 1 {
		t.Errorf("staging holds %d archives, want the undeliverable one kept", n)
	}
}

// crashArchive is an archive whose extraction takes long enough to be
// interrupted: small objects, one large object, small objects.
func crashArchive(bigSize int) []dataset.Object {
	rng := newRand()
	var objs []dataset.Object
	for i := range 300 {
		if i == 150 {
			objs = append(objs, dataset.Object{Key: "data/crash/big.txt", ContentType: "text/plain", Data: textData(9, int64(bigSize))})
		}
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("data/crash/small-%03d.txt", i), ContentType: "text/plain",
			Metadata: map[string]string{"n": strconv.Itoa(i)}, Data: dataset.Text(rng, 1+rng.IntN(32<<10))})
	}
	return objs
}

// stageCrashArchive streams objs as one archive into target staging,
// each with a CRC64NVME, as AWS gives objects by default: a resumed upload
// keeps its parts' CRC64NVME.
func (p *pipeline) stageCrashArchive(t *testing.T, objs []dataset.Object) {
	t.Helper()
	m := manifestFor("crash-1", objs, p.cfg, nil)
	for i, o := range objs {
		m.Objects[i].ChecksumAlgorithm, m.Objects[i].Checksum = "CRC64NVME", checksum.CRC64NVME.Sum(o.Data)
	}
	_, _, err := streamArchive(context.Background(), p.dst, p.cfg.Settings.Regions[1].StagingBucket, "r1/crash-1.tar.zst", m,
		func(i int) io.Reader { return bytes.NewReader(objs[i].Data) })
	if err != nil {
		t.Fatal(err)
	}
}

// waitMidArchive polls until some objects are written and the upload of
// key is under way: the worker is in the middle of the archive.
func (p *pipeline) waitMidArchive(t *testing.T, key string) {
	t.Helper()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	if !poll(2*time.Minute, 50*time.Millisecond, func() bool {
		return p.count(t, p.dst, dst, "") > 0 && p.uploading(t, dst, key) > 0
	}) {
		t.Fatalf("the worker never got to the middle of the archive (%d objects written, %d uploads of %s)",
			p.count(t, p.dst, dst, ""), p.uploading(t, dst, key), key)
	}
}

// uploading counts the unfinished multipart uploads of key.
func (p *pipeline) uploading(t testing.TB, bucket, key string) int {
	t.Helper()
	out, err := p.dst.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) == key {
			n++
		}
	}
	return n
}

// snapshot returns each destination object's ETag and modification time.
func (p *pipeline) snapshot(t testing.TB) map[string]string {
	t.Helper()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	out := map[string]string{}
	pg := s3.NewListObjectsV2Paginator(p.dst, &s3.ListObjectsV2Input{Bucket: &dst})
	for pg.HasMorePages() {
		page, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToString(o.ETag) + " " + o.LastModified.Format(time.RFC3339Nano)
		}
	}
	return out
}

// finishAfterCrash starts a fresh worker and checks that it completes the
// archive the crashed one left: every object correct, the objects the
// first worker wrote skipped rather than written again, staging and queues
// empty.
func (p *pipeline) finishAfterCrash(t *testing.T, objs []dataset.Object, before map[string]string) *prometheus.Registry {
	t.Helper()
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	tq := p.dep.TargetQueues["eu-west-1"]
	reg, stop := p.startTarget(t)
	if !poll(3*time.Minute, time.Second, func() bool {
		return p.count(t, p.dst, staging, "") == 0 && p.depth(t, tq) == 0
	}) {
		t.Fatalf("restarted worker did not finish: staging holds %d archives, target queue %d messages, destination %d/%d objects",
			p.count(t, p.dst, staging, ""), p.depth(t, tq), p.count(t, p.dst, dst, ""), len(objs))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, objs, identity, 16) {
		t.Error(err)
	}
	after := p.snapshot(t)
	if len(after) != len(objs) {
		t.Errorf("destination holds %d objects, want %d", len(after), len(objs))
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s was written again after the restart (%s, was %s)", k, after[k], v)
		}
	}
	if got := metric(t, reg, "xrc_target_objects_total", "result", "skipped_older"); got != float64(len(before)) {
		t.Errorf("restarted worker skipped %v objects, want the %d written before the crash", got, len(before))
	}
	if got := metric(t, reg, "xrc_target_objects_total", "result", "written"); got != float64(len(objs)-len(before)) {
		t.Errorf("restarted worker wrote %v objects, want the %d missing", got, len(objs)-len(before))
	}
	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	if n := p.depth(t, dlq); n != 0 {
		t.Errorf("DLQ holds %d messages", n)
	}
	// The upload the crash left behind is completed or aborted by the next
	// delivery; its parts are not left billed until a lifecycle rule runs.
	if n := p.uploading(t, dst, "data/crash/big.txt"); n != 0 {
		t.Errorf("%d incomplete multipart uploads of the large object remain after the next delivery", n)
	}
	return reg
}

// TestKilledMidArchive crashes the target worker while it writes an
// archive's objects (a SIGKILL as the servers see it: connections cut, no
// release, no abort, no heartbeat), then starts a new one. The message comes
// back after its visibility timeout and the new worker completes the
// archive without rewriting what the first one wrote.
func TestKilledMidArchive(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		// Run returns at once rather than retrying requests that can no
		// longer reach anything.
		c.Settings.Worker.DrainTimeout = config.Duration(time.Millisecond)
		// The local SQS counts visibility changes (heartbeats) as
		// receives; keep the crashed delivery out of the DLQ.
		c.Settings.Worker.MaxReceiveCount = 20
	})
	ctx := context.Background()
	objs := crashArchive(200 << 20)
	p.stageCrashArchive(t, objs)

	dead, kill := context.WithCancel(ctx)
	defer kill()
	s3o := p.dst.Options()
	s3o.HTTPClient = &killSwitch{inner: s3o.HTTPClient, dead: dead}
	sqso := p.sqs.Options()
	sqso.HTTPClient = &killSwitch{inner: sqso.HTTPClient, dead: dead}
	// A short hold, so the message comes back soon after the crash.
	_, stop := p.startTargetWith(t, s3.New(s3o), sqs.New(sqso), 10*time.Second)

	big := "data/crash/big.txt"
	p.waitMidArchive(t, big)
	// Kill once parts are up, so there is something to resume.
	if !poll(2*time.Minute, 50*time.Millisecond, func() bool { return p.parts(t, p.cfg.Rules[0].Destinations[0].Bucket, big) >= 2 }) {
		t.Fatal("the large object's upload never got two parts")
	}
	kill()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before := p.snapshot(t)
	if _, ok := before[big]; ok {
		t.Fatal("the large object completed before the kill; the test did not interrupt anything")
	}
	left := p.parts(t, p.cfg.Rules[0].Destinations[0].Bucket, big)
	t.Logf("killed with %d of %d objects written, %d multipart upload(s) of %s left behind with %d parts",
		len(before), len(objs), p.uploading(t, p.cfg.Rules[0].Destinations[0].Bucket, big), big, left)
	reg := p.finishAfterCrash(t, objs, before)
	// The next delivery resumed the upload rather than starting over.
	if got := metric(t, reg, "xrc_target_resumed_bytes_total"); got < float64(left<<24) {
		t.Errorf("restarted worker reused %v bytes of the interrupted upload, want the %d parts (16 MiB each) it held", got, left)
	}
	h, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &p.cfg.Rules[0].Destinations[0].Bucket, Key: &big, ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil || aws.ToString(h.ChecksumCRC64NVME) != checksum.CRC64NVME.Sum(objs[150].Data) {
		t.Errorf("resumed upload of %s: %v, CRC64NVME %q, want the source's %q", big, err, aws.ToString(h.ChecksumCRC64NVME), checksum.CRC64NVME.Sum(objs[150].Data))
	}
}

// parts counts the parts uploaded so far in key's unfinished uploads.
func (p *pipeline) parts(t testing.TB, bucket, key string) int {
	t.Helper()
	out, err := p.dst.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		ps, err := p.dst.ListParts(context.Background(), &s3.ListPartsInput{Bucket: &bucket, Key: &key, UploadId: u.UploadId})
		if err != nil {
			t.Fatal(err)
		}
		n += len(ps.Parts)
	}
	return n
}

// TestCutOnLastReceive: a message whose work the stop cuts on its last
// receive is sent again as a new message (its deferral counted), not left
// to reach the DLQ for the stop; one already sent again maxReceiveCount
// times goes to the DLQ: that is said at error level, the line an
// operator redrives from, not as a quiet shutdown.
func TestCutOnLastReceive(t *testing.T) {
	t.Parallel()
	for _, deferred := range []int{0, 1} {
		t.Run(fmt.Sprint("deferred ", deferred), func(t *testing.T) {
			t.Parallel()
			p := newPipeline(t, func(c *config.Config) {
				c.Settings.Worker.DrainTimeout = config.Duration(time.Millisecond)
				c.Settings.Worker.MaxReceiveCount = 1
			})
			p.stageCrashArchive(t, crashArchive(48<<20))
			p.deferTargetMessage(t, deferred)
			_, stop := p.startTarget(t)
			p.waitMidArchive(t, "data/crash/big.txt")
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			bound, again := p.logEntries(msgBoundForDLQ), p.logEntries("shutting down on the message's last receive: archive abandoned; to be sent again as a new message")
			switch {
			case deferred == 0 && (len(bound) != 0 || len(again) != 1):
				t.Errorf("%d lines say the cut message is bound for the DLQ, %d that it was sent again; want it sent again", len(bound), len(again))
			case deferred == 1 && (len(bound) != 1 || bound[0]["cut"] != true || bound[0]["cause"] != "stopping" || len(again) != 0):
				t.Errorf("%d lines say the cut message is bound for the DLQ, want 1 (cut, cause: stopping): %v", len(bound), bound)
			}
			if e := p.logEntries("shutting down: archive abandoned; message released"); len(e) != 0 {
				t.Errorf("the cut on the last receive was logged as a quiet shutdown too")
			}
			if deferred == 0 {
				if got := p.deferredInTarget(t); !slices.Equal(got, []string{"1"}) {
					t.Errorf("the target queue holds messages deferred %q times, want one sent again once", got)
				}
			}
		})
	}
}

// deferTargetMessage takes the staging archive's event from the target
// queue and puts it back as sent again deferred times (none: as it is).
func (p *pipeline) deferTargetMessage(t *testing.T, deferred int) {
	t.Helper()
	if deferred == 0 {
		return
	}
	ctx := context.Background()
	url := p.dep.TargetQueues["eu-west-1"]
	var msgs []sqstypes.Message
	for deadline := time.Now().Add(time.Minute); len(msgs) == 0 && time.Now().Before(deadline); {
		out, err := p.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 2, MaxNumberOfMessages: 1})
		if err != nil {
			t.Fatal(err)
		}
		msgs = out.Messages
	}
	if len(msgs) != 1 {
		t.Fatal("the staging archive's event never reached the target queue")
	}
	if _, err := p.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: msgs[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if failed, err := queue.New(p.sqs, url).SendAgainAll(ctx, 0, queue.Message{Body: aws.ToString(msgs[0].Body), Deferred: deferred - 1}); err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
}

// deferredInTarget returns the deferral count of each message visible in
// the target queue.
func (p *pipeline) deferredInTarget(t *testing.T) []string {
	t.Helper()
	url := p.dep.TargetQueues["eu-west-1"]
	var ds []string
	// Sent again, it waits out the stopped worker's polls in flight.
	for deadline := time.Now().Add(20 * time.Second); len(ds) == 0 && time.Now().Before(deadline); {
		out, err := p.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1, MaxNumberOfMessages: 10,
			MessageAttributeNames: []string{queue.DeferredAttribute}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			ds = append(ds, aws.ToString(m.MessageAttributes[queue.DeferredAttribute].StringValue))
		}
	}
	return ds
}

// TestDrainTimeoutReleases stops the worker while it writes an archive,
// with a drain time too short to finish: the archive is abandoned, its
// message released at once (not left hidden until its visibility timeout
// ends), and a new worker completes it, leaving no upload behind.
func TestDrainTimeoutReleases(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		c.Settings.Worker.DrainTimeout = config.Duration(time.Millisecond)
		c.Settings.Worker.MaxReceiveCount = 20
	})
	objs := crashArchive(96 << 20)
	p.stageCrashArchive(t, objs)
	rec := &releases{API: p.sqs}
	_, stop := p.startTargetWith(t, p.dst, rec, 10*time.Second)
	p.waitMidArchive(t, "data/crash/big.txt")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The worker's last poll, which outlives the stop, may take the
	// released message again; it releases it again at once.
	if n := rec.count(); n < 1 || n > 2 {
		t.Errorf("the abandoned message was released %d times, want once (twice if the last poll took it)", n)
	}
	if e := p.logEntries("shutting down: archive abandoned; message released"); len(e) != 1 {
		t.Errorf("%d log lines report the abandoned archive, want 1", len(e))
	}
	if e := p.logs.FilterLevelExact(zap.ErrorLevel).All(); len(e) != 0 {
		t.Errorf("shutdown logged %d errors, first %q", len(e), e[0].Message)
	}
	// The large object's upload is kept for the next delivery to resume
	// (finishAfterCrash checks none is left once it is done).
	before := p.snapshot(t)
	if len(before) == len(objs) {
		t.Fatal("the archive completed before the stop; the test did not interrupt anything")
	}
	p.finishAfterCrash(t, objs, before)
}

// releases records the messages made visible again (visibility 0) with
// success.
type releases struct {
	queue.API
	mu sync.Mutex
	n  int
}

func (r *releases) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	out, err := r.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
	if err == nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range in.Entries {
			if e.VisibilityTimeout == 0 && !slices.ContainsFunc(out.Failed, func(f sqstypes.BatchResultErrorEntry) bool {
				return aws.ToString(f.Id) == aws.ToString(e.Id)
			}) {
				r.n++
			}
		}
	}
	return out, err
}

func (r *releases) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestOrphanUploadSwept: a task killed during an archive's last delivery
// leaves a recorded upload nobody resumes. A starting worker aborts it once
// its archive is gone from staging, and keeps one whose archive is still
// there (a redrive from the DLQ resumes it).
func TestOrphanUploadSwept(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	store := uploads.New(p.ddb, p.cfg.TableName(), time.Now)
	// The stand-in archive below ("x") must stay unread: were its event to
	// reach the worker before it stops (MinIO may post it at once), its
	// failed delivery would rightly abort the upload this test keeps.
	if err := p.env.UnrouteEvents(ctx, staging); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &staging, Key: aws.String("r1/still-here.tar.zst"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	record := func(stagingKey, key string) {
		out, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		err = store.Put(ctx, uploads.Upload{Region: p.cfg.Settings.Regions[1].Name, StagingBucket: staging, StagingKey: stagingKey,
			ArchiveID: "a-" + key, Member: "objects/000000/" + key, Bucket: dst, Key: key, UploadID: aws.ToString(out.UploadId),
			PartSize: 16 << 20, Started: time.Now().Add(-time.Hour)}, "")
		if err != nil {
			t.Fatal(err)
		}
	}
	record("r1/gone.tar.zst", "data/orphan.bin")
	record("r1/still-here.tar.zst", "data/kept.bin")
	_, stop := p.startTarget(t)
	if !poll(time.Minute, 100*time.Millisecond, func() bool { return p.uploading(t, dst, "data/orphan.bin") == 0 }) {
		t.Error("the upload of an archive gone from staging was not aborted")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := p.uploading(t, dst, "data/kept.bin"); n != 1 {
		t.Errorf("%d uploads of an archive still in staging, want it kept", n)
	}
	left, err := store.List(ctx, p.cfg.Settings.Regions[1].Name, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Key != "data/kept.bin" {
		t.Errorf("recorded uploads after the sweep: %+v, want only data/kept.bin", left)
	}
}

// hungAborts never answers an AbortMultipartUpload before its context
// ends, as a stalled connection.
type hungAborts struct {
	deliver.S3API
	called chan struct{}
	once   sync.Once
}

func (h *hungAborts) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	h.once.Do(func() { close(h.called) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopDoesNotWaitForTheSweep: a target stopping while its sweep
// aborts a leftover upload does not wait for that abort (ten seconds on a
// stalled connection, past ECS's stop): the record stays for the next
// sweep.
func TestStopDoesNotWaitForTheSweep(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	st := uploads.New(p.ddb, p.cfg.TableName(), time.Now)
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	if err := st.Put(context.Background(), uploads.Upload{Region: "eu-west-1", StagingBucket: p.cfg.Settings.Regions[1].StagingBucket,
		StagingKey: "r1/gone.tar.zst", ArchiveID: "gone", Member: "objects/000000/k", Bucket: dst, Key: "k", UploadID: "u-1",
		PartSize: 16 << 20, Started: time.Now().Add(-time.Hour).UTC()}, ""); err != nil {
		t.Fatal(err)
	}
	api := &hungAborts{S3API: p.dst, called: make(chan struct{})}
	_, stop := p.startTargetWith(t, api, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	select {
	case <-api.called:
	case <-time.After(30 * time.Second):
		t.Fatal("the sweep did not abort the leftover upload")
	}
	begun := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The abort hangs for its 10 s timeout; the stop itself is a poll in
	// flight and the sweep's 2 s wait, which a loaded box stretches.
	if took := time.Since(begun); took > 8*time.Second {
		t.Errorf("the stop took %v, waiting for the sweep's abort", took)
	}
}

// cutPuts refuses the PUT of one key a moment late and holds every other
// PUT until its context ends.
type cutPuts struct {
	deliver.S3API
	denied string
}

func (c cutPuts) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if aws.ToString(in.Key) == c.denied {
		time.Sleep(100 * time.Millisecond) // while the other is under way
		return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not granted"}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestWritesCutByAFailureAreNotFailures: when one write of an archive
// fails, the writes beside it are cut short; counted as failed writes of
// their own, each added a failed object and an error of kind "write" to
// the one real failure, and on-call chased those.
func TestWritesCutByAFailureAreNotFailures(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	objs := []dataset.Object{
		{Key: "data/cut/denied.txt", ContentType: "text/plain", Data: []byte("refused")},
		{Key: "data/cut/held.txt", ContentType: "text/plain", Data: []byte("held until cut")},
	}
	m := manifestFor("cut", objs, p.cfg, nil)
	p.stage(t, "r1/cut.tar.zst", m, objs)
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{S3: cutPuts{p.dst, "data/cut/denied.txt"}, Metrics: deliver.NewMetrics(reg)})
	err := w.Deliver(context.Background(), p.cfg.Settings.Regions[1].StagingBucket, "r1/cut.tar.zst")
	if err == nil {
		t.Fatal("delivered with a write refused")
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "access_denied"); n != 1 {
		t.Errorf("%v errors of kind access_denied, want 1", n)
	}
	if n := metric(t, reg, "xrc_target_errors_total"); n != 1 {
		t.Errorf("%v errors counted, want the refused write's alone", n)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "failed"); n != 1 {
		t.Errorf("%v objects failed, want the refused one", n)
	}
}

// twinCompletes aborts each multipart upload before its completion, as
// another delivery of the archive that resumed it and finished first, or
// gave up on it, would: forgetting its record too, as those do. Without a
// store (a lifecycle rule's abort, or one by hand) the record stays.
type twinCompletes struct {
	deliver.S3API
	store *uploads.Store
	lag   time.Duration // forgotten this long after the abort, as a delivery's forget follows its complete
}

func (c twinCompletes) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if _, err := c.S3API.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: in.Bucket, Key: in.Key, UploadId: in.UploadId}); err != nil {
		return nil, err
	}
	if c.store != nil {
		us, err := c.store.List(ctx, "eu-west-1", "")
		if err != nil {
			return nil, err
		}
		forget := func() {
			for _, u := range us {
				if u.UploadID == aws.ToString(in.UploadId) {
					_ = c.store.Delete(context.Background(), u)
				}
			}
		}
		if c.lag > 0 {
			time.AfterFunc(c.lag, forget)
		} else {
			forget()
		}
	}
	return c.S3API.CompleteMultipartUpload(ctx, in, optFns...)
}

// TestUploadTakenOverWaits: a large member's upload that another delivery
// of the archive completed or aborted under this one (NoSuchUpload) is a
// wait for that delivery, as when both create one at once: not a failure
// of this delivery, which on its last receive would abandon the other's
// uploads too.
func TestUploadTakenOverWaits(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	objs := []dataset.Object{{Key: "data/twin/large.txt", ContentType: "text/plain", Data: textData(7, deliver.BufferMax+1<<20)}}
	m := manifestFor("twin", objs, p.cfg, nil)
	p.stage(t, "r1/twin.tar.zst", m, objs)
	reg := prometheus.NewRegistry()
	store := uploads.New(p.ddb, p.cfg.TableName(), time.Now)
	w := p.targetWorker(t, deliver.Deps{S3: twinCompletes{p.dst, store, 0}, Metrics: deliver.NewMetrics(reg)})
	err := w.Deliver(context.Background(), p.cfg.Settings.Regions[1].StagingBucket, "r1/twin.tar.zst")
	if !deliver.Waiting(err) {
		t.Fatalf("delivery whose upload another completed: %v; want a wait for it", err)
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "concurrent_delivery"); n != 1 {
		t.Errorf("%v errors of kind concurrent_delivery, want 1", n)
	}
	// The other's record forgotten a second after its complete (its
	// forget follows it): still a wait, not an abort by nobody's.
	objs = []dataset.Object{{Key: "data/twin/later.txt", ContentType: "text/plain", Data: textData(9, deliver.BufferMax+1<<20)}}
	p.stage(t, "r1/twin-later.tar.zst", manifestFor("twin-later", objs, p.cfg, nil), objs)
	w = p.targetWorker(t, deliver.Deps{S3: twinCompletes{p.dst, store, time.Second}})
	if err := w.Deliver(context.Background(), p.cfg.Settings.Regions[1].StagingBucket, "r1/twin-later.tar.zst"); !deliver.Waiting(err) {
		t.Fatalf("delivery whose upload another completed, forgetting it a second later: %v; want a wait for it", err)
	}
}

// TestUploadAbortedByOthersFails: a large member's upload gone under its
// delivery while still recorded was aborted by no delivery of xrc's (each
// forgets its record), but by the destination's lifecycle rule or by
// hand: a failure, said so, not a wait for a delivery that does not
// exist (counted concurrent_delivery, it sent on-call after a duplicate
// event); the next delivery starts the upload over and writes it.
func TestUploadAbortedByOthersFails(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	objs := []dataset.Object{{Key: "data/lifecycle/large.txt", ContentType: "text/plain", Data: textData(8, deliver.BufferMax+1<<20)}}
	m := manifestFor("lifecycle", objs, p.cfg, nil)
	p.stage(t, "r1/lifecycle.tar.zst", m, objs)
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{S3: twinCompletes{p.dst, nil, 0}, Metrics: deliver.NewMetrics(reg)})
	staging := p.cfg.Settings.Regions[1].StagingBucket
	err := w.Deliver(context.Background(), staging, "r1/lifecycle.tar.zst")
	if err == nil || deliver.Waiting(err) || !strings.Contains(err.Error(), "lifecycle rule") {
		t.Fatalf("delivery whose upload a lifecycle rule aborted: %v; want a failure saying so", err)
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "concurrent_delivery"); n != 0 {
		t.Errorf("%v errors of kind concurrent_delivery, want none", n)
	}
	if err := p.targetWorker(t, deliver.Deps{}).Deliver(context.Background(), staging, "r1/lifecycle.tar.zst"); err != nil {
		t.Fatalf("the next delivery: %v", err)
	}
	if !bytes.Equal(p.read(t, p.cfg.Rules[0].Destinations[0].Bucket, objs[0].Key), objs[0].Data) {
		t.Error("the next delivery wrote other bytes")
	}
}

// TestObjectOutcomesAtDebug: with logLevel debug, each object's outcome at
// each destination is a line naming its archive, source and destination:
// the trail for "why is s3://b/k not there" (here, a replayed older write
// skipped).
func TestObjectOutcomesAtDebug(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	staging := p.cfg.Settings.Regions[1].StagingBucket
	log, logs := localstack.ObservedLogger(t, zap.DebugLevel)
	w := p.targetWorker(t, deliver.Deps{Log: log})
	k := "data/debug/k.txt"
	for _, a := range []struct{ id, seq, body string }{
		{"20261206T000000Z-abcdef12-000000000002", seqAt(2), "newer"},
		{"20261206T000000Z-abcdef12-000000000001", seqAt(1), "older, replayed"},
	} {
		m, objs := p.objectArchive(a.id, k, a.seq, []byte(a.body))
		p.stage(t, "r1/"+a.id+".tar.zst", m, objs)
		if err := w.Deliver(ctx, staging, "r1/"+a.id+".tar.zst"); err != nil {
			t.Fatal(err)
		}
	}
	for msg, id := range map[string]string{"object written": "20261206T000000Z-abcdef12-000000000002", "object skipped_older": "20261206T000000Z-abcdef12-000000000001"} {
		lines := logs.FilterMessage(msg).All()
		if len(lines) != 1 {
			t.Errorf("%d lines %q, want 1", len(lines), msg)
			continue
		}
		if f := lines[0].ContextMap(); f["archive"] != id || f["sourceKey"] != k || f["key"] != k || f["bucket"] != p.cfg.Rules[0].Destinations[0].Bucket {
			t.Errorf("%q names %v", msg, f)
		}
	}
}

// TestDeliveryReadsTheVersionItsEventNames: a staging key written twice (a
// PUT the SDK sent again after S3 had applied it) has two versions, each
// with its event; each delivery reads and deletes the version its event
// names. Unpinned, two deliveries at once both read and deleted the
// newer, and the older stayed until lifecycle. (Different objects in the
// one archive id here, so that which version was read shows.)
func TestDeliveryReadsTheVersionItsEventNames(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	staging := p.cfg.Settings.Regions[1].StagingBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	key := "r1/twice.tar.zst"
	first, second := "data/pin/first.txt", "data/pin/second.txt"
	var versions []string
	for i, k := range []string{first, second} {
		m, objs := p.objectArchive("twice", k, seqAt(i+1), []byte(k))
		out, err := p.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &staging, Key: &key, Body: bytes.NewReader(writeArchive(t, m, objs))})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, aws.ToString(out.VersionId))
	}
	w := p.targetWorker(t, deliver.Deps{})
	if err := w.DeliverVersion(ctx, staging, key, versions[0]); err != nil {
		t.Fatal(err)
	}
	if !p.exists(t, dst, first) || p.exists(t, dst, second) {
		t.Fatalf("the first version's delivery wrote %s: %t, %s: %t; want the first's object alone", first, p.exists(t, dst, first), second, p.exists(t, dst, second))
	}
	if err := w.DeliverVersion(ctx, staging, key, versions[1]); err != nil {
		t.Fatal(err)
	}
	out, err := p.dst.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &staging, Prefix: &key})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Versions) + len(out.DeleteMarkers); n != 0 || !p.exists(t, dst, second) {
		t.Errorf("%d versions of the staging key left, second object written: %t", n, p.exists(t, dst, second))
	}
}

// refusingComplete answers the first complete of key's upload with a 412,
// as S3 answers the SDK's retry of a complete that was applied and whose
// answer was lost ("applied": the real complete runs first), or a
// complete another write of the key beat ("older", "newer": an xrc write
// of an older or newer version lands first).
type refusingComplete struct {
	deliver.S3API
	key, mode string
	once      sync.Once
	parts     atomic.Int32
}

func (r *refusingComplete) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if aws.ToString(in.Key) == r.key {
		r.parts.Add(1)
	}
	return r.S3API.UploadPart(ctx, in, o...)
}

func (r *refusingComplete) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	refuse := false
	if aws.ToString(in.Key) == r.key {
		r.once.Do(func() { refuse = true })
	}
	if !refuse {
		return r.S3API.CompleteMultipartUpload(ctx, in, o...)
	}
	seq := seqAt(0)
	switch r.mode {
	case "applied":
		if _, err := r.S3API.CompleteMultipartUpload(ctx, in, o...); err != nil {
			return nil, err
		}
	case "newer":
		seq = seqAt(5)
		fallthrough
	default:
		if _, err := r.S3API.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader(r.mode + " write"),
			Metadata: map[string]string{deliver.MetaArchive: r.mode + "-archive", deliver.MetaSequencer: seq}}); err != nil {
			return nil, err
		}
	}
	return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold (injected)"}
}

// TestRefusedCompleteDecidedAgain: a large member's complete refused on
// its condition (412) is decided again, its upload not aborted at once (a
// condition binds the complete, not the parts). Applied, its answer lost,
// the key holds this write: delivered, counted written. Beaten by a newer
// write: skipped, the upload aborted. Beaten by an older write landing
// first: the upload is kept, and the next delivery resumes it, sends no
// part again and completes on the ETag it reads.
func TestRefusedCompleteDecidedAgain(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	for _, c := range []struct {
		mode, want, result string // want: the destination's bytes; result: how the object is counted
	}{{"applied", "", "written"}, {"newer", "newer write", "skipped_older"}, {"older", "", "written"}} {
		id := "refused-" + c.mode
		k := "data/large/" + id + ".txt"
		data := textData(9, deliver.BufferMax+1<<20)
		m, objs := p.objectArchive(id, k, seqAt(1), data)
		key := "r1/" + id + ".tar.zst"
		p.stage(t, key, m, objs)
		rc := &refusingComplete{S3API: p.dst, key: k, mode: c.mode}
		reg := prometheus.NewRegistry()
		w := p.targetWorker(t, deliver.Deps{S3: rc, Metrics: deliver.NewMetrics(reg)})
		err := w.Deliver(ctx, staging, key)
		if c.mode == "older" {
			if !awsapi.IsPreconditionFailed(err) {
				t.Fatalf("complete beaten by an older write: %v, want the 412", err)
			}
			if n := p.uploading(t, dst, k); n != 1 {
				t.Fatalf("%d uploads open, want the one kept for the next delivery", n)
			}
			sent := rc.parts.Load()
			err = w.Deliver(ctx, staging, key)
			if n := rc.parts.Load() - sent; n != 0 {
				t.Errorf("the next delivery sent %d parts again, want none (resumed)", n)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		want := []byte(c.want)
		if c.want == "" {
			want = data
		}
		if !bytes.Equal(p.read(t, dst, k), want) {
			t.Errorf("%s: destination does not hold %.20q", c.mode, want)
		}
		if n := p.uploading(t, dst, k); n != 0 {
			t.Errorf("%s: %d uploads left open", c.mode, n)
		}
		if n := metric(t, reg, "xrc_target_objects_total", "result", c.result); n != 1 {
			t.Errorf("%s: objects counted %s %v times, want once", c.mode, c.result, n)
		}
	}
}

// resetOnce is the target's S3 with the first read of a staging archive
// reset after n bytes, as a connection dropped mid-archive.
type resetOnce struct {
	deliver.S3API
	bucket string
	n      int64
	mu     sync.Mutex
	gets   []*s3.GetObjectInput
}

func (r *resetOnce) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if aws.ToString(in.Bucket) != r.bucket {
		return r.S3API.GetObject(ctx, in, optFns...)
	}
	r.mu.Lock()
	r.gets = append(r.gets, in)
	first := len(r.gets) == 1
	r.mu.Unlock()
	out, err := r.S3API.GetObject(ctx, in, optFns...)
	if err == nil && first {
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(out.Body, r.n), iotest.ErrReader(errors.New("read: connection reset by peer"))), out.Body}
	}
	return out, err
}

// TestStagingReadResumed: a staging archive's read reset mid-stream reads
// on from where it stopped, the same version of the archive, and the
// delivery succeeds; it was failed and read again from its first byte at
// the message's next receive (on its last, its uploads abandoned).
func TestStagingReadResumed(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	staging := p.cfg.Settings.Regions[1].StagingBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	var objs []dataset.Object
	for i := range 4 {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("data/reset/%d.bin", i), ContentType: "application/octet-stream", Data: corpus.Random(256<<10, byte(i))})
	}
	p.stage(t, "r1/reset.tar.zst", manifestFor("reset", objs, p.cfg, nil), objs)
	s3c := &resetOnce{S3API: p.dst, bucket: staging, n: 600 << 10}
	w := p.targetWorker(t, deliver.Deps{S3: s3c})
	if err := w.Deliver(ctx, staging, "r1/reset.tar.zst"); err != nil {
		t.Fatalf("delivery whose read was reset once: %v", err)
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, objs, identity, 4) {
		t.Error(err)
	}
	if len(s3c.gets) != 2 {
		t.Fatalf("%d reads of the archive, want 2 (the first, then one reading on)", len(s3c.gets))
	}
	again := s3c.gets[1]
	if aws.ToString(again.Range) != fmt.Sprintf("bytes=%d-", 600<<10) || (again.VersionId == nil) == (again.IfMatch == nil) {
		t.Errorf("read on with range %q, version %v, if-match %v: want from byte %d, pinned to the archive read", aws.ToString(again.Range), aws.ToString(again.VersionId), aws.ToString(again.IfMatch), 600<<10)
	}
}
