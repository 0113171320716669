package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/uploads"
	"github.com/xrc-dev/xrc/internal/worker"
)

// The workers' steps are what the handlers call, resumable uploads'
// abandonment included.
var (
	_ Packer    = (*source.Worker)(nil)
	_ Deliverer = (*deliver.Worker)(nil)
	_ abandoner = (*deliver.Worker)(nil)
)

// FuzzMessage: any record an event source mapping could hand over turns
// into a message without panicking, its receive count never negative
// unless the attribute says so, and its body intact.
func FuzzMessage(f *testing.F) {
	f.Add("id", "3", "1767225600000", `{"Records":[]}`)
	f.Add("", "", "", "")
	f.Add("x", "-1", "99999999999999999999", "\x00")
	f.Fuzz(func(t *testing.T, id, count, sent, body string) {
		m := message(events.SQSMessage{MessageId: id, Body: body,
			Attributes: map[string]string{"ApproximateReceiveCount": count, "SentTimestamp": sent}})
		if m.ID != id || m.Body != body {
			t.Errorf("message %+v lost its id or body", m)
		}
		if m.ReceiveCount < 0 && !strings.HasPrefix(count, "-") {
			t.Errorf("receive count %d from %q", m.ReceiveCount, count)
		}
	})
}

func TestBatches(t *testing.T) {
	a := &config.Rule{ID: "a", Batch: config.Batch{MaxObjects: 3, MaxBytes: 10 << 20}}
	b := &config.Rule{ID: "b", Batch: config.Batch{MaxObjects: 100, MaxBytes: 10 << 20}}
	item := func(r *config.Rule, key string, size int64) source.Item {
		return source.Item{Rule: r, Ref: xevents.ObjectRef{Key: key, Size: size}}
	}
	items := []source.Item{
		item(a, "a1", 1<<20), item(b, "b1", 6<<20), item(a, "a2", 1<<20), item(a, "big", 10<<20),
		item(a, "a3", 1<<20), item(a, "a4", 1<<20), item(b, "b2", 6<<20), item(b, "b3", 1<<20),
	}
	var got []string
	for _, bt := range batches(items) {
		s := bt.rule.ID + ":"
		for _, it := range bt.items {
			s += " " + it.Ref.Key
		}
		got = append(got, s)
	}
	// a: three at most, the object at maxBytes alone; b: bytes close it.
	want := []string{"a: a1 a2 a3", "b: b1", "a: big", "a: a4", "b: b2 b3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches\n got %q\nwant %q", got, want)
	}
}

func TestPace(t *testing.T) {
	var p pace
	if e := p.estimate(1<<30, 1000); e != 0 {
		t.Errorf("nothing observed: estimate %v, want 0 (start, the cut stops it)", e)
	}
	near := func(got, want time.Duration) bool { return (got - want).Abs() < 10*time.Millisecond }
	// Work costing 0.2 s per item and 0.05 s per MiB. One shape seen: the
	// smaller of the one-cost answers, 0.25 s per item or per MiB.
	p.observe(10<<20, 10, 2500*time.Millisecond)
	if e := p.estimate(20<<20, 1); !near(e, 375*time.Millisecond) {
		t.Errorf("20 MiB in one item: %v, want 0.25s and half again", e)
	}
	if e := p.estimate(1<<10, 100); !near(e, 0) {
		t.Errorf("100 small objects: %v, want ~0 s", e)
	}
	// Two more shapes: the costs apart.
	p.observe(1<<20, 20, 4050*time.Millisecond)
	p.observe(100<<20, 1, 5200*time.Millisecond)
	if e := p.estimate(40<<20, 2); !near(e, 3600*time.Millisecond) {
		t.Errorf("40 MiB in 2 items: %v, want 2.4s and half again", e)
	}
}

// A warm environment that delivered a small archive in 0.5 s, nearly all
// of it round trips, still starts a 1 MiB archive with minutes left: the
// time of the small one was once charged to its bytes (512 s per MiB),
// and every larger archive was left out until it went to the DLQ.
func TestPaceAfterASmallUnit(t *testing.T) {
	var p pace
	p.observe(1<<10, 1, 500*time.Millisecond)
	if e := p.estimate(1<<20, 1); e > time.Second {
		t.Errorf("1 MiB archive after a 1 KiB one: estimate %v", e)
	}
	p.observe(4<<20, 1, 600*time.Millisecond)
	if e := p.estimate(256<<20, 1); e < 10*time.Second || e > 11*time.Second {
		t.Errorf("256 MiB after 1 KiB in 0.5 s and 4 MiB in 0.6 s: estimate %v, want 0.5 + 256×0.025 s and half again", e)
	}
}

func TestCut(t *testing.T) {
	ctx, cancel, at := cut(context.Background(), time.Minute)
	defer cancel()
	if !at.IsZero() || ctx.Err() != nil {
		t.Errorf("no deadline: cut at %v", at)
	}
	if !fits(time.Now(), at, time.Hour) {
		t.Error("without a cut everything fits")
	}
	deadline := time.Now().Add(90 * time.Second)
	parent, pcancel := context.WithDeadline(context.Background(), deadline)
	defer pcancel()
	ctx, cancel, at = cut(parent, time.Minute)
	defer cancel()
	if !at.Equal(deadline.Add(-time.Minute)) {
		t.Errorf("cut at %v, want a minute before %v", at, deadline)
	}
	if d, _ := ctx.Deadline(); !d.Equal(at) {
		t.Errorf("work's deadline %v, want the cut %v", d, at)
	}
	if fits(time.Now(), at, 40*time.Second) || !fits(time.Now(), at, 20*time.Second) {
		t.Error("30 s before the cut: 20 s fit, 40 s do not")
	}
}

