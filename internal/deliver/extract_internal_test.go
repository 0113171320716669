package deliver

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aws/smithy-go"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

func TestNewerOrSame(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 456e6, time.UTC)
	ms := t0.UnixMilli()
	obj := func(seq, version string, mod time.Time) *manifest.Object {
		return &manifest.Object{Sequencer: seq, VersionID: version, LastModified: mod}
	}
	tests := []struct {
		name string
		dest provenance
		obj  *manifest.Object
		want bool
	}{
		{"not written by xrc", provenance{sequencer: "FF", modified: ms}, obj("01", "", t0), false},
		{"not written by xrc, nothing known", provenance{}, obj("", "", t0), false},

		{"same sequencer", provenance{ok: true, sequencer: "0055B8D2A1C0F3E7A1"}, obj("0055B8D2A1C0F3E7A1", "", t0), true},
		{"newer sequencer at destination", provenance{ok: true, sequencer: "0055B8D2A1C0F3E7A2"}, obj("0055B8D2A1C0F3E7A1", "", t0), true},
		{"older sequencer at destination", provenance{ok: true, sequencer: "0055B8D2A1C0F3E7A0"}, obj("0055B8D2A1C0F3E7A1", "", t0), false},
		// Sequencers of different lengths compare right-padded with
		// zeros, as S3 says: a shorter one with a greater prefix is newer.
		{"newer shorter sequencer at destination", provenance{ok: true, sequencer: "0062E99A88DC4075"}, obj("0062E99A88DC407460", "", t0), true},
		{"newer shorter sequencer arriving", provenance{ok: true, sequencer: "0062E99A88DC407460"}, obj("0062E99A88DC4075", "", t0), false},
		{"equal once padded", provenance{ok: true, sequencer: "0062E99A88DC4074"}, obj("0062E99A88DC407400", "", t0), true},
		{"case ignored", provenance{ok: true, sequencer: "ab"}, obj("AB", "", t0), true},
		// The sequencer wins over the clock when both sides have one.
		{"sequencer beats clock", provenance{ok: true, sequencer: "02", modified: ms - 1000}, obj("01", "", t0), true},
		{"older sequencer, later clock", provenance{ok: true, sequencer: "01", modified: ms + 1000}, obj("02", "", t0), false},

		// Without a sequencer on either side: last-modified, then version.
		{"later at destination", provenance{ok: true, modified: ms + 1}, obj("", "", t0), true},
		{"earlier at destination", provenance{ok: true, modified: ms - 1}, obj("01", "", t0), false},
		{"same time, same version", provenance{ok: true, modified: ms, version: "v1"}, obj("", "v1", t0), true},
		{"same time, no versions", provenance{ok: true, modified: ms}, obj("", "", t0), true},
		{"same time, other version", provenance{ok: true, modified: ms, version: "v1"}, obj("", "v2", t0), false},
		// "null" is no version (an unversioned or suspended bucket's),
		// as the source now writes it: the same write, not rewritten.
		{"same time, null and none", provenance{ok: true, modified: ms, version: "null"}, obj("", "", t0), true},
		{"same time, none and null", provenance{ok: true, modified: ms}, obj("", "null", t0), true},
		// A backfill's write has no sequencer, and whole seconds may hold
		// two writes: one its event orders is written over it, the same
		// version too, so that sequencers order the key's later writes (a
		// multipart upload begun before the copy's write and completed
		// after it is dated before it: by times, older for good).
		{"destination lacks sequencer", provenance{ok: true, modified: ms}, obj("01", "", t0), false},
		{"destination lacks sequencer, same version", provenance{ok: true, modified: ms, version: "v1"}, obj("01", "v1", t0), false},
		{"both lack sequencers, same version", provenance{ok: true, modified: ms, version: "v1"}, obj("", "v1", t0), true},
		{"object lacks sequencer", provenance{ok: true, sequencer: "99", modified: ms - 1}, obj("", "", t0), false},
		// A backfill's copy of a write at t0, read at t0+1s; a multipart
		// upload begun before t0 (so dated before it) completed at t0+5s:
		// newer, by its event's time against the copy's read.
		{"multipart completed after the copy was read", provenance{ok: true, modified: ms, seen: ms + 1000},
			&manifest.Object{Sequencer: "05", LastModified: t0.Add(-10 * time.Second), EventTime: t0.Add(5 * time.Second)}, false},
		{"multipart completed before the copy was read", provenance{ok: true, modified: ms, seen: ms + 10_000},
			&manifest.Object{Sequencer: "05", LastModified: t0.Add(-10 * time.Second), EventTime: t0.Add(5 * time.Second)}, true},
		// ... and within the clocks' margin of the read: o is written (if
		// the copy's write is the newer, its own event orders it after).
		{"multipart completed as the copy was read", provenance{ok: true, modified: ms, seen: ms + 10_000},
			&manifest.Object{Sequencer: "05", LastModified: t0.Add(-10 * time.Second), EventTime: t0.Add(10*time.Second + 500*time.Millisecond)}, false},
		// The other way: the destination holds a write its event orders,
		// which completed at its seen time; a backfill's copy read before
		// then (or too close to it to say) is an older write, whatever
		// the times say: a multipart upload is dated when it began, and
		// versions of one second look alike.
		{"copy read before the multipart it would replace completed", provenance{ok: true, sequencer: "05", modified: ms - 10_000, seen: ms + 5000},
			&manifest.Object{LastModified: t0, VersionID: "v1", Seen: t0.Add(2 * time.Second)}, true},
		{"copy of one second read before the version it would replace", provenance{ok: true, sequencer: "05", modified: ms, version: "v2", seen: ms + 300},
			&manifest.Object{LastModified: t0, VersionID: "v1", Seen: t0.Add(100 * time.Millisecond)}, true},
		{"copy read as the destination's write completed", provenance{ok: true, sequencer: "05", modified: ms - 10_000, seen: ms + 5000},
			&manifest.Object{LastModified: t0, Seen: t0.Add(5500 * time.Millisecond)}, true},
		{"copy read after the destination's write completed", provenance{ok: true, sequencer: "05", modified: ms - 10_000, seen: ms + 5000},
			&manifest.Object{LastModified: t0, Seen: t0.Add(7 * time.Second)}, false},
		{"copy of the destination's write read after it", provenance{ok: true, sequencer: "05", modified: ms, version: "v1", seen: ms},
			&manifest.Object{LastModified: t0, VersionID: "v1", Seen: t0.Add(time.Minute)}, true},
		{"copy whose read time is unknown", provenance{ok: true, sequencer: "05", modified: ms - 10_000, seen: ms + 5000},
			&manifest.Object{LastModified: t0}, false},
		// Sub-millisecond differences are below what metadata keeps.
		{"same millisecond", provenance{ok: true, modified: ms}, obj("", "", t0.Add(999*time.Microsecond)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.dest.newerOrSame(tt.obj); got != tt.want {
				t.Errorf("%+v.newerOrSame(seq %q, version %q, mtime %d) = %v, want %v",
					tt.dest, tt.obj.Sequencer, tt.obj.VersionID, tt.obj.LastModified.UnixMilli(), got, tt.want)
			}
		})
	}
}

