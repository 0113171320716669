package backfill_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamodbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// fixture is a deployment on the local stack whose source bucket sends no
// events: every object put there is "pre-existing", as for a bucket xrc is
// switched on for.
type fixture struct {
	env      localstack.Env
	cfg      *config.Config
	dep      localstack.Deployment
	rule     *config.Rule
	src, dst *s3.Client
	sqs      *sqs.Client
	ddb      *dynamodb.Client
}

func setup(t *testing.T) *fixture { return setupWith(t, nil) }

// setupWith is setup with the rule's config edited first.
func setupWith(t *testing.T, edit func(*config.Config)) *fixture {
	t.Helper()
	env, cfg, dep := localstack.Deploy(t, "backfill", edit)
	ctx := context.Background()
	f := &fixture{env: env, cfg: cfg, dep: dep, rule: &cfg.Rules[0]}
	var err error
	if f.src, err = env.S3(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if f.dst, err = env.S3(ctx, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	if f.sqs, err = env.SQS(ctx); err != nil {
		t.Fatal(err)
	}
	if f.ddb, err = env.DynamoDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.UnrouteEvents(ctx, f.rule.SourceBucket); err != nil {
		t.Fatal(err)
	}
	return f
}

// objects returns n small objects spread over prefixes data/p00/ ...,
// sizes varying, a few keys with characters that need URL-encoding.
func objects(n, prefixes int) []dataset.Object {
	objs := make([]dataset.Object, n)
	for i := range objs {
		key := fmt.Sprintf("data/p%02d/obj-%04d.txt", i%prefixes, i)
		if i%97 == 0 {
			key = fmt.Sprintf("data/p%02d/a b+c é %d.txt", i%prefixes, i)
		}
		objs[i] = dataset.Object{Key: key, ContentType: "text/plain", Data: []byte(strings.Repeat("x", 10+i%50))}
	}
	return objs
}

// listed is the source bucket as a listing shows it: key -> object.
func (f *fixture) listed(t *testing.T) map[string]listedObject {
	t.Helper()
	m := map[string]listedObject{}
	pages := s3.NewListObjectsV2Paginator(f.src, &s3.ListObjectsV2Input{Bucket: &f.rule.SourceBucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			m[aws.ToString(o.Key)] = listedObject{size: aws.ToInt64(o.Size), modified: aws.ToTime(o.LastModified), etag: strings.Trim(aws.ToString(o.ETag), `"`)}
		}
	}
	return m
}

type listedObject struct {
	size     int64
	modified time.Time
	etag     string
}

// putDest writes key into the rule's destination: with xrc's provenance
// claiming the source write of modified (xrc), or as someone else's copy.
func (f *fixture) putDest(t *testing.T, key string, data []byte, modified time.Time, xrc bool) {
	t.Helper()
	md := map[string]string{}
	if xrc {
		md[deliver.MetaArchive] = "seed"
		md[deliver.MetaModified] = strconv.FormatInt(modified.Truncate(time.Second).UnixMilli(), 10)
	}
	bucket := f.rule.Destinations[0].Bucket
	if _, err := f.dst.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data), Metadata: md,
		ContentType: aws.String("text/plain")}); err != nil {
		t.Fatal(err)
	}
}

// deps are the run's clients: the real ones, the source's wrapped to count
// listings.
func (f *fixture) deps(queueURL string, cp backfill.Checkpoint) backfill.Deps {
	return backfill.Deps{
		Source:     &countingLister{Client: f.src, calls: map[string]int{}},
		Inventory:  f.src,
		Dest:       map[string]backfill.DestAPI{"eu-west-1": f.dst},
		Queue:      f.sqs,
		QueueURL:   queueURL,
		Checkpoint: cp,
	}
}

// countingLister is the real S3 client, counting ListObjectsV2 calls by
// prefix.
type countingLister struct {
	*s3.Client
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingLister) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c.mu.Lock()
	c.calls[aws.ToString(in.Prefix)]++
	c.mu.Unlock()
	return c.Client.ListObjectsV2(ctx, in, optFns...)
}

// drain receives and deletes every message of the queue and returns the
// events' refs by key. It stops once want messages came and the queue then
// stays empty for two receives.
func (f *fixture) drain(t *testing.T, url string, want int) map[string][]events.ObjectRef {
	t.Helper()
	ctx := context.Background()
	got := map[string][]events.ObjectRef{}
	n, empty := 0, 0
	deadline := time.Now().Add(2 * time.Minute)
	for empty < 2 || n < want {
		if time.Now().After(deadline) {
			t.Fatalf("drained %d messages of %s, want %d", n, url, want)
		}
		out, err := f.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 120, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		var del []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			n++
			parsed, err := events.Parse([]byte(aws.ToString(m.Body)))
			if err != nil || len(parsed.Refs) != 1 {
				t.Fatalf("message %s: %d refs, %v: %s", aws.ToString(m.MessageId), len(parsed.Refs), err, aws.ToString(m.Body))
			}
			ref := parsed.Refs[0]
			got[ref.Key] = append(got[ref.Key], ref)
			del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := f.sqs.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func (f *fixture) queueURL() string { return f.dep.SourceQueues[f.rule.ID] }

// TestEnqueuesExactlyWhatDiffers: 2,000 pre-existing objects, 300 already
// at the destination (200 written by xrc from the same source write, 50
// copied by someone else, 50 of another size): exactly the 1,750 missing
// or different are enqueued, each once, as the event the source worker
// parses.
func TestEnqueuesExactlyWhatDiffers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(2000, 20)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	src := f.listed(t)
	want := map[string]bool{}
	for i, o := range objs {
		switch {
		case i < 200:
			f.putDest(t, o.Key, o.Data, src[o.Key].modified, true)
		case i < 250:
			f.putDest(t, o.Key, o.Data, time.Time{}, false)
		case i < 300:
			f.putDest(t, o.Key, append(o.Data, '!'), src[o.Key].modified, i%2 == 0)
			want[o.Key] = true
		default:
			want[o.Key] = true
		}
	}
	var updates int
	d := f.deps(f.queueURL(), nil)
	d.Progress = func(backfill.Counts) { updates++ }
	counts, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Concurrency: 4}, d)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := backfill.Counts{Listed: 2000, Matched: 2000, Compared: 2000, Missing: 1700, Resized: 50, UpToDate: 200, NotByXRC: 50, Enqueued: 1750, Tasks: 21, TasksDone: 21}
	counts.Bytes = 0
	if counts != wantCounts {
		t.Errorf("counts\n got %+v\nwant %+v", counts, wantCounts)
	}
	if updates == 0 {
		t.Error("no progress reported")
	}
	got := f.drain(t, f.queueURL(), 1750)
	if len(got) != len(want) {
		t.Errorf("%d keys enqueued, want %d", len(got), len(want))
	}
	for key, refs := range got {
		if !want[key] {
			t.Errorf("%q enqueued, but the destination holds it", key)
			continue
		}
		if len(refs) != 1 {
			t.Errorf("%q enqueued %d times", key, len(refs))
		}
		r, s := refs[0], src[key]
		if r.EventName != "ObjectCreated:Put" || r.Bucket != f.rule.SourceBucket || r.Region != "us-east-1" || r.Size != s.size ||
			r.ETag != s.etag || r.Sequencer != "" || !r.EventTime.Equal(s.modified.Truncate(time.Millisecond)) {
			t.Errorf("event of %q: %+v, source %+v", key, r, s)
		}
	}
}

