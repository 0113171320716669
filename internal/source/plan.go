package source

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/stats"
)

// entry is one manifest object and the items (events) it settles.
type entry struct {
	items []Item
	obj   manifest.Object
	data  []byte // the object's bytes when plan read them (see inlineMax)
	// staged is what staging the object added to the statistics, as
	// Item.Staged hears it.
	staged stats.Delta
	// sse is how S3 said the object is encrypted (encryptionNotCarried).
	sse s3types.ServerSideEncryption
	// probeKept: its first-byte probe (readable) failed in a way that
	// may heal by itself, and it was kept; a second such failure fails
	// it, or a throttled prefix would rebuild the archive until every
	// object failed.
	probeKept bool
}

// stagedItems are the items whose events announced the write e stages
// (S3 may send one event twice, in two messages): any of their messages
// coming back stages it again. An older write's event, coming back, is
// another write.
func (e *entry) stagedItems() []Item {
	var out []Item
	for _, it := range e.items {
		if !it.Ref.Retagged() && it.Ref.Sequencer == e.obj.Sequencer {
			out = append(out, it)
		}
	}
	if len(out) == 0 {
		out = e.items[:1]
	}
	return out
}

// A small object is read whole when it is described: one GET answers what
// HEAD would and brings the bytes, so the object costs one request rather
// than two, and its bytes and metadata come from the same response. Only
// objects the event says are at most inlineMax are read so, up to
// inlineBudget bytes per batch, because their bytes are held until the
// batch is staged; the rest are described by HEAD and read when their turn
// in the archive comes (fetch.go).
const (
	inlineMax    = 256 << 10
	inlineBudget = 32 << 20
)