func TestReadProvenance(t *testing.T) {
	p := readProvenance(map[string]string{MetaArchive: "a1", MetaSequencer: "0A", MetaVersion: "v1", MetaModified: "1795315730465"}, "")
	if want := (provenance{ok: true, size: -1, sequencer: "0A", version: "v1", modified: 1795315730465}); p != want {
		t.Errorf("readProvenance = %+v, want %+v", p, want)
	}
	// Any of xrc's keys marks its write (the budget may have dropped the
	// archive id); a source's own xrc- keys arrive renamed and do not.
	if p := readProvenance(map[string]string{MetaSequencer: "0A"}, ""); !p.ok || p.sequencer != "0A" {
		t.Errorf("readProvenance without %s = %+v, want xrc's", MetaArchive, p)
	}
	if p := readProvenance(map[string]string{metaRenamed + "seq": "0A", "owner": "etl"}, ""); p.ok {
		t.Errorf("readProvenance of another's object = %+v, want ok false", p)
	}
	if p := readProvenance(map[string]string{MetaArchive: "a1", MetaModified: "garbage"}, ""); !p.ok || p.modified != 0 {
		t.Errorf("readProvenance with a bad mtime = %+v, want ok with modified 0", p)
	}
}

func TestTagging(t *testing.T) {
	tests := []struct {
		tags map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{}, ""},
		{map[string]string{"a": "1"}, "a=1"},
		{map[string]string{"b": "2", "a": "1", "c": ""}, "a=1&b=2&c="},
		{map[string]string{"k&=": "v&=?", "sp ace": "x+y/z"}, "k%26%3D=v%26%3D%3F&sp+ace=x%2By%2Fz"},
		{map[string]string{"ключ": "значение"}, "%D0%BA%D0%BB%D1%8E%D1%87=%D0%B7%D0%BD%D0%B0%D1%87%D0%B5%D0%BD%D0%B8%D0%B5"},
	}
	for _, tt := range tests {
		got := tagging(tt.tags)
		if got != tt.want {
			t.Errorf("tagging(%v) = %q, want %q", tt.tags, got, tt.want)
		}
		// Whatever the encoding, S3 must decode the same tags.
		back, err := url.ParseQuery(got)
		if err != nil {
			t.Fatalf("tagging(%v) = %q does not parse: %v", tt.tags, got, err)
		}
		dec := map[string]string{}
		for k, v := range back {
			dec[k] = v[0]
		}
		if len(tt.tags) > 0 && !maps.Equal(dec, tt.tags) {
			t.Errorf("tagging(%v) decodes to %v", tt.tags, dec)
		}
	}
}

