package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// options size a run.
type options struct {
	Objects int
	Kills   int
	Big     int
	BigSize int64
	Seed    uint64
	Timeout time.Duration
	Out     io.Writer
}

func defaults() options {
	return options{Objects: 2000, Kills: 10, Big: 3, BigSize: 110 << 20, Seed: 1, Timeout: 20 * time.Minute, Out: io.Discard}
}

// result is one check.
type result struct {
	name   string
	ok     bool
	detail string
}

func failed(rs []result) int {
	n := 0
	for _, r := range rs {
		if !r.ok {
			n++
		}
	}
	return n
}

// chaos is one run's deployment and workers.
type chaos struct {
	o        options
	env      localstack.Env
	cfg      *config.Config
	dep      localstack.Deployment
	cfgPath  string
	src, dst *s3.Client
	sqs      *sqs.Client
	rng      *rand.Rand
	dir      string
	workers  []*proc
	evil     string // a bucket no rule writes to
	other    string // a bucket in the source region no rule watches
	outMu    sync.Mutex
	// landed counts the kills whose victim's queue held work.
	landed int
	// unarrived: the keys to delete that never reached the destination
	// (their delete then removes what was never written, and proves
	// nothing).
	unarrived error
}

func (c *chaos) logf(format string, args ...any) {
	c.outMu.Lock() // the killer and the main line report at once
	defer c.outMu.Unlock()
	fmt.Fprintf(c.o.Out, "==> "+format+"\n", args...)
}

// checkTimeout bounds the checks, which run after the run's own timeout
// has passed if need be (a run that did not settle is still checked).
const checkTimeout = 5 * time.Minute

// run deploys, replicates under fire, checks and tears down. Whatever
// happens (an error, ctx cancelled, checks failing) no worker outlives it:
// the killer, which restarts workers, is stopped and waited for, then
// every worker is stopped. The deployment is removed and the worker logs
// deleted only if every check passed; otherwise both are kept and named.
func run(ctx context.Context, env localstack.Env, o options) (results []result, err error) {
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	c := &chaos{o: o, env: env, rng: rand.New(rand.NewPCG(o.Seed, 0xc4a05))}
	var killed chan error // the running killer's result; nil when none runs
	killCtx, stopKiller := context.WithCancel(ctx)
	defer func() {
		stopKiller()
		if killed != nil {
			<-killed
		}
		c.stopAll()
		if err == nil && failed(results) == 0 {
			c.teardown()
			if c.dir != "" {
				os.RemoveAll(c.dir)
			}
			return
		}
		if c.cfg != nil {
			fmt.Fprintf(o.Out, "kept deployment %s for inspection\n", c.cfg.Settings.StackName)
		}
		if c.dir != "" {
			fmt.Fprintf(o.Out, "kept the worker logs in %s\n", c.dir)
		}
	}()
	if err := c.deploy(ctx); err != nil {
		return nil, err
	}

	want, deleted := c.objects()
	c.logf("replicating %d objects (%s) with %d kills", len(want), human(dataset.Size(want)), o.Kills)
	killed = make(chan error, 1)
	go func() { killed <- c.killer(killCtx) }()
	if err := c.poison(ctx); err != nil {
		return nil, err
	}
	if err := c.upload(ctx, want, deleted); err != nil {
		return nil, err
	}
	err = <-killed
	killed = nil
	if err != nil {
		return nil, err
	}
	c.logf("every kill done; waiting for the pipeline to settle")
	settled := c.settle(ctx, want)
	// The copies as the run left them, before the replay could mend what
	// a target lost (settle compares keys only).
	before := result{name: "before the replay: every destination object equals the newest source version, and deleted keys are gone"}
	if settled {
		bctx, bcancel := context.WithTimeout(ctx, checkTimeout)
		before = c.copies(bctx, before.name, want, deleted)
		bcancel()
		// Every archive again, newest first: the end must not change.
		if err := c.replay(ctx); err != nil {
			return nil, err
		}
		settled = c.settle(ctx, nil)
	} else {
		before.detail = "not checked: the run did not settle"
	}
	// The checks run even if the run's time is up, for at most
	// checkTimeout, and stop when the caller's ctx does (Ctrl-C).
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
	defer ccancel()
	defer context.AfterFunc(outer, ccancel)()
	results = append([]result{before}, c.check(cctx, want, deleted)...)
	results = append(results, c.checkRun(cctx, settled)...)
	results = append(results, c.stopCheck(), c.exitCheck())
	for _, r := range results {
		status := "PASS"
		if !r.ok {
			status = "FAIL"
		}
		fmt.Fprintf(o.Out, "%s  %s", status, r.name)
		if r.detail != "" {
			fmt.Fprintf(o.Out, ": %s", r.detail)
		}
		fmt.Fprintln(o.Out)
	}
	fmt.Fprintf(o.Out, "%d passed, %d failed\n", len(results)-failed(results), failed(results))
	return results, nil
}

