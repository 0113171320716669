package awsapi

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// silentProxy forwards TCP to target, and after down bytes from the server
// (up bytes from the client) stops forwarding that way while keeping both
// connections open: a peer that is there and says nothing. -1 is never.
type silentProxy struct {
	ln       net.Listener
	target   string
	down, up int64

	mu    sync.Mutex
	conns []net.Conn
}

func newSilentProxy(t *testing.T, target string, down, up int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, target: target, down: down, up: up}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go p.serve()
	return ln.Addr().String()
}

func (p *silentProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go forward(s, c, p.up)
		go forward(c, s, p.down)
	}
}

// forward copies src to dst, then only n bytes once n is reached; it
// stops reading src at all, so the sender's buffers fill.
func forward(dst, src net.Conn, n int64) {
	if n < 0 {
		io.Copy(dst, src)
		return
	}
	io.CopyN(dst, src, n)
}

// proxied returns an S3 client for the stack's us-east-1 through a silent
// proxy, with stall timeout d.
func proxied(t *testing.T, env localstack.Env, down, up int64, d time.Duration) *s3.Client {
	t.Helper()
	endpoint := env.S3Endpoints["us-east-1"]
	host := strings.TrimPrefix(endpoint, "https://")
	addr := newSilentProxy(t, host, down, up)
	cfg, err := env.AWSConfig(context.Background(), "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	return newS3(cfg, config.Region{Name: "us-east-1", S3Endpoint: "https://" + addr, S3PathStyle: true}, d)
}

func stallBucket(t *testing.T, env localstack.Env) string {
	t.Helper()
	bucket := localstack.UniqueName("xrc-stall-" + strings.TrimPrefix(t.Name(), "Test"))
	if err := env.EnsureBucket(context.Background(), "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	return bucket
}

// TestSilentServerFailsTheRead: a GET whose body stops coming ends with a
// timeout after the stall time, not when the caller's context runs out (a
// batch would hold its messages that long, or for ever with none).
func TestSilentServerFailsTheRead(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	direct, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := stallBucket(t, env)
	key := "big"
	if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(make([]byte, 4<<20))}); err != nil {
		t.Fatal(err)
	}
	c := proxied(t, env, 256<<10, -1, time.Second)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err == nil {
		_, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
	}
	var ne net.Error
	if err == nil || ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("reading from a silent server: %v (context: %v); want a timeout of the connection", err, ctx.Err())
	}
}

// TestSilentServerFailsTheUpload: an upload to a peer that stops reading
// fails once the socket buffers are full and nothing moves for the stall
// time.
func TestSilentServerFailsTheUpload(t *testing.T) {
	env := localstack.Require(t)
	bucket := stallBucket(t, env)
	c := proxied(t, env, -1, 1<<20, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("up"), Body: bytes.NewReader(make([]byte, 15<<20))},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	// The write's deadline, or the pending read's (set by the same write)
	// which closes the connection under it: either ends the upload.
	if err == nil || ctx.Err() != nil {
		t.Fatalf("uploading to a silent server: %v (context: %v); want the connection given up", err, ctx.Err())
	}
}

// TestWriteMovesTheReadDeadline: the read the transport leaves pending on
// an idle connection must count its time from the next request, not from
// when it began (the SDK's own read timeout does the latter: a request on a
// connection idle for most of the timeout, or an upload longer than it,
// would fail with bytes moving).
func TestWriteMovesTheReadDeadline(t *testing.T) {
	const d = 5 * time.Second // its fractions are the margins, on a loaded box too
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := &stallConn{Conn: client, d: d}
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	time.Sleep(d * 7 / 10)
	go io.Copy(io.Discard, server)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d * 6 / 10) // past the first read's own deadline
	server.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Write([]byte("r")); err != nil {
		t.Fatalf("answer within d of the request: %v (the pending read gave up)", err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// silentServer returns the address of a server that reads requests and
// never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	return ln.Addr().String()
}

// TestLoadBoundsEveryClient: the config Load returns, which every service
// client is made from, gives up a connection that stays silent.
func TestLoadBoundsEveryClient(t *testing.T) {
	addr := silentServer(t)
	cfg, err := load(context.Background(), "us-east-1", 500*time.Millisecond, CredentialsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("{}"))
	_, err = cfg.HTTPClient.Do(req)
	var ne net.Error
	if err == nil || ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("request to a silent server: %v (context: %v); want a timeout of the connection", err, ctx.Err())
	}
}