// plan collapses a batch's events per key (the newest sequencer wins) and
// gathers each object's metadata. Objects gone or overwritten since their
// event are settled as skipped: the event of whatever replaced them carries
// the newer state, and archiving the newer bytes under the older event's
// identity could mix two versions. An object whose key maps to no valid
// destination key fails alone (ErrUnroutable), not its whole batch.
func (w *Worker) plan(ctx context.Context, rule *config.Rule, items []Item, held *arena, log *zap.Logger) []entry {
	byKey := map[string]*entry{}
	var order []*entry
	for _, it := range items {
		k := it.Ref.Bucket + "\x00" + it.Ref.Key
		e := byKey[k]
		if e == nil {
			e = &entry{}
			byKey[k] = e
			order = append(order, e)
		}
		e.items = append(e.items, it)
	}
	// A write or delete of the key in the batch outranks its tag changes:
	// read after them, it brings the tags they set.
	newest := func(e *entry) events.ObjectRef {
		var ref *events.ObjectRef
		for i := range e.items {
			r := &e.items[i].Ref
			if !r.Retagged() && (ref == nil || events.CompareSequencer(r.Sequencer, ref.Sequencer) >= 0) {
				ref = r
			}
		}
		if ref == nil {
			return e.items[len(e.items)-1].Ref
		}
		return *ref
	}

	type outcome struct {
		keep bool
		err  error
	}
	results := make([]outcome, len(order))
	budget := w.inlineRoom
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.Config.Settings.Worker.Concurrency)
	for i, e := range order {
		ref := newest(e)
		obj, err := baseObject(rule, ref)
		if err != nil {
			results[i] = outcome{err: err}
			continue
		}
		e.obj = obj
		retags := slices.ContainsFunc(e.items, func(it Item) bool { return it.Ref.Retagged() })
		// A delete is read back too: its event may come late (a retry, a
		// backlog), after the key was written again or its delete marker
		// removed; staged, it would remove the destinations' copy while
		// the source has one, and no later event puts it back.
		if ref.Retagged() || ref.Removed() {
			g.Go(func() error {
				var keep bool
				var err error
				if ref.Removed() {
					keep, err = w.stillDeleted(gctx, e)
				}
				if !keep && err == nil && ref.Removed() {
					// The key still reads as an object: the null
					// version deleted was not its current one, or the
					// delete marker was removed since. A write of the
					// batch from before the delete may be what it reads
					// as, which no later event announces.
					keep, err = w.before(gctx, rule, e, ref)
					if keep && retags && !e.obj.Delete {
						e.obj.TagsChanged = true // read after the tag changes, and current
					}
				}
				if !keep && err == nil && retags {
					keep, err = w.retagged(gctx, rule, e)
				}
				if !keep && err == nil && ref.Removed() {
					w.Log.Debug("delete not staged: the key reads as an object again (written since, or its delete marker removed)",
						zap.String("bucket", ref.Bucket), zap.String("key", ref.Key), zap.String("event", ref.EventName))
				}
				results[i] = outcome{keep, err}
				return nil
			})
			continue
		}
		var into *arena // read whole if small and within the budget
		if ref.Size <= min(inlineMax, budget) {
			budget -= ref.Size
			into = held
		}
		g.Go(func() error {
			keep, err := w.describe(gctx, e, ref, into)
			if !keep && err == nil {
				// A version deleted by its id since its event.
				keep, err = w.before(gctx, rule, e, ref)
			}
			if keep && err == nil && !retags && !e.obj.Delete && events.Version(ref.VersionID) != "" && w.Clock.Since(ref.EventTime) > lateEvent {
				// A version is read by its id even from behind a delete
				// marker: one whose event comes this late (redriven from
				// a DLQ, which starts its 14 days again) may have been
				// deleted long enough ago for the targets' tombstone of
				// the delete to be gone. Carried only if still current
				// (what replaced it has its own event), or only deleted
				// where deletes do not propagate (current).
				keep, err = w.current(gctx, rule, events.ObjectRef{Bucket: e.obj.Bucket, Key: e.obj.Key, VersionID: e.obj.VersionID})
				if !keep && err == nil {
					w.Log.Debug("late event of a version no longer current; skipping (what replaced it has its own event)",
						zap.String("bucket", ref.Bucket), zap.String("key", ref.Key), zap.String("versionId", ref.VersionID), zap.Time("eventTime", ref.EventTime))
				}
			}
			if retags && err == nil && !e.obj.Delete {
				// A write read after the tag changes carries them, if it
				// is the key's current one; a stale event's (retried,
				// late) would not, and the changes go as a retag.
				if keep && e.obj.VersionID != "" {
					keep, err = w.current(gctx, rule, events.ObjectRef{Bucket: e.obj.Bucket, Key: e.obj.Key, VersionID: e.obj.VersionID})
				}
				if keep {
					e.obj.TagsChanged = true
				} else if err == nil {
					keep, err = w.retagged(gctx, rule, e)
				}
			}
			results[i] = outcome{keep, err}
			return nil
		})
	}
	_ = g.Wait()

	var entries []entry
	for i, e := range order {
		switch r := results[i]; {
		case r.err != nil && ctx.Err() != nil && (errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded)):
			// Cut by the drain time's end: a stop, not a failure of the
			// object (its message says so, at info). A failure of its
			// own before the cut is still one.
			settle(e.items, r.err)
		case r.err != nil:
			ref := e.items[0].Ref
			log.Warn("object not archived", zap.String("bucket", ref.Bucket), zap.String("key", ref.Key), zap.Error(r.err))
			w.Metrics.Errors.WithLabelValues(errorKind(r.err)).Inc()
			w.fail(rule, e.items, r.err)
		case !r.keep:
			w.Metrics.Objects.WithLabelValues(rule.ID, "skipped").Add(float64(len(e.items)))
			settle(e.items, nil)
		default:
			// Checked alone: in the manifest, one object S3 gave
			// metadata no target could write would fail the archive,
			// and every object batched with it, again and again.
			err := e.obj.ValidateObject()
			if err == nil && w.toStore(rule) {
				err = e.obj.ValidateForStore()
			}
			if err == nil && e.obj.HasMember() && !stagingHolds(e.obj.Size) {
				err = fmt.Errorf("%w: %s/%s is %s: its archive would pass the 10,000 parts of 5 GiB a staging upload holds", ErrUnroutable,
					e.obj.Bucket, e.obj.Key, stats.Bytes(e.obj.Size))
			}
			if need := uploadBuffers(partSize(e.obj.Size)); err == nil && e.obj.HasMember() && w.uploadMem != nil && need > w.UploadMemory {
				err = fmt.Errorf("%w: %s/%s is %s: its staging upload needs %s of part buffers, more than the %s this task gives them (half its memory limit): give the source more memory",
					ErrTooLarge, e.obj.Bucket, e.obj.Key, stats.Bytes(e.obj.Size), stats.Bytes(need), stats.Bytes(w.UploadMemory))
			}
			if err != nil {
				log.Warn("object not archived", zap.String("bucket", e.obj.Bucket), zap.String("key", e.obj.Key), zap.Error(err))
				w.Metrics.Errors.WithLabelValues(errorKind(err)).Inc()
				w.fail(rule, e.items, err)
				continue
			}
			w.encryptionNotCarried(rule, e)
			entries = append(entries, *e)
		}
	}
	return entries
}

