package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestConditionalDeleteOnStack runs the SDK against the stack's proxy
// (localstack.Env.S3Conditional, deploy/local/stack up): DeleteObject with
// If-Match behaves as on AWS, and everything else still works through it.
// It fails, never skips, without the stack.
func TestConditionalDeleteOnStack(t *testing.T) {
	env := localstack.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	const region = "eu-west-1"
	client, err := env.S3Conditional(ctx, region)
	must(t, err)
	direct, err := env.S3(ctx, region)
	must(t, err)
	bucket := localstack.UniqueName("bridge-ifmatch")
	must(t, env.EnsureBucket(ctx, region, bucket, false))
	t.Cleanup(func() {
		if err := env.RemoveBucket(context.Background(), region, bucket); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	put := func(t *testing.T, key, body string) string {
		t.Helper()
		out, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader(body)})
		must(t, err)
		return aws.ToString(out.ETag)
	}
	del := func(key, ifMatch string) error {
		in := &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}
		if ifMatch != "" {
			in.IfMatch = &ifMatch
		}
		_, err := client.DeleteObject(ctx, in)
		return err
	}
	// etagOf is the key's ETag read from MinIO directly, "" when absent.
	etagOf := func(t *testing.T, key string) string {
		t.Helper()
		out, err := direct.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return ""
		}
		must(t, err)
		return aws.ToString(out.ETag)
	}

	t.Run("if-match", func(t *testing.T) {
		t.Parallel()
		const key = "dir/replaced.txt"
		v1 := put(t, key, "version one")
		v2 := put(t, key, "version two, longer")
		if v1 == v2 {
			t.Fatalf("both versions have ETag %s", v1)
		}
		wantAPIError(t, del(key, v1), "PreconditionFailed", http.StatusPreconditionFailed)
		if got := etagOf(t, key); got != v2 {
			t.Fatalf("after the refused delete the key has ETag %q, want v2 %s", got, v2)
		}
		must(t, del(key, strings.Trim(v2, `"`))) // unquoted is the same ETag
		if got := etagOf(t, key); got != "" {
			t.Fatalf("after the delete the key still has ETag %s", got)
		}
	})
	t.Run("missing key", func(t *testing.T) {
		t.Parallel()
		wantAPIError(t, del("never/written", `"d41d8cd98f00b204e9800998ecf8427e"`), "NoSuchKey", http.StatusNotFound)
	})
	t.Run("star", func(t *testing.T) {
		t.Parallel()
		const key = "star"
		put(t, key, "x")
		must(t, del(key, "*"))
		wantAPIError(t, del(key, "*"), "NoSuchKey", http.StatusNotFound)
	})
	t.Run("unconditional", func(t *testing.T) {
		t.Parallel()
		const key = "plain"
		put(t, key, "x")
		must(t, del(key, ""))
		if got := etagOf(t, key); got != "" {
			t.Fatalf("after the delete the key still has ETag %s", got)
		}
		must(t, del(key, "")) // absent: 204, as on S3
	})
	t.Run("escaped key", func(t *testing.T) {
		t.Parallel()
		// The signature covers the escaped path: the proxy must pass it as sent.
		const key = "odd/a b+c%d!é(1)*~='&;:@,$"
		v := put(t, key, "odd")
		if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
		wantAPIError(t, del(key, `"0"`), "PreconditionFailed", http.StatusPreconditionFailed)
		must(t, del(key, v))
		if got := etagOf(t, key); got != "" {
			t.Fatalf("after the delete the key still has ETag %s", got)
		}
	})
	t.Run("multipart", func(t *testing.T) {
		t.Parallel()
		const key = "big/multipart.bin"
		data := make([]byte, 20<<20)
		rand.Read(data)
		// Non-seekable and multipart with a full-object CRC32C, as the target worker uploads.
		_, err := transfermanager.New(client, func(o *transfermanager.Options) {
			o.PartSizeBytes = 8 << 20
			o.Concurrency = 3
		}).UploadObject(ctx, &transfermanager.UploadObjectInput{
			Bucket: &bucket, Key: aws.String(key), Body: io.MultiReader(bytes.NewReader(data)),
			ChecksumAlgorithm: tmtypes.ChecksumAlgorithmCrc32c, ChecksumType: tmtypes.ChecksumTypeFullObject,
		})
		must(t, err)
		etag := etagOf(t, key)
		if !strings.HasSuffix(etag, `-3"`) {
			t.Fatalf("ETag %s, want a 3-part upload's", etag)
		}
		got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key)})
		must(t, err)
		h := sha256.New()
		n, err := io.Copy(h, got.Body)
		got.Body.Close()
		must(t, err)
		if want := sha256.Sum256(data); n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("read back %d bytes with another SHA-256", n)
		}
		must(t, del(key, etag))
		if got := etagOf(t, key); got != "" {
			t.Fatalf("after the delete the key still has ETag %s", got)
		}
	})
}

func wantAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var apiErr smithy.APIError
	var re *smithyhttp.ResponseError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != code || !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("got %v, want API error %s with status %d", err, code, status)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
