package deliver_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/dataset"
)

// TestHostileArchivesReachDLQ stages archives that must never be extracted
// whole: each one's message is retried, then dead-lettered; nothing that did
// not check out reaches the destination (objects before the corrupt member,
// each verified on its own, may).
func TestHostileArchivesReachDLQ(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	rng := newRand()

	objs := make([]dataset.Object, 6)
	for i := range objs {
		objs[i] = dataset.Object{Key: fmt.Sprintf("data/hostile/%02d.txt", i), ContentType: "text/plain", Data: dataset.Text(rng, 64<<10)}
	}
	objs[4].Data = corpus.Random(128<<10, 4) // stored, not compressed: a flip there only breaks checksums

	// Each archive is staged at its own key (one naming its id), as a
	// source stages it: the defence under test is what stops it.
	valid := writeArchive(t, manifestFor("hostile-valid", objs, p.cfg, nil), objs)

	// A byte flipped three quarters into the compressed stream: the
	// manifest and the first objects still decode.
	corrupt := writeArchive(t, manifestFor("corrupt", objs, p.cfg, nil), objs)
	corrupt[len(corrupt)*3/4] ^= 0xff

	truncated := writeArchive(t, manifestFor("truncated", objs, p.cfg, nil), objs)
	truncated = truncated[:len(truncated)*2/3]

	// The manifest carries each object's SHA-256; the last member has the
	// right size but other bytes.
	mDigest := manifestFor("digest-mismatch", objs, p.cfg, nil)
	var members []member
	for i, o := range objs {
		members = append(members, member{mDigest.Objects[i].Member, o.Data})
	}
	last := &members[len(members)-1]
	last.body = bytes.Clone(last.body)
	last.body[len(last.body)/2] ^= 1
	digest := rawArchive(t, rawManifest(t, mDigest), members)

	// The last member escapes the extraction directory: once as the tar
	// name of a member the manifest names safely, once named so by the
	// manifest itself (which the writer's validation would refuse).
	mDot := manifestFor("dotdot-member", objs, p.cfg, nil)
	members = members[:0]
	for i, o := range objs {
		members = append(members, member{mDot.Objects[i].Member, o.Data})
	}
	members[len(members)-1].name = "../x"
	dotTar := rawArchive(t, rawManifest(t, mDot), members)

	mDotMf := manifestFor("dotdot-manifest", objs, p.cfg, nil)
	mDotMf.Objects[len(objs)-1].Member = "../x"
	dotManifest := rawArchive(t, rawManifest(t, mDotMf), members)

	// why is what the worker's error must say.
	archives := []struct {
		name string
		data []byte
		why  string
	}{
		{"corrupt", corrupt, "invalid archive"},
		{"truncated", truncated, "unexpected EOF"},
		{"digest-mismatch", digest, "checksum mismatch"},
		{"dotdot-member", dotTar, `unsafe member: member name "../x"`},
		{"dotdot-manifest", dotManifest, `invalid manifest: objects[5] (key "data/hostile/05.txt"): member name "../x"`},
	}
	key := func(name string) string { return "r1/hostile/" + name + ".tar.zst" }
	var keys []string
	for _, a := range archives {
		keys = append(keys, key(a.name))
	}
	slices.Sort(keys)

	reg, _ := p.startTarget(t)
	for _, a := range archives {
		putStaging(t, p.dst, staging, key(a.name), a.data)
	}

	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	tq := p.dep.TargetQueues["eu-west-1"]
	if !poll(2*time.Minute, 500*time.Millisecond, func() bool {
		return p.depth(t, dlq) >= len(archives) && p.depth(t, tq) == 0
	}) {
		t.Fatalf("after 2 minutes the DLQ holds %d messages (want %d) and the target queue %d (want 0)",
			p.depth(t, dlq), len(archives), p.depth(t, tq))
	}
	// Delivered in one pass, objects before a corrupt member may be
	// written: only each one's own bytes checked out, so each must be
	// intact. Nothing from the corrupt member on is written.
	written := map[string]bool{}
	for _, k := range p.keys(t, dst) {
		written[k] = true
	}
	var intact []dataset.Object
	for _, o := range objs {
		if written[o.Key] {
			intact = append(intact, o)
		}
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, intact, identity, 8) {
		t.Errorf("a hostile archive wrote an object that is not intact: %v", err)
	}
	if written[objs[len(objs)-1].Key] {
		t.Errorf("%s, the member the corrupt and hostile archives break, was written", objs[len(objs)-1].Key)
	}
	got := dlqKeys(t, p.sqs, dlq)
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Errorf("dead-lettered archives %q, want %q", got, keys)
	}
	// Each was tried more than once and judged permanent (released with
	// no delay so it reaches the DLQ quickly), never half-extracted.
	for _, a := range archives {
		tries := 0
		for _, e := range p.released() {
			msg := fmt.Sprint(e["error"])
			if !strings.Contains(msg, key(a.name)) {
				continue
			}
			tries++
			// Found by filter archive="<id>" and counted by kind.
			if e["kind"] != "invalid" || e["key"] != key(a.name) || e["archive"] == nil {
				t.Errorf("%s: released with kind %v, key %v, archive %v: want invalid, its key and id", a.name, e["kind"], e["key"], e["archive"])
			}
			if d, _ := e["retryIn"].(time.Duration); d != 0 {
				t.Errorf("%s: released with retryIn %v, want 0 for an invalid archive (error %s)", a.name, d, msg)
			}
			if !strings.Contains(msg, a.why) {
				t.Errorf("%s: error %q does not say %q", a.name, msg, a.why)
			}
		}
		if tries < 2 {
			t.Errorf("%s: handled %d times before the DLQ, want at least 2 (retried)", a.name, tries)
		}
	}
	// Archives sharing objects run concurrently, so one object may be
	// written more than once; every object in the bucket must be counted.
	if n := metric(t, reg, "xrc_target_objects_total", "result", "written"); int(n) < len(written) {
		t.Errorf("worker counted %v destination writes, the bucket holds %d objects", n, len(written))
	}
	// Dead-lettered archives stay in staging for the operator to inspect
	// or redrive.
	if n := p.count(t, p.dst, staging, "r1/hostile/"); n != len(archives) {
		t.Errorf("staging holds %d hostile archives, want %d kept for inspection", n, len(archives))
	}

	// The same objects in a valid archive do get written: the fixture
	// (destination, keys, manifest) is not what stopped the others.
	putStaging(t, p.dst, staging, "r1/hostile-valid.tar.zst", valid)
	if got := p.waitDest(t, len(objs), time.Minute); got != len(objs) {
		t.Fatalf("valid archive: destination holds %d objects, want %d", got, len(objs))
	}
	for _, err := range dataset.Check(ctx, p.dst, dst, objs, identity, 8) {
		t.Error(err)
	}
}

