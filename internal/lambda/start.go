package lambda

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/logging"
)

// Starter is what the runtime invokes: the Function, once one could be
// built. A cold start that cannot build it (the config unreadable, SSM
// throttled while many environments start at once; a queue not reachable
// yet) does not exit: Lambda would fail the batch that invoked it, whose
// messages come back only after their visibility timeout (over half an
// hour at the defaults), each a receive nearer the DLQ. The build is tried
// again at each invocation, for a while, before the batch is handed back.
type Starter struct {
	build func(context.Context) (*Function, error)
	log   *zap.Logger // until a Function logs
	mu    sync.Mutex  // one build at a time
	f     atomic.Pointer[Function]
}

// buildFor bounds the build attempts of one invocation: an invalid config
// fails them all, and every second of them is billed.
const buildFor = 30 * time.Second

// Start builds the Function (a cold start); stdout receives the logs and
// EMF lines.
func Start(ctx context.Context, env Env, awsCfg aws.Config, stdout io.Writer) *Starter {
	log, _ := logging.New(stdout, "info") // "info" is a valid level
	s := &Starter{
		build: func(ctx context.Context) (*Function, error) { return New(ctx, env, awsCfg, stdout) },
		log:   log.With(zap.String("service", "xrc-"+env.Role), zap.String("region", env.Flags.Region), zap.String("compute", "lambda")),
	}
	if f, err := s.build(ctx); err != nil {
		s.log.Error("not started: tried again at the next invocation", zap.Error(err))
	} else {
		s.f.Store(f)
	}
	return s
}

// Invoke handles one batch (lambda.Start's handler).
func (s *Starter) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	if err := fromSQS(ev); err != nil {
		// Records that are no SQS messages (an S3 notification sent to
		// the function itself): reported per record they would read as
		// done (no message id to fail), and an asynchronous invoke would
		// drop them. (An event with no records at all has nothing to do.)
		s.log.Error("invoked with other than an SQS batch: the function takes its events from its queue only", zap.Error(err))
		return events.SQSEventResponse{}, err
	}
	f, err := s.function(ctx)
	if err != nil {
		s.log.Error("not started: batch handed back failed; its messages come back after their visibility timeout",
			zap.Int("messages", len(ev.Records)), zap.Error(err))
		// An error, not every message reported failed (which hands the
		// batch back the same way): Lambda counts it in the function's
		// Errors, which its errors alarm watches; no metric of xrc's
		// exists before the Function does.
		return events.SQSEventResponse{}, fmt.Errorf("%w: %w", app.ErrNotStarted, err)
	}
	return f.Invoke(ctx, ev)
}

// fromSQS says what of ev is no SQS message an event source mapping
// delivers.
func fromSQS(ev events.SQSEvent) error {
	for i, r := range ev.Records {
		if r.EventSource != "aws:sqs" || r.MessageId == "" {
			return fmt.Errorf("record %d is no SQS message (eventSource %q, messageId %q)", i, r.EventSource, r.MessageId)
		}
	}
	return nil
}

// function returns the Function, building it if none is yet: tried until
// it is built, for buildFor at most and no later than two seconds before
// the invocation's deadline.
func (s *Starter) function(ctx context.Context) (*Function, error) {
	if f := s.f.Load(); f != nil {
		return f, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.f.Load(); f != nil {
		return f, nil
	}
	end := time.Now().Add(buildFor)
	if d, ok := ctx.Deadline(); ok && d.Add(-2*time.Second).Before(end) {
		end = d.Add(-2 * time.Second)
	}
	bctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	for wait := time.Second; ; wait = min(2*wait, 8*time.Second) {
		f, err := s.build(bctx)
		if err == nil {
			s.f.Store(f)
			return f, nil
		}
		s.log.Warn("not started yet", zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-bctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// Shutdown ends the Function, if one was built (Lambda's SIGTERM).
func (s *Starter) Shutdown() {
	if f := s.f.Load(); f != nil {
		f.Shutdown()
	}
}
