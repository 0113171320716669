package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// Synthesizing starts Node and loads aws-cdk-lib (seconds), so each app is
// synthesized once per test binary and shared; the tests only read it.

var (
	tempDirs []string

	exampleOnce sync.Once
	example     *synthesized
	exampleErr  error

	variantOnce sync.Once
	variant     *synthesized
	variantErr  error
)

func TestMain(m *testing.M) {
	if os.Getenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION") == "" {
		if out, err := exec.Command("node", "-p", "process.versions.node.split('.')[0]").Output(); err == nil {
			os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", strings.TrimSpace(string(out)))
		}
	}
	code := m.Run()
	jsii.Close()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// synthesized is one app after synth: each region's template as an
// assertions.Template and as plain JSON.
type synthesized struct {
	d      *deployment
	outdir string
	tmpl   map[string]assertions.Template
	json   map[string]map[string]any
}

func synthApp(ctx map[string]any) (*synthesized, error) {
	outdir, err := os.MkdirTemp("", "xrc-cdk-test-")
	if err != nil {
		return nil, err
	}
	tempDirs = append(tempDirs, outdir)
	// The Lambda code asset is not built here (TestLambdaCodeBuild builds
	// it): bundling would compile cmd/xrc-lambda at every synth.
	ctx["aws:cdk:bundling-stacks"] = []any{}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir), Context: &ctx})
	d, err := build(app)
	if err != nil {
		return nil, err
	}
	app.Synth(nil)
	s := &synthesized{d: d, outdir: outdir, tmpl: map[string]assertions.Template{}, json: map[string]map[string]any{}}
	for region, st := range d.Stacks {
		tm := assertions.Template_FromStack(st, nil)
		s.tmpl[region] = tm
		s.json[region] = *tm.ToJSON()
	}
	return s, nil
}

// exampleApp is configs/example.json with default options.
func exampleApp(t *testing.T) *synthesized {
	t.Helper()
	exampleOnce.Do(func() {
		example, exampleErr = synthApp(map[string]any{"config": "../../configs/example.json"})
	})
	if exampleErr != nil {
		t.Fatal(exampleErr)
	}
	return example
}

// variantApp exercises the options: a region that is source and target, an
// existing VPC, on-demand capacity, amd64, prebuilt images, alarm emails,
// replication time control.
func variantApp(t *testing.T) *synthesized {
	t.Helper()
	variantOnce.Do(func() {
		doc := map[string]any{
			"version": 1,
			"settings": map[string]any{
				"stackName": "xv",
				"regions": []map[string]any{
					{"name": "us-east-1", "role": "source", "stagingBucket": "xv-staging-use1"},
					{"name": "eu-west-1", "role": "both", "stagingBucket": "xv-staging-euw1"},
					{"name": "eu-central-1", "role": "target", "stagingBucket": "xv-staging-euc1"},
				},
			},
			"rules": []map[string]any{
				{"id": "a", "sourceRegion": "us-east-1", "sourceBucket": "xv-src-a", "prefix": "in/dt=2026/",
					"destinations": []map[string]any{{"region": "eu-west-1", "bucket": "xv-dst-a", "kmsKeyId": "alias/dst"}}},
				{"id": "b", "sourceRegion": "eu-west-1", "sourceBucket": "xv-src-b", "deletes": true,
					"destinations": []map[string]any{{"region": "eu-west-1", "bucket": "xv-dst-b-local"}, {"region": "eu-central-1", "bucket": "xv-dst-b"}}},
			},
		}
		data, _ := json.Marshal(doc)
		f, err := os.CreateTemp("", "xrc-cdk-variant-*.json")
		if err != nil {
			variantErr = err
			return
		}
		tempDirs = append(tempDirs, f.Name())
		f.Write(data)
		f.Close()
		variant, variantErr = synthApp(map[string]any{
			"config":                 f.Name(),
			"alarmEmail":             "ops@example.com",
			"onDemandBase":           "1",
			"onDemandWeight":         "1",
			"arch":                   "amd64",
			"sourceMaxTasks":         "3",
			"sourceImage":            "123456789012.dkr.ecr.{region}.amazonaws.com/xrc/source:1.0.0",
			"targetImage":            "123456789012.dkr.ecr.{region}.amazonaws.com/xrc/target@sha256:" + strings.Repeat("ab", 32),
			"replicationTimeControl": "true",
			"backfillSchedule":       "rate(1 hour)",
			"backfillSince":          "3h",
			"existingVpcs":           `{"eu-west-1": {"vpcId": "vpc-0123", "subnetIds": ["subnet-0a", "subnet-0b"], "availabilityZones": ["eu-west-1a", "eu-west-1b"]}}`,
		})
	})
	if variantErr != nil {
		t.Fatal(variantErr)
	}
	return variant
}

