package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/verify"
)

// TestExitCode: the codes scripts and the stack's alert on backfill tasks
// rely on (README); a failure is never taken for a stop or a busy rule.
func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err       error
		signalled bool
		want      int
	}{
		{fmt.Errorf("%w: -since: bad", cli.ErrUsage), false, 2},
		{fmt.Errorf("%w: verify r1: %w", cli.ErrIncomplete, context.Canceled), true, 3},
		{fmt.Errorf("%w: rule r1: 2 differences", verify.ErrDifferent), false, 1},
		{fmt.Errorf("starting: %w", backfill.ErrBusy), false, 4},
		{fmt.Errorf("interrupted; run the same command again to resume: %w", context.Canceled), true, 130},
		{fmt.Errorf("listing: %w", context.Canceled), false, 1}, // cancelled, but not by a signal
		{errors.New("AccessDenied"), true, 1},
		// A stop joined with a checkpoint that could not be saved: the
		// failure's, not the stop's.
		{fmt.Errorf("interrupted; run the same command again to resume: %w",
			errors.Join(context.Canceled, errors.New("writing checkpoint cp.json: no space left on device"))), true, 1},
		{fmt.Errorf("interrupted: %w", errors.Join(fmt.Errorf("listing: %w", context.Canceled), context.Canceled)), true, 130},
	} {
		if got := exitCode(c.err, c.signalled); got != c.want {
			t.Errorf("exitCode(%v, signalled %v) = %d, want %d", c.err, c.signalled, got, c.want)
		}
	}
}
