// Package queue wraps one SQS queue for xrc's workers: long-poll receive,
// batch delete and batch visibility changes, with per-message failures
// reported rather than lost. What to do with a message (hold it, extend it,
// acknowledge or release it) is package worker's business.
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
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// MaxBatch is the most messages SQS takes in one batch call; Delete and
// ChangeVisibility split longer lists into calls of this size, several at
// once.
const MaxBatch = 10

// Message is one received SQS message.
type Message struct {
	ID            string
	Body          string
	ReceiptHandle string
	ReceiveCount  int // 1 on first delivery
	// SentAt is when the message entered the queue, on this machine's
	// clock: SQS stamps it with its own, which a host's may be minutes
	// apart from (Queue.Receive converts it).
	SentAt time.Time
	// ReceivedAt is when this receive began, on this machine's clock
	// (zero when unknown): SQS hides a message at most MaxVisibility from
	// its receive, however often it is extended.
	ReceivedAt time.Time
	// Deferred is how often its body was sent again, its work undone for
	// a stop or a deadline (SendAgainAll, DeferredAttribute).
	Deferred int
}

// DeferredAttribute is the message attribute that counts how often a
// message's body was sent again (SendAgainAll).
const DeferredAttribute = "xrc-deferred"

// MaxVisibility is the longest SQS hides a message from its receive:
// a change of visibility past it is refused (InvalidParameterValue).
const MaxVisibility = 12 * time.Hour

// visibilityFor is the visibility to ask for m at now in place of d: d,
// or what is left of MaxVisibility since m's receive, less a margin for
// the call, in whole seconds as SQS takes it (under a second left is none:
// sent, it would be a 0, a release). A heartbeat asking for more would be
// refused, and that refusal read as a lost receipt would cut work still
// held.
func visibilityFor(d time.Duration, m Message, now time.Time) time.Duration {
	if m.ReceivedAt.IsZero() {
		return d
	}
	left := MaxVisibility - now.Sub(m.ReceivedAt) - time.Minute
	return max(min(d, left), 0).Truncate(time.Second)
}

// Queue is one SQS queue.
type Queue struct {
	api API
	url string
	// skew is this machine's clock less SQS's, in nanoseconds, as the
	// last first receive measured it.
	skew atomic.Int64
}

// New returns a Queue for url.
func New(api API, url string) *Queue { return &Queue{api: api, url: url} }

// URL returns the queue URL.
func (q *Queue) URL() string { return q.url }

// Receive long-polls for up to max (<= 10) messages, waiting up to wait, and
// hides them for visibility. It makes one attempt; the caller retries. A
// retry inside the SDK would start a new long poll under the caller's
// deadline, which could then cut it while SQS goes on filling it, with
// messages nobody reads, hidden for their visibility timeout
// (aws-sdk-go-v2#2068).
func oneAttempt(o *sqs.Options) { o.RetryMaxAttempts = 1 }

func (q *Queue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]Message, error) {
	start := time.Now() // before SQS's receive, which the cap counts from
	out, err := q.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(q.url),
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(wait / time.Second),
		VisibilityTimeout:   int32(visibility / time.Second),
		//lint:ignore SA1019 the local stack's SQS only honours the legacy field; AWS accepts both.
		AttributeNames:              []types.QueueAttributeName{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{DeferredAttribute},
	}, oneAttempt)
	if err != nil {
		return nil, fmt.Errorf("receiving from %s: %w", q.url, err)
	}
	now := time.Now()
	msgs := make([]Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msg := Message{
			ID:            aws.ToString(m.MessageId),
			Body:          aws.ToString(m.Body),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
			ReceivedAt:    start,
		}
		msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if a, ok := m.MessageAttributes[DeferredAttribute]; ok {
			msg.Deferred, _ = strconv.Atoi(aws.ToString(a.StringValue))
		}
		if first, ok := millis(m.Attributes, types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp); ok && msg.ReceiveCount == 1 && now.Sub(first).Abs() < time.Hour {
			// Received first just now, by SQS's clock. (An hour off is
			// no clock: a stamp of another meaning.)
			q.skew.Store(int64(now.Sub(first)))
		}
		if sent, ok := millis(m.Attributes, types.MessageSystemAttributeNameSentTimestamp); ok {
			msg.SentAt = sent
		}
		msgs = append(msgs, msg)
	}
	for i := range msgs {
		if !msgs[i].SentAt.IsZero() {
			msgs[i].SentAt = msgs[i].SentAt.Add(time.Duration(q.skew.Load()))
		}
	}
	return msgs, nil
}

