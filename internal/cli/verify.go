package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/progress"
	xverify "github.com/xrc-dev/xrc/internal/verify" // aliased: package cli has a verify function (xrc archive verify)
)

const verifyUsage = "xrc verify -config FILE|ssm:///name -rule ID [-prefix P] [-region R] [-report out.csv|out.json] [-hash-sources] [-tags] [-concurrency N] [-list-concurrency N]"

// verifyRule compares a rule's source with its destinations (package
// verify): a summary on stdout, every difference in the -report file,
// progress on stderr (a bar on a terminal, a line every 10 s elsewhere),
// and an error wrapping verify.ErrDifferent when anything differs.
func verifyRule(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("xrc verify", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("config", env.Getenv("XRC_CONFIG"), "config file or ssm:///name (env XRC_CONFIG)")
	ruleID := fs.String("rule", "", "the rule to verify")
	prefix := fs.String("prefix", "", "only source keys under this prefix (within the rule's)")
	region := fs.String("region", "", "only the destinations in this region")
	reportPath := fs.String("report", "", "write every difference to this file: .csv or .json")
	hash := fs.Bool("hash-sources", false, "read and hash source objects S3 keeps no comparable checksum of (a GET of their bytes: free in-region, egress elsewhere)")
	tags := fs.Bool("tags", false, "also compare tag values, not only their number (a GetObjectTagging on each side of each tagged pair)")
	concurrency := fs.Int("concurrency", xverify.DefaultConcurrency, "HeadObject/GetObject requests at once")
	lists := fs.Int("list-concurrency", xverify.DefaultListConcurrency, "prefixes listed at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, verifyUsage, "config", *cfgPath, "rule", *ruleID); err != nil {
		return err
	}
	newReport, err := reportFormat(*reportPath)
	if err != nil {
		return err
	}
	if *reportPath != "" && filepath.Clean(*reportPath) == filepath.Clean(*cfgPath) {
		return fmt.Errorf("%w: -report %s is the config", ErrUsage, *reportPath)
	}
	// The report is made before the comparison, and by any run that
	// meant to compare and stopped (the config not loaded): such a run
	// must not leave the last run's report, "differences: none" perhaps,
	// to be read as its own. A wrong command line leaves it.
	var rep xverify.Report
	var file *os.File
	opened := false
	open := func() error {
		opened = true
		var err error
		if file, err = os.Create(*reportPath); err != nil {
			return err
		}
		if rep, err = newReport(file); err != nil {
			return fmt.Errorf("writing %s: %w", *reportPath, err)
		}
		return nil
	}
	sum := xverify.Summary{Rule: *ruleID, Prefix: *prefix}
	// end closes the report with the summary, prints it, and returns
	// the run's error (kind wrapping cause, if any); a wrong command line
	// is only said.
	end := func(kind, cause error) error {
		if errors.Is(kind, ErrUsage) {
			return fmt.Errorf("%w: %w", kind, cause)
		}
		if newReport != nil && !opened {
			if err := open(); err != nil {
				kind, cause = ErrIncomplete, errors.Join(cause, err)
			}
		}
		if cause != nil {
			sum.Error = cause.Error()
		}
		if rep != nil {
			if err := errors.Join(rep.Close(sum), file.Close()); err != nil {
				// The report is what a scheduled run is read from.
				kind, cause = ErrIncomplete, errors.Join(cause, fmt.Errorf("writing %s: %w", *reportPath, err))
				sum.Error = cause.Error()
			}
		} else if file != nil {
			file.Close()
		}
		printVerifySummary(env.Stdout, sum, *hash, *reportPath)
		if cause == nil {
			return nil
		}
		return fmt.Errorf("%w: %w", kind, cause)
	}
	// Failures before the comparison are ErrIncomplete too: a scheduled
	// verify must tell "never looked" from "differs" (exit 1).
	cfg, err := loadConfig(ctx, *cfgPath, env)
	if err != nil {
		return end(ErrIncomplete, err)
	}
	rule, ok := cfg.Rule(*ruleID)
	if !ok {
		return end(ErrUsage, fmt.Errorf("no rule %q in %s", *ruleID, *cfgPath))
	}
	sum.SourceBucket = rule.SourceBucket
	if _, err := xverify.Root(rule, *prefix); err != nil {
		return end(ErrUsage, err)
	}
	o := xverify.Options{Rule: rule, Prefix: *prefix, Region: *region, HashSources: *hash, CompareTags: *tags,
		Concurrency: *concurrency, ListConcurrency: *lists, Destinations: map[string]xverify.S3API{}}
	if o.Source, err = s3For(ctx, cfg, rule.SourceRegion, rule.SourceRegion); err != nil {
		return end(ErrIncomplete, err)
	}
	for _, d := range rule.Destinations {
		if o.Destinations[d.Region] != nil || *region != "" && d.Region != *region {
			continue
		}
		if o.Destinations[d.Region], err = s3For(ctx, cfg, d.Region, rule.SourceRegion); err != nil {
			return end(ErrIncomplete, err)
		}
	}
	if len(o.Destinations) == 0 {
		return end(ErrUsage, fmt.Errorf("rule %s has no destination in region %s", rule.ID, *region))
	}

	if newReport != nil {
		if err := open(); err != nil {
			return end(ErrIncomplete, err)
		}
	}
	bar := progress.New(env.Stderr, progress.Options{Description: "verify " + rule.ID, Unit: "objects", Terminal: progress.IsTerminal(env.Stderr)})
	o.Progress = bar
	var runErr error
	sum, runErr = xverify.Run(ctx, o, func(d xverify.Difference) error {
		if rep == nil {
			return nil
		}
		return rep.Add(d)
	})
	bar.Close()
	// A run that stopped still leaves what it found in the report.
	if err := end(ErrIncomplete, runErr); err != nil {
		return err
	}
	if n := sum.Differences(); n > 0 {
		return fmt.Errorf("%w: rule %s: %d differences", xverify.ErrDifferent, rule.ID, n)
	}
	return nil
}

// reportFormat picks the report writer from the file's extension; nil
// when no report is asked for.
func reportFormat(path string) (func(io.Writer) (xverify.Report, error), error) {
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case path == "":
		return nil, nil
	case ext == ".csv":
		return func(w io.Writer) (xverify.Report, error) { return xverify.NewCSVReport(w) }, nil
	case ext == ".json":
		return func(w io.Writer) (xverify.Report, error) { return xverify.NewJSONReport(w) }, nil
	default:
		return nil, fmt.Errorf("%w: -report %s: want a .csv or .json file", ErrUsage, path)
	}
}