// deploy provisions a deployment of its own and starts the workers.
func (c *chaos) deploy(ctx context.Context) error {
	cfg := c.env.Config("chaos")
	cfg.Rules[0].Deletes = true
	cfg.Rules[0].Batch = config.Batch{MaxObjects: 100, MaxBytes: 64 << 20, MaxAge: config.Duration(2 * time.Second)}
	w := &cfg.Settings.Worker
	w.VisibilityTimeout = config.Duration(30 * time.Second)
	// The production default, and for each kill two receives (a killed
	// task's held messages are received again, some by the next task
	// killed) and one for the local SQS, which moves a message one
	// delivery early: a message failing more than that is a finding, not
	// room to spare (50 before, when heartbeats counted as receives).
	w.MaxReceiveCount = 8 + 2*c.o.Kills + 1
	w.DrainTimeout = config.Duration(5 * time.Second)
	cfg.Settings.LogLevel = "info"
	c.cfg = cfg
	var err error
	if c.dep, err = c.env.Provision(ctx, cfg); err != nil {
		return err
	}
	c.evil = cfg.Settings.StackName + "-evil"
	if err := c.env.EnsureBucket(ctx, "eu-west-1", c.evil, false); err != nil {
		return err
	}
	c.other = cfg.Settings.StackName + "-other"
	if err := c.env.EnsureBucket(ctx, "us-east-1", c.other, false); err != nil {
		return err
	}
	if c.src, err = c.env.S3(ctx, "us-east-1"); err != nil {
		return err
	}
	if c.dst, err = c.env.S3(ctx, "eu-west-1"); err != nil {
		return err
	}
	if c.sqs, err = c.env.SQS(ctx); err != nil {
		return err
	}
	if c.dir, err = os.MkdirTemp("", "xrc-chaos-"); err != nil {
		return err
	}
	c.cfgPath = filepath.Join(c.dir, "config.json")
	data, err := jsonConfig(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.cfgPath, data, 0o644); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	c.logf("deployment %s; building the workers", cfg.Settings.StackName)
	for _, name := range []string{"xrc-source", "xrc-target"} {
		b := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(c.dir, name), "./cmd/"+name)
		b.Dir = root
		if out, err := b.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w: %s", name, err, out)
		}
	}
	for i := range 2 {
		c.workers = append(c.workers,
			&proc{name: fmt.Sprintf("source-%d", i), exe: filepath.Join(c.dir, "xrc-source"), region: "us-east-1", dir: c.dir, cfg: c.cfgPath, extra: []string{"XRC_RULES=r1"}},
			&proc{name: fmt.Sprintf("target-%d", i), exe: filepath.Join(c.dir, "xrc-target"), region: "eu-west-1", dir: c.dir, cfg: c.cfgPath})
	}
	for _, w := range c.workers {
		if err := w.start(); err != nil {
			return err
		}
	}
	return nil
}

// objects returns what the destination must end with, and the keys that
// must end deleted.
func (c *chaos) objects() ([]dataset.Object, []string) {
	p := c.cfg.Rules[0].Prefix + "chaos/"
	objs := dataset.Mixed(p, c.o.Objects, c.o.Seed)
	for i := range 3 {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("%sone-byte/%d", p, i), Data: []byte{byte('a' + i)}})
	}
	objs = append(objs,
		dataset.Object{Key: p + "percent/50% off 100%25 #1?.txt", ContentType: "text/plain", Data: []byte("percent")},
		dataset.Object{Key: p + "encoded/page.html.gz", ContentType: "text/html", ContentEncoding: "gzip", Data: bytes.Repeat([]byte{0x1f, 0x8b, 8, 0}, 500)},
		dataset.Object{Key: p + "meta/near-2kb", ContentType: "text/plain", Data: []byte("near the metadata limit"),
			Metadata: map[string]string{"a": strings.Repeat("x", 1000), "b": strings.Repeat("y", 990)}},
		// The source's own keys under xrc-, which the target renames
		// and must never take for its provenance.
		dataset.Object{Key: p + "meta/xrc-keys", ContentType: "text/plain", Data: []byte("posing as provenance"),
			Metadata: map[string]string{"xrc-seq": "FFFFFFFFFFFFFFFFFF", "xrc-key": "00000000", "xrc-archive": "forged", "xrc-orig-seq": "01"}},
		dataset.Object{Key: p + "headers/all.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("every header"),
			CacheControl: "public, max-age=86400", ContentDisposition: `attachment; filename="all.txt"`, ContentLanguage: "de-CH",
			Expires: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)},
	)
	for i := range c.o.Big {
		objs = append(objs, dataset.Object{Key: fmt.Sprintf("%sbig/%d.txt", p, i), ContentType: "text/plain",
			Data: dataset.Text(rand.New(rand.NewPCG(c.o.Seed, uint64(i))), int(c.o.BigSize))})
	}
	// Overwritten in quick succession: the last write must win, whole.
	for i := range overwriteKeys {
		objs = append(objs, overwrite(fmt.Sprintf("%soverwrite/%d.txt", p, i), i, overwrites-1))
	}
	var deleted []string
	for i := range max(c.o.Objects/200, 3) {
		deleted = append(deleted, fmt.Sprintf("%sdeleted/%d.txt", p, i))
	}
	return objs, deleted
}

