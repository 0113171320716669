package deliver_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/metrics"
)

// The helpers below stage archives straight into the target region's
// staging bucket, as S3 Replication would: its ObjectCreated events reach
// the target queue through the bridge, so only the target worker runs.

// manifestFor describes objs as one archive of cfg's first rule, whose
// objects go where the rule sends them. Digests are in the manifest for objects
// with data; objects listed in streamed (by index) leave theirs to a
// trailer, as the source does for objects it streams. Sequencers increase
// with the index.
func manifestFor(id string, objs []dataset.Object, cfg *config.Config, streamed map[int]int64) *manifest.Manifest {
	rule := &cfg.Rules[0]
	now := time.Now().UTC().Truncate(time.Millisecond)
	m := &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    id,
		CreatedAt:    now,
		SourceRegion: "us-east-1",
		RuleID:       rule.ID,
		Level:        3,
	}
	for i, o := range objs {
		mo := manifest.Object{
			Member:       manifest.MemberName(i, o.Key),
			Bucket:       rule.SourceBucket,
			Key:          o.Key,
			Sequencer:    sequencer(now, i),
			Size:         int64(len(o.Data)),
			LastModified: now,
			StorageClass: or(o.StorageClass, "STANDARD"),
			ContentType:  o.ContentType,
			Metadata:     o.Metadata,
			Tags:         o.Tags,
			Destinations: destinations(rule, o.Key),
		}
		if size, ok := streamed[i]; ok {
			mo.Size = size
		} else {
			mo.SHA256 = sha256hex(o.Data)
		}
		m.Objects = append(m.Objects, mo)
	}
	return m
}

// destinations are the manifest destinations rule proposes for key.
func destinations(rule *config.Rule, key string) []manifest.Destination {
	routes, err := rule.Routes(key)
	if err != nil {
		panic(err)
	}
	var ds []manifest.Destination
	for _, r := range routes {
		ds = append(ds, manifest.Destination{Region: r.Region, Bucket: r.Bucket, Key: r.Key, StorageClass: r.StorageClass, KMSKeyID: r.KMSKeyID})
	}
	return ds
}