// millis reads a message attribute holding Unix milliseconds.
func millis(attrs map[string]string, name types.MessageSystemAttributeName) (time.Time, bool) {
	ms, err := strconv.ParseInt(attrs[string(name)], 10, 64)
	return time.UnixMilli(ms), err == nil
}

// Failure is one message a batch call could not act on.
type Failure struct {
	Message Message
	Code    string // SQS error code, e.g. ReceiptHandleIsInvalid
	Err     error
}

// ReceiptGone reports a failure no retry can fix: the receipt handle is no
// longer valid (the visibility timeout ran out and the message was received
// again, or it was deleted).
func (f Failure) ReceiptGone() bool {
	switch f.Code {
	case "ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight":
		return true
	case "InvalidParameterValue":
		// An expired receipt ("Value ... for parameter ReceiptHandle is
		// invalid. Reason: The receipt handle has expired."), but also a
		// visibility past MaxVisibility, whose receipt is still good.
		msg := ""
		if f.Err != nil {
			msg = strings.ToLower(f.Err.Error())
		}
		return strings.Contains(msg, "receipthandle") || strings.Contains(msg, "receipt handle")
	}
	return false
}

// Send adds a message of body to the queue, visible after delay (SQS
// takes up to 15 minutes), carrying deferred (DeferredAttribute) when
// above 0: a message sent again for a reason of its own keeps the count
// of its deferrals.
func (q *Queue) Send(ctx context.Context, body string, delay time.Duration, deferred int) error {
	in := &sqs.SendMessageInput{QueueUrl: aws.String(q.url), MessageBody: aws.String(body),
		DelaySeconds: int32(min(delay, 15*time.Minute) / time.Second)}
	if deferred > 0 {
		in.MessageAttributes = deferredOnce(Message{Deferred: deferred - 1})
	}
	_, err := q.api.SendMessage(ctx, in)
	if err != nil {
		return fmt.Errorf("sending a message to %s: %w", q.url, err)
	}
	return nil
}

// SendAgainAll sends each of msgs' bodies again as a new message, visible
// after delay (up to 15 minutes: a stopping worker's long polls in flight
// must not take them back), its DeferredAttribute one more than its own:
// for work on its last receive that a stop or an invocation's deadline
// left undone, which would otherwise reach the DLQ for that alone; the
// caller then acknowledges the old ones. Ten to a SendMessageBatch (within
// SQS's batch size), several calls at once. It returns the messages not
// sent, and an error for calls that failed as a whole.
func (q *Queue) SendAgainAll(ctx context.Context, delay time.Duration, msgs ...Message) ([]Failure, error) {
	return q.batchChunks(ctx, "sending again", bySize(msgs, MaxBatchBytes), func(chunk []Message) (answer, error) {
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.Body),
				DelaySeconds: int32(min(delay, 15*time.Minute) / time.Second), MessageAttributes: deferredOnce(m)})
		}
		out, err := q.api.SendMessageBatch(ctx, in)
		if err != nil {
			return answer{}, err
		}
		return answerOf(out.Successful, out.Failed, func(e types.SendMessageBatchResultEntry) *string { return e.Id }), nil
	})
}

// MaxBatchBytes bounds the bodies of one SendMessageBatch: SQS refuses a
// batch whose messages' sizes add up to more than a message may hold
// (256 KiB, the limit it has long had), attributes included.
const MaxBatchBytes = 256<<10 - 1<<10

