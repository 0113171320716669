package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// batcher is the bridge's -async mode: a record's POST is answered once
// the record is queued here, and one goroutine sends the queue to SQS ten
// messages per SendMessageBatch, in the order the records came (a record
// SQS refuses goes again after the rest of its batch). MinIO
// without a queue dir (bench-e2e) posts each event from one of as many
// senders as it has CPUs, each waiting for its answer; answering after a
// SendMessage per record made the bridge and SQS the pipeline's slowest
// stage on a loaded 2-vCPU box, seconds behind the uploads. The price: a
// record queued here is lost if the bridge dies before sending it, as it
// would be by MinIO without a queue dir if the bridge were down. SQS
// failures are retried here, without end, until close gives up.
type batcher struct {
	sqs     sqsAPI
	log     *slog.Logger
	in      chan message
	done    chan struct{}
	backoff time.Duration // the first retry's wait (then nextWait)
}

// message is one SQS message to send, with what its log line names.
type message struct {
	queueURL, body     string
	event, bucket, key string
}

// The bridge's retries, of SQS here and of replica reads (laterReplicas):
// the first after firstWait, each next one twice as long, up to 5 s.
const firstWait = 100 * time.Millisecond

func nextWait(wait time.Duration) time.Duration { return min(2*wait, 5*time.Second) }

// Batch limits: SQS takes ten messages and 256 KiB per SendMessageBatch.
const (
	batchMessages = 10
	batchBytes    = 256 << 10
)

// newBatcher starts a batcher that holds at most depth records before add
// blocks (and MinIO waits).
func newBatcher(client sqsAPI, log *slog.Logger, depth int) *batcher {
	b := &batcher{sqs: client, log: log, in: make(chan message, depth), done: make(chan struct{}), backoff: firstWait}
	go b.loop()
	return b
}

// add queues m for sending.
func (b *batcher) add(ctx context.Context, m message) error {
	select {
	case b.in <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops taking records (no add may follow) and waits until every
// queued one is sent, or ctx ends.
func (b *batcher) close(ctx context.Context) error {
	close(b.in)
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("about %d records not sent to SQS: %w", len(b.in), ctx.Err())
	}
}

func (b *batcher) loop() {
	defer close(b.done)
	var next *message // taken from in, for the batch after this one
	for {
		var batch []message
		if next != nil {
			batch, next = append(batch, *next), nil
		} else {
			m, ok := <-b.in
			if !ok {
				return
			}
			batch = append(batch, m)
		}
		// Whatever else is already waiting joins the batch: a batch never
		// waits for records to come.
		size := len(batch[0].body)
	fill:
		for len(batch) < batchMessages {
			select {
			case m, ok := <-b.in:
				if !ok {
					break fill
				}
				if m.queueURL != batch[0].queueURL || size+len(m.body) > batchBytes {
					next = &m
					break fill
				}
				batch = append(batch, m)
				size += len(m.body)
			default:
				break fill
			}
		}
		b.send(batch)
	}
}

// send delivers batch to its queue, retrying what fails, or drops it if
// the queue is gone (as S3 does).
func (b *batcher) send(batch []message) {
	wait := b.backoff
	for len(batch) > 0 {
		entries := make([]types.SendMessageBatchRequestEntry, len(batch))
		for i := range batch {
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: &batch[i].body}
		}
		out, err := b.sqs.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &batch[0].queueURL, Entries: entries})
		var gone *types.QueueDoesNotExist
		switch {
		case errors.As(err, &gone):
			b.log.Warn("dropping records for missing queue", "records", len(batch), "queue", batch[0].queueURL)
			return
		case err != nil:
			b.log.Error("sending records to SQS; retrying", "records", len(batch), "queue", batch[0].queueURL, "err", err)
			time.Sleep(wait)
			wait = nextWait(wait)
			continue
		}
		failed := map[int]bool{}
		for _, f := range out.Failed {
			if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < len(batch) {
				failed[i] = true
			}
		}
		var again []message
		for i, m := range batch {
			if failed[i] {
				again = append(again, m)
				continue
			}
			b.log.Info("forwarded", "event", m.event, "bucket", m.bucket, "key", m.key, "queue", m.queueURL)
		}
		if len(again) > 0 {
			b.log.Error("SQS refused records; retrying", "records", len(again), "queue", batch[0].queueURL, "first", aws.ToString(out.Failed[0].Message))
			time.Sleep(wait)
			wait = nextWait(wait)
		}
		batch = again
	}
}
