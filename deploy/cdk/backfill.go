package main

// This file runs xrc backfill (the operator CLI, in the source image) as a
// one-off ECS task per source rule, and optionally on a schedule.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// backfillKind names the backfill's container and log group.
const backfillKind = "xrc-backfill"

// cliPath is where Dockerfile.source puts the operator CLI.
const cliPath = "/usr/local/bin/xrc"

// backfillOptions schedule xrc backfill. Off unless Schedule is set.
type backfillOptions struct {
	// Schedule is an EventBridge schedule expression ("rate(1 hour)",
	// "cron(0 * * * ? *)"); empty: no schedule, the task definition only.
	Schedule string
	// Since is the -since of scheduled runs ("2h", "1d"): longer than the
	// period, so that a run overlaps the one before.
	Since string
}

var (
	scheduleRe = regexp.MustCompile(`^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$`)
	sinceRe    = regexp.MustCompile(`^[1-9][0-9]*(m|h|d)$`)
)

// parseBackfillOptions reads the backfill* context keys (options.go).
func parseBackfillOptions(str func(string, *string), bad func(string, string, ...any), o *backfillOptions) {
	str("backfillSchedule", &o.Schedule)
	str("backfillSince", &o.Since)
	if o.Schedule != "" && !scheduleRe.MatchString(o.Schedule) {
		bad("backfillSchedule", `want an EventBridge schedule such as "rate(1 hour)" or "cron(0 * * * ? *)", got %q`, o.Schedule)
	}
	switch {
	case o.Since == "":
		o.Since = "2h"
	case !sinceRe.MatchString(o.Since):
		bad("backfillSince", `want minutes, hours or days such as "2h" or "1d", got %q`, o.Since)
	}
}

// backfill is the one-off task of a rule.
type backfill struct {
	Rule *config.Rule
	Task awsecs.FargateTaskDefinition
	Role awsiam.Role
	// Schedule runs it incrementally (nil unless backfillSchedule is set).
	Schedule awsevents.Rule
}

