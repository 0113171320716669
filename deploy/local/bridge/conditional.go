package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// headAPI is the part of *s3.Client the proxy uses to evaluate If-Match.
type headAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

var _ headAPI = (*s3.Client)(nil)

// conditionalProxy is an S3 reverse proxy to one MinIO that adds AWS's
// conditional DeleteObject.
//
// AWS S3 honours If-Match on DeleteObject (since 2025-09-16): it deletes the
// key only when the ETag of its current version matches the header (or the
// header is "*" and the key exists), answers 412 PreconditionFailed when it
// does not, and 404 NoSuchKey when the key does not exist. The target worker
// relies on that to delete only the destination object it read. MinIO (the
// build the stack pins) accepts the header and ignores it: it deletes a newer
// object just the same.
//
// conditionalProxy restores AWS's behaviour in front of one MinIO, on its own
// TLS listener (-s3-proxy REGION=ADDR). It forwards every request unchanged
// and streams bodies both ways: same path and query, same Host header and
// every signed header, so the client's SigV4 signature (made for the proxy's
// address) still validates at MinIO. A DeleteObject carrying If-Match is the
// one exception: the proxy HEADs the key's current version with its own
// credentials and either answers 404 NoSuchKey or 412 PreconditionFailed
// itself (S3 XML errors, which the SDK surfaces as API errors with those
// codes) or forwards the DELETE. A versionId on the DELETE is forwarded but
// not HEADed: AWS evaluates a conditional delete against the current version.
//
// What it guarantees: no write made through the proxy lands between that HEAD
// and the DELETE. Every request that can change what a key holds (PutObject,
// CopyObject, CompleteMultipartUpload, DeleteObject, and other object-level
// PUTs) holds a lock on its bucket and key while it is forwarded, until its
// response has been relayed; the conditional DELETE holds it from the HEAD
// until MinIO has answered. Reads, listings, UploadPart and bucket-level
// requests are not serialized.
//
// What it does not: writes that bypass the proxy (MinIO's own port,
// replication from the other MinIO) and bucket-level writes (DeleteObjects,
// POST-policy uploads) can still slip in; and the condition is evaluated
// before MinIO authenticates the request, so an unauthorized conditional
// DELETE gets 412 or 404 where AWS would answer 403.
type conditionalProxy struct {
	s3    headAPI // the same MinIO, with the bridge's credentials
	proxy *httputil.ReverseProxy
	locks keyLocks
	log   *slog.Logger
}

// newConditionalProxy returns a proxy to the MinIO at upstream (scheme and
// host are used), reached through transport.
func newConditionalProxy(region string, upstream *url.URL, transport http.RoundTripper, client headAPI, log *slog.Logger) *conditionalProxy {
	p := &conditionalProxy{s3: client, log: log.With("proxy", region)}
	p.proxy = &httputil.ReverseProxy{
		// Only the destination changes: path, query, Host and headers stay
		// as the client signed them. Rewrite (unlike Director) adds no
		// X-Forwarded-* headers.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = upstream.Scheme
			pr.Out.URL.Host = upstream.Host
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		// Relay MinIO's keep-alive whitespace (long CompleteMultipartUpload)
		// and streamed downloads promptly.
		FlushInterval: 100 * time.Millisecond,
		ErrorLog:      slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			p.log.Warn("forwarding to MinIO", "method", r.Method, "path", r.URL.Path, "err", err)
			writeS3Error(w, r, http.StatusBadGateway, s3Error{Code: "BadGateway", Message: "local stack proxy: " + err.Error()})
		},
	}
	return p
}

// upstreamTransport is the transport of the bridge's SDK clients (it trusts
// AWS_CA_BUNDLE), tuned for relaying: no proxy, no transparent gzip.
func upstreamTransport(cfg aws.Config) (*http.Transport, error) {
	b, ok := cfg.HTTPClient.(interface{ GetTransport() *http.Transport })
	if !ok {
		return nil, fmt.Errorf("SDK HTTP client %T exposes no transport", cfg.HTTPClient)
	}
	tr := b.GetTransport() // a copy
	tr.Proxy = nil         // MinIO is on loopback
	tr.DisableCompression = true
	tr.MaxIdleConnsPerHost = 64
	return tr, nil
}

// s3Request is what the proxy needs to know about a request.
type s3Request struct {
	bucket, key string
	// lock: the request can change what bucket/key holds; it is forwarded
	// under the key's lock.
	lock bool
	// conditional: a DeleteObject with If-Match, evaluated by the proxy.
	conditional bool
}

// classify reads a path-style S3 request.
func classify(r *http.Request) s3Request {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	req := s3Request{bucket: bucket, key: key}
	if bucket == "" || key == "" {
		return req // service- or bucket-level
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		// PutObject, CopyObject and object sub-resources; not UploadPart(Copy).
		req.lock = !q.Has("partNumber") && !q.Has("uploadId")
	case http.MethodPost:
		// CompleteMultipartUpload; not CreateMultipartUpload (?uploads),
		// RestoreObject or SelectObjectContent.
		req.lock = q.Has("uploadId")
	case http.MethodDelete:
		// DeleteObject; not AbortMultipartUpload or DeleteObjectTagging.
		if plainObjectQuery(q) {
			req.lock = true
			req.conditional = r.Header.Get("If-Match") != ""
		}
	}
	return req
}

// plainObjectQuery reports whether q names no sub-resource: only a version,
// the SDK's operation hint (x-id) and presigned-URL parameters.
func plainObjectQuery(q url.Values) bool {
	for k := range q {
		switch {
		case k == "versionId", k == "x-id", strings.HasPrefix(strings.ToLower(k), "x-amz-"):
		default:
			return false
		}
	}
	return true
}

