// Command bridge turns MinIO webhook notifications into SQS messages shaped like
// the ones AWS S3 delivers, for the local stack (deploy/local/stack).
//
// MinIO POSTs {"EventName":..., "Key":..., "Records":[...]} to /events. For
// each record the bridge sends one SQS message whose body is
// {"Records":[<record>]} (AWS S3 sends one record per message) to the queue
// routed for the record's bucket. Records are passed through unchanged:
// MinIO's eventSource is "minio:s3", its eventName carries an "s3:" prefix and
// its keys are query-escaped including '/'.
//
// Replicas: MinIO deliberately emits no notification when a replica is written
// to a replication target, where AWS S3 emits ObjectCreated in the
// destination bucket. To restore that, a replicated source bucket sends its
// s3:Replication:OperationCompletedReplication events here too; the bridge
// reads the source bucket's replication rules, HEADs the replica on the
// destination MinIO (created, delete marker or deleted version), applies the
// destination bucket's own notification configuration (events and key
// filters for the XRC webhook) and sends the destination's event
// (s3:ObjectCreated:Put, s3:ObjectRemoved:DeleteMarkerCreated or
// s3:ObjectRemoved:Delete) to the destination bucket's queue.
//
// Conditional deletes: with -s3-proxy REGION=ADDR the bridge also serves, on
// ADDR over TLS (-tls-cert, -tls-key), an S3 reverse proxy to REGION's MinIO
// that honours If-Match on DeleteObject as AWS does and MinIO does not
// (conditional.go).
//
// Routes map a bucket to a queue URL (or queue name, resolved with
// GetQueueUrl at send time) and are persisted to a JSON file:
//
//	PUT    /routes/{bucket}   body: queue URL or name
//	DELETE /routes/{bucket}
//	GET    /routes            {"bucket":"queue",...}
//	GET    /healthz
//
// Delivery mirrors S3: a record for an unrouted bucket, or routed to a queue
// that no longer exists, is logged and dropped with 200. Any other failure
// (SQS or MinIO unreachable) answers 502 so MinIO keeps the event in its
// queue dir and retries: at-least-once, like S3 to SQS. With -async the
// bridge answers once a record is queued in memory and retries SQS itself
// (batch.go), and forwards replication events in the background, retrying
// them itself (laterReplicas).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const (
	maxEventBytes = 8 << 20 // MinIO sends one small record per POST; cap hostile input.
	maxRouteBytes = 4 << 10
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		slog.Error("bridge stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9100", "address to listen on")
	routesPath := fs.String("routes", "routes.json", "JSON file that persists the bucket -> queue routes")
	sqsEndpoint := fs.String("sqs-endpoint", os.Getenv("AWS_ENDPOINT_URL_SQS"), "SQS endpoint URL")
	region := fs.String("region", "us-east-1", "SQS region")
	s3Endpoints := map[string]string{} // region -> MinIO URL
	fs.Func("s3", "REGION=URL of the MinIO playing REGION (repeat per region; needed for replica events)", func(v string) error {
		r, u, ok := strings.Cut(v, "=")
		if !ok || r == "" || u == "" {
			return fmt.Errorf("want REGION=URL, got %q", v)
		}
		s3Endpoints[r] = strings.TrimRight(u, "/")
		return nil
	})
	s3Proxies := map[string]string{} // region -> listen address
	fs.Func("s3-proxy", "REGION=ADDR: serve on ADDR, over TLS, an S3 proxy to REGION's MinIO (-s3) that honours If-Match on DeleteObject (repeatable)", func(v string) error {
		r, a, ok := strings.Cut(v, "=")
		if !ok || r == "" || a == "" {
			return fmt.Errorf("want REGION=ADDR, got %q", v)
		}
		s3Proxies[r] = a
		return nil
	})
	tlsCert := fs.String("tls-cert", "", "PEM certificate of the -s3-proxy listeners")
	tlsKey := fs.String("tls-key", "", "PEM private key of the -s3-proxy listeners")
	async := fs.Bool("async", false, "answer MinIO once a record is queued in memory, and send records to SQS ten per batch; forward replication events in the background, each replicated version once (for MinIO without a queue dir; a queued record is lost if the bridge dies)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sqsEndpoint == "" {
		return errors.New("no SQS endpoint: set -sqs-endpoint or AWS_ENDPOINT_URL_SQS")
	}
	for r := range s3Proxies {
		if s3Endpoints[r] == "" {
			return fmt.Errorf("-s3-proxy %s needs -s3 %s=URL (the MinIO to proxy)", r, r)
		}
	}
	if len(s3Proxies) > 0 && (*tlsCert == "" || *tlsKey == "") {
		return errors.New("-s3-proxy needs -tls-cert and -tls-key")
	}
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))

	// Credentials and AWS_CA_BUNDLE come from the environment set by the stack.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(*region))
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	sqsClient := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(*sqsEndpoint) })
	regions := map[string]regionS3{}
	clients := map[string]*s3.Client{}
	for r, u := range s3Endpoints {
		clients[r] = s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.Region = r
			o.BaseEndpoint = aws.String(u)
			o.UsePathStyle = true
		})
		regions[r] = regionS3{endpoint: u, client: clients[r]}
	}

	routes, err := loadRoutes(*routesPath)
	if err != nil {
		return err
	}
	br := newBridge(sqsClient, regions, routes, slog.Default())
	if *async {
		br.async = newBatcher(sqsClient, slog.Default(), 100_000)
		br.later = newLaterReplicas(16, firstWait)
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           br.handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	proxies, err := proxyServers(cfg, s3Proxies, s3Endpoints, clients, *tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	errc := make(chan error, 1+len(proxies))
	go func() { errc <- fmt.Errorf("serving %s: %w", *listen, srv.ListenAndServe()) }()
	for _, p := range proxies {
		go func() { errc <- fmt.Errorf("serving the S3 proxy on %s: %w", p.Addr, p.ListenAndServeTLS("", "")) }()
	}
	slog.Info("bridge listening", "addr", *listen, "sqs", *sqsEndpoint, "s3", s3Endpoints, "s3_proxies", s3Proxies, "routes", *routesPath)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := []error{srv.Shutdown(shutdownCtx)}
	for _, p := range proxies {
		errs = append(errs, p.Shutdown(shutdownCtx))
	}
	if br.async != nil {
		// After Shutdown: no handler is left to add a record, and after the
		// replication events being forwarded, which add theirs.
		errs = append(errs, br.later.close(shutdownCtx), br.async.close(shutdownCtx))
	}
	return errors.Join(errs...)
}

// proxyServers builds one TLS server per -s3-proxy: a conditionalProxy to the
// region's MinIO, through the SDK's transport (which trusts AWS_CA_BUNDLE).
func proxyServers(cfg aws.Config, proxies, endpoints map[string]string, clients map[string]*s3.Client, certPath, keyPath string) ([]*http.Server, error) {
	if len(proxies) == 0 {
		return nil, nil
	}
	cert, err := loadCertFile(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	tr, err := upstreamTransport(cfg)
	if err != nil {
		return nil, err
	}
	var out []*http.Server
	for region, addr := range proxies {
		upstream, err := url.Parse(endpoints[region])
		if err != nil || upstream.Host == "" {
			return nil, fmt.Errorf("-s3 %s=%s: not a URL", region, endpoints[region])
		}
		out = append(out, &http.Server{
			Addr:              addr,
			Handler:           newConditionalProxy(region, upstream, tr, clients[region], slog.Default()),
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{GetCertificate: cert.get, MinVersion: tls.VersionTLS12},
			// HTTP/1.1 only, as clients speak to MinIO (100-continue included).
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			ErrorLog:     slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		})
	}
	return out, nil
}

// sqsAPI is the part of *sqs.Client the bridge uses.
type sqsAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

var _ sqsAPI = (*sqs.Client)(nil)

type bridge struct {
	sqs     sqsAPI
	regions map[string]regionS3 // region -> its MinIO
	routes  *routeTable
	log     *slog.Logger
	async   *batcher       // -async: records are sent after their POST is answered
	later   *laterReplicas // -async: replication events are forwarded after it too
}

func newBridge(sqsClient sqsAPI, regions map[string]regionS3, routes *routeTable, log *slog.Logger) *bridge {
	return &bridge{sqs: sqsClient, regions: regions, routes: routes, log: log}
}

func (b *bridge) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", b.handleEvents)
	mux.HandleFunc("GET /routes", b.handleListRoutes)
	mux.HandleFunc("PUT /routes/{bucket}", b.handlePutRoute)
	mux.HandleFunc("DELETE /routes/{bucket}", b.handleDeleteRoute)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	// MinIO probes the webhook endpoint to decide whether the target is online.
	mux.HandleFunc("HEAD /events", func(http.ResponseWriter, *http.Request) {})
	return mux
}

// minioEvent is the webhook body MinIO POSTs.
type minioEvent struct {
	EventName string            `json:"EventName"`
	Key       string            `json:"Key"`
	Records   []json.RawMessage `json:"Records"`
}

// recordMeta is the part of a record the bridge reads.
type recordMeta struct {
	EventName        string            `json:"eventName"`
	AWSRegion        string            `json:"awsRegion"`
	ResponseElements map[string]string `json:"responseElements"`
	S3               struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       string `json:"key"`
			VersionID string `json:"versionId"`
		} `json:"object"`
	} `json:"s3"`
}

