// Package deliver is the target-region worker: it delivers the objects of
// the staging archives S3 Replication brings into its region to that
// region's destination buckets.
//
// Guarantees:
//   - The target decides; the manifest only proposes. Every destination,
//     storage class, KMS key and delete comes from this worker's own config
//     (resolve.go): an archive whose manifest names a rule, bucket, key or
//     delete the config does not map it to is rejected whole and nothing is
//     written from it.
//   - Nothing unverified is written: the archive is read once, verified as
//     it goes (zstd frames, tar layout, each object's size and SHA-256), and
//     an object is made visible only after its own digest matched (held in
//     memory, or a multipart upload completed only then). Deletes wait for
//     the end of the whole archive.
//   - A destination key is only replaced by a newer source write: each
//     object carries its provenance in x-amz-meta-xrc-* metadata, writes are
//     conditional on the ETag read, and a propagated delete leaves a
//     tombstone that an older create cannot pass.
//   - A delete removes only an object xrc wrote, and only the version it
//     read (If-Match on its ETag).
//   - The message is acknowledged only once every object for this region
//     is durably written, and the staging archive deleted only once it is
//     in the ledger too (a ledger write that fails leaves it in staging,
//     counted); otherwise the message is released, retried, and after
//     maxReceiveCount lands in the DLQ. An archive that is gone from staging
//     is acknowledged only if the ledger says it was delivered.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
	"github.com/xrc-dev/xrc/internal/worker"
)

// S3API is the part of the S3 client the target worker uses; *s3.Client
// satisfies it.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
	PutObjectTagging(ctx context.Context, in *s3.PutObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error)
	DeleteObjectTagging(ctx context.Context, in *s3.DeleteObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectTaggingOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, optFns ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, optFns ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// Tombstones remembers propagated deletes (package tombstone).
type Tombstones interface {
	Get(ctx context.Context, bucket, key string) (tombstone.Tombstone, bool, error)
	Put(ctx context.Context, t tombstone.Tombstone) error
}

// Ledger records delivered archives (package ledger).
type Ledger interface {
	Record(ctx context.Context, e ledger.Entry) error
	Get(ctx context.Context, archiveID, region string) (ledger.Entry, bool, error)
}

// Uploads remembers the multipart uploads of large members, so a delivery
// cut short resumes them (package uploads).
type Uploads interface {
	Put(ctx context.Context, u uploads.Upload, replaced string) error
	Get(ctx context.Context, u uploads.Upload) (uploads.Upload, bool, error)
	Delete(ctx context.Context, u uploads.Upload) error
	List(ctx context.Context, region, stagingKey string) ([]uploads.Upload, error)
}

// Deps are the worker's collaborators.
type Deps struct {
	Config     *config.Config
	Region     string       // the target region served
	Queue      *queue.Queue // the region's target queue
	S3         S3API        // client for Region: staging and destination buckets
	Tombstones Tombstones
	Ledger     Ledger
	Uploads    Uploads
	Log        *zap.Logger
	Metrics    *Metrics
	Health     *health.Check
	Clock      clockwork.Clock // default: the real clock
	// Protector protects the task from ECS scale-in while it holds long
	// work (worker.Options.ProtectAfter); nil: never.
	Protector worker.Protector
	// UploadMemory bounds the buffers of the objects written at once (0:
	// half the Go memory limit, GOMEMLIMIT; none without one): a small
	// object's whole body, a large one's five parts a destination (parts
	// grow past 16 MiB for members above 140 GiB).
	UploadMemory int64
}

// Worker is a target worker.
type Worker struct {
	Deps
	staging    string
	runtime    *worker.Runtime
	overwrites overwrites
	// guess: the region's S3 refuses a PUT If-None-Match on an existing
	// key, so a new key can be written without reading it first.
	guess bool
	// awsBudget: the region's S3 is AWS's, which counts metadata keys and
	// values, not their header names (maxMetadata).
	awsBudget bool
	// sourceSums: the region's S3 takes the source object's own checksum
	// with a write (config.Region.SourceChecksums; checksum.go).
	sourceSums bool
	uploadMem  *semaphore.Weighted // nil: unbounded (UploadMemory)
	// manifestMem bounds the manifests decoded and held at once (nil:
	// unbounded): half of UploadMemory, outside it (a delivery holding
	// its manifest while it waits for part buffers must not keep
	// another's from being freed).
	manifestMem *semaphore.Weighted
	manifestCap int64
	background  sync.WaitGroup // the upload sweep
	// buckets holds the destination buckets found there (bucketThere).
	buckets sync.Map
}

// archivesAtOnce bounds concurrent archives; each already overlaps its
// object writes.
const archivesAtOnce = config.TargetArchivesAtOnce

// CheckRegion reports whether cfg has name as a target region: a worker
// checks it before anything it would look up there (its queue, its table)
// fails less clearly.
func CheckRegion(cfg *config.Config, name string) error {
	region, ok := cfg.Region(name)
	if !ok || !region.IsTarget() {
		var targets []string
		for _, r := range cfg.Settings.Regions {
			if r.IsTarget() {
				targets = append(targets, r.Name)
			}
		}
		return fmt.Errorf("region %q is not a target region in the config (its target regions: %s)", name, strings.Join(targets, ", "))
	}
	return nil
}

// New checks deps and returns a worker.
func New(d Deps) (*Worker, error) {
	if err := CheckRegion(d.Config, d.Region); err != nil {
		return nil, err
	}
	region, _ := d.Config.Region(d.Region)
	if d.Tombstones == nil || d.Ledger == nil || d.Uploads == nil {
		return nil, errors.New("deliver: tombstones, ledger and uploads are required")
	}
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	w := &Worker{Deps: d, staging: region.StagingBucket, guess: region.ConditionalWrites(), awsBudget: region.S3Endpoint == "",
		sourceSums: region.SourceChecksums()}
	if w.UploadMemory == 0 {
		if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
			w.UploadMemory = limit / 2
		}
	}
	if w.UploadMemory > 0 {
		w.uploadMem = semaphore.NewWeighted(w.UploadMemory)
		w.manifestCap = w.UploadMemory / 2
		w.manifestMem = semaphore.NewWeighted(w.manifestCap)
	}
	s := d.Config.Settings.Worker
	w.runtime = worker.New(worker.Options{Queue: d.Queue, ReceiveMax: 1, MaxHeld: archivesAtOnce, Visibility: s.VisibilityTimeout.D(), ReceiveWait: s.ReceiveWait.D(),
		Drain: s.DrainTimeout.D(), MaxReceiveCount: s.MaxReceiveCount, Log: d.Log, Metrics: d.Metrics.Metrics, Health: d.Health, Clock: d.Clock,
		// Long work: an archive held for half the drain, which a stop
		// would likely cut.
		Protector: d.Protector, ProtectAfter: s.DrainTimeout.D() / 2})
	return w, nil
}

