package manifest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

var testTime = time.Date(2026, 11, 22, 1, 2, 3, 456_000_000, time.UTC)

// valid returns a manifest that passes Validate, with every field set.
func valid() *Manifest {
	return &Manifest{
		Format:       Format,
		ArchiveID:    "01JD-archive_1.v2",
		CreatedAt:    testTime,
		SourceRegion: "eu-west-1",
		RuleID:       "rule-1",
		Level:        3,
		Objects: []Object{
			{
				Member:             MemberName(0, "logs/app.log"),
				Bucket:             "src",
				Key:                "logs/app.log",
				VersionID:          "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
				Sequencer:          "0055AED6DCD90281E5",
				Size:               1234,
				ETag:               `"9b2cf535f27731c974343645a3985328"`,
				LastModified:       testTime,
				StorageClass:       "STANDARD_IA",
				ContentType:        "text/plain; charset=utf-8",
				ContentEncoding:    "gzip",
				ContentDisposition: `attachment; filename="app.log"`,
				ContentLanguage:    "en",
				CacheControl:       "max-age=3600",
				Expires:            "Wed, 21 Oct 2026 07:28:00 GMT",
				Metadata:           map[string]string{"owner": "team-a", "x-trace": "abc\tdef"},
				Tags:               map[string]string{"env": "prod", "Cost Center": "42", "empty": ""},
				SHA256:             strings.Repeat("0123456789abcdef", 4),
				ChecksumAlgorithm:  "SHA256",
				Checksum:           base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("\x01\x23\x45\x67\x89\xab\xcd\xef"), 4)),
				Destinations: []Destination{
					{Region: "us-east-1", Bucket: "dst", Key: "copy/logs/app.log", StorageClass: "GLACIER_IR", KMSKeyID: "arn:aws:kms:us-east-1:111122223333:key/abc"},
					{Region: "ap-south-1", Bucket: "dst2", Key: "logs/app.log"},
				},
			},
			{Bucket: "src", Key: "logs/old.log", Delete: true, VersionID: "v2", LastModified: testTime, Destinations: []Destination{{Region: "us-east-1", Bucket: "dst", Key: "copy/logs/old.log"}}},
			{Member: MemberName(2, "a/../b"), Bucket: "src", Key: "a/../b", Size: 0, ChecksumAlgorithm: "CRC64NVME", Checksum: "AAAAAAAAAAA=",
				Destinations: []Destination{{Region: "us-east-1", Bucket: "dst", Key: "a/../b"}}},
		},
	}
}

// TestValidateObject: an object is checked alone before it has a member
// name; what Validate would find in it is found, naming its key.
func TestValidateObject(t *testing.T) {
	for i, o := range valid().Objects {
		o.Member = ""
		if err := o.ValidateObject(); err != nil {
			t.Errorf("objects[%d]: %v", i, err)
		}
	}
	o := valid().Objects[0]
	o.Metadata = map[string]string{"title": strings.Repeat("x", 2100)}
	if err := o.ValidateObject(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `key "logs/app.log": metadata is`) {
		t.Errorf("too much metadata: %v", err)
	}
	// 2 KiB at the source; 5 bytes more once xrc-a is renamed xrc-orig-a
	// at the destinations, where every write of it would be refused.
	o.Metadata = map[string]string{"Xrc-a": strings.Repeat("x", 2043)}
	if err := o.ValidateObject(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "metadata is 2053 bytes with its keys under xrc- renamed") {
		t.Errorf("metadata over 2 KiB once renamed: %v", err)
	}
	// The same in a manifest an earlier source staged: the archive is not
	// refused whole for it (its other objects are delivered).
	m := valid()
	m.Objects[0].Metadata = o.Metadata
	if err := m.Validate(); err != nil {
		t.Errorf("a manifest refused for an object's renamed metadata: %v", err)
	}
}

