package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/stats"
)

const savingsUsage = "xrc savings -config FILE|ssm:///name [-rule ID] [-since 7d] [--json]"

// savingsReport is what `xrc savings --json` prints.
type savingsReport struct {
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Prices config.Prices `json:"prices"`
	// TransferByRegion: regions with a transfer price of their own
	// (config Region.TransferPerGB), which their lines are charged.
	TransferByRegion map[string]float64 `json:"transferPerGBByRegion,omitempty"`
	Lines            []stats.Line       `json:"lines"`
	// Compute compares, per rule, its workers on Fargate Spot and on
	// Lambda at the volume of the period.
	Compute []computeLine `json:"compute"`
}

// computeLine is a month of a rule's volume (the period's, scaled to 30
// days) priced on Fargate Spot and on Lambda (adaptive.ComputeModel), with
// the CPU BenchmarkHandlerCPU measured per GiB and per object.
type computeLine struct {
	Rule    string `json:"rule"`
	Compute string `json:"compute"` // what the rule runs on now
	// PeriodHours is the report's period, scaled to a month; DataHours
	// the part of it from the rule's first hour with data (dataSpan).
	PeriodHours float64 `json:"periodHours"`
	DataHours   float64 `json:"dataHours"`
	// What the report charged a vCPU-hour: compressing where the rule's
	// source runs, and decoding, summed over the regions it delivers to
	// (adaptive.RuleModel).
	CompressVCPUHour float64 `json:"compressPerVCPUHour"`
	DecodeVCPUHour   float64 `json:"decodePerVCPUHour"`
	Objects          float64 `json:"objectsPerMonth"`
	GiB              float64 `json:"gibPerMonth"`
	CPUSeconds       float64 `json:"cpuSecondsPerMonth"`
	FargateSpot      float64 `json:"fargateSpotPerMonth"` // prices.fixedPerMonth included
	Lambda           float64 `json:"lambdaPerMonth"`
	Cheaper          string  `json:"cheaper"` // fargate or lambda
	// BreakEvenGiB is the monthly input, of the rule's mean object size,
	// from which Fargate Spot costs less (0: never).
	BreakEvenGiB float64 `json:"breakEvenGiBPerMonth"`
	// StagingDays: about how long the source region keeps the rule's
	// archives (stats.StagingDays), which the staging column charges.
	StagingDays int `json:"stagingDays"`
}

// dataSpan is the part of [from, to] a rule's statistics cover, from the
// start of its first hour with data (at least an hour; no data: the whole
// period). The month is scaled over the whole period all the same (a rule
// quiet at first is not a rule deployed since); the report says when its
// data covers much less, for a rule deployed since to be run again with a
// shorter -since.
func dataSpan(hs []stats.Hourly, from, to time.Time) time.Duration {
	first := to
	for _, h := range hs {
		if h.Hour.Before(first) {
			first = h.Hour
		}
	}
	if first.Equal(to) {
		return to.Sub(from)
	}
	if first.Before(from) {
		first = from
	}
	return min(to.Sub(from), max(to.Sub(first), time.Hour))
}

// compareCompute prices a month of l's volume (a rule's total over
// period) both ways.
func compareCompute(cfg *config.Config, r *config.Rule, l stats.Line, model adaptive.Model, period time.Duration) computeLine {
	p, lam := cfg.Settings.Prices, cfg.Settings.Lambda
	month := float64(30*24*time.Hour) / float64(period)
	v := adaptive.Volume{Objects: float64(l.Objects) * month, Bytes: float64(l.BytesIn) * month}
	// An invocation takes what the batching window gathers at a volume,
	// up to the batch size: one object each at a trickle.
	perInvocation := func(objectsPerMonth float64) float64 {
		perWindow := objectsPerMonth / float64(30*24*time.Hour) * float64(lam.BatchingWindow.D())
		return min(max(perWindow, 1), float64(max(lam.BatchSize, 1)))
	}
	m := adaptive.ComputeModel{VCPUHour: p.VCPUHour, FargateGBHour: p.FargateGBHour, TaskVCPU: 1, TaskGB: adaptive.FargateGBPerVCPU, FixedPerMonth: p.FixedPerMonth,
		LambdaGBSecond: p.LambdaGBSecond, LambdaPerMillion: p.LambdaPerMillion, LambdaMemoryMB: lam.MemoryMB,
		ObjectsPerInvocation: perInvocation(v.Objects), Utilization: 1}
	delivered, _ := r.Regions()
	perGiB, perObject := adaptive.WorkerCPU(delivered)
	if l.BytesIn > 0 {
		// At least what the period's encoding and decoding took alone
		// (the figures above are of the levels the demo's corpus
		// learns; a rule settled on level 19 spends tens of times more).
		perGiB = max(perGiB, l.CPUSeconds/(float64(l.BytesIn)/adaptive.GiB))
	}
	hour := float64(time.Hour / time.Second)
	c := computeLine{Rule: r.ID, Compute: string(r.Compute), CompressVCPUHour: model.VCPUSecond * hour, DecodeVCPUHour: model.DecodeVCPUSecond * hour,
		Objects: v.Objects, GiB: v.Bytes / adaptive.GiB, CPUSeconds: v.CPUSeconds(perGiB, perObject)}
	c.FargateSpot, c.Lambda = m.Fargate(c.CPUSeconds), m.Lambda(c.CPUSeconds, v.Objects)
	c.Cheaper = string(config.ComputeLambda)
	if c.FargateSpot < c.Lambda {
		c.Cheaper = string(config.ComputeFargate)
	}
	if l.Objects > 0 && l.BytesIn > 0 { // empty objects have no size to price a volume of bytes at
		c.BreakEvenGiB = breakEven(m, float64(l.BytesIn)/float64(l.Objects), perGiB, perObject, perInvocation) / adaptive.GiB
	}
	return c
}

