package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapplicationautoscaling"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// minute is the period of every scaling and alarm metric: SQS and Container
// Insights publish each minute. (A function: a package-level jsii value
// would start Node at import.)
func minute() awscdk.Duration { return awscdk.Duration_Minutes(jsii.Number(1)) }

// scaleOutSteps: how many tasks to add for a backlog per task above the
// target T, by how far above it is, in multiples of T.
var scaleOutSteps = []struct{ from, add int }{{0, 1}, {1, 2}, {3, 4}, {7, 8}}

// serviceMetric is a Container Insights metric of w's service.
func serviceMetric(s *regionStack, w *worker, name, statistic string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:  jsii.String("ECS/ContainerInsights"),
		MetricName: jsii.String(name),
		DimensionsMap: &map[string]*string{
			"ClusterName": w.Service.Cluster().ClusterName(),
			"ServiceName": w.Service.ServiceName(),
		},
		Statistic: jsii.String(statistic),
		Period:    minute(),
	})
}

// scalingExpressions are the metric math behind the three scaling alarms,
// with visible = messages waiting, inflight = messages held by tasks,
// running = running tasks, desired = the tasks the service asks for
// (missing while none run, hence FILL).
type scalingExpressions struct{ Backlog, Start, Idle, Spare string }

// newScalingExpressions takes the backlog per task to scale on and how many
// messages a task works on at once (0: more than the backlog target ever
// puts in flight).
func newScalingExpressions(target, capacity int) scalingExpressions {
	t := target
	running := "FILL(running, 0)"
	perTask := fmt.Sprintf("IF(%s < 1, 1, %s)", running, running)
	spare := fmt.Sprintf("(FILL(visible, 0) + FILL(inflight, 0)) / %s <= %g", perTask, float64(t)/2)
	if capacity > 0 {
		// A target task holds two archives: with every task full, any
		// backlog below the target reads as half busy, and scale-in
		// would stop tasks mid-archive (drained, released, received
		// again, a step towards the DLQ).
		spare += fmt.Sprintf(" AND FILL(inflight, 0) / %s <= %g", perTask, float64(capacity)/2)
	}
	desired := "FILL(desired, 0)"
	return scalingExpressions{
		// Backlog per task asked for, started or not: per running task,
		// tasks that cannot start (Spot capacity, a broken image) made
		// every minute's backlog look unserved, and the service climbed
		// to its maximum for a handful of messages. Only while a task
		// runs: Container Insights says nothing of the tasks asked for
		// while none runs, so a service whose tasks never start read as
		// asking for none, and stepped out minute after minute. Start
		// asks for one task then.
		Backlog: fmt.Sprintf("IF(%s < 1, 0, FILL(visible, 0) / IF(%s < 1, 1, %s))", running, desired, desired),
		// 1 while messages wait and no task runs: the service is asked
		// for exactly one task (scale from zero), which the backlog's
		// steps follow once it runs. Over two minutes: one running count
		// late or missing would set a busy service back to one task.
		// (Not on nothing in flight: a hybrid rule's function holds
		// messages through a burst, and the service never started.)
		Start: fmt.Sprintf("IF(FILL(visible, 0) > 0 AND %s < 1, 1, 0)", running),
		// 1 while nothing waits and nothing is in flight.
		Idle: "IF(FILL(visible, 0) + FILL(inflight, 0) == 0, 1, 0)",
		// 1 while more than one task runs and all the work, waiting and
		// in flight, would keep each task at most half busy.
		Spare: fmt.Sprintf("IF(%s > 1 AND %s, 1, 0)", running, spare),
	}
}

