package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// Pack is the per-batch step: it plans an archive of the objects items name
// (events of one rule), stages it, and settles every item. The Fargate loop
// calls it for each closed batch; a Lambda handler or a test can call it
// with the same inputs. closed is when the batch closed (zero: now), for the
// archive duration metric.
func (w *Worker) Pack(ctx context.Context, rule *config.Rule, items []Item, closed time.Time) {
	if closed.IsZero() {
		closed = w.Clock.Now()
	}
	log := w.Log.With(zap.String("rule", rule.ID))
	held := &arena{pool: &w.chunks}
	// Freed only at the end: a part may be staged again without a failed
	// object.
	defer held.free()
	for _, part := range split(w.plan(ctx, rule, items, held, log)) {
		w.packPart(ctx, rule, part, closed, log)
	}
}

// split cuts entries into runs whose manifests stay well inside what
// readers accept (manifest.MaxSize, MaxEntries, MaxObjects): a batch of
// many objects with large metadata becomes several archives rather than one
// that every target would reject.
func split(entries []entry) [][]entry {
	var parts [][]entry
	start, size, n := 0, 0, 0
	for i := range entries {
		b, e := entries[i].obj.Cost()
		if i > start && (size+b > manifest.MaxSize/2 || n+e > manifest.MaxEntries/2 || i-start == manifest.MaxObjects) {
			parts = append(parts, entries[start:i])
			start, size, n = i, 0, 0
		}
		size, n = size+b, n+e
	}
	if start < len(entries) {
		parts = append(parts, entries[start:])
	}
	return parts
}

// maxRebuilds bounds the times one archive is begun again without a
// failed object: each rebuild reads and compresses the archive from its
// start.
const maxRebuilds = 8

// packPart stages one archive of entries, retrying without an object that
// fails mid-stream, and settles their items.
func (w *Worker) packPart(ctx context.Context, rule *config.Rule, entries []entry, closed time.Time, log *zap.Logger) {
	if len(entries) > 1 && !w.fits(entries) {
		// Each object fits the upload memory alone (plan), not all of
		// them in one archive: two archives.
		h := len(entries) / 2
		w.packPart(ctx, rule, slices.Clone(entries[:h]), closed, log)
		w.packPart(ctx, rule, slices.Clone(entries[h:]), closed, log)
		return
	}
	for rebuilds := 0; len(entries) > 0; rebuilds++ {
		id, err := w.stage(ctx, rule, entries, closed)
		if err == nil {
			for _, e := range entries {
				result := "archived"
				switch {
				case e.obj.Delete:
					result = "deleted"
				case e.obj.Retag:
					result = "retagged"
				}
				w.Metrics.Objects.WithLabelValues(rule.ID, result).Add(float64(len(e.items)))
			}
			recordStaged(rule, entries)
			for _, e := range entries {
				settle(e.items, nil)
			}
			return
		}
		if ru := (*relayUnsentError)(nil); errors.As(err, &ru) {
			// Staged and replicated (counted so), but a direct region has
			// neither its copy nor a relay message: only the messages
			// coming back can stage it again for that region.
			w.Metrics.Errors.WithLabelValues("relay").Inc()
			log.Warn("archive staged, but a direct region has neither its copy nor a relay message: its messages will be retried, and it staged again",
				zap.String("archive", id), zap.String("key", ru.key), zap.Int("objects", len(entries)), zap.Error(ru.err))
			for _, e := range entries {
				w.fail(rule, e.items, err)
			}
			return
		}
		if ctx.Err() != nil {
			// The drain time is over: a stop, not a failure.
			w.Metrics.Archives.WithLabelValues(rule.ID, "interrupted").Inc()
			log.Info("archive not staged: the worker is stopping; its messages are released", zap.String("archive", id),
				zap.Int("objects", len(entries)), zap.Error(err))
			for _, e := range entries {
				settle(e.items, err)
			}
			return
		}
		var oe *objectError
		if errors.As(err, &oe) && superseded(entries[oe.index], oe) && rebuilds < 2*maxRebuilds && ctx.Err() == nil {
			i := oe.index
			// Overwritten or deleted since plan read it: skipped, as plan
			// skips it (its successor has its own event), not failed
			// (which would cost its message a receive, and a busy key
			// every object it shares archives with).
			// Nor is the archive counted failed: overwrite churn, not
			// trouble, and the rebuild is counted as it ends.
			bad := entries[i]
			w.skipSuperseded(rule, bad, err, log)
			entries = w.readable(ctx, rule, slices.Delete(entries, i, i+1), i, log)
			continue
		}
		w.Metrics.Archives.WithLabelValues(rule.ID, "failed").Inc()
		if errors.As(err, &oe) && rebuilds < maxRebuilds && ctx.Err() == nil {
			// One object failed mid-stream: retry the archive without it,
			// and without every other object a first-byte read finds
			// unreadable (a KMS key the worker may not use, an archived
			// storage class: one rebuild each would make the work grow
			// with their square), and let their messages come back
			// through the queue. (Not when the drain time ended: the
			// object is not at fault, and a rebuild could not stage
			// either.)
			bad := entries[oe.index]
			log.Warn("object failed while archiving; rebuilding the archive without it", zap.String("archive", id),
				zap.String("bucket", bad.obj.Bucket), zap.String("key", bad.obj.Key), zap.Error(err))
			w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
			w.fail(rule, bad.items, err)
			entries = w.readable(ctx, rule, slices.Delete(entries, oe.index, oe.index+1), oe.index, log)
			continue
		}
		w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
		log.Warn("archive not staged; its messages will be retried", zap.String("archive", id),
			zap.Int("objects", len(entries)), zap.Error(err))
		for i, e := range entries {
			ferr := err
			if errors.As(err, &oe) && i != oe.index {
				// Another object's failure (its rebuilds spent): not
				// this one's, and not permanent for it, whatever it
				// was for that one.
				ferr = fmt.Errorf("archive not staged, another object of it failing: %v", err)
			}
			w.fail(rule, e.items, ferr)
		}
		return
	}
}

