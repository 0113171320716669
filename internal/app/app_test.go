package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

func TestParseFlags(t *testing.T) {
	env := map[string]string{"XRC_CONFIG": "ssm:///xrc/config", "AWS_REGION": "eu-west-1", "XRC_RULES": "logs"}
	f, err := ParseFlags("x", nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if f.Config != "ssm:///xrc/config" || f.Region != "eu-west-1" || f.Rules != "logs" {
		t.Errorf("from env: %+v", f)
	}
	f, err = ParseFlags("x", []string{"-config", "c.json", "-region", "us-east-1"}, func(k string) string { return env[k] })
	if err != nil || f.Config != "c.json" || f.Region != "us-east-1" {
		t.Errorf("flags override env: %+v %v", f, err)
	}
	env["XRC_REGION"] = "ap-southeast-2"
	if f, _ := ParseFlags("x", nil, func(k string) string { return env[k] }); f.Region != "ap-southeast-2" {
		t.Errorf("XRC_REGION should win over AWS_REGION: %q", f.Region)
	}
	if _, err := ParseFlags("x", nil, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "XRC_CONFIG") {
		t.Errorf("missing config: %v", err)
	}
}

func TestExit(t *testing.T) {
	if Exit(nil) != 0 || Exit(context.Canceled) != 0 || Exit(flag.ErrHelp) != 0 || Exit(errors.New("boom")) != 1 {
		t.Error("exit codes")
	}
	_, err := ParseFlags("x", []string{"-bogus"}, func(string) string { return "" })
	if Exit(err) != 2 {
		t.Errorf("unknown flag: exit %d, want 2 (%v)", Exit(err), err)
	}
	_, err = ParseFlags("x", nil, func(string) string { return "" })
	if Exit(err) != 2 {
		t.Errorf("no config: exit %d, want 2 (%v)", Exit(err), err)
	}
}

// TestStoppedWhileStarting: a worker stopped while its config loads (ECS
// replacing a task whose health check never answered, SSM being out of
// reach) says what it was waiting for and fails; it exited 0 with not a
// line written.
func TestStoppedWhileStarting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent: accepted, never answered
		}
	}()
	t.Setenv("AWS_ENDPOINT_URL_SSM", "http://"+ln.Addr().String())
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	time.AfterFunc(300*time.Millisecond, stop) // SIGTERM
	_, err = Start(ctx, "xrc-test", []string{"-config", "ssm:///xrc/config", "-region", "us-east-1"}, func(string) string { return "" }, io.Discard)
	var stderr bytes.Buffer
	if code := exit(NotStarted(err), &stderr); code != 1 || !strings.Contains(stderr.String(), "not started") || !strings.Contains(stderr.String(), "/xrc/config") {
		t.Errorf("stopped while loading its config: exit %d, said %q; want 1, naming the parameter", code, stderr.String())
	}
	for _, c := range []struct {
		err  error
		code int
	}{{flag.ErrHelp, 0}, {fmt.Errorf("%w: no config", ErrUsage), 2}, {errors.New("boom"), 1}, {fmt.Errorf("x: %w", context.Canceled), 1}} {
		if got := exit(NotStarted(c.err), io.Discard); got != c.code {
			t.Errorf("exit(NotStarted(%v)) = %d, want %d", c.err, got, c.code)
		}
	}
	// The mains wrap what their role's set-up refused (XRC_RULES missing
	// where rules share a region, the worker's own checks), which may
	// have said it already.
	if got := NotStarted(NotStarted(errors.New("rules share region"))).Error(); got != "not started: rules share region" {
		t.Errorf("wrapped twice: %q", got)
	}
}

// TestMetricsFlushedAfterDrain: what the worker counts after the stop
// signal (its drain) still reaches the EMF stream, because Stop flushes
// once the worker has returned.
func TestMetricsFlushedAfterDrain(t *testing.T) {
	startLocal(t)
	ctx, stop := context.WithCancel(context.Background())
	var out syncBuffer
	p, err := Start(ctx, "xrc-test", nil, os.Getenv, &out)
	if err != nil {
		t.Fatal(err)
	}
	drained := prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_test_drained_total"})
	p.Registry.MustRegister(drained)
	stop()                            // SIGTERM
	time.Sleep(50 * time.Millisecond) // the periodic flusher sees the signal
	drained.Inc()                     // work finished during the drain
	p.Stop()
	if !strings.Contains(out.String(), `"xrc_test_drained_total":1`) {
		t.Errorf("the drain's metrics never reached the EMF stream:\n%s", out.String())
	}
	// The EMF namespace is the stack's name.
	if !strings.Contains(out.String(), `"Namespace":"xrc-local"`) {
		t.Errorf("EMF namespace is not the stack name")
	}
}

