package source

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/queue"
)

// hangGets never answers a GET before its context ends.
type hangGets struct{ S3API }

func (hangGets) GetObject(ctx context.Context, _ *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// hangingBodies answers a GET with a body that gives nothing until the
// context ends.
type hangingBodies struct{ S3API }

func (hangingBodies) GetObject(ctx context.Context, _ *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return &s3.GetObjectOutput{Body: io.NopCloser(ctxReader{ctx})}, nil
}

type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// TestCopyOutlastingTheStopCoolsTheRegion: a copy the stop cut while the
// upload was waiting on the read of the archive is the copy outlasting
// the stop, the direct region's (README): cooled, as one cut while
// writing is; taken for a failure of this region's staging, it was not,
// by the timing of which side was blocked.
func TestCopyOutlastingTheStopCoolsTheRegion(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relayoutlast", nil)
	sqsc, src, dst := stackClients(t, env)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(sqsc, dep.SourceQueues[cfg.Rules[0].ID]), S3: hangingBodies{src}, Log: zap.NewNop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel) // the drain's end, mid-copy
	if err := w.relay(ctx, &cfg.Rules[0], cfg.Rules[0].ID+"/2026/12/07/outlast.tar.zst", nil, 8<<20, nil); err != nil {
		t.Fatalf("relay = %v; want the copy left to its relay message", err)
	}
	if !w.cooling("eu-west-1") {
		t.Error("the region whose copy outlasted the stop is not cooling")
	}
}

// refusingSends refuses every message sent.
type refusingSends struct{ queue.API }

var errDenied = errors.New("AccessDenied: not authorized to sqs:SendMessage")

func (refusingSends) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return nil, errDenied
}

// TestCutCopyWhoseRelayIsRefusedIsNoStop: a direct copy cut by the drain
// whose relay message is then refused fails with the refusal, not as a
// cancellation: taken for the stop's, its message was sent again at the
// stop (the archive staged twice) instead of going its way to the DLQ.
func TestCutCopyWhoseRelayIsRefusedIsNoStop(t *testing.T) {
	env, cfg, _ := deployDirect(t, "relaycut", nil)
	ctx := context.Background()
	_, src, dst := stackClients(t, env)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", S3: hangGets{src}, Queue: queue.New(refusingSends{}, "q"), Log: zap.NewNop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel) // the drain's end, mid-copy
	err = w.relay(cctx, &cfg.Rules[0], "k", nil, 8<<20, nil)
	if !errors.Is(err, errDenied) || errors.Is(err, context.Canceled) {
		t.Errorf("relay = %v; want the refusal, not a cancellation", err)
	}
}

// TestRelayCutOnItsLastTrySentAgain: a relay on its last try whose copy
// the stop cuts is sent again at the stop, its tries kept (its next
// receive is its last try again) and its deferral counted, as an
// object's message is; it was left to reach the DLQ for the stop.
func TestRelayCutOnItsLastTrySentAgain(t *testing.T) {
	env, cfg, dep := deployShortStops(t, "relaylast")
	ctx := context.Background()
	sqsc, src, dst := stackClients(t, env)
	staging := cfg.Settings.Regions[0].StagingBucket
	key := cfg.Rules[0].ID + "/2026/12/07/last.tar.zst"
	if _, err := src.PutObject(ctx, &s3.PutObjectInput{Bucket: &staging, Key: &key, Body: strings.NewReader("an archive")}); err != nil {
		t.Fatal(err)
	}
	url := dep.SourceQueues[cfg.Rules[0].ID]
	q := queue.New(sqsc, url)
	body, err := events.EncodeRelay(events.Relay{Region: "eu-west-1", Bucket: staging, Key: key, Tries: 1}) // its first receive is its last try
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, string(body), 0, 0); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: q, S3: hangGets{src}, Log: zap.New(core), Metrics: NewMetrics(prometheus.NewRegistry()),
		Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(run) }()
	if !localstack.Eventually(time.Minute, 20*time.Millisecond, func() bool { return w.relaysHeld.Load() == 1 }) {
		t.Fatal("the relay was not taken")
	}
	time.Sleep(200 * time.Millisecond) // its copy under way
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessageSnippet("bound for the DLQ").Len(); n != 0 {
		t.Errorf("%d lines say the relay is bound for the DLQ: %v", n, logs.FilterMessageSnippet("bound for the DLQ").All())
	}
	got, err := localstack.Receive(ctx, sqsc, url, 1, 10*time.Second, time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("received %d messages (%v), want the relay sent again", len(got), err)
	}
	rec := localstack.SQSEvent(url, got).Records[0]
	parsed, err := events.Parse([]byte(rec.Body))
	if err != nil || parsed.Relay == nil {
		t.Fatalf("sent again: %q (%v), want a relay", rec.Body, err)
	}
	most := cfg.Settings.Worker.MaxReceiveCount
	if d := rec.MessageAttributes[queue.DeferredAttribute].StringValue; d == nil || *d != "1" || RelayTries(*parsed.Relay, 1, most) != most {
		t.Errorf("sent again deferred %v, its next receive try %d; want deferred once, its last try again (%d)", d, RelayTries(*parsed.Relay, 1, most), most)
	}
}

