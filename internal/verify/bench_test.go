package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/verify"
)

// BenchmarkVerify verifies a replica of n 1 KiB objects in 100 prefixes
// (sources with and without a SHA-256 checksum), without and with hashing
// sources, and reports objects per second and the peak Go heap in use, which
// must not grow with n:
//
//	eval "$(deploy/local/stack env)"; go test -run '^$' -bench Verify -benchtime 1x ./internal/verify/
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{2000, 8000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			env := localstack.Require(b)
			ctx := context.Background()
			cfg := env.Config("vbench")
			rule := &cfg.Rules[0]
			dstBucket := rule.Destinations[0].Bucket
			src, err := env.S3(ctx, "us-east-1")
			if err != nil {
				b.Fatal(err)
			}
			dst, err := env.S3(ctx, "eu-west-1")
			if err != nil {
				b.Fatal(err)
			}
			for _, bk := range [][2]string{{"us-east-1", rule.SourceBucket}, {"eu-west-1", dstBucket}} {
				if err := env.EnsureBucket(ctx, bk[0], bk[1], false); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { env.RemoveBucket(context.Background(), bk[0], bk[1]) })
			}
			mtime := strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(32)
			for i := range n {
				g.Go(func() error {
					key := fmt.Sprintf("data/p%03d/obj-%06d", i%100, i)
					body := bytes.Repeat([]byte{byte(i)}, 1024)
					in := &s3.PutObjectInput{Bucket: &rule.SourceBucket, Key: &key, Body: bytes.NewReader(body)}
					if i%2 == 0 {
						in.ChecksumAlgorithm = s3types.ChecksumAlgorithmSha256
					}
					if _, err := src.PutObject(gctx, in); err != nil {
						return err
					}
					sum := sha256.Sum256(body)
					_, err := dst.PutObject(gctx, &s3.PutObjectInput{Bucket: &dstBucket, Key: &key, Body: bytes.NewReader(body),
						ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256, Metadata: map[string]string{
							deliver.MetaArchive: "bench", deliver.MetaModified: mtime, deliver.MetaSHA256: hex.EncodeToString(sum[:])}})
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			for _, hash := range []bool{false, true} {
				var peak atomic.Uint64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
						select {
						case <-stop:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
				})
				runtime.GC()
				start := time.Now()
				sum, err := verify.Run(ctx, verify.Options{Rule: rule, Source: src, Destinations: map[string]verify.S3API{"eu-west-1": dst}, HashSources: hash}, nil)
				elapsed := time.Since(start)
				close(stop)
				wg.Wait()
				if err != nil || sum.Differences() != 0 || sum.Destinations[0].Compared != int64(n) {
					b.Fatalf("verify: %v, %+v", err, sum)
				}
				d := sum.Destinations[0]
				b.Logf("n=%d hash=%v: %.0f objects/s, equal %d, unchecked %d, hashed %d, peak heap %.1f MiB",
					n, hash, float64(n)/elapsed.Seconds(), d.Equal, d.Unchecked, d.Hashed, float64(peak.Load())/(1<<20))
				suffix := map[bool]string{false: "", true: "-hashed"}[hash]
				b.ReportMetric(float64(n)/elapsed.Seconds(), "objects/s"+suffix)
				b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB"+suffix)
			}
		})
	}
}
