package adaptive

import (
	"path"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Class is a kind of content. Each rule learns its arms per class, since
// what pays for CSV is not what pays for video.
type Class string

// The classes.
const (
	Text           Class = "text"
	CSV            Class = "csv"
	JSON           Class = "json"
	XML            Class = "xml" // and HTML
	Logs           Class = "logs"
	Columnar       Class = "columnar"   // Parquet, ORC, Avro: often compressed inside
	Compressed     Class = "compressed" // images, video, audio, archives, compressed encodings
	Unknown        Class = "unknown"
	Incompressible Class = "incompressible" // an unknown whose probe did not compress
)

// Classes lists every class, for reports.
var Classes = []Class{Text, CSV, JSON, XML, Logs, Columnar, Compressed, Unknown, Incompressible}

var extClasses = map[string]Class{
	".txt": Text, ".md": Text, ".rst": Text,
	".csv": CSV, ".tsv": CSV,
	".json": JSON, ".jsonl": JSON, ".ndjson": JSON, ".geojson": JSON,
	".xml": XML, ".html": XML, ".htm": XML, ".svg": XML, ".xhtml": XML,
	".log": Logs, ".out": Logs, ".err": Logs,
	".parquet": Columnar, ".orc": Columnar, ".avro": Columnar, ".arrow": Columnar,
	".gz": Compressed, ".tgz": Compressed, ".zst": Compressed, ".bz2": Compressed, ".xz": Compressed, ".zip": Compressed,
	".7z": Compressed, ".br": Compressed, ".lz4": Compressed, ".snappy": Compressed, ".jpg": Compressed, ".jpeg": Compressed,
	".png": Compressed, ".gif": Compressed, ".webp": Compressed, ".avif": Compressed, ".heic": Compressed, ".mp4": Compressed,
	".mov": Compressed, ".mkv": Compressed, ".webm": Compressed, ".mp3": Compressed, ".aac": Compressed, ".ogg": Compressed,
	".flac": Compressed, ".pdf": Compressed,
}

var typeClasses = []struct {
	prefix string
	class  Class
}{
	{"text/csv", CSV}, {"text/tab-separated-values", CSV},
	{"application/json", JSON}, {"application/x-ndjson", JSON}, {"application/ld+json", JSON}, {"application/geo+json", JSON},
	{"application/xml", XML}, {"text/xml", XML}, {"text/html", XML}, {"application/xhtml+xml", XML}, {"image/svg+xml", XML},
	{"application/vnd.apache.parquet", Columnar}, {"application/x-parquet", Columnar}, {"application/avro", Columnar},
	{"image/", Compressed}, {"video/", Compressed}, {"audio/", Compressed}, {"application/zip", Compressed},
	{"application/gzip", Compressed}, {"application/x-gzip", Compressed}, {"application/zstd", Compressed},
	{"application/x-bzip2", Compressed}, {"application/x-xz", Compressed}, {"application/x-7z-compressed", Compressed},
	{"application/pdf", Compressed},
	{"text/", Text},
}

// Classify places an object by its Content-Encoding, Content-Type and key
// (the extension; ".log.1"-style rotations count as logs).
func Classify(contentType, contentEncoding, key string) Class {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "gzip", "br", "zstd", "compress", "deflate", "x-gzip":
		return Compressed
	}
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	ext, hasExt := extClasses[strings.ToLower(path.Ext(key))]
	if hasExt && ext == Compressed {
		// Named compressed, it is, whatever its type: tools type
		// orders.csv.gz text/csv without a Content-Encoding (the AWS CLI
		// guesses from the name), and a rotated log compressed
		// (app.log.1.gz) is a log no more.
		return Compressed
	}
	for _, t := range typeClasses {
		if strings.HasPrefix(ct, t.prefix) && !(t.prefix == "text/" && ct == "text/plain" && isLogKey(key)) {
			return t.class
		}
	}
	switch {
	case isLogKey(key):
		return Logs
	case hasExt:
		return ext
	}
	return Unknown
}

// isLogKey recognises log files by name: app.log, app.log.3, app.log.2026-11-22.
func isLogKey(key string) bool {
	base := strings.ToLower(path.Base(key))
	return strings.HasSuffix(base, ".log") || strings.Contains(base, ".log.")
}

// ProbeSize is how much of an object the probe compresses.
const ProbeSize = 64 << 10

// incompressibleRatio is the probe's verdict line: a sample that the
// fastest setting cannot shrink by 3% is not worth compressing.
const incompressibleRatio = 0.97

// Prober refines Unknown objects by compressing their first ProbeSize bytes
// at the fastest setting (tens of microseconds): one that does not shrink
// is Incompressible and is stored at once, before any learning. Safe for
// concurrent use.
type Prober struct{ encoders sync.Pool }

// NewProber returns a Prober.
func NewProber() *Prober {
	p := &Prober{}
	p.encoders.New = func() any {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only invalid options fail
		}
		return enc
	}
	return p
}

// Refine returns c, or Incompressible for an Unknown whose sample (the
// object's first bytes, at most ProbeSize are used) does not compress.
func (p *Prober) Refine(c Class, sample []byte) Class {
	if c != Unknown || len(sample) < 512 {
		return c
	}
	sample = sample[:min(len(sample), ProbeSize)]
	enc := p.encoders.Get().(*zstd.Encoder)
	out := enc.EncodeAll(sample, make([]byte, 0, len(sample)+64))
	p.encoders.Put(enc)
	if float64(len(out)) >= incompressibleRatio*float64(len(sample)) {
		return Incompressible
	}
	return c
}