// TestSourceMetadataCannotPoseAsProvenance: a source object's own
// metadata under xrc- is renamed, so it can neither overwrite nor fake the
// provenance that orders writes.
func TestSourceMetadataCannotPoseAsProvenance(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "a-1"}
	o := &manifest.Object{Bucket: "src", Key: "k", Sequencer: "01", LastModified: time.UnixMilli(1000),
		Metadata: map[string]string{"xrc-seq": "FFFFFFFFFFFFFFFFFFFF", "XRC-Archive": "forged", "xrc-orig-seq": "x", "owner": "me"}}
	md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}).metadata(m, o, make([]byte, 32))
	want := map[string]string{
		MetaSequencer: "01", MetaArchive: "a-1", MetaModified: "1000", MetaSHA256: strings.Repeat("00", 32), MetaKey: KeyMark("k"),
		"xrc-orig-seq": "FFFFFFFFFFFFFFFFFFFF", "xrc-orig-Archive": "forged", "xrc-orig-orig-seq": "x", "owner": "me",
	}
	if !maps.Equal(md, want) {
		t.Errorf("metadata = %v\nwant %v", md, want)
	}
	if p := readProvenance(md, "k"); p.sequencer != "01" {
		t.Errorf("provenance sequencer %q, want the real one", p.sequencer)
	}
	// And back: the source's metadata as it was (S3 lowercases the keys).
	lower := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[strings.ToLower(k)] = v
		}
		return out
	}
	if got := lower(UserMetadata(md)); !maps.Equal(got, lower(o.Metadata)) {
		t.Errorf("UserMetadata = %v\nwant %v", got, lower(o.Metadata))
	}
}

// TestEventWriteSeenAtItsCompletion: a write its event orders is dated,
// in xrc-seen, when it completed (its event's time), so that a backfill's
// copy read before then never replaces it (newerOrSame).
func TestEventWriteSeenAtItsCompletion(t *testing.T) {
	began, done := time.UnixMilli(1795315730000), time.UnixMilli(1795315740250) // a multipart upload
	o := &manifest.Object{Bucket: "src", Key: "k", Sequencer: "05", LastModified: began, EventTime: done}
	md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}).metadata(&manifest.Manifest{ArchiveID: "a-1"}, o, make([]byte, 32))
	if md[MetaSeen] != "1795315740250" {
		t.Fatalf("xrc-seen %q, want the event's time 1795315740250", md[MetaSeen])
	}
	// Written at began+5s, read by a backfill at began+7s, before the
	// upload completed: older, though its Last-Modified is later.
	copied := &manifest.Object{LastModified: began.Add(5 * time.Second), Seen: began.Add(7 * time.Second)}
	if !readProvenance(md, "k").newerOrSame(copied) {
		t.Error("a backfill's copy read before the destination's write completed would replace it")
	}
}

