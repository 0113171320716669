package localstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// Deployment is what Provision created: the local equivalent of the CDK
// stacks for one config.
type Deployment struct {
	SourceQueues map[string]string // rule id -> queue URL
	TargetQueues map[string]string // region -> queue URL
}

// LocalConfig loads the config at path (configs/local.json, written for
// the stack's default ports) and points each region the stack serves at
// the endpoint its environment names, so that a stack started with
// XRC_PORT_* overrides is the one used. The config is written to dir when
// that changed anything; the path returned is the one to hand to workers.
func (e Env) LocalConfig(ctx context.Context, path, dir string) (*config.Config, string, error) {
	cfg, err := config.Load(ctx, path, nil)
	if err != nil {
		return nil, "", err
	}
	moved := false
	for i := range cfg.Settings.Regions {
		r := &cfg.Settings.Regions[i]
		if u, ok := e.S3Endpoints[r.Name]; ok && r.S3Endpoint != "" && r.S3Endpoint != u {
			r.S3Endpoint, moved = u, true
		}
	}
	if !moved {
		return cfg, path, nil
	}
	cfg.Schema = ""
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, "", err
	}
	if cfg, err = config.Parse(data); err != nil {
		return nil, "", fmt.Errorf("%s on the stack's endpoints: %w", path, err)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return nil, "", err
	}
	return cfg, out, nil
}

// Provision creates on the stack everything cfg describes, as the CDK app
// does on AWS: staging buckets (versioned) replicated from every source
// region to every target region, watched and destination buckets, one queue
// (with DLQ) per rule fed by its bucket's events, one target queue per target
// region fed by its staging bucket's events. It is idempotent.
func (e Env) Provision(ctx context.Context, cfg *config.Config) (Deployment, error) {
	d := Deployment{SourceQueues: map[string]string{}, TargetQueues: map[string]string{}}
	w := cfg.Settings.Worker
	for _, r := range cfg.Settings.Regions {
		if err := e.EnsureBucket(ctx, r.Name, r.StagingBucket, true); err != nil {
			return d, err
		}
	}
	// One DynamoDB Local serves every "region", as one SQS does.
	if err := e.EnsureTable(ctx, cfg.TableName(), true); err != nil {
		return d, err
	}
	for _, r := range cfg.Settings.Regions {
		if !r.IsTarget() {
			continue
		}
		// One SQS serves every local "region", so two target regions would
		// share this queue; the stack only plays one.
		url, _, err := e.EnsureQueue(ctx, cfg.TargetQueueName(), w.MaxReceiveCount, w.VisibilityTimeout.D())
		if err != nil {
			return d, err
		}
		if err := e.RouteEvents(ctx, r.Name, r.StagingBucket, url, "", "s3:ObjectCreated:*"); err != nil {
			return d, err
		}
		d.TargetQueues[r.Name] = url
	}
	// Queue names are unique per region, and one SQS plays them all:
	// rule "x-dlq" of one region would take over rule "x"'s dead-letter
	// queue of another.
	dlqs := map[string]bool{}
	for _, rule := range cfg.Rules {
		dlqs[config.DeadLetterQueueName(cfg.SourceQueueName(rule.ID))] = true
	}
	for _, rule := range cfg.Rules {
		if name := cfg.SourceQueueName(rule.ID); dlqs[name] {
			return d, fmt.Errorf("rule %s: its queue %s is another rule's dead-letter queue, which the one local SQS cannot tell apart by region", rule.ID, name)
		}
	}
	replicated := map[[2]string]bool{}
	for _, rule := range cfg.Rules {
		src, _ := cfg.Region(rule.SourceRegion)
		if err := e.EnsureBucket(ctx, rule.SourceRegion, rule.SourceBucket, false); err != nil {
			return d, err
		}
		url, _, err := e.EnsureQueue(ctx, cfg.SourceQueueName(rule.ID), w.MaxReceiveCount, w.VisibilityTimeout.D())
		if err != nil {
			return d, err
		}
		if err := e.RouteEvents(ctx, rule.SourceRegion, rule.SourceBucket, url, rule.Prefix, "s3:ObjectCreated:*", "s3:ObjectRemoved:*"); err != nil {
			return d, err
		}
		d.SourceQueues[rule.ID] = url
		for _, dest := range rule.Destinations {
			if err := e.EnsureBucket(ctx, dest.Region, dest.Bucket, false); err != nil {
				return d, err
			}
			pair := [2]string{src.Name, dest.Region}
			if replicated[pair] {
				continue
			}
			tgt, _ := cfg.Region(dest.Region)
			if tgt.Direct {
				// The source copies its archives there itself; its
				// staging bucket's events reach the target queue as any
				// do.
				continue
			}
			if err := e.Replicate(ctx, src.Name, src.StagingBucket, tgt.Name, tgt.StagingBucket); err != nil {
				return d, fmt.Errorf("replicating %s to %s: %w", src.StagingBucket, tgt.StagingBucket, err)
			}
			replicated[pair] = true
		}
	}
	return d, nil
}

