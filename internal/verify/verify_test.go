package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/verify"
)

// replica is a rule's source and destinations on the local stack, the
// destinations filled as the target worker fills them.
type replica struct {
	env      localstack.Env
	cfg      *config.Config
	rule     *config.Rule
	src, dst *s3.Client
	objs     []dataset.Object
}

// singlePutMax is deliver's limit for one PUT with a SHA-256 checksum;
// larger objects are multipart uploads with a full-object CRC32C.
const singlePutMax = 16 << 20

// newReplica makes a rule with a second, prefix-rewriting destination and
// an ignore pattern, fills its source with objects of many shapes (nested
// prefixes, unicode, spaces, 1,024-byte keys, empty, one multipart-sized,
// some uploaded with a SHA-256 checksum) plus objects the rule does not
// cover, and writes every covered one to both destinations with the
// provenance and checksums deliver writes.
func newReplica(t *testing.T, name string) *replica {
	t.Helper()
	env := localstack.Require(t)
	ctx := context.Background()
	cfg := env.Config(name)
	rule := &cfg.Rules[0]
	rule.Ignore = []string{"*.tmp"}
	rule.Destinations = append(rule.Destinations, config.Destination{Region: "eu-west-1", Bucket: rule.Destinations[0].Bucket + "2", Prefix: aws.String("copy/")})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &replica{env: env, cfg: cfg, rule: rule}
	var err error
	if r.src, err = env.S3(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if r.dst, err = env.S3(ctx, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	buckets := [][2]string{{"us-east-1", rule.SourceBucket}}
	for _, d := range rule.Destinations {
		buckets = append(buckets, [2]string{d.Region, d.Bucket})
	}
	for _, b := range buckets {
		if err := env.EnsureBucket(ctx, b[0], b[1], false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { env.RemoveBucket(context.Background(), b[0], b[1]) })
	}

	r.objs = dataset.Mixed("data/", 36, 11)
	for i := range r.objs {
		r.objs[i].SHA256 = i%3 == 1
	}
	r.objs = append(r.objs, dataset.Object{Key: "data/big/17mib.txt", ContentType: "text/plain", Data: bytes.Repeat([]byte("seventeen mebibytes "), 17<<20/20+1)})
	noise := []dataset.Object{{Key: "data/scratch.tmp", Data: []byte("ignored by the rule")}, {Key: "other/x", Data: []byte("outside the prefix")}}
	if err := dataset.Upload(ctx, r.src, rule.SourceBucket, append(slices.Clone(r.objs), noise...), 8); err != nil {
		t.Fatal(err)
	}
	for i := range r.objs {
		r.replicate(t, r.objs[i].Key)
	}
	// Destination objects outside the rule's mapping: another prefix, and
	// a key that maps back to an ignored source key.
	for _, k := range []string{"unrelated/y", "data/junk.tmp", "copy/junk.tmp"} {
		r.putRaw(t, rule.Destinations[0].Bucket, k, []byte("not ours"), nil)
	}
	return r
}

// replicate copies the source object at key to every destination as the
// target worker writes it: the source's metadata plus provenance
// (archive, sequencer, source last-modified from HeadObject, version,
// SHA-256), and S3's SHA-256 checksum with one PUT up to 16 MiB, else a
// multipart upload with a full-object CRC32C and no xrc-sha256 (the source
// learns a streamed object's digest only after the target started writing
// it).
func (r *replica) replicate(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	k := keptOf(t, r.src, r.rule.SourceBucket, key)
	head := k.head
	data := r.read(t, r.src, r.rule.SourceBucket, key)
	md := maps.Clone(head.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	md[deliver.MetaArchive] = "test-archive"
	md[deliver.MetaSequencer] = fmt.Sprintf("%016X", head.LastModified.UnixNano())
	md[deliver.MetaModified] = strconv.FormatInt(head.LastModified.UnixMilli(), 10)
	if v := aws.ToString(head.VersionId); v != "" && v != "null" {
		md[deliver.MetaVersion] = v
	}
	routes, err := r.rule.Routes(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if len(data) <= singlePutMax {
			sum := sha256.Sum256(data)
			md[deliver.MetaSHA256] = hex.EncodeToString(sum[:])
			r.putWith(t, rt.Bucket, rt.Key, data, md, s3types.ChecksumAlgorithmSha256, k.put)
			continue
		}
		delete(md, deliver.MetaSHA256)
		_, err := transfermanager.New(r.dst, func(o *transfermanager.Options) {
			o.PartSizeBytes = 5 << 20
			o.MultipartUploadThreshold = singlePutMax + 1
		}).UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(rt.Bucket), Key: aws.String(rt.Key),
			Body: bytes.NewReader(data), Metadata: md, ChecksumAlgorithm: tmtypes.ChecksumAlgorithmCrc32c, ChecksumType: tmtypes.ChecksumTypeFullObject,
			ContentType: head.ContentType, ContentEncoding: head.ContentEncoding, ContentDisposition: head.ContentDisposition,
			ContentLanguage: head.ContentLanguage, CacheControl: head.CacheControl, Expires: k.expires, Tagging: k.tagging})
		if err != nil {
			t.Fatalf("multipart put %s/%s: %v", rt.Bucket, rt.Key, err)
		}
	}
}

// putRaw puts data at bucket/key in the destination region with metadata
// md and S3's SHA-256 checksum of data.
func (r *replica) putRaw(t *testing.T, bucket, key string, data []byte, md map[string]string) {
	t.Helper()
	r.putWith(t, bucket, key, data, md, s3types.ChecksumAlgorithmSha256)
}

func (r *replica) putWith(t *testing.T, bucket, key string, data []byte, md map[string]string, alg s3types.ChecksumAlgorithm, opts ...func(*s3.PutObjectInput)) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), Metadata: md, ChecksumAlgorithm: alg}
	for _, o := range opts {
		o(in)
	}
	_, err := r.dst.PutObject(context.Background(), in)
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// sameHeaders puts an object with the headers and tags bucket/key has in
// the destination region.
func (r *replica) sameHeaders(t *testing.T, bucket, key string) func(*s3.PutObjectInput) {
	return keptOf(t, r.dst, bucket, key).put
}

