package cli

import (
	"context"
	"flag"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/stats"
)

// TestBreakEvenAtItsOwnVolume: at the volume named as the break-even,
// Fargate Spot and Lambda cost the same, though the volume measured is a
// trickle (an invocation per object), and at the break-even the batching
// window fills batches.
func TestBreakEvenAtItsOwnVolume(t *testing.T) {
	cfg, err := config.Load(context.Background(), "../../configs/example.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cfg.Rules[0]
	const month = 30 * 24 * time.Hour
	trickle := stats.Line{Objects: 1000, BytesIn: 1000 * 64 << 10}
	c := compareCompute(cfg, r, trickle, adaptive.Model{}, month)
	if c.BreakEvenGiB <= 0 {
		t.Fatalf("no break-even: %+v", c)
	}
	scale := c.BreakEvenGiB * adaptive.GiB / float64(trickle.BytesIn)
	at := compareCompute(cfg, r, stats.Line{Objects: int(1000 * scale), BytesIn: int64(float64(trickle.BytesIn) * scale)}, adaptive.Model{}, month)
	if d := math.Abs(at.FargateSpot-at.Lambda) / at.Lambda; d > 0.01 {
		t.Errorf("at the break-even (%.0f GiB a month): Fargate Spot %.2f, Lambda %.2f", c.BreakEvenGiB, at.FargateSpot, at.Lambda)
	}
}

// TestBreakEvenOfEmptyObjects: a rule whose only objects in the period are
// empty (_SUCCESS markers) has no size to price a break-even at; none is
// given, and nothing is NaN (which --json cannot print), whatever the
// prices.
func TestBreakEvenOfEmptyObjects(t *testing.T) {
	cfg, err := config.Load(context.Background(), "../../configs/example.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Settings.Prices.VCPUHour = 0.1 // Lambda's CPU cheaper than Fargate's
	c := compareCompute(cfg, &cfg.Rules[0], stats.Line{Objects: 5}, adaptive.Model{}, 30*24*time.Hour)
	for name, v := range map[string]float64{"break-even": c.BreakEvenGiB, "objects": c.Objects, "fargate": c.FargateSpot, "lambda": c.Lambda} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
}

func TestBytesF(t *testing.T) {
	if got := bytesF(math.MaxFloat64); got != "more than 4096.0 PiB" {
		t.Errorf("bytesF(huge) = %q", got)
	}
	if got := bytesF(1 << 30); got != "1.0 GiB" {
		t.Errorf("bytesF(1 GiB) = %q", got)
	}
}

// TestBackfillNamesTheReportsAge: a backfill from an inventory report says
// when the report was made, and the listing that covers what came since
// (a write between the report and the notifications has no event).
func TestBackfillNamesTheReportsAge(t *testing.T) {
	var out strings.Builder
	of := time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC)
	printBackfill(Env{Stdout: &out}, &config.Rule{ID: "logs"}, "s3://inv/manifest.json", "xrc backfill -config ssm:///xrc -rule logs", false, backfill.Counts{InventoryOf: of}, nil)
	want := "the report is of 2026-12-04T01:02:03Z: objects written since are not in it"
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "xrc backfill -config ssm:///xrc -rule logs -since 2026-12-03T01:02:03Z") {
		t.Errorf("summary lacks the report's date and the listing to follow with:\n%s", out.String())
	}
	out.Reset()
	printBackfill(Env{Stdout: &out}, &config.Rule{ID: "logs"}, "s3://inv/manifest.json", "xrc backfill", false, backfill.Counts{InventoryOf: of}, context.Canceled)
	if strings.Contains(out.String(), "follow with") {
		t.Errorf("an interrupted run, to be resumed first, says what to follow with:\n%s", out.String())
	}
	out.Reset()
	printBackfill(Env{Stdout: &out}, &config.Rule{ID: "logs"}, "s3://b/", "", false, backfill.Counts{}, nil)
	if strings.Contains(out.String(), "the report is of") {
		t.Errorf("a listing's summary speaks of a report:\n%s", out.String())
	}
}

// TestSavingsNamesRegionPrices: a region with its own transfer price (a
// direct region's egress) is named in the report's prices, whose lines
// it prices; the header gave only the config's price.
func TestSavingsNamesRegionPrices(t *testing.T) {
	var out strings.Builder
	rep := savingsReport{Prices: config.Prices{TransferPerGB: 0.02}, TransferByRegion: map[string]float64{"cn-north-1": 0.09}}
	printSavings(Env{Stdout: &out}, rep)
	if !strings.Contains(out.String(), "transfer $0.02/GB (to cn-north-1 $0.09/GB)") {
		t.Errorf("prices line:\n%s", out.String())
	}
}

// TestShownQuotesControlCharacters: manifest fields inspect prints are
// quoted when they could add lines or drive the terminal.
func TestShownQuotesControlCharacters(t *testing.T) {
	for s, want := range map[string]string{"logs": "logs", "r\x1b[2J\nrule\tok": `"r\x1b[2J\nrule\tok"`, "eu-west-1/bucket": "eu-west-1/bucket"} {
		if got := shown(s); got != want {
			t.Errorf("shown(%q) = %s, want %s", s, got, want)
		}
	}
}