// Run receives and delivers archives until ctx ends, then gives archives in
// flight the drain time. Unfinished messages are released.
func (w *Worker) Run(ctx context.Context) error {
	w.Log.Info("target worker starting", zap.String("staging", w.staging))
	err := w.runtime.Run(ctx, w)
	// The work context Start got has ended: the sweep stops between
	// uploads, but an abort under way has its own ten seconds, which ECS's
	// stop may not have left. Not waited for past sweepStopWait: its record
	// stays for the next sweep.
	done := make(chan struct{})
	go func() {
		w.background.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-w.Clock.After(sweepStopWait):
		w.Log.Info("stopping while the upload sweep still aborts an upload; the next sweep finishes it")
	}
	return err
}

// sweepStopWait bounds the wait for the upload sweep at the stop.
const sweepStopWait = 2 * time.Second

// Start implements worker.Role: it starts the sweep of uploads nobody will
// resume.
func (w *Worker) Start(work context.Context) { w.background.Go(func() { w.sweepLoop(work) }) }

// Drain implements worker.Role: archives run inside Handle, which the
// runtime waits for.
func (w *Worker) Drain(context.Context) {}

// Handle implements worker.Role: it delivers every archive m announces,
// then acknowledges or releases m.
func (w *Worker) Handle(_ context.Context, m *worker.Message) {
	ctx := m.Context()
	if r := m.Events.Relay; r != nil {
		// A source's own request (events.Relay): this queue is wired to
		// a source's, and only the DLQ may keep what it holds.
		w.Metrics.Messages.WithLabelValues("invalid").Inc()
		m.Log().Error("a source's relay message on a target queue: releasing it towards the dead-letter queue", zap.String("key", r.Key), zap.String("region", r.Region))
		m.Release(0)
		return
	}
	var failed error
	permanent := true
	// Keys whose uploads are not this message's to abandon: another
	// bucket's, or an archive rejected (it wrote nothing: any upload
	// recorded under its key is the genuine archive's).
	notOurs := map[string]bool{}
	for _, ref := range m.Events.Refs {
		// Our own cleanup, a replicated delete marker; or a tag set on an
		// archive (the delivered tag while replication still copies it,
		// on a store whose ObjectCreated:* notifications include
		// tagging): its bytes are what was delivered, and delivering
		// them again would tag it again, without end.
		if ref.Removed() || ref.Retagged() {
			w.Metrics.Messages.WithLabelValues("ignored").Inc()
			continue
		}
		if err := CheckStaging(w.staging, ref); err != nil {
			failed = errors.Join(failed, err)
			notOurs[ref.Key] = true
			continue
		}
		if err := w.DeliverVersion(ctx, ref.Bucket, ref.Key, ref.VersionID); err != nil {
			failed = errors.Join(failed, err)
			permanent = permanent && Permanent(err)
			notOurs[ref.Key] = notOurs[ref.Key] || errors.Is(err, ErrRejected)
		}
	}
	last := m.ReceiveCount >= w.Config.Settings.Worker.MaxReceiveCount
	// The lines below settle the message: each names its archive, so that
	// filter archive="<id>" finds why it went to the DLQ.
	log := m.Log().With(archiveFields(m.Events.Refs)...)
	switch {
	case failed == nil:
		m.Ack()
	case m.SentAgain():
		// The stop's release sent it again (its work ran past the
		// budget): nothing here settles it.
		log.Info("archive's delivery ended after the stop sent its message again", zap.Error(failed))
	case errors.Is(context.Cause(ctx), worker.ErrReceiptLost):
		// On its last receive, the runtime said at error that the
		// message is bound for the DLQ when it lost the receipt.
		log.Info("receipt lost: archive abandoned to its next delivery", zap.Error(failed))
	case ctx.Err() != nil:
		// The drain time is over: nothing is wrong with the archive, so
		// hand it to another task now rather than after the visibility
		// timeout, and do not report the shutdown as a failure, unless it
		// was the message's last receive: then it is sent again as a new
		// message at the stop (worker.Message.SendAgainAtStop; its
		// uploads are resumed by that one's delivery), unless that was
		// done maxReceiveCount times.
		if last && !Permanent(failed) && m.SendAgainAtStop() {
			log.Info("shutting down on the message's last receive: archive abandoned; to be sent again as a new message", zap.Error(failed))
			return
		}
		if last {
			log.Error("archive not delivered: message bound for the DLQ", zap.Bool("cut", true), zap.String("cause", "stopping"), zap.String("kind", failureKind(failed)), zap.Error(failed))
		} else {
			log.Info("shutting down: archive abandoned; message released", zap.Error(failed))
		}
		m.Release(0)
	default:
		delay := RetryDelay(failed, m.ReceiveCount, w.Config.Settings.Worker.VisibilityTimeout.D())
		if permanent {
			// A corrupt, rejected or vanished archive will not heal: let
			// it reach the DLQ quickly.
			delay = 0
		}
		if (permanent || last) && !Waiting(failed) {
			// No later delivery will resume its uploads (a redrive from the
			// DLQ starts them over). Not when another delivery of the
			// archive holds them (a duplicate event): they are its own.
			for _, ref := range m.Events.Refs {
				if !notOurs[ref.Key] {
					w.Abandon(context.WithoutCancel(ctx), ref.Key) // all of them, even past the drain
				}
			}
		}
		switch {
		case permanent || last:
			// The line an operator redrives from.
			log.Error("archive not delivered: message bound for the DLQ", zap.Bool("permanent", permanent), zap.Duration("retryIn", delay), zap.String("kind", failureKind(failed)), zap.Error(failed))
		case Waiting(failed):
			log.Info("archive waits for another delivery or a write; message released for retry", zap.Duration("retryIn", delay), zap.Error(failed))
		default:
			log.Warn("archive not delivered; message released for retry", zap.Duration("retryIn", delay), zap.String("kind", failureKind(failed)), zap.Error(failed))
		}
		m.Release(delay)
	}
}

