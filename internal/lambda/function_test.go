package lambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/lambda"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// syncBuffer is a bytes.Buffer safe for the logger's writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConfigReload: a warm function reads the document again once its TTL
// passed (0 here: every invocation), rebuilds its handler when the document
// changed, and keeps the one it has when the new one is invalid. Metrics
// leave as EMF lines after each invocation.
// countedConfigError matches an EMF line counting a config error.
var countedConfigError = regexp.MustCompile(`"kind":"config"[^\n]*"xrc_target_errors_total":1|"xrc_target_errors_total":1[^\n]*"kind":"config"`)

func TestConfigReload(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "config.json")
	write := func(doc []byte) {
		t.Helper()
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.cfg.Settings.LogLevel = "info" // the reload below sets debug
	doc, err := json.Marshal(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	write(doc)
	var out syncBuffer
	fn, err := lambda.New(ctx, lambda.Env{Role: lambda.RoleTarget, ConfigTTL: 0,
		Flags: app.Flags{Config: path, Region: "eu-west-1", QueueURL: f.targetURL()}}, f.aws, &out)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func() {
		t.Helper()
		resp, err := fn.Invoke(ctx, events.SQSEvent{})
		if err != nil || resp.BatchItemFailures == nil || len(resp.BatchItemFailures) > 0 {
			t.Fatalf("empty batch: %+v, %v", resp, err)
		}
	}
	invoke()
	if strings.Contains(out.String(), "handler rebuilt") {
		t.Error("rebuilt although the document did not change")
	}
	f.cfg.Settings.Lambda.TargetBatchSize = 2
	// The level too (set in the parameter by hand, README's first step in
	// troubleshooting), not only the handler.
	f.cfg.Settings.LogLevel = "debug"
	if doc, err = json.Marshal(f.cfg); err != nil {
		t.Fatal(err)
	}
	write(doc)
	invoke()
	if !strings.Contains(out.String(), "config changed: handler rebuilt") {
		t.Error("a changed document did not rebuild the handler")
	}
	if !strings.Contains(out.String(), `"logLevel":"debug"`) {
		t.Error("the reloaded document's logLevel debug not taken")
	}
	// Another deployment's document (its tables, queues, namespace): the
	// function stays with the stack it was deployed for.
	other := *f.cfg
	other.Settings.StackName = f.cfg.Settings.StackName + "-other"
	if doc, err = json.Marshal(&other); err != nil {
		t.Fatal(err)
	}
	write(doc)
	rebuilt := strings.Count(out.String(), "handler rebuilt")
	invoke()
	if !strings.Contains(out.String(), "the stack this function was deployed for") || strings.Count(out.String(), "handler rebuilt") != rebuilt {
		t.Error("a document of another stackName was taken")
	}
	if !countedConfigError.MatchString(out.String()) {
		t.Error(`the refused stackName not counted as xrc_target_errors_total{kind="config"}`)
	}
	write([]byte(`{"version": 2}`))
	invoke()
	if !strings.Contains(out.String(), "config changed but cannot be used") {
		t.Error("an invalid document was not reported")
	}
	// Counted, for an alarm: warm environments go on with the old one.
	if strings.Count(out.String(), `"xrc_target_errors_total":1`) < 2 || !countedConfigError.MatchString(out.String()) {
		t.Error(`the failed reload not counted as xrc_target_errors_total{kind="config"}`)
	}
	if !strings.Contains(out.String(), `"_aws"`) {
		t.Error("no EMF line after the invocations")
	}
	// Lambda's SIGTERM may come more than once; never a panic. The first
	// writes what was counted since the last invocation.
	before := strings.Count(out.String(), `"_aws"`)
	fn.Shutdown()
	if strings.Count(out.String(), `"_aws"`) == before {
		t.Error("no EMF line at shutdown")
	}
	fn.Shutdown()
}

// TestTargetFunctionSweepsUploads: a target function aborts a recorded
// upload whose archive is gone from staging (a delivery cut on its last
// receive, or an environment killed mid-archive), as the Fargate worker
// does: in a region whose target runs only on Lambda nothing else would.
func TestTargetFunctionSweepsUploads(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	target := f.cfg.Settings.Regions[1]
	dst := f.rule.Destinations[0].Bucket
	key := "data/orphan.bin"
	up, err := f.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	ddb, err := f.env.DynamoDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := uploads.New(ddb, f.cfg.TableName(), time.Now)
	if err := store.Put(ctx, uploads.Upload{Region: target.Name, StagingBucket: target.StagingBucket, StagingKey: "r1/gone.tar.zst",
		ArchiveID: "gone", Member: "objects/000000/" + key, Bucket: dst, Key: key, UploadID: aws.ToString(up.UploadId),
		PartSize: 16 << 20, Started: time.Now().Add(-time.Hour)}, ""); err != nil {
		t.Fatal(err)
	}
	path := f.configFile(t)
	fn, err := lambda.New(ctx, lambda.Env{Role: lambda.RoleTarget, ConfigTTL: time.Hour,
		Flags: app.Flags{Config: path, Region: target.Name, QueueURL: f.targetURL()}}, f.aws, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := fn.Invoke(ctx, events.SQSEvent{}); err != nil {
			t.Fatal(err)
		}
		out, err := f.dst.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &dst, Prefix: &key})
		if err != nil {
			t.Fatal(err)
		}
		left, lerr := store.List(ctx, target.Name, "")
		if len(out.Uploads) == 0 && lerr == nil && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d uploads of %s, recorded %+v (%v); want the upload aborted and forgotten", len(out.Uploads), key, left, lerr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFailedColdStartTriedAgain: a cold start that cannot build the
// function (its config unreadable) does not end the environment; the
// invocation hands its batch back failed after trying again, and the next
// one, once the config reads, is handled.
func TestFailedColdStartTriedAgain(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "config.json") // not there yet
	var out syncBuffer
	s := lambda.Start(ctx, lambda.Env{Role: lambda.RoleTarget, ConfigTTL: time.Hour,
		Flags: app.Flags{Config: path, Region: "eu-west-1", QueueURL: f.targetURL()}}, f.aws, &out)
	if !strings.Contains(out.String(), "not started: tried again at the next invocation") {
		t.Fatalf("the failed cold start not logged:\n%s", out.String())
	}
	short, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	ev := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", EventSource: "aws:sqs", Body: "{}"}}}
	// Failed as an invocation (the batch comes back as with every message
	// reported failed): counted in the function's Errors, which alarm.
	if _, err := s.Invoke(short, ev); !errors.Is(err, app.ErrNotStarted) {
		t.Fatalf("invoked unbuilt: %v; want the invocation failed, not started", err)
	}
	doc, err := json.Marshal(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Invoke(ctx, events.SQSEvent{})
	if err != nil || resp.BatchItemFailures == nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("empty batch once the config reads: %+v, %v", resp, err)
	}
	s.Shutdown()
}

