package archive

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/xrc-dev/xrc/internal/manifest"
)

var update = flag.Bool("update", false, "write testdata/golden-v1.tar.zst from goldenSpecs if it is missing")

// goldenPath is an archive of format 1 as this package wrote it when the
// format was fixed. Archives already sitting in staging buckets look like
// it, so every later reader must read it: a change that breaks it fails here.
var goldenPath = filepath.Join("testdata", "golden-v1.tar.zst")

// goldenSpecs are the objects of the golden archive: a streamed object
// (digest in a trailer), one digested in the manifest, an empty one, a
// delete entry, a key that is not a safe path, a non-ASCII key, and a
// second zstd frame at another level.
func goldenSpecs() []spec {
	return []spec{
		{key: "logs/2026/11/22/app.log", data: bytes.Repeat([]byte("2026-11-22T03:01:31Z INFO request served\n"), 200)},
		{key: "gone.txt", delete: true},
		{key: "images/cat.jpg", data: []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F'}, sumInMf: true},
		{key: "empty", data: nil},
		{key: "a/../b", data: []byte("stored under its index\n")},
		{key: "données/été.csv", data: []byte("a,b\n1,2\n")},
	}
}

func TestGoldenV1(t *testing.T) {
	specs := goldenSpecs()
	if *update {
		// Rewritten, it would pass whatever the reader became.
		if _, err := os.Stat(goldenPath); err == nil {
			t.Fatalf("%s exists: a golden archive is never rewritten", goldenPath)
		}
		m := newManifest("golden-v1", specs)
		var buf bytes.Buffer
		w := NewWriter(WriterOptions{})
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		for i, s := range specs {
			if s.delete {
				continue
			}
			if s.key == "images/cat.jpg" {
				if err := w.SetLevel(1); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.WriteObject(i, bytes.NewReader(s.data)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f, ReaderOptions{})
	if err != nil {
		t.Fatalf("the golden format-1 archive no longer reads: %v", err)
	}
	defer r.Close()
	m := r.Manifest()
	want := newManifest("golden-v1", specs)
	if m.Format != 1 || m.ArchiveID != want.ArchiveID || !m.CreatedAt.Equal(want.CreatedAt) || m.RuleID != want.RuleID || len(m.Objects) != len(specs) {
		t.Fatalf("golden manifest: %+v", m)
	}
	for i, o := range m.Objects {
		if o.Key != specs[i].key || o.Delete != specs[i].delete || o.Member != manifest.MemberName(i, specs[i].key) && !o.Delete {
			t.Errorf("objects[%d] = %+v, want key %q", i, o, specs[i].key)
		}
	}
	seen := 0
	for {
		i, _, body, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the golden archive: %v", err)
		}
		got, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("objects[%d]: %v", i, err)
		}
		if !bytes.Equal(got, specs[i].data) {
			t.Errorf("objects[%d] (%s): content differs", i, specs[i].key)
		}
		seen++
	}
	if seen != len(specs)-1 {
		t.Errorf("read %d objects, want %d", seen, len(specs)-1)
	}
}
