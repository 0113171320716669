package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecr"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecrassets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// Worker kinds: the binary, its Dockerfile and the EMF Service dimension.
const (
	sourceKind = "xrc-source"
	targetKind = "xrc-target"
)

// nonRootUser is distroless's "nonroot" user, given numerically so ECS can
// enforce it without reading the image's /etc/passwd.
const nonRootUser = "65532:65532"

// stopTimeout is the most Fargate allows between SIGTERM and SIGKILL
// (config.StopTimeout, which the workers' stop budget is cut from).
var stopTimeout = config.StopTimeout.Seconds()

// worker is the source worker of a rule or a region's target worker: an
// ECS service, a Lambda function, or both (its compute).
type worker struct {
	Kind    string
	Rule    *config.Rule // nil for the target worker
	Queue   *workQueue
	Compute config.Compute
	// Grants are the worker's statements, the same for its task role and
	// its function's role.
	Grants   grants
	Service  awsecs.FargateService // nil unless Compute.Fargate()
	Role     awsiam.Role           // the task role, nil without a service
	Function *function             // nil unless Compute.Lambda() (lambda.go)
	Options  workerOptions
}

// compressorsMiB is the C memory w may hold in compressors: a source's
// (config.SourceCompressorsMiB); a target compresses nothing.
func (w *worker) compressorsMiB(c *config.Config) int {
	if w.Rule == nil {
		return 0
	}
	return c.SourceCompressorsMiB(w.Rule)
}

// Label names the worker in alarms and on the dashboard.
func (w *worker) Label() string {
	if w.Rule != nil {
		return "source " + w.Rule.ID
	}
	return "target"
}

func (s *regionStack) newSourceWorker(cluster awsecs.Cluster, rule *config.Rule) *worker {
	q := s.sourceQueue(rule)
	w := &worker{Kind: sourceKind, Rule: rule, Queue: q, Compute: rule.Compute, Grants: s.sourceGrants(rule, q), Options: s.d.Options.Source}
	env := map[string]*string{"XRC_RULES": jsii.String(rule.ID)}
	if w.Compute.Fargate() {
		if _, own := s.d.Options.VPCs[s.plan.Region.Name]; !own && len(s.d.Config.DirectRegions(rule)) > 0 {
			// Its tasks copy each archive there themselves, and the VPC
			// this app creates reaches only this region's endpoints:
			// every copy would fail, and the rule's messages with it.
			awscdk.Annotations_Of(s.Stack).AddError(jsii.String(fmt.Sprintf(
				"rule %s delivers to a direct region, which its source tasks copy archives to themselves; in the VPC this app creates in %s (no NAT) they reach nothing outside it: "+
					"deploy into existingVpcs with egress, or run the rule on compute lambda (functions outside any VPC)", rule.ID, s.plan.Region.Name)))
		}
		w.Role = s.taskRole("Source-"+rule.ID, "xrc source worker of rule "+rule.ID)
		s.grantAll(w.Role, w.Grants)
		s.addService(cluster, "Source-"+rule.ID, w, env)
	}
	if w.Compute.Lambda() {
		s.addFunction("Source-"+rule.ID, w, env)
	}
	s.alarms.watchQueue("Source-"+rule.ID, w)
	return w
}

func (s *regionStack) newTargetWorker(cluster awsecs.Cluster) *worker {
	q := s.newTargetQueue()
	w := &worker{Kind: targetKind, Queue: q, Compute: s.plan.Region.Compute, Grants: s.targetGrants(q), Options: s.d.Options.Target}
	if w.Compute.Fargate() {
		w.Role = s.taskRole("Target", "xrc target worker")
		s.grantAll(w.Role, w.Grants)
		s.addService(cluster, "Target", w, nil)
	}
	if w.Compute.Lambda() {
		s.addFunction("Target", w, nil)
	}
	s.alarms.watchQueue("Target", w)
	return w
}

func (s *regionStack) taskRole(id, description string) awsiam.Role {
	return awsiam.NewRole(s.Stack, jsii.String(id+"TaskRole"), &awsiam.RoleProps{
		Description: jsii.String(description + " in " + s.plan.Region.Name),
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), &awsiam.ServicePrincipalOpts{
			Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
		}),
	})
}