func TestMetadataBudget(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "20261122T030131Z-280ec2e843a1"}
	sum := make([]byte, 32)
	base := manifest.Object{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A1", VersionID: "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
		LastModified: time.UnixMilli(1795315730465)}
	provenanceSize := 6*headerPrefix + len(MetaArchive) + len(m.ArchiveID) + len(MetaSequencer) + len(base.Sequencer) +
		len(MetaModified) + len("1795315730465") + len(MetaVersion) + len(base.VersionID) + len(MetaKey) + 8 + len(MetaSHA256) + 64

	// user returns metadata of exactly n bytes (keys plus values).
	user := func(n int) map[string]string {
		return map[string]string{"blob": strings.Repeat("m", n-headerPrefix-len("blob"))}
	}
	// In priority order (provenanceKeys; base has no xrc-seen). Ordering
	// first: the sequencer and time are what keep an older write from
	// replacing a newer one, and any key marks the object xrc's.
	all := []string{MetaSequencer, MetaModified, MetaVersion, MetaArchive, MetaSHA256, MetaKey}
	tests := []struct {
		name string
		user map[string]string
		want []string // provenance keys expected, in priority order
		warn bool
	}{
		{"no user metadata", nil, all, false},
		{"room for all", user(maxMetadata - provenanceSize), all, false},
		{"one byte short of the key mark", user(maxMetadata - provenanceSize + 1), all[:5], true},
		// The key mark after the rest: without it a copy is taken for
		// xrc's write, as before it was written.
		{"one byte short of the SHA-256", user(maxMetadata - provenanceSize + headerPrefix + len(MetaKey) + 8 + 1),
			[]string{MetaSequencer, MetaModified, MetaVersion, MetaArchive, MetaKey}, true},
		{"room for the sequencer only", user(maxMetadata - headerPrefix - len(MetaSequencer) - len(base.Sequencer)), all[:1], true},
		// The archive's mark without its id, after every key newer
		// targets read: older ones read ownership from it alone.
		{"room for the ordering keys and the archive's mark", user(maxMetadata - 3*headerPrefix - len(MetaSequencer) - len(base.Sequencer) -
			len(MetaModified) - len("1795315730465") - len(MetaArchive) - len(archiveDropped)), []string{MetaSequencer, MetaModified, MetaArchive}, true},
		// The version before the archive id: it orders writes of one time.
		{"room for the ordering keys and the version", user(maxMetadata - 3*headerPrefix - len(MetaSequencer) - len(base.Sequencer) -
			len(MetaModified) - len("1795315730465") - len(MetaVersion) - len(base.VersionID)), all[:3], true},
		{"full", user(maxMetadata), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			w := &Worker{Deps: Deps{Log: zap.New(core), Metrics: NewMetrics(prometheus.NewRegistry())}}
			o := base
			o.Metadata = tt.user
			md := w.metadata(m, &o, sum)

			size := 0
			for k, v := range md {
				size += headerPrefix + len(k) + len(v)
			}
			if size > maxMetadata {
				t.Errorf("metadata is %d bytes with its header names, more than MinIO's %d", size, maxMetadata)
			}
			for k, v := range tt.user {
				if md[k] != v {
					t.Errorf("user metadata %s dropped or changed", k)
				}
			}
			var got []string
			for _, k := range all {
				if _, ok := md[k]; ok {
					got = append(got, k)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("provenance kept %v, want %v", got, tt.want)
			}
			if warned := logs.Len() > 0; warned != tt.warn {
				t.Errorf("warned %v, want %v", warned, tt.warn)
			}
			// Counted too: with the last key gone the copy is not xrc's,
			// and its deletes are passed by; an alarm needs a metric.
			if n := testutil.ToFloat64(w.Metrics.Errors.WithLabelValues("provenance_dropped")); (n > 0) != tt.warn {
				t.Errorf("provenance_dropped counted %v, want some %v", n, tt.warn)
			}
			if a, ok := md[MetaArchive]; ok && a != m.ArchiveID && a != archiveDropped {
				t.Errorf("archive key %q: want the id or %q", a, archiveDropped)
			}
			if len(md) != len(tt.user)+len(got) {
				t.Errorf("metadata has %d keys, want %d user + %d provenance", len(md), len(tt.user), len(got))
			}
		})
	}

	// A backfilled object's xrc-seen (it orders the object against a late
	// delete) is kept before the SHA-256, which only xrc verify reads.
	o := base
	o.Sequencer, o.VersionID, o.Seen = "", "", time.UnixMilli(1795315731000)
	room := 3*headerPrefix + len(MetaArchive) + len(m.ArchiveID) + len(MetaModified) + len("1795315730465") + len(MetaSeen) + len("1795315731000")
	o.Metadata = user(maxMetadata - room)
	md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}).metadata(m, &o, sum)
	if md[MetaSeen] == "" || md[MetaSHA256] != "" {
		t.Errorf("with room for xrc-seen only: seen %q, sha256 %q", md[MetaSeen], md[MetaSHA256])
	}

	// Values it has not got are not written, and cost nothing.
	w := &Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
	o = base
	o.Sequencer, o.VersionID = "", ""
	md = w.metadata(m, &o, sum)
	for _, k := range []string{MetaSequencer, MetaVersion} {
		if _, ok := md[k]; ok {
			t.Errorf("empty %s written", k)
		}
	}
	if md[MetaModified] != "1795315730465" || md[MetaSHA256] != strings.Repeat("00", 32) || md[MetaArchive] != m.ArchiveID {
		t.Errorf("provenance = %v", md)
	}
}