// overwrites is how many times each overwritten key is written, and
// overwriteKeys how many keys are.
const (
	overwrites    = 5
	overwriteKeys = 8
)

// lastWriteAfter is the pause before the last write of the i-th
// overwritten key: none for the first (every write back to back, the
// source reads the last alone), then longer for each, past a batch's
// age, so that the write before it is read and staged in an archive of
// its own, for some keys while the last's is in flight, and the targets
// must order two archives of the key (one writing them as they come, or
// an older one redelivered after a kill, leaves the one before).
func lastWriteAfter(i int) time.Duration { return time.Duration(i) * time.Second }

// overwrite is write v of the overwritten key, the i-th: each write differs
// from the others in everything a copy carries (bytes, Content-Type, the
// other headers, user metadata, tags, storage class), so that a copy of an
// older write, or a mix of writes, fails the check. The last write of the
// first key has no metadata, tags or headers at all: what an older write
// set must be gone.
func overwrite(key string, i, v int) dataset.Object {
	o := dataset.Object{Key: key, Data: []byte(fmt.Sprintf("version %d of %d", v, i))}
	if i == 0 && v == overwrites-1 {
		return o
	}
	o.ContentType = fmt.Sprintf("text/x-version-%d", v)
	o.CacheControl = fmt.Sprintf("max-age=%d", 60*(v+1))
	o.ContentDisposition = fmt.Sprintf(`attachment; filename="v%d.txt"`, v)
	o.ContentLanguage = []string{"en", "de", "fr", "it", "rm"}[v%5]
	o.Expires = time.Date(2030, 1, 1+v, 0, 0, 0, 0, time.UTC)
	o.Metadata = map[string]string{"version": fmt.Sprint(v), fmt.Sprintf("only-v%d", v): "x"}
	o.Tags = map[string]string{"version": fmt.Sprint(v), fmt.Sprintf("only-v%d", v): "x"}
	if v%2 == 0 {
		o.StorageClass = "REDUCED_REDUNDANCY" // the only class besides STANDARD MinIO keeps
	}
	return o
}

// upload writes every object (the overwritten ones five times, the
// deleted ones before deleting them) while the killer works.
func (c *chaos) upload(ctx context.Context, want []dataset.Object, deleted []string) error {
	bucket := c.cfg.Rules[0].SourceBucket
	var doomed []dataset.Object
	for _, k := range deleted {
		doomed = append(doomed, dataset.Object{Key: k, ContentType: "text/plain", Data: []byte("doomed " + k)})
	}
	if err := dataset.Upload(ctx, c.src, bucket, doomed, 8); err != nil {
		return err
	}
	// Every write of an overwritten key but its last back to back, the
	// last after lastWriteAfter, while the rest upload.
	g, gctx := errgroup.WithContext(ctx)
	i := 0
	var rest []dataset.Object
	for _, o := range want {
		if !strings.Contains(o.Key, "/overwrite/") {
			rest = append(rest, o)
			continue
		}
		k := i
		g.Go(func() error {
			for v := range overwrites {
				if v == overwrites-1 {
					if err := sleep(gctx, lastWriteAfter(k)); err != nil {
						return err
					}
				}
				w := overwrite(o.Key, k, v)
				if err := dataset.Put(gctx, c.src, bucket, &w); err != nil {
					return err
				}
			}
			return nil
		})
		i++
	}
	g.Go(func() error { return dataset.Upload(gctx, c.src, bucket, rest, 16) })
	if err := g.Wait(); err != nil {
		return err
	}
	// Deleted once replicated: deleted before the source read them, they
	// would be gone from the destination whether deletes propagate or not.
	// A key that never arrives (lost) is deleted all the same after
	// arriveTimeout: the checks then say what became of it.
	actx, cancel := context.WithTimeout(ctx, arriveTimeout)
	err := c.arrived(actx, deleted)
	cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		return err
	case err != nil:
		c.logf("%v; deleting them all the same", err)
		c.unarrived = err
	}
	for _, k := range deleted {
		if _, err := c.src.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: aws.String(k)}); err != nil {
			return fmt.Errorf("deleting %s: %w", k, err)
		}
	}
	c.logf("uploaded; deleted %d keys", len(deleted))
	return nil
}