// TestCorruptLargeMemberIsNoWriteFailure: a member streamed to its
// destination in parts whose bytes fail their digest is the archive's
// fault, counted as its delivery's (kind invalid), not as failed writes
// of every destination (which sent operators looking at S3 and IAM).
func TestCorruptLargeMemberIsNoWriteFailure(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	obj := dataset.Object{Key: "data/large-corrupt.bin", ContentType: "text/plain", Data: textData(7, 20<<20)} // compressible: MinIO takes one PUT of the archive only under 16 MiB
	m := manifestFor("large-corrupt", []dataset.Object{obj}, p.cfg, nil)
	body := bytes.Clone(obj.Data)
	body[len(body)-1] ^= 1 // past the first parts: some are uploaded before the digest fails
	reg, _ := p.startTarget(t)
	key := "r1/hostile/large-corrupt.tar.zst"
	putStaging(t, p.dst, staging, key, rawArchive(t, rawManifest(t, m), []member{{m.Objects[0].Member, body}}))
	if !poll(time.Minute, 200*time.Millisecond, func() bool { return len(p.released()) > 0 }) {
		t.Fatal("the archive was not released within a minute")
	}
	if e := p.released()[0]; e["kind"] != "invalid" {
		t.Errorf("released as %v, want invalid", e["kind"])
	}
	if n := metric(t, reg, "xrc_target_objects_total", "result", "failed"); n != 0 {
		t.Errorf("%v objects counted failed, want 0: the archive failed, no write", n)
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "write"); n != 0 {
		t.Errorf("%v write errors counted, want 0", n)
	}
	if p.exists(t, dst, obj.Key) {
		t.Errorf("%s written from a member failing its digest", obj.Key)
	}
}

// TestArchiveOfANewerXRCIsNoCorruption: an archive whose manifest requires
// a feature this release does not know goes to the DLQ (no retry mends
// it) as kind unsupported, not as a verification failure, whose alarm and
// runbook send on-call looking for corruption where a target needs
// upgrading. Nothing of it is written.
func TestArchiveOfANewerXRCIsNoCorruption(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	obj := dataset.Object{Key: "data/newer.txt", ContentType: "text/plain", Data: []byte("written by a newer xrc\n")}
	m := manifestFor("newer", []dataset.Object{obj}, p.cfg, nil)
	m.Requires = []string{"teleport"}
	reg, _ := p.startTarget(t)
	key := "r1/hostile/newer.tar.zst"
	putStaging(t, p.dst, staging, key, rawArchive(t, rawManifest(t, m), []member{{m.Objects[0].Member, obj.Data}}))
	if !poll(time.Minute, 200*time.Millisecond, func() bool { return len(p.released()) > 0 }) {
		t.Fatal("the archive was not released within a minute")
	}
	e := p.released()[0]
	if e["kind"] != "unsupported" || !strings.Contains(fmt.Sprint(e["error"]), `requires "teleport"`) {
		t.Errorf("released as kind %v, error %v: want unsupported, naming the feature", e["kind"], e["error"])
	}
	if d, _ := e["retryIn"].(time.Duration); d != 0 {
		t.Errorf("released with retryIn %v, want 0: no retry mends it", d)
	}
	if n := metric(t, reg, "xrc_target_verify_failures_total"); n != 0 {
		t.Errorf("%v verify failures counted, want 0: the archive is not corrupt", n)
	}
	if n := metric(t, reg, "xrc_target_archives_total", "result", "unsupported"); n == 0 {
		t.Error("no archive counted unsupported")
	}
	if p.exists(t, dst, obj.Key) {
		t.Errorf("%s written from an archive this release cannot honour", obj.Key)
	}
}
