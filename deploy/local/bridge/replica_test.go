package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// fakeS3 answers as a MinIO with one replicated source bucket "src" (us-east-1)
// or one destination bucket "dst" (eu-west-1) would.
type fakeS3 struct {
	rules     []s3types.ReplicationRule
	notify    []s3types.QueueConfiguration
	notifyErr error
	head      *s3.HeadObjectOutput
	headErr   error
}

func (f *fakeS3) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return f.head, f.headErr
}

func (f *fakeS3) GetBucketReplication(context.Context, *s3.GetBucketReplicationInput, ...func(*s3.Options)) (*s3.GetBucketReplicationOutput, error) {
	return &s3.GetBucketReplicationOutput{ReplicationConfiguration: &s3types.ReplicationConfiguration{Rules: f.rules}}, nil
}

func (f *fakeS3) GetBucketNotificationConfiguration(context.Context, *s3.GetBucketNotificationConfigurationInput, ...func(*s3.Options)) (*s3.GetBucketNotificationConfigurationOutput, error) {
	return &s3.GetBucketNotificationConfigurationOutput{QueueConfigurations: f.notify}, f.notifyErr
}

func httpErr(code int, header http.Header) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code, Header: header}}, Err: context.Canceled}
}

// What MinIO sends from the source after replicating (trimmed): no awsRegion.
const replicationBody = `{"EventName":"s3:Replication:OperationCompletedReplication","Key":"src/a%2Fb.txt","Records":[
 {"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventName":"s3:Replication:OperationCompletedReplication",
  "responseElements":{"x-minio-origin-endpoint":"https://127.0.0.1:9000"},
  "s3":{"configurationId":"Config","bucket":{"name":"src","arn":"arn:aws:s3:::src"},
   "object":{"key":"a%2Fb.txt","size":4,"eTag":"e1","userMetadata":{"X-Amz-Replication-Status":"COMPLETED"},"versionId":"v1","sequencer":"17"}},
  "source":{"host":"127.0.0.1:9000","userAgent":"Internal: [Replication]"}}]}`

