package deliver_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// TestDeletePropagation deletes a replicated object at the source and
// expects it gone from the destination; a delete entry older than the
// destination's write (by sequencer) must leave the object alone.
func TestDeletePropagation(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	p.startSource(t)
	reg, _ := p.startTarget(t)
	src := p.cfg.Rules[0].SourceBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	keep := dataset.Object{Key: "data/keep.txt", ContentType: "text/plain", Data: []byte("keep me")}
	gone := dataset.Object{Key: "data/gone.txt", ContentType: "text/plain", Data: []byte("delete me")}
	if err := dataset.Upload(ctx, p.src, src, []dataset.Object{keep, gone}, 2); err != nil {
		t.Fatal(err)
	}
	if got := p.waitDest(t, 2, time.Minute); got != 2 {
		t.Fatalf("destination holds %d objects, want 2", got)
	}

	if _, err := p.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &src, Key: &gone.Key}); err != nil {
		t.Fatal(err)
	}
	if !poll(time.Minute, 500*time.Millisecond, func() bool { return !p.exists(t, dst, gone.Key) }) {
		t.Fatalf("%s still in the destination a minute after its source delete", gone.Key)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "deleted"); n != 1 {
		t.Errorf("%v deletes counted, want 1", n)
	}

	// A delete of keep older than its write: replayed, or overtaken by the
	// write's archive.
	head, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &keep.Key})
	if err != nil {
		t.Fatal(err)
	}
	seq := head.Metadata[deliver.MetaSequencer]
	older, ok := new(big.Int).SetString(seq, 16)
	if !ok || older.Sign() <= 0 {
		t.Fatalf("destination object has sequencer %q, want a positive hex number", seq)
	}
	older.Sub(older, big.NewInt(1))
	m := manifestFor("stale-delete", nil, p.cfg, nil)
	m.Objects = []manifest.Object{{
		Bucket: src, Key: keep.Key, Sequencer: fmt.Sprintf("%X", older), LastModified: time.Now().UTC(), Delete: true,
		Destinations: []manifest.Destination{{Region: "eu-west-1", Bucket: dst, Key: keep.Key}},
	}}
	staging := p.cfg.Settings.Regions[1].StagingBucket
	putStaging(t, p.dst, staging, "r1/stale-delete.tar.zst", writeArchive(t, m, nil))
	if !poll(time.Minute, 500*time.Millisecond, func() bool {
		return p.count(t, p.dst, staging, "r1/stale-delete") == 0
	}) {
		t.Fatal("stale delete archive not processed within a minute")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_skipped"); n != 1 {
		t.Errorf("%v deletes skipped, want 1", n)
	}
	after, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &keep.Key})
	if err != nil {
		t.Fatalf("%s removed by a delete older than its write: %v", keep.Key, err)
	}
	if aws.ToString(after.ETag) != aws.ToString(head.ETag) || !after.LastModified.Equal(*head.LastModified) {
		t.Errorf("%s changed by a stale delete", keep.Key)
	}
}

