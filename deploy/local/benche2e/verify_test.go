//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// verifyBucket is a new bucket on the local stack's us-east-1 MinIO, removed
// after the test, with the stack and a client for it.
func verifyBucket(ctx context.Context, t *testing.T) (localstack.Env, *s3.Client, string) {
	t.Helper()
	env := localstack.Require(t)
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("verify")
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	return env, client, bucket
}

// entryOf is the manifest entry of data stored at key.
func entryOf(key string, data []byte) manifestEntry {
	s, m := sha256.Sum256(data), md5.Sum(data)
	return manifestEntry{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:]), MD5: hex.EncodeToString(m[:])}
}

// The verifier takes a listed object whose ETag is the MD5 of the expected
// bytes as verified, reads and hashes any other (a multipart object's
// ETag is no MD5 of its bytes), and fails on an object whose bytes differ
// though its size matches.
func TestVerifierListsWhatItCanAndReadsTheRest(t *testing.T) {
	ctx := context.Background()
	_, client, bucket := verifyBucket(ctx, t)
	entry := entryOf
	small := []byte("a small object, PUT in one request")
	large := bytes.Repeat([]byte("0123456789abcdef"), 11<<16) // 11 MiB: three parts
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	put("p/small", small)
	up := transfermanager.New(client, func(o *transfermanager.Options) { o.PartSizeBytes, o.MultipartUploadThreshold = 5<<20, 5<<20 })
	if _, err := up.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &bucket, Key: aws.String("p/large"), Body: bytes.NewReader(large)}); err != nil {
		t.Fatal(err)
	}
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("p/large")})
	if err != nil || !strings.Contains(aws.ToString(head.ETag), "-") {
		t.Fatalf("p/large: ETag %q (%v), want a multipart ETag", aws.ToString(head.ETag), err)
	}

	// More than probeBelow objects: the verifier lists before it probes.
	entries := []manifestEntry{entry("p/small", small), entry("p/large", large)}
	for i := range probeBelow + 8 {
		key, data := fmt.Sprintf("p/many/%02d", i), []byte(fmt.Sprintf("object %d", i))
		put(key, data)
		entries = append(entries, entry(key, data))
	}
	var out bytes.Buffer
	if err := verifyLoop(ctx, client, bucket, "p/", entries, arrivals{}, json.NewEncoder(&out)); err != nil {
		t.Fatalf("verifyLoop: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf(`"event":"done","verified":%d`, len(entries))) {
		t.Fatalf("verifier said %s, want done with %d", out.String(), len(entries))
	}

	// An object whose ETag is its MD5 is never read (asked for by name, as
	// the last few are, its HEAD verifies it): given a wrong SHA-256, a read
	// would fail.
	listed := entry("p/small", small)
	listed.SHA256 = strings.Repeat("0", 64)
	if err := verifyLoop(ctx, client, bucket, "p/small", []manifestEntry{listed}, arrivals{}, json.NewEncoder(io.Discard)); err != nil {
		t.Fatalf("verifyLoop read an object its HEAD verified: %v", err)
	}

	// Same size, other bytes: the ETag differs, so it is read, and fails.
	bad := bytes.ToUpper(small)
	put("q/bad", bad)
	err = verifyLoop(ctx, client, bucket, "q/", []manifestEntry{entry("q/bad", small)}, arrivals{}, json.NewEncoder(io.Discard))
	if err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("verifyLoop on changed bytes: %v, want a SHA-256 mismatch", err)
	}
}

// Objects the event stream reports are verified without a listing: with
// more objects than the verifier probes by name and no listing after the
// first (made before they exist), only their events can bring them in.
// The stream holds its last few events back; those are found by name.
func TestVerifierFollowsCreatedEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, client, bucket := verifyBucket(ctx, t)
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}

	created := make(chan events.ObjectRef, 1024)
	streamErr := make(chan error, 1)
	go func() { streamErr <- listen(ctx, cfg, env.S3Endpoints["us-east-1"], bucket, "", created) }()
	// Objects outside the verified prefix until one comes through: the
	// stream is then listening.
	for i := 0; ; i++ {
		put(fmt.Sprintf("warm/%03d", i), []byte("warm"))
		select {
		case <-created:
		case err := <-streamErr:
			t.Fatalf("event stream: %v", err)
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}

	var entries []manifestEntry
	for i := range probeBelow + 16 {
		entries = append(entries, entryOf(fmt.Sprintf("e/%02d", i), []byte(fmt.Sprintf("object %d", i))))
	}
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- verifyLoop(ctx, client, bucket, "e/", entries, arrivals{created: created, listEvery: time.Hour}, json.NewEncoder(&out))
	}()
	time.Sleep(200 * time.Millisecond) // past its first listing
	for i, e := range entries {
		put(e.Key, []byte(fmt.Sprintf("object %d", i)))
	}
	if err := <-done; err != nil {
		t.Fatalf("verifyLoop: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf(`"event":"done","verified":%d`, len(entries))) {
		t.Fatalf("verifier said %s, want done with %d", out.String(), len(entries))
	}
}

// stop returns although nobody reads the verifier's events and it has
// said more than their buffer holds (Ctrl-C or an upload error before
// waitVerified): the reader must not stay blocked on a send, nor stop on
// the reader.
func TestVerifierStopUnread(t *testing.T) {
	line := `{"event":"progress","verified":1,"total":2}`
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt 200 ]; do echo '%s'; i=$((i+1)); done; exec sleep 600`, line))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	v, err := runVerifier(cmd, filepath.Join(t.TempDir(), "verify.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Until the event buffer is full and the reader waits on it.
	for deadline := time.Now().Add(10 * time.Second); len(v.events) < cap(v.events); {
		if time.Now().After(deadline) {
			t.Fatalf("%d events buffered, want %d", len(v.events), cap(v.events))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { v.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("stop did not return within 10 s")
	}
	v.stop() // again: a no-op
}
