package source

import (
	"fmt"
	"testing"

	"github.com/xrc-dev/xrc/internal/manifest"
)

func TestLevelFor(t *testing.T) {
	tests := []struct {
		name  string
		obj   manifest.Object
		level int
		want  int
	}{
		{"text keeps the rule level", manifest.Object{Key: "logs/a.txt", ContentType: "text/plain"}, 9, 9},
		{"no type, no extension", manifest.Object{Key: "data/blob"}, 3, 3},
		{"jpeg by type", manifest.Object{Key: "a", ContentType: "image/jpeg"}, 9, 1},
		{"svg is text", manifest.Object{Key: "a", ContentType: "image/svg+xml"}, 9, 9},
		{"video by type", manifest.Object{Key: "a", ContentType: "video/mp4"}, 19, 1},
		{"zip by type", manifest.Object{Key: "a", ContentType: "application/zip"}, 3, 1},
		{"parquet by type", manifest.Object{Key: "a", ContentType: "application/vnd.apache.parquet"}, 3, 1},
		{"gzip encoding", manifest.Object{Key: "a.json", ContentType: "application/json", ContentEncoding: "gzip"}, 6, 1},
		{"br encoding", manifest.Object{Key: "a.js", ContentEncoding: "br"}, 6, 1},
		{"zstd encoding", manifest.Object{Key: "a", ContentEncoding: "zstd"}, 6, 1},
		{"identity encoding", manifest.Object{Key: "a", ContentEncoding: "identity"}, 6, 6},
		{"extension, any case", manifest.Object{Key: "backups/DB.TAR.GZ"}, 3, 1},
		{"extension zst", manifest.Object{Key: "x/y.zst"}, 3, 1},
		{"extension only at the end", manifest.Object{Key: "x.gz/readme"}, 3, 3},
		{"already fastest", manifest.Object{Key: "a.jpg"}, 1, 1},
		{"negative levels stay", manifest.Object{Key: "a.jpg"}, -3, -3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := levelFor(&tt.obj, tt.level); got != tt.want {
				t.Errorf("levelFor(%+v, %d) = %d, want %d", tt.obj, tt.level, got, tt.want)
			}
		})
	}
}

// TestSplitKeepsManifestsReadable: a batch whose manifest would pass the
// readers' limits becomes several archives, each well inside them.
func TestSplitKeepsManifestsReadable(t *testing.T) {
	md := map[string]string{}
	for i := range 200 {
		md[fmt.Sprintf("k%03d", i)] = "v"
	}
	entries := make([]entry, 12000) // 2.4M entries in all: over MaxEntries
	for i := range entries {
		entries[i].obj = manifest.Object{Bucket: "b", Key: fmt.Sprintf("k%d", i), Metadata: md}
	}
	parts := split(entries)
	if len(parts) < 5 {
		t.Fatalf("%d parts, want at least 5", len(parts))
	}
	total := 0
	for _, p := range parts {
		n := 0
		for _, e := range p {
			n += len(e.obj.Metadata)
		}
		if n > manifest.MaxEntries/2 {
			t.Errorf("part of %d entries, more than half of MaxEntries", n)
		}
		total += len(p)
	}
	if total != len(entries) {
		t.Errorf("parts hold %d entries, want %d", total, len(entries))
	}
	if got := split(entries[:3]); len(got) != 1 || len(got[0]) != 3 {
		t.Errorf("a small batch was split: %d parts", len(got))
	}
	if got := split(nil); len(got) != 0 {
		t.Errorf("split(nil) = %d parts", len(got))
	}
}