func archived(ref events.ObjectRef, class string) error {
	return fmt.Errorf("%w: %s/%s is in %s: restore it (s3api restore-object), then redrive its message from the dead-letter queue or run xrc backfill",
		ErrArchived, ref.Bucket, ref.Key, class)
}

// current reports whether ref's version is what its key reads as now or,
// for a rule that does not propagate deletes, whether only a delete came
// after it: such a rule keeps the copies of deleted keys, and that delete's
// event (dropped by Match) replaces nothing at the targets, so skipping
// the version would leave it undelivered for good (a backfill reads only
// current objects).
func (w *Worker) current(ctx context.Context, rule *config.Rule, ref events.ObjectRef) (bool, error) {
	head, err := w.head(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key})
	switch {
	case awsapi.IsNotFound(err):
		return !rule.Deletes, nil
	case awsapi.IsCustomerKeyRequired(err): // ref's version was read: an SSE-C one is another
		return false, nil
	case err != nil:
		return false, err
	}
	return aws.ToString(head.VersionId) == ref.VersionID, nil
}

// before makes e.obj what e's key reads as, if the batch announces it
// before ref: a version deleted by its id since its event, or a delete of
// version "null" that left the key readable, leaves the key reading as
// what came before, which no later event announces. It is carried, a
// version or a delete, if it is what the key reads as now; a version from
// behind a delete only where deletes do not propagate (current).
func (w *Worker) before(ctx context.Context, rule *config.Rule, e *entry, ref events.ObjectRef) (keep bool, err error) {
	for _, older := range olderRefs(e.items, ref) {
		if e.obj, err = baseObject(rule, older); err != nil {
			return false, err
		}
		if older.Removed() {
			// The key's delete only if it reads as deleted (a marker
			// removed since, a null version deleted that was not the
			// current one: not); otherwise what came before it may be
			// current.
			if keep, err = w.stillDeleted(ctx, e); keep || err != nil {
				return keep, err
			}
			continue
		}
		if keep, err = w.describe(ctx, e, older, nil); keep && err == nil {
			keep, err = w.current(ctx, rule, older)
		}
		if keep || err != nil {
			return keep, err
		}
	}
	return false, nil
}

// olderRefs are the versions and deletes items announce before ref's
// version, the newest first; none when ref names no version.
func olderRefs(items []Item, ref events.ObjectRef) []events.ObjectRef {
	if ref.VersionID == "" {
		return nil
	}
	var refs []events.ObjectRef
	for _, it := range items {
		r := it.Ref
		if r.VersionID != "" && r.VersionID != ref.VersionID && !r.Retagged() && events.CompareSequencer(r.Sequencer, ref.Sequencer) < 0 {
			refs = append(refs, r)
		}
	}
	slices.SortFunc(refs, func(a, b events.ObjectRef) int { return events.CompareSequencer(b.Sequencer, a.Sequencer) })
	return refs
}

// baseObject is the manifest entry of ref as its event describes it, with
// the destinations the rule maps it to (config.Rule.Routes).
func baseObject(rule *config.Rule, ref events.ObjectRef) (manifest.Object, error) {
	o := manifest.Object{
		Bucket:            ref.Bucket,
		Key:               ref.Key,
		VersionID:         ref.VersionID,
		Sequencer:         ref.Sequencer,
		ETag:              ref.ETag,
		LastModified:      ref.EventTime.UTC(),
		ChecksumAlgorithm: "SHA256",
	}
	routes, err := rule.Routes(ref.Key)
	if err != nil {
		return o, fmt.Errorf("%w: %w", ErrUnroutable, err)
	}
	for _, r := range routes {
		o.Destinations = append(o.Destinations, manifest.Destination{
			Region: r.Region, Bucket: r.Bucket, Key: r.Key, StorageClass: r.StorageClass, KMSKeyID: r.KMSKeyID,
		})
	}
	return o, nil
}

