package main

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// functions returns the workers' functions of a template (CDK's own
// bucket-notifications function left out) by logical id.
func functions(tm map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, f := range ofType(tm, "AWS::Lambda::Function") {
		if propsOf(f)["Handler"] == "bootstrap" {
			out[id] = f
		}
	}
	return out
}

// env returns a function's environment variables.
func env(f map[string]any) map[string]string {
	out := map[string]string{}
	vars, _ := propsOf(f)["Environment"].(map[string]any)["Variables"].(map[string]any)
	for k, v := range vars {
		out[k] = renderIntrinsic(v)
	}
	return out
}

// TestComputeModes: the example runs each mode once. The logs rule
// (fargate) has its service and no function; the exports rule (hybrid) has
// both, its mapping disabled until a burst; ap-southeast-2's target worker
// (lambda) is a function only, with no cluster, VPC or service in its
// stack. Functions: arm64 provided.al2023, memory, timeout and reserved
// concurrency from settings.lambda, the worker's environment, recursive
// loops allowed (a worker sends to its own queue, in bounds of its own);
// mappings
// report batch item failures, take large batches with a window at the
// source and a few archives at the target, and never ask for more
// concurrency than reserved.
func TestComputeModes(t *testing.T) {
	s := exampleApp(t)
	use1, apse2 := functions(s.json["us-east-1"]), functions(s.json["ap-southeast-2"])
	if len(use1) != 1 || len(apse2) != 1 || len(functions(s.json["eu-west-1"])) != 0 {
		t.Fatalf("functions: us-east-1 %d, ap-southeast-2 %d, eu-west-1 %d; want 1, 1, 0",
			len(use1), len(apse2), len(functions(s.json["eu-west-1"])))
	}
	for region, fns := range map[string]map[string]map[string]any{"us-east-1": use1, "ap-southeast-2": apse2} {
		for id, f := range fns {
			p := propsOf(f)
			if p["Runtime"] != "provided.al2023" || fmt.Sprint(p["Architectures"]) != "[arm64]" || p["MemorySize"] != float64(1769) ||
				p["Timeout"] != float64(300) || p["ReservedConcurrentExecutions"] != float64(10) || p["RecursiveLoop"] != "Allow" {
				t.Errorf("%s %s: runtime %v, architectures %v, memory %v, timeout %v, reserved %v, recursive loop %v", region, id,
					p["Runtime"], p["Architectures"], p["MemorySize"], p["Timeout"], p["ReservedConcurrentExecutions"], p["RecursiveLoop"])
			}
			e := env(f)
			if e["XRC_CONFIG"] != "ssm:///xrc/config" || e["XRC_REGION"] != region || !strings.HasPrefix(e["XRC_QUEUE_URL"], "<") ||
				(e["XRC_ROLE"] == "target" && e["GOMEMLIMIT"] != "1503MiB") ||
				// A source's: two level-19 compressors of libzstd beside the heap.
				(e["XRC_ROLE"] == "source" && e["GOMEMLIMIT"] != "1461MiB") || e["XRC_CONFIG_SHA256"] == "" {
				t.Errorf("%s %s environment %v", region, id, e)
			}
			if !strings.Contains(renderIntrinsic(p["LoggingConfig"]), "Logsxrc") {
				t.Errorf("%s %s logs to %v, want the worker kind's log group", region, id, p["LoggingConfig"])
			}
		}
	}
	for _, f := range use1 {
		if e := env(f); e["XRC_ROLE"] != "source" || e["XRC_RULES"] != "exports" {
			t.Errorf("us-east-1 function environment %v, want the exports rule's source worker", e)
		}
	}
	for _, f := range apse2 {
		if e := env(f); e["XRC_ROLE"] != "target" || e["XRC_RULES"] != "" {
			t.Errorf("ap-southeast-2 function environment %v, want the target worker", e)
		}
	}
	check(t, "exports mapping (hybrid)", func() {
		s.tmpl["us-east-1"].HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), obj(map[string]any{
			"EventSourceArn":                 obj(map[string]any{"Fn::GetAtt": arrayEquals(like("^Sourceexports[0-9A-F]+$"), "Arn")}),
			"BatchSize":                      1000,
			"MaximumBatchingWindowInSeconds": 30,
			"FunctionResponseTypes":          arrayEquals("ReportBatchItemFailures"),
			"Enabled":                        false,
			"ScalingConfig":                  map[string]any{"MaximumConcurrency": 10},
		}))
	})
	check(t, "ap-southeast-2 mapping (lambda)", func() {
		s.tmpl["ap-southeast-2"].HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), obj(map[string]any{
			"EventSourceArn":                 obj(map[string]any{"Fn::GetAtt": arrayEquals(like("^Target[0-9A-F]+$"), "Arn")}),
			"BatchSize":                      4,
			"MaximumBatchingWindowInSeconds": assertions.Match_Absent(),
			"FunctionResponseTypes":          arrayEquals("ReportBatchItemFailures"),
			"Enabled":                        true,
		}))
	})
	check(t, "services", func() {
		s.tmpl["us-east-1"].ResourceCountIs(jsii.String("AWS::ECS::Service"), jsii.Number(2)) // logs and exports
		s.tmpl["eu-west-1"].ResourceCountIs(jsii.String("AWS::ECS::Service"), jsii.Number(1))
	})
	for _, typ := range []string{"AWS::ECS::Service", "AWS::ECS::Cluster", "AWS::EC2::VPC", "AWS::EC2::VPCEndpoint", "AWS::ApplicationAutoScaling::ScalableTarget"} {
		if n := len(ofType(s.json["ap-southeast-2"], typ)); n != 0 {
			t.Errorf("ap-southeast-2 (target on Lambda) has %d %s", n, typ)
		}
	}
	// Queues a function consumes hide a message for 6 x the timeout (plus
	// the batching window, for a source's).
	for region, names := range map[string][]string{"us-east-1": {"xrc-src-exports", "xrc-src-logs"}, "ap-southeast-2": {"xrc-tgt"}, "eu-west-1": {"xrc-tgt"}} {
		for _, name := range names {
			if got := propsOf(firstOf(ofType(s.json[region], "AWS::SQS::Queue"), name))["VisibilityTimeout"]; got != visibility(region, name) {
				t.Errorf("%s %s visibility %v, want %v", region, name, got, visibility(region, name))
			}
		}
	}
}