// s3For returns an S3 client for a configured region (its endpoint
// override included); a direct region's credentials are read in source,
// where the rule's source workers read them.
func s3For(ctx context.Context, cfg *config.Config, name, source string) (*s3.Client, error) {
	r, ok := cfg.Region(name)
	if !ok {
		return nil, fmt.Errorf("region %s is not in the config", name)
	}
	if r.Direct {
		name = source
	}
	sdk, err := awsapi.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	return awsapi.S3(sdk, r), nil
}

func printVerifySummary(w io.Writer, s xverify.Summary, hashed bool, report string) {
	if s.SourceBucket == "" { // the config not loaded
		fmt.Fprintf(w, "verify %s: nothing compared\n", s.Rule)
	} else {
		fmt.Fprintf(w, "verify %s: s3://%s/%s: %d objects, %s\n", s.Rule, s.SourceBucket, s.Prefix, s.Objects, sizeString(s.Bytes))
	}
	line := func(what string, n, bytes int64) { fmt.Fprintf(w, "  %-16s %10d %11s\n", what, n, sizeString(bytes)) }
	var unchecked, uncheckedBytes int64
	for _, d := range s.Destinations {
		fmt.Fprintf(w, "%s s3://%s/%s\n", d.Region, d.Bucket, d.Prefix)
		fmt.Fprintf(w, "  %-16s %10d\n", "compared", d.Compared)
		line("equal (digest)", d.Equal, d.EqualBytes)
		line("unchecked", d.Unchecked, d.UncheckedBytes)
		if d.Retained > 0 {
			line("retained", d.Retained, d.RetainedBytes)
		}
		if hashed {
			line("sources hashed", d.Hashed, d.HashedBytes)
		}
		for _, k := range xverify.Kinds {
			line(string(k), d.Counts[k], d.KindBytes[k])
		}
		unchecked += d.Unchecked
		uncheckedBytes += d.UncheckedBytes
	}
	var parts []string
	for _, k := range xverify.Kinds {
		if n, _ := s.Count(k); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	switch n := s.Differences(); {
	case n > 0:
		fmt.Fprintf(w, "differences: %d (%s)\n", n, strings.Join(parts, ", "))
	case s.Error == "":
		fmt.Fprintln(w, "differences: none")
	}
	if s.Error != "" {
		fmt.Fprintf(w, "incomplete: %s: the figures cover only what was compared before it stopped\n", s.Error)
	}
	if unchecked > 0 && !hashed {
		fmt.Fprintf(w, "%d copies (%s; an object and a destination each) were compared by size and provenance only: S3 keeps no checksum of their source that the destination has.\n"+
			"-hash-sources reads their sources to compare digests (a GET of %s, an object's once per destination: free from the source region, internet egress from elsewhere).\n",
			unchecked, sizeString(uncheckedBytes), sizeString(uncheckedBytes))
	}
	if retained := s.Retained(); retained > 0 {
		fmt.Fprintf(w, "%d objects xrc wrote are retained: their source is gone, and the rule does not propagate deletes (no difference).\n", retained)
	}
	if report != "" {
		fmt.Fprintf(w, "report: %s\n", report)
	}
}

// sizeString formats n bytes with a binary unit.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[exp])
}
