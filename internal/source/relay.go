package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/worker"
)

// relay copies the archive just staged at key (version) to the staging
// bucket of each region rule delivers to directly (config.Region.Direct),
// which S3 Replication does not reach: another partition, an S3-compatible
// store. It reads the archive back from this region's staging, which
// costs no transfer, and streams it there in parts of part bytes (within
// the staging upload's memory, which is done with its own). Each region's
// staging bucket announces the archive to its target queue.
//
// A region whose copy still fails after relayAttempts, or whose copies
// failed in the last relayCooldown (not tried again here: a region that
// hangs would hold every archive's builder for minutes), is left to a
// relay message on the worker's own queue (events.Relay, Relay), retried
// on its own: one region down (a store's outage, its credentials rotated)
// must not fail the archive every other region has, restage it on each
// receive and send its objects' messages to the DLQ. So is a copy cut by
// the stop or, on Lambda, the invocation's deadline, which a hanging store
// outlasts. relay fails only when a relay message cannot be sent either.
func (w *Worker) relay(ctx context.Context, rule *config.Rule, key string, version *string, part int64, meta map[string]string) error {
	type handoff struct {
		reg   config.Region
		tries int
		err   error
		cut   bool // by the stop or the deadline, before or during its copy
	}
	var left []handoff
	cut := false
	for _, reg := range w.Config.DirectRegions(rule) {
		if cut || w.cooling(reg.Name) {
			left = append(left, handoff{reg: reg, cut: cut})
			continue
		}
		var err error
		waitCut := false // cut in the wait after a failure of the region's own
		attempt := 1
		for ; attempt <= relayAttempts; attempt++ {
			if err = w.relayTo(ctx, reg, key, version, part, meta); err == nil || ctx.Err() != nil || attempt == relayAttempts {
				break
			}
			w.Log.Warn("copying an archive to a direct region failed", zap.String("key", key), zap.String("region", reg.Name),
				zap.Int("attempt", attempt), zap.Error(err))
			select {
			case <-ctx.Done():
				waitCut = true
			case <-w.Clock.After(time.Duration(attempt) * time.Second):
			}
			if waitCut {
				break
			}
		}
		switch {
		case err == nil:
			w.Log.Info("archive copied to a direct region", zap.String("rule", rule.ID), zap.String("key", key),
				zap.String("region", reg.Name), zap.String("bucket", reg.StagingBucket))
			continue
		case ctx.Err() != nil:
			// A stop, or on Lambda the invocation's deadline (a store
			// that hangs outlasts one): the archive is staged and
			// replicated everywhere else, so this region and those not
			// yet tried are left to relay messages, sent past the cut.
			// Failing the archive would restage it on each receive and
			// send its objects to the DLQ for one region's trouble.
			cut = true
			if waitCut || attempt > 1 {
				// A try failed at the region before the cut (err, when
				// cut in the wait after it): that failure counts.
				w.Metrics.Errors.WithLabelValues("relay").Inc()
			}
			w.coolOn(reg.Name, err)
			left = append(left, handoff{reg, attempt, err, true})
			continue
		}
		w.Metrics.Errors.WithLabelValues("relay").Inc()
		w.coolOn(reg.Name, err)
		left = append(left, handoff{reg, attempt, err, false})
	}
	// Sent past a stop or a deadline: the archive is staged, and these
	// messages are what lets its own be acknowledged. Within
	// relaySendTimeout once cut: on Lambda, the cut's margin holds them.
	budget := requeueTimeout
	if ctx.Err() != nil {
		budget = relaySendTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	// Sent once every region was tried: a relay sent before another
	// region's copy cut the archive short would copy it twice. Each is
	// sent whatever the others' fate: a region with its message needs no
	// second copy.
	var unsent []error
	for _, h := range left {
		r := events.Relay{Region: h.reg.Name, Bucket: w.staging, Key: key, VersionID: aws.ToString(version)}
		if err := w.sendRelay(ctx, r, w.relayBackoff(0), 0); err != nil {
			if h.cut {
				// Not the stop's failure: the send's (a copy cut by the
				// stop is no failure of its own).
				unsent = append(unsent, fmt.Errorf("copy of s3://%s/%s to %s cut by the stop (%v), and its relay message not sent: %w", w.staging, key, h.reg.Name, h.err, err))
				continue
			}
			why := "not tried, the region's copies failing"
			if h.err != nil {
				why = fmt.Sprintf("failed (%v)", h.err)
			}
			unsent = append(unsent, fmt.Errorf("copy of s3://%s/%s to %s %s, and its relay message not sent: %w", w.staging, key, h.reg.Name, why, err))
			continue
		}
		fields := []zap.Field{zap.String("rule", rule.ID), zap.String("key", key), zap.String("region", h.reg.Name),
			zap.Int("tries", h.tries), zap.Duration("retryIn", w.relayBackoff(0))}
		switch {
		case h.cut:
			w.Log.Info("an archive's copy to a direct region was cut by the stop or the invocation's deadline: left to a relay message", append(fields, zap.Error(h.err))...)
			continue
		case h.err == nil:
			w.Log.Warn("the direct region's copies are failing: archive left to a relay message without trying", fields...)
			continue
		}
		w.Log.Warn("copying an archive to a direct region failed: left to a relay message, retried on its own", append(fields, zap.Error(h.err))...)
	}
	return errors.Join(unsent...)
}

// relaySendTimeout bounds an archive's relay messages, sent once it is
// staged, whatever the stop.
const relaySendTimeout = 5 * time.Second

// relayAttempts bounds the tries of one copy before it is left to a relay
// message.
const relayAttempts = 3

// relayCooldown is how long after a failed copy (inline or a relay
// message's) a region's copies are left to relay messages untried.
const relayCooldown = time.Minute

func (w *Worker) cooling(region string) bool {
	w.downMu.Lock()
	defer w.downMu.Unlock()
	return w.Clock.Now().Before(w.down[region])
}

// coolOn starts region's cooldown if err is the region's own (its S3 or
// store refused or did not answer), not this region's staging's.
func (w *Worker) coolOn(region string, err error) {
	var d *directFailure
	if !errors.As(err, &d) {
		return
	}
	w.downMu.Lock()
	defer w.downMu.Unlock()
	w.down[region] = w.Clock.Now().Add(relayCooldown)
}

// directFailure is a copy's failure at its direct region.
type directFailure struct{ err error }

func (d *directFailure) Error() string { return d.err.Error() }
func (d *directFailure) Unwrap() error { return d.err }

func (w *Worker) warm(region string) {
	w.downMu.Lock()
	defer w.downMu.Unlock()
	delete(w.down, region)
}

// sendRelay queues r on the worker's own queue, visible after delay.
func (w *Worker) sendRelay(ctx context.Context, r events.Relay, delay time.Duration, deferred int) error {
	body, err := events.EncodeRelay(r)
	if err != nil {
		return err
	}
	return w.Queue.Send(ctx, string(body), delay, deferred)
}

// RelayBackoff is how long a relay message waits before its receive
// number n+1 (n = 0: its first): a minute, doubling to 15 minutes. With
// the default maxReceiveCount of 8, receives come about 1, 3, 7, 15, 30,
// 45, 60 and 75 minutes after the copy failed: a direct region may be down
// about an hour and a quarter before its copies reach the DLQ (a redrive
// copies them then: their archives wait in staging stagingExpiryDays).
func RelayBackoff(n int) time.Duration {
	return min(15*time.Minute, time.Minute<<min(max(n, 0), 4))
}

func (w *Worker) relayBackoff(n int) time.Duration {
	if w.RelayWait != nil {
		return w.RelayWait(n)
	}
	return RelayBackoff(n)
}

// relayHoldMax bounds the relay messages a worker holds at once, waiting
// for their turn (at most builders copy) or copying: a DLQ redrive of
// hundreds must not take every message slot from the objects' events.
const relayHoldMax = 16

// handleRelay copies a relay message's archive beside the batches (Relay),
// settling the message. Past relayHoldMax held, a relay is sent again as
// a new message after its backoff (requeue), its receives kept: waiting
// for capacity spends none of the receives its failures may need. One
// still waiting for its turn when the worker stops is left for the next
// receive, or, on its last try, sent again: none reaches the DLQ untried.
func (w *Worker) handleRelay(stop context.Context, m *worker.Message, r events.Relay) {
	t := &tracked{w: w, msg: m, pending: 1}
	most := w.Config.Settings.Worker.MaxReceiveCount
	tries := RelayTries(r, m.ReceiveCount, most)
	if tries > most {
		// Its tries spent over several messages (sent again), its last
		// failure said at error: only the DLQ keeps it now, which its
		// own receives reach at once, the last of them said at error.
		lvl := zap.InfoLevel
		if m.ReceiveCount >= most {
			lvl = zap.ErrorLevel
		}
		m.Log().Log(lvl, "message not acknowledged: bound for the DLQ", append(FailureFields(m.Events, nil),
			zap.Int("tries", tries), zap.String("cause", "its copy was tried maxReceiveCount times"))...)
		m.Release(0)
		return
	}
	if w.relaysHeld.Add(1) > relayHoldMax {
		w.relaysHeld.Add(-1)
		w.requeue(m, r, m.Deferred, w.relayBackoff(max(tries, 1)), "relay message deferred: enough relays are held")
		return
	}
	w.inFlight.Go(func() {
		defer w.relaysHeld.Add(-1)
		turn, cancel := context.WithCancel(m.Context())
		defer cancel()
		defer context.AfterFunc(stop, cancel)()
		if err := w.relaying.Acquire(turn, 1); err != nil {
			switch {
			case m.Context().Err() != nil:
				t.settle(err)
			case tries >= most && m.Deferred < most:
				// Deferred as an object's message on its last receive
				// is at a stop (worker.Runtime's deferrable): counted,
				// so that stops cannot send it again for ever, and
				// visible once this task's polls are over.
				w.requeue(m, r, m.Deferred+1, w.runtime.AfterPolls(), "relay message sent again: the worker stopped before its turn, on its last try")
			default:
				t.settle(errStopping)
			}
			return
		}
		defer w.relaying.Release(1)
		// Long work from here: waiting its turn, a stop cut nothing.
		m.Started()
		w.lastTry(m, r)
		t.settle(w.relayOne(m.Context(), r))
	})
}

// lastTry readies m, relay r's message, to be sent again at the stop with
// its tries (Requeue's) if it is on its last try: a copy the stop cuts,
// still running at the release, or never begun (a poll that answered after
// the stop, Untried) is sent again as an object's message is, not left to
// reach the DLQ for the stop (at most maxReceiveCount times).
func (w *Worker) lastTry(m *worker.Message, r events.Relay) {
	most := w.Config.Settings.Worker.MaxReceiveCount
	// Its last try, not one past it: a relay whose tries are spent is on
	// its way to the DLQ (handleRelay), and sent again it would be tried
	// once more.
	if most == 0 || RelayTries(r, m.ReceiveCount, most) != most {
		return
	}
	r.Tries = most - 1
	if body, err := events.EncodeRelay(r); err == nil {
		m.SendAgainAs(string(body))
	}
}

// Untried implements worker.Untried: a relay on its last try that a poll
// brought after the stop is sent again (lastTry).
func (w *Worker) Untried(m *worker.Message) {
	if r := m.Events.Relay; r != nil {
		w.lastTry(m, *r)
	}
}

// RelayTries counts a relay's receives: received, its message's own (the
// current one included), and its earlier messages' (Relay.Tries), those
// at most most-1 when most (maxReceiveCount) is set: every message gets a
// try, a relay redriven from the DLQ (which keeps its body and starts its
// receives anew) included, whatever maxReceiveCount became since it was
// sent. Fargate and Lambda count alike.
func RelayTries(r events.Relay, received, most int) int {
	if most > 0 {
		return min(r.Tries, most-1) + received
	}
	return r.Tries + received
}

// requeue sends r again as a new message, visible after delay, keeping
// the tries of its receives before this one (which tried nothing), with
// deferred deferrals, and acknowledges m; if the send fails, m comes back
// after delay as it is.
func (w *Worker) requeue(m *worker.Message, r events.Relay, deferred int, delay time.Duration, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.Context()), requeueTimeout)
	defer cancel()
	most := w.Config.Settings.Worker.MaxReceiveCount
	tries := RelayTries(r, m.ReceiveCount, most) - 1
	fields := append(worker.MessageFields(m.Events), zap.Int("tries", tries), zap.Duration("retryIn", delay))
	if err := w.Requeue(ctx, r, m.ReceiveCount, deferred, delay); err != nil {
		// Its receives are left as they were: on its last try it may
		// reach the DLQ without it.
		lvl := zap.WarnLevel
		if tries+1 >= most {
			lvl = zap.ErrorLevel
		}
		w.Metrics.Errors.WithLabelValues("requeue").Inc()
		m.Log().Log(lvl, why+"; sending it again failed: it comes back as it is", append(fields, zap.Error(err))...)
		m.Release(delay)
		return
	}
	w.Metrics.Messages.WithLabelValues("requeued").Inc()
	m.Log().Info(why, fields...)
	m.Ack()
}

