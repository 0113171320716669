package main

// This file runs workers on AWS Lambda (settings' compute "lambda" or
// "hybrid"): the function (cmd/xrc-lambda, provided.al2023), its role with
// the worker's own statements, the SQS event source mapping, its alarms,
// and for "hybrid" the switch that enables the mapping only in bursts.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctionstasks"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// function is a worker's Lambda function and the mapping feeding it.
type function struct {
	Function awslambda.Function
	Role     awsiam.Role
	Mapping  awslambda.EventSourceMapping
	// Burst is the hybrid switch's alarm: in ALARM the mapping is enabled
	// (nil unless compute is hybrid).
	Burst awscloudwatch.Alarm
}

// lambdaVisibility is config.LambdaVisibility in seconds for a function
// of kind.
func lambdaVisibility(c *config.Config, kind string) float64 {
	return c.LambdaVisibility(kind == sourceKind).Seconds()
}

// addFunction runs w on Lambda: a function with w's statements and w's
// environment, fed by an event source mapping on w's queue that reports
// partial batch failures; for compute hybrid the mapping starts disabled
// and the switch enables it while the queue is in a burst.
func (s *regionStack) addFunction(id string, w *worker, env map[string]*string) {
	l := s.d.Config.Settings.Lambda
	logs := s.logGroup(w.Kind)
	role := awsiam.NewRole(s.Stack, jsii.String(id+"FunctionRole"), &awsiam.RoleProps{
		Description: jsii.String(fmt.Sprintf("xrc %s function in %s", w.Label(), s.plan.Region.Name)),
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
	})
	s.grantAll(role, w.Grants)
	// The function writes its logs itself, to the worker kind's log group
	// (the tasks' awslogs driver does it for them through their execution
	// role).
	s.policy(role).allow("WriteLogs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{*logs.LogGroupArn()}, nil, "")

	xrcRole := "source"
	if w.Kind == targetKind {
		xrcRole = "target"
	}
	sum := sha256.Sum256([]byte(s.d.Document))
	vars := map[string]*string{
		"XRC_ROLE":      jsii.String(xrcRole),
		"XRC_CONFIG":    jsii.String("ssm://" + s.ConfigParameterName()),
		"XRC_REGION":    jsii.String(s.plan.Region.Name),
		"XRC_QUEUE_URL": w.Queue.Queue.QueueUrl(),
		"GOMEMLIMIT":    jsii.String(goMemLimit(l.MemoryMB, w.compressorsMiB(s.d.Config))),
		// A new document makes new execution environments at once; warm
		// ones would otherwise read it within XRC_CONFIG_TTL.
		"XRC_CONFIG_SHA256": jsii.String(hex.EncodeToString(sum[:8])),
	}
	for k, v := range env {
		vars[k] = v
	}
	arch := awslambda.Architecture_ARM_64()
	if s.d.Options.Arch == "amd64" {
		arch = awslambda.Architecture_X86_64()
	}
	fn := awslambda.NewFunction(s.Stack, jsii.String(id+"Function"), &awslambda.FunctionProps{
		Description:                  jsii.String(fmt.Sprintf("xrc %s (%s compute) in %s", w.Label(), w.Compute, s.plan.Region.Name)),
		Runtime:                      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:                 arch,
		Handler:                      jsii.String("bootstrap"),
		Code:                         s.lambdaCode(),
		MemorySize:                   jsii.Number(float64(l.MemoryMB)),
		Timeout:                      awscdk.Duration_Seconds(jsii.Number(l.Timeout.D().Seconds())),
		ReservedConcurrentExecutions: jsii.Number(float64(l.ReservedConcurrency)),
		Role:                         role,
		Environment:                  &vars,
		LogGroup:                     logs,
		// Workers send to their own queue (a source's relay put off,
		// a message cut on its last receive sent again): Lambda's
		// default would take a chain past 16 sends for a runaway loop
		// and drop its message into the DLQ untried. xrc bounds both
		// (maxReceiveCount sends; a relay's copies are made or tried).
		RecursiveLoop: awslambda.RecursiveLoop_ALLOW,
	})
	suppress(fn, "AwsSolutions-L1", "provided.al2023 is the newest OS-only runtime; the Go binary brings its own runtime")

	props := &awslambda.EventSourceMappingProps{
		Target:                  fn,
		EventSourceArn:          w.Queue.Queue.QueueArn(),
		ReportBatchItemFailures: jsii.Bool(true),
		Enabled:                 jsii.Bool(w.Compute == config.ComputeLambda),
	}
	if w.Kind == sourceKind {
		// Many objects per invocation make few, full archives.
		props.BatchSize = jsii.Number(float64(l.BatchSize))
		props.MaxBatchingWindow = awscdk.Duration_Seconds(jsii.Number(l.BatchingWindow.D().Seconds()))
	} else {
		props.BatchSize = jsii.Number(float64(l.TargetBatchSize))
	}
	// The mapping never asks for more than the function may run, so
	// batches are not throttled back into the queue (config: at least 2).
	props.MaxConcurrency = jsii.Number(float64(min(l.ReservedConcurrency, 1000)))
	mapping := awslambda.NewEventSourceMapping(s.Stack, jsii.String(id+"Mapping"), props)
	w.Function = &function{Function: fn, Role: role, Mapping: mapping}
	if w.Compute == config.ComputeHybrid {
		w.Function.Burst = s.addHybridSwitch(id, w)
	}
	s.alarms.watchFunction(id, w)
}

// addHybridSwitch enables w's mapping while its queue is in a burst and
// disables it otherwise. The rule: the queue is in a burst while more than
// settings.lambda.hybridBacklog messages wait or the oldest is older than
// hybridAge, in any of the last three minutes (so the mapping stays on at
// least three minutes). An alarm on that; a small state machine that reads
// the alarm's state and sets the mapping to match, started by every change
// of the alarm and every ten minutes (so a mapping a deploy reset, or a
// missed event, is corrected within ten minutes: about $0.45 a month of
// state transitions). The Fargate
// service keeps scaling on the backlog meanwhile; both consume the queue
// safely because processing is idempotent.
func (s *regionStack) addHybridSwitch(id string, w *worker) awscloudwatch.Alarm {
	l := s.d.Config.Settings.Lambda
	burst := awscloudwatch.NewAlarm(s.Stack, jsii.String(id+"Burst"), &awscloudwatch.AlarmProps{
		AlarmName: jsii.String(s.d.StackName(s.plan.Region.Name) + "-" + alarmName(w) + "-burst"),
		AlarmDescription: jsii.String(fmt.Sprintf("%s (hybrid): more than %d messages waiting or the oldest older than %v; while in ALARM its Lambda mapping is enabled (not a fault: no notification)",
			w.Label(), l.HybridBacklog, l.HybridAge.D())),
		Metric: mathExpression(fmt.Sprintf("IF(FILL(visible, 0) > %d OR FILL(age, 0) > %g, 1, 0)", l.HybridBacklog, l.HybridAge.D().Seconds()), &map[string]awscloudwatch.IMetric{
			"visible": w.Queue.Queue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
			"age":     w.Queue.Queue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		}),
		Threshold:          jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(3),
		DatapointsToAlarm:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	mappingArn := w.Function.Mapping.EventSourceMappingArn()
	// A call refused for a moment (throttled; a mapping still settling
	// from the last change, ResourceInUseException) is tried again
	// within the machine's minute (up to 2+4+8 s of waits for each of its
	// two calls), not left to the next ten-minute run.
	retried := func(call awsstepfunctionstasks.CallAwsService) awsstepfunctionstasks.CallAwsService {
		call.AddRetry(&awsstepfunctions.RetryProps{
			Errors:      jsii.Strings(*awsstepfunctions.Errors_TASKS_FAILED()),
			Interval:    awscdk.Duration_Seconds(jsii.Number(2)),
			BackoffRate: jsii.Number(2),
			MaxAttempts: jsii.Number(3),
		})
		return call
	}
	set := func(name string, enabled bool) awsstepfunctionstasks.CallAwsService {
		return retried(awsstepfunctionstasks.NewCallAwsService(s.Stack, jsii.String(id+"Switch"+name), &awsstepfunctionstasks.CallAwsServiceProps{
			Service:      jsii.String("lambda"),
			Action:       jsii.String("updateEventSourceMapping"),
			IamAction:    jsii.String("lambda:UpdateEventSourceMapping"),
			IamResources: jsii.Strings(*mappingArn),
			Parameters:   &map[string]any{"Uuid": w.Function.Mapping.EventSourceMappingId(), "Enabled": enabled},
		}))
	}
	read := retried(awsstepfunctionstasks.NewCallAwsService(s.Stack, jsii.String(id+"SwitchRead"), &awsstepfunctionstasks.CallAwsServiceProps{
		Service:        jsii.String("cloudwatch"),
		Action:         jsii.String("describeAlarms"),
		IamAction:      jsii.String("cloudwatch:DescribeAlarms"),
		IamResources:   jsii.Strings(*burst.AlarmArn()),
		Parameters:     &map[string]any{"AlarmNames": []any{burst.AlarmName()}},
		ResultSelector: &map[string]any{"state.$": "$.MetricAlarms[0].StateValue"},
	}))
	decide := awsstepfunctions.NewChoice(s.Stack, jsii.String(id+"SwitchDecide"), nil).
		When(awsstepfunctions.Condition_StringEquals(jsii.String("$.state"), jsii.String("ALARM")), set("On", true), nil).
		Otherwise(set("Off", false))
	// A Standard workflow: Step Functions keeps each execution's history
	// itself, so the machine needs neither a log group nor the log-delivery
	// and X-Ray permissions on "*" that logging and tracing would grant.
	machine := awsstepfunctions.NewStateMachine(s.Stack, jsii.String(id+"Switch"), &awsstepfunctions.StateMachineProps{
		Comment:          jsii.String(w.Label() + ": enable the Lambda mapping while the burst alarm is in ALARM, disable it otherwise"),
		StateMachineType: awsstepfunctions.StateMachineType_STANDARD,
		DefinitionBody:   awsstepfunctions.DefinitionBody_FromChainable(read.Next(decide)),
		Timeout:          awscdk.Duration_Minutes(jsii.Number(1)),
	})
	suppress(machine, "AwsSolutions-SF1",
		"a Standard workflow of two API calls: Step Functions keeps every execution's history (90 days); CloudWatch Logs would need log-delivery permissions on *")
	suppress(machine, "AwsSolutions-SF2", "two API calls, nothing to trace; X-Ray would need permissions on *")
	// The burst alarm notifies no one: a switch that keeps failing (a
	// permission, a mapping gone) would leave the functions on or off in
	// silence. Two ten-minute runs in a row failed is no blip.
	s.alarms.add(id+"SwitchFailed", alarmName(w)+"-hybrid-switch-failed", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s (hybrid): the switch setting its Lambda mapping to the burst alarm's state failed or timed out in two ten-minute periods in a row; the mapping may be stuck on or off: see the state machine's failed executions",
			w.Label())),
		Metric: awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("FILL(failed, 0) + FILL(timedOut, 0)"),
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"failed":   machine.MetricFailed(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum")}),
				"timedOut": machine.MetricTimedOut(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum")}),
			},
			Period: awscdk.Duration_Minutes(jsii.Number(10)),
		}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(2),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	target := awseventstargets.NewSfnStateMachine(machine, nil)
	awsevents.NewRule(s.Stack, jsii.String(id+"SwitchOnChange"), &awsevents.RuleProps{
		Description: jsii.String(w.Label() + ": the burst alarm changed state"),
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings("aws.cloudwatch"),
			DetailType: jsii.Strings("CloudWatch Alarm State Change"),
			Resources:  jsii.Strings(*burst.AlarmArn()),
		},
		Targets: &[]awsevents.IRuleTarget{target},
	})
	awsevents.NewRule(s.Stack, jsii.String(id+"SwitchEvery10Minutes"), &awsevents.RuleProps{
		Description: jsii.String(w.Label() + ": set the mapping to the burst alarm's state"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(10))),
		Targets:     &[]awsevents.IRuleTarget{target},
	})
	return burst
}

