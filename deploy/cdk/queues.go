package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3notifications"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
)

// workQueue is a queue S3 events arrive on, with the dead-letter queue that
// takes a message after settings.worker.maxReceiveCount failed receives.
type workQueue struct {
	Queue awssqs.Queue
	DLQ   awssqs.Queue
}

// newWorkQueue creates name and name-dlq (the names the workers derive from
// the config), both encrypted with the messaging key. A queue a Lambda
// function consumes (compute lambda or hybrid) hides a received message
// for at least six times the function's timeout (lambdaVisibility); kind is
// the worker that consumes it.
func newWorkQueue(s *regionStack, id, name, kind string, compute config.Compute) *workQueue {
	w := s.d.Config.Settings.Worker
	visibility := w.VisibilityTimeout.D().Seconds()
	if compute.Lambda() {
		visibility = lambdaVisibility(s.d.Config, kind)
	}
	dlq := awssqs.NewQueue(s.Stack, jsii.String(id+"Dlq"), &awssqs.QueueProps{
		QueueName:           jsii.String(config.DeadLetterQueueName(name)),
		Encryption:          awssqs.QueueEncryption_KMS,
		EncryptionMasterKey: s.keys.Messaging,
		DataKeyReuse:        awscdk.Duration_Hours(jsii.Number(1)),
		EnforceSSL:          jsii.Bool(true),
		RetentionPeriod:     awscdk.Duration_Seconds(jsii.Number(config.MessageRetention.Seconds())),
		RemovalPolicy:       awscdk.RemovalPolicy_DESTROY,
	})
	q := awssqs.NewQueue(s.Stack, jsii.String(id), &awssqs.QueueProps{
		QueueName:           jsii.String(name),
		Encryption:          awssqs.QueueEncryption_KMS,
		EncryptionMasterKey: s.keys.Messaging,
		DataKeyReuse:        awscdk.Duration_Hours(jsii.Number(1)),
		EnforceSSL:          jsii.Bool(true),
		VisibilityTimeout:   awscdk.Duration_Seconds(jsii.Number(visibility)),
		// SQS's longest: an event must outlive what it names, or a region
		// down longer than the queue keeps messages would lose them
		// without a trace, in no DLQ.
		RetentionPeriod: awscdk.Duration_Seconds(jsii.Number(config.MessageRetention.Seconds())),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           dlq,
			MaxReceiveCount: jsii.Number(float64(w.MaxReceiveCount)),
		},
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	// The statements CDK adds for S3 notifications check the bucket's ARN,
	// which names no account: a bucket of the same name in another account
	// (one deleted and taken) could send events that a worker would act on.
	q.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("EventsFromOwnBucketsOnly"),
		Effect:     awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("s3.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sqs:SendMessage"),
		Resources:  jsii.Strings(*q.QueueArn()),
		Conditions: &map[string]any{"StringNotEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
	}))
	return &workQueue{Queue: q, DLQ: dlq}
}

// watch sends the events of one watched bucket to its rules' queues:
// ObjectCreated and ObjectTagging always (a tag change is carried to the
// destinations, as S3 Replication carries it), ObjectRemoved for rules
// that propagate deletes,
// filtered by each rule's prefix and suffix. The bucket is not part of the
// stack; CDK's notification handler merges these configurations with
// whatever else the bucket already notifies.
func (s *regionStack) watch(w watchedBucket) {
	bucket := awss3.Bucket_FromBucketAttributes(s.Stack, jsii.String("Watched-"+w.Name), &awss3.BucketAttributes{
		BucketName: jsii.String(w.Name),
		Region:     jsii.String(s.plan.Region.Name),
	})
	for _, rule := range w.Rules {
		q := s.sourceQueue(rule)
		// CDK wants no filter rather than an empty one. S3 matches
		// filters against keys as its events encode them.
		var filters []*awss3.NotificationKeyFilter
		prefix, suffix := events.FilterPrefix(rule.Prefix), events.FilterSuffix(rule.Suffix)
		if prefix != "" || suffix != "" {
			f := &awss3.NotificationKeyFilter{}
			if prefix != "" {
				f.Prefix = jsii.String(prefix)
			}
			if suffix != "" {
				f.Suffix = jsii.String(suffix)
			}
			filters = append(filters, f)
		}
		dest := awss3notifications.NewSqsDestination(q.Queue)
		bucket.AddEventNotification(awss3.EventType_OBJECT_CREATED, dest, filters...)
		bucket.AddEventNotification(awss3.EventType_OBJECT_TAGGING, dest, filters...)
		if rule.Deletes {
			bucket.AddEventNotification(awss3.EventType_OBJECT_REMOVED, dest, filters...)
		}
	}
}

// sourceQueue returns the rule's queue, creating it on first use.
func (s *regionStack) sourceQueue(rule *config.Rule) *workQueue {
	if s.sourceQueues == nil {
		s.sourceQueues = map[string]*workQueue{}
	}
	q, ok := s.sourceQueues[rule.ID]
	if !ok {
		q = newWorkQueue(s, "Source-"+rule.ID, s.d.Config.SourceQueueName(rule.ID), sourceKind, rule.Compute)
		s.sourceQueues[rule.ID] = q
	}
	return q
}

// newTargetQueue receives the staging bucket's ObjectCreated events for the
// archives of rules with a destination in this region. The filter keeps a
// region that is also a source from seeing its own outgoing archives.
func (s *regionStack) newTargetQueue() *workQueue {
	q := newWorkQueue(s, "Target", s.d.Config.TargetQueueName(), targetKind, s.plan.Region.Compute)
	dest := awss3notifications.NewSqsDestination(q.Queue)
	for _, rule := range s.plan.TargetRules {
		s.staging.Bucket.AddEventNotification(awss3.EventType_OBJECT_CREATED, dest, &awss3.NotificationKeyFilter{
			Prefix: jsii.String(stagingPrefix(rule.ID)),
			Suffix: jsii.String(archiveSuffix),
		})
	}
	return q
}
