package worker

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Protector keeps ECS from stopping the task for scale-in or a deployment
// (package protection). Protect restarts the protection's expiry.
type Protector interface {
	Protect(ctx context.Context, d time.Duration) error
	Unprotect(ctx context.Context) error
}

// Task protection: a task that holds long work (a message held longer than
// Options.ProtectAfter: a multi-GB object, a large archive) protects itself,
// so that a scale-in, which picks tasks without regard to their work, or a
// deployment does not cut that work at the drain time and leave it to be
// done again from the start. Short work is never protected: the drain
// finishes it, and deployments go on.
const (
	// protectFor is one protection's expiry, renewed every protectRenew
	// while long work is held: a task that dies or hangs protected is
	// unprotected by ECS within it.
	protectFor   = 15 * time.Minute
	protectRenew = 5 * time.Minute
	// protectLimit bounds one continuous protection: a task that always
	// holds long work (a stream of large objects) would otherwise hold a
	// deployment back for good. Past it the task goes unprotected for
	// protectRest, in which the deployment or scale-in may stop it.
	protectLimit = 2 * time.Hour
	protectRest  = 15 * time.Minute
	// protectRetry spaces calls after a failed one.
	protectRetry = time.Minute
)

// guard protects the task while it holds long work, until stop.
func (r *Runtime) guard(stop context.Context) {
	if r.Protector == nil || r.ProtectAfter <= 0 {
		return
	}
	// At least a millisecond: a ticker of 0 panics.
	t := r.Clock.NewTicker(max(min(r.ProtectAfter/4, 15*time.Second), time.Millisecond))
	defer t.Stop()
	var (
		// until: any protection this task may hold ends by then, its
		// last protect call's (one that failed may have been applied
		// all the same: an answer lost, a timeout while the agent
		// waited on ECS). Once the work ends it is removed, but not
		// after then: an agent refusing every call is not asked for
		// good.
		on                                 bool
		since, renewed, retry, rest, until time.Time
	)
	call := func(what string, f func(context.Context) error) bool {
		ctx, cancel := context.WithTimeout(stop, protectCallTimeout)
		defer cancel()
		err := f(ctx)
		if err != nil && stop.Err() == nil {
			r.Metrics.Errors.WithLabelValues("protection").Inc()
			r.Log.Warn(what, zap.Error(err))
			retry = r.Clock.Now().Add(protectRetry)
		}
		return err == nil
	}
	protect := func(ctx context.Context) error { return r.Protector.Protect(ctx, protectFor) }
	for {
		select {
		case <-stop.Done():
			return
		case <-t.Chan():
		}
		now := r.Clock.Now()
		if now.Before(retry) {
			continue
		}
		oldest := r.oldestHeld()
		long := !oldest.IsZero() && now.Sub(oldest) >= r.ProtectAfter
		switch {
		case !until.IsZero() && !now.Before(until):
			// Whatever was applied has expired: no call made since
			// could have renewed it (unprotects refused at the limit,
			// or after the work ended).
			if on {
				r.Log.Info("task protection expired", zap.Duration("protectedFor", now.Sub(since).Round(time.Second)), zap.Bool("longWorkHeld", long))
			}
			if on && long {
				rest = now.Add(protectRest) // as after the limit's unprotect
			}
			on, until = false, time.Time{}
			r.Metrics.Protected.Set(0)
		case long && !on && !now.Before(rest):
			until = now.Add(protectFor)
			if call("protecting the task from scale-in and deployments", protect) {
				on, since, renewed = true, now, now
				r.Metrics.Protected.Set(1)
				r.Log.Info("task protected from scale-in and deployments: it holds long work",
					zap.Duration("heldFor", now.Sub(oldest).Round(time.Second)), zap.Duration("expiresIn", protectFor))
			}
		case long && on && now.Sub(since) >= protectLimit:
			if call("unprotecting the task", r.Protector.Unprotect) {
				on, until, rest = false, time.Time{}, now.Add(protectRest)
				r.Metrics.Protected.Set(0)
				r.Log.Warn("task unprotected after its longest protection, though it still holds long work: a scale-in or deployment may now stop it",
					zap.Duration("protectedFor", now.Sub(since).Round(time.Second)), zap.Duration("unprotectedFor", protectRest))
			}
		case long && on && now.Sub(renewed) >= protectRenew:
			until = now.Add(protectFor)
			if call("renewing the task's protection", protect) {
				renewed = now
			} else if now.Sub(renewed) >= protectFor {
				// ECS has let it lapse: say so, and protect afresh
				// once the agent answers again.
				on = false
				r.Metrics.Protected.Set(0)
				r.Log.Warn("task protection lapsed: it could not be renewed", zap.Duration("since", now.Sub(renewed).Round(time.Second)))
			}
		case !long && (on || !until.IsZero()):
			if call("unprotecting the task", r.Protector.Unprotect) {
				if on {
					r.Log.Info("task unprotected: it holds no long work", zap.Duration("protectedFor", now.Sub(since).Round(time.Second)))
				}
				on, until = false, time.Time{}
				r.Metrics.Protected.Set(0)
			}
		}
	}
}

// protectCallTimeout bounds one call to the agent.
const protectCallTimeout = 15 * time.Second

// oldestHeld returns when the longest-held message was received (zero:
// none held).
func (r *Runtime) oldestHeld() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest time.Time
	for _, m := range r.held {
		if oldest.IsZero() || m.received.Before(oldest) {
			oldest = m.received
		}
	}
	return oldest
}
