// Command demo runs the whole xrc pipeline on the local stack: it provisions
// what configs/local.json describes, starts the real xrc-source and
// xrc-target binaries, uploads a generated dataset into the watched bucket,
// waits until every object is in the destination bucket of the other
// "region", verifies them all against the source and prints a report. It
// exits non-zero if anything is missing or differs.
//
// With -lambda both roles run as cmd/xrc-lambda instead, each in the AWS
// Lambda Runtime Interface Emulator fed by a stand-in for the SQS event
// source mapping (internal/localstack), with settings.lambda's batch size,
// window, timeout and margin; the upload, wait, checks and report are the
// same.
//
// Run it through `make demo` (or `make demo LAMBDA=1`), which brings the
// stack up first.
package main

// This file is the demo as a script, top to bottom: upload, wait, check,
// report.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/stats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfgPath := flag.String("config", "configs/local.json", "config to deploy on the local stack")
	size := flag.Int64("size", 256<<20, "bytes of sample data to replicate")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long to wait for the destination")
	seed := flag.Uint64("seed", 1, "seed of the generated dataset: the same seed, the same objects and figures")
	onLambda := flag.Bool("lambda", false, "run both roles as cmd/xrc-lambda in the Lambda runtime interface emulator, fed by SQS event source mappings")
	flag.Parse()

	env, err := localstack.FromEnv()
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "xrc-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	// The workers read the config as it is on this stack's ports.
	cfg, workerCfg, err := env.LocalConfig(ctx, *cfgPath, bin)
	if err != nil {
		return err
	}
	rule := cfg.Rules[0]
	srcRegion, _ := cfg.Region(rule.SourceRegion)
	dest := rule.Destinations[0]

	step("provisioning buckets, queues, notifications and replication for %s", *cfgPath)
	dep, err := env.Provision(ctx, cfg)
	if err != nil {
		return err
	}
	src, err := env.S3(ctx, rule.SourceRegion)
	if err != nil {
		return err
	}
	dst, err := env.S3(ctx, dest.Region)
	if err != nil {
		return err
	}

	logDir := filepath.Join(os.Getenv("XRC_STACK_DIR"), "logs")
	_ = os.MkdirAll(logDir, 0o755)
	var workers []runner
	if *onLambda {
		step("building xrc-lambda and starting it as source (%s) and target (%s) in the Lambda runtime interface emulator", rule.SourceRegion, dest.Region)
		workers, err = startFunctions(ctx, env, cfg, dep, workerCfg, bin, logDir)
		if err != nil {
			stopAll(workers) // those started before the failure
			return err
		}
	} else {
		step("building and starting xrc-source (%s) and xrc-target (%s)", rule.SourceRegion, dest.Region)
		for _, w := range []*worker{
			{name: "xrc-source", region: rule.SourceRegion, extra: []string{"XRC_RULES=" + rule.ID}},
			{name: "xrc-target", region: dest.Region},
		} {
			if err := w.start(ctx, bin, workerCfg, logDir); err != nil {
				stopAll(workers) // left running, it would consume the next run's queue
				return err
			}
			workers = append(workers, w)
		}
	}
	for _, w := range workers {
		defer w.stop()
		fmt.Printf("    %s logs: %s\n", w.label(), w.logFile())
	}

	start := time.Now().UTC().Truncate(time.Second)
	// Statistics are hourly: what earlier runs of this hour left is
	// taken off this run's report.
	ddb, err := env.DynamoDB(ctx)
	if err != nil {
		return err
	}
	table := stats.New(ddb, cfg.TableName(), time.Now)
	before, err := table.Since(ctx, rule.ID, start)
	if err != nil {
		return err
	}
	prefix := rule.Prefix + "run-" + start.Format("20060102T150405") + "/"
	objs := dataset.Sample(prefix, *size, *seed)
	in := dataset.Size(objs)
	step("uploading %d objects (%s, seed %d) to s3://%s/%s", len(objs), human(in), *seed, rule.SourceBucket, prefix)
	if err := dataset.Upload(ctx, src, rule.SourceBucket, objs, 16); err != nil {
		return err
	}
	uploaded := time.Now()

	destKey := func(k string) string { return rule.DestinationKey(dest, k) }
	step("waiting for s3://%s/%s to hold all %d objects", dest.Bucket, destKey(prefix), len(objs))
	got, err := waitCount(ctx, dst, dest.Bucket, destKey(prefix), len(objs), *timeout, workers)
	if err != nil {
		return err
	}
	done := time.Now()

	step("verifying every object against the source (bytes, metadata, tags, storage class)")
	errs := dataset.Check(ctx, dst, dest.Bucket, objs, destKey, 16)
	for i, e := range errs {
		if i == 10 {
			fmt.Printf("    ... and %d more\n", len(errs)-10)
			break
		}
		fmt.Println("    MISMATCH:", e)
	}

	archives, out, err := stagedSince(ctx, src, srcRegion.StagingBucket, rule.ID+"/", start, prefix)
	if err != nil {
		return err
	}
	for _, w := range workers {
		w.stop()
	}
	cpu := workers[0].cpu() + workers[1].cpu()

	gib := float64(1 << 30)
	saved := float64(in-out) / gib * cfg.Settings.Prices.TransferPerGB
	// A vCPU with its task memory, as the learner and xrc savings price it.
	p := cfg.Settings.Prices
	vcpuHour := adaptive.FargateVCPUSecond(p.VCPUHour, p.FargateGBHour) * 3600
	compute := cpu / 3600 * vcpuHour
	// What xrc's requests cost beyond S3 Replication's: at the demo's
	// mean object size, about what its transfer saves.
	delivered, crossed := rule.Regions()
	prices := stats.Prices{Model: adaptive.Model{Regions: crossed}, Requests: stats.RequestPrices(p), Deletes: rule.Deletes,
		StagingPerGiB: stats.StagingPrice(p, crossed, stats.StagingDays(cfg, &rule))}
	requests := prices.RequestCost(got, in, archives, out, delivered)
	staging := prices.StagingCost(out)
	net := saved - compute - requests - staging
	fmt.Printf(`
xrc demo report
  objects replicated      %d of %d (%d mismatches)
  bytes in                %s
  bytes across regions    %s in %d archives
  compression ratio       %.2f  (%.1f%% of the bytes crossed)
  upload time             %s
  end-to-end time         %s (first upload to last object in the destination)
  worker CPU              %.1f s (source %.1f s, target %.1f s)
  at $%.3f/GB transfer    $%.6f saved on transfer, $%.6f compute (at $%.5f/vCPU-h with its memory), $%.6f requests beyond S3 Replication's, $%.6f staging storage, net $%.6f
  per TB replicated       $%.2f saved net (mean object %s)
`, got, len(objs), len(errs), human(in), human(out), archives, ratio(in, out), 100*float64(out)/float64(max(in, 1)),
		uploaded.Sub(start).Round(time.Millisecond), done.Sub(start).Round(time.Millisecond),
		cpu, workers[0].cpu(), workers[1].cpu(),
		p.TransferPerGB, saved, compute, vcpuHour, requests, staging, net,
		net/float64(in)*1e12, human(in/int64(max(got, 1))))
	if err := levelReport(ctx, table, rule, start, before); err != nil {
		fmt.Println("  level report unavailable:", err)
	}
	if got != len(objs) || len(errs) > 0 {
		return fmt.Errorf("%d of %d objects arrived, %d differ", got, len(objs), len(errs))
	}
	fmt.Println("  result                  OK: every object arrived and matches its source")
	return nil
}

