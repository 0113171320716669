package stats_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/stats"
)

func store(t *testing.T) *stats.Store {
	t.Helper()
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	return stats.New(ddb, table, time.Now)
}

// TestConcurrentAddsAreExact: 8 writers × 200 updates to the same items
// (DynamoDB Local) add up to exactly the sum of all updates: ADD loses
// nothing.
func TestConcurrentAddsAreExact(t *testing.T) {
	st := store(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ds := []stats.Delta{
					{Class: adaptive.CSV, Arm: 3, In: int64(1000 + g), Out: int64(300 + i), CPU: time.Duration(g*1000 + i), Objects: 1, Archives: 1},
					{Class: adaptive.CSV, Arm: adaptive.Store, In: 7, Out: 7, Objects: 2},
				}
				if left, err := st.Add(ctx, "r1", at, ds); err != nil {
					t.Errorf("writer %d: %v (%d left)", g, err, len(left))
					return
				}
			}
		})
	}
	wg.Wait()
	hs, err := st.Since(ctx, "r1", at.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var lvl3, store stats.Delta
	for _, h := range hs {
		switch h.Arm {
		case 3:
			lvl3 = h.Delta
		case adaptive.Store:
			store = h.Delta
		}
	}
	// Σg Σi (1000+g) = 200·(8·1000 + 28); Σ (300+i) = 8·(200·300 + 19900).
	if lvl3.In != 200*(8000+28) || lvl3.Out != 8*(60000+19900) || lvl3.Objects != 1600 || lvl3.Archives != 1600 {
		t.Errorf("level 3 totals %+v", lvl3)
	}
	if lvl3.CPU != time.Duration(200*1000*28+8*19900) {
		t.Errorf("level 3 CPU %d", lvl3.CPU)
	}
	if store.In != 7*1600 || store.Objects != 3200 {
		t.Errorf("store totals %+v", store)
	}
	obs, err := st.Observations(ctx, "r1", at.Add(-time.Hour))
	if err != nil || len(obs) != 2 || !obs[0].At.Equal(time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)) {
		t.Errorf("observations %+v %v", obs, err)
	}
}

