package queue_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
)

// TestReleaseReachesDLQ checks the contract the workers rely on: a released
// message comes back with a higher receive count and, past the redrive
// policy's maxReceiveCount, lands in the dead-letter queue instead.
func TestReleaseReachesDLQ(t *testing.T) {
	ctx := context.Background()
	client, url, dlq := newQueue(t)
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	q := queue.New(client, url)
	// AWS delivers a message maxReceiveCount times before moving it;
	// local-aws-sqs moves it when it is released on that last delivery.
	// Both must redeliver with a growing count and end in the DLQ.
	last := 0
	for delivery := 1; delivery <= 2; delivery++ {
		m := receiveOne(t, q)
		if m.ReceiveCount <= last || m.Body != "poison" {
			t.Fatalf("delivery %d: receive count %d after %d: %+v", delivery, m.ReceiveCount, last, m)
		}
		last = m.ReceiveCount
		if failed, err := q.ChangeVisibility(ctx, 0, m); err != nil || len(failed) > 0 {
			t.Fatal(err, failed)
		}
	}
	if got, _ := q.Receive(ctx, 10, time.Second, 30*time.Second); len(got) == 1 {
		if _, err := q.ChangeVisibility(ctx, 0, got...); err != nil {
			t.Fatal(err)
		}
	}
	d := queue.New(client, dlq)
	m := receiveOne(t, d)
	if m.Body != "poison" {
		t.Fatalf("DLQ holds %q", m.Body)
	}
	if failed, err := d.Delete(ctx, m); err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	// A receipt SQS no longer honours is reported per message, as gone.
	failed, err := d.Delete(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) > 0 && !failed[0].ReceiptGone() {
		t.Errorf("deleting twice: %+v, want a gone receipt or success", failed[0])
	}
}

// TestHeartbeatsAreNoReceives: extending a held message's visibility,
// however often, is no receive: it neither counts towards the DLQ nor
// moves the message there (local-aws-sqs did both; deploy/local/sqs.cjs
// fixes it, as SQS behaves).
func TestHeartbeatsAreNoReceives(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t) // maxReceiveCount 3
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("long work")}); err != nil {
		t.Fatal(err)
	}
	q := queue.New(client, url)
	m := receiveOne(t, q)
	for range 5 {
		if failed, err := q.ChangeVisibility(ctx, 30*time.Second, m); err != nil || len(failed) > 0 {
			t.Fatal(err, failed)
		}
	}
	if failed, err := q.ChangeVisibility(ctx, 0, m); err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	if again := receiveOne(t, q); again.ReceiveCount != 2 {
		t.Errorf("received again with count %d after 5 heartbeats, want 2", again.ReceiveCount)
	}
}

// TestHeldPastMaxVisibility: a heartbeat of a message held to SQS's
// 12-hour cap is not sent as a release (visibility 0, which would show it
// to other tasks at once) but failed, said, its receipt still good.
func TestHeldPastMaxVisibility(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("very long work")}); err != nil {
		t.Fatal(err)
	}
	q := queue.New(client, url)
	m := receiveOne(t, q)
	m.ReceivedAt = time.Now().Add(-queue.MaxVisibility + 30*time.Second)
	failed, err := q.ChangeVisibility(ctx, 30*time.Second, m)
	if err != nil || len(failed) != 1 || failed[0].Code != queue.CodeHeldPastMaxVisibility || failed[0].ReceiptGone() ||
		!strings.Contains(failed[0].Err.Error(), "other tasks can receive it again") {
		t.Fatalf("heartbeat at the cap: %v, %+v; want one %s failure, receipt kept", err, failed, queue.CodeHeldPastMaxVisibility)
	}
	if msgs, err := q.Receive(ctx, 1, time.Second, 30*time.Second); err != nil || len(msgs) != 0 {
		t.Fatalf("the message was shown to others at once: %d received, %v", len(msgs), err)
	}
	if failed, err := q.ChangeVisibility(ctx, 0, m); err != nil || len(failed) > 0 {
		t.Fatal("releasing it:", err, failed)
	}
	receiveOne(t, q)
}

func receiveOne(t *testing.T, q *queue.Queue) queue.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := q.Receive(context.Background(), 1, time.Second, 30*time.Second)
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

// TestReceiveMakesOneAttempt: a failed long poll is not retried inside
// the SDK, where a new poll under the caller's deadline could be cut while
// SQS fills it. (A server that fails every call; the SDK would otherwise
// make its five attempts.)
func TestReceiveMakesOneAttempt(t *testing.T) {
	url, calls := localstack.Failing(t, "com.amazonaws.sqs#InternalError")
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: &url, Credentials: localstack.NoCredentials, Retryer: localstack.FiveAttempts()})
	if _, err := queue.New(client, url+"/123456789012/q").Receive(context.Background(), 10, time.Second, 30*time.Second); err == nil {
		t.Fatal("a failing receive returned no error")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d receive attempts, want 1", n)
	}
}