// arriveTimeout bounds the wait for the keys to delete to arrive: past
// MinIO's six minutes before it tries a replication it put off again.
const arriveTimeout = 7 * time.Minute

// arrived waits until keys are in the destination.
func (c *chaos) arrived(ctx context.Context, keys []string) error {
	dst := c.cfg.Rules[0].Destinations[0].Bucket
	for _, k := range keys {
		for {
			_, err := c.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: aws.String(k)})
			if err == nil {
				break
			}
			if !awsapi.IsNotFound(err) {
				return fmt.Errorf("waiting for %s in the destination: %w", k, err)
			}
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return fmt.Errorf("waiting for %s in the destination: %w", k, err)
			}
		}
	}
	return nil
}

// killer SIGKILLs a random worker every few seconds and restarts it, a
// source and a target in turn (so that a short run kills both kinds).
// Once ctx ends it restarts nothing.
func (c *chaos) killer(ctx context.Context) error {
	for k := range c.o.Kills {
		if err := sleep(ctx, time.Duration(2000+c.rng.IntN(5000))*time.Millisecond); err != nil {
			return err
		}
		w, held := c.victim(ctx, k)
		if held > 0 {
			c.landed++
		}
		c.logf("kill %d/%d: SIGKILL %s (its queue holds %d messages, in flight included)", k+1, c.o.Kills, w.name, held)
		w.kill()
		if err := sleep(ctx, time.Duration(500+c.rng.IntN(1500))*time.Millisecond); err != nil {
			return err
		}
		if err := w.start(); err != nil {
			return err
		}
	}
	return nil
}

// victim is the k-th kill's worker: a source when k is even, a target when
// odd (the workers alternate source-i, target-i), and what its queue
// holds, to show the kill landed on work (-1 unknown). A queue without
// work is watched for up to victimWait for some, so that kills land on
// work while there is any.
func (c *chaos) victim(ctx context.Context, k int) (*proc, int) {
	if len(c.workers) < 2 || c.sqs == nil {
		return c.workers[c.rng.IntN(len(c.workers))], -1
	}
	w := c.workers[2*c.rng.IntN(len(c.workers)/2)+k%2]
	queue := c.dep.SourceQueues["r1"]
	if k%2 == 1 {
		queue = c.dep.TargetQueues["eu-west-1"]
	}
	n := c.depth(ctx, queue, true)
	for end := time.Now().Add(victimWait); n == 0 && time.Now().Before(end) && sleep(ctx, 200*time.Millisecond) == nil; {
		n = c.depth(ctx, queue, true)
	}
	return w, n
}

// victimWait bounds how long a kill waits for its victim's queue to hold
// work.
const victimWait = 10 * time.Second

