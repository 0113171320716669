//go:build linux

package main

// How the namespace reaches the host's SQS, DynamoDB and bridge, which
// listen on 127.0.0.1 only: listeners on the veth's host address that
// forward to them, counting the bytes (this control traffic crosses the
// shaped link here; on AWS it would stay in the target region).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// counter counts bytes both ways through a listener's connections.
type counter struct {
	addr string
	n    atomic.Int64
}

func (c *counter) load() int64 { return c.n.Load() }

type countingConn struct {
	net.Conn
	c *counter
}

func (cc countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.n.Add(int64(n))
	return n, err
}

func (cc countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.n.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	c *counter
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{conn, l.c}, nil
}

// forwarder relays TCP connections from a listener to target.
type forwarder struct {
	addr  string
	ln    net.Listener
	bytes counter
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func forwardTCP(listen, target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &forwarder{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	f.bytes.addr = f.addr
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.relay(in, target)
			}()
		}
	}()
	return f, nil
}

func (f *forwarder) relay(in net.Conn, target string) {
	out, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		in.Close()
		return
	}
	f.track(in, true)
	f.track(out, true)
	defer f.track(in, false)
	defer f.track(out, false)
	cin := countingConn{in, &f.bytes}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else if cc, ok := dst.(countingConn); ok {
			if tc, ok := cc.Conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
	}
	go pipe(out, cin)
	go pipe(cin, out)
	wg.Wait()
	in.Close()
	out.Close()
}

func (f *forwarder) track(c net.Conn, open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if open {
		f.conns[c] = true
	} else {
		delete(f.conns, c)
	}
}

func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// sqsProxy is an HTTP proxy to the stack's SQS for both workers that
// answers ReceiveMessage long polls as AWS does: as soon as any message is
// ready. local-aws-sqs answers a long poll early only once
// MaxNumberOfMessages are ready, so a source worker asking for 10 would
// wait its full 20 s for the last few events of a run, and a target worker
// for each archive's one message: xrc's wall time would measure the
// emulator. (Capping the wait at 1 s, as this proxy did, still cost up to
// a second per poll.) The stack's own launcher, deploy/local/sqs.cjs, now
// answers early too; the proxy keeps the benchmark's figures independent
// of which launcher a running stack was started with.
type sqsProxy struct {
	rp       *httputil.ReverseProxy
	upstream *url.URL
	client   *http.Client
	errLog   *log.Logger
	servers  []*http.Server
}

func newSQSProxy(endpoint string, errLog io.Writer) (*sqsProxy, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, errors.New("bad SQS endpoint " + endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 64
	// Long polls cut short by a worker stopping are logged here, not on
	// the terminal.
	logger := log.New(errLog, "sqs proxy: ", log.LstdFlags)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the client signed its Host
		},
		Transport: tr,
		ErrorLog:  logger,
	}
	return &sqsProxy{rp: rp, upstream: u, client: &http.Client{Transport: tr}, errLog: logger}, nil
}

func (p *sqsProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" {
		p.receive(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// receive answers a JSON-protocol ReceiveMessage for up to n messages with
// at most three calls upstream (local-aws-sqs checks no signature): a short
// poll for n; if it finds none, a long poll for one, which local-aws-sqs
// answers as soon as one is ready; then a short poll for the other n-1
// that may have come with it.
func (p *sqsProxy) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body.Close()
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err != nil || dec.Decode(&in) != nil {
		http.Error(w, "sqs proxy: unreadable ReceiveMessage body", http.StatusBadRequest)
		return
	}
	wait, n := jsonInt(in["WaitTimeSeconds"], 0), jsonInt(in["MaxNumberOfMessages"], 1)
	call := func(wait, n int64) (*received, error) {
		in["WaitTimeSeconds"], in["MaxNumberOfMessages"] = wait, n
		out, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		u := *p.upstream
		u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
		req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(out))
		if err != nil {
			return nil, err
		}
		req.Header = r.Header.Clone()
		req.Header.Del("Content-Length")
		req.Header.Del("Accept-Encoding") // the transport's own gzip, decoded
		req.Host = r.Host
		resp, err := p.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		res := &received{status: resp.StatusCode, header: resp.Header}
		if res.body, err = io.ReadAll(resp.Body); err != nil {
			return nil, err
		}
		// local-aws-sqs answers "no message" with an empty body.
		if res.status == http.StatusOK && len(bytes.TrimSpace(res.body)) > 0 {
			var m struct{ Messages []json.RawMessage }
			if err := json.Unmarshal(res.body, &m); err != nil {
				return nil, fmt.Errorf("ReceiveMessage answer: %w", err)
			}
			res.messages = m.Messages
		}
		return res, nil
	}
	res, err := call(0, n)
	if err == nil && res.status == http.StatusOK && len(res.messages) == 0 && wait > 0 {
		res, err = call(wait, 1)
		if err == nil && res.status == http.StatusOK && len(res.messages) == 1 && n > 1 {
			if more, err := call(0, n-1); err == nil && more.status == http.StatusOK && len(more.messages) > 0 {
				res.messages = append(res.messages, more.messages...)
				res.body, _ = json.Marshal(map[string]any{"Messages": res.messages})
			}
		}
	}
	if err != nil {
		p.errLog.Printf("ReceiveMessage: %v", err)
		http.Error(w, "sqs proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range res.header {
		switch k {
		case "Content-Length", "Content-Encoding", "Connection", "Transfer-Encoding":
		default:
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(res.status)
	w.Write(res.body)
}

// received is one ReceiveMessage answer from upstream.
type received struct {
	status   int
	header   http.Header
	body     []byte
	messages []json.RawMessage // of a 200
}

// jsonInt is v as an integer if it is a JSON number, else def.
func jsonInt(v any, def int64) int64 {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i
		}
	}
	return def
}

// listen serves the proxy on addr and returns the listener's byte counter.
func (p *sqsProxy) listen(addr string) (*counter, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &counter{addr: ln.Addr().String()}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	p.servers = append(p.servers, srv)
	go srv.Serve(countingListener{ln, c})
	return c, nil
}

func (p *sqsProxy) close() {
	for _, s := range p.servers {
		s.Close()
	}
}

const replicationCompleted = "s3:Replication:OperationCompletedReplication"
