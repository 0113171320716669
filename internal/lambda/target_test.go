package lambda_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/xrc-dev/xrc/internal/dataset"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestHandlersEndToEnd: both handlers, called with real messages read
// from their queues, move a mixed dataset (a large object streamed through
// a multipart upload at the target included) from the source bucket to
// the destination, every object checked; the target's batch also holds a
// message naming an archive missing from staging (never delivered) and a
// poison message, and reports exactly those two.
func TestHandlersEndToEnd(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	objs := dataset.Mixed("data/e2e/", 24, 7)
	objs = append(objs, dataset.Object{Key: "data/e2e/large.txt", ContentType: "text/plain",
		Data: []byte(strings.Repeat("a large object streams through the archive and a multipart upload\n", 20<<20/66))})
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}

	msgs := f.receive(t, f.sourceURL(), len(objs))
	hctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	resp, err := f.sourceHandler(t, nil).Handle(hctx, localstack.SQSEvent(f.sourceURL(), msgs))
	if err != nil {
		t.Fatal(err)
	}
	if got := failed(resp); len(got) > 0 {
		t.Fatalf("source reported %v", got)
	}
	f.ack(t, f.sourceURL(), msgs)
	archives := len(f.archiveKeys(t))

	missing := "r1/2026/01/01/20260101T000000Z-deadbeef-000000000000.tar.zst"
	body, err := xevents.Encode("test", xevents.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now(), Region: "eu-west-1",
		Bucket: f.staging("eu-west-1"), Key: missing, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	missingID := f.send(t, f.targetURL(), string(body))
	poisonID := f.send(t, f.targetURL(), `{"Records": [{"s3": 42}]}`)
	tmsgs := f.receive(t, f.targetURL(), archives+2)
	resp, err = f.targetHandler(t).Handle(hctx, localstack.SQSEvent(f.targetURL(), tmsgs))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{missingID, poisonID}
	slices.Sort(want)
	if got := failed(resp); !slices.Equal(got, want) {
		t.Errorf("target failures %v, want exactly the missing archive's and the poison message %v", got, want)
	}
	dest := f.rule.Destinations[0]
	if errs := dataset.Check(ctx, f.dst, dest.Bucket, objs, func(k string) string { return f.rule.DestinationKey(dest, k) }, 8); len(errs) > 0 {
		t.Errorf("%d objects differ at the destination, first: %v", len(errs), errs[0])
	}
	if left := uploadsLeft(t, f.dst, dest.Bucket); len(left) > 0 {
		t.Errorf("multipart uploads left at the destination: %v", left)
	}
}

// ack deletes msgs, as the event source mapping does with the messages a
// handler did not report.
func (f *fixture) ack(t testing.TB, queueURL string, msgs []sqstypes.Message) {
	t.Helper()
	for chunk := range slices.Chunk(msgs, 10) {
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for _, m := range chunk {
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: m.MessageId, ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := f.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &queueURL, Entries: entries}); err != nil {
			t.Fatal(err)
		}
	}
}

// archiveKeys lists the rule's archives in the source staging bucket.
func (f *fixture) archiveKeys(t testing.TB) []string {
	t.Helper()
	bucket := f.staging("us-east-1")
	out, err := f.src.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(f.rule.ID + "/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}