func (p *conditionalProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := classify(r)
	if !req.lock {
		p.proxy.ServeHTTP(w, r)
		return
	}
	unlock, err := p.locks.lock(r.Context(), lockKey{req.bucket, req.key})
	if err != nil {
		return // the client went away while waiting
	}
	defer unlock()
	if req.conditional && !p.preconditionHolds(w, r, req) {
		return
	}
	p.proxy.ServeHTTP(w, r)
}

const preconditionFailed = "At least one of the pre-conditions you specified did not hold"

// preconditionHolds evaluates If-Match against the key's current version. When
// it does not hold it has answered the request.
func (p *conditionalProxy) preconditionHolds(w http.ResponseWriter, r *http.Request, req s3Request) bool {
	ctx := r.Context()
	ifMatch := r.Header.Get("If-Match")
	out, err := p.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(req.bucket), Key: aws.String(req.key)})
	switch {
	case err == nil:
		etag := aws.ToString(out.ETag)
		if etagMatches(ifMatch, etag) {
			p.log.Info("conditional delete: precondition holds", "bucket", req.bucket, "key", req.key, "if_match", ifMatch)
			return true
		}
		p.log.Info("conditional delete: precondition failed", "bucket", req.bucket, "key", req.key, "if_match", ifMatch, "etag", etag)
		writeS3Error(w, r, http.StatusPreconditionFailed, s3Error{Code: "PreconditionFailed", Message: preconditionFailed, Condition: "If-Match"})
		return false
	case isNotFound(err):
		// HEAD has no body to tell a missing key from a missing bucket.
		if _, berr := p.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(req.bucket)}); isNotFound(berr) {
			return true // MinIO answers NoSuchBucket
		}
		p.log.Info("conditional delete: no such key", "bucket", req.bucket, "key", req.key, "if_match", ifMatch)
		writeS3Error(w, r, http.StatusNotFound, s3Error{Code: "NoSuchKey", Message: "The specified key does not exist.",
			Key: req.key, BucketName: req.bucket})
		return false
	case ctx.Err() != nil:
		return false // the client went away
	default:
		p.log.Error("conditional delete: reading the current version", "bucket", req.bucket, "key", req.key, "err", err)
		writeS3Error(w, r, http.StatusInternalServerError, s3Error{Code: "InternalError",
			Message: "local stack proxy: reading the current version: " + err.Error()})
		return false
	}
}

// etagMatches compares an If-Match value ("*", one ETag or a list) with an
// ETag, with or without their quotes.
func etagMatches(ifMatch, etag string) bool {
	etag = strings.Trim(strings.TrimSpace(etag), `"`)
	for v := range strings.SplitSeq(ifMatch, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || (v != "" && strings.Trim(v, `"`) == etag) {
			return true
		}
	}
	return false
}

// isNotFound: a 404 from S3 (a HEAD of a missing key or bucket, or a delete
// marker as current version).
func isNotFound(err error) bool {
	var nf *s3types.NotFound
	var re *smithyhttp.ResponseError
	return errors.As(err, &nf) || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound)
}

// s3Error is S3's XML error body.
type s3Error struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	Condition  string   `xml:"Condition,omitempty"`
	Key        string   `xml:"Key,omitempty"`
	BucketName string   `xml:"BucketName,omitempty"`
	Resource   string   `xml:"Resource"`
	RequestID  string   `xml:"RequestId"`
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, e s3Error) {
	var id [8]byte
	rand.Read(id[:])
	e.RequestID = strings.ToUpper(hex.EncodeToString(id[:]))
	e.Resource = r.URL.Path
	body, err := xml.Marshal(e)
	if err != nil {
		http.Error(w, e.Code, status)
		return
	}
	body = append([]byte(xml.Header), body...)
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amz-Request-Id", e.RequestID)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

type lockKey struct{ bucket, key string }

// keyLocks is one mutex per bucket/key, held while waiting can be abandoned;
// an entry lives only while someone holds or waits for it.
type keyLocks struct {
	mu sync.Mutex
	m  map[lockKey]*keyLock
}

type keyLock struct {
	sem  chan struct{} // capacity 1: full while held
	refs int           // holders and waiters
}

// lock takes k's lock, or gives up when ctx ends.
func (l *keyLocks) lock(ctx context.Context, k lockKey) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[lockKey]*keyLock{}
	}
	e := l.m[k]
	if e == nil {
		e = &keyLock{sem: make(chan struct{}, 1)}
		l.m[k] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.sem <- struct{}{}:
		return func() {
			<-e.sem
			l.release(k, e)
		}, nil
	case <-ctx.Done():
		l.release(k, e)
		return nil, ctx.Err()
	}
}

func (l *keyLocks) release(k lockKey, e *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, k)
	}
}

func (l *keyLocks) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// certFile serves a PEM certificate and key, reloaded when the certificate
// file changes (deploy/local/stack up copies it again on every run, as it
// does for MinIO, which reloads its own).
type certFile struct {
	certPath, keyPath string
	mu                sync.Mutex
	mod               time.Time
	cert              *tls.Certificate
}

func loadCertFile(certPath, keyPath string) (*certFile, error) {
	f := &certFile{certPath: certPath, keyPath: keyPath}
	if _, err := f.get(nil); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *certFile) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.certPath)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil // being replaced: keep serving the one we have
		}
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	if f.cert != nil && st.ModTime().Equal(f.mod) {
		return f.cert, nil
	}
	c, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil
		}
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	f.cert, f.mod = &c, st.ModTime()
	return f.cert, nil
}
