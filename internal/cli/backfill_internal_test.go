package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
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