func TestMessage(t *testing.T) {
	m := message(events.SQSMessage{MessageId: "id", ReceiptHandle: "rh", Body: "{}",
		Attributes: map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1767225600000"}})
	if m.ID != "id" || m.ReceiptHandle != "rh" || m.ReceiveCount != 3 || !m.SentAt.Equal(time.UnixMilli(1767225600000)) {
		t.Errorf("message %+v", m)
	}
}

// TestSettle: a message comes back at once only when every failure is one
// no retry fixes or the deadline's.
func TestSettle(t *testing.T) {
	for _, tc := range []struct {
		name string
		errs []error
		fail bool
		now  bool
	}{
		{"all done", []error{nil, nil}, false, false},
		{"unroutable", []error{nil, fmt.Errorf("x: %w", source.ErrUnroutable)}, true, true},
		{"too large", []error{fmt.Errorf("x: %w", source.ErrTooLarge)}, true, true},
		{"archived", []error{fmt.Errorf("x: %w", source.ErrArchived)}, true, true},
		{"deadline", []error{ErrDeadline, context.DeadlineExceeded}, true, true},
		{"transient", []error{errors.New("503")}, true, false},
		{"unroutable and transient", []error{fmt.Errorf("x: %w", source.ErrUnroutable), errors.New("503")}, true, false},
		{"transient then unroutable", []error{errors.New("503"), fmt.Errorf("x: %w", source.ErrUnroutable)}, true, false},
	} {
		tr := &tracked{pending: len(tc.errs)}
		for _, err := range tc.errs {
			tr.settle(err)
		}
		if (tr.out.err != nil) != tc.fail || tr.out.now != tc.now || tr.pending != 0 {
			t.Errorf("%s: err %v, now %v, pending %d; want failed %v, now %v", tc.name, tr.out.err, tr.out.now, tr.pending, tc.fail, tc.now)
		}
	}
}

func TestParseEnv(t *testing.T) {
	env := map[string]string{"XRC_ROLE": "source", "XRC_CONFIG": "ssm:///xrc/config", "AWS_REGION": "us-east-1", "XRC_RULES": "logs"}
	get := func(k string) string { return env[k] }
	e, err := ParseEnv(get)
	if err != nil || e.Role != RoleSource || e.Flags.Rules != "logs" || e.Flags.Region != "us-east-1" || e.ConfigTTL != DefaultConfigTTL {
		t.Errorf("ParseEnv = %+v, %v", e, err)
	}
	env["XRC_CONFIG_TTL"] = "30s"
	if e, err := ParseEnv(get); err != nil || e.ConfigTTL != 30*time.Second {
		t.Errorf("XRC_CONFIG_TTL: %+v, %v", e, err)
	}
	env["XRC_CONFIG_TTL"] = "soon"
	if _, err := ParseEnv(get); err == nil {
		t.Error("XRC_CONFIG_TTL=soon accepted")
	}
	delete(env, "XRC_CONFIG_TTL")
	env["XRC_ROLE"] = "target"
	if _, err := ParseEnv(get); !errors.Is(err, app.ErrUsage) || !strings.Contains(err.Error(), "XRC_RULES") {
		t.Errorf("a target given XRC_RULES: %v, want a usage error naming it", err)
	}
	delete(env, "XRC_RULES")
	if e, err := ParseEnv(get); err != nil || e.Role != RoleTarget {
		t.Errorf("target: %+v, %v", e, err)
	}
	env["XRC_ROLE"] = "both"
	if _, err := ParseEnv(get); err == nil {
		t.Error("XRC_ROLE=both accepted")
	}
}

func TestMostReceivedFirst(t *testing.T) {
	rec := func(id string, receives string) events.SQSMessage {
		return events.SQSMessage{MessageId: id, Attributes: map[string]string{"ApproximateReceiveCount": receives}}
	}
	in := []events.SQSMessage{rec("a", "1"), rec("b", "4"), rec("c", "1"), rec("d", "2"), rec("e", "4")}
	var got []string
	for _, r := range mostReceivedFirst(in) {
		got = append(got, r.MessageId)
	}
	if want := []string{"b", "e", "d", "a", "c"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if in[0].MessageId != "a" {
		t.Error("the event's records were reordered in place")
	}
}

// delivered records the archives a Target was given.
type delivered struct {
	mu   sync.Mutex
	keys []string
}

func (d *delivered) DeliverVersion(_ context.Context, _, key, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys = append(d.keys, key)
	return nil
}

// A pace fitted on small archives with ordinary jitter (1 KiB in 0.4 s,
// 3 KiB in 0.6 s: 102 s per MiB) estimates hours for a 100 MiB archive;
// the first archive of an invocation starts all the same, so a warm
// function cannot leave it out of every invocation until the DLQ.
func TestFirstArchiveStartsWhateverThePace(t *testing.T) {
	d := &delivered{}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Margin: 30 * time.Second, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(1<<10, 1, 400*time.Millisecond)
	h.pace.observe(3<<10, 1, 600*time.Millisecond)
	if e := h.pace.estimate(100<<20, 1); e < time.Hour || e > maxEstimate {
		t.Fatalf("the fitted estimate for 100 MiB is %v: this test wants one wrong by hours, and bounded", e)
	}
	body := func(key string, size int) string {
		return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put",`+
			`"s3":{"bucket":{"name":"staging"},"object":{"key":%q,"size":%d,"sequencer":"01"}}}]}`, key, size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		// Received as often, and first: it announces no archive, so it
		// must not take the pass.
		{MessageId: "poison", Body: "not json", Attributes: map[string]string{"ApproximateReceiveCount": "4"}},
		{MessageId: "big", Body: body("r1/big.tar.zst", 100<<20), Attributes: map[string]string{"ApproximateReceiveCount": "4"}},
		{MessageId: "other", Body: body("r1/other.tar.zst", 100<<20), Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.keys, "r1/big.tar.zst") {
		t.Errorf("the archive closest to the DLQ was not started (delivered %v; failures %+v)", d.keys, resp.BatchItemFailures)
	}
}

type failing struct{ err error }

func (f failing) DeliverVersion(context.Context, string, string, string) error { return f.err }

type releases struct {
	mu     sync.Mutex
	delays []time.Duration
	again  []queue.Message
}

func (r *releases) sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.again)
}

func (r *releases) SendAgainAll(_ context.Context, _ time.Duration, msgs ...queue.Message) ([]queue.Failure, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.again = append(r.again, msgs...)
	return nil, nil
}

func (r *releases) ChangeVisibility(_ context.Context, d time.Duration, msgs ...queue.Message) ([]queue.Failure, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delays = append(r.delays, d)
	return nil, nil
}

// TestRetagWaitsForItsWrite: an archive whose retag found its write not
// delivered yet comes back after a visibility timeout, as on Fargate, not
// after the seconds of the backoff, which would take it to the DLQ before
// a write some minutes behind arrives.
func TestRetagWaitsForItsWrite(t *testing.T) {
	r := &releases{}
	h := NewTarget(TargetOptions{Deliverer: failing{fmt.Errorf("writing s3://d/k: %w", deliver.ErrRetagBeforeWrite)}, Staging: "staging",
		MaxReceive: 5, Visibility: 5 * time.Minute, Queue: r, Margin: 30 * time.Second, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	body := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"staging"},"object":{"key":"r1/a.tar.zst","size":10,"sequencer":"01"}}}]}`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("Handle = %+v, %v; want the message reported", resp, err)
	}
	if len(r.delays) != 1 || r.delays[0] != 5*time.Minute {
		t.Errorf("released after %v, want a visibility timeout (5m)", r.delays)
	}
}

// abandoning fails every delivery with err and records what it abandons;
// an Abandon blocks until hold is closed, if it is not nil.
type abandoning struct {
	err  error
	hold chan struct{}

	mu        sync.Mutex
	abandoned []string
}

func (a *abandoning) DeliverVersion(context.Context, string, string, string) error { return a.err }

func (a *abandoning) Abandon(_ context.Context, key string) {
	a.mu.Lock()
	a.abandoned = append(a.abandoned, key)
	a.mu.Unlock()
	if a.hold != nil {
		<-a.hold
	}
}

// lastReceive handles one message on its last receive with h, and checks
// it is reported.
func lastReceive(h *Target, ctx context.Context) error {
	body := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"staging"},"object":{"key":"r1/a.tar.zst","size":10,"sequencer":"01"}}},` +
		`{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"staging"},"object":{"key":"r1/b.tar.zst","size":10,"sequencer":"02"}}}]}`
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "5"}}}})
	if err != nil || len(resp.BatchItemFailures) != 1 {
		return fmt.Errorf("Handle = %+v, %v; want the message reported", resp, err)
	}
	return nil
}

