package verify

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// ErrDifferent is wrapped by callers that fail because verify found
// differences (xrc verify exits non-zero with it).
var ErrDifferent = errors.New("source and destinations differ")

// S3API is the part of the S3 client verify uses; *s3.Client satisfies it.
type S3API interface {
	s3.ListObjectsV2APIClient
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
}

// Progress receives running figures; *progress.Bar satisfies it.
type Progress interface {
	// Add counts source objects the rule covers, as they are listed.
	Add(n int64)
	// Status is a short summary of the differences so far.
	Status(s string)
}

// Defaults for Options.
const (
	DefaultListConcurrency = 8
	DefaultConcurrency     = 32
	DefaultDelimiter       = "/"
)

// Options say what to verify and how.
type Options struct {
	Rule *config.Rule
	// Prefix narrows the source keys compared; it must lie within the
	// rule's prefix (or be a prefix of it, which means the whole rule).
	Prefix string
	// Region, when set, compares only the destinations in that region.
	Region string
	// Source is a client for the rule's source region; Destinations one
	// for each destination region.
	Source       S3API
	Destinations map[string]S3API
	// HashSources reads and hashes a source object when S3 keeps no
	// checksum of it that the destination also has. It costs a GET of
	// every such byte (free in-region, internet egress from elsewhere);
	// without it those objects are counted as unchecked.
	HashSources bool
	// CompareTags reads the tags of both sides of every pair found equal
	// so far, and reports values that differ (HeadObject gives only their
	// number, and only to callers that may read them): a
	// GetObjectTagging on each side of each such pair.
	CompareTags bool
	// ListConcurrency bounds prefixes listed at once, Concurrency the
	// HeadObject and GetObject calls at once.
	ListConcurrency int
	Concurrency     int
	// Delimiter splits keys into the levels the listing fans out over.
	Delimiter string
	// PageSize is ListObjectsV2's MaxKeys (0: S3's 1,000).
	PageSize int32
	Progress Progress
}

// Difference is one object that differs, as reported.
type Difference struct {
	Kind              Kind   `json:"kind"`
	Region            string `json:"region"`
	SourceBucket      string `json:"sourceBucket"`
	SourceKey         string `json:"sourceKey"`
	DestinationBucket string `json:"destinationBucket"`
	DestinationKey    string `json:"destinationKey"`
	// Sizes and times are absent on the side an object is absent from.
	SourceSize      *int64     `json:"sourceSize,omitempty"`
	DestinationSize *int64     `json:"destinationSize,omitempty"`
	SourceModified  *time.Time `json:"sourceModified,omitempty"`
	// ReplicatedModified is the source last-modified time of the write the
	// destination holds, as its provenance (xrc-mtime) records it.
	ReplicatedModified *time.Time `json:"replicatedModified,omitempty"`
	WrittenByXRC       bool       `json:"writtenByXrc"`
	Detail             string     `json:"detail,omitempty"`
}

// Summary counts what Run saw.
type Summary struct {
	Rule         string               `json:"rule"`
	SourceBucket string               `json:"sourceBucket"`
	Prefix       string               `json:"prefix"`
	Objects      int64                `json:"objects"` // source objects the rule covers
	Bytes        int64                `json:"bytes"`
	Destinations []DestinationSummary `json:"destinations"`
	// Error is why the run stopped before comparing everything: the
	// figures then cover only what it compared.
	Error string `json:"error,omitempty"`
}

// DestinationSummary counts one destination's comparisons.
type DestinationSummary struct {
	Region string `json:"region"`
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"` // where the compared source prefix lands
	// Compared counts source objects present in the destination.
	Compared int64 `json:"compared"`
	// Equal counts pairs whose bytes a digest proved equal.
	Equal      int64 `json:"equal"`
	EqualBytes int64 `json:"equalBytes"`
	// Unchecked counts pairs of the same size and provenance for which no
	// digest was in common: their content was not compared.
	Unchecked      int64 `json:"unchecked"`
	UncheckedBytes int64 `json:"uncheckedBytes"`
	// Retained counts copies xrc wrote whose source is gone, kept by
	// design as the rule does not propagate deletes: no difference.
	Retained      int64 `json:"retained"`
	RetainedBytes int64 `json:"retainedBytes"`
	// Hashed counts source objects read to compute a digest.
	Hashed      int64          `json:"hashed"`
	HashedBytes int64          `json:"hashedBytes"`
	Counts      map[Kind]int64 `json:"counts"`
	KindBytes   map[Kind]int64 `json:"kindBytes"`
}