// readable fails the entries from the from-th on whose bytes are read
// only as the archive is written and whose first byte cannot be read, and
// returns the others. (Those before were read whole by the attempt that
// failed.) A read that may heal by itself (a throttle, a 5xx, a timeout)
// keeps its entry, once: failing it would cost its message a backoff and
// a receive for the same throttling the failure often was.
func (w *Worker) readable(ctx context.Context, rule *config.Rule, entries []entry, from int, log *zap.Logger) []entry {
	errs := make([]error, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.Config.Settings.Worker.Concurrency)
	for i := from; i < len(entries); i++ {
		if e := &entries[i]; e.data == nil && e.obj.HasMember() && e.obj.Size > 0 {
			g.Go(func() error {
				errs[i] = w.probe(gctx, &e.obj)
				return nil
			})
		}
	}
	_ = g.Wait()
	kept := entries[:0]
	for i, e := range entries {
		if errs[i] == nil || ctx.Err() != nil {
			kept = append(kept, e)
			continue
		}
		if awsapi.Transient(errs[i]) && !e.probeKept {
			e.probeKept = true
			kept = append(kept, e)
			continue
		}
		if superseded(e, errs[i]) {
			w.skipSuperseded(rule, e, errs[i], log)
			continue
		}
		log.Warn("object cannot be read; left out of the archive", zap.String("bucket", e.obj.Bucket), zap.String("key", e.obj.Key), zap.Error(errs[i]))
		w.Metrics.Errors.WithLabelValues(errorKind(errs[i])).Inc()
		w.fail(rule, e.items, errs[i])
	}
	return kept
}

// superseded reports a read that found e's object overwritten (If-Match:
// an unversioned key, whose overwrite has its own event) or its version
// deleted since plan described it, when nothing else of the key is in the
// batch. A version deleted by its id leaves the key reading as an older
// write, which no event announces: if the batch has one of the key's
// older events, the entry fails, and plan, trying it again, stages that
// older write or delete (olderRefs).
func superseded(e entry, err error) bool {
	switch {
	case awsapi.IsPreconditionFailed(err):
		return true
	case !awsapi.IsNotFound(err):
		return false
	}
	return !slices.ContainsFunc(e.items, func(it Item) bool {
		return !it.Ref.Retagged() && events.Version(it.Ref.VersionID) != e.obj.VersionID
	})
}

func (w *Worker) skipSuperseded(rule *config.Rule, e entry, err error, log *zap.Logger) {
	log.Debug("object overwritten or deleted since its event; skipping (what replaced it has its own event)",
		zap.String("bucket", e.obj.Bucket), zap.String("key", e.obj.Key), zap.Error(err))
	w.Metrics.Objects.WithLabelValues(rule.ID, "skipped").Add(float64(len(e.items)))
	settle(e.items, nil)
}

func settle(items []Item, err error) {
	for _, it := range items {
		it.Done(err)
	}
}

func (w *Worker) fail(rule *config.Rule, items []Item, err error) {
	w.Metrics.Objects.WithLabelValues(rule.ID, "failed").Add(float64(len(items)))
	settle(items, err)
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrUnroutable):
		return "unroutable"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrArchived):
		return "archived"
	case errors.Is(err, ErrCustomerKey):
		return "sse_c"
	case errors.Is(err, manifest.ErrInvalid):
		return "invalid_object"
	case errors.Is(err, archive.ErrChecksum):
		return "checksum"
	case awsapi.IsAccessDenied(err):
		return "access_denied"
	case awsapi.IsNotFound(err):
		return "not_found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "archive"
	}
}

// recordStaged tells each entry's items what its staging added to rule's
// statistics (Item.Staged), before they are settled: a message that then
// comes back is staged again, and counted once without xrc.
func recordStaged(rule *config.Rule, entries []entry) {
	for _, e := range entries {
		for _, it := range e.stagedItems() {
			if it.Staged != nil && e.staged.Restaged > 0 {
				it.Staged(rule.ID, e.staged)
			}
		}
	}
}