// Requeue sends relay r, received the received-th time by a message that
// tried nothing (its turn never came), again as a new message visible
// after delay, keeping the tries of the receives before this one
// (Relay.Tries) and the message's deferrals (queue.DeferredAttribute:
// those of stops that sent it again stay bounded). The caller then
// acknowledges that message.
func (w *Worker) Requeue(ctx context.Context, r events.Relay, received, deferred int, delay time.Duration) error {
	r.Tries = RelayTries(r, received, w.Config.Settings.Worker.MaxReceiveCount) - 1
	return w.sendRelay(ctx, r, delay, deferred)
}

// requeueTimeout bounds sending a relay again.
const requeueTimeout = 10 * time.Second

// ErrNoTurn marks a relay cut (a deadline, a stop) before its turn to copy
// came: it tried nothing (Requeue).
var ErrNoTurn = errors.New("relay cut before its turn to copy")

// Relay copies the archive r names to its direct region: the work of a
// relay message (relay). r is checked against the worker's own config, as
// any message: the archive must be in this region's staging bucket, under
// a rule this worker serves, and r's region one of that rule's direct
// regions. At most builders relays copy at once, each within the task's
// upload memory, so that a backlog of them after an outage does not
// starve the staging of new archives.
func (w *Worker) Relay(ctx context.Context, r events.Relay) error {
	if err := w.relaying.Acquire(ctx, 1); err != nil {
		return fmt.Errorf("%w: s3://%s/%s to %s: %w", ErrNoTurn, r.Bucket, r.Key, r.Region, err)
	}
	defer w.relaying.Release(1)
	return w.relayOne(ctx, r)
}

