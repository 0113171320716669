package archive

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xrc-dev/xrc/internal/manifest"

	corpusgen "github.com/xrc-dev/xrc/internal/corpus"
)

// needTools skips (or, in CI, fails) when the stock tools are missing: the
// point of this test is that operators need nothing but them.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found; CI must install it (Debian: zstd, tar, coreutils)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
}

// TestCLICompatibility checks that zstd, tar and sha256sum read archives
// as the package doc promises.
func TestCLICompatibility(t *testing.T) {
	needTools(t, "sh", "zstd", "tar", "sha256sum")
	specs := []spec{
		{key: "reports/2026/11/summary.csv", data: []byte("region,bytes\neu-west-1,42\n")},
		{key: "données/naïve résumé.txt", data: []byte("unicode name\n"), sumInMf: true},
		{key: "my folder/file name+v2.txt", data: []byte("spaces and plus\n")},
		{key: "gone", delete: true},
		{key: "empty", data: nil},
		{key: "a/../escape", data: []byte("unsafe key, stored under its index\n")},
		{key: "big/random.bin", data: corpusgen.Random(300_000, 5)},
		{key: "big/text.txt", data: bytes.Repeat([]byte("compressible line of text\n"), 20_000), sumInMf: true},
	}
	m := newManifest("compat", specs)
	w := NewWriter(WriterOptions{})
	var buf bytes.Buffer
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		if s.delete {
			continue
		}
		if s.key == "big/random.bin" { // exercise multi-frame output, stored blocks included
			if err := w.SetLevel(Store); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.WriteObject(i, bytes.NewReader(s.data)); err != nil {
			t.Fatal(err)
		}
		if err := w.SetLevel(3); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arch := filepath.Join(dir, "a.tar.zst")
	if err := os.WriteFile(arch, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(dir, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	run(dir, "zstd", "-q", "-t", "a.tar.zst")
	var want []string
	want = append(want, ManifestName)
	for _, o := range m.Objects {
		if o.Delete {
			continue
		}
		want = append(want, o.Member)
		if o.SHA256 == "" {
			want = append(want, manifest.TrailerName(o.Member))
		}
	}
	list := run(dir, "sh", "-c", "zstd -d < a.tar.zst | tar -t --quoting-style=literal")
	if got := strings.Split(strings.TrimSuffix(list, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tar -t lists\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	run(dir, "tar", "--zstd", "-xf", "a.tar.zst", "-C", "out")
	var mbuf bytes.Buffer
	if err := m.Encode(&mbuf); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, ManifestName)); err != nil || !bytes.Equal(got, mbuf.Bytes()) {
		t.Fatalf("extracted manifest.json differs (%v)", err)
	}
	for i, s := range specs {
		if s.delete {
			continue
		}
		member := m.Objects[i].Member
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(member)))
		if err != nil || !bytes.Equal(got, s.data) {
			t.Errorf("extracted %s: %d bytes, %v; want %d bytes", member, len(got), err, len(s.data))
		}
		if m.Objects[i].SHA256 != "" {
			continue
		}
		memberDir := filepath.Join(out, filepath.FromSlash(path.Dir(member)))
		res := run(memberDir, "sha256sum", "-c", "--strict", path.Base(member)+".sha256")
		if res != path.Base(member)+": OK\n" {
			t.Errorf("sha256sum -c for %s: %q", member, res)
		}
	}

	// And the check catches a change.
	victim := filepath.Join(out, "objects", "000000", "reports", "2026", "11", "summary.csv")
	if err := os.WriteFile(victim, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", "summary.csv.sha256")
	cmd.Dir = filepath.Dir(victim)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("sha256sum -c accepted a tampered file: %s", out)
	}
}
