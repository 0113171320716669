package awsapi

import (
	"context"
	"net"
	"sync"
	"time"
)

// StallTimeout is how long an S3 connection may carry a request without a
// byte moving either way before it is given up. The SDK bounds the dial and
// the TLS handshake but nothing after: a connection that stays open and
// silent (a hung peer or middlebox; TCP still acknowledges, so keep-alives
// see nothing wrong) held its GET body or part upload, and the messages of
// its batch, until the drain timeout or for ever. The error it gets instead
// is a timeout, which the SDK's retryer retries while the call is its own
// and which fails the batch when it strikes a body being read.
//
// A minute, as botocore's read timeout: S3 answers a request within
// seconds, and the calls that take longer (CompleteMultipartUpload,
// CopyObject) send their status line at once and then whitespace while they
// work.
const StallTimeout = time.Minute

// ClockSkew is how far apart xrc allows the clocks to be whose times it
// compares: this machine's, another task's (a lease's expiry), S3's
// (Last-Modified, a multipart upload's Initiated). Fargate tasks keep time
// well, but a host can drift, and an ordering or a clean-up that assumed
// one clock would act on what is still in use.
const ClockSkew = 5 * time.Minute

// stallDial wraps dial so that each connection fails any read or write that
// sees no progress for d.
func stallDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), d time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, ok := c.(*stallConn); ok { // a client of a config Load made
			return c, nil
		}
		return &stallConn{Conn: c, d: d}, nil
	}
}

// stallConn moves its deadlines forward on every read and write. A write
// moves the read deadline too: the transport keeps a read pending on an idle
// connection, and its deadline, set when it went idle, must count from the
// request, not from then. So an idle connection closes after d (before the
// transport's own idle timeout of 90 s); the next request dials afresh.
// Deadlines its users set (crypto/tls bounds its close_notify by 5 s) are
// kept: the earlier of theirs and d from now applies.
type stallConn struct {
	net.Conn
	d time.Duration

	mu            sync.Mutex
	read, written time.Time // deadlines set by the connection's users
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.Conn.SetReadDeadline(earlier(c.read, time.Now().Add(c.d)))
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	t := time.Now().Add(c.d)
	c.mu.Lock()
	err := c.Conn.SetWriteDeadline(earlier(c.written, t))
	if err == nil {
		err = c.Conn.SetReadDeadline(earlier(c.read, t))
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read, c.written = t, t
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = t
	return c.Conn.SetReadDeadline(t)
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = t
	return c.Conn.SetWriteDeadline(t)
}

// earlier returns the earlier of a deadline a user set (zero: none) and t.
func earlier(set, t time.Time) time.Time {
	if !set.IsZero() && set.Before(t) {
		return set
	}
	return t
}