// sleep waits d, or returns ctx's error once it ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// settle waits until the destination holds exactly the keys of want (any,
// with want nil), the
// work queues are empty, the dead-letter queues hold the poison and every
// archive is replicated, or the time is up; it reports whether it settled.
// Replicated: an archive whose objects came in other archives (its
// stager killed before it acknowledged them) may be replicated minutes
// later, as S3's can (MinIO retries a replication it put off every six
// minutes), and then delivered while the checks run.
func (c *chaos) settle(ctx context.Context, want []dataset.Object) bool {
	keys := map[string]bool{}
	for _, o := range want {
		keys[o.Key] = true
	}
	srcDLQ, tgtDLQ := c.queue(ctx, config.DeadLetterQueueName(c.cfg.SourceQueueName("r1"))), c.queue(ctx, config.DeadLetterQueueName(c.cfg.TargetQueueName()))
	stable := 0
	for ctx.Err() == nil {
		// Without want (after the replay), the destination held what it
		// should: a change the replay made is the checks' to find, not a
		// reason to wait out the run's time.
		same := want == nil
		if !same {
			got, err := list(ctx, c.dst, c.cfg.Rules[0].Destinations[0].Bucket, c.cfg.Rules[0].Prefix+"chaos/")
			same = err == nil && len(got) == len(keys)
			for _, k := range got {
				same = same && keys[k]
			}
		}
		// Work queues empty, in flight included: a message a killed worker
		// held comes back after its visibility timeout, and its redelivery
		// could stage or leave an archive while the checks run.
		done := same && c.depth(ctx, c.dep.SourceQueues["r1"], true) == 0 && c.depth(ctx, c.dep.TargetQueues["eu-west-1"], true) == 0 &&
			c.depth(ctx, srcDLQ, false) >= len(sourcePoisonDead()) && c.depth(ctx, tgtDLQ, false) >= len(targetPoison) && c.uploadsLeft(ctx) == 0 &&
			c.replicating(ctx) == 0
		if done {
			if stable++; stable == 3 {
				return true
			}
		} else {
			stable = 0
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
	return false
}

// replay stages every archive the source staged again in the target's
// staging, newest first, as a redrive or a replication run again would,
// and waits until the target has taken them all: delivered again, an
// archive's older writes must be skipped (for an overwritten key whose
// write before the last was staged alone, that write comes after the
// last), its deleted keys left deleted, and nothing else changed.
func (c *chaos) replay(ctx context.Context) error {
	from, to := c.cfg.Settings.Regions[0].StagingBucket, c.cfg.Settings.Regions[1].StagingBucket
	keys, err := list(ctx, c.src, from, manifest.StagingPrefix("r1"))
	if err != nil {
		return fmt.Errorf("listing the archives to replay: %w", err)
	}
	slices.Sort(keys)
	slices.Reverse(keys)
	for _, k := range keys {
		get, err := c.src.GetObject(ctx, &s3.GetObjectInput{Bucket: &from, Key: &k})
		if err != nil {
			return fmt.Errorf("replaying %s: %w", k, err)
		}
		// Multipart when large, as the source stages it (MinIO caps a
		// single PUT's aws-chunked chunks at 16 MiB).
		_, err = transfermanager.New(c.dst).UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &to, Key: &k, Body: get.Body})
		get.Body.Close()
		if err != nil {
			return fmt.Errorf("replaying %s: %w", k, err)
		}
	}
	c.logf("replayed %d archives; waiting for the target to take them", len(keys))
	for {
		left, err := list(ctx, c.dst, to, manifest.StagingPrefix("r1"))
		if err != nil {
			return fmt.Errorf("listing the replayed archives: %w", err)
		}
		n := 0
		for _, k := range left {
			if slices.Contains(keys, k) {
				n++
			}
		}
		if n == 0 {
			return nil
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("%d replayed archives not taken: %w", n, err)
		}
	}
}

// replicating counts the source staging archives whose replication is
// still pending (-1 when they cannot be read).
func (c *chaos) replicating(ctx context.Context) int {
	staging := c.cfg.Settings.Regions[0].StagingBucket
	vs, err := versions(ctx, c.src, staging)
	if err != nil {
		return -1
	}
	n := 0
	for _, v := range vs {
		if v.marker {
			continue
		}
		head, err := c.src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &staging, Key: aws.String(v.key), VersionId: aws.String(v.id)})
		if err != nil {
			return -1
		}
		// FAILED too: MinIO tries it again (as S3 does not); until then
		// the run has not settled, and the copies checked before the
		// replay would lack its objects.
		if head.ReplicationStatus == s3types.ReplicationStatusPending || head.ReplicationStatus == s3types.ReplicationStatusFailed {
			n++
		}
	}
	return n
}

// checkRun checks the run itself: it settled in its time (every other
// check could pass while a poison message still circulated, released
// again and again rather than settled), its work queues are empty, and no
// worker exited but by the run's hand (its twin could have covered for
// it).
func (c *chaos) checkRun(ctx context.Context, settled bool) []result {
	var rs []result
	r := result{name: "the pipeline settled within the run's time", ok: settled}
	if !settled {
		r.detail = fmt.Sprintf("not settled within %v", c.o.Timeout)
	}
	rs = append(rs, r)
	r = result{name: "the work queues are empty, in flight and delayed messages included", ok: true}
	for _, u := range []string{c.dep.SourceQueues["r1"], c.dep.TargetQueues["eu-west-1"]} {
		if n := c.depth(ctx, u, true); n != 0 {
			r.ok = false
			r.detail += fmt.Sprintf("%s holds %d; ", u, n)
		}
	}
	rs = append(rs, r)
	r = result{name: "the keys to delete reached the destination before their delete", ok: c.unarrived == nil}
	if c.unarrived != nil {
		r.detail = c.unarrived.Error()
	}
	rs = append(rs, r)
	if c.o.Kills > 0 {
		rs = append(rs, result{name: "a kill landed on work (its victim's queue held messages)", ok: c.landed > 0,
			detail: fmt.Sprintf("%d of %d kills did", c.landed, c.o.Kills)})
	}
	return rs
}

// exitCheck says whether any worker exited but by the driver's hand,
// until every worker was stopped (one that crashed while the checks ran
// included).
func (c *chaos) exitCheck() result {
	var died []string
	for _, w := range c.workers {
		died = append(died, w.exits()...)
	}
	return result{name: "no worker exited but when killed or stopped", ok: len(died) == 0, detail: strings.Join(died, "; ")}
}