// exists reports whether bucket holds key.
func (p *pipeline) exists(t testing.TB, bucket, key string) bool {
	t.Helper()
	_, err := p.dst.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if awsapi.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestDestinationObjects checks what a destination object carries: the
// destination's storage class override, the source's user metadata and
// content type, xrc's provenance, and an S3 checksum S3 verified on upload
// (SHA-256 for single-PUT objects, a full-object CRC32C for multipart ones).
func TestDestinationObjects(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Destinations[0].StorageClass = "REDUCED_REDUNDANCY" })
	ctx := context.Background()
	p.startSource(t)
	p.startTarget(t)
	src := p.cfg.Rules[0].SourceBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	rng := newRand()
	objs := []dataset.Object{
		{Key: "data/small.txt", ContentType: "text/plain", Metadata: map[string]string{"owner": "team-a"},
			Tags: map[string]string{"project": "x r+c=d"}, Data: dataset.Text(rng, 5000)},
		{Key: "data/large.txt", ContentType: "text/csv", Metadata: map[string]string{"owner": "team-b"},
			Data: dataset.Text(rng, deliver.BufferMax+8<<20), SHA256: true}, // multipart
		// Without a SHA-256 kept by S3 at the source, a large object's
		// digest comes after it in the archive: checked, but not stored.
		{Key: "data/large-crc.txt", Data: dataset.Text(rng, deliver.BufferMax+1<<20)},
		// One part's worth, so one PUT: one request, not three.
		{Key: "data/one-part.txt", Data: dataset.Text(rng, 12<<20)},
	}
	if err := dataset.Upload(ctx, p.src, src, objs, 2); err != nil {
		t.Fatal(err)
	}
	if got := p.waitDest(t, len(objs), 2*time.Minute); got != len(objs) {
		t.Fatalf("destination holds %d objects, want %d", got, len(objs))
	}
	want := make([]dataset.Object, len(objs))
	for i, o := range objs {
		o.StorageClass = "REDUCED_REDUNDANCY"
		want[i] = o
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, want, identity, 2) {
		t.Error(err)
	}
	archives := map[string]bool{}
	for _, e := range p.logEntries("archive delivered") {
		archives[fmt.Sprint(e["archive"])] = true
	}

	sourceSums := 0
	for _, o := range objs {
		head, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &o.Key, ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		srcHead, err := p.src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &src, Key: &o.Key, ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		if head.StorageClass != s3types.StorageClassReducedRedundancy {
			t.Errorf("%s: storage class %q, want REDUCED_REDUNDANCY", o.Key, head.StorageClass)
		}
		md := head.Metadata
		if id := md[deliver.MetaArchive]; !archives[id] {
			t.Errorf("%s: %s = %q, not an archive the worker extracted (%v)", o.Key, deliver.MetaArchive, id, archives)
		}
		if md[deliver.MetaSequencer] == "" {
			t.Errorf("%s: no %s", o.Key, deliver.MetaSequencer)
		}
		if ms, err := strconv.ParseInt(md[deliver.MetaModified], 10, 64); err != nil || ms != srcHead.LastModified.UnixMilli() {
			t.Errorf("%s: %s = %q, want the source's last-modified %d", o.Key, deliver.MetaModified, md[deliver.MetaModified], srcHead.LastModified.UnixMilli())
		}
		sum := sha256.Sum256(o.Data)
		want := sha256hex(o.Data)
		if len(o.Data) > deliver.BufferMax && !o.SHA256 {
			want = ""
		}
		if got := md[deliver.MetaSHA256]; got != want {
			t.Errorf("%s: %s = %q, want %q", o.Key, deliver.MetaSHA256, got, want)
		}
		// Up to the smallest part a multipart upload sends, one PUT: its
		// ETag is the MD5 of its bytes, as a source PUT in one request has.
		if len(o.Data) <= 16<<20 {
			if got, want := strings.Trim(aws.ToString(head.ETag), `"`), fmt.Sprintf("%x", md5.Sum(o.Data)); got != want {
				t.Errorf("%s (%d bytes): ETag %s, want the MD5 %s of one PUT", o.Key, len(o.Data), got, want)
			}
		}
		// The source's own full-object checksum, which a multipart
		// upload can keep only if it is a CRC; else the SHA-256 with one
		// PUT, a CRC32C with a multipart upload.
		alg, value := fullChecksum(srcHead)
		switch {
		case alg != "" && (len(o.Data) <= deliver.BufferMax || strings.HasPrefix(alg, "CRC")):
			sourceSums++
		case len(o.Data) <= deliver.BufferMax:
			alg, value = "SHA256", base64.StdEncoding.EncodeToString(sum[:])
		default:
			alg, value = "CRC32C", checksum.CRC32C.Sum(o.Data)
		}
		if got := checksumOf(head, alg); got != value || head.ChecksumType != s3types.ChecksumTypeFullObject {
			t.Errorf("%s (%d bytes, source checksum %s): %s %s %q, want the full-object %q", o.Key, len(o.Data), srcHead.ChecksumType, head.ChecksumType, alg, got, value)
		}
	}
	// The small object and the one-part one, put with the SDK's CRC32.
	if sourceSums != 2 {
		t.Errorf("%d objects written with the source's own checksum, want 2", sourceSums)
	}
}

// checksums are the full-object checksums h carries, by algorithm.
func checksums(h *s3.HeadObjectOutput) map[string]*string {
	return map[string]*string{"CRC64NVME": h.ChecksumCRC64NVME, "CRC32C": h.ChecksumCRC32C, "CRC32": h.ChecksumCRC32,
		"SHA256": h.ChecksumSHA256, "SHA1": h.ChecksumSHA1}
}

// checksumOf is h's checksum of algorithm alg.
func checksumOf(h *s3.HeadObjectOutput, alg string) string { return aws.ToString(checksums(h)[alg]) }

