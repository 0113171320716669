package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/worker"
)

// A task killed while it uploads an archive (SIGKILL, OOM, a host lost)
// leaves a multipart upload in staging whose parts are billed until a
// lifecycle rule removes them a day later. Each task therefore holds a
// lease in the table, renewed every leaseEvery, and names its archives
// after itself (<time>-<task>-<random>); every leaseEvery it aborts the
// uploads of its rules whose task's lease has run out. Without the table it
// sweeps nothing (the lifecycle rule still does).
//
// Leases and upload ages are read with the reader's clock against times
// another machine's clock wrote (a lease's expiry, S3's Initiated): both
// allow for awsapi.ClockSkew, so that a task whose clock is minutes off
// neither sweeps live uploads of others nor has its own swept.
const (
	leaseEvery = 20 * time.Second
	leaseTTL   = 3*leaseEvery + awsapi.ClockSkew
	// sweepMinAge spares uploads just started, whatever their task.
	sweepMinAge = time.Minute + awsapi.ClockSkew
	// sweepOldFormat is when an upload whose key names no task (an archive
	// of an older xrc) counts as abandoned.
	sweepOldFormat = 24 * time.Hour
)

// Leases is the task liveness the sweeper relies on (package stats).
type Leases interface {
	Renew(ctx context.Context, task string, ttl time.Duration) error
	Alive(ctx context.Context, task string) (bool, error)
}

// newTaskID names this task in its archive ids and its lease.
func newTaskID() string {
	// 64 bits: two live tasks of one id would each abort the other's
	// staging uploads as their own abandoned ones.
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// taskOf returns the task an archive's staging key names ("" for keys of
// archives written before tasks were named).
func taskOf(key string) string {
	_, id, err := manifest.ParseStagingKey(key)
	if err != nil {
		return ""
	}
	parts := strings.Split(id, "-")
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

// sweepLoop renews this task's lease and sweeps abandoned uploads every
// leaseEvery until ctx ends. Renewals keep their own time: behind a long
// sweep (a slow listing, many uploads to abort) the lease would lapse, and
// other tasks would abort this one's live uploads.
func (w *Worker) sweepLoop(ctx context.Context) {
	if w.Leases == nil {
		return
	}
	w.renew(ctx)
	go w.every(ctx, func() { w.renew(ctx) })
	w.sweep(ctx)
	w.every(ctx, func() { w.sweep(ctx) })
}

// every calls f every leaseEvery until ctx ends.
func (w *Worker) every(ctx context.Context, f func()) {
	t := w.Clock.NewTicker(leaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			f()
		}
	}
}

func (w *Worker) renew(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	start := w.Clock.Now()
	if err := w.Leases.Renew(rctx, w.task, leaseTTL); err != nil {
		if ctx.Err() != nil {
			return // stopping (a Lambda environment retired): no failure
		}
		if worker.Frozen(w.Clock, start, statsTimeout) {
			w.Log.Info("renewing this task's lease was cut by a freeze of its environment; renewed at the next tick", zap.Error(err))
			return
		}
		w.Metrics.Errors.WithLabelValues("lease").Inc()
		w.Log.Warn("renewing this task's lease", zap.Error(err))
	}
}

// sweep aborts the staging uploads of this worker's rules that belong to
// no live task. It lists the bucket's uploads whole and filters them by
// rule prefix itself: MinIO (and other S3-compatible stores) take a prefix
// here only as an exact key.
func (w *Worker) sweep(ctx context.Context) {
	now := w.Clock.Now()
	alive := map[string]bool{w.task: true}
	in := &s3.ListMultipartUploadsInput{Bucket: &w.staging}
	for {
		out, err := w.S3.ListMultipartUploads(ctx, in)
		if err != nil && ctx.Err() != nil {
			return // stopping: no failure (as the target's sweep)
		}
		if err != nil {
			w.Metrics.Errors.WithLabelValues("sweep").Inc()
			w.Log.Warn("listing staging uploads", zap.Error(err))
			return
		}
		for _, u := range out.Uploads {
			key := aws.ToString(u.Key)
			if u.Initiated == nil || now.Sub(*u.Initiated) < sweepMinAge || !w.ours(key) {
				continue
			}
			task := taskOf(key)
			switch {
			case task == w.task && w.uploads.live(aws.ToString(u.UploadId)):
				continue
			case task == "" && now.Sub(*u.Initiated) < sweepOldFormat:
				continue
			case task != "" && task != w.task:
				live, ok := alive[task]
				if !ok {
					lctx, cancel := context.WithTimeout(ctx, statsTimeout)
					start := w.Clock.Now()
					live, err = w.Leases.Alive(lctx, task)
					cancel()
					if err != nil && (ctx.Err() != nil || worker.Frozen(w.Clock, start, statsTimeout)) {
						return // stopping, or frozen: swept at the next tick
					}
					if err != nil {
						w.Metrics.Errors.WithLabelValues("sweep").Inc()
						w.Log.Warn("reading a task's lease: not sweeping", zap.String("task", task), zap.Error(err))
						return
					}
					alive[task] = live
				}
				if live {
					continue
				}
			}
			_, err := w.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &w.staging, Key: u.Key, UploadId: u.UploadId})
			if err != nil && !awsapi.IsNotFound(err) {
				w.Metrics.Errors.WithLabelValues("sweep").Inc()
				w.Log.Warn("aborting an abandoned staging upload", zap.String("key", key), zap.Error(err))
				continue
			}
			w.Log.Info("aborted a staging upload its task abandoned", zap.String("key", key), zap.String("task", task),
				zap.Time("initiated", *u.Initiated))
		}
		next := [2]string{aws.ToString(out.NextKeyMarker), aws.ToString(out.NextUploadIdMarker)}
		if !aws.ToBool(out.IsTruncated) || next == [2]string{} || next == [2]string{aws.ToString(in.KeyMarker), aws.ToString(in.UploadIdMarker)} {
			return // the end, or a store that repeats its markers (or gives none): listing again would never end
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// ours reports whether a staging key is an archive of one of this
// worker's rules.
func (w *Worker) ours(key string) bool {
	for _, r := range w.rules {
		if strings.HasPrefix(key, manifest.StagingPrefix(r.ID)) {
			return true
		}
	}
	return false
}

// uploads tracks this task's multipart uploads in flight, so the sweeper
// never aborts one.
type uploads struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (u *uploads) add(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ids == nil {
		u.ids = map[string]bool{}
	}
	u.ids[id] = true
}

func (u *uploads) remove(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.ids, id)
}

func (u *uploads) live(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ids[id]
}

// trackingS3 records the multipart uploads made through it.
type trackingS3 struct {
	S3API
	u *uploads
}

func (t trackingS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	out, err := t.S3API.CreateMultipartUpload(ctx, in, o...)
	if err == nil {
		t.u.add(aws.ToString(out.UploadId))
	}
	return out, err
}

func (t trackingS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := t.S3API.CompleteMultipartUpload(ctx, in, o...)
	t.u.remove(aws.ToString(in.UploadId))
	return out, err
}

func (t trackingS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, o ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	out, err := t.S3API.AbortMultipartUpload(ctx, in, o...)
	t.u.remove(aws.ToString(in.UploadId))
	return out, err
}
