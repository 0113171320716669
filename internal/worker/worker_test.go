package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/worker"
)

// These tests run the runtime against the local stack's SQS. Time that
// decides behaviour (heartbeats, the health check, the drain) runs on a
// fake clock the test advances, so no test waits for it.

const s3Event = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1,"sequencer":"01"}}}]}`

// role hands every message to handle.
type role struct {
	handle func(stop context.Context, m *worker.Message)
}

func (role) Start(context.Context)                            {}
func (role) Drain(context.Context)                            {}
func (r role) Handle(stop context.Context, m *worker.Message) { r.handle(stop, m) }

type fixture struct {
	client *sqs.Client
	url    string
	clock  *clockwork.FakeClock
	health *health.Check
	core   zapcore.Core
	logs   *observer.ObservedLogs
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := localstack.UniqueName("worker")
	url, _, err := env.EnsureQueue(ctx, name, 5, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteQueue(context.Background(), name) })
	fc := clockwork.NewFakeClock()
	core, logs := observer.New(zap.InfoLevel)
	return &fixture{client: client, url: url, clock: fc, health: health.New(3*time.Minute, fc.Now), core: core, logs: logs}
}

func (f *fixture) send(t *testing.T, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := f.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &f.url, MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// sendDeferred sends body as a message already sent again deferred times
// (queue.DeferredAttribute).
func (f *fixture) sendDeferred(t *testing.T, body string, deferred int) {
	t.Helper()
	if failed, err := queue.New(f.client, f.url).SendAgainAll(context.Background(), 0, queue.Message{Body: body, Deferred: deferred - 1}); err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
}

// deferrals returns the queue.DeferredAttribute of each message visible
// within 20 s (a message sent again waits out the polls in flight).
func (f *fixture) deferrals(t *testing.T) []string {
	t.Helper()
	var out *sqs.ReceiveMessageOutput
	for deadline := time.Now().Add(20 * time.Second); out == nil || len(out.Messages) == 0 && time.Now().Before(deadline); {
		var err error
		out, err = f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{queue.DeferredAttribute}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var ds []string
	for _, m := range out.Messages {
		ds = append(ds, aws.ToString(m.MessageAttributes[queue.DeferredAttribute].StringValue))
		_, _ = f.client.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &f.url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	}
	return ds
}

// polls wraps the fixture's client so that a test can wait until a long
// poll is in flight (a sleep was not always long enough on a loaded box).
type polls struct {
	queue.API
	started chan struct{}
}

func (f *fixture) polls() polls { return polls{f.client, make(chan struct{}, 64)} }

func (p polls) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	select {
	case p.started <- struct{}{}:
	default:
	}
	return p.API.ReceiveMessage(ctx, in, optFns...)
}

// inFlight waits for n polls to start, then for their requests to reach
// the queue.
func (p polls) inFlight(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-p.started:
		case <-time.After(30 * time.Second):
			t.Fatal("no poll started within 30 s")
		}
	}
	time.Sleep(200 * time.Millisecond)
}

// runtime returns a runtime on api (the real client, or a wrapper of it).
func (f *fixture) runtime(api queue.API, maxHeld int) (*worker.Runtime, *worker.Metrics) {
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	return worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: maxHeld, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock}), m
}

// start runs rt until the returned stop is called.
func start(t *testing.T, rt *worker.Runtime, r worker.Role) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = rt.Run(ctx, r); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// within polls cond (real time: it waits on the servers, not on the clock).
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// visible receives (and immediately releases) what the queue holds.
func (f *fixture) visible(t *testing.T) []string {
	t.Helper()
	out, err := f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
		_, _ = f.client.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &f.url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	}
	return bodies
}

// TestLeftMessagesVisibleDuringTheDrain: a message the role leaves at the
// stop (its work never started) is visible to other tasks at once, while
// another message's work goes on through the drain; it was held hidden to
// the drain's end.
func TestLeftMessagesVisibleDuringTheDrain(t *testing.T) {
	f := setup(t)
	rt, _ := f.runtime(f.client, 2)
	rt.Drain = 90 * time.Second
	long := s3Event
	left := strings.Replace(s3Event, `"key":"k"`, `"key":"k2"`, 1)
	f.send(t, long, left)
	got := make(chan string, 2)
	stop := start(t, rt, role{func(stop context.Context, m *worker.Message) {
		got <- m.Body
		if m.Body == long {
			<-m.Context().Done()
			m.Release(0)
			return
		}
		<-stop.Done()
		m.Leave()
	}})
	<-got
	<-got
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(2 * time.Second) // the poll in flight (1 s wait) ends; left is left
	if vis := f.visible(t); !slices.Contains(vis, left) || slices.Contains(vis, long) {
		t.Errorf("visible 2 s into the drain: %q; want the message left, not the one still worked on", vis)
	}
	f.clock.Advance(91 * time.Second)
	<-done
}

// TestInvalidAndTestEvents: an invalid body is released (never deleted, so
// it reaches the DLQ), S3's test event is acknowledged, and neither reaches
// the role.
func TestInvalidAndTestEvents(t *testing.T) {
	f := setup(t)
	rt, m := f.runtime(f.client, 1)
	var handled atomic.Int32
	start(t, rt, role{func(context.Context, *worker.Message) { handled.Add(1) }})
	f.send(t, `{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`)
	within(t, 10*time.Second, "test event acknowledged", func() bool { return testutil.ToFloat64(m.Messages.WithLabelValues("acked")) == 1 })
	f.send(t, "not json")
	within(t, 10*time.Second, "invalid body released", func() bool { return testutil.ToFloat64(m.Messages.WithLabelValues("invalid")) >= 1 })
	if handled.Load() != 0 {
		t.Errorf("role handled %d messages, want 0", handled.Load())
	}
	if n := len(f.logs.FilterMessage("invalid message: releasing it towards the dead-letter queue").All()); n == 0 {
		t.Error("invalid message not logged")
	}
}

// failingDeletes makes DeleteMessageBatch fail (as a whole call) while
// failing is set, and passes everything else to the real queue.
type failingDeletes struct {
	queue.API
	failing atomic.Bool
	calls   atomic.Int32
	mu      sync.Mutex
	tries   map[string]int // attempts per receipt handle
}

func (f *failingDeletes) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.calls.Add(1)
	f.mu.Lock()
	for _, e := range in.Entries {
		f.tries[aws.ToString(e.ReceiptHandle)]++
	}
	f.mu.Unlock()
	if f.failing.Load() {
		return nil, errors.New("connection reset by peer")
	}
	return f.API.DeleteMessageBatch(ctx, in, o...)
}

// TestAckFailureDoesNotHoldForever: an acknowledgement SQS keeps refusing
// is retried, then the message leaves the held set anyway (it comes back
// after its visibility timeout), counted and logged; a worker that holds
// MaxHeld messages therefore keeps receiving.
func TestAckFailureDoesNotHoldForever(t *testing.T) {
	f := setup(t)
	api := &failingDeletes{API: f.client, tries: map[string]int{}}
	api.failing.Store(true)
	rt, m := f.runtime(api, 1)
	var handled atomic.Int32
	first := make(chan string, 1)
	start(t, rt, role{func(_ context.Context, msg *worker.Message) {
		if handled.Add(1) == 1 {
			first <- msg.ReceiptHandle
		}
		go msg.Ack() // its retries sleep on the fake clock
	}})
	f.send(t, s3Event, s3Event)
	within(t, 10*time.Second, "first message handled", func() bool { return handled.Load() == 1 })
	for api.calls.Load() < 3 {
		f.clock.Advance(time.Second) // the retry backoff
		time.Sleep(10 * time.Millisecond)
	}
	within(t, 10*time.Second, "failed ack counted", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("delete_message")) == 1 })
	// Counted per receipt: the second message, let in by then, may be
	// acknowledging already.
	handle := <-first
	api.mu.Lock()
	if got := api.tries[handle]; got != 3 {
		t.Errorf("the first message's DeleteMessageBatch tried %d times, want 3 attempts", got)
	}
	api.mu.Unlock()
	// MaxHeld is 1: only a message that left the held set lets the second in.
	within(t, 30*time.Second, "second message received", func() bool { return handled.Load() == 2 })
	lines := f.logs.FilterMessage("acknowledging message failed: it will be delivered again after its visibility timeout").All()
	if n := len(lines); n != 1 {
		t.Errorf("%d log lines about the failed ack, want 1", n)
	}
	// Naming the object: the message id alone is in no other line.
	for _, l := range lines {
		if c := l.ContextMap(); c["bucket"] != "b" || c["key"] != "k" {
			t.Errorf("the failed ack's line names %v/%v, want b/k", c["bucket"], c["key"])
		}
	}
	api.failing.Store(false)
}

// TestAckFailureOnTheLastReceiveSaysDLQ: an acknowledgement that fails on
// the message's last receive says, at error, that the message is bound for
// the DLQ (its next receive takes it there), as every path there does; it
// said at warn that it would be delivered again.
func TestAckFailureOnTheLastReceiveSaysDLQ(t *testing.T) {
	f := setup(t)
	api := &failingDeletes{API: f.client, tries: map[string]int{}}
	api.failing.Store(true)
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, MaxReceiveCount: 1, Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	start(t, rt, role{func(_ context.Context, msg *worker.Message) { go msg.Ack() }})
	f.send(t, s3Event)
	for api.calls.Load() < 3 {
		f.clock.Advance(time.Second) // the retry backoff
		time.Sleep(10 * time.Millisecond)
	}
	within(t, 10*time.Second, "failed ack counted", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("delete_message")) == 1 })
	lines := f.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("bound for the DLQ").All()
	if len(lines) != 1 || lines[0].ContextMap()["key"] != "k" {
		t.Errorf("error lines saying the message is bound for the DLQ: %v; want one naming its object", lines)
	}
	api.failing.Store(false)
}

// held starts rt on a role that holds what it gets, sends one event and
// returns its message.
func (f *fixture) held(t *testing.T, rt *worker.Runtime) *worker.Message {
	t.Helper()
	msg, _ := f.heldUntil(t, rt)
	return msg
}

// heldUntil is held, with the stop of the runtime it starts.
func (f *fixture) heldUntil(t *testing.T, rt *worker.Runtime) (*worker.Message, func()) {
	t.Helper()
	got := make(chan *worker.Message, 1)
	stop := start(t, rt, role{func(_ context.Context, msg *worker.Message) { got <- msg }})
	f.send(t, s3Event)
	select {
	case msg := <-got:
		return msg, stop
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return nil, stop
	}
}

// TestReceiptLostStopsWork: when the heartbeat finds a message's receipt
// gone (another consumer deleted it here), the message's work is
// cancelled with ErrReceiptLost and the message leaves the held set.
func TestReceiptLostStopsWork(t *testing.T) {
	f := setup(t)
	api := &failingDeletes{API: f.client, tries: map[string]int{}}
	rt, m := f.runtime(api, 1)
	msg, stop := f.heldUntil(t, rt)
	// Someone else settles it: its receipt is no longer valid.
	if _, err := f.client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &f.url, ReceiptHandle: &msg.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Second) // a third of the visibility: the heartbeat
	select {
	case <-msg.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("work of a message whose receipt is gone was not cancelled")
	}
	if !errors.Is(context.Cause(msg.Context()), worker.ErrReceiptLost) {
		t.Errorf("cause %v, want ErrReceiptLost", context.Cause(msg.Context()))
	}
	within(t, 5*time.Second, "lost message dropped", func() bool { return rt.Held() == 0 })
	if v := testutil.ToFloat64(m.Errors.WithLabelValues("receipt_lost")); v != 1 {
		t.Errorf("receipt_lost counted %v times", v)
	}
	msg.Ack() // a no-op now: nothing to settle
	stop()    // Run waits for pending deletes
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("acked")); v != 0 {
		t.Errorf("a lost message was acknowledged")
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if n := api.tries[msg.ReceiptHandle]; n != 0 {
		t.Errorf("a lost message's stale receipt sent to DeleteMessageBatch %d times: another delivery holds it now", n)
	}
}

// TestReceiptLostOnTheLastReceive: a message whose receipt is lost on its
// last receive goes to the DLQ whatever its work does now (which can no
// longer settle it): said at error, the line an operator redrives from,
// not as a message "delivered again".
func TestReceiptLostOnTheLastReceive(t *testing.T) {
	f := setup(t)
	rt := worker.New(worker.Options{Queue: queue.New(f.client, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, MaxReceiveCount: 1,
		Log: zap.New(f.core), Metrics: worker.NewMetrics(prometheus.NewRegistry(), "test"), Health: f.health, Clock: f.clock})
	msg := f.held(t, rt)
	if _, err := f.client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &f.url, ReceiptHandle: &msg.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Second) // the heartbeat
	select {
	case <-msg.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("work of a message whose receipt is gone was not cancelled")
	}
	within(t, 5*time.Second, "the loss said at error", func() bool {
		return f.logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("bound for the DLQ").Len() == 1
	})
	if n := f.logs.FilterMessageSnippet("it will be delivered again").Len(); n != 0 {
		t.Errorf("a message on its last receive said to be delivered again")
	}
}

// TestHealthReportsStuckWorker: a worker holding all it may, whose work
// makes no progress, turns unhealthy once the health check's limit passes;
// progress keeps it healthy however long the work takes.
func TestHealthReportsStuckWorker(t *testing.T) {
	f := setup(t)
	rt, _ := f.runtime(f.client, 1)
	got := make(chan *worker.Message, 1)
	start(t, rt, role{func(_ context.Context, msg *worker.Message) { got <- msg }}) // never settles
	f.send(t, s3Event)
	var msg *worker.Message
	select {
	case msg = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	// Waiting for room: the heartbeat's ticker and the room check's.
	if err := f.clock.BlockUntilContext(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	// Long work that moves: healthy all along.
	for range 30 {
		rt.Progress()
		f.clock.Advance(10 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	within(t, 5*time.Second, "healthy while work progresses", func() bool { return f.health.Err() == nil })
	// Work that stopped moving: unhealthy after the limit.
	for range 30 { // 300 s: past the limit whenever its last beat landed
		f.clock.Advance(10 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.health.Err(); err == nil {
		t.Fatal("health still ok after 300s without progress or a poll")
	}
	msg.Release(0)
	within(t, 10*time.Second, "healthy again once it polls", func() bool { return f.health.Err() == nil })
}

// TestDrainReleasesUnfinished: on stop, work gets the drain time; what is
// still held after it is released at once, not left hidden until its
// visibility timeout.
func TestDrainReleasesUnfinished(t *testing.T) {
	f := setup(t)
	rt, m := f.runtime(f.client, 1)
	msg, stop := f.heldUntil(t, rt)
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	// The drain timer, then its end.
	if err := f.clock.BlockUntilContext(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if msg.Context().Err() != nil {
		t.Fatal("work cancelled at the stop signal, before its drain time")
	}
	f.clock.Advance(10 * time.Second)
	<-done
	if msg.Context().Err() == nil {
		t.Error("work not cancelled after the drain time")
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("released")); v != 1 {
		t.Errorf("released %v messages, want 1", v)
	}
	if bodies := f.visible(t); len(bodies) != 1 {
		t.Errorf("queue shows %d messages after the drain, want the released one", len(bodies))
	}
}

// TestShutdownReleasesInBatches: what is held at the end of the drain is
// released ten to a call, not one call each (thousands of held messages
// would outlast the stop timeout), and is visible again at once.
func TestShutdownReleasesInBatches(t *testing.T) {
	f := setup(t)
	const n = 35
	api := &countingReleases{API: f.client}
	stop, m := f.holding(t, api, n, func(*worker.Message) {})
	stop()
	f.releasedTogether(t, api, m, n)
}

// holding sends n messages and runs a runtime on api that holds them all,
// each handed to handle; it returns once every one is held.
func (f *fixture) holding(t *testing.T, api queue.API, n int, handle func(*worker.Message)) (stop func(), m *worker.Metrics) {
	t.Helper()
	for range n {
		f.send(t, s3Event)
	}
	rt, m := f.runtime(api, n)
	var held atomic.Int32
	stop = start(t, rt, role{func(_ context.Context, msg *worker.Message) {
		held.Add(1)
		handle(msg)
	}})
	within(t, 30*time.Second, "every message held", func() bool { return held.Load() == int32(n) })
	return stop, m
}

// holdingAll is holding, returning the n messages held.
func (f *fixture) holdingAll(t *testing.T, api queue.API, n int) (msgs []*worker.Message, stop func(), m *worker.Metrics) {
	t.Helper()
	var mu sync.Mutex
	stop, m = f.holding(t, api, n, func(msg *worker.Message) {
		mu.Lock()
		msgs = append(msgs, msg)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(msgs), stop, m
}

// releasedTogether checks that n messages were released ten to a call,
// counted, and are visible again at once.
func (f *fixture) releasedTogether(t *testing.T, api *countingReleases, m *worker.Metrics, n int) {
	t.Helper()
	if got := api.calls.Load(); got > int32(n+9)/10 {
		t.Errorf("%d messages released in %d calls, want %d", n, got, (n+9)/10)
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("released")); v != float64(n) {
		t.Errorf("released %v messages, want %d", v, n)
	}
	seen := 0 // received and left hidden, so each is counted once
	within(t, 10*time.Second, "every released message visible", func() bool {
		out, err := f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		seen += len(out.Messages)
		return seen == n
	})
}

// TestReleasesCutByTheDrainGoTogether: messages whose work the end of the
// drain cut, released by their handlers with a retry delay, are visible
// again at once and released ten to a call with the rest, not one call
// each with its delay (thousands of them would outlast the stop timeout).
func TestReleasesCutByTheDrainGoTogether(t *testing.T) {
	f := setup(t)
	const n = 25
	api := &countingReleases{API: f.client}
	stop, m := f.holding(t, api, n, func(msg *worker.Message) {
		<-msg.Context().Done()
		msg.Release(time.Minute) // as after a failure: backoff
	})
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	f.tick(t, done, "Run returning after the drain")
	f.releasedTogether(t, api, m, n)
}

// TestCutOnLastReceiveSaidOnce: a message whose role released it after the
// drain cut its work, on its last receive, is bound for the DLQ in the
// role's line alone (the runtime's release at the stop said it again,
// with another cause).
func TestCutOnLastReceiveSaidOnce(t *testing.T) {
	f := setup(t)
	rt, _ := f.runtime(f.client, 1)
	rt.MaxReceiveCount = 1
	held := make(chan struct{})
	stop := start(t, rt, role{func(_ context.Context, msg *worker.Message) {
		close(held)
		<-msg.Context().Done()
		msg.Log().Error("message not acknowledged: bound for the DLQ", zap.String("by", "role"))
		msg.Release(time.Minute)
	}})
	f.send(t, s3Event)
	within(t, 30*time.Second, "the message held", func() bool {
		select {
		case <-held:
			return true
		default:
			return false
		}
	})
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	f.tick(t, done, "Run returning after the drain")
	if n := f.logs.FilterMessage("message not acknowledged: bound for the DLQ").Len(); n != 1 {
		t.Errorf("%d lines say the message is bound for the DLQ, want the role's one", n)
	}
}

// tick advances the fake clock a second every 20 ms until done is closed,
// failing the test after a hundred fake seconds.
func (f *fixture) tick(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	for range 100 {
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
			f.clock.Advance(time.Second)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not within 100 fake seconds", what)
	}
}

// hungBeats never answers a heartbeat's visibility change: it returns only
// when its context ends (the SDK sets no response timeout).
type hungBeats struct {
	slowBeats
}

func (h *hungBeats) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 {
		select {
		case h.beating <- struct{}{}:
		default: // a later beat
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestHungHeartbeatEndsByTheNextBeat: a heartbeat whose call hangs gives
// up by the next beat, so releases, which wait for it, go through, and
// the failure is counted.
func TestHungHeartbeatEndsByTheNextBeat(t *testing.T) {
	f := setup(t)
	// Buffered: the first beat may come before the test waits for it.
	api := &hungBeats{slowBeats{API: f.client, beating: make(chan struct{}, 1)}}
	rt, m := f.runtime(api, 1)
	msg := f.held(t, rt)
	f.clock.Advance(10 * time.Second) // a third of the visibility: the heartbeat
	<-api.beating
	released := make(chan struct{})
	go func() { msg.Release(0); <-msg.Context().Done(); close(released) }() // ended once released
	f.tick(t, released, "a release behind a hung heartbeat")
	// The beat after it may come first, and hang as long.
	if v := testutil.ToFloat64(m.Errors.WithLabelValues("heartbeat")); v < 1 || v > 2 {
		t.Errorf("%v heartbeat errors counted, want 1 or 2", v)
	}
	within(t, 10*time.Second, "released message visible", func() bool { return len(f.visible(t)) == 1 })
}

// TestLargeReleaseGetsTimeForEveryRound: a release of more messages than
// one round of calls takes gets its time for each round, not one
// settleTimeout for all (what is cut there stays hidden for minutes).
func TestLargeReleaseGetsTimeForEveryRound(t *testing.T) {
	f := setup(t)
	const n = 90 // nine calls: two rounds of eight at once
	api := &slowReleases{countingReleases{API: f.client}}
	stop, m := f.holding(t, api, n, func(*worker.Message) {})
	stop()
	if v := testutil.ToFloat64(m.Errors.WithLabelValues("release_message")); v != 0 {
		t.Errorf("%v releases failed", v)
	}
	f.releasedTogether(t, &api.countingReleases, m, n)
}

// slowReleases takes 3 s over each release (the first round ends after
// 3 s, the second after 6: past one settleTimeout).
type slowReleases struct{ countingReleases }

func (s *slowReleases) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout == 0 {
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.countingReleases.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// countingReleases counts the visibility changes to to seconds: releases
// (0, the default), or heartbeats (the visibility timeout).
type countingReleases struct {
	queue.API
	to             int32
	calls, entries atomic.Int32
}

func (c *countingReleases) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout == c.to {
		c.calls.Add(1)
		c.entries.Add(int32(len(in.Entries)))
	}
	return c.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

func TestBackoff(t *testing.T) {
	for count, want := range map[int]time.Duration{0: 2 * time.Second, 1: 2 * time.Second, 2: 4 * time.Second, 8: 256 * time.Second, 9: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := worker.Backoff(count); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", count, got, want)
		}
	}
}

// slowBeats holds every visibility change to the full timeout (a
// heartbeat's) until let go, and tells when one starts. It receives one
// message only, so that only the test sees it again.
type slowBeats struct {
	queue.API
	beating, letGo chan struct{}
	received       atomic.Bool
}

func (s *slowBeats) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if s.received.Load() {
		// An empty long poll, as SQS answers it.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(in.WaitTimeSeconds) * time.Second):
			return &sqs.ReceiveMessageOutput{}, nil
		}
	}
	out, err := s.API.ReceiveMessage(ctx, in, optFns...)
	if err == nil && len(out.Messages) > 0 {
		s.received.Store(true)
	}
	return out, err
}

func (s *slowBeats) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 {
		s.beating <- struct{}{}
		<-s.letGo
	}
	return s.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestReleaseDuringHeartbeat: a message released while a heartbeat that
// took it in its snapshot is extending its visibility is visible again at
// once: the heartbeat's extension lands before the release, not after it.
func TestReleaseDuringHeartbeat(t *testing.T) {
	f := setup(t)
	api := &slowBeats{API: f.client, beating: make(chan struct{}), letGo: make(chan struct{})}
	rt, _ := f.runtime(api, 1)
	msg := f.held(t, rt)
	f.clock.Advance(10 * time.Second) // a third of the visibility: the heartbeat
	<-api.beating
	released := make(chan struct{})
	go func() { msg.Release(0); <-msg.Context().Done(); close(released) }() // ended once released
	time.Sleep(200 * time.Millisecond)                                      // a release not waiting for the beat is done by now
	close(api.letGo)
	<-released
	within(t, 10*time.Second, "released message visible", func() bool { return len(f.visible(t)) == 1 })
}

// denied fails every receive, as SQS does once the task's role lost
// sqs:ReceiveMessage or the queue's KMS key was disabled.
type denied struct{ queue.API }

func (denied) ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return nil, errors.New("AccessDenied: not authorized to perform sqs:ReceiveMessage")
}

// TestFailingReceivesTurnUnhealthy: a loop whose every receive fails stops
// beating, so ECS replaces the task rather than leaving it logging errors.
func TestFailingReceivesTurnUnhealthy(t *testing.T) {
	f := setup(t)
	rt, m := f.runtime(denied{f.client}, 1)
	start(t, rt, role{func(context.Context, *worker.Message) {}})
	for range 4 * 60 {
		f.clock.Advance(time.Second) // through the loop's waits after each failure
		time.Sleep(2 * time.Millisecond)
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("receive")); n < 10 {
		t.Fatalf("%v failed receives in four minutes", n)
	}
	if err := f.health.Err(); err == nil {
		t.Error("healthy after four minutes of failing receives")
	}
}

// deniedAfterFirst lets the first receive through, then fails every one.
type deniedAfterFirst struct {
	queue.API
	calls atomic.Int32
}

func (d *deniedAfterFirst) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if d.calls.Add(1) == 1 {
		return d.API.ReceiveMessage(ctx, in, o...)
	}
	return nil, errors.New("AccessDenied: not authorized to perform sqs:ReceiveMessage")
}

// TestWorkMovingWhileReceivesFailStaysHealthy: a task streaming a held
// archive stays healthy while its receives fail, and turns unhealthy once
// that work stops moving.
func TestWorkMovingWhileReceivesFailStaysHealthy(t *testing.T) {
	f := setup(t)
	f.send(t, s3Event)
	api := &deniedAfterFirst{API: f.client}
	rt, _ := f.runtime(api, 2)
	var moving atomic.Bool
	moving.Store(true)
	held := make(chan struct{})
	start(t, rt, role{func(stop context.Context, m *worker.Message) {
		close(held)
		for moving.Load() && stop.Err() == nil {
			rt.Progress()
			time.Sleep(time.Millisecond)
		}
	}})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no message held")
	}
	advance := func(d time.Duration) {
		for range int(d / time.Second) {
			f.clock.Advance(time.Second)
			time.Sleep(2 * time.Millisecond)
		}
	}
	advance(4 * time.Minute)
	if err := f.health.Err(); err != nil {
		t.Errorf("work moving while receives fail: %v", err)
	}
	moving.Store(false)
	advance(4 * time.Minute)
	if err := f.health.Err(); err == nil {
		t.Error("healthy four minutes after the work stopped moving, receives failing")
	}
}

// TestStopWaitsForItsPoll: a long poll in flight at the stop is not cut
// short, as SQS would still hand it messages that nobody then reads,
// hidden for a visibility timeout, not even by a drain shorter than its
// wait: what it brings after the stop is not handled but released at
// once, for another task to take.
// A message on its last receive, so untried, is sent again as a new
// message (its deferrals counted); one sent again maxReceiveCount times
// already is released, bound for the DLQ: said at error, as on every path
// there.
func TestStopWaitsForItsPoll(t *testing.T) {
	for _, drain := range []time.Duration{10 * time.Second, 0} {
		t.Run(fmt.Sprint("drain ", drain), func(t *testing.T) { stopWaitsForItsPoll(t, drain, 5, 0) })
	}
	t.Run("last receive", func(t *testing.T) { stopWaitsForItsPoll(t, 10*time.Second, 1, 0) })
	t.Run("last receive, sent again as often", func(t *testing.T) { stopWaitsForItsPoll(t, 10*time.Second, 1, 1) })
}

func stopWaitsForItsPoll(t *testing.T, drain time.Duration, maxReceives, deferred int) {
	f := setup(t)
	p := f.polls()
	rt, m := f.runtime(p, 1)
	rt.ReceiveWait, rt.Drain, rt.MaxReceiveCount = 5*time.Second, drain, maxReceives
	handled := make(chan string, 1)
	stop := start(t, rt, role{func(_ context.Context, msg *worker.Message) { handled <- msg.Body; msg.Ack() }})
	p.inFlight(t, 1)
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(200 * time.Millisecond)
	if deferred > 0 {
		f.sendDeferred(t, s3Event, deferred) // an event: a body that parses
	} else {
		f.send(t, s3Event)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	select {
	case b := <-handled:
		t.Fatalf("handled %q after the stop", b)
	default:
	}
	// Time for a poll the stop cut short, which SQS goes on answering, to
	// take the message.
	time.Sleep(500 * time.Millisecond)
	again := maxReceives == 1 && deferred < maxReceives
	if got := f.visible(t); !again && !slices.Contains(got, s3Event) {
		t.Fatalf("visible = %v: the message the stopped poll took stays hidden", got)
	}
	if v, want := testutil.ToFloat64(m.Messages.WithLabelValues("released")), map[bool]float64{false: 1}[again]; v != want {
		t.Errorf("released %v messages, want %v", v, want)
	}
	if v, want := testutil.ToFloat64(m.Messages.WithLabelValues("requeued")), map[bool]float64{true: 1}[again]; v != want {
		t.Errorf("sent again %v messages, want %v", v, want)
	}
	if ds, want := f.deferrals(t), map[bool]string{true: "1"}[again]+map[bool]string{true: fmt.Sprint(deferred)}[deferred > 0 && !again]; len(ds) != 1 || ds[0] != want {
		t.Errorf("the queue holds messages deferred %q times, want one, %q", ds, want)
	}
	bound := f.logs.FilterLevelExact(zap.ErrorLevel).FilterMessage("message not acknowledged: bound for the DLQ").Len()
	if want := map[bool]int{true: 1, false: 0}[maxReceives == 1 && !again]; bound != want {
		t.Errorf("%d error lines for a message on receive 1 of %d, deferred %d times, want %d", bound, maxReceives, deferred, want)
	}
}

// TestLateMessagesReleasedAfterEveryPoll: what one receiver's poll
// brings after the stop is released once the task's other polls have
// ended, not while one still waits: that one would take it again, a
// receive of the message's maxReceiveCount spent for nothing.
func TestLateMessagesReleasedAfterEveryPoll(t *testing.T) {
	f := setup(t)
	p := f.polls()
	rt, m := f.runtime(p, 2)
	rt.Receivers, rt.ReceiveWait = 2, 5*time.Second
	stop := start(t, rt, role{func(_ context.Context, msg *worker.Message) { t.Errorf("handled %q after the stop", msg.Body) }})
	p.inFlight(t, 2)
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(200 * time.Millisecond)
	f.send(t, s3Event)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("released")); v != 1 {
		t.Errorf("released %v times, want once", v)
	}
	out, err := f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, WaitTimeSeconds: 1,
		//lint:ignore SA1019 the local stack's SQS only honours the legacy field.
		AttributeNames: []sqstypes.QueueAttributeName{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("%d messages visible after the stop, want the one its polls took", len(out.Messages))
	}
	if n := out.Messages[0].Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]; n != "2" {
		t.Errorf("receive count %s on the receive after the stop, want 2: the stopped task received it once", n)
	}
}

// untriedRole readies every relay the stop takes untried to be sent again
// with body.
type untriedRole struct {
	role
	body string
}

func (u untriedRole) Untried(m *worker.Message) {
	if m.Events.Relay != nil {
		m.SendAgainAs(u.body)
	}
}

// TestUntriedRelayOnItsLastTrySentAgain: a relay that a poll brings after
// the stop, on its last try though its message has receives left (a relay
// counts its tries over the messages it was sent as), is sent again with
// the body its role gives (worker.Untried), as a relay whose copy the stop
// cut is; it was released, and its next receive took it to the DLQ
// untried.
func TestUntriedRelayOnItsLastTrySentAgain(t *testing.T) {
	f := setup(t)
	p := f.polls()
	rt, m := f.runtime(p, 1)
	rt.ReceiveWait, rt.Drain, rt.MaxReceiveCount = 5*time.Second, 10*time.Second, 5
	relay, err := events.EncodeRelay(events.Relay{Region: "store", Bucket: "stg", Key: "r1/2026/12/07/a.tar.zst", Tries: 4})
	if err != nil {
		t.Fatal(err)
	}
	again, err := events.EncodeRelay(events.Relay{Region: "store", Bucket: "stg", Key: "r1/2026/12/07/a.tar.zst", Tries: 3}) // the role's body, told from the original
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, rt, untriedRole{role{func(_ context.Context, msg *worker.Message) { t.Errorf("handled %q after the stop", msg.Body) }}, string(again)})
	p.inFlight(t, 1)
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(200 * time.Millisecond)
	f.send(t, string(relay))
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("requeued")); v != 1 {
		t.Errorf("sent again %v messages, want the relay", v)
	}
	out, err := f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 20,
		MessageAttributeNames: []string{queue.DeferredAttribute}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != string(again) {
		t.Errorf("the queue holds %d messages, want the relay sent again with its role's body", len(out.Messages))
	}
}

// hungDrain is a role whose Drain never returns (a clean-up call that
// hangs).
type hungDrain struct {
	role
	hang chan struct{}
}

func (h hungDrain) Drain(context.Context) { <-h.hang }

// TestStopBudgetBoundsAHungDrain: whatever the role's drain still does,
// held messages are released within the stop budget (ECS kills the task
// at 120 s, and they would stay hidden a whole visibility timeout); one
// on its last receive says it is bound for the DLQ (it went there without
// a line).
func TestStopBudgetBoundsAHungDrain(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	got := make(chan *worker.Message, 1)
	stopBudgetBounds(t, got, hungDrain{role{func(_ context.Context, msg *worker.Message) { got <- msg }}, hang})
}

// TestStopBudgetBoundsAHungHandler: likewise for work that runs in Handle
// (a target's) and does not end with its context.
func TestStopBudgetBoundsAHungHandler(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	got := make(chan *worker.Message, 1)
	stopBudgetBounds(t, got, role{func(_ context.Context, msg *worker.Message) {
		got <- msg
		<-hang
	}})
}

// slowBatchSends takes its time over each SendMessageBatch and counts them.
type slowBatchSends struct {
	queue.API
	calls atomic.Int32
}

func (s *slowBatchSends) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, o ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	s.calls.Add(1)
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.API.SendMessageBatch(ctx, in, o...)
}

// TestManyHeldSentAgainInBatches: many messages held at the stop on their
// last receive are sent again ten to a call, several calls at once, and
// their originals deleted in calls of their own: sent one call each within
// one timeout, the sends left the deletes no time, and the originals came
// back beside their copies.
func TestManyHeldSentAgainInBatches(t *testing.T) {
	f := setup(t)
	const n = 60
	for range n {
		f.send(t, s3Event)
	}
	api := &slowBatchSends{API: f.client}
	rt, m := f.runtime(api, n)
	rt.MaxReceiveCount = 1
	var held atomic.Int32
	stop := start(t, rt, role{func(context.Context, *worker.Message) { held.Add(1) }})
	within(t, 30*time.Second, "every message held", func() bool { return held.Load() == n })
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	f.tick(t, done, "Run returning")
	q, a, r := testutil.ToFloat64(m.Messages.WithLabelValues("requeued")), testutil.ToFloat64(m.Messages.WithLabelValues("acked")), testutil.ToFloat64(m.Messages.WithLabelValues("released"))
	if q != n || a != n || r != 0 || testutil.ToFloat64(m.Errors.WithLabelValues("delete_message")) != 0 {
		t.Errorf("sent again %v, acknowledged %v, released %v, delete errors %v; want all %d sent again and deleted", q, a, r, testutil.ToFloat64(m.Errors.WithLabelValues("delete_message")), n)
	}
	if c := api.calls.Load(); c > n/queue.MaxBatch {
		t.Errorf("%d SendMessageBatch calls for %d messages, want ten to a call", c, n)
	}
	out, err := f.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &f.url,
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		t.Fatal(err)
	}
	if a := out.Attributes; a["ApproximateNumberOfMessagesDelayed"] != fmt.Sprint(n) || a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Errorf("queue %v: want the %d copies delayed, nothing else", a, n)
	}
}

// TestHeldOnItsLastReceiveSentAgain: a message still held at the stop on
// its last receive, its work unfinished, is sent again as a new message
// (acknowledged, its deferral counted), not released to reach the DLQ
// for the stop.
func TestHeldOnItsLastReceiveSentAgain(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	got := make(chan *worker.Message, 1)
	f, m := stopBudgetBoundsDeferred(t, got, role{func(_ context.Context, msg *worker.Message) {
		got <- msg
		<-hang
	}}, 0)
	if r, q := testutil.ToFloat64(m.Messages.WithLabelValues("released")), testutil.ToFloat64(m.Messages.WithLabelValues("requeued")); r != 0 || q != 1 {
		t.Errorf("released %v, sent again %v; want the message sent again", r, q)
	}
	if ds := f.deferrals(t); !slices.Equal(ds, []string{"1"}) {
		t.Errorf("the queue holds messages deferred %q times, want one sent again once", ds)
	}
	if n := f.logs.FilterMessage("message not acknowledged: bound for the DLQ").Len(); n != 0 {
		t.Errorf("%d lines say a message sent again is bound for the DLQ", n)
	}
}

func stopBudgetBounds(t *testing.T, got chan *worker.Message, r worker.Role) {
	f, m := stopBudgetBoundsDeferred(t, got, r, 1)
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("released")); v != 1 {
		t.Errorf("released %v messages, want 1", v)
	}
	if bodies := f.visible(t); len(bodies) != 1 {
		t.Errorf("queue shows %d messages, want the released one", len(bodies))
	}
	if f.logs.FilterMessage("message not acknowledged: bound for the DLQ").Len() != 1 {
		t.Error("the message released on its last receive did not say it is bound for the DLQ")
	}
}

// stopBudgetBoundsDeferred runs r on a message sent again deferred times,
// on its last receive, and stops the runtime, which must return within the
// stop budget whatever r does.
func stopBudgetBoundsDeferred(t *testing.T, got chan *worker.Message, r worker.Role, deferred int) (*fixture, *worker.Metrics) {
	f := setup(t)
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(f.client, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, StopBudget: 40 * time.Second, MaxReceiveCount: 1,
		Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	stop := start(t, rt, r)
	if deferred > 0 {
		f.sendDeferred(t, s3Event, deferred)
	} else {
		f.send(t, s3Event)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	start := f.clock.Now()
	for ticking := true; ticking; {
		select {
		case <-done:
			ticking = false
		case <-time.After(10 * time.Millisecond):
			if f.clock.Since(start) > time.Minute {
				t.Fatal("Run still waits for the drain past the stop budget")
			}
			f.clock.Advance(time.Second)
		}
	}
	if f.logs.FilterMessageSnippet("stop budget").Len() != 1 {
		t.Error("the drain cut short by the stop budget was not logged")
	}
	return f, m
}

// slowDeletes takes its time over each DeleteMessageBatch and records how
// many run at once.
type slowDeletes struct {
	queue.API
	calls localstack.Concurrency
}

func (s *slowDeletes) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	defer s.calls.Enter()()
	time.Sleep(50 * time.Millisecond)
	return s.API.DeleteMessageBatch(ctx, in, o...)
}

// TestAcksRunSideBySide: an archive's many acknowledgements are deleted
// several calls at once, not ten at a time one call after another (their
// round trips in turn held their slots, and at the stop ran out of time).
func TestAcksRunSideBySide(t *testing.T) {
	f := setup(t)
	const n = 60
	api := &slowDeletes{API: f.client}
	all, stop, _ := f.holdingAll(t, api, n)
	for _, m := range all { // at once, as a staged archive's
		m.Ack()
	}
	stop()
	if most := api.calls.Most(); most < 2 {
		t.Errorf("at most %d DeleteMessageBatch at once, want several", most)
	}
}

// TestSettledReleasesGoTogether: the messages of a failed source archive,
// settled one after another with one backoff, are released ten to a call,
// not a call each (10-20 s per 1,000 messages, holding the builder).
func TestSettledReleasesGoTogether(t *testing.T) {
	f := setup(t)
	const n = 60
	api := &countingReleases{API: f.client, to: 2}
	all, stop, m := f.holdingAll(t, api, n)
	for _, m := range all {
		m.Release(2 * time.Second)
	}
	stop()
	// The first message may go alone, its call begun before the rest
	// were added.
	if got := api.calls.Load(); got > n/10+1 {
		t.Errorf("%d messages released in %d calls, want at most %d", n, got, n/10+1)
	}
	if got := api.entries.Load(); got != n {
		t.Errorf("%d of %d messages released after their backoff", got, n)
	}
	if v := testutil.ToFloat64(m.Messages.WithLabelValues("released")); v != n {
		t.Errorf("released %v messages, want %d", v, n)
	}
}

// TestHeartbeatOutlastsTheCut: messages still held when the drain time
// ends stay hidden while the role's clean-up runs, until they are
// released: with the heartbeat stopped at the cut, a short visibility
// timeout let another task take them meanwhile (duplicate work).
func TestHeartbeatOutlastsTheCut(t *testing.T) {
	f := setup(t)
	api := &countingReleases{API: f.client, to: 30} // heartbeats
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	hang := make(chan struct{})
	got := make(chan *worker.Message, 1)
	stop := start(t, rt, hungDrain{role{func(_ context.Context, msg *worker.Message) { got <- msg }}, hang})
	f.send(t, s3Event)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(50 * time.Millisecond) // the stop begins on the fake clock's now
	advance := func(d time.Duration) {
		for range int(d / time.Second) {
			f.clock.Advance(time.Second)
			time.Sleep(10 * time.Millisecond)
		}
	}
	advance(12 * time.Second) // past the cut
	cut := api.calls.Load()
	advance(40 * time.Second) // the clean-up goes on
	if n := api.calls.Load() - cut; n < 3 {
		t.Errorf("%d heartbeats in 40 s of clean-up after the cut, want one every 10 s", n)
	}
	close(hang)
	<-done
}

// hangingBeats: once hang is set, a heartbeat (visibility > 0) hangs until
// its context ends, as on a stalled connection; releases (0) go through.
type hangingBeats struct {
	queue.API
	hang, hung atomic.Bool
	released   atomic.Int32
	releaseErr atomic.Value
	// gate, when set, holds a poll's answer with messages until closed.
	gate  atomic.Pointer[chan struct{}]
	gated atomic.Bool
}

func (h *hangingBeats) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := h.API.ReceiveMessage(ctx, in, o...)
	if g := h.gate.Load(); g != nil && err == nil && len(out.Messages) > 0 {
		h.gated.Store(true)
		<-*g
	}
	return out, err
}

func (h *hangingBeats) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 && h.hang.Load() {
		h.hung.Store(true)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out, err := h.API.ChangeMessageVisibilityBatch(ctx, in, o...)
	if in.Entries[0].VisibilityTimeout == 0 {
		if err == nil {
			h.released.Add(1)
		} else {
			h.releaseErr.Store(err.Error())
		}
	}
	return out, err
}

// stopOnClock stops Run and moves the fake clock on a second at a time
// until Run returns, failing with why once limit has passed on it; begun,
// if any, runs once the stop is under way.
func (f *fixture) stopOnClock(t *testing.T, stop func(), limit time.Duration, why string, begun func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	time.Sleep(50 * time.Millisecond)
	if begun != nil {
		begun()
	}
	start := f.clock.Now()
	for {
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
			if f.clock.Since(start) > limit {
				t.Fatal(why)
			}
			f.clock.Advance(time.Second)
		}
	}
}

// hungBeat runs a runtime holding one message, its visibility and stop
// budget (40 s) as given, until its first heartbeat hangs.
func (f *fixture) hungBeat(t *testing.T, maxHeld int, visibility time.Duration) (*hangingBeats, func()) {
	t.Helper()
	api := &hangingBeats{API: f.client}
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: maxHeld, Visibility: visibility,
		ReceiveWait: time.Second, Drain: time.Second, StopBudget: 40 * time.Second, Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	got := make(chan *worker.Message, maxHeld)
	stop := start(t, rt, role{func(_ context.Context, msg *worker.Message) { got <- msg }})
	f.send(t, s3Event)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	api.hang.Store(true)
	f.clock.Advance(visibility / 3) // the first beat
	within(t, 10*time.Second, "a beat hangs", api.hung.Load)
	return api, stop
}

// TestHungBeatAtStop: a heartbeat hung when the stop comes (a stalled
// connection: only a third of the visibility timeout bounds it) does not
// keep the final release waiting past the stop budget: the held message
// is released in time.
func TestHungBeatAtStop(t *testing.T) {
	f := setup(t)
	api, stop := f.hungBeat(t, 1, 12*time.Hour)
	f.stopOnClock(t, stop, time.Minute, "Run still waits for the hung beat past the stop budget", nil)
	if api.released.Load() == 0 {
		t.Errorf("the held message was not released at the stop (%v)", api.releaseErr.Load())
	}
}

// TestHungBeatBeforeStop: a beat that hangs before the stop comes (only a
// third of the visibility timeout bounds it) is cut at the release's
// reserve of the stop budget: a poll answering after the stop releases
// its messages under the beat's lock, and Run waits for that release.
func TestHungBeatBeforeStop(t *testing.T) {
	f := setup(t)
	api, stop := f.hungBeat(t, 2, 15*time.Minute)
	gate := make(chan struct{})
	api.gate.Store(&gate)
	f.send(t, s3Event)
	within(t, 10*time.Second, "a poll answers", api.gated.Load)
	// The poll's answer comes after the stop.
	f.stopOnClock(t, stop, time.Minute, "Run still waits for a beat hung before the stop, past the stop budget", func() { close(gate) })
	if n := api.released.Load(); n < 2 {
		t.Errorf("%d releases, want the late message's and the held one's (%v)", n, api.releaseErr.Load())
	}
}

// TestHungBeatAfterStop: beats that start after the stop and hang end
// before the release's reserve of the stop budget, so the final release
// still has its time (bounded by the budget's end alone, the last one held
// the release until its context had run out).
func TestHungBeatAfterStop(t *testing.T) {
	f := setup(t)
	api := &hangingBeats{API: f.client}
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 60 * time.Second,
		ReceiveWait: time.Second, Drain: 90 * time.Second, StopBudget: 100 * time.Second, Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	got := make(chan *worker.Message, 1)
	hang := make(chan struct{})
	defer close(hang)
	stop := start(t, rt, hungDrain{role{func(_ context.Context, msg *worker.Message) { got <- msg }}, hang})
	f.send(t, s3Event)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	api.hang.Store(true)
	f.stopOnClock(t, stop, 3*time.Minute, "Run did not end", nil)
	if !api.hung.Load() {
		t.Fatal("no beat hung after the stop: the test tests nothing")
	}
	if api.released.Load() == 0 {
		t.Errorf("the held message was not released at the stop (%v)", api.releaseErr.Load())
	}
}

// sendsAtTheDeadline sends each batch but answers only when its context
// ends: sends that take what time they are given.
type sendsAtTheDeadline struct{ queue.API }

func (s sendsAtTheDeadline) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, o ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out, err := s.API.SendMessageBatch(context.WithoutCancel(ctx), in, o...)
	<-ctx.Done()
	return out, err
}

// TestSlowSendsLeaveTheStopTime: at a stop that runs past its budget, the
// messages that are not sent again are released before the sends, and
// the sends take at most half of what is left, so the originals of what
// was sent are deleted and nothing is left hidden: the sends took all of
// it (five originals back beside their copies, five messages hidden a
// visibility timeout).
func TestSlowSendsLeaveTheStopTime(t *testing.T) {
	f := setup(t)
	// Five on their second receive (the last, maxReceiveCount 2), five on
	// their first.
	f.send(t, s3Event, s3Event, s3Event, s3Event, s3Event)
	for n := 0; n < 5; {
		out, err := f.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &f.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			n++
			_, _ = f.client.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &f.url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
		}
	}
	time.Sleep(200 * time.Millisecond)
	f.send(t, s3Event, s3Event, s3Event, s3Event, s3Event)
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(sendsAtTheDeadline{f.client}, f.url), ReceiveMax: 10, MaxHeld: 10, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: time.Second, StopBudget: 8 * time.Second, MaxReceiveCount: 2,
		Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: clockwork.NewRealClock()})
	hang := make(chan struct{})
	defer close(hang)
	var held atomic.Int32
	stop := start(t, rt, hungDrain{role{func(context.Context, *worker.Message) { held.Add(1) }}, hang})
	within(t, 30*time.Second, "every message held", func() bool { return held.Load() == 10 })
	stop()
	q, a, r := testutil.ToFloat64(m.Messages.WithLabelValues("requeued")), testutil.ToFloat64(m.Messages.WithLabelValues("acked")), testutil.ToFloat64(m.Messages.WithLabelValues("released"))
	de, re := testutil.ToFloat64(m.Errors.WithLabelValues("delete_message")), testutil.ToFloat64(m.Errors.WithLabelValues("release_message"))
	if q != 5 || a != 5 || r != 5 || de != 0 || re != 0 {
		t.Errorf("sent again %v, acknowledged %v, released %v; errors: delete %v, release %v; want five sent again and deleted, five released", q, a, r, de, re)
	}
}

// TestMarkAfterTheStopSentIt: a role that asks for its message to be sent
// again after the stop's release already did (its work ran past the
// budget) is told so: it said at error that the message was bound for the
// DLQ.
func TestMarkAfterTheStopSentIt(t *testing.T) {
	hang := make(chan struct{})
	got := make(chan *worker.Message, 1)
	res := make(chan bool, 1)
	_, m := stopBudgetBoundsDeferred(t, got, role{func(ctx context.Context, msg *worker.Message) {
		got <- msg
		<-hang
		res <- msg.SendAgainAtStop()
	}}, 0)
	close(hang)
	if ok, q := <-res, testutil.ToFloat64(m.Messages.WithLabelValues("requeued")); !ok || q != 1 {
		t.Errorf("SendAgainAtStop after the stop sent the message again = %v (sent again %v); want true", ok, q)
	}
}

// refusedSends fails every SendMessageBatch.
type refusedSends struct{ queue.API }

func (refusedSends) SendMessageBatch(context.Context, *sqs.SendMessageBatchInput, ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return nil, errors.New("AccessDenied (injected)")
}

// TestMarkAfterTheStopFailedToSendIt: a role whose work ends after the
// stop failed to send its message again (released towards the DLQ, said
// at error) is not told it was sent again: it said the message's work
// ended after the stop sent it.
func TestMarkAfterTheStopFailedToSendIt(t *testing.T) {
	f := setup(t)
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(refusedSends{f.client}, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 500 * time.Millisecond, StopBudget: 8 * time.Second, MaxReceiveCount: 1,
		Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: clockwork.NewRealClock()})
	got, hang := make(chan struct{}), make(chan struct{})
	res := make(chan [2]bool, 1)
	stop := start(t, rt, role{func(ctx context.Context, msg *worker.Message) {
		close(got)
		<-hang // its work runs on past the whole stop
		res <- [2]bool{msg.SendAgainAtStop(), msg.SentAgain()}
	}})
	f.send(t, s3Event)
	<-got
	stop()
	close(hang)
	if r, e := <-res, testutil.ToFloat64(m.Errors.WithLabelValues("send_again")); e != 1 || r[0] || r[1] {
		t.Errorf("SendAgainAtStop, SentAgain after the stop failed to send the message = %v (send_again errors %v); want both false", r, e)
	}
}

// callSignals says when the first DeleteMessageBatch (delete) or
// SendMessageBatch (otherwise) starts, and takes its time over each.
type callSignals struct {
	queue.API
	delete  bool
	once    *sync.Once
	started chan struct{}
}

func (c callSignals) signal(d time.Duration) {
	c.once.Do(func() { close(c.started) })
	time.Sleep(d)
}

func (c callSignals) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	if c.delete {
		c.signal(500 * time.Millisecond)
	}
	return c.API.DeleteMessageBatch(ctx, in, o...)
}

func (c callSignals) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, o ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	if !c.delete {
		c.signal(100 * time.Millisecond)
	}
	return c.API.SendMessageBatch(ctx, in, o...)
}

// TestMarkDuringTheStopsSendAndDelete: a role asking, while the stop sends
// its message again or deletes the original, for it to be sent again is
// told it was, and that it need not settle it (SentAgain): from when the
// release takes a message to send it again. It was told no, and said the
// message was bound for the DLQ.
func TestMarkDuringTheStopsSendAndDelete(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(map[bool]string{false: "send", true: "delete"}[del], func(t *testing.T) {
			f := setup(t)
			api := callSignals{API: f.client, delete: del, once: &sync.Once{}, started: make(chan struct{})}
			m := worker.NewMetrics(prometheus.NewRegistry(), "test")
			// A stop budget with room for the calls under CI's load; the
			// role waits for the call a bounded time, so that a stop that
			// never makes it fails the test, saying so, rather than hang it
			// (it hung CI for 20 minutes once, under a concurrent build).
			rt := worker.New(worker.Options{Queue: queue.New(api, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
				ReceiveWait: time.Second, Drain: 500 * time.Millisecond, StopBudget: 20 * time.Second, MaxReceiveCount: 1,
				Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: clockwork.NewRealClock()})
			got := make(chan struct{})
			res := make(chan [2]bool, 1)
			called := true
			stop := start(t, rt, role{func(ctx context.Context, msg *worker.Message) {
				close(got)
				select { // its work runs on past the budget, ends during the call
				case <-api.started:
				case <-time.After(40 * time.Second):
					called = false
				}
				res <- [2]bool{msg.SendAgainAtStop(), msg.SentAgain()}
			}})
			f.send(t, s3Event)
			<-got
			stop()
			r := <-res
			if !called {
				t.Fatal("the stop made no call to send the message again or delete it within 40 s (its timing did not hold, or the message was not sent again)")
			}
			if q := testutil.ToFloat64(m.Messages.WithLabelValues("requeued")); q != 1 || !r[0] || !r[1] {
				t.Errorf("SendAgainAtStop, SentAgain during the stop's call = %v (sent again %v); want both true, the message sent again", r, q)
			}
		})
	}
}

// refusedBeats fails every heartbeat's visibility change, as SQS answers
// one it throttles, as a whole call.
type refusedBeats struct{ queue.API }

func (f refusedBeats) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 {
		return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "rate exceeded"}
	}
	return f.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestLapsedHoldIsLost: a message whose visibility ran out while SQS
// refused every extension is dropped and its work cancelled, as one whose
// receipt is gone: SQS may have handed it to another worker, whose work
// would race this one's (and this one's delete, a no-op, counted acked).
// Before then, refused beats only warn.
func TestLapsedHoldIsLost(t *testing.T) {
	f := setup(t)
	rt, m := f.runtime(refusedBeats{f.client}, 1)
	msg := f.held(t, rt)
	f.clock.Advance(10 * time.Second)
	within(t, 5*time.Second, "a refused beat", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("heartbeat")) >= 1 })
	f.clock.Advance(10 * time.Second)
	within(t, 5*time.Second, "two refused beats", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("heartbeat")) >= 2 })
	if msg.Context().Err() != nil {
		t.Fatal("work cancelled while its visibility lasts")
	}
	f.clock.Advance(10 * time.Second) // 30 s: the visibility is out
	within(t, 5*time.Second, "work cancelled", func() bool { return msg.Context().Err() != nil })
	if !errors.Is(context.Cause(msg.Context()), worker.ErrReceiptLost) {
		t.Errorf("cancelled by %v, want ErrReceiptLost", context.Cause(msg.Context()))
	}
	if v := testutil.ToFloat64(m.Errors.WithLabelValues("receipt_lost")); v != 1 {
		t.Errorf("%v receipts lost counted, want 1", v)
	}
	within(t, 5*time.Second, "dropped from the held set", func() bool { return rt.Held() == 0 })
}

// cutThenRefused hangs the first heartbeat's change until its bound cuts
// it (perhaps applied, for all the worker knows), then refuses every one.
type cutThenRefused struct {
	queue.API
	calls atomic.Int32
}

func (c *cutThenRefused) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 {
		if c.calls.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "rate exceeded"}
	}
	return c.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestCutBeatMayHaveExtended: a beat cut by its own bound may have been
// applied: the hold runs a whole visibility from it, so refusals after it
// drop the message only once that has run out (dropped a visibility after
// the last sure extension, it was cut from under a hold SQS still kept).
func TestCutBeatMayHaveExtended(t *testing.T) {
	f := setup(t)
	api := &cutThenRefused{API: f.client}
	rt, _ := f.runtime(api, 1)
	msg := f.held(t, rt)
	for i, want := range []int32{1, 2, 3} { // at 10 s the cut beat (till 20 s), then refused at 20 and 30 s
		f.clock.Advance(10 * time.Second)
		within(t, 5*time.Second, fmt.Sprintf("beat %d", i+1), func() bool { return api.calls.Load() >= want })
	}
	time.Sleep(100 * time.Millisecond)
	if msg.Context().Err() != nil {
		t.Fatal("dropped at 30 s though the beat cut at 10 s may have held it till 40 s")
	}
	f.clock.Advance(10 * time.Second) // 40 s: refused again, and out
	within(t, 5*time.Second, "work cancelled", func() bool { return msg.Context().Err() != nil })
}

// unansweredBeats fails every heartbeat's change as a connection reset
// after the request went out would: perhaps applied.
type unansweredBeats struct{ queue.API }

func (u unansweredBeats) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout > 0 {
		return nil, errors.New("read tcp 10.0.0.1:443: connection reset by peer")
	}
	return u.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestUnansweredBeatsKeepTheHold: beats that fail without SQS's answer (a
// reset connection, a timeout) may have been applied: the message is
// not dropped for them, however long (they warn, and are counted).
func TestUnansweredBeatsKeepTheHold(t *testing.T) {
	f := setup(t)
	rt, m := f.runtime(unansweredBeats{f.client}, 1)
	msg := f.held(t, rt)
	for i := range 6 {
		f.clock.Advance(10 * time.Second)
		within(t, 5*time.Second, "a failed beat", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("heartbeat")) >= float64(i+1) })
	}
	time.Sleep(100 * time.Millisecond)
	if msg.Context().Err() != nil || rt.Held() != 1 {
		t.Fatal("dropped for beats SQS may have applied")
	}
	msg.Ack()
}
