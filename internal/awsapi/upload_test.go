package awsapi_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// slowComplete is a real S3 client whose completes take a while, as S3's
// may for thousands of parts.
type slowComplete struct {
	*s3.Client
	delay time.Duration
}

func (c slowComplete) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(c.delay):
	}
	return c.Client.CompleteMultipartUpload(ctx, in, optFns...)
}

// cancelAtComplete is a real S3 client whose caller's context is
// cancelled as CompleteMultipartUpload goes out (a drain ending then).
type cancelAtComplete struct {
	*s3.Client
	cancel context.CancelFunc
}

func (c cancelAtComplete) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	c.cancel()
	time.Sleep(50 * time.Millisecond)
	return c.Client.CompleteMultipartUpload(ctx, in, optFns...)
}

// TestCompleteOutlivesTheCut: a multipart upload whose caller is cut
// while its complete is in flight is completed and said so, not reported
// failed (S3 may complete it all the same); uncut, a complete takes as
// long as it takes.
func TestCompleteOutlivesTheCut(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	c, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("complete")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	slow := awsapi.NewUploader(slowComplete{c, awsapi.AbortTimeout + time.Second}, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.MultipartUploadThreshold = 5<<20, 5<<20
	})
	if _, err := slow.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &bucket, Key: aws.String("slow"), Body: bytes.NewReader(make([]byte, 11<<20))}); err != nil {
		t.Fatalf("upload whose complete took %v: %v", awsapi.AbortTimeout+time.Second, err)
	}
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	up := awsapi.NewUploader(cancelAtComplete{c, cancel}, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.MultipartUploadThreshold = 5<<20, 5<<20
	})
	key := "archive"
	if _, err := up.UploadObject(cut, &transfermanager.UploadObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(make([]byte, 11<<20))}); err != nil {
		t.Fatalf("upload cut at its complete: %v; want it completed", err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		t.Errorf("the completed upload's object: %v", err)
	}
	// Without grace (a copy made again when cut), the cut ends it.
	cut, cancel = context.WithCancel(ctx)
	defer cancel()
	now := awsapi.NewUploaderNoGrace(cancelAtComplete{c, cancel}, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.MultipartUploadThreshold = 5<<20, 5<<20
	})
	if _, err := now.UploadObject(cut, &transfermanager.UploadObjectInput{Bucket: &bucket, Key: aws.String("copy"), Body: bytes.NewReader(make([]byte, 11<<20))}); err == nil {
		t.Error("an upload without grace, cut at its complete, completed")
	}
}