// TestMetadataBudgetOfAWS: a source object with metadata AWS took (keys
// and values under 2 KB, more with their header names) keeps xrc's
// ownership mark at an AWS destination, where header names are not
// counted; counted as MinIO counts, there is no room for it.
// TestArchiveMarkComesLast: the archive's mark goes only where room is
// left once every key newer targets read has its place: a backfill's copy
// (no sequencer) keeps the time it was seen, what orders it against a late
// delete, rather than the mark.
func TestArchiveMarkComesLast(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "20261122T030131Z-280ec2e843a1"}
	seen := time.UnixMilli(1795315731000)
	o := manifest.Object{Bucket: "src", Key: "k", LastModified: time.UnixMilli(1795315730465), Seen: seen}
	times := 2*headerPrefix + len(MetaModified) + len("1795315730465") + len(MetaSeen) + len(seenMilli(seen))
	w := &Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
	for _, c := range []struct {
		name string
		room int
		mark string
	}{
		{"room for the times only", times, ""},
		// Room for the archive id, or for the times and the mark: the
		// times first (the id went before them and pushed out xrc-seen).
		{"room for the times and the mark", times + headerPrefix + len(MetaArchive) + len(m.ArchiveID) - 1, archiveDropped},
		{"room for all three", times + headerPrefix + len(MetaArchive) + len(m.ArchiveID), m.ArchiveID},
	} {
		o.Metadata = map[string]string{"blob": strings.Repeat("m", maxMetadata-c.room-headerPrefix-len("blob"))}
		md := w.metadata(m, &o, make([]byte, 32))
		if md[MetaSeen] == "" || md[MetaModified] == "" {
			t.Errorf("%s: xrc-seen %q, xrc-mtime %q: the copy's times dropped", c.name, md[MetaSeen], md[MetaModified])
		}
		if md[MetaArchive] != c.mark {
			t.Errorf("%s: xrc-archive %q, want %q", c.name, md[MetaArchive], c.mark)
		}
	}
}

func TestMetadataBudgetOfAWS(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "20261122T010203Z-abcdef12-0123456789ab"}
	o := manifest.Object{Bucket: "src", Key: "k", Sequencer: "01", LastModified: time.UnixMilli(1795315730465), Metadata: map[string]string{}}
	for i := range 20 {
		o.Metadata[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", 92) // 20 × 95 = 1,900 bytes
	}
	sum := make([]byte, 32)
	if md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}, awsBudget: true}).metadata(m, &o, sum); md[MetaArchive] == "" || md[MetaModified] == "" {
		t.Errorf("AWS destination: provenance %q, %q dropped", md[MetaArchive], md[MetaModified])
	}
	if md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}).metadata(m, &o, sum); md[MetaArchive] != "" {
		t.Error("S3-compatible destination: provenance kept past its 2 KB with header names")
	}
}

func TestPartSize(t *testing.T) {
	for _, size := range []int64{0, 5 << 30, 200 << 30, 45_000 << 30, manifest.MaxObjectSize} {
		ps := partSize(size)
		if ps < minPartSize || ps > maxPartSize || (size+ps-1)/ps > 10_000 {
			t.Errorf("partSize(%d) = %d: %d parts", size, ps, (size+ps-1)/ps)
		}
	}
}