// The hour in progress is dated at the middle of its part gone by: dated
// at half past, it would read as newer than what a task observes now, and
// the learner would discount the task's own observations against it.
func TestCurrentHourIsNotInTheFuture(t *testing.T) {
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	now := time.Date(2026, 12, 2, 10, 10, 0, 0, time.UTC)
	st := stats.New(ddb, table, func() time.Time { return now })
	ctx := context.Background()
	for _, at := range []time.Time{now.Add(-time.Hour), now.Add(-5 * time.Minute)} {
		if _, err := st.Add(ctx, "r1", at, []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100, Out: 40, Objects: 1, Archives: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	obs, err := st.Observations(ctx, "r1", now.Add(-2*time.Hour))
	if err != nil || len(obs) != 2 {
		t.Fatalf("observations %+v %v", obs, err)
	}
	for i, want := range []time.Time{time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC), time.Date(2026, 12, 2, 10, 5, 0, 0, time.UTC)} {
		if !obs[i].At.Equal(want) {
			t.Errorf("observation %d dated %v, want %v", i, obs[i].At, want)
		}
	}
}

func TestFleetBenchmark(t *testing.T) {
	st := store(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, mbps := range []float64{100, 200, 300, 400} {
		wg.Go(func() {
			if _, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: mbps, DecodeSeconds: 1e-9}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: 500, DecodeSeconds: 1e-9})
	if err != nil || f.Tasks != 5 || f.CompressMBps != 300 || f.DecodeSeconds < 0.99e-9 || f.DecodeSeconds > 1.01e-9 {
		t.Errorf("fleet %+v (%v), want a mean of 300 MB/s and 1 ns/byte over 5 tasks", f, err)
	}
	if got, err := st.Fleet(ctx); err != nil || got.Tasks != 5 || got.CompressMBps != 300 {
		t.Errorf("Fleet = %+v, %v", got, err)
	}
}

// TestFleetIsOfNowAndOfTheEncoder: a task compares with the tasks of its
// own encoder that started in the last week, not with every task that
// ever ran, nor with the other encoder's (slower on the same bytes).
func TestFleetIsOfNowAndOfTheEncoder(t *testing.T) {
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	now := time.Now()
	st := stats.New(ddb, table, func() time.Time { return now })
	ctx := context.Background()
	add := func(encoder string, mbps float64) stats.Fleet {
		t.Helper()
		f, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: mbps, DecodeSeconds: 1e-9, Encoder: encoder})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	real := now
	now = real.Add(-stats.FleetWindow - 24*time.Hour) // a generation since gone
	add("libzstd 1.5.6", 100)
	now = real.Add(-24 * time.Hour)
	add("libzstd 1.5.7", 200)
	now = real
	add("klauspost/compress (pure Go)", 50)
	if f := add("libzstd 1.5.7", 400); f.Tasks != 2 || f.CompressMBps != 300 {
		t.Errorf("libzstd fleet %+v, want 2 tasks of this week, mean 300", f)
	}
	if f := add("klauspost/compress (pure Go)", 70); f.Tasks != 2 || f.CompressMBps != 60 {
		t.Errorf("pure-Go fleet %+v, want 2 tasks, mean 60", f)
	}
	if f, err := st.Fleet(ctx); err != nil || f.Tasks != 4 {
		t.Errorf("Fleet = %+v, %v; want this week's 4 tasks", f, err)
	}
	// A stable fleet that started no task in a week: the last day with
	// one stands for it (not none, which would price decoding at 0).
	now = real.Add(30 * 24 * time.Hour)
	if f, err := st.Fleet(ctx); err != nil || f.Tasks != 3 || f.DecodeSeconds == 0 {
		t.Errorf("a month on: Fleet = %+v, %v; want the last day's 3 tasks", f, err)
	}
}

// TestPublishChoiceIsReadModifyWrite: concurrent publishers never lose a
// change: "changes" counts every switch of arm exactly, as each write is
// conditional on the version it read.
func TestPublishChoiceIsReadModifyWrite(t *testing.T) {
	st := store(t)
	ctx := context.Background()
	if err := st.PublishChoice(ctx, "r1", adaptive.CSV, 3, 0.01); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 {
				// Every publish changes the arm: 40 changes in all.
				arm := adaptive.Arm(4 + (g*10+i)%2)
				for {
					cur, err := st.Choices(ctx, "r1")
					if err != nil {
						t.Error(err)
						return
					}
					if c := cur[adaptive.CSV]; c.Arm != arm.String() {
						break
					}
					arm = 9 - arm // 4 <-> 5
				}
				if err := st.PublishChoice(ctx, "r1", adaptive.CSV, arm, 0.02); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	cs, err := st.Choices(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	c := cs[adaptive.CSV]
	if c.Version != 41 {
		t.Errorf("version %d after 41 publishes", c.Version)
	}
	if c.Changes < 1 || c.Changes > 40 {
		t.Errorf("changes %d", c.Changes)
	}
	// One at a time: the same arm again changes nothing but the version;
	// another counts one change, from now.
	read := func() stats.Choice {
		t.Helper()
		cs, err := st.Choices(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		return cs[adaptive.CSV]
	}
	arm, ok := adaptive.ParseArm(c.Arm)
	if !ok {
		t.Fatalf("arm %q", c.Arm)
	}
	time.Sleep(10 * time.Millisecond)
	if err := st.PublishChoice(ctx, "r1", adaptive.CSV, arm, 0.02); err != nil {
		t.Fatal(err)
	}
	if same := read(); same.Changes != c.Changes || !same.Since.Equal(c.Since) || same.Version != c.Version+1 {
		t.Errorf("the same arm again: changes %d since %v (version %d); want %d since %v", same.Changes, same.Since, same.Version, c.Changes, c.Since)
	}
	time.Sleep(10 * time.Millisecond)
	if err := st.PublishChoice(ctx, "r1", adaptive.CSV, 9-arm, 0.02); err != nil {
		t.Fatal(err)
	}
	if other := read(); other.Changes != c.Changes+1 || !other.Since.After(c.Since) {
		t.Errorf("another arm: changes %d since %v; want %d, since later than %v", other.Changes, other.Since, c.Changes+1, c.Since)
	}
}

// appliedThenLost carries out the first UpdateItem and then fails it as a
// timeout would (the answer lost); refusing fails every call as DynamoDB
// answers a throttled one, without carrying it out.
type appliedThenLost struct {
	stats.API
	lost, refuse bool
}

func (a *appliedThenLost) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if a.refuse {
		return nil, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
			Err: errors.New("ProvisionedThroughputExceededException")}
	}
	out, err := a.API.UpdateItem(ctx, in, optFns...)
	if err == nil && !a.lost {
		a.lost = true
		return nil, context.DeadlineExceeded
	}
	return out, err
}

// TestUncertainWritesAreNotRepeated: a delta whose write failed without an
// answer may have been applied, and is not handed back to be written
// again (it would count twice); one refused is handed back.
func TestUncertainWritesAreNotRepeated(t *testing.T) {
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	api := &appliedThenLost{API: ddb}
	st := stats.New(api, table, time.Now)
	ctx := context.Background()
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	ds := []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100, Out: 30, Objects: 1}, {Class: adaptive.JSON, Arm: 3, In: 50, Out: 10, Objects: 1}}
	api.refuse = true
	if left, err := st.Add(ctx, "r1", at, ds); len(left) != 2 || err == nil || errors.Is(err, stats.ErrUncertain) {
		t.Fatalf("refused: %d left, %v; want both, not uncertain", len(left), err)
	}
	api.refuse = false
	left, err := st.Add(ctx, "r1", at, ds)
	if !errors.Is(err, stats.ErrUncertain) || len(left) != 1 || left[0].Class != adaptive.JSON {
		t.Fatalf("answer lost: %+v, %v; want the JSON delta left, ErrUncertain", left, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if again, err := st.Add(done, "r1", at, left); len(again) != 1 || err == nil || errors.Is(err, stats.ErrUncertain) {
		t.Fatalf("out of time before sending: %d left, %v; want it left, not uncertain", len(again), err)
	}
	if left, err := st.Add(ctx, "r1", at, left); err != nil || len(left) != 0 {
		t.Fatal(left, err)
	}
	hs, err := st.Since(ctx, "r1", at.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := map[adaptive.Class]int64{adaptive.CSV: 100, adaptive.JSON: 50}
	if len(hs) != len(want) {
		t.Errorf("%d classes recorded, want %d", len(hs), len(want))
	}
	for _, h := range hs {
		if h.In != want[h.Class] {
			t.Errorf("%s: %d bytes in, want %d", h.Class, h.In, want[h.Class])
		}
	}
}

// TestUncertainWritesKeepTheirRestaged: of a delta whose write may or may
// not have been applied, what was staged again (Restaged) is handed back:
// lost, the second staging counted in full "without xrc" and overstated
// the saving; written twice, it understates it.
func TestUncertainWritesKeepTheirRestaged(t *testing.T) {
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	st := stats.New(&appliedThenLost{API: ddb}, table, time.Now)
	ctx := context.Background()
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	left, err := st.Add(ctx, "r1", at, []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100, Out: 30, Objects: 1, Restaged: 100}})
	if !errors.Is(err, stats.ErrUncertain) || len(left) != 1 || left[0].Restaged != 100 || left[0].In != 0 {
		t.Fatalf("answer lost: %+v, %v; want its Restaged alone left", left, err)
	}
	if left, err := st.Add(ctx, "r1", at, left); err != nil || len(left) != 0 {
		t.Fatal(left, err)
	}
	hs, err := st.Since(ctx, "r1", at.Add(-time.Hour))
	if err != nil || len(hs) != 1 {
		t.Fatal(hs, err)
	}
	if h := hs[0]; h.In != 100 || h.Restaged < 100 {
		t.Errorf("in %d, restaged %d: want 100 in once, at least 100 restaged", h.In, h.Restaged)
	}
}

// TestBenchmarkIsNotRetriedBySDK: the fleet's CPU benchmark is an ADD too:
// a task sent twice would weigh twice in the fleet's mean for a week.
func TestBenchmarkIsNotRetriedBySDK(t *testing.T) {
	url, calls := localstack.Failing(t, "com.amazonaws.dynamodb.v20120810#InternalServerError")
	client := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: &url, Credentials: localstack.NoCredentials, Retryer: localstack.FiveAttempts()})
	if _, err := stats.New(client, "t", time.Now).AddBenchmark(context.Background(), adaptive.BenchResult{Encoder: "libzstd 1.5", CompressMBps: 100, DecodeSeconds: 1e-9}); err == nil {
		t.Error("a 5xx: no error")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// TestAddIsNotRetriedBySDK: an ADD failing with a 5xx is tried once (the
// SDK would otherwise send it again, though it may have been applied).
func TestAddIsNotRetriedBySDK(t *testing.T) {
	url, calls := localstack.Failing(t, "com.amazonaws.dynamodb.v20120810#InternalServerError")
	client := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: &url, Credentials: localstack.NoCredentials, Retryer: localstack.FiveAttempts()})
	left, err := stats.New(client, "t", time.Now).Add(context.Background(), "r1", time.Now(), []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 1}})
	if !errors.Is(err, stats.ErrUncertain) || len(left) != 0 {
		t.Errorf("a 5xx: %d left, %v; want none left, ErrUncertain", len(left), err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// TestUnsentWritesWait: a write whose connection could not be made (the
// endpoint unreachable: a network outage, a VPC endpoint gone) was
// certainly not applied, so its deltas wait to be written, as a refused
// one's do; taken for uncertain, every archive's statistics of an outage
// were dropped.
func TestUnsentWritesWait(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	api := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: &closed, Credentials: localstack.NoCredentials})
	ds := []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100, Out: 30, Objects: 1}}
	left, err := stats.New(api, "t", time.Now).Add(context.Background(), "r1", time.Now(), ds)
	if err == nil || errors.Is(err, stats.ErrUncertain) || len(left) != 1 || left[0].In != 100 {
		t.Errorf("endpoint unreachable: %+v left, %v; want the delta left, not uncertain", left, err)
	}
}