// addScaling scales w's service on its queue's backlog per task between the
// options' min and max: out in steps as the backlog exceeds the target, in
// by one task while tasks are half idle, and to zero (or min) once the
// queue has been empty with nothing in flight for scaleToZeroAfter.
func (s *regionStack) addScaling(id string, w *worker) {
	o := w.Options
	target := awsapplicationautoscaling.NewScalableTarget(s.Stack, jsii.String(id+"Scaling"), &awsapplicationautoscaling.ScalableTargetProps{
		ServiceNamespace:  awsapplicationautoscaling.ServiceNamespace_ECS,
		ScalableDimension: jsii.String("ecs:service:DesiredCount"),
		ResourceId: awscdk.Fn_Join(jsii.String("/"), jsii.Strings(
			"service", *w.Service.Cluster().ClusterName(), *w.Service.ServiceName())),
		MinCapacity: jsii.Number(float64(o.MinTasks)),
		MaxCapacity: jsii.Number(float64(o.MaxTasks)),
		// Application Auto Scaling's service-linked role for ECS (what
		// the ECS construct uses too), rather than a role of our own.
		Role: awsiam.Role_FromRoleArn(s.Stack, jsii.String(id+"ScalingRole"), jsii.String(fmt.Sprintf(
			"arn:%s:iam::%s:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
			*awscdk.Aws_PARTITION(), *awscdk.Aws_ACCOUNT_ID())), nil),
	})
	using := &map[string]awscloudwatch.IMetric{
		"visible":  w.Queue.Queue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		"inflight": w.Queue.Queue.MetricApproximateNumberOfMessagesNotVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: minute()}),
		"running":  serviceMetric(s, w, "RunningTaskCount", "Average"),
		"desired":  serviceMetric(s, w, "DesiredTaskCount", "Average"),
	}
	capacity := 0
	if w.Kind == targetKind {
		capacity = config.TargetArchivesAtOnce
	}
	expr := newScalingExpressions(o.BacklogPerTask, capacity)
	t := float64(o.BacklogPerTask)

	out := awsapplicationautoscaling.NewStepScalingAction(s.Stack, jsii.String(id+"ScaleOut"), &awsapplicationautoscaling.StepScalingActionProps{
		ScalingTarget:         target,
		AdjustmentType:        awsapplicationautoscaling.AdjustmentType_CHANGE_IN_CAPACITY,
		Cooldown:              minute(),
		MetricAggregationType: awsapplicationautoscaling.MetricAggregationType_MAXIMUM,
	})
	for i, step := range scaleOutSteps {
		tier := &awsapplicationautoscaling.AdjustmentTier{Adjustment: jsii.Number(float64(step.add)), LowerBound: jsii.Number(float64(step.from) * t)}
		if i+1 < len(scaleOutSteps) {
			tier.UpperBound = jsii.Number(float64(scaleOutSteps[i+1].from) * t)
		}
		out.AddAdjustment(tier)
	}
	s.scalingAlarm(id+"BacklogHigh", out, &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("%s: backlog per task above %d: scale out", w.Label(), o.BacklogPerTask)),
		Metric:             mathExpression(expr.Backlog, using),
		Threshold:          jsii.Number(t),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})

	// From zero: exactly the minimum, or one task.
	s.oneStep(id+"ScaleFromZero", target, awsapplicationautoscaling.AdjustmentType_EXACT_CAPACITY, max(1, o.MinTasks), 1, id+"Waiting", &awscloudwatch.AlarmProps{
		AlarmDescription:  jsii.String(w.Label() + ": messages waiting and no task running for 2 minutes: ask for one"),
		Metric:            mathExpression(expr.Start, using),
		EvaluationPeriods: jsii.Number(2),
		TreatMissingData:  awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	s.oneStep(id+"ScaleIn", target, awsapplicationautoscaling.AdjustmentType_CHANGE_IN_CAPACITY, -1, 2, id+"Spare", &awscloudwatch.AlarmProps{
		AlarmDescription:  jsii.String(w.Label() + ": tasks at most half busy for 3 minutes: remove one"),
		Metric:            mathExpression(expr.Spare, using),
		EvaluationPeriods: jsii.Number(3),
		TreatMissingData:  awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	idle := s.d.Options.ScaleToZeroAfter.Minutes()
	s.oneStep(id+"ScaleToZero", target, awsapplicationautoscaling.AdjustmentType_EXACT_CAPACITY, 0, 2, id+"Idle", &awscloudwatch.AlarmProps{
		AlarmDescription:  jsii.String(fmt.Sprintf("%s: queue empty, nothing in flight for %g minutes: scale to the minimum", w.Label(), idle)),
		Metric:            mathExpression(expr.Idle, using),
		EvaluationPeriods: jsii.Number(idle),
		// SQS stops publishing metrics for a queue idle for hours: no
		// data means no messages.
		TreatMissingData: awscloudwatch.TreatMissingData_BREACHING,
	})
}

// oneStep adds a policy of one adjustment, taken while its alarm's
// expression (props, compared > 0) is in alarm, at most once per cooldown
// minutes.
func (s *regionStack) oneStep(id string, target awsapplicationautoscaling.ScalableTarget, kind awsapplicationautoscaling.AdjustmentType,
	adjustment, cooldown int, alarmID string, props *awscloudwatch.AlarmProps) {
	action := awsapplicationautoscaling.NewStepScalingAction(s.Stack, jsii.String(id), &awsapplicationautoscaling.StepScalingActionProps{
		ScalingTarget:  target,
		AdjustmentType: kind,
		Cooldown:       awscdk.Duration_Minutes(jsii.Number(float64(cooldown))),
	})
	action.AddAdjustment(&awsapplicationautoscaling.AdjustmentTier{Adjustment: jsii.Number(float64(adjustment)), LowerBound: jsii.Number(0)})
	props.Threshold = jsii.Number(0)
	props.ComparisonOperator = awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD
	s.scalingAlarm(alarmID, action, props)
}

func mathExpression(expr string, using *map[string]awscloudwatch.IMetric) awscloudwatch.MathExpression {
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(expr),
		UsingMetrics: using,
		Period:       minute(),
	})
}

func (s *regionStack) scalingAlarm(id string, action awsapplicationautoscaling.StepScalingAction, props *awscloudwatch.AlarmProps) {
	alarm := awscloudwatch.NewAlarm(s.Stack, jsii.String(id), props)
	alarm.AddAlarmAction(awscloudwatchactions.NewApplicationScalingAction(action))
}