// levelReport prints, per content class, the level mix the source used and
// the choice it learnt, from the statistics table: what it holds since
// start, less what it held before the run (before).
func levelReport(ctx context.Context, st *stats.Store, rule config.Rule, start time.Time, before []stats.Hourly) error {
	hs, err := st.Since(ctx, rule.ID, start)
	if err != nil {
		return err
	}
	hs = minus(hs, before)
	choices, err := st.Choices(ctx, rule.ID)
	if err != nil {
		return err
	}
	delivered, crossed := rule.Regions()
	lines := stats.Summarise(rule.ID, delivered, hs, stats.Prices{Model: adaptive.Model{Regions: crossed}}, choices)
	fmt.Println("  adaptive levels         class: objects, ratio, level mix (share of bytes), learnt choice")
	for _, l := range lines {
		if l.Class == "" {
			continue
		}
		fmt.Printf("    %-14s %6d  %5.2f  %-36s %s\n", l.Class, l.Objects, l.Ratio, fit(stats.Mix(l.Levels), 36), or(l.Choice, "(learning)"))
	}
	return nil
}

// minus takes each hour, class and arm of before off after's.
func minus(after, before []stats.Hourly) []stats.Hourly {
	type key struct {
		hour  time.Time
		class adaptive.Class
		arm   adaptive.Arm
	}
	was := map[key]stats.Delta{}
	for _, h := range before {
		was[key{h.Hour, h.Class, h.Arm}] = h.Delta
	}
	var out []stats.Hourly
	for _, h := range after {
		if b, ok := was[key{h.Hour, h.Class, h.Arm}]; ok {
			h.In, h.Out, h.CPU, h.Objects, h.Archives = h.In-b.In, h.Out-b.Out, h.CPU-b.CPU, h.Objects-b.Objects, h.Archives-b.Archives
		}
		if h.Objects > 0 {
			out = append(out, h)
		}
	}
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

// runner is one role at work: a worker process, or a function in the
// emulator with its event source mapping.
type runner interface {
	label() string
	logFile() string
	// exited reports an end before stop: the role no longer works.
	exited() error
	stop()
	cpu() float64 // seconds, once stopped
}

// worker is one xrc binary running as a child process.
type worker struct {
	name, region string
	extra        []string
	cmd          *exec.Cmd
	logPath      string
	cpuSeconds   float64
	done         chan error
	err          error
}

func (w *worker) label() string   { return w.name }
func (w *worker) logFile() string { return w.logPath }
func (w *worker) cpu() float64    { return w.cpuSeconds }

func (w *worker) exited() error {
	select {
	case err := <-w.done:
		w.err = fmt.Errorf("%s exited early (%v); see %s", w.name, err, w.logPath)
		w.done <- err // stop waits on it too
	default:
	}
	return w.err
}

func (w *worker) start(ctx context.Context, bin, cfgPath, logDir string) error {
	exe := filepath.Join(bin, w.name)
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./cmd/"+w.name)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building %s: %w", w.name, err)
	}
	w.logPath = filepath.Join(logDir, "demo-"+w.name+".log")
	logf, err := os.Create(w.logPath)
	if err != nil {
		return err
	}
	w.cmd = exec.Command(exe)
	w.cmd.Env = append(os.Environ(), "XRC_CONFIG="+cfgPath, "XRC_REGION="+w.region, "AWS_REGION="+w.region)
	w.cmd.Env = append(w.cmd.Env, w.extra...)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", w.name, err)
	}
	w.done = make(chan error, 1)
	go func() { w.done <- w.cmd.Wait(); logf.Close() }()
	return nil
}

