package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"
)

// Alarm timing, in one-minute periods.
const (
	failingToStartMinutes = 10 // tasks wanted but not running
	atMaxMinutes          = 15 // service pinned at its maximum
	oldestMessagePeriods  = 5  // age above the threshold this long
)

// alarms is a region's alarm topic and the alarms publishing to it.
type alarms struct {
	s      *regionStack
	Topic  awssns.Topic
	action awscloudwatchactions.SnsAction
	All    []awscloudwatch.Alarm
}

// newAlarms creates the topic <stack>-alarms, encrypted, TLS only, with the
// alarmEmail subscriptions (each must be confirmed from the email AWS sends).
func newAlarms(s *regionStack) *alarms {
	topic := awssns.NewTopic(s.Stack, jsii.String("Alarms"), &awssns.TopicProps{
		TopicName:   jsii.String(s.d.Config.Settings.StackName + "-alarms"),
		DisplayName: jsii.String("xrc " + s.d.Config.Settings.StackName + " alarms (" + s.plan.Region.Name + ")"),
		MasterKey:   s.keys.Messaging,
		EnforceSSL:  jsii.Bool(true),
	})
	// EnforceSSL gives the topic a policy of its own, which replaces the
	// default one that lets the account's alarms publish: without this
	// statement every alarm would fire into a refused Publish.
	topic.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AlarmsPublish"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  jsii.Strings(*topic.TopicArn()),
		Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
	}))
	// The statement CDK adds for an EventBridge rule's target (a failed
	// backfill task) names no rule: EventBridge delivers to other
	// accounts' targets, so any account's rule could mail the alarm list.
	topic.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("EventsFromOwnRulesOnly"),
		Effect:     awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("events.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  jsii.Strings(*topic.TopicArn()),
		// The rule's ARN, which EventBridge names in every delivery to a
		// target (AWS's examples condition on it).
		Conditions: &map[string]any{"ArnNotLike": map[string]any{"aws:SourceArn": awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/*"), nil)}},
	}))
	for _, e := range s.d.Options.AlarmEmails {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(e), nil))
	}
	return &alarms{s: s, Topic: topic, action: awscloudwatchactions.NewSnsAction(topic)}
}

// add creates an alarm that notifies the topic when it fires and when it
// clears.
func (a *alarms) add(id, name string, props *awscloudwatch.AlarmProps) awscloudwatch.Alarm {
	alarm := a.addFiring(id, name, props)
	alarm.AddOkAction(a.action)
	return alarm
}

// addFiring creates an alarm that notifies the topic only when it fires:
// for an event (more messages dead-lettered), whose clearing a minute later
// says nothing.
func (a *alarms) addFiring(id, name string, props *awscloudwatch.AlarmProps) awscloudwatch.Alarm {
	props.AlarmName = jsii.String(a.s.d.StackName(a.s.plan.Region.Name) + "-" + name)
	alarm := awscloudwatch.NewAlarm(a.s.Stack, jsii.String(id), props)
	alarm.AddAlarmAction(a.action)
	a.All = append(a.All, alarm)
	return alarm
}

// watchQueue adds the alarms of a worker whatever its compute: its DLQ
// holds messages, more arrived in it, its queue's oldest message is too
// old, and (target) an archive failed verification.
func (a *alarms) watchQueue(id string, w *worker) {
	name := alarmName(w)
	a.add(id+"DlqNotEmpty", name+"-dlq-not-empty", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s: messages in the dead-letter queue (received %d times without success); inspect and redrive them",
			w.Label(), a.s.d.Config.Settings.Worker.MaxReceiveCount)),
		Metric:             w.Queue.DLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	// The alarm above stays in ALARM while the DLQ holds anything, so it
	// says nothing of messages failing since. This one is in ALARM each
	// minute the DLQ grew, so it notifies whenever the DLQ grows again
	// after a minute without arrivals. Visible and in-flight together: someone reading the
	// DLQ moves messages between the two, which is no arrival; a redrive
	// out of it makes the sum fall. REPEAT, not 0, for a minute SQS did
	// not report: a gap would otherwise read as a rise from nothing.
	a.addFiring(id+"DlqArrivals", name+"-dlq-arrivals", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s: more messages reached the dead-letter queue (received %d times without success); the workers logged each at error level (bound for the DLQ, or an invalid message) with its cause",
			w.Label(), a.s.d.Config.Settings.Worker.MaxReceiveCount)),
		Metric: mathExpression("DIFF(FILL(visible, REPEAT) + FILL(inFlight, REPEAT))", &map[string]awscloudwatch.IMetric{
			"visible":  w.Queue.DLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
			"inFlight": w.Queue.DLQ.MetricApproximateNumberOfMessagesNotVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	age := a.s.d.Options.OldestMessageAge
	a.add(id+"OldestMessage", name+"-oldest-message", &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("%s: oldest queued message older than %v: the workers fall behind or fail (or one message's work takes that long: SQS counts messages in flight)", w.Label(), age)),
		Metric:             w.Queue.Queue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		Threshold:          jsii.Number(age.Seconds()),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(oldestMessagePeriods),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	if w.Kind == targetKind {
		a.add(id+"VerifyFailures", name+"-verify-failures", &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String("target: an archive failed verification (an object's size or SHA-256 did not match its manifest): nothing unverified was written (objects before the bad member may have been, each verified); its message is retried, then dead-lettered"),
			Metric:             xrcMetric(a.s, targetKind, "xrc_target_verify_failures_total", nil, "Sum"),
			Threshold:          jsii.Number(0),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
			EvaluationPeriods:  jsii.Number(1),
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
	}
}

// startFailureExpression is 1 while fewer tasks run than the service
// asks for, or messages wait and no task runs.
const startFailureExpression = "IF(FILL(desired, 0) - FILL(running, 0) >= 1 OR (FILL(visible, 0) > 0 AND FILL(running, 0) < 1), 1, 0)"

// watchService adds the alarms of a worker's ECS service: its tasks fail
// to start, it is pinned at its maximum task count.
func (a *alarms) watchService(id string, w *worker) {
	name := alarmName(w)
	// Container Insights reports no task counts while none runs: a
	// service scaled from zero whose tasks all fail to start (Spot
	// capacity, a broken image) showed no gap between desired and running.
	// Messages waiting with no task running say it there.
	a.add(id+"FailingToStart", name+"-tasks-failing-to-start", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s: fewer tasks running than desired, or messages waiting and no task running, for %d minutes (image pull, health check, Spot capacity, permissions)",
			w.Label(), failingToStartMinutes)),
		Metric: mathExpression(startFailureExpression, &map[string]awscloudwatch.IMetric{
			"desired": serviceMetric(a.s, w, "DesiredTaskCount", "Minimum"),
			"running": serviceMetric(a.s, w, "RunningTaskCount", "Maximum"),
			"visible": w.Queue.Queue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Minimum"), Period: minute()}),
		}),
		Threshold:          jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(failingToStartMinutes),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	if w.Options.MinTasks >= w.Options.MaxTasks {
		// A fixed task count is always at its maximum: an alarm that
		// never clears teaches the topic's readers to ignore it.
		return
	}
	a.add(id+"AtMaxCapacity", name+"-at-max-capacity", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s: at its maximum of %d tasks for %d minutes; raise the maximum if the backlog keeps growing (unless tasks-failing-to-start fires too: then tasks cannot start, and more would not help)",
			w.Label(), w.Options.MaxTasks, atMaxMinutes)),
		Metric:             serviceMetric(a.s, w, "DesiredTaskCount", "Minimum"),
		Threshold:          jsii.Number(float64(w.Options.MaxTasks)),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(atMaxMinutes),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}

// Exit codes of xrc backfill that are no failure (cmd/xrc): done; another
// run of the rule holds the checkpoint (a schedule overlapping a long
// run); stopped by a signal (whoever stopped it knows), resumed by the
// next run. Not so a Spot interruption (stopCode SpotInterruption, exit
// 130 too): a backfill run by hand ends there, and nobody would know.
var backfillFine = []any{0, 4, 130}

// watchBackfill reports, to the alarm topic, a backfill task that stopped
// without success (its exit code, ECS's reason) or could not start, and
// alarms when its schedule cannot start it at all. The schedule is the net
// for lost events: failing unheard, it catches none.
func (a *alarms) watchBackfill(id string, b *backfill, cluster awsecs.Cluster) {
	failed := awsevents.NewRule(a.s.Stack, jsii.String(id+"Failed"), &awsevents.RuleProps{
		Description: jsii.String(fmt.Sprintf("xrc backfill of rule %s stopped without success: to the alarm topic", b.Rule.ID)),
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings("aws.ecs"),
			DetailType: jsii.Strings("ECS Task State Change"),
			Detail: &map[string]any{
				"clusterArn": []any{cluster.ClusterArn()},
				"group":      []any{"family:" + *b.Task.Family()},
				"lastStatus": []any{"STOPPED"},
				"$or": []any{
					map[string]any{"containers": map[string]any{"exitCode": []any{map[string]any{"anything-but": backfillFine}}}},
					map[string]any{"stopCode": []any{"TaskFailedToStart", "SpotInterruption"}},
				},
			},
		},
	})
	failed.AddTarget(awseventstargets.NewSnsTopic(a.Topic, &awseventstargets.SnsTopicProps{
		Message: awsevents.RuleTargetInput_FromText(jsii.String(fmt.Sprintf(
			"xrc backfill of rule %s stopped without success: exit code %s (1: failed), %s. Task %s; its log stream is under the task's id. Nothing is lost: run it again (it resumes from its checkpoint) once the cause is fixed.",
			b.Rule.ID, *awsevents.EventField_FromPath(jsii.String("$.detail.containers[0].exitCode")),
			*awsevents.EventField_FromPath(jsii.String("$.detail.stoppedReason")), *awsevents.EventField_FromPath(jsii.String("$.detail.taskArn"))))),
	}))
	// The report itself can fail to reach the topic (a key or topic
	// policy): then only this alarm, from CloudWatch, says so.
	a.add(id+"ReportFailing", "backfill-"+b.Rule.ID+"-report-failing", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("EventBridge could not deliver the report of a failed xrc backfill of rule %s to the alarm topic "+
			"(the topic's policy or its KMS key's): a backfill task failed and its report was lost; look for stopped tasks of the rule's backfill", b.Rule.ID)),
		Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/Events"), MetricName: jsii.String("FailedInvocations"),
			DimensionsMap: &map[string]*string{"RuleName": failed.RuleName()}, Statistic: jsii.String("Sum"), Period: minute()}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	if b.Schedule == nil {
		return
	}
	a.add(id+"ScheduleFailing", "backfill-"+b.Rule.ID+"-schedule-failing", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("the schedule of xrc backfill of rule %s could not start its task (permissions, the task definition, the cluster): "+
			"the hourly net for lost events is not running", b.Rule.ID)),
		Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/Events"), MetricName: jsii.String("FailedInvocations"),
			DimensionsMap: &map[string]*string{"RuleName": b.Schedule.RuleName()}, Statistic: jsii.String("Sum"), Period: minute()}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	// The net catching writes quietly would hide what lost them: a
	// notification configuration replaced by hand stops deletes and tag
	// changes too, which a backfill does not send.
	a.addFiring(id+"LateWrites", "backfill-"+b.Rule.ID+"-late-writes", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("a scheduled xrc backfill of rule %s sent writes made after the last complete run began and over half an hour old, "+
			"which their S3 events should have delivered: the events were lost (the source bucket's notification configuration replaced, the queue purged), "+
			"their messages failed (the DLQ alarm), or the pipeline is that far behind (the oldest-message alarm). The run's log says how many; "+
			"check the bucket's event notifications. Deletes and tag changes are not re-sent by a backfill", b.Rule.ID)),
		Metric:             xrcMetric(a.s, backfillKind, "xrc_backfill_late", map[string]string{"rule": b.Rule.ID}, "Maximum"),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	// Multipart uploads' writes look late when they only just completed
	// (S3 dates them when the upload began): in two complete runs in a
	// row, they are not that, and a bucket of large files is watched too.
	// The run counts the runs in a row (its checkpoint keeps the count),
	// so one datapoint says it whatever the schedule: a daily cron's runs
	// fall in no two consecutive periods of any alarm.
	a.addFiring(id+"LateMultipartWrites", "backfill-"+b.Rule.ID+"-late-multipart-writes", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("two scheduled xrc backfill runs of rule %s in a row sent multipart uploads' writes made after the last complete run began and long enough ago "+
			"that their S3 events should have delivered them: the events were lost (the source bucket's notification configuration replaced, the queue purged), "+
			"their messages failed (the DLQ alarm), or the pipeline is that far behind. Check the bucket's event notifications; deletes and tag changes are not re-sent by a backfill", b.Rule.ID)),
		Metric:             xrcMetric(a.s, backfillKind, "xrc_backfill_late_multipart_runs", map[string]string{"rule": b.Rule.ID}, "Maximum"),
		Threshold:          jsii.Number(2),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}

// watchReplication alarms when S3 Replication of a rule's archives to a
// target region fails (OperationsFailedReplication, the rule's replication
// metrics): S3 does not retry it.
func (a *alarms) watchReplication(staging *string, r replication) {
	a.add("ReplicationFailed-"+r.ID(), "replication-failed-"+r.ID(), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("S3 Replication of rule %s's archives to %s failed, and S3 does not retry it: their objects do not arrive "+
			"and no queue holds them. Fix the cause (permissions, the target's staging bucket or KMS key), then replicate the archives again "+
			"with S3 Batch Replication (replication status FAILED), or else run xrc backfill for the rule (it re-sends writes, not deletes) and then delete the failed archives' versions: "+
			"lifecycle does not expire an archive whose replication failed, so it stays in the source's staging, billed, until replicated or deleted. "+
			"A rule that propagates deletes has 28 days: the targets do not write older writes (a delete's tombstone lasts 30 days), and xrc backfill must send them", r.Rule.ID, r.To.Name)),
		Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/S3"), MetricName: jsii.String("OperationsFailedReplication"),
			DimensionsMap: &map[string]*string{"SourceBucket": staging, "DestinationBucket": jsii.String(r.To.StagingBucket), "RuleId": jsii.String(r.ID())},
			Statistic:     jsii.String("Sum"), Period: awscdk.Duration_Minutes(jsii.Number(5))}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	// Slow, not failed: archives PENDING for hours raise no failure, and
	// no queue holds their objects (the target's receives nothing).
	age := a.s.d.Options.OldestMessageAge
	a.add("ReplicationSlow-"+r.ID(), "replication-slow-"+r.ID(), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("S3 Replication of rule %s's archives to %s takes over %v: their objects are late and no queue shows it. "+
			"The staging bucket's replication metrics (OperationsPendingReplication, BytesPendingReplication) say how much waits; "+
			"AWS Health, the target's staging bucket and KMS key say why", r.Rule.ID, r.To.Name, age)),
		Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/S3"), MetricName: jsii.String("ReplicationLatency"),
			DimensionsMap: &map[string]*string{"SourceBucket": staging, "DestinationBucket": jsii.String(r.To.StagingBucket), "RuleId": jsii.String(r.ID())},
			Statistic:     jsii.String("Maximum"), Period: awscdk.Duration_Minutes(jsii.Number(5))}),
		Threshold:          jsii.Number(age.Seconds()),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(2),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}

// watchLogs alarms when CloudWatch refuses the metrics a worker kind's log
// group carries (EMF lines it cannot parse or validate): every alarm on
// xrc's own metrics treats missing data as fine, so lost lines would
// silence them, and only this says so. Called once the groups are made.
func (a *alarms) watchLogs() {
	kinds := make([]string, 0, len(a.s.logGroups))
	for kind := range a.s.logGroups {
		if kind != "cdk" { // CDK's own functions write no metrics
			kinds = append(kinds, kind)
		}
	}
	slices.Sort(kinds)
	for _, kind := range kinds {
		group := a.s.logGroups[kind].LogGroupName()
		logs := func(name string) awscloudwatch.IMetric {
			return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/Logs"), MetricName: jsii.String(name),
				DimensionsMap: &map[string]*string{"LogGroupName": group}, Statistic: jsii.String("Sum"), Period: minute()})
		}
		a.addFiring("EmfRejected-"+kind, strings.TrimPrefix(kind, "xrc-")+"-metrics-rejected", &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String(fmt.Sprintf("CloudWatch could not parse or validate metric (EMF) lines in log group /%s/%s: those metrics are lost, and the alarms on them (verify failures, late writes) cannot fire; the log group's lines at the time show which", a.s.d.Config.Settings.StackName, kind)),
			Metric: mathExpression("FILL(invalid, 0) + FILL(unparsed, 0)", &map[string]awscloudwatch.IMetric{
				"invalid":  logs("EMFValidationErrors"),
				"unparsed": logs("EMFParsingErrors"),
			}),
			Threshold:          jsii.Number(0),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
			EvaluationPeriods:  jsii.Number(1),
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
	}
}

// alarmName names a worker in its alarms' names.
func alarmName(w *worker) string {
	if w.Rule != nil {
		return "source-" + w.Rule.ID
	}
	return "target"
}

// watchFunction adds a worker's function alarms: invocations failing whole
// (a crash, a timeout, an init error; messages the handler reports are
// not errors) and throttled invocations (the reserved concurrency is too
// low for the mapping). The queue's alarms (DLQ, oldest message) come with
// the worker whatever its compute (watchQueue).
func (a *alarms) watchFunction(id string, w *worker) {
	name := alarmName(w)
	fn := w.Function.Function
	a.add(id+"FunctionErrors", name+"-function-errors", &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("%s: Lambda invocations failed whole (crash, timeout, init error, not started: the config unreadable) in 3 of 5 minutes; their batches come back after the visibility timeout", w.Label())),
		Metric:             fn.MetricErrors(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: minute()}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(5),
		DatapointsToAlarm:  jsii.Number(3),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	a.add(id+"FunctionThrottles", name+"-function-throttles", &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("%s: Lambda invocations throttled for 5 minutes: raise settings.lambda.reservedConcurrency (%d) or the account's concurrency",
			w.Label(), a.s.d.Config.Settings.Lambda.ReservedConcurrency)),
		Metric:             fn.MetricThrottles(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: minute()}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(5),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}

// xrcMetric is one of the workers' EMF metrics: namespace the stack name, dimensions
// Region and Service plus the metric's own labels.
func xrcMetric(s *regionStack, service, name string, labels map[string]string, statistic string) awscloudwatch.Metric {
	dims := map[string]*string{"Region": jsii.String(s.plan.Region.Name), "Service": jsii.String(service)}
	for k, v := range labels {
		dims[k] = jsii.String(v)
	}
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(s.emfNamespace()),
		MetricName:    jsii.String(name),
		DimensionsMap: &dims,
		Statistic:     jsii.String(statistic),
		Period:        minute(),
	})
}

// emfNamespace is where the workers' EMF lines put their metrics: the stack
// name, so two deployments in one account and region keep theirs apart.
func (s *regionStack) emfNamespace() string { return s.d.Config.Settings.StackName }
