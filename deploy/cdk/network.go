package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"
)

// network is where a region's tasks run.
type network struct {
	Vpc     awsec2.IVpc
	Subnets *awsec2.SubnetSelection
	// Tasks is the tasks' security group: no ingress (nothing calls the
	// workers), egress to the endpoints or NAT.
	Tasks awsec2.SecurityGroup
}

// interfaceEndpoints are the AWS APIs the tasks call that have no gateway
// endpoint. KMS and STS are absent on purpose: S3 and SQS call KMS
// themselves, and task credentials come from the ECS agent.
func interfaceEndpoints() map[string]awsec2.InterfaceVpcEndpointAwsService {
	return map[string]awsec2.InterfaceVpcEndpointAwsService{
		"EcrApi":    awsec2.InterfaceVpcEndpointAwsService_ECR(),
		"EcrDocker": awsec2.InterfaceVpcEndpointAwsService_ECR_DOCKER(),
		"Logs":      awsec2.InterfaceVpcEndpointAwsService_CLOUDWATCH_LOGS(),
		"Sqs":       awsec2.InterfaceVpcEndpointAwsService_SQS(),
		"Ssm":       awsec2.InterfaceVpcEndpointAwsService_SSM(),
	}
}

// newNetwork creates an isolated VPC (no internet gateway, no NAT: every
// call goes through an endpoint, which admits the tasks only) or joins the
// existing VPC the existingVpcs context names for this region.
func newNetwork(s *regionStack) *network {
	n := &network{}
	if e, ok := s.d.Options.VPCs[s.plan.Region.Name]; ok {
		n.Vpc = awsec2.Vpc_FromVpcAttributes(s.Stack, jsii.String("Vpc"), &awsec2.VpcAttributes{
			VpcId:             jsii.String(e.VPCID),
			AvailabilityZones: jsii.Strings(e.AvailabilityZones...),
			PrivateSubnetIds:  jsii.Strings(e.SubnetIDs...),
		})
		n.Subnets = &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS}
		n.addTaskGroup(s)
		if e.CreateEndpoints {
			n.addInterfaceEndpoints(s)
		}
		return n
	}
	gateways := map[string]*awsec2.GatewayVpcEndpointOptions{
		"S3":       {Service: awsec2.GatewayVpcEndpointAwsService_S3()},
		"DynamoDB": {Service: awsec2.GatewayVpcEndpointAwsService_DYNAMODB()},
	}
	flowLogs := awslogs.NewLogGroup(s.Stack, jsii.String("FlowLogs"), &awslogs.LogGroupProps{
		Retention:     logRetention(s.d.Options.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	if o := s.d.Options; o.MaxAZs > 2 && o.Account == "" {
		// An account-agnostic stack sees two AZs whatever it asks for:
		// the VPC would quietly have two.
		awscdk.Annotations_Of(s.Stack).AddError(jsii.String(fmt.Sprintf(
			"maxAzs %d: %s's stack creates a VPC, and a stack without account sees only two availability zones, so it would have two; give account, or an existing VPC (existingVpcs)",
			o.MaxAZs, s.plan.Region.Name)))
	}
	n.Vpc = awsec2.NewVpc(s.Stack, jsii.String("Vpc"), &awsec2.VpcProps{
		MaxAzs:      jsii.Number(float64(s.d.Options.MaxAZs)),
		NatGateways: jsii.Number(0),
		SubnetConfiguration: &[]*awsec2.SubnetConfiguration{{
			Name:       jsii.String("workers"),
			SubnetType: awsec2.SubnetType_PRIVATE_ISOLATED,
			CidrMask:   jsii.Number(22),
		}},
		GatewayEndpoints: &gateways,
		// Rejected flows only: enough to debug a missing endpoint or
		// rule, without paying to log every S3 transfer.
		FlowLogs: &map[string]*awsec2.FlowLogOptions{
			"Rejected": {
				TrafficType: awsec2.FlowLogTrafficType_REJECT,
				Destination: awsec2.FlowLogDestination_ToCloudWatchLogs(flowLogs, nil),
			},
		},
	})
	n.Subnets = &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_ISOLATED}
	n.addTaskGroup(s)
	n.addInterfaceEndpoints(s)
	return n
}

// addTaskGroup creates the tasks' security group: no inbound (nothing calls
// the workers), outbound to the endpoints or NAT.
func (n *network) addTaskGroup(s *regionStack) {
	n.Tasks = awsec2.NewSecurityGroup(s.Stack, jsii.String("Tasks"), &awsec2.SecurityGroupProps{
		Vpc:              n.Vpc,
		Description:      jsii.String("xrc workers: no inbound; outbound to AWS APIs"),
		AllowAllOutbound: jsii.Bool(true),
	})
}

func (n *network) addInterfaceEndpoints(s *regionStack) {
	for _, id := range sortedKeys(interfaceEndpoints()) {
		ep := n.Vpc.AddInterfaceEndpoint(jsii.String(id), &awsec2.InterfaceVpcEndpointOptions{
			Service:           interfaceEndpoints()[id],
			Subnets:           n.Subnets,
			PrivateDnsEnabled: jsii.Bool(true),
			// Not open to the VPC: only the tasks may call it.
			Open: jsii.Bool(false),
		})
		ep.Connections().AllowDefaultPortFrom(n.Tasks, jsii.String("HTTPS from the xrc tasks"))
	}
}