// TestFunctionRoleSharesStatements: a function's role holds exactly its
// worker's statements, the task role's when the worker also has a service
// (hybrid), plus writing to its log group; nothing is attached besides.
func TestFunctionRoleSharesStatements(t *testing.T) {
	s := exampleApp(t)
	byRole := func(region, prefix string) map[string]string {
		out := map[string]string{}
		for _, st := range statements(s.json[region]) {
			if strings.HasPrefix(st.Role, "<"+prefix) {
				out[st.Sid] = fmt.Sprint(st.Actions, st.Resources, st.Condition)
			}
		}
		return out
	}
	task, fn := byRole("us-east-1", "SourceexportsTaskRole"), byRole("us-east-1", "SourceexportsFunctionRole")
	if len(task) == 0 {
		t.Fatal("no statements for the exports task role")
	}
	delete(task, "ProtectFromScaleIn") // the task's own, of its service (TestIAMLeastPrivilege)
	logs, ok := fn["WriteLogs"]
	delete(fn, "WriteLogs")
	if !ok || !strings.Contains(logs, "logs:CreateLogStream logs:PutLogEvents") || !strings.Contains(logs, "Logsxrcsource") {
		t.Errorf("function WriteLogs = %q, want its log group's streams only", logs)
	}
	if !maps.Equal(task, fn) {
		t.Errorf("exports function role differs from its task role:\n task %v\n function %v", task, fn)
	}
	// A message an invocation never started on its last receive is sent
	// again to the function's own queue (queue.Queue.SendAgain).
	consume, again := fn["ConsumeQueue"], fn["SendToOwnQueue"]
	if !strings.Contains(again, "[sqs:SendMessage]") || again[strings.Index(again, "]")+1:] != consume[strings.Index(consume, "]")+1:] ||
		!strings.Contains(fn["EncryptSent"], "kms:GenerateDataKey") {
		t.Errorf("exports function may not send a message again to its own queue: %q (consumes %q), %q", again, consume, fn["EncryptSent"])
	}
	target := byRole("ap-southeast-2", "TargetFunctionRole")
	for _, sid := range []string{"ReadAndDeleteArchives", "WriteDestination0", "TombstonesAndLedger", "ConsumeQueue", "ReadConfig", "WriteLogs",
		"SendToOwnQueue", "EncryptSent"} {
		if _, ok := target[sid]; !ok {
			t.Errorf("ap-southeast-2 target function role lacks %s", sid)
		}
	}
	for region, tm := range s.json {
		for id, r := range ofType(tm, "AWS::IAM::Role") {
			if arns := propsOf(r)["ManagedPolicyArns"]; arns != nil && strings.Contains(id, "FunctionRole") {
				t.Errorf("%s %s has managed policies %v", region, id, arns)
			}
		}
	}
}

