package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type fakeSQS struct {
	mu     sync.Mutex
	sent   map[string][]string // queue URL -> bodies
	queues map[string]string   // name -> URL
	err    error

	batches    []int // SendMessageBatch sizes
	refuseOnce bool
}

// ready is what a send checks first, with f.mu held: the error f fails
// with, if any.
func (f *fakeSQS) ready() error {
	if f.sent == nil {
		f.sent = map[string][]string{}
	}
	return f.err
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ready(); err != nil {
		return nil, err
	}
	q := aws.ToString(in.QueueUrl)
	f.sent[q] = append(f.sent[q], aws.ToString(in.MessageBody))
	return &sqs.SendMessageOutput{}, nil
}

// SendMessageBatch records the batch's size in batches; with refuseOnce,
// it refuses the first entry of its first call.
func (f *fakeSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ready(); err != nil {
		return nil, err
	}
	f.batches = append(f.batches, len(in.Entries))
	out := &sqs.SendMessageBatchOutput{}
	q := aws.ToString(in.QueueUrl)
	for i, e := range in.Entries {
		if i == 0 && f.refuseOnce {
			f.refuseOnce = false
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("try again"), SenderFault: false})
			continue
		}
		f.sent[q] = append(f.sent[q], aws.ToString(e.MessageBody))
	}
	return out, nil
}

func (f *fakeSQS) GetQueueUrl(_ context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	u, ok := f.queues[aws.ToString(in.QueueName)]
	if !ok {
		return nil, &types.QueueDoesNotExist{Message: aws.String("no such queue")}
	}
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(u)}, nil
}

// A MinIO webhook body as MinIO sends it (trimmed): key escaped including '/'.
const minioBody = `{"EventName":"s3:ObjectCreated:Put","Key":"in/a%2Fb+c","Records":[
 {"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"us-east-1","eventName":"s3:ObjectCreated:Put",
  "s3":{"bucket":{"name":"in"},"object":{"key":"a%2Fb+c","size":3}}},
 {"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"us-east-1","eventName":"s3:ObjectCreated:Put",
  "s3":{"bucket":{"name":"other"},"object":{"key":"x","size":1}}}]}`

func newTestBridge(t *testing.T, f *fakeSQS) (*httptest.Server, string) {
	t.Helper()
	return newTestBridgeRegions(t, f, nil)
}