// TestStandardLoggerInTheLog: a line of a library printing with the
// standard logger (the SDK's transfer manager does) is a JSON line of the
// log, until the process stops.
func TestStandardLoggerInTheLog(t *testing.T) {
	startLocal(t)
	var out syncBuffer
	p, err := Start(context.Background(), "xrc-test", nil, os.Getenv, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Printf("failed to complete multipart upload for upload ID %v", "u1")
	p.Stop()
	var line map[string]any
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, "failed to complete multipart upload") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("the standard logger's line is no JSON: %q", l)
			}
		}
	}
	if line["service"] != "xrc-test" || line["level"] != "warn" {
		t.Errorf("the standard logger's line %v, want one of the log, with its service, at warn", line)
	}
}

// TestConfigWarningsLogged: what xrc config validate warns of is said in
// the worker's log too (a config deployed without the check was silent).
func TestConfigWarningsLogged(t *testing.T) {
	startLocal(t)
	data, err := os.ReadFile(os.Getenv("XRC_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "https://127.0.0.1:9002", "http://store.example:9002", 1))
	if err := os.WriteFile(os.Getenv("XRC_CONFIG"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	p, err := Start(context.Background(), "xrc-test", nil, os.Getenv, &out)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if !strings.Contains(out.String(), `"msg":"config warning"`) || !strings.Contains(out.String(), "plain HTTP") {
		t.Errorf("no config warning in the log:\n%s", out.String())
	}
}

// TestCheckTable: a worker whose deployment's table is missing (the
// region's stack not deployed, a stackName mistyped) does not start, and
// says which table and region; it retried every archive to the DLQ with
// /healthz green.
func TestCheckTable(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config(localstack.UniqueName("chk"))
	ddb := env.ConfigTable(t, cfg)
	p := &Process{Config: cfg, Region: "eu-west-1", Log: zaptest.NewLogger(t)}
	if err := p.CheckTable(ctx, ddb); err != nil {
		t.Errorf("the deployment's table: %v", err)
	}
	// Stopped while checking: not started (it went on, the role started
	// on a cancelled context).
	stopped, stop := context.WithCancel(ctx)
	stop()
	if err := p.CheckTable(stopped, ddb); !errors.Is(err, ErrNotStarted) {
		t.Errorf("stopped while checking the table: %v, want ErrNotStarted", err)
	}
	missing := *cfg
	missing.Settings.StackName += "-none"
	p.Config = &missing
	err := p.CheckTable(ctx, ddb)
	if err == nil || !strings.Contains(err.Error(), missing.TableName()) || !strings.Contains(err.Error(), "not found in eu-west-1") {
		t.Errorf("a missing table: %v, want it named, with the region", err)
	}
}

// TestQueueChecked: a worker given its queue's URL (as the CDK app gives
// it) reads the queue at start, so one missing fails start-up, named; it
// started and failed each receive, /healthz red only minutes later.
func TestQueueChecked(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := localstack.UniqueName("chk")
	url, _, err := env.EnsureQueue(ctx, name, 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteQueue(context.Background(), name) })
	p := &Process{Flags: Flags{QueueURL: url}}
	if got, err := p.QueueURL(ctx, client, "unused"); err != nil || got != (Queue{URL: url, MaxReceiveCount: 3}) {
		t.Errorf("an existing queue: %+v, %v; want its URL and its redrive policy's 3 receives", got, err)
	}
	// A queue without a dead-letter queue.
	bare, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-bare")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: bare.QueueUrl}) })
	if got, err := ReadQueue(ctx, client, *bare.QueueUrl); err != nil || got != (Queue{URL: *bare.QueueUrl}) {
		t.Errorf("a queue without a DLQ: %+v, %v", got, err)
	}
	missing := strings.Replace(url, name, name+"-none", 1)
	p.Flags.QueueURL = missing
	if _, err := p.QueueURL(ctx, client, "unused"); err == nil || !strings.Contains(err.Error(), "not started: queue "+missing) {
		t.Errorf("a missing queue: %v, want start-up to fail naming it", err)
	}
}

// startLocal sets the environment Start reads to the local example config
// (configs/local.json), serving eu-west-1.
func startLocal(t *testing.T) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "local.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XRC_CONFIG": cfgPath, "XRC_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// TestLogsAndMetricsTakeTurns: log lines and EMF documents share stdout
// and never overlap there (a write over the pipe's atomic size beside
// another interleaves with it, and CloudWatch drops the EMF document).
func TestLogsAndMetricsTakeTurns(t *testing.T) {
	startLocal(t)
	var out overlapWriter
	p, err := Start(context.Background(), "xrc-test", nil, os.Getenv, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	counted := prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_test_counted_total"})
	p.Registry.MustRegister(counted)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			p.Log.Info("a line", zap.Int("i", i))
		}
	})
	wg.Go(func() {
		for range 200 {
			counted.Inc() // a document each flush
			if err := p.emf.Flush(time.Now()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if out.overlaps.Load() > 0 {
		t.Errorf("%d writes to stdout overlapped another", out.overlaps.Load())
	}
}

// overlapWriter counts writes that began while another was under way.
type overlapWriter struct{ busy, overlaps atomic.Int32 }

func (w *overlapWriter) Write(p []byte) (int, error) {
	if w.busy.Add(1) > 1 {
		w.overlaps.Add(1)
	}
	time.Sleep(20 * time.Microsecond) // a write to a pipe takes time
	w.busy.Add(-1)
	return len(p), nil
}

// syncBuffer is a bytes.Buffer safe for the logger and the flusher at once.
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

func TestSourceRules(t *testing.T) {
	cfg, err := config.Load(context.Background(), filepath.Join("..", "..", "configs", "example.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rules, queue, err := SourceRules(cfg, "us-east-1", Flags{Rules: "exports"})
	if err != nil || len(rules) != 1 || rules[0] != "exports" || queue != "xrc-src-exports" {
		t.Errorf("one rule: %v %q %v", rules, queue, err)
	}
	if _, _, err := SourceRules(cfg, "us-east-1", Flags{}); err == nil || !strings.Contains(err.Error(), "XRC_RULES") {
		t.Errorf("two rules sharing a region without a queue URL: %v", err)
	}
	if rules, _, err := SourceRules(cfg, "us-east-1", Flags{QueueURL: "https://q"}); err != nil || len(rules) != 2 {
		t.Errorf("two rules on one queue URL: %v %v", rules, err)
	}
	// Where to run it instead is said.
	if _, _, err := SourceRules(cfg, "eu-west-1", Flags{}); err == nil || !strings.Contains(err.Error(), "[us-east-1]") {
		t.Errorf("a region without source rules: %v; want the source regions listed", err)
	}
	// A rule named wrongly is refused, not dropped with its queue's
	// events acknowledged.
	for _, ids := range []string{"exports, typo", "exports,", "logs-eu"} {
		if _, _, err := SourceRules(cfg, "us-east-1", Flags{Rules: ids, QueueURL: "https://q"}); err == nil || !strings.Contains(err.Error(), "XRC_RULES") {
			t.Errorf("XRC_RULES=%q: %v", ids, err)
		}
	}
	if rules, _, err := SourceRules(cfg, "us-east-1", Flags{Rules: " exports , logs", QueueURL: "https://q"}); err != nil || len(rules) != 2 || rules[0] != "exports" {
		t.Errorf("XRC_RULES with spaces: %q %v", rules, err)
	}
	// Named twice, served (and its batches counted) once.
	if rules, _, err := SourceRules(cfg, "us-east-1", Flags{Rules: "exports,exports"}); err != nil || len(rules) != 1 {
		t.Errorf("XRC_RULES=exports,exports: %q %v", rules, err)
	}
	// Two rules on one queue hold two batches each: together past SQS's
	// in-flight limit, the second rule's batches would never fill.
	cfg.Rules[0].Batch.MaxObjects, cfg.Rules[1].Batch.MaxObjects = 30000, 30001
	if _, _, err := SourceRules(cfg, "us-east-1", Flags{QueueURL: "https://q"}); err == nil ||
		!strings.Contains(err.Error(), "share one queue and hold up to 120002 messages") {
		t.Errorf("two rules past SQS's in-flight limit on one queue: %v", err)
	}
	if _, _, err := SourceRules(cfg, "us-east-1", Flags{Rules: "logs"}); err != nil {
		t.Errorf("one rule of the two on its own queue: %v", err)
	}
}

// TestReceives: the queue's redrive policy decides when SQS gives up on a
// message, so a worker counts receives by it: a config edited by hand to
// another count made a message cut on its last receive go to the DLQ
// untried. A queue without a DLQ is said at error.
func TestReceives(t *testing.T) {
	cfg := &config.Config{}
	cfg.Settings.Worker.MaxReceiveCount = 8
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	if got := Receives(cfg, Queue{URL: "q", MaxReceiveCount: 8}, log); got != cfg || logs.Len() != 0 {
		t.Errorf("the same count: %v, %d lines", got == cfg, logs.Len())
	}
	got := Receives(cfg, Queue{URL: "q", MaxReceiveCount: 3}, log)
	if got.Settings.Worker.MaxReceiveCount != 3 || cfg.Settings.Worker.MaxReceiveCount != 8 {
		t.Errorf("the queue's 3 against the config's 8: %d (config now %d)", got.Settings.Worker.MaxReceiveCount, cfg.Settings.Worker.MaxReceiveCount)
	}
	if l := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("redrive policy").All(); len(l) != 1 {
		t.Errorf("the difference not said once at warn: %v", logs.All())
	}
	if got := Receives(cfg, Queue{URL: "q"}, log); got.Settings.Worker.MaxReceiveCount != 8 ||
		logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("no dead-letter queue").Len() != 1 {
		t.Errorf("no DLQ: %d receives, lines %v", got.Settings.Worker.MaxReceiveCount, logs.All())
	}
}
