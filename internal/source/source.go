// Package source is the source-region worker: it turns S3 event messages
// from a rule's SQS queue into compressed archives in the staging bucket.
//
// One object's way through the package: Handle (this file) matches its
// event to a rule and hands it to the batcher (batch.go); a closed batch
// is packed (pack.go): planned (plan.go: events collapsed per key, HEAD and
// tags), each object's level chosen (level.go), its bytes fetched (fetch.go)
// into the archive that is streamed to staging (stage.go); then every event
// is settled (settle.go) and its message acknowledged by the runtime
// (package worker).
//
// The guarantee it keeps: a message is deleted only after every object it
// names is in an archive durably stored in staging (or was deliberately
// skipped because the object is gone or was overwritten since the event).
// Everything else is released back to the queue and, after the queue's
// maxReceiveCount, lands in its dead-letter queue.
package source

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/worker"
)

// S3API is the part of the S3 client the source worker uses.
// *s3.Client satisfies it.
type S3API interface {
	transfermanager.S3APIClient // head, get and (multipart) put
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, optFns ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Deps are the worker's collaborators, built by the caller.
type Deps struct {
	Config  *config.Config
	Region  string       // the source region this worker serves
	RuleIDs []string     // rules to serve; empty means every rule of Region
	Queue   *queue.Queue // the rules' event queue
	S3      S3API        // client for Region: watched buckets and staging
	Log     *zap.Logger
	Metrics *Metrics
	Health  *health.Check
	Clock   clockwork.Clock // default: the real clock
	// Protector protects the task from ECS scale-in while it holds long
	// work (worker.Options.ProtectAfter); nil: never.
	Protector worker.Protector
	// Stats is the fleet's compression statistics (package stats); nil
	// keeps learning local to this task.
	Stats Stats
	// Leases lets tasks abort the staging uploads of dead tasks (sweep.go);
	// nil sweeps nothing.
	Leases Leases
	// PureGo compresses with the pure-Go encoder even where libzstd is
	// built in.
	PureGo bool
	// Direct holds an S3 client for each region the rules deliver to
	// directly (config.Region.Direct, DirectClients): the worker copies
	// each archive it stages there.
	Direct map[string]S3API
	// RelayWait, if set, replaces RelayBackoff (tests).
	RelayWait func(n int) time.Duration
	// UploadMemory bounds the part buffers of the staging uploads in
	// flight at once (0: half the Go memory limit, GOMEMLIMIT; none
	// without one). A part is at least 8 MiB, and 1/9,000 of the archive
	// (S3 takes 10,000 parts): a TiB-sized object needs parts of 100 MiB
	// and more.
	UploadMemory int64
}

// Worker is a source worker.
type Worker struct {
	Deps
	rules       []*config.Rule
	staging     string
	writers     sync.Pool
	runtime     *worker.Runtime
	levels      *levels
	stopRefresh context.CancelFunc
	task        string              // names this task's archives and lease
	uploads     uploads             // this task's staging uploads in flight
	buffers     buffers             // of prefetched objects
	chunks      sync.Pool           // of arena chunks (*[]byte)
	uploadMem   *semaphore.Weighted // nil: unbounded (UploadMemory)
	relaying    *semaphore.Weighted // relay messages copying at once (Relay)
	relaysHeld  atomic.Int32        // relay messages held (handleRelay)
	downMu      sync.Mutex
	down        map[string]time.Time // direct regions whose copies are left to relays until then
	saidSSE     sync.Map             // "rule/to" said at warn once (encryptionNotCarried)

	// prefetchRoom and inlineRoom bound each builder's objects read
	// ahead (readAhead).
	prefetchRoom, inlineRoom int64

	items    chan Item
	batches  chan *batch
	inFlight sync.WaitGroup // batcher and builders
}

// Item is one object event on its way into an archive. Done is called once
// with its outcome: nil when the object is durably in staging (or
// deliberately skipped), an error otherwise.
type Item struct {
	Ref  events.ObjectRef
	Rule *config.Rule
	Sent time.Time // when its message entered the queue: how far behind the worker is
	Done func(error)
	// Staged, if set, hears what the staging of the item's object
	// added to its rule's statistics (the first item of each object's
	// only): if the item's message is then not acknowledged, the object
	// is staged again, and Restaged says so (stats.Delta.Restaged).
	Staged func(rule string, d stats.Delta)
}

// Receive settings.
const (
	// receivers is how many long polls run at once.
	receivers = 2
	// builders is how many archives are built at once: one compresses while
	// the other waits on S3, which is what two vCPUs can use.
	builders = 2
)

// New checks deps and returns a worker.
func New(d Deps) (*Worker, error) {
	region, ok := d.Config.Region(d.Region)
	if !ok || !region.IsSource() {
		return nil, fmt.Errorf("region %q is not a source region in the config", d.Region)
	}
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	w := &Worker{Deps: d, staging: region.StagingBucket, task: newTaskID(), relaying: semaphore.NewWeighted(builders), down: map[string]time.Time{}}
	w.S3 = trackingS3{S3API: d.S3, u: &w.uploads}
	if w.UploadMemory == 0 {
		if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
			w.UploadMemory = limit / 2
		}
	}
	if w.UploadMemory > 0 {
		w.uploadMem = semaphore.NewWeighted(w.UploadMemory)
	}
	w.prefetchRoom, w.inlineRoom = readAhead(w.UploadMemory)
	w.writers.New = func() any { return archive.NewWriter(archive.WriterOptions{PureGo: d.PureGo}) }
	w.rules = served(d.Config, d.Region, d.RuleIDs)
	if len(w.rules) == 0 {
		return nil, fmt.Errorf("no rules to serve in region %s (asked for %v)", d.Region, d.RuleIDs)
	}
	for _, r := range w.rules {
		for _, reg := range d.Config.DirectRegions(r) {
			if d.Direct[reg.Name] == nil {
				return nil, fmt.Errorf("rule %s delivers to direct region %s: no S3 client for it", r.ID, reg.Name)
			}
		}
	}
	w.levels = newLevels(w)
	// Hold up to two full batches per rule: one being packed while the
	// next fills. Beyond that, messages wait in SQS.
	held := 0
	var window time.Duration
	for _, r := range w.rules {
		held += 2 * r.Batch.MaxObjects
		window = max(window, r.Batch.MaxAge.D())
	}
	s := d.Config.Settings.Worker
	w.runtime = worker.New(worker.Options{Queue: d.Queue, Receivers: receivers, MaxHeld: max(held, 100),
		Visibility: s.VisibilityTimeout.D(), ReceiveWait: s.ReceiveWait.D(), Drain: s.DrainTimeout.D(), MaxReceiveCount: s.MaxReceiveCount, Log: d.Log, Metrics: d.Metrics.Metrics,
		Health: d.Health, Clock: d.Clock,
		// Long work: held past its batch's window by more than half the
		// drain (a large object, an archive slow to stage), which a stop
		// would likely cut.
		Protector: d.Protector, ProtectAfter: window + s.DrainTimeout.D()/2})
	return w, nil
}

