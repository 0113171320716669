package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestBackfillCommand runs xrc backfill on the local stack: a dry run
// reports what it would enqueue and sends nothing; the real run sends
// exactly that, with a checkpoint it removes once complete.
func TestBackfillCommand(t *testing.T) {
	t.Parallel()
	env, cfg, dep := localstack.Deploy(t, "clibackfill", nil)
	ctx := context.Background()
	rule := cfg.Rules[0]
	if err := env.UnrouteEvents(ctx, rule.SourceBucket); err != nil { // pre-existing objects: no events
		t.Fatal(err)
	}
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	var objs []dataset.Object
	for i := range 30 {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("data/d%d/%02d.txt", i%3, i), Data: []byte("hello " + strconv.Itoa(i))})
	}
	objs = append(objs, dataset.Object{Key: "other/not-covered.txt", Data: []byte("x")})
	if err := dataset.Upload(ctx, src, rule.SourceBucket, objs, 8); err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := env.SQS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url := dep.SourceQueues[rule.ID]
	depth := func() int {
		out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
		return n
	}

	out, stderr, err := run(t, "backfill", "-config", path, "-rule", rule.ID, "-dry-run", "-emf")
	if err != nil {
		t.Fatalf("dry run: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("dry run:\n%s", out)
	// -emf: the run's counts as one EMF line, zeros included, in the
	// stack's namespace, as the late-writes alarm reads them; a dry run
	// sent nothing.
	emf := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
	var line struct {
		AWS struct {
			CloudWatchMetrics []struct{ Namespace string }
		} `json:"_aws"`
		Service, Region, Rule string
		Enqueued              *float64 `json:"xrc_backfill_enqueued"`
		Late                  *float64 `json:"xrc_backfill_late"`
		LateMultipart         *float64 `json:"xrc_backfill_late_multipart"`
		LateMultipartRuns     *float64 `json:"xrc_backfill_late_multipart_runs"`
	}
	if err := json.Unmarshal([]byte(emf), &line); err != nil {
		t.Fatalf("-emf: last line %q: %v", emf, err)
	}
	if len(line.AWS.CloudWatchMetrics) != 1 || line.AWS.CloudWatchMetrics[0].Namespace != cfg.Settings.StackName || line.Service != "xrc-backfill" ||
		line.Region != rule.SourceRegion || line.Rule != rule.ID || line.Enqueued == nil || *line.Enqueued != 0 || line.Late == nil || *line.Late != 0 || line.LateMultipart == nil ||
		line.LateMultipartRuns == nil || *line.LateMultipartRuns != 0 {
		t.Errorf("-emf line %s, want the stack's namespace, xrc-backfill, the rule, 0 enqueued (a dry run) and 0 late", emf)
	}
	for _, want := range []string{`dry run: nothing sent`, `(?m)^  to enqueue\s+30\s`, `(?m)^  missing\s+30\s`, `(?m)^  listed\s+30\s`,
		`expected saving: unknown \(rule r1 has no statistics`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("dry-run output lacks %s:\n%s", want, out)
		}
	}
	// Progress on stderr, as verify's: stdout is the summary alone.
	if !strings.Contains(stderr, "backfill r1: 30 objects") || strings.Contains(out, "backfill r1: ") {
		t.Errorf("progress not on stderr alone:\nstdout:\n%s\nstderr:\n%s", out, stderr)
	}
	if n := depth(); n != 0 {
		t.Fatalf("the dry run sent %d messages", n)
	}

	checkpoint := filepath.Join(t.TempDir(), "cp.json")
	out, stderr, err = run(t, "backfill", "-config", path, "-rule", rule.ID, "-checkpoint", checkpoint, "-rate", "100/s", "-prefix", "data/")
	if err != nil {
		t.Fatalf("backfill: %v\n%s\n%s", err, out, stderr)
	}
	if !regexp.MustCompile(`(?m)^  enqueued\s+30\s`).MatchString(out) {
		t.Errorf("output lacks 30 enqueued:\n%s", out)
	}
	if !localstack.Eventually(30e9, 5e8, func() bool { return depth() == 30 }) {
		t.Errorf("queue holds %d messages, want 30", depth())
	}
	if _, err := os.Stat(checkpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left after a complete run: %v", err)
	}

	for _, args := range [][]string{
		{"backfill", "-config", path},
		{"backfill", "-config", path, "-rule", rule.ID, "-since", "yesterday"},
		{"backfill", "-config", path, "-rule", rule.ID, "-rate", "-3"},
		{"backfill", "-config", path, "-rule", rule.ID, "-prefix", "other/"},
		{"backfill", "-config", path, "-rule", rule.ID, "-inventory", "manifest.json"},
		{"backfill", "-config", path, "-rule", rule.ID, "-depth", "-5"},
		{"backfill", "-config", path, "-rule", rule.ID, "-concurrency", "0"},
		{"backfill", "-config", path, "-rule", rule.ID, "-checkpoint", checkpoint, "-restart", "-restart-if-changed"},
		{"backfill", "-config", path, "-rule", rule.ID, "-restart"},
	} {
		if _, _, err := run(t, args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}

	// A run that failed says so before its figures: zeros are not
	// "nothing to do".
	gone := *cfg
	gone.Rules = slices.Clone(cfg.Rules)
	gone.Rules[0].SourceBucket = "xrc-no-such-bucket-" + strconv.Itoa(os.Getpid())
	doc, _ = json.Marshal(&gone)
	gonePath := filepath.Join(t.TempDir(), "gone.json")
	if err := os.WriteFile(gonePath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "backfill", "-config", gonePath, "-rule", rule.ID, "-dry-run")
	if err == nil || !regexp.MustCompile(`(?m)^incomplete: .*NoSuchBucket`).MatchString(out) {
		t.Errorf("a failed run: %v; its summary does not say it is incomplete:\n%s", err, out)
	}
}

// TestBackfillWarnsOfAnotherRulesQueue: XRC_QUEUE_URL from a shell or task
// set up for another rule's worker names a queue not the rule's own: the
// run says so (that worker would acknowledge the events as covered by no
// rule it serves, and nothing would move); not for -queue-url given.
func TestBackfillWarnsOfAnotherRulesQueue(t *testing.T) {
	t.Parallel()
	_, cfg, _ := localstack.Deploy(t, "cliqueue", nil)
	doc, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	other := "https://sqs.us-east-1.amazonaws.com/123456789012/" + cfg.SourceQueueName("another")
	for _, c := range []struct {
		name  string
		env   string
		args  []string
		warns bool
	}{
		{"from the environment", other, nil, true},
		{"given", "", []string{"-queue-url", other}, false},
		{"the rule's own", "https://sqs.us-east-1.amazonaws.com/123456789012/" + cfg.SourceQueueName(cfg.Rules[0].ID), nil, false},
	} {
		var out, errOut bytes.Buffer
		getenv := func(k string) string {
			if k == "XRC_QUEUE_URL" {
				return c.env
			}
			return os.Getenv(k)
		}
		args := append([]string{"backfill", "-config", path, "-rule", cfg.Rules[0].ID, "-dry-run"}, c.args...)
		if err := cli.Run(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errOut, Getenv: getenv, Now: time.Now}, "test"); err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, errOut.String())
		}
		if warned := strings.Contains(errOut.String(), "warning: XRC_QUEUE_URL names queue"); warned != c.warns {
			t.Errorf("%s: warned %v, want %v:\n%s", c.name, warned, c.warns, errOut.String())
		}
	}
}

