package lambda_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/cpuclock"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// BenchmarkHandlerCPU measures what the Fargate/Lambda cost comparison
// needs (adaptive.WorkerCPU, the README's table): the CPU both handlers
// spend, source and target, per GiB and per object, on the local stack.
// "large" is the demo's mix of 1-16 MiB files of every corpus class,
// "small" 2,000 objects of 4 KiB; the two give the per-GiB and per-object
// parts. CPU is this process's (user + system) around each Handle: the
// handlers' own work, S3 clients and TLS included, MinIO not. Run with
// -benchtime 1x.
func BenchmarkHandlerCPU(b *testing.B) {
	for _, c := range []struct {
		name string
		objs func(prefix string) []dataset.Object
	}{
		{"large", func(prefix string) []dataset.Object {
			var out []dataset.Object
			for _, o := range dataset.Sample(prefix, 96<<20, 3) {
				if len(o.Data) >= 1<<20 {
					out = append(out, o)
				}
			}
			return out
		}},
		{"small", func(prefix string) []dataset.Object {
			out := make([]dataset.Object, 2000)
			for i := range out {
				class := corpus.Classes[i%len(corpus.Classes)]
				data := corpus.Generate(class, 64<<10)
				out[i] = dataset.Object{Key: fmt.Sprintf("%s%s/%05d", prefix, class, i), Data: data[(i*4096)%(60<<10):][:4096]}
			}
			return out
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := setup(b, nil)
			src, tgt := f.sourceHandler(b, nil), f.targetHandler(b)
			var srcCPU, tgtCPU, srcWall, tgtWall time.Duration
			var bytes int64
			objects := 0
			for i := range b.N {
				objs := c.objs(fmt.Sprintf("data/bench-%d/", i))
				ctx := context.Background()
				if err := dataset.Upload(ctx, f.src, f.rule.SourceBucket, objs, 16); err != nil {
					b.Fatal(err)
				}
				msgs := f.receive(b, f.sourceURL(), len(objs))
				b.StartTimer()
				cpu, start := cpuclock.Process(), time.Now()
				resp, err := src.Handle(ctx, localstack.SQSEvent(f.sourceURL(), msgs))
				srcCPU, srcWall = srcCPU+cpuclock.Process()-cpu, srcWall+time.Since(start)
				b.StopTimer()
				if err != nil || len(resp.BatchItemFailures) > 0 {
					b.Fatalf("source: %v, %d failures", err, len(resp.BatchItemFailures))
				}
				f.ack(b, f.sourceURL(), msgs)
				tmsgs := f.receive(b, f.targetURL(), len(f.archiveKeys(b))-i)
				b.StartTimer()
				cpu, start = cpuclock.Process(), time.Now()
				resp, err = tgt.Handle(ctx, localstack.SQSEvent(f.targetURL(), tmsgs))
				tgtCPU, tgtWall = tgtCPU+cpuclock.Process()-cpu, tgtWall+time.Since(start)
				b.StopTimer()
				if err != nil || len(resp.BatchItemFailures) > 0 {
					b.Fatalf("target: %v, %d failures", err, len(resp.BatchItemFailures))
				}
				f.ack(b, f.targetURL(), tmsgs)
				bytes += dataset.Size(objs)
				objects += len(objs)
			}
			gib := float64(bytes) / (1 << 30)
			b.SetBytes(bytes / int64(b.N))
			b.ReportMetric(srcCPU.Seconds()/gib, "src-cpu-s/GiB")
			b.ReportMetric(tgtCPU.Seconds()/gib, "tgt-cpu-s/GiB")
			b.ReportMetric(srcCPU.Seconds()*1000/float64(objects), "src-cpu-ms/obj")
			b.ReportMetric(tgtCPU.Seconds()*1000/float64(objects), "tgt-cpu-ms/obj")
			b.ReportMetric(srcCPU.Seconds()/srcWall.Seconds(), "src-cpu/wall")
			b.ReportMetric(tgtCPU.Seconds()/tgtWall.Seconds(), "tgt-cpu/wall")
		})
	}
}