// TestConcurrentDeliveryIsNotAbandoned: a delivery failing only because
// another delivery of its archive holds the upload records (a duplicate
// event; a Fargate task of a hybrid region) leaves that delivery's uploads
// alone, on its last receive too, as the Fargate worker does.
func TestConcurrentDeliveryIsNotAbandoned(t *testing.T) {
	d := &abandoning{err: fmt.Errorf("writing s3://d/k: %w", uploads.ErrRecorded)}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Visibility: 5 * time.Minute, Queue: &releases{},
		Margin: 30 * time.Second, Log: zap.NewNop(), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lastReceive(h, ctx); err != nil {
		t.Fatal(err)
	}
	if len(d.abandoned) != 0 {
		t.Errorf("abandoned %v: the other delivery's uploads were aborted", d.abandoned)
	}
}

// TestRejectedArchiveIsNotAbandoned: an archive rejected (under another
// archive's key, say) wrote nothing: the uploads recorded under its key
// are the genuine archive's, left alone; an archive failing for good
// otherwise has its own abandoned.
func TestRejectedArchiveIsNotAbandoned(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []string
	}{
		{fmt.Errorf("s3://staging/r1/a.tar.zst: %w: staging key does not name the archive's id", deliver.ErrRejected), nil},
		{fmt.Errorf("archive a: %w", deliver.ErrChecksum), []string{"r1/a.tar.zst", "r1/b.tar.zst"}},
	} {
		d := &abandoning{err: c.err}
		h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Visibility: 5 * time.Minute, Queue: &releases{},
			Margin: 30 * time.Second, Log: zap.NewNop(), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := lastReceive(h, ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if !slices.Equal(d.abandoned, c.want) {
			t.Errorf("%v: abandoned %v, want %v", c.err, d.abandoned, c.want)
		}
	}
}

// TestAbandonEndsInTime: abandoning a failed archive's uploads on its last
// receive does not hold the invocation past its deadline (the whole batch,
// what it delivered included, would come back); it is waited for until
// half the margin past the cut, and given up then: a thawed environment
// does not go on with it.
func TestAbandonEndsInTime(t *testing.T) {
	d := &abandoning{err: errors.New("503"), hold: make(chan struct{})}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Visibility: 5 * time.Minute, Queue: &releases{},
		Margin: 4 * time.Second, Log: zap.NewNop(), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- lastReceive(h, ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still running 4 s past the invocation's deadline")
	}
	if ctx.Err() != nil {
		t.Errorf("Handle returned after the invocation's deadline")
	}
	close(d.hold) // the call given up ends; the next archive's must not start
	time.Sleep(200 * time.Millisecond)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Equal(d.abandoned, []string{"r1/a.tar.zst"}) {
		t.Errorf("abandoned %v, want the first archive's uploads only", d.abandoned)
	}
}

// slowPacker settles every item with the context's error once it ends: a
// batch that takes longer than the invocation.
type slowPacker struct{}

func (slowPacker) Restaged([]source.Staging) {}

func (slowPacker) Relay(context.Context, xevents.Relay) error { return nil }

func (slowPacker) Requeue(context.Context, xevents.Relay, int, int, time.Duration) error { return nil }

func (slowPacker) Match(ref xevents.ObjectRef, sent time.Time, done func(error), _ *zap.Logger) ([]source.Item, bool) {
	return []source.Item{{Ref: ref, Rule: &config.Rule{ID: "r1"}, Sent: sent, Done: done}}, true
}

func (slowPacker) Pack(ctx context.Context, _ *config.Rule, items []source.Item, _ time.Time) {
	<-ctx.Done()
	for _, it := range items {
		it.Done(ctx.Err())
	}
}

// TestFirstBatchCutIsSaid: an invocation whose first batch (started
// whatever the pace) is cut by the deadline says so, as an error naming
// what to change, and counts it: such objects never fit an invocation.
func TestFirstBatchCutIsSaid(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	h := NewSource(SourceOptions{Worker: slowPacker{}, Margin: 20 * time.Second, Log: zap.New(core), Metrics: m})
	body := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"big.bin","size":40000000000,"sequencer":"01"}}}]}`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second+200*time.Millisecond)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("Handle = %+v, %v; want the message reported", resp, err)
	}
	if n := logs.FilterMessageSnippet("first batch was cut by the deadline").Len(); n != 1 {
		t.Errorf("%d errors logged, want 1 naming the cut first batch", n)
	}
	if v := testutil.ToFloat64(m.Errors.WithLabelValues("invocation_too_short")); v != 1 {
		t.Errorf("errors{invocation_too_short} = %v, want 1", v)
	}
}

// TestLevelsSayWhatToDo: on Lambda as on Fargate, error is a message bound
// for the DLQ (its last receive, or a failure no retry fixes), warn one
// retried, info an expected wait.
func TestLevelsSayWhatToDo(t *testing.T) {
	body := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"staging"},"object":{"key":"r1/a.tar.zst","size":10,"sequencer":"01"}}}]}`
	for _, c := range []struct {
		name     string
		err      error
		received string
		want     zapcore.Level
		kind     string
	}{
		{"retried", errors.New("put s3://d/k: 503"), "1", zap.WarnLevel, "write"},
		{"last receive", errors.New("put s3://d/k: 503"), "5", zap.ErrorLevel, "write"},
		{"invalid archive", fmt.Errorf("archive a: %w", archive.ErrInvalid), "1", zap.ErrorLevel, "invalid"},
		{"retag waiting", fmt.Errorf("tags of s3://d/k: %w", deliver.ErrRetagBeforeWrite), "1", zap.InfoLevel, "retag_wait"},
		{"retag waiting, last receive", fmt.Errorf("tags of s3://d/k: %w", deliver.ErrRetagBeforeWrite), "5", zap.ErrorLevel, "retag_wait"},
	} {
		core, logs := observer.New(zap.InfoLevel)
		h := NewTarget(TargetOptions{Deliverer: failing{c.err}, Staging: "staging", MaxReceive: 5, Visibility: 5 * time.Minute,
			Queue: &releases{}, Margin: 30 * time.Second, Log: zap.New(core), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
			{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": c.received}}}}); err != nil {
			t.Fatal(err)
		}
		cancel()
		lines := logs.FilterMessageSnippet("message not done").All()
		if len(lines) != 1 || lines[0].Level != c.want {
			t.Errorf("%s: %d lines, first at %v; want one at %v", c.name, len(lines), lines, c.want)
			continue
		}
		// Named as on Fargate: filter archive="<id>", stats by kind.
		if f := lines[0].ContextMap(); f["key"] != "r1/a.tar.zst" || f["archive"] != "a" || f["kind"] != c.kind {
			t.Errorf("%s: key %v, archive %v, kind %v; want r1/a.tar.zst, a, %s", c.name, f["key"], f["archive"], f["kind"], c.kind)
		}
	}
}

// deadlineReleaser records the deadline of each release (zero: none).
type deadlineReleaser struct{ deadlines []time.Time }

func (r *deadlineReleaser) SendAgainAll(context.Context, time.Duration, ...queue.Message) ([]queue.Failure, error) {
	return nil, nil
}

func (r *deadlineReleaser) ChangeVisibility(ctx context.Context, _ time.Duration, _ ...queue.Message) ([]queue.Failure, error) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Time{}
	}
	r.deadlines = append(r.deadlines, d)
	return nil, nil
}

