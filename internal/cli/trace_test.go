package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// TestTrace runs xrc trace on the stack against each state an operator
// asks about: a copy in sync (with the archive that carried it), an object
// never delivered, a copy whose source was deleted (its delete recorded),
// a copy of an older write, and a key no rule covers; each ends with what
// it means and what to do.
func TestTrace(t *testing.T) {
	t.Parallel()
	env, cfg, _ := localstack.Deploy(t, "clitrace", func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	rule := &cfg.Rules[0]
	dstBucket := rule.Destinations[0].Bucket
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := env.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	ddb, err := env.DynamoDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(c *s3.Client, bucket, key string, md map[string]string) *s3.HeadObjectOutput {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("body of " + key), Metadata: md}); err != nil {
			t.Fatal(err)
		}
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		return head
	}
	ms := func(h *s3.HeadObjectOutput) string { return strconv.FormatInt(h.LastModified.UnixMilli(), 10) }

	head := put(src, rule.SourceBucket, "data/t/sync.txt", nil)
	put(dst, dstBucket, "data/t/sync.txt", map[string]string{deliver.MetaArchive: "a-sync", deliver.MetaModified: ms(head)})
	if err := ledger.New(ddb, cfg.TableName(), time.Now).Record(ctx, ledger.Entry{ArchiveID: "a-sync", Region: "eu-west-1", Rule: "r1",
		StagingKey: "r1/2026/12/06/a-sync.tar.zst", Written: 3, FinishedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	put(src, rule.SourceBucket, "data/t/missing.txt", nil)
	// Ordered against the delete by sequencers: one older (the delete
	// did not land), one newer (its own delete is to come).
	for key, seq := range map[string]string{"data/t/gone.txt": "0055AED6DCD90281E0", "data/t/gone-later.txt": "0055AED6DCD90281F0"} {
		put(dst, dstBucket, key, map[string]string{deliver.MetaArchive: "a-gone", deliver.MetaSequencer: seq, deliver.MetaModified: "1795315730465"})
		if err := tombstone.New(ddb, cfg.TableName(), time.Now).Put(ctx, tombstone.Tombstone{Bucket: dstBucket, Key: key,
			Sequencer: "0055AED6DCD90281E5", At: time.Now(), ArchiveID: "a-del"}); err != nil {
			t.Fatal(err)
		}
	}
	put(src, rule.SourceBucket, "data/t/older.txt", nil)
	put(dst, dstBucket, "data/t/older.txt", map[string]string{deliver.MetaArchive: "a-old", deliver.MetaModified: "1795315730465"})
	put(src, rule.SourceBucket, "elsewhere/x.txt", nil)
	head = put(src, rule.SourceBucket, "data/t/newer.txt", nil)
	put(dst, dstBucket, "data/t/newer.txt", map[string]string{deliver.MetaArchive: "a-new", deliver.MetaModified: strconv.FormatInt(head.LastModified.Add(time.Hour).UnixMilli(), 10)})
	put(src, rule.SourceBucket, "data/t/no-times.txt", nil)
	put(dst, dstBucket, "data/t/no-times.txt", map[string]string{deliver.MetaArchive: "-"})

	doc, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]string{
		"data/t/sync.txt": {"written by xrc: archive a-sync", "archive a-sync: delivered here", "(3 written", "tombstone: none",
			"=> in sync: the destination holds the source's write"},
		"data/t/missing.txt": {"    absent", "=> not delivered", "queue " + cfg.SourceQueueName("r1"),
			"xrc backfill -config " + path + " -rule r1 -prefix data/t/missing.txt sends it again"},
		"data/t/gone.txt": {"source (us-east-1): absent", "tombstone: deleted at the source", "carried by archive a-del",
			"=> the source object is gone and its delete was carried here, but the copy stays: the delete did not land"},
		"data/t/older.txt":      {"archive a-old: no ledger entry", "=> an older write than the source's"},
		"data/t/newer.txt":      {"=> a write dated after the source's current one, which nothing explains"},
		"data/t/gone-later.txt": {"=> the source object is gone and a delete was carried here, but the copy stays: it is a later write"},
		"data/t/no-times.txt":   {"=> xrc's copy, but its provenance lost its times"},
		"data/t/a%20b+c.txt":    {"=> absent on both sides; if the key came from an event or a DLQ message, it is URL-encoded"},
		"elsewhere/x.txt":       {"no rule covers it", `r1: prefix "data/"`},
	} {
		out, stderr, err := run(t, "trace", "-config", path, "s3://"+rule.SourceBucket+"/"+key)
		if err != nil {
			t.Errorf("trace %s: %v\n%s", key, err, stderr)
			continue
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("trace %s lacks %q:\n%s", key, w, out)
			}
		}
	}
	// A tombstone not read (another deployment's table: none here) leaves
	// a gone source's copy unexplained: said, and exit 3, not a verdict
	// as if no delete were recorded.
	other := *cfg
	other.Settings.StackName = cfg.Settings.StackName + "-none"
	doc, _ = json.Marshal(&other)
	otherPath := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(otherPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "trace", "-config", otherPath, "s3://"+rule.SourceBucket+"/data/t/gone.txt")
	if !errors.Is(err, cli.ErrIncomplete) || !strings.Contains(out, "=> cannot tell: whether a delete was carried here is unknown") {
		t.Errorf("trace with its tombstone unread: %v; want incomplete, saying it cannot tell:\n%s", err, out)
	}
	// Where the verdict does not turn on it, the verdict stands.
	for _, key := range []string{"data/t/sync.txt", "data/t/nowhere.txt"} {
		out, _, err = run(t, "trace", "-config", otherPath, "s3://"+rule.SourceBucket+"/"+key)
		if err != nil || !strings.Contains(out, "tombstone: not read") || !strings.Contains(out, "=> in sync") {
			t.Errorf("trace of %s, in sync, with its tombstone unread: %v; want its verdict:\n%s", key, err, out)
		}
	}
	for _, args := range [][]string{
		{"trace", "-config", path},
		{"trace", "-config", path, rule.SourceBucket + "/data/t/sync.txt"},
		{"trace", "-config", path, "s3://not-watched/data/x"},
		{"trace", "-config", path, "s3://a/b", "s3://c/d"},
	} {
		if _, _, err := run(t, args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