// resultOf is the check name, failed by errs (the first five said).
func resultOf(name string, errs []error) result {
	r := result{name: name, ok: len(errs) == 0}
	if !r.ok {
		var s []string
		for i, e := range errs {
			if i == 5 {
				s = append(s, fmt.Sprintf("and %d more", len(errs)-5))
				break
			}
			s = append(s, e.Error())
		}
		r.detail = strings.Join(s, "; ")
	}
	return r
}

// same compares every destination object with want.
func (c *chaos) same(ctx context.Context, want []dataset.Object) []error {
	return dataset.Check(ctx, c.dst, c.cfg.Rules[0].Destinations[0].Bucket, want, func(k string) string { return k }, 16)
}

// gone says which deleted keys the destination still holds.
func (c *chaos) gone(ctx context.Context, deleted []string) []error {
	dst := c.cfg.Rules[0].Destinations[0].Bucket
	var errs []error
	for _, k := range deleted {
		_, err := c.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: aws.String(k)})
		switch {
		case err == nil:
			errs = append(errs, fmt.Errorf("%s is still there", k))
		case !awsapi.IsNotFound(err):
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	return errs
}

// copies is the check name of the copies: want's equal to their source,
// deleted's gone.
func (c *chaos) copies(ctx context.Context, name string, want []dataset.Object, deleted []string) result {
	return resultOf(name, append(c.same(ctx, want), c.gone(ctx, deleted)...))
}

// check runs every end-of-run check.
func (c *chaos) check(ctx context.Context, want []dataset.Object, deleted []string) []result {
	dst := c.cfg.Rules[0].Destinations[0].Bucket
	var rs []result
	add := func(name string, errs []error) { rs = append(rs, resultOf(name, errs)) }
	add(fmt.Sprintf("every destination object (%d) equals the newest source version: bytes, Content-*, Cache-Control, Expires, user metadata and tags (both ways), storage class", len(want)),
		c.same(ctx, want))
	add(fmt.Sprintf("deleted keys (%d) are gone", len(deleted)), c.gone(ctx, deleted))

	var errs []error
	got, err := list(ctx, c.dst, dst, "")
	if err != nil {
		errs = append(errs, err)
	}
	keys := map[string]bool{}
	for _, o := range want {
		keys[o.Key] = true
	}
	for _, k := range got {
		if !keys[k] {
			errs = append(errs, fmt.Errorf("unexpected object %s", k))
		}
	}
	add("the destination holds nothing else (nothing written from poison, nothing resurrected)", errs)

	errs = nil
	if evil, err := list(ctx, c.dst, c.evil, ""); err != nil || len(evil) > 0 {
		errs = append(errs, fmt.Errorf("bucket %s holds %v (%v)", c.evil, evil, err))
	}
	add("nothing written to a bucket no rule names", errs)

	add("the source DLQ holds exactly the poison messages that no retry can fix", c.checkDLQ(ctx, config.DeadLetterQueueName(c.cfg.SourceQueueName("r1")), sourcePoisonDead()))
	add("the target DLQ holds exactly the poison archives", c.checkDLQ(ctx, config.DeadLetterQueueName(c.cfg.TargetQueueName()), targetPoisonKeys()))

	add("the target staging bucket holds the poison archives in the DLQ, one version each, and nothing else: no other version, no delete marker",
		c.checkTargetStaging(ctx))
	add("the source staging bucket holds only archives, one version each, every one replicated, and no delete marker",
		c.checkSourceStaging(ctx))

	errs = nil
	if n := c.uploadsLeft(ctx); n != 0 {
		errs = append(errs, fmt.Errorf("%d incomplete multipart uploads", n))
	}
	add("no incomplete multipart upload in any bucket", errs)
	return rs
}

// checkTargetStaging checks every version in the target staging bucket. The
// target deletes each archive it delivered by the version it read (no
// delete marker: deliver.Worker.Deliver), and nothing else deletes there;
// what stays is what no delivery may take: the poison archives, as put, in
// the DLQ.
func (c *chaos) checkTargetStaging(ctx context.Context) []error {
	vs, err := versions(ctx, c.dst, c.cfg.Settings.Regions[1].StagingBucket)
	if err != nil {
		return []error{err}
	}
	var errs []error
	var left []string
	for _, v := range vs {
		switch {
		case v.marker:
			errs = append(errs, fmt.Errorf("delete marker on %s (version %s)", v.key, v.id))
		case !v.latest:
			errs = append(errs, fmt.Errorf("noncurrent version %s of %s", v.id, v.key))
		default:
			left = append(left, v.key)
		}
	}
	slices.Sort(left)
	want := targetPoisonKeys()
	slices.Sort(want)
	if !slices.Equal(left, want) {
		errs = append(errs, fmt.Errorf("holds %d archives %v, want only the %d in the DLQ", len(left), trim(left), len(want)))
	}
	return errs
}

