package deliver

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// Provenance metadata (x-amz-meta-*) written on every destination object.
// Short names: S3 allows 2 KB of user metadata in all, and the source's own
// metadata comes first.
const (
	MetaSequencer = "xrc-seq"     // source event sequencer
	MetaVersion   = "xrc-version" // source version id
	MetaModified  = "xrc-mtime"   // source last-modified, Unix milliseconds
	MetaSeen      = "xrc-seen"    // a time the source's key held this write, Unix milliseconds: when the source read it (manifest.Object.Seen) or, for a write its event orders, when that write completed (its event's time)
	MetaArchive   = "xrc-archive" // archive that carried it
	MetaSHA256    = "xrc-sha256"  // hex SHA-256 of the bytes
	MetaKey       = "xrc-key"     // KeyMark of the source key it copies
)

// KeyMark ties provenance to the source key whose write it copies: the
// first 8 hex digits of the key's SHA-256. A copy of xrc's object made at
// a key another source key maps to (CopyObject keeps metadata by default)
// carries the other's mark, so is not xrc's write there: its sequencer, of
// another key, orders nothing (a write would be skipped as older, for
// good) and a delete of the key it sits at must not remove it. The source
// key, not the destination's: a copy moved to where a changed prefix
// rewrite now maps the same source key is still that key's write.
func KeyMark(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// archiveDropped stands for the archive id where the metadata budget has
// no room for it.
const archiveDropped = "-"

// provenanceKeys are every key xrc writes, in the order the metadata budget
// keeps them: what orders writes and deletes first (sequencer, time, and
// for writes without a sequencer the version and when the source saw
// it), then the archive id (or its mark, archiveDropped), then the digest,
// then the key mark (after the archive's mark: metadata).
var provenanceKeys = []string{MetaSequencer, MetaModified, MetaVersion, MetaSeen, MetaArchive, MetaSHA256, MetaKey}

// WrittenByXRC reports whether user metadata (keys as the SDK returns them)
// of the object at a destination key sourceKey maps to marks an object xrc
// wrote from sourceKey: any of its provenance keys, since a source's own
// xrc- keys are renamed (manifest.DestinationMetadataKey) and the metadata
// budget may have dropped any one of them, unless its key mark names
// another source key (a copy). Objects written before the mark, or where
// the budget dropped it, have none and are taken as written there. Only
// xrc's own objects are deleted, retagged or ordered by xrc.
func WrittenByXRC(md map[string]string, sourceKey string) bool {
	if mark := md[MetaKey]; mark != "" && mark != KeyMark(sourceKey) {
		return false
	}
	for _, k := range provenanceKeys {
		if md[k] != "" {
			return true
		}
	}
	return false
}

// metaPrefix starts every provenance key; a source object's own metadata
// under it is renamed (manifest.DestinationMetadataKey).
const (
	metaPrefix  = manifest.MetadataPrefix
	metaRenamed = manifest.MetadataRenamed
)

// maxMetadata is the limit on user metadata, in bytes. AWS counts keys and
// values; MinIO (and so some S3-compatible destinations) counts each
// header's full name, x-amz-meta- included: for a region with an S3
// endpoint of its own, the budget counts it too (Worker.awsBudget).
const (
	maxMetadata  = 2048
	headerPrefix = len("x-amz-meta-")
)

// provenance is what a destination object says about its source write.
type provenance struct {
	ok        bool  // written by xrc
	size      int64 // the object's size; -1: the key holds none
	sequencer string
	version   string
	modified  int64 // Unix milliseconds
	seen      int64 // Unix milliseconds; 0: unknown
}

func readProvenance(md map[string]string, sourceKey string) provenance {
	p := provenance{sequencer: md[MetaSequencer], version: md[MetaVersion], size: -1}
	p.modified, _ = strconv.ParseInt(md[MetaModified], 10, 64)
	p.seen, _ = strconv.ParseInt(md[MetaSeen], 10, 64)
	p.ok = WrittenByXRC(md, sourceKey)
	return p
}

// foreignCopy reports a copy xrc did not write, of o's size, met by a
// write no event orders (a backfill's): xrc backfill leaves such a copy
// alone (one made before xrc, by S3 Batch Replication, by hand) and counts
// it "not by xrc", but sends the key when another destination of the rule
// lacks it, and that event must not replace the copy here. A write its
// event orders replaces any object xrc did not write: xrc owns its
// destinations.
func (p provenance) foreignCopy(o *manifest.Object) bool {
	return !p.ok && p.size >= 0 && p.size == o.Size && o.Sequencer == ""
}

// newerOrSame reports whether the destination already holds o's write or a
// later one. Sequencers order writes of one key; without them the source's
// last-modified time does, and at the same time the version id says
// whether it is the same write.
func (p provenance) newerOrSame(o *manifest.Object) bool {
	if !p.ok {
		return false // not written by xrc: xrc owns its destinations
	}
	if p.sequencer != "" && o.Sequencer != "" {
		return events.CompareSequencer(p.sequencer, o.Sequencer) >= 0
	}
	if p.sequencer == "" && p.seen != 0 && o.Sequencer != "" && !tombstone.ReadAfter(time.UnixMilli(p.seen), o.EventTime) {
		// A copy no sequencer orders (a backfill's) not read after o's
		// write completed, beyond the clocks' margin: o is newer,
		// whatever the times say (a multipart upload is dated when it
		// began), or the copy's write is, and has an event of its own
		// to come (o's shows that notifications were on).
		return false
	}
	if p.sequencer == "" && p.modified == 0 && p.seen != 0 && o.Sequencer != "" {
		// Only xrc-seen kept (the metadata budget): current a margin
		// after o's write completed (the check above), the copy is of o's
		// write or a newer one. Its missing time must not make it older.
		return true
	}
	if p.sequencer != "" && p.seen != 0 && o.Sequencer == "" && !o.Seen.IsZero() && !tombstone.ReadAfter(o.Seen, time.UnixMilli(p.seen)) {
		// The same the other way: a copy without a sequencer (a
		// backfill's) not read after the destination's write completed
		// is that write, an older one, or a newer one with its own
		// event to come. By times it could replace a newer write for
		// good: a multipart upload completed after the copy's write is
		// dated before it, and two versions of one second look alike.
		return true
	}
	if mod := o.LastModified.UnixMilli(); p.modified != mod {
		return p.modified > mod
	}
	if pv, ov := events.Version(p.version), events.Version(o.VersionID); pv != "" || ov != "" {
		// The same version, which a write its event orders (a sequencer)
		// writes again over a copy without one (a backfill's): the times
		// of the key's later writes cannot order them against it (a
		// multipart upload is dated when it began, so one completed
		// after it would look older, for good), their sequencers will.
		return pv == ov && (p.sequencer != "" || o.Sequencer == "")
	}
	// An unversioned key, and a time in whole seconds (S3's
	// Last-Modified): two writes of one second look alike. A write its
	// event orders (a sequencer) is not taken for the same as one without
	// (a backfill's, which may have read the earlier write of that
	// second): it is written, a PUT at worst, and from then on sequencers
	// order the key's writes.
	return o.Sequencer == ""
}

// sameWrite reports whether the destination holds o's source write: the
// same sequencer where both have one, else the same Last-Modified and
// version id (a backfill's event, and a retag, have no sequencer).
// Provenance that lost its time or version to the metadata budget cannot
// say otherwise, and is taken as the same write: xrc owns its
// destinations.
func (p provenance) sameWrite(o *manifest.Object) bool {
	switch {
	case !p.ok:
		return false
	case p.sequencer != "" && o.Sequencer != "":
		return p.sequencer == o.Sequencer
	case p.modified == 0:
		return true
	case p.modified != o.LastModified.UnixMilli():
		return false
	}
	return p.version == "" || events.Version(p.version) == events.Version(o.VersionID)
}

// holds reports whether the destination holds o's own write, xrc's (a
// delete that covers o then removes it again). A sequencer names one write
// of a key, so provenance whose time the metadata budget dropped is judged
// on it. A time alone is not enough where o has a sequencer: S3's
// Last-Modified is in whole seconds, and a newer write of the same second
// (or a backfill's copy of it) would be taken for o and deleted.
func (p provenance) holds(o *manifest.Object) bool {
	mod := o.LastModified.UnixMilli()
	switch {
	case !p.ok:
		return false
	case p.sequencer != "" && o.Sequencer != "":
		return p.sequencer == o.Sequencer && (p.modified == 0 || p.modified == mod)
	case p.sequencer == "" && o.Sequencer != "" && p.seen != 0:
		// The budget dropped the sequencer and kept when the write
		// completed (its event's time, in milliseconds): a name for one
		// write, as a whole second is not.
		return p.seen == seenOf(o).UnixMilli() && (p.modified == 0 || p.modified == mod)
	}
	return p.sequencer == o.Sequencer && p.modified == mod
}

// unidentified reports xrc's write whose provenance cannot say whether it
// is o's write: the metadata budget dropped what holds names it by (for a
// write its event orders, the sequencer and xrc-seen; else the time).
func (p provenance) unidentified(o *manifest.Object) bool {
	if !p.ok || p.sequencer != "" {
		return false
	}
	if o.Sequencer != "" {
		return p.seen == 0
	}
	return p.modified == 0
}

// order is how the destination's write stands against a delete.
type order int

const (
	olderThanDelete order = iota // removed by it
	newerThanDelete              // kept
	unknownOrder                 // kept: a newer write removed would be lost for good
)

// againstDelete orders the destination's write against the delete d
// (whose LastModified is the delete's time), as tombstone.Covers orders a
// write against a delete propagated first. Sequencers order them. Else a
// write current a margin after the delete (xrc-seen), or begun after it
// (xrc-mtime, whole seconds), is newer; any other is older, a tie going to
// the delete: a backfill's copy so removed, if its write was newer after
// all, has that write's own event to come, whose sequencer a tombstone
// does not stop. A write the metadata budget left no time (only xrc's
// marks, or a sequencer a delete without one cannot be ordered against)
// is of unknown order: removed, a newer write delivered first would be
// lost for good.
func (p provenance) againstDelete(d *manifest.Object) order {
	switch {
	case p.sequencer != "" && d.Sequencer != "":
		if events.CompareSequencer(p.sequencer, d.Sequencer) > 0 {
			return newerThanDelete
		}
		return olderThanDelete
	case p.seen > 0 && tombstone.ReadAfter(time.UnixMilli(p.seen), d.LastModified):
		return newerThanDelete
	case p.modified > d.LastModified.UnixMilli():
		return newerThanDelete
	case p.seen == 0 && p.modified == 0:
		// No time, and no sequencer on one side (the write's dropped,
		// or a store's delete without one): nothing orders them.
		return unknownOrder
	}
	return olderThanDelete
}

// seenOf is the time xrc-seen records for o: when the source read it, or
// for a write its event orders and the source did not read (a delete's
// read-back, say), when that write completed.
func seenOf(o *manifest.Object) time.Time {
	if o.Sequencer != "" && o.Seen.IsZero() {
		return o.EventTime
	}
	return o.Seen
}

func seenMilli(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// metadata is the source's user metadata (keys under xrc- renamed) plus xrc
// provenance, dropping provenance (never the user's metadata) if S3's 2 KB
// limit would be passed.
func (w *Worker) metadata(m *manifest.Manifest, o *manifest.Object, sum []byte) map[string]string {
	md := make(map[string]string, len(o.Metadata)+5)
	used, headerPrefix := 0, headerPrefix
	if w.awsBudget {
		// Counted as MinIO counts, a source object AWS took with 2 KB of
		// metadata would leave no room for any provenance, and without it
		// the copy is not xrc's: deletes and tag changes pass it by.
		headerPrefix = 0
	}
	for k, v := range o.Metadata {
		k = manifest.DestinationMetadataKey(k)
		md[k] = v
		used += headerPrefix + len(k) + len(v)
	}
	value := func(k string) string {
		switch k {
		case MetaSequencer:
			return o.Sequencer
		case MetaModified:
			return strconv.FormatInt(o.LastModified.UnixMilli(), 10)
		case MetaArchive:
			return m.ArchiveID
		case MetaVersion:
			return o.VersionID
		case MetaSeen:
			// For a write its event orders, current when it completed:
			// a copy without a sequencer is ordered against that
			// (newerOrSame).
			return seenMilli(seenOf(o))
		case MetaSHA256:
			return hex.EncodeToString(sum) // read by xrc verify only
		}
		return ""
	}
	fits := func(k, v string) bool { return used+headerPrefix+len(k)+len(v) <= maxMetadata }
	// In priority order; a key that does not fit is dropped, and a
	// shorter one after it may still fit: each is read on its own.
	for _, k := range provenanceKeys {
		v := value(k)
		if v == "" || k == MetaKey {
			continue
		}
		if !fits(k, v) {
			w.Metrics.Errors.WithLabelValues("provenance_dropped").Inc()
			w.Log.Warn("user metadata leaves no room for this xrc provenance key; with no ordering key left, ordering falls back to overwrite",
				zap.String("bucket", o.Bucket), zap.String("key", o.Key), zap.String("dropped", k))
			continue
		}
		md[k] = v
		used += headerPrefix + len(k) + len(v)
	}
	if _, ok := md[MetaArchive]; !ok && fits(MetaArchive, archiveDropped) {
		// Targets before any provenance key marked xrc's write read only
		// this one: a mark without the id, where room is left, keeps them
		// from taking the object for another's during a rolling deploy.
		md[MetaArchive] = archiveDropped
		used += headerPrefix + len(MetaArchive) + len(archiveDropped)
	}
	// Last, after the archive's mark: without it a copy at another source
	// key's destination is taken for xrc's write, as before the mark;
	// without the others, older targets or xrc verify lose what they read.
	if mark := KeyMark(o.Key); fits(MetaKey, mark) {
		md[MetaKey] = mark
	} else {
		w.Metrics.Errors.WithLabelValues("provenance_dropped").Inc()
		w.Log.Warn("user metadata leaves no room for xrc's key mark: a copy of this object at another key's destination would be taken for xrc's write there",
			zap.String("bucket", o.Bucket), zap.String("key", o.Key), zap.String("dropped", MetaKey))
	}
	return md
}

// UserMetadata is the source's user metadata as a destination object xrc
// wrote carries it: its metadata without xrc's provenance, the source's own
// keys under xrc- named as they were (what metadata renamed).
func UserMetadata(md map[string]string) map[string]string {
	out := make(map[string]string, len(md))
	for k, v := range md {
		if rest, ok := cutPrefixFold(k, metaRenamed); ok {
			out[metaPrefix+rest] = v
		} else if _, ok := cutPrefixFold(k, metaPrefix); !ok {
			out[k] = v
		}
	}
	return out
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case: S3 metadata keys
// are case-insensitive HTTP header names.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// tagging encodes tags as the x-amz-tagging query string, sorted so the
// request is deterministic.
func tagging(tags map[string]string) string {
	if len(tags) == 0 {
		return ""
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = url.QueryEscape(k) + "=" + url.QueryEscape(tags[k])
	}
	return strings.Join(parts, "&")
}
