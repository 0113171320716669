package awsapi_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestRejectedCredentialsReadAgain: a region's credentials that S3
// rejects are read again at the next call, not used until their 15
// minutes are up: a key rotated after the worker read it failed every copy
// (each staged and replicated again) until then. And a start-up that
// cannot read them fails (CheckedS3).
func TestRejectedCredentialsReadAgain(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	cfg, err := env.AWSConfig(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	region := config.Region{Name: "eu-west-1", S3Endpoint: env.S3Endpoints["eu-west-1"], S3PathStyle: true, S3Credentials: "env:XRC_REJECTED"}
	if _, err := awsapi.CheckedS3(ctx, cfg, region); err == nil {
		t.Fatal("a region whose credentials cannot be read checked")
	}
	t.Setenv("XRC_REJECTED_ACCESS_KEY_ID", "AKIAOLDROTATEDAWAY00")
	t.Setenv("XRC_REJECTED_SECRET_ACCESS_KEY", "not-the-key")
	c, err := awsapi.CheckedS3(ctx, cfg, region)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); awsapi.Code(err) != "InvalidAccessKeyId" {
		t.Fatalf("the old key: %v, want InvalidAccessKeyId", err)
	}
	t.Setenv("XRC_REJECTED_ACCESS_KEY_ID", env.AccessKey) // rotated
	t.Setenv("XRC_REJECTED_SECRET_ACCESS_KEY", env.SecretKey)
	if _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		t.Fatalf("the new key not used: %v", err)
	}
}