// breakEven is m.BreakEven with the invocations priced at the volume of
// the break-even itself, not at today's: a fixed point, as the objects an
// invocation takes grow with the volume (and with them the volume at which
// Fargate wins). 0 when Fargate never wins.
func breakEven(m adaptive.ComputeModel, size, perGiB, perObject float64, perInvocation func(objectsPerMonth float64) float64) float64 {
	b := 0.0
	for range 50 {
		next, objects := m.BreakEven(size, perGiB, perObject)
		if math.IsInf(next, 1) {
			return 0
		}
		if math.Abs(next-b) <= 1e-9*next {
			break
		}
		b, m.ObjectsPerInvocation = next, perInvocation(objects)
	}
	return b
}

// savings reports, per rule and content class, what xrc moved and saved,
// from the statistics the source workers keep in each source region's
// table.
func savings(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("xrc savings", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("config", env.Getenv("XRC_CONFIG"), "config file or ssm:///name (env XRC_CONFIG)")
	ruleID := fs.String("rule", "", "only this rule")
	sinceFlag := fs.String("since", "7d", "how far back: a Go duration or a number of days (7d); at most 35d, what the table keeps")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, savingsUsage, "config", *cfgPath); err != nil {
		return err
	}
	since, err := parseSince(*sinceFlag)
	if err != nil {
		return fmt.Errorf("%w: -since: %v", ErrUsage, err)
	}
	cfg, err := loadConfig(ctx, *cfgPath, env)
	if err != nil {
		return err
	}
	now := env.Now()
	// Statistics are kept by the hour: the report covers, and the compute
	// comparison scales to a month, every hour it reads, the first one
	// whole.
	rep := savingsReport{From: now.Add(-since).UTC().Truncate(time.Hour), To: now.UTC(), Prices: cfg.Settings.Prices}
	for _, reg := range cfg.Settings.Regions {
		if reg.TransferPerGB > 0 {
			if rep.TransferByRegion == nil {
				rep.TransferByRegion = map[string]float64{}
			}
			rep.TransferByRegion[reg.Name] = reg.TransferPerGB
		}
	}
	stores := map[string]*stats.Store{} // by source region: the table is regional
	found := false
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		if *ruleID != "" && r.ID != *ruleID {
			continue
		}
		found = true
		st := stores[r.SourceRegion]
		if st == nil {
			aws, err := awsapi.Load(ctx, r.SourceRegion)
			if err != nil {
				return err
			}
			st = stats.New(dynamodb.NewFromConfig(aws), cfg.TableName(), env.Now)
			stores[r.SourceRegion] = st
		}
		hs, err := st.Since(ctx, r.ID, rep.From)
		if err != nil {
			return tableError(err, cfg, r.SourceRegion)
		}
		fleet, err := st.Fleet(ctx)
		if err != nil {
			return tableError(err, cfg, r.SourceRegion)
		}
		choices, err := st.Choices(ctx, r.ID)
		if err != nil {
			return tableError(err, cfg, r.SourceRegion)
		}
		p := prices(cfg, r, fleet)
		delivered, _ := r.Regions()
		lines := stats.Summarise(r.ID, delivered, hs, p, choices)
		rep.Lines = append(rep.Lines, lines...)
		period := rep.To.Sub(rep.From)
		c := compareCompute(cfg, r, lines[len(lines)-1], p.Model, period)
		c.PeriodHours, c.DataHours = period.Hours(), dataSpan(hs, rep.From, rep.To).Hours()
		c.StagingDays = stats.StagingDays(cfg, r)
		rep.Compute = append(rep.Compute, c)
	}
	if !found {
		return fmt.Errorf("%w: no rule %q in %s", ErrUsage, *ruleID, *cfgPath)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printSavings(env, rep)
	return nil
}

