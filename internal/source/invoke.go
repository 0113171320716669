package source

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/libzstd"
)

// This file is what a caller that packs batches itself, without the
// receive loop (a Lambda handler, package lambda), needs besides Pack. The
// Fargate loop goes through the same two functions (Start, Handle).

// Prepare starts what archiving needs besides the receive loop: it
// measures this task's CPU and loads the fleet's statistics (so the
// learner starts from what the fleet knows), then keeps refreshing them and
// keeps this task's lease and the sweep of abandoned staging uploads going
// until ctx ends. Start calls it; call it once before the first Pack.
func (w *Worker) Prepare(ctx context.Context) {
	if !libzstd.Available || w.pureGo() {
		// Said above info: the release images compress with libzstd, and
		// a build without it (a CDK build of the Lambda on a machine with
		// no C compiler for the target) spends 1.25-2x the CPU.
		w.Log.Warn("compressing with the pure-Go encoder, not libzstd: 1.25-2x the CPU at the same ratio")
	}
	w.levels.start(ctx, w)
	refresh, stop := context.WithCancel(ctx)
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		w.levels.refreshLoop(refresh, w)
	}()
	// Drain refreshes once more after stopping the loop: it must wait
	// for a refresh of the loop's that may be publishing.
	w.stopRefresh = func() { stop(); <-loop }
	go w.sweepLoop(refresh)
}

// Close ends what Prepare started and writes the statistics a failed
// write left waiting: a caller without Drain (a Lambda environment rebuilt
// for a new config, or retired) would otherwise lose them to xrc savings
// and the fleet. What ctx leaves no time for is logged as lost.
func (w *Worker) Close(ctx context.Context) {
	w.stopRefresh()
	w.levels.flush(ctx, w.Clock.Now(), true)
}

// Match returns the items this worker archives for ref, one per rule
// covering it, each settled through done; sent is when its message
// entered the queue. Removals a rule does not propagate and deletes of a
// single version give none (each counted here). matched reports whether
// any rule covers ref at all.
func (w *Worker) Match(ref events.ObjectRef, sent time.Time, done func(error), log *zap.Logger) (items []Item, matched bool) {
	for _, r := range w.rules {
		if !r.Matches(ref.Bucket, ref.Key) {
			continue
		}
		matched = true
		switch {
		case ref.Removed() && !r.Deletes:
			w.Metrics.Objects.WithLabelValues(r.ID, "skipped_delete").Inc()
			continue
		case ref.Removed() && !ref.RemovesCurrent():
			// A version deleted for good: what the key reads as did not
			// change, and S3 Replication does not replicate it either.
			w.Metrics.Objects.WithLabelValues(r.ID, "skipped_version_delete").Inc()
			log.Debug("version delete not propagated", zap.String("bucket", ref.Bucket), zap.String("key", ref.Key), zap.String("versionId", ref.VersionID))
			continue
		}
		items = append(items, Item{Ref: ref, Rule: r, Sent: sent, Done: done})
	}
	if !matched {
		// Said at debug only (a Spark job's temporary files come by the
		// thousand): counted, so a prefix mistyped still shows.
		w.Metrics.Unmatched.Inc()
	}
	return items, matched
}

// NothingToDo is the result message m is counted under when it gives no
// item: "unmatched" when no rule covers any of its objects (a prefix
// mistyped shows there), "ignored" when one does and passes it by by
// design (a delete its rule does not propagate, a version's delete), or
// when it names no object xrc acts on (only events it passes by: a
// lifecycle expiration, a restore).
func NothingToDo(m events.Message, covered bool) string {
	if covered || len(m.Refs) == 0 {
		return "ignored"
	}
	return "unmatched"
}
