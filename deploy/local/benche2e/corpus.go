//go:build linux

package main

// The corpora, generated with internal/corpus: every file is cut from its
// class's generated stream without overlap, so no two objects share bytes
// (cutting many files from one small pool would hand zstd repeats that real
// data does not have).

import (
	"archive/tar"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/dataset"
)

const (
	// smallFiles is the mixed corpus's count of small files at the
	// default SIZE; it scales with SIZE.
	smallFiles   = 5000
	smallMin     = 1 << 10
	smallMax     = 64 << 10
	largeMin     = 1 << 20
	largeMax     = 16 << 20
	uploadWorker = 16
)

var (
	exts  = map[string]string{"csv": ".csv", "jsonl": ".jsonl", "xml": ".xml", "text": ".txt", "random": ".bin"}
	types = map[string]string{"csv": "text/csv", "jsonl": "application/x-ndjson", "xml": "application/xml", "text": "text/plain", "random": "application/octet-stream"}
)

// corpusInfo describes a corpus in the report.
type corpusInfo struct {
	Name         string           `json:"name"`
	Description  string           `json:"description"`
	Objects      int              `json:"objects"`
	SmallObjects int              `json:"smallObjects"`
	Bytes        int64            `json:"bytes"`
	ClassBytes   map[string]int64 `json:"classBytes"`
	TarBytes     int64            `json:"tarBytes"`
	Zstd3Bytes   int64            `json:"zstd3Bytes"` // zstd -3 of the tar of every object, in upload order
	Zstd3Seconds float64          `json:"zstd3Seconds"`
}

type corpusData struct {
	info corpusInfo
	objs []dataset.Object // keys relative to a run's prefix, in upload order
	sums [][sha256.Size]byte
	md5s [][md5.Size]byte
}

func (c *corpusData) free() { c.objs, c.sums, c.md5s = nil, nil, nil }