// check runs an assertions call, which panics on a mismatch, as a test
// error.
func check(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

func obj(m map[string]any) assertions.Matcher { return assertions.Match_ObjectLike(&m) }
func arrayWith(v ...any) assertions.Matcher   { return assertions.Match_ArrayWith(&v) }
func arrayEquals(v ...any) assertions.Matcher { return assertions.Match_ArrayEquals(&v) }
func like(pattern string) assertions.Matcher {
	return assertions.Match_StringLikeRegexp(jsii.String(pattern))
}
func resources(tm map[string]any) map[string]any { return tm["Resources"].(map[string]any) }

// ofType returns the resources of a type by logical id.
func ofType(tm map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range resources(tm) {
		r := r.(map[string]any)
		if r["Type"] == typ {
			out[id] = r
		}
	}
	return out
}

func propsOf(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

// TestNag: cdk-nag's AwsSolutions pack reports no unsuppressed finding, and
// nothing else failed either.
func TestNag(t *testing.T) {
	for name, s := range map[string]*synthesized{"example": exampleApp(t), "variant": variantApp(t)} {
		for region, st := range s.d.Stacks {
			annotations := assertions.Annotations_FromStack(st)
			for _, e := range *annotations.FindError(jsii.String("*"), assertions.Match_AnyValue()) {
				t.Errorf("%s %s: error %s", name, region, message(e))
			}
			for _, w := range *annotations.FindWarning(jsii.String("*"), like("AwsSolutions-.*")) {
				t.Errorf("%s %s: nag warning %s", name, region, message(w))
			}
		}
	}
}

// message renders a synthesis message (construct path and text) briefly.
func message(m any) string {
	var v struct {
		ID    string `json:"id"`
		Entry struct {
			Data any `json:"data"`
		} `json:"entry"`
	}
	data, _ := json.Marshal(m)
	json.Unmarshal(data, &v)
	line, _, _ := strings.Cut(fmt.Sprint(v.Entry.Data), "\n")
	return v.ID + ": " + line
}

// TestNagReportsEverySuppressionWithReason: each suppressed finding in the
// report carries a reason.
func TestNagReportsEverySuppressionWithReason(t *testing.T) {
	s := exampleApp(t)
	reports, _ := filepath.Glob(filepath.Join(s.outdir, "AwsSolutions-*-NagReport.csv"))
	if len(reports) != 3 {
		t.Fatalf("%d nag reports in %s, want one per stack", len(reports), s.outdir)
	}
	suppressed := 0
	for _, r := range reports {
		data, _ := os.ReadFile(r)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"Suppressed"`) {
				suppressed++
				if strings.Contains(line, `"Suppressed","N/A"`) {
					t.Errorf("suppression without a reason: %s", line)
				}
			}
			if strings.Contains(line, `"Non-Compliant"`) {
				t.Errorf("non-compliant: %s", line)
			}
		}
	}
	if suppressed == 0 {
		t.Error("no suppressed finding: is the report format as expected?")
	}
}

// TestReplicationRules: the source staging bucket replicates rule prefixes
// "<id>/" only to the regions holding one of the rule's destinations,
// KMS-encrypted with the target region's staging key, deletes not
// replicated, priorities distinct.
func TestReplicationRules(t *testing.T) {
	s := exampleApp(t)
	tm := s.tmpl["us-east-1"]
	check(t, "replication rule logs -> eu-west-1", func() {
		tm.HasResourceProperties(jsii.String("AWS::S3::Bucket"), obj(map[string]any{
			"BucketName": "acme-xrc-staging-us-east-1",
			"ReplicationConfiguration": obj(map[string]any{
				"Rules": arrayWith(obj(map[string]any{
					"Id":                      "logs-to-eu-west-1",
					"Status":                  "Enabled",
					"Filter":                  map[string]any{"Prefix": "logs/"},
					"DeleteMarkerReplication": map[string]any{"Status": "Disabled"},
					"SourceSelectionCriteria": map[string]any{"SseKmsEncryptedObjects": map[string]any{"Status": "Enabled"}},
				})),
			}),
		}))
	})
	type rep struct{ Prefix, Dest, Key string }
	var got []rep
	priorities := map[float64]bool{}
	for _, b := range ofType(s.json["us-east-1"], "AWS::S3::Bucket") {
		rc, ok := propsOf(b)["ReplicationConfiguration"].(map[string]any)
		if !ok {
			continue
		}
		for _, r := range rc["Rules"].([]any) {
			r := r.(map[string]any)
			prefix := r["Filter"].(map[string]any)["Prefix"].(string)
			if !strings.HasSuffix(prefix, "/") {
				t.Errorf("rule %v: prefix %q would over-match", r["Id"], prefix)
			}
			p := r["Priority"].(float64)
			if priorities[p] {
				t.Errorf("priority %v used twice", p)
			}
			priorities[p] = true
			d := r["Destination"].(map[string]any)
			got = append(got, rep{prefix, renderIntrinsic(d["Bucket"]),
				renderIntrinsic(d["EncryptionConfiguration"].(map[string]any)["ReplicaKmsKeyID"])})
		}
	}
	want := []rep{
		{"logs/", "arn:<AWS::Partition>:s3:::acme-xrc-staging-eu-west-1", "arn:<AWS::Partition>:kms:eu-west-1:<AWS::AccountId>:alias/xrc-staging"},
		{"logs/", "arn:<AWS::Partition>:s3:::acme-xrc-staging-ap-southeast-2", "arn:<AWS::Partition>:kms:ap-southeast-2:<AWS::AccountId>:alias/xrc-staging"},
		{"exports/", "arn:<AWS::Partition>:s3:::acme-xrc-staging-eu-west-1", "arn:<AWS::Partition>:kms:eu-west-1:<AWS::AccountId>:alias/xrc-staging"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("replication rules\n got %v\nwant %v", got, want)
	}
	// The aliases the rules name exist in the target stacks.
	for _, region := range []string{"eu-west-1", "ap-southeast-2"} {
		check(t, region+" staging key alias", func() {
			s.tmpl[region].HasResourceProperties(jsii.String("AWS::KMS::Alias"), obj(map[string]any{"AliasName": "alias/xrc-staging"}))
		})
		if _, ok := propsOf(firstOf(ofType(s.json[region], "AWS::S3::Bucket"), "acme-xrc-staging-"+region))["ReplicationConfiguration"]; ok {
			t.Errorf("%s staging bucket replicates: target-only regions must not", region)
		}
	}
}

// firstOf returns the resource whose properties' BucketName (or other
// name) is name, or nil.
func firstOf(rs map[string]map[string]any, name string) map[string]any {
	for _, r := range rs {
		for _, k := range []string{"BucketName", "QueueName", "TopicName", "Name", "AlarmName"} {
			if propsOf(r)[k] == name {
				return r
			}
		}
	}
	return nil
}

// TestStagingLifecycle: archives staged for other regions are kept a day
// at most; replicated ones wait stagingExpiryDays for their target; in a
// region that is source and target of a rule, its archives wait for its
// target there, and go after a day once it tagged them delivered; no
// prefix has two rules of its own; and a rule without a prefix ("*")
// expires everything after stagingExpiryDays, for what no rule's prefix
// covers (a rule removed from the config, its archives left). S3 applies
// the earliest of overlapping expirations.
func TestStagingLifecycle(t *testing.T) {
	stagingLifecycle(t, exampleApp(t), map[string]map[string]float64{
		"us-east-1":      {"logs/": 1, "exports/": 1, "*": 7},
		"eu-west-1":      {"logs/": 7, "exports/": 7, "*": 7},
		"ap-southeast-2": {"logs/": 7, "*": 7},
	})
	stagingLifecycle(t, variantApp(t), map[string]map[string]float64{
		"us-east-1":    {"a/": 1, "*": 7},
		"eu-west-1":    {"a/": 7, "b/": 7, "b/ " + config.DeliveredTag + "=true": 1, "*": 7},
		"eu-central-1": {"b/": 7, "*": 7},
	})
}

func stagingLifecycle(t *testing.T, s *synthesized, want map[string]map[string]float64) {
	t.Helper()
	for region, tm := range s.json {
		got := map[string]float64{}
		for _, b := range ofType(tm, "AWS::S3::Bucket") {
			lc, ok := propsOf(b)["LifecycleConfiguration"].(map[string]any)
			if !ok {
				continue
			}
			for _, r := range lc["Rules"].([]any) {
				r := r.(map[string]any)
				if _, ok := r["Prefix"]; !ok && r["ExpirationInDays"] != nil && r["TagFilters"] == nil {
					r["Prefix"] = "*"
				}
				if p, ok := r["Prefix"].(string); ok {
					for _, f := range asSlice(r["TagFilters"]) {
						f := f.(map[string]any)
						p += fmt.Sprintf(" %v=%v", f["Key"], f["Value"])
					}
					if _, dup := got[p]; dup {
						t.Errorf("%s: two expirations for %s", region, p)
					}
					got[p], _ = r["ExpirationInDays"].(float64)
				}
			}
		}
		if !maps.Equal(got, want[region]) {
			t.Errorf("%s: staging expiry by prefix %v, want %v", region, got, want[region])
		}
	}
}

// TestEncryption: buckets SSE-KMS with a bucket key, versioned, private,
// TLS only, expiring; queues and the topic on a customer managed key with
// rotation.
func TestEncryption(t *testing.T) {
	s := exampleApp(t)
	for region, tm := range s.tmpl {
		check(t, region+" staging bucket", func() {
			tm.AllResourcesProperties(jsii.String("AWS::S3::Bucket"), obj(map[string]any{
				"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": arrayEquals(obj(map[string]any{
					"BucketKeyEnabled":              true,
					"ServerSideEncryptionByDefault": obj(map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": assertions.Match_AnyValue()}),
				}))},
				"VersioningConfiguration": map[string]any{"Status": "Enabled"},
				"PublicAccessBlockConfiguration": map[string]any{
					"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
				},
				"LifecycleConfiguration": map[string]any{"Rules": arrayWith(obj(map[string]any{
					"NoncurrentVersionExpiration":    map[string]any{"NoncurrentDays": 1},
					"ExpiredObjectDeleteMarker":      true,
					"AbortIncompleteMultipartUpload": map[string]any{"DaysAfterInitiation": 1},
					"Status":                         "Enabled",
				}))},
			}))
		})
		check(t, region+" TLS-only bucket policy", func() {
			tm.HasResourceProperties(jsii.String("AWS::S3::BucketPolicy"), obj(map[string]any{
				"PolicyDocument": obj(map[string]any{"Statement": arrayWith(obj(map[string]any{
					"Effect":    "Deny",
					"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
				}))}),
			}))
		})
		check(t, region+" queues on KMS", func() {
			tm.AllResourcesProperties(jsii.String("AWS::SQS::Queue"), obj(map[string]any{"KmsMasterKeyId": assertions.Match_AnyValue()}))
		})
		check(t, region+" topic on KMS", func() {
			tm.AllResourcesProperties(jsii.String("AWS::SNS::Topic"), obj(map[string]any{"KmsMasterKeyId": assertions.Match_AnyValue()}))
		})
		check(t, region+" key rotation", func() {
			tm.AllResourcesProperties(jsii.String("AWS::KMS::Key"), obj(map[string]any{"EnableKeyRotation": true}))
		})
	}
}

// TestDeadLetterQueues: every work queue redrives to its "-dlq" after
// settings.worker.maxReceiveCount receives and has the config's visibility
// timeout.
func TestDeadLetterQueues(t *testing.T) {
	s := exampleApp(t)
	want := map[string][]string{
		"us-east-1":      {"xrc-src-exports", "xrc-src-logs"},
		"eu-west-1":      {"xrc-tgt"},
		"ap-southeast-2": {"xrc-tgt"},
	}
	for region, names := range want {
		queues := ofType(s.json[region], "AWS::SQS::Queue")
		var got []string
		for _, q := range queues {
			name := propsOf(q)["QueueName"].(string)
			if strings.HasSuffix(name, "-dlq") {
				continue
			}
			got = append(got, name)
		}
		sort.Strings(got)
		if !slices.Equal(got, names) {
			t.Errorf("%s queues = %v, want %v", region, got, names)
		}
		for _, name := range names {
			check(t, region+" "+name+" redrive", func() {
				s.tmpl[region].HasResourceProperties(jsii.String("AWS::SQS::Queue"), obj(map[string]any{
					"QueueName":              name,
					"VisibilityTimeout":      visibility(region, name),
					"MessageRetentionPeriod": 14 * 24 * 3600, // longer than stagingExpiryDays
					"RedrivePolicy": map[string]any{
						"maxReceiveCount":     8,
						"deadLetterTargetArn": map[string]any{"Fn::GetAtt": arrayEquals(like("^"+dlqLogicalPrefix(name)), "Arn")},
					},
				}))
			})
			if firstOf(queues, name+"-dlq") == nil {
				t.Errorf("%s: no queue %s-dlq", region, name)
			}
		}
		// S3 events come from the account's own buckets only: a bucket ARN
		// names no account.
		for _, p := range ofType(s.json[region], "AWS::SQS::QueuePolicy") {
			doc, _ := json.Marshal(propsOf(p)["PolicyDocument"])
			if strings.Contains(string(doc), `"s3.amazonaws.com"`) && !strings.Contains(string(doc),
				`{"Action":"sqs:SendMessage","Condition":{"StringNotEquals":{"aws:SourceAccount":{"Ref":"AWS::AccountId"}}},"Effect":"Deny","Principal":{"Service":"s3.amazonaws.com"}`) {
				t.Errorf("%s: a queue S3 sends to takes events from other accounts' buckets: %s", region, doc)
			}
		}
	}
}

// visibility is the example's visibility timeout of a queue: six times the
// function timeout (5m) where a Lambda function consumes it (compute lambda
// or hybrid), plus the source mapping's batching window (30s) for a
// source's, the config's 5m elsewhere.
func visibility(region, queue string) float64 {
	switch {
	case queue == "xrc-src-exports":
		return 1830
	case region == "ap-southeast-2":
		return 1800
	}
	return 300
}

// dlqLogicalPrefix is the start of the DLQ's logical id for a queue name.
func dlqLogicalPrefix(queue string) string {
	if rule, ok := strings.CutPrefix(queue, "xrc-src-"); ok {
		return "Source" + rule + "Dlq"
	}
	return "TargetDlq"
}

// statement is one IAM statement with its role and rendered resources.
type statement struct {
	Role, Sid, Effect string
	Actions           []string
	Resources         []string
	Condition         map[string]any
}

// statements collects the identity policies of a template by role logical
// id (inline policies attached through AWS::IAM::Policy).
func statements(tm map[string]any) []statement {
	var out []statement
	for _, p := range ofType(tm, "AWS::IAM::Policy") {
		pp := propsOf(p)
		var roles []string
		for _, r := range pp["Roles"].([]any) {
			roles = append(roles, renderIntrinsic(r))
		}
		for _, st := range pp["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			st := st.(map[string]any)
			s := statement{Role: strings.Join(roles, ","), Effect: fmt.Sprint(st["Effect"])}
			s.Sid, _ = st["Sid"].(string)
			s.Actions = strs(st["Action"])
			for _, r := range list(st["Resource"]) {
				s.Resources = append(s.Resources, renderIntrinsic(r))
			}
			s.Condition, _ = st["Condition"].(map[string]any)
			out = append(out, s)
		}
	}
	return out
}

func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestIAMLeastPrivilege: no action wildcards; no resource "*" without
// conditions (and then only KMS through a service, or ECR's token); every
// S3 resource names a configured bucket; roles get exactly their prefixes.
func TestIAMLeastPrivilege(t *testing.T) {
	s := exampleApp(t)
	known := []string{"<Staging"}
	for _, r := range s.d.Config.Settings.Regions {
		known = append(known, "arn:<AWS::Partition>:s3:::"+r.StagingBucket)
	}
	for _, r := range s.d.Config.Rules {
		known = append(known, "arn:<AWS::Partition>:s3:::"+r.SourceBucket)
		for _, d := range r.Destinations {
			known = append(known, "arn:<AWS::Partition>:s3:::"+d.Bucket)
		}
	}
	for region, tm := range s.json {
		for _, st := range statements(tm) {
			where := fmt.Sprintf("%s %s %s", region, st.Role, st.Sid)
			for _, a := range st.Actions {
				if a == "*" || strings.HasSuffix(a, ":*") {
					t.Errorf("%s: action %s", where, a)
				}
			}
			for _, r := range st.Resources {
				if r == "*" {
					if len(st.Condition) == 0 && !slices.Equal(st.Actions, []string{"ecr:GetAuthorizationToken"}) {
						t.Errorf("%s: %v on * without conditions", where, st.Actions)
					}
					for _, a := range st.Actions {
						if !strings.HasPrefix(a, "kms:") && a != "ecr:GetAuthorizationToken" && !strings.HasPrefix(a, "s3:PutBucketNotification") {
							t.Errorf("%s: %s on *", where, a)
						}
					}
					continue
				}
				if strings.Contains(r, ":s3:::") || strings.HasPrefix(r, "<Staging") {
					if !slices.ContainsFunc(known, func(k string) bool { return r == k || strings.HasPrefix(r, k+"/") || strings.HasPrefix(r, "<Staging") }) {
						t.Errorf("%s: S3 resource %s is not a configured bucket", where, r)
					}
					if strings.HasSuffix(r, ":::*") || r == "arn:<AWS::Partition>:s3:::*/*" {
						t.Errorf("%s: S3 resource %s covers every bucket", where, r)
					}
				}
			}
		}
	}

	// Exactly the prefixes each role needs.
	grants := func(region, rolePrefix, sid string) []string {
		for _, st := range statements(s.json[region]) {
			if strings.HasPrefix(st.Role, "<"+rolePrefix) && st.Sid == sid {
				return st.Resources
			}
		}
		return nil
	}
	for _, tc := range []struct {
		region, role, sid string
		want              []string
	}{
		{"us-east-1", "SourcelogsTaskRole", "ReadWatchedObjects", []string{"arn:<AWS::Partition>:s3:::acme-app-logs/prod/*"}},
		{"us-east-1", "SourceexportsTaskRole", "ReadWatchedObjects", []string{"arn:<AWS::Partition>:s3:::acme-exports/daily/*"}},
		{"us-east-1", "SourcelogsTaskRole", "ListWatchedBucket", []string{"arn:<AWS::Partition>:s3:::acme-app-logs"}},
		{"eu-west-1", "TargetTaskRole", "WriteDestination0", []string{"arn:<AWS::Partition>:s3:::acme-app-logs-eu/prod/*"}},
		{"eu-west-1", "TargetTaskRole", "WriteDestination1", []string{"arn:<AWS::Partition>:s3:::acme-exports-eu/daily/*"}},
		{"eu-west-1", "TargetTaskRole", "PropagateDeletes1", []string{"arn:<AWS::Partition>:s3:::acme-exports-eu/daily/*"}},
		{"eu-west-1", "TargetTaskRole", "PropagateDeletes0", nil}, // logs does not propagate deletes
		{"eu-west-1", "TargetTaskRole", "DestinationKey0K0", []string{"arn:aws:kms:eu-west-1:111122223333:key/*"}},
		{"ap-southeast-2", "TargetFunctionRole", "WriteDestination0", []string{"arn:<AWS::Partition>:s3:::acme-app-logs-apac/us/*"}},
		{"us-east-1", "ReplicationRole", "ReplicateTo0", []string{
			"arn:<AWS::Partition>:s3:::acme-xrc-staging-eu-west-1/logs/*", "arn:<AWS::Partition>:s3:::acme-xrc-staging-eu-west-1/exports/*"}},
		{"us-east-1", "ReplicationRole", "ReplicateTo1", []string{"arn:<AWS::Partition>:s3:::acme-xrc-staging-ap-southeast-2/logs/*"}},
	} {
		if got := grants(tc.region, tc.role, tc.sid); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s %s: resources %v, want %v", tc.region, tc.role, tc.sid, got, tc.want)
		}
	}
	// A task asks for its own scale-in protection (internal/protection):
	// the workers' task roles may, on this cluster's tasks; functions and
	// backfill tasks (not in a service) never ask.
	for region, tm := range s.json {
		roles := map[string]bool{}
		for _, st := range statements(tm) {
			if st.Sid != "ProtectFromScaleIn" {
				continue
			}
			roles[st.Role] = true
			if !slices.Equal(st.Actions, []string{"ecs:UpdateTaskProtection"}) || len(st.Resources) != 1 ||
				!strings.HasPrefix(st.Resources[0], "arn:<AWS::Partition>:ecs:"+region+":<AWS::AccountId>:task/<Cluster") || !strings.HasSuffix(st.Resources[0], "/*") {
				t.Errorf("%s %s: %v on %v", region, st.Role, st.Actions, st.Resources)
			}
		}
		for _, st := range statements(tm) {
			if strings.Contains(st.Role, "TaskRole") && !strings.Contains(st.Role, "Backfill") && !roles[st.Role] {
				t.Errorf("%s %s: no scale-in protection", region, st.Role)
				roles[st.Role] = true
			}
			if strings.Contains(st.Role, "FunctionRole") && roles[st.Role] {
				t.Errorf("%s %s: a function role with scale-in protection", region, st.Role)
			}
		}
	}
	// Each role's DynamoDB items only: a source cannot forge the
	// tombstones that make a target skip writes, a target cannot touch
	// the learner's statistics.
	for _, tc := range []struct{ region, role, sid, want string }{
		{"us-east-1", "SourcelogsTaskRole", "Statistics", `map[ForAllValues:StringLike:map[dynamodb:LeadingKeys:[stats#logs choice#logs fleet task#* xrc#start]]]`},
		{"us-east-1", "SourceexportsFunctionRole", "Statistics", `map[ForAllValues:StringLike:map[dynamodb:LeadingKeys:[stats#exports choice#exports fleet task#* xrc#start]]]`},
		{"eu-west-1", "TargetTaskRole", "TombstonesAndLedger", `map[ForAllValues:StringLike:map[dynamodb:LeadingKeys:[tomb#* archive#* uploads#eu-west-1 xrc#start]]]`},
		{"ap-southeast-2", "TargetFunctionRole", "TombstonesAndLedger", `map[ForAllValues:StringLike:map[dynamodb:LeadingKeys:[tomb#* archive#* uploads#ap-southeast-2 xrc#start]]]`},
	} {
		found := false
		for _, st := range statements(s.json[tc.region]) {
			if strings.HasPrefix(st.Role, "<"+tc.role) && st.Sid == tc.sid {
				found = true
				if got := fmtCondition(st.Condition); got != tc.want {
					t.Errorf("%s %s %s: condition %s, want %s", tc.region, tc.role, tc.sid, got, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("%s %s: no %s statement", tc.region, tc.role, tc.sid)
		}
	}
	for _, tc := range []struct{ region, role, sid, want string }{
		{"us-east-1", "SourcelogsTaskRole", "WriteArchives", "/logs/*"},
		{"eu-west-1", "TargetTaskRole", "ReadAndDeleteArchives", "/exports/*"},
		{"ap-southeast-2", "TargetFunctionRole", "ReadAndDeleteArchives", "/logs/*"},
	} {
		got := grants(tc.region, tc.role, tc.sid)
		if !slices.ContainsFunc(got, func(r string) bool { return strings.HasPrefix(r, "<Staging") && strings.HasSuffix(r, tc.want) }) {
			t.Errorf("%s %s %s: resources %v, want the staging bucket's %s", tc.region, tc.role, tc.sid, got, tc.want)
		}
	}
	// Exactly the calls the target makes on staging archives: it reads one
	// version and deletes that version, or tags it delivered while S3
	// Replication still copies it.
	want := []string{"s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:PutObjectVersionTagging"}
	for _, st := range statements(s.json["eu-west-1"]) {
		if strings.HasPrefix(st.Role, "<TargetTaskRole") && st.Sid == "ReadAndDeleteArchives" && !slices.Equal(st.Actions, want) {
			t.Errorf("target archive actions %v, want %v", st.Actions, want)
		}
	}
	if got := grants("ap-southeast-2", "TargetFunctionRole", "ReadAndDeleteArchives"); len(got) != 1 {
		t.Errorf("ap-southeast-2 reads archives of %v: exports has no destination there", got)
	}
	// The alias-named key statement is narrowed by the alias, and to S3's
	// use of the key for the destination's objects: not its other
	// ciphertexts, nor kms:Encrypt, which S3 never calls.
	var key *statement
	for _, st := range statements(s.json["eu-west-1"]) {
		if strings.HasPrefix(st.Role, "<TargetTaskRole") && st.Sid == "DestinationKey0K0" {
			key = &st
		}
	}
	if key == nil {
		t.Fatal("no DestinationKey0K0 statement for the target's role in eu-west-1")
	}
	cond := fmt.Sprint(key.Condition)
	for _, want := range []string{"ForAnyValue:StringEquals:map[kms:ResourceAliases:alias/acme-logs]", "StringEquals:map[kms:ViaService:s3.eu-west-1.amazonaws.com]",
		"kms:EncryptionContext:aws:s3:arn", "acme-app-logs-eu/prod/*"} {
		if !strings.Contains(cond, want) {
			t.Errorf("DestinationKey0K0 condition %s, want it to hold %s", cond, want)
		}
	}
	if !slices.Equal(key.Actions, []string{"kms:GenerateDataKey", "kms:Decrypt"}) {
		t.Errorf("DestinationKey0K0 actions %v, want kms:Decrypt and kms:GenerateDataKey alone", key.Actions)
	}
}

// TestTaskHardening: ARM64 Fargate tasks, read-only root, non-root, no
// capabilities, 120 s stop timeout, non-blocking logs, a health check on
// the worker's endpoint, GOMEMLIMIT from the task's memory, config from
// SSM.
func TestTaskHardening(t *testing.T) {
	s := exampleApp(t)
	for region := range s.tmpl {
		if !s.d.Plan.Region(region).NeedsCluster() {
			continue // its workers run on Lambda (TestComputeModes)
		}
		kind := targetKind // the example has one source region
		if region == "us-east-1" {
			kind = sourceKind
		}
		check(t, region+" task definitions", func() {
			workerTasks(s.json[region]).AllResourcesProperties(jsii.String("AWS::ECS::TaskDefinition"), obj(map[string]any{
				"RequiresCompatibilities": arrayEquals("FARGATE"),
				"RuntimePlatform":         map[string]any{"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
				"Cpu":                     "1024",
				"Memory":                  "2048",
				"ContainerDefinitions": arrayEquals(obj(map[string]any{
					"ReadonlyRootFilesystem": true,
					"User":                   "65532:65532",
					"StopTimeout":            120,
					"LinuxParameters":        obj(map[string]any{"Capabilities": obj(map[string]any{"Drop": arrayEquals("ALL")})}),
					"HealthCheck": obj(map[string]any{
						"Command": arrayEquals("CMD", "/usr/local/bin/"+kind, "healthcheck", "http://127.0.0.1:9090/healthz"),
					}),
					"LogConfiguration": obj(map[string]any{"LogDriver": "awslogs", "Options": obj(map[string]any{"mode": "non-blocking"})}),
					"Environment": arrayWith(
						map[string]any{"Name": "GOMEMLIMIT", "Value": "1740MiB"},
						map[string]any{"Name": "XRC_CONFIG", "Value": "ssm:///xrc/config"},
						// What the task checks a document edited by hand
						// against (app.Deployment).
						map[string]any{"Name": "XRC_MEMORY_MB", "Value": "2048"},
						map[string]any{"Name": "XRC_METRICS_ADDR", "Value": ":9090"},
						map[string]any{"Name": "XRC_REGION", "Value": region},
						map[string]any{"Name": "XRC_STACK_NAME", "Value": "xrc"},
					),
					"MountPoints": arrayEquals(obj(map[string]any{"ContainerPath": "/tmp", "ReadOnly": false})),
				})),
			}))
		})
	}
	for _, rule := range []string{"logs", "exports"} {
		check(t, "source task of "+rule, func() {
			s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::ECS::TaskDefinition"), obj(map[string]any{
				"ContainerDefinitions": arrayWith(obj(map[string]any{
					"Name":        "xrc-source",
					"Environment": arrayWith(map[string]any{"Name": "XRC_RULES", "Value": rule}),
				})),
			}))
		})
	}
}

// TestSpotCapacity: services on Fargate Spot only by default, cluster with
// Container Insights (the scaling metrics come from it).
func TestSpotCapacity(t *testing.T) {
	s := exampleApp(t)
	for region, tm := range s.tmpl {
		if !s.d.Plan.Region(region).NeedsCluster() {
			continue // its workers run on Lambda (TestComputeModes)
		}
		check(t, region+" services", func() {
			tm.AllResourcesProperties(jsii.String("AWS::ECS::Service"), obj(map[string]any{
				"CapacityProviderStrategy": arrayEquals(map[string]any{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}),
				"NetworkConfiguration":     obj(map[string]any{"AwsvpcConfiguration": obj(map[string]any{"AssignPublicIp": "DISABLED"})}),
				"DesiredCount":             assertions.Match_Absent(), // scaling owns it
			}))
		})
		check(t, region+" cluster", func() {
			tm.HasResourceProperties(jsii.String("AWS::ECS::Cluster"), obj(map[string]any{
				"ClusterSettings": arrayWith(map[string]any{"Name": "containerInsights", "Value": "enabled"}),
			}))
		})
	}
	// A service that does not wait for the capacity provider association
	// is created before it, and deleted after it (which ECS refuses).
	for region, tm := range s.json {
		assoc := ofType(tm, "AWS::ECS::ClusterCapacityProviderAssociations")
		for id, svc := range ofType(tm, "AWS::ECS::Service") {
			deps := strs(svc["DependsOn"])
			for a := range assoc {
				if !slices.Contains(deps, a) {
					t.Errorf("%s: service %s does not depend on the capacity provider association %s (depends on %v)", region, id, a, deps)
				}
			}
			if len(assoc) == 0 {
				t.Errorf("%s: service %s but no capacity provider association", region, id)
			}
		}
	}
	check(t, "services per region", func() {
		s.tmpl["us-east-1"].ResourceCountIs(jsii.String("AWS::ECS::Service"), jsii.Number(2))
		s.tmpl["eu-west-1"].ResourceCountIs(jsii.String("AWS::ECS::Service"), jsii.Number(1))
	})
}

// TestScaling: per service, a scalable target (0..max) and three step
// policies: out on backlog per task (with the scale-from-zero branch), in
// by one, and to zero when idle.
func TestScaling(t *testing.T) {
	s := exampleApp(t)
	tm := s.tmpl["us-east-1"]
	check(t, "scalable targets", func() {
		tm.ResourceCountIs(jsii.String("AWS::ApplicationAutoScaling::ScalableTarget"), jsii.Number(2))
		tm.AllResourcesProperties(jsii.String("AWS::ApplicationAutoScaling::ScalableTarget"), obj(map[string]any{
			"MinCapacity": 0, "MaxCapacity": 10, "ScalableDimension": "ecs:service:DesiredCount", "ServiceNamespace": "ecs",
			"RoleARN": obj(map[string]any{"Fn::Join": arrayWith(arrayWith(like("AWSServiceRoleForApplicationAutoScaling_ECSService")))}),
		}))
		tm.ResourceCountIs(jsii.String("AWS::ApplicationAutoScaling::ScalingPolicy"), jsii.Number(8))
	})
	check(t, "scale out in steps", func() {
		tm.HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalingPolicy"), obj(map[string]any{
			"PolicyType": "StepScaling",
			"StepScalingPolicyConfiguration": obj(map[string]any{
				"AdjustmentType": "ChangeInCapacity",
				"StepAdjustments": arrayEquals(
					map[string]any{"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 500, "ScalingAdjustment": 1},
					map[string]any{"MetricIntervalLowerBound": 500, "MetricIntervalUpperBound": 1500, "ScalingAdjustment": 2},
					map[string]any{"MetricIntervalLowerBound": 1500, "MetricIntervalUpperBound": 3500, "ScalingAdjustment": 4},
					map[string]any{"MetricIntervalLowerBound": 3500, "ScalingAdjustment": 8},
				),
			}),
		}))
	})
	check(t, "scale to zero", func() {
		tm.HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalingPolicy"), obj(map[string]any{
			"StepScalingPolicyConfiguration": obj(map[string]any{
				"AdjustmentType":  "ExactCapacity",
				"StepAdjustments": arrayEquals(map[string]any{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 0}),
			}),
		}))
	})
	check(t, "scale in by one", func() {
		tm.HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalingPolicy"), obj(map[string]any{
			"StepScalingPolicyConfiguration": obj(map[string]any{
				"AdjustmentType":  "ChangeInCapacity",
				"StepAdjustments": arrayEquals(map[string]any{"MetricIntervalLowerBound": 0, "ScalingAdjustment": -1}),
			}),
		}))
	})
	check(t, "backlog alarm while a task runs", func() {
		tm.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"Threshold":    500,
			"Metrics":      arrayWith(obj(map[string]any{"Expression": like(`^IF\(FILL\(running, 0\) < 1, 0, `)})),
			"AlarmActions": arrayWith(obj(map[string]any{"Ref": like("^SourcelogsScaleOut")})),
		}))
	})
	// From zero, exactly one task: tasks that never start (so report no
	// counts) do not step the service to its maximum.
	check(t, "scale from zero to one", func() {
		tm.HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalingPolicy"), obj(map[string]any{
			"PolicyName": like("ScaleFromZero"),
			"StepScalingPolicyConfiguration": obj(map[string]any{
				"AdjustmentType":  "ExactCapacity",
				"StepAdjustments": arrayEquals(map[string]any{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}),
			}),
		}))
		tm.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"Metrics": arrayWith(obj(map[string]any{"Expression": "IF(FILL(visible, 0) > 0 AND FILL(running, 0) < 1, 1, 0)"})),
			// Two minutes: one late data point is no empty service.
			"EvaluationPeriods": 2,
			"AlarmActions":      arrayWith(obj(map[string]any{"Ref": like("^SourcelogsScaleFromZero")})),
		}))
	})
	check(t, "target worker scales to 20", func() {
		s.tmpl["eu-west-1"].HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalableTarget"), obj(map[string]any{"MaxCapacity": 20}))
	})
}

