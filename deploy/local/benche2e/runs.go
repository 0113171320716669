//go:build linux

package main

// One run is one system copying one corpus across the link, timed from
// its first upload into the source bucket to the last object verified in
// the destination.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/dataset"
)

// workerStat is one worker process of a run.
type workerStat struct {
	Name         string  `json:"name"`
	CPUSeconds   float64 `json:"cpuSeconds"`   // user+sys over the run
	PeakRSSBytes int64   `json:"peakRSSBytes"` // VmHWM
}

// runResult is one system on one corpus.
type runResult struct {
	System        string  `json:"system"`
	Label         string  `json:"label"`
	Corpus        string  `json:"corpus"`
	Objects       int     `json:"objects"`
	Bytes         int64   `json:"bytes"`
	WallSeconds   float64 `json:"wallSeconds"`   // first upload to last object verified
	UploadSeconds float64 `json:"uploadSeconds"` // the upload into the source bucket alone
	LinkTxBytes   int64   `json:"linkTxBytes"`   // host (source region) -> namespace (target region)
	LinkRxBytes   int64   `json:"linkRxBytes"`   // the way back (ACKs, responses)
	LinkBytes     int64   `json:"linkBytes"`     // both: the bytes across the link
	LinkPackets   int64   `json:"linkPackets"`   // both ways
	// LinkPayloadBytes is LinkBytes less headerBytes per packet: what TCP
	// carried across the link (TLS, HTTP and the S3 payload).
	LinkPayloadBytes int64 `json:"linkPayloadBytes"`
	// ControlBytes is the part of LinkBytes's payload that is the target
	// worker's SQS and DynamoDB traffic and the bridge's: on AWS it would
	// stay in the target region.
	ControlBytes int64 `json:"controlBytes"`
	// LinkBusySeconds is LinkTxBytes over the link's rate: the least time
	// the link needed for what it carried; LinkActiveSeconds the span it was
	// in use (linkWatch). Far apart, the link idled while data waited: see
	// LinkLoss.
	LinkBusySeconds    float64      `json:"linkBusySeconds"`
	LinkActiveSeconds  float64      `json:"linkActiveSeconds"`
	LinkLoss           linkLoss     `json:"linkLoss"`
	ObjectsPerSecond   float64      `json:"objectsPerSecond"`
	WorkerCPUSeconds   float64      `json:"workerCPUSeconds"`   // all workers, user+sys
	WorkerPeakRSSBytes int64        `json:"workerPeakRSSBytes"` // sum of the workers' VmHWM
	Workers            []workerStat `json:"workers"`
	// ServerCPUSeconds is both MinIOs' CPU over the run (replication
	// included): context, not part of the goals.
	ServerCPUSeconds float64 `json:"serverCPUSeconds"`
	// MachineBusy is the share of the machine's CPU time (all CPUs) that
	// was in use over the run, by anything: near 1, the run was bound by
	// the CPUs that every process of both "regions" shares.
	MachineBusy float64 `json:"machineBusy"`
	// MachineCPUSeconds is that CPU time in seconds, summed over the CPUs:
	// divided by their count, the least wall time this much work could take
	// on this machine.
	MachineCPUSeconds float64  `json:"machineCPUSeconds"`
	Archives          int      `json:"archives,omitempty"`     // xrc: archives staged
	ArchiveBytes      int64    `json:"archiveBytes,omitempty"` // xrc: their bytes, what S3 Replication carries
	Command           string   `json:"command"`
	Timeline          timeline `json:"timeline"`
	// ReplicaTapEvents is how many replicas the replica tap reported as
	// they landed; DuplicateEvents how many replication events the bridge
	// dropped as already taken: the source MinIO's own for those replicas,
	// and the second copy it sends for some.
	ReplicaTapEvents int64 `json:"replicaTapEvents,omitempty"`
	DuplicateEvents  int64 `json:"duplicateEvents,omitempty"`
}

var labels = map[string]string{sysXRC: "xrc", sysRclone: "rclone (defaults)", sysRclone16: "rclone --transfers 16"}