// lambdaCode is the functions' code, shared by the stack's functions:
// cmd/xrc-lambda as "bootstrap", built at synth for the options'
// architecture from the repository's go.mod, go.sum, cmd/ and internal/
// (the asset hash covers exactly those). It is built here (goBuild) when Go
// is installed, else in Docker with the golang image.
func (s *regionStack) lambdaCode() awslambda.Code {
	if s.code != nil {
		return s.code
	}
	arch := s.d.Options.Arch
	// The bundling options are in the asset's hash: a code that may be
	// built without libzstd is another asset than one that may not, so
	// such a build, once made, is never taken for the other (CDK reuses
	// an asset of the same hash, built or uploaded, without building).
	var env *map[string]*string
	if s.d.Options.LambdaPureGo {
		env = &map[string]*string{"XRC_LAMBDA_PURE_GO": jsii.String("allowed")}
	}
	s.code = awslambda.Code_FromAsset(jsii.String(s.d.RepoRoot), &awss3assets.AssetOptions{
		Exclude:    jsii.Strings(lambdaContextExcludes...),
		IgnoreMode: awscdk.IgnoreMode_DOCKER,
		Bundling: &awscdk.BundlingOptions{
			Local:       &goBuild{repo: s.d.RepoRoot, arch: arch, version: s.d.Options.Version, pureGo: s.d.Options.LambdaPureGo},
			Environment: env,
			Image:       awscdk.DockerImage_FromRegistry(jsii.String(golangImage)),
			Command:     jsii.Strings("bash", "-c", dockerBuildScript(arch, s.d.Options.Version)),
			// CDK runs the container as this machine's user, who may not
			// install the cross compiler the script needs.
			User: jsii.String("root"),
		},
	})
	return s.code
}