// TestOnlySQSBatches: an invocation with records that are no SQS
// messages (an S3 notification sent to the function itself) fails, said
// at error: reported per record, with no message id to fail, it read as
// done, and an asynchronous invoke dropped its events.
func TestOnlySQSBatches(t *testing.T) {
	var out syncBuffer
	s := lambda.Start(context.Background(), lambda.Env{Role: lambda.RoleSource, ConfigTTL: time.Hour,
		Flags: app.Flags{Config: filepath.Join(t.TempDir(), "none.json"), Region: "us-east-1"}}, aws.Config{}, &out)
	ev := events.SQSEvent{Records: []events.SQSMessage{{EventSource: "aws:s3", Body: ""}}}
	if _, err := s.Invoke(context.Background(), ev); err == nil || errors.Is(err, app.ErrNotStarted) || !strings.Contains(err.Error(), "no SQS message") {
		t.Fatalf("invoked with an S3 event: %v; want it refused as no SQS message", err)
	}
	if !strings.Contains(out.String(), "invoked with other than an SQS batch") {
		t.Errorf("not said:\n%s", out.String())
	}
}

// TestMemoryLimit: a function deployed without GOMEMLIMIT (not by the CDK
// app) takes 85% of its memory as its Go memory limit, as the app sets it;
// one with GOMEMLIMIT keeps it.
func TestMemoryLimit(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if limit, ok := lambda.MemoryLimit(env(map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"})); !ok || limit != 1769<<20*85/100 {
		t.Errorf("1769 MB without GOMEMLIMIT: %d, %v", limit, ok)
	}
	if _, ok := lambda.MemoryLimit(env(map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769", "GOMEMLIMIT": "1000MiB"})); ok {
		t.Error("GOMEMLIMIT set, and replaced")
	}
	if _, ok := lambda.MemoryLimit(env(nil)); ok {
		t.Error("a limit without a memory size")
	}
}

// TestTargetChecksItsCredentials: a target whose region has credentials
// of its own (a direct region's store) that cannot be read does not start,
// as the source's does not: it ran, and every archive failed towards the
// DLQ.
func TestTargetChecksItsCredentials(t *testing.T) {
	f := setup(t, func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_UNREAD"
	})
	path := f.configFile(t)
	_, err := lambda.New(context.Background(), lambda.Env{Role: lambda.RoleTarget, ConfigTTL: time.Hour,
		Flags: app.Flags{Config: path, Region: "eu-west-1", QueueURL: f.targetURL()}}, f.aws, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "S3 credentials") {
		t.Fatalf("a target whose credentials cannot be read: %v; want it not built, naming them", err)
	}
}
