package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/libzstd"
	"github.com/xrc-dev/xrc/internal/manifest"
)

var testTime = time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)

// spec describes one test object: its key, content, and whether the
// manifest carries its digest or leaves it to a trailer.
type spec struct {
	key     string
	data    []byte
	sumInMf bool
	delete  bool
}

// newManifest builds a valid manifest for specs, with members named by
// manifest.MemberName.
func newManifest(id string, specs []spec) *manifest.Manifest {
	m := &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    id,
		CreatedAt:    testTime,
		SourceRegion: "eu-west-1",
		RuleID:       "rule-1",
		Level:        3,
	}
	for i, s := range specs {
		o := manifest.Object{
			Bucket:       "src-bucket",
			Key:          s.key,
			LastModified: testTime.Add(time.Duration(i) * time.Second),
			Destinations: []manifest.Destination{{Region: "us-east-1", Bucket: "dst-bucket", Key: s.key}},
		}
		if s.delete {
			o.Delete = true
		} else {
			o.Member = manifest.MemberName(i, s.key)
			o.Size = int64(len(s.data))
			if s.sumInMf {
				o.SHA256 = sha256hex(s.data)
			}
		}
		m.Objects = append(m.Objects, o)
	}
	return m
}

// encoderOptions returns Writer options for each encoder this build has:
// the pure-Go one always, libzstd with cgo.
func encoderOptions() []WriterOptions {
	opts := []WriterOptions{{PureGo: true}}
	if libzstd.Available {
		opts = append(opts, WriterOptions{})
	}
	return opts
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeArchive writes specs as an archive and returns its bytes.
func writeArchive(t testing.TB, w *Writer, m *manifest.Manifest, specs []spec) []byte {
	t.Helper()
	if w == nil {
		w = NewWriter(WriterOptions{})
	}
	var buf bytes.Buffer
	if err := w.Begin(&buf, m); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	for i, s := range specs {
		if s.delete {
			continue
		}
		sum, err := w.WriteObject(i, bytes.NewReader(s.data))
		if err != nil {
			t.Fatalf("WriteObject(%d): %v", i, err)
		}
		if want := sha256hex(s.data); sum != want {
			t.Fatalf("WriteObject(%d) = %s, want %s", i, sum, want)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := w.Written(); got != int64(buf.Len()) {
		t.Fatalf("Written() = %d, wrote %d", got, buf.Len())
	}
	return buf.Bytes()
}

// readArchive reads every object of an archive; it returns the contents by
// object index and the first error.
func readArchive(data []byte, opts ReaderOptions) (*manifest.Manifest, map[int][]byte, error) {
	r, err := NewReader(bytes.NewReader(data), opts)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	got := make(map[int][]byte)
	for {
		i, _, body, err := r.Next()
		if err == io.EOF {
			return r.Manifest(), got, nil
		}
		if err != nil {
			return r.Manifest(), got, err
		}
		b, err := io.ReadAll(body)
		got[i] = b
		if err != nil {
			return r.Manifest(), got, err
		}
	}
}

// checkRoundTrip reads data back and compares it with specs.
func checkRoundTrip(t *testing.T, data []byte, m *manifest.Manifest, specs []spec) {
	t.Helper()
	gotM, got, err := readArchive(data, ReaderOptions{})
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if gotM.ArchiveID != m.ArchiveID || len(gotM.Objects) != len(m.Objects) {
		t.Fatalf("manifest read back = %s with %d objects, want %s with %d", gotM.ArchiveID, len(gotM.Objects), m.ArchiveID, len(m.Objects))
	}
	for i, s := range specs {
		b, ok := got[i]
		if s.delete {
			if ok {
				t.Errorf("objects[%d] is a delete entry but Next returned it", i)
			}
			continue
		}
		if !ok {
			t.Errorf("objects[%d] (%q) not returned", i, s.key)
			continue
		}
		if !bytes.Equal(b, s.data) {
			t.Errorf("objects[%d] (%q): got %d bytes, want %d (equal prefix: %v)", i, s.key, len(b), len(s.data), bytes.HasPrefix(s.data, b))
		}
	}
}

// entry is one member of a hand-built (possibly hostile) archive.
type entry struct {
	hdr  tar.Header
	body []byte
}

// reg returns a regular-file entry with content body.
func reg(name string, body []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o644, ModTime: testTime, Format: tar.FormatPAX}, body: body}
}

// manifestEntry returns the manifest.json entry for m, encoded without
// validation so tests can put invalid manifests in.
func manifestEntry(t testing.TB, m *manifest.Manifest) entry {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatalf("encoding manifest: %v", err)
	}
	return reg(ManifestName, buf.Bytes())
}

// objectEntries returns the members (and trailers) the writer would produce
// for specs.
func objectEntries(m *manifest.Manifest, specs []spec) []entry {
	var es []entry
	for i, s := range specs {
		if s.delete {
			continue
		}
		o := m.Objects[i]
		es = append(es, reg(o.Member, s.data))
		if o.SHA256 == "" {
			es = append(es, reg(manifest.TrailerName(o.Member), []byte(trailerLine(sha256hex(s.data), o.Member))))
		}
	}
	return es
}

// buildRaw writes entries with archive/tar and zstd directly, bypassing
// every check of Writer. Without end, the end-of-archive marker is left out.
func buildRaw(t testing.TB, entries []entry, end bool) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatalf("tar body %q: %v", h.Name, err)
			}
		}
	}
	var err error
	if end {
		err = tw.Close()
	} else {
		err = tw.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	return compress(t, tarBuf.Bytes())
}

func compress(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func decompress(t testing.TB, b []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("decompressing: %v", err)
	}
	return out
}

// patterned returns n deterministic, moderately compressible bytes.
func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/7) ^ seed ^ byte(i*31>>5)
	}
	return b
}

// wantInvalid fails unless err matches ErrInvalid and target (when set),
// and its message contains every string in contains.
func wantInvalid(t *testing.T, err error, target error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", ErrInvalid)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %q does not match ErrInvalid", err)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not match %v", err, target)
	}
	for _, s := range contains {
		if !bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func ids(n int) string { return fmt.Sprintf("arch-%04d", n) }
