package localstack_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func TestUniqueName(t *testing.T) {
	for _, prefix := range []string{
		"smoke", "", "Upper_Case.and spaces", "---", strings.Repeat("long", 30), "a--b",
	} {
		a, b := localstack.UniqueName(prefix), localstack.UniqueName(prefix)
		if a == b {
			t.Errorf("UniqueName(%q) repeated %q", prefix, a)
		}
		for _, n := range []string{a, b} {
			if !bucketName.MatchString(n) || strings.Contains(n, "--") {
				t.Errorf("UniqueName(%q) = %q: not a valid bucket name", prefix, n)
			}
			if len(n)+len("-dlq") > 80 {
				t.Errorf("UniqueName(%q) = %q: too long for a queue with its DLQ", prefix, n)
			}
		}
	}
	if got := localstack.UniqueName("smoke-watched"); !strings.HasPrefix(got, "smoke-watched-") {
		t.Errorf("UniqueName(smoke-watched) = %q, want the prefix kept", got)
	}
}

func TestFromEnvNamesMissingVariable(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("AWS_CA_BUNDLE", "") // the first missing one
	_, err := localstack.FromEnv()
	if err == nil || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") || !strings.Contains(err.Error(), "deploy/local/stack env") {
		t.Fatalf("FromEnv error = %v, want it to name AWS_CA_BUNDLE and say how to load the env", err)
	}
}

func TestFromEnvNeedsConditionalEndpoint(t *testing.T) {
	for name, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_CA_BUNDLE": "/ca.crt",
		"AWS_ENDPOINT_URL_SQS": "http://sqs", "AWS_ENDPOINT_URL_DYNAMODB": "http://ddb",
		"XRC_BRIDGE_URL": "http://bridge", "XRC_MC": "mc", "MC_CONFIG_DIR": "/mc",
		"XRC_S3_ENDPOINT_US_EAST_1": "https://use1", "XRC_S3_ENDPOINT_EU_WEST_1": "https://euw1",
		"XRC_S3_CONDITIONAL_ENDPOINT_EU_WEST_1": "",
	} {
		t.Setenv(name, v)
	}
	if _, err := localstack.FromEnv(); err == nil || !strings.Contains(err.Error(), "XRC_S3_CONDITIONAL_ENDPOINT_EU_WEST_1") {
		t.Fatalf("FromEnv error = %v, want it to name XRC_S3_CONDITIONAL_ENDPOINT_EU_WEST_1", err)
	}
	t.Setenv("XRC_S3_CONDITIONAL_ENDPOINT_EU_WEST_1", "https://127.0.0.1:9004/")
	e, err := localstack.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ConditionalS3Endpoints["eu-west-1"]; got != "https://127.0.0.1:9004" {
		t.Fatalf("ConditionalS3Endpoints[eu-west-1] = %q", got)
	}
}

// TestLocalConfigFollowsThePorts: configs/local.json names the stack's
// default ports; on a stack started with XRC_PORT_* overrides, the demo's
// workers must get the ports the stack serves.
func TestLocalConfigFollowsThePorts(t *testing.T) {
	ctx := context.Background()
	const local = "../../configs/local.json"
	e := localstack.Env{S3Endpoints: map[string]string{"us-east-1": "https://127.0.0.1:19000", "eu-west-1": "https://127.0.0.1:9002"}}
	dir := t.TempDir()
	cfg, path, err := e.LocalConfig(ctx, local, dir)
	if err != nil {
		t.Fatal(err)
	}
	if path == local || filepath.Dir(path) != dir {
		t.Fatalf("moved endpoints written to %s, want a copy in %s", path, dir)
	}
	written, err := config.Load(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*config.Config{cfg, written} {
		for _, r := range c.Settings.Regions {
			if want := e.S3Endpoints[r.Name]; r.S3Endpoint != want {
				t.Errorf("%s: s3Endpoint %s, want the stack's %s", r.Name, r.S3Endpoint, want)
			}
		}
	}
	e.S3Endpoints["us-east-1"] = "https://127.0.0.1:9000"
	if _, path, err := e.LocalConfig(ctx, local, dir); err != nil || path != local {
		t.Errorf("on the default ports: %s, %v; want %s itself", path, err, local)
	}
}
