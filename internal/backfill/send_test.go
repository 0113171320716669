package backfill

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
)

// flakyQueue fails the entries script names, per call, as SQS reports a
// partial batch failure; it records what it accepted. (The retry policy is
// pure logic; the stack's SQS cannot be made to fail some entries of a
// batch, and TestEnqueuesExactlyWhatDiffers sends to it for real.)
type flakyQueue struct {
	script   []map[int]bool // call -> entry index (in that call) -> fail
	drop     []map[int]bool // call -> entry index -> answered neither way
	sender   bool           // failures are the sender's fault
	calls    int
	accepted []string
}

func (q *flakyQueue) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out := &sqs.SendMessageBatchOutput{}
	var fail, drop map[int]bool
	if q.calls < len(q.script) {
		fail = q.script[q.calls]
	}
	if q.calls < len(q.drop) {
		drop = q.drop[q.calls]
	}
	q.calls++
	for i, e := range in.Entries {
		if drop[i] {
			continue
		}
		if fail[i] {
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), SenderFault: q.sender})
			continue
		}
		m, _ := events.Parse([]byte(aws.ToString(e.MessageBody)))
		q.accepted = append(q.accepted, m.Refs[0].Key)
		out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func refs(n int) []events.ObjectRef {
	out := make([]events.ObjectRef, n)
	for i := range out {
		out[i] = events.ObjectRef{EventName: "ObjectCreated:Put", Bucket: "b", Key: "k" + strconv.Itoa(i), Size: 1, EventTime: time.Unix(0, 0)}
	}
	return out
}

// TestSenderRetriesPartialFailures: entries a batch failed are sent again
// (only they), until every one is accepted; a sender's fault is not retried.
func TestSenderRetriesPartialFailures(t *testing.T) {
	q := &flakyQueue{script: []map[int]bool{{1: true, 7: true}, {0: true}}}
	s := newSender(q, "url", 0, false, zap.NewNop())
	if err := s.send(context.Background(), refs(25)); err != nil {
		t.Fatal(err)
	}
	// 3 batches of 10, 10, 5; the first's 2 failures retried, and one of
	// them failed again.
	if q.calls != 5 || len(q.accepted) != 25 {
		t.Errorf("%d calls, %d accepted; want 5 and 25", q.calls, len(q.accepted))
	}
	seen := map[string]bool{}
	for _, k := range q.accepted {
		if seen[k] {
			t.Errorf("%s sent twice", k)
		}
		seen[k] = true
	}
	// An entry the answer leaves out (a store that drops one) is not
	// taken for sent.
	q = &flakyQueue{drop: []map[int]bool{{2: true, 5: true}}}
	if err := newSender(q, "url", 0, false, zap.NewNop()).send(context.Background(), refs(10)); err != nil || q.calls != 2 || len(q.accepted) != 10 {
		t.Errorf("dropped entries: %v, %d calls, %d accepted; want 2 calls and all 10", err, q.calls, len(q.accepted))
	}
	q = &flakyQueue{script: []map[int]bool{{3: true}}, sender: true}
	err := newSender(q, "url", 0, false, zap.NewNop()).send(context.Background(), refs(10))
	if err == nil || !strings.Contains(err.Error(), "k3") || q.calls != 1 {
		t.Errorf("sender fault: %v after %d calls, want an error naming k3 after 1", err, q.calls)
	}
	q = &flakyQueue{}
	if err := newSender(q, "url", 0, true, zap.NewNop()).send(context.Background(), refs(10)); err != nil || q.calls != 0 {
		t.Errorf("dry run: %v, %d calls", err, q.calls)
	}
}
