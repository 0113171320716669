package archive

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// benchObjectSize is how the corpus is cut into objects: big enough that
// per-object work is noise, small enough for several members per archive.
const benchObjectSize = 4 << 20

// benchLevels are the zstd levels compared with the CLI; the pure-Go
// encoder maps them onto its four settings (1 fastest, 3 default, 7 better,
// 11 best).
var benchLevels = []int{1, 3, 7, 11}

// benchArchive cuts data into objects (digests left to trailers, as when
// streaming from S3) and returns the manifest and the object contents.
func benchArchive(class string, data []byte, level int) (*manifest.Manifest, [][]byte) {
	var specs []spec
	var parts [][]byte
	for off, i := 0, 0; off < len(data); off, i = off+benchObjectSize, i+1 {
		part := data[off:min(off+benchObjectSize, len(data))]
		specs = append(specs, spec{key: fmt.Sprintf("bench/%s/part-%03d", class, i), data: part})
		parts = append(parts, part)
	}
	m := newManifest("bench-"+class, specs)
	m.Level = level
	return m, parts
}

// countingDiscard counts and drops what it is given, standing in for the
// upload of the archive.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func writeBench(w *Writer, dst io.Writer, m *manifest.Manifest, parts [][]byte) error {
	if err := w.Begin(dst, m); err != nil {
		return err
	}
	for i, p := range parts {
		if _, err := w.WriteObject(i, bytes.NewReader(p)); err != nil {
			return err
		}
	}
	return w.Close()
}

// warmUp writes a tiny archive at level, so the measured loop sees the
// steady state of a worker whose Writer already has its encoders.
func warmUp(w *Writer, level int) error {
	m, parts := benchArchive("warm-up", []byte("x"), level)
	return writeBench(w, io.Discard, m, parts)
}

// reportCPU adds MB/cpu-s: input bytes per CPU-second of the whole process,
// which holds up better than wall time on a shared machine.
func reportCPU(b *testing.B, n int64, cpu float64) {
	if cpu > 0 {
		b.ReportMetric(float64(n)/1e6/cpu, "MB/cpu-s")
	}
}

// BenchmarkWriter measures archiving each corpus class at each level, with
// one reused Writer as a long-running source worker has, and the build's
// default encoder (libzstd with cgo).
func BenchmarkWriter(b *testing.B) { benchWriter(b, WriterOptions{}) }

// BenchmarkWriterPureGo is BenchmarkWriter with the pure-Go encoder, the
// fallback of builds without cgo.
func BenchmarkWriterPureGo(b *testing.B) { benchWriter(b, WriterOptions{PureGo: true}) }

func benchWriter(b *testing.B, opts WriterOptions) {
	for _, class := range corpusClasses {
		data := corpus(class)
		for _, level := range benchLevels {
			b.Run(fmt.Sprintf("data=%s/level=%d", class, level), func(b *testing.B) {
				m, parts := benchArchive(class, data, level)
				w := NewWriter(opts)
				var out countingDiscard
				if err := warmUp(w, level); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				n := 0
				cpu0 := cpuSeconds()
				for b.Loop() {
					out.n = 0
					if err := writeBench(w, &out, m, parts); err != nil {
						b.Fatal(err)
					}
					n++
				}
				reportCPU(b, int64(n)*int64(len(data)), cpuSeconds()-cpu0)
				b.ReportMetric(float64(len(data))/float64(out.n), "ratio")
			})
		}
	}
}

// BenchmarkReader measures reading and verifying a level-3 archive of each
// class, streaming every body out as a target worker would.
func BenchmarkReader(b *testing.B) {
	for _, class := range corpusClasses {
		data := corpus(class)
		b.Run("data="+class, func(b *testing.B) {
			m, parts := benchArchive(class, data, 3)
			var arch bytes.Buffer
			if err := writeBench(NewWriter(WriterOptions{}), &arch, m, parts); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 256<<10)
			sink := struct{ io.Writer }{io.Discard} // hide ReadFrom: copy with buf like an upload
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			n := 0
			cpu0 := cpuSeconds()
			for b.Loop() {
				r, err := NewReader(bytes.NewReader(arch.Bytes()), ReaderOptions{})
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, _, body, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.CopyBuffer(sink, body, buf); err != nil {
						b.Fatal(err)
					}
				}
				r.Close()
				n++
			}
			reportCPU(b, int64(n)*int64(len(data)), cpuSeconds()-cpu0)
			b.ReportMetric(float64(len(data))/float64(arch.Len()), "ratio")
		})
	}
}

// BenchmarkReaderParts splits BenchmarkReader's work in two: zstd decoding
// of the same archive alone (the part `zstd -d` also does), and SHA-256 of
// the raw bytes alone (the part it does not). Verification cannot cost less
// than the second.
func BenchmarkReaderParts(b *testing.B) {
	for _, class := range corpusClasses {
		data := corpus(class)
		m, parts := benchArchive(class, data, 3)
		var arch bytes.Buffer
		if err := writeBench(NewWriter(WriterOptions{}), &arch, m, parts); err != nil {
			b.Fatal(err)
		}
		b.Run("data="+class+"/part=zstd", func(b *testing.B) {
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
			if err != nil {
				b.Fatal(err)
			}
			defer dec.Close()
			buf := make([]byte, 256<<10)
			sink := struct{ io.Writer }{io.Discard}
			b.SetBytes(int64(len(data)))
			n := 0
			cpu0 := cpuSeconds()
			for b.Loop() {
				if err := dec.Reset(bytes.NewReader(arch.Bytes())); err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(sink, dec, buf); err != nil {
					b.Fatal(err)
				}
				n++
			}
			reportCPU(b, int64(n)*int64(len(data)), cpuSeconds()-cpu0)
		})
		b.Run("data="+class+"/part=sha256", func(b *testing.B) {
			h := sha256.New()
			b.SetBytes(int64(len(data)))
			n := 0
			cpu0 := cpuSeconds()
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum(nil)
				n++
			}
			reportCPU(b, int64(n)*int64(len(data)), cpuSeconds()-cpu0)
		})
	}
}