// TestDoneIsRecordedWhenStopped: a prefix whose events are all sent is
// recorded done even when the run is stopped while that is written, so the
// next run does not send it again.
func TestDoneIsRecordedWhenStopped(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(40, 4), 8); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	cp := &stopOnDone{Checkpoint: backfill.NewFileCheckpoint(path), stop: cancel}
	o := backfill.Options{Rule: f.rule, Concurrency: 1, Depth: 1}
	if _, err := backfill.Run(ctx, o, f.deps(f.queueURL(), cp)); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v", err)
	}
	st, err := backfill.NewFileCheckpoint(path).Load(context.Background())
	if err != nil || st == nil {
		t.Fatalf("no checkpoint after the stop: %v", err)
	}
	if !st.Tasks[cp.first].Done {
		t.Errorf("prefix %q, stopped while recorded done, is %+v", cp.first, st.Tasks[cp.first])
	}
}

// TestSlowCheckpointWriteInALiveRun: a checkpoint write that takes long
// (a throttled table, the SDK retrying) is waited for while the run goes
// on; only a stopped run bounds it.
func TestSlowCheckpointWriteInALiveRun(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(10, 2), 8); err != nil {
		t.Fatal(err)
	}
	cp := &slowSave{Checkpoint: backfill.NewFileCheckpoint(filepath.Join(t.TempDir(), "checkpoint.json")), delay: 11 * time.Second}
	if _, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1}, f.deps(f.queueURL(), cp)); err != nil {
		t.Fatalf("a run with one slow checkpoint write: %v", err)
	}
}

// slowSave makes its first Save take delay, or fail when its context
// ends first, as the SDK does.
type slowSave struct {
	backfill.Checkpoint
	delay time.Duration
	once  sync.Once
}

func (c *slowSave) Save(ctx context.Context, task string, p backfill.Progress) error {
	var err error
	c.once.Do(func() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(c.delay):
		}
	})
	if err != nil {
		return err
	}
	return c.Checkpoint.Save(ctx, task, p)
}

// stopOnDone stops the run (as Ctrl-C would) while the first task done is
// being recorded, and fails the write if its context ended, as the SDK
// does.
type stopOnDone struct {
	backfill.Checkpoint
	stop  context.CancelFunc
	first string
}

func (c *stopOnDone) Save(ctx context.Context, task string, p backfill.Progress) error {
	if p.Done && c.first == "" {
		c.first = task
		c.stop()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Checkpoint.Save(ctx, task, p)
}

// TestResumes: a run interrupted after some prefixes are done resumes
// from its checkpoint (a local file, or the deployment's table) without
// listing a finished prefix again, and together the two runs enqueue every
// object.
func TestResumes(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"file", "dynamodb"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			ctx := context.Background()
			objs := objects(600, 20)
			if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "checkpoint.json")
			checkpoint := func() backfill.Checkpoint {
				if kind == "file" {
					return backfill.NewFileCheckpoint(path)
				}
				return backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
			}
			o := backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1}

			// First run: interrupted (as by Ctrl-C) once 6 of the 21
			// prefixes are done.
			c1 := f.interrupted(t, o, checkpoint(), 6)
			cp := checkpoint()
			st, err := cp.Load(ctx)
			if err != nil || st == nil {
				t.Fatalf("no checkpoint after the interruption: %v", err)
			}
			if err := cp.Flush(ctx); err != nil { // give the lease back
				t.Fatal(err)
			}
			var done []string
			for prefix, p := range st.Tasks {
				if p.Done {
					done = append(done, prefix)
				}
			}
			if len(done) < 6 || len(done) >= 21 {
				t.Fatalf("%d prefixes done after the interruption: %v", len(done), done)
			}
			first := f.drain(t, f.queueURL(), int(c1.Enqueued))

			// Second run: the finished prefixes are not listed again,
			// and nothing under them is sent again.
			d2 := f.deps(f.queueURL(), checkpoint())
			c2, err := backfill.Run(ctx, o, d2)
			if err != nil {
				t.Fatal(err)
			}
			calls := d2.Source.(*countingLister).calls
			for _, prefix := range done {
				if calls[prefix] != 0 {
					t.Errorf("finished prefix %q listed %d times by the resumed run", prefix, calls[prefix])
				}
			}
			if c2.Resumed != int64(len(done)) || c2.TasksDone != 21 {
				t.Errorf("resumed run counts %+v, want %d resumed of 21", c2, len(done))
			}
			second := f.drain(t, f.queueURL(), int(c2.Enqueued))
			for key := range second {
				for _, prefix := range done {
					if prefix != f.rule.Prefix && strings.HasPrefix(key, prefix) {
						t.Errorf("%q sent again, under finished prefix %s", key, prefix)
					}
				}
			}
			for _, o := range objs {
				if first[o.Key] == nil && second[o.Key] == nil {
					t.Errorf("%q never enqueued", o.Key)
				}
			}
			if st, err := checkpoint().Load(ctx); err != nil || st != nil {
				t.Errorf("checkpoint left after a complete run: %+v %v", st, err)
			}
		})
	}
}

// An interrupted dry run leaves no checkpoint: the run after it, with the
// same checkpoint, sends every object rather than resuming past those the
// dry run only counted.
func TestDryRunLeavesNoCheckpoint(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(200, 10)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	o := backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1, DryRun: true}
	f.interrupted(t, o, backfill.NewFileCheckpoint(path), 5)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dry run wrote a checkpoint (%v)", err)
	}
	o.DryRun = false
	c2, err := backfill.Run(ctx, o, f.deps(f.queueURL(), backfill.NewFileCheckpoint(path)))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Resumed != 0 || c2.Enqueued != int64(len(objs)) {
		t.Errorf("the run after the dry run: %+v, want %d enqueued and nothing resumed", c2, len(objs))
	}
	got := f.drain(t, f.queueURL(), int(c2.Enqueued))
	for _, o := range objs {
		if got[o.Key] == nil {
			t.Errorf("%q never enqueued", o.Key)
		}
	}
}

// interrupted runs a backfill and interrupts it, as Ctrl-C would, once
// tasks of its prefixes are done.
func (f *fixture) interrupted(t *testing.T, o backfill.Options, cp backfill.Checkpoint, tasks int64) backfill.Counts {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := f.deps(f.queueURL(), cp)
	d.Progress = func(c backfill.Counts) {
		if c.TasksDone >= tasks {
			cancel()
		}
	}
	c, err := backfill.Run(ctx, o, d)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v (counts %+v)", err, c)
	}
	return c
}

