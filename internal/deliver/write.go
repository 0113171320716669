package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// bufferMax is the largest object read into memory and written with a
// single PUT; larger ones stream through a multipart upload. An object a
// multipart upload would send in one part anyway goes in one PUT: one
// request instead of three, S3 checks its checksum as it arrives, and its
// ETag is its MD5, as a source object PUT in one request has. Memory: at
// most Concurrency of them in flight per archive, and one being read.
const bufferMax = manifest.SinglePutMax

// tally counts one archive's outcome, for the ledger and the log.
type tally struct {
	written, skipped, deleted, retagged atomic.Int64
	bytes                               atomic.Int64
}

// write is one archive's delivery: its manifest, what the config decided,
// and what happened.
type write struct {
	bucket, key string // the staging archive
	m           *manifest.Manifest
	plan        *plan
	t           *tally
}

// decide reads what the destination holds and returns its ETag, the one to
// make the write conditional on ("" for an absent key), and the reason to
// skip the write if any: the destination holds the same or a newer write,
// or a newer delete of the key was propagated (tombstone).
func (w *Worker) decide(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) (etag, skip string, err error) {
	etag, version, prov, err := w.state(ctx, o, rt)
	if err != nil {
		return "", "", err
	}
	if prov.newerOrSame(o) {
		if prov.holds(o) {
			// An earlier attempt may have written it and failed before
			// its check for a delete propagated meanwhile: check again,
			// or that delete would stay undone for good. Removed, its
			// tags are nobody's to sync.
			if undone, err := w.undoIfDeleted(ctx, wr, o, rt); err != nil || undone {
				return etag, "skipped_deleted", err
			}
		}
		if (o.TagsChanged || lateTags(o)) && prov.sameWrite(o) {
			// The event of a write delivered already came again, in a
			// batch with a change of its tags: it alone carries the
			// change. (Only then: any replay doing so would put back
			// tags changed since.) Or tags too long to go with the write
			// were set after it, and may have failed to be: a write
			// holding none gets them.
			if changed, err := w.syncTags(ctx, wr, rt, version, o, !o.TagsChanged); err != nil || changed {
				return etag, "retagged", err
			}
		}
		return etag, "skipped_older", nil
	}
	if prov.foreignCopy(o) {
		return etag, "skipped_not_xrc", nil
	}
	if w.stale(wr, o, rt) {
		return etag, "skipped_stale", nil
	}
	if deleted, err := w.deletedSince(ctx, wr, o, rt); err != nil || deleted {
		return etag, "skipped_deleted", err
	}
	return etag, "", nil
}

// staleAfter is how long after the source last held a write (its event's
// time, or a backfill's read) it may still be written where deletes
// propagate: a delete's tombstone lives tombstone.TTL, and one forgotten
// would let the older write back for good. Two days less, for clocks and
// the delivery itself. Only an archive kept past its lifecycle comes this
// late: one whose S3 Replication FAILED, re-run weeks on.
const staleAfter = tombstone.TTL - 2*24*time.Hour

// stale reports whether o, of a rule whose deletes propagate, is too old to
// be ordered against them; said at warn and counted (errors_total
// stale_write), not written: xrc backfill sends the key again as the
// source holds it now.
func (w *Worker) stale(wr *write, o *manifest.Object, rt config.Route) bool {
	held := o.Seen
	if o.EventTime.After(held) {
		held = o.EventTime
	}
	if !wr.plan.rule.Deletes || held.IsZero() || w.Clock.Since(held) <= staleAfter {
		return false
	}
	w.Metrics.Errors.WithLabelValues("stale_write").Inc()
	w.Log.Warn("write too old to be ordered against deletes (their tombstones last 30 days): not written; run xrc backfill for the rule, which sends the key as the source holds it now",
		zap.String("archive", wr.m.ArchiveID), zap.String("sourceBucket", o.Bucket), zap.String("sourceKey", o.Key),
		zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.Time("sourceHeldAt", held))
	return true
}