func newTestBridgeRegions(t *testing.T, f *fakeSQS, regions map[string]regionS3) (*httptest.Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routes.json")
	routes, err := loadRoutes(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newBridge(f, regions, routes, slog.New(slog.DiscardHandler)).handler())
	t.Cleanup(srv.Close)
	return srv, path
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sentBody is the part of an SQS message body the tests read.
type sentBody struct {
	Records []struct {
		EventSource string `json:"eventSource"`
		S3          struct {
			Object struct {
				Key string `json:"key"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
}

func TestForwardsOneRecordPerMessage(t *testing.T) {
	f := &fakeSQS{}
	srv, _ := newTestBridge(t, f)
	if code, _ := do(t, http.MethodPut, srv.URL+"/routes/in", "http://q/1/in-queue\n"); code != http.StatusNoContent {
		t.Fatalf("PUT route: %d", code)
	}
	if code, body := do(t, http.MethodPost, srv.URL+"/events", minioBody); code != http.StatusOK {
		t.Fatalf("POST events: %d %s", code, body)
	}
	bodies := f.sent["http://q/1/in-queue"]
	if len(bodies) != 1 || len(f.sent) != 1 {
		t.Fatalf("sent %v, want one message to the routed queue only", f.sent)
	}
	var got sentBody
	if err := json.Unmarshal([]byte(bodies[0]), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 1 || got.Records[0].S3.Object.Key != "a%2Fb+c" || got.Records[0].EventSource != "minio:s3" {
		t.Fatalf("record not passed through unchanged: %s", bodies[0])
	}
}

func TestSendFailureAsksForRetry(t *testing.T) {
	f := &fakeSQS{err: errors.New("connection refused")}
	srv, _ := newTestBridge(t, f)
	do(t, http.MethodPut, srv.URL+"/routes/in", "http://q/1/in-queue")
	if code, _ := do(t, http.MethodPost, srv.URL+"/events", minioBody); code != http.StatusBadGateway {
		t.Fatalf("got %d, want 502 so MinIO retries", code)
	}
}

func TestMissingQueueIsDropped(t *testing.T) {
	f := &fakeSQS{}
	srv, _ := newTestBridge(t, f)
	do(t, http.MethodPut, srv.URL+"/routes/in", "deleted-queue") // a name, resolved at send time
	if code, _ := do(t, http.MethodPost, srv.URL+"/events", minioBody); code != http.StatusOK {
		t.Fatalf("got %d, want 200 (S3 drops events for a deleted queue)", code)
	}
	if len(f.sent) != 0 {
		t.Fatalf("sent %v", f.sent)
	}
}

func TestQueueNameResolved(t *testing.T) {
	f := &fakeSQS{queues: map[string]string{"in-queue": "http://q/1/in-queue"}}
	srv, _ := newTestBridge(t, f)
	do(t, http.MethodPut, srv.URL+"/routes/in", "in-queue")
	if code, _ := do(t, http.MethodPost, srv.URL+"/events", minioBody); code != http.StatusOK {
		t.Fatalf("got %d", code)
	}
	if len(f.sent["http://q/1/in-queue"]) != 1 {
		t.Fatalf("sent %v", f.sent)
	}
}

func TestRoutesPersist(t *testing.T) {
	srv, path := newTestBridge(t, &fakeSQS{})
	do(t, http.MethodPut, srv.URL+"/routes/a", "qa")
	do(t, http.MethodPut, srv.URL+"/routes/b", "qb")
	do(t, http.MethodDelete, srv.URL+"/routes/a", "")
	if code, body := do(t, http.MethodGet, srv.URL+"/routes", ""); code != http.StatusOK || strings.TrimSpace(body) != `{"b":"qb"}` {
		t.Fatalf("GET /routes: %d %s", code, body)
	}
	reloaded, err := loadRoutes(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := reloaded.snapshot(); len(got) != 1 || got["b"] != "qb" {
		t.Fatalf("reloaded %v", got)
	}
}

func TestRejectsBadInput(t *testing.T) {
	srv, _ := newTestBridge(t, &fakeSQS{})
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/events", "{not json"},
		{http.MethodPut, "/routes/b", "  "},
		{http.MethodPut, "/routes/b", "two words"},
	} {
		if code, _ := do(t, tc.method, srv.URL+tc.path, tc.body); code != http.StatusBadRequest {
			t.Errorf("%s %s %q: got %d, want 400", tc.method, tc.path, tc.body, code)
		}
	}
}

// With -async, records are answered at once and reach SQS in batches of at
// most ten, in the order they came, a refused one retried; close sends
// whatever is still queued.
func TestAsyncSendsInBatches(t *testing.T) {
	f := &fakeSQS{refuseOnce: true}
	routes, err := loadRoutes(filepath.Join(t.TempDir(), "routes.json"))
	if err != nil {
		t.Fatal(err)
	}
	br := newBridge(f, nil, routes, slog.New(slog.DiscardHandler))
	// Nothing is sent until the test has posted everything: the batcher
	// starts on a full queue, so its batches are full.
	br.async = &batcher{sqs: f, log: slog.New(slog.DiscardHandler), in: make(chan message, 100), done: make(chan struct{}), backoff: time.Millisecond}
	srv := httptest.NewServer(br.handler())
	defer srv.Close()
	do(t, http.MethodPut, srv.URL+"/routes/in", "http://q/1/in-queue")
	var want []string
	for i := range 25 {
		key := fmt.Sprintf("k%02d", i)
		body := strings.ReplaceAll(minioBody, "a%2Fb+c", key)
		if code, _ := do(t, http.MethodPost, srv.URL+"/events", body); code != http.StatusOK {
			t.Fatalf("POST %d: %d", i, code)
		}
		want = append(want, key)
	}
	go br.async.loop()
	if err := br.async.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range f.sent["http://q/1/in-queue"] {
		var m sentBody
		if err := json.Unmarshal([]byte(b), &m); err != nil || len(m.Records) != 1 {
			t.Fatalf("message %s: %v", b, err)
		}
		got = append(got, m.Records[0].S3.Object.Key)
	}
	// The refused first record went again after the rest of its batch.
	wantOrder := append(append(append([]string{}, want[1:10]...), want[0]), want[10:]...)
	if !slices.Equal(got, wantOrder) {
		t.Errorf("sent %v, want %v", got, wantOrder)
	}
	if !slices.Equal(f.batches, []int{10, 1, 10, 5}) {
		t.Errorf("batch sizes %v, want [10 1 10 5]", f.batches)
	}
}