func TestReplicaEvents(t *testing.T) {
	rule := s3types.ReplicationRule{
		ID: aws.String("r1"), Status: s3types.ReplicationRuleStatusEnabled,
		Filter:      &s3types.ReplicationRuleFilter{And: &s3types.ReplicationRuleAndOperator{Prefix: aws.String("a/")}},
		Destination: &s3types.Destination{Bucket: aws.String("arn:minio:replication:eu-west-1:0d5e:dst")},
	}
	created := []s3types.QueueConfiguration{{
		Id: aws.String("arrivals"), QueueArn: aws.String("arn:minio:sqs:eu-west-1:XRC:webhook"),
		Events: []s3types.Event{"s3:ObjectCreated:*"},
	}}
	for _, tc := range []struct {
		name      string
		dst       fakeS3
		rules     []s3types.ReplicationRule
		route     bool
		wantEvent string // "" for no message
		wantCode  int
	}{
		{name: "created", dst: fakeS3{notify: created, head: &s3.HeadObjectOutput{ContentLength: aws.Int64(4), ETag: aws.String(`"e1"`)}},
			rules: []s3types.ReplicationRule{rule}, route: true, wantEvent: "s3:ObjectCreated:Put", wantCode: 200},
		{name: "delete marker not selected", dst: fakeS3{notify: created, headErr: httpErr(405, http.Header{"X-Amz-Delete-Marker": {"true"}})},
			rules: []s3types.ReplicationRule{rule}, route: true, wantCode: 200},
		{name: "delete marker selected", dst: fakeS3{
			notify:  []s3types.QueueConfiguration{{QueueArn: aws.String("arn:minio:sqs:eu-west-1:XRC:webhook"), Events: []s3types.Event{"s3:ObjectRemoved:*"}}},
			headErr: httpErr(405, http.Header{"X-Amz-Delete-Marker": {"true"}})},
			rules: []s3types.ReplicationRule{rule}, route: true, wantEvent: "s3:ObjectRemoved:DeleteMarkerCreated", wantCode: 200},
		{name: "unrouted destination", dst: fakeS3{notify: created, head: &s3.HeadObjectOutput{}},
			rules: []s3types.ReplicationRule{rule}, wantCode: 200},
		{name: "rule prefix does not match", dst: fakeS3{notify: created, head: &s3.HeadObjectOutput{}},
			rules: []s3types.ReplicationRule{{Status: s3types.ReplicationRuleStatusEnabled, Prefix: aws.String("z/"), Destination: rule.Destination}},
			route: true, wantCode: 200},
		// A HEAD in a deleted bucket is a bare 404, as for a deleted object;
		// retrying would hold up every later event of the source MinIO.
		{name: "destination bucket deleted", dst: fakeS3{headErr: httpErr(404, http.Header{}),
			notifyErr: &smithy.GenericAPIError{Code: "NoSuchBucket"}},
			rules: []s3types.ReplicationRule{rule}, route: true, wantCode: 200},
		{name: "destination unreachable", dst: fakeS3{notify: created, headErr: httpErr(503, http.Header{})},
			rules: []s3types.ReplicationRule{rule}, route: true, wantCode: http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSQS{}
			dst := tc.dst
			srv, _ := newTestBridgeRegions(t, f, map[string]regionS3{
				"us-east-1": {endpoint: "https://127.0.0.1:9000", client: &fakeS3{rules: tc.rules}},
				"eu-west-1": {endpoint: "https://127.0.0.1:9002", client: &dst},
			})
			if tc.route {
				do(t, http.MethodPut, srv.URL+"/routes/dst", "http://q/1/arrivals")
			}
			if code, body := do(t, http.MethodPost, srv.URL+"/events", replicationBody); code != tc.wantCode {
				t.Fatalf("POST: %d %s, want %d", code, body, tc.wantCode)
			}
			bodies := f.sent["http://q/1/arrivals"]
			if tc.wantEvent == "" {
				if len(f.sent) != 0 {
					t.Fatalf("sent %v, want nothing", f.sent)
				}
				return
			}
			if len(bodies) != 1 {
				t.Fatalf("sent %v, want one message", f.sent)
			}
			var got struct {
				Records []map[string]any `json:"Records"`
			}
			if err := json.Unmarshal([]byte(bodies[0]), &got); err != nil {
				t.Fatal(err)
			}
			r := got.Records[0]
			s3m := r["s3"].(map[string]any)
			obj := s3m["object"].(map[string]any)
			if r["eventName"] != tc.wantEvent || r["awsRegion"] != "eu-west-1" ||
				s3m["bucket"].(map[string]any)["name"] != "dst" || obj["key"] != "a%2Fb.txt" || obj["versionId"] != "v1" {
				t.Fatalf("record = %s", bodies[0])
			}
			if tc.wantEvent == "s3:ObjectCreated:Put" && (obj["eTag"] != "e1" || obj["size"] != float64(4) || s3m["configurationId"] != "arrivals") {
				t.Fatalf("created record = %s", bodies[0])
			}
		})
	}
}

func TestParseReplicationARN(t *testing.T) {
	for arn, want := range map[string][2]string{
		"arn:minio:replication:eu-west-1:e851-6f28:exp-dst2": {"eu-west-1", "exp-dst2"},
		"arn:minio:replication::e851:dst":                    {},
		"arn:aws:s3:::dst":                                   {},
		"":                                                   {},
	} {
		r, b, ok := parseReplicationARN(arn)
		if ok != (want[0] != "") || r != want[0] || b != want[1] {
			t.Errorf("parseReplicationARN(%q) = %q, %q, %v", arn, r, b, ok)
		}
	}
}

// slowDst is a destination MinIO whose first HEAD fails and whose second
// waits for release: a replica read across a loaded link.
type slowDst struct {
	fakeS3
	heads   atomic.Int32
	release chan struct{}
}

