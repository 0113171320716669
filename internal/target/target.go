// Package target is the target-region worker: it takes the staging archives
// S3 Replication brings into its region and writes their objects into the
// destination buckets of that region.
//
// Guarantees:
//   - An archive is verified end to end (zstd frames, tar layout, every
//     object's size and SHA-256) before anything is written from it, so a
//     corrupt archive writes nothing anywhere.
//   - A destination key is only replaced by a newer source write: each
//     object carries its provenance (source sequencer, version, archive) in
//     x-amz-meta-xrc-* metadata, and writes are conditional on the ETag read,
//     so racing workers and redeliveries cannot bring an older version back.
//   - The staging archive is deleted and its message acknowledged only once
//     every object for this region is durably written; otherwise the message
//     is released, retried, and after maxReceiveCount lands in the DLQ.
package target

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/drain"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/queue"
)

// S3API is the part of the S3 client the target worker uses; *s3.Client
// satisfies it.
type S3API interface {
	transfermanager.S3APIClient
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Deps are the worker's collaborators.
type Deps struct {
	Config  *config.Config
	Region  string       // the target region served
	Queue   *queue.Queue // the region's target queue
	S3      S3API        // client for Region: staging and destination buckets
	Log     *zap.Logger
	Metrics *Metrics
	Health  *health.Check
	Now     func() time.Time
}

// Worker is a running target worker.
type Worker struct {
	Deps
	staging string
	drain   time.Duration
	settler queue.Settler
}

// archivesAtOnce bounds concurrent archives; each already overlaps its
// object writes.
const archivesAtOnce = 2

// New checks deps and returns a worker.
func New(d Deps) (*Worker, error) {
	region, ok := d.Config.Region(d.Region)
	if !ok || !region.IsTarget() {
		return nil, fmt.Errorf("region %q is not a target region in the config", d.Region)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Worker{Deps: d, staging: region.StagingBucket, drain: d.Config.Settings.Worker.DrainTimeout.D(),
		settler: queue.Settler{Queue: d.Queue, Log: d.Log, Messages: d.Metrics.Messages, Errors: d.Metrics.Errors}}, nil
}

// Run receives and extracts archives until ctx ends, then waits up to the
// drain time for archives in flight. Unfinished messages are released.
func (w *Worker) Run(ctx context.Context) error {
	work, cancelWork := drain.Context(ctx, w.drain, func() {
		w.Log.Warn("drain time over: abandoning in-flight archives", zap.Duration("drain", w.drain))
	})
	defer cancelWork()
	hb, stopHB := context.WithCancel(work)
	defer stopHB()
	go w.Queue.Heartbeat(hb)

	slots := make(chan struct{}, archivesAtOnce)
	var wg sync.WaitGroup
	w.Log.Info("target worker receiving", zap.String("queue", w.Queue.URL()), zap.String("staging", w.staging))
	for ctx.Err() == nil {
		w.Health.Beat()
		// Only receive what we can start on, so messages wait in SQS (where
		// another task may take them) rather than here.
		if !w.acquire(ctx, slots) {
			continue
		}
		start := w.Now()
		msgs, err := w.Queue.Receive(ctx, 1, 20*time.Second)
		w.Metrics.ReceiveDuration.Observe(w.Now().Sub(start).Seconds())
		if err != nil || len(msgs) == 0 {
			<-slots
			if err != nil && ctx.Err() == nil {
				w.Metrics.Errors.WithLabelValues("receive").Inc()
				w.Log.Error("receiving messages", zap.Error(err))
				sleep(ctx, 5*time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			w.handle(work, msgs[0])
		}()
	}
	w.Log.Info("stopped receiving; draining", zap.Duration("drain", w.drain))
	wg.Wait()
	w.Log.Info("target worker stopped")
	return nil
}

// acquire waits for an archive slot. Waiting behind long archives is not
// being stuck, so it keeps the health check fed.
func (w *Worker) acquire(ctx context.Context, slots chan<- struct{}) bool {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case slots <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			w.Health.Beat()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// handle processes every archive a message announces, then acknowledges or
// releases it.
func (w *Worker) handle(ctx context.Context, m queue.Message) {
	parsed, ok := w.settler.Parse(ctx, m)
	if !ok {
		return
	}
	log := w.Log.With(zap.String("message", m.ID), zap.Int("receiveCount", m.ReceiveCount))
	var failed error
	permanent := true
	for _, ref := range parsed.Refs {
		if ref.Removed() || ref.Bucket != w.staging {
			// Our own cleanup, replicated delete markers, or a bucket this
			// worker does not serve.
			w.Metrics.Messages.WithLabelValues("ignored").Inc()
			continue
		}
		if err := w.process(ctx, ref); err != nil {
			failed = errors.Join(failed, err)
			permanent = permanent && errors.Is(err, archive.ErrInvalid)
		}
	}
	if failed == nil {
		w.settler.Ack(ctx, m)
		return
	}
	if ctx.Err() != nil {
		// The drain time is over: nothing is wrong with the archive, so
		// hand it to another task now rather than after the visibility
		// timeout, and do not report the shutdown as a failure.
		log.Warn("shutting down: archive abandoned; message released", zap.Error(failed))
		w.settler.Release(ctx, m, 0)
		return
	}
	delay := queue.Backoff(m.ReceiveCount)
	if permanent {
		// A corrupt archive will not heal: let it reach the DLQ quickly.
		delay = 0
	}
	log.Error("archive not completed; message released for retry", zap.Duration("retryIn", delay), zap.Error(failed))
	w.settler.Release(ctx, m, delay)
}