// TestValidateForStore: metadata AWS takes (1,800 bytes in 60 keys) is
// 2,460 bytes as an S3-compatible store counts it (x-amz-meta- included)
// and refused there: an object bound for a store fails alone at the source.
func TestValidateForStore(t *testing.T) {
	o := valid().Objects[0]
	o.Metadata = map[string]string{}
	for i := range 60 {
		o.Metadata[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 24)
	}
	if err := o.ValidateObject(); err != nil {
		t.Fatalf("AWS takes it: %v", err)
	}
	if err := o.ValidateForStore(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "2460 bytes as an S3-compatible store counts it") {
		t.Errorf("for a store: %v", err)
	}
	o.Metadata = map[string]string{"owner": "team-a"}
	if err := o.ValidateForStore(); err != nil {
		t.Errorf("a little metadata: %v", err)
	}
	// Keys as the local stack's MinIO takes or refuses them (AWS takes all).
	for key, refused := range map[string]bool{
		"a/./b": true, "a/../b": true, "./x": true, "../x": true, "a//b": true, "a/.": true, "a/..": true,
		"/lead": false, "x/": false, "a/.../b": false, ".hidden": false, "a\\b": false, "a.b/c..d": false,
	} {
		o.Destinations = []Destination{{Region: "eu-west-1", Bucket: "d", Key: "ok"}, {Region: "store", Bucket: "s", Key: key}}
		if err := o.ValidateForStore(); (err != nil) != refused || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("destination key %q: %v, want refused %v", key, err, refused)
		}
	}
}

// TestDestinationMetadataKey: source keys under xrc- (any case: metadata
// keys are HTTP header names) are renamed, others kept.
func TestDestinationMetadataKey(t *testing.T) {
	for k, want := range map[string]string{"xrc-seq": "xrc-orig-seq", "XRC-Seq": "xrc-orig-Seq", "xrc": "xrc", "title": "title", "xrcfoo": "xrcfoo"} {
		if got := DestinationMetadataKey(k); got != want {
			t.Errorf("DestinationMetadataKey(%q) = %q, want %q", k, got, want)
		}
	}
}

func encode(t *testing.T, m *Manifest) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	m := valid()
	data := encode(t, m)
	if bytes.Count(data, []byte("\n")) != 1 || !bytes.HasSuffix(data, []byte("\n")) {
		t.Errorf("encoding is not one line: %q", data)
	}
	if bytes.Contains(data, []byte(`\u0026`)) {
		t.Errorf("HTML escaping is on: %s", data)
	}
	got, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, m)
	}
	empty := &Manifest{Format: Format, ArchiveID: "e", Level: 1}
	if data := encode(t, empty); !bytes.Contains(data, []byte(`"objects":[]`)) {
		t.Errorf("nil objects encode as %s", data)
	}
}

func TestEncodeValidatesFirst(t *testing.T) {
	m := valid()
	m.Objects[0].Size = -1
	var buf bytes.Buffer
	if err := m.Encode(&buf); !errors.Is(err, ErrInvalid) || buf.Len() != 0 {
		t.Fatalf("Encode = %v with %d bytes written", err, buf.Len())
	}
}

