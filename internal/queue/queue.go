// Package queue wraps one SQS queue for xrc's workers: long-poll receive,
// delete only after success, and a visibility heartbeat that keeps in-flight
// messages hidden while their work takes longer than the queue's timeout.
//
// Nothing here deletes a message on failure: a message that cannot be
// processed is released (made visible again, possibly after a delay) and SQS
// moves it to the dead-letter queue once its receive count passes the
// redrive policy's maxReceiveCount.
package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// API is the part of the SQS client a Queue uses; *sqs.Client satisfies it.
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Message is one received SQS message.
type Message struct {
	ID            string
	Body          string
	ReceiptHandle string
	ReceiveCount  int       // 1 on first delivery
	SentAt        time.Time // when the message entered the queue
}

// Queue is one SQS queue.
type Queue struct {
	api        API
	url        string
	visibility time.Duration

	mu       sync.Mutex
	inflight map[string]Message // by receipt handle, extended by Heartbeat
}

// New returns a Queue for url whose messages stay hidden for visibility while
// held.
func New(api API, url string, visibility time.Duration) *Queue {
	return &Queue{api: api, url: url, visibility: visibility, inflight: map[string]Message{}}
}

// URL returns the queue URL.
func (q *Queue) URL() string { return q.url }

// Receive long-polls for up to max (<= 10) messages, waiting up to wait. The
// messages returned are held (extended by Heartbeat) until Delete or Release.
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	out, err := q.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(q.url),
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(wait / time.Second),
		VisibilityTimeout:   int32(q.visibility / time.Second),
		//lint:ignore SA1019 the local stack's SQS only honours the legacy field; AWS accepts both.
		AttributeNames:              []types.QueueAttributeName{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return nil, fmt.Errorf("receiving from %s: %w", q.url, err)
	}
	msgs := make([]Message, 0, len(out.Messages))
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range out.Messages {
		msg := Message{
			ID:            aws.ToString(m.MessageId),
			Body:          aws.ToString(m.Body),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
		}
		msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			msg.SentAt = time.UnixMilli(ms)
		}
		q.inflight[msg.ReceiptHandle] = msg
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// Delete acknowledges msgs: call it only once their work is durable.
func (q *Queue) Delete(ctx context.Context, msgs ...Message) error {
	var errs []error
	for chunk := range slices.Chunk(msgs, 10) {
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.url)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle)})
		}
		out, err := q.api.DeleteMessageBatch(ctx, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting %d messages from %s: %w", len(chunk), q.url, err))
			continue
		}
		errs = append(errs, batchErrors("deleting", chunk, out.Failed)...)
		q.forget(chunk)
	}
	return errors.Join(errs...)
}

// Release gives msgs back to the queue, visible again after delay (0 means
// now). Their receive count grows on the next delivery, so a message that
// keeps failing reaches the dead-letter queue.
func (q *Queue) Release(ctx context.Context, delay time.Duration, msgs ...Message) error {
	q.forget(msgs)
	return q.changeVisibility(ctx, delay, msgs)
}

// Backoff spaces out the retries of a failing message by its receive count:
// 2 s, 4 s, 8 s ... up to 5 min, so a dependency that is down is not hammered
// while the message works its way towards the dead-letter queue.
func Backoff(receiveCount int) time.Duration {
	return min(time.Duration(1<<min(max(receiveCount, 1), 9))*time.Second, 5*time.Minute)
}

// Heartbeat extends every held message's visibility each visibility/3 until
// ctx ends, so long batches are not redelivered mid-work. A message whose
// extension fails is dropped from the held set (its receipt is stale).
func (q *Queue) Heartbeat(ctx context.Context) {
	t := time.NewTicker(q.visibility / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.mu.Lock()
			held := make([]Message, 0, len(q.inflight))
			for _, m := range q.inflight {
				held = append(held, m)
			}
			q.mu.Unlock()
			_ = q.changeVisibility(ctx, q.visibility, held)
		}
	}
}

// Held returns how many messages are received and not yet deleted or released.
func (q *Queue) Held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight)
}

func (q *Queue) changeVisibility(ctx context.Context, d time.Duration, msgs []Message) error {
	var errs []error
	for chunk := range slices.Chunk(msgs, 10) {
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q.url)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: int32(d / time.Second),
			})
		}
		out, err := q.api.ChangeMessageVisibilityBatch(ctx, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("changing visibility of %d messages in %s: %w", len(chunk), q.url, err))
			continue
		}
		errs = append(errs, batchErrors("changing visibility of", chunk, out.Failed)...)
	}
	return errors.Join(errs...)
}

func (q *Queue) forget(msgs []Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range msgs {
		delete(q.inflight, m.ReceiptHandle)
	}
}

func batchErrors(op string, chunk []Message, failed []types.BatchResultErrorEntry) []error {
	var errs []error
	for _, f := range failed {
		i, _ := strconv.Atoi(aws.ToString(f.Id))
		id := ""
		if i >= 0 && i < len(chunk) {
			id = chunk[i].ID
		}
		errs = append(errs, fmt.Errorf("%s message %s: %s: %s", op, id, aws.ToString(f.Code), aws.ToString(f.Message)))
	}
	return errs
}