// Differences returns the number of differences found in all
// destinations.
func (s *Summary) Differences() int64 {
	var n int64
	for _, d := range s.Destinations {
		for _, c := range d.Counts {
			n += c
		}
	}
	return n
}

// Retained returns the number of retained copies in all destinations
// (DestinationSummary.Retained).
func (s *Summary) Retained() int64 {
	var n int64
	for _, d := range s.Destinations {
		n += d.Retained
	}
	return n
}

// Count returns the number of differences of kind k in all destinations,
// and their bytes (source bytes; destination bytes for extra objects).
func (s *Summary) Count(k Kind) (n, bytes int64) {
	for _, d := range s.Destinations {
		n += d.Counts[k]
		bytes += d.KindBytes[k]
	}
	return n, bytes
}

type destination struct {
	config.Destination
	client S3API
}

type run struct {
	o       Options
	rule    *config.Rule
	dests   []destination
	jobs    chan job
	report  func(Difference) error
	mu      sync.Mutex // guards sum, shown and report calls
	sum     Summary
	shown   time.Time // when Progress.Status was last called
	started time.Time
}

// job is a comparison that needs requests: a pair present on both sides,
// or an object only in a destination.
type job struct {
	dest           int
	src            *entry // nil: only in the destination
	dst            entry
	srcKey, dstKey string
}

