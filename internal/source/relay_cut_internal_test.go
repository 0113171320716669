package source

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
)

// hangGets never answers a GET before its context ends.
type hangGets struct{ S3API }

func (hangGets) GetObject(ctx context.Context, _ *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// refusingSends refuses every message sent.
type refusingSends struct{ queue.API }

var errDenied = errors.New("AccessDenied: not authorized to sqs:SendMessage")

func (refusingSends) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return nil, errDenied
}

// TestCutCopyWhoseRelayIsRefusedIsNoStop: a direct copy cut by the drain
// whose relay message is then refused fails with the refusal, not as a
// cancellation: taken for the stop's, its message was sent again at the
// stop (the archive staged twice) instead of going its way to the DLQ.
func TestCutCopyWhoseRelayIsRefusedIsNoStop(t *testing.T) {
	env, cfg, _ := localstack.Deploy(t, "relaycut", func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_RELAYCUT"
	})
	ctx := context.Background()
	src, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := env.S3(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Deps{Config: cfg, Region: "us-east-1", S3: hangGets{src}, Queue: queue.New(refusingSends{}, "q"), Log: zap.NewNop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel) // the drain's end, mid-copy
	err = w.relay(cctx, &cfg.Rules[0], "k", nil, 8<<20, nil)
	if !errors.Is(err, errDenied) || errors.Is(err, context.Canceled) {
		t.Errorf("relay = %v; want the refusal, not a cancellation", err)
	}
}