// TestRelayStoppedBeforeItsTurn: a relay on its last try still waiting
// for its turn when the worker stops is sent again, its tries kept and
// its deferral counted (as an object's message on its last receive is):
// it was sent again with its deferrals as they were, at every stop for
// ever, and visible at once to the stopping task's own polls. Once its
// deferrals reach maxReceiveCount it goes its way to the DLQ.
func TestRelayStoppedBeforeItsTurn(t *testing.T) {
	env, cfg, dep := deployShortStops(t, "relayturn")
	ctx := context.Background()
	sqsc, src, dst := stackClients(t, env)
	staging := cfg.Settings.Regions[0].StagingBucket
	url := dep.SourceQueues[cfg.Rules[0].ID]
	q := queue.New(sqsc, url)
	most := cfg.Settings.Worker.MaxReceiveCount
	body, err := events.EncodeRelay(events.Relay{Region: "eu-west-1", Bucket: staging, Key: cfg.Rules[0].ID + "/2026/12/07/turn.tar.zst", Tries: 1}) // its first receive is its last try
	if err != nil {
		t.Fatal(err)
	}
	for deferred := range most + 1 {
		if err := q.Send(ctx, string(body), 0, deferred); err != nil {
			t.Fatal(err)
		}
		w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: q, S3: src, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry()),
			Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.relaying.Acquire(ctx, builders); err != nil { // no turn comes
			t.Fatal(err)
		}
		run, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(run) }()
		if !localstack.Eventually(time.Minute, 20*time.Millisecond, func() bool { return w.relaysHeld.Load() == 1 }) {
			t.Fatal("the relay was not taken")
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if deferred == most {
			// Released as it is, on its way to the DLQ (the stopping
			// task's own last poll may take it there).
			dlq := url[:strings.LastIndex(url, "/")+1] + config.DeadLetterQueueName(url[strings.LastIndex(url, "/")+1:])
			got, err := localstack.Receive(ctx, sqsc, dlq, 1, 5*time.Second, time.Minute)
			if err == nil && len(got) == 0 {
				got, err = localstack.Receive(ctx, sqsc, url, 1, 5*time.Second, time.Minute)
			}
			if err != nil || len(got) != 1 {
				t.Fatalf("deferred %d times: %d messages in the queue or its DLQ (%v), want the relay", deferred, len(got), err)
			}
			if d := localstack.SQSEvent(url, got).Records[0].MessageAttributes[queue.DeferredAttribute].StringValue; d == nil || *d != strconv.Itoa(most) {
				t.Errorf("deferred %d times: sent again, deferred %v; want it released as it was", deferred, d)
			}
			continue
		}
		// Once: visible at once, the stopping task's last poll took it
		// back and sent it again a second time.
		if n := testutil.ToFloat64(w.Metrics.Messages.WithLabelValues("requeued")); n != 1 {
			t.Errorf("deferred %d: sent again %v times, want once", deferred, n)
		}
		got, err := localstack.Receive(ctx, sqsc, url, 1, 10*time.Second, time.Minute)
		if err != nil || len(got) != 1 {
			t.Fatalf("deferred %d: received %d messages (%v), want the relay sent again", deferred, len(got), err)
		}
		rec := localstack.SQSEvent(url, got).Records[0]
		parsed, err := events.Parse([]byte(rec.Body))
		if err != nil || parsed.Relay == nil {
			t.Fatalf("sent again: %q (%v), want a relay", rec.Body, err)
		}
		if d := rec.MessageAttributes[queue.DeferredAttribute].StringValue; d == nil || *d != strconv.Itoa(deferred+1) || RelayTries(*parsed.Relay, 1, most) != most {
			t.Errorf("deferred %d: sent again deferred %v, its next receive try %d; want deferred %d, its last try again (%d)",
				deferred, d, RelayTries(*parsed.Relay, 1, most), deferred+1, most)
		}
		if _, err := sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: got[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
}

// deployDirect deploys with eu-west-1 a direct region whose credentials
// are never read (the tests give the worker its clients), then edit.
func deployDirect(t *testing.T, prefix string, edit func(*config.Config)) (localstack.Env, *config.Config, localstack.Deployment) {
	return localstack.Deploy(t, prefix, func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_UNREAD"
		if edit != nil {
			edit(c)
		}
	})
}