// golangImage builds the function in Docker: go.mod's Go.
const golangImage = "public.ecr.aws/docker/library/golang:1.26.8"

// lambdaContextExcludes keep the code asset's input, and its hash, to the
// sources the function is built from.
var lambdaContextExcludes = []string{"*", "!go.mod", "!go.sum", "!cmd", "!internal", "**/*_test.go", "**/testdata"}

// ldflagsVersion stamps the version, as the Makefile and the Dockerfiles do.
const ldflagsVersion = "-X github.com/xrc-dev/xrc/internal/app.Version="

// goBuild builds cmd/xrc-lambda on this machine (awscdk.ILocalBundling):
// with libzstd through cgo, linked statically as Dockerfile.source links
// the source worker, when a C compiler for the target is here; else
// Docker builds it so (its image installs one); in pure Go only when
// neither is here and the deployment allows it (-c lambdaPureGo=true),
// saying so (the source then compresses with the pure-Go encoder, at
// 1.25-2x the CPU, its levels mapped onto four encoders).
type goBuild struct {
	repo, arch, version string
	pureGo              bool
	// docker builds the function into a directory in Docker (dockerBuild;
	// tests).
	docker func(outputDir string) error
}

// TryBundle implements awscdk.ILocalBundling.
func (b *goBuild) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if _, err := exec.LookPath("go"); err != nil {
		return jsii.Bool(false) // Docker then
	}
	docker := b.docker
	if docker == nil {
		docker = b.dockerBuild
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH="+b.arch, "GOFLAGS=-buildvcs=false")
	ldflags := "-s -w " + ldflagsVersion + b.version
	if cc := targetCC(b.arch); cc != "" {
		env = append(env, "CGO_ENABLED=1", "CC="+cc, "CGO_CFLAGS=-O3 -g")
		ldflags += " -linkmode external -extldflags -static"
	} else {
		fmt.Fprintf(os.Stderr, "xrc cdk: no C compiler for linux/%s here (%s): building xrc-lambda with libzstd in Docker\n", b.arch, crossCompilers[b.arch].packages)
		err := docker(*outputDir)
		if err == nil {
			return jsii.Bool(true)
		}
		if !b.pureGo {
			fmt.Fprintf(os.Stderr, "xrc cdk: building in Docker failed (%v): xrc-lambda is not built without libzstd unasked; install %s, start Docker, or pass -c lambdaPureGo=true to deploy it with the pure-Go encoder (1.25-2x the CPU)\n",
				err, crossCompilers[b.arch].packages)
			return jsii.Bool(false)
		}
		// Offline, or no Docker, and allowed: a synth still works.
		env = append(env, "CGO_ENABLED=0")
		fmt.Fprintf(os.Stderr, "xrc cdk: building in Docker failed (%v): xrc-lambda is built without libzstd (the pure-Go encoder, at 1.25-2x the CPU), as -c lambdaPureGo=true allows; later synths with the flag reuse this build: drop it once Docker or a cross compiler is here\n", err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "netgo,osusergo,lambda.norpc", "-ldflags", ldflags,
		"-o", filepath.Join(*outputDir, "bootstrap"), "./cmd/xrc-lambda")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = b.repo, env, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "xrc cdk: building xrc-lambda here failed (%v); trying Docker\n", err)
		return jsii.Bool(false)
	}
	return jsii.Bool(true)
}

