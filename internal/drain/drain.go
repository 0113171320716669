// Package drain gives a worker's in-flight work a grace period after a stop
// signal: ECS sends SIGTERM (Spot interruption, scale-in, deploy) and kills
// the task stopTimeout later, so work that can finish in between should.
package drain

import (
	"context"
	"time"
)

// Context returns a context for in-flight work. It is not cancelled when
// stop is; it is cancelled grace after stop ends (calling expired first,
// e.g. to log), or when the returned cancel is called.
func Context(stop context.Context, grace time.Duration, expired func()) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(stop))
	go func() {
		select {
		case <-stop.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			if expired != nil {
				expired()
			}
			cancel()
		case <-work.Done():
		}
	}()
	return work, cancel
}
