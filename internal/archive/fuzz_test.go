package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzReader seed files")

// fuzzOptions keep each fuzz input cheap: the writer never needs more.
var fuzzOptions = ReaderOptions{MaxMemory: 16 << 20, MaxWindow: 8 << 20, MaxManifest: 1 << 20}

// fuzzSeeds returns small archives that reach every part of the reader:
// valid ones with and without trailers, several frames, and hostile ones.
func fuzzSeeds(t testing.TB) map[string][]byte {
	specs := []spec{
		{key: "a/b.txt", data: []byte("hello\n"), sumInMf: true},
		{key: "gone", delete: true},
		{key: "c", data: []byte("streamed")},
		{key: "empty", data: nil},
	}
	m := newManifest("fuzz", specs)
	seeds := map[string][]byte{"valid": writeArchive(t, nil, m, specs)}

	var buf bytes.Buffer
	w := NewWriter(WriterOptions{})
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		if s.delete {
			continue
		}
		if err := w.SetLevel([]int{1, 0, 7, 11}[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteObject(i, bytes.NewReader(s.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seeds["frames"] = buf.Bytes()

	man := manifestEntry(t, m)
	objs := objectEntries(m, specs)
	link := objs[0]
	link.hdr.Typeflag, link.hdr.Linkname, link.hdr.Size, link.body = tar.TypeSymlink, "/etc/passwd", 0, nil
	seeds["symlink"] = buildRaw(t, []entry{man, link}, true)
	seeds["no-end"] = buildRaw(t, append([]entry{man}, objs...), false)
	bad := append([]entry{man}, objs...)
	bad[2] = reg(bad[2].hdr.Name, []byte("HELLO\n"))
	seeds["bad-digest"] = buildRaw(t, bad, true)
	return seeds
}

// TestUpdateFuzzSeeds rewrites the stored seed corpora
// (testdata/fuzz/FuzzReader and FuzzReaderTar, run by every go test) when
// given -update-seeds, e.g. after a format change. The stored files are not
// compared otherwise: a new zstd release may encode the same input
// differently, which makes them no less useful as seeds.
func TestUpdateFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("no -update-seeds")
	}
	for name, data := range fuzzSeeds(t) {
		writeSeed(t, "FuzzReader", name, data)
		writeSeed(t, "FuzzReaderTar", name, decompress(t, data))
	}
}

func writeSeed(t *testing.T, target, name string, data []byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzReader feeds arbitrary bytes to Reader. It must not panic or hang,
// and since the source never fails, every error must be ErrInvalid.
func FuzzReader(f *testing.F) {
	for _, data := range fuzzSeeds(f) {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd"))
	f.Fuzz(fuzzRead)
}

// FuzzReaderTar fuzzes the uncompressed tar stream and compresses it in the
// harness: mutations of compressed bytes rarely survive zstd's checks, so
// this is the target that explores member, trailer and manifest handling.
func FuzzReaderTar(f *testing.F) {
	for _, data := range fuzzSeeds(f) {
		f.Add(decompress(f, data))
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		f.Fatal(err)
	}
	// A mixed header (a PAX path, then a GNU long name), which the name
	// checks once missed.
	f.Add(mixedHeaderTar(f))
	f.Fuzz(func(t *testing.T, tarData []byte) {
		fuzzRead(t, enc.EncodeAll(withHeaderChecksums(tarData), nil))
	})
}

// withHeaderChecksums returns data with the checksum of every block that
// carries USTAR's magic made right: nearly every mutation of a header
// otherwise fails its checksum, and never reaches the checks behind it
// (type, mode, owner, extended records, names).
func withHeaderChecksums(data []byte) []byte {
	data = bytes.Clone(data)
	for off := 0; off+512 <= len(data); off += 512 {
		b := data[off : off+512]
		if !bytes.Equal(b[257:262], []byte("ustar")) {
			continue
		}
		copy(b[148:156], "        ")
		sum := 0
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	return data
}

func fuzzRead(t *testing.T, data []byte) {
	r, err := NewReader(bytes.NewReader(data), fuzzOptions)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("NewReader: %v is not ErrInvalid", err)
		}
		return
	}
	defer r.Close()
	if err := r.Manifest().Validate(); err != nil {
		t.Fatalf("accepted an invalid manifest: %v", err)
	}
	for n := 0; ; n++ {
		_, obj, body, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Next: %v is not ErrInvalid", err)
			}
			return
		}
		if n%2 == 1 {
			continue // let Next drain and verify
		}
		h := sha256.New()
		got, err := io.Copy(h, body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("body: %v is not ErrInvalid", err)
			}
			return
		}
		if got != obj.Size {
			t.Fatalf("body of %s: %d bytes without error, manifest says %d", obj.Key, got, obj.Size)
		}
		// What ended verified is what was read, and what the manifest
		// says where it says it.
		sum := h.Sum(nil)
		if !bytes.Equal(r.Sum(), sum) || obj.SHA256 != "" && obj.SHA256 != hex.EncodeToString(sum) {
			t.Fatalf("body of %s hashes to %x; Sum says %x, manifest %q", obj.Key, sum, r.Sum(), obj.SHA256)
		}
	}
}