// describe fills e.obj from HEAD (or, given an arena, from a GET that also
// reads e.data into it) and tagging. keep is false when the object is gone
// or no longer the version the event announced; e.data is then nil.
func (w *Worker) describe(ctx context.Context, e *entry, ref events.ObjectRef, into *arena) (keep bool, err error) {
	// WithLazy: most objects never log.
	log := w.Log.WithLazy(zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
	var head *s3.HeadObjectOutput
	if into != nil {
		head, e.data, err = w.read(ctx, ref, into)
	} else {
		head, err = w.head(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(ref.VersionID),
			ChecksumMode: s3types.ChecksumModeEnabled})
	}
	if awsapi.IsNotFound(err) {
		log.Debug("object gone since its event; skipping")
		return false, nil
	}
	if awsapi.IsCustomerKeyRequired(err) && events.Version(ref.VersionID) == "" && ref.ETag != "" {
		// A refusal says nothing of which write it refused, and HEAD is
		// refused too: a listing tells a stale event (its object
		// overwritten since by an SSE-C write, which has an event of its
		// own) from one naming the SSE-C write.
		etag, found, lerr := w.listedETag(ctx, ref)
		switch {
		case lerr != nil:
			return false, lerr
		case !found:
			log.Debug("object gone since its event; skipping")
			return false, nil
		case etag != ref.ETag:
			log.Debug("object overwritten since its event; skipping (the newer write has its own event)",
				zap.String("eventETag", ref.ETag), zap.String("currentETag", etag))
			return false, nil
		}
	}
	if awsapi.IsCustomerKeyRequired(err) {
		return false, fmt.Errorf("%w: %s/%s: copy it without SSE-C (or delete it) and redrive its message, or leave it out of the rule", ErrCustomerKey, ref.Bucket, ref.Key)
	}
	if awsapi.IsArchived(err) && into != nil && events.Version(ref.VersionID) == "" && ref.ETag != "" {
		// A GET refused says nothing of which write it refused: the HEAD
		// S3 answers for an archived object tells a stale event (its
		// object overwritten since by a write now cold, which has an
		// event of its own) from one naming the cold write.
		h, herr := w.head(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key})
		switch {
		case awsapi.IsNotFound(herr):
			log.Debug("object gone since its event; skipping")
			return false, nil
		case awsapi.IsCustomerKeyRequired(herr):
			log.Debug("object overwritten since its event by an SSE-C write; skipping (the newer write has its own event)")
			return false, nil
		case herr != nil: // retried, not taken for the cold write
			return false, herr
		}
		if etag := strings.Trim(aws.ToString(h.ETag), `"`); etag != ref.ETag {
			log.Debug("object overwritten since its event; skipping (the newer write has its own event)",
				zap.String("eventETag", ref.ETag), zap.String("currentETag", etag))
			return false, nil
		}
	}
	if awsapi.IsArchived(err) {
		return false, archived(ref, "an archive storage class")
	}
	if err != nil {
		return false, err
	}
	defer func() {
		if !keep || err != nil {
			e.data = nil // its arena space is freed with the batch's
		}
	}()
	o := &e.obj
	etag := strings.Trim(aws.ToString(head.ETag), `"`)
	// "null" pins nothing: that version is overwritten in place (an
	// unversioned or versioning-suspended bucket). Before the storage
	// class: a stale event is skipped whatever became of its object,
	// not sent to the DLQ to be restored for nothing.
	if events.Version(ref.VersionID) == "" && ref.ETag != "" && etag != ref.ETag {
		log.Debug("object overwritten since its event; skipping (the newer write has its own event)",
			zap.String("eventETag", ref.ETag), zap.String("currentETag", etag))
		return false, nil
	}
	if class, ok := awsapi.Unreadable(head); ok && into == nil { // a GET that answered read it
		return false, archived(ref, class)
	}
	if aws.ToBool(head.DeleteMarker) {
		log.Debug("object version is a delete marker; skipping")
		return false, nil
	}
	o.Size = aws.ToInt64(head.ContentLength)
	o.ETag = etag
	// "null" is kept as none: the object is read later by If-Match on its
	// ETag, not by a version id an overwrite keeps.
	if v := aws.ToString(head.VersionId); v != "" {
		o.VersionID = events.Version(v)
	} else {
		o.VersionID = events.Version(o.VersionID)
	}
	if head.LastModified != nil {
		o.LastModified = head.LastModified.UTC()
	}
	if ref.Sequencer != "" {
		o.EventTime = ref.EventTime.UTC()
	}
	if ref.Sequencer == "" && ref.VersionID == "" {
		// Read as the key's current object: a delete older than this
		// read did not remove it (tombstone.Covers).
		if t, ok := awsmiddleware.GetServerTime(head.ResultMetadata); ok {
			o.Seen = t.UTC()
		}
	}
	o.StorageClass = string(head.StorageClass)
	if o.StorageClass == "" {
		o.StorageClass = "STANDARD"
	}
	o.ContentType = aws.ToString(head.ContentType)
	o.ContentEncoding = aws.ToString(head.ContentEncoding)
	o.ContentDisposition = aws.ToString(head.ContentDisposition)
	o.ContentLanguage = aws.ToString(head.ContentLanguage)
	o.CacheControl = aws.ToString(head.CacheControl)
	o.Expires = aws.ToString(head.ExpiresString)
	o.WebsiteRedirect = aws.ToString(head.WebsiteRedirectLocation)
	if n := aws.ToInt32(head.MissingMeta); n > 0 {
		// Entries S3 holds but cannot send as x-amz-meta-* headers (set
		// through SOAP): a copy would lack them, and verify could not
		// tell.
		return false, fmt.Errorf("%w: %s/%s: S3 withholds %d of its user metadata entries from HTTP (x-amz-missing-meta): a copy would lack them; rewrite its metadata through the REST API and redrive",
			manifest.ErrInvalid, ref.Bucket, ref.Key, n)
	}
	if len(head.Metadata) > 0 {
		o.Metadata = head.Metadata
	}
	e.sse = head.ServerSideEncryption
	setChecksum(o, head)
	if aws.ToInt32(head.TagCount) > 0 {
		tags, err := w.S3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(o.VersionID)})
		if awsapi.IsNotFound(err) {
			log.Debug("object gone since its event; skipping")
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("tags of %s/%s: %w", ref.Bucket, ref.Key, err)
		}
		o.Tags = awsapi.TagMap(tags.TagSet)
		if into != nil && o.VersionID == "" {
			// Bytes and metadata came from one GET, the tags from a call
			// after it: on an unversioned key, a write in between would
			// have given its own. (Read later, a large object's bytes are
			// pinned by If-Match; a version id pins everything.)
			if same, err := w.unchanged(ctx, ref, head); err != nil || !same {
				if err == nil {
					log.Debug("object overwritten since its event; skipping (the newer write has its own event)")
				}
				return false, err
			}
		}
	}
	return true, nil
}

