package lambda_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	xevents "github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/lambda"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// fixture is one provisioned deployment on the local stack (us-east-1
// source, eu-west-1 target) and the clients a test and its handlers use.
type fixture struct {
	env  localstack.Env
	cfg  *config.Config
	dep  localstack.Deployment
	rule *config.Rule
	src  *s3.Client // the test's own clients
	dst  *s3.Client
	sqs  *sqs.Client
	log  *zap.Logger
	// aws is what the handlers' clients are built from, as
	// cmd/xrc-lambda builds them (awsapi).
	aws aws.Config
}

func setup(t testing.TB, edit func(*config.Config)) *fixture {
	t.Helper()
	env, cfg, dep := localstack.Deploy(t, "lambda", edit)
	ctx := context.Background()
	f := &fixture{env: env, cfg: cfg, dep: dep, rule: &cfg.Rules[0]}
	var err error
	if f.src, err = env.S3(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if f.dst, err = env.S3(ctx, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	if f.sqs, err = env.SQS(ctx); err != nil {
		t.Fatal(err)
	}
	if f.aws, err = awsapi.Load(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	f.log, _ = localstack.ObservedLogger(t, zapcore.InfoLevel)
	return f
}

// configFile writes the fixture's config to a file, for a function to
// read as its document.
func (f *fixture) configFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	doc, err := json.Marshal(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *fixture) sourceURL() string { return f.dep.SourceQueues[f.rule.ID] }
func (f *fixture) targetURL() string { return f.dep.TargetQueues["eu-west-1"] }

func (f *fixture) staging(region string) string {
	r, _ := f.cfg.Region(region)
	return r.StagingBucket
}

// sourceHandler is the source role's handler as cmd/xrc-lambda builds it,
// with the worker's S3 client wrapped by wrap (nil: as it is).
func (f *fixture) sourceHandler(t testing.TB, wrap func(source.S3API) source.S3API) *lambda.Source {
	t.Helper()
	return f.sourceHandlerWith(t, wrap, f.cfg.Settings.Lambda.Margin.D(), nil)
}

// sourceHandlerWith is sourceHandler with the invocation's margin and
// the direct regions' clients given; relay messages are visible at once.
func (f *fixture) sourceHandlerWith(t testing.TB, wrap func(source.S3API) source.S3API, margin time.Duration, direct map[string]source.S3API) *lambda.Source {
	t.Helper()
	region, _ := f.cfg.Region("us-east-1")
	var client source.S3API = awsapi.S3(f.aws, region)
	if wrap != nil {
		client = wrap(client)
	}
	q := queue.New(sqs.NewFromConfig(f.aws), f.sourceURL())
	m := source.NewMetrics(prometheus.NewRegistry())
	w, err := source.New(source.Deps{Config: f.cfg, Region: "us-east-1", RuleIDs: []string{f.rule.ID}, Queue: q, S3: client, Log: f.log, Metrics: m,
		Direct: direct, RelayWait: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w.Prepare(ctx)
	return lambda.NewSource(lambda.SourceOptions{Worker: w, Queue: q, Margin: margin, MaxReceive: f.cfg.Settings.Worker.MaxReceiveCount, Log: f.log, Metrics: m.Metrics})
}

// targetHandler is the target role's handler as cmd/xrc-lambda builds it.
func (f *fixture) targetHandler(t testing.TB) *lambda.Target {
	t.Helper()
	region, _ := f.cfg.Region("eu-west-1")
	q := queue.New(sqs.NewFromConfig(f.aws), f.targetURL())
	ddb, err := f.env.DynamoDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	table := f.cfg.TableName()
	m := deliver.NewMetrics(prometheus.NewRegistry())
	w, err := deliver.New(deliver.Deps{Config: f.cfg, Region: "eu-west-1", Queue: q, S3: awsapi.S3(f.aws, region),
		Tombstones: tombstone.New(ddb, table, time.Now), Ledger: ledger.New(ddb, table, time.Now), Uploads: uploads.New(ddb, table, time.Now),
		Log: f.log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return lambda.NewTarget(lambda.TargetOptions{Deliverer: w, Staging: region.StagingBucket, MaxReceive: f.cfg.Settings.Worker.MaxReceiveCount,
		Queue: q, Margin: f.cfg.Settings.Lambda.Margin.D(), Log: f.log, Metrics: m.Metrics})
}

// receive takes n messages from queueURL, waiting up to a minute for the
// bridge to deliver S3's events; they stay hidden for five minutes.
func (f *fixture) receive(t testing.TB, queueURL string, n int) []sqstypes.Message {
	t.Helper()
	ctx := context.Background()
	var msgs []sqstypes.Message
	for deadline := time.Now().Add(time.Minute); len(msgs) < n; {
		got, err := localstack.Receive(ctx, f.sqs, queueURL, n-len(msgs), 2*time.Second, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, got...)
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages arrived in %s", len(msgs), n, queueURL)
		}
	}
	return msgs
}

// receiveAll takes every message that arrives in queueURL within wait.
func (f *fixture) receiveAll(t testing.TB, queueURL string, wait time.Duration) []sqstypes.Message {
	t.Helper()
	var msgs []sqstypes.Message
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		got, err := localstack.Receive(context.Background(), f.sqs, queueURL, 10, time.Second, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, got...)
	}
	return msgs
}

// send puts body into queueURL and returns its message id.
func (f *fixture) send(t *testing.T, queueURL, body string) string {
	t.Helper()
	out, err := f.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.MessageId)
}

// keyOf returns the key the message's (first) event names, or "".
func keyOf(m sqstypes.Message) string {
	parsed, err := xevents.Parse([]byte(aws.ToString(m.Body)))
	if err != nil || len(parsed.Refs) == 0 {
		return ""
	}
	return parsed.Refs[0].Key
}

// archived returns the keys in the rule's staging archives (each archive
// read whole, so verified).
func (f *fixture) archived(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	bucket := f.staging("us-east-1")
	var keys []string
	p := s3.NewListObjectsV2Paginator(f.src, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(f.rule.ID + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Contents {
			get, err := f.src.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: item.Key})
			if err != nil {
				t.Fatal(err)
			}
			r, err := archive.NewReader(get.Body, archive.ReaderOptions{})
			if err != nil {
				t.Fatalf("archive %s: %v", *item.Key, err)
			}
			for {
				_, o, body, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("archive %s: %v", *item.Key, err)
				}
				if _, err := io.Copy(io.Discard, body); err != nil {
					t.Fatalf("archive %s: %v", *item.Key, err)
				}
				keys = append(keys, o.Key)
			}
			r.Close()
			get.Body.Close()
		}
	}
	slices.Sort(keys)
	return keys
}

// uploadsLeft lists the multipart uploads open in bucket (whole: MinIO
// takes a prefix as an exact key).
func uploadsLeft(t *testing.T, client *s3.Client, bucket string) []string {
	t.Helper()
	out, err := client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}