// TestReleaseWithinTheInvocation: releasing failed messages ends a second
// before the invocation's deadline, or is not tried without that time: a
// release that timed the invocation out (work past the margin) brought the
// whole batch back, its done messages too, after the visibility timeout.
func TestReleaseWithinTheInvocation(t *testing.T) {
	outs := []outcome{{msg: queue.Message{ID: "m1", ReceiveCount: 1}, err: errors.New("not done")}}
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	for _, left := range []time.Duration{3 * time.Second, 500 * time.Millisecond} {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(left))
		deadline, _ := ctx.Deadline()
		r := &deadlineReleaser{}
		resp := respond(ctx, outs, r, m, zap.NewNop())
		cancel()
		if len(resp.BatchItemFailures) != 1 {
			t.Errorf("%v left: %d failures reported, want 1", left, len(resp.BatchItemFailures))
		}
		for _, d := range r.deadlines {
			if d.IsZero() || d.After(deadline.Add(-time.Second)) {
				t.Errorf("%v left: released until %v, not by a second before the invocation's deadline %v", left, d, deadline)
			}
		}
		switch {
		case left < time.Second && len(r.deadlines) > 0:
			t.Errorf("%v left: released anyway", left)
		case left > time.Second && len(r.deadlines) != 1:
			t.Errorf("%v left: %d releases, want one", left, len(r.deadlines))
		}
	}
}

// TestInitBenchmark: the start-up benchmark of a source function fits in
// about 2 s of Lambda's init whatever the config and memory; the
// configured one when it does.
func TestInitBenchmark(t *testing.T) {
	for _, c := range []struct {
		configured time.Duration
		memoryMB   int
		want       time.Duration
	}{
		{time.Second, 1769, time.Second},
		{10 * time.Second, 1769, 1600 * time.Millisecond},
		{10 * time.Second, 10240, 1600 * time.Millisecond},
		{time.Second, 512, 463 * time.Millisecond},
		{time.Second, 128, 116 * time.Millisecond},
		{100 * time.Millisecond, 128, 100 * time.Millisecond},
	} {
		got := initBenchmark(c.configured, c.memoryMB)
		if got.Round(time.Millisecond) != c.want {
			t.Errorf("initBenchmark(%v, %d MB) = %v, want %v", c.configured, c.memoryMB, got, c.want)
		}
		if wall := time.Duration(float64(got) * 1.25 / min(1, float64(c.memoryMB)/1769)); wall > 2*time.Second+time.Millisecond {
			t.Errorf("initBenchmark(%v, %d MB): about %v of init", c.configured, c.memoryMB, wall)
		}
	}
}

// relayPacker copies nothing: every relay it is given fails with err.
type relayPacker struct {
	slowPacker
	err error
	mu  sync.Mutex
	got []xevents.Relay
}

func (p *relayPacker) Relay(_ context.Context, r xevents.Relay) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, r)
	return p.err
}

// TestRelayMessages: a relay message (xevents.Relay) on a source function
// is the worker's copy, beside the batches; failed, it comes back after
// its relay backoff (a region's outage outlasts the seconds of the
// worker's), reported with kind relay; refused, at once towards the DLQ.
func TestRelayMessages(t *testing.T) {
	r := xevents.Relay{Region: "store", Bucket: "stg", Key: "r1/2026/12/06/a.tar.zst", VersionID: "v1"}
	body, err := xevents.EncodeRelay(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		err   error
		delay time.Duration
		level zapcore.Level
	}{
		{"copied", nil, -1, zap.InfoLevel},
		{"failed", errors.New("put s3://stg/...: 503"), source.RelayBackoff(2), zap.WarnLevel},
		{"refused", fmt.Errorf("relay: %w", source.ErrUnroutable), 0, zap.ErrorLevel},
	} {
		core, logs := observer.New(zap.InfoLevel)
		p := &relayPacker{err: c.err}
		q := &releases{}
		h := NewSource(SourceOptions{Worker: p, Queue: q, Margin: time.Second, MaxReceive: 5, Log: zap.New(core),
			Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: string(body), Attributes: map[string]string{"ApproximateReceiveCount": "2"}}}})
		cancel()
		if err != nil || len(p.got) != 1 || p.got[0] != r {
			t.Fatalf("%s: Handle = %v, relays %v; want %+v relayed", c.name, err, p.got, r)
		}
		if c.err == nil {
			if len(resp.BatchItemFailures) != 0 || len(q.delays) != 0 {
				t.Errorf("%s: a copied relay reported %v, released %v", c.name, resp.BatchItemFailures, q.delays)
			}
			continue
		}
		if len(resp.BatchItemFailures) != 1 || !slices.Equal(q.delays, []time.Duration{c.delay}) {
			t.Errorf("%s: reported %v, released after %v; want it back after %v", c.name, resp.BatchItemFailures, q.delays, c.delay)
		}
		lines := logs.FilterLevelExact(c.level).All()
		if len(lines) != 1 || lines[0].ContextMap()["kind"] != "relay" || lines[0].ContextMap()["key"] != r.Key || lines[0].ContextMap()["region"] != r.Region {
			t.Errorf("%s: %d lines at %s, want 1 naming the relay (kind relay, key, region): %v", c.name, len(lines), c.level, lines)
		}
	}
}

// TestSpentRelayNotTried: a relay whose tries over the messages it was
// sent as (Relay.Tries) are spent, its last failure said, is not tried
// again on Lambda either: it goes back at once, towards the DLQ, said at
// error again only on its own last receive.
func TestSpentRelayNotTried(t *testing.T) {
	body, err := xevents.EncodeRelay(xevents.Relay{Region: "store", Bucket: "stg", Key: "r1/2026/12/06/a.tar.zst", Tries: 4})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	p := &relayPacker{}
	q := &releases{}
	h := NewSource(SourceOptions{Worker: p, Queue: q, Margin: time.Second, MaxReceive: 5, Log: zap.New(core),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: string(body), Attributes: map[string]string{"ApproximateReceiveCount": "2"}}}})
	if err != nil || len(p.got) != 0 || len(resp.BatchItemFailures) != 1 || !slices.Equal(q.delays, []time.Duration{0}) {
		t.Fatalf("Handle = %v, %v; relays tried %v, released after %v: want none tried, reported, back at once", resp, err, p.got, q.delays)
	}
	if lines := logs.FilterLevelExact(zap.InfoLevel).FilterMessageSnippet("message not done").All(); len(lines) != 1 || lines[0].ContextMap()["kind"] != "relay" ||
		logs.FilterLevelExact(zap.ErrorLevel).Len() != 0 {
		t.Errorf("lines: %v, want one at info of kind relay, none at error", logs.All())
	}
}