// prices are what rule r's report charges: its cost model, as the source
// workers' learner prices it, with the fleet's decoding CPU.
func prices(cfg *config.Config, r *config.Rule, fleet stats.Fleet) stats.Prices {
	m := adaptive.RuleModel(cfg, r)
	m.DecodeSeconds = fleet.DecodeSeconds
	return stats.Prices{Model: m, FixedPerMonth: cfg.Settings.Prices.FixedPerMonth, Requests: stats.RequestPrices(cfg.Settings.Prices), Deletes: r.Deletes,
		StagingPerGiB: stats.StagingPrice(cfg.Settings.Prices, m.Regions, stats.StagingDays(cfg, r)), Direct: len(cfg.DirectRegions(r))}
}

func printSavings(env Env, rep savingsReport) {
	transfer := "$" + strconv.FormatFloat(rep.Prices.TransferPerGB, 'f', -1, 64) + "/GB"
	for _, name := range slices.Sorted(maps.Keys(rep.TransferByRegion)) {
		transfer += fmt.Sprintf(" (to %s $%s/GB)", name, strconv.FormatFloat(rep.TransferByRegion[name], 'f', -1, 64))
	}
	fmt.Fprintf(env.Stdout, "xrc savings, %s\nprices: transfer %s, Fargate Spot vCPU $%s/hour and memory $%s/GB-hour, Lambda $%s/GB-second, fixed %s/month\n",
		stats.Period(rep.From, rep.To), transfer,
		strconv.FormatFloat(rep.Prices.VCPUHour, 'f', -1, 64), strconv.FormatFloat(rep.Prices.FargateGBHour, 'f', -1, 64),
		strconv.FormatFloat(rep.Prices.LambdaGBSecond, 'f', -1, 64), stats.Dollars(rep.Prices.FixedPerMonth))
	fmt.Fprintf(env.Stdout, "requests beyond S3 Replication's: S3 PUT $%s and GET $%s a thousand, SQS $%s and DynamoDB writes $%s, reads $%s a million; staging: S3 $%s/GB-month\n",
		strconv.FormatFloat(rep.Prices.S3PutPer1000, 'f', -1, 64), strconv.FormatFloat(rep.Prices.S3GetPer1000, 'f', -1, 64),
		strconv.FormatFloat(rep.Prices.SQSPerMillion, 'f', -1, 64), strconv.FormatFloat(rep.Prices.DynamoDBWritePerMillion, 'f', -1, 64),
		strconv.FormatFloat(rep.Prices.DynamoDBReadPerMillion, 'f', -1, 64), strconv.FormatFloat(rep.Prices.S3StoragePerGBMonth, 'f', -1, 64))
	rule := ""
	var tw *tabwriter.Writer
	for _, l := range rep.Lines {
		if l.Rule != rule {
			rule = l.Rule
			fmt.Fprintf(env.Stdout, "\nrule %s (bytes cross to %d region%s", l.Rule, l.Regions, plural(l.Regions))
			for _, c := range rep.Compute {
				if c.Rule == l.Rule {
					if l.Regions > 0 {
						fmt.Fprintf(env.Stdout, ", its archives staged about %d days", c.StagingDays)
					}
					fmt.Fprintf(env.Stdout, "; a vCPU-hour: $%.4g compressing on %s, $%.4g decoding, summed over the regions delivered to", c.CompressVCPUHour, c.Compute, c.DecodeVCPUHour)
				}
			}
			fmt.Fprintln(env.Stdout, ")")
			tw = tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "class\tobjects\tbytes in\tacross regions\tratio\twithout xrc\twith xrc\tcompute\trequests\tstaging\tnet saving\tlearnt\tlevel mix\t")
		}
		class := string(l.Class)
		if class == "" {
			class = "total"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", class, l.Objects, stats.Bytes(l.BytesIn), stats.Bytes(l.BytesAcross),
			l.Ratio, stats.Dollars(l.WithoutXRC), stats.Dollars(l.WithXRC), stats.Dollars(l.Compute), stats.Dollars(l.Requests), stats.Dollars(l.Staging),
			stats.Dollars(l.NetSaving), or(l.Choice, "-"), stats.Mix(l.Levels))
		if l.Class == "" {
			tw.Flush()
			var c computeLine
			for _, x := range rep.Compute {
				if x.Rule == l.Rule {
					c = x
				}
			}
			switch {
			case l.Objects == 0:
				fmt.Fprintln(env.Stdout, "break-even: unknown: no objects moved in the period")
			case l.BytesIn == 0:
				fmt.Fprintln(env.Stdout, "break-even: unknown: only empty objects in the period")
			case l.NetSaving <= 0 && l.WithoutXRC-l.WithXRC-l.Compute > 0:
				fmt.Fprintf(env.Stdout, "break-even: none: at a mean object of %s, xrc's requests and staging cost more than the transfer it saves: objects this small are cheaper on S3 Replication\n",
					stats.Bytes(l.BytesIn/int64(l.Objects)))
			case l.NetSaving <= 0:
				// Before the Lambda case, whose "none needed" reads as
				// "this rule pays".
				fmt.Fprintf(env.Stdout, "break-even: none: xrc cost more than it saved: compressing cost %s of compute against %s of transfer saved (requests %s and staging %s besides)\n",
					stats.Dollars(l.Compute), stats.Dollars(l.WithoutXRC-l.WithXRC), stats.Dollars(l.Requests), stats.Dollars(l.Staging))
			case c.Compute == string(config.ComputeLambda):
				fmt.Fprintln(env.Stdout, "break-even: none needed: the rule's source runs on Lambda, which costs nothing while idle")
			case l.BreakEvenGiBPerMonth > 0:
				fmt.Fprintf(env.Stdout, "break-even: %s of input a month covers the deployment's fixed %s/month on its own\n",
					bytesF(l.BreakEvenGiBPerMonth*adaptive.GiB), stats.Dollars(rep.Prices.FixedPerMonth))
			default:
				fmt.Fprintln(env.Stdout, "break-even: none: the saving does not cover the fixed costs at any volume")
			}
			if c.Rule != "" && l.BytesIn > 0 {
				printCompute(env, c)
			}
		}
	}
}

