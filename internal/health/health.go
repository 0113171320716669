// Package health tells ECS whether a worker is alive: the receive loop beats
// on every poll SQS answers, and /healthz fails once the beats stop, so a
// wedged loop, or one whose every receive fails, is replaced instead of
// silently holding its messages.
package health

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Check is a liveness check fed by Beat.
type Check struct {
	maxSilence time.Duration
	now        func() time.Time
	// start and last count from the check's creation on now's monotonic
	// reading: a step of the wall clock (an NTP correction) is no silence,
	// nor hides one.
	start time.Time
	last  atomic.Int64 // the last beat, in nanoseconds since start
	// report hears a failing answer, once per spell (OnUnhealthy).
	report   atomic.Pointer[func(error)]
	reported atomic.Bool
}

// OnUnhealthy has f hear the check's failure once each time it starts
// answering unhealthy: the probe's answer goes to the health command's
// output, which no log keeps, and ECS records only "failed container
// health checks" as it replaces the task.
func (c *Check) OnUnhealthy(f func(error)) { c.report.Store(&f) }

// New returns a check that fails when no beat came for maxSilence. The clock
// starts now, so a worker that never polls also turns unhealthy.
func New(maxSilence time.Duration, now func() time.Time) *Check {
	c := &Check{maxSilence: maxSilence, now: now, start: now()}
	c.Beat()
	return c
}

// Beat records that the loop is making progress.
func (c *Check) Beat() { c.last.Store(int64(c.now().Sub(c.start))) }

// Err returns nil while beats are recent.
func (c *Check) Err() error {
	silent := c.now().Sub(c.start) - time.Duration(c.last.Load())
	if silent > c.maxSilence {
		return fmt.Errorf("receive loop silent for %s (limit %s)", silent.Round(time.Second), c.maxSilence)
	}
	return nil
}

// ServeHTTP answers 200 "ok" or 503 with the reason.
func (c *Check) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := c.Err(); err != nil {
		if f := c.report.Load(); f != nil && c.reported.CompareAndSwap(false, true) {
			(*f)(err)
		}
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	c.reported.Store(false)
	fmt.Fprintln(w, "ok")
}

// DefaultURL is where a worker serves /healthz by default.
const DefaultURL = "http://127.0.0.1:9090/healthz"

// Probe GETs url and reports anything but a 200 within timeout as an error.
// The worker images have no shell or curl, so ECS's container health check
// runs the worker binary itself as the probe ("xrc-source healthcheck URL").
func Probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