// Run compares the rule's source with its destinations and calls report
// for every difference, one call at a time, as they are found (not in key
// order). It returns the summary and the first error that stopped it; a
// run that found differences is not an error here (see ErrDifferent).
func Run(ctx context.Context, o Options, report func(Difference) error) (Summary, error) {
	r, root, roots, err := newRun(o, report)
	if err != nil {
		return Summary{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var workers errgroup.Group
	for range r.o.Concurrency {
		workers.Go(func() error {
			for j := range r.jobs {
				if ctx.Err() != nil {
					continue // drain: the run has failed
				}
				if err := r.handle(ctx, j); err != nil {
					cancel(err)
					return err
				}
			}
			return nil
		})
	}
	walkers, wctx := errgroup.WithContext(ctx)
	slots := make(chan struct{}, r.o.ListConcurrency)
	slots <- struct{}{}
	walkers.Go(func() error {
		defer func() { <-slots }()
		return r.walk(wctx, walkers, slots, root, roots)
	})
	werr := walkers.Wait()
	if werr != nil {
		cancel(werr)
	}
	close(r.jobs)
	herr := workers.Wait()
	r.status(true)
	if err := errors.Join(werr, herr); err != nil {
		return r.sum, err
	}
	// Workers skip what is left once the context ends: the run is
	// incomplete then, even when nothing failed.
	return r.sum, context.Cause(ctx)
}

func newRun(o Options, report func(Difference) error) (*run, string, []string, error) {
	rule := o.Rule
	if rule == nil || o.Source == nil {
		return nil, "", nil, errors.New("verify: a rule and a source client are required")
	}
	if o.ListConcurrency <= 0 {
		o.ListConcurrency = DefaultListConcurrency
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Delimiter == "" {
		o.Delimiter = DefaultDelimiter
	}
	root, err := Root(rule, o.Prefix)
	if err != nil {
		return nil, "", nil, err
	}
	r := &run{o: o, rule: rule, report: report, jobs: make(chan job, 2*o.Concurrency), started: time.Now()}
	r.sum = Summary{Rule: rule.ID, SourceBucket: rule.SourceBucket, Prefix: root}
	var roots []string
	for _, d := range rule.Destinations {
		if o.Region != "" && d.Region != o.Region {
			continue
		}
		dup := false
		for _, have := range r.dests {
			dup = dup || have.Region == d.Region && have.Bucket == d.Bucket && rule.DestinationKey(have.Destination, root) == rule.DestinationKey(d, root)
		}
		if dup {
			continue // Routes writes one object once; compare it once
		}
		client := o.Destinations[d.Region]
		if client == nil {
			return nil, "", nil, fmt.Errorf("verify: no S3 client for region %s (rule %s, destination %s)", d.Region, rule.ID, d.Bucket)
		}
		r.dests = append(r.dests, destination{Destination: d, client: client})
		prefix := rule.DestinationKey(d, root)
		roots = append(roots, prefix)
		r.sum.Destinations = append(r.sum.Destinations, DestinationSummary{Region: d.Region, Bucket: d.Bucket, Prefix: prefix,
			Counts: map[Kind]int64{}, KindBytes: map[Kind]int64{}})
	}
	if len(r.dests) == 0 {
		return nil, "", nil, fmt.Errorf("verify: rule %s has no destination in region %q", rule.ID, o.Region)
	}
	return r, root, roots, nil
}

// Root returns the source prefix to compare: prefix narrowed to the rule's,
// or an error when prefix lies outside it.
func Root(rule *config.Rule, prefix string) (string, error) {
	switch {
	case strings.HasPrefix(rule.Prefix, prefix):
		return rule.Prefix, nil
	case strings.HasPrefix(prefix, rule.Prefix):
		return prefix, nil
	}
	return "", fmt.Errorf("verify: prefix %q is outside rule %s's prefix %q", prefix, rule.ID, rule.Prefix)
}

// walk merges one level of the source listing under src with the same
// level of every destination (prefixes dsts, in r.dests order). Prefixes
// found on any side are walked on all: in a goroutine of g when a slot is
// free, else here, so listing concurrency stays bounded and a wide level
// never queues its prefixes in memory.
func (r *run) walk(ctx context.Context, g *errgroup.Group, slots chan struct{}, src string, dsts []string) error {
	sc := newCursor(r.o.Source, r.rule.SourceBucket, src, r.o.Delimiter, r.o.PageSize)
	dcs := make([]*cursor, len(dsts))
	for i, d := range dsts {
		dcs[i] = newCursor(r.dests[i].client, r.dests[i].Bucket, d, r.o.Delimiter, r.o.PageSize)
	}
	heads := make([]*entry, len(dsts))
	for {
		se, err := sc.peek(ctx)
		if err != nil {
			return err
		}
		next := se
		for i, c := range dcs {
			if heads[i], err = c.peek(ctx); err != nil {
				return err
			}
			if e := heads[i]; e != nil && (next == nil || e.name < next.name) {
				next = e
			}
		}
		if next == nil {
			return nil
		}
		name, dir := next.name, next.dir
		if se != nil && (se.name != name || se.dir != dir) {
			se = nil
		}
		for i, e := range heads {
			if e != nil && (e.name != name || e.dir != dir) {
				heads[i] = nil
			}
		}
		if dir {
			subs := make([]string, len(dsts))
			for i := range dsts {
				subs[i] = dsts[i] + name
			}
			select {
			case slots <- struct{}{}:
				g.Go(func() error {
					defer func() { <-slots }()
					return r.walk(ctx, g, slots, src+name, subs)
				})
			default:
				if err := r.walk(ctx, g, slots, src+name, subs); err != nil {
					return err
				}
			}
		} else {
			var s *entry
			if se != nil {
				cp := *se
				s = &cp
			}
			if err := r.object(ctx, src+name, s, heads, dsts, name); err != nil {
				return err
			}
		}
		if se != nil {
			sc.pop()
		}
		for i, e := range heads {
			if e != nil {
				dcs[i].pop()
			}
		}
	}
}

// object handles one key of a level: src is the source object (nil when
// only destinations have it), dsts[i] holds the object in destination i,
// or nil.
func (r *run) object(ctx context.Context, srcKey string, src *entry, heads []*entry, prefixes []string, name string) error {
	if !r.rule.Matches(r.rule.SourceBucket, srcKey) {
		return nil // not replicated by this rule: not compared
	}
	if src != nil {
		r.mu.Lock()
		r.sum.Objects++
		r.sum.Bytes += src.size
		n := r.sum.Objects
		r.mu.Unlock()
		if r.o.Progress != nil {
			r.o.Progress.Add(1)
			if n%1000 == 0 {
				r.status(false)
			}
		}
	}
	for i, d := range r.dests {
		dstKey := prefixes[i] + name
		if src != nil {
			// The merge pairs keys by what follows the prefixes, which is
			// right only while the rule maps keys by replacing a prefix.
			if want := r.rule.DestinationKey(d.Destination, srcKey); want != dstKey {
				return fmt.Errorf("verify: rule %s maps %q to %q, not %q: the mapping is not a prefix rewrite, which verify relies on", r.rule.ID, srcKey, want, dstKey)
			}
		}
		switch {
		case src != nil && heads[i] == nil:
			diff := r.difference(Missing, i, srcKey, dstKey)
			diff.SourceSize, diff.SourceModified = &src.size, &src.modified
			if _, err := r.rule.Routes(srcKey); err != nil {
				diff.Detail = err.Error()
			}
			if err := r.add(i, diff, src.size); err != nil {
				return err
			}
		case heads[i] != nil:
			j := job{dest: i, src: src, dst: *heads[i], srcKey: srcKey, dstKey: dstKey}
			select {
			case r.jobs <- j:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	return nil
}

func (r *run) difference(k Kind, dest int, srcKey, dstKey string) Difference {
	d := r.dests[dest]
	return Difference{Kind: k, Region: d.Region, SourceBucket: r.rule.SourceBucket, SourceKey: srcKey, DestinationBucket: d.Bucket, DestinationKey: dstKey}
}

// add counts and reports one difference of size bytes (or a retained
// copy, counted apart).
func (r *run) add(dest int, d Difference, size int64) error {
	r.mu.Lock()
	ds := &r.sum.Destinations[dest]
	if d.Kind == Retained { // reported, but no difference
		ds.Retained++
		ds.RetainedBytes += size
	} else {
		ds.Counts[d.Kind]++
		ds.KindBytes[d.Kind] += size
	}
	var err error
	if r.report != nil {
		err = r.report(d)
	}
	r.mu.Unlock()
	r.status(false)
	return err
}

// status passes the differences so far to Progress, at most every 200 ms
// unless final.
func (r *run) status(final bool) {
	if r.o.Progress == nil {
		return
	}
	r.mu.Lock()
	if now := time.Now(); final || now.Sub(r.shown) >= 200*time.Millisecond {
		r.shown = now
	} else {
		r.mu.Unlock()
		return
	}
	var parts []string
	var total int64
	for _, k := range Kinds {
		n, _ := r.sum.Count(k)
		total += n
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	s := fmt.Sprintf("%d differ", total)
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	s += ", " + byteString(r.sum.Bytes) + " listed"
	r.mu.Unlock()
	r.o.Progress.Status(s)
}

// handle makes the requests one job needs and reports what they show.
func (r *run) handle(ctx context.Context, j job) error {
	d := r.dests[j.dest]
	head, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.Bucket, Key: &j.dstKey, ChecksumMode: s3types.ChecksumModeEnabled})
	if awsapi.IsNotFound(err) {
		head = nil // deleted since it was listed
	} else if err != nil {
		return fmt.Errorf("head %s: %w", awsapi.URL(d.Bucket, j.dstKey), err)
	}
	if j.src == nil {
		if head == nil {
			return nil
		}
		// A copy written since the run started may be the replica of a
		// source object written after the listing passed its name: no
		// extra if the source has one now (left for the next run: the
		// listing did not count it). An older copy's source, if any, was
		// there to be listed.
		if aws.ToTime(head.LastModified).After(r.started.Add(-awsapi.ClockSkew)) {
			if now, err := r.sourceExists(ctx, j.srcKey); err != nil || now {
				return err
			}
		}
		return r.extra(j, head, "")
	}
	if head == nil {
		// Deleted from the destination since its listing: missing only if
		// its source is still there (a delete propagated is not).
		if now, err := r.sourceExists(ctx, j.srcKey); err != nil || !now {
			return err
		}
		diff := r.difference(Missing, j.dest, j.srcKey, j.dstKey)
		diff.SourceSize, diff.SourceModified, diff.Detail = &j.src.size, &j.src.modified, "deleted from the destination while verify ran"
		return r.add(j.dest, diff, j.src.size)
	}
	dst := destinationOf(head, j.srcKey)
	r.headTags(dst.Head)
	src := Source{Size: j.src.size, Modified: j.src.modified}
	v := Compare(src, dst)
	if p := dst.Provenance; v.Kind == "" || p != nil && p.Modified.Unix() > src.Modified.Unix() {
		// Same size and provenance: learn what S3 knows of the source
		// (its version and checksums), then, if asked, read it. Or the
		// destination holds a source write newer than the listing saw:
		// the source changed while verify ran, and is judged as it is
		// now rather than by its listing.
		sh, err := r.o.Source.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.rule.SourceBucket, Key: &j.srcKey, ChecksumMode: s3types.ChecksumModeEnabled})
		if awsapi.IsNotFound(err) {
			return r.extra(j, head, "its source was deleted while verify ran")
		}
		if err != nil {
			return fmt.Errorf("head %s: %w", awsapi.URL(r.rule.SourceBucket, j.srcKey), err)
		}
		src = sourceOf(sh)
		r.headTags(src.Head)
		v = Compare(src, dst)
		// A headers difference is reported only when no digest differs:
		// one the bytes may hide still needs them hashed.
		if (v.Kind == "" || v.Kind == Headers) && !v.Equal && r.o.HashSources {
			if algs := hashable(src, dst); len(algs) > 0 {
				computed, err := r.hash(ctx, j.srcKey, aws.ToString(sh.ETag), algs)
				if err != nil {
					return err
				}
				if computed != nil {
					src.Computed = computed
					r.mu.Lock()
					r.sum.Destinations[j.dest].Hashed++
					r.sum.Destinations[j.dest].HashedBytes += src.Size
					r.mu.Unlock()
					v = Compare(src, dst)
				}
			}
		}
	}
	if r.o.CompareTags && v.Kind == "" && src.Head != nil && dst.Head != nil {
		why, compared, err := r.tags(ctx, d.client, d.Bucket, j)
		switch {
		case err != nil:
			return err
		case !compared:
			v.Equal = false // gone since its HEAD: unchecked, as hash leaves it
		case why != "":
			v = Verdict{Kind: Headers, Equal: v.Equal, Detail: why}
		}
	}
	r.mu.Lock()
	ds := &r.sum.Destinations[j.dest]
	ds.Compared++
	switch {
	case v.Kind != "":
	case v.Equal:
		ds.Equal++
		ds.EqualBytes += src.Size
	default:
		ds.Unchecked++
		ds.UncheckedBytes += src.Size
	}
	r.mu.Unlock()
	if v.Kind == "" {
		return nil
	}
	diff := r.difference(v.Kind, j.dest, j.srcKey, j.dstKey)
	diff.SourceSize, diff.SourceModified = &src.Size, &src.Modified
	diff.DestinationSize = &dst.Size
	diff.Detail = v.Detail
	if p := dst.Provenance; p != nil {
		diff.WrittenByXRC = true
		if !p.Modified.IsZero() {
			diff.ReplicatedModified = &p.Modified
		}
	}
	return r.add(j.dest, diff, src.Size)
}

// extra reports a destination object no source object maps to.

// sourceExists reports whether the source holds key now.
func (r *run) sourceExists(ctx context.Context, key string) (bool, error) {
	_, err := r.o.Source.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.rule.SourceBucket, Key: &key})
	switch {
	case awsapi.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("head %s: %w", awsapi.URL(r.rule.SourceBucket, key), err)
	}
	return true, nil
}

func (r *run) extra(j job, head *s3.HeadObjectOutput, why string) error {
	dst := destinationOf(head, j.srcKey)
	p := dst.Provenance
	// With deletes off, what the rule promises: a scheduled verify of a
	// rule that keeps deleted objects' copies must be able to pass. Listed
	// in the report all the same.
	kind := Extra
	if p != nil && !r.rule.Deletes {
		kind = Retained
	}
	diff := r.difference(kind, j.dest, j.srcKey, j.dstKey)
	diff.DestinationSize = &dst.Size
	switch {
	case kind == Retained:
		diff.Detail = "written by xrc; its source is gone and the rule does not propagate deletes: kept"
	case why != "":
		diff.Detail = why
	case p == nil:
		diff.Detail = "not written by xrc"
	default:
		diff.Detail = "written by xrc; its source is gone (a delete not propagated yet?)"
	}
	if p != nil {
		diff.WrittenByXRC = true
		if !p.Modified.IsZero() {
			diff.ReplicatedModified = &p.Modified
		}
	}
	return r.add(j.dest, diff, dst.Size)
}

// hash reads the source object at etag and computes algs. It returns nil
// sums when the object changed or went since its HeadObject, or is in an
// archive storage class (GLACIER, DEEP_ARCHIVE: not readable before a
// restore): its pair stays unchecked rather than compared against another
// write or failing the run.
func (r *run) hash(ctx context.Context, key, etag string, algs []Algorithm) (Sums, error) {
	out, err := r.o.Source.GetObject(ctx, &s3.GetObjectInput{Bucket: &r.rule.SourceBucket, Key: &key, IfMatch: optional(etag)})
	if awsapi.IsNotFound(err) || awsapi.IsPreconditionFailed(err) || awsapi.Code(err) == "InvalidObjectState" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", awsapi.URL(r.rule.SourceBucket, key), err)
	}
	defer out.Body.Close()
	hs := make([]hash.Hash, len(algs))
	ws := make([]io.Writer, len(algs))
	for i, alg := range algs {
		hs[i] = alg.New()
		ws[i] = hs[i]
	}
	if _, err := io.Copy(io.MultiWriter(ws...), out.Body); err != nil {
		return nil, fmt.Errorf("reading %s: %w", awsapi.URL(r.rule.SourceBucket, key), err)
	}
	sums := make(Sums, len(algs))
	for i, alg := range algs {
		sums[alg] = hs[i].Sum(nil)
	}
	return sums, nil
}

