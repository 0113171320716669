package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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
	q := queue.New(client, url)
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
