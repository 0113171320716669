package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
)

// TestReleaseReachesDLQ checks the contract the workers rely on: a released
// message comes back with a higher receive count and, past the redrive
// policy's maxReceiveCount, lands in the dead-letter queue instead.
func TestReleaseReachesDLQ(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := localstack.UniqueName("queue")
	url, dlq, err := env.EnsureQueue(ctx, name, 3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteQueue(context.Background(), name) })
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	q := queue.New(client, url, 30*time.Second)
	// AWS delivers a message maxReceiveCount times before moving it;
	// local-aws-sqs moves it one delivery earlier (and also counts the
	// visibility change). Both must redeliver with a growing count and end
	// in the DLQ.
	last := 0
	for delivery := 1; delivery <= 2; delivery++ {
		m := receiveOne(t, q)
		if m.ReceiveCount <= last || m.Body != "poison" {
			t.Fatalf("delivery %d: receive count %d after %d: %+v", delivery, m.ReceiveCount, last, m)
		}
		last = m.ReceiveCount
		if q.Held() != 1 {
			t.Fatalf("held = %d", q.Held())
		}
		if err := q.Release(ctx, 0, m); err != nil {
			t.Fatal(err)
		}
		if q.Held() != 0 {
			t.Fatalf("held after release = %d", q.Held())
		}
	}
	if got, _ := q.Receive(ctx, 10, time.Second); len(got) == 1 {
		if err := q.Release(ctx, 0, got...); err != nil {
			t.Fatal(err)
		}
	}
	d := queue.New(client, dlq, 30*time.Second)
	m := receiveOne(t, d)
	if m.Body != "poison" {
		t.Fatalf("DLQ holds %q", m.Body)
	}
	if err := d.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func receiveOne(t *testing.T, q *queue.Queue) queue.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := q.Receive(context.Background(), 1, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			return msgs[0]
		}
	}
	t.Fatal("no message within 10s")
	return queue.Message{}
}

func TestBackoff(t *testing.T) {
	for count, want := range map[int]time.Duration{0: 2 * time.Second, 1: 2 * time.Second, 2: 4 * time.Second, 8: 256 * time.Second, 9: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := queue.Backoff(count); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", count, got, want)
		}
	}
}

// TestSettler checks the shared message endings: an invalid body is released
// (never deleted), S3's test event is acknowledged, and settling still works
// when the worker's context is already cancelled (its drain time is over).
func TestSettler(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := localstack.UniqueName("settle")
	url, _, err := env.EnsureQueue(ctx, name, 5, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteQueue(context.Background(), name) })
	q := queue.New(client, url, 30*time.Second)
	reg := prometheus.NewRegistry()
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "m"}, []string{"result"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"kind"})
	reg.MustRegister(msgs, errs)
	s := queue.Settler{Queue: q, Log: zap.NewNop(), Messages: msgs, Errors: errs}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	// One at a time: local-aws-sqs keeps handing back a just-released
	// message ahead of older ones.
	count := func(result string) float64 { return testutil.ToFloat64(msgs.WithLabelValues(result)) }
	for _, body := range []string{`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`, "not json"} {
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
		m := receiveOne(t, q)
		if _, ok := s.Parse(cancelled, m); ok {
			t.Fatalf("%q: Parse left work to do", m.Body)
		}
	}
	if count("test") != 1 || count("acked") != 1 || count("invalid") != 1 || count("released") != 1 {
		t.Errorf("test %v, acked %v, invalid %v, released %v", count("test"), count("acked"), count("invalid"), count("released"))
	}
	// Only the invalid body is still there; the test event was deleted.
	m := receiveOne(t, q)
	if m.Body != "not json" {
		t.Fatalf("redelivered %q, want the invalid body", m.Body)
	}
	s.Ack(ctx, m)
	if got, _ := q.Receive(ctx, 10, time.Second); len(got) != 0 {
		t.Errorf("queue still holds %q", got[0].Body)
	}
}