// TestDynamoCheckpointLease: a second run of a rule does not start while a
// live run holds the checkpoint, and does once it gave it back.
func TestDynamoCheckpointLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if err := a.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	a.Save(ctx, "data/", backfill.Progress{After: "data/x"})
	// A prefix as long as a key may be: its item's sort key would not fit.
	long := "data/" + strings.Repeat("l", 1018) + "/"
	if err := a.Save(ctx, long, backfill.Progress{After: long + "x"}); err != nil {
		t.Fatal(err)
	}
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if _, err := b.Load(ctx); !errors.Is(err, backfill.ErrBusy) {
		t.Fatalf("second run while the first holds the lease: %v, want ErrBusy", err)
	}
	if err := b.Start(ctx, &backfill.State{}); !errors.Is(err, backfill.ErrBusy) {
		t.Fatalf("second start while the first holds the lease: %v, want ErrBusy", err)
	}
	// A host whose clock runs minutes ahead reads the live lease as old.
	ahead := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, func() time.Time { return time.Now().Add(4 * time.Minute) })
	if _, err := ahead.Load(ctx); !errors.Is(err, backfill.ErrBusy) {
		t.Fatalf("second run on a clock 4 minutes ahead: %v, want ErrBusy", err)
	}
	if err := ahead.Start(ctx, &backfill.State{}); !errors.Is(err, backfill.ErrBusy) {
		t.Fatalf("second start on a clock 4 minutes ahead: %v, want ErrBusy", err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := b.Load(ctx)
	if err != nil || st == nil || st.Tasks["data/"].After != "data/x" || st.Tasks[long].After != long+"x" {
		t.Fatalf("after the first gave the lease back: %+v %v", st, err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := b.Load(ctx); err != nil || st != nil {
		t.Errorf("after Clear: %+v %v", st, err)
	}
}

// finishedRun is a checkpoint of f's rule, on api, whose run has
// finished n prefixes (data/p000/ on): what a Clear removes.
func (f *fixture) finishedRun(t *testing.T, api backfill.DynamoAPI, n int) *backfill.DynamoCheckpoint {
	t.Helper()
	ctx := context.Background()
	c := backfill.NewDynamoCheckpoint(api, f.cfg.TableName(), f.rule.ID, time.Now)
	if err := c.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := c.Save(ctx, fmt.Sprintf("data/p%03d/", i), backfill.Progress{After: "z", Done: true}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// flakyBatches fails removals (TransactWriteItems of deletes) once ok
// went through, as a Clear cut short by its deadline or a throttled table
// would.
type flakyBatches struct {
	backfill.DynamoAPI
	ok int
}

// removal reports a transaction of a Clear, not a Save's.
func removal(in *dynamodb.TransactWriteItemsInput) bool {
	return slices.ContainsFunc(in.TransactItems, func(it dynamodbtypes.TransactWriteItem) bool { return it.Delete != nil })
}

func (f *flakyBatches) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if !removal(in) {
		return f.DynamoAPI.TransactWriteItems(ctx, in, optFns...)
	}
	if f.ok == 0 {
		return nil, errors.New("throttled")
	}
	f.ok--
	return f.DynamoAPI.TransactWriteItems(ctx, in, optFns...)
}

// TestStartTakesItsOwnLease: a run whose lease is still fresh (giving it
// up failed) starts again; only another run's fresh lease is busy.
func TestStartTakesItsOwnLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := f.finishedRun(t, f.ddb, 1)
	st := &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}
	if err := a.Start(ctx, st); err != nil {
		t.Errorf("a second Start while holding the lease: %v", err)
	}
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if err := b.Start(ctx, st); !errors.Is(err, backfill.ErrBusy) {
		t.Errorf("another run's Start: %v, want ErrBusy", err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClearCutShort: a completed run whose Clear removed only some of its
// task items leaves nothing to resume: the next run starts afresh, rather
// than resuming a finished run and skipping the prefixes whose items were
// left marked done.
func TestClearCutShort(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := f.finishedRun(t, &flakyBatches{DynamoAPI: f.ddb, ok: 1}, 150)
	if err := a.Clear(ctx); err == nil {
		t.Fatal("Clear succeeded although the table failed")
	}
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	st, err := b.Load(ctx)
	if err != nil || st != nil {
		t.Fatalf("after a completed run's Clear was cut short: loaded %+v (%v), want nothing to resume", st, err)
	}
	if err := b.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now).Load(ctx)
	if err != nil || st == nil || len(st.Tasks) != 0 {
		t.Errorf("the next run's checkpoint: %+v (%v), want it without the finished run's tasks", st, err)
	}
}

// TestFailedCompletionGivesTheLeaseUp: a Clear whose completion write
// fails (its deadline passed, the table throttled) gives the lease up, so
// the next run resumes the checkpoint at once instead of being refused as
// busy until the lease lapses (7 minutes).
func TestFailedCompletionGivesTheLeaseUp(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := f.finishedRun(t, f.ddb, 3)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Clear(cctx); err == nil || !strings.Contains(err.Error(), "completing checkpoint") {
		t.Fatalf("Clear out of time: %v, want its completion failed", err)
	}
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	st, err := b.Load(ctx)
	if err != nil || st == nil || len(st.Tasks) != 3 {
		t.Fatalf("the run after: %+v %v, want the checkpoint resumed at once", st, err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// blockingBatches lets one removal (TransactWriteItems of deletes) through, then holds the next
// until released: a Clear removing thousands of items, caught midway.
type blockingBatches struct {
	backfill.DynamoAPI
	calls   atomic.Int32
	blocked chan struct{}
	release chan struct{}
}

func (b *blockingBatches) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if removal(in) && b.calls.Add(1) == 2 {
		close(b.blocked)
		<-b.release
	}
	return b.DynamoAPI.TransactWriteItems(ctx, in, optFns...)
}

// TestNoRunStartsWhileAClearRemoves: while a completed run removes its
// items, the next run is refused as busy; started then, it would have its
// own items removed with the finished run's.
func TestNoRunStartsWhileAClearRemoves(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	slow := &blockingBatches{DynamoAPI: f.ddb, blocked: make(chan struct{}), release: make(chan struct{})}
	a := f.finishedRun(t, slow, 150)
	cleared := make(chan error, 1)
	go func() { cleared <- a.Clear(ctx) }()
	<-slow.blocked
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if _, err := b.Load(ctx); !errors.Is(err, backfill.ErrBusy) {
		t.Errorf("a run loading while the last one removes its items: %v, want ErrBusy", err)
	}
	close(slow.release)
	if err := <-cleared; err != nil {
		t.Fatal(err)
	}
	if st, err := b.Load(ctx); err != nil || st != nil {
		t.Errorf("after the removal: %+v %v, want nothing to resume", st, err)
	}
}

// stallingBatches lets one removal (TransactWriteItems of deletes) through;
// the next waits until its context ends, as a removal outlasting its
// deadline does.
type stallingBatches struct {
	backfill.DynamoAPI
	calls   atomic.Int32
	reached chan struct{} // closed when the second removal stalls
	once    sync.Once
}

func (b *stallingBatches) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if removal(in) && b.calls.Add(1) >= 2 {
		b.once.Do(func() { close(b.reached) })
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.DynamoAPI.TransactWriteItems(ctx, in, optFns...)
}

// TestStrayItemsRemovedUnderTheLease: a run that finds the task items a
// cut-short Clear left removes them only under the lease: a run that
// started meanwhile keeps its own items of the same prefixes.
func TestStrayItemsRemovedUnderTheLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	newState := func() *backfill.State {
		return &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}
	}
	first := f.finishedRun(t, &flakyBatches{DynamoAPI: f.ddb}, 60)
	if err := first.Clear(ctx); err == nil {
		t.Fatal("Clear succeeded although the table failed")
	}
	// b reads the strays, then another run removes them, starts, saves
	// its own progress and stops, before b writes anything.
	other := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	b := backfill.NewDynamoCheckpoint(&beforeFirstWrite{DynamoAPI: f.ddb, do: func() {
		if st, err := other.Load(ctx); err != nil || st != nil {
			t.Errorf("the other run's Load: %+v %v", st, err)
		}
		if err := other.Start(ctx, newState()); err != nil {
			t.Error(err)
		}
		if err := other.Save(ctx, "data/p042/", backfill.Progress{After: "data/p042/k"}); err != nil {
			t.Error(err)
		}
		if err := other.Flush(ctx); err != nil {
			t.Error(err)
		}
	}}, f.cfg.TableName(), f.rule.ID, time.Now)
	if _, err := b.Load(ctx); !errors.Is(err, backfill.ErrBusy) {
		t.Errorf("Load racing another run's start: %v, want ErrBusy", err)
	}
	st, err := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now).Load(ctx)
	if err != nil || st == nil || st.Tasks["data/p042/"].After != "data/p042/k" || len(st.Tasks) != 1 {
		t.Errorf("the other run's checkpoint: %+v (%v), want its one task", st, err)
	}
}

// TestRemovalStopsOnceTheLeaseIsTaken: a removal of stray items that
// outlasts its lease (another run took it over) deletes nothing more, so
// the new run's items of the same prefixes stay.
func TestRemovalStopsOnceTheLeaseIsTaken(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	first := f.finishedRun(t, &flakyBatches{DynamoAPI: f.ddb}, 150)
	if err := first.Clear(ctx); err == nil {
		t.Fatal("Clear succeeded although the table failed")
	}
	slow := &blockingBatches{DynamoAPI: f.ddb, blocked: make(chan struct{}), release: make(chan struct{})}
	b := backfill.NewDynamoCheckpoint(slow, f.cfg.TableName(), f.rule.ID, time.Now)
	loaded := make(chan error, 1)
	go func() { _, err := b.Load(ctx); loaded <- err }()
	<-slow.blocked
	// Later than b's lease: another run takes it over, removes the rest,
	// starts and saves a task b has yet to remove.
	later := func() time.Time { return time.Now().Add(backfill.LeaseTTL + 10*time.Second) }
	z := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later)
	if st, err := z.Load(ctx); err != nil || st != nil {
		t.Fatalf("the run taking over: %+v %v", st, err)
	}
	if err := z.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	if err := z.Save(ctx, "data/p120/", backfill.Progress{After: "data/p120/k"}); err != nil {
		t.Fatal(err)
	}
	if err := z.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	if err := <-loaded; !errors.Is(err, backfill.ErrBusy) {
		t.Errorf("the removal overtaken: %v, want ErrBusy", err)
	}
	st, err := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later).Load(ctx)
	if err != nil || st == nil || st.Tasks["data/p120/"].After != "data/p120/k" || len(st.Tasks) != 1 {
		t.Errorf("the run that took over: %+v (%v), want its one task", st, err)
	}
}

// TestSavesOfALapsedRunAreNotResumed: a run paused past its lease (a
// laptop asleep) whose tasks then save, before its renewal finds the lease
// gone, must not mark prefixes done in the checkpoint of the run that took
// over: resuming that run would skip them. Its items are stamped with its
// own run, which is not the one resumed: its tasks are listed again from
// their start, one it saved over the new run's item too.
func TestSavesOfALapsedRunAreNotResumed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if st, err := a.Load(ctx); err != nil || st != nil {
		t.Fatalf("first run: %+v %v", st, err)
	}
	if err := a.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(backfill.LeaseTTL + 10*time.Second) }
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later)
	if _, err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	b = backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later)
	if _, err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID, Since: time.Now().Add(-2 * time.Hour)}, Started: time.Now(),
		Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	// a wakes up before its renewal notices.
	if err := a.Save(ctx, "data/p01/", backfill.Progress{Done: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, "data/p02/", backfill.Progress{After: "data/p02/k"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, "data/p03/", backfill.Progress{After: "data/p03/k"}); err != nil {
		t.Fatal(err)
	}
	// a saves over b's item of a task: b's parent prefix may be past it,
	// so b, resumed, must list it again, not forget it.
	if err := a.Save(ctx, "data/p03/", backfill.Progress{Done: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later).Load(ctx)
	want := map[string]backfill.Progress{"data/p01/": {}, "data/p02/": {After: "data/p02/k"}, "data/p03/": {}}
	if err != nil || st == nil || !maps.Equal(st.Tasks, want) {
		t.Errorf("the run that took over: %+v (%v), want its own task and the lapsed run's two, listed again from their start: %v", st, err, want)
	}
	a.Flush(ctx)
}

// sentTwice sends each UpdateItem twice and answers the second, as an SDK
// retry after a write whose answer was lost does.
type sentTwice struct{ backfill.DynamoAPI }

func (s sentTwice) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	s.DynamoAPI.UpdateItem(ctx, in, o...)
	return s.DynamoAPI.UpdateItem(ctx, in, o...)
}

// TestTakeOverWhoseAnswerWasLost: a lease take-over applied, whose answer
// was lost and which the SDK sent again, is this run's: the retry found
// its own write and took it for another run's ("another backfill of the
// rule is running"), and the lease stayed taken for nothing.
func TestTakeOverWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if _, err := a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, "data/p01/", backfill.Progress{After: "data/p01/k"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil { // stopped: its lease given up
		t.Fatal(err)
	}
	b := backfill.NewDynamoCheckpoint(sentTwice{f.ddb}, f.cfg.TableName(), f.rule.ID, time.Now)
	st, err := b.Load(ctx)
	if err != nil || st == nil || st.Tasks["data/p01/"].After != "data/p01/k" {
		t.Fatalf("resuming with a retried take-over: %+v, %v", st, err)
	}
	defer b.Flush(ctx)
	if _, err := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now).Load(ctx); !errors.Is(err, backfill.ErrBusy) {
		t.Errorf("a third run while the second holds the lease: %v, want ErrBusy", err)
	}
}

