package deliver_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// retagArchive is an archive carrying a change of the tags of of's write.
func (p *pipeline) retagArchive(id string, of *manifest.Object, tags map[string]string) *manifest.Manifest {
	m := manifestFor(id, nil, p.cfg, nil)
	m.Objects = []manifest.Object{{Bucket: of.Bucket, Key: of.Key, VersionID: of.VersionID, ETag: of.ETag,
		LastModified: of.LastModified, Tags: tags, Retag: true, Destinations: of.Destinations}}
	return m
}

// tagsAt returns the tags of a destination object.
func (p *pipeline) tagsAt(t testing.TB, bucket, key string) map[string]string {
	t.Helper()
	out, err := p.dst.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("tags of s3://%s/%s: %v", bucket, key, err)
	}
	tags := map[string]string{}
	for _, tag := range out.TagSet {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return tags
}

// TestRetag: a change of a source object's tags reaches the destination's
// copy of that very write through the tagging calls, its bytes and
// provenance untouched; removing every tag removes them there. A change for
// a write the destination does not hold yet waits for that write's archive
// and lands after it; one for a write the destination holds a newer one of
// is skipped, as is one for an object never replicated here.
func TestRetag(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		c.Rules[0].Deletes = true
		// Room for the retries of a retag waiting for its write.
		c.Settings.Worker.MaxReceiveCount = 10
	})
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTargetWith(t, p.dst, p.sqs, 3*time.Second)

	k := "data/retag/k.txt"
	m, objs := p.objectArchive("create-1", k, seqAt(1), []byte("tagged"))
	m.Objects[0].Tags = map[string]string{"a": "1"}
	p.deliver(t, "r1/create-1.tar.zst", m, objs)
	head := func(key string) *s3.HeadObjectOutput {
		out, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := head(k)

	p.deliver(t, "r1/retag-1.tar.zst", p.retagArchive("retag-1", &m.Objects[0], map[string]string{"a": "2", "b": "x y"}), nil)
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"a": "2", "b": "x y"}) {
		t.Fatalf("tags after the change = %v", got)
	}
	after := head(k)
	if aws.ToString(after.ETag) != aws.ToString(before.ETag) || after.Metadata[deliver.MetaArchive] != "create-1" {
		t.Errorf("the object was written again (ETag %s, archive %s), not retagged", aws.ToString(after.ETag), after.Metadata[deliver.MetaArchive])
	}
	p.deliver(t, "r1/retag-2.tar.zst", p.retagArchive("retag-2", &m.Objects[0], nil), nil)
	if got := p.tagsAt(t, dst, k); len(got) != 0 {
		t.Fatalf("tags after all were removed = %v", got)
	}
	// The write's own event again, read after another change of its tags
	// (the batch carried the change on the write, no retag beside it).
	again := *m
	again.ArchiveID = "create-1-again"
	again.Objects = []manifest.Object{m.Objects[0]}
	again.Objects[0].Tags = map[string]string{"c": "9"}
	again.Objects[0].TagsChanged = true
	p.deliver(t, "r1/create-1-again.tar.zst", &again, objs)
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"c": "9"}) {
		t.Fatalf("tags after the write's replay = %v, want the tags it was read with", got)
	}
	if after := head(k); after.Metadata[deliver.MetaArchive] != "create-1" {
		t.Errorf("the replayed write was written again (archive %s)", after.Metadata[deliver.MetaArchive])
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_older"); n != 0 {
		t.Errorf("skipped_older = %v: the replay was counted as skipped and retagged", n)
	}
	// Any other replay (a retry of its archive) leaves the tags alone: it
	// would put back tags changed since it was read.
	plain := *m
	plain.ArchiveID = "create-1-plain"
	p.deliver(t, "r1/create-1-plain.tar.zst", &plain, objs)
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"c": "9"}) {
		t.Fatalf("tags after a plain replay = %v: it put back the tags it was read with", got)
	}
	p.deliver(t, "r1/retag-2b.tar.zst", p.retagArchive("retag-2b", &m.Objects[0], nil), nil)
	if n := metric(t, reg, "xrc_target_objects_total", "result", "retagged"); n != 4 {
		t.Errorf("retagged = %v, want 4", n)
	}

	// The change overtakes its write's archive: it waits for it.
	k2 := "data/retag/later.txt"
	m2, objs2 := p.objectArchive("create-2", k2, seqAt(2), []byte("later"))
	m2.Objects[0].Tags = map[string]string{"a": "1"}
	p.stage(t, "r1/retag-3.tar.zst", p.retagArchive("retag-3", &m2.Objects[0], map[string]string{"a": "2"}), nil)
	if !poll(time.Minute, 100*time.Millisecond, func() bool {
		// The archive's count comes last, after the object's.
		return metric(t, reg, "xrc_target_objects_total", "result", "retag_wait") >= 1 &&
			metric(t, reg, "xrc_target_archives_total", "result", "waiting") >= 1
	}) {
		t.Fatal("a change of tags for a write not delivered yet did not fail its first try")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "failed"); n != 0 {
		t.Errorf("failed = %v: a retag waiting for its write is no failed write", n)
	}
	// Nor a failed archive, nor an error for on-call: it is expected.
	if n := metric(t, reg, "xrc_target_archives_total", "result", "failed"); n != 0 {
		t.Errorf("archives failed = %v, want the wait counted apart", n)
	}
	if n := metric(t, reg, "xrc_target_archives_total", "result", "waiting"); n < 1 {
		t.Errorf("archives waiting = %v, want >= 1", n)
	}
	for _, e := range p.logs.FilterLevelExact(zap.ErrorLevel).All() {
		t.Errorf("error logged while a retag waits for its write: %s %v", e.Message, e.ContextMap()["error"])
	}
	if p.exists(t, dst, k2) {
		t.Fatal("a retag wrote an object")
	}
	p.deliver(t, "r1/create-2.tar.zst", m2, objs2)
	staging := p.cfg.Settings.Regions[1].StagingBucket
	if !poll(time.Minute, 200*time.Millisecond, func() bool { return p.count(t, p.dst, staging, "r1/retag-3.tar.zst") == 0 }) {
		t.Fatal("the change of tags was not delivered once its write was")
	}
	if got := p.tagsAt(t, dst, k2); !maps.Equal(got, map[string]string{"a": "2"}) {
		t.Fatalf("tags = %v: the write's archive, arriving late, undid the change", got)
	}

	// A change for an older write than the destination's: that one's own
	// event brought its tags.
	m3, objs3 := p.objectArchive("create-3", k, seqAt(3), []byte("newer"))
	m3.Objects[0].LastModified = m.Objects[0].LastModified.Add(time.Second)
	m3.Objects[0].Tags = map[string]string{"c": "3"}
	p.deliver(t, "r1/create-3.tar.zst", m3, objs3)
	p.deliver(t, "r1/retag-4.tar.zst", p.retagArchive("retag-4", &m.Objects[0], map[string]string{"a": "4"}), nil)
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"c": "3"}) {
		t.Errorf("tags of the newer write = %v, want its own", got)
	}

	// A change for a write whose delete was propagated since.
	k5 := "data/retag/deleted.txt"
	m5, objs5 := p.objectArchive("create-5", k5, seqAt(5), []byte("deleted"))
	p.deliver(t, "r1/create-5.tar.zst", m5, objs5)
	p.deliver(t, "r1/delete-6.tar.zst", p.deleteArchive("delete-6", k5, seqAt(6)), nil)
	p.deliver(t, "r1/retag-6.tar.zst", p.retagArchive("retag-6", &m5.Objects[0], map[string]string{"a": "6"}), nil)
	if p.exists(t, dst, k5) {
		t.Error("a retag brought a deleted object back")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_deleted"); n != 1 {
		t.Errorf("skipped_deleted = %v, want 1", n)
	}

	// An object older than any archive still on its way, never replicated.
	old := manifest.Object{Bucket: m.Objects[0].Bucket, Key: "data/retag/never.txt", LastModified: time.Now().Add(-tombstone.TTL - time.Hour).UTC(),
		Destinations: destinations(&p.cfg.Rules[0], "data/retag/never.txt")}
	p.deliver(t, "r1/retag-5.tar.zst", p.retagArchive("retag-5", &old, map[string]string{"a": "5"}), nil)
	if p.exists(t, dst, old.Key) {
		t.Error("a retag wrote an object")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_absent"); n != 1 {
		t.Errorf("skipped_absent = %v, want 1", n)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "retagged"); n != 5 {
		t.Errorf("retagged = %v, want 5", n)
	}
}