// An upload holds at most partsAtOnce+1 part buffers, and never more
// than its object has parts and one that finds the end (sendParts reads
// a part past the last whole one to see EOF).
func TestPartMemory(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{16<<20 + 1, 2 * minPartSize}, {20 << 20, 2 * minPartSize}, {32<<20 - 1, 2 * minPartSize},
		{32 << 20, 3 * minPartSize}, {48<<20 + 1, 4 * minPartSize}, {64 << 20, 5 * minPartSize},
		{65 << 20, 5 * minPartSize}, {5 << 30, 5 * minPartSize}, {0, minPartSize},
		// Parts above minPartSize: and the buffer a part grows from
		// (readPart), less than a part.
		{(100<<20 - 1) * 9000, 6 * 100 << 20},
		{manifest.MaxObjectSize, 6 * partSize(manifest.MaxObjectSize)},
	} {
		if got := partMemory(c.size); got != c.want {
			t.Errorf("partMemory(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// readPart allocates for the bytes that come, not for the part size a
// manifest's claim makes: a member claiming a terabyte that holds three
// bytes costs one small buffer.
func TestReadPart(t *testing.T) {
	buf, err := readPart(strings.NewReader("abc"), nil, 1<<40)
	if string(buf) != "abc" || err != io.EOF || cap(buf) > minPartSize {
		t.Errorf("3 bytes of a 1 TiB part: %q (cap %d), %v", buf, cap(buf), err)
	}
	data := bytes.Repeat([]byte("x"), 3*minPartSize)
	r := bytes.NewReader(data)
	buf, err = readPart(r, buf, 2*minPartSize+1)
	if len(buf) != 2*minPartSize+1 || err != nil {
		t.Errorf("a full part of %d bytes: %d bytes, %v", 2*minPartSize+1, len(buf), err)
	}
	buf, err = readPart(r, buf, 2*minPartSize+1)
	if len(buf) != minPartSize-1 || err != io.EOF {
		t.Errorf("the last part: %d bytes, %v; want %d and EOF", len(buf), err, minPartSize-1)
	}
	if buf, err = readPart(r, buf, 2*minPartSize+1); len(buf) != 0 || err != io.EOF {
		t.Errorf("after the end: %d bytes, %v", len(buf), err)
	}
	// A part grows to its size and no more: the upload memory budget
	// counts a part buffer as the part size (slices.Grow made a 17 MiB
	// part 20 MiB).
	for _, size := range []int{minPartSize + 1<<20, 2*minPartSize + 1, 5 * minPartSize} {
		r := &capacities{r: bytes.NewReader(make([]byte, size))}
		buf, err := readPart(r, nil, size)
		if err != nil || len(buf) != size || cap(buf) != size {
			t.Errorf("a part of %d bytes: %d bytes in a buffer of %d, %v", size, len(buf), cap(buf), err)
		}
		// Each buffer at most twice the bytes it grew from, the last
		// one with the one before less than a part (TestPartMemory
		// counts it): a claimed size costs memory for bytes that came.
		for i := 1; i < len(r.seen); i++ {
			if r.seen[i] > 2*r.seen[i-1] {
				t.Errorf("a part of %d bytes: a buffer of %d grew to %d", size, r.seen[i-1], r.seen[i])
			}
		}
		if n := len(r.seen); n > 1 && r.seen[n-2] >= size {
			t.Errorf("a part of %d bytes: the buffer before the last held %d", size, r.seen[n-2])
		}
	}
}

// capacities records the capacity of each buffer read into, as the part
// it ends: len(p) ends at the buffer's capacity or the part's size.
type capacities struct {
	r    io.Reader
	seen []int
	done int
}

func (c *capacities) Read(p []byte) (int, error) {
	if end := c.done + cap(p); len(c.seen) == 0 || c.seen[len(c.seen)-1] != end {
		c.seen = append(c.seen, end)
	}
	n, err := c.r.Read(p)
	c.done += n
	return n, err
}

// TestHolds: whether the destination holds o's own write, so that a delete
// covering it removes it again: on the sequencer where both have one, its
// time dropped by the metadata budget or not (the sequencer alone was
// never "held", and a covered write stayed for good); never on a time
// alone where o has a sequencer.
func TestHolds(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	ms := t0.UnixMilli()
	obj := func(seq string) *manifest.Object { return &manifest.Object{Sequencer: seq, LastModified: t0} }
	for _, tt := range []struct {
		name string
		dest provenance
		obj  *manifest.Object
		want bool
	}{
		{"not xrc's", provenance{sequencer: "05", modified: ms}, obj("05"), false},
		{"same write", provenance{ok: true, sequencer: "05", modified: ms}, obj("05"), true},
		{"another write", provenance{ok: true, sequencer: "06", modified: ms}, obj("05"), false},
		{"same sequencer, time dropped", provenance{ok: true, sequencer: "05"}, obj("05"), true},
		// A time is a second: another write of it (or a backfill's copy
		// of that one) is not o's, and is kept.
		{"sequencer dropped, same time", provenance{ok: true, modified: ms}, obj("05"), false},
		{"sequencer dropped, other time", provenance{ok: true, modified: ms - 1000}, obj("05"), false},
		{"a backfill's write, same time", provenance{ok: true, modified: ms}, obj(""), true},
		{"an evented write, backfill's object", provenance{ok: true, sequencer: "05", modified: ms}, obj(""), false},
		{"nothing to judge on", provenance{ok: true}, obj("05"), false},
	} {
		if got := tt.dest.holds(tt.obj); got != tt.want {
			t.Errorf("%s: holds = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSameWrite: which destination copy a retag (no sequencer), or a
// replayed write, belongs on.
func TestSameWrite(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	ms := t0.UnixMilli()
	obj := func(seq, version string) *manifest.Object {
		return &manifest.Object{Sequencer: seq, VersionID: version, LastModified: t0}
	}
	for _, tt := range []struct {
		name string
		dest provenance
		obj  *manifest.Object
		want bool
	}{
		{"not written by xrc", provenance{modified: ms}, obj("", ""), false},
		{"same sequencer", provenance{ok: true, sequencer: "01", modified: ms - 5000}, obj("01", ""), true},
		{"other sequencer, same time", provenance{ok: true, sequencer: "02", modified: ms}, obj("01", ""), false},
		{"backfilled copy, replayed event", provenance{ok: true, modified: ms, version: "v1"}, obj("01", "v1"), true},
		{"retag, same time and version", provenance{ok: true, sequencer: "01", modified: ms, version: "v1"}, obj("", "v1"), true},
		{"retag, other version", provenance{ok: true, modified: ms, version: "v1"}, obj("", "v2"), false},
		{"retag, null version", provenance{ok: true, modified: ms, version: "null"}, obj("", ""), true},
		{"retag, other time", provenance{ok: true, modified: ms - 1000}, obj("", ""), false},
		// Provenance the metadata budget cut short cannot tell: xrc
		// owns its destinations.
		{"time dropped", provenance{ok: true}, obj("", "v2"), true},
		{"version dropped", provenance{ok: true, modified: ms}, obj("", "v2"), true},
	} {
		if got := tt.dest.sameWrite(tt.obj); got != tt.want {
			t.Errorf("%s: sameWrite = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestWriteLost: a put whose own condition failed, or whose key was
// deleted since the read, is decided again; a failure after the write
// (its late tags, its check for a delete, a 409 there) is not taken for
// one: it counted a refused put and the object twice, and could write
// again a key just deleted.
func TestWriteLost(t *testing.T) {
	lost := &smithy.GenericAPIError{Code: "PreconditionFailed"}
	gone := &smithy.GenericAPIError{Code: "NoSuchKey"}
	for _, tc := range []struct {
		name string
		err  error
		etag string
		want bool
	}{
		{"412", lost, "", true},
		{"404 on an ETag", gone, `"e"`, true},
		{"404 on absence", gone, "", false},
		{"412 after the write", &afterWrite{lost}, "", false},
		{"404 after the write", &afterWrite{fmt.Errorf("tags: %w", gone)}, `"e"`, false},
		{"none", nil, "", false},
	} {
		if got := writeLost(tc.err, tc.etag); got != tc.want {
			t.Errorf("%s: writeLost = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestKeyMark: xrc's metadata marks the source key whose write it copies;
// metadata marked for another source key (a copy) is not xrc's write, and
// metadata without a mark (written before it) is.
func TestKeyMark(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "a-1"}
	o := &manifest.Object{Key: "src/k", Sequencer: "0A", LastModified: time.UnixMilli(1795315730465)}
	md := (&Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}).metadata(m, o, make([]byte, 32))
	if md[MetaKey] != KeyMark("src/k") || len(md[MetaKey]) != 8 {
		t.Fatalf("key mark %q, want %q", md[MetaKey], KeyMark("src/k"))
	}
	if !WrittenByXRC(md, "src/k") || WrittenByXRC(md, "src/other") {
		t.Error("a key mark: xrc's write of its source key only")
	}
	if p := readProvenance(md, "src/other"); p.ok {
		t.Error("provenance of a copy at another source key's destination taken as xrc's")
	}
	delete(md, MetaKey)
	if !WrittenByXRC(md, "src/other") {
		t.Error("provenance without a key mark (written before it) not taken as xrc's")
	}
}

// TestMetadataNeverPastTheLimit: whatever room the user's metadata leaves,
// xrc's keys (the archive's mark and the key mark included) keep the whole
// within S3's 2 KB, counted as AWS counts and as MinIO does: past it,
// every write of the object is refused. The archive's mark once went
// uncounted and the key mark after it passed the limit.
func TestMetadataNeverPastTheLimit(t *testing.T) {
	m := &manifest.Manifest{ArchiveID: "20261122T030131Z-280ec2e843a1"}
	objs := []manifest.Object{
		{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A1", LastModified: time.UnixMilli(1795315730465), EventTime: time.UnixMilli(1795315731000)},
		{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A1", VersionID: "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", LastModified: time.UnixMilli(1795315730465)},
		{Bucket: "src", Key: "k", LastModified: time.UnixMilli(1795315730465), Seen: time.UnixMilli(1795315731000)},
	}
	for _, aws := range []bool{false, true} {
		prefix := headerPrefix
		if aws {
			prefix = 0
		}
		w := &Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}, awsBudget: aws}
		for _, base := range objs {
			for n := maxMetadata - 400; n <= maxMetadata-prefix-len("blob"); n++ {
				o := base
				o.Metadata = map[string]string{"blob": strings.Repeat("m", n)}
				size := 0
				for k, v := range w.metadata(m, &o, make([]byte, 32)) {
					size += prefix + len(k) + len(v)
				}
				if size > maxMetadata {
					t.Fatalf("AWS budget %t, %d bytes of user metadata, %+v: %d bytes in all, more than %d", aws, n, base, size, maxMetadata)
				}
			}
		}
	}
}

// TestWritesWithoutRoomForOrder: at every size of a source's own metadata,
// as AWS and as MinIO count it, the provenance a write carries never lets
// an older delete remove it (a newer write delivered first: one begun
// after the delete, or a multipart upload begun before it and completed a
// margin after it, where xrc-seen is kept), nor a replayed older write
// replace it; lets a newer delete remove an older write wherever any time
// is kept; and names the write for its own undo (a delete propagated
// meanwhile) or says it cannot: the budget may leave only xrc's marks
// (archiveDropped, the key mark), no sequencer and no time, and then the
// delete passes it by.
func TestWritesWithoutRoomForOrder(t *testing.T) {
	t0 := time.UnixMilli(1795315730000)
	m := &manifest.Manifest{ArchiveID: "20261122T030131Z-280ec2e843a1"}
	sum := make([]byte, 32)
	// W1 is a write well before the delete D2; W3s are writes after it,
	// delivered before it: one begun after it, one a multipart upload
	// begun before it and completed within the second after it.
	w1 := manifest.Object{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A1", LastModified: t0, EventTime: t0.Add(300 * time.Millisecond)}
	d2 := manifest.Object{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A2", LastModified: t0.Add(5 * time.Second)}
	w3s := []manifest.Object{
		{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A3", LastModified: t0.Add(7 * time.Second), EventTime: t0.Add(7200 * time.Millisecond)},
		{Bucket: "src", Key: "k", Sequencer: "0055B8D2A1C0F3E7A3", LastModified: t0.Add(4 * time.Second), EventTime: t0.Add(7 * time.Second)},
	}
	// A backfill's write: no sequencer, read by the source at Seen.
	b1 := manifest.Object{Bucket: "src", Key: "k", LastModified: t0, Seen: t0.Add(time.Second)}
	bands := map[string]bool{}
	for _, aws := range []bool{true, false} {
		w := &Worker{Deps: Deps{Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}, awsBudget: aws}
		for n := 1800; n <= maxMetadata; n++ {
			user := map[string]string{"blob": strings.Repeat("m", n-len("blob"))}
			name := fmt.Sprintf("aws=%v, %d bytes of the source's own", aws, n)
			prov := func(o manifest.Object) provenance {
				o.Metadata = user
				return readProvenance(w.metadata(m, &o, sum), "k")
			}
			for i, w3 := range w3s {
				// The multipart write known by xrc-mtime alone, when its
				// upload began, is a tie the delete takes (its limit).
				if p := prov(w3); p.ok && (i == 0 || p.sequencer != "" || p.seen != 0) && p.againstDelete(&d2) == olderThanDelete {
					t.Errorf("%s: an older delete removes the newer write of %v (provenance %+v)", name, w3.EventTime, p)
				}
				// A store's delete without a sequencer: the write's kept
				// sequencer cannot order it, and its times may be gone.
				unsequenced := d2
				unsequenced.Sequencer = ""
				if p := prov(w3); p.ok && (i == 0 || p.seen != 0) && p.againstDelete(&unsequenced) == olderThanDelete {
					t.Errorf("%s: an older delete without a sequencer removes the newer write of %v (provenance %+v)", name, w3.EventTime, p)
				}
			}
			own := prov(w1)
			if timed := own.sequencer != "" || own.seen != 0 || own.modified != 0; own.ok && (own.againstDelete(&d2) == olderThanDelete) != timed {
				t.Errorf("%s: the delete removes the older write %v, want it where any time orders them (provenance %+v)", name, own.againstDelete(&d2) == olderThanDelete, own)
			}
			for _, o := range []manifest.Object{w1, b1} {
				if p := prov(o); p.ok && !p.holds(&o) && !p.unidentified(&o) {
					t.Errorf("%s: a write (sequencer %q) neither named by its provenance nor said to be unnamed (provenance %+v)", name, o.Sequencer, p)
				}
			}
			for _, w3 := range w3s {
				if p := prov(w3); p.ok && (p.sequencer != "" || p.seen != 0 || p.modified != 0) && !p.newerOrSame(&w1) {
					t.Errorf("%s: an older write replayed replaces the newer one of %v (provenance %+v)", name, w3.EventTime, p)
				}
			}
			if own.holds(&w3s[0]) || prov(w3s[0]).holds(&w1) {
				t.Errorf("%s: one write taken for another", name)
			}
			switch {
			case !own.ok:
				bands["none"] = true
			case own.sequencer == "" && own.seen == 0 && own.modified == 0:
				bands["marks only"] = true
			case own.sequencer == "":
				bands["times only"] = true
			}
		}
	}
	for _, b := range []string{"none", "marks only", "times only"} {
		if !bands[b] {
			t.Errorf("no size left the provenance with %s: the sizes tried miss the band", b)
		}
	}
}

// TestCoversDatesAWriteByItsCompletion: a tombstone without a sequencer
// (an S3-compatible store's delete event) does not cover a write its event
// orders that completed a margin after the delete, though its upload
// began before it (a multipart upload's Last-Modified); one completed
// before the delete it covers.
func TestCoversDatesAWriteByItsCompletion(t *testing.T) {
	t0 := time.UnixMilli(1795315730000)
	del := tombstone.Tombstone{Bucket: "d", Key: "k", At: t0}
	later := &manifest.Object{Key: "k", Sequencer: "0055B8D2A1C0F3E7A3", LastModified: t0.Add(-time.Second), EventTime: t0.Add(3 * time.Second)}
	if covers(del, later) {
		t.Error("a write completed 3 s after the delete is taken as overtaken by it")
	}
	earlier := &manifest.Object{Key: "k", Sequencer: "0055B8D2A1C0F3E7A1", LastModified: t0.Add(-5 * time.Second), EventTime: t0.Add(-4 * time.Second)}
	if !covers(del, earlier) {
		t.Error("a write completed 4 s before the delete is not covered by it")
	}
}