// TestHybridSwitch: the exports rule's burst alarm (backlog above
// hybridBacklog or oldest message above hybridAge, in one of the last
// three minutes) notifies nobody; a state machine allowed only to read
// that alarm and update that mapping sets the mapping to the alarm's
// state, started by the alarm's changes and every ten minutes.
func TestHybridSwitch(t *testing.T) {
	s := exampleApp(t)
	tm := s.tmpl["us-east-1"]
	check(t, "burst alarm", func() {
		tm.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"AlarmName":         "xrc-us-east-1-source-exports-burst",
			"Metrics":           arrayWith(obj(map[string]any{"Expression": "IF(FILL(visible, 0) > 1000 OR FILL(age, 0) > 120, 1, 0)"})),
			"EvaluationPeriods": 3,
			"DatapointsToAlarm": 1,
			"AlarmActions":      assertions.Match_Absent(),
		}))
	})
	// A switch that keeps failing, or timing out, alarms (the burst
	// alarm notifies no one).
	check(t, "switch alarm", func() {
		tm.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
			"AlarmName": "xrc-us-east-1-source-exports-hybrid-switch-failed",
			"Metrics": arrayWith(
				obj(map[string]any{"Expression": "FILL(failed, 0) + FILL(timedOut, 0)"}),
				obj(map[string]any{"Id": "failed", "MetricStat": obj(map[string]any{"Metric": obj(map[string]any{"MetricName": "ExecutionsFailed"}), "Period": 600, "Stat": "Sum"})}),
				obj(map[string]any{"Id": "timedOut", "MetricStat": obj(map[string]any{"Metric": obj(map[string]any{"MetricName": "ExecutionsTimedOut"}), "Period": 600, "Stat": "Sum"})}),
			),
			"EvaluationPeriods": 2,
			"AlarmActions":      arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
		}))
	})
	machines := ofType(s.json["us-east-1"], "AWS::StepFunctions::StateMachine")
	if len(machines) != 1 {
		t.Fatalf("%d state machines, want the exports switch only", len(machines))
	}
	for _, m := range machines {
		def := renderIntrinsic(propsOf(m)["DefinitionString"])
		// Each call tried again when refused for a moment, its waits
		// (2+4+8 s for each of two calls in a run) within the minute.
		if n := strings.Count(def, `"Retry":[{"ErrorEquals":["States.TaskFailed"],"IntervalSeconds":2,"MaxAttempts":3,"BackoffRate":2}]`); n != 3 {
			t.Errorf("%d of the switch's 3 calls retried: %s", n, def)
		}
		for _, want := range []string{"describeAlarms", "updateEventSourceMapping", `"Enabled":true`, `"Enabled":false`, `"ALARM"`} {
			if !strings.Contains(def, want) {
				t.Errorf("switch definition lacks %s: %s", want, def)
			}
		}
	}
	var actions []string
	for _, st := range statements(s.json["us-east-1"]) {
		if strings.HasPrefix(st.Role, "<SourceexportsSwitchRole") {
			for _, a := range st.Actions {
				actions = append(actions, a+" on "+strings.Join(st.Resources, ","))
			}
		}
	}
	slices.Sort(actions)
	want := []string{"cloudwatch:DescribeAlarms on <SourceexportsBurst", "lambda:UpdateEventSourceMapping on arn:<AWS::Partition>:lambda:"}
	if len(actions) != 2 || !strings.HasPrefix(actions[0], want[0]) || !strings.HasPrefix(actions[1], want[1]) ||
		!strings.HasSuffix(actions[1], ":event-source-mapping:<SourceexportsMapping"+actions[1][strings.LastIndex(actions[1], "Mapping")+7:]) {
		t.Errorf("switch role may %v, want exactly %v", actions, want)
	}
	rules := ofType(s.json["us-east-1"], "AWS::Events::Rule")
	var kinds []string
	for _, r := range rules {
		p := propsOf(r)
		switch {
		case p["ScheduleExpression"] == "rate(10 minutes)":
			kinds = append(kinds, "schedule")
		case strings.Contains(renderIntrinsic(p["EventPattern"]), "CloudWatch Alarm State Change"):
			kinds = append(kinds, "alarm")
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"alarm", "schedule"}) {
		t.Errorf("switch rules %v, want one on the alarm's changes and one every ten minutes", kinds)
	}
}