// credentialsFrom leaves the SDK only key (as both access key and secret;
// "" for none) to find in the environment: no config or credentials file.
func credentialsFrom(t *testing.T, key string) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", key)
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
}

// TestSilentCredentialsEndpointFails: credentials from an ECS task's
// endpoint that accepts and never answers fail, retried, instead of
// holding every caller for ever (the SDK's client for it has no timeout,
// and the refresh runs under a context no caller can cancel).
func TestSilentCredentialsEndpointFails(t *testing.T) {
	addr := silentServer(t)
	credentialsFrom(t, "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://"+addr+"/creds")
	cfg, err := load(context.Background(), "us-east-1", StallTimeout, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := cfg.Credentials.Retrieve(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("credentials from a silent endpoint: %v, want a timeout", err)
		}
	case <-time.After(2 * time.Minute): // the retries' backoff is ~15 s at most
		t.Fatal("credentials from a silent endpoint still waited after 2 minutes")
	}
}

// TestThrottlingKeepsItsRetries: the SDK's retryer does not give up
// retrying after a client's first hundred retries (its default quota of
// 500 tokens, 5 a retry): under SlowDown a worker's hundreds of requests
// spent it in seconds, and every later request was tried once.
func TestThrottlingKeepsItsRetries(t *testing.T) {
	cfg, err := load(context.Background(), "us-east-1", StallTimeout, CredentialsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Retryer()
	slowDown := &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusServiceUnavailable}},
		Err: &smithy.GenericAPIError{Code: "SlowDown"}}
	for i := range 1000 {
		if _, err := r.GetRetryToken(context.Background(), slowDown); err != nil {
			t.Fatalf("retry %d refused: %v", i+1, err)
		}
	}
}

// TestDefaultsModeKeepsTheStallTimeout: a defaults mode other than legacy
// has each service client rebuild its dialer for the mode's connect
// timeout; the clients of a config Load made keep the stall timeout, and
// the mode's timeouts.
func TestDefaultsModeKeepsTheStallTimeout(t *testing.T) {
	addr := silentServer(t)
	credentialsFrom(t, "test")
	for _, mode := range []string{"standard", "cross-region"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("AWS_DEFAULTS_MODE", mode)
			cfg, err := load(context.Background(), "us-east-1", 200*time.Millisecond, CredentialsTimeout)
			if err != nil {
				t.Fatal(err)
			}
			client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
				o.BaseEndpoint = aws.String("http://" + addr)
				o.Retryer = aws.NopRetryer{}
			})
			if hc, ok := client.Options().HTTPClient.(*awshttp.BuildableClient); !ok || hc.GetDialer().Timeout != 3100*time.Millisecond {
				t.Errorf("the client's dialer does not have the %s mode's connect timeout", mode)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = client.ListQueues(ctx, &sqs.ListQueuesInput{})
			var ne net.Error
			if err == nil || ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("call to a silent server: %v (context: %v); want a timeout of the connection", err, ctx.Err())
			}
		})
	}
}

// TestLoadKeepsTheCABundle: the clients of a config Load made trust the
// CA bundle the environment names (AWS_CA_BUNDLE: the local stack's, a
// proxy's), whatever else Load sets on their HTTP client.
func TestLoadKeepsTheCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	cfg, err := Load(context.Background(), "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("request to a server the CA bundle vouches for: %v", err)
	}
	resp.Body.Close()
}

// TestDeadlinesOfItsUsersKept: a deadline the connection's user sets
// (crypto/tls bounds its close_notify by one) is not moved later by the
// stall timeout.
func TestDeadlinesOfItsUsersKept(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	c := &stallConn{Conn: client, d: time.Minute}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Write([]byte("nobody reads this")); done <- err }()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write past its user's deadline: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the user's write deadline was moved to the stall timeout")
	}
}