// checkSourceStaging checks every version in the source staging bucket. The
// source writes each archive once, under a key of its own, and deletes
// nothing there (on AWS lifecycle expires archives; locally no target runs
// in the source region to delete its own copies); S3 Replication, which
// the stack plays with MinIO's bucket replication, copies each to the
// target staging bucket and marks it COMPLETED. So: only archives of the
// rule, each one current version, no delete marker, none left
// unreplicated.
func (c *chaos) checkSourceStaging(ctx context.Context) []error {
	staging := c.cfg.Settings.Regions[0].StagingBucket
	vs, err := versions(ctx, c.src, staging)
	if err != nil {
		return []error{err}
	}
	var errs []error
	archives := 0
	for _, v := range vs {
		if v.marker {
			errs = append(errs, fmt.Errorf("delete marker on %s (version %s)", v.key, v.id))
			continue
		}
		if !v.latest {
			errs = append(errs, fmt.Errorf("noncurrent version %s of %s", v.id, v.key))
		}
		if rule, _, err := manifest.ParseStagingKey(v.key); err != nil || rule != c.cfg.Rules[0].ID {
			errs = append(errs, fmt.Errorf("%s is no archive of rule %s", v.key, c.cfg.Rules[0].ID))
			continue
		}
		archives++
		head, err := c.src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &staging, Key: aws.String(v.key), VersionId: aws.String(v.id)})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.key, err))
		} else if st := head.ReplicationStatus; st != s3types.ReplicationStatusCompleted && st != s3types.ReplicationStatusComplete {
			errs = append(errs, fmt.Errorf("%s: replication status %q, want %q", v.key, st, s3types.ReplicationStatusCompleted))
		}
	}
	if archives == 0 {
		errs = append(errs, errors.New("no archive at all"))
	}
	return errs
}

// checkDLQ compares what a dead-letter queue holds with want: message
// bodies (source) or the staging keys they announce (target).
func (c *chaos) checkDLQ(ctx context.Context, name string, want []string) []error {
	url := c.queue(ctx, name)
	var got []string
	seen := map[string]bool{}
	for range 20 {
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 60, WaitTimeSeconds: 1})
		if err != nil {
			return []error{err}
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			if seen[aws.ToString(m.MessageId)] {
				continue
			}
			seen[aws.ToString(m.MessageId)] = true
			body := aws.ToString(m.Body)
			if parsed, err := events.Parse([]byte(body)); err == nil && len(parsed.Refs) == 1 && strings.Contains(parsed.Refs[0].Key, "/poison/") {
				body = parsed.Refs[0].Key
			}
			got = append(got, body)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return []error{fmt.Errorf("holds %d %v, want %d %v", len(got), trim(got), len(want), trim(want))}
	}
	return nil
}

// uploadsLeft counts incomplete multipart uploads in every bucket of the
// run (listed whole: MinIO takes a prefix as an exact key).
func (c *chaos) uploadsLeft(ctx context.Context) int {
	n := 0
	for _, b := range []struct {
		client *s3.Client
		bucket string
	}{
		{c.src, c.cfg.Rules[0].SourceBucket}, {c.src, c.cfg.Settings.Regions[0].StagingBucket},
		{c.dst, c.cfg.Settings.Regions[1].StagingBucket}, {c.dst, c.cfg.Rules[0].Destinations[0].Bucket}, {c.dst, c.evil},
	} {
		out, err := b.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b.bucket)})
		if err != nil {
			return -1
		}
		n += len(out.Uploads)
	}
	return n
}

func (c *chaos) queue(ctx context.Context, name string) string {
	out, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return ""
	}
	return aws.ToString(out.QueueUrl)
}

// depth counts a queue's messages, visible and in flight (local-aws-sqs
// counts in-flight ones in ApproximateNumberOfMessages already).
// depth returns the messages url holds visible, and with inFlight those
// received and not yet deleted or released, and those delayed, too.
func (c *chaos) depth(ctx context.Context, url string, inFlight bool) int {
	names := []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}
	if inFlight {
		names = append(names, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	}
	out, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: names})
	if err != nil {
		return -1
	}
	var total int
	for _, name := range names {
		var n int
		fmt.Sscan(out.Attributes[string(name)], &n)
		total += n
	}
	return total
}

