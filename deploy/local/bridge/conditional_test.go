package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		ifMatch        string
		lock, cond     bool
		bucket, key    string
	}{
		// Writes of a key: locked.
		{method: "PUT", target: "/b/k?x-id=PutObject", lock: true, bucket: "b", key: "k"},
		{method: "PUT", target: "/b/dir/a%20b%2Bc", lock: true, bucket: "b", key: "dir/a b+c"},
		{method: "PUT", target: "/b/k", lock: true, bucket: "b", key: "k"}, // CopyObject looks the same (x-amz-copy-source)
		{method: "PUT", target: "/b/k?tagging", lock: true, bucket: "b", key: "k"},
		{method: "POST", target: "/b/k?uploadId=u1&x-id=CompleteMultipartUpload", lock: true, bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/k?x-id=DeleteObject", lock: true, bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/k?versionId=v1&x-id=DeleteObject", lock: true, bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=s", lock: true, bucket: "b", key: "k"},
		// Conditional deletes.
		{method: "DELETE", target: "/b/k?x-id=DeleteObject", ifMatch: `"e1"`, lock: true, cond: true, bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/a/b/c", ifMatch: "*", lock: true, cond: true, bucket: "b", key: "a/b/c"},
		// Not serialized.
		{method: "PUT", target: "/b/k?partNumber=1&uploadId=u1&x-id=UploadPart", bucket: "b", key: "k"},
		{method: "PUT", target: "/b/k?partNumber=2&uploadId=u1&x-id=UploadPartCopy", bucket: "b", key: "k"},
		{method: "POST", target: "/b/k?uploads&x-id=CreateMultipartUpload", bucket: "b", key: "k"},
		{method: "POST", target: "/b/k?restore", bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/k?uploadId=u1&x-id=AbortMultipartUpload", ifMatch: `"e1"`, bucket: "b", key: "k"},
		{method: "DELETE", target: "/b/k?tagging", ifMatch: `"e1"`, bucket: "b", key: "k"},
		{method: "GET", target: "/b/k?x-id=GetObject", bucket: "b", key: "k"},
		{method: "HEAD", target: "/b/k", ifMatch: `"e1"`, bucket: "b", key: "k"},
		{method: "GET", target: "/b?list-type=2", bucket: "b"},
		{method: "GET", target: "/b/?list-type=2&prefix=a", bucket: "b"},
		{method: "PUT", target: "/b", bucket: "b"},
		{method: "DELETE", target: "/b", ifMatch: "*", bucket: "b"},
		{method: "POST", target: "/b?delete", bucket: "b"},
		{method: "GET", target: "/"},
		{method: "GET", target: "/minio/health/ready", bucket: "minio", key: "health/ready"},
	} {
		r := httptest.NewRequest(tc.method, "https://127.0.0.1:9004"+tc.target, nil)
		if tc.ifMatch != "" {
			r.Header.Set("If-Match", tc.ifMatch)
		}
		got := classify(r)
		want := s3Request{bucket: tc.bucket, key: tc.key, lock: tc.lock, conditional: tc.cond}
		if got != want {
			t.Errorf("%s %s (If-Match %q): got %+v, want %+v", tc.method, tc.target, tc.ifMatch, got, want)
		}
	}
}

func TestETagMatches(t *testing.T) {
	for _, tc := range []struct {
		ifMatch, etag string
		want          bool
	}{
		{`"abc"`, `"abc"`, true},
		{`abc`, `"abc"`, true},
		{`"abc"`, `abc`, true},
		{`"abc-2"`, `"abc-2"`, true},
		{`*`, `"abc"`, true},
		{`"x", "abc"`, `"abc"`, true},
		{`"abd"`, `"abc"`, false},
		{`""`, `"abc"`, false},
		{`W/"abc"`, `"abc"`, false},
	} {
		if got := etagMatches(tc.ifMatch, tc.etag); got != tc.want {
			t.Errorf("etagMatches(%q, %q) = %v", tc.ifMatch, tc.etag, got)
		}
	}
}

// fakeHead is the MinIO the proxy HEADs: objects maps "bucket/key" to ETag.
type fakeHead struct {
	mu      sync.Mutex
	buckets map[string]bool
	objects map[string]string
	heads   int
}

func (f *fakeHead) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heads++
	etag, ok := f.objects[aws.ToString(in.Bucket)+"/"+aws.ToString(in.Key)]
	if !ok {
		return nil, httpErr(http.StatusNotFound, http.Header{})
	}
	return &s3.HeadObjectOutput{ETag: aws.String(etag)}, nil
}

func (f *fakeHead) HeadBucket(_ context.Context, in *s3.HeadBucketInput, _ ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	if !f.buckets[aws.ToString(in.Bucket)] {
		return nil, httpErr(http.StatusNotFound, http.Header{})
	}
	return &s3.HeadBucketOutput{}, nil
}

// fakeUpstream records what reaches "MinIO"; PUTs wait for release when set.
type fakeUpstream struct {
	mu       sync.Mutex
	requests []*http.Request
	release  chan struct{}
	started  chan string
}

func (u *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	u.requests = append(u.requests, r)
	u.mu.Unlock()
	if r.Method == http.MethodPut && u.release != nil {
		u.started <- r.URL.Path
		<-u.release
	}
	if r.Method == http.MethodDelete {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (u *fakeUpstream) seen() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.requests...)
}

func newTestProxy(t *testing.T, head *fakeHead, up *fakeUpstream) (*conditionalProxy, *httptest.Server) {
	t.Helper()
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	p := newConditionalProxy("eu-west-1", u, http.DefaultTransport, head, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

func sdkClient(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer:      aws.NopRetryer{},
	})
}

// The proxy answers 412 and 404 itself, in a form the SDK turns into API
// errors, and forwards the DELETE (Host and signature intact) otherwise.
func TestConditionalDeleteAnswers(t *testing.T) {
	head := &fakeHead{buckets: map[string]bool{"b": true}, objects: map[string]string{"b/k": `"e2"`}}
	up := &fakeUpstream{}
	_, srv := newTestProxy(t, head, up)
	client := sdkClient(srv.URL)
	ctx := context.Background()
	del := func(bucket, key, ifMatch string) error {
		in := &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
		if ifMatch != "" {
			in.IfMatch = aws.String(ifMatch)
		}
		_, err := client.DeleteObject(ctx, in)
		return err
	}
	wantAPIError(t, del("b", "k", `"e1"`), "PreconditionFailed", http.StatusPreconditionFailed)
	wantAPIError(t, del("b", "missing", `"e1"`), "NoSuchKey", http.StatusNotFound)
	if n := len(up.seen()); n != 0 {
		t.Fatalf("%d requests reached MinIO, want none", n)
	}
	for _, ifMatch := range []string{`"e2"`, "e2", "*", ""} {
		if err := del("b", "k", ifMatch); err != nil {
			t.Fatalf("If-Match %q: %v", ifMatch, err)
		}
	}
	// A missing bucket is MinIO's to report (NoSuchBucket).
	if err := del("gone", "k", `"e1"`); err != nil {
		t.Fatalf("missing bucket: %v", err)
	}
	seen := up.seen()
	if len(seen) != 5 {
		t.Fatalf("%d requests reached MinIO, want 5", len(seen))
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, r := range seen {
		if r.Method != http.MethodDelete || r.Host != host || !strings.Contains(r.Header.Get("Authorization"), "Credential=k/") {
			t.Errorf("forwarded %s %s Host %q Authorization %q: want the client's DELETE, Host and signature",
				r.Method, r.URL, r.Host, r.Header.Get("Authorization"))
		}
	}
	if seen[0].Header.Get("If-Match") != `"e2"` || seen[0].URL.Query().Get("x-id") != "DeleteObject" {
		t.Errorf("forwarded headers %v, query %q: want them unchanged", seen[0].Header, seen[0].URL.RawQuery)
	}
}

// A write holds its key: a conditional DELETE of that key waits for it to be
// answered before it HEADs; other keys and reads of that key do not wait.
func TestWritesAndConditionalDeletesSerialize(t *testing.T) {
	head := &fakeHead{buckets: map[string]bool{"b": true}, objects: map[string]string{"b/k": `"e1"`}}
	up := &fakeUpstream{release: make(chan struct{}), started: make(chan string, 2)}
	p, srv := newTestProxy(t, head, up)
	release := sync.OnceFunc(func() { close(up.release) })
	t.Cleanup(release) // before the servers close, or they would wait for the PUTs
	send := func(method, path, ifMatch string) <-chan int {
		done := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("body"))
			if ifMatch != "" {
				req.Header.Set("If-Match", ifMatch)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		return done
	}

	put := send(http.MethodPut, "/b/k", "")
	if got := <-up.started; got != "/b/k" {
		t.Fatalf("upstream got PUT %s", got)
	}
	del := send(http.MethodDelete, "/b/k", `"e1"`)
	// Not serialized with the PUT: a read of the same key, a PUT of another.
	if code := <-send(http.MethodGet, "/b/k", ""); code != http.StatusOK {
		t.Fatalf("GET during the PUT: %d", code)
	}
	other := send(http.MethodPut, "/b/other", "")
	if got := <-up.started; got != "/b/other" {
		t.Fatalf("upstream got PUT %s", got)
	}
	time.Sleep(50 * time.Millisecond)
	head.mu.Lock()
	heads := head.heads
	head.mu.Unlock()
	if heads != 0 {
		t.Fatal("the conditional DELETE HEADed while a PUT of its key was in flight")
	}
	select {
	case code := <-del:
		t.Fatalf("conditional DELETE answered %d during the PUT", code)
	default:
	}
	release()
	for name, c := range map[string]<-chan int{"PUT": put, "other PUT": other, "DELETE": del} {
		if code := <-c; code/100 != 2 {
			t.Errorf("%s: %d", name, code)
		}
	}
	if n := p.locks.len(); n != 0 {
		t.Errorf("%d key locks left", n)
	}
}

func TestKeyLockGivesUpWithContext(t *testing.T) {
	var l keyLocks
	k := lockKey{"b", "k"}
	unlock, err := l.lock(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, k); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want the context's error", err)
	}
	unlock()
	if n := l.len(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}
