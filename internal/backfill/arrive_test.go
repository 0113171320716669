package backfill_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// TestBackfilledObjectsArrive runs the real pipeline, source and target
// workers in-process, on what a backfill enqueues: every object missing or
// different at the destination arrives there byte for byte, and what was
// already there is left as it was. (TestEnqueuesExactlyWhatDiffers counts
// the 2,000-object case; moving 1,750 objects through both workers would
// take most of make test's time, so this test moves 40.)
func TestBackfilledObjectsArrive(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(60, 3)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	src := f.listed(t)
	for i, o := range objs[:35] {
		switch {
		case i < 20: // written by xrc from this very write: left alone
			f.putDest(t, o.Key, o.Data, src[o.Key].modified, true)
		case i < 30: // written by xrc from an earlier write of another size
			f.putDest(t, o.Key, o.Data[:5], src[o.Key].modified.Add(-time.Hour), true)
		default: // someone else's copy of another size
			f.putDest(t, o.Key, append(o.Data, "stale"...), time.Time{}, false)
		}
	}
	counts, err := backfill.Run(ctx, backfill.Options{Rule: f.rule}, f.deps(f.queueURL(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if counts.Enqueued != 40 || counts.UpToDate != 20 {
		t.Fatalf("counts %+v, want 40 enqueued and 20 up to date", counts)
	}

	log, _ := localstack.ObservedLogger(t, zap.WarnLevel)
	f.startWorkers(t, log)
	f.arrive(t, objs)
	bucket := f.rule.Destinations[0].Bucket
	for _, o := range objs[:20] {
		head, err := f.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &o.Key})
		if err != nil {
			t.Fatal(err)
		}
		if head.Metadata[deliver.MetaArchive] != "seed" {
			t.Errorf("%q was rewritten (archive %q), though the destination held its write", o.Key, head.Metadata[deliver.MetaArchive])
		}
	}
}

// TestBackfillRepairsTagDrift: objects delivered with their tags, whose
// tags then change at the source with no event (as before xrc carried tag
// changes): a plain backfill finds them up to date; one with Tags sends a
// tag change for exactly those, the pipeline sets the source's tags at the
// destination without rewriting the objects, and a second run finds
// nothing to send.
func TestBackfillRepairsTagDrift(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	objs := objects(24, 2)
	for i := range objs {
		if i%2 == 0 {
			objs[i].Tags = map[string]string{"team": "a", "n": strconv.Itoa(i)}
		}
	}
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := backfill.Run(ctx, backfill.Options{Rule: f.rule}, f.deps(f.queueURL(), nil)); err != nil {
		t.Fatal(err)
	}
	log, _ := localstack.ObservedLogger(t, zap.WarnLevel)
	f.startWorkers(t, log)
	bucket := f.rule.Destinations[0].Bucket
	f.arrive(t, objs)
	archives := map[string]string{}
	for _, o := range objs {
		head, err := f.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &o.Key})
		if err != nil {
			t.Fatal(err)
		}
		archives[o.Key] = head.Metadata[deliver.MetaArchive]
	}

	// Drift: tags changed, added, removed, unchanged (set again).
	for i := range objs[:8] {
		o := &objs[i]
		switch i % 4 {
		case 0:
			o.Tags = map[string]string{"team": "b", "n": strconv.Itoa(i)}
		case 1:
			o.Tags = map[string]string{"scanned": "clean"}
		case 2:
			o.Tags = nil
		}
		set := []s3types.Tag{}
		for k, v := range o.Tags {
			set = append(set, s3types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := f.src.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &f.rule.SourceBucket, Key: &o.Key,
			Tagging: &s3types.Tagging{TagSet: set}}); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, DryRun: true}, f.deps("", nil))
	if err != nil {
		t.Fatal(err)
	}
	if counts.Enqueued != 0 || counts.UpToDate != 24 {
		t.Fatalf("without Tags: counts %+v, want 24 up to date", counts)
	}
	counts, err = backfill.Run(ctx, backfill.Options{Rule: f.rule, Tags: true}, f.deps(f.queueURL(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if counts.TagsDiffer != 6 || counts.Enqueued != 6 || counts.UpToDate != 18 || counts.Bytes != 0 {
		t.Fatalf("counts %+v, want 6 with other tags enqueued (no bytes), 18 up to date", counts)
	}
	f.arrive(t, objs)
	for _, o := range objs {
		head, err := f.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &o.Key})
		if err != nil {
			t.Fatal(err)
		}
		if a := head.Metadata[deliver.MetaArchive]; a != archives[o.Key] {
			t.Errorf("%q was rewritten (archive %q, was %q) for a tag change", o.Key, a, archives[o.Key])
		}
	}
	counts, err = backfill.Run(ctx, backfill.Options{Rule: f.rule, Tags: true, DryRun: true}, f.deps("", nil))
	if err != nil {
		t.Fatal(err)
	}
	if counts.Enqueued != 0 || counts.UpToDate != 24 {
		t.Fatalf("after the repair: counts %+v, want 24 up to date", counts)
	}
}