// TestAddWithinAShortDeadline: a caller with under a second in all (a
// Lambda environment's retirement gives its last write 400 ms) has its
// deltas written; a whole second's reserve sent none, and every retired
// environment lost its waiting statistics. Out of time, they are handed
// back, not sent.
func TestAddWithinAShortDeadline(t *testing.T) {
	st := store(t)
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	ds := []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 100, Out: 30, Objects: 1}, {Class: adaptive.JSON, Arm: 3, In: 50, Out: 10, Objects: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if left, err := st.Add(ctx, "r1", at, ds); err != nil || len(left) != 0 {
		t.Fatalf("400 ms to write: %d left, %v; want all written", len(left), err)
	}
	hs, err := st.Since(context.Background(), "r1", at.Add(-time.Hour))
	if err != nil || len(hs) != 2 {
		t.Fatalf("%d rows, %v; want 2", len(hs), err)
	}
	short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	if left, err := st.Add(short, "r1", at, ds); len(left) != 2 || err == nil || errors.Is(err, stats.ErrUncertain) {
		t.Errorf("out of time: %d left, %v; want both handed back, not uncertain", len(left), err)
	}
}

// onePerPage makes the table answer a Query one item a page.
type onePerPage struct{ stats.API }

func (o onePerPage) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	in.Limit = aws.Int32(1)
	return o.API.Query(ctx, in, optFns...)
}

// TestChoicesReadEveryPage: the choices of a rule's classes are read to
// the last page (one page held them all, until a rule had more than a
// page's worth).
func TestChoicesReadEveryPage(t *testing.T) {
	table, ddb := localstack.Require(t).TestTable(t, "stats")
	ctx := context.Background()
	st := stats.New(onePerPage{ddb}, table, time.Now)
	for _, class := range []adaptive.Class{adaptive.CSV, adaptive.JSON, adaptive.XML} {
		if err := st.PublishChoice(ctx, "r1", class, 3, 0.01); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := st.Choices(ctx, "r1")
	if err != nil || len(cs) != 3 {
		t.Errorf("Choices = %v, %v; want the 3 classes", cs, err)
	}
}
