package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// workerTasks is a region's template without the backfill task
// definitions, for the checks every worker task must pass (a backfill task
// serves no health check; TestBackfillTask checks the rest of its
// hardening).
func workerTasks(tm map[string]any) assertions.Template {
	res := map[string]any{}
	for id, r := range resources(tm) {
		if !strings.HasPrefix(id, "Backfill") {
			res[id] = r
		}
	}
	out := map[string]any{"Resources": res}
	return assertions.Template_FromJSON(&out, &assertions.TemplateParsingOptions{SkipCyclicalDependenciesCheck: jsii.Bool(true)})
}

// TestBackfillTask: per source rule, a one-off task definition running
// "xrc backfill -rule R -checkpoint ddb" from the source image, hardened
// as the workers are, its queue and config in the environment, its own log
// group; no schedule unless asked; outputs for aws ecs run-task.
func TestBackfillTask(t *testing.T) {
	s := exampleApp(t)
	tm := s.tmpl["us-east-1"]
	for _, rule := range []string{"logs", "exports"} {
		check(t, "backfill task of "+rule, func() {
			tm.HasResourceProperties(jsii.String("AWS::ECS::TaskDefinition"), obj(map[string]any{
				"RequiresCompatibilities": arrayEquals("FARGATE"),
				"RuntimePlatform":         map[string]any{"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
				"ContainerDefinitions": arrayEquals(obj(map[string]any{
					"Name":                   "xrc-backfill",
					"EntryPoint":             arrayEquals("/usr/local/bin/xrc"),
					"Command":                arrayEquals("backfill", "-rule", rule, "-checkpoint", "ddb"),
					"ReadonlyRootFilesystem": true,
					"User":                   "65532:65532",
					"StopTimeout":            120,
					"LinuxParameters":        obj(map[string]any{"Capabilities": obj(map[string]any{"Drop": arrayEquals("ALL")})}),
					"HealthCheck":            assertions.Match_Absent(),
					"LogConfiguration": obj(map[string]any{"LogDriver": "awslogs", "Options": obj(map[string]any{
						"mode": "non-blocking", "awslogs-stream-prefix": rule})}),
					"Environment": arrayWith( // in name order
						map[string]any{"Name": "AWS_REGION", "Value": "us-east-1"},
						map[string]any{"Name": "XRC_CONFIG", "Value": "ssm:///xrc/config"},
						obj(map[string]any{"Name": "XRC_QUEUE_URL"}),
					),
				})),
			}))
		})
	}
	check(t, "backfill log group and outputs", func() {
		tm.HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), obj(map[string]any{"LogGroupName": "/xrc/xrc-backfill"}))
		tm.HasOutput(jsii.String("BackfillTasklogs"), obj(map[string]any{}))
		tm.HasOutput(jsii.String("BackfillCluster"), obj(map[string]any{}))
		tm.HasOutput(jsii.String("BackfillSubnets"), obj(map[string]any{}))
		tm.HasOutput(jsii.String("BackfillSecurityGroup"), obj(map[string]any{}))
	})
	// No schedule, no backfill rule (the hybrid exports rule has rules of
	// its own, which start its switch, not ECS tasks).
	for id, r := range ofType(s.json["us-east-1"], "AWS::Events::Rule") {
		for _, target := range list(propsOf(r)["Targets"]) {
			if _, ecs := target.(map[string]any)["EcsParameters"]; ecs {
				t.Errorf("rule %s runs an ECS task without a backfill schedule", id)
			}
		}
	}
	// The same image as the source worker: Dockerfile.source carries xrc.
	images := map[string]bool{}
	for _, td := range ofType(s.json["us-east-1"], "AWS::ECS::TaskDefinition") {
		for _, c := range propsOf(td)["ContainerDefinitions"].([]any) {
			images[renderIntrinsic(c.(map[string]any)["Image"])] = true
		}
	}
	if len(images) != 1 {
		t.Errorf("source region task images %v, want the source image only", images)
	}
	// The stack's VPC has no route to other regions' S3: say so.
	warned := false
	for _, w := range *assertions.Annotations_FromStack(s.d.Stacks["us-east-1"]).FindWarning(jsii.String("*"), like("xrc:backfill-egress")) {
		warned = warned || strings.Contains(message(w), "rule logs has destinations outside us-east-1")
	}
	if !warned {
		t.Error("no warning that the backfill task of rule logs cannot reach eu-west-1 and ap-southeast-2")
	}
}

