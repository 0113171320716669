package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/manifest"

	corpusgen "github.com/xrc-dev/xrc/internal/corpus"
)

func TestRoundTrip(t *testing.T) {
	longKey := strings.Repeat("k", 997) + "/" + strings.Repeat("é", 11) + ".bin" // 1,024 bytes
	if len(longKey) != 1024 {
		t.Fatalf("long key is %d bytes", len(longKey))
	}
	tests := []struct {
		name  string
		specs []spec
	}{
		{"empty object", []spec{{key: "empty", data: nil}}},
		{"empty object with digest", []spec{{key: "empty", data: nil, sumInMf: true}}},
		{"one byte", []spec{{key: "one", data: []byte{'x'}}}},
		{"no objects", nil},
		{"only deletes", []spec{{key: "gone", delete: true}, {key: "gone/too", delete: true}}},
		{"unicode keys", []spec{
			{key: "données/été/naïve.csv", data: []byte("a,b\n")},
			{key: "日本語/ファイル.txt", data: []byte("こんにちは")},
			{key: "emoji/🚀.json", data: []byte("{}"), sumInMf: true},
		}},
		{"spaces and plus", []spec{
			{key: "my folder/file name+v2.txt", data: []byte("spaces")},
			{key: "a+b+c/ d /e ", data: []byte("plus"), sumInMf: true},
		}},
		{"unsafe keys fall back", []spec{
			{key: "/leading/slash", data: []byte("1")},
			{key: "a/../b", data: []byte("2")},
			{key: "dir/", data: nil},
			{key: "a//b", data: []byte("4")},
			{key: "tab\tkey", data: []byte("5")},
			{key: "./x", data: []byte("6")},
		}},
		{"1024-byte key", []spec{{key: longKey, data: []byte("long")}}},
		{"deletes mixed in", []spec{
			{key: "d0", delete: true},
			{key: "a", data: patterned(1000, 1)},
			{key: "d1", delete: true},
			{key: "d2", delete: true},
			{key: "b", data: patterned(513, 2), sumInMf: true},
			{key: "d3", delete: true},
		}},
		{"block-sized objects", []spec{
			{key: "511", data: patterned(511, 3)},
			{key: "512", data: patterned(512, 4)},
			{key: "513", data: patterned(513, 5), sumInMf: true},
			{key: "1MiB", data: patterned(1<<20, 6)},
		}},
	}
	for _, opts := range encoderOptions() {
		w := NewWriter(opts) // reused across archives on purpose
		for i, tt := range tests {
			t.Run(w.Encoder()+"/"+tt.name, func(t *testing.T) {
				m := newManifest(ids(i), tt.specs)
				data := writeArchive(t, w, m, tt.specs)
				checkRoundTrip(t, data, m, tt.specs)
			})
		}
	}
}