// arrive waits until every one of objs is at the destination as it is
// at the source (bytes, headers, tags), or fails the test after two
// minutes, naming what differs.
func (f *fixture) arrive(t *testing.T, objs []dataset.Object) {
	t.Helper()
	var errs []error
	if !localstack.Eventually(2*time.Minute, time.Second, func() bool {
		errs = dataset.Check(context.Background(), f.dst, f.rule.Destinations[0].Bucket, objs, func(k string) string { return k }, 8)
		return len(errs) == 0
	}) {
		for _, err := range errs {
			t.Error(err)
		}
		t.FailNow()
	}
}

// startWorkers runs a source and a target worker until the test ends.
func (f *fixture) startWorkers(t *testing.T, log *zap.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sw, err := source.New(source.Deps{Config: f.cfg, Region: "us-east-1", Queue: queue.New(f.sqs, f.queueURL()), S3: f.src,
		Log: log.Named("source"), Metrics: source.NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now),
		Stats: stats.New(f.ddb, f.cfg.TableName(), time.Now)})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := deliver.New(deliver.Deps{Config: f.cfg, Region: "eu-west-1", Queue: queue.New(f.sqs, f.dep.TargetQueues["eu-west-1"]), S3: f.dst,
		Tombstones: tombstone.New(f.ddb, f.cfg.TableName(), time.Now), Ledger: ledger.New(f.ddb, f.cfg.TableName(), time.Now),
		Uploads: uploads.New(f.ddb, f.cfg.TableName(), time.Now),
		Log:     log.Named("target"), Metrics: deliver.NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now)})
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []func(context.Context) error{sw.Run, tw.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("worker: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// TestNoTagChangeBesideAnotherCopy: where one destination holds a copy xrc
// did not write, no tag change is sent, though another destination's
// tags drifted: the target could not match it to a write of its own there,
// and would hold the archive until the DLQ waiting for one.
func TestNoTagChangeBesideAnotherCopy(t *testing.T) {
	t.Parallel()
	f := setupWith(t, func(cfg *config.Config) {
		r := &cfg.Rules[0]
		r.Destinations = append(r.Destinations, config.Destination{Region: r.Destinations[0].Region, Bucket: r.Destinations[0].Bucket + "-b"})
	})
	ctx := context.Background()
	o := dataset.Object{Key: "data/p00/tagged.txt", ContentType: "text/plain", Data: []byte("tagged"), Tags: map[string]string{"scan": "clean"}}
	if err := dataset.Put(ctx, f.src, f.rule.SourceBucket, &o); err != nil {
		t.Fatal(err)
	}
	modified := f.listed(t)[o.Key].modified
	f.putDest(t, o.Key, o.Data, modified, true) // xrc's copy, without the tag
	other := f.rule.Destinations[1].Bucket
	if _, err := f.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &other, Key: &o.Key, Body: bytes.NewReader(o.Data)}); err != nil {
		t.Fatal(err)
	}
	counts, err := backfill.Run(ctx, backfill.Options{Rule: f.rule, Tags: true, DryRun: true}, f.deps("", nil))
	if err != nil {
		t.Fatal(err)
	}
	if counts.TagsDiffer != 0 || counts.Enqueued != 0 || counts.NotByXRC != 1 {
		t.Errorf("counts %+v, want the object left alone as not by xrc", counts)
	}
}