// deletedSince reports whether a delete newer than o's write was propagated
// to rt (only rules that propagate deletes leave tombstones).
func (w *Worker) deletedSince(ctx context.Context, wr *write, o *manifest.Object, rt config.Route) (bool, error) {
	if !wr.plan.rule.Deletes {
		return false, nil
	}
	t, ok, err := w.Tombstones.Get(ctx, rt.Bucket, rt.Key)
	if err != nil {
		return false, err
	}
	return ok && covers(t, o), nil
}

// covers reports whether the delete t is newer than o's write. Where
// sequencers cannot order them (a tombstone without one: an S3-compatible
// store's event), a write its event orders is dated by its completion
// (seenOf), as againstDelete dates it: its Last-Modified, when a multipart
// upload began, would have a write completed after the delete removed.
func covers(t tombstone.Tombstone, o *manifest.Object) bool {
	return t.Covers(o.Sequencer, o.LastModified, seenOf(o))
}

// state reads the destination key: its ETag (empty if absent), version id
// (nil if unversioned) and provenance.
func (w *Worker) state(ctx context.Context, o *manifest.Object, rt config.Route) (string, *string, provenance, error) {
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &rt.Bucket, Key: &rt.Key})
	if awsapi.IsNotFound(err) {
		return "", nil, provenance{size: -1}, nil
	}
	if err != nil {
		return "", nil, provenance{size: -1}, fmt.Errorf("head s3://%s/%s: %w", rt.Bucket, rt.Key, err)
	}
	prov := readProvenance(head.Metadata, o.Key)
	prov.size = aws.ToInt64(head.ContentLength)
	return aws.ToString(head.ETag), versionOf(head.VersionId), prov, nil
}

// versionOf is the version id S3 gave an object, nil if it has none to
// name it by (an unversioned bucket's "null").
func versionOf(v *string) *string {
	if s := aws.ToString(v); s != "" && s != "null" {
		return &s
	}
	return nil
}

// writeBuffered writes one object held in memory to one destination unless
// it holds the same or a newer write. The put is conditional on what was
// read, so a concurrent writer of a newer version wins the race; on losing
// it, the decision is taken again against what is there now. Unless keys
// of rt's bucket are often there already, the first put is made without
// reading, on the condition that the key is absent (optimistic.go), where
// the store is known to refuse it when the key is there.
func (w *Worker) writeBuffered(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, sum, buf []byte) error {
	guessed := w.guess && !w.overwrites.headFirst(rt.Bucket)
	if guessed {
		done, err := w.putIfAbsent(ctx, wr, o, rt, sum, buf)
		if done || err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		etag, skip, err := w.decide(ctx, wr, o, rt)
		if err != nil {
			return w.failed(ctx, wr, o, rt, err)
		}
		if attempt == 1 && !guessed {
			w.overwrites.observe(rt.Bucket, etag != "")
		}
		if skip != "" {
			w.skipped(wr, o, rt, skip)
			return nil
		}
		err = w.put(ctx, wr, o, rt, sum, bytes.NewReader(buf), etag)
		if writeLost(err, etag) && attempt < 3 {
			continue
		}
		if err != nil {
			return w.failed(ctx, wr, o, rt, err)
		}
		return nil
	}
}

// putIfAbsent is writeBuffered's first try: the put on the condition that
// the key is absent, without reading it first. done is false when the key
// was there (nothing written, nothing counted yet).
func (w *Worker) putIfAbsent(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, sum, buf []byte) (done bool, err error) {
	// The delete check the read would have come with: an absent key may be
	// one whose newer delete was propagated.
	if w.stale(wr, o, rt) {
		w.skipped(wr, o, rt, "skipped_stale")
		return true, nil
	}
	deleted, err := w.deletedSince(ctx, wr, o, rt)
	if err != nil {
		return true, w.failed(ctx, wr, o, rt, err)
	}
	if deleted {
		if _, err := w.undo(ctx, o, rt); err != nil {
			return true, w.failed(ctx, wr, o, rt, err)
		}
		w.skipped(wr, o, rt, "skipped_deleted")
		return true, nil
	}
	err = w.put(ctx, wr, o, rt, sum, bytes.NewReader(buf), "")
	if writeLost(err, "") {
		w.overwrites.observe(rt.Bucket, true)
		w.Metrics.PutRefused.Inc()
		return false, nil
	}
	if err != nil {
		return true, w.failed(ctx, wr, o, rt, err)
	}
	w.overwrites.observe(rt.Bucket, false)
	return true, nil
}

