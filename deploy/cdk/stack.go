package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/jsii-runtime-go"
)

// configParameterPattern names the config parameter (stackName). A
// standard parameter holds 4 KB, an advanced one (charged monthly) 8 KB
// (config.MaxParameter).
const configParameterPattern = "/%s/config"

// regionStack is one region's resources, as the constructs that build them
// hand them to each other.
type regionStack struct {
	Stack   awscdk.Stack
	d       *deployment
	plan    *regionPlan
	keys    *keys
	staging *staging
	net     *network
	alarms  *alarms
	param   awsssm.StringParameter
	table   awsdynamodb.Table
	// workers are the services, for the dashboard.
	workers []*worker
	// Built on first use, shared by the services of the stack.
	sourceQueues map[string]*workQueue
	logGroups    map[string]awslogs.LogGroup
	images       map[string]awsecs.ContainerImage
	code         awslambda.Code // the functions' (lambda.go)
}

// newRegionStack builds the stack <stackName>-<region>.
func newRegionStack(app awscdk.App, d *deployment, rp *regionPlan) awscdk.Stack {
	name := d.StackName(rp.Region.Name)
	env := &awscdk.Environment{Region: jsii.String(rp.Region.Name)}
	if d.Options.Account != "" {
		env.Account = jsii.String(d.Options.Account)
	}
	stack := awscdk.NewStack(app, jsii.String(name), &awscdk.StackProps{
		StackName:   jsii.String(name),
		Env:         env,
		Description: jsii.String(fmt.Sprintf("xrc %s in %s: %s", d.Config.Settings.StackName, rp.Region.Name, roleSummary(rp))),
	})
	s := &regionStack{Stack: stack, d: d, plan: rp}
	s.keys = newKeys(s)
	s.param = s.newConfigParameter()
	s.alarms = newAlarms(s)
	s.staging = newStaging(s)
	// A target region whose worker runs on Lambda needs neither (and
	// saves the VPC's interface endpoints); a source region runs the
	// backfill task whatever its rules' compute (NeedsCluster).
	var cluster awsecs.Cluster
	if rp.NeedsCluster() {
		s.net = newNetwork(s)
		cluster = awsecs.NewCluster(s.Stack, jsii.String("Cluster"), &awsecs.ClusterProps{
			Vpc:                            s.net.Vpc,
			EnableFargateCapacityProviders: jsii.Bool(true),
			ContainerInsightsV2:            awsecs.ContainerInsights_ENABLED,
		})
	}
	s.table = s.newTable()
	if rp.IsSource() {
		for _, w := range rp.Watched {
			s.watch(w)
		}
		for _, rule := range rp.SourceRules {
			s.workers = append(s.workers, s.newSourceWorker(cluster, rule))
			s.newBackfill(cluster, rule)
		}
	}
	if rp.IsTarget() {
		s.workers = append(s.workers, s.newTargetWorker(cluster))
	}
	s.alarms.watchLogs()
	newDashboard(s)
	s.suppressCDKInternals()
	s.logCDKInternals()
	awscdk.NewCfnOutput(s.Stack, jsii.String("StagingBucket"), &awscdk.CfnOutputProps{Value: s.staging.Bucket.BucketName()})
	awscdk.NewCfnOutput(s.Stack, jsii.String("AlarmTopic"), &awscdk.CfnOutputProps{Value: s.alarms.Topic.TopicArn()})
	awscdk.NewCfnOutput(s.Stack, jsii.String("ConfigParameter"), &awscdk.CfnOutputProps{Value: s.param.ParameterName()})
	return stack
}

func roleSummary(rp *regionPlan) string {
	switch {
	case rp.IsSource() && rp.IsTarget():
		return fmt.Sprintf("%d source rules, target of %d", len(rp.SourceRules), len(rp.TargetRules))
	case rp.IsSource():
		return fmt.Sprintf("source of %d rules", len(rp.SourceRules))
	default:
		return fmt.Sprintf("target of %d rules", len(rp.TargetRules))
	}
}

// ConfigParameterName is where the workers of every region read the config.
func (s *regionStack) ConfigParameterName() string {
	return fmt.Sprintf(configParameterPattern, s.d.Config.Settings.StackName)
}

// newConfigParameter stores the config document for the workers
// (XRC_CONFIG=ssm:///<stack>/config). It is plain String: the document holds
// names, not secrets. Intelligent-Tiering lets SSM pick the tier at each
// write: standard while the document fits 4 KB, advanced once it does not.
// A tier chosen here from the document's size would fail the stack update
// that shrinks a document below 4 KB again, as SSM never turns an
// advanced parameter back into a standard one; Intelligent-Tiering keeps
// it advanced (and charged) instead.
func (s *regionStack) newConfigParameter() awsssm.StringParameter {
	return awsssm.NewStringParameter(s.Stack, jsii.String("Config"), &awsssm.StringParameterProps{
		ParameterName: jsii.String(s.ConfigParameterName()),
		StringValue:   jsii.String(s.d.Document),
		Tier:          awsssm.ParameterTier_INTELLIGENT_TIERING,
		Description:   jsii.String("xrc config document (from " + shortPath(s.d.ConfigPath) + "); deployed by the CDK app, edit the file and redeploy"),
	})
}

// newTable is the region's table (config.TableName): compression
// statistics the source workers share, delete tombstones and the ledger of
// delivered archives the target worker keeps. String keys pk, sk; items
// that must not live for ever carry expiresAt (TTL).
func (s *regionStack) newTable() awsdynamodb.Table {
	return awsdynamodb.NewTable(s.Stack, jsii.String("Stats"), &awsdynamodb.TableProps{
		TableName:           jsii.String(s.d.Config.TableName()),
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String("pk"), Type: awsdynamodb.AttributeType_STRING},
		SortKey:             &awsdynamodb.Attribute{Name: jsii.String("sk"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String("expiresAt"),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		// Statistics are relearned, and tombstones and ledger entries only
		// matter while messages can still be in flight; keeping the table
		// would block a redeploy under the same fixed name.
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}