// deployShortStops is deployDirect with two receives to a message and a
// drain of half a second: a relay's first receive can be its last try,
// and a stop cuts what runs.
func deployShortStops(t *testing.T, prefix string) (localstack.Env, *config.Config, localstack.Deployment) {
	return deployDirect(t, prefix, func(c *config.Config) {
		c.Settings.Worker.MaxReceiveCount = 2
		c.Settings.Worker.DrainTimeout = config.Duration(500 * time.Millisecond)
	})
}

// stackClients are the local stack's SQS, and S3 in the source region and
// in the target's.
func stackClients(t *testing.T, env localstack.Env) (*sqs.Client, *s3.Client, *s3.Client) {
	t.Helper()
	ctx := context.Background()
	sqsc, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := env.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	return sqsc, src, dst
}

// polls tells on started each long poll its queue starts.
type polls struct {
	queue.API
	started chan struct{}
}

func (p polls) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	select {
	case p.started <- struct{}{}:
	default:
	}
	return p.API.ReceiveMessage(ctx, in, optFns...)
}

// TestSpentRelayNotSentAgainAtTheStop: a relay whose tries are spent (its
// message's second receive, its last try failed on the first) that a poll
// brings after the stop is released towards the DLQ as handleRelay would,
// not sent again for one more try.
func TestSpentRelayNotSentAgainAtTheStop(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relayspent", func(c *config.Config) {
		c.Settings.Worker.MaxReceiveCount = 2
		c.Settings.Worker.ReceiveWait = config.Duration(20 * time.Second)
	})
	ctx := context.Background()
	sqsc, src, dst := stackClients(t, env)
	url := dep.SourceQueues[cfg.Rules[0].ID]
	q := queue.New(sqsc, url)
	body, err := events.EncodeRelay(events.Relay{Region: "eu-west-1", Bucket: cfg.Settings.Regions[0].StagingBucket,
		Key: cfg.Rules[0].ID + "/2026/12/07/spent.tar.zst", Tries: 1}) // its first receive was its last try
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, string(body), 0, 0); err != nil {
		t.Fatal(err)
	}
	// Its first receive, hidden until the worker's poll is in flight and
	// the worker stopped: that poll takes it, its second.
	first, err := localstack.Receive(ctx, sqsc, url, 1, 5*time.Second, 2*time.Minute)
	if err != nil || len(first) != 1 {
		t.Fatalf("received %d (%v)", len(first), err)
	}
	core, logs := observer.New(zap.InfoLevel)
	polled := make(chan struct{}, 64)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(polls{sqsc, polled}, url), S3: src, Log: zap.New(core), Metrics: NewMetrics(prometheus.NewRegistry()),
		Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(run) }()
	select {
	case <-polled:
	case <-time.After(time.Minute):
		t.Fatal("the worker did not poll within a minute")
	}
	time.Sleep(200 * time.Millisecond) // the poll reaches the queue
	stop()
	time.Sleep(200 * time.Millisecond)
	if _, err := sqsc.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: first[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("released what the last poll brought after the stop").Len()+logs.FilterMessageSnippet("sent again as a new message").Len() == 0 {
		t.Fatal("the poll in flight at the stop brought nothing: the test's timing did not hold")
	}
	if n := logs.FilterMessageSnippet("sent again as a new message").Len(); n != 0 {
		t.Errorf("the spent relay was sent again: %v", logs.FilterMessageSnippet("sent again as a new message").All())
	}
	// Released on its last receive: the next takes it to the DLQ, as it
	// is (not a copy sent again, deferred).
	dlq, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(cfg.SourceQueueName(cfg.Rules[0].ID) + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	var got []queue.Message
	for deadline := time.Now().Add(30 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		if left, err := q.Receive(ctx, 10, time.Second, time.Minute); err != nil || len(left) != 0 {
			t.Fatalf("the queue holds %+v (%v), want nothing", left, err)
		}
		if got, err = queue.New(sqsc, aws.ToString(dlq.QueueUrl)).Receive(ctx, 10, time.Second, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0].Body != string(body) || got[0].Deferred != 0 {
		t.Errorf("the DLQ holds %+v; want the relay itself", got)
	}
}

// TestRelaySentPastTheStop: an archive staged as the stop (or the
// invocation's deadline) comes, whose direct region's copies are left to
// relay messages untried (it is cooling), still gets its relay message:
// sent on the stop's context, it failed, and the staged archive was
// taken for one not staged, its messages released.
func TestRelaySentPastTheStop(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relaystop", nil)
	sqsc, src, dst := stackClients(t, env)
	url := dep.SourceQueues[cfg.Rules[0].ID]
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(sqsc, url), S3: src, Log: zap.NewNop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst},
		RelayWait: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	w.coolOn("eu-west-1", &directFailure{errors.New("connection refused")})
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.relay(stopped, &cfg.Rules[0], "r/stop.tar.zst", nil, 8<<20, nil); err != nil {
		t.Fatalf("relay at the stop = %v; want its message sent", err)
	}
	got, err := localstack.Receive(context.Background(), sqsc, url, 1, 10*time.Second, time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("received %d messages (%v), want the relay", len(got), err)
	}
}

// failingStore is a direct region's store refusing every write.
type failingStore struct{ S3API }

var errStoreDown = errors.New("ServiceUnavailable: the store is down")

func (failingStore) PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return nil, errStoreDown
}