// bySize yields msgs in chunks of at most MaxBatch messages whose bodies
// add up to at most max bytes (a longer one alone).
func bySize(msgs []Message, max int) iter.Seq[[]Message] {
	return func(yield func([]Message) bool) {
		start, size := 0, 0
		for i, m := range msgs {
			if i > start && (i-start == MaxBatch || size+len(m.Body) > max) {
				if !yield(msgs[start:i]) {
					return
				}
				start, size = i, 0
			}
			size += len(m.Body)
		}
		if start < len(msgs) {
			yield(msgs[start:])
		}
	}
}

// deferredOnce is m's DeferredAttribute, one more.
func deferredOnce(m Message) map[string]types.MessageAttributeValue {
	return map[string]types.MessageAttributeValue{DeferredAttribute: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.Deferred + 1))}}
}

// Delete acknowledges msgs: call it only once their work is durable. It
// returns the messages SQS refused, and an error for calls that failed as a
// whole (their messages are among the failures too).
func (q *Queue) Delete(ctx context.Context, msgs ...Message) ([]Failure, error) {
	return q.batch(ctx, "deleting", msgs, func(chunk []Message) (answer, error) {
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.url)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle)})
		}
		out, err := q.api.DeleteMessageBatch(ctx, in)
		if err != nil {
			return answer{}, err
		}
		return answerOf(out.Successful, out.Failed, func(e types.DeleteMessageBatchResultEntry) *string { return e.Id }), nil
	})
}

// ChangeVisibility hides msgs for d from now (0 makes them visible at once:
// a release). Failures as for Delete; a message SQS will hide no longer
// (MaxVisibility from its receive) is not sent but failed with
// CodeHeldPastMaxVisibility.
func (q *Queue) ChangeVisibility(ctx context.Context, d time.Duration, msgs ...Message) ([]Failure, error) {
	var past []Failure
	if d > 0 {
		// Held to the end of what SQS grants: asking for 0 would show it
		// to other tasks at once; left alone it shows at the cap. Said,
		// as other tasks may then take work still under way.
		now := time.Now()
		kept := make([]Message, 0, len(msgs))
		for _, m := range msgs {
			if visibilityFor(d, m, now) > 0 {
				kept = append(kept, m)
				continue
			}
			past = append(past, Failure{Message: m, Code: CodeHeldPastMaxVisibility,
				Err: fmt.Errorf("changing visibility of message %s: held %s since its receive, within a minute of SQS's %s: other tasks can receive it again", m.ID, now.Sub(m.ReceivedAt).Round(time.Second), MaxVisibility)})
		}
		msgs = kept
	}
	failures, err := q.batch(ctx, "changing visibility of", msgs, func(chunk []Message) (answer, error) {
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q.url)}
		now := time.Now()
		for i, m := range chunk {
			v := visibilityFor(d, m, now)
			if d > 0 {
				// At least the second it had when it was kept: time spent
				// waiting for this call must not turn a beat into a
				// release (the minute's margin covers the second).
				v = max(v, time.Second)
			}
			in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: int32(v / time.Second),
			})
		}
		out, err := q.api.ChangeMessageVisibilityBatch(ctx, in)
		if err != nil {
			return answer{}, err
		}
		return answerOf(out.Successful, out.Failed, func(e types.ChangeMessageVisibilityBatchResultEntry) *string { return e.Id }), nil
	})
	return append(failures, past...), err
}

// CodeHeldPastMaxVisibility is the Failure code of a message a heartbeat
// could not hide any longer: held for MaxVisibility (less a minute) since
// its receive. Its receipt is still good.
const CodeHeldPastMaxVisibility = "HeldPastMaxVisibility"

// CodeUnmatchedEntry is the Failure code of a message a batch call
// answered neither way: no successful entry and no failed one named it (a
// store that drops or renames entries).
const CodeUnmatchedEntry = "UnmatchedBatchEntry"