// FailureFields name, for the line that settles a message whose delivery
// failed, the archives it announces and the kind of failure: filter
// archive="<id>" finds it, stats count() by kind sums them, on Fargate
// and Lambda alike.
func FailureFields(refs []events.ObjectRef, err error) []zap.Field {
	return append(archiveFields(refs), zap.String("kind", failureKind(err)))
}

// CheckStaging refuses (ErrRejected, towards the DLQ) an archive event of
// a bucket that is not staging, this region's staging bucket: a queue fed by a
// bucket the config does not name (its name changed or mistyped) must not
// pass every archive by with a warning while their objects never arrive.
func CheckStaging(staging string, ref events.ObjectRef) error {
	if ref.Bucket == staging {
		return nil
	}
	return fmt.Errorf("%w: event of s3://%s/%s: not this region's staging bucket %s (settings.regions[].stagingBucket, and the queue's notifications)",
		ErrRejected, ref.Bucket, ref.Key, staging)
}

// failureKind names what failed a delivery, for the line that settles its
// message: the archive (invalid, missing) or a write's kind (errorKind).
func failureKind(err error) string {
	switch {
	case errors.Is(err, manifest.ErrUnsupported):
		return "unsupported" // an older target than the archive's source
	case errors.Is(err, archive.ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrArchiveMissing):
		return "missing"
	case errors.Is(err, ErrRetagBeforeWrite):
		return "retag_wait"
	case errors.Is(err, ErrRejected):
		return "rejected" // the config does not send it there: no write's fault
	case errors.As(err, new(*stagingReadError)):
		return "staging_read"
	}
	return errorKind(err)
}

