package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/stats"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := cli.Env{Stdout: &out, Stderr: &errOut, Getenv: os.Getenv, Now: func() time.Time { return time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC) }}
	err := cli.Run(context.Background(), args, env, "test")
	return out.String(), errOut.String(), err
}

func TestConfigValidate(t *testing.T) {
	out, stderr, err := run(t, "config", "validate", "../../configs/example.json")
	if err != nil || !strings.Contains(out, "ok (3 regions, 2 rules)") || stderr != "" {
		t.Fatalf("the example config: %q %v, warned %q; want ok and no warning (a new user's first check)", out, err, stderr)
	}
	// Valid, but a prefix rewrite that lengthens keys is worth a warning.
	example, err := os.ReadFile("../../configs/example.json")
	if err != nil {
		t.Fatal(err)
	}
	longer := filepath.Join(t.TempDir(), "longer.json")
	os.WriteFile(longer, []byte(strings.Replace(string(example), `"prefix": "us/"`, `"prefix": "from-us/"`, 1)), 0o644)
	if _, stderr, err = run(t, "config", "validate", longer); err != nil || !strings.Contains(stderr, "warning: rules[0].destinations[1].prefix: is 3 bytes longer") {
		t.Errorf("no warning about the lengthening prefix rewrite: %v\n%s", err, stderr)
	}
	// Valid, but more than an SSM parameter holds: the CDK app would
	// refuse it at synth; said here first.
	var globs []string
	for i := range 200 {
		globs = append(globs, fmt.Sprintf(`"tmp/%03d/*.partial-upload-of-a-long-name"`, i))
	}
	large := filepath.Join(t.TempDir(), "large.json")
	os.WriteFile(large, []byte(strings.Replace(string(example), `"ignore": [`, `"ignore": [`+strings.Join(globs, ",")+",", 1)), 0o644)
	if out, stderr, err := run(t, "config", "validate", large); err != nil || !strings.Contains(out, "ok") || !strings.Contains(stderr, "more than an SSM parameter holds (8192)") {
		t.Errorf("a config over 8 KB: %q %v, warned %q; want ok, and a warning that SSM cannot hold it", out, err, stderr)
	}
	// A parameter in SSM is read in a region, which is said when missing.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	if _, _, err := run(t, "config", "validate", "ssm:///xrc/config"); !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "set AWS_REGION") {
		t.Errorf("an SSM parameter without a region: %v, want a usage error saying to set AWS_REGION", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version":1,"settings":{"stackName":"X","regions":[]},"rules":[{"id":"a","bogus":1}]}`), 0o644)
	_, stderr, err = run(t, "config", "validate", bad)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"rules[0].bogus: unknown field", "settings.stackName", "rules[0].destinations"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestUsage(t *testing.T) {
	if _, _, err := run(t); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("no args: %v", err)
	}
	if _, _, err := run(t, "archive", "frobnicate"); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("unknown command: %v", err)
	}
	if _, _, err := run(t, "archive", "pack", "dir"); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("pack without -o: %v", err)
	}
	for _, level := range []string{"0", "25"} {
		if _, _, err := run(t, "archive", "pack", t.TempDir(), "-o", filepath.Join(t.TempDir(), "a.tar.zst"), "-level", level); !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "-level") {
			t.Errorf("pack -level %s: %v, want a usage error naming -level", level, err)
		}
	}
	for _, dest := range []string{"eu-west-1", "eu-west-1/", "/backup", "/"} {
		if _, _, err := run(t, "archive", "pack", t.TempDir(), "-o", filepath.Join(t.TempDir(), "a.tar.zst"), "-dest", dest); !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "-dest") {
			t.Errorf("pack -dest %q: %v, want a usage error naming -dest", dest, err)
		}
	}
	// A group asked for help lists its commands and succeeds; named alone,
	// it lists them as a usage error.
	for _, group := range []string{"config", "archive"} {
		out, _, err := run(t, group, "-h")
		if err != nil || !strings.Contains(out, "xrc "+group+" ") || strings.Contains(out, "xrc backfill") {
			t.Errorf("%s -h: %v\n%s", group, err, out)
		}
		if _, stderr, err := run(t, group); !errors.Is(err, cli.ErrUsage) || !strings.Contains(stderr, "xrc "+group+" ") {
			t.Errorf("%s alone: %v\n%s", group, err, stderr)
		}
	}
}

