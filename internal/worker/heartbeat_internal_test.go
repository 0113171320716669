package worker

import (
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/queue"
)

// TestHoldEndStopsAtSQSsCap: a hold extended near SQS's 12 hours from the
// receive ends where SQS's does (less the queue's minute), not a whole
// visibility on: at a 12-hour visibility, the beat at 8 hours held it, as
// counted, till 20 hours, and a refused beat at 12 did not see it lapse.
func TestHoldEndStopsAtSQSsCap(t *testing.T) {
	received := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		since, visibility time.Duration
		want              time.Duration // from the receive
	}{
		{time.Minute, 5 * time.Minute, 6 * time.Minute},
		{8 * time.Hour, 12 * time.Hour, queue.MaxVisibility - time.Minute},
		{12*time.Hour - 3*time.Minute, 5 * time.Minute, queue.MaxVisibility - time.Minute},
	} {
		if got := holdEnd(received.Add(c.since), received, c.visibility).Sub(received); got != c.want {
			t.Errorf("extended %v after the receive by %v: ends %v after it, want %v", c.since, c.visibility, got, c.want)
		}
	}
	if got := holdEnd(received, time.Time{}, time.Hour); !got.Equal(received.Add(time.Hour)) {
		t.Errorf("receive unknown: ends %v, want a whole visibility on", got)
	}
}