func (failingStore) CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	return nil, errStoreDown
}

// TestCutInTheBackoffCoolsTheRegion: a copy that failed at the direct
// region, then was cut by the stop in the wait before its next try, is
// that region's failure: counted, and the region cooled (its next
// archives' copies not tried inline), not taken for the stop's cut.
func TestCutInTheBackoffCoolsTheRegion(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relaybackoff", nil)
	sqsc, src, dst := stackClients(t, env)
	staging, key := cfg.Settings.Regions[0].StagingBucket, cfg.Rules[0].ID+"/2026/12/07/backoff.tar.zst"
	if _, err := src.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &staging, Key: &key, Body: strings.NewReader("an archive")}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(sqsc, dep.SourceQueues[cfg.Rules[0].ID]), S3: src, Log: zap.NewNop(),
		Metrics: NewMetrics(reg), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": failingStore{dst}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel) // in the second's wait after the first try
	if err := w.relay(ctx, &cfg.Rules[0], key, nil, 8<<20, nil); err != nil {
		t.Fatalf("relay = %v; want the copy left to its relay message", err)
	}
	if !w.cooling("eu-west-1") {
		t.Error("the region whose store refused the copy is not cooling")
	}
	if n := testutil.ToFloat64(w.Metrics.Errors.WithLabelValues("relay")); n != 1 {
		t.Errorf("%v relay errors counted, want 1", n)
	}
}

// refusingFirst refuses the first message sent, then sends.
type refusingFirst struct {
	queue.API
	sent atomic.Int32
}

func (r *refusingFirst) SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if r.sent.Add(1) == 1 {
		return nil, errDenied
	}
	return r.API.SendMessage(ctx, in, opts...)
}

