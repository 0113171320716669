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

// sqsProxy is an HTTP proxy to the stack's SQS for both workers. With a
// cap it shortens ReceiveMessage long polls to at most cap: local-aws-sqs
// answers a long poll early only once MaxNumberOfMessages are ready (AWS
// answers as soon as any are), so a source worker asking for 10 would wait
// the full 20 s for the last few events of a run and xrc's wall time would
// measure the emulator. Polling every cap instead answers within cap.
type sqsProxy struct {
	rp      *httputil.ReverseProxy
	servers []*http.Server
}

func newSQSProxy(endpoint string, capWait time.Duration, errLog io.Writer) (*sqsProxy, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, errors.New("bad SQS endpoint " + endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the client signed its Host
			if capWait > 0 && r.In.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" {
				capReceiveWait(r.Out, capWait)
			}
		},
		Transport: tr,
		// Long polls cut short by a worker stopping are logged here, not
		// on the terminal.
		ErrorLog: log.New(errLog, "sqs proxy: ", log.LstdFlags),
	}
	return &sqsProxy{rp: rp}, nil
}

// capReceiveWait rewrites a JSON-protocol ReceiveMessage body's
// WaitTimeSeconds to at most capWait (local-aws-sqs checks no signature).
func capReceiveWait(req *http.Request, capWait time.Duration) {
	if req.Body == nil {
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	req.Body.Close()
	restore := func(b []byte) {
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.ContentLength = int64(len(b))
		req.Header.Set("Content-Length", strconv.Itoa(len(b)))
	}
	if err != nil {
		restore(body)
		return
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		restore(body)
		return
	}
	limit := max(1, int64(capWait/time.Second)) // 0 would turn long polls into a busy loop
	if n, ok := m["WaitTimeSeconds"].(json.Number); ok {
		if w, err := n.Int64(); err == nil && w > limit {
			m["WaitTimeSeconds"] = limit
			if out, err := json.Marshal(m); err == nil {
				body = out
			}
		}
	}
	restore(body)
}

// listen serves the proxy on addr and returns the listener's byte counter.
func (p *sqsProxy) listen(addr string) (*counter, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &counter{addr: ln.Addr().String()}
	srv := &http.Server{Handler: p.rp, ReadHeaderTimeout: 10 * time.Second}
	p.servers = append(p.servers, srv)
	go srv.Serve(countingListener{ln, c})
	return c, nil
}

func (p *sqsProxy) close() {
	for _, s := range p.servers {
		s.Close()
	}
}

// eventDedup sits between the source MinIO's webhook and the bridge and
// drops a replication-completed event already forwarded for the same
// object version. MinIO sends that event twice for some replicated
// archives (it queues their replication twice); each copy would become an
// SQS message and two target workers' deliveries of one archive, racing
// (the loser's conditional write fails with 412, it is retried and finds
// the archive delivered). S3 sends its notifications about once.
// Everything else passes through unchanged.
type eventDedup struct {
	rp      *httputil.ReverseProxy
	mu      sync.Mutex
	seen    map[string]bool
	dropped atomic.Int64
	srv     *http.Server
	addr    string
}

func newEventDedup(target string, errLog io.Writer) (*eventDedup, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, errors.New("bad bridge URL " + target)
	}
	d := &eventDedup{seen: map[string]bool{}}
	d.rp = &httputil.ReverseProxy{
		Rewrite:  func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ErrorLog: log.New(errLog, "event dedup: ", log.LstdFlags),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.addr = ln.Addr().String()
	d.srv = &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(ln)
	return d, nil
}

func (d *eventDedup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		d.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var ev struct {
		Records []struct {
			EventName string `json:"eventName"`
			S3        struct {
				Bucket struct {
					Name string `json:"name"`
				} `json:"bucket"`
				Object struct {
					Key       string `json:"key"`
					VersionID string `json:"versionId"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	}
	if json.Unmarshal(body, &ev) == nil && len(ev.Records) == 1 {
		rec := ev.Records[0]
		if rec.EventName == "s3:Replication:OperationCompletedReplication" && rec.S3.Object.VersionID != "" {
			id := rec.S3.Bucket.Name + "/" + rec.S3.Object.Key + "@" + rec.S3.Object.VersionID
			d.mu.Lock()
			dup := d.seen[id]
			d.seen[id] = true
			d.mu.Unlock()
			if dup {
				d.dropped.Add(1)
				w.WriteHeader(http.StatusOK)
				return
			}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	d.rp.ServeHTTP(w, r)
}

func (d *eventDedup) close() { d.srv.Close() }
