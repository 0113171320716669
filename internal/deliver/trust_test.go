package deliver_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// The tests in this file hold the target to "the target decides; the
// manifest only proposes" and to the ordering of writes and deletes. Each
// stages hand-built archives into the target staging bucket, as S3
// Replication would, so the target worker alone is under test.

// twoRules adds a second rule (its own source bucket, prefix and
// destination bucket) to the pipeline's config, for archives that name
// another rule's places.
func twoRules(c *config.Config) {
	r2 := c.Rules[0]
	r2.ID = "r2"
	r2.SourceBucket = c.Rules[0].SourceBucket + "-b"
	r2.Prefix = "other/"
	r2.Destinations = []config.Destination{{Region: "eu-west-1", Bucket: c.Rules[0].Destinations[0].Bucket + "-b"}}
	c.Rules = append(c.Rules, r2)
}

// stage writes the archive of m (objects objs) into target staging at key,
// as the archive key names (see ownKey).
func (p *pipeline) stage(t *testing.T, key string, m *manifest.Manifest, objs []dataset.Object) {
	t.Helper()
	putStaging(t, p.dst, p.cfg.Settings.Regions[1].StagingBucket, key, writeArchive(t, ownKey(t, key, m), objs))
}

// stageRaw writes an archive whose manifest is encoded as is (the writer
// would validate it), but for its id (see ownKey).
func (p *pipeline) stageRaw(t *testing.T, key string, m *manifest.Manifest, objs []dataset.Object) {
	t.Helper()
	var members []member
	for i, o := range objs {
		members = append(members, member{m.Objects[i].Member, o.Data})
	}
	putStaging(t, p.dst, p.cfg.Settings.Regions[1].StagingBucket, key, rawArchive(t, rawManifest(t, ownKey(t, key, m)), members))
}

// ownKey is m as the archive staged at key: with the archive id key
// names, as a source stages it (the target reads an archive only at its
// own key). Tests stage one manifest under several keys to deliver its
// objects again, and name keys for what they test.
func ownKey(t *testing.T, key string, m *manifest.Manifest) *manifest.Manifest {
	t.Helper()
	_, id, err := manifest.ParseStagingKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := *m
	c.ArchiveID = id
	return &c
}

// TestRejectsUntrustedArchives stages well-formed archives whose manifests
// name places or actions this region's config does not allow. Each starts
// with a valid object, so an extractor trusting the manifest object by
// object would write something: nothing may be written anywhere, every
// message must reach the DLQ, and the log must name what was wrong.
func TestRejectsUntrustedArchives(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, twoRules)
	ctx := context.Background()
	r1, r2 := &p.cfg.Rules[0], &p.cfg.Rules[1]
	dst1, dst2 := r1.Destinations[0].Bucket, r2.Destinations[0].Bucket
	evil := p.cfg.Settings.StackName + "-evil"
	if err := p.env.EnsureBucket(ctx, "eu-west-1", evil, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.env.RemoveBucket(context.Background(), "eu-west-1", evil) })

	rng := newRand()
	objs := []dataset.Object{
		{Key: "data/trust/valid.txt", ContentType: "text/plain", Data: dataset.Text(rng, 2000)},
		{Key: "data/trust/hostile.txt", ContentType: "text/plain", Data: dataset.Text(rng, 3000)},
	}
	valid := func(id string) *manifest.Manifest { return manifestFor(id, objs, p.cfg, nil) }
	cases := []struct {
		name    string
		key     string // staging key; default r1/<name>.tar.zst
		edit    func(m *manifest.Manifest)
		why     string // what the error must say
		wrote   string // the bucket a trusting target would have written to
		foreign bool   // staged under a key that does not name its id
	}{
		{name: "unconfigured-bucket", edit: func(m *manifest.Manifest) { m.Objects[1].Destinations[0].Bucket = evil },
			why: fmt.Sprintf("objects[1] (key \"data/trust/hostile.txt\"): destinations[0] s3://%s/data/trust/hostile.txt in eu-west-1 is not where rule r1 sends this key", evil), wrote: evil},
		{name: "other-rules-bucket", edit: func(m *manifest.Manifest) { m.Objects[1].Destinations[0].Bucket = dst2 },
			why: fmt.Sprintf("destinations[0] s3://%s/data/trust/hostile.txt in eu-west-1 is not where rule r1 sends this key (s3://%s/data/trust/hostile.txt in eu-west-1)", dst2, dst1), wrote: dst2},
		{name: "key-outside-mapping", edit: func(m *manifest.Manifest) { m.Objects[1].Destinations[0].Key = "elsewhere/hostile.txt" },
			why: "destinations[0] s3://" + dst1 + "/elsewhere/hostile.txt in eu-west-1 is not where rule r1 sends this key", wrote: dst1},
		{name: "storage-class", edit: func(m *manifest.Manifest) { m.Objects[1].Destinations[0].StorageClass = "REDUCED_REDUNDANCY" },
			why: "storage class REDUCED_REDUNDANCY is not where rule r1 sends this key", wrote: dst1},
		{name: "kms-key", edit: func(m *manifest.Manifest) { m.Objects[1].Destinations[0].KMSKeyID = "alias/attacker" },
			why: "KMS key alias/attacker is not where rule r1 sends this key", wrote: dst1},
		{name: "object-of-another-rule", edit: func(m *manifest.Manifest) {
			m.Objects[1].Key = "other/hostile.txt"
			m.Objects[1].Member = manifest.MemberName(1, "other/hostile.txt")
			m.Objects[1].Destinations = destinations(r1, "other/hostile.txt")
		}, why: `objects[1] (key "other/hostile.txt"): key is not covered by rule r1 (prefix "data/"`, wrote: dst1},
		{name: "source-bucket", edit: func(m *manifest.Manifest) { m.Objects[1].Bucket = r2.SourceBucket },
			why: fmt.Sprintf("bucket %q is not rule r1's source bucket %q", r2.SourceBucket, r1.SourceBucket), wrote: dst1},
		{name: "delete-without-deletes", edit: func(m *manifest.Manifest) {
			m.Objects = append(m.Objects, manifest.Object{Bucket: r1.SourceBucket, Key: "data/trust/victim.txt", Sequencer: "FFFFFFFFFFFFFFFFFF",
				LastModified: time.Now().UTC(), Delete: true, Destinations: destinations(r1, "data/trust/victim.txt")})
		}, why: "delete entry, but rule r1 does not propagate deletes", wrote: dst1},
		{name: "unknown-rule", edit: func(m *manifest.Manifest) { m.RuleID = "nope" },
			key: "nope/unknown-rule.tar.zst", why: `manifest ruleId "nope" is not a rule of this deployment's config`, wrote: dst1},
		{name: "wrong-staging-prefix", key: "r2/wrong-staging-prefix.tar.zst",
			why: `staging key "r2/wrong-staging-prefix.tar.zst" is not under rule r1's staging prefix "r1/"`, wrote: dst1},
		{name: "source-region", edit: func(m *manifest.Manifest) { m.SourceRegion = "ap-southeast-2" },
			why: `manifest sourceRegion "ap-southeast-2" is not rule r1's source region "us-east-1"`, wrote: dst1},
		// Dated past its staging, its provenance (or a delete's
		// tombstone) would win against every later write of the key.
		{name: "future-dated", edit: func(m *manifest.Manifest) {
			m.Objects[1].LastModified = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		}, why: `objects[1] (key "data/trust/hostile.txt"): lastModified 9999-12-31T00:00:00Z, seen`, wrote: dst1},
		{name: "future-created", edit: func(m *manifest.Manifest) { m.CreatedAt = time.Now().Add(48 * time.Hour) },
			why: "createdAt", wrote: dst1},
		// Under another archive's key, it would take that one's uploads
		// and ledger entry for its own.
		{name: "another-archives-key", foreign: true,
			why: `staging key "r1/another-archives-key.tar.zst" does not name the archive's id "trust-another-archives-key"`, wrote: dst1},
	}
	// A victim the hostile delete would remove, were it obeyed.
	victim := dataset.Object{Key: "data/trust/victim.txt", ContentType: "text/plain", Data: []byte("keep me")}
	victimArchive := manifestFor("victim", []dataset.Object{victim}, p.cfg, nil)
	reg, _ := p.startTarget(t)
	p.stage(t, "r1/victim.tar.zst", victimArchive, []dataset.Object{victim})
	if got := p.waitDest(t, 1, time.Minute); got != 1 {
		t.Fatalf("victim not delivered: destination holds %d objects", got)
	}

	var keys []string
	for _, c := range cases {
		m := valid("trust-" + c.name)
		if c.edit != nil {
			c.edit(m)
		}
		key := c.key
		if key == "" {
			key = "r1/" + c.name + ".tar.zst"
		}
		keys = append(keys, key)
		if c.foreign {
			putStaging(t, p.dst, p.cfg.Settings.Regions[1].StagingBucket, key, writeArchive(t, m, objs))
			continue
		}
		p.stageRaw(t, key, m, objs)
	}
	slices.Sort(keys)
	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	tq := p.dep.TargetQueues["eu-west-1"]
	if !poll(3*time.Minute, 500*time.Millisecond, func() bool { return p.depth(t, dlq) >= len(cases) && p.depth(t, tq) == 0 }) {
		t.Fatalf("DLQ holds %d messages (want %d), target queue %d", p.depth(t, dlq), len(cases), p.depth(t, tq))
	}
	got := dlqKeys(t, p.sqs, dlq)
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Errorf("dead-lettered %q, want %q", got, keys)
	}
	for _, b := range []string{dst1, dst2, evil} {
		want := 0
		if b == dst1 {
			want = 1 // the victim, still there
		}
		if n := p.count(t, p.dst, b, ""); n != want {
			t.Errorf("bucket %s holds %d objects, want %d: a rejected archive wrote there", b, n, want)
		}
	}
	if !p.exists(t, dst1, victim.Key) {
		t.Error("a delete the rule does not allow removed the victim")
	}
	for _, c := range cases {
		found := false
		for _, e := range p.released() {
			msg := fmt.Sprint(e["error"])
			if strings.Contains(msg, "archive rejected") && strings.Contains(msg, c.why) {
				found = true
				if d, _ := e["retryIn"].(time.Duration); d != 0 {
					t.Errorf("%s: released with retryIn %v, want 0 (permanent)", c.name, d)
				}
			}
		}
		if !found {
			t.Errorf("%s: no log line says %q", c.name, c.why)
		}
	}
	if n := metric(t, reg, "xrc_target_archives_total", "result", "rejected"); n < float64(len(cases)) {
		t.Errorf("rejected archives counted %v, want at least %d", n, len(cases))
	}
}

