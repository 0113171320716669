package source_test

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/source"
)

// TestCheckBuckets: a worker whose rule watches a bucket that is not there
// (its name, a wrong s3Endpoint) does not start, naming it: every event's
// object read as gone since its event, and was acknowledged at debug.
func TestCheckBuckets(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config("chkbkt")
	rule := cfg.Rules[0]
	client, err := env.S3(ctx, rule.SourceRegion)
	if err != nil {
		t.Fatal(err)
	}
	err = source.CheckBuckets(ctx, client, cfg, rule.SourceRegion, nil, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), rule.SourceBucket) || !strings.Contains(err.Error(), "rule "+rule.ID) {
		t.Fatalf("a missing watched bucket: %v; want refused, naming the rule and the bucket", err)
	}
	if err := env.EnsureBucket(ctx, rule.SourceRegion, rule.SourceBucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), rule.SourceRegion, rule.SourceBucket) })
	if err := source.CheckBuckets(ctx, client, cfg, rule.SourceRegion, nil, zap.NewNop()); err != nil {
		t.Errorf("the bucket there: %v", err)
	}
	// Another region's rules are not this worker's.
	if err := source.CheckBuckets(ctx, client, cfg, "ap-southeast-2", nil, zap.NewNop()); err != nil {
		t.Errorf("no rule of the region: %v", err)
	}
}