// TestFunctionAlarmsAndDashboard: a function's errors and throttles alarm
// the topic; a worker on Lambda only keeps its queue's alarms and loses its
// service's; the dashboards show the functions and charge their GB-seconds
// in the net benefit.
func TestFunctionAlarmsAndDashboard(t *testing.T) {
	s := exampleApp(t)
	for region, names := range map[string][]string{
		"us-east-1":      {"xrc-us-east-1-source-exports-function-errors", "xrc-us-east-1-source-exports-function-throttles", "xrc-us-east-1-source-exports-tasks-failing-to-start", "xrc-us-east-1-source-exports-hybrid-switch-failed"},
		"ap-southeast-2": {"xrc-ap-southeast-2-target-function-errors", "xrc-ap-southeast-2-target-function-throttles", "xrc-ap-southeast-2-target-dlq-not-empty", "xrc-ap-southeast-2-target-oldest-message"},
	} {
		for _, name := range names {
			check(t, name, func() {
				s.tmpl[region].HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
					"AlarmName":    name,
					"AlarmActions": arrayEquals(obj(map[string]any{"Ref": like("^Alarms")})),
				}))
			})
		}
	}
	if firstOf(ofType(s.json["ap-southeast-2"], "AWS::CloudWatch::Alarm"), "xrc-ap-southeast-2-target-tasks-failing-to-start") != nil {
		t.Error("ap-southeast-2 has a task alarm without tasks")
	}
	body := func(region string) string {
		for _, d := range ofType(s.json[region], "AWS::CloudWatch::Dashboard") {
			return renderIntrinsic(propsOf(d)["DashboardBody"])
		}
		return ""
	}
	for region, wants := range map[string][]string{
		"us-east-1": {"Lambda invocations", "Throttles", "ConcurrentExecutions", "Running tasks", "/ 1000 * 1.7275390625 * 0.0000133334",
			"tasks, 0) * 0.01519 / 60"}, // a task-hour: its vCPU and 2 GB, as the learner prices them; summed task-minutes
		"ap-southeast-2": {"Lambda invocations", "Lambda duration", "xrc_target_archives_total"},
	} {
		b := body(region)
		for _, want := range wants {
			if !strings.Contains(b, want) {
				t.Errorf("%s dashboard lacks %q", region, want)
			}
		}
	}
	if strings.Contains(body("ap-southeast-2"), "RunningTaskCount") {
		t.Error("ap-southeast-2 dashboard graphs tasks it does not have")
	}
	// The header names the log groups the region has.
	if b := body("us-east-1"); !strings.Contains(b, "`/xrc/xrc-backfill`, `/xrc/xrc-source`") {
		t.Error("us-east-1 dashboard does not name its backfill's and sources' log groups")
	}
	if b := body("ap-southeast-2"); !strings.Contains(b, "logs in `/xrc/xrc-target`.") {
		t.Error("ap-southeast-2 dashboard names log groups other than its target's")
	}
}

