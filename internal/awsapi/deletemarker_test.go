package awsapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestDeleteMarkerVersionIsNotFound: a read of a version that is now a
// delete marker (a versioning-suspended bucket's "null" write, deleted
// since: S3 answers 405 MethodNotAllowed) is a version gone, as a
// NoSuchVersion is: an event naming it failed every receive into the DLQ.
func TestDeleteMarkerVersionIsNotFound(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	c, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("dm")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	for _, status := range []s3types.BucketVersioningStatus{s3types.BucketVersioningStatusEnabled, s3types.BucketVersioningStatusSuspended} {
		if _, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &bucket,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: status}}); err != nil {
			t.Fatal(err)
		}
	}
	key := aws.String("k")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: key, Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: key}); err != nil {
		t.Fatal(err)
	}
	_, herr := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: key, VersionId: aws.String("null")})
	_, gerr := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: key, VersionId: aws.String("null")})
	for name, err := range map[string]error{"HEAD": herr, "GET": gerr} {
		if !awsapi.IsNotFound(err) {
			t.Errorf("%s of the null version, now a delete marker: %v (code %q), want it taken for not found", name, err, awsapi.Code(err))
		}
	}
}