func (d *slowDst) HeadObject(ctx context.Context, in *s3.HeadObjectInput, o ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if d.heads.Add(1) == 1 {
		return nil, httpErr(503, http.Header{})
	}
	select {
	case <-d.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return d.fakeS3.HeadObject(ctx, in, o...)
}

// asyncBridge is a bridge with -async whose source bucket (us-east-1)
// replicates everything to dst (eu-west-1), served until the test ends.
func asyncBridge(t *testing.T, f *fakeSQS, dst s3API) (*bridge, *httptest.Server) {
	t.Helper()
	routes, err := loadRoutes(filepath.Join(t.TempDir(), "routes.json"))
	if err != nil {
		t.Fatal(err)
	}
	br := newBridge(f, map[string]regionS3{
		"us-east-1": {endpoint: "https://127.0.0.1:9000", client: &fakeS3{rules: []s3types.ReplicationRule{{
			Status: s3types.ReplicationRuleStatusEnabled, Prefix: aws.String(""),
			Destination: &s3types.Destination{Bucket: aws.String("arn:minio:replication:eu-west-1:0d5e:dst")},
		}}}},
		"eu-west-1": {endpoint: "https://127.0.0.1:9002", client: dst},
	}, routes, slog.New(slog.DiscardHandler))
	br.async = newBatcher(f, slog.New(slog.DiscardHandler), 100)
	br.later = newLaterReplicas(4, time.Millisecond)
	srv := httptest.NewServer(br.handler())
	t.Cleanup(srv.Close)
	return br, srv
}

// drain stops an -async bridge as main does after Shutdown: the replica
// events being forwarded first, then the batcher, whose records they add.
func drain(t *testing.T, br *bridge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := br.later.close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := br.async.close(ctx); err != nil {
		t.Fatal(err)
	}
}

// With -async, a replication event is answered at once, and later events
// too, while its replica is still being read (and that read is retried);
// it reaches SQS once the read succeeds, and close waits for it.
func TestAsyncReplicaEventsDoNotHoldMinIO(t *testing.T) {
	f := &fakeSQS{}
	dst := &slowDst{release: make(chan struct{}), fakeS3: fakeS3{
		notify: []s3types.QueueConfiguration{{QueueArn: aws.String("arn:minio:sqs:eu-west-1:XRC:webhook"), Events: []s3types.Event{"s3:ObjectCreated:*"}}},
		head:   &s3.HeadObjectOutput{ContentLength: aws.Int64(4), ETag: aws.String(`"e1"`)},
	}}
	br, srv := asyncBridge(t, f, dst)
	do(t, http.MethodPut, srv.URL+"/routes/dst", "http://q/1/arrivals")
	do(t, http.MethodPut, srv.URL+"/routes/in", "http://q/1/in-queue")

	if code, body := do(t, http.MethodPost, srv.URL+"/events", replicationBody); code != http.StatusOK {
		t.Fatalf("replication event: %d %s, want 200 at once", code, body)
	}
	if code, body := do(t, http.MethodPost, srv.URL+"/events", minioBody); code != http.StatusOK {
		t.Fatalf("the next event: %d %s, want 200", code, body)
	}
	for dst.heads.Load() < 2 { // the failed read was retried
		time.Sleep(time.Millisecond)
	}
	close(dst.release)
	drain(t, br)
	if n := len(f.sent["http://q/1/arrivals"]); n != 1 || len(f.sent["http://q/1/in-queue"]) != 1 {
		t.Fatalf("sent %v, want one replica event and one object event", f.sent)
	}
	if n := dst.heads.Load(); n != 2 {
		t.Errorf("%d HEADs of the replica, want 2 (one failed, one retried)", n)
	}
}

// With -async, each replicated version is forwarded once: MinIO's second
// copy of its event, or MinIO's after bench-e2e's replica tap reported it
// (keys encoded either way), is dropped; another version goes through.
func TestAsyncTakesEachReplicaOnce(t *testing.T) {
	f := &fakeSQS{}
	dst := &fakeS3{
		notify: []s3types.QueueConfiguration{{QueueArn: aws.String("arn:minio:sqs:eu-west-1:XRC:webhook"), Events: []s3types.Event{"s3:ObjectCreated:*"}}},
		head:   &s3.HeadObjectOutput{ContentLength: aws.Int64(4), ETag: aws.String(`"e1"`)},
	}
	br, srv := asyncBridge(t, f, dst)
	do(t, http.MethodPut, srv.URL+"/routes/dst", "http://q/1/arrivals")

	for _, body := range []string{
		replicationBody,
		replicationBody, // MinIO's second copy
		strings.Replace(replicationBody, `"key":"a%2Fb.txt"`, `"key":"a/b.txt"`, 1),
		strings.Replace(replicationBody, `"versionId":"v1"`, `"versionId":"v2"`, 1),
	} {
		if code, resp := do(t, http.MethodPost, srv.URL+"/events", body); code != http.StatusOK {
			t.Fatalf("replication event: %d %s", code, resp)
		}
	}
	drain(t, br)
	if n := len(f.sent["http://q/1/arrivals"]); n != 2 {
		t.Errorf("sent %d replica events, want 2 (v1 once, v2)", n)
	}
}