// addService runs w as a Fargate service on Spot (and optionally on-demand),
// hardened: read-only root filesystem, non-root user, no Linux
// capabilities, a health check on the worker's /healthz, and a stop timeout
// long enough to drain.
func (s *regionStack) addService(cluster awsecs.Cluster, id string, w *worker, env map[string]*string) {
	o := s.d.Options
	settings := s.d.Config.Settings
	arch := awsecs.CpuArchitecture_ARM64()
	if o.Arch == "amd64" {
		arch = awsecs.CpuArchitecture_X86_64()
	}
	task := awsecs.NewFargateTaskDefinition(s.Stack, jsii.String(id+"Task"), &awsecs.FargateTaskDefinitionProps{
		Cpu:             jsii.Number(float64(w.Options.CPU)),
		MemoryLimitMiB:  jsii.Number(float64(w.Options.MemoryMB)),
		RuntimePlatform: &awsecs.RuntimePlatform{CpuArchitecture: arch, OperatingSystemFamily: awsecs.OperatingSystemFamily_LINUX()},
		TaskRole:        w.Role,
		// A writable /tmp on the task's ephemeral storage: the root
		// filesystem is read-only.
		Volumes: &[]*awsecs.Volume{{Name: jsii.String("tmp")}},
	})
	health, _ := healthURL(settings.Worker.MetricsAddr) // newPlan checked it
	sum := sha256.Sum256([]byte(s.d.Document))
	vars := map[string]*string{
		"XRC_CONFIG":    jsii.String("ssm://" + s.ConfigParameterName()),
		"XRC_REGION":    jsii.String(s.plan.Region.Name),
		"XRC_QUEUE_URL": w.Queue.Queue.QueueUrl(),
		"GOMEMLIMIT":    jsii.String(goMemLimit(w.Options.MemoryMB, w.compressorsMiB(s.d.Config))),
		// What this deployment fixed, which a document edited by hand
		// must not contradict (app.Deployment): the task checks it.
		"XRC_STACK_NAME":   jsii.String(settings.StackName),
		"XRC_METRICS_ADDR": jsii.String(settings.Worker.MetricsAddr),
		"XRC_MEMORY_MB":    jsii.String(strconv.Itoa(w.Options.MemoryMB)),
		// Changes with the document so that a config change rolls the
		// tasks (they read the parameter once, at start).
		"XRC_CONFIG_SHA256": jsii.String(hex.EncodeToString(sum[:8])),
	}
	for k, v := range env {
		vars[k] = v
	}
	linux := awsecs.NewLinuxParameters(s.Stack, jsii.String(id+"Linux"), nil)
	linux.DropCapabilities(awsecs.Capability_ALL)
	container := task.AddContainer(jsii.String("worker"), &awsecs.ContainerDefinitionOptions{
		ContainerName:          jsii.String(w.Kind),
		Image:                  s.image(w.Kind),
		Essential:              jsii.Bool(true),
		ReadonlyRootFilesystem: jsii.Bool(true),
		User:                   jsii.String(nonRootUser),
		LinuxParameters:        linux,
		StopTimeout:            awscdk.Duration_Seconds(jsii.Number(stopTimeout)),
		Environment:            &vars,
		HealthCheck: &awsecs.HealthCheck{
			// The worker binary is its own probe: the image has no shell.
			Command:     jsii.Strings("CMD", binaryPath(w.Kind), "healthcheck", health),
			Interval:    awscdk.Duration_Seconds(jsii.Number(30)),
			Timeout:     awscdk.Duration_Seconds(jsii.Number(5)),
			Retries:     jsii.Number(3),
			StartPeriod: awscdk.Duration_Seconds(jsii.Number(60)),
		},
		Logging: awsecs.LogDriver_AwsLogs(&awsecs.AwsLogDriverProps{
			LogGroup:      s.logGroup(w.Kind),
			StreamPrefix:  jsii.String(streamPrefix(w)),
			Mode:          awsecs.AwsLogDriverMode_NON_BLOCKING,
			MaxBufferSize: awscdk.Size_Mebibytes(jsii.Number(25)),
		}),
	})
	suppress(task, "AwsSolutions-ECS2",
		"the environment holds no secrets: config location (ssm:///<stack>/config), region, rule id, queue URL, GOMEMLIMIT, and the stack name, metrics address and memory deployed")
	suppress(task.ObtainExecutionRole(), "AwsSolutions-IAM5",
		"ecr:GetAuthorizationToken has no resource-level permissions; image pulls and logs are scoped to the repository and log group",
		"Resource::*")
	container.AddMountPoints(&awsecs.MountPoint{ContainerPath: jsii.String("/tmp"), SourceVolume: jsii.String("tmp"), ReadOnly: jsii.Bool(false)})

	w.Service = awsecs.NewFargateService(s.Stack, jsii.String(id+"Service"), &awsecs.FargateServiceProps{
		Cluster:                    cluster,
		TaskDefinition:             task,
		CapacityProviderStrategies: capacity(o),
		SecurityGroups:             &[]awsec2.ISecurityGroup{s.net.Tasks},
		VpcSubnets:                 s.net.Subnets,
		AssignPublicIp:             jsii.Bool(false),
		MinHealthyPercent:          jsii.Number(100),
		MaxHealthyPercent:          jsii.Number(200),
		CircuitBreaker:             &awsecs.DeploymentCircuitBreaker{Enable: jsii.Bool(true), Rollback: jsii.Bool(true)},
		PropagateTags:              awsecs.PropagatedTagSource_SERVICE,
		EnableECSManagedTags:       jsii.Bool(true),
	})
	// After the cluster's capacity provider association (which CDK adds
	// in an aspect, with no dependency of its own): without it,
	// CloudFormation creates the service before FARGATE_SPOT is the
	// cluster's, and on delete removes the association while the service
	// still uses it, which ECS refuses, failing the stack's deletion.
	w.Service.Node().AddDependency(cluster)
	// Task scale-in protection (internal/protection): a task holding long
	// work keeps scale-in and deployments from stopping it; the ECS agent
	// asks for it with the task role.
	s.policy(w.Role).allow("ProtectFromScaleIn", []string{"ecs:UpdateTaskProtection"},
		[]string{"arn:" + *awscdk.Aws_PARTITION() + ":ecs:" + s.plan.Region.Name + ":" + *awscdk.Aws_ACCOUNT_ID() + ":task/" + *cluster.ClusterName() + "/*"},
		nil, whyOwnTask)
	s.addScaling(id, w)
	s.alarms.watchService(id, w)
}

