package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

const traceUsage = "xrc trace -config C s3://source-bucket/key"

// trace answers "why is this object not there (or not as it is at the
// source)": the source object, the rules that cover it, and at each
// destination what xrc's provenance says it holds, the ledger entry of the
// archive that carried it and the key's tombstone, then what to do. It
// reads only: a HEAD per object, two GetItems per destination.
func trace(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("xrc trace", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("config", env.Getenv("XRC_CONFIG"), "config file or ssm:///name (env XRC_CONFIG)")
	loc, rest := splitPositional(fs, args)
	if err := parseOne(fs, rest); err != nil {
		return err
	}
	if err := required(fs, traceUsage, "config", *cfgPath); err != nil {
		return err
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
	if !strings.HasPrefix(loc, "s3://") || !ok || bucket == "" || key == "" {
		return fmt.Errorf("%w: want the source object as s3://bucket/key, got %q\n%s", ErrUsage, loc, traceUsage)
	}
	cfg, err := loadConfig(ctx, *cfgPath, env)
	if err != nil {
		return err
	}
	var rules []*config.Rule
	for i := range cfg.Rules {
		if cfg.Rules[i].SourceBucket == bucket {
			rules = append(rules, &cfg.Rules[i])
		}
	}
	if len(rules) == 0 {
		return fmt.Errorf("%w: no rule of %s watches bucket %s", ErrUsage, *cfgPath, bucket)
	}
	t := &tracer{cfg: cfg, cfgPath: *cfgPath, key: key, w: env.Stdout, now: env.Now}
	return t.object(ctx, rules, bucket, key)
}

type tracer struct {
	cfg          *config.Config
	cfgPath, key string // as given: the commands it suggests use them
	w            io.Writer
	now          func() time.Time
	// unread: the source answered 403, which S3 gives for a missing
	// key and for one not readable alike.
	unread bool
	// unknown: what made a destination's verdict impossible.
	unknown []error
}

func (t *tracer) printf(format string, args ...any) { fmt.Fprintf(t.w, format, args...) }

// object traces bucket/key through every rule of rules (all of its bucket)
// that covers it.
func (t *tracer) object(ctx context.Context, rules []*config.Rule, bucket, key string) error {
	region := rules[0].SourceRegion
	src, err := s3For(ctx, t.cfg, region, region)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	t.printf("%s\n", awsapi.URL(bucket, key))
	head, err := src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	switch {
	case awsapi.IsNotFound(err):
		t.printf("  source (%s): absent (deleted, or never written)\n", region)
		head = nil
	case awsapi.IsAccessDenied(err) && awsapi.Code(err) == "Forbidden":
		// A HEAD's bare 403: S3 answers it for a missing key to one who
		// may not list the bucket.
		t.printf("  source (%s): absent, or not yours to read (403: without s3:ListBucket S3 answers so for a missing key)\n", region)
		head, t.unread = nil, true
	case err != nil:
		return fmt.Errorf("%w: head %s: %w", ErrIncomplete, awsapi.URL(bucket, key), err)
	default:
		t.printf("  source (%s): %s\n", region, describe(head.ContentLength, head.LastModified, head.ETag, head.VersionId, string(head.StorageClass), head.TagCount))
	}
	covered := 0
	for _, r := range rules {
		if !r.Matches(bucket, key) {
			continue
		}
		covered++
		routes, err := r.Routes(key)
		if err != nil {
			t.printf("  rule %s covers it, but cannot send it: %v\n", r.ID, err)
			continue
		}
		t.printf("  rule %s covers it (deletes %s): %d destination(s); its events reach queue %s (DLQ %s) in %s\n",
			r.ID, map[bool]string{true: "propagate", false: "do not propagate"}[r.Deletes], len(routes), t.cfg.SourceQueueName(r.ID), config.DeadLetterQueueName(t.cfg.SourceQueueName(r.ID)), r.SourceRegion)
		for _, rt := range routes {
			if err := t.destination(ctx, r, rt, head); err != nil {
				return fmt.Errorf("%w: %w", ErrIncomplete, err)
			}
		}
	}
	if covered == 0 {
		t.printf("  no rule covers it: rules of bucket %s take other prefixes, suffixes, or ignore it (%s)\n", bucket, ruleFilters(rules))
	}
	if len(t.unknown) > 0 {
		return fmt.Errorf("%w: %w", ErrIncomplete, errors.Join(t.unknown...))
	}
	return nil
}

// destination traces one route of rule r; head is the source object (nil
// when absent).
func (t *tracer) destination(ctx context.Context, r *config.Rule, rt config.Route, head *s3.HeadObjectOutput) error {
	dst, err := s3For(ctx, t.cfg, rt.Region, r.SourceRegion)
	if err != nil {
		return err
	}
	t.printf("  %s %s:\n", rt.Region, awsapi.URL(rt.Bucket, rt.Key))
	d, err := dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &rt.Bucket, Key: &rt.Key})
	var md map[string]string
	switch {
	case awsapi.IsNotFound(err):
		t.printf("    absent\n")
		d = nil
	case err != nil:
		return fmt.Errorf("head %s in %s: %w", awsapi.URL(rt.Bucket, rt.Key), rt.Region, err)
	default:
		md = d.Metadata
		t.printf("    %s\n", describe(d.ContentLength, d.LastModified, d.ETag, d.VersionId, string(d.StorageClass), d.TagCount))
		switch {
		case deliver.WrittenByXRC(md, t.key):
			t.printf("    written by xrc: %s\n", provenanceString(md))
		case md[deliver.MetaKey] != "":
			t.printf("    not written by xrc here: a copy of xrc's write of another key (its xrc-key names another): xrc writes over it, but never deletes or retags it\n")
		default:
			t.printf("    not written by xrc (no xrc-* provenance): xrc writes over it, but never deletes or retags it\n")
		}
	}
	var dead *tombstone.Tombstone
	var deadErr error
	region, _ := t.cfg.Region(rt.Region)
	if region.Direct {
		t.printf("    ledger and tombstones: not traced in a direct region (kept by its own deployment)\n")
	} else {
		sdk, err := awsapi.Load(ctx, rt.Region)
		if err != nil {
			return err
		}
		ddb := dynamodb.NewFromConfig(sdk)
		if id := md[deliver.MetaArchive]; id != "" && id != "-" {
			e, ok, err := ledger.New(ddb, t.cfg.TableName(), t.now).Get(ctx, id, rt.Region)
			switch {
			case err != nil:
				t.printf("    archive %s: ledger not read: %v\n", id, err)
			case ok:
				t.printf("    archive %s: delivered here %s (%d written, %d skipped, %d deleted), staging key %s\n", id,
					e.FinishedAt.UTC().Format(time.RFC3339), e.Written, e.Skipped, e.Deleted, e.StagingKey)
			default:
				t.printf("    archive %s: no ledger entry (its record expired after 30 days, or was not written)\n", id)
			}
		}
		ts, ok, err := tombstone.New(ddb, t.cfg.TableName(), t.now).Get(ctx, rt.Bucket, rt.Key)
		switch {
		case err != nil:
			t.printf("    tombstone: not read: %v\n", err)
			deadErr = err
		case ok:
			dead = &ts
			t.printf("    tombstone: deleted at the source %s (sequencer %s), carried by archive %s\n", ts.At.UTC().Format(time.RFC3339), ts.Sequencer, ts.ArchiveID)
		case r.Deletes:
			t.printf("    tombstone: none\n")
		}
	}
	ours := deliver.WrittenByXRC(md, t.key)
	if deadErr != nil && !t.unread && r.Deletes && (head == nil && d != nil && ours || head != nil && d == nil) {
		// What xrc's copy staying, or the copy's absence, means turns on
		// a delete the tombstone would record. The other destinations
		// are traced all the same.
		t.printf("    => cannot tell: whether a delete was carried here is unknown (the tombstone was not read); trace it again\n")
		t.unknown = append(t.unknown, fmt.Errorf("tombstone of %s in %s: %w", awsapi.URL(rt.Bucket, rt.Key), rt.Region, deadErr))
		return nil
	}
	t.printf("    => %s\n", t.verdict(r, head, d, md, ours, dead))
	return nil
}