// queuedRelays copies relays two at a time, each until the cut, and
// records those sent again.
type queuedRelays struct {
	slowPacker
	slots chan struct{}
	mu    sync.Mutex
	tried int
	again []xevents.Relay
}

func (p *queuedRelays) Relay(ctx context.Context, r xevents.Relay) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", source.ErrNoTurn, ctx.Err())
	}
	defer func() { <-p.slots }()
	p.mu.Lock()
	p.tried++
	p.mu.Unlock()
	<-ctx.Done() // a copy longer than the invocation
	return ctx.Err()
}

func (p *queuedRelays) Requeue(_ context.Context, r xevents.Relay, received, _ int, _ time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Tries = source.RelayTries(r, received, 5) - 1
	p.again = append(p.again, r)
	return nil
}

// TestRelaysWithoutATurnSentAgain: relays of a batch wait for the two
// copy slots; those whose turn never came before the cut tried nothing,
// and are sent again with their tries kept and acknowledged, not put off
// (on their last receive, towards the DLQ untried, as a redrive of more
// relays than an invocation copies put most of them).
func TestRelaysWithoutATurnSentAgain(t *testing.T) {
	p := &queuedRelays{slots: make(chan struct{}, 2)}
	h := NewSource(SourceOptions{Worker: p, Queue: &releases{}, Margin: time.Second, MaxReceive: 5, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	var recs []events.SQSMessage
	for i := range 6 {
		body, err := xevents.EncodeRelay(xevents.Relay{Region: "store", Bucket: "stg", Key: fmt.Sprintf("r1/2026/12/06/%d.tar.zst", i)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, events.SQSMessage{MessageId: fmt.Sprint(i), Body: string(body), Attributes: map[string]string{"ApproximateReceiveCount": "5"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if p.tried != 2 || len(p.again) != 4 || len(resp.BatchItemFailures) != 2 {
		t.Errorf("%d relays tried, %d sent again, %d reported failed; want 2 tried (cut), 4 sent again and acknowledged", p.tried, len(p.again), len(resp.BatchItemFailures))
	}
	for _, r := range p.again {
		if r.Tries != 4 {
			t.Errorf("relay %s sent again with %d tries, want 4 (its receives before this one)", r.Key, r.Tries)
		}
	}
}

// byKeyPacker stages each key as its own rule's batch, taking 2 s a batch.
type byKeyPacker struct {
	slowPacker
	mu     sync.Mutex
	rules  map[string]*config.Rule
	packed []string
}

func (p *byKeyPacker) Match(ref xevents.ObjectRef, sent time.Time, done func(error), _ *zap.Logger) ([]source.Item, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rules[ref.Key]
	if r == nil {
		r = &config.Rule{ID: ref.Key, Batch: config.Batch{MaxObjects: 1000, MaxBytes: 256 << 20}}
		p.rules[ref.Key] = r
	}
	return []source.Item{{Ref: ref, Rule: r, Sent: sent, Done: done}}, true
}

func (p *byKeyPacker) Pack(ctx context.Context, r *config.Rule, items []source.Item, _ time.Time) {
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	p.mu.Lock()
	p.packed = append(p.packed, r.ID)
	p.mu.Unlock()
	for _, it := range items {
		it.Done(ctx.Err())
	}
}

// TestUntriedOnTheLastReceiveSentAgain: messages on their last receive
// that an invocation's pace leaves out (never started) are sent again as
// new messages and acknowledged, not reported failed: they reached the
// DLQ untried (4 of 6 here). One left out on an earlier receive is
// released as before, and one already sent again maxReceive times goes
// its way to the DLQ.
func TestUntriedOnTheLastReceiveSentAgain(t *testing.T) {
	p := &byKeyPacker{rules: map[string]*config.Rule{}}
	q := &releases{}
	h := NewSource(SourceOptions{Worker: p, Queue: q, Margin: time.Second, MaxReceive: 8, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(10<<20, 1, 2*time.Second) // what this environment measured before
	var recs []events.SQSMessage
	for i, c := range []struct{ received, deferred string }{{"8", ""}, {"8", ""}, {"8", ""}, {"8", ""}, {"8", "8"}, {"3", ""}} {
		body := fmt.Sprintf(`{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"k%d","size":%d,"sequencer":"01"}}}]}`, i, 10<<20)
		rec := events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: body, Attributes: map[string]string{"ApproximateReceiveCount": c.received}}
		if c.deferred != "" {
			rec.MessageAttributes = map[string]events.SQSMessageAttribute{queue.DeferredAttribute: {StringValue: &c.deferred, DataType: "Number"}}
		}
		recs = append(recs, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.packed) < 1 || len(p.packed) > 3 {
		t.Fatalf("packed %v; want the test to leave most batches out", p.packed)
	}
	packed := func(key string) bool { return slices.Contains(p.packed, key) }
	var sentAgain []string
	for _, m := range q.again {
		sentAgain = append(sentAgain, m.ID)
	}
	for i, r := range recs {
		key := fmt.Sprint("k", i)
		reported := slices.ContainsFunc(resp.BatchItemFailures, func(f events.SQSBatchItemFailure) bool { return f.ItemIdentifier == r.MessageId })
		again := slices.Contains(sentAgain, r.MessageId)
		var want string
		switch {
		case packed(key):
			want = "acknowledged"
		case i < 4:
			want = "sent again"
		default:
			want = "reported"
		}
		got := map[bool]map[bool]string{false: {false: "acknowledged", true: "sent again"}, true: {false: "reported", true: "reported and sent again"}}[reported][again]
		if got != want {
			t.Errorf("message %s (receive %s): %s; want %s (packed %v)", r.MessageId, r.Attributes["ApproximateReceiveCount"], got, want, p.packed)
		}
	}
}

// TestCutBatchOnTheLastReceiveSentAgain: a batch the pace let start, cut
// by the deadline all the same, staged nothing; on its messages' last
// receive they are sent again, as a Fargate worker's stop sends what it
// cut, not taken to the DLQ. The invocation's first batch, cut, is (it
// never fits, and says so), and so is a batch started before the pace
// measured anything: it may never fit either.
func TestCutBatchOnTheLastReceiveSentAgain(t *testing.T) {
	for _, c := range []struct {
		paced bool
		size  int
	}{{true, 1024}, {true, 0}, {false, 1024}} { // of no bytes, the pace's estimate is 0 all the same
		paced := c.paced
		t.Run(fmt.Sprint("paced ", paced, ", size ", c.size), func(t *testing.T) {
			p := &byKeyPacker{rules: map[string]*config.Rule{}}
			q := &releases{}
			m := worker.NewMetrics(prometheus.NewRegistry(), "test")
			h := NewSource(SourceOptions{Worker: p, Queue: q, Margin: time.Second, MaxReceive: 8, Log: zap.NewNop(), Metrics: m})
			if paced {
				h.pace.observe(1024, 1, 500*time.Millisecond) // a batch fits the 1.5 s before the cut, by the pace (0.75 s)
			}
			var recs []events.SQSMessage
			for i := range 2 {
				body := fmt.Sprintf(`{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"k%d","size":%d,"sequencer":"01"}}}]}`, i, c.size)
				recs = append(recs, events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "8"}})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond) // the cut at 1.5 s, a batch takes 2
			defer cancel()
			resp, err := h.Handle(ctx, events.SQSEvent{Records: recs})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.packed) != 2 {
				t.Fatalf("packed %v; want both batches started", p.packed)
			}
			switch {
			case paced && (len(resp.BatchItemFailures) != 1 || len(q.again) != 1 || resp.BatchItemFailures[0].ItemIdentifier == q.again[0].ID):
				t.Errorf("reported %+v, sent again %+v: want the first batch's message reported (towards the DLQ), the other's sent again", resp.BatchItemFailures, q.again)
			case !paced && (len(resp.BatchItemFailures) != 2 || len(q.again) != 0):
				t.Errorf("reported %+v, sent again %+v: want both reported, no pace having said they fit", resp.BatchItemFailures, q.again)
			}
			if v := testutil.ToFloat64(m.Errors.WithLabelValues("invocation_too_short")); v != 1 {
				t.Errorf("errors{invocation_too_short} = %v, want 1: the first batch's", v)
			}
		})
	}
}

// stagedThenCut stages each batch (its statistics recorded), then fails
// it at the cut: a relay message's send, say, cut after the upload.
type stagedThenCut struct{ byKeyPacker }

func (p *stagedThenCut) Pack(ctx context.Context, r *config.Rule, items []source.Item, _ time.Time) {
	for _, it := range items {
		if it.Staged != nil {
			it.Staged(r.ID, stats.Delta{Objects: 1})
		}
	}
	<-ctx.Done()
	for _, it := range items {
		it.Done(ctx.Err())
	}
}

// TestStagedThenCutNotSentAgain: a message whose archive was staged (its
// statistics recorded) before the cut failed it is no untried message: not
// sent again on its last receive, which would stage it and count its
// statistics twice.
func TestStagedThenCutNotSentAgain(t *testing.T) {
	p := &stagedThenCut{byKeyPacker{rules: map[string]*config.Rule{}}}
	q := &releases{}
	h := NewSource(SourceOptions{Worker: p, Queue: q, Margin: time.Second, MaxReceive: 8, Log: zap.NewNop(), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(1024, 1, 500*time.Millisecond)
	var recs []events.SQSMessage
	for i := range 2 {
		body := fmt.Sprintf(`{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"k%d","size":1024,"sequencer":"01"}}}]}`, i)
		recs = append(recs, events.SQSMessage{MessageId: fmt.Sprint("m", i), Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "8"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.again) != 0 || len(resp.BatchItemFailures) != 2 {
		t.Errorf("reported %+v, sent again %+v: want both reported, none sent again", resp.BatchItemFailures, q.again)
	}
}

// TestUntriedArchiveOnTheLastReceiveSentAgain: the target's archives the
// pace leaves out, on their message's last receive, are sent again as new
// messages and acknowledged; one left out on an earlier receive is
// released, as before.
func TestUntriedArchiveOnTheLastReceiveSentAgain(t *testing.T) {
	d := &delivered{}
	q := &releases{}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Margin: 30 * time.Second, Queue: q, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(1<<20, 1, time.Hour) // none but the first fits
	body := func(key string) string {
		return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put",`+
			`"s3":{"bucket":{"name":"staging"},"object":{"key":%q,"size":%d,"sequencer":"01"}}}]}`, key, 1<<20)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "first", Body: body("r1/a.tar.zst"), Attributes: map[string]string{"ApproximateReceiveCount": "5"}},
		{MessageId: "last", Body: body("r1/b.tar.zst"), Attributes: map[string]string{"ApproximateReceiveCount": "5"}},
		{MessageId: "early", Body: body("r1/c.tar.zst"), Attributes: map[string]string{"ApproximateReceiveCount": "2"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	for _, m := range q.again {
		again = append(again, m.ID)
	}
	if !slices.Equal(d.keys, []string{"r1/a.tar.zst"}) || !slices.Equal(again, []string{"last"}) ||
		len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "early" {
		t.Errorf("delivered %v, sent again %v, reported %+v; want a delivered, last sent again, early reported", d.keys, again, resp.BatchItemFailures)
	}
}

// stagingPacker stages each key as its own rule's batch in 2 s, adding
// to the statistics, and records what it is told was restaged.
type stagingPacker struct {
	byKeyPacker
	restaged []source.Staging
}

func (p *stagingPacker) Restaged(s []source.Staging) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restaged = append(p.restaged, s...)
}

func (p *stagingPacker) Pack(ctx context.Context, r *config.Rule, items []source.Item, _ time.Time) {
	time.Sleep(2 * time.Second)
	p.mu.Lock()
	p.packed = append(p.packed, r.ID)
	p.mu.Unlock()
	for _, it := range items {
		it.Staged(r.ID, stats.Delta{Restaged: 100})
		it.Done(nil)
	}
}

type failingAgain struct{ releases }

func (*failingAgain) SendAgainAll(_ context.Context, _ time.Duration, msgs ...queue.Message) ([]queue.Failure, error) {
	var fs []queue.Failure
	for _, m := range msgs {
		fs = append(fs, queue.Failure{Message: m, Err: errors.New("AccessDenied")})
	}
	return fs, nil
}

// TestPartlyStagedNotSentAgain: a message on its last receive some of
// whose objects were staged (others left out by the pace) is no untried
// one: released towards the DLQ, not sent again (which restaged the staged
// ones each time, for maxReceiveCount² receives); an untried one whose
// sending fails goes its way too, and neither is counted as restaged.
func TestPartlyStagedNotSentAgain(t *testing.T) {
	rec := func(k string) string {
		return fmt.Sprintf(`{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":%q,"size":%d,"sequencer":"01"}}}`, k, 10<<20)
	}
	for _, c := range []struct {
		name string
		keys []string
		q    interface {
			Releaser
			sent() int
		}
	}{
		{"partly staged", []string{"a", "b", "c"}, &releases{}},
		{"untried, sending fails", []string{"b"}, &failingAgain{}},
	} {
		p := &stagingPacker{byKeyPacker: byKeyPacker{rules: map[string]*config.Rule{}}}
		m := worker.NewMetrics(prometheus.NewRegistry(), "test")
		h := NewSource(SourceOptions{Worker: p, Queue: c.q, Margin: time.Second, MaxReceive: 8, Log: zap.NewNop(), Metrics: m})
		h.pace.observe(10<<20, 1, 2*time.Second)
		recs := []events.SQSMessage{}
		if c.name != "partly staged" {
			// One staged first, so that the pace leaves the other out.
			recs = append(recs, events.SQSMessage{MessageId: "first", Body: `{"Records":[` + rec("a") + `]}`, Attributes: map[string]string{"ApproximateReceiveCount": "8"}})
		}
		var body []string
		for _, k := range c.keys {
			body = append(body, rec(k))
		}
		recs = append(recs, events.SQSMessage{MessageId: "m", Body: `{"Records":[` + strings.Join(body, ",") + `]}`, Attributes: map[string]string{"ApproximateReceiveCount": "8"}})
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		resp, err := h.Handle(ctx, events.SQSEvent{Records: recs})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.packed, []string{"a"}) || c.q.sent() != 0 || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m" || len(p.restaged) != 0 {
			t.Errorf("%s: packed %v, sent again %d, reported %v, restaged %v; want a packed, m reported (bound for the DLQ), nothing sent again or restaged",
				c.name, p.packed, c.q.sent(), resp.BatchItemFailures, p.restaged)
		}
		if want, n := map[bool]float64{true: 1}[c.name != "partly staged"], testutil.ToFloat64(m.Errors.WithLabelValues("send_again")); n != want {
			t.Errorf("%s: errors_total{kind=send_again} = %v, want %v", c.name, n, want)
		}
	}
}

// hangThenStaged stages every batch, rule "hang"'s only at the cut (a
// direct region's copy cut and left to a relay), the others' at once.
type hangThenStaged struct{ byKeyPacker }

func (p *hangThenStaged) Pack(ctx context.Context, r *config.Rule, items []source.Item, _ time.Time) {
	if r.ID == "hang" {
		<-ctx.Done()
	}
	for _, it := range items {
		it.Done(nil)
	}
}

// TestPaceNotTaughtByTheCut: a batch staged only when the deadline cut its
// direct copy took the hang's time, not its work's: learnt, it made the
// pace leave later invocations' batches out (150 ms a MiB became 7.6 s).
func TestPaceNotTaughtByTheCut(t *testing.T) {
	p := &hangThenStaged{byKeyPacker{rules: map[string]*config.Rule{}}}
	h := NewSource(SourceOptions{Worker: p, Queue: &releases{}, Margin: time.Second, MaxReceive: 8, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(1<<20, 1, 100*time.Millisecond)
	before := h.pace.estimate(1<<20, 1)
	body := fmt.Sprintf(`{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"hang","size":%d,"sequencer":"01"}}}]}`, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	cancel()
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %v, %v; want the staged batch acknowledged", resp.BatchItemFailures, err)
	}
	if after := h.pace.estimate(1<<20, 1); after != before {
		t.Errorf("the pace for 1 MiB went from %v to %v after a batch the cut ended", before, after)
	}
}

// TestForeignBucketArchiveRefused: an archive's event from a bucket that
// is not the region's staging is reported bound for the DLQ at once, as
// the Fargate worker does (deliver.CheckStaging); it was acknowledged with
// a warning, its objects never arriving.
func TestForeignBucketArchiveRefused(t *testing.T) {
	d := &delivered{}
	q := &releases{}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Margin: 30 * time.Second, Queue: q, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	body := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put",` +
		`"s3":{"bucket":{"name":"renamed-staging"},"object":{"key":"r1/a.tar.zst","size":100,"sequencer":"01"}}}]}`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 1 || len(d.keys) != 0 || !slices.Equal(q.delays, []time.Duration{0}) {
		t.Errorf("Handle = %v, %v, delivered %v, released after %v; want m reported, released at once, nothing delivered", resp.BatchItemFailures, err, d.keys, q.delays)
	}
}

// TestRefusedRecordNotSentAgain: a message one of whose records the
// target refuses (another bucket's archive) and whose other the pace
// leaves out, on its last receive, goes its way to the DLQ: the deadline
// overwrote the refusal, and the message was sent again.
func TestRefusedRecordNotSentAgain(t *testing.T) {
	d := &delivered{}
	q := &releases{}
	h := NewTarget(TargetOptions{Deliverer: d, Staging: "staging", MaxReceive: 5, Margin: 30 * time.Second, Queue: q, Log: zap.NewNop(),
		Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test")})
	h.pace.observe(1<<20, 1, time.Hour) // none but the first fits
	record := func(bucket, key string) string {
		return fmt.Sprintf(`{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put",`+
			`"s3":{"bucket":{"name":%q},"object":{"key":%q,"size":%d,"sequencer":"01"}}}`, bucket, key, 1<<20)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "first", Body: `{"Records":[` + record("staging", "r1/a.tar.zst") + `]}`, Attributes: map[string]string{"ApproximateReceiveCount": "5"}},
		{MessageId: "mixed", Body: `{"Records":[` + record("renamed", "r1/b.tar.zst") + "," + record("staging", "r1/c.tar.zst") + `]}`,
			Attributes: map[string]string{"ApproximateReceiveCount": "5"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.again) != 0 || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "mixed" {
		t.Errorf("sent again %v, reported %+v; want mixed reported (bound for the DLQ), nothing sent again", q.again, resp.BatchItemFailures)
	}
}

// noRules matches no object.
type noRules struct{ slowPacker }

func (noRules) Match(xevents.ObjectRef, time.Time, func(error), *zap.Logger) ([]source.Item, bool) {
	return nil, false
}

// TestUnmatchedCounted: a message none of whose objects a rule covers is
// counted unmatched, as the Fargate worker counts it, and acknowledged.
func TestUnmatchedCounted(t *testing.T) {
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	h := NewSource(SourceOptions{Worker: noRules{}, Queue: &releases{}, Margin: time.Second, MaxReceive: 5, Log: zap.NewNop(), Metrics: m})
	body := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"src"},"object":{"key":"tmp/x","size":1,"sequencer":"01"}}}]}`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v; want the message acknowledged", resp, err)
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("unmatched")); v != 1 {
		t.Errorf("messages{unmatched} = %v, want 1", v)
	}
	// One a rule covers and passes by (a delete it does not propagate) is
	// ignored, not unmatched.
	h = NewSource(SourceOptions{Worker: passedBy{}, Queue: &releases{}, Margin: time.Second, MaxReceive: 5, Log: zap.NewNop(), Metrics: m})
	resp, err = h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v; want the message acknowledged", resp, err)
	}
	if u, i := testutil.ToFloat64(m.Messages.WithLabelValues("unmatched")), testutil.ToFloat64(m.Messages.WithLabelValues("ignored")); u != 1 || i != 1 {
		t.Errorf("messages{unmatched} = %v, {ignored} = %v; want 1 and 1", u, i)
	}
	// One of events xrc passes by alone (a lifecycle expiration) names no
	// object xrc acts on: ignored, not unmatched, whatever the rules.
	h = NewSource(SourceOptions{Worker: noRules{}, Queue: &releases{}, Margin: time.Second, MaxReceive: 5, Log: zap.NewNop(), Metrics: m})
	expired := `{"Records":[{"eventTime":"2026-12-06T00:00:00.000Z","eventName":"LifecycleExpiration:Delete","s3":{"bucket":{"name":"src"},"object":{"key":"tmp/x","sequencer":"01"}}}]}`
	resp, err = h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: expired, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v; want the message acknowledged", resp, err)
	}
	if u, i := testutil.ToFloat64(m.Messages.WithLabelValues("unmatched")), testutil.ToFloat64(m.Messages.WithLabelValues("ignored")); u != 1 || i != 2 {
		t.Errorf("messages{unmatched} = %v, {ignored} = %v; want 1 and 2", u, i)
	}
}

type passedBy struct{ slowPacker }

func (passedBy) Match(xevents.ObjectRef, time.Time, func(error), *zap.Logger) ([]source.Item, bool) {
	return nil, true
}

// TestFixedAtDeploy: a document reloaded in place (a parameter edited by
// hand) may change what the worker only reads, not what the deployment
// fixed: the stack, the function's memory and timeout, and the compressor
// memory its GOMEMLIMIT left room for (a rule's levels raised to 19 would
// run a function sized for 9 out of memory). A change to another role's
// or rule's levels, or levels lowered, goes through.
func TestFixedAtDeploy(t *testing.T) {
	load := func(edit func(*config.Config)) *config.Config {
		t.Helper()
		c, err := config.Load(context.Background(), "../../configs/local.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	started := load(func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 9 })
	for _, tc := range []struct {
		name string
		role string
		edit func(*config.Config)
		want string // "" for taken
	}{
		{"the same", RoleSource, nil, ""},
		{"logLevel", RoleSource, func(c *config.Config) { c.Settings.LogLevel = "debug" }, ""},
		{"levels lowered", RoleSource, func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 5 }, ""},
		{"stack", RoleTarget, func(c *config.Config) { c.Settings.StackName += "-other" }, "settings.stackName"},
		{"memory", RoleTarget, func(c *config.Config) { c.Settings.Lambda.MemoryMB *= 2 }, "settings.lambda.memoryMB"},
		{"timeout", RoleTarget, func(c *config.Config) { c.Settings.Lambda.Timeout *= 2 }, "settings.lambda.timeout"},
		{"levels raised", RoleSource, func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 19 }, "180 MiB of compressors, more than the 32 MiB"},
		{"levels raised, a target", RoleTarget, func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 19 }, ""},
		// The deployment's GOMEMLIMIT known: 352 MiB in 512 MB, as the
		// CDK app sets it for level 9's compressors.
		{"levels raised, GOMEMLIMIT known", RoleSource + "-512", func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 19 }, "GOMEMLIMIT's 352 MiB in 512 MB"},
		// In 1,769 MB GOMEMLIMIT is 85% of it, which leaves room for
		// level 12's.
		{"levels raised within it", RoleSource + "-1769", func(c *config.Config) { c.Settings.Adaptive.MaxLevel = 12 }, ""},
	} {
		f := &Function{env: Env{Role: tc.role, Flags: app.Flags{Region: "us-east-1"}}, started: started}
		for _, mem := range []int{512, 1769} {
			if tc.role == RoleSource+"-"+strconv.Itoa(mem) {
				f.env.Role, f.env.MemoryMB, f.env.GoMemLimitMiB = RoleSource, mem, config.GoMemLimitMiB(mem, 32)
			}
		}
		if tc.role == RoleTarget {
			f.env.Flags.Region = "eu-west-1"
		}
		err := f.fixedAtDeploy(load(func(c *config.Config) {
			c.Settings.Adaptive.MaxLevel = 9
			if tc.edit != nil {
				tc.edit(c)
			}
		}))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want it refused naming %q", tc.name, err, tc.want)
		}
	}
}

// TestColdStartChecksCompressorRoom: an environment that starts on a
// document edited by hand since the deployment, whose levels need more
// compressor memory than the function's GOMEMLIMIT leaves, does not
// start, and says why: it ran out of memory at every cold start, and the
// reload check of warm environments never saw it.
func TestColdStartChecksCompressorRoom(t *testing.T) {
	c, err := config.Load(context.Background(), "../../configs/local.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Settings.Adaptive.MaxLevel = 19
	doc, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	env := Env{Role: RoleSource, Flags: app.Flags{Config: path, Region: "us-east-1"}, MemoryMB: 512, GoMemLimitMiB: config.GoMemLimitMiB(512, 32)}
	if _, err := New(context.Background(), env, aws.Config{}, io.Discard); err == nil || !strings.Contains(err.Error(), "GOMEMLIMIT") {
		t.Fatalf("a cold start on levels its GOMEMLIMIT leaves no room for: %v; want it refused, saying so", err)
	}
}

// TestParseEnvMemory: the function's memory and the GOMEMLIMIT the CDK
// app sets are read; any other form of GOMEMLIMIT is not known.
func TestParseEnvMemory(t *testing.T) {
	for _, c := range []struct {
		limit       string
		mem, wantGo int
	}{{"352MiB", 512, 352}, {"", 512, 0}, {"1GiB", 1769, 0}} {
		e, err := ParseEnv(func(k string) string {
			return map[string]string{"XRC_ROLE": "source", "XRC_CONFIG": "c.json", "AWS_REGION": "us-east-1",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(c.mem), "GOMEMLIMIT": c.limit}[k]
		})
		if err != nil || e.MemoryMB != c.mem || e.GoMemLimitMiB != c.wantGo {
			t.Errorf("GOMEMLIMIT %q: %d MB, %d MiB (%v); want %d and %d", c.limit, e.MemoryMB, e.GoMemLimitMiB, err, c.mem, c.wantGo)
		}
	}
}

// TestReleaseBacksOff: a message that failed in a way a retry may mend is
// released after the runtime's backoff for its receive (at least its own
// wait), as on Fargate, not at once (which spent its receives in seconds);
// one marked now is released at once.
func TestReleaseBacksOff(t *testing.T) {
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name string
		o    outcome
		want time.Duration
	}{
		{"first receive", outcome{msg: queue.Message{ID: "a", ReceiveCount: 1}, err: errors.New("throttled")}, worker.Backoff(1)},
		{"fourth receive", outcome{msg: queue.Message{ID: "b", ReceiveCount: 4}, err: errors.New("throttled")}, worker.Backoff(4)},
		{"a longer wait of its own", outcome{msg: queue.Message{ID: "c", ReceiveCount: 1}, err: errors.New("relay"), wait: time.Hour}, time.Hour},
		{"now", outcome{msg: queue.Message{ID: "d", ReceiveCount: 1}, err: errors.New("invalid"), now: true}, 0},
	} {
		r := &releases{}
		respond(ctx, []outcome{c.o}, r, m, zap.NewNop())
		if len(r.delays) != 1 || r.delays[0] != c.want {
			t.Errorf("%s: released after %v, want %v", c.name, r.delays, c.want)
		}
	}
	if worker.Backoff(1) <= 0 || worker.Backoff(4) <= worker.Backoff(1) {
		t.Errorf("backoff %v then %v: want it to grow", worker.Backoff(1), worker.Backoff(4))
	}
}