func TestDecodeErrors(t *testing.T) {
	good := string(encode(t, valid()))
	tests := []struct {
		name     string
		input    string
		contains []string
	}{
		{"empty", "", []string{"unexpected end of JSON input"}},
		{"syntax error with position", "{\n  \"format\": 1,\n  \"archiveId\": x\n}", []string{"line 3, column 16", "invalid character 'x'"}},
		{"type error", `{"format":1,"archiveId":"a","level":3,"objects":[{"size":"big"}]}`, []string{"objects.size", "string", "int64", "line 1"}},
		{"format 2", strings.Replace(good, `"format":1`, `"format":2`, 1), []string{"unsupported format 2"}},
		{"format 2 with new field types", `{"format":2,"objects":{"new":"shape"}}`, []string{"unsupported format 2"}},
		{"format missing", `{"archiveId":"a","level":3,"objects":[]}`, []string{"format is missing"}},
		{"not an object", `[1,2,3]`, []string{"cannot use JSON array"}},
		{"trailing data", good + `{}`, []string{"invalid character '{' after top-level value"}},
		{"invalid content", strings.Replace(good, `"size":1234`, `"size":-5`, 1), []string{"objects[0]", `key "logs/app.log"`, "size -5 is negative"}},
		{"too large", good + strings.Repeat(" ", MaxSize), []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.input))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %v, want ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "invalid manifest: ") {
				t.Errorf("error %q does not start with \"invalid manifest: \"", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestDecodeToleratesUnknownFields(t *testing.T) {
	data := strings.Replace(string(encode(t, valid())), `"format":1,`, `"format":1,"futureField":{"x":[1,2]},`, 1)
	data = strings.Replace(data, `"bucket":"src",`, `"bucket":"src","newObjectField":true,`, 1)
	if _, err := Decode(strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeReadErrorIsNotInvalid(t *testing.T) {
	boom := errors.New("boom")
	_, err := Decode(iotest.ErrReader(boom))
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Decode = %v, want boom and not ErrInvalid", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(m *Manifest)
		want   string // substring of the error
	}{
		{"format", func(m *Manifest) { m.Format = 2 }, "format is 2"},
		{"empty archive id", func(m *Manifest) { m.ArchiveID = "" }, "archiveId: is empty"},
		{"archive id with slash", func(m *Manifest) { m.ArchiveID = "a/b" }, "archiveId"},
		{"archive id dot-dot", func(m *Manifest) { m.ArchiveID = ".." }, "archiveId"},
		{"archive id too long", func(m *Manifest) { m.ArchiveID = strings.Repeat("a", 256) }, "archiveId"},
		{"level 0", func(m *Manifest) { m.Level = 0 }, "level 0"},
		{"level 23", func(m *Manifest) { m.Level = 23 }, "level 23"},
		{"level -8", func(m *Manifest) { m.Level = -8 }, "level -8"},
		{"negative size", func(m *Manifest) { m.Objects[0].Size = -1 }, "size -1 is negative"},
		{"size over S3's largest", func(m *Manifest) { m.Objects[0].Size = 1 << 62 }, "size 4611686018427387904 is over S3's largest object (53687091200000 bytes)"},
		{"empty bucket", func(m *Manifest) { m.Objects[0].Bucket = "" }, "bucket is empty"},
		{"empty key", func(m *Manifest) { m.Objects[0].Key = "" }, "key is empty"},
		{"key too long", func(m *Manifest) { m.Objects[0].Key = strings.Repeat("k", 1025) }, "1025 bytes"},
		{"key not UTF-8", func(m *Manifest) { m.Objects[0].Key = "a\xffb" }, "not valid UTF-8"},
		{"sha256 uppercase", func(m *Manifest) { m.Objects[0].SHA256 = strings.ToUpper(m.Objects[0].SHA256) }, "lowercase hex"},
		{"sha256 short", func(m *Manifest) { m.Objects[0].SHA256 = "abc" }, "lowercase hex"},
		{"delete with member", func(m *Manifest) { m.Objects[1].Member = "objects/000001/x" }, "delete entry has member"},
		{"delete with size", func(m *Manifest) { m.Objects[1].Size = 3 }, "delete entry has size 3"},
		{"delete with sha256", func(m *Manifest) { m.Objects[1].SHA256 = m.Objects[0].SHA256 }, "delete entry has a sha256"},
		{"retag with member", func(m *Manifest) { m.Objects[0].Retag = true }, "retag entry has member"},
		{"retag with size", func(m *Manifest) { m.Objects[1].Delete, m.Objects[1].Retag, m.Objects[1].Size = false, true, 3 }, "retag entry has size 3"},
		{"retag and delete", func(m *Manifest) { m.Objects[1].Retag = true }, "both a delete and a retag"},
		{"missing member", func(m *Manifest) { m.Objects[0].Member = "" }, "member name is empty"},
		{"unsafe member", func(m *Manifest) { m.Objects[0].Member = "objects/../x" }, `".." path segment`},
		{"member outside objects", func(m *Manifest) { m.Objects[0].Member = "x/y" }, "not under objects/"},
		{"duplicate member", func(m *Manifest) { m.Objects[2].Member = m.Objects[0].Member }, "is also used by objects[0]"},
		{"member collides with trailer", func(m *Manifest) {
			m.Objects[0].SHA256 = ""
			m.Objects[2].Member = TrailerName(m.Objects[0].Member)
		}, "is also used by objects[0]"},
		{"member inside another member", func(m *Manifest) { m.Objects[2].Member = m.Objects[0].Member + "/inner" }, "is inside member"},
		// The same with the outer member's digest in a trailer, whose
		// name (X.sha256: '.' sorts before '/') would sit between X and
		// X/inner in plain byte order and hide the nesting.
		{"member inside a member with a trailer", func(m *Manifest) {
			m.Objects[0].SHA256, m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "", "", ""
			m.Objects[2].Member = m.Objects[0].Member + "/inner"
		}, "is inside member"},
		{"no destinations", func(m *Manifest) { m.Objects[0].Destinations = nil }, "no destinations"},
		{"destination region", func(m *Manifest) { m.Objects[0].Destinations[1].Region = "" }, "destinations[1]: region is empty"},
		{"destination bucket", func(m *Manifest) { m.Objects[0].Destinations[0].Bucket = "" }, "destinations[0]: bucket is empty"},
		{"destination key", func(m *Manifest) { m.Objects[0].Destinations[0].Key = "" }, "destinations[0]: key is empty"},
		{"11 tags", func(m *Manifest) {
			for i := range 11 {
				m.Objects[0].Tags[fmt.Sprint("t", i)] = "v"
			}
		}, "more than S3's 10"},
		{"tag key too long", func(m *Manifest) { m.Objects[0].Tags[strings.Repeat("é", 129)] = "" }, "129 characters"},
		{"tag value too long", func(m *Manifest) { m.Objects[0].Tags["env"] = strings.Repeat("v", 257) }, "257 characters"},
		{"tag key empty", func(m *Manifest) { m.Objects[0].Tags[""] = "v" }, "tag key is empty"},
		{"metadata key not a token", func(m *Manifest) { m.Objects[0].Metadata["has space"] = "v" }, "not an HTTP header name"},
		{"metadata value with newline", func(m *Manifest) { m.Objects[0].Metadata["owner"] = "a\r\nx-amz-acl: public-read" }, "control character"},
		{"metadata too large", func(m *Manifest) { m.Objects[0].Metadata["big"] = strings.Repeat("b", 2048) }, "more than S3's 2048"},
		{"content type with newline", func(m *Manifest) { m.Objects[0].ContentType = "text/plain\n" }, "contentType has a control character"},
		{"sequencer not hex", func(m *Manifest) { m.Objects[0].Sequencer = "zz\nX-Evil: 1" }, "sequencer"},
		{"sequencer too long", func(m *Manifest) { m.Objects[0].Sequencer = strings.Repeat("f", 65) }, "at most 64 digits"},
		{"version id with CR LF", func(m *Manifest) { m.Objects[0].VersionID = "v\r\n" }, "versionId"},
		{"etag with a control byte", func(m *Manifest) { m.Objects[0].ETag = "\"abc\x00\"" }, "etag"},
		{"storage class with newline", func(m *Manifest) { m.Objects[0].StorageClass = "STANDARD\nX: y" }, "storageClass"},
		{"checksum algorithm", func(m *Manifest) { m.Objects[0].ChecksumAlgorithm = "MD5" }, `checksumAlgorithm "MD5"`},
		{"checksum of a delete", func(m *Manifest) { m.Objects[1].ChecksumAlgorithm, m.Objects[1].Checksum = "CRC32", "AAAAAA==" }, "checksum on an entry without bytes"},
		{"checksum without algorithm", func(m *Manifest) { m.Objects[2].ChecksumAlgorithm = "" }, `checksum "AAAAAAAAAAA=" without checksumAlgorithm`},
		{"checksum of another algorithm's size", func(m *Manifest) { m.Objects[2].Checksum = "AAAAAA==" }, `checksum "AAAAAA==" is not a base64 CRC64NVME`},
		{"checksum not base64", func(m *Manifest) { m.Objects[2].Checksum = "AAAAAAA-AAA=" }, "is not a base64 CRC64NVME"},
		// The decoder skips CR and LF, and ignores stray padding bits.
		{"checksum with a line break", func(m *Manifest) { m.Objects[2].Checksum = "AAAAAAAA\r\nAAA=" }, "is not a base64 CRC64NVME"},
		{"checksum not canonical", func(m *Manifest) { m.Objects[2].Checksum = "AAAAAAAAAAB=" }, "is not a base64 CRC64NVME"},
		{"checksum not the sha256", func(m *Manifest) { m.Objects[0].Checksum = base64.StdEncoding.EncodeToString(make([]byte, 32)) }, "is not the object's sha256"},
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid()
			tt.modify(m)
			err := m.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestValidateLimitsAccepted(t *testing.T) {
	m := valid()
	o := &m.Objects[0]
	o.Key = strings.Repeat("k", 1024)
	o.Member = MemberName(0, o.Key)
	o.Tags = map[string]string{}
	for i := range 10 {
		o.Tags[fmt.Sprint("tag", i)] = strings.Repeat("v", 256)
	}
	delete(o.Tags, "tag0")
	o.Tags[strings.Repeat("é", 128)] = ""                          // the 10th tag, with the longest key
	o.Metadata = map[string]string{"k": strings.Repeat("v", 2047)} // exactly 2 KiB
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	m := valid()
	m.ArchiveID = ""
	m.Objects[0].Size = -1
	m.Objects[1].Destinations = nil
	m.Objects[2].Bucket = ""
	err := m.Validate()
	for _, want := range []string{"archiveId", `objects[0] (key "logs/app.log"): size -1`, `objects[1] (key "logs/old.log"): no destinations`, `objects[2] (key "a/../b"): bucket is empty`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}

	// A hostile manifest gets a bounded message.
	m = valid()
	for i := range 1000 {
		m.Objects = append(m.Objects, Object{Key: fmt.Sprint("bad", i), Size: -1})
	}
	err = m.Validate()
	if err == nil || !strings.Contains(err.Error(), "more problems") || strings.Count(err.Error(), "\n") != maxProblems {
		t.Fatalf("got %d lines, want %d and a summary", strings.Count(fmt.Sprint(err), "\n"), maxProblems)
	}
}

func TestMemberName(t *testing.T) {
	tests := []struct {
		index int
		key   string
		want  string
	}{
		{0, "a.txt", "objects/000000/a.txt"},
		{42, "dir/sub/file name+v2.csv", "objects/000042/dir/sub/file name+v2.csv"},
		{7, "données/été.txt", "objects/000007/données/été.txt"},
		{1234567, "x", "objects/1234567/x"},
		{1, "/abs", "objects/000001"},
		{1, "a/../b", "objects/000001"},
		{1, "../b", "objects/000001"},
		{1, "./b", "objects/000001"},
		{1, "a/.", "objects/000001"},
		{1, "dir/", "objects/000001"},
		{1, "a//b", "objects/000001"},
		{1, "", "objects/000001"},
		{1, "nul\x00", "objects/000001"},
		{1, "new\nline", "objects/000001"},
		{1, "c1\u0085control", "objects/000001"},
		{1, "bad\xffutf8", "objects/000001"},
		{1, "...", "objects/000001/..."},
		{1, `back\slash`, `objects/000001/back\slash`},
		{1, strings.Repeat("k", 1024), "objects/000001/" + strings.Repeat("k", 1024)},
	}
	for _, tt := range tests {
		got := MemberName(tt.index, tt.key)
		if got != tt.want {
			t.Errorf("MemberName(%d, %q) = %q, want %q", tt.index, tt.key, got, tt.want)
		}
		if err := SafeMember(got); err != nil {
			t.Errorf("SafeMember(MemberName(%d, %q)) = %v", tt.index, tt.key, err)
		}
	}
	if got := MemberName(1, strings.Repeat("a/", 2100)+"x"); got != "objects/000001" {
		t.Errorf("over-long name not shortened: %d bytes", len(got))
	}
}

func TestSafeMember(t *testing.T) {
	ok := []string{"objects/1", "objects/000001/a b+c", "objects/x/y/z.sha256", "objects/é"}
	bad := []string{"", "/objects/x", "objects/../x", "objects/a/../../x", "objects/./x", "objects//x", "objects/x/",
		"objects/a\x00b", "objects/a\nb", "objects", "objects/", "manifest.json", "x/objects/y", "../objects/x",
		"objects/\xff", "objects/" + strings.Repeat("x", MaxMemberLen)}
	for _, name := range ok {
		if err := SafeMember(name); err != nil {
			t.Errorf("SafeMember(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range bad {
		if err := SafeMember(name); err == nil {
			t.Errorf("SafeMember(%q) = nil, want an error", name)
		}
	}
}

func TestTotalSize(t *testing.T) {
	m := valid()
	m.Objects[1].Size = 99 // a delete entry's size does not count (and is invalid anyway)
	if got := m.TotalSize(); got != 1234 {
		t.Errorf("TotalSize = %d, want 1234", got)
	}
	m.Objects = append(m.Objects, Object{Size: math.MaxInt64}, Object{Size: math.MaxInt64})
	if got := m.TotalSize(); got != math.MaxInt64 {
		t.Errorf("TotalSize = %d, want saturation at MaxInt64", got)
	}
}

// TestDecodeCapsEntries: a manifest of tiny metadata entries (7 bytes of
// JSON each, about 190 bytes each once decoded), or of empty objects (3
// bytes each, 320 once decoded), is rejected before its maps and structs
// are built, so a hostile manifest cannot make a reader allocate
// gigabytes, however it repeats keys or mixes in a type error; one at the
// caps decodes.
func TestDecodeCapsEntries(t *testing.T) {
	// entryObjects writes objects holding entries metadata entries in all,
	// 1,000 to an object, each with one destination.
	entryObjects := func(b *bytes.Buffer, entries int) {
		for i := 0; entries > 0; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, `{"bucket":"b","key":"k%d","member":"objects/%06d/k%d","destinations":[{"region":"r","bucket":"b","key":"k"}],"metadata":{`, i, i, i)
			n := min(entries, 1000)
			for j := range n {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(b, `"%x":""`, j)
			}
			entries -= n
			b.WriteString(`}}`)
		}
	}
	doc := func(objects string) []byte {
		return []byte(`{"format":1,"archiveId":"a","level":3,"objects":[` + objects + `]}`)
	}
	over := func() string {
		var b bytes.Buffer
		entryObjects(&b, MaxEntries+1)
		return b.String()
	}()
	bigMap := func() string {
		var b bytes.Buffer
		b.WriteString(`{"bucket":"b","key":"k","metadata":{`)
		for j := range MaxEntries + 1 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%x":""`, j)
		}
		b.WriteString(`}`)
		return b.String()
	}()
	empties := strings.TrimSuffix(strings.Repeat(`{},`, MaxObjects+1), ",")
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"entries", "metadata, tag and destination entries", doc(over)},
		{"a repeated metadata key", "metadata, tag and destination entries", doc(bigMap + `,"metadata":{}}`)},
		{"a repeated metadata key in another case", "metadata, tag and destination entries", doc(bigMap + `,"Metadata":{}}`)},
		{"a type error after the entries", "metadata, tag and destination entries", doc(bigMap + `},1`)},
		{"a repeated objects key", "metadata, tag and destination entries",
			[]byte(`{"format":1,"archiveId":"a","level":3,"objects":[` + bigMap + `}],"objects":[]}`)},
		{"objects", fmt.Sprintf("more than %d objects", MaxObjects), doc(empties)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Decode(bytes.NewReader(tc.data))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode: %v, want %q", err, tc.want)
			}
			bound := 4 * uint64(len(tc.data))
			if raceDetector {
				bound *= 2
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
				t.Errorf("rejecting a %d MiB manifest allocated %d MiB; the caps must act before the maps are built", len(tc.data)>>20, alloc>>20)
			}
		})
	}
	// Metadata beyond S3's 2 KB per object is invalid anyway; at the caps,
	// the counting itself must not reject.
	var b bytes.Buffer
	entryObjects(&b, MaxEntries-MaxEntries/1000-1) // and a destination for each 1,000
	if _, err := checkEntries(doc(b.String())); err != nil {
		t.Errorf("checkEntries at the entry cap: %v", err)
	}
	if c, err := checkEntries(doc(strings.TrimSuffix(strings.Repeat(`{},`, MaxObjects), ","))); err != nil || c.objects != MaxObjects {
		t.Errorf("checkEntries at the object cap: %d objects, %v", c.objects, err)
	}
	if n := members([]byte(`{"a:b":"c\"d:e","f":{"g":1}}`)); n != 2 {
		t.Errorf("members counted %d, want 2 (colons in strings and nested values do not count)", n)
	}
	for raw, want := range map[string]int{`[]`: 0, ` [ ] `: 0, `[1]`: 1, `[{"a":[1,2]},"x,y",[3]]`: 3, `{"a":1}`: 0, `"[1,2]"`: 0} {
		if n := elements([]byte(raw)); n != want {
			t.Errorf("elements(%s) = %d, want %d", raw, n, want)
		}
	}
}