// lateEvent is the age past which a write's event is checked against the
// key's current version before its version is carried: far less than
// the targets keep a delete's tombstone (tombstone.TTL), less the days an
// archive may wait in staging.
const lateEvent = 24 * time.Hour

// stillDeleted reports whether e's delete still holds: the key reads as
// deleted. If it does not, the delete is stale (a write came after it,
// with its own event, and tag changes in the batch were made on that one;
// or its delete marker was removed), or it removed a version that was not
// the current one.
func (w *Worker) stillDeleted(ctx context.Context, e *entry) (bool, error) {
	_, err := w.head(ctx, &s3.HeadObjectInput{Bucket: &e.obj.Bucket, Key: &e.obj.Key})
	switch {
	case awsapi.IsNotFound(err):
		e.obj.Delete = true
		return true, nil
	case err != nil && !awsapi.IsCustomerKeyRequired(err): // an SSE-C write is a write
		return false, err
	}
	return false, nil
}

// retagged makes e.obj a retag entry (manifest.Object.Retag) of the write
// the key holds now, with its tags as they are now, if e's tag changes
// were made on that write. A change on a write since replaced, or deleted,
// is skipped: the newer write's or delete's own event carries the state.
func (w *Worker) retagged(ctx context.Context, rule *config.Rule, e *entry) (bool, error) {
	ref := e.items[0].Ref
	for _, it := range e.items {
		if it.Ref.Retagged() {
			ref = it.Ref
		}
	}
	obj, err := baseObject(rule, ref)
	if err != nil {
		return false, err
	}
	e.obj, e.data = obj, nil
	log := w.Log.WithLazy(zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
	head, err := w.head(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key})
	switch {
	case awsapi.IsNotFound(err):
		log.Debug("object gone since its tags changed; skipping")
		return false, nil
	case awsapi.IsCustomerKeyRequired(err):
		// Never archived: that write's own event is in the DLQ, or the
		// changes were made on a write it replaced.
		log.Debug("tags changed on a key that now holds an SSE-C write; skipping (its write's own event says why it is not archived)")
		return false, nil
	case err != nil:
		return false, err
	}
	version := events.Version(aws.ToString(head.VersionId))
	etag := strings.Trim(aws.ToString(head.ETag), `"`)
	if !slices.ContainsFunc(e.items, func(it Item) bool {
		r := it.Ref
		return r.Retagged() && (events.Version(r.VersionID) == "" || r.VersionID == version) && (r.ETag == "" || r.ETag == etag)
	}) {
		log.Debug("tags changed on a write since replaced; skipping (the newer write has its own event)")
		return false, nil
	}
	tags, err := w.S3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(version)})
	switch {
	case awsapi.IsNotFound(err):
		log.Debug("object gone since its tags changed; skipping")
		return false, nil
	case err != nil:
		return false, fmt.Errorf("tags of %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	if version == "" {
		// Nothing pins an unversioned key's tags to the write HEAD read.
		if same, err := w.unchanged(ctx, ref, head); err != nil || !same {
			if err == nil {
				log.Debug("object overwritten since its tags changed; skipping (the newer write has its own event)")
			}
			return false, err
		}
	}
	o := &e.obj
	o.Retag, o.VersionID, o.ETag, o.ChecksumAlgorithm, o.Checksum = true, version, etag, "", ""
	o.LastModified = aws.ToTime(head.LastModified).UTC()
	// Read as the key's current write: a delete older than this read did
	// not remove it (tombstone.Covers), though its Last-Modified, in
	// whole seconds, may read as older.
	if t, ok := awsmiddleware.GetServerTime(head.ResultMetadata); ok {
		o.Seen = t.UTC()
	}
	o.Tags = awsapi.TagMap(tags.TagSet)
	return true, nil
}