// TestNoAtMaxAlarmForAFixedCount: a service pinned at a task count
// (min = max) is always at its maximum: no alarm that never clears.
func TestNoAtMaxAlarmForAFixedCount(t *testing.T) {
	s, err := synthApp(map[string]any{"config": "../../configs/example.json", "targetMinTasks": "3", "targetMaxTasks": "3"})
	if err != nil {
		t.Fatal(err)
	}
	s.tmpl["eu-west-1"].ResourcePropertiesCountIs(jsii.String("AWS::CloudWatch::Alarm"),
		obj(map[string]any{"AlarmName": "xrc-eu-west-1-target-at-max-capacity"}), jsii.Number(0))
	s.tmpl["us-east-1"].ResourcePropertiesCountIs(jsii.String("AWS::CloudWatch::Alarm"),
		obj(map[string]any{"AlarmName": "xrc-us-east-1-source-exports-at-max-capacity"}), jsii.Number(1))
}

// TestAlarms: each worker's DLQ, oldest-message, failing-to-start and
// at-max alarms notify the region's topic.
func TestAlarms(t *testing.T) {
	s := exampleApp(t)
	for _, tc := range []struct {
		region, name string
		threshold    float64
		periods      float64
	}{
		{"us-east-1", "xrc-us-east-1-source-logs-dlq-not-empty", 0, 1},
		{"us-east-1", "xrc-us-east-1-source-exports-oldest-message", 1800, 5},
		{"us-east-1", "xrc-us-east-1-source-logs-tasks-failing-to-start", 1, 10},
		{"us-east-1", "xrc-us-east-1-source-exports-at-max-capacity", 10, 15},
		{"eu-west-1", "xrc-eu-west-1-target-dlq-not-empty", 0, 1},
		{"eu-west-1", "xrc-eu-west-1-target-at-max-capacity", 20, 15},
		{"ap-southeast-2", "xrc-ap-southeast-2-target-verify-failures", 0, 1},
		{"us-east-1", "xrc-us-east-1-replication-failed-logs-to-eu-west-1", 0, 1},
		{"us-east-1", "xrc-us-east-1-replication-failed-logs-to-ap-southeast-2", 0, 1},
		{"us-east-1", "xrc-us-east-1-replication-failed-exports-to-eu-west-1", 0, 1},
	} {
		check(t, tc.name, func() {
			s.tmpl[tc.region].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
				"AlarmName":         tc.name,
				"Threshold":         tc.threshold,
				"EvaluationPeriods": tc.periods,
				"AlarmActions":      arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
				"OKActions":         arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
			}))
		})
	}
	// The not-empty alarm stays in ALARM while anything is in the DLQ:
	// arrivals since fire their own, which does not notify its clearing.
	for region, name := range map[string]string{"us-east-1": "xrc-us-east-1-source-logs-dlq-arrivals", "eu-west-1": "xrc-eu-west-1-target-dlq-arrivals"} {
		check(t, name, func() {
			s.tmpl[region].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
				"AlarmName":         name,
				"Threshold":         0,
				"EvaluationPeriods": 1,
				"Metrics":           arrayWith(obj(map[string]any{"Expression": "DIFF(FILL(visible, REPEAT) + FILL(inFlight, REPEAT))"})),
				"AlarmActions":      arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
				"OKActions":         assertions.Match_Absent(),
			}))
		})
	}
	// Metric lines CloudWatch refuses silence every alarm on xrc's own
	// metrics (missing data is fine to them): each worker kind's log group
	// is watched for them.
	for region, kinds := range map[string][]string{"us-east-1": {"source", "backfill"}, "eu-west-1": {"target"}, "ap-southeast-2": {"target"}} {
		for _, kind := range kinds {
			name := "xrc-" + region + "-" + kind + "-metrics-rejected"
			check(t, name, func() {
				s.tmpl[region].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
					"AlarmName": name,
					"Threshold": 0,
					"Metrics": arrayWith(obj(map[string]any{"Expression": "FILL(invalid, 0) + FILL(unparsed, 0)"}),
						obj(map[string]any{"Id": "invalid", "MetricStat": obj(map[string]any{"Metric": obj(map[string]any{
							"Namespace": "AWS/Logs", "MetricName": "EMFValidationErrors",
							"Dimensions": arrayWith(obj(map[string]any{"Name": "LogGroupName"}))})})}),
						obj(map[string]any{"Id": "unparsed", "MetricStat": obj(map[string]any{"Metric": obj(map[string]any{
							"Namespace": "AWS/Logs", "MetricName": "EMFParsingErrors"})})})),
					"AlarmActions": arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
				}))
			})
		}
	}
	// Tasks that never start leave no task counts (none runs): waiting
	// messages with no task running count too.
	check(t, "failing to start from zero", func() {
		s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"AlarmName": "xrc-us-east-1-source-logs-tasks-failing-to-start",
			"Metrics": arrayWith(obj(map[string]any{"Expression": "IF(FILL(desired, 0) - FILL(running, 0) >= 1 OR (FILL(visible, 0) > 0 AND FILL(running, 0) < 1), 1, 0)"}),
				obj(map[string]any{"Id": "visible", "MetricStat": obj(map[string]any{"Metric": obj(map[string]any{"MetricName": "ApproximateNumberOfMessagesVisible"})})})),
		}))
	})
	check(t, "topic", func() {
		s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::SNS::Topic"), obj(map[string]any{"TopicName": "xrc-alarms"}))
	})
	// A failed replication is S3's to report: its rule's metrics, on by
	// default, without replication time control.
	check(t, "replication failure metric", func() {
		s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"AlarmName":  "xrc-us-east-1-replication-failed-logs-to-eu-west-1",
			"Namespace":  "AWS/S3",
			"MetricName": "OperationsFailedReplication",
			"Dimensions": arrayWith(obj(map[string]any{"Name": "RuleId", "Value": "logs-to-eu-west-1"})),
			// S3 Lifecycle keeps a FAILED archive (it blocks expiry of
			// objects whose replication is PENDING or FAILED): the
			// operator re-runs it or deletes it.
			"AlarmDescription": like("lifecycle does not expire an archive whose replication failed"),
		}))
	})
	// Slow replication raises no failure and fills no queue.
	check(t, "replication latency", func() {
		s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"AlarmName":  "xrc-us-east-1-replication-slow-logs-to-eu-west-1",
			"Namespace":  "AWS/S3",
			"MetricName": "ReplicationLatency",
			"Statistic":  "Maximum",
			"Dimensions": arrayWith(obj(map[string]any{"Name": "RuleId", "Value": "logs-to-eu-west-1"})),
		}))
	})
	for _, b := range ofType(s.json["us-east-1"], "AWS::S3::Bucket") {
		if rc, ok := propsOf(b)["ReplicationConfiguration"].(map[string]any); ok {
			for _, r := range rc["Rules"].([]any) {
				r := r.(map[string]any)
				if m, _ := r["Destination"].(map[string]any)["Metrics"].(map[string]any); m["Status"] != "Enabled" {
					t.Errorf("replication rule %v without metrics: a failed replication would go unseen", r["Id"])
				}
			}
		}
	}
	// The topic's own policy (TLS only) replaces SNS's default one: it
	// must let the account's alarms publish.
	for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		check(t, region+" topic policy", func() {
			s.tmpl[region].HasResourceProperties(jsii.String("AWS::SNS::TopicPolicy"), obj(map[string]any{
				"PolicyDocument": obj(map[string]any{"Statement": arrayWith(obj(map[string]any{
					"Effect":    "Allow",
					"Action":    "sns:Publish",
					"Principal": map[string]any{"Service": "cloudwatch.amazonaws.com"},
					"Condition": map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": map[string]any{"Ref": "AWS::AccountId"}}},
				}))}),
			}))
		})
	}
}

