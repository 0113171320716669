package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/config"
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

// TestMetricsFlushedAfterDrain: what the worker counts after the stop
// signal (its drain) still reaches the EMF stream, because Stop flushes
// once the worker has returned.
func TestMetricsFlushedAfterDrain(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
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
	if _, _, err := SourceRules(cfg, "eu-west-1", Flags{}); err == nil {
		t.Error("a region without source rules")
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
