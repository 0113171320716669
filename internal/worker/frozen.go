package worker

import (
	"time"

	"github.com/jonboulle/clockwork"
)

// Frozen reports whether a call begun at start that failed had its time
// run out while the process was frozen, not while it waited on the other
// end: past twice its timeout, it was not running all that time. Lambda
// freezes an environment between invocations with its maintenance calls
// in flight, and they fail at the thaw, hours later; that says nothing of
// the table or of S3. Measured on the wall clock too: the monotonic one
// may stand still while a microVM is paused (reported of Lambda), the
// wall clock is set right at the thaw. (A step of the wall clock past
// twice the timeout during a real failure hides that one failure: the
// next call is measured afresh.)
func Frozen(clock clockwork.Clock, start time.Time, timeout time.Duration) bool {
	now := clock.Now()
	return max(now.Sub(start), now.Round(0).Sub(start.Round(0))) > 2*timeout
}