// kept is what the target restores of an object beside its bytes, as it
// restores it: its headers, Expires as a time, its tags.
type kept struct {
	head    *s3.HeadObjectOutput
	expires *time.Time
	tagging *string
}

func keptOf(t *testing.T, c *s3.Client, bucket, key string) kept {
	t.Helper()
	ctx := context.Background()
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	k := kept{head: head}
	if e, err := http.ParseTime(aws.ToString(head.ExpiresString)); err == nil {
		k.expires = &e
	}
	if aws.ToInt32(head.TagCount) > 0 {
		out, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		tags := url.Values{}
		for _, tag := range out.TagSet {
			tags.Set(aws.ToString(tag.Key), aws.ToString(tag.Value))
		}
		k.tagging = aws.String(tags.Encode())
	}
	return k
}

func (k kept) put(in *s3.PutObjectInput) {
	h := k.head
	in.ContentType, in.ContentEncoding, in.ContentDisposition = h.ContentType, h.ContentEncoding, h.ContentDisposition
	in.ContentLanguage, in.CacheControl, in.Expires, in.Tagging = h.ContentLanguage, h.CacheControl, k.expires, k.tagging
}

func (r *replica) read(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (r *replica) head(t *testing.T, bucket, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := r.dst.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// verify runs the engine and returns its summary and what it reported, as
// "kind bucket/key" lines.
func (r *replica) verify(t *testing.T, hash bool, edit func(*verify.Options)) (verify.Summary, []string, []verify.Difference) {
	t.Helper()
	o := verify.Options{Rule: r.rule, Source: r.src, Destinations: map[string]verify.S3API{"eu-west-1": r.dst}, HashSources: hash,
		ListConcurrency: 3, Concurrency: 4}
	if edit != nil {
		edit(&o)
	}
	var mu sync.Mutex
	var lines []string
	var diffs []verify.Difference
	sum, err := verify.Run(context.Background(), o, func(d verify.Difference) error {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf("%s %s/%s", d.Kind, d.DestinationBucket, d.DestinationKey))
		diffs = append(diffs, d)
		return nil
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	slices.Sort(lines)
	return sum, lines, diffs
}

func (r *replica) covered() (n int, bytes int64) {
	for _, o := range r.objs {
		n++
		bytes += int64(len(o.Data))
	}
	return n, bytes
}

// TestVerifyReportsDeletedModifiedExtra: a deleted, a modified (another
// size), a modified (same size: only a digest tells) and an extra
// destination object are reported, and nothing else, among objects of
// every shape in two destinations, one of which rewrites the prefix.
func TestVerifyReportsDeletedModifiedExtra(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "verify")
	dst := r.rule.Destinations[0].Bucket

	// Before: nothing differs. With hashing, every pair is proved equal.
	n, size := r.covered()
	for _, hash := range []bool{false, true} {
		sum, got, _ := r.verify(t, hash, nil)
		if len(got) != 0 || sum.Differences() != 0 {
			t.Fatalf("hash=%v: differences in a faithful replica: %v", hash, got)
		}
		if sum.Objects != int64(n) || sum.Bytes != size {
			t.Errorf("hash=%v: %d objects of %d bytes compared, want %d of %d", hash, sum.Objects, sum.Bytes, n, size)
		}
		for _, d := range sum.Destinations {
			if d.Compared != int64(n) {
				t.Errorf("hash=%v: %s compared %d, want %d", hash, d.Bucket, d.Compared, n)
			}
			if hash && d.Equal != int64(n) {
				t.Errorf("hashing sources: %s proved %d equal of %d (unchecked %d)", d.Bucket, d.Equal, n, d.Unchecked)
			}
			if !hash && (d.Equal == 0 || d.Unchecked == 0 || d.Equal+d.Unchecked != int64(n)) {
				// Sources uploaded with a SHA-256 are proved equal by S3's
				// checksums alone; the others are unchecked.
				t.Errorf("without hashing: %s equal %d, unchecked %d of %d", d.Bucket, d.Equal, d.Unchecked, n)
			}
		}
	}

	deleted := r.objs[2].Key  // "with space/..."
	resized := r.objs[1].Key  // unicode key, source has a SHA-256
	modified := r.objs[4].Key // source has a SHA-256: S3's checksums tell
	ghost := "data/ghost/only-here.txt"
	if _, err := r.dst.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &dst, Key: &deleted}); err != nil {
		t.Fatal(err)
	}
	// Overwritten with xrc's provenance kept (as a tool copying metadata
	// would), other bytes: one longer, one of the same size whose
	// provenance and checksums are self-consistent, so only comparing
	// digests with the source shows it.
	md := r.head(t, dst, resized).Metadata
	r.putRaw(t, dst, resized, append(r.read(t, r.dst, dst, resized), '!'), md)
	data := r.read(t, r.dst, dst, modified)
	data[len(data)/2] ^= 1
	md = r.head(t, dst, modified).Metadata
	s := sha256.Sum256(data)
	md[deliver.MetaSHA256] = hex.EncodeToString(s[:])
	r.putRaw(t, dst, modified, data, md)
	r.putRaw(t, dst, ghost, []byte("no source"), map[string]string{deliver.MetaArchive: "test-archive", deliver.MetaModified: "1764583200000"})

	r.rule.Deletes = true // the ghost is then a delete not propagated (below, without)
	want := []string{
		"digest " + dst + "/" + modified,
		"extra " + dst + "/" + ghost,
		"missing " + dst + "/" + deleted,
		"size " + dst + "/" + resized,
	}
	slices.Sort(want)
	for _, hash := range []bool{false, true} {
		sum, got, diffs := r.verify(t, hash, nil)
		if !slices.Equal(got, want) {
			t.Errorf("hash=%v: verify reported\n  %s\nwant\n  %s", hash, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		for _, d := range diffs {
			if d.Detail == "" && d.Kind != verify.Missing {
				t.Errorf("%s %s: no detail", d.Kind, d.DestinationKey)
			}
			if d.Kind == verify.Extra && (!d.WrittenByXRC || d.SourceKey != ghost) {
				t.Errorf("extra: %+v, want written by xrc, mapped back to %s", d, ghost)
			}
		}
		if sum.Destinations[1].Compared != int64(n) || len(sum.Destinations[1].Counts) != 0 {
			t.Errorf("the untouched destination: %+v", sum.Destinations[1])
		}
		if c, b := sum.Count(verify.Missing); c != 1 || b != int64(len(r.objs[2].Data)) {
			t.Errorf("missing: %d objects, %d bytes", c, b)
		}
	}

	// A rule that does not propagate deletes keeps its copies of deleted
	// objects by design: retained, counted apart, no difference, so that
	// a scheduled verify of such a rule can pass.
	kept := *r.rule
	kept.Deletes = false
	sum, got, _ := r.verify(t, false, func(o *verify.Options) { o.Rule = &kept })
	wantKept := slices.Clone(want)
	for i, s := range wantKept {
		wantKept[i] = strings.Replace(s, "extra ", "retained ", 1) // still listed, as kept
	}
	slices.Sort(wantKept)
	if !slices.Equal(got, wantKept) || sum.Retained() != 1 || sum.Destinations[0].RetainedBytes != int64(len("no source")) || sum.Differences() != int64(len(want)-1) {
		t.Errorf("deletes off: verify reported\n  %s\nwant\n  %s\nand retained %d (%+v), want the ghost", strings.Join(got, "\n  "),
			strings.Join(wantKept, "\n  "), sum.Retained(), sum.Destinations[0])
	}

	// Pages of two keys: every level is merged across many pages.
	if _, got, _ := r.verify(t, false, func(o *verify.Options) { o.PageSize = 2 }); !slices.Equal(got, want) {
		t.Errorf("pages of 2 keys: verify reported\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Only the destinations of the region asked for; none there: an error.
	if _, _, err := runErr(r, func(o *verify.Options) { o.Region = "us-west-2" }); err == nil {
		t.Error("verify of a region without destinations did not fail")
	}
	// A prefix narrows the comparison to its keys.
	sum, got, _ = r.verify(t, false, func(o *verify.Options) { o.Prefix = "data/with space/" })
	if !slices.Equal(got, []string{"missing " + dst + "/" + deleted}) || sum.Destinations[1].Prefix != "copy/with space/" {
		t.Errorf("-prefix data/with space/: %v, destination prefix %q", got, sum.Destinations[1].Prefix)
	}
}

func runErr(r *replica, edit func(*verify.Options)) (verify.Summary, int, error) {
	o := verify.Options{Rule: r.rule, Source: r.src, Destinations: map[string]verify.S3API{"eu-west-1": r.dst}}
	edit(&o)
	n := 0
	sum, err := verify.Run(context.Background(), o, func(verify.Difference) error { n++; return nil })
	return sum, n, err
}

// TestVerifyKinds: a destination older than a rewritten source is stale,
// one someone else overwrote is not written by xrc, one whose bytes
// contradict the xrc-sha256 it carries differs by digest even where the
// source has no checksum, and a same-size change where neither S3 nor
// provenance can tell is found only by hashing the source.
func TestVerifyKinds(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "verkinds")
	dst := r.rule.Destinations[0].Bucket
	ctx := context.Background()

	rewritten := r.objs[5].Key   // stale once the source is written again
	foreign := r.objs[6].Key     // overwritten without provenance
	tampered := r.objs[9].Key    // no source checksum; bytes contradict xrc-sha256
	hashedOnly := r.objs[11].Key // no source checksum; self-consistent change
	big := r.objs[len(r.objs)-1].Key
	// A source SHA-256 equal to the xrc-sha256 kept over other bytes, as a
	// tool that rewrites an object and keeps its metadata leaves it, with
	// only a CRC32C from S3, as xrc's multipart writes have.
	var keptSHA string
	for i, o := range r.objs {
		if o.SHA256 && len(o.Data) > 0 && !slices.Contains([]int{5, 6, 9, 11}, i) {
			keptSHA = o.Key
			break
		}
	}

	time.Sleep(1100 * time.Millisecond) // a later last-modified second
	o := r.objs[5]
	o.Data = append(slices.Clone(o.Data), " again"...)
	if err := dataset.Put(ctx, r.src, r.rule.SourceBucket, &o); err != nil {
		t.Fatal(err)
	}
	data := r.read(t, r.dst, dst, foreign)
	r.putRaw(t, dst, foreign, data, map[string]string{"owner": "someone else"})

	data = r.read(t, r.dst, dst, tampered)
	data[0] ^= 0x20
	r.putWith(t, dst, tampered, data, r.head(t, dst, tampered).Metadata, s3types.ChecksumAlgorithmSha256, r.sameHeaders(t, dst, tampered))

	data = r.read(t, r.dst, dst, hashedOnly)
	data[0] ^= 0x20
	md := r.head(t, dst, hashedOnly).Metadata
	s := sha256.Sum256(data)
	md[deliver.MetaSHA256] = hex.EncodeToString(s[:])
	r.putWith(t, dst, hashedOnly, data, md, s3types.ChecksumAlgorithmSha256, r.sameHeaders(t, dst, hashedOnly))

	data = r.read(t, r.dst, dst, keptSHA)
	data[0] ^= 0x20
	r.putWith(t, dst, keptSHA, data, r.head(t, dst, keptSHA).Metadata, s3types.ChecksumAlgorithmCrc32c, r.sameHeaders(t, dst, keptSHA))

	// Same bytes and provenance, another Content-Type: what xrc restores
	// beside the bytes is compared too.
	retyped := r.objs[3].Key
	data = r.read(t, r.dst, dst, retyped)
	r.putWith(t, dst, retyped, data, r.head(t, dst, retyped).Metadata, s3types.ChecksumAlgorithmSha256, r.sameHeaders(t, dst, retyped),
		func(in *s3.PutObjectInput) { in.ContentType = aws.String("application/x-retyped") })

	want := []string{
		"headers " + dst + "/" + retyped,
		"digest " + dst + "/" + tampered,
		"not-xrc " + dst + "/" + foreign,
		"stale " + dst + "/" + rewritten,
		"stale " + r.rule.Destinations[1].Bucket + "/" + strings.Replace(rewritten, "data/", "copy/", 1),
	}
	slices.Sort(want)
	sum, got, _ := r.verify(t, false, nil)
	if !slices.Equal(got, want) {
		t.Errorf("without hashing: verify reported\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if sum.Destinations[0].Hashed != 0 {
		t.Errorf("hashed %d sources without being asked", sum.Destinations[0].Hashed)
	}

	// Hashing compares the CRC32C S3 keeps: xrc-sha256 proves nothing.
	want = append(want, "digest "+dst+"/"+hashedOnly, "digest "+dst+"/"+keptSHA)
	slices.Sort(want)
	sum, got, _ = r.verify(t, true, nil)
	if !slices.Equal(got, want) {
		t.Errorf("hashing sources: verify reported\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// The multipart-sized object has only a CRC32C: hashing proved it.
	if d := sum.Destinations[0]; d.Hashed == 0 || d.HashedBytes < int64(len(r.objs[len(r.objs)-1].Data)) || d.Unchecked != 0 {
		t.Errorf("hashing sources: %+v (%s must be hashed)", d, big)
	}
}

// changing rewrites a source object and its replicas the first time the
// destination's key is read: the source changes while verify runs, after
// its listing.
type changing struct {
	verify.S3API
	key    string
	change func()
	once   sync.Once
}

func (c *changing) HeadObject(ctx context.Context, in *s3.HeadObjectInput, o ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if aws.ToString(in.Key) == c.key {
		c.once.Do(c.change)
	}
	return c.S3API.HeadObject(ctx, in, o...)
}

// TestVerifyJudgesAChangedSourceAsItIsNow: a source object rewritten, and
// replicated, between verify's listing and its reading of the destination
// is judged as the source is now, not reported as a size difference
// against its listing.
func TestVerifyJudgesAChangedSourceAsItIsNow(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "verchange")
	o := r.objs[2]
	c := &changing{S3API: r.dst, key: o.Key, change: func() {
		time.Sleep(1100 * time.Millisecond) // a later last-modified second
		o.Data = append(slices.Clone(o.Data), " and more"...)
		if err := dataset.Put(context.Background(), r.src, r.rule.SourceBucket, &o); err != nil {
			t.Error(err)
			return
		}
		r.replicate(t, o.Key)
	}}
	_, got, _ := r.verify(t, false, func(opts *verify.Options) { opts.Destinations = map[string]verify.S3API{"eu-west-1": c} })
	if len(got) > 0 {
		t.Errorf("a source changed while verify ran, and replicated: verify reported\n  %s", strings.Join(got, "\n  "))
	}
}

// TestVerifyComparesTagValues: tags of the same number but other values
// are found only with CompareTags, which names the tag.
func TestVerifyComparesTagValues(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "vertags")
	ctx := context.Background()
	dst := r.rule.Destinations[0].Bucket
	key := r.objs[1].Key
	tag := func(c *s3.Client, bucket, key, value string) {
		t.Helper()
		if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &bucket, Key: &key,
			Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("scan"), Value: aws.String(value)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	tag(r.src, r.rule.SourceBucket, key, "clean")
	routes, err := r.rule.Routes(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		value := "clean"
		if rt.Bucket == dst {
			value = "pending"
		}
		tag(r.dst, rt.Bucket, rt.Key, value)
	}
	if _, got, _ := r.verify(t, false, nil); len(got) != 0 {
		t.Errorf("without CompareTags, reported\n  %s", strings.Join(got, "\n  "))
	}
	_, got, diffs := r.verify(t, false, func(o *verify.Options) { o.CompareTags = true })
	if want := []string{"headers " + dst + "/" + routes[0].Key}; routes[0].Bucket != dst || !slices.Equal(got, want) {
		t.Fatalf("with CompareTags, reported %v, want %v", got, want)
	}
	if !strings.Contains(diffs[0].Detail, `tag "scan": source "clean", destination "pending"`) {
		t.Errorf("detail %q does not name the tag", diffs[0].Detail)
	}
	// HEAD without the count, as S3 answers a caller that may not read
	// tags (here one that may: reading them is what -tags does).
	_, got, _ = r.verify(t, false, func(o *verify.Options) {
		o.CompareTags = true
		o.Source = uncounted{r.src}
		o.Destinations = map[string]verify.S3API{"eu-west-1": uncounted{r.dst}}
	})
	if want := []string{"headers " + dst + "/" + routes[0].Key}; !slices.Equal(got, want) {
		t.Errorf("with CompareTags and no tag counts in HEAD, reported %v, want %v", got, want)
	}
	// Counted on one side only (a caller that may read tags there, not
	// at the source): with -tags, the tags read decide; the counts'
	// difference hid that they are equal.
	tag(r.dst, routes[0].Bucket, routes[0].Key, "clean")
	_, got, _ = r.verify(t, false, func(o *verify.Options) {
		o.CompareTags = true
		o.Source = uncounted{r.src}
	})
	if len(got) != 0 {
		t.Errorf("with CompareTags, equal tags counted by the destination's HEAD alone: reported %v", got)
	}
}

// goneBeforeTags deletes key's source object when its tags are first read:
// deleted between verify's HEAD and its tag read.
type goneBeforeTags struct {
	*s3.Client
	bucket, key string
	once        sync.Once
}

func (g *goneBeforeTags) GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error) {
	if aws.ToString(in.Key) == g.key {
		g.once.Do(func() {
			if _, err := g.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &g.bucket, Key: &g.key}); err != nil {
				panic(err)
			}
		})
	}
	return g.Client.GetObjectTagging(ctx, in, optFns...)
}

// TestVerifyTagsOfAnObjectDeletedMeanwhile: with CompareTags, an object
// deleted between its HEAD and its tag read is left unchecked, as a read
// of its bytes would leave it; the run goes on (it stopped, incomplete, on
// any live bucket with deletes).
func TestVerifyTagsOfAnObjectDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "vertagsgone")
	// Hashed, every pair is proved equal or not, but one left unchecked:
	// without the deletion, none is.
	unchecked := func(sum verify.Summary) int64 {
		var n int64
		for _, d := range sum.Destinations {
			n += d.Unchecked
		}
		return n
	}
	if base, _, _ := r.verify(t, true, func(o *verify.Options) { o.CompareTags = true }); unchecked(base) != 0 {
		t.Fatalf("hashed, with no deletion: %d pairs unchecked, want none: %+v", unchecked(base), base.Destinations)
	}
	src := &goneBeforeTags{Client: r.src, bucket: r.rule.SourceBucket, key: r.objs[1].Key}
	sum, got, _ := r.verify(t, true, func(o *verify.Options) {
		o.CompareTags = true
		o.Source = src
	})
	for _, line := range got {
		// Its copies elsewhere, compared after the delete, are kept: the
		// rule does not propagate deletes.
		if !strings.HasPrefix(line, "retained ") {
			t.Errorf("reported %s", line)
		}
	}
	if unchecked(sum) == 0 {
		t.Errorf("the object deleted meanwhile is not left unchecked: %+v", sum.Destinations)
	}
}