// TestDashboard: one per region, with the source and target metrics the
// workers emit.
func TestDashboard(t *testing.T) {
	s := exampleApp(t)
	body := func(region string) string {
		for _, d := range ofType(s.json[region], "AWS::CloudWatch::Dashboard") {
			if renderIntrinsic(propsOf(d)["DashboardName"]) != "xrc-"+region {
				t.Errorf("dashboard name %v", propsOf(d)["DashboardName"])
			}
			return renderIntrinsic(propsOf(d)["DashboardBody"])
		}
		t.Fatalf("%s: no dashboard", region)
		return ""
	}
	src := body("us-east-1")
	for _, want := range []string{
		"xrc_source_archives_total", "xrc_source_bytes_in_total", "xrc_source_bytes_out_total", "Compression ratio",
		"Bytes saved", "Net benefit", "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
		"Dead-letter queues", "RunningTaskCount", "xrc_source_errors_total", "xrc_source_batches_total",
		"xrc_source_objects_total", "xrc_source_unmatched_events_total",
		// A ratio is a gap where nothing was staged, not 0.
		`r0in / r0out`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("us-east-1 dashboard lacks %s", want)
		}
	}
	// Gauges each task reports are not added up over the tasks.
	for _, want := range []string{`xrc_source_cpu_factor_ratio[^']*', 'Average', 60\)`, `xrc_source_throughput_steps[^']*', 'Maximum', 60\)`} {
		if !regexp.MustCompile(want).MatchString(src) {
			t.Errorf("us-east-1 dashboard lacks %s", want)
		}
	}
	// Every name of a search's schema quoted (a stack name's '-', a
	// label's '_': CloudWatch finds nothing for them unquoted).
	searches := regexp.MustCompile(`SEARCH\('\{([^}]*)\}`).FindAllStringSubmatch(src, -1)
	if len(searches) == 0 {
		t.Error("us-east-1 dashboard has no search")
	}
	for _, m := range searches {
		for _, name := range strings.Split(m[1], ",") {
			if !regexp.MustCompile(`^\\?"[^"\\]+\\?"$`).MatchString(name) {
				t.Errorf("search schema {%s}: %s unquoted", m[1], name)
			}
		}
	}
	if !strings.Contains(src, "interrupted") {
		t.Error("us-east-1 dashboard's archives lack those cut by a stop (interrupted)")
	}
	tgt := body("eu-west-1")
	for _, want := range []string{"xrc_target_archives_total", "xrc_target_objects_total", "xrc_target_bytes_total", "xrc_target_verify_failures_total", "xrc_target_errors_total", "xrc_target_replication_latency_seconds"} {
		if !strings.Contains(tgt, want) {
			t.Errorf("eu-west-1 dashboard lacks %s", want)
		}
	}
}