// corpus generates the named corpus and measures zstd -3 on its tar.
func (b *bench) corpus(ctx context.Context, name string) (*corpusData, error) {
	start := time.Now()
	var c *corpusData
	switch name {
	case "mixed":
		c = mixedCorpus(b.Size)
	case "random":
		c = randomCorpus(b.Size)
	default:
		return nil, fmt.Errorf("unknown corpus %q", name)
	}
	for _, o := range c.objs {
		c.sums = append(c.sums, sha256.Sum256(o.Data))
		c.md5s = append(c.md5s, md5.Sum(o.Data))
	}
	t := time.Now()
	tarBytes, zBytes, err := zstdOfTar(ctx, c.objs)
	if err != nil {
		return nil, err
	}
	c.info.TarBytes, c.info.Zstd3Bytes, c.info.Zstd3Seconds = tarBytes, zBytes, time.Since(t).Seconds()
	step("corpus %s: %d objects (%d small), %s; zstd -3 of its tar: %s (ratio %.2f); made in %s",
		name, c.info.Objects, c.info.SmallObjects, mib(c.info.Bytes), mib(zBytes),
		float64(c.info.Bytes)/float64(max(zBytes, 1)), time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// mixedCorpus is size bytes: smallFiles*size/400MiB files of 1-64 KiB, the
// rest in files of 1-16 MiB, both spread evenly over CSV, JSON lines, XML,
// prose and incompressible bytes, uploaded in a shuffled order.
func mixedCorpus(size int64) *corpusData {
	rng := rand.New(rand.NewPCG(1, 0xe2e))
	nSmall := max(1, int(int64(smallFiles)*size/defaultSize))
	classes := corpus.Classes
	smallSizes := make(map[string][]int, len(classes))
	smallTotal := map[string]int64{}
	var smallBytes int64
	for i := range nSmall {
		cl := classes[i%len(classes)]
		n := smallMin + rng.IntN(smallMax-smallMin+1)
		smallSizes[cl] = append(smallSizes[cl], n)
		smallTotal[cl] += int64(n)
		smallBytes += int64(n)
	}
	largePer := max(0, size-smallBytes) / int64(len(classes))
	c := &corpusData{info: corpusInfo{
		Name:        "mixed",
		Description: "CSV, JSON lines, XML, prose and incompressible bytes in files of 1-16 MiB, and small files of 1-64 KiB of the same classes",
		ClassBytes:  map[string]int64{},
	}}
	for _, cl := range classes {
		var data []byte
		if cl == "random" {
			data = corpus.Random(int(largePer+smallTotal[cl]), 1)
		} else {
			data = corpus.Generate(cl, int(largePer+smallTotal[cl]))
		}
		large, small := data[:largePer], data[largePer:]
		for i, part := range cut(rng, large) {
			c.add(dataset.Object{Key: fmt.Sprintf("%s/part-%04d%s", cl, i, exts[cl]), ContentType: types[cl], Data: part}, cl)
		}
		for i, n := range smallSizes[cl] {
			c.add(dataset.Object{Key: fmt.Sprintf("small/%s/%05d%s", cl, i, exts[cl]), ContentType: types[cl], Data: small[:n:n]}, cl)
			small = small[n:]
			c.info.SmallObjects++
		}
	}
	rng.Shuffle(len(c.objs), func(i, j int) { c.objs[i], c.objs[j] = c.objs[j], c.objs[i] })
	return c
}

// randomCorpus is size incompressible bytes in files of 1-16 MiB.
func randomCorpus(size int64) *corpusData {
	rng := rand.New(rand.NewPCG(2, 0xe2e))
	c := &corpusData{info: corpusInfo{
		Name:        "random",
		Description: "incompressible bytes (ChaCha8) alone, in files of 1-16 MiB",
		ClassBytes:  map[string]int64{},
	}}
	for i, part := range cut(rng, corpus.Random(int(size), 2)) {
		c.add(dataset.Object{Key: fmt.Sprintf("random/part-%04d.bin", i), ContentType: types["random"], Data: part}, "random")
	}
	return c
}

func (c *corpusData) add(o dataset.Object, class string) {
	c.objs = append(c.objs, o)
	c.info.Objects++
	c.info.Bytes += int64(len(o.Data))
	c.info.ClassBytes[class] += int64(len(o.Data))
}

// cut splits data into consecutive parts of 1-16 MiB (the last may be
// smaller).
func cut(rng *rand.Rand, data []byte) [][]byte {
	var parts [][]byte
	for len(data) > 0 {
		n := min(len(data), largeMin+rng.IntN(largeMax-largeMin+1))
		parts = append(parts, data[:n:n])
		data = data[n:]
	}
	return parts
}

// zstdOfTar pipes a tar of objs (in order) through `zstd -3` and counts both
// streams: the reference for the bytes xrc may send.
func zstdOfTar(ctx context.Context, objs []dataset.Object) (tarBytes, zBytes int64, err error) {
	cmd := exec.CommandContext(ctx, "zstd", "-3", "-q", "-c")
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("zstd: %w", err)
	}
	werr := make(chan error, 1)
	go func() {
		cw := &countWriter{w: in}
		tw := tar.NewWriter(cw)
		mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, o := range objs {
			hdr := &tar.Header{Name: o.Key, Mode: 0o644, Size: int64(len(o.Data)), ModTime: mtime, Typeflag: tar.TypeReg}
			if err := tw.WriteHeader(hdr); err != nil {
				werr <- err
				in.Close()
				return
			}
			if _, err := tw.Write(o.Data); err != nil {
				werr <- err
				in.Close()
				return
			}
		}
		err := tw.Close()
		tarBytes = cw.n
		in.Close()
		werr <- err
	}()
	zBytes, err = io.Copy(io.Discard, out)
	if err != nil {
		return 0, 0, err
	}
	if err := <-werr; err != nil {
		return 0, 0, fmt.Errorf("writing the tar to zstd: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("zstd -3: %w: %s", err, stderr.String())
	}
	return tarBytes, zBytes, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// manifestEntry is what the verifier checks one object against.
type manifestEntry struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	MD5    string `json:"md5"` // what S3 makes the ETag of an object PUT in one request
}

// withPrefix returns the corpus's objects under prefix (data shared) and
// writes their manifest for the verifier.
func (b *bench) withPrefix(c *corpusData, prefix, manifestName string) ([]dataset.Object, string, error) {
	objs := make([]dataset.Object, len(c.objs))
	entries := make([]manifestEntry, len(c.objs))
	for i, o := range c.objs {
		o.Key = prefix + o.Key
		objs[i] = o
		entries[i] = manifestEntry{Key: o.Key, Size: int64(len(o.Data)), SHA256: hex.EncodeToString(c.sums[i][:]), MD5: hex.EncodeToString(c.md5s[i][:])}
	}
	data, err := json.Marshal(entries)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(b.state, manifestName+".json")
	return objs, path, os.WriteFile(path, data, 0o644)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