// TestTagChangesReachDestinations: through both workers, setting and
// removing a source object's tags after it was replicated changes the
// destination's tags, not its bytes (the destination keeps the archive
// that wrote it), on an unversioned source bucket and on a versioned one.
func TestTagChangesReachDestinations(t *testing.T) {
	t.Parallel()
	for _, versioned := range []bool{false, true} {
		name := map[bool]string{false: "unversioned", true: "versioned"}[versioned]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newPipeline(t, nil)
			ctx := context.Background()
			src, dst := p.cfg.Rules[0].SourceBucket, p.cfg.Rules[0].Destinations[0].Bucket
			if versioned {
				if err := p.env.EnsureBucket(ctx, "us-east-1", src, true); err != nil {
					t.Fatal(err)
				}
			}
			srcReg, _ := p.startSourceReg(t)
			p.startTarget(t)
			k := "data/tags/" + name + ".txt"
			if _, err := p.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &src, Key: &k, Body: strings.NewReader("tagged later"), Tagging: aws.String("a=1")}); err != nil {
				t.Fatal(err)
			}
			if !poll(2*time.Minute, 200*time.Millisecond, func() bool { return p.exists(t, dst, k) }) {
				t.Fatal("object not replicated")
			}
			written, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &k})
			if err != nil {
				t.Fatal(err)
			}
			set := map[string]string{"a": "2", "scan": "clean"}
			if _, err := p.src.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &src, Key: &k, Tagging: &s3types.Tagging{TagSet: []s3types.Tag{
				{Key: aws.String("a"), Value: aws.String("2")}, {Key: aws.String("scan"), Value: aws.String("clean")}}}}); err != nil {
				t.Fatal(err)
			}
			if !poll(2*time.Minute, 200*time.Millisecond, func() bool { return maps.Equal(p.tagsAt(t, dst, k), set) }) {
				t.Fatalf("destination tags = %v, want %v", p.tagsAt(t, dst, k), set)
			}
			if _, err := p.src.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: &src, Key: &k}); err != nil {
				t.Fatal(err)
			}
			if !poll(2*time.Minute, 200*time.Millisecond, func() bool { return len(p.tagsAt(t, dst, k)) == 0 }) {
				t.Fatalf("destination tags = %v after the source's were removed", p.tagsAt(t, dst, k))
			}
			now, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &k})
			if err != nil {
				t.Fatal(err)
			}
			if a, b := written.Metadata[deliver.MetaArchive], now.Metadata[deliver.MetaArchive]; a != b {
				t.Errorf("the object was written again (archive %s, then %s), not retagged", a, b)
			}
			if n := metric(t, srcReg, "xrc_source_objects_total", "result", "retagged"); n < 2 {
				t.Errorf("source retagged = %v, want at least 2", n)
			}
		})
	}
}