func TestRoundTripMetadataAndTags(t *testing.T) {
	specs := []spec{{key: "meta.bin", data: patterned(4096, 9)}}
	m := newManifest("meta", specs)
	o := &m.Objects[0]
	o.Tags = map[string]string{}
	for i := range 10 {
		o.Tags[fmt.Sprintf("tag-%d", i)] = strings.Repeat("v", 256)
	}
	o.Metadata = map[string]string{}
	for i := range 16 { // 16 * (6 + 122) = 2,048 bytes, S3's limit
		o.Metadata[fmt.Sprintf("meta%02d", i)] = strings.Repeat("m", 122)
	}
	o.ContentType, o.CacheControl, o.Expires = "text/csv; charset=utf-8", "max-age=60", "Wed, 21 Oct 2026 07:28:00 GMT"
	o.ChecksumAlgorithm = "SHA256"
	data := writeArchive(t, nil, m, specs)
	gotM, _, err := readArchive(data, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := gotM.Objects[0]
	if len(g.Tags) != 10 || len(g.Metadata) != 16 || g.Metadata["meta03"] != o.Metadata["meta03"] || g.Expires != o.Expires {
		t.Fatalf("metadata not preserved: %+v", g)
	}
}

func TestRoundTripManySmall(t *testing.T) {
	const n = 2000
	specs := make([]spec, n)
	for i := range specs {
		specs[i] = spec{key: fmt.Sprintf("logs/2026/11/22/part-%05d.json", i), data: []byte(strings.Repeat(fmt.Sprintf(`{"i":%d}`, i), i%50)), sumInMf: i%3 == 0}
		if i%97 == 0 {
			specs[i] = spec{key: fmt.Sprintf("deleted/%d", i), delete: true}
		}
	}
	m := newManifest("many", specs)
	data := writeArchive(t, nil, m, specs)
	checkRoundTrip(t, data, m, specs)
}

func TestSetLevel(t *testing.T) {
	for _, opts := range encoderOptions() {
		t.Run(NewWriter(opts).Encoder(), func(t *testing.T) { testSetLevel(t, opts) })
	}
}

func testSetLevel(t *testing.T, opts WriterOptions) {
	specs := []spec{
		{key: "text", data: bytes.Repeat([]byte("hello compressible world "), 4000)},
		{key: "random", data: corpusgen.Random(200_000, 1)},
		{key: "more-text", data: bytes.Repeat([]byte("more text "), 5000), sumInMf: true},
		{key: "tiny", data: []byte("t")},
		{key: "fast", data: bytes.Repeat([]byte("fast "), 5000)},
	}
	m := newManifest("levels", specs)
	opts.Concurrency = 2
	w := NewWriter(opts)
	var buf bytes.Buffer
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	var frameEnds []int64
	for i, s := range specs {
		level := []int{11, Store, 7, 3, -5}[i]
		before := w.Written()
		if err := w.SetLevel(level); err != nil {
			t.Fatal(err)
		}
		switch {
		case level == Store:
			// Stored content gets a raw frame of its own inside
			// WriteObject; the current frame goes on until then.
		case i > 0 && w.Written() == before:
			t.Errorf("SetLevel(%d) before objects[%d] did not end the frame", level, i)
		default:
			frameEnds = append(frameEnds, w.Written())
		}
		if _, err := w.WriteObject(i, bytes.NewReader(s.data)); err != nil {
			t.Fatal(err)
		}
	}
	// Same level: no new frame.
	before := w.Written()
	if err := w.SetLevel(-5); err != nil {
		t.Fatal(err)
	}
	if w.Written() != before {
		t.Errorf("SetLevel(-5) after level -5 started a new frame")
	}
	for _, bad := range []int{-8, 23} {
		if err := w.SetLevel(bad); err == nil {
			t.Errorf("SetLevel(%d) succeeded", bad)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, buf.Bytes(), m, specs)

	// Each earlier frame is a complete zstd stream on its own; cutting the
	// archive there leaves valid zstd but an incomplete tar stream.
	for _, end := range frameEnds[1:] {
		_, _, err := readArchive(buf.Bytes()[:end], ReaderOptions{})
		wantInvalid(t, err, nil)
	}
}

// TestStore: stored objects cost their size plus a few bytes per 128 KiB
// block, in frames any zstd decoder reads; an empty stored frame writes
// nothing.
func TestStore(t *testing.T) {
	for _, opts := range encoderOptions() {
		random := corpusgen.Random(1<<20+17, 2)
		specs := []spec{{key: "random", data: random}, {key: "empty", data: nil}, {key: "text", data: bytes.Repeat([]byte("text "), 1000)}}
		m := newManifest("store", specs)
		w := NewWriter(opts)
		var buf bytes.Buffer
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		if err := w.SetLevel(Store); err != nil {
			t.Fatal(err)
		}
		start := w.Written()
		if _, err := w.WriteObject(0, bytes.NewReader(random)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(1, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.SetLevel(3); err != nil {
			t.Fatal(err)
		}
		stored := w.Written() - start
		// The content raw, 3 bytes per block and the frames' headers and
		// checksums; the tar header, trailer and padding compressed.
		if over := stored - int64(len(random)); over < 0 || over > 1024 {
			t.Errorf("%s: %d stored bytes for %d: overhead %d", w.Encoder(), stored, len(random), over)
		}
		if _, err := w.WriteObject(2, bytes.NewReader(specs[2].data)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, buf.Bytes(), m, specs)

		// Back-to-back level changes leave no empty stored frame.
		var empty bytes.Buffer
		raw := newRawFrames()
		raw.Reset(&empty)
		if err := raw.Close(); err != nil || empty.Len() != 0 {
			t.Errorf("empty raw frame wrote %d bytes (%v)", empty.Len(), err)
		}
	}
}

// The pure-Go encoder has four settings; levels that share one share a
// frame.
func TestSetLevelPureGoSharesFrames(t *testing.T) {
	specs := []spec{{key: "a", data: []byte("aaaa")}, {key: "b", data: []byte("bbbb")}}
	m := newManifest("pure-go", specs)
	w := NewWriter(WriterOptions{PureGo: true})
	var buf bytes.Buffer
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	w.WriteObject(0, bytes.NewReader(specs[0].data))
	before := w.Written()
	if err := w.SetLevel(4); err != nil { // 3 and 4 are both SpeedDefault
		t.Fatal(err)
	}
	if w.Written() != before {
		t.Error("SetLevel(4) after level 3 started a new frame")
	}
	w.WriteObject(1, bytes.NewReader(specs[1].data))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, buf.Bytes(), m, specs)
}

func TestWriterErrors(t *testing.T) {
	specs := []spec{{key: "a", data: []byte("abc")}, {key: "b", data: []byte("defg"), sumInMf: true}, {key: "c", delete: true}}

	t.Run("short source", func(t *testing.T) {
		w, _ := begin(t, specs)
		_, err := w.WriteObject(0, strings.NewReader("ab"))
		wantInvalid(t, err, ErrSize, "src-bucket/a")
		if _, err := w.WriteObject(1, strings.NewReader("defg")); err == nil {
			t.Error("WriteObject after a failure succeeded")
		}
		if err := w.Close(); !errors.Is(err, ErrSize) {
			t.Errorf("Close after failure = %v, want the failure", err)
		}
	})
	t.Run("long source", func(t *testing.T) {
		w, _ := begin(t, specs)
		_, err := w.WriteObject(0, strings.NewReader("abcd"))
		wantInvalid(t, err, ErrSize, "more than")
	})
	t.Run("digest mismatch", func(t *testing.T) {
		w, _ := begin(t, specs)
		if _, err := w.WriteObject(0, strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
		_, err := w.WriteObject(1, strings.NewReader("DEFG"))
		wantInvalid(t, err, ErrChecksum, "src-bucket/b")
	})
	t.Run("source checksum mismatch", func(t *testing.T) {
		// The source's own CRC32 is not of the bytes read: the object
		// fails alone (an *Error naming it), before its member ends.
		w := beginWith(t, specs, func(m *manifest.Manifest) {
			m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "CRC32", checksum.CRC32.Sum([]byte("abd"))
		})
		_, err := w.WriteObject(0, strings.NewReader("abc"))
		wantInvalid(t, err, ErrChecksum, "content has CRC32")
		var e *Error
		if !errors.As(err, &e) || e.Key != "a" {
			t.Errorf("%v does not name the object", err)
		}
	})
	t.Run("source SHA-1 mismatch, checked where no store does", func(t *testing.T) {
		// SHA-1 costs a pass: compared only for an archive some of whose
		// destinations do not check it (CheckAll); S3 does at the others.
		for _, all := range []bool{false, true} {
			w := beginWith(t, specs, func(m *manifest.Manifest) {
				m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "SHA1", checksum.SHA1.Sum([]byte("abd"))
			})
			w.CheckAll = all
			_, err := w.WriteObject(0, strings.NewReader("abc"))
			if !all {
				if err != nil {
					t.Fatalf("SHA-1 compared without CheckAll: %v", err)
				}
				continue
			}
			wantInvalid(t, err, ErrChecksum, "content has SHA1")
		}
	})
	t.Run("source SHA-1 mismatch, of an object targets write in parts", func(t *testing.T) {
		// Above SinglePutMax a target's multipart upload keeps a CRC: S3
		// checks no SHA-1 there, so the source does, CheckAll or not.
		big := []spec{{key: "big", data: patterned(manifest.SinglePutMax+1, 3)}}
		w := beginWith(t, big, func(m *manifest.Manifest) {
			m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "SHA1", checksum.SHA1.Sum([]byte("other bytes"))
		})
		_, err := w.WriteObject(0, bytes.NewReader(big[0].data))
		wantInvalid(t, err, ErrChecksum, "content has SHA1")
	})
	t.Run("source SHA-256 mismatch, digest in the trailer", func(t *testing.T) {
		// No sha256 field to compare with: the source's own SHA-256 is.
		w := beginWith(t, specs, func(m *manifest.Manifest) {
			m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "SHA256", checksum.SHA256.Sum([]byte("abd"))
		})
		_, err := w.WriteObject(0, strings.NewReader("abc"))
		wantInvalid(t, err, ErrChecksum, "content has SHA-256")
	})
	t.Run("source SHA-256, digest in the trailer", func(t *testing.T) {
		w := beginWith(t, specs, func(m *manifest.Manifest) {
			m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "SHA256", checksum.SHA256.Sum([]byte("abc"))
		})
		if _, err := w.WriteObject(0, strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("source checksum", func(t *testing.T) {
		w := beginWith(t, specs, func(m *manifest.Manifest) {
			m.Objects[0].ChecksumAlgorithm, m.Objects[0].Checksum = "CRC64NVME", checksum.CRC64NVME.Sum([]byte("abc"))
		})
		if _, err := w.WriteObject(0, strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		w, _ := begin(t, specs)
		boom := errors.New("boom")
		_, err := w.WriteObject(0, iotest.ErrReader(boom))
		if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v, want boom and not ErrInvalid", err)
		}
	})
	t.Run("nil reader for an empty object", func(t *testing.T) {
		specs := []spec{{key: "empty", data: nil}}
		var buf bytes.Buffer
		w := NewWriter(WriterOptions{})
		m := newManifest("nil", specs)
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(0, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, buf.Bytes(), m, specs)
	})
	t.Run("one byte reads", func(t *testing.T) {
		w, buf := begin(t, specs)
		for i := range 2 {
			if _, err := w.WriteObject(i, iotest.OneByteReader(bytes.NewReader(specs[i].data))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, buf.Bytes(), newManifest("w", specs), specs)
	})
	t.Run("out of order", func(t *testing.T) {
		w, _ := begin(t, specs)
		if _, err := w.WriteObject(1, strings.NewReader("defg")); err == nil {
			t.Fatal("WriteObject(1) before 0 succeeded")
		}
		if _, err := w.WriteObject(0, strings.NewReader("abc")); err != nil {
			t.Fatalf("misuse must not break the archive: %v", err)
		}
		if _, err := w.WriteObject(1, strings.NewReader("defg")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(2, strings.NewReader("")); err == nil {
			t.Fatal("WriteObject of a delete entry succeeded")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("close with objects left", func(t *testing.T) {
		w, _ := begin(t, specs)
		err := w.Close()
		if err == nil || !strings.Contains(err.Error(), "2 objects not written") {
			t.Fatalf("Close = %v", err)
		}
		// The Writer is usable again.
		var buf bytes.Buffer
		if err := w.Begin(&buf, newManifest("again", specs)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		for _, opts := range encoderOptions() {
			// An object failing midway leaves the archive open; Abort
			// abandons it, and the next archive on the Writer is whole.
			w := NewWriter(opts)
			var cut bytes.Buffer
			if err := w.Begin(&cut, newManifest("cut", specs)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteObject(0, iotest.ErrReader(errors.New("denied"))); err == nil {
				t.Fatal("WriteObject of a failing reader succeeded")
			}
			w.Abort()
			w.Abort() // nothing open: a no-op
			if _, _, err := readArchive(cut.Bytes(), ReaderOptions{}); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: the abandoned archive reads with %v, want ErrInvalid", w.Encoder(), err)
			}
			m := newManifest("next", specs)
			checkRoundTrip(t, writeArchive(t, w, m, specs), m, specs)
		}
	})
	t.Run("misuse", func(t *testing.T) {
		w := NewWriter(WriterOptions{})
		if _, err := w.WriteObject(0, strings.NewReader("")); err == nil {
			t.Error("WriteObject without Begin succeeded")
		}
		if err := w.Close(); err == nil {
			t.Error("Close without Begin succeeded")
		}
		if err := w.SetLevel(3); err == nil {
			t.Error("SetLevel without Begin succeeded")
		}
		bad := newManifest("bad id!", specs)
		var buf bytes.Buffer
		if err := w.Begin(&buf, bad); !errors.Is(err, manifest.ErrInvalid) || buf.Len() != 0 {
			t.Errorf("Begin(invalid) = %v with %d bytes written", err, buf.Len())
		}
		w, _ = begin(t, specs)
		if err := w.Begin(&buf, newManifest("x", specs)); err == nil {
			t.Error("second Begin succeeded")
		}
	})
}

func begin(t *testing.T, specs []spec) (*Writer, *bytes.Buffer) {
	t.Helper()
	w := NewWriter(WriterOptions{})
	var buf bytes.Buffer
	if err := w.Begin(&buf, newManifest("w", specs)); err != nil {
		t.Fatal(err)
	}
	return w, &buf
}

// beginWith begins an archive of specs whose manifest edit changed.
func beginWith(t *testing.T, specs []spec, edit func(*manifest.Manifest)) *Writer {
	t.Helper()
	w := NewWriter(WriterOptions{})
	m := newManifest("w", specs)
	edit(m)
	if err := w.Begin(io.Discard, m); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestLayout pins the exact member sequence and headers of the format.
func TestLayout(t *testing.T) {
	specs := []spec{
		{key: "a/b.txt", data: []byte("hello\n")},
		{key: "gone", delete: true},
		{key: "c", data: []byte("world"), sumInMf: true},
	}
	m := newManifest("layout", specs)
	m.Objects[0].LastModified = testTime.Add(1500 * 1e6) // sub-second
	data := writeArchive(t, nil, m, specs)
	tr := tar.NewReader(bytes.NewReader(decompress(t, data)))
	want := []struct{ name, body string }{
		{ManifestName, ""},
		{"objects/000000/a/b.txt", "hello\n"},
		{"objects/000000/a/b.txt.sha256", sha256hex([]byte("hello\n")) + "  b.txt\n"},
		{"objects/000002/c", "world"},
	}
	for i, w := range want {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		body, _ := io.ReadAll(tr)
		if hdr.Name != w.name || (w.body != "" && string(body) != w.body) {
			t.Errorf("member %d = %q %q, want %q %q", i, hdr.Name, body, w.name, w.body)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o644 || hdr.Uname != "" || hdr.Gname != "" || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("member %d header: %+v", i, hdr)
		}
		wantTime := testTime
		if i == 1 || i == 2 {
			wantTime = m.Objects[0].LastModified
		} else if i == 3 {
			wantTime = m.Objects[2].LastModified
		}
		if !hdr.ModTime.Equal(wantTime) {
			t.Errorf("member %d ModTime = %v, want %v", i, hdr.ModTime, wantTime)
		}
		if i == 0 {
			if _, err := manifest.Decode(bytes.NewReader(body)); err != nil {
				t.Errorf("manifest.json: %v", err)
			}
		}
	}
	if hdr, err := tr.Next(); err != io.EOF {
		t.Fatalf("after the last member: %v %v", hdr, err)
	}
}

func TestReaderDrainsUnreadBodies(t *testing.T) {
	specs := []spec{{key: "a", data: patterned(100_000, 1)}, {key: "b", data: patterned(10, 2), sumInMf: true}, {key: "c", data: nil}}
	m := newManifest("drain", specs)
	data := writeArchive(t, nil, m, specs)
	r, err := NewReader(bytes.NewReader(data), ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seen []string
	for {
		_, o, body, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, o.Key)
		if o.Key == "a" {
			if _, err := io.ReadFull(body, make([]byte, 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(seen, ",") != "a,b,c" {
		t.Fatalf("saw %v", seen)
	}
	if _, _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after EOF = %v", err)
	}
}

func TestReaderSourceErrorIsNotInvalid(t *testing.T) {
	specs := []spec{{key: "a", data: corpusgen.Random(300_000, 2)}}
	data := writeArchive(t, nil, newManifest("src", specs), specs)
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(boom))
	r, err := NewReader(src, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, _, body, err := r.Next()
	if err == nil {
		_, err = io.Copy(io.Discard, body)
	}
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want the source error, not ErrInvalid", err)
	}
}

// TestManifestReadErrorIsNotInvalid: a source that fails while the
// manifest itself is read (a large one: thousands of objects) gives its
// own error, not ErrInvalid: a connection reset would otherwise read as a
// corrupt archive, retried at once and alarmed on as a verify failure.
func TestManifestReadErrorIsNotInvalid(t *testing.T) {
	specs := make([]spec, 3000)
	for i := range specs {
		specs[i] = spec{key: fmt.Sprintf("logs/2026/12/06/a-rather-long-key-for-a-large-manifest-%06d.json", i), data: []byte{byte(i)}}
	}
	data := writeArchive(t, nil, newManifest("src", specs), specs)
	if len(data) < 16_000 {
		t.Fatalf("archive of %d bytes: the manifest would be read whole before the failure", len(data))
	}
	boom := errors.New("connection reset")
	_, err := NewReader(io.MultiReader(bytes.NewReader(data[:8000]), iotest.ErrReader(boom)), ReaderOptions{})
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want the source error, not ErrInvalid", err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{Err: io.ErrUnexpectedEOF}, "invalid archive: unexpected EOF"},
		{Error{ArchiveID: "a1", Err: ErrSize}, "invalid archive a1: size mismatch"},
		{Error{ArchiveID: "a1", Bucket: "b", Key: "k", Member: "objects/000001/k", Err: ErrChecksum}, "invalid archive a1: object b/k (objects/000001/k): checksum mismatch"},
		{Error{Member: "manifest.json", Err: errors.New("x")}, "invalid archive: member manifest.json: x"},
		{Error{Key: "bad\nkey", Err: errors.New("x")}, `invalid archive: object "bad\nkey": x`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, ErrInvalid) {
			t.Errorf("%q does not match ErrInvalid", tt.want)
		}
	}
	if !errors.Is(ErrChecksum, ErrInvalid) || !errors.Is(ErrSize, ErrInvalid) || errors.Is(ErrSize, ErrChecksum) {
		t.Error("sentinel hierarchy is wrong")
	}
}

// TestObjectStats: each object's input, its share of the output and the
// CPU spent encoding it are accounted to it, so a learner can tell what a
// level costs and saves on each kind of data.
func TestObjectStats(t *testing.T) {
	for _, opts := range encoderOptions() {
		text := corpusgen.Generate("csv", 2<<20)
		random := corpusgen.Random(len(text), 3)
		specs := []spec{{key: "text", data: text}, {key: "gone", delete: true}, {key: "random", data: random}}
		m := newManifest("stats", specs)
		w := NewWriter(opts)
		var buf bytes.Buffer
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		afterManifest := w.Written()
		if err := w.SetLevel(19); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(0, bytes.NewReader(text)); err != nil {
			t.Fatal(err)
		}
		if err := w.SetLevel(Store); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(2, bytes.NewReader(random)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		st := w.Stats()
		if st[0].In != int64(len(text)) || st[2].In != int64(len(random)) || st[1] != (ObjectStats{}) {
			t.Fatalf("%s: inputs %+v", w.Encoder(), st)
		}
		if st[0].Out <= 0 || st[0].Out > st[0].In/2 {
			t.Errorf("%s: text at 19 accounted %d bytes out of %d", w.Encoder(), st[0].Out, st[0].In)
		}
		if st[2].Out < st[2].In || st[2].Out > st[2].In+8<<10 {
			t.Errorf("%s: stored random accounted %d bytes out of %d", w.Encoder(), st[2].Out, st[2].In)
		}
		// Every byte after the manifest's frame start belongs to an object.
		if sum := st[0].Out + st[2].Out; sum > w.Written() || sum < w.Written()-afterManifest-1024 {
			t.Errorf("%s: objects account %d bytes of %d (manifest %d)", w.Encoder(), sum, w.Written(), afterManifest)
		}
		if st[0].CPU <= 0 || st[2].CPU <= 0 {
			t.Errorf("%s: no encoding CPU accounted: %+v", w.Encoder(), st)
		}
		// Level 19 on text costs orders of magnitude more than storing.
		if st[0].CPU < 5*st[2].CPU {
			t.Errorf("%s: level 19 on text took %v, storing the same size %v", w.Encoder(), st[0].CPU, st[2].CPU)
		}
	}
}

// TestStatsOfSmallObjectsBeforeStored: a small object the encoder still
// holds when a stored object follows is charged its own output, not the
// stored object: each object of a few KiB alternates with a stored one,
// and each is charged about what it compresses to alone.
func TestStatsOfSmallObjectsBeforeStored(t *testing.T) {
	for _, opts := range encoderOptions() {
		var specs []spec
		for i := range 6 {
			specs = append(specs, spec{key: fmt.Sprintf("text%d", i), data: corpusgen.Generate("xml", 24<<10+i)},
				spec{key: fmt.Sprintf("random%d", i), data: corpusgen.Random(24<<10, byte(i))})
		}
		m := newManifest("small-stats", specs)
		w := NewWriter(opts)
		if err := w.Begin(io.Discard, m); err != nil {
			t.Fatal(err)
		}
		for i, sp := range specs {
			level := 3
			if i%2 == 1 {
				level = Store
			}
			if err := w.SetLevel(level); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteObject(i, bytes.NewReader(sp.data)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for i, st := range w.Stats() {
			if i%2 == 1 && st.Out > st.In+2<<10 {
				t.Errorf("%s: stored object %d charged %d bytes for %d: the text before it is in them", w.Encoder(), i, st.Out, st.In)
			}
			if i%2 == 0 && (st.Out < st.In/20 || st.Out > st.In/2) {
				t.Errorf("%s: 24 KiB of XML at level 3 charged %d bytes", w.Encoder(), st.Out)
			}
		}
	}
}

// TestFlushChargesEachObjectItsOwn: in one frame, objects of two kinds of
// content alternate; flushed after each, every object is charged about
// what it compresses to alone, and the archive reads back whole. Without
// the flushes the encoder's blocks land on whichever object is being
// written when they are emitted.
func TestFlushChargesEachObjectItsOwn(t *testing.T) {
	for _, opts := range encoderOptions() {
		xml, text := corpusgen.Generate("xml", 1<<20), corpusgen.Generate("text", 1<<20)
		var specs []spec
		for i := range 16 {
			src := []([]byte){xml, text}[i%2]
			n := 16<<10 + 512*i
			specs = append(specs, spec{key: fmt.Sprintf("o%02d", i), data: src[i*(64<<10) : i*(64<<10)+n]})
		}
		alone := func(data []byte) int64 {
			w := NewWriter(opts)
			m := newManifest("alone", []spec{{key: "o", data: data}})
			if err := w.Begin(io.Discard, m); err != nil {
				t.Fatal(err)
			}
			before := w.Written()
			if _, err := w.WriteObject(0, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return w.Written() - before
		}
		m := newManifest("flushed", specs)
		w := NewWriter(opts)
		var buf bytes.Buffer
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil { // nothing written yet: nothing to do
			t.Fatal(err)
		}
		for i, sp := range specs {
			if _, err := w.WriteObject(i, bytes.NewReader(sp.data)); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for i, st := range w.Stats() {
			// Alone it pays a frame of its own; in the archive it may refer
			// back to the objects before: within a factor of two.
			if a := alone(specs[i].data); st.Out < a/2 || st.Out > 2*a {
				t.Errorf("%s: object %d charged %d bytes, %d alone", w.Encoder(), i, st.Out, a)
			}
		}
		checkRoundTrip(t, buf.Bytes(), m, specs)
	}
}

// TestManifestFrameCheckedFirst: the manifest has a frame of its own, and
// a reader reports a corrupt manifest frame (its checksum) before it hands
// out any object, so a streaming consumer never acts on a manifest whose
// bytes did not check out.
func TestManifestFrameCheckedFirst(t *testing.T) {
	specs := []spec{{key: "a", data: bytes.Repeat([]byte("a"), 1000)}, {key: "b", data: []byte("b")}}
	m := newManifest("frame", specs)
	w := NewWriter(WriterOptions{})
	var buf bytes.Buffer
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	end := w.Written()
	for i, s := range specs {
		if _, err := w.WriteObject(i, bytes.NewReader(s.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(buf.Bytes())
	data[end-1] ^= 0xff // the manifest frame's checksum
	r, err := NewReader(bytes.NewReader(data), ReaderOptions{})
	if err == nil {
		_, _, _, err = r.Next()
		r.Close()
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("a corrupt manifest frame reached the first object: %v", err)
	}
}

// TestManifestFrameCheckedAtABlockBoundary: a manifest whose data ends
// within its tar padding of a decoder block boundary (128 KiB of
// decompressed bytes) left its frame's last block, and so the frame's
// checksum, undecoded until the first Next; NewReader returned the
// manifest unchecked (xrc archive inspect printed it; the target judged
// its destinations first). For each encoder, sizes around the boundary.
func TestManifestFrameCheckedAtABlockBoundary(t *testing.T) {
	const block = 128 << 10
	targets := []int64{block - 511, block - 300, block - 1, block, block + 1}
	// n delete entries of about 390 bytes each, and one whose key, pad
	// bytes long, moves the manifest's end a byte at a time.
	build := func(opts WriterOptions, n, pad int) (data []byte, end, dataEnd int64) {
		var specs []spec
		for i := range n {
			specs = append(specs, spec{key: fmt.Sprintf("d/%04d/%s", i, strings.Repeat("k", 100)), delete: true})
		}
		specs = append(specs, spec{key: "pad/" + strings.Repeat("p", pad), delete: true}, spec{key: "a", data: []byte("a")})
		m := newManifest("boundary", specs)
		m.Objects[n].Destinations[0].Key = "pad"
		w := NewWriter(opts)
		var buf bytes.Buffer
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		end = w.Written()
		if _, err := w.WriteObject(len(specs)-1, bytes.NewReader([]byte("a"))); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(bytes.NewReader(buf.Bytes()), ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dataEnd = r.dataEnd
		r.Close()
		return buf.Bytes(), end, dataEnd
	}
	for _, opts := range encoderOptions() {
		n := 250
		for _, _, base := build(opts, n, 1); base < targets[len(targets)-1]-900; _, _, base = build(opts, n, 1) {
			n++
		}
		_, _, base := build(opts, n, 1)
		for _, to := range targets {
			pad := int(to - base + 1)
			if pad < 1 || pad > 1000 {
				t.Fatalf("manifest ends at %d: the test's padding cannot reach %d", base, to)
			}
			data, end, dataEnd := build(opts, n, pad)
			if dataEnd != to {
				t.Fatalf("manifest data ends at %d, want %d", dataEnd, to)
			}
			// Cut inside the frame's checksum or last block: a stream
			// that ends there is no clean end.
			for _, cut := range []int64{1, 4, 9} {
				if _, err := NewReader(bytes.NewReader(data[:end-cut]), ReaderOptions{}); !errors.Is(err, ErrInvalid) {
					t.Errorf("pure Go %v, manifest data ending at %d, its frame cut %d bytes short: NewReader = %v, want it refused", opts.PureGo, to, cut, err)
				}
			}
			data[end-1] ^= 0xff // the manifest frame's checksum
			r, err := NewReader(bytes.NewReader(data), ReaderOptions{})
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("pure Go %v, manifest data ending at %d: NewReader = %v, want the frame's checksum refused", opts.PureGo, to, err)
			}
		}
	}
}

// TestBeforeManifest: a reader bounding its memory is told manifest.json's
// size before it is decoded, and its error ends NewReader as it is.
func TestBeforeManifest(t *testing.T) {
	specs := []spec{{key: "a", data: patterned(1000, 1)}}
	data := writeArchive(t, NewWriter(WriterOptions{}), newManifest("before", specs), specs)
	var told int64
	r, err := NewReader(bytes.NewReader(data), ReaderOptions{BeforeManifest: func(size int64) error { told = size; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if told < 100 {
		t.Errorf("told a manifest of %d bytes", told)
	}
	wait := errors.New("no memory (test)")
	if _, err := NewReader(bytes.NewReader(data), ReaderOptions{BeforeManifest: func(int64) error { return wait }}); err != wait {
		t.Errorf("NewReader = %v, want the hook's error as it is", err)
	}
	// Then, its objects counted, what decoding it takes.
	var cost int64
	r, err = NewReader(bytes.NewReader(data), ReaderOptions{BeforeDecode: func(c int64) error { cost = c; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if want := manifest.DecodedCost(int(told), 1, 1); cost != want {
		t.Errorf("BeforeDecode told %d, want %d (the manifest's bytes, one object, one destination)", cost, want)
	}
	if _, err := NewReader(bytes.NewReader(data), ReaderOptions{BeforeDecode: func(int64) error { return wait }}); err != wait {
		t.Errorf("NewReader = %v, want BeforeDecode's error as it is", err)
	}
}