// unchanged reports whether the key still holds the write head described
// (same ETag and Last-Modified).
func (w *Worker) unchanged(ctx context.Context, ref events.ObjectRef, head *s3.HeadObjectOutput) (bool, error) {
	again, err := w.head(ctx, &s3.HeadObjectInput{Bucket: &ref.Bucket, Key: &ref.Key, IfMatch: head.ETag})
	switch {
	case awsapi.IsNotFound(err), awsapi.IsPreconditionFailed(err), awsapi.IsCustomerKeyRequired(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return aws.ToTime(again.LastModified).Equal(aws.ToTime(head.LastModified)), nil
}

// head is HEAD of in's object, its bare 400 explained: S3 answers a
// HEAD's error without a body, so a one-byte GET says why, for the one
// reason no retry fixes: an object encrypted with its writer's own key
// (awsapi.IsCustomerKeyRequired), of which HEAD tells nothing. A key
// deleted between the two reads as gone.
func (w *Worker) head(ctx context.Context, in *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
	out, err := w.S3.HeadObject(ctx, in)
	if err == nil {
		return out, nil
	}
	if awsapi.Code(err) == "BadRequest" {
		g, gerr := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: in.Bucket, Key: in.Key, VersionId: in.VersionId, Range: aws.String("bytes=0-0")})
		switch {
		case gerr == nil:
			g.Body.Close()
		case awsapi.IsNotFound(gerr), awsapi.IsCustomerKeyRequired(gerr):
			err = gerr
		default:
			err = fmt.Errorf("%w (a one-byte GET: %v)", err, gerr)
		}
	}
	return nil, fmt.Errorf("head %s/%s: %w", aws.ToString(in.Bucket), aws.ToString(in.Key), err)
}

