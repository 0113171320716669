package lambda_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// buildFunction compiles cmd/xrc-lambda as Lambda runs it (bootstrap).
func buildFunction(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/xrc-lambda")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/xrc-lambda: %v\n%s", err, out)
	}
	return bin
}

// emulate runs the function in the Lambda runtime interface emulator with
// env, each invocation limited to timeout; its output goes to a file
// printed if the test fails.
func (f *fixture) emulate(t *testing.T, bin, name string, timeout time.Duration, env ...string) *localstack.Emulator {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	e, err := localstack.StartEmulator(context.Background(), bin, env, timeout, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		log.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			lines := strings.Split(string(out), "\n")
			t.Logf("%s output (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return e
}

// TestEmulatorEndToEnd runs cmd/xrc-lambda, both roles, in the AWS Lambda
// Runtime Interface Emulator (lambda.Start, the Runtime API, deadlines
// from AWS_LAMBDA_FUNCTION_TIMEOUT), fed by a stand-in for the SQS event
// source mapping: a mixed dataset arrives at the destination intact. A
// function whose timeout is shorter than its margin starts nothing and
// answers, in the response shape Lambda expects, with every message.
func TestEmulatorEndToEnd(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	cfgPath := f.configFile(t)
	bin := buildFunction(t)
	srcEnv := []string{"XRC_ROLE=source", "XRC_CONFIG=" + cfgPath, "XRC_REGION=us-east-1", "XRC_RULES=" + f.rule.ID, "XRC_QUEUE_URL=" + f.sourceURL()}
	src := f.emulate(t, bin, "source", time.Minute, srcEnv...)
	tgt := f.emulate(t, bin, "target", time.Minute,
		"XRC_ROLE=target", "XRC_CONFIG="+cfgPath, "XRC_REGION=eu-west-1", "XRC_QUEUE_URL="+f.targetURL())

	objs := dataset.Mixed("data/rie/", 24, 11)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	drain := func(m *localstack.Mapping, want int) {
		t.Helper()
		handed := 0
		for deadline := time.Now().Add(2 * time.Minute); handed < want; {
			n, failed, err := m.Poll(ctx)
			if err != nil || failed > 0 {
				t.Fatalf("%s: %d of %d messages reported failed: %v", m.QueueURL, failed, n, err)
			}
			handed += n
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d messages in 2 minutes", m.QueueURL, handed, want)
			}
		}
	}
	drain(&localstack.Mapping{SQS: f.sqs, QueueURL: f.sourceURL(), BatchSize: 100, Window: 3 * time.Second, Visibility: 6 * time.Minute,
		Invoke: src.InvokeSQS}, len(objs))
	drain(&localstack.Mapping{SQS: f.sqs, QueueURL: f.targetURL(), BatchSize: 4, Visibility: 6 * time.Minute,
		Invoke: tgt.InvokeSQS}, len(f.archiveKeys(t)))
	dest := f.rule.Destinations[0]
	if errs := dataset.Check(ctx, f.dst, dest.Bucket, objs, func(k string) string { return f.rule.DestinationKey(dest, k) }, 8); len(errs) > 0 {
		t.Errorf("%d objects differ at the destination, first: %v", len(errs), errs[0])
	}

	// Ten seconds to live and a 30 s margin: nothing may start.
	staged := len(f.archiveKeys(t))
	short := f.emulate(t, bin, "short", 10*time.Second, srcEnv...)
	more := dataset.Mixed("data/late/", 3, 12)
	if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, more, 3); err != nil {
		t.Fatal(err)
	}
	msgs := f.receive(t, f.sourceURL(), len(more))
	payload, err := json.Marshal(localstack.SQSEvent(f.sourceURL(), msgs))
	if err != nil {
		t.Fatal(err)
	}
	body, err := short.Invoke(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly {"batchItemFailures": [{"itemIdentifier": id}, ...]}.
	var shape map[string][]map[string]string
	if err := json.Unmarshal(body, &shape); err != nil || len(shape) != 1 || shape["batchItemFailures"] == nil {
		t.Fatalf("response %s is not an SQSEventResponse: %v", body, err)
	}
	var got []string
	for _, item := range shape["batchItemFailures"] {
		if len(item) != 1 {
			t.Errorf("failure item %v has other fields than itemIdentifier", item)
		}
		got = append(got, item["itemIdentifier"])
	}
	slices.Sort(got)
	if want := ids(msgs...); !slices.Equal(got, want) {
		t.Errorf("short-lived function reported %v, want every message %v", got, want)
	}
	if keys := f.archiveKeys(t); len(keys) != staged {
		t.Errorf("archives %v: the short-lived function staged something", keys)
	}
}