// BatchCalls bounds the batch calls one Delete or ChangeVisibility makes
// at once: thousands of messages (a heartbeat of a full worker, a release
// at shutdown or at a Lambda's deadline) one call after another could take
// longer than the visibility timeout or the time left.
const BatchCalls = 8

// answer is what a batch call said of its entries: the ids it did and
// those it failed.
type answer struct {
	ok     []string
	failed []types.BatchResultErrorEntry
}

// answerOf is a batch call's answer: the ids of its successful entries
// (each call's own type) and its failed ones.
func answerOf[E any](ok []E, failed []types.BatchResultErrorEntry, id func(E) *string) answer {
	a := answer{failed: failed}
	for _, e := range ok {
		a.ok = append(a.ok, aws.ToString(id(e)))
	}
	return a
}

func (q *Queue) batch(ctx context.Context, op string, msgs []Message, call func([]Message) (answer, error)) ([]Failure, error) {
	return q.batchChunks(ctx, op, slices.Chunk(msgs, MaxBatch), call)
}

// batchChunks is batch over chunks of at most MaxBatch messages each.
func (q *Queue) batchChunks(ctx context.Context, op string, chunks iter.Seq[[]Message], call func([]Message) (answer, error)) ([]Failure, error) {
	var (
		mu       sync.Mutex
		failures []Failure
		errs     []error
		wg       sync.WaitGroup
		calls    = make(chan struct{}, BatchCalls)
	)
	for chunk := range chunks {
		calls <- struct{}{}
		wg.Go(func() {
			defer func() { <-calls }()
			a, err := call(chunk)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				err = fmt.Errorf("%s %d messages in %s: %w", op, len(chunk), q.url, err)
				errs = append(errs, err)
				for _, m := range chunk {
					failures = append(failures, Failure{Message: m, Err: err})
				}
				return
			}
			failures = append(failures, failuresOf(op, chunk, a)...)
		})
	}
	wg.Wait()
	return failures, errors.Join(errs...)
}

// failuresOf maps a batch call's answer to chunk's messages by their ids
// (indexes). A message is done only if an entry said so and none failed
// it: one answered neither way (a store that drops or renames entries)
// fails with CodeUnmatchedEntry, as a delete or a visibility change taken
// for done would leave a message acknowledged or hidden without it, a send
// its original deleted with no copy; tried again, they do no harm.
func failuresOf(op string, chunk []Message, a answer) []Failure {
	index := func(id string) int {
		i, err := strconv.Atoi(id)
		if err != nil || i < 0 || i >= len(chunk) {
			return -1
		}
		return i
	}
	done := make([]bool, len(chunk))
	for _, id := range a.ok {
		if i := index(id); i >= 0 {
			done[i] = true
		}
	}
	failed := make([]*types.BatchResultErrorEntry, len(chunk))
	var strays []string // failed entries naming no message of chunk
	for k, f := range a.failed {
		if i := index(aws.ToString(f.Id)); i >= 0 {
			failed[i], done[i] = &a.failed[k], false
			continue
		}
		strays = append(strays, fmt.Sprintf("id %q: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message)))
	}
	var failures []Failure
	for i, m := range chunk {
		switch {
		case failed[i] != nil:
			code := aws.ToString(failed[i].Code)
			failures = append(failures, Failure{Message: m, Code: code,
				Err: fmt.Errorf("%s message %s: %s: %s", op, m.ID, code, aws.ToString(failed[i].Message))})
		case !done[i]:
			// Not a stray entry's code: a ReceiptHandleIsInvalid would
			// have the message taken for lost.
			err := fmt.Errorf("%s message %s: the batch call's answer names it neither done nor failed", op, m.ID)
			if len(strays) > 0 {
				err = fmt.Errorf("%w (failed entries naming no message of the call: %s)", err, strings.Join(strays, "; "))
			}
			failures = append(failures, Failure{Message: m, Code: CodeUnmatchedEntry, Err: err})
		}
	}
	return failures
}