// seqAt returns sequencers that increase with n, from a fixed base.
func seqAt(n int) string { return fmt.Sprintf("%016X", int64(0x18ED685BC0000000)+int64(n)) }

// objectArchive is a one-object archive of key with the given sequencer.
func (p *pipeline) objectArchive(id, key string, seq string, data []byte) (*manifest.Manifest, []dataset.Object) {
	objs := []dataset.Object{{Key: key, ContentType: "text/plain", Data: data}}
	m := manifestFor(id, objs, p.cfg, nil)
	m.Objects[0].Sequencer = seq
	return m, objs
}

// deleteArchive is an archive that deletes key, with the given sequencer.
func (p *pipeline) deleteArchive(id, key, seq string) *manifest.Manifest {
	m := manifestFor(id, nil, p.cfg, nil)
	m.Objects = []manifest.Object{{Bucket: p.cfg.Rules[0].SourceBucket, Key: key, Sequencer: seq, LastModified: time.Now().UTC(),
		Delete: true, Destinations: destinations(&p.cfg.Rules[0], key)}}
	return m
}

// deliver stages m and waits until the worker has taken it out of staging.
func (p *pipeline) deliver(t *testing.T, key string, m *manifest.Manifest, objs []dataset.Object) {
	t.Helper()
	p.stage(t, key, m, objs)
	staging := p.cfg.Settings.Regions[1].StagingBucket
	if !poll(time.Minute, 200*time.Millisecond, func() bool { return p.count(t, p.dst, staging, key) == 0 }) {
		t.Fatalf("archive %s not delivered within a minute", key)
	}
}

func (p *pipeline) read(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := p.dst.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("reading s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDeletesAndOrdering: a delete leaves a tombstone, so an older create
// delivered after it (out of order, a retry, a redriven dead letter) does
// not bring the object back, while a newer create does; a delete never
// removes an object xrc did not write.
func TestDeletesAndOrdering(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTarget(t)

	k := "data/order/k.txt"
	v1, objs1 := p.objectArchive("create-v1", k, seqAt(1), []byte("version 1"))
	p.deliver(t, "r1/create-v1.tar.zst", v1, objs1)
	if string(p.read(t, dst, k)) != "version 1" {
		t.Fatal("v1 not delivered")
	}
	p.deliver(t, "r1/delete-2.tar.zst", p.deleteArchive("delete-2", k, seqAt(2)), nil)
	if p.exists(t, dst, k) {
		t.Fatal("delete not propagated")
	}
	// v1's create again: a redelivery, or events out of order.
	p.deliver(t, "r1/create-v1-again.tar.zst", v1, objs1)
	if p.exists(t, dst, k) {
		t.Fatal("an older create brought a deleted object back")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_deleted"); n != 1 {
		t.Errorf("skipped_deleted = %v, want 1", n)
	}
	// A create newer than the delete lands.
	v3, objs3 := p.objectArchive("create-v3", k, seqAt(3), []byte("version 3"))
	p.deliver(t, "r1/create-v3.tar.zst", v3, objs3)
	if string(p.read(t, dst, k)) != "version 3" {
		t.Fatal("a create newer than the delete was not written")
	}
	// ... and the old delete, replayed, leaves it.
	p.deliver(t, "r1/delete-2-again.tar.zst", p.deleteArchive("delete-2-again", k, seqAt(2)), nil)
	if string(p.read(t, dst, k)) != "version 3" {
		t.Fatal("a replayed older delete removed a newer write")
	}

	// An object xrc did not write, at a key the rule maps to.
	foreign := "data/order/foreign.txt"
	if _, err := p.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &foreign, Body: strings.NewReader("not xrc's")}); err != nil {
		t.Fatal(err)
	}
	p.deliver(t, "r1/delete-foreign.tar.zst", p.deleteArchive("delete-foreign", foreign, seqAt(9)), nil)
	if !p.exists(t, dst, foreign) {
		t.Error("a delete removed an object xrc did not write")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_not_ours"); n != 1 {
		t.Errorf("delete_not_ours = %v, want 1", n)
	}
	// One line per object only at debug (README): a mass delete over keys
	// another tool filled would otherwise log one line per key.
	if n := p.logs.FilterMessageSnippet("not written by xrc").Len(); n != 0 {
		t.Errorf("%d lines above debug for a delete not ours", n)
	}
	// Deleting what is not there is a success.
	p.deliver(t, "r1/delete-absent.tar.zst", p.deleteArchive("delete-absent", "data/order/absent.txt", seqAt(9)), nil)
	if n := metric(t, reg, "xrc_target_objects_total", "result", "deleted"); n != 1 {
		t.Errorf("deleted = %v, want 1", n)
	}
}

// TestSequencersOfDifferentLengths: S3's sequencers of one key may differ
// in length and order right-padded with zeros, so a shorter one can be the
// later event; compared as numbers, the newer write was skipped as older
// and an older delete removed it.
func TestSequencersOfDifferentLengths(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	p.startTarget(t)

	k := "data/seqlen/k.txt"
	v1, objs1 := p.objectArchive("seqlen-v1", k, "0062E99A88DC407460", []byte("version 1"))
	p.deliver(t, "r1/seqlen-v1.tar.zst", v1, objs1)
	v2, objs2 := p.objectArchive("seqlen-v2", k, "0062E99A88DC4075", []byte("version 2"))
	p.deliver(t, "r1/seqlen-v2.tar.zst", v2, objs2)
	if got := string(p.read(t, dst, k)); got != "version 2" {
		t.Fatalf("destination holds %q after the newer, shorter sequencer's write, want version 2", got)
	}
	p.deliver(t, "r1/seqlen-v1-again.tar.zst", v1, objs1)
	p.deliver(t, "r1/seqlen-old-delete.tar.zst", p.deleteArchive("seqlen-old-delete", k, "0062E99A88DC4074FF"), nil)
	if got := string(p.read(t, dst, k)); got != "version 2" {
		t.Fatalf("destination holds %q after an older write and an older delete, want version 2", got)
	}
	p.deliver(t, "r1/seqlen-delete.tar.zst", p.deleteArchive("seqlen-delete", k, "0062E99A88DC4076"), nil)
	if p.exists(t, dst, k) {
		t.Fatal("a newer, shorter sequencer's delete was not propagated")
	}
	p.deliver(t, "r1/seqlen-v2-again.tar.zst", v2, objs2)
	if p.exists(t, dst, k) {
		t.Fatal("an older write brought the deleted object back")
	}
}