// TestNotifications: watched buckets notify their rule's queue with the
// rule's prefix and suffix (tag changes always, removals only when deletes
// propagate); target
// staging buckets notify the target queue for the archives of the rules
// with a destination there.
func TestNotifications(t *testing.T) {
	s := exampleApp(t)
	type conf struct{ Bucket, Events, Prefix, Suffix, Queue string }
	collect := func(region string) []conf {
		var out []conf
		for _, n := range ofType(s.json[region], "Custom::S3BucketNotifications") {
			p := propsOf(n)
			bucket := renderIntrinsic(p["BucketName"])
			nc := p["NotificationConfiguration"].(map[string]any)
			for _, qc := range list(nc["QueueConfigurations"]) {
				qc := qc.(map[string]any)
				c := conf{Bucket: bucket, Events: strings.Join(strs(qc["Events"]), ","), Queue: renderIntrinsic(qc["QueueArn"])}
				if f, ok := qc["Filter"].(map[string]any); ok {
					for _, r := range f["Key"].(map[string]any)["FilterRules"].([]any) {
						r := r.(map[string]any)
						switch r["Name"] {
						case "prefix":
							c.Prefix = r["Value"].(string)
						case "suffix":
							c.Suffix = r["Value"].(string)
						}
					}
				}
				out = append(out, c)
			}
		}
		sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
		return out
	}
	// A filter is matched against the key as S3's events encode it: a
	// raw "dt=2026/" matches no key.
	var variantPrefixes []string
	for _, n := range ofType(variantApp(t).json["us-east-1"], "Custom::S3BucketNotifications") {
		for _, qc := range list(propsOf(n)["NotificationConfiguration"].(map[string]any)["QueueConfigurations"]) {
			if f, ok := qc.(map[string]any)["Filter"].(map[string]any); ok {
				for _, r := range f["Key"].(map[string]any)["FilterRules"].([]any) {
					variantPrefixes = append(variantPrefixes, r.(map[string]any)["Value"].(string))
				}
			}
		}
	}
	if len(variantPrefixes) == 0 || slices.ContainsFunc(variantPrefixes, func(p string) bool { return p != "in/dt%3D2026/" }) {
		t.Errorf("filters of rule a (prefix in/dt=2026/): %q, want each in/dt%%3D2026/", variantPrefixes)
	}
	got := collect("us-east-1")
	want := []conf{
		{"acme-app-logs", "s3:ObjectCreated:*", "prod/", ".json.log", "<Sourcelogs"},
		{"acme-app-logs", "s3:ObjectTagging:*", "prod/", ".json.log", "<Sourcelogs"},
		{"acme-exports", "s3:ObjectCreated:*", "daily/", "", "<Sourceexports"},
		{"acme-exports", "s3:ObjectRemoved:*", "daily/", "", "<Sourceexports"},
		{"acme-exports", "s3:ObjectTagging:*", "daily/", "", "<Sourceexports"},
	}
	if len(got) != len(want) {
		t.Fatalf("us-east-1 notifications = %+v", got)
	}
	for i := range want {
		g := got[i]
		if g.Bucket != want[i].Bucket || g.Events != want[i].Events || g.Prefix != want[i].Prefix || g.Suffix != want[i].Suffix ||
			!strings.HasPrefix(g.Queue, want[i].Queue) {
			t.Errorf("notification %d = %+v, want %+v", i, g, want[i])
		}
	}
	for region, prefixes := range map[string][]string{"eu-west-1": {"exports/", "logs/"}, "ap-southeast-2": {"logs/"}} {
		var gotPrefixes []string
		for _, c := range collect(region) {
			if !strings.HasPrefix(c.Bucket, "<Staging") || c.Events != "s3:ObjectCreated:*" || c.Suffix != ".tar.zst" || !strings.HasPrefix(c.Queue, "<Target") {
				t.Errorf("%s: notification %+v", region, c)
			}
			gotPrefixes = append(gotPrefixes, c.Prefix)
		}
		if !slices.Equal(gotPrefixes, prefixes) {
			t.Errorf("%s: target notifications for %v, want %v", region, gotPrefixes, prefixes)
		}
	}
}