func (b *bench) runOne(ctx context.Context, sys string, c *corpusData) (runResult, error) {
	b.runSeq++
	var r runResult
	var err error
	switch sys {
	case sysXRC:
		r, err = b.runXRC(ctx, c)
	case sysRclone:
		r, err = b.runRclone(ctx, c, sys, nil)
	case sysRclone16:
		r, err = b.runRclone(ctx, c, sys, []string{"--transfers", "16"})
	}
	if err != nil {
		return r, err
	}
	r.System, r.Label, r.Corpus, r.Objects, r.Bytes = sys, labels[sys], c.info.Name, c.info.Objects, c.info.Bytes
	r.LinkBytes = r.LinkTxBytes + r.LinkRxBytes
	r.ObjectsPerSecond = float64(r.Objects) / r.WallSeconds
	for _, w := range r.Workers {
		r.WorkerCPUSeconds += w.CPUSeconds
		r.WorkerPeakRSSBytes += w.PeakRSSBytes
	}
	fmt.Printf("    %s: %.1f s (upload %.1f s), %s across the link, %.0f objects/s, worker CPU %.1f s, peak RSS %s\n",
		r.Label, r.WallSeconds, r.UploadSeconds, mib(r.LinkBytes), r.ObjectsPerSecond, r.WorkerCPUSeconds, mib(r.WorkerPeakRSSBytes))
	fmt.Printf("    timeline, seconds after the first upload: %s\n", r.Timeline)
	return r, nil
}

