package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/xrc-dev/xrc/internal/config"
)

func loadExample(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(context.Background(), "../../configs/example.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// parseConfig validates a document built by the test.
func parseConfig(t *testing.T, doc map[string]any) *config.Config {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	return cfg
}

// testDoc is a config with regions and rules given as maps; each rule gets
// one batch default.
func testDoc(regions []map[string]any, rules ...map[string]any) map[string]any {
	return map[string]any{
		"version": 1,
		"settings": map[string]any{
			"stackName": "t",
			"regions":   regions,
		},
		"rules": rules,
	}
}

func region(name, role string) map[string]any {
	return map[string]any{"name": name, "role": role, "stagingBucket": "t-staging-" + name}
}

func rule(id, src, bucket, prefix string, dests ...map[string]any) map[string]any {
	return map[string]any{"id": id, "sourceRegion": src, "sourceBucket": bucket, "prefix": prefix, "destinations": dests}
}

func dest(region, bucket string) map[string]any {
	return map[string]any{"region": region, "bucket": bucket}
}

func TestPlanExample(t *testing.T) {
	p, err := newPlan(loadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.Regions {
		names = append(names, r.Region.Name)
	}
	if want := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}; !slices.Equal(names, want) {
		t.Fatalf("regions = %v, want %v", names, want)
	}
	src := p.Region("us-east-1")
	var reps []string
	for _, r := range src.Replication {
		reps = append(reps, r.Prefix()+" -> "+r.To.Name)
		if !strings.HasSuffix(r.Prefix(), "/") {
			t.Errorf("replication prefix %q does not end with '/': it would also carry rules whose id starts with it", r.Prefix())
		}
	}
	// Only rules with a destination in a region replicate to it: exports
	// has no ap-southeast-2 destination.
	if want := []string{"logs/ -> eu-west-1", "logs/ -> ap-southeast-2", "exports/ -> eu-west-1"}; !slices.Equal(reps, want) {
		t.Errorf("replication = %v, want %v", reps, want)
	}
	for i, r := range src.Replication {
		if r.Priority != i+1 {
			t.Errorf("replication %s priority %d, want %d", r.ID(), r.Priority, i+1)
		}
	}
	if !slices.Equal(src.After, []string{"eu-west-1", "ap-southeast-2"}) {
		t.Errorf("us-east-1 deploys after %v, want both target regions", src.After)
	}
	if src.IsTarget() || !src.IsSource() {
		t.Errorf("us-east-1: source %v target %v", src.IsSource(), src.IsTarget())
	}

	eu := p.Region("eu-west-1")
	if got := ruleIDs(eu.TargetRules); !slices.Equal(got, []string{"logs", "exports"}) {
		t.Errorf("eu-west-1 target rules = %v", got)
	}
	byBucket := map[string]destination{}
	for _, d := range eu.Destinations {
		byBucket[d.Bucket] = d
	}
	if d := byBucket["acme-app-logs-eu"]; !slices.Equal(d.Prefixes, []string{"prod/"}) || len(d.DeletePrefixes) != 0 ||
		!slices.Equal(d.KMSKeys, []string{"arn:aws:kms:eu-west-1:111122223333:alias/acme-logs"}) {
		t.Errorf("acme-app-logs-eu = %+v", d)
	}
	if d := byBucket["acme-exports-eu"]; !slices.Equal(d.Prefixes, []string{"daily/"}) || !slices.Equal(d.DeletePrefixes, []string{"daily/"}) {
		t.Errorf("acme-exports-eu = %+v (exports propagates deletes)", d)
	}
	ap := p.Region("ap-southeast-2")
	// The destination prefix replaces the rule's.
	if len(ap.Destinations) != 1 || !slices.Equal(ap.Destinations[0].Prefixes, []string{"us/"}) {
		t.Errorf("ap-southeast-2 destinations = %+v", ap.Destinations)
	}
	if len(ap.After) != 0 || len(eu.After) != 0 {
		t.Errorf("target regions wait for %v / %v, want nothing", eu.After, ap.After)
	}
}

func ruleIDs(rules []*config.Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.ID)
	}
	return out
}