// verdict says what the destination's state means, and what to do.
func (t *tracer) verdict(r *config.Rule, src, dst *s3.HeadObjectOutput, md map[string]string, ours bool, dead *tombstone.Tombstone) string {
	backfill := fmt.Sprintf("xrc backfill -config %s -rule %s -prefix %s sends it again", shellArg(t.cfgPath), r.ID, shellArg(t.key))
	if src != nil {
		if class, ok := awsapi.Unreadable(src); ok {
			// Backfill leaves what the source cannot read.
			backfill = fmt.Sprintf("the source object is in %s, unreadable until restored: restore it (aws s3api restore-object), then %s", class, backfill)
		}
	}
	resized := src != nil && dst != nil && aws.ToInt64(src.ContentLength) != aws.ToInt64(dst.ContentLength)
	queues := fmt.Sprintf("queue %s and its DLQ, then %s and %s in the target region", t.cfg.SourceQueueName(r.ID), t.cfg.TargetQueueName(), config.DeadLetterQueueName(t.cfg.TargetQueueName()))
	written := writeTime(md)
	switch {
	case t.unread:
		return "cannot tell: the source answered 403, for a missing key or one these credentials may not read; trace it with s3:GetObject and s3:ListBucket on the source bucket"
	case src == nil && dst == nil && strings.ContainsAny(t.key, "%+"):
		return "absent on both sides; if the key came from an event or a DLQ message, it is URL-encoded there (+ for a space): trace it decoded"
	case src == nil && dst == nil:
		return "in sync: absent on both sides"
	case src == nil && !r.Deletes:
		return "the source object is gone; the rule does not propagate deletes, so the copy stays"
	case src == nil && !ours:
		return "the source object is gone; the copy is not xrc's, so xrc leaves it"
	case src == nil && dead != nil && olderThanDelete(md, dead) == 1:
		return "the source object is gone and its delete was carried here, but the copy stays: the delete did not land (refused, an object lock, or cut between its record and the delete): the target's log at warn or error says why; delete the copy by hand once the cause is fixed"
	case src == nil && dead != nil && olderThanDelete(md, dead) == -1:
		return "the source object is gone and a delete was carried here, but the copy stays: it is a later write, whose own delete is on its way or failed (look in " + queues + ")"
	case src == nil && dead != nil:
		return "the source object is gone and a delete was carried here, but the copy stays, and its provenance cannot order it against that delete: if older, the delete did not land (the target's log at warn or error says why); if newer, its own delete is on its way or failed (look in " + queues + ")"
	case src == nil:
		return "the source object is gone but the copy stays: its delete is on its way or failed (look in " + queues + ")"
	case dst == nil && dead != nil:
		return "absent, and a delete is recorded: if the source's write is newer than " + dead.At.UTC().Format(time.RFC3339) + ", it is on its way or failed (look in " + queues + "); " + backfill
	case dst == nil:
		return "not delivered: its event is on its way or failed (look in " + queues + "), or was lost; " + backfill
	case !ours && !resized:
		// Backfill leaves such a copy: it may be the same bytes, copied
		// by other means.
		return "a copy xrc did not write, of the source's size: the source's write is on its way or failed (look in " + queues +
			"); a backfill leaves such a copy: compare them (xrc verify -hash-sources), or delete the copy, then " + backfill
	case !ours:
		return "a copy xrc did not write: the source's write is on its way or failed (look in " + queues + "); " + backfill
	case sameWrite(src, md) && resized:
		return fmt.Sprintf("xrc's copy of the source's write, but of another size (%s here, %s at the source): changed since by something else that kept xrc's metadata; delete the copy, then %s",
			sizeString(aws.ToInt64(dst.ContentLength)), sizeString(aws.ToInt64(src.ContentLength)), backfill)
	case sameWrite(src, md):
		return "in sync: the destination holds the source's write"
	case resized:
		return fmt.Sprintf("xrc's copy of another write than the source's (%s here, %s at the source): the newer one is on its way or failed (look in %s); %s",
			sizeString(aws.ToInt64(dst.ContentLength)), sizeString(aws.ToInt64(src.ContentLength)), queues, backfill)
	case written.IsZero():
		return "xrc's copy, but its provenance lost its times to the metadata budget: which write it holds cannot be told (compare the bytes: xrc verify -hash-sources)"
	case src.LastModified != nil && written.Truncate(time.Second).After(*src.LastModified):
		var why []string
		if strings.Contains(aws.ToString(src.ETag), "-") {
			why = append(why, "the source's write is a multipart upload, dated when it began, whose event is on its way or failed (look in "+queues+
				"); were it lost, a backfill would not replace a copy dated later: delete the copy, then "+backfill)
		}
		if v := aws.ToString(src.VersionId); v != "" && v != "null" {
			why = append(why, "the source's key went back to an older version (its newer one deleted by its version id, which no event carries to the copies)")
		}
		if len(why) == 0 {
			return "a write dated after the source's current one, which nothing explains: compare them (xrc verify -hash-sources)"
		}
		return "a write dated after the source's current one: " + strings.Join(why, "; or ")
	}
	return "an older write than the source's: the newer one is on its way or failed (look in " + queues + "); " + backfill
}