// TestBackfillDryRunAlarmsOnLateWrites: xrc backfill -dry-run -checkpoint
// ddb -emf counts the late writes a run would send, in its EMF line (the
// late-writes alarm), reading when the last complete run started.
func TestBackfillDryRunAlarmsOnLateWrites(t *testing.T) {
	t.Parallel()
	env, cfg, _ := localstack.Deploy(t, "clilate", nil)
	ctx := context.Background()
	rule := cfg.Rules[0]
	if err := env.UnrouteEvents(ctx, rule.SourceBucket); err != nil {
		t.Fatal(err)
	}
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dataset.Upload(ctx, src, rule.SourceBucket, []dataset.Object{{Key: "data/a.txt", Data: []byte("a")}}, 1); err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	backfill := func(now time.Time, args ...string) string {
		var out, errOut bytes.Buffer
		args = append([]string{"backfill", "-config", path, "-rule", rule.ID, "-checkpoint", "ddb", "-since", "2h"}, args...)
		if err := cli.Run(ctx, args, cli.Env{Stdout: &out, Stderr: &errOut, Getenv: os.Getenv, Now: func() time.Time { return now }}, "test"); err != nil {
			t.Fatalf("%v: %v\n%s\n%s", args, err, out.String(), errOut.String())
		}
		return out.String()
	}
	backfill(time.Now())
	if err := dataset.Upload(ctx, src, rule.SourceBucket, []dataset.Object{{Key: "data/lost.txt", Data: []byte("lost")}}, 1); err != nil {
		t.Fatal(err)
	}
	// An hour on, the write made after that run began is late.
	out := backfill(time.Now().Add(time.Hour), "-dry-run", "-emf")
	var line struct {
		Enqueued *float64 `json:"xrc_backfill_enqueued"`
		Late     *float64 `json:"xrc_backfill_late"`
	}
	emf := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
	if err := json.Unmarshal([]byte(emf), &line); err != nil || line.Late == nil || *line.Late != 1 || line.Enqueued == nil || *line.Enqueued != 0 {
		t.Errorf("-dry-run -emf line %s (%v): want 1 late, 0 enqueued\n%s", emf, err, out)
	}
}