// TestBatchCallsRunTogether: a visibility change of many messages makes
// its calls several at once, not one after another (a heartbeat of
// thousands of held messages would outlast the visibility timeout), and
// reports every message's failure.
func TestBatchCallsRunTogether(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	api := &concurrentCalls{API: client}
	msgs := make([]queue.Message, 100)
	for i := range msgs {
		msgs[i] = queue.Message{ID: fmt.Sprint(i), ReceiptHandle: fmt.Sprintf("gone-%d", i)}
	}
	failures, _ := queue.New(api, url).ChangeVisibility(ctx, time.Minute, msgs...)
	if len(failures) != len(msgs) {
		t.Errorf("%d failures for %d unknown receipts", len(failures), len(msgs))
	}
	if n := api.calls.Load(); n != 10 {
		t.Errorf("%d calls for 100 messages, want 10", n)
	}
	if most := api.most.Load(); most < 2 || most > 8 {
		t.Errorf("at most %d calls at once, want 2 to 8", most)
	}
}

// concurrentCalls counts visibility changes and the most in flight at
// once; each takes at least 50 ms.
type concurrentCalls struct {
	queue.API
	calls, now, most atomic.Int32
}

func (c *concurrentCalls) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	c.calls.Add(1)
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	time.Sleep(50 * time.Millisecond)
	return c.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// newQueue makes a queue (and its DLQ, maxReceiveCount 3) on the local
// stack for the test.
func newQueue(t *testing.T) (client *sqs.Client, url, dlq string) {
	t.Helper()
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := localstack.UniqueName("queue")
	url, dlq, err = env.EnsureQueue(ctx, name, 3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteQueue(context.Background(), name) })
	return client, url, dlq
}

// behindClock answers receives as an SQS whose clock is behind this
// machine's by by: its timestamps earlier.
type behindClock struct {
	queue.API
	by time.Duration
}

func (b behindClock) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := b.API.ReceiveMessage(ctx, in, optFns...)
	if out != nil {
		for _, m := range out.Messages {
			for _, name := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
				if ms, err := strconv.ParseInt(m.Attributes[name], 10, 64); err == nil {
					m.Attributes[name] = strconv.FormatInt(ms-b.by.Milliseconds(), 10)
				}
			}
		}
	}
	return out, err
}

// TestSentAtOnThisClock: when a message entered the queue is given on this
// machine's clock, not SQS's: the age of a message (how far behind the
// queue a worker is) does not read minutes off on a host whose clock is.
func TestSentAtOnThisClock(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	sent := time.Now()
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	msgs, err := queue.New(behindClock{API: client, by: 3 * time.Minute}, url).Receive(ctx, 10, 5*time.Second, 30*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive = %d messages, %v", len(msgs), err)
	}
	if d := msgs[0].SentAt.Sub(sent); d.Abs() > 10*time.Second {
		t.Errorf("SentAt %v from when it was sent, on an SQS clock 3 minutes behind", d)
	}
	// Received by this clock too, no later than the receive: the 12 hours
	// SQS hides a message at most count from it (MaxVisibility).
	if r := msgs[0].ReceivedAt; r.Before(sent) || r.After(time.Now()) {
		t.Errorf("ReceivedAt %v, want between the send (%v) and now", r, sent)
	}
}

// TestVisibilityChangeKeepsTheFirstReceive: a change of visibility leaves
// ApproximateFirstReceiveTimestamp as the first receive stamped it (the
// clock skew Receive measures reads it), as SQS does.
func TestVisibilityChangeKeepsTheFirstReceive(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	recv := func() types.Message {
		for range 50 {
			out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1,
				//lint:ignore SA1019 the local stack's SQS only honours the legacy field, as in Queue.Receive.
				AttributeNames: []types.QueueAttributeName{"All"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) > 0 {
				return out.Messages[0]
			}
		}
		t.Fatal("none")
		return types.Message{}
	}
	m := recv()
	first := m.Attributes["ApproximateFirstReceiveTimestamp"]
	time.Sleep(1100 * time.Millisecond) // stamps are in milliseconds
	client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 30})
	client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	m2 := recv()
	t.Logf("first %s, then %s (count %s)", first, m2.Attributes["ApproximateFirstReceiveTimestamp"], m2.Attributes["ApproximateReceiveCount"])
	if m2.Attributes["ApproximateFirstReceiveTimestamp"] != first {
		t.Errorf("ApproximateFirstReceiveTimestamp moved by a visibility change")
	}
}