// newBackfill adds the task definition that runs "xrc backfill -rule R
// -checkpoint ddb" in the source image, hardened like the workers' (but
// with no health check: it serves nothing), and the schedule the options
// ask for. Start it with the run-task command the README gives; the
// outputs name the cluster, subnets, security group and task definition.
func (s *regionStack) newBackfill(cluster awsecs.Cluster, rule *config.Rule) *backfill {
	if cluster == nil || s.net == nil {
		return nil // no ECS in this region: xrc backfill runs from elsewhere
	}
	id := "Backfill-" + rule.ID
	b := &backfill{Rule: rule}
	q := s.sourceQueue(rule)
	b.Role = s.taskRole(id, "xrc backfill of rule "+rule.ID)
	s.grantBackfill(b.Role, rule, q)
	o := s.d.Options
	arch := awsecs.CpuArchitecture_ARM64()
	if o.Arch == "amd64" {
		arch = awsecs.CpuArchitecture_X86_64()
	}
	b.Task = awsecs.NewFargateTaskDefinition(s.Stack, jsii.String(id+"Task"), &awsecs.FargateTaskDefinitionProps{
		Cpu:             jsii.Number(float64(o.Source.CPU)),
		MemoryLimitMiB:  jsii.Number(float64(o.Source.MemoryMB)),
		RuntimePlatform: &awsecs.RuntimePlatform{CpuArchitecture: arch, OperatingSystemFamily: awsecs.OperatingSystemFamily_LINUX()},
		TaskRole:        b.Role,
		// A checkpoint FILE, if an operator overrides the command with one.
		Volumes: &[]*awsecs.Volume{{Name: jsii.String("tmp")}},
	})
	linux := awsecs.NewLinuxParameters(s.Stack, jsii.String(id+"Linux"), nil)
	linux.DropCapabilities(awsecs.Capability_ALL)
	container := b.Task.AddContainer(jsii.String("backfill"), &awsecs.ContainerDefinitionOptions{
		ContainerName:          jsii.String(backfillKind),
		Image:                  s.image(sourceKind),
		EntryPoint:             jsii.Strings(cliPath),
		Command:                jsii.Strings(backfillCommand(rule)...),
		Essential:              jsii.Bool(true),
		ReadonlyRootFilesystem: jsii.Bool(true),
		User:                   jsii.String(nonRootUser),
		LinuxParameters:        linux,
		// xrc stops on SIGTERM and keeps its checkpoint.
		StopTimeout: awscdk.Duration_Seconds(jsii.Number(stopTimeout)),
		Environment: &map[string]*string{
			"XRC_CONFIG":    jsii.String("ssm://" + s.ConfigParameterName()),
			"AWS_REGION":    jsii.String(s.plan.Region.Name),
			"XRC_QUEUE_URL": q.Queue.QueueUrl(),
			"GOMEMLIMIT":    jsii.String(goMemLimit(o.Source.MemoryMB, 0)), // it compresses nothing
		},
		Logging: awsecs.LogDriver_AwsLogs(&awsecs.AwsLogDriverProps{
			LogGroup:      s.logGroup(backfillKind),
			StreamPrefix:  jsii.String(rule.ID),
			Mode:          awsecs.AwsLogDriverMode_NON_BLOCKING,
			MaxBufferSize: awscdk.Size_Mebibytes(jsii.Number(25)),
		}),
	})
	container.AddMountPoints(&awsecs.MountPoint{ContainerPath: jsii.String("/tmp"), SourceVolume: jsii.String("tmp"), ReadOnly: jsii.Bool(false)})
	suppress(b.Task, "AwsSolutions-ECS2",
		"the environment holds no secrets: config location (ssm:///<stack>/config), region, queue URL, GOMEMLIMIT")
	suppress(b.Task.ObtainExecutionRole(), "AwsSolutions-IAM5",
		"ecr:GetAuthorizationToken has no resource-level permissions; image pulls and logs are scoped to the repository and log group",
		"Resource::*")

	unreachable := s.backfillReachesOtherRegions(rule)
	// No schedule where the task cannot reach every destination: each run
	// would fail (a destination it cannot list stops the comparison).
	if sched := o.Backfill.Schedule; sched != "" && !unreachable {
		target := awseventstargets.NewEcsTask(&awseventstargets.EcsTaskProps{
			Cluster:         cluster,
			TaskDefinition:  b.Task,
			SubnetSelection: s.net.Subnets,
			SecurityGroups:  &[]awsec2.ISecurityGroup{s.net.Tasks},
			AssignPublicIp:  jsii.Bool(false),
			PropagateTags:   awsecs.PropagatedTagSource_TASK_DEFINITION,
			ContainerOverrides: &[]*awseventstargets.ContainerOverride{{
				ContainerName: jsii.String(backfillKind),
				// A schedule resumes its interrupted run, and is not
				// blocked by one of other parameters (a manual run's, a
				// rule edited since).
				// -emf: its counts, for the late-writes alarm.
				Command: jsii.Strings(append(backfillCommand(rule), "-since", o.Backfill.Since, "-restart-if-changed", "-emf")...),
			}},
			// A run that could not start within the hour is replaced by
			// the next one, not queued behind it.
			MaxEventAge:   awscdk.Duration_Hours(jsii.Number(1)),
			RetryAttempts: jsii.Number(2),
		})
		b.Schedule = awsevents.NewRule(s.Stack, jsii.String(id+"Schedule"), &awsevents.RuleProps{
			Description: jsii.String(fmt.Sprintf("xrc backfill of rule %s, objects modified in the last %s (a run still going makes the next one exit: the checkpoint's lease)", rule.ID, o.Backfill.Since)),
			Schedule:    awsevents.Schedule_Expression(jsii.String(sched)),
			Targets:     &[]awsevents.IRuleTarget{target},
		})
		// The role EventBridge starts the task with (made by the target).
		suppress(b.Task, "AwsSolutions-IAM5",
			"EventBridge tags the tasks it starts: ecs:TagResource on this cluster's tasks, whose ids exist only once started",
			nagFinding(s.Stack, "arn:"+*awscdk.Aws_PARTITION()+":ecs:"+s.plan.Region.Name+":*:task/"+*cluster.ClusterName()+"/*"))
	}
	if unreachable {
		scheduled := ""
		if o.Backfill.Schedule != "" {
			scheduled = "; backfillSchedule is not applied to it"
		}
		awscdk.Annotations_Of(b.Task).AddWarningV2(jsii.String("xrc:backfill-egress"), jsii.String(fmt.Sprintf(
			"rule %s has destinations outside %s; the stack's VPC has no route to other regions' S3, so this backfill task cannot compare with them and fails%s. Run xrc backfill from a machine with access, or deploy into an existing VPC with egress (context existingVpcs)",
			rule.ID, s.plan.Region.Name, scheduled)))
	}
	s.alarms.watchBackfill(id, b, cluster)
	awscdk.NewCfnOutput(s.Stack, jsii.String(outputID("BackfillTask", rule.ID)), &awscdk.CfnOutputProps{
		Value:       b.Task.TaskDefinitionArn(),
		Description: jsii.String("task definition of xrc backfill -rule " + rule.ID),
	})
	s.backfillOutputs(cluster)
	return b
}

// backfillCommand is the container's command: the rule, the checkpoint in
// the deployment's table (a stopped task resumes, and two runs of a rule
// never overlap).
func backfillCommand(rule *config.Rule) []string {
	return []string{"backfill", "-rule", rule.ID, "-checkpoint", "ddb"}
}

