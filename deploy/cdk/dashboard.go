package main

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/jsii-runtime-go"
)

const gib = 1 << 30

// newDashboard creates the dashboard <stack>-<region>: what the source
// workers achieve (archives, ratio, bytes saved, net benefit), the queues
// (depth, age, DLQ), the tasks and the errors, and what the target worker
// writes.
func newDashboard(s *regionStack) {
	d := awscloudwatch.NewDashboard(s.Stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName:   jsii.String(s.d.StackName(s.plan.Region.Name)),
		DefaultInterval: awscdk.Duration_Days(jsii.Number(1)),
	})
	settings := s.d.Config.Settings
	// The log groups this region's workers and backfill write to (made
	// before the dashboard), not those of roles it does not play.
	var groups []string
	for _, kind := range slices.Sorted(maps.Keys(s.logGroups)) {
		groups = append(groups, "`"+path.Join("/", settings.StackName, kind)+"`")
	}
	d.AddWidgets(awscloudwatch.NewTextWidget(&awscloudwatch.TextWidgetProps{
		Markdown: jsii.String(fmt.Sprintf("# xrc %s in %s\n%s. Alarms go to SNS topic `%s-alarms`; logs in %s.",
			settings.StackName, s.plan.Region.Name, roleSummary(s.plan), settings.StackName, strings.Join(groups, ", "))),
		Width:  jsii.Number(24),
		Height: jsii.Number(2),
	}))
	if s.plan.IsSource() {
		s.sourceWidgets(d)
	}
	var depth, age, dlq, tasks []awscloudwatch.IMetric
	functions := false
	for _, w := range s.workers {
		label := w.Label()
		depth = append(depth,
			w.Queue.Queue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Label: jsii.String(label + " waiting"), Statistic: jsii.String("Maximum"), Period: minute()}),
			w.Queue.Queue.MetricApproximateNumberOfMessagesNotVisible(&awscloudwatch.MetricOptions{Label: jsii.String(label + " in flight"), Statistic: jsii.String("Maximum"), Period: minute()}))
		age = append(age, w.Queue.Queue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Label: jsii.String(label), Statistic: jsii.String("Maximum"), Period: minute()}))
		dlq = append(dlq, w.Queue.DLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Label: jsii.String(label), Statistic: jsii.String("Maximum"), Period: minute()}))
		if w.Service != nil {
			running := serviceMetric(s, w, "RunningTaskCount", "Average")
			tasks = append(tasks, running.With(&awscloudwatch.MetricOptions{Label: jsii.String(label)}))
		}
		functions = functions || w.Function != nil
	}
	d.AddWidgets(
		graph("Queue depth (messages)", 8, depth...),
		graph("Oldest message (seconds)", 8, age...),
		graph("Dead-letter queues (messages)", 8, dlq...),
	)
	if len(tasks) > 0 {
		d.AddWidgets(
			graph("Running tasks", 8, tasks...),
			graph("Errors by kind (per minute)", 16, s.errorSearches()...),
		)
	} else {
		d.AddWidgets(graph("Errors by kind (per minute)", 24, s.errorSearches()...))
	}
	if functions {
		s.functionWidgets(d)
	}
	if s.plan.IsTarget() {
		s.targetWidgets(d)
	}
}

