package source_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
)

// The benchmarks run the whole worker against the local stack: they measure
// from the start of Run, with every event already queued, until the last
// object is archived and staged. Both MinIOs (source, staging and the
// replication of staging to the other region) share the machine's CPUs with
// the worker, so the numbers are a floor for a worker with its own vCPUs.
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/source/

// benchLogger logs as in production (JSON, info) into io.Discard, so logging
// costs what it costs without flooding the benchmark output.
func benchLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel))
}

// waitArchived polls the worker's metrics until n objects are archived.
func (r *running) waitArchived(b *testing.B, n int, within time.Duration) {
	b.Helper()
	var got float64
	if !eventually(within, 20*time.Millisecond, func() bool {
		got = r.metric(b, "xrc_source_objects_total", "result", "archived")
		return int(got) >= n || r.exited()
	}) || int(got) < n {
		b.Fatalf("%v of %d objects archived after %v (failed %v)", got, n, within, r.metric(b, "xrc_source_objects_total", "result", "failed"))
	}
}

// 5,000 text objects of 1-64 KiB, in batches of the default 1,000 objects.
func BenchmarkSourceSmallObjects(b *testing.B) {
	const n = 5000
	f := setup(b, func(c *config.Config) {
		c.Rules[0].Batch = config.Batch{MaxObjects: config.DefaultMaxObjects, MaxBytes: config.DefaultMaxBytes, MaxAge: config.Duration(2 * time.Second)}
	})
	ctx := context.Background()
	var elapsed time.Duration
	var total, written int64
	var mem memPeak
	for i := range b.N {
		b.StopTimer()
		rng := rand.New(rand.NewPCG(uint64(i), 64))
		objs := make([]dataset.Object, n)
		for j := range objs {
			objs[j] = dataset.Object{
				Key:         fmt.Sprintf("data/bench/%d/%05d.txt", i, j),
				ContentType: "text/plain",
				Data:        dataset.Text(rng, 1<<10+rng.IntN(63<<10+1)),
			}
		}
		if err := dataset.Upload(ctx, f.s3, f.rule.SourceBucket, objs, 32); err != nil {
			b.Fatal(err)
		}
		f.waitDepth(b, f.sourceQueue(), n, 5*time.Minute)
		total += dataset.Size(objs)
		objs = nil

		w := watchMemory()
		start := time.Now()
		b.StartTimer()
		r := f.start(b, benchLogger())
		r.waitArchived(b, n, 5*time.Minute)
		b.StopTimer()
		elapsed += time.Since(start)
		mem = mem.max(w.stop())
		written += int64(r.metric(b, "xrc_source_bytes_out_total"))
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
		f.waitDepth(b, f.sourceQueue(), 0, time.Minute)
	}
	b.SetBytes(total / int64(b.N))
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "objects/s")
	b.ReportMetric(float64(total)/float64(written), "ratio")
	mem.report(b, "")
}

// One 2 GiB text object, streamed from S3 through the archive writer into
// the staging upload.
func BenchmarkSourceLargeObject(b *testing.B) {
	const size = 2 << 30
	// MaxBytes 64 MiB: the object travels alone. setup removes the buckets
	// afterwards, giving back the 2 GiB and its archive in both regions.
	f := setup(b, nil)
	ctx := context.Background()
	var elapsed time.Duration
	var written int64
	var mem, upload memPeak
	for i := range b.N {
		b.StopTimer()
		key := fmt.Sprintf("data/large/%d.txt", i)
		// The uploader holds its part buffers (6 x 8 MiB by default) in this process
		// too; it is done and its memory given back before the worker runs.
		uw := watchMemory()
		sum := sha256.New()
		body := io.TeeReader(&textReader{rng: rand.New(rand.NewPCG(uint64(i), 2)), left: size}, sum)
		_, err := transfermanager.New(f.s3).UploadObject(ctx, &transfermanager.UploadObjectInput{
			Bucket: &f.rule.SourceBucket, Key: &key, Body: body, ContentType: aws.String("text/plain"),
		})
		if err != nil {
			b.Fatal(err)
		}
		upload = upload.max(uw.stop())
		f.waitDepth(b, f.sourceQueue(), 1, time.Minute)

		w := watchMemory()
		start := time.Now()
		b.StartTimer()
		r := f.start(b, benchLogger())
		r.waitArchived(b, 1, 10*time.Minute)
		b.StopTimer()
		elapsed += time.Since(start)
		mem = mem.max(w.stop())
		written += int64(r.metric(b, "xrc_source_bytes_out_total"))
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
		f.waitDepth(b, f.sourceQueue(), 0, time.Minute)

		// The staged archive holds exactly the bytes uploaded.
		got := f.readStaging(b)[key]
		if want := hex.EncodeToString(sum.Sum(nil)); got.sum != want || got.obj.Size != size {
			b.Fatalf("staged %s: %d bytes sha256 %s, want %d bytes %s", key, got.obj.Size, got.sum, size, want)
		}
	}
	b.SetBytes(size)
	b.ReportMetric(float64(b.N*size)/float64(written), "ratio")
	mem.report(b, "")
	upload.report(b, "upload-")
}

