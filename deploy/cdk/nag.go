package main

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// addNag runs cdk-nag's AwsSolutions checks on every stack at synth. An
// unsuppressed finding is an error annotation, which fails `cdk synth` and
// the tests. Suppressions are added where the construct is made, each with
// its reason and, for IAM5, the exact findings it covers.
func addNag(app awscdk.App) {
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
}

// suppress records why scope (and its children) may break rule; appliesTo
// narrows it to those findings (IAM4/IAM5 resource or policy names).
func suppress(scope constructs.IConstruct, rule, reason string, appliesTo ...string) {
	sup := &cdknag.NagPackSuppression{Id: jsii.String(rule), Reason: jsii.String(reason)}
	if len(appliesTo) > 0 {
		list := make([]any, len(appliesTo))
		for i, a := range appliesTo {
			list[i] = a
		}
		sup.AppliesTo = &list
	}
	cdknag.NagSuppressions_AddResourceSuppressions(scope, &[]*cdknag.NagPackSuppression{sup}, jsii.Bool(true))
}

// nagFinding renders an IAM resource the way cdk-nag names it in a finding:
// intrinsics resolved to <AWS::Partition>, <LogicalId.Arn>, <LogicalId>.
func nagFinding(stack awscdk.Stack, resource string) string {
	return "Resource::" + renderIntrinsic(stack.Resolve(jsii.String(resource)))
}

func renderIntrinsic(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case *string:
		return *v
	case map[string]any:
		if ref, ok := v["Ref"]; ok {
			return "<" + renderIntrinsic(ref) + ">"
		}
		if att, ok := v["Fn::GetAtt"].([]any); ok && len(att) == 2 {
			return "<" + renderIntrinsic(att[0]) + "." + renderIntrinsic(att[1]) + ">"
		}
		if join, ok := v["Fn::Join"].([]any); ok && len(join) == 2 {
			parts, _ := join[1].([]any)
			out := make([]string, len(parts))
			for i, p := range parts {
				out[i] = renderIntrinsic(p)
			}
			return strings.Join(out, renderIntrinsic(join[0]))
		}
	}
	return fmt.Sprint(v)
}

// suppressCDKInternals covers what CDK itself adds to a stack: the
// singleton Lambda that writes bucket notification configurations.
func (s *regionStack) suppressCDKInternals() {
	for _, child := range *s.Stack.Node().Children() {
		if strings.HasPrefix(*child.Node().Id(), "BucketNotificationsHandler") {
			suppress(child, "AwsSolutions-IAM4",
				"CDK's bucket-notifications handler (a CloudFormation-time Lambda, not in the data path) uses AWSLambdaBasicExecutionRole for its own logs",
				"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
		}
	}
}