// TestStackOrder: the source region deploys after the target regions whose
// staging buckets its replication rules name.
func TestStackOrder(t *testing.T) {
	s := exampleApp(t)
	var deps []string
	for _, st := range *s.d.Stacks["us-east-1"].Dependencies() {
		deps = append(deps, *st.StackName())
	}
	sort.Strings(deps)
	if !slices.Equal(deps, []string{"xrc-ap-southeast-2", "xrc-eu-west-1"}) {
		t.Errorf("xrc-us-east-1 depends on %v", deps)
	}
	for _, region := range []string{"eu-west-1", "ap-southeast-2"} {
		if n := len(*s.d.Stacks[region].Dependencies()); n != 0 {
			t.Errorf("%s has %d dependencies", region, n)
		}
	}
}

// TestConfigParameter: every region gets the document, compacted, at the
// name the workers read (XRC_CONFIG).
func TestConfigParameter(t *testing.T) {
	s := exampleApp(t)
	raw, err := os.ReadFile("../../configs/example.json")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	json.Compact(&compact, raw)
	// Intelligent-Tiering whatever the size: a tier chosen from it would
	// fail the update that shrinks an advanced parameter's document.
	for region, tm := range s.tmpl {
		check(t, region+" parameter", func() {
			tm.HasResourceProperties(jsii.String("AWS::SSM::Parameter"), obj(map[string]any{
				"Name": "/xrc/config", "Type": "String", "Value": compact.String(), "Tier": "Intelligent-Tiering",
			}))
		})
	}
}

// TestTable: every region has the table (statistics at the source,
// tombstones and the ledger at the targets): on-demand, point-in-time
// recovery, TTL on expiresAt; the target role may read and write items
// there and nothing else.
func TestTable(t *testing.T) {
	s := exampleApp(t)
	for region, tm := range s.tmpl {
		check(t, region+" table", func() {
			tm.ResourceCountIs(jsii.String("AWS::DynamoDB::Table"), jsii.Number(1))
			tm.HasResourceProperties(jsii.String("AWS::DynamoDB::Table"), obj(map[string]any{
				"TableName":                        "xrc-stats",
				"BillingMode":                      "PAY_PER_REQUEST",
				"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
				"TimeToLiveSpecification":          map[string]any{"AttributeName": "expiresAt", "Enabled": true},
			}))
		})
	}
	for _, st := range statements(s.json["eu-west-1"]) {
		if strings.HasPrefix(st.Role, "<TargetTaskRole") && st.Sid == "TombstonesAndLedger" {
			if !slices.Equal(st.Actions, []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"}) {
				t.Errorf("target table actions %v", st.Actions)
			}
			return
		}
	}
	t.Error("the target role has no TombstonesAndLedger statement")
}

