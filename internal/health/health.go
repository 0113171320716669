// Package health tells ECS whether a worker is alive: the receive loop beats
// on every poll, and /healthz fails once the beats stop, so a wedged loop is
// replaced instead of silently holding its messages.
package health

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Check is a liveness check fed by Beat.
type Check struct {
	maxSilence time.Duration
	now        func() time.Time
	last       atomic.Int64 // unix nanos of the last beat
}

// New returns a check that fails when no beat came for maxSilence. The clock
// starts now, so a worker that never polls also turns unhealthy.
func New(maxSilence time.Duration, now func() time.Time) *Check {
	c := &Check{maxSilence: maxSilence, now: now}
	c.Beat()
	return c
}

// Beat records that the loop is making progress.
func (c *Check) Beat() { c.last.Store(c.now().UnixNano()) }

// Err returns nil while beats are recent.
func (c *Check) Err() error {
	silent := c.now().Sub(time.Unix(0, c.last.Load()))
	if silent > c.maxSilence {
		return fmt.Errorf("receive loop silent for %s (limit %s)", silent.Round(time.Second), c.maxSilence)
	}
	return nil
}

// ServeHTTP answers 200 "ok" or 503 with the reason.
func (c *Check) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := c.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}
