package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/logging"
	"github.com/xrc-dev/xrc/internal/metrics"
	"github.com/xrc-dev/xrc/internal/progress"
	"github.com/xrc-dev/xrc/internal/stats"
)

const backfillUsage = "xrc backfill -config C -rule R [-prefix P] [-since 7d|RFC3339] [-inventory s3://bucket/manifest.json] [-rate N/s] [-tags] [-dry-run] [-checkpoint FILE|ddb [-restart|-restart-if-changed]] [-concurrency 8] [-depth 2] [-queue-url URL] [-emf]"

// checkpointDynamo selects the deployment's table as the checkpoint.
const checkpointDynamo = "ddb"

// savingWindow is how far back the measured ratio of the expected saving
// looks (as xrc savings' default).
const savingWindow = 7 * 24 * time.Hour

// backfillRun is one xrc backfill command line.
type backfillRun struct {
	cfgPath, ruleID, prefix, since, inventory, rate, checkpoint, queueURL string
	dryRun, tags, restart, restartIfChanged, emf                          bool
	concurrency, depth                                                    int
}

// backfillCmd enqueues the objects of a rule's source that its destinations
// lack or hold older (package backfill), with a progress display and a
// summary.
func backfillCmd(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("xrc backfill", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var b backfillRun
	fs.StringVar(&b.cfgPath, "config", env.Getenv("XRC_CONFIG"), "config file or ssm:///name (env XRC_CONFIG)")
	fs.StringVar(&b.ruleID, "rule", "", "the rule to backfill (required)")
	fs.StringVar(&b.prefix, "prefix", "", "only keys under this prefix (within the rule's)")
	fs.StringVar(&b.since, "since", "", "only objects modified since: a duration or days back (2h, 7d) or an RFC 3339 time")
	fs.StringVar(&b.inventory, "inventory", "", "read this S3 Inventory manifest (s3://bucket/.../manifest.json, CSV) instead of listing")
	fs.StringVar(&b.rate, "rate", "", "at most N events a second (N or N/s); default: as fast as SQS takes them")
	fs.BoolVar(&b.dryRun, "dry-run", false, "compare and report, send nothing")
	fs.BoolVar(&b.tags, "tags", false, "also compare the tags of objects the destinations hold, and send the source's where they differ (a request or two per object)")
	fs.StringVar(&b.checkpoint, "checkpoint", "", "keep progress to resume an interrupted run: a local FILE, or ddb for the deployment's table")
	fs.BoolVar(&b.restart, "restart", false, "discard an interrupted run's checkpoint, whatever its parameters, and start afresh")
	fs.BoolVar(&b.restartIfChanged, "restart-if-changed", false, "resume an interrupted run of the same parameters; discard one of others rather than fail (scheduled runs)")
	fs.BoolVar(&b.emf, "emf", false, "at the end, write the run's counts as a CloudWatch Embedded Metric Format line to stdout (scheduled runs: the late-writes alarm)")
	fs.StringVar(&b.queueURL, "queue-url", env.Getenv("XRC_QUEUE_URL"), "the rule's source queue; default derived from the config (env XRC_QUEUE_URL)")
	fs.IntVar(&b.concurrency, "concurrency", backfill.DefaultConcurrency, "listings (or inventory files) at once, and HEADs at once per page")
	fs.IntVar(&b.depth, "depth", backfill.DefaultDepth, "how many '/' levels the listing fans out over (0: none, one listing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, backfillUsage, "config", b.cfgPath, "rule", b.ruleID); err != nil {
		return err
	}
	// Every flag is checked before anything is listed: a run that lists
	// for minutes before refusing a flag wastes them, and its summary of
	// zeros reads as "nothing to do".
	switch {
	case b.depth < 0:
		return fmt.Errorf("%w: -depth %d: want 0 (no fan-out) or more", ErrUsage, b.depth)
	case b.concurrency < 1:
		return fmt.Errorf("%w: -concurrency %d: want 1 or more", ErrUsage, b.concurrency)
	case b.restart && b.restartIfChanged:
		return fmt.Errorf("%w: -restart and -restart-if-changed: one or the other", ErrUsage)
	case (b.restart || b.restartIfChanged) && b.checkpoint == "":
		return fmt.Errorf("%w: -restart and -restart-if-changed act on a checkpoint: give -checkpoint FILE|ddb", ErrUsage)
	}
	if b.depth == 0 {
		b.depth = -1 // the flag's 0 means none; Options' 0 means the default
	}
	now := env.Now()
	since, err := parseSinceTime(b.since, now)
	if err != nil {
		return fmt.Errorf("%w: -since: %v", ErrUsage, err)
	}
	perSecond, err := parseRate(b.rate)
	if err != nil {
		return fmt.Errorf("%w: -rate: %v", ErrUsage, err)
	}
	if b.inventory != "" {
		if _, _, err := backfill.ParseLocation(b.inventory); err != nil {
			return fmt.Errorf("%w: -inventory: %v", ErrUsage, err)
		}
	}
	cfg, err := loadConfig(ctx, b.cfgPath, env)
	if err != nil {
		return err
	}
	rule, ok := cfg.Rule(b.ruleID)
	if !ok {
		return fmt.Errorf("%w: no rule %q in %s", ErrUsage, b.ruleID, b.cfgPath)
	}
	if _, err := backfill.Root(rule, b.prefix); err != nil {
		return fmt.Errorf("%w: -prefix: %v", ErrUsage, err)
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "queue-url" })
	if own := cfg.SourceQueueName(rule.ID); b.queueURL != "" && !explicit && path.Base(b.queueURL) != own {
		// A shell or task set up for another rule's worker: its worker
		// would acknowledge these events as covered by no rule it serves.
		fmt.Fprintf(env.Stderr, "xrc backfill: warning: XRC_QUEUE_URL names queue %s, not rule %s's own (%s): the events go there, which only a worker serving rule %s may take (rules sharing a queue); otherwise unset it or pass -queue-url\n",
			path.Base(b.queueURL), rule.ID, own, rule.ID)
	}
	// Progress on stderr, as verify's: stdout holds only the summary.
	terminal := progress.IsTerminal(env.Stderr)
	level := "info"
	if terminal {
		level = "warn" // the bar says it; JSON lines would only break it
	}
	log, err := logging.New(env.Stderr, level)
	if err != nil {
		return err
	}
	defer log.Sync()

	awsCfg, err := awsapi.Load(ctx, rule.SourceRegion)
	if err != nil {
		return err
	}
	srcRegion, _ := cfg.Region(rule.SourceRegion)
	srcS3 := awsapi.S3(awsCfg, srcRegion)
	deps := backfill.Deps{Source: srcS3, Inventory: srcS3, Dest: map[string]backfill.DestAPI{}, Log: log, Now: env.Now}
	for _, d := range rule.Destinations {
		if deps.Dest[d.Region] != nil {
			continue
		}
		region, _ := cfg.Region(d.Region)
		c := awsCfg // a direct region's credentials are read where its source workers read them
		if !region.Direct {
			if c, err = awsapi.Load(ctx, d.Region); err != nil {
				return err
			}
		}
		deps.Dest[d.Region] = awsapi.S3(c, region)
	}
	ddb := dynamodb.NewFromConfig(awsCfg)
	if !b.dryRun {
		client := sqs.NewFromConfig(awsCfg)
		deps.Queue, deps.QueueURL = client, b.queueURL
		if deps.QueueURL == "" {
			name := cfg.SourceQueueName(rule.ID)
			out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
			if err != nil {
				return fmt.Errorf("resolving rule %s's queue %s: %w", rule.ID, name, err)
			}
			deps.QueueURL = aws.ToString(out.QueueUrl)
		}
	}
	switch b.checkpoint {
	case "":
	case checkpointDynamo:
		deps.Checkpoint = backfill.NewDynamoCheckpoint(ddb, cfg.TableName(), rule.ID, env.Now)
	default:
		deps.Checkpoint = backfill.NewFileCheckpoint(b.checkpoint)
	}

	bar := progress.New(env.Stderr, progress.Options{Description: "backfill " + rule.ID, Unit: "objects", Bytes: b.inventory != "", Terminal: terminal})
	deps.Progress = func(c backfill.Counts) {
		if c.ScanTotal > 0 {
			bar.SetTotal(c.ScanTotal)
			bar.Set(c.ScanBytes)
		} else {
			bar.Set(c.Listed)
		}
		bar.Status(fmt.Sprintf("listed %d, compared %d, %s %d (%s), prefixes %d/%d", c.Listed, c.Compared,
			map[bool]string{false: "enqueued", true: "to enqueue"}[b.dryRun], c.Enqueued, stats.Bytes(c.Bytes), c.TasksDone, c.Tasks))
	}
	o := backfill.Options{Rule: rule, Prefix: b.prefix, Since: since, Inventory: b.inventory, DryRun: b.dryRun, Rate: perSecond,
		Concurrency: b.concurrency, Depth: b.depth, Tags: b.tags, Restart: b.restart,
		RestartIfChanged: b.restartIfChanged}
	counts, runErr := backfill.Run(ctx, o, deps)
	bar.Close()

	root, _ := backfill.Root(rule, b.prefix)
	where := "s3://" + rule.SourceBucket + "/" + root
	if b.inventory != "" {
		where = b.inventory
	}
	printBackfill(env, rule, where, followUp(fs, b.cfgPath, rule.ID), b.dryRun, counts, runErr)
	printExpectedSaving(ctx, env, cfg, rule, stats.New(ddb, cfg.TableName(), env.Now), counts)
	if b.emf {
		sent := counts
		if b.dryRun {
			// A dry run's late writes are found, and alarm (a check
			// that repairs nothing); its events are not sent.
			sent.Enqueued = 0
		}
		if err := WriteBackfillEMF(env, cfg, rule, sent); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	return b.ended(runErr)
}

// ended is the command's error for a run that ended with runErr: an
// interrupted one says how to resume, if it can.
func (b *backfillRun) ended(runErr error) error {
	switch {
	case runErr == nil:
		return nil
	case !errors.Is(runErr, context.Canceled):
		return runErr
	case b.dryRun: // it keeps no checkpoint
		return fmt.Errorf("interrupted: %w", runErr)
	case b.checkpoint != "":
		return fmt.Errorf("interrupted; run the same command again to resume from %s: %w", b.checkpoint, runErr)
	}
	return fmt.Errorf("interrupted; a run with -checkpoint can resume where it stopped: %w", runErr)
}

func printBackfill(env Env, rule *config.Rule, where, again string, dryRun bool, c backfill.Counts, runErr error) {
	title := "xrc backfill"
	if dryRun {
		title += " (dry run: nothing sent)"
	}
	fmt.Fprintf(env.Stdout, "%s, rule %s: %s\n", title, rule.ID, where)
	if runErr != nil {
		// Before the figures: a summary of zeros must not read as
		// "nothing to do".
		fmt.Fprintf(env.Stdout, "incomplete: %v: the figures cover only what was done before it stopped\n", runErr)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	row := func(label string, n int64, note string) {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", label, n, note)
	}
	row("listed", c.Listed, "objects")
	row("covered", c.Matched, "by the rule's filters, -prefix and -since")
	row("up to date", c.UpToDate, "the destinations hold the same write")
	if c.TagsDiffer > 0 {
		row("other tags", c.TagsDiffer, "the same write with other tags: a tag change enqueued")
	}
	row("not by xrc", c.NotByXRC, "same size, not written by xrc: left alone (xrc verify reports them)")
	row("missing", c.Missing, "")
	row("other size", c.Resized, "")
	row("older", c.Older, "written by xrc from an earlier source write")
	if c.Unroutable > 0 {
		row("unroutable", c.Unroutable, "the rule maps the key to no valid destination key")
	}
	if c.Archived > 0 {
		then := "then send them with the listing below"
		if c.ScanTotal > 0 {
			// A listing does not show Intelligent-Tiering's tiers: it
			// would send those unrestored too.
			then = "then send them with the listing below (an inventory does not say which are restored); Intelligent-Tiering ones with an inventory made after the restore (a listing cannot tell their tier)"
		}
		row("archived", c.Archived, "differ, but in GLACIER or DEEP_ARCHIVE: not sent; restore them (s3api restore-object), "+then)
	}
	verb := "enqueued"
	if dryRun {
		verb = "to enqueue"
	}
	row(verb, c.Enqueued, stats.Bytes(c.Bytes))
	if c.Late > 0 {
		row("late", c.Late, fmt.Sprintf("of them written after the last complete run began, over %v before this one: their events were lost or failed (a DLQ), or the pipeline is that far behind", backfill.DefaultLateAfter))
	}
	if c.LateMultipart > 0 {
		row("late multipart", c.LateMultipart, "of them multipart uploads as old (S3 dates them when the upload began): maybe late, maybe just completed")
	}
	unit := "prefixes"
	if c.ScanTotal > 0 {
		unit = "inventory files"
	}
	row(unit+" done", c.TasksDone, fmt.Sprintf("of %d (%d by an earlier run)", c.Tasks, c.Resumed))
	tw.Flush()
	if c.Archived > 0 && runErr == nil { // an interrupted run has not seen them all
		// A restore leaves Last-Modified as it was: a run of this one's
		// -since, as the next scheduled one, skips them. A run that
		// sends them, a dry run's follow-up too.
		fmt.Fprintf(env.Stdout, "once the archived objects are restored, send them with: %s -since %s\n", strings.Replace(again, " -dry-run=true", "", 1),
			c.ArchivedSince.Truncate(time.Second).Format(time.RFC3339))
	}
	if !c.InventoryOf.IsZero() && runErr == nil { // an interrupted run is resumed first
		// S3 may leave the last day's writes out of a report.
		since := c.InventoryOf.Add(-24 * time.Hour).Format(time.RFC3339)
		fmt.Fprintf(env.Stdout, "the report is of %s: objects written since are not in it. Unless the rule's notifications were on a day before it,\n"+
			"follow with a listing of what came since: %s -since %s\n", c.InventoryOf.Format(time.RFC3339), again, since)
	}
}

// backfillService is the Service dimension of a backfill's metrics, as
// the workers' are xrc-source and xrc-target.
const backfillService = "xrc-backfill"

// WriteBackfillEMF writes c as one EMF line (namespace the stack's, like
// the workers'): what a scheduled run sent, and how much of it was late,
// which the deployment alarms on (deploy/cdk, whose test reads the metrics
// written here against its alarms').
func WriteBackfillEMF(env Env, cfg *config.Config, rule *config.Rule, c backfill.Counts) error {
	// Gauges, the run's counts: written zeros included (an EMF counter
	// is written as its change), so that a healthy run is seen too.
	reg := prometheus.NewRegistry()
	enqueued := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xrc_backfill_enqueued", Help: "events the run sent"}, []string{"rule"})
	late := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xrc_backfill_late", Help: "writes the run sent that their events should have delivered"}, []string{"rule"})
	lateMultipart := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xrc_backfill_late_multipart", Help: "multipart uploads' writes as old, maybe just completed"}, []string{"rule"})
	lateMultipartRuns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xrc_backfill_late_multipart_runs",
		Help: "complete runs in a row, this one included, that found multipart uploads' writes late"}, []string{"rule"})
	reg.MustRegister(enqueued, late, lateMultipart, lateMultipartRuns)
	enqueued.WithLabelValues(rule.ID).Set(float64(c.Enqueued))
	late.WithLabelValues(rule.ID).Set(float64(c.Late))
	lateMultipart.WithLabelValues(rule.ID).Set(float64(c.LateMultipart))
	lateMultipartRuns.WithLabelValues(rule.ID).Set(float64(c.LateMultipartRuns))
	emf := metrics.NewEMF(reg, env.Stdout, cfg.Settings.StackName, "xrc_", map[string]string{"Service": backfillService, "Region": rule.SourceRegion})
	if err := emf.Flush(env.Now()); err != nil {
		return fmt.Errorf("writing the run's metrics: %w", err)
	}
	return nil
}

