package localstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// s3Event is the part of an S3 event notification body the smoke test reads.
type s3Event struct {
	Records []struct {
		EventSource string `json:"eventSource"`
		EventName   string `json:"eventName"`
		AWSRegion   string `json:"awsRegion"`
		S3          struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key  string `json:"key"`
				Size int64  `json:"size"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
}

// TestSmoke exercises the whole local stack: MinIO over TLS, notifications
// through the bridge to SQS, cross-"region" replication, and DynamoDB Local.
func TestSmoke(t *testing.T) {
	env := localstack.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	t.Run("notification", func(t *testing.T) {
		t.Parallel()
		testNotification(ctx, t, env)
	})
	t.Run("replication", func(t *testing.T) {
		t.Parallel()
		testReplication(ctx, t, env)
	})
	t.Run("dynamodb", func(t *testing.T) {
		t.Parallel()
		testConditionalUpdate(ctx, t, env)
	})
}

// testNotification: an object put into a watched bucket produces an S3 event
// on the routed queue. The body is non-seekable, which over https makes the
// SDK upload with aws-chunked encoding and a trailing checksum (the path
// production takes against AWS).
func testNotification(ctx context.Context, t *testing.T, env localstack.Env) {
	const region = "us-east-1"
	bucket := localstack.UniqueName("smoke-watched")
	queue := localstack.UniqueName("smoke-events")
	must(t, env.EnsureBucket(ctx, region, bucket, false))
	cleanupBucket(t, env, region, bucket)
	queueURL, _, err := env.EnsureQueue(ctx, queue, 3, 30*time.Second)
	must(t, err)
	cleanupQueue(t, env, queue)
	must(t, env.RouteEvents(ctx, region, bucket, queueURL, "in/"))

	s3c, err := env.S3(ctx, region)
	must(t, err)
	key := "in/dir one/a+b c.txt" // '/', ' ' and '+' are escaped differently by MinIO and AWS
	part1, part2 := []byte("hello, "), []byte("non-seekable world")
	var sent http.Header
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket),
		Key:    aws.String(key),
		Body:   io.MultiReader(bytes.NewReader(part1), bytes.NewReader(part2)),
		// S3 (and MinIO) answer 411 MissingContentLength without it, even
		// with aws-chunked; unknown lengths need a multipart upload.
		ContentLength: aws.Int64(int64(len(part1) + len(part2))),
	}, captureHeaders(&sent))
	must(t, err)
	if got := sent.Get("X-Amz-Content-Sha256"); got != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" || sent.Get("Content-Encoding") != "aws-chunked" {
		t.Errorf("PutObject sent x-amz-content-sha256 %q, content-encoding %q: want the aws-chunked trailer upload AWS gets",
			got, sent.Get("Content-Encoding"))
	}
	// Outside the prefix: must not produce a message.
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("out/x"), Body: strings.NewReader("x")})
	must(t, err)

	sqsc, err := env.SQS(ctx)
	must(t, err)
	ev := receiveEvent(ctx, t, sqsc, queueURL, key)
	rec := ev.Records[0]
	if rec.S3.Bucket.Name != bucket || rec.AWSRegion != region || rec.S3.Object.Size != int64(len(part1)+len(part2)) ||
		!strings.Contains(rec.EventName, "ObjectCreated:") {
		t.Errorf("event = %+v, want ObjectCreated of %s/%q in %s", rec, bucket, key, region)
	}
	assertNoMoreMessages(ctx, t, sqsc, queueURL)
}

// testReplication: an object put into a versioned staging bucket in
// us-east-1 is replicated to eu-west-1 with its bytes and metadata, and the
// replica's creation event reaches the queue routed for the eu-west-1 bucket.
func testReplication(ctx context.Context, t *testing.T, env localstack.Env) {
	src, dst := localstack.UniqueName("smoke-staging-use1"), localstack.UniqueName("smoke-staging-euw1")
	queue := localstack.UniqueName("smoke-arrivals")
	must(t, env.Replicate(ctx, "us-east-1", src, "eu-west-1", dst))
	must(t, env.Replicate(ctx, "us-east-1", src, "eu-west-1", dst)) // idempotent
	cleanupBucket(t, env, "us-east-1", src)
	cleanupBucket(t, env, "eu-west-1", dst)
	queueURL, _, err := env.EnsureQueue(ctx, queue, 3, 30*time.Second)
	must(t, err)
	cleanupQueue(t, env, queue)
	must(t, env.RouteEvents(ctx, "eu-west-1", dst, queueURL, ""))

	srcS3, err := env.S3(ctx, "us-east-1")
	must(t, err)
	dstS3, err := env.S3(ctx, "eu-west-1")
	must(t, err)
	body := make([]byte, 256<<10)
	rand.Read(body)
	key := "archives/2026/part 1+2.zst"
	meta := map[string]string{"codec": "zstd", "src-etag": "abc123"}
	_, err = srcS3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(src),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/zstd"),
		Metadata:    meta,
	})
	must(t, err)

	var got *s3.GetObjectOutput
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = dstS3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dst), Key: aws.String(key)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("object not replicated to eu-west-1/%s within 30s: %v", dst, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	replica, err := io.ReadAll(got.Body)
	got.Body.Close()
	must(t, err)
	if !bytes.Equal(replica, body) {
		t.Errorf("replica differs: %d bytes, want %d", len(replica), len(body))
	}
	if got.Metadata["codec"] != "zstd" || got.Metadata["src-etag"] != "abc123" || aws.ToString(got.ContentType) != "application/zstd" {
		t.Errorf("replica metadata = %v, content type %q; want %v, application/zstd", got.Metadata, aws.ToString(got.ContentType), meta)
	}
	if got.ReplicationStatus != "REPLICA" {
		t.Errorf("replica ReplicationStatus = %q, want REPLICA", got.ReplicationStatus)
	}

	sqsc, err := env.SQS(ctx)
	must(t, err)
	ev := receiveEvent(ctx, t, sqsc, queueURL, key)
	if rec := ev.Records[0]; rec.S3.Bucket.Name != dst || rec.AWSRegion != "eu-west-1" {
		t.Errorf("event = %+v, want one for eu-west-1/%s", rec, dst)
	}
}

// testConditionalUpdate: the optimistic-locking pattern on DynamoDB Local.
func testConditionalUpdate(ctx context.Context, t *testing.T, env localstack.Env) {
	table := localstack.UniqueName("smoke-stats")
	must(t, env.EnsureTable(ctx, table, true))
	t.Cleanup(func() {
		if err := env.DeleteTable(context.Background(), table); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	db, err := env.DynamoDB(ctx)
	must(t, err)
	key := map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: "rule#1"},
		"sk": &ddbtypes.AttributeValueMemberS{Value: "arm#zstd-3"},
	}
	update := func(expect int) error {
		cond := "ver = :old"
		if expect == 0 {
			cond = "attribute_not_exists(pk)"
		}
		vals := map[string]ddbtypes.AttributeValue{
			":new": &ddbtypes.AttributeValueMemberN{Value: strconv.Itoa(expect + 1)},
			":one": &ddbtypes.AttributeValueMemberN{Value: "1"},
		}
		if expect != 0 {
			vals[":old"] = &ddbtypes.AttributeValueMemberN{Value: strconv.Itoa(expect)}
		}
		_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(table),
			Key:                       key,
			UpdateExpression:          aws.String("SET ver = :new ADD pulls :one"),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeValues: vals,
		})
		return err
	}
	must(t, update(0)) // create at version 1
	must(t, update(1)) // version 1 -> 2
	err = update(1)    // stale: someone else already moved it to 2
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("stale update: got %v, want ConditionalCheckFailedException", err)
	}
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key, ConsistentRead: aws.Bool(true)})
	must(t, err)
	if v, ok := out.Item["ver"].(*ddbtypes.AttributeValueMemberN); !ok || v.Value != "2" {
		t.Errorf("ver = %v, want 2", out.Item["ver"])
	}
}

// receiveEvent waits for the event of key on queueURL, checks the message is
// a single-record S3 event, and deletes it.
func receiveEvent(ctx context.Context, t *testing.T, client *sqs.Client, queueURL, key string) s3Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(queueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     2,
		})
		must(t, err)
		for _, m := range out.Messages {
			t.Logf("event on %s: %s", queueURL, aws.ToString(m.Body))
			var ev s3Event
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("message is not an S3 event: %v: %s", err, aws.ToString(m.Body))
			}
			if len(ev.Records) != 1 {
				t.Fatalf("message has %d records, want 1 (as S3 sends): %s", len(ev.Records), aws.ToString(m.Body))
			}
			// MinIO query-escapes the key including '/'; AWS escapes all but '/'.
			// QueryUnescape decodes both.
			got, err := url.QueryUnescape(ev.Records[0].S3.Object.Key)
			must(t, err)
			if got != key {
				t.Fatalf("event for key %q (raw %q), want %q", got, ev.Records[0].S3.Object.Key, key)
			}
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
			return ev
		}
	}
	t.Fatalf("no event for %q on %s within 30s (bridge log: $XRC_STACK_DIR/logs/bridge.log)", key, queueURL)
	return s3Event{}
}

func assertNoMoreMessages(ctx context.Context, t *testing.T, client *sqs.Client, queueURL string) {
	t.Helper()
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(queueURL),
		MaxNumberOfMessages: 10,
		WaitTimeSeconds:     1,
		//lint:ignore SA1019 local-aws-sqs only honours the legacy field.
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	must(t, err)
	for _, m := range out.Messages {
		t.Errorf("unexpected message: %s", aws.ToString(m.Body))
	}
}

// captureHeaders records the headers of the signed request as sent.
func captureHeaders(dst *http.Header) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("captureHeaders",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if r, ok := in.Request.(*smithyhttp.Request); ok {
						*dst = r.Header.Clone()
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}

func cleanupBucket(t *testing.T, env localstack.Env, region, bucket string) {
	t.Cleanup(func() {
		if err := env.RemoveBucket(context.Background(), region, bucket); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func cleanupQueue(t *testing.T, env localstack.Env, name string) {
	t.Cleanup(func() {
		if err := env.DeleteQueue(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