// beforeFirstWrite calls do before the first write of any kind.
type beforeFirstWrite struct {
	backfill.DynamoAPI
	once sync.Once
	do   func()
}

func (b *beforeFirstWrite) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	b.once.Do(b.do)
	return b.DynamoAPI.UpdateItem(ctx, in, optFns...)
}

func (b *beforeFirstWrite) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	b.once.Do(b.do)
	return b.DynamoAPI.TransactWriteItems(ctx, in, optFns...)
}

// TestClearOutOfTime: a removal that runs out of time gives the lease up
// all the same, so the next run finishes it at once instead of being
// refused as busy until the lease lapses.
func TestClearOutOfTime(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	api := &stallingBatches{DynamoAPI: f.ddb, reached: make(chan struct{})}
	a := f.finishedRun(t, api, 150)
	// Out of time in the second removal, not before (a fixed 300 ms could
	// end in the completion's write on a loaded DynamoDB Local).
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-api.reached:
		case <-time.After(time.Minute):
		}
		cancel()
	}()
	if err := a.Clear(cctx); err == nil {
		t.Fatal("Clear succeeded although its removal ran out of time")
	}
	b := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	if st, err := b.Load(ctx); err != nil || st != nil {
		t.Fatalf("the run after: %+v %v, want nothing to resume and no wait", st, err)
	}
	if err := b.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now).Load(ctx)
	if err != nil || st == nil || len(st.Tasks) != 0 {
		t.Errorf("the next run's checkpoint: %+v (%v), want it without the finished run's tasks", st, err)
	}
}

// TestScheduledRunsLeaveNoGap: an object written while a run went, under
// a prefix it had listed, and whose event was lost, is found by the next
// scheduled run even when the first ran longer than the schedule's window
// ("-since 2h"): a fresh run's since goes back to the start of the last
// run that completed.
func TestScheduledRunsLeaveNoGap(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(20, 2), 8); err != nil {
		t.Fatal(err)
	}
	cp := func() backfill.Checkpoint {
		return backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	}
	start := time.Now()
	o := backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1, Since: start.Add(-2 * time.Hour)}
	c1, err := backfill.Run(ctx, o, f.deps(f.queueURL(), cp()))
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(c1.Enqueued))
	// Written after the first run listed its prefix; its event lost.
	late := dataset.Object{Key: "data/p00/late.txt", ContentType: "text/plain", Data: []byte("late")}
	if err := dataset.Put(ctx, f.src, f.rule.SourceBucket, &late); err != nil {
		t.Fatal(err)
	}
	// An operator's run of one prefix completes meanwhile: it vouches for
	// that prefix only, and must not move where the next run starts.
	narrowAt := func() time.Time { return time.Now().Add(2 * time.Hour) }
	d := f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, narrowAt))
	d.Now = narrowAt
	narrow := o
	narrow.Prefix, narrow.Since = "data/p01/", narrowAt().Add(-time.Hour)
	cn, err := backfill.Run(ctx, narrow, d)
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(cn.Enqueued))
	// The next scheduled run, three hours on as if the first had taken
	// that long: its own window starts an hour after the late write.
	later := func() time.Time { return time.Now().Add(3 * time.Hour) }
	d = f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later))
	d.Now = later
	o.Since = later().Add(-2 * time.Hour)
	c2, err := backfill.Run(ctx, o, d)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.drain(t, f.queueURL(), int(c2.Enqueued)); got[late.Key] == nil {
		t.Errorf("%s, written during the first run, not enqueued by the next (%+v)", late.Key, c2)
	}
}