// TestEveryRelaySent: one direct region's relay message refused, the
// others are still sent (they were not tried, and when the archive is
// staged again, those regions got it twice), and the failure names the
// region left without one.
func TestEveryRelaySent(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relayevery", nil)
	sqsc, src, dst := stackClients(t, env)
	// A second direct region, cooling like the first: only messages.
	cfg.Settings.Regions = append(cfg.Settings.Regions, config.Region{Name: "ap-south-1", Direct: true, StagingBucket: "ap-staging"})
	cfg.Rules[0].Destinations = append(cfg.Rules[0].Destinations, config.Destination{Region: "ap-south-1", Bucket: "ap-dest"})
	url := dep.SourceQueues[cfg.Rules[0].ID]
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(&refusingFirst{API: sqsc}, url), S3: src, Log: zap.NewNop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst, "ap-south-1": dst},
		RelayWait: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"eu-west-1", "ap-south-1"} {
		w.coolOn(r, &directFailure{errors.New("connection refused")})
	}
	err = w.relay(context.Background(), &cfg.Rules[0], "r/every.tar.zst", nil, 8<<20, nil)
	if !errors.Is(err, errDenied) || !strings.Contains(err.Error(), "eu-west-1") || strings.Contains(err.Error(), "ap-south-1") {
		t.Errorf("relay = %v; want eu-west-1's message refused, ap-south-1's sent", err)
	}
	got, err := localstack.Receive(context.Background(), sqsc, url, 2, 5*time.Second, time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("received %d messages (%v), want ap-south-1's relay", len(got), err)
	}
	if r, err := events.Parse([]byte(localstack.SQSEvent(url, got).Records[0].Body)); err != nil || r.Relay == nil || r.Relay.Region != "ap-south-1" {
		t.Errorf("sent %+v (%v), want ap-south-1's relay", r, err)
	}
}

// TestStagedArchiveWhoseRelayIsUnsent: an archive staged whose direct
// region has neither its copy nor its relay message is counted and said
// staged (it is, and replicated), with the relay's failure at warn; its
// items fail, so their messages come back to stage it again. It was said
// "archive not staged" and counted failed.
func TestStagedArchiveWhoseRelayIsUnsent(t *testing.T) {
	env, cfg, _ := deployDirect(t, "relayunsent", nil)
	_, src, dst := stackClients(t, env)
	core, logs := observer.New(zap.InfoLevel)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: queue.New(refusingSends{}, "q"), S3: src, Log: zap.New(core),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	w.coolOn("eu-west-1", &directFailure{errors.New("connection refused")})
	rule := &cfg.Rules[0]
	var settled error
	e := entry{
		items: []Item{{Ref: events.ObjectRef{Bucket: rule.SourceBucket, Key: "gone"}, Rule: rule, Done: func(err error) { settled = err }}},
		obj: manifest.Object{Bucket: rule.SourceBucket, Key: "gone", Sequencer: "0A", LastModified: time.Now().UTC(), Delete: true,
			Destinations: []manifest.Destination{{Region: "eu-west-1", Bucket: rule.Destinations[0].Bucket, Key: "gone"}}},
	}
	w.packPart(context.Background(), rule, []entry{e}, time.Now(), w.Log)
	if n := testutil.ToFloat64(w.Metrics.Archives.WithLabelValues(rule.ID, "staged")); n != 1 {
		t.Errorf("%v archives counted staged, want 1", n)
	}
	if n := testutil.ToFloat64(w.Metrics.Archives.WithLabelValues(rule.ID, "failed")); n != 0 {
		t.Errorf("%v archives counted failed, want 0: it is staged", n)
	}
	if n := logs.FilterMessageSnippet("not staged").Len(); n != 0 {
		t.Errorf("%d lines say the staged archive is not staged", n)
	}
	if n := logs.FilterMessageSnippet("neither its copy nor a relay message").FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warn lines say the direct region has neither its copy nor a relay message, want 1", n)
	}
	if !errors.Is(settled, errDenied) {
		t.Errorf("its item settled with %v, want the refused relay (its message comes back)", settled)
	}
}
