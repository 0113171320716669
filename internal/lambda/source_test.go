package lambda_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/source"
)

// failed returns the message ids a response reports, sorted.
func failed(resp events.SQSEventResponse) []string {
	ids := []string{}
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	slices.Sort(ids)
	return ids
}

func ids(msgs ...sqstypes.Message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, aws.ToString(m.MessageId))
	}
	slices.Sort(out)
	return out
}

func put(t *testing.T, client *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
}

// TestSourcePartialFailures: a batch of real messages read from the rule's
// queue, with one object whose key the rule cannot map and one poison
// message, reports exactly those two; the others' objects are in staging,
// an object deleted since its event is acknowledged (skipped, as the
// Fargate worker does), and the two failures are released at once, on
// their way to the dead-letter queue.
func TestSourcePartialFailures(t *testing.T) {
	long := strings.Repeat("p", 1000) // keys of more than 24 bytes after "data/" map to over 1,024 bytes
	f := setup(t, func(c *config.Config) { c.Rules[0].Destinations[0].Prefix = &long })
	ctx := context.Background()
	var want []string
	for i := range 5 {
		key := fmt.Sprintf("data/ok-%d.txt", i)
		put(t, f.src, f.rule.SourceBucket, key, []byte(strings.Repeat("xrc on lambda ", 100*(i+1))))
		want = append(want, key)
	}
	unroutable := "data/" + strings.Repeat("u", 40)
	put(t, f.src, f.rule.SourceBucket, unroutable, []byte("cannot go anywhere"))
	put(t, f.src, f.rule.SourceBucket, "data/gone.txt", []byte("deleted before the handler runs"))
	if _, err := f.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: aws.String("data/gone.txt")}); err != nil {
		t.Fatal(err)
	}
	poisonID := f.send(t, f.sourceURL(), "this is not an S3 event")
	// 5 + unroutable + gone (created, removed) + poison.
	msgs := f.receive(t, f.sourceURL(), 9)
	var bad []sqstypes.Message
	for _, m := range msgs {
		if keyOf(m) == unroutable || aws.ToString(m.MessageId) == poisonID {
			bad = append(bad, m)
		}
	}
	if len(bad) != 2 {
		t.Fatalf("the unroutable object's and the poison message are not among %d messages received", len(msgs))
	}

	h := f.sourceHandler(t, nil)
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := h.Handle(hctx, localstack.SQSEvent(f.sourceURL(), msgs))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failed(resp), ids(bad...); !slices.Equal(got, want) {
		t.Errorf("failures %v, want exactly the unroutable object's and the poison message %v", got, want)
	}
	if got := f.archived(t); !slices.Equal(got, want) {
		t.Errorf("staged %v, want %v", got, want)
	}
	// Released at once: both are back well before the five minutes they
	// were received for.
	back := f.receive(t, f.sourceURL(), 2)
	if got, want := ids(back...), ids(bad...); !slices.Equal(got, want) {
		t.Errorf("released %v, want %v", got, want)
	}
}

// blockFirstPart holds the archive's first part until the invocation's
// work is cut, as a slow upload would, so the deadline lands mid-upload
// every time.
type blockFirstPart struct {
	source.S3API
	started chan struct{}
}