// Run receives and archives until ctx ends, then drains: it stops receiving,
// closes the open batches and gives in-flight archives the configured drain
// time. Whatever is not staged by then is released, never acknowledged.
func (w *Worker) Run(ctx context.Context) error {
	aw := w.writers.Get().(*archive.Writer)
	w.Log.Info("archiving", zap.String("encoder", aw.Encoder()), zap.Int("rules", len(w.rules)), zap.String("staging", w.staging))
	w.writers.Put(aw)
	return w.runtime.Run(ctx, w)
}

// Start implements worker.Role: it starts the batcher and the builders on
// the work context, which outlives the stop signal by the drain time.
func (w *Worker) Start(work context.Context) {
	w.Prepare(work)
	w.items = make(chan Item, 20)
	w.batches = make(chan *batch)
	w.inFlight.Go(func() { w.batchLoop(w.items, w.batches) })
	for range builders {
		w.inFlight.Go(func() {
			for b := range w.batches {
				w.Pack(work, b.rule, b.items, b.closed)
			}
		})
	}
}

// Drain implements worker.Role: the open batches are closed and packed
// within the drain time.
func (w *Worker) Drain(work context.Context) {
	close(w.items)
	w.inFlight.Wait()
	w.stopRefresh()
	// Write and publish what this task learnt before it goes: a task that
	// lives shorter than a refresh period would otherwise never tell.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(work), 3*statsTimeout)
	defer cancel()
	w.levels.flush(ctx, w.Clock.Now(), true)
	w.levels.refresh(ctx, w.Clock.Now())
}

func (w *Worker) pureGo() bool { return w.PureGo }

// errStopping settles an event that never reached a batch because the
// worker is stopping: its message must not be acknowledged.
var errStopping = errors.New("worker stopping")

// Handle implements worker.Role: it matches each event of m to the rules
// and queues it for batching. m is settled once every event is (settle.go).
func (w *Worker) Handle(stop context.Context, m *worker.Message) {
	t := &tracked{w: w, msg: m}
	if r := m.Events.Relay; r != nil {
		w.handleRelay(stop, m, *r)
		return
	}
	var mine []Item
	covered := false
	for _, ref := range m.Events.Refs {
		items, matched := w.Match(ref, m.SentAt, t.settle, m.Log())
		for i := range items {
			items[i].Staged = t.record
		}
		if !matched {
			m.Log().Debug("no rule covers object; acknowledging", zap.String("bucket", ref.Bucket), zap.String("key", ref.Key))
		}
		covered = covered || matched
		mine = append(mine, items...)
	}
	if len(mine) == 0 {
		w.Metrics.Messages.WithLabelValues(NothingToDo(m.Events, covered)).Inc()
		m.Ack()
		return
	}
	t.pending = len(mine)
	for _, it := range mine {
		select {
		case w.items <- it:
		case <-stop.Done():
			// Draining: the batcher flushes what it has; this event never
			// made it, so its message must not be acknowledged.
			it.Done(errStopping)
		}
	}
}

// served returns the rules a worker of region serves: those in ruleIDs,
// or every one there when it is empty.
func served(cfg *config.Config, region string, ruleIDs []string) []*config.Rule {
	var rules []*config.Rule
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		if r.SourceRegion == region && (len(ruleIDs) == 0 || slices.Contains(ruleIDs, r.ID)) {
			rules = append(rules, r)
		}
	}
	return rules
}

// DirectClients returns a client for each direct region (config
// Region.Direct) a rule of region in ruleIDs (empty: every rule there)
// delivers to, made by s3 (awsapi.CheckedS3, which fails when the
// region's credentials cannot be read). Only the worker's own rules: its
// role may read only their credentials, and another rule's region must
// not keep it from starting.
func DirectClients(cfg *config.Config, region string, ruleIDs []string, s3 func(config.Region) (S3API, error)) (map[string]S3API, error) {
	m := map[string]S3API{}
	for _, r := range served(cfg, region, ruleIDs) {
		for _, reg := range cfg.DirectRegions(r) {
			if m[reg.Name] == nil {
				c, err := s3(reg)
				if err != nil {
					return nil, fmt.Errorf("rule %s delivers to direct region %s: %w", r.ID, reg.Name, err)
				}
				m[reg.Name] = c
			}
		}
	}
	return m, nil
}