// TestShellArg: the follow-up command a backfill prints can be pasted:
// a config path with a space or a quote stays one word.
func TestShellArg(t *testing.T) {
	for in, want := range map[string]string{
		"ssm:///xrc/config": "ssm:///xrc/config",
		"my config.json":    "'my config.json'",
		"it's.json":         `'it'\''s.json'`,
		"":                  "''",
	} {
		if got := shellArg(in); got != want {
			t.Errorf("shellArg(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestComputeComparedAtTheRulesCPU: the Fargate-or-Lambda comparison
// prices at least the CPU the rule's levels measured: a rule settled on a
// slow level (hundreds of CPU-seconds a GiB) was compared at the typical
// ten, and Lambda, whose CPU costs several times Fargate's, looked cheaper
// than it is.
func TestComputeComparedAtTheRulesCPU(t *testing.T) {
	cfg, err := config.Load(context.Background(), "../../configs/example.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	const month = 30 * 24 * time.Hour
	l := stats.Line{Objects: 1000, BytesIn: 1 << 30, CPUSeconds: 1}
	typical := compareCompute(cfg, &cfg.Rules[0], l, adaptive.Model{}, month)
	l.CPUSeconds = 350
	slow := compareCompute(cfg, &cfg.Rules[0], l, adaptive.Model{}, month)
	if typical.CPUSeconds >= 350 || slow.CPUSeconds < 350 {
		t.Errorf("CPU a month: %v at the typical figures, %v with 350 CPU-s a GiB measured; want at least 350", typical.CPUSeconds, slow.CPUSeconds)
	}
	if slow.Lambda <= typical.Lambda || slow.BreakEvenGiB >= typical.BreakEvenGiB {
		t.Errorf("Lambda $%v (was $%v), break-even %v GiB (was %v): the slow level's CPU not priced", slow.Lambda, typical.Lambda, slow.BreakEvenGiB, typical.BreakEvenGiB)
	}
}

// TestFollowUpKeepsTheRunsFlags: the listing an inventory run says to
// follow with is throttled and dry as the run was, and does not share its
// checkpoint.
func TestFollowUpKeepsTheRunsFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	for _, name := range []string{"config", "rule", "inventory", "rate", "checkpoint", "prefix"} {
		fs.String(name, "", "")
	}
	fs.Bool("dry-run", false, "")
	fs.Bool("tags", false, "")
	if err := fs.Parse([]string{"-config", "c.json", "-rule", "r", "-inventory", "s3://i/m.json", "-rate", "50/s", "-checkpoint", "ddb",
		"-prefix", "a b/", "-dry-run"}); err != nil {
		t.Fatal(err)
	}
	if got, want := followUp(fs, "c.json", "r"), "xrc backfill -config c.json -rule r -dry-run=true -prefix 'a b/' -rate 50/s"; got != want {
		t.Errorf("follow-up %q, want %q", got, want)
	}
}

// TestDataSpan: a month is scaled from the rule's first hour with data,
// not from the start of a period it was not deployed for.
func TestDataSpan(t *testing.T) {
	to := time.Date(2026, 12, 7, 12, 30, 0, 0, time.UTC)
	from := to.Add(-7 * 24 * time.Hour)
	at := func(h time.Duration) stats.Hourly { return stats.Hourly{Hour: to.Add(-h).Truncate(time.Hour)} }
	for _, c := range []struct {
		hs   []stats.Hourly
		want time.Duration
	}{
		{nil, 7 * 24 * time.Hour},
		{[]stats.Hourly{at(time.Hour), at(48 * time.Hour)}, 48*time.Hour + 30*time.Minute},
		{[]stats.Hourly{at(10 * 24 * time.Hour)}, 7 * 24 * time.Hour}, // before the period
		{[]stats.Hourly{at(0)}, time.Hour},                            // half an hour: an hour at least
	} {
		if got := dataSpan(c.hs, from, to); got != c.want {
			t.Errorf("dataSpan(%d hours) = %v, want %v", len(c.hs), got, c.want)
		}
	}
}

// TestLosingLambdaRuleSaysSo: a rule on Lambda whose compute costs more
// than the transfer it saves was told "none needed: the rule's source runs
// on Lambda", which reads as "this rule pays"; one that loses on requests
// is told so, as on Fargate.
func TestLosingLambdaRuleSaysSo(t *testing.T) {
	for _, c := range []struct {
		name string
		line stats.Line
		want string
	}{
		{"compute", stats.Line{WithoutXRC: 1, WithXRC: 0.5, Compute: 2, Requests: 0.1, NetSaving: -1.6}, "xrc cost more than it saved: compressing cost $2.00 of compute against $0.50 of transfer saved"},
		{"requests", stats.Line{WithoutXRC: 1, WithXRC: 0.5, Compute: 0.1, Requests: 1, NetSaving: -0.6}, "xrc's requests and staging cost more than the transfer it saves"},
	} {
		var out strings.Builder
		c.line.Rule, c.line.Objects, c.line.BytesIn = "r", 10, 10<<20
		printSavings(Env{Stdout: &out}, savingsReport{Lines: []stats.Line{c.line}, Compute: []computeLine{{Rule: "r", Compute: string(config.ComputeLambda)}}})
		if !strings.Contains(out.String(), c.want) || strings.Contains(out.String(), "none needed") {
			t.Errorf("%s: want %q:\n%s", c.name, c.want, out.String())
		}
	}
}
