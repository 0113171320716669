//go:build linux

package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xrc-dev/xrc/internal/events"
)

// replicaTap is the end of the source MinIO's replication path: MinIO
// replicates the staging bucket to the tap, which passes every request on
// to the target MinIO across the link and reports each replicated archive
// the moment the target MinIO has stored it, as the replication event the
// source MinIO would send, to the bridge.
//
// Why: on AWS the destination bucket emits the replica's event in the
// target region. MinIO emits none for a replica, so the bridge learns of
// it from the source MinIO's replication-completed event, and that event
// waits in the one queue MinIO has for all its notifications, behind the
// source bucket's upload events: in the mixed corpus the first archives'
// events reached the target queue 3–5 s after they were staged, their
// replicas' link time 0.4–1.7 s, while the link idled. The source MinIO's
// own event still follows; the bridge (-async) drops it as already taken,
// and forwards it if the tap missed the replica (a failed report, an
// answer without a version id): the tap can only make the event earlier.
type replicaTap struct {
	rp        *httputil.ReverseProxy
	srv       *http.Server
	addr      string
	dstBucket string // the target staging bucket, where replicas land
	srcBucket string // the source staging bucket they replicate from
	srcRegion string
	eventsURL string // the bridge's /events
	client    *http.Client
	reported  atomic.Int64
	log       *log.Logger
}

// newReplicaTap serves a tap to target (the target MinIO's URL, whose
// certificate caPath signs) on 127.0.0.1, over TLS with certFile and
// keyFile, as the target MinIO serves: over plain HTTP, MinIO's replication
// client signs every 64 KiB chunk of what it sends (aws-chunked), and the
// target MinIO checks each signature, work neither does over TLS (in
// incompressible runs, 2–13 more CPU-seconds of the machine's).
func newReplicaTap(target, caPath, certFile, keyFile, srcRegion, srcBucket, dstBucket, eventsURL string, errLog io.Writer) (*replicaTap, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, errors.New("bad target MinIO URL " + target)
	}
	toTarget, err := httpClient(caPath)
	if err != nil {
		return nil, err
	}
	tr := toTarget.Transport.(*http.Transport)
	// HTTP/1.1, a connection per replication, as MinIO's own client: one
	// HTTP/2 connection would carry them all as one flow across the link.
	tr.ForceAttemptHTTP2, tr.MaxIdleConnsPerHost = false, 64
	t := &replicaTap{
		dstBucket: dstBucket, srcBucket: srcBucket, srcRegion: srcRegion, eventsURL: eventsURL,
		client: &http.Client{Timeout: 30 * time.Second},
		log:    log.New(errLog, "replica tap: ", log.LstdFlags),
	}
	t.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // signed by MinIO's replication client
		},
		Transport:      tr,
		ModifyResponse: t.observe,
		ErrorLog:       t.log,
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.addr = ln.Addr().String()
	t.srv = &http.Server{Handler: t.rp, ReadHeaderTimeout: 10 * time.Second}
	// HTTP/1.1 (no "h2"), as MinIO serves it: a connection per replication.
	go t.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}))
	return t, nil
}

func (t *replicaTap) url() string { return "https://" + t.addr }

func (t *replicaTap) close() { t.srv.Close() }

// observe reports a replica once the target MinIO has answered a write
// that completes one: a PUT of a whole object, or the POST that completes
// a multipart upload (whose 200 may still carry an error in its body).
func (t *replicaTap) observe(resp *http.Response) error {
	req := resp.Request
	key, ok := strings.CutPrefix(req.URL.Path, "/"+t.dstBucket+"/")
	q := req.URL.Query()
	completes := (req.Method == http.MethodPut && !q.Has("uploadId") && req.Header.Get("X-Amz-Copy-Source") == "") ||
		(req.Method == http.MethodPost && q.Has("uploadId"))
	if !ok || key == "" || !completes || resp.StatusCode != http.StatusOK {
		return nil
	}
	if req.Method == http.MethodPost {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte("<CompleteMultipartUploadResult")) {
			return nil
		}
	}
	versionID := resp.Header.Get("X-Amz-Version-Id")
	if versionID == "" {
		return nil // the source MinIO's own event will tell the bridge
	}
	if err := t.report(key, versionID); err != nil {
		t.log.Printf("reporting replica %s/%s@%s (the source MinIO's event will): %v", t.dstBucket, key, versionID, err)
	}
	return nil
}

// report posts the replication-completed event the source MinIO would
// send for key's version, in the shape MinIO's webhook posts.
func (t *replicaTap) report(key, versionID string) error {
	body, err := events.Encode("xrc-bench-replica-tap", events.ObjectRef{
		Region: t.srcRegion, Bucket: t.srcBucket, Key: key, VersionID: versionID,
		EventName: replicationCompleted, EventTime: time.Now(),
	})
	if err != nil {
		return err
	}
	resp, err := t.client.Post(t.eventsURL, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	t.reported.Add(1)
	return nil
}
