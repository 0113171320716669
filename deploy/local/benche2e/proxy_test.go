//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// Through the proxy, a long poll for ten messages is answered once any
// message is ready, as AWS answers it, with the others that came with it;
// the stack's SQS alone would hold it for its whole wait. (The 20 s wait
// against a 10 s deadline tells the two apart; nothing here times speed.)
func TestSQSProxyAnswersLongPollsEarly(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	p, err := newSQSProxy(env.SQSEndpoint, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := p.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proxied := sqs.New(direct.Options(), func(o *sqs.Options) { o.BaseEndpoint = aws.String("http://" + c.addr) })
	q, err := direct.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("proxy-test-%d", time.Now().UnixNano()))})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl})

	// Ready before the poll: one short poll answers.
	send := func(n int) {
		var es []sqstypes.SendMessageBatchRequestEntry
		for i := range n {
			es = append(es, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprint("m", i))})
		}
		if _, err := direct.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: es}); err != nil {
			t.Error(err)
		}
	}
	receive := func(wait int32) int {
		t.Helper()
		pollCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		// No retries: a failed answer must fail the test.
		out, err := proxied.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: wait},
			func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
		if err != nil {
			t.Fatalf("long poll through the proxy: %v", err)
		}
		for _, m := range out.Messages {
			if _, err := direct.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		return len(out.Messages)
	}
	// Nothing comes: an empty answer (local-aws-sqs's is an empty body).
	if n := receive(1); n != 0 {
		t.Errorf("empty queue: got %d messages", n)
	}
	send(3)
	if n := receive(20); n != 3 {
		t.Errorf("messages ready before the poll: got %d, want 3", n)
	}
	// Arriving during the poll: answered with the first, and whatever came
	// with it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		send(3)
	}()
	got := receive(20)
	if got == 0 {
		t.Fatal("a long poll answered without the messages sent during it")
	}
	for got < 3 {
		got += receive(20)
	}
}