// TestRetagEntry: a retag entry (tags only, no member) is valid, survives
// encoding, and has no member.
func TestRetagEntry(t *testing.T) {
	m := valid()
	r := m.Objects[1]
	r.Delete, r.Retag, r.Tags = false, true, map[string]string{"scan": "clean"}
	m.Objects = append(m.Objects, r)
	got, err := Decode(bytes.NewReader(encode(t, m)))
	if err != nil {
		t.Fatal(err)
	}
	o := got.Objects[len(got.Objects)-1]
	if !o.Retag || o.HasMember() || o.Tags["scan"] != "clean" {
		t.Fatalf("retag entry decoded as %+v", o)
	}
}

func TestDecodeRefusesWhatANewerXRCWrote(t *testing.T) {
	good := string(encode(t, valid()))
	requires := func(names string) string {
		return strings.Replace(good, `"format":1,`, `"format":1,"requires":[`+names+`],`, 1)
	}
	tests := []struct {
		name, input string
		unsupported bool
		contains    string
	}{
		{"format 2", strings.Replace(good, `"format":1`, `"format":2`, 1), true, "written by a newer xrc: unsupported format 2"},
		{"a long name of non-ASCII, cut", requires(`"` + strings.Repeat("é", 100) + `"`), true, `requires "\u00e9`},
		{"a feature this release does not know", requires(`"known","teleport"`), true, `requires "teleport"`},
		{"a long name, cut", requires(`"` + strings.Repeat("x", 5000) + `"`), true, `"` + strings.Repeat("x", 79) + "..."},
		{"a long name of escapes, cut", requires(`"` + strings.Repeat(`\u0001`, 5000) + `"`), true, `requires "\x01`},
		{"with a field whose type changed", strings.Replace(requires(`"teleport"`), `"level":3`, `"level":"fast"`, 1), true, `requires "teleport"`},
		{"format -1", strings.Replace(good, `"format":1`, `"format":-1`, 1), false, "unsupported format -1"},
		{"too many names", requires(strings.Repeat(`"",`, MaxEntries) + `""`), false, "entries in all"},
	}
	features["known"] = true
	defer delete(features, "known")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.input))
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Fatalf("Decode = %v, want ErrInvalid, ErrUnsupported %v", err, tt.unsupported)
			}
			if !strings.Contains(err.Error(), tt.contains) || len(err.Error()) > 300 || !utf8.ValidString(err.Error()) {
				t.Errorf("error %q does not say %q in under 300 bytes", err, tt.contains)
			}
		})
	}
	m, err := Decode(strings.NewReader(requires(`"known"`)))
	if err != nil || len(m.Requires) != 1 {
		t.Fatalf("a manifest requiring what this release knows: %v, %+v", err, m)
	}
}