// headTags drops HEAD's tag count under CompareTags, whose read of the
// tags decides: HEAD counts them only for a caller allowed to read them,
// and a count one side gave and the other did not was a difference that
// kept the read from being made.
func (r *run) headTags(h *Head) {
	if r.o.CompareTags && h != nil {
		h.Tags = 0
	}
}

func destinationOf(h *s3.HeadObjectOutput, sourceKey string) Destination {
	d := Destination{Size: aws.ToInt64(h.ContentLength), Sums: checksums(h.ChecksumType, h.ChecksumCRC32, h.ChecksumCRC32C,
		h.ChecksumCRC64NVME, h.ChecksumSHA1, h.ChecksumSHA256, h.ChecksumSHA512, h.ChecksumMD5, h.ChecksumXXHASH64, h.ChecksumXXHASH3, h.ChecksumXXHASH128)}
	if p, ok := ParseProvenance(h.Metadata, sourceKey); ok {
		d.Provenance = &p
	}
	d.Head = headOf(h, deliver.UserMetadata(h.Metadata))
	return d
}

func headOf(h *s3.HeadObjectOutput, md map[string]string) *Head {
	return &Head{ContentType: aws.ToString(h.ContentType), ContentEncoding: aws.ToString(h.ContentEncoding),
		ContentDisposition: aws.ToString(h.ContentDisposition), ContentLanguage: aws.ToString(h.ContentLanguage),
		CacheControl: aws.ToString(h.CacheControl), Expires: aws.ToString(h.ExpiresString), WebsiteRedirect: aws.ToString(h.WebsiteRedirectLocation),
		Metadata: md, Tags: aws.ToInt32(h.TagCount)}
}

