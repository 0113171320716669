package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/verify"
)

// TestVerifyCommand runs xrc verify on the stack: a faithful replica
// passes; one with a missing object exits with verify.ErrDifferent, says
// so in its summary and lists the object in CSV and JSON reports.
func TestVerifyCommand(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config("clivfy")
	rule := &cfg.Rules[0]
	dst := rule.Destinations[0].Bucket
	for _, b := range [][2]string{{"us-east-1", rule.SourceBucket}, {"eu-west-1", dst}} {
		if err := env.EnsureBucket(ctx, b[0], b[1], false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { env.RemoveBucket(context.Background(), b[0], b[1]) })
	}
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := env.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"data/a.txt", "data/sub/b.txt", "data/sub/deeper/c.txt"}
	for _, k := range keys {
		body := []byte("content of " + k)
		if _, err := src.PutObject(ctx, &s3.PutObjectInput{Bucket: &rule.SourceBucket, Key: aws.String(k), Body: bytes.NewReader(body),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256}); err != nil {
			t.Fatal(err)
		}
		head, err := src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &rule.SourceBucket, Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		md := map[string]string{deliver.MetaArchive: "a1", deliver.MetaModified: strconv.FormatInt(head.LastModified.UnixMilli(), 10),
			deliver.MetaSHA256: hex.EncodeToString(sum[:])}
		if _, err := dc.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: aws.String(k), Body: bytes.NewReader(body), Metadata: md,
			ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := run(t, "verify", "-config", path, "-rule", "r1")
	if err != nil || !strings.Contains(out, "differences: none") || !strings.Contains(out, "3 objects") {
		t.Fatalf("faithful replica: %v\n%s", err, out)
	}
	// Not a terminal: plain progress lines, the last one at the end.
	if !strings.Contains(stderr, "verify r1: 3 objects") {
		t.Errorf("progress line missing from stderr:\n%s", stderr)
	}

	if _, err := dc.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &dst, Key: aws.String(keys[2])}); err != nil {
		t.Fatal(err)
	}
	csvPath, jsonPath := filepath.Join(dir, "out.csv"), filepath.Join(dir, "out.JSON")
	out, _, err = run(t, "verify", "-config", path, "-rule", "r1", "-report", csvPath)
	if !errors.Is(err, verify.ErrDifferent) || !strings.Contains(out, "differences: 1 (missing 1)") {
		t.Fatalf("missing object: %v\n%s", err, out)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 2 || rows[1][0] != "missing" || rows[1][5] != keys[2] {
		t.Fatalf("CSV report: %v %q", err, rows)
	}
	if _, _, err := run(t, "verify", "-config", path, "-rule", "r1", "-report", jsonPath, "-hash-sources"); !errors.Is(err, verify.ErrDifferent) {
		t.Fatalf("JSON report run: %v", err)
	}
	var doc struct {
		Differences []verify.Difference
		Summary     verify.Summary
	}
	if b, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("JSON report: %v\n%s", err, b)
	}
	if len(doc.Differences) != 1 || doc.Differences[0].DestinationKey != keys[2] || doc.Summary.Destinations[0].Equal != 2 {
		t.Errorf("JSON report: %+v", doc)
	}

	for _, args := range [][]string{
		{"verify", "-config", path},
		{"verify", "-config", path, "-rule", "nope"},
		{"verify", "-config", path, "-rule", "r1", "-report", filepath.Join(dir, "out.txt")},
		{"verify", "-config", path, "-rule", "r1", "-prefix", "elsewhere/"},
	} {
		if _, _, err := run(t, args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	// Failing before it compared anything is no difference found (exit 1):
	// a scheduled verify must tell the two apart.
	for _, args := range [][]string{
		{"verify", "-config", filepath.Join(dir, "nonexistent.json"), "-rule", "r1"},
		{"verify", "-config", path, "-rule", "r1", "-report", filepath.Join(dir, "no-such-dir", "out.csv")},
	} {
		if _, _, err := run(t, args...); !errors.Is(err, cli.ErrIncomplete) || errors.Is(err, verify.ErrDifferent) {
			t.Errorf("%v: %v, want incomplete", args, err)
		}
	}
	// Nor does it leave the last run's report to be read as its own: the
	// report and the summary on stdout say it is incomplete.
	out, _, err = run(t, "verify", "-config", filepath.Join(dir, "nonexistent.json"), "-rule", "r1", "-report", jsonPath)
	doc.Summary = verify.Summary{}
	b, rerr := os.ReadFile(jsonPath)
	if rerr != nil || json.Unmarshal(b, &doc) != nil || doc.Summary.Error == "" || len(doc.Differences) != 0 {
		t.Errorf("the report of a run whose config did not load: %v\n%s", rerr, b)
	}
	if !errors.Is(err, cli.ErrIncomplete) || !strings.Contains(out, "incomplete: ") || strings.Contains(out, "differences: none") {
		t.Errorf("a run whose config did not load: %v; its summary does not say it is incomplete:\n%s", err, out)
	}
	// A report it cannot write is said in the summary too, once.
	out, _, err = run(t, "verify", "-config", path, "-rule", "r1", "-report", filepath.Join(dir, "no-such-dir", "out.json"))
	if !errors.Is(err, cli.ErrIncomplete) || strings.Count(out, "incomplete: ") != 1 || strings.Contains(err.Error(), "incomplete: incomplete") {
		t.Errorf("a report not writable: %v; want incomplete, said once in the summary:\n%s", err, out)
	}
	// A wrong command line leaves the last report as it was, and a
	// report over the config is refused before anything is written.
	before, _ := os.ReadFile(jsonPath)
	if _, _, err := run(t, "verify", "-config", path, "-rule", "nope", "-report", jsonPath); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("-rule nope: %v, want a usage error", err)
	}
	if after, _ := os.ReadFile(jsonPath); !bytes.Equal(before, after) {
		t.Error("a usage error rewrote the report")
	}
	cfgBefore, _ := os.ReadFile(path)
	if _, _, err := run(t, "verify", "-config", path, "-rule", "r1", "-report", path); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("-report naming the config: %v, want a usage error", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(cfgBefore, after) {
		t.Error("-report naming the config overwrote it")
	}
}