// runXRC: the workers run, the corpus goes into the watched bucket, and
// the run ends when the verifier has checked every object in the
// destination bucket.
func (b *bench) runXRC(ctx context.Context, c *corpusData) (runResult, error) {
	var r runResult
	rule := b.cfg.Rules[0]
	dest := rule.Destinations[0]
	prefix := fmt.Sprintf("%s%s-%d/", rule.Prefix, c.info.Name, b.runSeq)
	objs, manifest, err := b.withPrefix(c, prefix, fmt.Sprintf("%s-%d-xrc", c.info.Name, b.runSeq))
	if err != nil {
		return r, err
	}
	destPrefix := rule.DestinationKey(dest, prefix)
	step("%s / xrc: s3://%s/%s -> S3 Replication of the staging bucket across the link -> s3://%s/%s",
		c.info.Name, rule.SourceBucket, prefix, dest.Bucket, destPrefix)

	src, err := b.startWorker(c.info.Name+"-xrc-source", false, rule.SourceRegion, "XRC_RULES="+rule.ID)
	if err != nil {
		return r, err
	}
	tgt, err := b.startWorker(c.info.Name+"-xrc-target", true, dest.Region)
	if err != nil {
		return r, err
	}
	workers := []*proc{src, tgt}
	defer func() {
		for _, w := range workers {
			w.stop(time.Minute)
		}
		b.running = nil
	}()
	for _, w := range workers {
		if err := b.waitLog(ctx, w, `"receiving"`, 2*time.Minute); err != nil {
			return r, err
		}
	}
	srcS3, err := b.env.S3(ctx, rule.SourceRegion)
	if err != nil {
		return r, err
	}
	srcStaging, _ := b.cfg.Region(rule.SourceRegion)
	before, err := listSizes(ctx, srcS3, srcStaging.StagingBucket, rule.ID+"/")
	if err != nil {
		return r, err
	}
	v, err := b.startVerifier(dest.Bucket, destPrefix, manifest, fmt.Sprintf("%s-%d-xrc", c.info.Name, b.runSeq))
	if err != nil {
		return r, err
	}
	defer v.stop()

	tap0 := b.tap.reported.Load()
	s0 := b.snapshot(workers...)
	lw := watchLink()
	defer lw.finish()
	t0 := time.Now()
	if err := dataset.Upload(ctx, srcS3, rule.SourceBucket, objs, uploadWorker); err != nil {
		return r, fmt.Errorf("uploading: %w", err)
	}
	r.UploadSeconds = time.Since(t0).Seconds()
	fmt.Printf("    uploaded %d objects in %.1f s\n", len(objs), r.UploadSeconds)
	t1, err := b.waitVerified(ctx, v, len(objs), func() error {
		for _, w := range workers {
			if w.exited() {
				return fmt.Errorf("%s exited early (%v); see %s:\n%s", w.name, w.err, w.logPath, tail(w.logPath, 10))
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	r.LinkActiveSeconds = lw.finish().Seconds()
	s1 := b.snapshot(workers...)
	r.ReplicaTapEvents = b.tap.reported.Load() - tap0
	r.DuplicateEvents = countLog(b.bridgeLog, "dropping duplicate replication event", t0, t1)
	r.WallSeconds = t1.Sub(t0).Seconds()
	b.fill(&r, s0, s1)
	staging, _ := b.cfg.Region(dest.Region)
	r.Timeline = b.xrcTimeline(t0, t1, time.Duration(r.UploadSeconds*float64(time.Second)), rule.SourceBucket, prefix, staging.StagingBucket, src, tgt)
	for i, w := range workers {
		r.Workers = append(r.Workers, workerStat{
			Name: strings.TrimPrefix(w.name, c.info.Name+"-"), CPUSeconds: s1.cpu[i] - s0.cpu[i], PeakRSSBytes: peakRSS(w.pid()),
		})
	}
	after, err := listSizes(ctx, srcS3, srcStaging.StagingBucket, rule.ID+"/")
	if err != nil {
		return r, err
	}
	for k, n := range after {
		if _, ok := before[k]; !ok && strings.HasSuffix(k, ".tar.zst") {
			r.Archives++
			r.ArchiveBytes += n
		}
	}
	r.Command = fmt.Sprintf("%s (host) + %s (in %s), config %s", b.sourceBin, b.targetBin, nsName, b.cfgPath)
	return r, nil
}

// runRclone: the corpus goes into an unwatched source bucket, then rclone
// copies it bucket to bucket across the link (it streams every object
// through itself, on the source side); the run ends when the verifier has
// checked every object.
func (b *bench) runRclone(ctx context.Context, c *corpusData, sys string, extra []string) (runResult, error) {
	var r runResult
	name := fmt.Sprintf("%s-%d-%s", c.info.Name, b.runSeq, sys)
	prefix := fmt.Sprintf("%s-%d/", c.info.Name, b.runSeq)
	bucket := fmt.Sprintf("%s-rc%d", b.cfg.Settings.StackName, b.runSeq)
	if err := b.env.EnsureBucket(ctx, "eu-west-1", bucket, false); err != nil {
		return r, err
	}
	objs, manifest, err := b.withPrefix(c, prefix, name)
	if err != nil {
		return r, err
	}
	confPath := b.state + "/rclone.conf"
	if err := os.WriteFile(confPath, nil, 0o600); err != nil {
		return r, err
	}
	args := append([]string{b.rcloneBin, "copy", "src:" + b.plainBucket + "/" + prefix, "dst:" + bucket + "/" + prefix,
		"--config", confPath, "--ca-cert", b.caPath, "--stats", "10s", "--stats-log-level", "NOTICE"}, extra...)
	r.Command = strings.Join(args, " ")
	step("%s / %s: s3://%s/%s -> %s", c.info.Name, labels[sys], b.plainBucket, prefix, r.Command)
	srcS3, err := b.env.S3(ctx, "us-east-1")
	if err != nil {
		return r, err
	}
	v, err := b.startVerifier(bucket, prefix, manifest, name)
	if err != nil {
		return r, err
	}
	defer v.stop()

	s0 := b.snapshot()
	lw := watchLink()
	defer lw.finish()
	t0 := time.Now()
	if err := dataset.Upload(ctx, srcS3, b.plainBucket, objs, uploadWorker); err != nil {
		return r, fmt.Errorf("uploading: %w", err)
	}
	r.UploadSeconds = time.Since(t0).Seconds()
	fmt.Printf("    uploaded %d objects in %.1f s; starting rclone\n", len(objs), r.UploadSeconds)
	p, err := b.start(name, false, b.rcloneEnv(), args...)
	if err != nil {
		return r, err
	}
	b.running = []*proc{p}
	defer func() { p.stop(10 * time.Second); b.running = nil }()
	exitAt := make(chan time.Time, 1)
	go func() { <-p.done; exitAt <- time.Now() }()
	var hwm int64 // VmHWM sampled while it runs; wait4's maxrss is the same high-water mark at exit
	failed := func() error {
		if !p.exited() {
			hwm = max(hwm, peakRSS(p.pid()))
		}
		if p.exited() && p.err != nil {
			return fmt.Errorf("rclone failed (%v); see %s:\n%s", p.err, p.logPath, tail(p.logPath, 10))
		}
		return nil
	}
	t1, err := b.waitVerified(ctx, v, len(objs), failed)
	if err != nil {
		return r, err
	}
	var t2 time.Time
	select {
	case t2 = <-exitAt:
	case <-time.After(time.Minute):
		return r, fmt.Errorf("rclone still running a minute after every object was verified; see %s", p.logPath)
	}
	if err := failed(); err != nil {
		return r, err
	}
	r.LinkActiveSeconds = lw.finish().Seconds()
	s1 := b.snapshot()
	r.WallSeconds = t1.Sub(t0).Seconds()
	r.Timeline = timeline{UploadEnd: r.UploadSeconds, CopyEnd: t2.Sub(t0).Seconds(), Verified: r.WallSeconds}
	b.fill(&r, s0, s1)
	cpu, rss := usage(p.cmd.ProcessState)
	r.Workers = []workerStat{{Name: "rclone", CPUSeconds: cpu, PeakRSSBytes: max(rss, hwm)}}
	return r, nil
}

// rcloneEnv configures the remotes src (the source MinIO) and dst (the
// target MinIO, across the link) through RCLONE_CONFIG_*; everything else
// is rclone's default.
func (b *bench) rcloneEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "RCLONE_") {
			env = append(env, kv)
		}
	}
	for remote, region := range map[string]string{"SRC": "us-east-1", "DST": "eu-west-1"} {
		p := "RCLONE_CONFIG_" + remote + "_"
		env = append(env, p+"TYPE=s3", p+"PROVIDER=Minio", p+"ENDPOINT="+b.env.S3Endpoints[region], p+"REGION="+region,
			p+"ACCESS_KEY_ID="+b.stack.AccessKey, p+"SECRET_ACCESS_KEY="+b.stack.SecretKey)
	}
	return append(env, "NO_PROXY=*", "no_proxy=*")
}

func (b *bench) startWorker(name string, inNS bool, region string, extra ...string) (*proc, error) {
	sqs, ddb, bin := b.sqsLocal, b.stack.DynamoDBEndpoint, b.sourceBin
	if inNS {
		sqs, ddb, bin = b.sqsNS, b.ddbNS, b.targetBin
	}
	env := b.serverEnv(append([]string{
		"XRC_CONFIG=" + b.cfgPath, "XRC_REGION=" + region, "AWS_REGION=" + region, "AWS_DEFAULT_REGION=" + region,
		"AWS_ENDPOINT_URL_SQS=" + sqs, "AWS_ENDPOINT_URL_DYNAMODB=" + ddb,
	}, extra...)...)
	p, err := b.start(name, inNS, env, bin)
	if err != nil {
		return nil, err
	}
	b.running = append(b.running, p)
	return p, nil
}

// waitLog waits until p's log contains s.
func (b *bench) waitLog(ctx context.Context, p *proc, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if data, err := os.ReadFile(p.logPath); err == nil && strings.Contains(string(data), s) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (%v); see %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 10))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %s within %s; see %s", p.name, s, timeout, p.logPath)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// snap is the counters at one instant.
type snap struct {
	link        linkCount
	control     int64
	cpu         []float64 // of the procs asked for
	servers     float64
	busy, total float64 // the machine's CPU ticks
	loss        linkLoss
}