// TestBackfillLeavesCopiesNotByXRC: a backfill's write (no sequencer)
// leaves a copy xrc did not write of the same size, as xrc backfill
// promises and counts ("not by xrc"): it sends the key when another
// destination of the rule lacks it. A copy of another size, and any copy
// met by a write its event orders, are replaced.
func TestBackfillLeavesCopiesNotByXRC(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTarget(t)
	for _, c := range []struct {
		name, foreign, seq, want string
	}{
		{"same-size", "12345678", "", "12345678"},
		{"resized", "1234", "", "abcdefgh"},
		{"event", "12345678", seqAt(1), "abcdefgh"},
	} {
		k := "data/not-xrc/" + c.name
		if _, err := p.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &k, Body: strings.NewReader(c.foreign)}); err != nil {
			t.Fatal(err)
		}
		m, objs := p.objectArchive("not-xrc-"+c.name, k, c.seq, []byte("abcdefgh"))
		p.deliver(t, "r1/not-xrc-"+c.name+".tar.zst", m, objs)
		if got := string(p.read(t, dst, k)); got != c.want {
			t.Errorf("%s: destination holds %q, want %q", c.name, got, c.want)
		}
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_not_xrc"); n != 1 {
		t.Errorf("skipped_not_xrc = %v, want 1", n)
	}
}

// TestCopiesOfXRCObjectsAreNotItsWrites: an object xrc wrote, copied to
// another key (CopyObject keeps its metadata), is not xrc's write there:
// a write of that key is not skipped as older than the copy's sequencer
// (of another key: for good), and a delete of it leaves the copy.
func TestCopiesOfXRCObjectsAreNotItsWrites(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		c.Rules[0].Deletes = true
		c.Rules[0].Destinations[0].Prefix = aws.String("copied/") // the mark is the source key's
	})
	ctx := context.Background()
	rule := &p.cfg.Rules[0]
	dst := rule.Destinations[0].Bucket
	at := func(k string) string { return rule.DestinationKey(rule.Destinations[0], k) }
	reg, _ := p.startTarget(t)
	orig, written, deleted := "data/copies/orig", "data/copies/written", "data/copies/deleted"
	m, objs := p.objectArchive("copies-orig", orig, seqAt(50), []byte("xrc's write"))
	p.deliver(t, "r1/copies-orig.tar.zst", m, objs)
	for _, k := range []string{written, deleted} {
		if _, err := p.dst.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &dst, Key: aws.String(at(k)), CopySource: aws.String(dst + "/" + at(orig))}); err != nil {
			t.Fatal(err)
		}
	}
	m, objs = p.objectArchive("copies-written", written, seqAt(1), []byte("its own write"))
	p.deliver(t, "r1/copies-written.tar.zst", m, objs)
	if got := string(p.read(t, dst, at(written))); got != "its own write" {
		t.Errorf("%s holds %q, want its own write: a copy's sequencer, of another key, orders nothing", at(written), got)
	}
	// xrc's own write is still its own: an older one replayed is skipped.
	m, objs = p.objectArchive("copies-older", written, seqAt(0), []byte("an older write"))
	p.deliver(t, "r1/copies-older.tar.zst", m, objs)
	if got := string(p.read(t, dst, at(written))); got != "its own write" {
		t.Errorf("%s holds %q after an older write, want its own write: xrc's write taken for a copy", at(written), got)
	}
	p.deliver(t, "r1/copies-deleted.tar.zst", p.deleteArchive("copies-deleted", deleted, seqAt(99)), nil)
	if !p.exists(t, dst, at(deleted)) {
		t.Errorf("a delete of %s removed a copy xrc did not write there", at(deleted))
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_not_ours"); n != 1 {
		t.Errorf("delete_not_ours = %v, want 1", n)
	}
}

// TestWriteSeenAfterADelete: a write no sequencer orders (a backfill's),
// made within the second after a delete, has a Last-Modified (whole
// seconds) before the delete's time. The source found it current after the
// delete (Seen), so it is written, and the delete, replayed, leaves it;
// without Seen, a tie goes to the delete.
func TestWriteSeenAfterADelete(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTarget(t)
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Minute + 200*time.Millisecond)
	for i, seen := range []time.Time{at.Add(5 * time.Second).Truncate(time.Second), {}} {
		k := fmt.Sprintf("data/seen/%d.txt", i)
		del := p.deleteArchive(fmt.Sprintf("delete-%d", i), k, seqAt(1))
		del.Objects[0].LastModified = at
		p.deliver(t, fmt.Sprintf("r1/delete-%d.tar.zst", i), del, nil)
		m, objs := p.objectArchive(fmt.Sprintf("backfill-%d", i), k, "", []byte("made again"))
		m.Objects[0].LastModified = at.Truncate(time.Second) // made at at+500ms
		m.Objects[0].Seen = seen
		p.deliver(t, fmt.Sprintf("r1/backfill-%d.tar.zst", i), m, objs)
		if seen.IsZero() {
			if p.exists(t, dst, k) {
				t.Error("a write not seen after the delete, in its second, was written")
			}
			continue
		}
		if !p.exists(t, dst, k) {
			t.Fatal("a write seen after the delete was skipped")
		}
		again := p.deleteArchive(fmt.Sprintf("delete-%d-again", i), k, seqAt(1))
		again.Objects[0].LastModified = at
		p.deliver(t, fmt.Sprintf("r1/delete-%d-again.tar.zst", i), again, nil)
		if !p.exists(t, dst, k) {
			t.Error("a replayed delete removed a write seen after it")
		}
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_deleted"); n != 1 {
		t.Errorf("skipped_deleted = %v, want 1", n)
	}
}

