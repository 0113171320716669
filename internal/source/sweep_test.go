package source

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/stats"
)

// TestSweepAbortsAbandonedUploads: the staging uploads of a task whose
// lease ran out are aborted; those of a live task (one whose clock is
// minutes behind included), of this task, of an older xrc (until a day
// old) and of a task just started are kept.
func TestSweepAbortsAbandonedUploads(t *testing.T) {
	env, cfg, _ := localstack.Deploy(t, "sweep", nil)
	ctx := context.Background()
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	ddb, err := env.DynamoDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leases := stats.New(ddb, cfg.TableName(), time.Now)
	if err := leases.Renew(ctx, "a11ce000", time.Hour); err != nil {
		t.Fatal(err)
	}
	// A live task whose clock is two minutes behind this one's renews its
	// lease as every task does.
	behind := stats.New(ddb, cfg.TableName(), func() time.Time { return time.Now().Add(-2 * time.Minute) })
	if err := behind.Renew(ctx, "5ca1ed00", leaseTTL); err != nil {
		t.Fatal(err)
	}
	staging := cfg.Settings.Regions[0].StagingBucket
	keys := map[string]string{
		"dead":   "r1/2026/12/02/20261202T100000Z-deadbeef-000000000001.tar.zst",
		"alive":  "r1/2026/12/02/20261202T100000Z-a11ce000-000000000002.tar.zst",
		"mine":   "r1/2026/12/02/20261202T100000Z-0000abcd-000000000003.tar.zst",
		"old":    "r1/2026/12/02/20261202T100000Z-000000000004.tar.zst",
		"skewed": "r1/2026/12/02/20261202T100000Z-5ca1ed00-000000000005.tar.zst",
	}
	ids := map[string]string{}
	for name, key := range keys {
		out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &staging, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = aws.ToString(out.UploadId)
	}
	w := &Worker{Deps: Deps{Config: cfg, S3: client, Leases: leases, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())},
		staging: staging, task: "0000abcd", rules: []*config.Rule{&cfg.Rules[0]}}
	w.uploads.add(ids["mine"])
	// Seen from later on: every upload is past sweepMinAge.
	w.Clock = clockwork.NewFakeClockAt(time.Now().Add(sweepMinAge + time.Minute))
	w.sweep(ctx)
	left := map[string]bool{}
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &staging})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		left[aws.ToString(u.UploadId)] = true
	}
	if left[ids["dead"]] {
		t.Error("the upload of a task whose lease ran out was kept")
	}
	for _, name := range []string{"alive", "mine", "old", "skewed"} {
		if !left[ids[name]] {
			t.Errorf("the %s upload was aborted", name)
		}
	}
	// A day on, an older xrc's upload is abandoned too.
	w.Clock = clockwork.NewFakeClockAt(time.Now().Add(25 * time.Hour))
	w.uploads.remove(ids["mine"])
	w.sweep(ctx)
	out, _ = client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &staging})
	for _, u := range out.Uploads {
		if id := aws.ToString(u.UploadId); id == ids["old"] || id == ids["mine"] {
			t.Errorf("upload %s kept a day later", aws.ToString(u.Key))
		}
		client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &staging, Key: u.Key, UploadId: u.UploadId})
	}
	if taskOf(keys["dead"]) != "deadbeef" || taskOf(keys["old"]) != "" {
		t.Errorf("taskOf: %q %q", taskOf(keys["dead"]), taskOf(keys["old"]))
	}
}

type countingLeases struct{ renewals atomic.Int32 }

func (l *countingLeases) Renew(context.Context, string, time.Duration) error {
	l.renewals.Add(1)
	return nil
}
func (l *countingLeases) Alive(context.Context, string) (bool, error) { return true, nil }

// stuckListing never answers a listing of uploads.
type stuckListing struct{ S3API }

func (stuckListing) ListMultipartUploads(ctx context.Context, _ *s3.ListMultipartUploadsInput, _ ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// repeatingListing answers every listing of uploads as truncated, with
// the same next markers each time (none, if marker is empty).
type repeatingListing struct {
	S3API
	marker string
	calls  atomic.Int32
}

func (r *repeatingListing) ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	r.calls.Add(1)
	out := &s3.ListMultipartUploadsOutput{IsTruncated: aws.Bool(true)}
	if r.marker != "" {
		out.NextKeyMarker, out.NextUploadIdMarker = aws.String(r.marker), aws.String("u")
	}
	return out, nil
}