// TestNetwork: an isolated VPC (no NAT, no internet gateway) with gateway
// endpoints for S3 and DynamoDB and interface
// endpoints for the other APIs the tasks call.
func TestNetwork(t *testing.T) {
	s := exampleApp(t)
	for region, tm := range s.json {
		if !s.d.Plan.Region(region).NeedsCluster() {
			continue // its workers run on Lambda, outside any VPC (TestComputeModes)
		}
		var services []string
		for _, ep := range ofType(tm, "AWS::EC2::VPCEndpoint") {
			name := renderIntrinsic(propsOf(ep)["ServiceName"])
			services = append(services, name[strings.LastIndex(name, ".")+1:])
		}
		sort.Strings(services)
		want := []string{"api", "dkr", "dynamodb", "logs", "s3", "sqs", "ssm"}
		if !slices.Equal(services, want) {
			t.Errorf("%s endpoints %v, want %v", region, services, want)
		}
		for _, typ := range []string{"AWS::EC2::NatGateway", "AWS::EC2::InternetGateway"} {
			if n := len(ofType(tm, typ)); n != 0 {
				t.Errorf("%s: %d %s", region, n, typ)
			}
		}
		// Nothing is reachable from anywhere but the tasks.
		for id, sg := range ofType(tm, "AWS::EC2::SecurityGroup") {
			if in := propsOf(sg)["SecurityGroupIngress"]; in != nil {
				t.Errorf("%s: security group %s admits %v", region, id, in)
			}
		}
		ingress := ofType(tm, "AWS::EC2::SecurityGroupIngress")
		if len(ingress) != 5 {
			t.Errorf("%s: %d ingress rules, want one per interface endpoint", region, len(ingress))
		}
		for id, in := range ingress {
			p := propsOf(in)
			if !strings.HasPrefix(renderIntrinsic(p["SourceSecurityGroupId"]), "<Tasks") || p["FromPort"] != float64(443) || p["ToPort"] != float64(443) {
				t.Errorf("%s: ingress %s = %v, want HTTPS from the tasks only", region, id, p)
			}
		}
	}
}