// TestLateWritesCounted: a write made after the last complete run started,
// and sent by a run more than LateAfter after it, is counted late (its
// event lost: the scheduled run's alarm); writes older than that run are
// not, nor is anything on a first run.
func TestLateWritesCounted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(20, 2), 8); err != nil {
		t.Fatal(err)
	}
	o := backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1, Since: time.Now().Add(-2 * time.Hour)}
	c1, err := backfill.Run(ctx, o, f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)))
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(c1.Enqueued))
	if c1.Enqueued != 20 || c1.Late != 0 {
		t.Errorf("first run: enqueued %d, late %d; want 20 and none late (no run before it)", c1.Enqueued, c1.Late)
	}
	lost := dataset.Object{Key: "data/p00/lost.txt", ContentType: "text/plain", Data: []byte("lost")}
	if err := dataset.Put(ctx, f.src, f.rule.SourceBucket, &lost); err != nil {
		t.Fatal(err)
	}
	// A multipart upload's write: dated when the upload began, so given a
	// second more per MiB (an hour on, an object of 8 MiB is late; of
	// 4 GiB, which a slow client may take an hour to upload, not).
	mpu := "data/p01/multipart.bin"
	up, err := f.src.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &f.rule.SourceBucket, Key: &mpu})
	if err != nil {
		t.Fatal(err)
	}
	part, err := f.src.UploadPart(ctx, &s3.UploadPartInput{Bucket: &f.rule.SourceBucket, Key: &mpu, UploadId: up.UploadId, PartNumber: aws.Int32(1),
		Body: strings.NewReader("one part")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.src.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &f.rule.SourceBucket, Key: &mpu, UploadId: up.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatal(err)
	}
	if c1.LateMultipartRuns != 0 {
		t.Errorf("first run: %d runs in a row with late multipart writes, want 0", c1.LateMultipartRuns)
	}
	// As if the first run had found late multipart writes too: the
	// second is the second in a row (the alarm's, whatever the schedule).
	if _, err := f.ddb.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(f.cfg.TableName()),
		Key:                       map[string]dynamodbtypes.AttributeValue{"pk": &dynamodbtypes.AttributeValueMemberS{Value: config.KeyBackfill + f.rule.ID}, "sk": &dynamodbtypes.AttributeValueMemberS{Value: "last"}},
		UpdateExpression:          aws.String("SET lateMultipartRuns = :one"),
		ExpressionAttributeValues: map[string]dynamodbtypes.AttributeValue{":one": &dynamodbtypes.AttributeValueMemberN{Value: "1"}}}); err != nil {
		t.Fatal(err)
	}
	// An hour on: the twenty, written before the first run, are sent
	// again (nothing delivered them here) but are not late.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	d := f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later))
	d.Now = later
	o.Since = later().Add(-2 * time.Hour)
	// A dry run first counts as the run would, the second in a row (its
	// alarm fires on it), and records nothing.
	dry := o
	dry.DryRun = true
	cd, err := backfill.Run(ctx, dry, d)
	if err != nil || cd.LateMultipart != 1 || cd.LateMultipartRuns != 2 {
		t.Errorf("dry run: %v, %d late multipart writes, %d runs in a row; want 1 and 2", err, cd.LateMultipart, cd.LateMultipartRuns)
	}
	d.Checkpoint = backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later)
	c2, err := backfill.Run(ctx, o, d)
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(c2.Enqueued))
	if c2.Enqueued != 22 || c2.Late != 1 || c2.LateMultipart != 1 {
		t.Errorf("second run: enqueued %d, late %d and %d multipart; want 22, of which %s late and %s (a small upload) late apart", c2.Enqueued, c2.Late, c2.LateMultipart, lost.Key, mpu)
	}
	if c2.LateMultipartRuns != 2 {
		t.Errorf("second run: %d runs in a row with late multipart writes, want 2", c2.LateMultipartRuns)
	}
	// Another hour on, nothing is late: the count starts again.
	later = func() time.Time { return time.Now().Add(2 * time.Hour) }
	d = f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later))
	d.Now = later
	o.Since = later().Add(-2 * time.Hour)
	c3, err := backfill.Run(ctx, o, d)
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(c3.Enqueued))
	if c3.LateMultipart != 0 || c3.LateMultipartRuns != 0 {
		t.Errorf("third run: %d late multipart writes, %d runs in a row; want none", c3.LateMultipart, c3.LateMultipartRuns)
	}
}

// TestDryRunCountsLateWrites: a dry run with -checkpoint ddb counts the
// late writes a run would send (they alarm, as a run's do), reading when
// the last complete run started without a lease or a write: it goes beside
// a live run, and leaves the table as it was.
func TestDryRunCountsLateWrites(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(4, 2), 4); err != nil {
		t.Fatal(err)
	}
	o := backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1, Since: time.Now().Add(-2 * time.Hour)}
	c1, err := backfill.Run(ctx, o, f.deps(f.queueURL(), backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)))
	if err != nil {
		t.Fatal(err)
	}
	f.drain(t, f.queueURL(), int(c1.Enqueued))
	lost := dataset.Object{Key: "data/p00/lost.txt", ContentType: "text/plain", Data: []byte("lost")}
	if err := dataset.Put(ctx, f.src, f.rule.SourceBucket, &lost); err != nil {
		t.Fatal(err)
	}
	// A live run holds the lease.
	live := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	live.RenewEvery = time.Hour
	if err := live.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	defer live.Flush(ctx)
	items := func() []map[string]dynamodbtypes.AttributeValue {
		out, err := f.ddb.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(f.cfg.TableName()), KeyConditionExpression: aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]dynamodbtypes.AttributeValue{":pk": &dynamodbtypes.AttributeValueMemberS{Value: config.KeyBackfill + f.rule.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Items
	}
	before := items()
	later := func() time.Time { return time.Now().Add(time.Hour) }
	d := f.deps("", backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, later))
	d.Now = later
	o.Since, o.DryRun = later().Add(-2*time.Hour), true
	c2, err := backfill.Run(ctx, o, d)
	if err != nil {
		t.Fatalf("dry run beside a live run: %v", err)
	}
	if c2.Enqueued != 5 || c2.Late != 1 {
		t.Errorf("dry run: %d to enqueue, %d late; want 5, of which %s late", c2.Enqueued, c2.Late, lost.Key)
	}
	if !reflect.DeepEqual(items(), before) {
		t.Error("the dry run wrote to its checkpoint")
	}
}