// relayOne is Relay once the relay's turn has come.
func (w *Worker) relayOne(ctx context.Context, r events.Relay) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: relay of s3://%s/%s to %s: %s", ErrUnroutable, r.Bucket, r.Key, r.Region, fmt.Sprintf(format, args...))
	}
	if r.Bucket != w.staging {
		return refuse("not this region's staging bucket %s", w.staging)
	}
	ruleID, _, err := manifest.ParseStagingKey(r.Key)
	if err != nil {
		return refuse("%v", err)
	}
	i := slices.IndexFunc(w.rules, func(rl *config.Rule) bool { return rl.ID == ruleID })
	if i < 0 {
		return refuse("rule %s is not served by this worker", ruleID)
	}
	rule := w.rules[i]
	regions := w.Config.DirectRegions(rule)
	j := slices.IndexFunc(regions, func(reg config.Region) bool { return reg.Name == r.Region })
	if j < 0 {
		return refuse("not a direct region of rule %s", rule.ID)
	}
	reg := regions[j]
	err = w.relayCopy(ctx, reg, r)
	switch {
	case err == nil:
		w.warm(reg.Name)
		w.Metrics.Archives.WithLabelValues(rule.ID, "relayed").Inc()
		w.Log.Info("archive copied to a direct region by its relay message", zap.String("rule", rule.ID), zap.String("key", r.Key),
			zap.String("region", reg.Name), zap.String("bucket", reg.StagingBucket))
	case ctx.Err() == nil && !Permanent(err):
		w.coolOn(reg.Name, err)
		w.Metrics.Errors.WithLabelValues("relay").Inc()
	}
	return err
}