// deniedTagging refuses to read tags, as a stack whose IAM predates the
// tagging grants does.
type deniedTagging struct{ deliver.S3API }

func (deniedTagging) GetObjectTagging(context.Context, *s3.GetObjectTaggingInput, ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not granted"}
}

// TestTagSyncIsBestEffort: a write delivered already, whose event comes
// again with a change of its tags, is settled even when its tags cannot be
// read: the write is there; the failure is logged and counted.
func TestTagSyncIsBestEffort(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTargetWith(t, deniedTagging{p.dst}, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	k := "data/retag/denied.txt"
	m, objs := p.objectArchive("create-1", k, seqAt(1), []byte("tagged"))
	m.Objects[0].Tags = map[string]string{"a": "1"}
	p.deliver(t, "r1/create-1.tar.zst", m, objs)
	again := *m
	again.ArchiveID = "create-1-again"
	again.Objects = []manifest.Object{m.Objects[0]}
	again.Objects[0].Tags, again.Objects[0].TagsChanged = map[string]string{"b": "2"}, true
	p.deliver(t, "r1/create-1-again.tar.zst", &again, objs)
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "tags"); n != 1 {
		t.Errorf("errors{kind=tags} = %v, want 1", n)
	}
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"a": "1"}) {
		t.Errorf("tags = %v", got)
	}
}