// sqsBody is the message body AWS S3 sends to SQS.
type sqsBody struct {
	Records []json.RawMessage `json:"Records"`
}

// errRetry marks failures worth a retry by MinIO.
var errRetry = errors.New("retry later")

func (b *bridge) handleEvents(w http.ResponseWriter, r *http.Request) {
	var ev minioEvent
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEventBytes))
	if err := dec.Decode(&ev); err != nil {
		// A malformed event would never decode on retry either: reject it for good.
		b.log.Warn("bad event body", "err", err)
		http.Error(w, "invalid event body: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, rec := range ev.Records {
		if err := b.handleRecord(r.Context(), rec); err != nil {
			b.log.Error("forwarding record", "event", ev.EventName, "minio_key", ev.Key, "err", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// handleRecord forwards one record. It returns an error only when a retry may help.
func (b *bridge) handleRecord(ctx context.Context, rec json.RawMessage) error {
	var m recordMeta
	if err := json.Unmarshal(rec, &m); err != nil || m.S3.Bucket.Name == "" {
		b.log.Warn("dropping record without bucket", "err", err)
		return nil
	}
	switch {
	case m.EventName == replicationCompleted && b.later != nil:
		b.forwardLater(rec, m)
		return nil
	case m.EventName == replicationCompleted:
		return b.forwardReplica(ctx, rec, m)
	case strings.HasPrefix(m.EventName, "s3:Replication:"):
		// Failed/missed replication: nothing was written at the destination.
		b.log.Warn("dropping replication event", "event", m.EventName, "bucket", m.S3.Bucket.Name, "key", m.S3.Object.Key)
		return nil
	}
	return b.send(ctx, m.S3.Bucket.Name, m.EventName, m.S3.Object.Key, rec)
}

// send delivers rec to bucket's queue, or drops it as S3 would.
func (b *bridge) send(ctx context.Context, bucket, eventName, key string, rec json.RawMessage) error {
	queue, ok := b.routes.get(bucket)
	if !ok {
		b.log.Info("dropping record for unrouted bucket", "event", eventName, "bucket", bucket, "key", key)
		return nil
	}
	body, err := json.Marshal(sqsBody{Records: []json.RawMessage{rec}})
	if err != nil {
		return fmt.Errorf("encoding record for %s: %w", bucket, err)
	}
	queueURL, err := b.queueURL(ctx, queue)
	switch {
	case err == nil && b.async != nil:
		err = b.async.add(ctx, message{queueURL: queueURL, body: string(body), event: eventName, bucket: bucket, key: key})
		if err == nil {
			return nil // logged once sent
		}
	case err == nil:
		_, err = b.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(string(body))})
	}
	var gone *types.QueueDoesNotExist
	switch {
	case errors.As(err, &gone):
		// S3 drops events for a deleted queue; so do we, or MinIO would retry forever.
		b.log.Warn("dropping record for missing queue", "event", eventName, "bucket", bucket, "key", key, "queue", queue)
		return nil
	case err != nil:
		return fmt.Errorf("sending %s event for %s to %s: %w: %w", eventName, bucket, queue, errRetry, err)
	}
	b.log.Info("forwarded", "event", eventName, "bucket", bucket, "key", key, "queue", queueURL)
	return nil
}

func (b *bridge) queueURL(ctx context.Context, queue string) (string, error) {
	if strings.Contains(queue, "://") {
		return queue, nil
	}
	out, err := b.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		return "", fmt.Errorf("resolving queue %s: %w", queue, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

func (b *bridge) handleListRoutes(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(b.routes.snapshot())
}

func (b *bridge) handlePutRoute(w http.ResponseWriter, r *http.Request) {
	bucket := r.PathValue("bucket")
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRouteBytes))
	if err != nil {
		http.Error(w, "reading route: "+err.Error(), http.StatusBadRequest)
		return
	}
	queue := strings.TrimSpace(string(raw))
	if bucket == "" || queue == "" || strings.ContainsAny(queue, " \t\r\n") {
		http.Error(w, "want PUT /routes/<bucket> with a queue URL or name as body", http.StatusBadRequest)
		return
	}
	if err := b.routes.set(bucket, queue); err != nil {
		b.log.Error("saving routes", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b.log.Info("route set", "bucket", bucket, "queue", queue)
	w.WriteHeader(http.StatusNoContent)
}

func (b *bridge) handleDeleteRoute(w http.ResponseWriter, r *http.Request) {
	bucket := r.PathValue("bucket")
	if err := b.routes.set(bucket, ""); err != nil {
		b.log.Error("saving routes", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b.log.Info("route deleted", "bucket", bucket)
	w.WriteHeader(http.StatusNoContent)
}