var writeFixture = flag.Bool("write-fixture", false, "write "+fixturePath+" if it is missing")

// fixturePath is a manifest as the sources of 2026-12-07 write it, every
// field of the time set; never rewritten. A field added later that older
// readers must be tested against gets a fixture of its own.
const fixturePath = "testdata/format1-2026-12-07.json"

var fixtureTime = time.Date(2026, 11, 22, 1, 2, 3, 456_000_000, time.UTC)

// full is the manifest frozen at fixturePath: valid as it was that day
// (copied, so that a change of valid for other tests leaves it be), with
// the fields valid leaves out, and a retag entry.
func full() *Manifest {
	m := &Manifest{
		Format:       Format,
		ArchiveID:    "01JD-archive_1.v2",
		CreatedAt:    fixtureTime,
		SourceRegion: "eu-west-1",
		RuleID:       "rule-1",
		Level:        3,
		Objects: []Object{
			{
				Member:             MemberName(0, "logs/app.log"),
				Bucket:             "src",
				Key:                "logs/app.log",
				VersionID:          "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
				Sequencer:          "0055AED6DCD90281E5",
				Size:               1234,
				ETag:               `"9b2cf535f27731c974343645a3985328"`,
				LastModified:       fixtureTime,
				StorageClass:       "STANDARD_IA",
				ContentType:        "text/plain; charset=utf-8",
				ContentEncoding:    "gzip",
				ContentDisposition: `attachment; filename="app.log"`,
				ContentLanguage:    "en",
				CacheControl:       "max-age=3600",
				Expires:            "Wed, 21 Oct 2026 07:28:00 GMT",
				Metadata:           map[string]string{"owner": "team-a", "x-trace": "abc\tdef"},
				Tags:               map[string]string{"env": "prod", "Cost Center": "42", "empty": ""},
				SHA256:             strings.Repeat("0123456789abcdef", 4),
				ChecksumAlgorithm:  "SHA256",
				Checksum:           base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("\x01\x23\x45\x67\x89\xab\xcd\xef"), 4)),
				Destinations: []Destination{
					{Region: "us-east-1", Bucket: "dst", Key: "copy/logs/app.log", StorageClass: "GLACIER_IR", KMSKeyID: "arn:aws:kms:us-east-1:111122223333:key/abc"},
					{Region: "ap-south-1", Bucket: "dst2", Key: "logs/app.log"},
				},
			},
			{Bucket: "src", Key: "logs/old.log", Delete: true, VersionID: "v2", LastModified: fixtureTime, Destinations: []Destination{{Region: "us-east-1", Bucket: "dst", Key: "copy/logs/old.log"}}},
			{Member: MemberName(2, "a/../b"), Bucket: "src", Key: "a/../b", Size: 0, ChecksumAlgorithm: "CRC64NVME", Checksum: "AAAAAAAAAAA=",
				Destinations: []Destination{{Region: "us-east-1", Bucket: "dst", Key: "a/../b"}}},
		},
	}
	o := &m.Objects[0]
	o.EventTime = fixtureTime.Add(time.Second)
	o.WebsiteRedirect = "/moved/app.log"
	o.TagsChanged = true
	m.Objects[2].Seen = fixtureTime.Add(time.Minute).Truncate(time.Second)
	r := m.Objects[1]
	r.Delete, r.Retag, r.Tags, r.ETag = false, true, map[string]string{"scan": "clean"}, `"d41d8cd98f00b204e9800998ecf8427e"`
	m.Objects = append(m.Objects, r)
	return m
}

// TestFormat1Fixture: archives in staging buckets and DLQs carry manifests
// written by earlier releases, read after an upgrade; every later reader
// must read the frozen one to the same values (a renamed field, a changed
// type, a stricter check fail here).
func TestFormat1Fixture(t *testing.T) {
	if *writeFixture {
		if _, err := os.Stat(fixturePath); err == nil {
			t.Fatalf("%s exists: fixtures are never rewritten; add one of a new name", fixturePath)
		}
		if err := os.WriteFile(fixturePath, encode(t, full()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("a manifest of 2026-12-07 no longer reads: %v", err)
	}
	if want := full(); !reflect.DeepEqual(got, want) {
		t.Errorf("a manifest of 2026-12-07 reads as\n%+v\nwant\n%+v", got, want)
	}
}