func sourceOf(h *s3.HeadObjectOutput) Source {
	s := Source{Size: aws.ToInt64(h.ContentLength), Modified: aws.ToTime(h.LastModified), Sums: checksums(h.ChecksumType, h.ChecksumCRC32, h.ChecksumCRC32C,
		h.ChecksumCRC64NVME, h.ChecksumSHA1, h.ChecksumSHA256, h.ChecksumSHA512, h.ChecksumMD5, h.ChecksumXXHASH64, h.ChecksumXXHASH3, h.ChecksumXXHASH128)}
	if v := aws.ToString(h.VersionId); v != "null" {
		s.VersionID = v
	}
	s.Head = headOf(h, h.Metadata)
	return s
}

func checksums(t s3types.ChecksumType, crc32, crc32c, crc64, sha1, sha256, sha512, md5, xx64, xx3, xx128 *string) Sums {
	return ParseChecksums(ChecksumHeaders{Type: t, Values: map[Algorithm]*string{
		CRC32: crc32, CRC32C: crc32c, CRC64NVME: crc64, SHA1: sha1, SHA256: sha256, SHA512: sha512, MD5: md5,
		XXHASH64: xx64, XXHASH3: xx3, XXHASH128: xx128,
	}})
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// byteString formats n bytes with a binary unit.
func byteString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[exp])
}

// tags compares the tag values of j's source and destination objects
// (tagsDiffer). compared is false when either was deleted since its HEAD
// (a live bucket's deletes must not stop the run).
func (r *run) tags(ctx context.Context, dst S3API, bucket string, j job) (why string, compared bool, err error) {
	read := func(c S3API, bucket, key string) (map[string]string, error) {
		out, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return nil, fmt.Errorf("tags of %s: %w", awsapi.URL(bucket, key), err)
		}
		return awsapi.TagMap(out.TagSet), nil
	}
	src, err := read(r.o.Source, r.rule.SourceBucket, j.srcKey)
	if err == nil {
		var got map[string]string
		if got, err = read(dst, bucket, j.dstKey); err == nil {
			return tagsDiffer(src, got), true, nil
		}
	}
	if awsapi.IsNotFound(err) {
		return "", false, nil
	}
	return "", false, err
}
