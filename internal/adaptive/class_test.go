package adaptive

import (
	"testing"

	"github.com/xrc-dev/xrc/internal/corpus"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		ctype, enc, key string
		want            Class
	}{
		{"text/csv", "", "a", CSV},
		{"text/csv; charset=utf-8", "", "a", CSV},
		// Named compressed, typed by name as what it holds (the AWS CLI
		// types orders.csv.gz text/csv, with no Content-Encoding).
		{"text/csv", "", "exports/orders.csv.gz", Compressed},
		{"application/json", "", "events/x.json.gz", Compressed},
		{"text/plain", "", "notes.txt.zst", Compressed},
		{"text/xml", "", "feed.xml.bz2", Compressed},
		{"", "", "exports/2026/orders.CSV", CSV},
		{"application/json", "", "a", JSON},
		{"", "", "events/x.jsonl", JSON},
		{"application/x-ndjson", "", "a", JSON},
		{"text/html", "", "a", XML},
		{"image/svg+xml", "", "logo", XML},
		{"", "", "feed.xml", XML},
		{"text/plain", "", "app/server.log", Logs},
		{"", "", "app/server.log.3", Logs},
		{"application/octet-stream", "", "app/server.log.2026-11-22", Logs},
		{"", "", "logs/app.log.gz", Compressed},
		{"binary/octet-stream", "", "logs/app.log.1.gz", Compressed},
		{"text/plain", "", "logs/app.log.2026-11-22.zst", Compressed},
		{"text/plain", "", "notes/readme", Text},
		{"", "", "notes/readme.md", Text},
		{"application/vnd.apache.parquet", "", "a", Columnar},
		{"", "", "t/part-0001.parquet", Columnar},
		{"image/jpeg", "", "a", Compressed},
		{"video/mp4", "", "a", Compressed},
		{"", "", "backup.tar.gz", Compressed},
		{"application/json", "gzip", "a.json", Compressed},
		{"text/csv", "br", "a.csv", Compressed},
		{"application/octet-stream", "", "blob", Unknown},
		{"", "", "blob", Unknown},
	} {
		if got := Classify(c.ctype, c.enc, c.key); got != c.want {
			t.Errorf("Classify(%q, %q, %q) = %s, want %s", c.ctype, c.enc, c.key, got, c.want)
		}
	}
}

// TestProbe: an unknown that does not compress goes to Incompressible at
// once; one that does, and every known class, stays.
func TestProbe(t *testing.T) {
	p := NewProber()
	if got := p.Refine(Unknown, corpus.Random(100_000, 1)); got != Incompressible {
		t.Errorf("random unknown: %s", got)
	}
	if got := p.Refine(Unknown, corpus.Generate("csv", 100_000)); got != Unknown {
		t.Errorf("csv unknown: %s", got)
	}
	if got := p.Refine(CSV, corpus.Random(100_000, 1)); got != CSV {
		t.Errorf("a known class was probed: %s", got)
	}
	if got := p.Refine(Unknown, []byte("tiny")); got != Unknown {
		t.Errorf("a sample too small to judge: %s", got)
	}
}

func TestArmNames(t *testing.T) {
	for _, a := range Arms(true, -7, 22) {
		b, ok := ParseArm(a.String())
		if !ok || b != a {
			t.Errorf("ParseArm(%q) = %v %v", a.String(), b, ok)
		}
	}
	if _, ok := ParseArm("0"); ok {
		t.Error("0 parsed as an arm (Store is \"store\")")
	}
}
