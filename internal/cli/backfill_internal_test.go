package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/config"
)

// TestBackfillInterruptedSaysHowToResume: an interrupted run names its
// checkpoint to resume from, or -checkpoint; a dry run, which keeps none,
// promises no resume.
func TestBackfillInterruptedSaysHowToResume(t *testing.T) {
	for _, c := range []struct {
		run  backfillRun
		want string
		not  string
	}{
		{backfillRun{checkpoint: "cp.json"}, "resume from cp.json", ""},
		{backfillRun{}, "a run with -checkpoint can resume", ""},
		{backfillRun{checkpoint: "cp.json", dryRun: true}, "interrupted", "resume"},
		{backfillRun{dryRun: true}, "interrupted", "resume"},
	} {
		err := c.run.ended(context.Canceled)
		if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), c.want) || c.not != "" && strings.Contains(err.Error(), c.not) {
			t.Errorf("%+v: %v; want %q, without %q", c.run, err, c.want, c.not)
		}
	}
	other := errors.New("NoSuchBucket")
	if err := (&backfillRun{checkpoint: "cp.json"}).ended(other); err != other {
		t.Errorf("a failed run: %v, want its error as it is", err)
	}
}

// TestBackfillArchivedFollowUp: a run that found archived objects says
// the run that sends them once restored, with a -since no later than the
// oldest: a restore leaves Last-Modified as it was, so a run of the same
// -since (the next scheduled one) never sends them.
func TestBackfillArchivedFollowUp(t *testing.T) {
	oldest := time.Date(2025, 3, 4, 5, 6, 7, 890e6, time.UTC)
	again := "xrc backfill -config c.json -rule r1"
	for _, scanned := range []int64{0, 1 << 20} { // a listing, an inventory
		var out bytes.Buffer
		printBackfill(Env{Stdout: &out}, &config.Rule{ID: "r1"}, "s3://b/", again, false,
			backfill.Counts{Archived: 2, ArchivedSince: oldest, ScanTotal: scanned}, nil)
		if want := "send them with: " + again + " -since 2025-03-04T05:06:07Z\n"; !strings.Contains(out.String(), want) {
			t.Errorf("inventory bytes %d: the summary lacks %q:\n%s", scanned, want, out.String())
		}
	}
	// After a dry run, a command that sends them; after a run cut short,
	// none: it has not seen every archived object.
	var out bytes.Buffer
	printBackfill(Env{Stdout: &out}, &config.Rule{ID: "r1"}, "s3://b/", again+" -dry-run=true -rate 50/s", true,
		backfill.Counts{Archived: 2, ArchivedSince: oldest}, nil)
	if want := "send them with: " + again + " -rate 50/s -since 2025-03-04T05:06:07Z\n"; !strings.Contains(out.String(), want) {
		t.Errorf("after a dry run the summary lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	printBackfill(Env{Stdout: &out}, &config.Rule{ID: "r1"}, "s3://b/", again, false,
		backfill.Counts{Archived: 2, ArchivedSince: oldest}, context.Canceled)
	if strings.Contains(out.String(), "send them with: ") {
		t.Errorf("a run cut short gives a follow-up:\n%s", out.String())
	}
}