// sourceWidgets: per rule, archives staged and failed, compression ratio,
// bytes kept off the inter-region link, and the net benefit: transfer saved
// minus the source tasks' vCPU cost, at the config's prices.
func (s *regionStack) sourceWidgets(d awscloudwatch.Dashboard) {
	prices := s.d.Config.Settings.Prices
	vcpu := float64(s.d.Options.Source.CPU) / 1024
	// A task-hour: its vCPUs and its memory, as the learner and xrc
	// savings price them.
	taskHour := vcpu*prices.VCPUHour + float64(s.d.Options.Source.MemoryMB)/1024*prices.FargateGBHour
	var archives, ratio, saved, benefit, totals []awscloudwatch.IMetric
	var sumIn, sumOut, sumSaved, sumBenefit []string
	totalUsing := map[string]awscloudwatch.IMetric{}
	for i, w := range s.workers {
		if w.Rule == nil {
			continue
		}
		rule := w.Rule.ID
		results := []string{"staged", "failed", "interrupted"}
		if len(s.d.Config.DirectRegions(w.Rule)) > 0 {
			results = append(results, "relayed") // copies left to relay messages
		}
		for _, result := range results {
			archives = append(archives, xrcMetric(s, sourceKind, "xrc_source_archives_total", map[string]string{"rule": rule, "result": result}, "Sum").
				With(&awscloudwatch.MetricOptions{Label: jsii.String(rule + " " + result)}))
		}
		in := xrcMetric(s, sourceKind, "xrc_source_bytes_in_total", map[string]string{"rule": rule}, "Sum")
		out := xrcMetric(s, sourceKind, "xrc_source_bytes_out_total", map[string]string{"rule": rule}, "Sum")
		id := fmt.Sprintf("r%d", i)
		using := &map[string]awscloudwatch.IMetric{id + "in": in, id + "out": out}
		totalUsing[id+"in"], totalUsing[id+"out"] = in, out
		// What the rule's compute costs per period: task-hours on
		// Fargate, GB-seconds and requests on Lambda, both when hybrid.
		var cost []string
		if w.Service != nil {
			// Summed: Container Insights reports a service's running
			// tasks once a minute, and nothing while none runs, so the
			// sum over any period is its task-minutes (an average over
			// the time range, times the range, charged a service scaled
			// to zero for every hour it ran none).
			running := serviceMetric(s, w, "RunningTaskCount", "Sum")
			(*using)[id+"tasks"], totalUsing[id+"tasks"] = running, running
			cost = append(cost, fmt.Sprintf("FILL(%stasks, 0) * %.6g / 60", id, taskHour))
		}
		if w.Function != nil {
			fn := w.Function.Function
			ms := fn.MetricDuration(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: minute()})
			calls := fn.MetricInvocations(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: minute()})
			(*using)[id+"ms"], totalUsing[id+"ms"] = ms, ms
			(*using)[id+"calls"], totalUsing[id+"calls"] = calls, calls
			gb := float64(s.d.Config.Settings.Lambda.MemoryMB) / 1024
			cost = append(cost, fmt.Sprintf("FILL(%sms, 0) / 1000 * %s * %s + FILL(%scalls, 0) * %s / 1000000",
				id, decimal(gb), decimal(prices.LambdaGBSecond), id, decimal(prices.LambdaPerMillion)))
		}
		// Replicated and direct regions alike, each at its own price.
		_, crossed := w.Rule.Regions()
		savedExpr := fmt.Sprintf("(FILL(%sin, 0) - FILL(%sout, 0)) * %d", id, id, crossed)
		benefitExpr := fmt.Sprintf("(FILL(%sin, 0) - FILL(%sout, 0)) / %d * %g - (%s)", id, id, gib, s.d.Config.CrossingPrice(w.Rule), strings.Join(cost, " + "))
		// A gap where the rule staged nothing, not a ratio of 0.
		ratio = append(ratio, labelled(rule, fmt.Sprintf("%sin / %sout", id, id), using))
		saved = append(saved, labelled(rule, savedExpr, using))
		benefit = append(benefit, labelled(rule, benefitExpr, using))
		// Totals over the dashboard's time range, across rules.
		sumIn = append(sumIn, "FILL("+id+"in, 0)")
		sumOut = append(sumOut, "FILL("+id+"out, 0)")
		sumSaved = append(sumSaved, savedExpr)
		sumBenefit = append(sumBenefit, benefitExpr)
	}
	in, out := strings.Join(sumIn, " + "), strings.Join(sumOut, " + ")
	totals = append(totals,
		labelled("bytes archived", in, &totalUsing),
		labelled("bytes staged (crossing regions)", out, &totalUsing),
		labelled("ratio", fmt.Sprintf("(%s) / IF((%s) > 0, (%s), 1)", in, out, out), &totalUsing),
		labelled("bytes saved", strings.Join(sumSaved, " + "), &totalUsing),
		labelled("net benefit (USD)", strings.Join(sumBenefit, " + "), &totalUsing),
	)
	d.AddWidgets(awscloudwatch.NewSingleValueWidget(&awscloudwatch.SingleValueWidgetProps{
		Title:                jsii.String("Source totals over the time range"),
		Metrics:              &totals,
		SetPeriodToTimeRange: jsii.Bool(true),
		Width:                jsii.Number(24),
		Height:               jsii.Number(4),
	}))
	d.AddWidgets(
		graph("Archives per minute", 6, archives...),
		graph("Compression ratio", 6, ratio...),
		graph("Bytes saved per minute (all target regions)", 6, saved...),
		graph(fmt.Sprintf("Net benefit per minute, USD (transfer at each rule's crossing price, $%.4g/task-hour)", taskHour), 6, benefit...),
	)
	// What the adaptive choice does: the level mix per class, why levels
	// were chosen, and whether it is trading savings for throughput.
	d.AddWidgets(
		graph("Level mix: objects by rule, class and level", 12, s.search(sourceKind, "xrc_source_level_objects_total", "arm", "class", "rule")),
		graph("Level choices by reason", 6, s.search(sourceKind, "xrc_source_level_decisions_total", "why")),
		graph("Throughput mode (most levels below the best of any task) and mean CPU factor", 6,
			s.searchStat("Maximum", sourceKind, "xrc_source_throughput_steps", "rule"), s.searchStat("Average", sourceKind, "xrc_source_cpu_factor_ratio")),
	)
	// What closes batches tells which batch setting sets the latency;
	// what became of each object, and events no rule covers (said only at
	// debug: steady on keys meant to be copied, the rules and the
	// bucket's notifications disagree).
	d.AddWidgets(
		graph("Batches closed, by rule and reason", 12, s.search(sourceKind, "xrc_source_batches_total", "closed_by", "rule")),
		graph("Source objects, by rule and result", 6, s.search(sourceKind, "xrc_source_objects_total", "result", "rule")),
		graph("Events of keys no rule covers", 6, xrcMetric(s, sourceKind, "xrc_source_unmatched_events_total", nil, "Sum")),
	)
}