// sequencer returns an S3-style event sequencer (MinIO's: the event time in
// hex nanoseconds), later for larger i.
func sequencer(t time.Time, i int) string {
	return fmt.Sprintf("%016X", t.UnixNano()+int64(i))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeArchive returns the archive of m with the objects' contents.
func writeArchive(t testing.TB, m *manifest.Manifest, objs []dataset.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := archive.NewWriter(archive.WriterOptions{})
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Objects {
		if !m.Objects[i].HasMember() {
			continue
		}
		if _, err := w.WriteObject(i, bytes.NewReader(objs[i].Data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// member is one entry of a hand-built (possibly hostile) tar stream.
type member struct {
	name string
	body []byte
}

// rawArchive writes members with archive/tar and zstd directly, bypassing
// every check of archive.Writer, after a manifest.json holding manifestJSON
// as is.
func rawArchive(t testing.TB, manifestJSON []byte, members []member) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	all := append([]member{{archive.ManifestName, manifestJSON}}, members...)
	for _, mb := range all {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: mb.name, Size: int64(len(mb.body)), Mode: 0o644,
			ModTime: time.Now(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", mb.name, err)
		}
		if _, err := tw.Write(mb.body); err != nil {
			t.Fatalf("tar body %q: %v", mb.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(tb.Bytes(), nil)
}

// rawManifest encodes m as JSON without validating it.
func rawManifest(t testing.TB, m *manifest.Manifest) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putStaging puts an archive held in memory into bucket.
func putStaging(t testing.TB, client *s3.Client, bucket, key string, data []byte) {
	t.Helper()
	_, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String("application/zstd")})
	if err != nil {
		t.Fatalf("staging s3://%s/%s: %v", bucket, key, err)
	}
}

// streamArchive writes the archive of m into bucket/key through a pipe and
// a multipart upload, never holding it in memory; body(i) supplies the
// content of m.Objects[i]. It returns the SHA-256 (hex) of each object
// written and the archive's size.
func streamArchive(ctx context.Context, client *s3.Client, bucket, key string, m *manifest.Manifest, body func(i int) io.Reader) (map[int]string, int64, error) {
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		_, err := transfermanager.New(client, func(o *transfermanager.Options) {
			o.PartSizeBytes = 16 << 20
			o.Concurrency = 2
		}).UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &bucket, Key: &key, Body: pr,
			ContentType: aws.String("application/zstd")})
		pr.CloseWithError(err)
		uploaded <- err
	}()
	sums := map[int]string{}
	w := archive.NewWriter(archive.WriterOptions{Concurrency: 2})
	werr := func() error {
		if err := w.Begin(pw, m); err != nil {
			return err
		}
		for i := range m.Objects {
			if m.Objects[i].Delete {
				continue
			}
			sum, err := w.WriteObject(i, body(i))
			if err != nil {
				return err
			}
			sums[i] = sum
		}
		return w.Close()
	}()
	size := w.Written()
	pw.CloseWithError(werr)
	if err := errors.Join(werr, <-uploaded); err != nil {
		return nil, 0, fmt.Errorf("staging s3://%s/%s: %w", bucket, key, err)
	}
	return sums, size, nil
}

// textReader yields n bytes of dataset.Text, generated as they are read.
type textReader struct {
	rng *rand.Rand
	n   int64
	buf []byte
}

func newTextReader(seed uint64, n int64) *textReader {
	return &textReader{rng: rand.New(rand.NewPCG(seed, 0x7e47)), n: n}
}

func (r *textReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.n == 0 {
			return 0, io.EOF
		}
		k := min(r.n, 256<<10)
		r.buf = dataset.Text(r.rng, int(k))
		r.n -= k
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// textData is what newTextReader(seed, n) yields, in memory.
func textData(seed uint64, n int64) []byte {
	b, err := io.ReadAll(newTextReader(seed, n))
	if err != nil {
		panic(err)
	}
	return b
}

// queueURL resolves a queue name, e.g. a DLQ's.
func queueURL(t testing.TB, client *sqs.Client, name string) string {
	t.Helper()
	out, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

// dlqKeys reads (without deleting) the messages in the dead-letter queue
// at url and returns the keys they announce (a relay's archive's).
func dlqKeys(t testing.TB, client *sqs.Client, url string) []string {
	t.Helper()
	var keys []string
	seen := map[string]bool{}
	for range 10 {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url,
			MaxNumberOfMessages: 10, VisibilityTimeout: 30, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, msg := range out.Messages {
			if seen[aws.ToString(msg.MessageId)] {
				continue
			}
			seen[aws.ToString(msg.MessageId)] = true
			parsed, err := events.Parse([]byte(aws.ToString(msg.Body)))
			if err != nil {
				t.Fatalf("dead-lettered message %s: %v", aws.ToString(msg.MessageId), err)
			}
			for _, ref := range parsed.Refs {
				keys = append(keys, ref.Key)
			}
			if parsed.Relay != nil {
				keys = append(keys, parsed.Relay.Key)
			}
		}
	}
	return keys
}

// poll calls done every interval until it reports true or within passes;
// it returns done's last answer.
var poll = localstack.Eventually

// metric sums the values of the counter (or gauge) name whose labels
// include every label=value pair given.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, err := metrics.Sum(reg, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// errKilled is what every request of a killed client fails with.
var errKilled = errors.New("process killed")

// killSwitch is an HTTP client for the SDK that behaves like the network
// of a process that was just SIGKILLed once its context ends: requests in
// flight are cut, and no request leaves any more (no release, no delete, no
// abort of a multipart upload, no heartbeat).
type killSwitch struct {
	inner interface {
		Do(*http.Request) (*http.Response, error)
	}
	dead context.Context
}

func (k *killSwitch) Do(req *http.Request) (*http.Response, error) {
	if k.dead.Err() != nil {
		return nil, errKilled
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(k.dead, func() { cancel(errKilled) })
	resp, err := k.inner.Do(req.WithContext(ctx))
	if err != nil {
		stop()
		cancel(nil)
		return nil, err
	}
	resp.Body = &cutBody{ReadCloser: resp.Body, done: func() { stop(); cancel(nil) }}
	return resp, nil
}

type cutBody struct {
	io.ReadCloser
	done func()
}

func (b *cutBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// logEntries returns the fields of the observed log entries with message
// msg.
// released returns the lines of messages released undelivered, bound for
// the DLQ or for a retry.
func (p *pipeline) released() []map[string]any {
	return append(p.logEntries(msgBoundForDLQ), p.logEntries(msgRetry)...)
}

const (
	msgBoundForDLQ = "archive not delivered: message bound for the DLQ"
	msgRetry       = "archive not delivered; message released for retry"
)

func (p *pipeline) logEntries(msg string) []map[string]any {
	var out []map[string]any
	for _, e := range p.logs.FilterMessage(msg).All() {
		out = append(out, e.ContextMap())
	}
	return out
}