// TestInventoryMatchesListing: an S3 Inventory report of the bucket (CSV,
// gzip, two data files, with rows a backfill must ignore: an old version,
// a delete marker, another bucket, a key outside the rule) enqueues
// exactly what listing the bucket does.
func TestInventoryMatchesListing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(300, 3)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	src := f.listed(t)
	for i, o := range objs[:60] {
		switch {
		case i < 40:
			f.putDest(t, o.Key, o.Data, src[o.Key].modified, true)
		case i < 50:
			f.putDest(t, o.Key, o.Data, src[o.Key].modified.Add(-time.Hour), true) // older write
		default:
			f.putDest(t, o.Key, append(o.Data, 'x'), time.Time{}, false)
		}
	}

	// The report, as S3 Inventory writes it.
	invBucket := f.cfg.Settings.StackName + "-inv"
	if err := f.env.EnsureBucket(ctx, "us-east-1", invBucket, false); err != nil {
		t.Fatal(err)
	}
	// Two missing objects in archive classes, which the source could not
	// read: counted, not sent. One up to date in GLACIER is up to date.
	archived := map[string]string{objs[200].Key: "DEEP_ARCHIVE", objs[201].Key: "GLACIER", objs[0].Key: "GLACIER"}
	row := func(bucket, key, version, latest, marker string, size int64, mod time.Time, etag string) string {
		return fmt.Sprintf(`"%s","%s","%s","%s","%s","%d","%s","%s","%s"`+"\n", bucket, events.EncodeKey(key), version, latest, marker, size,
			mod.UTC().Format("2006-01-02T15:04:05.000Z"), etag, cmp.Or(archived[key], "STANDARD"))
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range src {
			if !yield(k) {
				return
			}
		}
	})
	var files [2]bytes.Buffer
	for i, k := range keys {
		s := src[k]
		files[i%2].WriteString(row(f.rule.SourceBucket, k, "null", "true", "false", s.size, s.modified, s.etag))
	}
	now := time.Now()
	files[0].WriteString(row(f.rule.SourceBucket, keys[0], "v0", "false", "false", 1, now, "old"))           // an old version
	files[0].WriteString(row(f.rule.SourceBucket, "data/p00/deleted.txt", "v1", "true", "true", 0, now, "")) // a delete marker
	files[1].WriteString(row("another-bucket", "data/p00/x.txt", "null", "true", "false", 3, now, "e"))
	files[1].WriteString(row(f.rule.SourceBucket, "logs/outside.txt", "null", "true", "false", 3, now, "e"))
	manifest := map[string]any{
		"sourceBucket": f.rule.SourceBucket, "destinationBucket": "arn:aws:s3:::" + invBucket, "version": "2016-11-30",
		"creationTimestamp": strconv.FormatInt(now.UnixMilli(), 10), "fileFormat": "CSV",
		"fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
	}
	var list []map[string]any
	for i := range files {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(files[i].Bytes())
		zw.Close()
		key := fmt.Sprintf("inventory/%s/cfg/data/%d.csv.gz", f.rule.SourceBucket, i)
		f.put(t, invBucket, key, gz.Bytes())
		sum := md5.Sum(gz.Bytes())
		list = append(list, map[string]any{"key": key, "size": gz.Len(), "MD5checksum": hex.EncodeToString(sum[:])})
	}
	manifest["files"] = list
	doc, _ := json.Marshal(manifest)
	f.put(t, invBucket, "inventory/"+f.rule.SourceBucket+"/cfg/2026-11-22T00-00Z/manifest.json", doc)

	otherQueue, _, err := f.env.EnsureQueue(ctx, f.cfg.Settings.StackName+"-inv", 3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	listing, err := backfill.Run(ctx, backfill.Options{Rule: f.rule}, f.deps(f.queueURL(), nil))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Inventory: "s3://" + invBucket + "/inventory/" + f.rule.SourceBucket + "/cfg/2026-11-22T00-00Z/manifest.json"},
		f.deps(otherQueue, backfill.NewFileCheckpoint(filepath.Join(t.TempDir(), "cp.json"))))
	if err != nil {
		t.Fatal(err)
	}
	if listing.Enqueued != 260 || listing.Missing != 240 || listing.Older != 10 || listing.NotByXRC != 0 || listing.Resized != 10 || listing.UpToDate != 40 {
		t.Errorf("listing counts %+v", listing)
	}
	if inv.Enqueued != listing.Enqueued-2 || inv.Missing != listing.Missing-2 || inv.Archived != 2 || listing.Archived != 0 ||
		inv.Older != listing.Older || inv.Resized != listing.Resized || inv.UpToDate != listing.UpToDate || inv.Matched != listing.Matched {
		t.Errorf("inventory counts %+v\n   listing counts %+v", inv, listing)
	}
	// A run that sends them once restored needs a -since no later.
	oldest := src[objs[200].Key].modified
	if m := src[objs[201].Key].modified; m.Before(oldest) {
		oldest = m
	}
	if !inv.ArchivedSince.Equal(oldest.Truncate(time.Millisecond)) {
		t.Errorf("archived since %v, want the oldest archived object's %v", inv.ArchivedSince, oldest)
	}
	if inv.ScanTotal == 0 || inv.ScanBytes != inv.ScanTotal || inv.TasksDone != 2 {
		t.Errorf("inventory progress %+v", inv)
	}
	a, b := f.drain(t, f.queueURL(), int(listing.Enqueued)), f.drain(t, otherQueue, int(inv.Enqueued))
	if len(a) != 260 || len(b) != len(a)-2 || b[objs[200].Key] != nil || b[objs[201].Key] != nil {
		t.Fatalf("listing enqueued %d keys, inventory %d (the archived ones: %v, %v)", len(a), len(b), b[objs[200].Key], b[objs[201].Key])
	}
	// The report's events name the key alone: a write since the report,
	// which may have had no event, is read as it is now.
	for k, refs := range a {
		if archived[k] != "" {
			continue
		}
		if b[k] == nil || len(b[k]) != 1 || len(refs) != 1 || refs[0].Size != b[k][0].Size || refs[0].ETag == "" || b[k][0].ETag != "" || b[k][0].VersionID != "" {
			t.Errorf("%q: listing %+v, inventory %+v", k, refs, b[k])
		}
	}
	if !inv.InventoryOf.Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("report dated %v, want %v", inv.InventoryOf, now.Truncate(time.Millisecond))
	}
}

// TestInventoryFileCheckedAgainstItsManifest: a data file whose bytes are
// not the size or MD5 its manifest gives (cut at a line break, it reads to
// a clean end) fails the run, named, and is not marked done: the rows it
// lost were never sent, and nothing said so.
func TestInventoryFileCheckedAgainstItsManifest(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	invBucket := f.cfg.Settings.StackName + "-inv"
	if err := f.env.EnsureBucket(ctx, "us-east-1", invBucket, false); err != nil {
		t.Fatal(err)
	}
	whole := fmt.Sprintf("\"%s\",\"data/p00/a.txt\",\"null\",\"true\",\"false\",\"3\",\"2026-11-22T10:00:00.000Z\",\"e\",\"STANDARD\"\n"+
		"\"%s\",\"data/p00/b.txt\",\"null\",\"true\",\"false\",\"3\",\"2026-11-22T10:00:00.000Z\",\"e\",\"STANDARD\"\n", f.rule.SourceBucket, f.rule.SourceBucket)
	cut := whole[:strings.Index(whole, "\n")+1] // the first row alone
	sum := md5.Sum([]byte(whole))
	for name, tc := range map[string]struct {
		data, md5 string
		fails     bool
	}{
		"cut":       {cut, hex.EncodeToString(sum[:]), true},
		"rewritten": {strings.Replace(whole, "b.txt", "c.txt", 1), hex.EncodeToString(sum[:]), true},
		"etag-like": {whole, hex.EncodeToString(sum[:]) + "-2", false}, // not a plain MD5: the size alone
	} {
		key := "inventory/" + f.rule.SourceBucket + "/" + name + "/data/0.csv"
		f.put(t, invBucket, key, []byte(tc.data))
		doc, _ := json.Marshal(map[string]any{
			"sourceBucket": f.rule.SourceBucket, "destinationBucket": "arn:aws:s3:::" + invBucket, "version": "2016-11-30",
			"creationTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "fileFormat": "CSV",
			"fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
			"files":      []map[string]any{{"key": key, "size": len(whole), "MD5checksum": tc.md5}},
		})
		manifest := "inventory/" + f.rule.SourceBucket + "/" + name + "/2026-11-22T00-00Z/manifest.json"
		f.put(t, invBucket, manifest, doc)
		cp := backfill.NewFileCheckpoint(filepath.Join(t.TempDir(), "cp.json"))
		_, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Inventory: "s3://" + invBucket + "/" + manifest}, f.deps(f.queueURL(), cp))
		if !tc.fails {
			if err != nil {
				t.Errorf("%s data file: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, backfill.ErrInventory) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s data file: %v, want the run to fail naming it", name, err)
		}
		if st, _ := cp.Load(ctx); st != nil {
			for _, task := range st.Tasks {
				if task.Done {
					t.Errorf("%s data file marked done", name)
				}
			}
		}
	}
}