// TestSendAgainCountsDeferrals: a message sent again comes back as a new
// message (its first receive) with the same body and one more deferral,
// as an event source mapping hands it over (localstack.SQSEvent).
func TestSendAgainCountsDeferrals(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	q := queue.New(client, url)
	m := queue.Message{ID: "m", Body: `{"Records":[]}`}
	for want := 1; want <= 2; want++ {
		if failed, err := q.SendAgainAll(ctx, 0, m); err != nil || len(failed) > 0 {
			t.Fatal(err, failed)
		}
		got, err := localstack.Receive(ctx, client, url, 1, 5*time.Second, time.Minute)
		if err != nil || len(got) != 1 {
			t.Fatalf("received %d (%v)", len(got), err)
		}
		rec := localstack.SQSEvent(url, got).Records[0]
		a := rec.MessageAttributes[queue.DeferredAttribute]
		if rec.Body != m.Body || a.StringValue == nil || *a.StringValue != strconv.Itoa(want) || rec.Attributes["ApproximateReceiveCount"] != "1" {
			t.Fatalf("sent again: body %q, %s %v, receive %s; want the body, %d, 1", rec.Body, queue.DeferredAttribute, a.StringValue, rec.Attributes["ApproximateReceiveCount"], want)
		}
		m = queue.Message{ID: rec.MessageId, Body: rec.Body, Deferred: want}
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: got[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSendKeepsDeferrals: a message sent for a reason of its own (a relay
// deferred for capacity) keeps the deferrals it came with, so that those
// of stops stay bounded; one that has none carries none.
func TestSendKeepsDeferrals(t *testing.T) {
	ctx := context.Background()
	client, url, _ := newQueue(t)
	q := queue.New(client, url)
	for _, deferred := range []int{0, 3} {
		if err := q.Send(ctx, "b", 0, deferred); err != nil {
			t.Fatal(err)
		}
		got, err := q.Receive(ctx, 1, 5*time.Second, time.Minute)
		if err != nil || len(got) != 1 {
			t.Fatalf("received %d (%v)", len(got), err)
		}
		if got[0].Deferred != deferred {
			t.Errorf("sent with %d deferrals: received with %d", deferred, got[0].Deferred)
		}
		if _, err := q.Delete(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
	}
}

// droppedEntry answers a SendMessageBatch without the first entry, as a
// store that drops one might.
type droppedEntry struct{ queue.API }

func (d droppedEntry) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, o ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out, err := d.API.SendMessageBatch(ctx, in, o...)
	if err == nil && len(out.Successful) > 0 {
		out.Successful = out.Successful[1:]
	}
	return out, err
}

// droppedDelete answers a DeleteMessageBatch without the first entry.
type droppedDelete struct{ queue.API }

func (d droppedDelete) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out, err := d.API.DeleteMessageBatch(ctx, in, o...)
	if err == nil && len(out.Successful) > 0 {
		out.Successful = out.Successful[1:]
	}
	return out, err
}

// TestDeleteCountsUnansweredEntries: an entry a DeleteMessageBatch answers
// neither way is not taken for deleted (counted acknowledged, its message
// would come back with nothing said).
func TestDeleteCountsUnansweredEntries(t *testing.T) {
	client, url, _ := newQueue(t)
	ctx := context.Background()
	for _, body := range []string{"a", "b"} {
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := localstack.Receive(ctx, client, url, 2, 5*time.Second, time.Minute)
	if err != nil || len(got) != 2 {
		t.Fatalf("received %d (%v)", len(got), err)
	}
	var msgs []queue.Message
	for _, m := range got {
		msgs = append(msgs, queue.Message{ID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle)})
	}
	failures, err := queue.New(droppedDelete{client}, url).Delete(ctx, msgs...)
	if err != nil || len(failures) != 1 || failures[0].Code != queue.CodeUnmatchedEntry {
		t.Fatalf("Delete = %+v, %v; want the unanswered entry failed", failures, err)
	}
}

// TestSendAgainAllCountsUnansweredEntries: an entry a SendMessageBatch
// answers neither way is not taken for sent (its original would be
// deleted with no copy).
func TestSendAgainAllCountsUnansweredEntries(t *testing.T) {
	client, url, _ := newQueue(t)
	q := queue.New(droppedEntry{client}, url)
	failures, err := q.SendAgainAll(context.Background(), 0, queue.Message{ID: "a", Body: "a", ReceiptHandle: "ra"}, queue.Message{ID: "b", Body: "b", ReceiptHandle: "rb"})
	if err != nil || len(failures) != 1 || failures[0].Code != queue.CodeUnmatchedEntry {
		t.Fatalf("SendAgainAll = %+v, %v; want the unanswered entry failed", failures, err)
	}
}