func (b *bench) snapshot(ps ...*proc) snap {
	var s snap
	s.link, _ = linkCounters()
	for _, c := range b.linked {
		s.control += c.load()
	}
	for _, p := range ps {
		s.cpu = append(s.cpu, cpuSeconds(p.pid()))
	}
	for _, m := range b.minios {
		s.servers += cpuSeconds(m.pid())
	}
	s.busy, s.total = machineCPU()
	var err error
	if s.loss, err = readLinkLoss(); err != nil {
		fmt.Printf("    (link loss counters: %v)\n", err)
	}
	return s
}

func (b *bench) fill(r *runResult, s0, s1 snap) {
	r.LinkRxBytes, r.LinkTxBytes = s1.link.rx-s0.link.rx, s1.link.tx-s0.link.tx
	r.LinkPackets = s1.link.packets - s0.link.packets
	r.LinkPayloadBytes = r.LinkRxBytes + r.LinkTxBytes - r.LinkPackets*headerBytes
	r.ControlBytes = s1.control - s0.control
	r.ServerCPUSeconds = s1.servers - s0.servers
	if t := s1.total - s0.total; t > 0 {
		r.MachineBusy = (s1.busy - s0.busy) / t
	}
	r.MachineCPUSeconds = (s1.busy - s0.busy) / 100 // USER_HZ
	r.LinkBusySeconds = float64(r.LinkTxBytes) / linkRate()
	r.LinkLoss = s1.loss.sub(s0.loss)
}

// listSizes maps every key under prefix to its size.
func listSizes(ctx context.Context, client *s3.Client, bucket, prefix string) (map[string]int64, error) {
	m := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			m[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return m, nil
}