// backfillReachesOtherRegions: the created VPC is isolated (endpoints
// only), and an S3 gateway endpoint serves its own region's buckets.
func (s *regionStack) backfillReachesOtherRegions(rule *config.Rule) bool {
	if _, ok := s.d.Options.VPCs[s.plan.Region.Name]; ok {
		return false // the operator's VPC: its egress is theirs to know
	}
	for _, d := range rule.Destinations {
		if d.Region != s.plan.Region.Name {
			return true
		}
	}
	return false
}

// backfillOutputs names what `aws ecs run-task` needs besides the task
// definition, once per stack.
func (s *regionStack) backfillOutputs(cluster awsecs.Cluster) {
	if s.Stack.Node().TryFindChild(jsii.String("BackfillCluster")) != nil {
		return
	}
	awscdk.NewCfnOutput(s.Stack, jsii.String("BackfillCluster"), &awscdk.CfnOutputProps{Value: cluster.ClusterName()})
	subnets := s.net.Vpc.SelectSubnets(s.net.Subnets).SubnetIds
	awscdk.NewCfnOutput(s.Stack, jsii.String("BackfillSubnets"), &awscdk.CfnOutputProps{Value: awscdk.Fn_Join(jsii.String(","), subnets)})
	awscdk.NewCfnOutput(s.Stack, jsii.String("BackfillSecurityGroup"), &awscdk.CfnOutputProps{Value: s.net.Tasks.SecurityGroupId()})
}

// outputID makes a CloudFormation-safe logical id from a rule id.
func outputID(prefix, ruleID string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range ruleID {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteString(strconv.Itoa(int(r)))
		}
	}
	return b.String()
}

// grantBackfill gives a rule's backfill exactly what it calls: list the
// watched prefix and read its tags (-tags), list and HEAD each destination
// prefix and read its tags (HEAD needs s3:GetObject; the bytes are never
// read), send to the rule's queue, keep
// its checkpoint and read its statistics in the table (each confined to
// its own partition keys), read the config. An inventory report is read
// with the caller's rights: grant s3:GetObject on it to this role to use
// -inventory in a task.
func (s *regionStack) grantBackfill(role awsiam.Role, rule *config.Rule, q *workQueue) {
	p := s.policy(role)
	// No prefix condition, as for the destinations below: a tag read
	// (-tags) of an object deleted since it was listed must answer 404,
	// which a backfill takes for "gone"; with the condition S3 answers
	// 403, and the run failed.
	p.allow("ListWatchedBucket", []string{"s3:ListBucket"}, []string{s3BucketARN(rule.SourceBucket)}, nil, "")
	p.allow("ReadWatchedTags", []string{"s3:GetObjectTagging", "s3:GetObjectVersionTagging"}, []string{s3ObjectsARN(rule.SourceBucket, rule.Prefix)}, nil, whyObjectsUnderPrefix)
	for i, d := range rule.Destinations {
		prefix := rule.DestinationKey(d, rule.Prefix)
		// No prefix condition here: a HEAD of a missing key (from an
		// inventory) must answer 404, which takes an unconditional
		// ListBucket; without it S3 answers 403.
		p.allow(fmt.Sprintf("ListDestination%d", i), []string{"s3:ListBucket"}, []string{s3BucketARN(d.Bucket)}, nil, "")
		p.allow(fmt.Sprintf("HeadDestination%d", i), []string{"s3:GetObject", "s3:GetObjectTagging"}, []string{s3ObjectsARN(d.Bucket, prefix)}, nil, whyObjectsUnderPrefix)
	}
	p.allow("SendEvents", []string{"sqs:SendMessage"}, []string{*q.Queue.QueueArn()}, nil, "")
	p.allow("EncryptEvents", []string{"kms:GenerateDataKey", "kms:Decrypt"}, []string{*s.keys.Messaging.KeyArn()}, viaService("sqs", s.plan.Region.Name), "")
	// DeleteItem and ConditionCheckItem: a finished run's items are
	// removed in transactions that check the lease.
	p.allow("Checkpoint", []string{"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"},
		[]string{*s.table.TableArn()}, leadingKeys(config.KeyBackfill+rule.ID), "")
	p.allow("ReadStatistics", []string{"dynamodb:Query"},
		[]string{*s.table.TableArn()}, leadingKeys(config.KeyStats+rule.ID, config.KeyFleet), "")
	p.allow("ReadConfig", []string{"ssm:GetParameter"}, []string{*s.param.ParameterArn()}, nil, "")
	if arns := directCredentials(s.d.Config, rule); len(arns) > 0 {
		p.allow("DirectCredentials", []string{"ssm:GetParameter"}, arns, nil, "")
	}
}

// leadingKeys confines DynamoDB calls to items of the given partition keys.
func leadingKeys(pks ...string) map[string]any {
	return map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": pks}}
}

// leadingKeysLike confines DynamoDB calls to items whose partition keys
// match patterns (IAM's * and ?).
func leadingKeysLike(patterns ...string) map[string]any {
	return map[string]any{"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": patterns}}
}