// olderThanDelete orders the write xrc's provenance md names against the
// delete d: 1 when it is older (the delete should have removed it), -1
// when newer, 0 when it cannot tell. Sequencers order a key's writes and
// deletes; without them, when the source held the write (xrc-seen) more
// than the clocks' margin from the delete, or a Last-Modified that far
// after it (a write begun after the delete); a Last-Modified before it
// orders nothing (a multipart upload's is when it began).
func olderThanDelete(md map[string]string, d *tombstone.Tombstone) int {
	if seq := md[deliver.MetaSequencer]; seq != "" && d.Sequencer != "" {
		if events.CompareSequencer(seq, d.Sequencer) < 0 {
			return 1
		}
		return -1
	}
	if ms, err := strconv.ParseInt(md[deliver.MetaSeen], 10, 64); err == nil {
		switch seen := time.UnixMilli(ms); {
		case tombstone.ReadAfter(d.At, seen): // held, then deleted
			return 1
		case tombstone.ReadAfter(seen, d.At): // deleted, then held
			return -1
		}
	}
	if w := writeTime(md); !w.IsZero() && tombstone.ReadAfter(w, d.At) {
		return -1
	}
	return 0
}

// writeTime is the source Last-Modified of the write xrc's provenance md
// names; zero when it does not say.
func writeTime(md map[string]string) time.Time {
	ms, err := strconv.ParseInt(md[deliver.MetaModified], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// sameWrite reports whether md, xrc's provenance, names the source's
// current write: its version id, else its Last-Modified time.
func sameWrite(src *s3.HeadObjectOutput, md map[string]string) bool {
	if v := aws.ToString(src.VersionId); v != "" && v != "null" && md[deliver.MetaVersion] != "" {
		return md[deliver.MetaVersion] == v
	}
	// In whole seconds, as a HEAD's Last-Modified is.
	w := writeTime(md)
	return !w.IsZero() && src.LastModified != nil && w.Truncate(time.Second).Equal(src.LastModified.Truncate(time.Second))
}

func describe(size *int64, mod *time.Time, etag, version *string, class string, tags *int32) string {
	s := fmt.Sprintf("%s, last modified %s, ETag %s", sizeString(aws.ToInt64(size)), aws.ToTime(mod).UTC().Format(time.RFC3339), aws.ToString(etag))
	if v := aws.ToString(version); v != "" && v != "null" {
		s += ", version " + v
	}
	if class == "" {
		class = "STANDARD"
	}
	return s + fmt.Sprintf(", %s, %d tag(s)", class, aws.ToInt32(tags))
}

// provenanceString is xrc's provenance as a person reads it.
func provenanceString(md map[string]string) string {
	var parts []string
	add := func(label, k string, conv func(string) string) {
		if v := md[k]; v != "" {
			if conv != nil {
				v = conv(v)
			}
			parts = append(parts, label+" "+v)
		}
	}
	msTime := func(v string) string {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return v
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	add("archive", deliver.MetaArchive, nil)
	add("sequencer", deliver.MetaSequencer, nil)
	add("source last modified", deliver.MetaModified, msTime)
	add("source version", deliver.MetaVersion, nil)
	add("source held it at", deliver.MetaSeen, msTime)
	if len(parts) == 0 {
		return "provenance partly dropped (its metadata had no room)"
	}
	return strings.Join(parts, ", ")
}

func ruleFilters(rules []*config.Rule) string {
	var s []string
	for _, r := range rules {
		f := fmt.Sprintf("%s: prefix %q", r.ID, r.Prefix)
		if r.Suffix != "" {
			f += fmt.Sprintf(", suffix %q", r.Suffix)
		}
		if len(r.Ignore) > 0 {
			f += fmt.Sprintf(", ignore %q", r.Ignore)
		}
		s = append(s, f)
	}
	return strings.Join(s, "; ")
}
