package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/jsii-runtime-go"
)

// keys are a region's two customer managed keys. They are separate so that
// the S3 service grant the queues need (S3 encrypts its notifications) never
// reaches the archives.
type keys struct {
	// Staging encrypts the staging bucket; in a target region S3
	// Replication encrypts replicas with it, finding it by its alias.
	Staging awskms.Key
	// Messaging encrypts the queues and the alarm topic.
	Messaging awskms.Key
}

// stagingKeyAlias is the alias of every region's staging key. Source
// regions name the target regions' keys by it (an alias ARN), because
// CloudFormation cannot reference a resource in another region.
func stagingKeyAlias(stackName string) string { return "alias/" + stackName + "-staging" }

// stagingKeyAliasARN is the alias ARN of region's staging key in the
// deploying account.
func stagingKeyAliasARN(stackName, region string) *string {
	return jsii.String(fmt.Sprintf("arn:%s:kms:%s:%s:%s", *awscdk.Aws_PARTITION(), region, *awscdk.Aws_ACCOUNT_ID(), stagingKeyAlias(stackName)))
}

func newKeys(s *regionStack) *keys {
	name := s.d.Config.Settings.StackName
	k := &keys{
		Staging: awskms.NewKey(s.Stack, jsii.String("StagingKey"), &awskms.KeyProps{
			Alias:             jsii.String(stagingKeyAlias(name)),
			Description:       jsii.String("xrc " + name + ": staging archives in " + s.plan.Region.Name),
			EnableKeyRotation: jsii.Bool(true),
			// Staging holds transient copies only; a torn-down
			// deployment should not leave keys behind (KMS still waits
			// the pending window before deleting).
			RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
			PendingWindow: awscdk.Duration_Days(jsii.Number(7)),
		}),
		Messaging: awskms.NewKey(s.Stack, jsii.String("MessagingKey"), &awskms.KeyProps{
			Alias:             jsii.String("alias/" + name + "-messaging"),
			Description:       jsii.String("xrc " + name + ": queues and alarm topic in " + s.plan.Region.Name),
			EnableKeyRotation: jsii.Bool(true),
			RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
			PendingWindow:     awscdk.Duration_Days(jsii.Number(7)),
		}),
	}
	// CloudWatch alarms publish to the encrypted topic.
	k.Messaging.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AlarmsToEncryptedTopic"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey*"),
		Resources:  jsii.Strings("*"),
		Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
	}), nil)
	// EventBridge (a backfill task that failed) gets the key from the
	// topic target's grant, unconditioned: its KMS requests for an
	// encrypted topic carry no aws:SourceAccount, so a statement
	// conditioned on it would not let them through (TestBackfillSchedule).
	return k
}