// dockerBuild builds the function into outputDir in the golang image, as
// the CDK's Docker bundling below does, but here, so that a failure
// (offline, no daemon) leaves the pure-Go build rather than the synth
// failed.
func (b *goBuild) dockerBuild(outputDir string) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return err
	}
	cmd := exec.Command("docker", "run", "--rm", "--user", "root",
		"-v", b.repo+":/asset-input:ro", "-v", outputDir+":/asset-output",
		golangImage, "bash", "-c", dockerBuildScript(b.arch, b.version))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// crossCompilers are Debian's C cross compilers, by Go architecture: the
// package to install and the compiler's name.
var crossCompilers = map[string]struct{ packages, cc string }{
	"arm64": {"gcc-aarch64-linux-gnu libc6-dev-arm64-cross", "aarch64-linux-gnu-gcc"},
	"amd64": {"gcc-x86-64-linux-gnu libc6-dev-amd64-cross", "x86_64-linux-gnu-gcc"},
}

// targetCC is a C compiler for linux/arch on this machine, or "".
func targetCC(arch string) string {
	if runtime.GOOS == "linux" && runtime.GOARCH == arch {
		if p, err := exec.LookPath("gcc"); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(crossCompilers[arch].cc); err == nil {
		return p
	}
	return ""
}

// dockerBuildScript builds the function in the golang image, as
// Dockerfile.source builds the source worker (with Debian's cross gcc when
// the image's architecture is not the target's).
func dockerBuildScript(arch, version string) string {
	c := crossCompilers[arch]
	return fmt.Sprintf(`set -e
cc=gcc
if [ "$(go env GOARCH)" != %[1]s ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends %[2]s >/dev/null
  cc=%[3]s
fi
cd /asset-input
GOFLAGS=-buildvcs=false GOCACHE=/tmp/go-cache GOPATH=/tmp/go CGO_ENABLED=1 CC=$cc CGO_CFLAGS="-O3 -g" GOOS=linux GOARCH=%[1]s \
  go build -trimpath -tags netgo,osusergo,lambda.norpc -ldflags "-s -w -linkmode external -extldflags -static %[4]s%[5]s" \
  -o /asset-output/bootstrap ./cmd/xrc-lambda`, arch, c.packages, c.cc, ldflagsVersion, version)
}