// slowTagging fails the first PutObjectTagging as an overloaded S3 does
// (503 SlowDown, after the SDK's own retries), or with err.
type slowTagging struct {
	deliver.S3API
	failed *atomic.Bool
	err    error
}

func (s slowTagging) PutObjectTagging(ctx context.Context, in *s3.PutObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error) {
	if s.failed.CompareAndSwap(false, true) {
		if s.err != nil {
			return nil, s.err
		}
		return nil, s3Error(http.StatusServiceUnavailable, "SlowDown", "reduce your request rate")
	}
	return s.S3API.PutObjectTagging(ctx, in, optFns...)
}

func s3Error(status int, code, msg string) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err: &smithy.GenericAPIError{Code: code, Message: msg}}
}

// TestTagSyncRetriesWhatMayHeal: a tag change carried by a replayed write
// whose tagging call fails without a refusal (a 503, or a 4xx that asks to
// try again) fails the delivery, to be retried, rather than being
// acknowledged and lost; the retry sets the tags.
func TestTagSyncRetriesWhatMayHeal(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	for i, fail := range []error{
		nil, // SlowDown
		s3Error(http.StatusBadRequest, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period."),
		s3Error(http.StatusConflict, "OperationAborted", "A conflicting conditional operation is currently in progress against this resource. Please try again."),
	} {
		k := fmt.Sprintf("data/retag/slow-%d.txt", i)
		id := fmt.Sprintf("slow-%d", i)
		m, objs := p.objectArchive(id, k, seqAt(1), []byte("tagged"))
		m.Objects[0].Tags = map[string]string{"a": "1"}
		p.stage(t, "r1/"+id+".tar.zst", m, objs)
		if err := p.targetWorker(t, deliver.Deps{}).Deliver(ctx, staging, "r1/"+id+".tar.zst"); err != nil {
			t.Fatal(err)
		}
		again := *m
		again.ArchiveID = id + "-again"
		again.Objects = []manifest.Object{m.Objects[0]}
		again.Objects[0].Tags, again.Objects[0].TagsChanged = map[string]string{"b": "2"}, true
		key := "r1/" + id + "-again.tar.zst"
		p.stage(t, key, &again, objs)
		w := p.targetWorker(t, deliver.Deps{S3: slowTagging{S3API: p.dst, failed: new(atomic.Bool), err: fail}})
		if err := w.Deliver(ctx, staging, key); err == nil {
			t.Fatalf("%v: delivered, though the tag change it alone carries was not made", fail)
		}
		if err := w.Deliver(ctx, staging, key); err != nil {
			t.Fatal(err)
		}
		if got := p.tagsAt(t, dst, k); !maps.Equal(got, map[string]string{"b": "2"}) {
			t.Errorf("%v: tags = %v, want the change", fail, got)
		}
	}
}

// headerLimit refuses, as S3 does, a write whose headers pass 8 KB: here
// its tags alone past 6 KB (metadata and the signature take the rest).
// The first PutObjectTagging fails as slowTagging's.
type headerLimit struct {
	slowTagging
}

func (h headerLimit) refuse(tagging *string) error {
	if len(aws.ToString(tagging)) <= 6<<10 {
		return nil
	}
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
		Err: &smithy.GenericAPIError{Code: "RequestHeaderSectionTooLarge", Message: "Your request header section exceeds the maximum allowed size."}}
}

func (h headerLimit) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if err := h.refuse(in.Tagging); err != nil {
		return nil, err
	}
	return h.S3API.PutObject(ctx, in, optFns...)
}

func (h headerLimit) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if err := h.refuse(in.Tagging); err != nil {
		return nil, err
	}
	return h.S3API.CreateMultipartUpload(ctx, in, optFns...)
}

