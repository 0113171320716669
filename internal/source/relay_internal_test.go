package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
)

// TestRelaysHeldBounded: relay messages wait for a copy slot, but at most
// relayHoldMax are held (a DLQ redrive of hundreds must not take every
// slot from the objects' events): the others come back after their
// backoff. Those still waiting when the worker stops are left for the next
// receive, neither failed nor said to be retried.
func TestRelaysHeldBounded(t *testing.T) {
	env, cfg, dep := deployDirect(t, "relayheld", func(c *config.Config) {
		// The local SQS may count a receive more than once: none may be
		// taken for a relay's last.
		c.Settings.Worker.MaxReceiveCount = 50
	})
	ctx := context.Background()
	sqsc, src, _ := stackClients(t, env)
	url := dep.SourceQueues[cfg.Rules[0].ID]
	q := queue.New(sqsc, url)
	core, logs := observer.New(zap.InfoLevel)
	w, err := New(Deps{Config: cfg, Region: "us-east-1", Queue: q, S3: src, Log: zap.New(core), Metrics: NewMetrics(prometheus.NewRegistry()),
		Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": src}, RelayWait: func(int) time.Duration { return time.Hour }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.relaying.Acquire(ctx, builders); err != nil { // every copy slot taken
		t.Fatal(err)
	}
	const sent = relayHoldMax + 4
	for i := range sent {
		body, err := events.EncodeRelay(events.Relay{Region: "eu-west-1", Bucket: cfg.Settings.Regions[0].StagingBucket,
			Key: fmt.Sprintf("%s/2026/12/06/%02d.tar.zst", cfg.Rules[0].ID, i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Send(ctx, string(body), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(run) }()
	deferred := func() int { return logs.FilterMessage("relay message deferred: enough relays are held").Len() }
	if !localstack.Eventually(time.Minute, 50*time.Millisecond, func() bool { return deferred() == sent-relayHoldMax }) {
		t.Fatalf("%d relays deferred, want %d", deferred(), sent-relayHoldMax)
	}
	// Past the cap, a relay on its last try is sent again too, its
	// receives kept.
	lastTry := events.Relay{Region: "eu-west-1", Bucket: cfg.Settings.Regions[0].StagingBucket,
		Key: cfg.Rules[0].ID + "/2026/12/06/last.tar.zst", Tries: cfg.Settings.Worker.MaxReceiveCount - 1}
	body, err := events.EncodeRelay(lastTry)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, string(body), 0, 0); err != nil {
		t.Fatal(err)
	}
	if !localstack.Eventually(time.Minute, 50*time.Millisecond, func() bool { return deferred() == sent-relayHoldMax+1 }) {
		t.Fatalf("%d relays deferred, want %d with the one on its last try", deferred(), sent-relayHoldMax+1)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"message not acknowledged: bound for the DLQ", "message not acknowledged: it will be retried"} {
		if n := logs.FilterMessage(msg).Len(); n != 0 {
			t.Errorf("%d relays waiting for their turn at the stop said %q: %v", n, msg, logs.FilterMessage(msg).All())
		}
	}
	// Held: visible again after the stop; deferred: hidden for their
	// backoff.
	seen := map[string]bool{}
	for range 5 {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 30})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			seen[*m.Body] = true
		}
	}
	for _, e := range logs.FilterMessage("relay message deferred: enough relays are held").All() {
		if body, _ := events.EncodeRelay(events.Relay{Region: "eu-west-1", Bucket: cfg.Settings.Regions[0].StagingBucket, Key: e.ContextMap()["key"].(string)}); seen[string(body)] {
			t.Errorf("deferred relay %s visible after the stop", e.ContextMap()["key"])
		}
		want := int64(0) // it tried nothing
		if e.ContextMap()["key"] == lastTry.Key {
			want = int64(lastTry.Tries)
		}
		if e.ContextMap()["tries"] != want {
			t.Errorf("deferred relay %s sent again with %v tries, want %d", e.ContextMap()["key"], e.ContextMap()["tries"], want)
		}
	}
	if len(seen) != relayHoldMax || seen[string(body)] {
		t.Errorf("%d relays visible after the stop, want the %d held, not the one on its last try, sent again", len(seen), relayHoldMax)
	}
}

// TestCooldownOnTheRegionsOwnFailures: only a failure at the direct
// region (its store refused or did not answer) leaves its next copies to
// relay messages untried; one reading this region's staging back does not.
func TestCooldownOnTheRegionsOwnFailures(t *testing.T) {
	w := &Worker{Deps: Deps{Clock: clockwork.NewFakeClock()}, down: map[string]time.Time{}}
	w.coolOn("store", errors.New("reading s3://stg/k back: 503"))
	if w.cooling("store") {
		t.Error("a staging read's failure cools the direct region")
	}
	w.coolOn("store", &directFailure{errors.New("copying to s3://store-stg: connection refused")})
	if !w.cooling("store") {
		t.Error("the direct region's own failure does not cool it")
	}
	w.Clock.(*clockwork.FakeClock).Advance(relayCooldown)
	if w.cooling("store") {
		t.Errorf("still cooling after %v", relayCooldown)
	}
}

// cutGets is a real S3 client whose GetObject bodies fail after n bytes,
// as a connection to this region's staging reset mid-copy.
type cutGets struct {
	S3API
	n int64
}

func (c cutGets) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := c.S3API.GetObject(ctx, in, opts...)
	if err == nil {
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(out.Body, c.n), iotest.ErrReader(errors.New("connection reset by peer"))), out.Body}
	}
	return out, err
}

// TestReadBackFailureIsNotTheRegions: a copy to a direct region that fails
// reading the archive back from this region's staging names the staging
// read and does not cool the direct region (its next archives' copies are
// still tried inline), though the upload to the region is what returned.
func TestReadBackFailureIsNotTheRegions(t *testing.T) {
	env, cfg, _ := localstack.Deploy(t, "readback", func(c *config.Config) {
		c.Settings.Regions[1].Direct = true
		c.Settings.Regions[1].S3Credentials = "env:XRC_TEST_READBACK" // the test passes its client
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
	staging, key := cfg.Settings.Regions[0].StagingBucket, cfg.Rules[0].ID+"/2026/12/06/readback.tar.zst"
	body := bytes.Repeat([]byte("x"), 1<<20)
	if _, err := src.PutObject(ctx, &s3.PutObjectInput{Bucket: &staging, Key: &key, Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Deps{Config: cfg, Region: "us-east-1", S3: cutGets{src, 100 << 10}, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry()),
		Health: health.New(time.Minute, time.Now), Direct: map[string]S3API{"eu-west-1": dst}})
	if err != nil {
		t.Fatal(err)
	}
	reg := cfg.Settings.Regions[1]
	err = w.relayTo(ctx, reg, key, nil, partSize(int64(len(body))), nil)
	var d *directFailure
	if err == nil || errors.As(err, &d) || !strings.Contains(err.Error(), "reading s3://"+staging+"/"+key+" back") {
		t.Fatalf("copy whose staging read failed: %v; want the staging read named, not the direct region's failure", err)
	}
	w.coolOn(reg.Name, err)
	if w.cooling(reg.Name) {
		t.Error("this region's staging failing cools the direct region")
	}
	if _, err := dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &reg.StagingBucket, Key: &key}); err == nil {
		t.Error("a copy read back in part is visible in the direct region")
	}
}