// unlisted lists its bucket without key, which write writes (with its
// replicas) when the listing starts: an object written after the listing
// passed its name.
type unlisted struct {
	*s3.Client
	key   string
	write func()
	once  sync.Once
}

func (u *unlisted) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	u.once.Do(u.write)
	out, err := u.Client.ListObjectsV2(ctx, in, optFns...)
	if out != nil {
		out.Contents = slices.DeleteFunc(out.Contents, func(o s3types.Object) bool {
			k, err := url.QueryUnescape(aws.ToString(o.Key)) // listed URL-encoded (awsapi.Listing)
			return err == nil && k == u.key
		})
	}
	return out, err
}

// TestVerifyObjectWrittenAfterItsListing: a source object the source's
// listing did not see (written after it passed its name) but its
// destinations hold, replicated, is compared as it is now, not reported as
// extra.
func TestVerifyObjectWrittenAfterItsListing(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "verlate")
	o := r.objs[1]
	src := &unlisted{Client: r.src, key: o.Key, write: func() {
		if err := dataset.Put(context.Background(), r.src, r.rule.SourceBucket, &o); err != nil {
			t.Error(err)
			return
		}
		r.replicate(t, o.Key)
	}}
	sum, got, _ := r.verify(t, false, func(o *verify.Options) { o.Source = src })
	if len(got) != 0 {
		t.Errorf("reported\n  %s", strings.Join(got, "\n  "))
	}
	for _, d := range sum.Destinations {
		if d.Compared > sum.Objects {
			t.Errorf("%s: compared %d of %d source objects", d.Bucket, d.Compared, sum.Objects)
		}
	}
}

// uncounted answers HEAD without x-amz-tagging-count.
type uncounted struct{ *s3.Client }

func (u uncounted) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := u.Client.HeadObject(ctx, in, optFns...)
	if out != nil {
		out.TagCount = nil
	}
	return out, err
}