// capacity puts tasks on Fargate Spot, with the on-demand base and weight
// the options ask for.
func capacity(o options) *[]*awsecs.CapacityProviderStrategy {
	out := []*awsecs.CapacityProviderStrategy{{CapacityProvider: jsii.String("FARGATE_SPOT"), Weight: jsii.Number(1)}}
	if o.OnDemandBase > 0 || o.OnDemandWeight > 0 {
		out = append(out, &awsecs.CapacityProviderStrategy{
			CapacityProvider: jsii.String("FARGATE"),
			Base:             jsii.Number(float64(o.OnDemandBase)),
			Weight:           jsii.Number(float64(o.OnDemandWeight)),
		})
	}
	return &out
}

func streamPrefix(w *worker) string {
	if w.Rule != nil {
		return w.Rule.ID
	}
	return "target"
}

// logGroup returns the stack's log group of a worker kind, creating it on
// first use: /<stack>/xrc-source holds every rule's stream.
func (s *regionStack) logGroup(kind string) awslogs.LogGroup {
	if g, ok := s.logGroups[kind]; ok {
		return g
	}
	if s.logGroups == nil {
		s.logGroups = map[string]awslogs.LogGroup{}
	}
	g := awslogs.NewLogGroup(s.Stack, jsii.String("Logs-"+kind), &awslogs.LogGroupProps{
		LogGroupName:  jsii.String(path.Join("/", s.d.Config.Settings.StackName, kind)),
		Retention:     logRetention(s.d.Options.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	s.logGroups[kind] = g
	return g
}

// logCDKInternals sends the logs of the functions CDK adds on its own (the
// bucket-notifications handler, the staging bucket's auto-delete
// provider) to a group of the stack with its retention: in their
// default groups they were kept for ever, and left behind by a destroy.
// Called once every construct is made.
func (s *regionStack) logCDKInternals() {
	for _, c := range *s.Stack.Node().FindAll(constructs.ConstructOrder_PREORDER) {
		if !*awscdk.CfnResource_IsCfnResource(c) {
			continue
		}
		r := c.(awscdk.CfnResource)
		if *r.CfnResourceType() != "AWS::Lambda::Function" {
			continue
		}
		if f, ok := c.(awslambda.CfnFunction); ok && f.LoggingConfig() != nil {
			continue // one of xrc's, logging to its own group
		}
		g := s.logGroup("cdk")
		r.AddPropertyOverride(jsii.String("LoggingConfig.LogGroup"), g.LogGroupName())
		r.Node().AddDependency(g)
	}
}

// ecrImageRe matches a private ECR image: account, region, repository,
// then a tag or a digest.
var ecrImageRe = regexp.MustCompile(`^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9._/-]+)(?::([\w][\w.-]{0,127})|@(sha256:[a-f0-9]{64}))?$`)

// prebuilt is the image uri names, {region} replaced by the stack's
// region (an image ECR replicates to every region). A private ECR image is
// pulled with the rights CDK grants the execution role for it
// (FromRegistry grants none). Tasks in the VPC this app creates reach only
// their own region's ECR (endpoints, no NAT): any other image fails synth
// there rather than every task at start.
func (s *regionStack) prebuilt(kind, uri string) awsecs.ContainerImage {
	region := s.plan.Region.Name
	uri = strings.ReplaceAll(uri, "{region}", region)
	m := ecrImageRe.FindStringSubmatch(uri)
	if _, own := s.d.Options.VPCs[region]; !own && (m == nil || m[2] != region) {
		awscdk.Annotations_Of(s.Stack).AddError(jsii.String(fmt.Sprintf(
			"%s image %q: tasks in the VPC this app creates in %s reach only that region's private ECR (no NAT); "+
				"push the image to ECR in every region (ECR replication), or deploy into existingVpcs with egress", kind, uri, region)))
	}
	if m == nil {
		return awsecs.ContainerImage_FromRegistry(jsii.String(uri), nil)
	}
	tag := m[4]
	if m[5] != "" {
		tag = m[5]
	}
	if tag == "" {
		tag = "latest"
	}
	repo := awsecr.Repository_FromRepositoryAttributes(s.Stack, jsii.String("Repository-"+kind), &awsecr.RepositoryAttributes{
		RepositoryArn:  jsii.String(fmt.Sprintf("arn:%s:ecr:%s:%s:repository/%s", *awscdk.Aws_PARTITION(), m[2], m[1], m[3])),
		RepositoryName: jsii.String(m[3]),
	})
	return awsecs.ContainerImage_FromEcrRepository(repo, jsii.String(tag))
}

// binaryPath is where the images put a worker kind's binary.
func binaryPath(kind string) string { return "/usr/local/bin/" + kind }

// image returns the container image of a worker kind: the prebuilt image the
// options name, or the repository's Dockerfile built as an asset (at deploy
// time; synth only stages the build context).
func (s *regionStack) image(kind string) awsecs.ContainerImage {
	o := s.d.Options
	uri := o.SourceImage
	if kind == targetKind {
		uri = o.TargetImage
	}
	if img, ok := s.images[kind]; ok {
		return img
	}
	if s.images == nil {
		s.images = map[string]awsecs.ContainerImage{}
	}
	if uri != "" {
		s.images[kind] = s.prebuilt(kind, uri)
		return s.images[kind]
	}
	platform := awsecrassets.Platform_LINUX_ARM64()
	if o.Arch == "amd64" {
		platform = awsecrassets.Platform_LINUX_AMD64()
	}
	asset := awsecrassets.NewDockerImageAsset(s.Stack, jsii.String("Image-"+kind), &awsecrassets.DockerImageAssetProps{
		Directory:   jsii.String(s.d.RepoRoot),
		File:        jsii.String(dockerfile(kind)),
		Platform:    platform,
		BuildArgs:   &map[string]*string{"VERSION": jsii.String(o.Version)},
		Exclude:     jsii.Strings(buildContextExcludes...),
		IgnoreMode:  awscdk.IgnoreMode_DOCKER,
		DisplayName: jsii.String(kind),
	})
	img := awsecs.ContainerImage_FromDockerImageAsset(asset)
	s.images[kind] = img
	return img
}

func dockerfile(kind string) string {
	if kind == targetKind {
		return "Dockerfile.target"
	}
	return "Dockerfile.source"
}

// buildContextExcludes keep the images' build context (and the asset hash)
// to what the Dockerfiles copy: the root module's sources. The rest of the
// repository, .git included, stays out.
var buildContextExcludes = []string{
	"*",
	"!go.mod",
	"!go.sum",
	"!cmd",
	"!internal",
	"!Dockerfile.source",
	"!Dockerfile.target",
	"**/*_test.go",
	"**/testdata",
}