// writeStream writes one large object, read once from the archive, to each
// of its destinations that needs it. A destination that fails (a
// concurrent write won the race, an outage) drops out of the tee; the
// others still get every byte, and the message is retried for the one
// that failed.
func (w *Worker) writeStream(ctx context.Context, wr *write, o *manifest.Object, routes []config.Route, sum []byte, data io.Reader) error {
	type dest struct {
		rt   config.Route
		etag string
	}
	var todo []dest
	for _, rt := range routes {
		decided := w.Clock.Now()
		etag, skip, err := w.decide(ctx, wr, o, rt)
		if err != nil {
			return w.failed(ctx, wr, o, rt, err)
		}
		if skip != "" {
			w.skipped(wr, o, rt, skip)
			// An earlier attempt of this archive may have begun an
			// upload it never recorded (killed between the two): no
			// later write of the key aborts one this old. Only those
			// begun before the read that decided (a concurrent
			// delivery's, unrecorded for a moment, may be newer), and
			// not under a key another writer holds: its unrecorded
			// uploads are more likely that writer's than ours.
			if skip != "skipped_not_xrc" {
				w.abortStale(ctx, rt, wr.m.CreatedAt, decided)
			}
			w.abortOwn(ctx, wr, o, rt)
			continue
		}
		todo = append(todo, dest{rt, etag})
	}
	if len(todo) > 0 && w.uploadMem != nil {
		need := int64(len(todo)) * partMemory(o.Size)
		if need > w.UploadMemory {
			return w.failed(ctx, wr, o, todo[0].rt, fmt.Errorf("%w: %d bytes to %d destinations need %d bytes of part buffers, more than the %d this worker gives them (half its memory limit): give the target more memory",
				ErrTooLarge, o.Size, len(todo), need, w.UploadMemory))
		}
		// Members of archives delivered at once wait for each other's
		// buffers rather than run the worker out of memory.
		if err := w.uploadMem.Acquire(ctx, need); err != nil {
			return err
		}
		defer w.uploadMem.Release(need)
	}
	switch len(todo) {
	case 0:
		return nil // the reader drains and verifies what is left
	case 1:
		if err := w.put(ctx, wr, o, todo[0].rt, sum, data, todo[0].etag); err != nil {
			return w.failed(ctx, wr, o, todo[0].rt, err)
		}
		return nil
	}
	return fanOut(data, len(todo), func(i int, r io.Reader) error {
		if err := w.put(ctx, wr, o, todo[i].rt, sum, r, todo[i].etag); err != nil {
			return w.failed(ctx, wr, o, todo[i].rt, err)
		}
		return nil
	})
}

// fanOut copies data to n puts at once, each reading its own pipe; one that
// fails or returns early leaves the others going. The error joins the puts'
// own and data's.
func fanOut(data io.Reader, n int, put func(i int, r io.Reader) error) error {
	var g errgroup.Group
	var all allErrors
	t := &tee{}
	for i := range n {
		pr, pw := io.Pipe()
		t.sinks = append(t.sinks, pw)
		g.Go(func() error {
			err := put(i, pr)
			// Stop the tee writing here; a reader that returned early
			// (an upload that failed) would otherwise block it.
			pr.CloseWithError(errSinkDone)
			return all.add(err)
		})
	}
	_, err := io.Copy(t, data)
	for _, pw := range t.sinks {
		pw.CloseWithError(err) // nil: EOF, the upload completes
	}
	_ = g.Wait() // every error is in all
	if errors.Is(err, errNoSinkLeft) {
		// Every put has returned, and their errors say why: kept beside
		// them, this one would make a wait for a concurrent delivery
		// (uploads.ErrRecorded) look like a failure.
		err = nil
	}
	return errors.Join(err, all.join())
}

