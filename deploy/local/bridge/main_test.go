package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type fakeSQS struct {
	mu     sync.Mutex
	sent   map[string][]string // queue URL -> bodies
	queues map[string]string   // name -> URL
	err    error
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.sent == nil {
		f.sent = map[string][]string{}
	}
	q := aws.ToString(in.QueueUrl)
	f.sent[q] = append(f.sent[q], aws.ToString(in.MessageBody))
	return &sqs.SendMessageOutput{}, nil
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
	var got struct {
		Records []struct {
			EventSource string `json:"eventSource"`
			S3          struct {
				Object struct {
					Key string `json:"key"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	}
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
