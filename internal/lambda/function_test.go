package lambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/lambda"
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
	if doc, err = json.Marshal(f.cfg); err != nil {
		t.Fatal(err)
	}
	write(doc)
	invoke()
	if !strings.Contains(out.String(), "config changed: handler rebuilt") {
		t.Error("a changed document did not rebuild the handler")
	}
	write([]byte(`{"version": 2}`))
	invoke()
	if !strings.Contains(out.String(), "config changed but cannot be used") {
		t.Error("an invalid document was not reported")
	}
	if !strings.Contains(out.String(), `"_aws"`) {
		t.Error("no EMF line after the invocations")
	}
}