// TestSweepEndsOnRepeatedMarkers: a store that gives a truncated listing
// the same markers again, or none, does not hold the sweep for ever (it
// listed without end).
func TestSweepEndsOnRepeatedMarkers(t *testing.T) {
	for _, marker := range []string{"", "k"} {
		list := &repeatingListing{marker: marker}
		w := &Worker{Deps: Deps{S3: list, Clock: clockwork.NewFakeClock(), Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
		done := make(chan struct{})
		go func() { w.sweep(context.Background()); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("markers %q: the sweep still listed after a minute (%d calls)", marker, list.calls.Load())
		}
		if n := list.calls.Load(); n > 2 {
			t.Errorf("markers %q: %d listings, want at most 2", marker, n)
		}
	}
}

// TestLeaseRenewedDuringALongSweep: a sweep that takes longer than the
// lease does not hold up its renewals (other tasks would take the lease as
// lapsed and abort this task's live uploads).
func TestLeaseRenewedDuringALongSweep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clock := clockwork.NewFakeClock()
	leases := &countingLeases{}
	w := &Worker{Deps: Deps{S3: stuckListing{}, Leases: leases, Clock: clock, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
	go w.sweepLoop(ctx)
	for i := int32(1); i <= 4; i++ { // past leaseTTL
		for leases.renewals.Load() < i {
			if ctx.Err() != nil {
				t.Fatalf("%d renewals while a sweep was stuck, want %d", leases.renewals.Load(), i)
			}
			time.Sleep(time.Millisecond)
		}
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("no renewal waiting while a sweep was stuck: %v", err)
		}
		clock.Advance(leaseEvery)
	}
}

// stuckTable holds every call until its context ends: a table or a lease
// call in flight when the worker stops.
type stuckTable struct{ calls atomic.Int32 }

func (s *stuckTable) wait(ctx context.Context) error                             { s.calls.Add(1); <-ctx.Done(); return ctx.Err() }
func (s *stuckTable) Renew(ctx context.Context, _ string, _ time.Duration) error { return s.wait(ctx) }
func (s *stuckTable) Alive(ctx context.Context, _ string) (bool, error)          { return false, s.wait(ctx) }
func (s *stuckTable) Add(ctx context.Context, _ string, _ time.Time, ds []stats.Delta) ([]stats.Delta, error) {
	return ds, s.wait(ctx)
}
func (s *stuckTable) Observations(ctx context.Context, _ string, _ time.Time) ([]adaptive.Observation, error) {
	return nil, s.wait(ctx)
}
func (s *stuckTable) AddBenchmark(ctx context.Context, _ adaptive.BenchResult) (stats.Fleet, error) {
	return stats.Fleet{}, s.wait(ctx)
}
func (s *stuckTable) Fleet(ctx context.Context) (stats.Fleet, error) {
	return stats.Fleet{}, s.wait(ctx)
}
func (s *stuckTable) PublishChoice(ctx context.Context, _ string, _ adaptive.Class, _ adaptive.Arm, _ float64) error {
	return s.wait(ctx)
}

// TestStopCutsNoFailure: a lease renewal or a refresh of the statistics
// cut by the stop (a Lambda environment retired, its loops' context
// cancelled with their calls in flight) is no failure: no warning, no
// error counted, and what was to be written is kept for the stop's own
// write.
func TestStopCutsNoFailure(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	table := &stuckTable{}
	w, rule := tableWorker(table)
	w.Log, w.Leases = zap.New(core), table
	w.levels.log = w.Log
	w.levels.pending[rule.ID] = dateAll([]stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 1 << 20, Out: 400 << 10, Objects: 1}}, time.Now())
	for name, call := range map[string]func(context.Context){
		"renew":   w.renew,
		"refresh": func(ctx context.Context) { w.levels.refresh(ctx, time.Now()) },
	} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); call(ctx) }()
		for table.calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		table.calls.Store(0)
		if logs.Len() > 0 {
			t.Errorf("%s cut by the stop: %v", name, logs.TakeAll())
		}
	}
	for _, kind := range []string{"lease", "stats"} {
		if v := testutil.ToFloat64(w.Metrics.Errors.WithLabelValues(kind)); v != 0 {
			t.Errorf("errors{%s} = %v, want 0", kind, v)
		}
	}
	if len(w.levels.pending[rule.ID]) != 1 {
		t.Errorf("pending statistics %v, want the archive's kept for the stop's write", w.levels.pending[rule.ID])
	}
}

// thawedTable is a table whose every call was in flight when the process
// froze: it fails once the fake clock has run past its timeout.
type thawedTable struct {
	stuckTable
	clock *clockwork.FakeClock
}

func (s *thawedTable) thaw() error                                        { s.clock.Advance(3 * time.Hour); return context.DeadlineExceeded }
func (s *thawedTable) Renew(context.Context, string, time.Duration) error { return s.thaw() }
func (s *thawedTable) Alive(context.Context, string) (bool, error)        { return false, s.thaw() }
func (s *thawedTable) PublishChoice(context.Context, string, adaptive.Class, adaptive.Arm, float64) error {
	return s.thaw()
}
func (s *thawedTable) Add(_ context.Context, _ string, _ time.Time, ds []stats.Delta) ([]stats.Delta, error) {
	return ds, s.thaw()
}
func (s *thawedTable) Observations(context.Context, string, time.Time) ([]adaptive.Observation, error) {
	return nil, s.thaw()
}

// TestThawIsNoFailure: a lease renewal or statistics call in flight when
// Lambda froze the environment fails at the thaw, hours later, its time
// long run out: no failure of the table (no warning, no error counted),
// and what was to be written is kept for the next write.
func TestThawIsNoFailure(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	clock := clockwork.NewFakeClock()
	table := &thawedTable{clock: clock}
	w, rule := tableWorker(table)
	w.Log, w.Leases, w.Clock = zap.New(core), table, clock
	w.levels.log, w.levels.clock = w.Log, clock
	w.levels.pending[rule.ID] = dateAll([]stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 1 << 20, Out: 400 << 10, Objects: 1}}, clock.Now())
	w.renew(context.Background())
	w.levels.refresh(context.Background(), clock.Now())
	if logs.Len() > 0 {
		t.Errorf("a thaw said: %v", logs.TakeAll())
	}
	for _, kind := range []string{"lease", "stats"} {
		if v := testutil.ToFloat64(w.Metrics.Errors.WithLabelValues(kind)); v != 0 {
			t.Errorf("errors{%s} = %v, want 0", kind, v)
		}
	}
	if len(w.levels.pending[rule.ID]) != 1 || !w.levels.retryAt.IsZero() {
		t.Errorf("pending statistics %v (retry at %v), want them kept for the next write, no backoff", w.levels.pending[rule.ID], w.levels.retryAt)
	}
}
