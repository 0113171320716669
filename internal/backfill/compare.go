package backfill

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/events"
)

// object is one source object as a listing or an inventory row shows it.
type object struct {
	Key          string
	Size         int64
	LastModified time.Time
	ETag         string // without quotes
	VersionID    string // known from an inventory only
	// Archived: S3 lets no one read it until it is restored (its storage
	// class, as the listing or inventory gives it), so sending it would
	// only put its message in the DLQ.
	Archived string
}

func fromListing(o s3types.Object) object {
	obj := object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified),
		ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
	if o.StorageClass == s3types.ObjectStorageClassGlacier || o.StorageClass == s3types.ObjectStorageClassDeepArchive {
		// Readable while a restored copy lasts: the listing says so when
		// asked for RestoreStatus (list.go).
		if rs := o.RestoreStatus; rs == nil || aws.ToBool(rs.IsRestoreInProgress) || rs.RestoreExpiryDate == nil {
			obj.Archived = string(o.StorageClass)
		}
	}
	return obj
}

// verdict is what one destination holds of a source object, weakest
// first: an object is counted under the strongest verdict of its
// destinations, and sent from older on.
type verdict int

const (
	upToDate   verdict = iota
	laterThere         // xrc's copy of a later write than the one compared: up to date, its tags another write's
	notByXRC
	retag // the same write, other tags (Options.Tags)
	older
	resized
	missing
)

// state is what a destination holds at an object's key: a listing gives
// presence and size; HEAD adds the metadata (headed).
type state struct {
	found  bool
	size   int64
	headed bool
	meta   map[string]string
}

// needsHead reports whether only the object's provenance can decide.
func (s state) needsHead(src object) bool { return s.found && s.size == src.Size && !s.headed }

// judge compares a source object with what one destination holds. ETags
// are never compared (a multipart ETag is no digest, and the target uploads
// with its own part size); see the package doc.
func judge(src object, dst state) verdict {
	if !dst.found {
		return missing
	}
	xrc := deliver.WrittenByXRC(dst.meta, src.Key)
	ms, err := strconv.ParseInt(dst.meta[deliver.MetaModified], 10, 64)
	timed := xrc && err == nil
	// HEAD, and so the provenance, carries whole seconds; a listing may
	// carry milliseconds.
	dstSec, srcSec := time.UnixMilli(ms).Unix(), src.LastModified.Unix()
	switch {
	case dst.size != src.Size && timed && dstSec > srcSec:
		// xrc's copy of a later write than src (an inventory row, older
		// than the report): its size is that write's.
		return laterThere
	case dst.size != src.Size:
		return resized
	case !xrc:
		return notByXRC
	case !timed:
		// Provenance without its time (dropped for lack of metadata
		// room): it cannot be ordered, so it is left alone.
		return upToDate
	case dstSec < srcSec:
		return older
	case dstSec == srcSec && src.VersionID != "" && dst.meta[deliver.MetaVersion] != "" && dst.meta[deliver.MetaVersion] != src.VersionID:
		return older
	case dstSec > srcSec:
		return laterThere
	}
	return upToDate
}

// lookup finds what a destination holds at the keys of a page, in key
// order (listing mode); nil heads every key (inventory mode).
// from, if not "", is a destination key before key that maps from the
// source key listed just before key's: none between them can be one this
// run looks up, so a listing may skip there.
type lookup func(ctx context.Context, di int, key, from string) (state, error)

// candidate is a source object the rule covers, with what each
// destination holds of it.
type candidate struct {
	o      object
	prev   string   // the source key listed just before it ("" if unknown)
	keys   []string // destination key, per run.dests
	states []state
	worst  verdict
}

// namedAtWarn is how many unroutable keys, and how many late writes, a run
// names at warn (the rest at debug: a cause may hit millions).
const namedAtWarn = 10