func packSample(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.csv"), bytes.Repeat([]byte("id,name,value\n1,alpha,3.14\n"), 2000), 0o644)
	os.WriteFile(filepath.Join(dir, "sub dir", "ünï+code.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	if stdout, _, err := run(t, "archive", "pack", dir, "-o", out, "-dest", "eu-west-1/backup/copy/"); err != nil || !strings.Contains(stdout, "3 objects") {
		t.Fatalf("pack: %q %v", stdout, err)
	}
	return out
}

func TestPackInspectVerify(t *testing.T) {
	file := packSample(t)
	out, _, err := run(t, "archive", "inspect", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"objects        3 (+0 deletes)", "destination    eu-west-1/backup (3 objects)", "level          3"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "archive", "inspect", "--json", file)
	if err != nil || !strings.Contains(out, `"key": "sub dir/ünï+code.txt"`) || !strings.Contains(out, `"key": "copy/a.csv"`) {
		t.Errorf("inspect --json: %v\n%s", err, out)
	}
	// Boolean flags are told from flags with values by the flag set, not by
	// a list of names: either side of the file, any spelling.
	for _, args := range [][]string{{file, "-json"}, {"-json=true", file}, {"--json", file}} {
		out, _, err := run(t, append([]string{"archive", "inspect"}, args...)...)
		if err != nil || !strings.Contains(out, `"key": "copy/a.csv"`) {
			t.Errorf("inspect %q: %v\n%s", args, err, out)
		}
	}
	if out, _, err = run(t, "archive", "verify", file); err != nil || !strings.Contains(out, "ok: 3 objects") {
		t.Errorf("verify: %q %v", out, err)
	}
	// A flipped byte near the end (inside compressed data) must fail verify.
	data, _ := os.ReadFile(file)
	data[len(data)-20] ^= 0xff
	os.WriteFile(file, data, 0o644)
	if _, _, err := run(t, "archive", "verify", file); err == nil || !strings.Contains(err.Error(), "invalid archive") {
		t.Errorf("verify of a corrupt archive: %v", err)
	}
}

func TestInspectS3(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	bucket := localstack.UniqueName("cli")
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(packSample(t))
	key := "rule/2026/11/22/a.tar.zst"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	loc := "s3://" + bucket + "/" + key
	_, local, err := env.LocalConfig(ctx, "../../configs/local.json", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "archive", "inspect", loc, "-config", local, "-region", "us-east-1")
	if err != nil || !strings.Contains(out, "objects        3") {
		t.Fatalf("inspect %s: %v\n%s", loc, err, out)
	}
	if out, _, err := run(t, "archive", "verify", loc, "-config", local, "-region", "us-east-1"); err != nil || !strings.Contains(out, "ok: 3 objects") {
		t.Fatalf("verify %s: %v\n%s", loc, err, out)
	}
	if _, _, err := run(t, "archive", "inspect", loc, "-config", local, "-region", "ap-south-1"); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("a -region the config does not have: %v, want a usage error naming it", err)
	}

	// With -config and no -region, a staging bucket's region is the one
	// whose it is (here eu-west-1's, away from AWS_REGION's).
	euw := localstack.UniqueName("cli")
	if err := env.EnsureBucket(ctx, "eu-west-1", euw, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "eu-west-1", euw) })
	euClient, err := env.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := euClient.PutObject(ctx, &s3.PutObjectInput{Bucket: &euw, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "local.json")
	os.WriteFile(path, bytes.Replace(doc, []byte(`"xrc-local-staging-euw1"`), []byte(strconv.Quote(euw)), 1), 0o644)
	t.Setenv("AWS_REGION", "us-east-1")
	if out, _, err := run(t, "archive", "inspect", "s3://"+euw+"/"+key, "-config", path); err != nil || !strings.Contains(out, "objects        3") {
		t.Errorf("inspect of eu-west-1's staging bucket, -config alone: %v\n%s", err, out)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/savings.golden")

// TestSavingsGolden: xrc savings on a seeded statistics table (DynamoDB
// Local) prints the report in testdata/savings.golden, and --json the same
// figures; a rule without statistics says so.
func TestSavingsGolden(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config("savings")
	// A second bucket in the same target region, and one in the source's
	// region: still one region crossed to.
	cfg.Rules[0].Destinations = append(cfg.Rules[0].Destinations, config.Destination{Region: "eu-west-1", Bucket: cfg.Rules[0].Destinations[0].Bucket + "-b"},
		config.Destination{Region: cfg.Rules[0].SourceRegion, Bucket: cfg.Rules[0].Destinations[0].Bucket + "-near"})
	cfg.Settings.Regions[0].Role = config.RoleBoth
	// A rule with no statistics in the period.
	quiet := cfg.Rules[0]
	quiet.ID, quiet.Prefix, quiet.Destinations = "r2", "quiet/", quiet.Destinations[:1]
	cfg.Rules = append(cfg.Rules, quiet)
	// The target region on Lambda: its decoding is charged at a
	// function's price.
	for i := range cfg.Settings.Regions {
		if cfg.Settings.Regions[i].Name == "eu-west-1" {
			cfg.Settings.Regions[i].Compute = config.ComputeLambda
		}
	}
	ddb := env.ConfigTable(t, cfg)
	now := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	st := stats.New(ddb, cfg.TableName(), func() time.Time { return now })
	hour := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	seed := []struct {
		at time.Time
		ds []stats.Delta
	}{
		{hour(1), []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 6 << 30, Out: 2 << 30, CPU: 80 * time.Second, Objects: 6000, Archives: 6},
			{Class: adaptive.Compressed, Arm: adaptive.Store, In: 1 << 30, Out: 1<<30 + 1<<20, CPU: time.Second, Objects: 100, Archives: 6}}},
		{hour(30), []stats.Delta{{Class: adaptive.CSV, Arm: 9, In: 2 << 30, Out: 600 << 20, CPU: 400 * time.Second, Objects: 2000, Archives: 2},
			{Class: adaptive.JSON, Arm: 5, In: 3 << 30, Out: 700 << 20, CPU: 60 * time.Second, Objects: 900, Archives: 2}}},
		{hour(24 * 10), []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100 << 30, Out: 30 << 30, Objects: 1}}}, // before -since
	}
	for _, s := range seed {
		if _, err := st.Add(ctx, "r1", s.at, s.ds); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: 250, DecodeSeconds: 1.0 / 1e9}); err != nil {
		t.Fatal(err)
	}
	if err := st.PublishChoice(ctx, "r1", adaptive.CSV, 9, 0.03); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	e := cli.Env{Stdout: &out, Stderr: &errOut, Getenv: os.Getenv, Now: func() time.Time { return now }}
	if err := cli.Run(ctx, []string{"savings", "-config", path, "-since", "7d"}, e, "test"); err != nil {
		t.Fatalf("savings: %v\n%s", err, errOut.String())
	}
	golden := filepath.Join("testdata", "savings.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("xrc savings printed:\n%s\nwant (testdata/savings.golden):\n%s", out.String(), want)
	}
	out.Reset()
	if err := cli.Run(ctx, []string{"savings", "-config", path, "-since", "7d", "--json"}, e, "test"); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Lines   []stats.Line `json:"lines"`
		Compute []struct {
			Rule        string  `json:"rule"`
			PeriodHours float64 `json:"periodHours"`
			DataHours   float64 `json:"dataHours"`
		} `json:"compute"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	// The statistics start at 19:00, 30 hours and 2 minutes before the
	// report's end; the period is its 7 days and 2 minutes.
	for _, c := range rep.Compute {
		if c.Rule == "r1" && (c.DataHours < 30 || c.DataHours > 30.1 || c.PeriodHours < 168 || c.PeriodHours > 168.1) {
			t.Errorf("JSON compute of r1: %v hours of data in a %v-hour period, want 30.03 in 168.03", c.DataHours, c.PeriodHours)
		}
	}
	var total stats.Line
	for _, l := range rep.Lines {
		if l.Rule == "r1" && l.Class == "" {
			total = l
		}
	}
	if total.BytesIn != 12<<30 || total.Regions != 1 || total.Objects != 9000 {
		t.Errorf("JSON total %+v", total)
	}
	if _, _, err := run(t, "savings", "-config", path, "-since", "90d"); err == nil || !strings.Contains(err.Error(), "more than the 35 days") {
		t.Errorf("-since 90d: %v", err)
	}
}

// TestCommandLineEdges: what a command line gets wrong is refused, not
// half done: a second archive (the flag package would drop it, and every
// flag after it), days that overflow, a rate that is no number, a region
// the rule does not deliver to; and packing into the packed directory
// again leaves a whole archive.
func TestCommandLineEdges(t *testing.T) {
	good := packSample(t)
	for _, args := range [][]string{
		{"archive", "verify", good, good + ".other"},
		{"archive", "inspect", good, "extra", "--json"},
		{"savings", "-config", "../../configs/example.json", "-since", "200000d"},
		{"backfill", "-config", "../../configs/example.json", "-rule", "logs", "-since", "200000d", "-dry-run"},
		{"backfill", "-config", "../../configs/example.json", "-rule", "logs", "-rate", "NaN", "-dry-run"},
		{"backfill", "-config", "../../configs/example.json", "-rule", "logs", "-rate", "+Inf", "-dry-run"},
		{"verify", "-config", "../../configs/example.json", "-rule", "logs", "-region", "eu-west-2"},
		{"backfill", "-config", "../../configs/example.json", "-rule", "nope", "-dry-run"},
		{"savings", "-config", "../../configs/example.json", "-rule", "nope"},
	} {
		if _, _, err := run(t, args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("some bytes"), 0o644)
	out := filepath.Join(dir, "out.tar.zst")
	for range 2 {
		if _, _, err := run(t, "archive", "pack", dir, "-o", out); err != nil {
			t.Fatal(err)
		}
		if stdout, _, err := run(t, "archive", "verify", out); err != nil || !strings.Contains(stdout, "ok") {
			t.Fatalf("verify after packing into the packed directory: %q %v", stdout, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestSavingsNamesAMissingTable: a stackName or region that is not the
// deployment's says which table it looked for, and where.
func TestSavingsNamesAMissingTable(t *testing.T) {
	env := localstack.Require(t)
	cfg := env.Config("nosuchstack") // no table made for it
	data, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "savings", "-config", path)
	if err == nil || !strings.Contains(err.Error(), "table "+cfg.TableName()+" not found in "+cfg.Rules[0].SourceRegion) {
		t.Errorf("savings on a table that does not exist: %v", err)
	}
}

// TestHelpAndMissingFlags: asked for help, a command prints it and
// succeeds; a required flag left out is named.
func TestHelpAndMissingFlags(t *testing.T) {
	t.Setenv("XRC_CONFIG", "")
	for _, args := range [][]string{{"config", "validate", "--help"}, {"savings", "-h"}, {"verify", "--help"}, {"backfill", "-help"}, {"archive", "inspect", "-h"}} {
		if _, _, err := run(t, args...); err != nil {
			t.Errorf("%v: %v, want help and success", args, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "-rule", "r1"}, "-config (or XRC_CONFIG) required"},
		{[]string{"backfill", "-config", "c.json"}, "-rule required"},
		{[]string{"savings"}, "-config (or XRC_CONFIG) required"},
		{[]string{"verify"}, "-config (or XRC_CONFIG) and -rule required"},
	} {
		if _, _, err := run(t, c.args...); !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error saying %q", c.args, err, c.want)
		}
	}
}
