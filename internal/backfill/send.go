package backfill

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/events"
)

// batchSize is SQS's most messages per SendMessageBatch.
const batchSize = 10

// sendAttempts bounds the retries of the entries a batch failed.
const sendAttempts = 8

// sender sends synthetic events to the rule's queue.
type sender struct {
	api     QueueAPI
	url     string
	limiter *rate.Limiter // nil: no cap
	dryRun  bool
	log     *zap.Logger
}

func newSender(api QueueAPI, url string, perSecond float64, dryRun bool, log *zap.Logger) *sender {
	s := &sender{api: api, url: url, dryRun: dryRun, log: log}
	if perSecond > 0 {
		// A burst of one batch: a rate under 10/s still sends whole
		// batches, a tenth as often.
		s.limiter = rate.NewLimiter(rate.Limit(perSecond), max(batchSize, int(math.Ceil(perSecond))))
	}
	return s
}

// send sends one message per ref, ten per SendMessageBatch; it returns once
// SQS accepted every one, or with the error that stopped it. Entries a
// batch fails are retried with backoff, except those SQS says are the
// sender's fault (no retry can fix those).
func (s *sender) send(ctx context.Context, refs []events.ObjectRef) error {
	if s.dryRun {
		return nil
	}
	for chunk := range slices.Chunk(refs, batchSize) {
		if s.limiter != nil {
			if err := s.limiter.WaitN(ctx, len(chunk)); err != nil {
				return err
			}
		}
		entries := make([]sqstypes.SendMessageBatchRequestEntry, len(chunk))
		for i, ref := range chunk {
			body, err := events.Encode(Origin, ref)
			if err != nil {
				return fmt.Errorf("event for %s: %w", awsapi.URL(ref.Bucket, ref.Key), err)
			}
			entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body))}
		}
		if err := s.sendBatch(ctx, entries, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (s *sender) sendBatch(ctx context.Context, entries []sqstypes.SendMessageBatchRequestEntry, refs []events.ObjectRef) error {
	all := entries // a failure's Id is its index here, retry after retry
	for attempt := 0; ; attempt++ {
		out, err := s.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &s.url, Entries: entries})
		if err != nil {
			// The SDK has retried the call already (awsapi.MaxAttempts).
			return fmt.Errorf("sending %d events to %s: %w", len(entries), s.url, err)
		}
		// An entry answered neither way (a store that drops one) is not
		// taken for sent: the checkpoint would pass its object by.
		unanswered := map[string]bool{}
		for _, e := range entries {
			unanswered[aws.ToString(e.Id)] = true
		}
		for _, e := range out.Successful {
			delete(unanswered, aws.ToString(e.Id))
		}
		for _, f := range out.Failed {
			delete(unanswered, aws.ToString(f.Id))
		}
		if len(out.Failed) == 0 && len(unanswered) == 0 {
			return nil
		}
		failed := out.Failed
		for id := range unanswered {
			failed = append(failed, sqstypes.BatchResultErrorEntry{Id: aws.String(id), Code: aws.String("Unanswered"), Message: aws.String("the batch call's answer names it neither sent nor failed")})
		}
		var retry []sqstypes.SendMessageBatchRequestEntry
		for _, f := range failed {
			i, err := strconv.Atoi(aws.ToString(f.Id))
			if err != nil || i < 0 || i >= len(refs) {
				return fmt.Errorf("sending events to %s: SQS reported a failure of unknown entry %q", s.url, aws.ToString(f.Id))
			}
			if f.SenderFault || attempt+1 >= sendAttempts {
				return fmt.Errorf("sending the event of %s to %s: %s: %s", awsapi.URL(refs[i].Bucket, refs[i].Key), s.url, aws.ToString(f.Code), aws.ToString(f.Message))
			}
			retry = append(retry, all[i])
		}
		s.log.Debug("retrying events SQS refused", zap.Int("failed", len(retry)), zap.Int("attempt", attempt+1))
		entries = retry
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}