// TestBackfillIAM: the backfill role lists the watched prefix and the
// destination prefixes, HEADs destination objects, reads tags on both sides, sends to its queue,
// keeps its checkpoint and reads its statistics in the table (confined to
// their partition keys), reads the config; nothing else: no object bytes,
// no writes, no receiving.
func TestBackfillIAM(t *testing.T) {
	s := exampleApp(t)
	got := map[string]statement{}
	for _, st := range statements(s.json["us-east-1"]) {
		if strings.HasPrefix(st.Role, "<Backfill-logsTaskRole") || strings.HasPrefix(st.Role, "<BackfilllogsTaskRole") {
			got[st.Sid] = st
		}
	}
	want := map[string][]string{
		"ListWatchedBucket": {"s3:ListBucket"},
		"ReadWatchedTags":   {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
		"ListDestination0":  {"s3:ListBucket"},
		"HeadDestination0":  {"s3:GetObject", "s3:GetObjectTagging"},
		"ListDestination1":  {"s3:ListBucket"},
		"HeadDestination1":  {"s3:GetObject", "s3:GetObjectTagging"},
		"SendEvents":        {"sqs:SendMessage"},
		"EncryptEvents":     {"kms:GenerateDataKey", "kms:Decrypt"},
		"Checkpoint":        {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"},
		"ReadStatistics":    {"dynamodb:Query"},
		"ReadConfig":        {"ssm:GetParameter"},
	}
	if len(got) != len(want) {
		t.Errorf("backfill role statements %v, want %v", slices.Sorted(mapsKeys(got)), slices.Sorted(mapsKeys(want)))
	}
	for sid, actions := range want {
		if st, ok := got[sid]; !ok || !slices.Equal(st.Actions, actions) {
			t.Errorf("%s: actions %v, want %v", sid, st.Actions, actions)
		}
	}
	if r := got["HeadDestination1"].Resources; !slices.Equal(r, []string{"arn:<AWS::Partition>:s3:::acme-app-logs-apac/us/*"}) {
		t.Errorf("HeadDestination1 resources %v", r)
	}
	for sid, cond := range map[string]string{
		"ListWatchedBucket": `map[]`, // a tag read of a key deleted since its listing must be 404
		"ListDestination1":  `map[]`, // HEAD of a missing key must be 404
		"Checkpoint":        `map[ForAllValues:StringEquals:map[dynamodb:LeadingKeys:[backfill#logs]]]`,
		"ReadStatistics":    `map[ForAllValues:StringEquals:map[dynamodb:LeadingKeys:[stats#logs fleet]]]`,
	} {
		if got := fmtCondition(got[sid].Condition); got != cond {
			t.Errorf("%s condition %s, want %s", sid, got, cond)
		}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func fmtCondition(c map[string]any) string {
	var b strings.Builder
	b.WriteString("map[")
	for i, op := range slices.Sorted(mapsKeys(c)) {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(op + ":map[")
		inner := c[op].(map[string]any)
		for j, k := range slices.Sorted(mapsKeys(inner)) {
			if j > 0 {
				b.WriteString(" ")
			}
			b.WriteString(k + ":[" + strings.Join(strs(inner[k]), " ") + "]")
		}
		b.WriteString("]")
	}
	b.WriteString("]")
	return b.String()
}

// TestBackfillSchedule: with backfillSchedule, an EventBridge rule per
// source rule runs the task on Fargate in the tasks' subnets without a
// public IP, with -since; nag-clean (TestNag covers the variant app).
func TestBackfillSchedule(t *testing.T) {
	s := variantApp(t)
	check(t, "schedule of rule b", func() {
		s.tmpl["eu-west-1"].HasResourceProperties(jsii.String("AWS::Events::Rule"), obj(map[string]any{
			"ScheduleExpression": "rate(1 hour)",
			"State":              "ENABLED",
			"Targets": arrayWith(obj(map[string]any{
				"EcsParameters": obj(map[string]any{
					"LaunchType":           "FARGATE",
					"NetworkConfiguration": obj(map[string]any{"AwsVpcConfiguration": obj(map[string]any{"AssignPublicIp": "DISABLED"})}),
				}),
				"Input":       like(`"command":\["backfill","-rule","b","-checkpoint","ddb","-since","3h","-restart-if-changed","-emf"\]`),
				"RetryPolicy": obj(map[string]any{"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}),
			})),
		}))
	})
	// Rule a's task runs in the created, isolated VPC of us-east-1, which
	// cannot reach its destination in eu-west-1: every run would fail.
	// (Each task also has the rule that reports its failures.)
	check(t, "a schedule per source rule whose task reaches its destinations", func() {
		s.tmpl["eu-west-1"].ResourceCountIs(jsii.String("AWS::Events::Rule"), jsii.Number(2))
		s.tmpl["us-east-1"].ResourceCountIs(jsii.String("AWS::Events::Rule"), jsii.Number(1))
		s.tmpl["eu-central-1"].ResourceCountIs(jsii.String("AWS::Events::Rule"), jsii.Number(0))
	})
	// A run that fails, or a schedule that cannot start one, is heard of:
	// the schedule is the net for lost events. So is a run Spot stopped
	// (exit 130 as for any stop): one run by hand ends there.
	check(t, "a failed backfill task reaches the alarm topic", func() {
		s.tmpl["eu-west-1"].HasResourceProperties(jsii.String("AWS::Events::Rule"), obj(map[string]any{
			"EventPattern": obj(map[string]any{
				"source":      []any{"aws.ecs"},
				"detail-type": []any{"ECS Task State Change"},
				"detail": obj(map[string]any{
					"lastStatus": []any{"STOPPED"},
					"$or": []any{
						map[string]any{"containers": map[string]any{"exitCode": []any{map[string]any{"anything-but": []any{0, 4, 130}}}}},
						map[string]any{"stopCode": []any{"TaskFailedToStart", "SpotInterruption"}},
					},
				}),
			}),
			"Targets": arrayWith(obj(map[string]any{"InputTransformer": obj(map[string]any{})})),
		}))
	})
	// Every rule's failed invocations alarm, from CloudWatch: the
	// schedule's (no run started), and the report's (a failed run's
	// report lost on its way to the topic).
	check(t, "an alarm on each EventBridge rule's failed invocations", func() {
		for region, n := range map[string]int{"eu-west-1": 2, "us-east-1": 1, "eu-central-1": 0} {
			s.tmpl[region].ResourcePropertiesCountIs(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
				"Namespace":  "AWS/Events",
				"MetricName": "FailedInvocations",
				"Threshold":  0,
			}), jsii.Number(float64(n)))
		}
	})
	// A scheduled run that sends writes their events should have
	// delivered says so (its EMF line, xrc_backfill_late): the events
	// were lost, which also stops deletes and tag changes.
	check(t, "an alarm on a scheduled run's late writes", func() {
		for region, n := range map[string]int{"eu-west-1": 1, "us-east-1": 0, "eu-central-1": 0} {
			s.tmpl[region].ResourcePropertiesCountIs(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
				"MetricName": "xrc_backfill_late",
				"Dimensions": arrayWith(obj(map[string]any{"Name": "Service", "Value": "xrc-backfill"}), obj(map[string]any{"Name": "rule", "Value": "b"})),
				"Threshold":  0,
			}), jsii.Number(float64(n)))
			// Multipart uploads' late writes: in two runs in a row (one
			// may only just have completed), as the run counts them, so
			// that any schedule's runs are heard (a daily cron's fell in
			// no two consecutive periods).
			s.tmpl[region].ResourcePropertiesCountIs(jsii.String("AWS::CloudWatch::Alarm"), obj(map[string]any{
				"MetricName": "xrc_backfill_late_multipart_runs", "Threshold": 2, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "EvaluationPeriods": 1,
			}), jsii.Number(float64(n)))
		}
	})
	// EventBridge's KMS requests for an encrypted topic carry no
	// aws:SourceAccount: only an unconditioned statement lets them use
	// the key.
	check(t, "EventBridge may use the alarm topic's key unconditioned", func() {
		found := false
		for _, k := range ofType(s.json["eu-west-1"], "AWS::KMS::Key") {
			for _, st := range propsOf(k)["KeyPolicy"].(map[string]any)["Statement"].([]any) {
				st := st.(map[string]any)
				p, _ := st["Principal"].(map[string]any)
				actions := fmt.Sprint(st["Action"])
				if p["Service"] == "events.amazonaws.com" && st["Condition"] == nil && st["Effect"] == "Allow" &&
					strings.Contains(actions, "kms:GenerateDataKey*") && strings.Contains(actions, "kms:Decrypt") {
					found = true
				}
			}
		}
		if !found {
			t.Error("no key statement lets EventBridge use the messaging key unconditioned")
		}
	})
	// The topic is the gate: CDK lets events.amazonaws.com publish to it
	// with no condition, and EventBridge delivers to other accounts'
	// targets.
	check(t, "only this account's EventBridge rules publish to the alarm topic", func() {
		denied := false
		for _, p := range ofType(s.json["eu-west-1"], "AWS::SNS::TopicPolicy") {
			for _, st := range propsOf(p)["PolicyDocument"].(map[string]any)["Statement"].([]any) {
				st := st.(map[string]any)
				pr, _ := st["Principal"].(map[string]any)
				if pr["Service"] == "events.amazonaws.com" && st["Effect"] == "Deny" && strings.Contains(fmt.Sprint(st["Condition"]), "aws:SourceArn") {
					denied = true
				}
			}
		}
		if !denied {
			t.Error("no topic statement refuses other accounts' EventBridge rules")
		}
	})
}

func TestBackfillOptions(t *testing.T) {
	o, err := parseOptions(contextOf(map[string]any{"backfillSchedule": "cron(0 * * * ? *)"}))
	if err != nil || o.Backfill.Schedule != "cron(0 * * * ? *)" || o.Backfill.Since != "2h" {
		t.Errorf("options %+v, %v", o.Backfill, err)
	}
	if o, _ := parseOptions(contextOf(nil)); o.Backfill.Schedule != "" {
		t.Error("a schedule by default")
	}
	for _, ctx := range []map[string]any{{"backfillSchedule": "hourly"}, {"backfillSince": "2 hours"}, {"backfillSince": "0h"}} {
		if _, err := parseOptions(contextOf(ctx)); err == nil {
			t.Errorf("%v accepted", ctx)
		}
	}
}