// TestStagingArchiveMissing: an event for an archive that is not in
// staging (lifecycle expiry, deleted by hand) and was never delivered is a
// counted failure that ends in the DLQ; the event of an archive delivered
// before (a redelivery after a lost acknowledgement) is acknowledged.
func TestStagingArchiveMissing(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	reg, _ := p.startTarget(t)
	staging := p.cfg.Settings.Regions[1].StagingBucket
	m, objs := p.objectArchive("20261202T000000Z-0123456789ab", "data/missing/a.txt", seqAt(1), []byte("a"))
	delivered := manifest.StagingKey(m)
	p.deliver(t, delivered, m, objs)
	gone := "r1/2026/12/02/20261202T000000Z-ffffffffffff.tar.zst"
	// The delivered archive's id under another key: not that delivery.
	other := "r1/2026/12/03/20261202T000000Z-0123456789ab.tar.zst"

	tq := p.dep.TargetQueues["eu-west-1"]
	for _, key := range []string{delivered, gone, other} {
		body := fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"size":100,"sequencer":"01"}}}]}`, staging, key)
		if _, err := p.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &tq, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	if !poll(2*time.Minute, 500*time.Millisecond, func() bool { return p.depth(t, dlq) >= 2 && p.depth(t, tq) == 0 }) {
		t.Fatalf("DLQ %d, target queue %d", p.depth(t, dlq), p.depth(t, tq))
	}
	got := dlqKeys(t, p.sqs, dlq)
	slices.Sort(got)
	if want := []string{gone, other}; !slices.Equal(got, want) {
		t.Errorf("dead-lettered %q, want the archives never delivered %q", got, want)
	}
	if n := metric(t, reg, "xrc_target_archives_total", "result", "missing"); n < 2 {
		t.Errorf("missing archives counted %v times, want one per attempt (>= 2)", n)
	}
	if len(p.logEntries("staging archive gone: already delivered")) == 0 {
		t.Error("the redelivered archive was not recognised from the ledger")
	}
	found := false
	for _, e := range p.released() {
		if strings.Contains(fmt.Sprint(e["error"]), "is gone from staging and the ledger has no delivery of it in eu-west-1") {
			found = true
		}
	}
	if !found {
		t.Error("no error log line names the missing archive")
	}
}

// TestLargeObjectMixedDestinations: a large object (streamed, teed) with two
// destinations in one region, one already holding it and one missing it,
// is written to the missing one; the current one is skipped.
func TestLargeObjectMixedDestinations(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) {
		c.Rules[0].Destinations = append(c.Rules[0].Destinations, config.Destination{Region: "eu-west-1", Bucket: c.Rules[0].Destinations[0].Bucket + "-b"})
	})
	ctx := context.Background()
	dstA, dstB := p.cfg.Rules[0].Destinations[0].Bucket, p.cfg.Rules[0].Destinations[1].Bucket
	reg, _ := p.startTarget(t)
	big := textData(5, deliver.BufferMax+4<<20) // multipart
	m, objs := p.objectArchive("large-1", "data/large/big.txt", seqAt(1), big)
	p.deliver(t, "r1/large-1.tar.zst", m, objs)
	for _, b := range []string{dstA, dstB} {
		if !bytes.Equal(p.read(t, b, "data/large/big.txt"), big) {
			t.Fatalf("s3://%s: large object not delivered", b)
		}
	}
	if _, err := p.dst.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &dstB, Key: aws.String("data/large/big.txt")}); err != nil {
		t.Fatal(err)
	}
	p.deliver(t, "r1/large-1-again.tar.zst", m, objs)
	if !bytes.Equal(p.read(t, dstB, "data/large/big.txt"), big) {
		t.Fatal("the missing destination was not written")
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_older"); n != 1 {
		t.Errorf("skipped_older = %v, want 1 (the destination that held it)", n)
	}
	if n := metric(t, reg, "xrc_target_archives_total", "result", "failed"); n != 0 {
		t.Errorf("%v archive attempts failed", n)
	}
}

// TestSkippedLargeMemberAbortsItsLeftUpload: an archive's earlier attempt
// killed between creating a large member's upload and recording it, whose
// retry finds a newer write of the key there and skips the member, aborts
// that upload: no later write of the key aborts one begun before its own
// archive was made. So is an upload the earlier attempt recorded: no
// delivery of the archive will complete it (the sweep waited for the
// archive to leave staging).
func TestSkippedLargeMemberAbortsItsLeftUpload(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	p.startTarget(t)
	k := "data/large/left.txt"
	old, oldObjs := p.objectArchive("left-1", k, seqAt(1), textData(6, deliver.BufferMax+1<<20))
	up, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	// One it recorded, which abortStale spares (a delivery may resume
	// it), left for days to the sweep.
	recorded, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	target := p.cfg.Settings.Regions[1]
	if err := uploads.New(p.ddb, p.cfg.TableName(), time.Now).Put(ctx, uploads.Upload{Region: target.Name, StagingBucket: target.StagingBucket,
		StagingKey: "r1/left-1.tar.zst", ArchiveID: old.ArchiveID, Member: old.Objects[0].Member, Bucket: dst, Key: k,
		UploadID: aws.ToString(recorded.UploadId), PartSize: 16 << 20, Started: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	newer, newerObjs := p.objectArchive("left-2", k, seqAt(2), []byte("newer"))
	p.deliver(t, "r1/left-2.tar.zst", newer, newerObjs)
	p.deliver(t, "r1/left-1.tar.zst", old, oldObjs)
	if got := string(p.read(t, dst, k)); got != "newer" {
		t.Fatalf("destination holds %q, want the newer write", got)
	}
	out, err := p.dst.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &dst, Prefix: &k})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		switch aws.ToString(u.UploadId) {
		case aws.ToString(up.UploadId):
			t.Error("the upload the skipped member's earlier attempt left unrecorded is still open")
		case aws.ToString(recorded.UploadId):
			t.Error("the upload the skipped member's earlier attempt recorded is still open")
		}
	}
}

// TestForeignKeysUploadsLeft: a large member skipped because its key
// holds a copy xrc did not write leaves the key's multipart uploads alone,
// even one begun since the archive was made: the writer that holds the key
// is likelier to own them than an earlier attempt of this archive.
func TestForeignKeysUploadsLeft(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	p.startTarget(t)
	k := "data/large/foreign.txt"
	// The same size and no sequencer: a copy made some other way, which
	// xrc leaves (skipped_not_xrc).
	theirs := textData(8, deliver.BufferMax+1<<20)
	if _, err := transfermanager.New(p.dst).UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &dst, Key: &k, Body: bytes.NewReader(theirs)}); err != nil {
		t.Fatal(err)
	}
	m, objs := p.objectArchive("foreign-1", k, "", textData(7, int64(len(theirs))))
	up, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	p.deliver(t, "r1/foreign-1.tar.zst", m, objs)
	if got := p.read(t, dst, k); !bytes.Equal(got, theirs) {
		t.Fatal("destination does not hold the other writer's copy")
	}
	out, err := p.dst.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &dst, Prefix: &k})
	if err != nil {
		t.Fatal(err)
	}
	open := false
	for _, u := range out.Uploads {
		open = open || aws.ToString(u.UploadId) == aws.ToString(up.UploadId)
	}
	if !open {
		t.Error("the other writer's multipart upload of the key was aborted")
	}
}

// TestReplacedUploadAborted: an upload recorded for a member of another
// archive under the same staging key (the key written again with another
// archive), begun longer ago than any delivery can hold its message, is
// aborted when this archive's delivery replaces its record: nothing would
// find it after, its parts billed for good. One begun recently may be a
// live delivery's, and is left: aborting it, the two would abort each
// other's by turns.
func TestReplacedUploadAborted(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	p.startTarget(t)
	for _, c := range []struct {
		name    string
		age     time.Duration
		aborted bool
	}{{"old", 13 * time.Hour, true}, {"recent", time.Minute, false}} {
		k := "data/large/replaced-" + c.name + ".txt"
		m, objs := p.objectArchive("replaced-"+c.name, k, seqAt(1), textData(8, deliver.BufferMax+1<<20))
		other, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k})
		if err != nil {
			t.Fatal(err)
		}
		// Made well after that upload began: not one the write's sweep of
		// unrecorded uploads (abortStale) may take for an earlier delivery's.
		m.CreatedAt = time.Now().Add(awsapi.ClockSkew + time.Minute).UTC()
		target := p.cfg.Settings.Regions[1]
		staging := "r1/replaced-" + c.name + ".tar.zst"
		if err := uploads.New(p.ddb, p.cfg.TableName(), time.Now).Put(ctx, uploads.Upload{Region: target.Name, StagingBucket: target.StagingBucket,
			StagingKey: staging, ArchiveID: "another", Member: m.Objects[0].Member, Bucket: dst, Key: k,
			UploadID: aws.ToString(other.UploadId), PartSize: 16 << 20, Started: time.Now().Add(-c.age)}, ""); err != nil {
			t.Fatal(err)
		}
		p.deliver(t, staging, m, objs)
		out, err := p.dst.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &dst, Prefix: &k})
		if err != nil {
			t.Fatal(err)
		}
		open := slices.ContainsFunc(out.Uploads, func(u s3types.MultipartUpload) bool { return aws.ToString(u.UploadId) == aws.ToString(other.UploadId) })
		if open == c.aborted {
			t.Errorf("%s: the other archive's upload whose record the delivery replaced: open %v, want %v", c.name, open, !c.aborted)
		}
		if !c.aborted {
			_, _ = p.dst.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &dst, Key: &k, UploadId: other.UploadId})
		}
	}
}

// TestRejectedArchiveLeavesTheGenuineUploads: an archive rejected for
// sitting under another archive's key wrote nothing; the upload recorded
// under that key is the genuine archive's, kept when the intruder's
// message goes to the DLQ (it was abandoned with it).
func TestRejectedArchiveLeavesTheGenuineUploads(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	target := p.cfg.Settings.Regions[1]
	k, staging := "data/large/genuine.txt", "r1/genuine.tar.zst"
	up, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = p.dst.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: &dst, Key: &k, UploadId: up.UploadId})
	})
	if err := uploads.New(p.ddb, p.cfg.TableName(), time.Now).Put(ctx, uploads.Upload{Region: target.Name, StagingBucket: target.StagingBucket,
		StagingKey: staging, ArchiveID: "genuine", Member: manifest.MemberName(0, k), Bucket: dst, Key: k,
		UploadID: aws.ToString(up.UploadId), PartSize: 16 << 20, Started: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	p.startTarget(t)
	m, objs := p.objectArchive("intruder", "data/large/intruder.txt", seqAt(1), []byte("intruder"))
	putStaging(t, p.dst, target.StagingBucket, staging, writeArchive(t, m, objs))
	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	if !poll(2*time.Minute, 500*time.Millisecond, func() bool { return p.depth(t, dlq) >= 1 }) {
		t.Fatal("the intruder's message never reached the DLQ")
	}
	if n := p.uploading(t, dst, k); n != 1 {
		t.Errorf("%d uploads of the genuine archive open, want its one kept", n)
	}
}

// TestVersionDeletes follows S3 Replication: on a versioned source bucket,
// deleting one version for good (ObjectRemoved:Delete with a version id)
// leaves the destination's current object alone; a delete marker
// (ObjectRemoved:DeleteMarkerCreated) removes it.
func TestVersionDeletes(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	src, dst := p.cfg.Rules[0].SourceBucket, p.cfg.Rules[0].Destinations[0].Bucket
	if err := p.env.EnsureBucket(ctx, "us-east-1", src, true); err != nil {
		t.Fatal(err)
	}
	srcReg, _ := p.startSourceReg(t)
	p.startTarget(t)
	k := "data/versions/k.txt"
	v1, err := p.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &src, Key: &k, Body: strings.NewReader("version 1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &src, Key: &k, Body: strings.NewReader("version 2")}); err != nil {
		t.Fatal(err)
	}
	if !poll(2*time.Minute, 500*time.Millisecond, func() bool { return p.exists(t, dst, k) && string(p.read(t, dst, k)) == "version 2" }) {
		t.Fatal("version 2 not replicated")
	}
	// The noncurrent version goes for good.
	if _, err := p.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &src, Key: &k, VersionId: v1.VersionId}); err != nil {
		t.Fatal(err)
	}
	if !poll(time.Minute, 500*time.Millisecond, func() bool {
		return metric(t, srcReg, "xrc_source_objects_total", "result", "skipped_version_delete") == 1
	}) {
		t.Fatal("the version delete was not seen by the source worker")
	}
	if string(p.read(t, dst, k)) != "version 2" {
		t.Fatal("deleting a noncurrent version changed the destination")
	}
	// A delete marker: the key is deleted.
	if _, err := p.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &src, Key: &k}); err != nil {
		t.Fatal(err)
	}
	if !poll(2*time.Minute, 500*time.Millisecond, func() bool { return !p.exists(t, dst, k) }) {
		t.Fatal("a delete marker was not propagated")
	}
}

// racingWrite lands a newer xrc write of key between the worker's read of
// the destination and its DELETE, once: the race a conditional delete
// exists for.
type racingWrite struct {
	deliver.S3API
	key, seq string
	once     sync.Once
}

func (r *racingWrite) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, o ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	var err error
	if aws.ToString(in.Key) == r.key {
		r.once.Do(func() {
			_, err = r.S3API.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader("newer write"),
				Metadata: map[string]string{deliver.MetaArchive: "another-archive", deliver.MetaSequencer: r.seq}})
		})
	}
	if err != nil {
		return nil, err
	}
	return r.S3API.DeleteObject(ctx, in, o...)
}

// TestDeleteRacingNewerWrite: a newer write that lands between the
// worker's read of a destination object and its delete survives: the
// DELETE carries If-Match with the ETag read, the server refuses it, and
// the worker, reading again, finds a write newer than the delete. (The
// worker talks to the stack's conditional S3 proxy: MinIO itself ignores
// If-Match on DELETE; AWS S3 honours it.)
func TestDeleteRacingNewerWrite(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	cond, err := p.env.S3Conditional(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	k := "data/race/k.txt"
	reg, _ := p.startTargetWith(t, &racingWrite{S3API: cond, key: k, seq: seqAt(3)}, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	v1, objs := p.objectArchive("race-v1", k, seqAt(1), []byte("version 1"))
	p.deliver(t, "r1/race-v1.tar.zst", v1, objs)
	p.deliver(t, "r1/race-delete-2.tar.zst", p.deleteArchive("race-delete-2", k, seqAt(2)), nil)
	if !p.exists(t, dst, k) {
		t.Fatal("the delete removed a write that landed after it read the object")
	}
	if got := string(p.read(t, dst, k)); got != "newer write" {
		t.Fatalf("destination holds %q, want the newer write", got)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_skipped"); n != 1 {
		t.Errorf("delete_skipped = %v, want 1", n)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "deleted"); n != 0 {
		t.Errorf("deleted = %v, want 0", n)
	}
}

// racedTombstones stands in for a delete of key propagated while a write
// of it is in flight: its tombstone (sequencer seq) lands just after the
// write's first read of the tombstones; the read after the write, which
// would catch it, then fails once (throttled).
type racedTombstones struct {
	deliver.Tombstones
	key, seq string
	reads    atomic.Int32
	checked  bool // the check after the write is read as is, not failed
}

func (r *racedTombstones) Get(ctx context.Context, bucket, key string) (tombstone.Tombstone, bool, error) {
	if key != r.key {
		return r.Tombstones.Get(ctx, bucket, key)
	}
	switch r.reads.Add(1) {
	case 1:
		t, ok, err := r.Tombstones.Get(ctx, bucket, key)
		if err == nil {
			err = r.Tombstones.Put(ctx, tombstone.Tombstone{Bucket: bucket, Key: key, Sequencer: r.seq, At: time.Now(), ArchiveID: "delete-2"})
		}
		return t, ok, err
	case 2:
		if r.checked {
			break
		}
		return tombstone.Tombstone{}, false, errors.New("ProvisionedThroughputExceededException (injected)")
	}
	return r.Tombstones.Get(ctx, bucket, key)
}

// TestRetryFinishesUndoOfWriteOvertakenByDelete: a write overtaken by a
// delete is removed again after it lands; when that check fails, the
// retry, finding its own write at the destination, still makes it, so
// the deleted object does not come back for good. Both ways a write
// starts: a PUT on the condition that the key is absent, and a read first
// (a store that does not refuse such a PUT).
func TestRetryFinishesUndoOfWriteOvertakenByDelete(t *testing.T) {
	t.Parallel()
	for _, conditional := range []bool{true, false} {
		t.Run(fmt.Sprintf("conditional=%v", conditional), func(t *testing.T) {
			t.Parallel()
			p := newPipeline(t, func(c *config.Config) {
				c.Rules[0].Deletes = true
				c.Settings.Regions[1].S3ConditionalWrites = conditional
			})
			ctx := context.Background()
			dst := p.cfg.Rules[0].Destinations[0].Bucket
			staging := p.cfg.Settings.Regions[1].StagingBucket
			k := "data/undo/k.txt"
			raced := &racedTombstones{Tombstones: tombstone.New(p.ddb, p.cfg.TableName(), time.Now), key: k, seq: seqAt(2)}
			reg := prometheus.NewRegistry()
			w := p.targetWorker(t, deliver.Deps{Tombstones: raced, Metrics: deliver.NewMetrics(reg)})
			v1, objs := p.objectArchive("undo-v1", k, seqAt(1), []byte("version 1"))
			// The write's tags changed in its batch: the replay that
			// removes it again has none to sync (it counted the undone
			// write retagged, and on an unversioned key could tag a
			// newer write landing meanwhile).
			objs[0].Tags = map[string]string{"t": "1"}
			v1.Objects[0].Tags, v1.Objects[0].TagsChanged = objs[0].Tags, true
			p.stage(t, "r1/undo-v1.tar.zst", v1, objs)
			if err := w.Deliver(ctx, staging, "r1/undo-v1.tar.zst"); err == nil {
				t.Fatal("the delivery whose check after writing failed succeeded")
			}
			if err := w.Deliver(ctx, staging, "r1/undo-v1.tar.zst"); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if p.exists(t, dst, k) {
				t.Fatal("an object whose newer delete was propagated is back at the destination after a retry")
			}
			if n := metric(t, reg, "xrc_target_objects_total", "result", "retagged"); n != 0 {
				t.Errorf("%v objects counted retagged, want none: the write was removed", n)
			}
		})
	}
}

// TestWriteOvertakenByADeleteIsNotCounted: a write removed again at once,
// a delete having overtaken it, is counted skipped as deleted, not
// written (nor its bytes); a large one's write still aborts the upload an
// earlier attempt left unrecorded.
func TestWriteOvertakenByADeleteIsNotCounted(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{9, 20 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
			ctx := context.Background()
			dst := p.cfg.Rules[0].Destinations[0].Bucket
			staging := p.cfg.Settings.Regions[1].StagingBucket
			k := "data/undo/once.txt"
			raced := &racedTombstones{Tombstones: tombstone.New(p.ddb, p.cfg.TableName(), time.Now), key: k, seq: seqAt(2), checked: true}
			reg := prometheus.NewRegistry()
			w := p.targetWorker(t, deliver.Deps{Tombstones: raced, Metrics: deliver.NewMetrics(reg)})
			v1, objs := p.objectArchive("undo-once", k, seqAt(1), textData(5, size))
			p.stage(t, "r1/undo-once.tar.zst", v1, objs)
			// What an attempt killed before its record left.
			if _, err := p.dst.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &dst, Key: &k}); err != nil {
				t.Fatal(err)
			}
			if err := w.Deliver(ctx, staging, "r1/undo-once.tar.zst"); err != nil {
				t.Fatal(err)
			}
			if p.exists(t, dst, k) {
				t.Fatal("a write overtaken by a delete is at the destination")
			}
			for result, want := range map[string]float64{"written": 0, "skipped_deleted": 1} {
				if n := metric(t, reg, "xrc_target_objects_total", "result", result); n != want {
					t.Errorf("%s = %v, want %v", result, n, want)
				}
			}
			if n := metric(t, reg, "xrc_target_bytes_total"); n != 0 {
				t.Errorf("%v bytes counted written, want none", n)
			}
			if n, want := p.uploading(t, dst, k), map[bool]int{true: 0, false: 1}[size > 16<<20]; n != want {
				t.Errorf("%d uploads of the key left, want %d (only a multipart write aborts those left)", n, want)
			}
		})
	}
}

// TestUnnamedWriteOvertakenByADeleteIsSaid: a write overtaken by a delete
// whose provenance, for want of metadata room, carries nothing to tell it
// from a newer write is left in place, counted written, and said
// (undo_unidentified): not removed (a newer write removed would be lost),
// nor counted as removed.
func TestUnnamedWriteOvertakenByADeleteIsSaid(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/undo/unnamed.txt"
	raced := &racedTombstones{Tombstones: tombstone.New(p.ddb, p.cfg.TableName(), time.Now), key: k, seq: seqAt(2), checked: true}
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{Tombstones: raced, Metrics: deliver.NewMetrics(reg)})
	md := map[string]string{"a": strings.Repeat("v", 2008)} // room for xrc's marks only (TestDeleteLeavesAWriteOfNoKnownTime)
	v1, objs := p.objectArchive("20261202T000000Z-abcdef12-000000000001", k, seqAt(1), []byte("version 1"))
	objs[0].Metadata, v1.Objects[0].Metadata = md, md
	p.stage(t, "r1/unnamed-1.tar.zst", v1, objs)
	if err := w.Deliver(ctx, staging, "r1/unnamed-1.tar.zst"); err != nil {
		t.Fatal(err)
	}
	if !p.exists(t, dst, k) {
		t.Fatal("the write was removed, though nothing told it from a newer one")
	}
	for result, want := range map[string]float64{"written": 1, "skipped_deleted": 0} {
		if n := metric(t, reg, "xrc_target_objects_total", "result", result); n != want {
			t.Errorf("%s = %v, want %v", result, n, want)
		}
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "undo_unidentified"); n != 1 {
		t.Errorf("undo_unidentified = %v, want 1", n)
	}
}

// failedUndo refuses the first conditional delete (a write's undo).
type failedUndo struct {
	deliver.S3API
	refused atomic.Bool
}

func (f *failedUndo) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	if in.IfMatch != nil && f.refused.CompareAndSwap(false, true) {
		return nil, errors.New("SlowDown: please reduce your request rate (injected)")
	}
	return f.S3API.DeleteObject(ctx, in, optFns...)
}

// TestWriteWhoseUndoFailedIsNotCounted: a write a delete overtook whose
// removal failed is not counted written (the retry removes it, counted
// skipped as deleted): it was counted both.
func TestWriteWhoseUndoFailedIsNotCounted(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/undo/failed.txt"
	raced := &racedTombstones{Tombstones: tombstone.New(p.ddb, p.cfg.TableName(), time.Now), key: k, seq: seqAt(2), checked: true}
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{Tombstones: raced, S3: &failedUndo{S3API: p.dst}, Metrics: deliver.NewMetrics(reg)})
	v1, objs := p.objectArchive("undo-failed", k, seqAt(1), []byte("version 1"))
	p.stage(t, "r1/undo-failed.tar.zst", v1, objs)
	if err := w.Deliver(ctx, staging, "r1/undo-failed.tar.zst"); err == nil {
		t.Fatal("the delivery whose undo failed succeeded")
	}
	if err := w.Deliver(ctx, staging, "r1/undo-failed.tar.zst"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if p.exists(t, dst, k) {
		t.Fatal("a write overtaken by a delete is at the destination after the retry")
	}
	for result, want := range map[string]float64{"written": 0, "skipped_deleted": 1} {
		if n := metric(t, reg, "xrc_target_objects_total", "result", result); n != want {
			t.Errorf("%s = %v, want %v", result, n, want)
		}
	}
}

// replicating reports every staging archive it reads as S3 Replication
// reports an object still being copied to other regions, or one it failed
// to copy.
// TestTaggedArchiveNotDeliveredAgain: the delivered tag the target sets
// on an archive S3 Replication still copies makes a store that announces
// tagging as ObjectCreated (MinIO, the local stack: s3:ObjectCreated:*)
// send the archive's event again; it is ignored, not a delivery that tags
// the archive again, and again.
func TestTaggedArchiveNotDeliveredAgain(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	reg, _ := p.startTargetWith(t, replicating{S3API: p.dst, status: s3types.ReplicationStatusPending}, p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	k := "data/tagged/a.txt"
	m, objs := p.objectArchive("tagged-1", k, seqAt(1), []byte("bytes"))
	p.stage(t, "r1/tagged-1.tar.zst", m, objs)
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, reg, "xrc_target_messages_total", "result", "ignored") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the tagging's event not seen")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // what a delivery again would take
	if n := metricValue(t, reg, "xrc_target_archives_total", "result", "done"); n != 1 {
		t.Errorf("archive delivered %v times, want once", n)
	}
	if !p.exists(t, p.cfg.Rules[0].Destinations[0].Bucket, k) {
		t.Error("not delivered")
	}
}

type replicating struct {
	deliver.S3API
	status s3types.ReplicationStatus
	// later is what a HEAD of the archive says (the GET's status if "",
	// none if "none"); headFails: the HEAD fails.
	later     s3types.ReplicationStatus
	headFails bool
}

func (r replicating) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if r.headFails && strings.HasSuffix(aws.ToString(in.Key), ".tar.zst") {
		return nil, errors.New("connection reset")
	}
	out, err := r.S3API.HeadObject(ctx, in, optFns...)
	if err == nil && strings.HasSuffix(aws.ToString(in.Key), ".tar.zst") {
		out.ReplicationStatus = cmp.Or(r.later, r.status)
		if r.later == "none" {
			out.ReplicationStatus = ""
		}
	}
	return out, err
}

func (r replicating) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := r.S3API.GetObject(ctx, in, optFns...)
	if err == nil && strings.HasSuffix(aws.ToString(in.Key), ".tar.zst") {
		out.ReplicationStatus = r.status
	}
	return out, err
}

// TestArchiveReplicatingElsewhereStays: in the source region, a rule's
// staging bucket is also its local destination's; the target there
// delivers an archive S3 Replication is still copying to other regions
// (or failed to) but leaves it in staging, since a version deleted before
// it is copied is never copied, and tags it delivered for lifecycle. One
// whose copies are done is deleted, also one whose copies were done by
// the time it was delivered (its status is read again: a tag would be
// replicated to replicas their targets may have deleted already).
func TestArchiveReplicatingElsewhereStays(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	for i, tc := range []struct {
		status, later   s3types.ReplicationStatus
		headFails       bool
		stays, untagged bool
	}{
		{s3types.ReplicationStatusPending, "", false, true, false},
		// Failed: left untagged, for the days undelivered archives
		// wait, in which S3 Batch Replication may re-run it.
		{s3types.ReplicationStatusFailed, "", false, true, true},
		{s3types.ReplicationStatusComplete, "", false, false, false},
		{s3types.ReplicationStatusPending, s3types.ReplicationStatusComplete, false, false, false},
		// Not known to be done: kept; the status not read again, left
		// untagged (a tag replicated to a replica already deleted is a
		// failed operation, an alarm).
		{s3types.ReplicationStatusPending, "", true, true, true},
		{s3types.ReplicationStatusPending, "none", false, true, false},
		// Failed meanwhile: as failed.
		{s3types.ReplicationStatusPending, s3types.ReplicationStatusFailed, false, true, true},
	} {
		k := fmt.Sprintf("data/replicating/%d.txt", i)
		key := fmt.Sprintf("r1/replicating-%d.tar.zst", i)
		m, objs := p.objectArchive(fmt.Sprintf("replicating-%d", i), k, seqAt(1), []byte("bytes"))
		p.stage(t, key, m, objs)
		w := p.targetWorker(t, deliver.Deps{S3: replicating{S3API: p.dst, status: tc.status, later: tc.later, headFails: tc.headFails}})
		if err := w.Deliver(ctx, staging, key); err != nil {
			t.Fatalf("%s: %v", tc.status, err)
		}
		if !p.exists(t, dst, k) {
			t.Errorf("%s: object not delivered", tc.status)
		}
		if stays := p.count(t, p.dst, staging, key) == 1; stays != tc.stays {
			t.Errorf("%s: archive left in staging: %v, want %v", tc.status, stays, tc.stays)
		}
		if !tc.stays {
			continue
		}
		// Tagged delivered: lifecycle removes it after a day, not after
		// the days an undelivered archive waits.
		tags, err := p.dst.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &staging, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		if got := awsapi.TagMap(tags.TagSet)[config.DeliveredTag]; (got == "true") == tc.untagged {
			t.Errorf("%s: archive left in staging tagged %v, want %s=true: %v", tc.status, awsapi.TagMap(tags.TagSet), config.DeliveredTag, !tc.untagged)
		}
	}
}

// TestMemberTooLargeForTheWorker: a member whose multipart upload would
// need more memory for its parts than the worker may give them is refused
// at once, named, as a failure no retry fixes (its archive reaches the DLQ
// without running worker after worker out of memory); with room, the same
// archive is delivered. A member of fewer parts than an upload holds at
// once needs only those: 20 MiB, two parts of 16 MiB, fits in 50 MiB
// (counted as five parts, it was refused for good).
func TestMemberTooLargeForTheWorker(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/large/member.bin"
	m, objs := p.objectArchive("large-1", k, seqAt(1), bytes.Repeat([]byte("0123456789abcdef"), 65<<20/16)) // 65 MiB: parts of 16 MiB, five held
	key := "r1/large-1.tar.zst"
	p.stage(t, key, m, objs)
	tight := p.targetWorker(t, deliver.Deps{UploadMemory: 50 << 20})
	err := tight.Deliver(ctx, staging, key)
	if !errors.Is(err, deliver.ErrTooLarge) || !deliver.Permanent(err) || !strings.Contains(err.Error(), "give the target more memory") {
		t.Fatalf("with 50 MiB for 80 MiB of parts: %v, want a permanent ErrTooLarge saying what to change", err)
	}
	if !tight.ManifestMemoryFree() {
		t.Error("the delivery failed, its manifest's memory was not given back")
	}
	if p.exists(t, dst, k) {
		t.Error("written though refused")
	}
	roomy := p.targetWorker(t, deliver.Deps{UploadMemory: 100 << 20})
	// Its manifest waits for the manifest memory another delivery holds.
	release, ok := roomy.HoldManifestMemory()
	if !ok {
		t.Fatal("the manifest memory is not free before any delivery")
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	err = roomy.Deliver(short, staging, key)
	cancel()
	release()
	if !errors.Is(err, context.DeadlineExceeded) || p.exists(t, dst, k) {
		t.Fatalf("delivered (%v) while another delivery held the manifest memory, want it waiting until its deadline", err)
	}
	if err := roomy.Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if !p.exists(t, dst, k) {
		t.Error("not written with room for its parts")
	}
	if !roomy.ManifestMemoryFree() {
		t.Error("the delivery done, its manifest's memory was not given back")
	}

	k2 := "data/large/two-parts.bin"
	m2, objs2 := p.objectArchive("large-2", k2, seqAt(1), bytes.Repeat([]byte("fedcba9876543210"), 20<<20/16))
	p.stage(t, "r1/large-2.tar.zst", m2, objs2)
	if err := p.targetWorker(t, deliver.Deps{UploadMemory: 50 << 20}).Deliver(ctx, staging, "r1/large-2.tar.zst"); err != nil {
		t.Fatalf("20 MiB, two parts of 16 MiB, with 50 MiB for them: %v", err)
	}
	if !p.exists(t, dst, k2) {
		t.Error("two-part member not written")
	}
}

// TestOtherRegionsDestinationsAreTheirs: a manifest's destinations in
// other regions are for those regions' targets to judge by their own
// configs; one that this region's config does not have (another region's
// destinations changed, and its config deployed first) does not make this
// region refuse the archive.
func TestOtherRegionsDestinationsAreTheirs(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/regions/a.txt"
	m, objs := p.objectArchive("regions-1", k, seqAt(1), []byte("for eu-west-1"))
	m.Objects[0].Destinations = append(m.Objects[0].Destinations, manifest.Destination{Region: "ap-south-1", Bucket: "elsewhere", Key: k})
	key := "r1/regions-1.tar.zst"
	p.stage(t, key, m, objs)
	if err := p.targetWorker(t, deliver.Deps{}).Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if !p.exists(t, dst, k) {
		t.Error("not written")
	}
}

// TestSkippedMembersAreProgress: a redelivered archive whose large member
// every destination holds already is still read and checked, and that is
// progress for the health check: it reported none, and a task draining
// such archives for three minutes was replaced mid-work.
func TestSkippedMembersAreProgress(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k, key := "data/progress/large.txt", "r1/progress-1.tar.zst"
	m, objs := p.objectArchive("progress-1", k, seqAt(1), dataset.Text(newRand(), deliver.BufferMax+2<<20))
	p.stage(t, key, m, objs)
	if err := p.targetWorker(t, deliver.Deps{}).Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	p.stage(t, key, m, objs) // delivered again
	w := p.targetWorker(t, deliver.Deps{})
	if err := w.Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if w.Moves() == 0 {
		t.Error("reading past a member written already reported no progress")
	}
}

// TestSmallObjectsShareTheUploadMemory: the buffers of small objects are
// held within the worker's upload memory, as part buffers are: eight
// objects of 1 MiB each, concurrency 8 and 3 MiB to hold them in, are
// written three at a time at most (before, all eight at once, each
// archive's (concurrency+1) × 16 MiB unbounded by any memory limit).
func TestSmallObjectsShareTheUploadMemory(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	var objs []dataset.Object
	for i := range 8 {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("data/mem/%d.bin", i), ContentType: "application/octet-stream", Data: textData(uint64(i), 1<<20)})
	}
	m := manifestFor("mem-1", objs, p.cfg, nil)
	key := "r1/mem-1.tar.zst"
	p.stage(t, key, m, objs)
	puts := &slowPuts{S3API: p.dst}
	if err := p.targetWorker(t, deliver.Deps{S3: puts, UploadMemory: 3 << 20}).Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if n := p.count(t, p.dst, dst, "data/mem/"); n != len(objs) {
		t.Fatalf("%d of %d objects written", n, len(objs))
	}
	if peak := puts.calls.Most(); peak > 3 {
		t.Errorf("%d objects of 1 MiB written at once with 3 MiB of upload memory", peak)
	}
}

// slowPuts passes each PutObject on to S3 a moment late, counting how many
// are under way at once.
type slowPuts struct {
	deliver.S3API
	calls localstack.Concurrency
}

func (s *slowPuts) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	defer s.calls.Enter()()
	time.Sleep(100 * time.Millisecond) // so that writes not held back overlap
	return s.S3API.PutObject(ctx, in, optFns...)
}

// TestOwnWriteWithLittleMetadataRoom: an object whose own metadata leaves
// room for some of xrc's provenance but not for the archive id (about 2 KB
// of it) is still xrc's: the ordering keys go first, and any of them marks
// it. Marked by the archive id alone, it was taken for another's write: a
// replayed older write replaced it and the source's delete passed it by,
// silently.
func TestOwnWriteWithLittleMetadataRoom(t *testing.T) {
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	w := p.targetWorker(t, deliver.Deps{})
	k := "data/budget/k"
	// 1,989 bytes as MinIO counts (header name included): room for the
	// sequencer, not for the archive id.
	md := map[string]string{"a": strings.Repeat("v", 1977)}
	write := func(id, seq, body string) {
		m, objs := p.objectArchive(id, k, seq, []byte(body))
		objs[0].Metadata, m.Objects[0].Metadata = md, md
		key := "r1/" + id + ".tar.zst"
		p.stage(t, key, m, objs)
		if err := w.Deliver(ctx, staging, key); err != nil {
			t.Fatal(err)
		}
	}
	write("20261202T000000Z-abcdef12-000000000002", seqAt(2), "version 2")
	h, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata[deliver.MetaSequencer] == "" || !deliver.WrittenByXRC(h.Metadata, k) {
		t.Fatalf("provenance at the destination: %v", h.Metadata)
	}
	write("20261202T000000Z-abcdef12-000000000001", seqAt(1), "version 1") // older, replayed
	if got := p.read(t, dst, k); string(got) != "version 2" {
		t.Errorf("after a replayed older write the destination holds %q", got)
	}
	del := p.deleteArchive("20261202T000000Z-abcdef12-000000000003", k, seqAt(3))
	p.stage(t, "r1/del-3.tar.zst", del, nil)
	if err := w.Deliver(ctx, staging, "r1/del-3.tar.zst"); err != nil {
		t.Fatal(err)
	}
	if p.exists(t, dst, k) {
		t.Error("the source deleted the key; the destination still holds it")
	}
}

// rollbackDuringUpload stands for a newer write of key, of the same bytes
// as the older one there (a rollback: the same ETag), landing while a
// large write's upload is in flight, as its first part is sent.
type rollbackDuringUpload struct {
	deliver.S3API
	key, seq, body string
	once           sync.Once
}

func (r *rollbackDuringUpload) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	var err error
	if aws.ToString(in.Key) == r.key {
		r.once.Do(func() {
			_, err = r.S3API.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader(r.body),
				Metadata: map[string]string{deliver.MetaArchive: "another-archive", deliver.MetaSequencer: r.seq}})
		})
	}
	if err != nil {
		return nil, err
	}
	return r.S3API.UploadPart(ctx, in, o...)
}

// TestLargeWriteRacingARollback: a newer write of the same bytes as the
// object a large write read (so of the same ETag) that lands during the
// upload is not replaced by the older write's complete, which its
// condition, on that ETag, would let through: the key is read again
// before the complete.
func TestLargeWriteRacingARollback(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	k := "data/rollback/k.txt"
	if _, err := p.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &k, Body: strings.NewReader("version 1"),
		Metadata: map[string]string{deliver.MetaArchive: "archive-1", deliver.MetaSequencer: seqAt(1)}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{S3: &rollbackDuringUpload{S3API: p.dst, key: k, seq: seqAt(3), body: "version 1"}, Metrics: deliver.NewMetrics(reg)})
	m, objs := p.objectArchive("rollback-2", k, seqAt(2), textData(7, deliver.BufferMax+1<<20))
	p.stage(t, "r1/rollback-2.tar.zst", m, objs)
	if err := w.Deliver(ctx, staging, "r1/rollback-2.tar.zst"); err != nil {
		t.Fatal(err)
	}
	h, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Metadata[deliver.MetaSequencer]; got != seqAt(3) {
		t.Errorf("destination holds the write of sequencer %s, want the newer rollback's %s", got, seqAt(3))
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "skipped_older"); n != 1 {
		t.Errorf("skipped_older = %v, want 1", n)
	}
	if n := p.uploading(t, dst, k); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}

// TestDeleteLeavesAWriteOfNoKnownTime: a write whose own metadata left
// room for xrc's marks only (no sequencer, no time), delivered before an
// older delete of its key, is not removed by that delete: nothing says
// which came first, and a newer write removed would be lost for good. The
// delete is passed by, counted delete_unordered.
func TestDeleteLeavesAWriteOfNoKnownTime(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	reg := prometheus.NewRegistry()
	w := p.targetWorker(t, deliver.Deps{Metrics: deliver.NewMetrics(reg)})
	k := "data/budget/unordered"
	// 2,020 bytes as MinIO counts: room for the archive's and key's marks.
	md := map[string]string{"a": strings.Repeat("v", 2008)}
	m, objs := p.objectArchive("20261202T000000Z-abcdef12-000000000003", k, seqAt(3), []byte("version 3"))
	objs[0].Metadata, m.Objects[0].Metadata = md, md
	p.stage(t, "r1/unordered-3.tar.zst", m, objs)
	if err := w.Deliver(ctx, staging, "r1/unordered-3.tar.zst"); err != nil {
		t.Fatal(err)
	}
	h, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &k})
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata[deliver.MetaSequencer] != "" || h.Metadata[deliver.MetaModified] != "" || h.Metadata[deliver.MetaSeen] != "" || !deliver.WrittenByXRC(h.Metadata, k) {
		t.Fatalf("provenance at the destination %v: want xrc's marks without a sequencer or time", h.Metadata)
	}
	p.stage(t, "r1/unordered-del-2.tar.zst", p.deleteArchive("20261202T000000Z-abcdef12-000000000002", k, seqAt(2)), nil)
	if err := w.Deliver(ctx, staging, "r1/unordered-del-2.tar.zst"); err != nil {
		t.Fatal(err)
	}
	if got := p.read(t, dst, k); string(got) != "version 3" {
		t.Errorf("after an older delete the destination holds %q, want the newer write", got)
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "delete_unordered"); n != 1 {
		t.Errorf("delete_unordered = %v, want 1", n)
	}
}

// TestArchiveCopiedFromHereStays: in a rule's own source region, also a
// target, an archive the source copies from here to direct regions stays
// after its delivery here (tagged delivered, for lifecycle): deleted, the
// source read it back too late to copy it, failed the archive, and staged
// it again, each time.
func TestArchiveCopiedFromHereStays(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	cfg := *p.cfg
	cfg.Settings.Regions = append(slices.Clone(p.cfg.Settings.Regions),
		config.Region{Name: "ap-southeast-2", Role: config.RoleTarget, StagingBucket: p.cfg.Settings.Regions[1].StagingBucket + "-d", Direct: true})
	cfg.Settings.Regions[1].Role = config.RoleBoth
	rule := p.cfg.Rules[0]
	rule.SourceRegion = "eu-west-1"
	rule.Destinations = append(slices.Clone(rule.Destinations), config.Destination{Region: "ap-southeast-2", Bucket: "elsewhere"})
	cfg.Rules = []config.Rule{rule}
	staging, dst := cfg.Settings.Regions[1].StagingBucket, rule.Destinations[0].Bucket
	k, key := "data/copied/k.txt", "r1/copied.tar.zst"
	m, objs := p.objectArchive("copied", k, seqAt(1), []byte("bytes"))
	m.SourceRegion = "eu-west-1"
	p.stage(t, key, m, objs)
	w := p.targetWorker(t, deliver.Deps{Config: &cfg})
	if err := w.Deliver(ctx, staging, key); err != nil {
		t.Fatal(err)
	}
	if !p.exists(t, dst, k) {
		t.Fatal("object not delivered")
	}
	if p.count(t, p.dst, staging, key) != 1 {
		t.Fatal("the archive was deleted under the source's copies to direct regions")
	}
	tags, err := p.dst.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &staging, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if got := awsapi.TagMap(tags.TagSet)[config.DeliveredTag]; got != "true" {
		t.Errorf("archive left tagged %v, want %s=true", tags.TagSet, config.DeliveredTag)
	}
}

// TestStaleWritesNotWritten: where deletes propagate, a write the source
// last held longer ago than a delete's tombstone is sure to outlive is not
// written, said and counted: an archive whose S3 Replication FAILED stays
// in staging for good, and re-run weeks on, its writes found the tombstone
// of their key's later delete expired and came back for good. A backfill's
// copy of an old object, read just now, is written.
func TestStaleWritesNotWritten(t *testing.T) {
	p := newPipeline(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	m := deliver.NewMetrics(prometheus.NewRegistry())
	w := p.targetWorker(t, deliver.Deps{Metrics: m})
	staging, dst := p.cfg.Settings.Regions[1].StagingBucket, p.cfg.Rules[0].Destinations[0].Bucket
	day := 24 * time.Hour
	objs := []dataset.Object{
		{Key: "data/stale/weeks-old.txt", ContentType: "text/plain", Data: []byte("held 29 days ago")},
		{Key: "data/stale/recent-enough.txt", ContentType: "text/plain", Data: []byte("held 27 days ago")},
		{Key: "data/stale/backfilled.txt", ContentType: "text/plain", Data: []byte("written 60 days ago, read now")},
	}
	man := manifestFor("stale", objs, p.cfg, nil)
	man.Objects[0].EventTime = time.Now().Add(-29 * day)
	man.Objects[1].EventTime = time.Now().Add(-27 * day)
	b := &man.Objects[2]
	b.Sequencer, b.LastModified, b.Seen = "", time.Now().Add(-60*day), time.Now()
	p.stage(t, "r1/stale.tar.zst", man, objs)
	if err := w.Deliver(ctx, staging, "r1/stale.tar.zst"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{objs[0].Key: 0, objs[1].Key: 1, objs[2].Key: 1} {
		if n := p.count(t, p.dst, dst, key); n != want {
			t.Errorf("%s: %d objects at the destination, want %d", key, n, want)
		}
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("stale_write")); n != 1 {
		t.Errorf("%v stale writes counted, want 1", n)
	}
}