func (c *chaos) stopAll() {
	var wg sync.WaitGroup
	for _, w := range c.workers {
		wg.Go(func() { w.stop() })
	}
	wg.Wait()
}

// stopCheck stops every worker as ECS does (SIGTERM), and checks each
// drained and exited 0 within the minute stop gives it: a worker that
// panics or hangs on its way out fails the run.
func (c *chaos) stopCheck() result {
	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
	)
	for _, w := range c.workers {
		wg.Go(func() {
			if problem := w.stop(); problem != "" {
				mu.Lock()
				problems = append(problems, problem)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(problems)
	return result{name: "every worker stopped on SIGTERM, exit status 0", ok: len(problems) == 0, detail: strings.Join(problems, "; ")}
}

func (c *chaos) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Staging too (its replication rule first), and the table: every
	// archive's events were handled once the run settled.
	for _, b := range [][2]string{{"us-east-1", c.cfg.Rules[0].SourceBucket}, {"eu-west-1", c.cfg.Rules[0].Destinations[0].Bucket}, {"eu-west-1", c.evil},
		{"us-east-1", c.other}, {"us-east-1", c.cfg.Settings.Regions[0].StagingBucket}, {"eu-west-1", c.cfg.Settings.Regions[1].StagingBucket}} {
		_ = c.env.RemoveBucket(ctx, b[0], b[1])
	}
	_ = c.env.DeleteTable(ctx, c.cfg.TableName())
	for _, q := range []string{c.cfg.SourceQueueName("r1"), c.cfg.TargetQueueName()} {
		_ = c.env.DeleteQueue(ctx, q)
	}
}

func list(ctx context.Context, client *s3.Client, bucket, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// version is one entry of a versioned bucket's listing.
type version struct {
	key, id        string
	marker, latest bool
}

// versions lists every object version and delete marker in bucket.
func versions(ctx context.Context, client *s3.Client, bucket string) ([]version, error) {
	var out []version
	p := s3.NewListObjectVersionsPaginator(client, &s3.ListObjectVersionsInput{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the versions in %s: %w", bucket, err)
		}
		for _, v := range page.Versions {
			out = append(out, version{key: aws.ToString(v.Key), id: aws.ToString(v.VersionId), latest: aws.ToBool(v.IsLatest)})
		}
		for _, m := range page.DeleteMarkers {
			out = append(out, version{key: aws.ToString(m.Key), id: aws.ToString(m.VersionId), marker: true, latest: aws.ToBool(m.IsLatest)})
		}
	}
	return out, nil
}

func trim(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], fmt.Sprintf("... %d more", len(s)-5))
	}
	return s
}

func human(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// moduleRoot is the repository's root, where the workers are built from.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the xrc module")
	}
	return filepath.Dir(mod), nil
}

// proc is one worker process, killed and restarted at will.
type proc struct {
	name, exe, region, dir, cfg string
	extra                       []string
	mu                          sync.Mutex
	cmd                         *exec.Cmd
	done                        chan struct{}
	starts                      int
	// ending: the run killed or stopped it; died: exits it did not
	// cause, a worker's own failure that its twin may have covered.
	ending bool
	died   []string
	exit   error // the last run's exit
}

// exits are the exits of p the run did not cause.
func (p *proc) exits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.died)
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	log, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("%s.%d.log", p.name, p.starts)))
	if err != nil {
		return err
	}
	cmd := exec.Command(p.exe)
	cmd.Env = append(os.Environ(), "XRC_CONFIG="+p.cfg, "XRC_REGION="+p.region, "AWS_REGION="+p.region)
	cmd.Env = append(cmd.Env, p.extra...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that a Ctrl-C meant for chaos reaches the
	// worker only as chaos's SIGTERM; killed with chaos if chaos dies
	// without stopping it (as benche2e's processes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	start := p.starts
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.exit = err
		if !p.ending {
			p.died = append(p.died, fmt.Sprintf("%s exited on its own (%v; log %s.%d.log)", p.name, err, p.name, start))
		}
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done, p.ending = cmd, done, false
	return nil
}

// kill sends SIGKILL: no drain, no release, no abort.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ending = true
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// stop sends SIGTERM, as ECS does, and waits; it says what went wrong: a
// worker that did not exit within a minute (then killed), or exited with
// an error. Stopped already, it says nothing.
func (p *proc) stop() string {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ending = true
	p.mu.Unlock()
	if cmd == nil {
		return ""
	}
	select {
	case <-done:
		return ""
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Sprintf("%s did not exit within a minute of SIGTERM (killed; log %s.%d.log)", p.name, p.name, p.starts)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exit != nil {
		return fmt.Sprintf("%s exited with %v on SIGTERM (log %s.%d.log)", p.name, p.exit, p.name, p.starts)
	}
	return ""
}