// archiveFields names the staging archives refs announce: bucket and key,
// with the rule and archive id a staging key gives.
func archiveFields(refs []events.ObjectRef) []zap.Field {
	f := worker.RefFields(refs)
	if len(refs) == 1 {
		if rule, id, err := manifest.ParseStagingKey(refs[0].Key); err == nil {
			f = append(f, zap.String("rule", rule), zap.String("archive", id))
		}
	}
	return f
}

// Waiting reports a failure made only of expected waits: every object
// that failed is being written by another delivery of its archive
// (uploads.ErrRecorded), or is a retag waiting for its write
// (ErrRetagBeforeWrite). Neither leaves uploads of this delivery to
// abandon, and the uploads another delivery holds are its own.
func Waiting(err error) bool {
	var only func(error) bool
	only = func(err error) bool {
		switch e := err.(type) {
		case nil:
			return false
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				if !only(e) {
					return false
				}
			}
			return true
		case interface{ Unwrap() error }:
			return waiting(err) || only(e.Unwrap())
		}
		return waiting(err)
	}
	return only(err)
}

func waiting(err error) bool { return err == uploads.ErrRecorded || err == ErrRetagBeforeWrite }

// RetryDelay is how long a message whose delivery failed with err waits
// before its next try: the worker's backoff, but a visibility timeout when
// a retag waits for its write, whose own archive may be minutes behind (S3
// Replication does not keep two archives in order).
func RetryDelay(err error, receiveCount int, visibility time.Duration) time.Duration {
	delay := worker.Backoff(receiveCount)
	if errors.Is(err, ErrRetagBeforeWrite) {
		delay = max(delay, visibility)
	}
	return delay
}

// Permanent reports an error no retry can fix: the archive is invalid,
// rejected by this worker's config, gone from staging undelivered, holds
// a member too large for this worker's memory, or one whose bytes (their
// SHA-256 checked) do not match the source checksum its manifest gives.
func Permanent(err error) bool {
	return errors.Is(err, archive.ErrInvalid) || errors.Is(err, ErrRejected) || errors.Is(err, ErrArchiveMissing) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, ErrChecksum)
}

// ErrTooLarge marks a member whose multipart uploads would need more
// memory for their parts than the worker may give them (UploadMemory):
// retried on a worker of this size it would run it out of memory, and
// every archive it holds with it. Its archive goes to the DLQ, named; a
// redrive after the target is given more memory delivers it.
var ErrTooLarge = errors.New("member too large for this worker's memory")