// stop sends SIGTERM (as ECS does) and waits for a clean exit.
func (w *worker) stop() {
	if w.cmd == nil || w.cmd.Process == nil || w.cmd.ProcessState != nil {
		return
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	if st := w.cmd.ProcessState; st != nil {
		w.cpuSeconds = (st.UserTime() + st.SystemTime()).Seconds()
	}
}

// waitCount polls the destination until it holds n keys under prefix.
func waitCount(ctx context.Context, client *s3.Client, bucket, prefix string, n int, timeout time.Duration, workers []runner) (int, error) {
	deadline := time.Now().Add(timeout)
	last, lastChange := -1, time.Now()
	for {
		got, err := count(ctx, client, bucket, prefix)
		if err != nil {
			return 0, err
		}
		if got != last {
			fmt.Printf("    %d/%d objects in the destination\n", got, n)
			last, lastChange = got, time.Now()
		}
		if got >= n {
			return got, nil
		}
		for _, w := range workers {
			if err := w.exited(); err != nil {
				return got, err
			}
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("timed out after %s with %d/%d objects (no progress for %s); see the worker logs",
				timeout, got, n, time.Since(lastChange).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func count(ctx context.Context, client *s3.Client, bucket, prefix string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
		}
		n += len(page.Contents)
	}
	return n, nil
}

// stagedSince sums the archives the source staged since start that carry
// objects under runPrefix (this run's): their sizes are the bytes that
// cross regions. Archives of objects an earlier, interrupted demo left in
// the queue (the queue and the staging bucket outlive a run) are not this
// run's, and an archive carrying both counts for the share of its
// uncompressed bytes that is this run's.
func stagedSince(ctx context.Context, client *s3.Client, bucket, prefix string, start time.Time, runPrefix string) (int, int64, error) {
	var n int
	var bytes int64
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			if o.LastModified == nil || o.LastModified.Before(start) || !strings.HasSuffix(aws.ToString(o.Key), ".tar.zst") {
				continue
			}
			m, err := readManifest(ctx, client, bucket, aws.ToString(o.Key))
			if err != nil {
				return 0, 0, err
			}
			ours, all := share(m, runPrefix)
			if ours == 0 {
				continue
			}
			n++
			size := aws.ToInt64(o.Size)
			if ours < all {
				size = int64(float64(size) * float64(ours) / float64(all))
			}
			bytes += size
		}
	}
	if n == 0 {
		return 0, 0, errors.New("no archive of this run's objects found in staging")
	}
	return n, bytes, nil
}

// readManifest reads the manifest at the head of a staging archive.
func readManifest(ctx context.Context, client *s3.Client, bucket, key string) (*manifest.Manifest, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	r, err := archive.NewReader(out.Body, archive.ReaderOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of s3://%s/%s: %w", bucket, key, err)
	}
	defer r.Close()
	return r.Manifest(), nil
}

// share is how many of the bytes m's objects hold are of objects under
// prefix (ours), and of all of them; an object of no bytes counts as one,
// so that an archive of only this run's empty objects is this run's.
func share(m *manifest.Manifest, prefix string) (ours, all int64) {
	for _, o := range m.Objects {
		if !o.HasMember() {
			continue
		}
		n := max(o.Size, 1)
		all += n
		if strings.HasPrefix(o.Key, prefix) {
			ours += n
		}
	}
	return ours, all
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	default:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
}

func ratio(in, out int64) float64 {
	if out == 0 {
		return 0
	}
	return float64(in) / float64(out)
}

// fit shortens a level mix (its largest shares first) to n bytes, cut
// after a whole entry, so the column after it stays in line.
func fit(mix string, n int) string {
	if len(mix) <= n {
		return mix
	}
	cut := strings.LastIndex(mix[:n-3], ", ")
	if cut < 0 {
		return mix
	}
	return mix[:cut] + ", ..."
}

// stopAll stops workers, the last started first.
func stopAll(workers []runner) {
	for i := len(workers) - 1; i >= 0; i-- {
		workers[i].stop()
	}
}