// inventoryRow is a current object's row in an inventory report.
type inventoryRow struct {
	key      string
	size     int64
	modified time.Time
}

// inventory writes an S3 Inventory report of f's source bucket, named
// name, of one CSV data file of rows, and returns its manifest's location.
func (f *fixture) inventory(t *testing.T, name string, rows ...inventoryRow) string {
	t.Helper()
	invBucket := f.cfg.Settings.StackName + "-inv"
	if err := f.env.EnsureBucket(context.Background(), "us-east-1", invBucket, false); err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	for _, r := range rows {
		fmt.Fprintf(&csv, "%q,%q,\"%d\",%q\n", f.rule.SourceBucket, events.EncodeKey(r.key), r.size, r.modified.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	key := "inventory/" + f.rule.SourceBucket + "/" + name + "/data/0.csv"
	f.put(t, invBucket, key, csv.Bytes())
	sum := md5.Sum(csv.Bytes())
	doc, _ := json.Marshal(map[string]any{
		"sourceBucket": f.rule.SourceBucket, "destinationBucket": "arn:aws:s3:::" + invBucket, "version": "2016-11-30",
		"creationTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, LastModifiedDate",
		"files": []map[string]any{{"key": key, "size": csv.Len(), "MD5checksum": hex.EncodeToString(sum[:])}},
	})
	manifest := "inventory/" + f.rule.SourceBucket + "/" + name + "/2026-11-22T00-00Z/manifest.json"
	f.put(t, invBucket, manifest, doc)
	return "s3://" + invBucket + "/" + manifest
}

// TestMissingDestinationBucketSendsNothing: a destination bucket that is
// not there (misnamed, removed) stops the run before anything is sent,
// naming it. From an inventory, each key's HEAD answered a bare 404, read
// as a missing object: every object was sent, to fail at the target.
func TestMissingDestinationBucketSendsNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(20, 2)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	var rows []inventoryRow
	for k, o := range f.listed(t) {
		rows = append(rows, inventoryRow{k, o.size, o.modified})
	}
	report := f.inventory(t, "gone", rows...)
	rule := *f.rule
	rule.Destinations = slices.Clone(rule.Destinations)
	missing := f.cfg.Settings.StackName + "-gone"
	rule.Destinations[0].Bucket = missing
	for _, inventory := range []string{"", report} {
		c, err := backfill.Run(ctx, backfill.Options{Rule: &rule, Inventory: inventory}, f.deps(f.queueURL(), nil))
		if err == nil || !strings.Contains(err.Error(), "destination bucket "+missing+" is not in eu-west-1") || c.Enqueued != 0 {
			t.Errorf("inventory %q: %v, %d enqueued; want the run stopped, naming the missing bucket, nothing sent", inventory, err, c.Enqueued)
		}
	}
	if got := f.drain(t, f.queueURL(), 0); len(got) != 0 {
		t.Errorf("%d keys sent", len(got))
	}
}

// headBucketDenied is the destination's client where a bucket policy
// grants ListBucket only under a prefix, which HeadBucket does not name.
type headBucketDenied struct{ *s3.Client }

func (h headBucketDenied) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "Forbidden", Message: "Forbidden (injected)"}
}

// TestUncheckedDestinationBucketGoesOn: a destination bucket HeadBucket may
// not check (403) does not stop the run, as a missing one does: the run
// lists and sends as before, saying so.
func TestUncheckedDestinationBucketGoesOn(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objects(4, 2), 4); err != nil {
		t.Fatal(err)
	}
	d := f.deps(f.queueURL(), nil)
	d.Dest = map[string]backfill.DestAPI{"eu-west-1": headBucketDenied{f.dst}}
	c, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Concurrency: 2, Depth: 1}, d)
	if err != nil || c.Enqueued != 4 {
		t.Errorf("%v, %d enqueued; want the run to go on and send the 4 objects", err, c.Enqueued)
	}
	f.drain(t, f.queueURL(), int(c.Enqueued))
}

// TestInventoryLeavesCopiesOfLaterWrites: a destination copy xrc made of
// a write later than the report's row (the object rewritten since, its
// event delivered) is up to date, whatever its size; one of an earlier
// write, of another size, is sent.
func TestInventoryLeavesCopiesOfLaterWrites(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := []dataset.Object{{Key: "data/p00/newer.txt", Data: []byte("rewritten since the report")}, {Key: "data/p00/older.txt", Data: []byte("written before")}}
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 2); err != nil {
		t.Fatal(err)
	}
	src := f.listed(t)
	reported := src[objs[0].Key].modified.Add(-time.Hour) // the write the report saw
	f.putDest(t, objs[0].Key, objs[0].Data, src[objs[0].Key].modified, true)
	f.putDest(t, objs[1].Key, objs[1].Data, reported.Add(-time.Hour), true)
	report := f.inventory(t, "later", inventoryRow{objs[0].Key, 3, reported}, inventoryRow{objs[1].Key, 3, reported})
	c, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Inventory: report}, f.deps(f.queueURL(), nil))
	if err != nil {
		t.Fatal(err)
	}
	got := f.drain(t, f.queueURL(), int(c.Enqueued))
	if c.UpToDate != 1 || c.Resized != 1 || c.Enqueued != 1 || got[objs[0].Key] != nil || got[objs[1].Key] == nil {
		t.Errorf("counts %+v, sent %v: want %s up to date, %s sent as of another size", c, slices.Collect(maps.Keys(got)), objs[0].Key, objs[1].Key)
	}
}

func (f *fixture) put(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if _, err := f.src.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
}