// TestLongTagsAreSetAfterTheWrite: tags S3 takes (ten, of 128 and 256
// characters) but too long, escaped, for a PUT's 8 KB of headers are set
// after the write, which S3 would otherwise refuse on every try (stalling
// the archive); a tagging call that fails then fails the delivery, and its
// retry, finding the write there, sets them.
func TestLongTagsAreSetAfterTheWrite(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/retag/long-tags.txt"
	m, objs := p.objectArchive("long-1", k, seqAt(1), []byte("tagged at length"))
	tags := map[string]string{}
	for i := range 10 {
		tags[fmt.Sprintf("k%d%s", i, strings.Repeat("/", 126))] = strings.Repeat("/", 256) // each '/' sent as %2F
	}
	m.Objects[0].Tags = tags
	key := "r1/long-1.tar.zst"
	p.stage(t, key, m, objs)
	w := p.targetWorker(t, deliver.Deps{S3: headerLimit{slowTagging{S3API: p.dst, failed: new(atomic.Bool)}}})
	if err := w.Deliver(ctx, staging, key); err == nil {
		t.Fatal("delivered, though its tags were not set")
	}
	if err := w.Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, tags) {
		t.Errorf("tags = %d of them, want the 10 of the source", len(got))
	}
	// Changed since, then the write's archive replayed (a redrive): the
	// change stays.
	changed := map[string]string{"changed": "since"}
	p.stage(t, "r1/long-1-retag.tar.zst", p.retagArchive("long-1-retag", &m.Objects[0], changed), nil)
	if err := w.Deliver(ctx, staging, "r1/long-1-retag.tar.zst"); err != nil {
		t.Fatal(err)
	}
	p.stage(t, key, m, objs)
	if err := w.Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if got := p.tagsAt(t, dst, k); !maps.Equal(got, changed) {
		t.Errorf("tags = %d of them after a replay, want the change made since", len(got))
	}
}

// deniedDelete refuses, a moment late, to delete one destination key.
type deniedDelete struct {
	deliver.S3API
	key string
}

func (d deniedDelete) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	if aws.ToString(in.Key) == d.key {
		time.Sleep(200 * time.Millisecond) // after the retag's wait has failed
		return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not granted"}
	}
	return d.S3API.DeleteObject(ctx, in, optFns...)
}

// TestWaitDoesNotHideAFailure: an archive whose retag waits for its write
// and whose delete fails beside it is a failed archive, its failure
// logged: not a wait (the wait, first to end, was all that was reported).
func TestWaitDoesNotHideAFailure(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	const gone = "data/mixed/deleted.txt"
	reg, _ := p.startTargetWith(t, deniedDelete{p.dst, gone}, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	m1, objs1 := p.objectArchive("create-1", gone, seqAt(1), []byte("to be deleted"))
	p.deliver(t, "r1/create-1.tar.zst", m1, objs1)

	later, _ := p.objectArchive("create-2", "data/mixed/later.txt", seqAt(2), []byte("not delivered yet"))
	m := manifestFor("mixed", nil, p.cfg, nil)
	m.Objects = []manifest.Object{
		p.retagArchive("x", &later.Objects[0], map[string]string{"a": "2"}).Objects[0],
		p.deleteArchive("y", gone, seqAt(3)).Objects[0],
	}
	p.stage(t, "r1/mixed.tar.zst", m, nil)
	if !poll(time.Minute, 100*time.Millisecond, func() bool {
		// The release's line comes last, after the archive's count.
		return metric(t, reg, "xrc_target_archives_total", "result", "failed") >= 1 && len(p.released()) > 0
	}) {
		t.Fatalf("archives failed = %v, waiting = %v: the denied delete was hidden behind the retag's wait",
			metric(t, reg, "xrc_target_archives_total", "result", "failed"), metric(t, reg, "xrc_target_archives_total", "result", "waiting"))
	}
	found := false
	for _, e := range p.released() {
		found = found || strings.Contains(fmt.Sprint(e["error"]), "AccessDenied")
	}
	if !found {
		t.Error("no line releasing the message names the AccessDenied")
	}
}
