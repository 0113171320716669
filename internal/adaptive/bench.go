package adaptive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/cpuclock"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// ReferenceLevel is the level the CPU benchmark compresses at.
const ReferenceLevel = 3

// BenchResult is what a task's CPU does on the reference input.
type BenchResult struct {
	// CompressMBps is MB (10^6 bytes) of input compressed per CPU-second at
	// ReferenceLevel, by the encoder the task archives with.
	CompressMBps float64
	// DecodeSeconds is CPU-seconds per byte to decode it (what a target
	// spends; decoding costs about the same at every level).
	DecodeSeconds float64
	Encoder       string
}

// benchInput is the fixed, seeded input: 1 MiB each of the corpus's text
// classes, the kind of data whose level choice matters.
func benchInput() []byte {
	var b []byte
	for _, c := range []string{"csv", "jsonl", "xml", "text"} {
		b = append(b, corpus.Generate(c, 1<<20)...)
	}
	return b
}

// Benchmark compresses the reference input at ReferenceLevel through an
// archive Writer like the ones the task archives with, for about d of CPU
// time (the encoding alone, measured on its thread), then decodes the
// result. Tasks on different Graviton generations, or with a noisy
// neighbour, get different figures; the fleet's mean of them makes each
// task's CPU-seconds comparable (Factor).
func Benchmark(d time.Duration, opts archive.WriterOptions) (BenchResult, error) {
	in := benchInput()
	m := &manifest.Manifest{Format: manifest.Format, ArchiveID: "cpu-benchmark", CreatedAt: time.Unix(0, 0).UTC(),
		SourceRegion: "benchmark", RuleID: "benchmark", Level: ReferenceLevel,
		Objects: []manifest.Object{{Member: manifest.MemberName(0, "input"), Bucket: "benchmark", Key: "input", Size: int64(len(in)),
			LastModified: time.Unix(0, 0).UTC(), Destinations: []manifest.Destination{{Region: "benchmark", Bucket: "benchmark", Key: "input"}}}},
	}
	w := archive.NewWriter(opts)
	var out bytes.Buffer
	var cpu time.Duration
	var bytesIn int64
	// Bounded in wall time too: a thread clock that reads nothing (its
	// call failing) would run it for ever, and price the CPU at zero.
	wall := time.Now()
	for cpu < d || bytesIn == 0 {
		if time.Since(wall) > 10*d+time.Second && cpu <= 0 {
			return BenchResult{}, errors.New("cpu benchmark: the thread CPU clock reads no time")
		}
		out.Reset()
		if err := w.Begin(&out, m); err != nil {
			return BenchResult{}, fmt.Errorf("cpu benchmark: %w", err)
		}
		if _, err := w.WriteObject(0, bytes.NewReader(in)); err != nil {
			return BenchResult{}, fmt.Errorf("cpu benchmark: %w", err)
		}
		if err := w.Close(); err != nil {
			return BenchResult{}, fmt.Errorf("cpu benchmark: %w", err)
		}
		cpu += w.Stats()[0].CPU
		bytesIn += int64(len(in))
	}
	res := BenchResult{CompressMBps: float64(bytesIn) / 1e6 / cpu.Seconds(), Encoder: w.Encoder()}

	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return BenchResult{}, fmt.Errorf("cpu benchmark: %w", err)
	}
	defer dec.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var decoded int64
	start, wall := cpuclock.Thread(), time.Now()
	for cpuclock.Thread()-start < d/4 || decoded == 0 {
		if time.Since(wall) > 10*d+time.Second && cpuclock.Thread() <= start {
			return BenchResult{}, errors.New("cpu benchmark: the thread CPU clock reads no time")
		}
		if err := dec.Reset(bytes.NewReader(out.Bytes())); err != nil {
			return BenchResult{}, fmt.Errorf("cpu benchmark: %w", err)
		}
		n, err := io.Copy(io.Discard, dec)
		if err != nil {
			return BenchResult{}, fmt.Errorf("cpu benchmark: decoding: %w", err)
		}
		decoded += n
	}
	res.DecodeSeconds = (cpuclock.Thread() - start).Seconds() / float64(decoded)
	return res, nil
}

// Factor is how much faster this task's CPU is than the fleet's mean
// (mine / mean, from the benchmark). A CPU-second of this task is worth
// Factor CPU-seconds of an average task, so its measured compression CPU
// is multiplied by Factor before it joins the fleet's statistics: the
// figure then reads "CPU-seconds an average task of the fleet would
// spend", the same whichever task measured it.
func Factor(mine, fleetMean float64) float64 {
	if mine <= 0 || fleetMean <= 0 {
		return 1
	}
	return mine / fleetMean
}