// functionWidgets: what the region's Lambda functions do: invocations,
// failed and throttled ones, how long they take against their timeout,
// and how many run at once against the reserved concurrency.
func (s *regionStack) functionWidgets(d awscloudwatch.Dashboard) {
	var calls, failures, duration, concurrent []awscloudwatch.IMetric
	for _, w := range s.workers {
		if w.Function == nil {
			continue
		}
		fn, label := w.Function.Function, w.Label()
		opts := func(suffix, statistic string) *awscloudwatch.MetricOptions {
			return &awscloudwatch.MetricOptions{Label: jsii.String(label + suffix), Statistic: jsii.String(statistic), Period: minute()}
		}
		calls = append(calls, fn.MetricInvocations(opts("", "Sum")))
		failures = append(failures, fn.MetricErrors(opts(" errors", "Sum")), fn.MetricThrottles(opts(" throttles", "Sum")))
		duration = append(duration, fn.MetricDuration(opts(" max", "Maximum")), fn.MetricDuration(opts(" p50", "p50")))
		concurrent = append(concurrent, fn.Metric(jsii.String("ConcurrentExecutions"), opts("", "Maximum")))
	}
	l := s.d.Config.Settings.Lambda
	d.AddWidgets(
		graph("Lambda invocations", 6, calls...),
		graph("Lambda errors and throttles", 6, failures...),
		graph(fmt.Sprintf("Lambda duration (ms; timeout %v)", l.Timeout.D()), 6, duration...),
		graph(fmt.Sprintf("Lambda concurrent executions (reserved %d)", l.ReservedConcurrency), 6, concurrent...),
	)
}

func (s *regionStack) targetWidgets(d awscloudwatch.Dashboard) {
	var bytes, latency []awscloudwatch.IMetric
	for _, rule := range s.plan.TargetRules {
		bytes = append(bytes, xrcMetric(s, targetKind, "xrc_target_bytes_total", map[string]string{"rule": rule.ID}, "Sum").
			With(&awscloudwatch.MetricOptions{Label: jsii.String(rule.ID)}))
		for _, p := range []string{"p50", "p99"} {
			latency = append(latency, xrcMetric(s, targetKind, "xrc_target_replication_latency_seconds", map[string]string{"rule": rule.ID}, p).
				With(&awscloudwatch.MetricOptions{Label: jsii.String(rule.ID + " " + p)}))
		}
	}
	d.AddWidgets(
		graph("Target archives by result", 6, s.search(targetKind, "xrc_target_archives_total", "result")),
		graph("Target objects by rule and result", 6, s.search(targetKind, "xrc_target_objects_total", "result", "rule")),
		graph("Target bytes written", 6, bytes...),
		graph("Target verify failures", 6, xrcMetric(s, targetKind, "xrc_target_verify_failures_total", nil, "Sum")),
		// From the source's write to the copy here: S3 Replication's
		// delay and every worker's, which no alarm on a queue sees.
		graph("Replication latency, source write to copy (s, bucket bounds)", 6, latency...),
	)
}

func (s *regionStack) errorSearches() []awscloudwatch.IMetric {
	var out []awscloudwatch.IMetric
	if s.plan.IsSource() {
		out = append(out, s.search(sourceKind, "xrc_source_errors_total", "kind"))
	}
	if s.plan.IsTarget() {
		out = append(out, s.search(targetKind, "xrc_target_errors_total", "kind"))
	}
	return out
}

// search finds every series of an EMF metric whatever its label values
// (error kinds, results), in this region.
func (s *regionStack) search(service, name string, labels ...string) awscloudwatch.IMetric {
	return s.searchStat("Sum", service, name, labels...)
}

// searchStat is search with another statistic: gauges (a task's CPU
// factor) are not to be added up over the tasks that report them.
func (s *regionStack) searchStat(stat, service, name string, labels ...string) awscloudwatch.IMetric {
	// Each name quoted: CloudWatch wants quotes around a name with other
	// than letters and digits (a stack name's '-', a label's '_').
	schema := append([]string{s.emfNamespace(), "Region", "Service"}, labels...)
	for i, n := range schema {
		schema[i] = strconv.Quote(n)
	}
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(fmt.Sprintf(`SEARCH('{%s} MetricName="%s" Region="%s" Service="%s"', '%s', 60)`,
			strings.Join(schema, ","), name, s.plan.Region.Name, service, stat)),
		UsingMetrics: &map[string]awscloudwatch.IMetric{},
		Period:       minute(),
	})
}

func labelled(label, expr string, using *map[string]awscloudwatch.IMetric) awscloudwatch.IMetric {
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(expr),
		UsingMetrics: using,
		Label:        jsii.String(label),
		Period:       minute(),
	})
}

// decimal writes x without an exponent: metric math takes no 1e-05.
func decimal(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func graph(title string, width float64, metrics ...awscloudwatch.IMetric) awscloudwatch.GraphWidget {
	return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
		Title:  jsii.String(title),
		Left:   &metrics,
		Width:  jsii.Number(width),
		Height: jsii.Number(6),
	})
}
