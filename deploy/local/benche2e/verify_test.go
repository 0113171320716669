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
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// The verifier takes a listed object whose ETag is the MD5 of the expected
// bytes as verified, reads and hashes any other (a multipart object's
// ETag is no MD5 of its bytes), and fails on an object whose bytes differ
// though its size matches.
func TestVerifierListsWhatItCanAndReadsTheRest(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("verify")
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })

	entry := func(key string, data []byte) manifestEntry {
		s, m := sha256.Sum256(data), md5.Sum(data)
		return manifestEntry{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:]), MD5: hex.EncodeToString(m[:])}
	}
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
	if err := verifyLoop(ctx, client, bucket, "p/", entries, json.NewEncoder(&out)); err != nil {
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
	if err := verifyLoop(ctx, client, bucket, "p/small", []manifestEntry{listed}, json.NewEncoder(io.Discard)); err != nil {
		t.Fatalf("verifyLoop read an object its HEAD verified: %v", err)
	}

	// Same size, other bytes: the ETag differs, so it is read, and fails.
	bad := bytes.ToUpper(small)
	put("q/bad", bad)
	err = verifyLoop(ctx, client, bucket, "q/", []manifestEntry{entry("q/bad", small)}, json.NewEncoder(io.Discard))
	if err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("verifyLoop on changed bytes: %v, want a SHA-256 mismatch", err)
	}
}