// TestImageAssets: the workers' images are Docker assets built from the
// repository's Dockerfiles for linux/arm64 at deploy time; synth only
// stages a build context holding what the Dockerfiles copy and nothing
// else of the repository.
func TestImageAssets(t *testing.T) {
	s := exampleApp(t)
	for region, kind := range map[string]string{"us-east-1": sourceKind, "eu-west-1": targetKind} {
		data, err := os.ReadFile(filepath.Join(s.outdir, "xrc-"+region+".assets.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			DockerImages map[string]struct {
				Source struct {
					Directory       string            `json:"directory"`
					DockerFile      string            `json:"dockerFile"`
					Platform        string            `json:"platform"`
					DockerBuildArgs map[string]string `json:"dockerBuildArgs"`
				} `json:"source"`
			} `json:"dockerImages"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.DockerImages) != 1 {
			t.Fatalf("%s: %d image assets, want 1", region, len(m.DockerImages))
		}
		for _, img := range m.DockerImages {
			src := img.Source
			if src.DockerFile != dockerfile(kind) || src.Platform != "linux/arm64" || src.DockerBuildArgs["VERSION"] != "dev" {
				t.Errorf("%s image asset = %+v", region, src)
			}
			ctx := filepath.Join(s.outdir, src.Directory)
			for _, p := range dockerfileCopies(t, kind) {
				if _, err := os.Stat(filepath.Join(ctx, p)); err != nil {
					t.Errorf("%s copies %s, missing from the staged build context: %v", dockerfile(kind), p, err)
				}
			}
			for _, p := range []string{".git", "configs", "deploy/local", "deploy/cdk/main.go", "Makefile", "internal/config/config_test.go"} {
				if _, err := os.Stat(filepath.Join(ctx, p)); err == nil {
					t.Errorf("build context holds %s", p)
				}
			}
		}
	}
}

// TestVariantOptions: the context options change what they promise.
func TestVariantOptions(t *testing.T) {
	s := variantApp(t)
	eu := s.tmpl["eu-west-1"]
	check(t, "existing VPC", func() {
		eu.ResourceCountIs(jsii.String("AWS::EC2::VPC"), jsii.Number(0))
		eu.ResourceCountIs(jsii.String("AWS::EC2::VPCEndpoint"), jsii.Number(0))
		eu.AllResourcesProperties(jsii.String("AWS::ECS::Service"), obj(map[string]any{
			"NetworkConfiguration": obj(map[string]any{"AwsvpcConfiguration": obj(map[string]any{
				"Subnets": arrayEquals("subnet-0a", "subnet-0b"),
			})}),
		}))
	})
	for region, tm := range s.tmpl {
		check(t, region+" on-demand base and amd64 and prebuilt images", func() {
			tm.AllResourcesProperties(jsii.String("AWS::ECS::Service"), obj(map[string]any{
				"CapacityProviderStrategy": arrayEquals(
					map[string]any{"CapacityProvider": "FARGATE_SPOT", "Weight": 1},
					map[string]any{"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
				),
			}))
			tm.AllResourcesProperties(jsii.String("AWS::ECS::TaskDefinition"), obj(map[string]any{
				"RuntimePlatform": map[string]any{"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
			}))
			// The region's own ECR image, pulled with rights the execution
			// role is granted.
			for _, td := range ofType(s.json[region], "AWS::ECS::TaskDefinition") {
				img, _ := json.Marshal(propsOf(td)["ContainerDefinitions"])
				if !strings.Contains(string(img), ".dkr.ecr."+region+".") || !regexp.MustCompile(`xrc/(source:1\.0\.0|target@sha256:(ab){32})`).Match(img) {
					t.Errorf("%s: task image %s", region, img)
				}
			}
			tm.HasResourceProperties(jsii.String("AWS::IAM::Policy"), obj(map[string]any{
				"PolicyDocument": obj(map[string]any{"Statement": arrayWith(obj(map[string]any{"Action": arrayWith("ecr:BatchGetImage")}))}),
			}))
			tm.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), obj(map[string]any{"Protocol": "email", "Endpoint": "ops@example.com"}))
		})
	}
	// eu-west-1 is source and target: its local destination needs no
	// replication; its target queue hears both rules' archives.
	var ids []string
	for _, b := range ofType(s.json["eu-west-1"], "AWS::S3::Bucket") {
		if rc, ok := propsOf(b)["ReplicationConfiguration"].(map[string]any); ok {
			for _, r := range rc["Rules"].([]any) {
				r := r.(map[string]any)
				ids = append(ids, r["Id"].(string))
				d := r["Destination"].(map[string]any)
				if d["ReplicationTime"] == nil || d["Metrics"] == nil {
					t.Errorf("rule %v without replication time control", r["Id"])
				}
			}
		}
	}
	if !slices.Equal(ids, []string{"b-to-eu-central-1"}) {
		t.Errorf("eu-west-1 replication rules %v, want [b-to-eu-central-1]", ids)
	}
	check(t, "source scaling max", func() {
		eu.HasResourceProperties(jsii.String("AWS::ApplicationAutoScaling::ScalableTarget"), obj(map[string]any{"MaxCapacity": 3}))
	})
	if deps := *s.d.Stacks["us-east-1"].Dependencies(); len(deps) != 1 || *deps[0].StackName() != "xv-eu-west-1" {
		t.Errorf("xv-us-east-1 dependencies: %d", len(deps))
	}
	for region := range s.tmpl {
		data, _ := os.ReadFile(filepath.Join(s.outdir, "xv-"+region+".assets.json"))
		if strings.Contains(string(data), "dockerImages\": {\n    \"") {
			t.Errorf("%s: builds an image asset although prebuilt images were given", region)
		}
	}
}

// TestPrebuiltImageOutOfReach: tasks in a VPC the app creates (endpoints,
// no NAT) reach only their region's private ECR; another image fails the
// synth with the reason rather than every task at start.
func TestPrebuiltImageOutOfReach(t *testing.T) {
	s, err := synthApp(map[string]any{"config": "../../configs/example.json",
		"sourceImage": "public.ecr.aws/example/xrc-source:1.0.0", "targetImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xrc/target:1"})
	if err != nil {
		t.Fatal(err)
	}
	for region, st := range s.d.Stacks {
		msgs := annotations(st, true)
		all := strings.Join(msgs, "\n")
		wantSource := region == "us-east-1" // the only region with a source
		wantTarget := region == "eu-west-1" // us-east-1's ECR; ap-southeast-2 runs its targets on Lambda
		if got := strings.Contains(all, `xrc-source image "public.ecr.aws/example/xrc-source:1.0.0"`); got != wantSource {
			t.Errorf("%s: source image refused %v, want %v (%s)", region, got, wantSource, all)
		}
		if got := strings.Contains(all, "xrc-target image"); got != wantTarget {
			t.Errorf("%s: target image refused %v, want %v (%s)", region, got, wantTarget, all)
		}
		if len(msgs) > 0 && !strings.Contains(all, "reach only that region's private ECR") {
			t.Errorf("%s: the error does not say why: %s", region, all)
		}
	}
}

// TestConfigWarningsInSynth: what xrc config validate warns of shows in
// the synth's output.
func TestConfigWarningsInSynth(t *testing.T) {
	path := exampleWith(t, func(m map[string]any) {
		dests := m["rules"].([]any)[0].(map[string]any)["destinations"].([]any)
		dests[0].(map[string]any)["prefix"] = "" // a key equal to the rule prefix maps to an empty key
	})
	s, err := synthApp(map[string]any{"config": path})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, st := range s.d.Stacks {
		msgs = append(msgs, annotations(st, false)...)
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "maps to an empty key") {
		t.Errorf("the config's warning is not in the synth's output: %q", all)
	}
}

// exampleWith writes configs/example.json, changed by edit, to a file of
// the test's and returns its path.
func exampleWith(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	doc, err := os.ReadFile("../../configs/example.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	doc, _ = json.Marshal(m)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// annotations are the messages of st's errors (or warnings).
func annotations(st awscdk.Stack, errs bool) []string {
	find := assertions.Annotations_FromStack(st).FindWarning
	if errs {
		find = assertions.Annotations_FromStack(st).FindError
	}
	var msgs []string
	for _, a := range *find(jsii.String("*"), assertions.Match_AnyValue()) {
		msgs = append(msgs, message(a))
	}
	return msgs
}

// TestBuildRejects: configs or options the app cannot deploy fail the
// synth with the reason, before anything is built.
func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		ctx  map[string]any
		want string
	}{
		{map[string]any{"config": "testdata-missing.json"}, "no such file"},
		{map[string]any{"config": "ssm:///xrc/config"}, "reads a file"},
		{map[string]any{"config": "../../configs/example.json", "alarmEmails": "x@example.com"}, "unknown context keys alarmEmails"},
		{map[string]any{"config": "../../configs/example.json", "existingVpcs": `{"us-west-2": {"vpcId": "vpc-1", "subnetIds": ["subnet-1"], "availabilityZones": ["us-west-2a"]}}`}, "us-west-2 is not in the config"},
	} {
		_, err := newTestBuild(tc.ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.ctx, err, tc.want)
		}
	}
}

// newTestBuild runs build on a fresh app without synthesizing it.
func newTestBuild(ctx map[string]any) (*deployment, error) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(os.TempDir())})
	return build(app)
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// TestDirectRegion: a region S3 Replication cannot reach (direct: another
// partition, an S3-compatible store) gets no stack and no replication rule
// from this app; its rules' source workers may read its credentials'
// parameter, with which they copy the archives there.
func TestDirectRegion(t *testing.T) {
	direct := func(credentials bool) func(m map[string]any) {
		return func(m map[string]any) {
			apse2 := m["settings"].(map[string]any)["regions"].([]any)[2].(map[string]any)
			apse2["direct"] = true
			if credentials {
				apse2["s3Credentials"] = "ssm:///xrc/apse2-s3"
			}
			delete(apse2, "compute")
		}
	}
	path := exampleWith(t, direct(true))
	egress := `{"us-east-1": {"vpcId": "vpc-1", "subnetIds": ["subnet-1", "subnet-2"], "availabilityZones": ["us-east-1a", "us-east-1b"]}}`
	// Its source tasks copy archives there: in the VPC the app creates
	// (no NAT) they could not, and the synth says so.
	isolated, err := synthApp(map[string]any{"config": path})
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(annotations(isolated.d.Stacks["us-east-1"], true), "\n"); !strings.Contains(all, "rule logs delivers to a direct region") || !strings.Contains(all, "existingVpcs with egress") {
		t.Errorf("no error for source tasks that cannot reach the direct region: %q", all)
	}
	s, err := synthApp(map[string]any{"config": path, "existingVpcs": egress})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range annotations(s.d.Stacks["us-east-1"], true) {
		t.Errorf("with egress: %s", e)
	}
	if _, ok := s.tmpl["ap-southeast-2"]; ok {
		t.Error("a stack for the direct region")
	}
	for _, b := range ofType(s.json["us-east-1"], "AWS::S3::Bucket") {
		if rc, ok := propsOf(b)["ReplicationConfiguration"].(map[string]any); ok {
			for _, r := range rc["Rules"].([]any) {
				if id := fmt.Sprint(r.(map[string]any)["Id"]); strings.Contains(id, "ap-southeast-2") {
					t.Errorf("replication rule %s to the direct region", id)
				}
			}
		}
	}
	// The source reads each archive back to copy it, with the region's
	// credentials; a backfill's HEADs there need them too.
	has := func(role, sid string, actions []string, resource string) bool {
		for _, st := range statements(s.json["us-east-1"]) {
			if strings.HasPrefix(st.Role, role) && st.Sid == sid && slices.Equal(st.Actions, actions) &&
				slices.ContainsFunc(st.Resources, func(r string) bool { return strings.Contains(r, resource) }) {
				return true
			}
		}
		return false
	}
	for _, role := range []string{"<SourcelogsTaskRole", "<BackfilllogsTaskRole"} {
		if !has(role, "DirectCredentials", []string{"ssm:GetParameter"}, ":parameter/xrc/apse2-s3") {
			t.Errorf("%s may not read the direct region's credentials", role)
		}
	}
	if !has("<SourcelogsTaskRole", "ReadBackArchives", []string{"s3:GetObject", "s3:GetObjectVersion"}, "/logs/*") {
		t.Error("the logs rule's source role may not read back the archives it copies")
	}
	// A copy that fails is left to a relay message on the rule's own
	// queue (encrypted with the messaging key), and every worker may send
	// a message on its last receive, its work undone, again to its own
	// queue: each role its own queue only.
	consumed := map[string][]string{}
	for _, st := range statements(s.json["us-east-1"]) {
		if st.Sid == "ConsumeQueue" {
			consumed[st.Role] = st.Resources
		}
	}
	logs := ""
	for role, q := range consumed {
		if strings.HasPrefix(role, "<SourcelogsTaskRole") {
			logs = role
		}
		if len(q) != 1 || !has(role, "SendToOwnQueue", []string{"sqs:SendMessage"}, q[0]) || !has(role, "EncryptSent", []string{"kms:GenerateDataKey"}, "<MessagingKey") {
			t.Errorf("%s may not send messages to its own queue %v", role, q)
		}
	}
	if logs == "" || !has(logs, "ListStaging", []string{"s3:ListBucket"}, "<Staging") {
		t.Errorf("the logs rule's source role may not list its staging bucket (a relay's archive gone reads 404)")
	}
	for _, st := range statements(s.json["us-east-1"]) {
		if st.Sid == "SendToOwnQueue" && !slices.Equal(st.Resources, consumed[st.Role]) {
			t.Errorf("%s may send messages to %v, not its own queue %v", st.Role, st.Resources, consumed[st.Role])
		}
	}
	// With credentials of its own, the task role writes nothing there;
	// without (this partition), it writes the rule's archives there.
	if has("<SourcelogsTaskRole", "CopyToDirect0", []string{"s3:PutObject", "s3:AbortMultipartUpload"}, "") {
		t.Error("the task role may write to a direct region that has credentials of its own")
	}
	if s, err = synthApp(map[string]any{"config": exampleWith(t, direct(false)), "existingVpcs": egress}); err != nil {
		t.Fatal(err)
	}
	// The rule's archives wait in its source region's staging as long as
	// any archive waits: the source copies them from there, and a copy
	// left to a relay message may be redriven days later.
	stagingLifecycle(t, s, map[string]map[string]float64{
		"us-east-1": {"logs/": 7, "exports/": 1, "*": 7},
		"eu-west-1": {"logs/": 7, "exports/": 7, "*": 7},
	})
	staging := s.d.Config.Settings.Regions[2].StagingBucket
	if !has("<SourcelogsTaskRole", "CopyToDirect0", []string{"s3:PutObject", "s3:AbortMultipartUpload"}, ":::"+staging+"/logs/*") {
		t.Error("the task role may not write the archives it copies to a direct region without credentials of its own")
	}
	// Through that region's S3 with its staging bucket's key.
	kms := false
	for _, st := range statements(s.json["us-east-1"]) {
		if strings.HasPrefix(st.Role, "<SourcelogsTaskRole") && st.Sid == "EncryptDirect0" && slices.Equal(st.Actions, []string{"kms:GenerateDataKey", "kms:Decrypt"}) &&
			strings.Contains(fmtCondition(st.Condition), "s3.ap-southeast-2.amazonaws.com") {
			kms = true
		}
	}
	if !kms {
		t.Error("the task role may not use the direct region's staging key: every copy would be refused")
	}
}

// TestMoreAZsNeedAnAccount: a stack without account sees two availability
// zones whatever maxAzs asks: a created VPC would quietly have two, so the
// synth fails saying so; regions in existing VPCs create none.
func TestMoreAZsNeedAnAccount(t *testing.T) {
	refusals := func(ctx map[string]any) int {
		t.Helper()
		d, err := newTestBuild(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, st := range d.Stacks {
			for _, m := range annotations(st, true) {
				if strings.Contains(m, "maxAzs 3") {
					n++
				}
			}
		}
		return n
	}
	base := map[string]any{"config": "../../configs/example.json", "maxAzs": "3", "aws:cdk:bundling-stacks": []any{}}
	if n := refusals(base); n == 0 {
		t.Error("maxAzs 3 without account: no stack creating a VPC refused it")
	}
	base["account"] = "123456789012"
	if n := refusals(base); n != 0 {
		t.Errorf("maxAzs 3 with account refused in %d stacks", n)
	}
}

// TestEveryFunctionLogsWithRetention: every function of every stack,
// CDK's own among them (the bucket-notifications handler, the auto-delete
// provider), logs to a group of the stack, and every group expires its
// logs: a function's default group is kept for ever and outlives a
// destroy.
func TestEveryFunctionLogsWithRetention(t *testing.T) {
	s := exampleApp(t)
	functions := 0
	for region, tmpl := range s.json {
		for id, f := range ofType(tmpl, "AWS::Lambda::Function") {
			functions++
			lc, _ := propsOf(f)["LoggingConfig"].(map[string]any)
			if lc["LogGroup"] == nil {
				t.Errorf("%s: function %s logs to its default group, kept for ever", region, id)
			}
		}
		for id, g := range ofType(tmpl, "AWS::Logs::LogGroup") {
			if propsOf(g)["RetentionInDays"] == nil {
				t.Errorf("%s: log group %s keeps its logs for ever", region, id)
			}
		}
	}
	if functions == 0 {
		t.Fatal("no function in the example's stacks: the test tests nothing")
	}
}
