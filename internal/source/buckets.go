package source

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// BucketHeader is the S3 call CheckBuckets makes; *s3.Client satisfies it.
type BucketHeader interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// CheckBuckets fails start-up when a bucket the worker's rules (those of
// region in ruleIDs; empty: every one there) watch is not there or is
// refused to it: every object would then read as gone since its event (a
// 404: a wrong s3Endpoint, a renamed bucket), each skipped at debug and
// its message acknowledged, the rule lost without a word. Any other
// failure (an outage) is left to the reads that meet it.
func CheckBuckets(ctx context.Context, api BucketHeader, cfg *config.Config, region string, ruleIDs []string, log *zap.Logger) error {
	seen := map[string]bool{}
	for _, r := range served(cfg, region, ruleIDs) {
		if seen[r.SourceBucket] {
			continue
		}
		seen[r.SourceBucket] = true
		_, err := api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &r.SourceBucket})
		switch {
		case err == nil:
		case awsapi.IsNotFound(err):
			return fmt.Errorf("rule %s watches bucket %s, which is not in %s (its name, or the region's s3Endpoint): %w", r.ID, r.SourceBucket, region, err)
		case awsapi.IsAccessDenied(err):
			// Without s3:ListBucket S3 answers a missing object's read
			// with 403, not 404: every delete or overwrite raced would
			// fail to the DLQ.
			return fmt.Errorf("rule %s watches bucket %s, which this worker may not list (%s: s3:ListBucket, in the bucket's policy too when another account owns it, or the region's credentials): %w",
				r.ID, r.SourceBucket, awsapi.Code(err), err)
		default:
			log.Warn("watched bucket not checked at start-up; going on", zap.String("rule", r.ID), zap.String("bucket", r.SourceBucket), zap.Error(err))
		}
	}
	return nil
}