// followUp is the listing an inventory run is followed by, with the flags
// fs was given (a -rate, a -dry-run); not its checkpoint, which is this
// run's (a run of other parameters in it is refused).
func followUp(fs *flag.FlagSet, cfgPath, rule string) string {
	again := "xrc backfill -config " + shellArg(cfgPath) + " -rule " + shellArg(rule)
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "config", "rule", "inventory", "since", "checkpoint", "restart", "restart-if-changed":
		default:
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				again += " -" + f.Name + "=" + f.Value.String()
			} else {
				again += " -" + f.Name + " " + shellArg(f.Value.String())
			}
		}
	})
	return again
}

// shellArg is s as one word of a POSIX shell command.
func shellArg(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+-,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printExpectedSaving prints what the objects to enqueue will cost and
// save at the rule's measured ratio (xrc savings' figures, projected with
// stats.Project). Statistics that cannot be read leave a note, not an
// error: the backfill itself went well.
func printExpectedSaving(ctx context.Context, env Env, cfg *config.Config, rule *config.Rule, st *stats.Store, c backfill.Counts) {
	if c.Enqueued == 0 {
		return
	}
	now := env.Now()
	hs, err := st.Since(ctx, rule.ID, now.Add(-savingWindow))
	var fleet stats.Fleet
	if err == nil {
		fleet, err = st.Fleet(ctx)
	}
	if err != nil {
		fmt.Fprintf(env.Stdout, "  expected saving: unknown (reading rule %s's statistics: %v)\n", rule.ID, err)
		return
	}
	p := prices(cfg, rule, fleet)
	delivered, _ := rule.Regions()
	lines := stats.Summarise(rule.ID, delivered, hs, p, nil)
	x := stats.Project(lines[len(lines)-1], c.Bytes, int(c.Enqueued), p)
	if x.Ratio == 0 {
		fmt.Fprintf(env.Stdout, "  expected saving: unknown (rule %s has no statistics in the last %d days; xrc savings shows them once objects moved)\n",
			rule.ID, int(savingWindow.Hours()/24))
		return
	}
	fmt.Fprintf(env.Stdout, "  expected at rule %s's measured ratio %.2f (last %d days): %s across %d region%s, transfer %s without xrc, %s with, compute %s, requests %s, staging %s, net saving %s\n",
		rule.ID, x.Ratio, int(savingWindow.Hours()/24), stats.Bytes(x.BytesAcross), x.Regions, plural(x.Regions),
		stats.Dollars(x.WithoutXRC), stats.Dollars(x.WithXRC), stats.Dollars(x.Compute), stats.Dollars(x.Requests), stats.Dollars(x.Staging), stats.Dollars(x.NetSaving))
}

// parseSinceTime reads -since: "" (no limit), an RFC 3339 time, or a
// duration or number of days back from now.
func parseSinceTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > maxDays {
			return time.Time{}, fmt.Errorf("%q is not a number of days from 1 to %d", s, maxDays)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration (2h, 7d)", s)
	}
	return now.Add(-d), nil
}

// maxDays bounds "Nd" durations: a century, far from time.Duration's
// 292 years, which a larger N would overflow into the future.
const maxDays = 36500

// parseRate reads -rate: "" (no cap), "N" or "N/s".
func parseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || !(v > 0) || math.IsInf(v, 1) {
		return 0, fmt.Errorf("%q is not a positive number of events a second", s)
	}
	return v, nil
}