// TestResumeRefusesWhatCoversLess: a checkpoint whose finished prefixes
// were compared under less than this run asks for (a later since) is
// refused, naming why, rather than resumed past objects it never looked
// at; -restart-if-changed discards it (and resumes one that matches),
// -restart discards any, and a table checkpoint old enough for its first
// items to have expired starts afresh by itself. Either way every object
// is sent.
func TestResumeRefusesWhatCoversLess(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(20, 2)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	o := backfill.Options{Rule: f.rule, Depth: 1}
	params := backfill.Params{Rule: f.rule.ID, Bucket: f.rule.SourceBucket, Prefix: f.rule.Prefix, Depth: 1, Scope: backfill.Scope(f.rule)}
	// finished leaves a checkpoint, started at started, whose run
	// finished both prefixes (a scheduled run "-since" the future, say).
	finished := func(p backfill.Params, started time.Time) {
		t.Helper()
		cp := backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, func() time.Time { return started })
		if err := cp.Start(ctx, &backfill.State{Params: p, Started: started, Tasks: map[string]backfill.Progress{}}); err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{"data/p00/", "data/p01/"} {
			if err := cp.Save(ctx, prefix, backfill.Progress{After: prefix + "~", Done: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cp.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint := func() backfill.Checkpoint {
		return backfill.NewDynamoCheckpoint(f.ddb, f.cfg.TableName(), f.rule.ID, time.Now)
	}

	later := params
	later.Since = time.Now().Add(time.Hour)
	finished(later, time.Now())
	_, err := backfill.Run(ctx, o, f.deps(f.queueURL(), checkpoint()))
	if !errors.Is(err, backfill.ErrCheckpointMismatch) || !strings.Contains(err.Error(), "since") {
		t.Fatalf("a run of all objects over a checkpoint since later: %v, want ErrCheckpointMismatch naming since", err)
	}
	o.RestartIfChanged = true
	counts, err := backfill.Run(ctx, o, f.deps(f.queueURL(), checkpoint()))
	if err != nil || counts.Enqueued != 20 || counts.Resumed != 0 {
		t.Fatalf("-restart-if-changed: %+v %v, want all 20 sent afresh", counts, err)
	}
	f.drain(t, f.queueURL(), 20)

	finished(params, time.Now().Add(-backfill.CheckpointTTL+12*time.Hour))
	counts, err = backfill.Run(ctx, o, f.deps(f.queueURL(), checkpoint()))
	if err != nil || counts.Enqueued != 20 || counts.Resumed != 0 {
		t.Fatalf("over a checkpoint near its expiry: %+v %v, want all 20 sent afresh", counts, err)
	}
	f.drain(t, f.queueURL(), 20)

	// The same parameters, started recently: resumed, nothing sent;
	// unless -restart.
	finished(params, time.Now())
	counts, err = backfill.Run(ctx, o, f.deps(f.queueURL(), checkpoint()))
	if err != nil || counts.Enqueued != 0 || counts.Resumed != 2 {
		t.Fatalf("over a fresh checkpoint: %+v %v, want it resumed, nothing sent", counts, err)
	}
	finished(params, time.Now())
	o.Restart = true
	counts, err = backfill.Run(ctx, o, f.deps(f.queueURL(), checkpoint()))
	if err != nil || counts.Enqueued != 20 || counts.Resumed != 0 {
		t.Fatalf("-restart over a fresh checkpoint: %+v %v, want all 20 sent afresh", counts, err)
	}
}

// TestUnroutableKeysNamed: a key the rule maps to no valid destination key
// (longer than S3's 1,024 bytes once the prefix is rewritten) is skipped
// and counted, and the first few are named at warn, so the rule or the
// key can be fixed; the rest are not sent either.
func TestUnroutableKeysNamed(t *testing.T) {
	t.Parallel()
	f := setupWith(t, func(c *config.Config) { c.Rules[0].Destinations[0].Prefix = aws.String("replica/") })
	ctx := context.Background()
	objs := []dataset.Object{{Key: "data/short-1.txt", Data: []byte("a")}, {Key: "data/short-2.txt", Data: []byte("b")}}
	for i := range 12 {
		key := fmt.Sprintf("data/%02d", i)
		for len(key) < 1023 { // in segments MinIO takes (a file name each)
			key += "/" + strings.Repeat("k", min(200, 1023-len(key)-1))
		}
		objs = append(objs, dataset.Object{Key: key, Data: []byte("c")})
	}
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	log, logs := localstack.ObservedLogger(t, zap.WarnLevel)
	deps := f.deps(f.queueURL(), nil)
	deps.Log = log
	c, err := backfill.Run(ctx, backfill.Options{Rule: f.rule}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if c.Unroutable != 12 || c.Enqueued != 2 {
		t.Errorf("counts %+v: want 12 unroutable, 2 enqueued", c)
	}
	named := logs.FilterMessageSnippet("unroutable key skipped").All()
	if len(named) != 10 || !strings.Contains(named[0].ContextMap()["object"].(string), "s3://"+f.rule.SourceBucket+"/data/") {
		t.Errorf("%d unroutable keys named at warn (first: %v), want the first 10, by key", len(named), named)
	}
	f.drain(t, f.queueURL(), 2)
}

// TestSparseMatchesListLittle: a run that matches few objects of many (a
// scheduled -since) lists a destination from the source key before each
// match, not every page up to it: one object written since, after 2,100
// others, costs one destination listing, not three pages of it.
func TestSparseMatchesListLittle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	var objs []dataset.Object
	for i := range 2100 {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("data/p00/obj-%05d.txt", i), Data: []byte("x")})
	}
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 32); err != nil {
		t.Fatal(err)
	}
	if err := dataset.Upload(ctx, f.dst, f.rule.Destinations[0].Bucket, objs, 32); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // Last-Modified has whole seconds
	since := time.Now().Add(-time.Second)
	late := dataset.Object{Key: "data/p00/obj-99999.txt", Data: []byte("late")}
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, []dataset.Object{late}, 1); err != nil {
		t.Fatal(err)
	}
	dst := &countingLister{Client: f.dst, calls: map[string]int{}}
	deps := f.deps(f.queueURL(), nil)
	deps.Dest = map[string]backfill.DestAPI{"eu-west-1": dst}
	c, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Since: since}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if c.Matched != 1 || c.Missing != 1 || c.Enqueued != 1 {
		t.Errorf("counts %+v: want the one late object matched, missing and sent", c)
	}
	if n := dst.calls["data/p00/"]; n != 1 {
		t.Errorf("destination listed %d times for one late object after 2,100 others, want once", n)
	}
	f.drain(t, f.queueURL(), 1)
}

// failingHeartbeats fails the lease's renewals once failing is set, as a
// throttled or refusing table does.
type failingHeartbeats struct {
	backfill.DynamoAPI
	failing atomic.Bool
	skew    *atomic.Int64 // moved on 10 s by each failed renewal
}

func (f *failingHeartbeats) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.failing.Load() && strings.Contains(aws.ToString(in.UpdateExpression), "heartbeat = :now") {
		f.skew.Add(int64(10 * time.Second))
		return nil, errors.New("ThrottlingException: rate exceeded")
	}
	return f.DynamoAPI.UpdateItem(ctx, in, o...)
}

// TestLeaseNotRenewedStopsTheRun: renewals that keep failing end the run
// (its next save says why) before the lease can lapse and another run work
// beside it; they were dropped without a word until then.
func TestLeaseNotRenewedStopsTheRun(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	var skew atomic.Int64 // this run's clock, moved on 10 s a failed renewal
	api := &failingHeartbeats{DynamoAPI: f.ddb, skew: &skew}
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	c := backfill.NewDynamoCheckpoint(api, f.cfg.TableName(), f.rule.ID, now)
	c.RenewEvery = 20 * time.Millisecond
	if err := c.Start(ctx, &backfill.State{Params: backfill.Params{Rule: f.rule.ID}, Started: time.Now(), Tasks: map[string]backfill.Progress{}}); err != nil {
		t.Fatal(err)
	}
	defer c.Flush(ctx)
	time.Sleep(100 * time.Millisecond) // renewals that succeed
	if err := c.Save(ctx, "data/", backfill.Progress{After: "data/x"}); err != nil {
		t.Fatal(err)
	}
	api.failing.Store(true)
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(25 * time.Millisecond)
		err = c.Save(ctx, "data/", backfill.Progress{After: "data/y"})
	}
	// Another run on a clock ClockSkew ahead takes the lease over
	// LeaseTTL after the last renewal by this one's.
	if lapse := backfill.LeaseTTL - awsapi.ClockSkew; !errors.Is(err, backfill.ErrLeaseLost) || !strings.Contains(err.Error(), "ThrottlingException") || skew.Load() >= int64(lapse) {
		t.Fatalf("saving after renewals failed for %v: %v; want the lease lost, saying why, before it could lapse (%v)", time.Duration(skew.Load()), err, lapse)
	}
}
