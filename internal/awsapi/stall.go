package awsapi

import (
	"context"
	"net"
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
type stallConn struct {
	net.Conn
	d time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.d)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	t := time.Now().Add(c.d)
	if err := c.Conn.SetDeadline(t); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