// fullChecksum is the one full-object checksum S3 keeps for an object
// (an algorithm and its value), if it keeps one.
func fullChecksum(h *s3.HeadObjectOutput) (alg, value string) {
	if h.ChecksumType != s3types.ChecksumTypeFullObject {
		return "", ""
	}
	for a, v := range checksums(h) {
		if v != nil {
			return a, *v
		}
	}
	return "", ""
}

// removedFirst is the target's S3 with someone else removing the object
// just before each of the target's deletes reaches it.
type removedFirst struct {
	deliver.S3API
	deletes atomic.Int32
}

func (r *removedFirst) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	if in.IfMatch != nil {
		r.deletes.Add(1)
		if _, err := r.S3API.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: in.Bucket, Key: in.Key}); err != nil {
			return nil, err
		}
	}
	return r.S3API.DeleteObject(ctx, in, optFns...)
}

// TestDeleteOfAnObjectGoneMeanwhile: an object removed between the
// target's read and its delete was not deleted by xrc, and is counted
// absent, not deleted.
func TestDeleteOfAnObjectGoneMeanwhile(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	p.startSource(t)
	s3c := &removedFirst{S3API: p.dst}
	reg, _ := p.startTargetWith(t, s3c, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	src := p.cfg.Rules[0].SourceBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	gone := dataset.Object{Key: "data/gone.txt", ContentType: "text/plain", Data: []byte("delete me")}
	if err := dataset.Upload(ctx, p.src, src, []dataset.Object{gone}, 1); err != nil {
		t.Fatal(err)
	}
	if got := p.waitDest(t, 1, time.Minute); got != 1 {
		t.Fatalf("destination holds %d objects, want 1", got)
	}
	if _, err := p.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &src, Key: &gone.Key}); err != nil {
		t.Fatal(err)
	}
	if !poll(time.Minute, 500*time.Millisecond, func() bool {
		return metric(t, reg, "xrc_target_objects_total", "result", "delete_absent") == 1
	}) {
		t.Fatalf("no delete counted absent within a minute (deleted: %v, conditional deletes sent: %d)",
			metric(t, reg, "xrc_target_objects_total", "result", "deleted"), s3c.deletes.Load())
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "deleted"); n != 0 {
		t.Errorf("%v deletes counted, want 0: the object was gone before xrc's delete", n)
	}
	if p.exists(t, dst, gone.Key) {
		t.Errorf("%s still in the destination", gone.Key)
	}
}

// TestDeleteIntoAMissingBucketFails: a delete whose destination bucket
// does not exist (misnamed, removed) fails, to be retried and reach the
// DLQ, where it read as a key absent and was acknowledged in silence.
func TestDeleteIntoAMissingBucketFails(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	if _, err := p.dst.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &dst}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{Metrics: deliver.NewMetrics(reg)})
	staging := p.cfg.Settings.Regions[1].StagingBucket
	p.stage(t, "r1/delete-nowhere.tar.zst", p.deleteArchive("delete-nowhere", "data/gone.txt", seqAt(1)), nil)
	err := w.Deliver(ctx, staging, "r1/delete-nowhere.tar.zst")
	if err == nil || !strings.Contains(err.Error(), "destination bucket "+dst+" does not exist") {
		t.Errorf("delete into a missing bucket: %v; want it failed, naming the bucket", err)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_absent"); n != 0 {
		t.Errorf("%v deletes counted absent, want none", n)
	}
}

// refusedHeadBucket is a store, or a policy, refusing HeadBucket.
type refusedHeadBucket struct{ deliver.S3API }

func (refusedHeadBucket) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return nil, errors.New("AccessDenied: not authorized to s3:ListBucket (injected)")
}

// TestDeleteWhereTheBucketCannotBeAskedAbout: a HeadBucket refused (a
// store that does not serve it, a policy) proves no bucket missing: the
// delete of an absent key is done, not failed into the DLQ.
func TestDeleteWhereTheBucketCannotBeAskedAbout(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{S3: refusedHeadBucket{p.dst}, Metrics: deliver.NewMetrics(reg)})
	staging := p.cfg.Settings.Regions[1].StagingBucket
	p.stage(t, "r1/delete-unasked.tar.zst", p.deleteArchive("delete-unasked", "data/never.txt", seqAt(1)), nil)
	if err := w.Deliver(ctx, staging, "r1/delete-unasked.tar.zst"); err != nil {
		t.Errorf("delete of an absent key, HeadBucket refused: %v; want it done", err)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_absent"); n != 1 {
		t.Errorf("%v deletes counted absent, want 1", n)
	}
}