// printCompute says what the rule's workers cost a month on each compute.
func printCompute(env Env, c computeLine) {
	fmt.Fprintf(env.Stdout, "compute a month at this volume (%s, %.0f objects; %.0f CPU-seconds): Fargate Spot %s (fixed included), Lambda %s: %s is cheaper (the rule runs on %s)\n",
		stats.Bytes(int64(c.GiB*adaptive.GiB)), c.Objects, c.CPUSeconds, stats.Dollars(c.FargateSpot), stats.Dollars(c.Lambda), c.Cheaper, c.Compute)
	if c.DataHours < 0.9*c.PeriodHours {
		fmt.Fprintf(env.Stdout, "the rule's statistics start %s before the report's end, %s after its start: if it was deployed since, its month is priced at %.0f%% of its volume; run with -since %.0fh\n",
			hours(c.DataHours), hours(c.PeriodHours-c.DataHours), 100*c.DataHours/c.PeriodHours, max(1, math.Floor(c.DataHours)))
	}
	if c.BreakEvenGiB > 0 {
		fmt.Fprintf(env.Stdout, "Fargate Spot is cheaper from %s of input a month at this rule's mean object size\n", bytesF(c.BreakEvenGiB*adaptive.GiB))
	}
}

// hours says a number of hours as hours or days.
func hours(h float64) string {
	if h = math.Round(h); h < 48 {
		return fmt.Sprintf("%.0f h", h)
	}
	return fmt.Sprintf("%.1f days", h/24)
}

// bytesF formats a size computed in floating point, which can exceed what
// an int64 holds (a break-even on a saving of next to nothing a GiB).
func bytesF(b float64) string {
	if b >= 1<<62 {
		return "more than " + stats.Bytes(1<<62)
	}
	return stats.Bytes(int64(b))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// parseSince reads a Go duration or a number of days ("7d").
func parseSince(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > maxDays {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, fmt.Errorf("%q is not a positive duration", s)
		}
	}
	if d > stats.TTL {
		return 0, fmt.Errorf("%s is more than the %d days the statistics are kept", s, int(stats.TTL.Hours()/24))
	}
	return d, nil
}

// loadConfig reads a config file or SSM parameter.
func loadConfig(ctx context.Context, path string, env Env) (*config.Config, error) {
	var ps config.ParameterGetter
	if strings.HasPrefix(path, config.SSMScheme) {
		cfg, err := awsapi.Load(ctx, env.Getenv("AWS_REGION"))
		if err != nil {
			return nil, err
		}
		if cfg.Region == "" {
			return nil, fmt.Errorf("%w: reading %s needs the parameter's region: set AWS_REGION (or a region in the AWS profile)", ErrUsage, path)
		}
		ps = ssm.NewFromConfig(cfg)
	}
	return config.Load(ctx, path, ps)
}

// tableError says which table was not found, and where, when that is
// what err is: the SDK's message names neither.
func tableError(err error, cfg *config.Config, region string) error {
	if awsapi.Code(err) != "ResourceNotFoundException" {
		return err
	}
	return fmt.Errorf("table %s not found in %s (settings.stackName %q): is the stack deployed in that region, and are the credentials and region the deployment's? %w",
		cfg.TableName(), region, cfg.Settings.StackName, err)
}