// listedETag is the ETag of what ref's key holds as a listing shows it,
// which S3 gives of any object, one it will not let xrc read included.
func (w *Worker) listedETag(ctx context.Context, ref events.ObjectRef) (etag string, found bool, err error) {
	out, err := w.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &ref.Bucket, Prefix: &ref.Key, MaxKeys: aws.Int32(1)})
	if err != nil {
		return "", false, fmt.Errorf("listing %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	// The key itself lists first of those it prefixes.
	if len(out.Contents) == 0 || aws.ToString(out.Contents[0].Key) != ref.Key {
		return "", false, nil
	}
	return strings.Trim(aws.ToString(out.Contents[0].ETag), `"`), true, nil
}

// setChecksum records the full-object checksum S3 keeps for the object,
// if it keeps one (AWS gives every object written since 2025 a CRC64NVME
// at least): the target writes the destinations with it, so S3 checks
// the bytes it stores there against the source object's own checksum. A
// SHA-256 also lets the archive writer check the bytes it reads, and the
// target store xrc-sha256 on a large object it streams before reading its
// trailer. Without one, the destinations get the SHA-256 of the bytes.
func setChecksum(o *manifest.Object, head *s3.HeadObjectOutput) {
	o.ChecksumAlgorithm, o.Checksum, o.SHA256 = "SHA256", "", ""
	if head.ChecksumType == s3types.ChecksumTypeComposite {
		return // a digest of part digests, not of the bytes
	}
	// S3 keeps one; a SHA-256 first, should a store give more.
	for _, c := range []struct {
		alg   checksum.Algorithm
		value *string
	}{
		{checksum.SHA256, head.ChecksumSHA256}, {checksum.CRC64NVME, head.ChecksumCRC64NVME}, {checksum.CRC32C, head.ChecksumCRC32C},
		{checksum.CRC32, head.ChecksumCRC32}, {checksum.SHA1, head.ChecksumSHA1},
	} {
		// A composite value ("...-3") of a store that gives no type does
		// not parse.
		sum, err := checksum.Parse(c.alg, aws.ToString(c.value))
		if err != nil {
			continue
		}
		o.ChecksumAlgorithm, o.Checksum = string(c.alg), *c.value
		if c.alg == checksum.SHA256 {
			o.SHA256 = hex.EncodeToString(sum)
		}
		return
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// toStore reports whether rule delivers to S3-compatible stores only
// (regions with an S3 endpoint of their own), whose limits on metadata are
// tighter than AWS's. Beside an AWS destination, an object such a store
// refuses is still archived for AWS: failed at the source, every
// destination would lose it.
func (w *Worker) toStore(rule *config.Rule) bool {
	for _, d := range rule.Destinations {
		if reg, ok := w.Config.Region(d.Region); !ok || reg.S3Endpoint == "" {
			return false
		}
	}
	return len(rule.Destinations) > 0
}

// encryptionNotCarried counts an object under a KMS key whose copies will
// not be, at each such destination and each time it is planned into an
// archive (not when read: one failed or skipped after its read is not),
// and says so at warn once per rule and kind in each worker. A KMS key
// does not leave its region: a copy is encrypted with its route's
// kmsKeyId, in one layer where the source had two (DSSE-KMS), else as its
// bucket's default (perhaps SSE-S3, which any reader of the bucket may
// decrypt).
func (w *Worker) encryptionNotCarried(rule *config.Rule, e *entry) {
	dsse := e.sse == s3types.ServerSideEncryptionAwsKmsDsse
	if !e.obj.HasMember() || e.sse != s3types.ServerSideEncryptionAwsKms && !dsse {
		return
	}
	for _, d := range rule.Destinations {
		to, copies := "bucket_default", "as the destination bucket's default"
		switch {
		case d.KMSKeyID != "" && dsse:
			to, copies = "single_layer", "SSE-KMS in one layer (kmsKeyId), not DSSE-KMS"
		case d.KMSKeyID != "":
			continue
		}
		w.Metrics.EncryptionNotCarried.WithLabelValues(rule.ID, to).Inc()
		if _, said := w.saidSSE.LoadOrStore(rule.ID+"/"+to, true); said {
			continue
		}
		w.Log.Warn("source object encrypted under a KMS key its copies will not be: set the destination's kmsKeyId to a key of its region (said once per rule and kind by each worker; counted in xrc_source_encryption_not_carried_total)",
			zap.String("rule", rule.ID), zap.String("bucket", e.obj.Bucket), zap.String("key", e.obj.Key), zap.String("sse", string(e.sse)),
			zap.String("destination", d.Bucket), zap.String("copiesEncrypted", copies))
	}
}
