//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// posted collects the event bodies posted to an HTTP server.
type posted struct {
	mu      sync.Mutex
	records []map[string]any
}

func (p *posted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct{ Records []map[string]any }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.records = append(p.records, body.Records...)
	p.mu.Unlock()
}

func (p *posted) take() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.records
	p.records = nil
	return r
}

// Writes through the tap into its bucket are reported once each, when the
// target has stored them: a PUT, a completed multipart upload (not its
// parts), as the source bucket's replication-completed event; nothing for
// other buckets or for a write the target refused.
func TestReplicaTapReportsStoredReplicas(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	bucket := fmt.Sprintf("tap-test-%d", time.Now().UnixNano())
	other := bucket + "-other"
	for _, b := range []string{bucket, other} {
		if err := env.EnsureBucket(ctx, "eu-west-1", b, true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { env.RemoveBucket(context.Background(), "eu-west-1", b) })
	}
	sink := &posted{}
	events := httptest.NewServer(sink)
	defer events.Close()
	state := t.TempDir()
	ca, err := writeTLS(state)
	if err != nil {
		t.Fatal(err)
	}
	tap, err := newReplicaTap(env.S3Endpoints["eu-west-1"], env.CABundle, filepath.Join(state, "tls", "server.crt"),
		filepath.Join(state, "tls", "server.key"), "us-east-1", "the-source", bucket, events.URL, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.close()
	viaTap := env
	viaTap.S3Endpoints = map[string]string{"eu-west-1": tap.url()}
	viaTap.CABundle = ca // the tap's certificate
	s3c, err := viaTap.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}

	want := func(what, key, versionID string) {
		t.Helper()
		got := sink.take()
		if len(got) != 1 {
			t.Fatalf("%s: %d events reported, want 1: %v", what, len(got), got)
		}
		rec := got[0]
		s3m, _ := rec["s3"].(map[string]any)
		b, _ := s3m["bucket"].(map[string]any)
		o, _ := s3m["object"].(map[string]any)
		if rec["eventName"] != replicationCompleted || rec["awsRegion"] != "us-east-1" || b["name"] != "the-source" ||
			o["key"] != key || o["versionId"] != versionID {
			t.Errorf("%s: reported %v, want %s of the-source/%s@%s from us-east-1", what, rec, replicationCompleted, key, versionID)
		}
	}
	none := func(what string) {
		t.Helper()
		if got := sink.take(); len(got) != 0 {
			t.Errorf("%s: reported %v, want nothing", what, got)
		}
	}

	put, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("a/put.tar.zst"), Body: strings.NewReader("replica")})
	if err != nil {
		t.Fatal(err)
	}
	want("put", "a/put.tar.zst", aws.ToString(put.VersionId))
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("a/put.tar.zst"), IfNoneMatch: aws.String("*"),
		Body: strings.NewReader("again")}); err == nil {
		t.Fatal("a conditional put over an existing key succeeded")
	}
	none("refused put")

	key := "a/multipart.tar.zst"
	up, err := s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	part, err := s3c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(bytes.Repeat([]byte("x"), 1<<10))})
	if err != nil {
		t.Fatal(err)
	}
	none("create and part")
	if _, err := s3c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{PartNumber: aws.Int32(1), ETag: aws.String(`"0123456789abcdef0123456789abcdef"`)}}}}); err == nil {
		t.Fatal("completing with a wrong part ETag succeeded")
	}
	none("refused completion")
	done, err := s3c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}})
	if err != nil {
		t.Fatal(err)
	}
	want("completed multipart upload", key, aws.ToString(done.VersionId))

	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &other, Key: aws.String("b"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	none("another bucket")
	if got := tap.reported.Load(); got != 2 {
		t.Errorf("tap counted %d reports, want 2", got)
	}
}