// relayCopy is a relay message's copy: the archive's size and metadata
// from a HEAD, its upload buffers within the task's upload memory, then
// the copy. An archive gone from staging (expired) no retry brings back.
func (w *Worker) relayCopy(ctx context.Context, reg config.Region, r events.Relay) error {
	head, err := w.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.Bucket, Key: &r.Key, VersionId: optional(r.VersionID)})
	if awsapi.IsNotFound(err) {
		return fmt.Errorf("%w: archive s3://%s/%s (version %q) is gone from staging before its copy to %s was made: run xrc backfill for the rule's objects in %s (%v)",
			ErrUnroutable, r.Bucket, r.Key, r.VersionID, reg.Name, reg.Name, err)
	}
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s to copy it to %s: %w", r.Bucket, r.Key, reg.Name, err)
	}
	part := partSize(aws.ToInt64(head.ContentLength))
	release, err := w.reserveUpload(ctx, part, fmt.Sprintf("copying archive s3://%s/%s", r.Bucket, r.Key))
	if err != nil {
		return err
	}
	defer release()
	return w.relayTo(ctx, reg, r.Key, optional(r.VersionID), part, head.Metadata)
}

// relayTo copies one archive to reg.
func (w *Worker) relayTo(ctx context.Context, reg config.Region, key string, version *string, part int64, meta map[string]string) error {
	out, err := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &w.staging, Key: &key, VersionId: version})
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s back to copy it to %s: %w", w.staging, key, reg.Name, err)
	}
	defer out.Body.Close()
	// Cut, the copy is left to a relay message, which makes it again: no
	// grace for its complete, which the Lambda margin would not hold
	// beside the abort and the relay message.
	up := awsapi.NewUploaderNoGrace(w.Direct[reg.Name], func(o *transfermanager.Options) {
		o.PartSizeBytes = part
		o.MultipartUploadThreshold = part
		o.Concurrency = uploadConcurrency
	})
	// Progress as it streams: a long copy (a slow link to another
	// partition, a large archive) while the worker holds all it may is
	// not a stuck worker for the health check.
	body := &trackingReader{r: out.Body, progress: w.runtime.Progress}
	if _, err := up.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &reg.StagingBucket, Key: &key, Body: body,
		ContentType: aws.String("application/zstd"), Metadata: meta}); err != nil {
		// This region's staging, not the direct region, failed; unless
		// the stop cut the copy (the read then fails too, as the write
		// might have), which is the copy outlasting the stop: the
		// direct region's, to cool.
		if body.err != nil && ctx.Err() == nil {
			return fmt.Errorf("reading s3://%s/%s back to copy it to %s: %w", w.staging, key, reg.Name, body.err)
		}
		return &directFailure{fmt.Errorf("copying archive s3://%s/%s to s3://%s (direct region %s): %w", w.staging, key, reg.StagingBucket, reg.Name, err)}
	}
	return nil
}
