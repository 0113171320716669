package localstack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/xrc-dev/xrc/internal/config"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// Eventually calls cond every interval until it holds (true) or within has
// passed (false): tests wait on the servers of the stack, whose work takes
// real time.
func Eventually(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// ObservedLogger returns a logger that writes to the test log (info and
// up) and records every entry at level and up for assertions.
func ObservedLogger(t testing.TB, level zapcore.Level) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core(), core)), logs
}

// ConfigTable creates cfg's deployment table (Config.TableName) on the
// stack's DynamoDB, deleted after the test, and returns a client.
func (e Env) ConfigTable(t testing.TB, cfg *config.Config) *dynamodb.Client {
	t.Helper()
	ctx := context.Background()
	if err := e.EnsureTable(ctx, cfg.TableName(), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.DeleteTable(context.Background(), cfg.TableName()) })
	ddb, err := e.DynamoDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ddb
}

// TestTable creates a new statistics-shaped table (keys "pk" and "sk") on
// the stack's DynamoDB, deleted after the test, and returns its name and a
// client.
func (e Env) TestTable(t testing.TB, prefix string) (string, *dynamodb.Client) {
	t.Helper()
	ctx := context.Background()
	table := UniqueName(prefix)
	if err := e.EnsureTable(ctx, table, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.DeleteTable(context.Background(), table) })
	ddb, err := e.DynamoDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return table, ddb
}

// Failing is a server that answers every request with a 500 of errType in
// the AWS JSON protocol, and counts them; an SDK client pointed at it
// retries as its Retryer says. It stops when the test ends.
func Failing(t testing.TB, errType string) (url string, calls *atomic.Int32) {
	calls = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"__type":%q,"message":"try again"}`, errType)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

// FiveAttempts is the SDK's standard retryer, five attempts, without the
// waits between them.
func FiveAttempts() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 5
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	})
}

// NoCredentials are credentials for servers that do not check them.
var NoCredentials = credentials.NewStaticCredentialsProvider("id", "secret", "")

// Concurrency counts calls under way at once, and the most there were: a
// test wraps a client's method in Enter and its returned leave.
type Concurrency struct{ now, most atomic.Int32 }

// Enter counts a call begun; leave, when it ends.
func (c *Concurrency) Enter() (leave func()) {
	n := c.now.Add(1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	return func() { c.now.Add(-1) }
}

// Most is the most calls there were under way at once.
func (c *Concurrency) Most() int { return int(c.most.Load()) }