func (b *blockFirstPart) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	select {
	case <-b.started:
	default:
		close(b.started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.S3API.UploadPart(ctx, in, o...)
}

// TestSourceDeadlineMidBatch: when the deadline (less the margin) comes
// while an archive is uploading, every message of the batch is reported,
// the multipart upload is aborted (none is left in staging), and no
// archive is staged; an invocation starting with less than the margin left
// reports every message without starting anything.
func TestSourceDeadlineMidBatch(t *testing.T) {
	f := setup(t, nil)
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range 2 {
		// Incompressible and over the transfer manager's 16 MiB threshold
		// together: the archive is a multipart upload.
		data := make([]byte, 9<<20)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		put(t, f.src, f.rule.SourceBucket, fmt.Sprintf("data/big-%d.bin", i), data)
	}
	msgs := f.receive(t, f.sourceURL(), 2)
	block := &blockFirstPart{started: make(chan struct{})}
	h := f.sourceHandler(t, func(c source.S3API) source.S3API { block.S3API = c; return block })
	margin := f.cfg.Settings.Lambda.Margin.D()

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(margin+3*time.Second))
	defer cancel()
	resp, err := h.Handle(ctx, localstack.SQSEvent(f.sourceURL(), msgs))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-block.started:
	default:
		t.Fatal("no part was uploaded: the deadline did not land mid-upload")
	}
	if got, want := failed(resp), ids(msgs...); !slices.Equal(got, want) {
		t.Errorf("failures %v, want every message %v", got, want)
	}
	if left := uploadsLeft(t, f.src, f.staging("us-east-1")); len(left) > 0 {
		t.Errorf("multipart uploads left in staging: %v", left)
	}
	if got := f.archived(t); len(got) > 0 {
		t.Errorf("staged %v after the deadline", got)
	}

	// Released at once (the deadline is nobody's fault): take them again
	// with too little time left to start anything.
	msgs = f.receive(t, f.sourceURL(), 2)
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(margin-time.Second))
	defer cancel()
	resp, err = h.Handle(ctx, localstack.SQSEvent(f.sourceURL(), msgs))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failed(resp), ids(msgs...); !slices.Equal(got, want) {
		t.Errorf("failures %v, want every message %v", got, want)
	}
	if left := uploadsLeft(t, f.src, f.staging("us-east-1")); len(left) > 0 {
		t.Errorf("multipart uploads left in staging: %v", left)
	}
}

// hangingStore is a direct region whose PUTs never finish: a store that
// hangs outlasts an invocation.
type hangingStore struct {
	source.S3API
	puts *atomic.Int32
}

func (s hangingStore) PutObject(ctx context.Context, _ *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	s.puts.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestDirectCopyCutByTheDeadline: an archive whose copy to a direct region
// is cut by the invocation's deadline is staged (and replicated to every
// other region): its objects' messages are acknowledged and the copy is
// left to a relay message, not failed, which would restage the archive on
// every receive and send its objects to the DLQ for one region's trouble.
// The region then cools down: the next invocation's archive is left to a
// relay untried, not cut again.
func TestDirectCopyCutByTheDeadline(t *testing.T) {
	f := setup(t, func(c *config.Config) { c.Settings.Regions[1].Direct = true })
	ctx := context.Background()
	dreg, _ := f.cfg.Region("eu-west-1")
	var puts atomic.Int32
	h := f.sourceHandlerWith(t, nil, 5*time.Second, map[string]source.S3API{"eu-west-1": hangingStore{awsapi.S3(f.aws, dreg), &puts}})
	for i, key := range []string{"data/a.txt", "data/b.txt"} {
		put(t, f.src, f.rule.SourceBucket, key, []byte("hello direct "+key))
		msgs := f.receive(t, f.sourceURL(), 1)
		ictx, cancel := context.WithTimeout(ctx, 12*time.Second)
		resp, err := h.Handle(ictx, localstack.SQSEvent(f.sourceURL(), msgs))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := failed(resp); len(got) != 0 {
			t.Fatalf("invocation %d: failures %v; want none: the archive is staged, its direct copy left to a relay", i+1, got)
		}
		if n := puts.Load(); n != 1 {
			t.Fatalf("invocation %d: %d PUTs to the direct region in all; want 1: the region that hung in the first is not tried again within its cooldown", i+1, n)
		}
		var relays []xevents.Relay
		for _, m := range f.receiveAll(t, f.sourceURL(), 5*time.Second) {
			parsed, err := xevents.Parse([]byte(aws.ToString(m.Body)))
			if err != nil || parsed.Relay == nil {
				t.Fatalf("invocation %d: unexpected message %q (%v)", i+1, aws.ToString(m.Body), err)
			}
			relays = append(relays, *parsed.Relay)
		}
		if len(relays) != 1 || relays[0].Region != "eu-west-1" || relays[0].Bucket != f.staging("us-east-1") {
			t.Fatalf("invocation %d: relay messages %+v; want one for eu-west-1 from %s", i+1, relays, f.staging("us-east-1"))
		}
	}
	if got := f.archived(t); !slices.Equal(got, []string{"data/a.txt", "data/b.txt"}) {
		t.Fatalf("staged %v; want each object staged once", got)
	}
}
