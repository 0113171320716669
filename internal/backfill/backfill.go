package backfill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// Defaults for Options left zero.
const (
	DefaultConcurrency = 8
	DefaultDepth       = 2
)

// Origin names xrc backfill's synthetic events (userIdentity and
// configurationId), so they can be told from S3's in a queue or a log.
const Origin = "xrc-backfill"

// ListAPI lists a bucket; *s3.Client satisfies it.
type ListAPI interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// SourceAPI lists the source bucket and reads its tags (Options.Tags);
// *s3.Client satisfies it.
type SourceAPI interface {
	ListAPI
	TagAPI
}

// TagAPI reads an object's tags.
type TagAPI interface {
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
}

// DestAPI is what the comparison calls at a destination; *s3.Client
// satisfies it.
type DestAPI interface {
	ListAPI
	TagAPI
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// GetAPI reads an inventory report; *s3.Client satisfies it.
type GetAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// QueueAPI sends events; *sqs.Client satisfies it.
type QueueAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Options say what to backfill.
type Options struct {
	Rule *config.Rule
	// Prefix narrows the rule's prefix (it must start with it, or be a
	// prefix of it, which changes nothing).
	Prefix string
	// Since skips objects last modified before it (zero: none skipped).
	Since time.Time
	// Inventory is the s3://bucket/key of an S3 Inventory manifest.json to
	// read instead of listing the bucket.
	Inventory string
	// DryRun compares and counts but sends nothing.
	DryRun bool
	// Rate caps the events sent per second (0: no cap).
	Rate float64
	// Concurrency is how many listings (or inventory files) run at once,
	// and how many HEADs each page makes at once.
	Concurrency int
	// Depth is how many '/' levels below the root a listing fans out
	// over: 0 means DefaultDepth, -1 lists the root whole.
	Depth int
	// Tags also compares the tags of objects whose destinations hold the
	// same write, and sends a tag change (ObjectTagging:Put) for those
	// that differ: a change lost on the way, or made before xrc carried
	// tag changes. It costs a GetObjectTagging per such object at the
	// source, and one per destination holding that write. A tag
	// change does not move an object's Last-Modified, which Since
	// filters on.
	Tags bool
	// Restart discards the checkpoint of an interrupted run, whatever its
	// parameters, and starts afresh.
	Restart bool
	// RestartIfChanged discards it only when its parameters differ from
	// this run's (which is an error otherwise): a scheduled run resumes
	// its interrupted predecessor, and is not blocked by a manual run's
	// checkpoint or by a rule edited since.
	RestartIfChanged bool
	// LateAfter is how long after its write an object is counted late if
	// this run sends it (Counts.Late); 0 means DefaultLateAfter.
	LateAfter time.Duration
}

// DefaultLateAfter is Options.LateAfter's default: far longer than the
// pipeline takes to deliver a write from its event (a batch's age,
// replication, the target), short enough that an hourly run sees the
// writes of the first half of its period.
const DefaultLateAfter = 30 * time.Minute

// Deps are the run's collaborators.
type Deps struct {
	// Source lists the rule's source bucket (and, with Options.Tags,
	// reads its tags).
	Source SourceAPI
	// Inventory reads the inventory report (only with Options.Inventory).
	Inventory GetAPI
	// Dest compares at the destinations, by region.
	Dest map[string]DestAPI
	// Queue and QueueURL are the rule's source queue (unused in a dry run).
	Queue    QueueAPI
	QueueURL string
	// Checkpoint keeps progress; nil keeps none.
	Checkpoint Checkpoint
	Log        *zap.Logger
	// Progress, if set, is called with the counts as they change (at most
	// every page), one call at a time.
	Progress func(Counts)
	Now      func() time.Time
}

// Counts say what a run found and did. Objects are counted once, under the
// first destination that differs.
type Counts struct {
	Listed     int64 `json:"listed"`     // source objects listed (inventory: rows read)
	Matched    int64 `json:"matched"`    // covered by the rule, the prefix and since
	Compared   int64 `json:"compared"`   // compared with every destination
	Missing    int64 `json:"missing"`    // absent at a destination
	Resized    int64 `json:"resized"`    // another size at a destination
	Older      int64 `json:"older"`      // written by xrc from an older source write
	UpToDate   int64 `json:"upToDate"`   // the same write everywhere
	TagsDiffer int64 `json:"tagsDiffer"` // the same write, other tags at a destination (Options.Tags)
	NotByXRC   int64 `json:"notByXrc"`   // same size, not written by xrc: left alone
	Unroutable int64 `json:"unroutable"` // the rule maps the key to no valid destination key
	// Archived differ but are in GLACIER or DEEP_ARCHIVE (or an archive
	// tier) unrestored: not sent, as the source could not read them.
	Archived int64 `json:"archived"`
	// ArchivedSince is the oldest archived object's Last-Modified: a
	// restore leaves it as it was, so a run that sends them once restored
	// needs a Since no later.
	ArchivedSince time.Time `json:"archivedSince,omitzero"`
	Enqueued      int64     `json:"enqueued"` // events sent (dry run: that would be sent)
	// Late of the writes sent were made after the last complete run
	// started, and more than Options.LateAfter before they were compared:
	// written while xrc ran, long enough ago that their events should
	// have delivered them. Their events were lost (a notification
	// configuration replaced, a queue purged), failed (in a DLQ), or the
	// pipeline is that far behind. Zero without a checkpoint that
	// remembers complete runs (-checkpoint ddb).
	Late int64 `json:"late"`
	// LateMultipart are such writes of multipart uploads, counted apart:
	// S3 dates them when the upload began, and a writer may keep one open
	// for an hour (Fluent Bit's upload_timeout), so one completed minutes
	// ago looks late; given a second more per MiB, they are alarmed on
	// only when two runs in a row find some (LateMultipartRuns).
	LateMultipart int64 `json:"lateMultipart"`
	// LateMultipartRuns is how many complete runs in a row, this one
	// included, found LateMultipart writes (zero: this one found none,
	// or did not complete over the whole rule with -checkpoint ddb): one
	// such run says little, two in a row that events are lost (deploy/cdk
	// alarms on it, whatever the schedule).
	LateMultipartRuns int64 `json:"lateMultipartRuns"`
	Bytes             int64 `json:"bytes"`     // their objects' bytes
	Tasks             int64 `json:"tasks"`     // prefixes (inventory: data files) known
	TasksDone         int64 `json:"tasksDone"` // ... finished, those of an earlier run included
	Resumed           int64 `json:"resumed"`   // finished by an earlier run: not listed again
	ScanBytes         int64 `json:"scanBytes"` // inventory bytes read
	ScanTotal         int64 `json:"scanTotal"` // inventory bytes in all
	// InventoryOf is when the inventory report was made (its
	// creationTimestamp; zero if it does not say): writes since are not
	// in it.
	InventoryOf time.Time `json:"inventoryOf,omitzero"`
}

type counters struct {
	listed, matched, compared, missing, resized, older, upToDate, tagsDiffer, notByXRC, unroutable, archived atomic.Int64
	enqueued, late, lateMultipart, lateMultipartRuns, bytes, tasks, tasksDone, resumed, scanBytes, scanTotal atomic.Int64
	inventoryOf, archivedSince                                                                               atomic.Int64 // Unix ms
}

// lowest stores v in a unless a holds a lower one (0: none).
func lowest(a *atomic.Int64, v int64) {
	for old := a.Load(); old == 0 || v < old; old = a.Load() {
		if a.CompareAndSwap(old, v) {
			return
		}
	}
}

// unixMilli is ms as a time, zero for 0.
func unixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (c *counters) snapshot() Counts {
	return Counts{
		Listed: c.listed.Load(), Matched: c.matched.Load(), Compared: c.compared.Load(), Missing: c.missing.Load(),
		Resized: c.resized.Load(), Older: c.older.Load(), UpToDate: c.upToDate.Load(), TagsDiffer: c.tagsDiffer.Load(), NotByXRC: c.notByXRC.Load(),
		Unroutable: c.unroutable.Load(), Archived: c.archived.Load(), Enqueued: c.enqueued.Load(), Late: c.late.Load(), LateMultipart: c.lateMultipart.Load(), LateMultipartRuns: c.lateMultipartRuns.Load(), Bytes: c.bytes.Load(), Tasks: c.tasks.Load(),
		TasksDone: c.tasksDone.Load(), Resumed: c.resumed.Load(), ScanBytes: c.scanBytes.Load(), ScanTotal: c.scanTotal.Load(),
		InventoryOf: unixMilli(c.inventoryOf.Load()), ArchivedSince: unixMilli(c.archivedSince.Load()),
	}
}

// ErrCheckpointMismatch marks a checkpoint left by a run with other
// parameters: resuming it would skip what this run was asked to cover.
var ErrCheckpointMismatch = errors.New("checkpoint belongs to another backfill")

// run is one backfill.
type run struct {
	Deps
	o      Options
	root   string
	params Params
	c      counters
	send   *sender
	dests  []dest // the rule's destinations, deduplicated
	// lastRun is when the last complete run started (completedRuns;
	// zero: unknown), from which writes are counted late.
	lastRun time.Time
	// completed is a dry run's checkpoint, read for lastRun alone.
	completed completedRuns
	lateNamed atomic.Int64 // late writes named in the log

	mu    sync.Mutex
	state *State // the checkpointed progress, as this run knows it

	reporting sync.Mutex // one Progress call at a time
}

// dest is one destination of the rule.
type dest struct {
	index int
	d     config.Destination
	api   DestAPI
}

// Run backfills o.Rule and returns what it found and did. It stops at the
// first error (or when ctx ends), keeping the checkpoint for the next run;
// a run that completes clears it.
func Run(ctx context.Context, o Options, d Deps) (Counts, error) {
	r, err := newRun(o, d)
	if err != nil {
		return Counts{}, err
	}
	err = r.checkDests(ctx)
	if err == nil {
		err = r.start(ctx)
	}
	if err == nil {
		err = r.work(ctx)
	}
	if r.Checkpoint == nil && r.completed != nil && err == nil && r.root == r.o.Rule.Prefix && r.o.Inventory == "" && r.c.lateMultipart.Load() > 0 {
		// A dry run records no run, but counts this one after the last,
		// as a run would: the alarm on two in a row fires on it too.
		r.c.lateMultipartRuns.Store(r.completed.LastLateMultipartRuns() + 1)
	}
	if r.Checkpoint != nil {
		// Whatever happened, what was done is kept (or, when all was
		// done, the checkpoint removed), even after ctx ended.
		// A DynamoDB checkpoint removes its task items 99 to a
		// transaction: a run of many prefixes needs more time.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second+time.Duration(r.c.tasks.Load())*time.Millisecond)
		defer cancel()
		if c, ok := r.Checkpoint.(completedRuns); ok && err == nil && r.root == r.o.Rule.Prefix && r.o.Inventory == "" {
			// Only a listing of the whole rule vouches for every prefix
			// from its start on.
			runs := int64(0)
			if r.c.lateMultipart.Load() > 0 {
				runs = c.LastLateMultipartRuns() + 1
			}
			r.c.lateMultipartRuns.Store(runs)
			err = c.Completed(cctx, r.state.Started, runs)
		}
		if err == nil {
			err = r.Checkpoint.Clear(cctx)
		} else if ferr := r.Checkpoint.Flush(cctx); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	r.report()
	return r.c.snapshot(), err
}

func newRun(o Options, d Deps) (*run, error) {
	if o.Rule == nil {
		return nil, errors.New("backfill: no rule")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	switch {
	case o.Depth == 0:
		o.Depth = DefaultDepth
	case o.Depth < -1:
		return nil, fmt.Errorf("backfill: depth %d: want -1 (no fan-out) or more", o.Depth)
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if o.LateAfter <= 0 {
		o.LateAfter = DefaultLateAfter
	}
	var completed completedRuns
	if o.DryRun && d.Checkpoint != nil {
		// A dry run sends nothing, so its progress is no one's to resume:
		// a run resuming it would skip every object it only counted. When
		// the last complete run started is read all the same: a dry run's
		// late writes alarm as a run's do.
		d.Log.Info("dry run: no progress is resumed or kept")
		completed, _ = d.Checkpoint.(completedRuns)
		d.Checkpoint = nil
	}
	root, err := Root(o.Rule, o.Prefix)
	if err != nil {
		return nil, err
	}
	r := &run{Deps: d, o: o, root: root, completed: completed}
	r.params = Params{Rule: o.Rule.ID, Bucket: o.Rule.SourceBucket, Prefix: root, Inventory: o.Inventory, Depth: o.Depth, Since: o.Since, Tags: o.Tags,
		Scope: Scope(o.Rule)}
	if (o.Inventory == "" || o.Tags) && d.Source == nil {
		return nil, errors.New("backfill: no source client")
	}
	if o.Inventory != "" && d.Inventory == nil {
		return nil, errors.New("backfill: no client for the inventory")
	}
	if !o.DryRun && (d.Queue == nil || d.QueueURL == "") {
		return nil, errors.New("backfill: no queue to send to")
	}
	seen := map[[3]string]bool{}
	for i, dst := range o.Rule.Destinations {
		api := d.Dest[dst.Region]
		if api == nil {
			return nil, fmt.Errorf("backfill: no S3 client for destination region %s", dst.Region)
		}
		// Keyed by where the rule's prefix lands: a nil destination
		// prefix keeps it, "" removes it.
		k := [3]string{dst.Region, dst.Bucket, o.Rule.DestinationKey(dst, o.Rule.Prefix)}
		if seen[k] {
			continue
		}
		seen[k] = true
		r.dests = append(r.dests, dest{index: i, d: dst, api: api})
	}
	r.send = newSender(d.Queue, d.QueueURL, o.Rate, o.DryRun, d.Log)
	return r, nil
}

// Root is where a backfill of rule lists: the rule's prefix, or prefix when
// that is narrower. A prefix outside the rule is an error: the rule covers
// nothing there.
func Root(rule *config.Rule, prefix string) (string, error) {
	switch {
	case strings.HasPrefix(prefix, rule.Prefix):
		return prefix, nil
	case strings.HasPrefix(rule.Prefix, prefix):
		return rule.Prefix, nil
	}
	return "", fmt.Errorf("prefix %q is outside rule %s's prefix %q", prefix, rule.ID, rule.Prefix)
}

// checkDests fails unless every destination bucket is there: a HEAD of a
// key in a missing bucket answers a bare 404, which an inventory run takes
// for a missing object, so it would send every object to fail at the
// target. A bucket that cannot be checked (a policy granting ListBucket
// only under a prefix, which HeadBucket does not name; a store's
// credentials for objects alone) is said and passed: a listing fails on
// its own where a bucket is missing, and an inventory's HEADs answer 403.
func (r *run) checkDests(ctx context.Context) error {
	for _, d := range r.dests {
		_, err := d.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.d.Bucket})
		switch {
		case awsapi.IsNotFound(err):
			return fmt.Errorf("rule %s: destination bucket %s is not in %s (its name, or the region's s3Endpoint); nothing sent: %w", r.o.Rule.ID, d.d.Bucket, d.d.Region, err)
		case err != nil:
			r.Log.Warn("destination bucket not checked (HeadBucket failed): going on", zap.String("rule", r.o.Rule.ID),
				zap.String("bucket", d.d.Bucket), zap.String("region", d.d.Region), zap.Error(err))
		}
	}
	return nil
}

// start loads or begins the checkpoint: a resumed run takes the earlier
// run's since, which a relative -since would otherwise move.
func (r *run) start(ctx context.Context) error {
	if r.Checkpoint == nil {
		if r.completed != nil {
			// Read-only: no lease, so a dry run goes beside a live run.
			if err := r.completed.LoadCompleted(ctx); err != nil {
				return err
			}
			r.lastRun = r.completed.LastCompleted()
			r.widenSince()
		}
		r.state = &State{Params: r.params, Tasks: map[string]Progress{}}
		return nil
	}
	st, err := r.Checkpoint.Load(ctx)
	if err != nil {
		return err
	}
	if st != nil {
		why := st.Params.mismatch(r.params)
		switch {
		case r.o.Restart || why != "" && r.o.RestartIfChanged:
			r.Log.Warn("discarding an interrupted backfill's checkpoint and starting afresh", zap.Time("started", st.Started),
				zap.String("differs", why), zap.Bool("restart", r.o.Restart))
			if err := r.Checkpoint.Clear(ctx); err != nil {
				return err
			}
			st = nil
		case why != "":
			return fmt.Errorf("%w: %s; pass the same parameters to resume it, or -restart to discard it and start afresh", ErrCheckpointMismatch, why)
		}
	}
	if c, ok := r.Checkpoint.(completedRuns); ok {
		r.lastRun = c.LastCompleted()
	}
	if st == nil {
		r.widenSince()
		r.state = &State{Params: r.params, Started: r.Now().UTC(), Tasks: map[string]Progress{}}
		return r.Checkpoint.Start(ctx, r.state)
	}
	if !st.Params.Since.Equal(r.params.Since) {
		r.Log.Info("resuming: since as in the interrupted run", zap.Time("since", st.Params.Since))
	}
	r.o.Since = st.Params.Since
	r.state = st
	done := 0
	for _, p := range st.Tasks {
		if p.Done {
			done++
		}
	}
	r.Log.Info("resuming an interrupted backfill", zap.String("rule", r.o.Rule.ID), zap.Time("started", st.Started),
		zap.Int("tasks", len(st.Tasks)), zap.Int("done", done))
	return nil
}

// completedRuns is a checkpoint that remembers when the last run that
// listed the whole rule and completed started (DynamoCheckpoint): recorded
// by Completed, read by LastCompleted after Load or LoadCompleted.
type completedRuns interface {
	Completed(ctx context.Context, started time.Time, lateMultipartRuns int64) error
	LoadCompleted(ctx context.Context) error
	LastCompleted() time.Time
	LastLateMultipartRuns() int64
}

// widenSince takes since back to the start of the last run that completed,
// when that is earlier: an object written while it ran, under a prefix it
// had already listed, is left for this run, and a scheduled run's fixed
// window ("-since 2h") would miss it after a run longer than the schedule's
// period.
func (r *run) widenSince() {
	last := r.lastRun
	if last.IsZero() || r.o.Since.IsZero() {
		return
	}
	if since := last.Add(-awsapi.ClockSkew); since.Before(r.o.Since) {
		r.Log.Info("since taken back to the start of the last complete run", zap.Time("asked", r.o.Since), zap.Time("since", since),
			zap.Time("lastRunStarted", last))
		r.o.Since, r.params.Since = since, since
	}
}

// late reports whether o's write, which this run sends, should have been
// delivered by its event already (Counts.Late, LateMultipart). One a
// multipart upload made is given a second more per MiB: S3 dates it when
// the upload began, and a slow client's upload of a large object, then its
// delivery, take that long.
func (r *run) late(o object) bool {
	wait := r.o.LateAfter
	if multipart(o) {
		wait += time.Duration(o.Size>>20) * time.Second
	}
	t := o.LastModified
	return !r.lastRun.IsZero() && t.After(r.lastRun) && r.Now().Sub(t) > wait
}

// multipart reports whether a multipart upload wrote o: its ETag is
// "<hex>-<parts>".
func multipart(o object) bool { return strings.Contains(o.ETag, "-") }

func (r *run) work(ctx context.Context) error {
	r.Log.Info("backfill starting", zap.String("rule", r.o.Rule.ID), zap.String("bucket", r.o.Rule.SourceBucket),
		zap.String("prefix", r.root), zap.Time("since", r.o.Since), zap.String("inventory", r.o.Inventory), zap.Bool("dryRun", r.o.DryRun))
	if r.o.Inventory != "" {
		return r.inventory(ctx)
	}
	return r.list(ctx)
}

func (r *run) report() {
	if r.Progress != nil {
		// Tasks report concurrently; the callback need not be safe for it.
		r.reporting.Lock()
		defer r.reporting.Unlock()
		r.Progress(r.c.snapshot())
	}
}

// taskPool runs tasks, which may add tasks, with at most n at once, until
// none is left or one fails.
type taskPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []func(context.Context) error
	pending int
	err     error
}

func newTaskPool() *taskPool {
	p := &taskPool{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// add queues a task; it may be called from a running task.
func (p *taskPool) add(t func(context.Context) error) {
	p.mu.Lock()
	p.queue = append(p.queue, t)
	p.pending++
	p.mu.Unlock()
	p.cond.Signal()
}

// run works through the tasks with n goroutines; it returns the first
// error, or ctx's.
func (p *taskPool) run(ctx context.Context, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		// Under the lock, so no worker misses it between its check and
		// its Wait.
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				p.mu.Lock()
				for len(p.queue) == 0 && p.pending > 0 && ctx.Err() == nil {
					p.cond.Wait()
				}
				if len(p.queue) == 0 || ctx.Err() != nil {
					p.mu.Unlock()
					p.cond.Broadcast()
					return
				}
				t := p.queue[0]
				p.queue = p.queue[1:]
				p.mu.Unlock()
				err := t(ctx)
				p.mu.Lock()
				p.pending--
				if err != nil && p.err == nil {
					p.err = err
					cancel()
				}
				p.mu.Unlock()
				p.cond.Broadcast()
			}
		})
	}
	wg.Wait()
	if p.err != nil {
		return p.err
	}
	return ctx.Err()
}