// errSinkDone closes a tee sink whose upload has returned.
var errSinkDone = errors.New("destination upload ended")

// errNoSinkLeft ends a tee whose every sink has returned.
var errNoSinkLeft = errors.New("every destination upload of this object has ended")

// tee writes to every sink still reading; it fails only when none is left.
type tee struct {
	sinks []*io.PipeWriter
	dead  []bool
}

func (t *tee) Write(p []byte) (int, error) {
	if t.dead == nil {
		t.dead = make([]bool, len(t.sinks))
	}
	live := 0
	for i, pw := range t.sinks {
		if t.dead[i] {
			continue
		}
		if _, err := pw.Write(p); err != nil {
			t.dead[i] = true
			continue
		}
		live++
	}
	if live == 0 {
		return 0, errNoSinkLeft
	}
	return len(p), nil
}

func (w *Worker) skipped(wr *write, o *manifest.Object, rt config.Route, result string) {
	if result == "retagged" {
		wr.t.retagged.Add(1) // not written, but not left as it was either
	} else {
		wr.t.skipped.Add(1)
	}
	w.Metrics.Objects.WithLabelValues(wr.m.RuleID, result).Inc()
	w.said(wr, o, rt, result)
}

// said logs what became of one object at one destination, at debug: with
// logLevel debug, the answer to "why is s3://b/k not there" (skipped as
// older, deleted since, not xrc's...) and which archive carried it.
func (w *Worker) said(wr *write, o *manifest.Object, rt config.Route, result string) {
	if ce := w.Log.Check(zap.DebugLevel, "object "+result); ce != nil {
		ce.Write(zap.String("archive", wr.m.ArchiveID), zap.String("rule", wr.m.RuleID), zap.String("sourceBucket", o.Bucket),
			zap.String("sourceKey", o.Key), zap.String("bucket", rt.Bucket), zap.String("key", rt.Key), zap.String("result", result))
	}
}

func (w *Worker) failed(ctx context.Context, wr *write, o *manifest.Object, rt config.Route, err error) error {
	switch {
	case ctx.Err() != nil:
		// Cut short by another write of the archive failing (counted
		// there), or by the stop, a lost receipt or Lambda's deadline
		// (the archive counted interrupted): no failure of its own.
	case Waiting(err):
		// Another delivery of the archive writes it: expected, not failed.
		w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
	case errors.Is(err, archive.ErrInvalid), errors.As(err, new(*stagingReadError)):
		// A large member's bytes failed their digest as they streamed,
		// or the staging archive's read failed under it: the archive's
		// trouble, counted with its delivery (verify failures, kind
		// staging_read), not the destination's; nothing was written.
	default:
		w.Metrics.Objects.WithLabelValues(wr.m.RuleID, "failed").Inc()
		w.said(wr, o, rt, "failed")
		w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
	}
	return fmt.Errorf("writing s3://%s/%s (source %s/%s): %w", rt.Bucket, rt.Key, o.Bucket, o.Key, err)
}

func errorKind(err error) string {
	switch {
	case errors.As(err, new(*stagingReadError)):
		return "staging_read" // before the S3 codes: a resumed read's 404 or 412 is staging's
	case awsapi.IsAccessDenied(err):
		return "access_denied"
	case awsapi.IsNotFound(err):
		return "not_found"
	case awsapi.IsPreconditionFailed(err):
		return "precondition_failed"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, uploads.ErrRecorded):
		return "concurrent_delivery"
	case errors.Is(err, ErrChecksum):
		return "checksum"
	default:
		return "write"
	}
}

// progressReader reports progress to the runtime as a large object
// streams, so a worker busy with one multi-GB object is not taken for stuck.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.progress()
	return n, err
}