// handle filters a page of source objects, compares the rest with every
// destination and sends the events of those that differ. It returns once
// the events are accepted (or with the error that stopped it).
// prev is the source key listed just before objs[0] ("" if none).
func (r *run) handle(ctx context.Context, objs []object, prev string, look lookup) error {
	r.c.listed.Add(int64(len(objs)))
	var cands []*candidate
	for i, o := range objs {
		if i > 0 {
			prev = objs[i-1].Key
		}
		if !r.o.Rule.Matches(r.o.Rule.SourceBucket, o.Key) || !strings.HasPrefix(o.Key, r.root) || o.LastModified.Before(r.o.Since) {
			continue
		}
		r.c.matched.Add(1)
		if _, err := r.o.Rule.Routes(o.Key); err != nil {
			// Named, so it can be fixed (the rule or the key); the first
			// few at warn, as a bad rewrite may hit millions.
			log := r.Log.Debug
			if r.c.unroutable.Add(1) <= namedAtWarn {
				log = r.Log.Warn
			}
			log("unroutable key skipped: the rule maps it to no valid destination key", zap.String("object", awsapi.URL(r.o.Rule.SourceBucket, o.Key)), zap.Error(err))
			continue
		}
		c := &candidate{o: o, prev: prev, keys: make([]string, len(r.dests)), states: make([]state, len(r.dests))}
		for di, d := range r.dests {
			c.keys[di] = r.o.Rule.DestinationKey(d.d, o.Key)
		}
		cands = append(cands, c)
	}
	if look != nil {
		for di := range r.dests {
			for _, c := range cands {
				var from string
				if f := r.o.Rule.DestinationKey(r.dests[di].d, c.prev); c.prev != "" && len(f) <= config.MaxKeyLen {
					from = f
				}
				s, err := look(ctx, di, c.keys[di], from)
				if err != nil {
					return err
				}
				c.states[di] = s
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.Concurrency)
	for _, c := range cands {
		for di, d := range r.dests {
			if look != nil && !c.states[di].needsHead(c.o) {
				continue
			}
			g.Go(func() error {
				s, err := head(gctx, d.api, d.d.Bucket, c.keys[di])
				c.states[di] = s
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, c := range cands {
		for di := range r.dests {
			c.worst = max(c.worst, judge(c.o, c.states[di]))
		}
	}
	if r.o.Tags {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(r.o.Concurrency)
		for _, c := range cands {
			// Only where every destination holds the write: a copy
			// xrc did not write cannot be matched to it, and the
			// target would wait for a write that never comes; a copy
			// of a later write has that write's tags, not these.
			if c.worst == upToDate {
				g.Go(func() error {
					differ, err := r.tagsDiffer(gctx, c)
					if differ {
						c.worst = retag
					}
					return err
				})
			}
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	var refs []events.ObjectRef
	var bytes, late, lateMultipart int64
	for _, c := range cands {
		r.c.compared.Add(1)
		// A listed object's event names the write listed: one overwritten
		// since has an event of its own, and the source skips this one.
		// An inventory report is older than that, maybe older than the
		// notifications, so a write since it may have none: its events
		// name the key alone, and the source reads what it holds now.
		version, etag := c.o.VersionID, c.o.ETag
		if r.o.Inventory != "" {
			version, etag = "", ""
		}
		switch c.worst {
		case upToDate, laterThere:
			r.c.upToDate.Add(1)
			continue
		case notByXRC:
			r.c.notByXRC.Add(1)
			continue
		case retag:
			r.c.tagsDiffer.Add(1)
			// A tag change, as S3 announces one: the source worker reads
			// the key's tags now and sends them to the copies of this
			// write (manifest.Object.Retag), and no bytes.
			refs = append(refs, events.ObjectRef{
				EventName: "ObjectTagging:Put",
				EventTime: r.Now().UTC(),
				Region:    r.o.Rule.SourceRegion,
				Bucket:    r.o.Rule.SourceBucket,
				Key:       c.o.Key,
				VersionID: version,
				ETag:      etag,
			})
			continue
		}
		if c.o.Archived != "" {
			// The source could not read it: restored first, it is sent
			// by a run after.
			r.c.archived.Add(1)
			lowest(&r.c.archivedSince, c.o.LastModified.UnixMilli())
			r.Log.Debug("archived: not sent until restored", zap.String("object", awsapi.URL(r.o.Rule.SourceBucket, c.o.Key)),
				zap.String("storageClass", c.o.Archived))
			continue
		}
		switch c.worst {
		case older:
			r.c.older.Add(1)
		case resized:
			r.c.resized.Add(1)
		case missing:
			r.c.missing.Add(1)
		}
		refs = append(refs, events.ObjectRef{
			EventName: "ObjectCreated:Put",
			// The object's own time, not now: until the source's HEAD
			// replaces it, the event time stands for the write's.
			EventTime: c.o.LastModified.UTC(),
			Region:    r.o.Rule.SourceRegion,
			Bucket:    r.o.Rule.SourceBucket,
			Key:       c.o.Key,
			VersionID: version,
			ETag:      etag,
			Size:      c.o.Size,
		})
		bytes += c.o.Size
		switch {
		case !r.late(c.o):
		case multipart(c.o):
			// Counted apart: its completion, which its event follows,
			// is not in a listing.
			lateMultipart++
		default:
			late++
			log := r.Log.Debug
			if r.lateNamed.Add(1) <= namedAtWarn {
				log = r.Log.Warn
			}
			log("late write sent: made after the last complete run began, long enough ago that its event should have delivered it (lost, or failed)",
				zap.String("object", awsapi.URL(r.o.Rule.SourceBucket, c.o.Key)), zap.Time("lastModified", c.o.LastModified))
		}
	}
	if err := r.send.send(ctx, refs); err != nil {
		return err
	}
	r.c.enqueued.Add(int64(len(refs)))
	r.c.late.Add(late)
	r.c.lateMultipart.Add(lateMultipart)
	r.c.bytes.Add(bytes)
	return nil
}

// tagsDiffer reports whether a destination of c, each holding its very
// write, has other tags than the source object: a tag change it missed. Either side
// gone since it was compared is no difference: its delete or write has an
// event of its own.
func (r *run) tagsDiffer(ctx context.Context, c *candidate) (bool, error) {
	in := &s3.GetObjectTaggingInput{Bucket: &r.o.Rule.SourceBucket, Key: &c.o.Key}
	if c.o.VersionID != "" {
		in.VersionId = &c.o.VersionID
	}
	out, err := r.Source.GetObjectTagging(ctx, in)
	switch {
	case awsapi.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("tags of %s: %w", awsapi.URL(r.o.Rule.SourceBucket, c.o.Key), err)
	}
	src := awsapi.TagMap(out.TagSet)
	for di, d := range r.dests {
		out, err := d.api.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &d.d.Bucket, Key: &c.keys[di]})
		switch {
		case awsapi.IsNotFound(err):
			continue
		case err != nil:
			return false, fmt.Errorf("tags of %s: %w", awsapi.URL(d.d.Bucket, c.keys[di]), err)
		}
		if !maps.Equal(src, awsapi.TagMap(out.TagSet)) {
			return true, nil
		}
	}
	return false, nil
}

// head reads what a destination holds at key.
func head(ctx context.Context, api DestAPI, bucket, key string) (state, error) {
	out, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if awsapi.IsNotFound(err) {
		return state{headed: true}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("head %s: %w", awsapi.URL(bucket, key), err)
	}
	return state{found: true, size: aws.ToInt64(out.ContentLength), headed: true, meta: out.Metadata}, nil
}
