package deliver_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/cpuclock"
	"github.com/xrc-dev/xrc/internal/dataset"
)

// BenchmarkExtract measures the target worker end to end on the local
// stack: from its start until an archive waiting in staging is extracted
// into the destination and deleted (receive, verify pass, write pass).
// Building and uploading the archive is not timed. Besides MB/s (of object
// bytes) it reports objects/s, the archive size, and the process's peak RSS
// and peak heap while the worker ran. Run it with
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/deliver/
func BenchmarkExtract(b *testing.B) {
	b.Run("small-5000", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(5, 5000))
		sizes := make([]int64, 5000)
		for i := range sizes {
			sizes[i] = int64(1<<10 + rng.IntN(63<<10)) // 1-64 KiB
		}
		benchExtract(b, sizes, false)
	})
	gib := benchGiB()
	b.Run(fmt.Sprintf("one-%dGiB", gib), func(b *testing.B) {
		benchExtract(b, []int64{gib << 30}, false)
	})
	// The worker is killed once half the object is uploaded; a new one
	// resumes the upload (resumed-fraction: the share not sent again).
	b.Run(fmt.Sprintf("one-%dGiB-killed-half-way", gib), func(b *testing.B) {
		benchExtract(b, []int64{gib << 30}, true)
	})
}

func benchExtract(b *testing.B, sizes []int64, kill bool) {
	p := newPipeline(b, func(c *config.Config) {
		if kill {
			c.Settings.Worker.DrainTimeout = config.Duration(time.Millisecond)
			c.Settings.Worker.MaxReceiveCount = 20
		}
	})
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	staging := p.cfg.Settings.Regions[1].StagingBucket
	// Gigabytes per run: leave the stack's disk as it was.
	b.Cleanup(func() {
		for _, bucket := range []string{dst, staging} {
			if err := p.purge(ctx, bucket); err != nil {
				b.Error(err)
			}
		}
	})
	var total int64
	for _, n := range sizes {
		total += n
	}
	b.SetBytes(total)
	var archiveBytes int64
	var peakRSS, peakHeap, baseRSS uint64
	var cpu time.Duration
	var getBytes, resumed float64
	b.ResetTimer()
	for iter := range b.N {
		b.StopTimer()
		// The archive goes to staging before any worker runs: its message
		// waits in the queue.
		objs := make([]dataset.Object, len(sizes))
		streamed := map[int]int64{}
		for i, n := range sizes {
			objs[i] = dataset.Object{Key: fmt.Sprintf("data/bench/%d/%05d.txt", iter, i), ContentType: "text/plain"}
			streamed[i] = n // digests in trailers, as the source writes streamed objects
		}
		id := fmt.Sprintf("bench-%d", iter)
		key := "r1/" + id + ".tar.zst"
		m := manifestFor(id, objs, p.cfg, streamed)
		_, size, err := streamArchive(ctx, p.dst, staging, key, m, func(i int) io.Reader {
			return newTextReader(uint64(iter)<<32|uint64(i), sizes[i])
		})
		if err != nil {
			b.Fatal(err)
		}
		archiveBytes += size

		debug.FreeOSMemory()
		base, err := resetPeakRSS()
		if err != nil {
			b.Fatal(err)
		}
		baseRSS = max(baseRSS, base)
		heap := sampleHeap()
		cpu0 := cpuclock.Process()
		b.StartTimer()
		if kill {
			p.killHalfWay(b, objs[0].Key, sizes[0])
		}
		reg, stop := p.startTarget(b)
		for !p.gone(b, staging, key) {
			time.Sleep(100 * time.Millisecond)
		}
		if err := stop(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuclock.Process() - cpu0
		getBytes += metric(b, reg, "xrc_target_staging_read_bytes_total")
		resumed += metric(b, reg, "xrc_target_resumed_bytes_total")
		peakHeap = max(peakHeap, heap())
		rss, err := procStatus("VmHWM")
		if err != nil {
			b.Fatal(err)
		}
		peakRSS = max(peakRSS, rss)

		if n := p.count(b, p.dst, dst, fmt.Sprintf("data/bench/%d/", iter)); n != len(sizes) {
			b.Fatalf("destination holds %d objects, want %d", n, len(sizes))
		}
		if len(sizes) == 1 {
			// Its digest travelled in a trailer: S3's full-object CRC32C
			// of what it stored is what to compare.
			head, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &objs[0].Key, ChecksumMode: s3types.ChecksumModeEnabled})
			if err != nil {
				b.Fatal(err)
			}
			crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			if _, err := io.Copy(crc, newTextReader(uint64(iter)<<32, sizes[0])); err != nil {
				b.Fatal(err)
			}
			want := base64.StdEncoding.EncodeToString(crc.Sum(nil))
			if aws.ToInt64(head.ContentLength) != sizes[0] || aws.ToString(head.ChecksumCRC32C) != want {
				b.Fatalf("%s: %d bytes with CRC32C %s, want %d bytes with %s", objs[0].Key,
					aws.ToInt64(head.ContentLength), aws.ToString(head.ChecksumCRC32C), sizes[0], want)
			}
		}
	}
	const mib = 1 << 20
	b.ReportMetric(float64(len(sizes)*b.N)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(float64(archiveBytes)/float64(b.N)/mib, "archive-MiB")
	b.ReportMetric(float64(total)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	b.ReportMetric(getBytes/float64(archiveBytes), "GET-bytes/archive-byte")
	if kill {
		b.ReportMetric(resumed/float64(total*int64(b.N)), "resumed-fraction")
	}
	b.ReportMetric(float64(baseRSS)/mib, "rss-before-MiB")
	b.ReportMetric(float64(peakRSS)/mib, "peak-rss-MiB")
	b.ReportMetric(float64(peakHeap)/mib, "peak-heap-MiB")
}

// killHalfWay runs a target worker until half of key's size is uploaded,
// then kills it (connections cut, nothing released or aborted).
func (p *pipeline) killHalfWay(b *testing.B, key string, size int64) {
	dead, kill := context.WithCancel(context.Background())
	defer kill()
	s3o := p.dst.Options()
	s3o.HTTPClient = &killSwitch{inner: s3o.HTTPClient, dead: dead}
	sqso := p.sqs.Options()
	sqso.HTTPClient = &killSwitch{inner: sqso.HTTPClient, dead: dead}
	_, stop := p.startTargetWith(b, s3.New(s3o), sqs.New(sqso), 10*time.Second)
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	part := max(16<<20, size/9000+1)
	if !poll(30*time.Minute, 100*time.Millisecond, func() bool { return int64(p.parts(b, dst, key))*part >= size/2 }) {
		b.Fatalf("the upload of %s never got half way", key)
	}
	kill()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
}

// benchGiB is the large object's size in GiB: XRC_BENCH_GIB (make bench:
// 6), 2 by default.
func benchGiB() int64 {
	if v, err := strconv.ParseInt(os.Getenv("XRC_BENCH_GIB"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 2
}

// purge deletes every object version and delete marker in bucket, in the
// target region.
func (p *pipeline) purge(ctx context.Context, bucket string) error {
	return purgeIn(ctx, p.dst, bucket)
}

// purgeIn deletes every object version and delete marker in bucket.
func purgeIn(ctx context.Context, client *s3.Client, bucket string) error {
	pg := s3.NewListObjectVersionsPaginator(client, &s3.ListObjectVersionsInput{Bucket: &bucket})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing s3://%s: %w", bucket, err)
		}
		var ids []s3types.ObjectIdentifier
		for _, v := range page.Versions {
			ids = append(ids, s3types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range page.DeleteMarkers {
			ids = append(ids, s3types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		for chunk := range slices.Chunk(ids, 1000) {
			if _, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &bucket,
				Delete: &s3types.Delete{Objects: chunk, Quiet: aws.Bool(true)}}); err != nil {
				return fmt.Errorf("emptying s3://%s: %w", bucket, err)
			}
		}
	}
	return nil
}

// gone reports whether bucket no longer holds key.
func (p *pipeline) gone(t testing.TB, bucket, key string) bool {
	t.Helper()
	_, err := p.dst.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil && !awsapi.IsNotFound(err) {
		t.Fatal(err)
	}
	return err != nil
}

// resetPeakRSS resets the kernel's peak RSS (VmHWM) of this process to its
// current RSS, which it returns, so that VmHWM later tells the peak of what
// ran in between.
func resetPeakRSS() (uint64, error) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0, fmt.Errorf("resetting VmHWM: %w", err)
	}
	return procStatus("VmRSS")
}

// procStatus returns a memory field of /proc/self/status, in bytes.
func procStatus(field string) (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// sampleHeap samples the bytes of heap objects (live and not yet swept)
// every 10 ms until the returned function is called, which returns the
// largest sample.
func sampleHeap() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}