// textReader yields left bytes of dataset.Text, generated 1 MiB at a time,
// so a 2 GiB object never exists in memory.
type textReader struct {
	rng  *rand.Rand
	left int64
	buf  []byte
}

func (t *textReader) Read(p []byte) (int, error) {
	if len(t.buf) == 0 {
		if t.left == 0 {
			return 0, io.EOF
		}
		t.buf = dataset.Text(t.rng, int(min(t.left, 1<<20)))
		t.left -= int64(len(t.buf))
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}

// memPeak is the most memory the process used while a watch ran, and the
// CPU it used meanwhile.
type memPeak struct {
	heap  uint64  // heap objects, live or not yet collected, sampled (runtime/metrics)
	live  uint64  // heap marked live by the last GC, sampled
	rss   uint64  // resident set: VmHWM since the watch started, or sampled VmRSS
	cores float64 // CPU seconds (user+system, getrusage) per second of the watch
}

func (m memPeak) max(o memPeak) memPeak {
	return memPeak{heap: max(m.heap, o.heap), live: max(m.live, o.live), rss: max(m.rss, o.rss), cores: max(m.cores, o.cores)}
}

func (m memPeak) report(b *testing.B, prefix string) {
	b.ReportMetric(float64(m.heap)/(1<<20), prefix+"peak-heap-MiB")
	b.ReportMetric(float64(m.live)/(1<<20), prefix+"peak-live-MiB")
	b.ReportMetric(float64(m.rss)/(1<<20), prefix+"peak-rss-MiB")
	b.ReportMetric(m.cores, prefix+"cores")
}

// memWatch samples the process's memory until stopped.
type memWatch struct {
	start  time.Time
	cpu    float64 // cpuSeconds at the start
	done   chan struct{}
	wg     sync.WaitGroup
	hwm    bool // VmHWM was reset at the start, so it is this watch's peak
	sample memPeak
}

// watchMemory starts a watch after returning freed memory to the OS and
// resetting the kernel's peak-RSS mark (Linux: clear_refs 5), so the peak
// is this watch's, not that of whatever ran before.
func watchMemory() *memWatch {
	runtime.GC()
	debug.FreeOSMemory()
	w := &memWatch{start: time.Now(), cpu: cpuSeconds(), done: make(chan struct{})}
	w.hwm = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			w.sample.heap = max(w.sample.heap, s[0].Value.Uint64())
			w.sample.live = max(w.sample.live, s[1].Value.Uint64())
			w.sample.rss = max(w.sample.rss, procStatus("VmRSS"))
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *memWatch) stop() memPeak {
	close(w.done)
	w.wg.Wait()
	if w.hwm {
		w.sample.rss = max(w.sample.rss, procStatus("VmHWM"))
	}
	w.sample.cores = (cpuSeconds() - w.cpu) / time.Since(w.start).Seconds()
	return w.sample
}

// procStatus returns a "kB" field of /proc/self/status in bytes; 0 where
// there is no such file.
func procStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