func TestPlanBothRegion(t *testing.T) {
	// eu-west-1 is source and target: its own rule's local destination
	// needs no replication, and a rule from elsewhere lands in its staging.
	cfg := parseConfig(t, testDoc(
		[]map[string]any{region("us-east-1", "source"), region("eu-west-1", "both"), region("eu-central-1", "target")},
		rule("a", "us-east-1", "src-a", "x/", dest("eu-west-1", "dst-a")),
		rule("b", "eu-west-1", "src-b", "", dest("eu-west-1", "dst-b-local"), dest("eu-central-1", "dst-b")),
	))
	p, err := newPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eu := p.Region("eu-west-1")
	if got := ruleIDs(eu.TargetRules); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("eu-west-1 target rules = %v", got)
	}
	if len(eu.Replication) != 1 || eu.Replication[0].To.Name != "eu-central-1" || eu.Replication[0].Prefix() != "b/" {
		t.Errorf("eu-west-1 replication = %+v, want only b/ -> eu-central-1", eu.Replication)
	}
	if !slices.Equal(eu.After, []string{"eu-central-1"}) {
		t.Errorf("eu-west-1 after %v", eu.After)
	}
	if d := eu.Destinations; len(d) != 2 || !slices.Equal(d[1].Prefixes, []string{""}) {
		t.Errorf("eu-west-1 destinations = %+v (rule b has no prefix: whole bucket)", d)
	}
}

func TestPlanErrors(t *testing.T) {
	two := []map[string]any{region("us-east-1", "both"), region("eu-west-1", "both")}
	for _, tc := range []struct {
		name string
		doc  map[string]any
		want string
	}{
		{
			name: "cycle",
			doc: testDoc(two,
				rule("a", "us-east-1", "src-a", "", dest("eu-west-1", "dst-a")),
				rule("b", "eu-west-1", "src-b", "", dest("us-east-1", "dst-b"))),
			want: "replicate to each other",
		},
		{
			name: "s3 endpoint",
			doc: func() map[string]any {
				regions := []map[string]any{region("us-east-1", "source"), region("eu-west-1", "target")}
				regions[0]["s3Endpoint"] = "https://127.0.0.1:9000"
				return testDoc(regions, rule("a", "us-east-1", "src", "", dest("eu-west-1", "dst")))
			}(),
			want: "deploys to AWS only",
		},
		{
			name: "credentials of a deployed region",
			doc: func() map[string]any {
				regions := []map[string]any{region("us-east-1", "source"), region("eu-west-1", "target")}
				regions[1]["s3Credentials"] = "ssm:///xrc/eu-creds"
				return testDoc(regions, rule("a", "us-east-1", "src", "", dest("eu-west-1", "dst")))
			}(),
			want: "use their task role there",
		},
		{
			name: "credentials from the environment",
			doc: func() map[string]any {
				regions := []map[string]any{region("us-east-1", "source"), region("eu-west-1", "target")}
				regions[1]["direct"], regions[1]["s3Endpoint"], regions[1]["s3Credentials"] = true, "https://store.example", "env:STORE"
				return testDoc(regions, rule("a", "us-east-1", "src", "", dest("eu-west-1", "dst")))
			}(),
			want: "SecureString parameter",
		},
		{
			name: "metrics port zero",
			doc: func() map[string]any {
				d := testDoc(two, rule("a", "us-east-1", "src", "", dest("eu-west-1", "dst")))
				d["settings"].(map[string]any)["worker"] = map[string]any{"metricsAddr": "127.0.0.1:0"}
				return d
			}(),
			want: "no fixed port",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newPlan(parseConfig(t, tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("newPlan = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAddPrefix(t *testing.T) {
	var set []string
	for _, p := range []string{"a/b/", "a/", "c/", "a/c/"} {
		set = addPrefix(set, p)
	}
	if !slices.Equal(set, []string{"a/", "c/"}) {
		t.Errorf("set = %v", set)
	}
	if set = addPrefix(set, ""); !slices.Equal(set, []string{""}) {
		t.Errorf("with the empty prefix, set = %v", set)
	}
}

func TestHealthURL(t *testing.T) {
	for addr, want := range map[string]string{
		":9090":          "http://127.0.0.1:9090/healthz",
		"0.0.0.0:8080":   "http://127.0.0.1:8080/healthz",
		"127.0.0.1:9090": "http://127.0.0.1:9090/healthz",
		"127.0.0.1:0":    "",
		":00":            "", // no fixed port either: the worker listens on any
		":+80":           "", // Atoi takes it; the listener does not
		":09090":         "http://127.0.0.1:9090/healthz",
		"10.0.0.1:9090":  "",
		"nonsense":       "",
	} {
		got, err := healthURL(addr)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("healthURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}
