package worker

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestFrozenAfterTwiceTheTimeout: a call that failed within twice its
// timeout failed on its own (a slow table); only past that was the
// process frozen.
func TestFrozenAfterTwiceTheTimeout(t *testing.T) {
	const timeout = 5 * time.Second
	clock := clockwork.NewFakeClock()
	start := clock.Now()
	clock.Advance(2 * timeout)
	if Frozen(clock, start, timeout) {
		t.Error("a call failing after twice its timeout taken as frozen")
	}
	clock.Advance(time.Millisecond)
	if !Frozen(clock, start, timeout) {
		t.Error("a call failing past twice its timeout not taken as frozen")
	}
}