// TestLambdaCodeBuild: the functions' code builds as Lambda runs it: a
// static linux executable "bootstrap" for the target architecture, with
// libzstd (cgo) where a C compiler for it is here, as in CI, which installs
// one (.ci/run): the deployments' build is tested, not only the fallback.
func TestLambdaCodeBuild(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go is needed to build the function")
	}
	cc := targetCC("arm64")
	if cc == "" && os.Getenv("CI") != "" {
		t.Fatalf("no C compiler for linux/arm64 in CI (.ci/run installs %s): the function's libzstd build would go untested", crossCompilers["arm64"].packages)
	}
	out := t.TempDir()
	b := &goBuild{repo: root, arch: "arm64", version: "test", pureGo: true, docker: func(string) error { return errors.New("no Docker (test)") }}
	if !*b.TryBundle(jsii.String(out), nil) {
		t.Fatal("local build failed")
	}
	f, err := elf.Open(filepath.Join(out, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Type != elf.ET_EXEC {
		t.Errorf("bootstrap is %v %v, want an aarch64 executable", f.Machine, f.Type)
	}
	if interp := f.Section(".interp"); interp != nil {
		t.Error("bootstrap is dynamically linked")
	}
	if info, err := os.Stat(filepath.Join(out, "bootstrap")); err != nil || info.Mode()&0o111 == 0 {
		t.Errorf("bootstrap not executable: %v", err)
	}
	bi, err := buildinfo.ReadFile(filepath.Join(out, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	cgo := slices.ContainsFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == "CGO_ENABLED" && s.Value == "1" })
	if cc != "" && !cgo {
		t.Errorf("built without cgo, so without libzstd, with %s here", cc)
	}
}

// TestLambdaPureGoOnlyAsked: with no C cross compiler and Docker failing,
// the function is not built without libzstd unless the deployment asks
// (-c lambdaPureGo=true): the synth fails rather than deploy the pure-Go
// encoder's 1.25-2x CPU unnoticed. Asked, the code is another asset (its
// hash), so neither build is ever taken for the other.
func TestLambdaPureGoOnlyAsked(t *testing.T) {
	key := func(s *synthesized) string {
		for _, fn := range ofType(s.json["ap-southeast-2"], "AWS::Lambda::Function") {
			if propsOf(fn)["Handler"] != "bootstrap" {
				continue // the CDK's own functions (inline code)
			}
			if code, ok := propsOf(fn)["Code"].(map[string]any); ok && code["S3Key"] != nil {
				return fmt.Sprint(code["S3Key"])
			}
		}
		t.Fatal("no xrc function with code in S3 in ap-southeast-2")
		return ""
	}
	asked, err := synthApp(map[string]any{"config": "../../configs/example.json", "lambdaPureGo": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := key(asked), key(exampleApp(t)); a == b {
		t.Errorf("the code that may be built in pure Go is the same asset (%s) as the one that may not", a)
	}

	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go is needed to build the function")
	}
	path := t.TempDir() // go, and no C compiler
	if err := os.Symlink(goBin, filepath.Join(path, "go")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", path)
	out := t.TempDir()
	b := &goBuild{repo: root, arch: "arm64", version: "test", docker: func(string) error { return errors.New("no Docker (test)") }}
	if *b.TryBundle(jsii.String(out), nil) {
		t.Error("built without libzstd, unasked")
	}
	if _, err := os.Stat(filepath.Join(out, "bootstrap")); err == nil {
		t.Error("a bootstrap was left in the asset")
	}
}

// TestReservingFunctionsCounted: config.LambdaFunctions, which xrc config
// validate's warning on reserved concurrency counts, names exactly the
// functions of each region's stack that reserve concurrency.
func TestReservingFunctionsCounted(t *testing.T) {
	for _, s := range []*synthesized{exampleApp(t), variantApp(t)} {
		for _, r := range s.d.Config.Settings.Regions {
			reserving := 0
			for _, f := range ofType(s.json[r.Name], "AWS::Lambda::Function") {
				if propsOf(f)["ReservedConcurrentExecutions"] != nil {
					reserving++
				}
			}
			if want := s.d.Config.LambdaFunctions(r.Name); reserving != len(want) {
				t.Errorf("%s: %d functions reserve concurrency, config.LambdaFunctions says %v", r.Name, reserving, want)
			}
		}
	}
}