// Config returns a two-region config (us-east-1 source, eu-west-1 target)
// pointing at the stack, with names unique to this call so tests running at
// the same time do not meet. Callers adjust it, then Validate and Provision.
func (e Env) Config(prefix string) *config.Config {
	n := UniqueName(prefix[:min(len(prefix), 10)])
	cfg := &config.Config{
		Version: config.Version,
		Settings: config.Settings{
			StackName: n,
			Regions: []config.Region{
				{Name: "us-east-1", Role: config.RoleSource, StagingBucket: n + "-stg1", S3Endpoint: e.S3Endpoints["us-east-1"], S3PathStyle: true, S3ConditionalWrites: true, S3SourceChecksums: true},
				// Through the bridge's proxy, which honours If-Match on
				// DeleteObject as S3 does (MinIO ignores it): every
				// test's target deletes and undos are conditional.
				{Name: "eu-west-1", Role: config.RoleTarget, StagingBucket: n + "-stg2", S3Endpoint: e.ConditionalS3Endpoints["eu-west-1"], S3PathStyle: true, S3ConditionalWrites: true, S3SourceChecksums: true},
			},
			Worker: config.Worker{
				Concurrency:       8,
				DrainTimeout:      config.Duration(20e9),
				VisibilityTimeout: config.Duration(30e9),
				MaxReceiveCount:   3,
				// Tests stop workers often; each stop waits for its poll.
				ReceiveWait: config.Duration(time.Second),
				MetricsAddr: "127.0.0.1:0",
			},
			LogLevel: "debug",
			// A tenth of the default: tests start many workers.
			Adaptive: config.Adaptive{Benchmark: config.Duration(100 * time.Millisecond)},
		},
		Rules: []config.Rule{{
			ID:           "r1",
			SourceRegion: "us-east-1",
			SourceBucket: n + "-src",
			Prefix:       "data/",
			Batch:        config.Batch{MaxObjects: 1000, MaxBytes: 64 << 20, MaxAge: config.Duration(2e9)},
			Destinations: []config.Destination{{Region: "eu-west-1", Bucket: n + "-dst"}},
		}},
	}
	// Round-trip through the loader so defaults apply exactly as for a file.
	data, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	parsed, err := config.Parse(data)
	if err != nil {
		panic(fmt.Sprintf("localstack: generated config is invalid: %v", err))
	}
	return parsed
}

// Deploy is a test's deployment on the stack: it requires the stack (the
// test fails loudly without it), makes a Config named after prefix, lets
// edit adjust it and provisions it.
func Deploy(t testing.TB, prefix string, edit func(*config.Config)) (Env, *config.Config, Deployment) {
	t.Helper()
	env := Require(t)
	cfg := env.Config(prefix)
	if edit != nil {
		edit(cfg)
	}
	dep, err := env.Provision(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last, after the test's workers stop.
	t.Cleanup(func() { env.removePassed(t, cfg) })
	return env, cfg, dep
}

// removePassed gives the shared stack's disk back once t has passed (a few
// days of make test had left 1,050 buckets and 30 GB there, and MinIO's
// upkeep walks them all): each rule's watched and destination buckets, the
// queues and the table. A failed test's deployment stays for inspection. Staging
// buckets stay too (they hold little): an archive's replication and its
// events may still be in flight through MinIO and the bridge, and MinIO
// sends a region's events in order, one at a time, for every test; the
// tests that know every archive's event was handled remove them.
func (e Env) removePassed(t testing.TB, cfg *config.Config) {
	if t.Failed() {
		t.Logf("kept deployment %s for inspection", cfg.Settings.StackName)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range cfg.Rules {
		buckets := [][2]string{{r.SourceRegion, r.SourceBucket}}
		for _, d := range r.Destinations {
			buckets = append(buckets, [2]string{d.Region, d.Bucket})
		}
		for _, b := range buckets {
			if err := e.RemoveBucket(ctx, b[0], b[1]); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
		if err := e.DeleteQueue(ctx, cfg.SourceQueueName(r.ID)); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	if err := e.DeleteQueue(ctx, cfg.TargetQueueName()); err != nil {
		t.Logf("cleanup: %v", err)
	}
	if err := e.DeleteTable(ctx, cfg.TableName()); err != nil {
		t.Logf("cleanup: %v", err)
	}
}
