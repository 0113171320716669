package source_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
)

// The worker's log messages these tests assert on.
const (
	logInvalid     = "invalid message: releasing it towards the dead-letter queue"
	logGone        = "object gone since its event; skipping"
	logOverwritten = "object overwritten since its event; skipping (the newer write has its own event)"
	logNotStaged   = "archive not staged; its messages will be retried"
	logRebuilt     = "object failed while archiving; rebuilding the archive without it"
	logLeftOut     = "object cannot be read; left out of the archive"
	logBoundForDLQ = "message not acknowledged: bound for the DLQ"
)

// sourceQueue is the URL of the rule's event queue.
func (f *fixture) sourceQueue() string { return f.dep.SourceQueues[f.rule.ID] }

// deadLetterQueue is the URL of the rule's dead-letter queue.
func (f *fixture) deadLetterQueue(t testing.TB) string {
	t.Helper()
	out, err := f.sqs.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(f.cfg.SourceQueueName(f.rule.ID) + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

// send puts body on the rule's queue, as S3 (or anyone with access) would.
func (f *fixture) send(t testing.TB, body string) {
	t.Helper()
	url := f.sourceQueue()
	if _, err := f.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
}

// waitDepth polls until queue url holds want messages (visible + in flight).
func (f *fixture) waitDepth(t testing.TB, url string, want int, within time.Duration) {
	t.Helper()
	var n int
	if !eventually(within, 100*time.Millisecond, func() bool { n = f.queueDepth(t, url); return n == want }) {
		t.Fatalf("queue %s holds %d messages after %v, want %d", url, n, within, want)
	}
}

// takeAll receives every message of queue url, hiding each for long enough
// that it is counted once, until what was received matches the queue's
// depth. It returns the bodies by message id.
func (f *fixture) takeAll(t testing.TB, url string, within time.Duration) map[string]string {
	t.Helper()
	ctx := context.Background()
	got := map[string]string{}
	deadline := time.Now().Add(within)
	for {
		out, err := f.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 300})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			got[aws.ToString(m.MessageId)] = aws.ToString(m.Body)
		}
		if len(out.Messages) == 0 && f.queueDepth(t, url) == len(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: received %d messages, it holds %d, after %v", url, len(got), f.queueDepth(t, url), within)
		}
	}
}

// eventBody is an S3 event notification for one created object, shaped as
// AWS sends it (keys escaped as a query, '/' kept).
func eventBody(bucket, key, etag, sequencer string) string {
	return sizedEventBody(bucket, key, etag, sequencer, 12)
}

// sizedEventBody is eventBody with the object size the event reports.
func sizedEventBody(bucket, key, etag, sequencer string, size int) string {
	rec := map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
		"eventTime": time.Now().UTC().Format(time.RFC3339Nano), "eventName": "ObjectCreated:Put",
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "xrc",
			"bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": awsEscape(key), "size": size, "eTag": etag, "sequencer": sequencer},
		},
	}
	b, err := json.Marshal(map[string]any{"Records": []any{rec}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// awsEscape escapes a key as S3 event notifications do: like a query
// component, but '/' kept.
func awsEscape(key string) string {
	var out []byte
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '-', c == '_', c == '.', c == '~':
			out = append(out, c)
		case c == ' ':
			out = append(out, '+')
		default:
			out = append(out, fmt.Sprintf("%%%02X", c)...)
		}
	}
	return string(out)
}

// loggedKeys returns the "key" field of every entry logged with msg.
func loggedKeys(logs *observer.ObservedLogs, msg string) []string {
	var keys []string
	for _, e := range logs.FilterMessage(msg).All() {
		if k, ok := e.ContextMap()["key"].(string); ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A body no retry can fix goes to the dead-letter queue after the queue's
// maxReceiveCount deliveries, and the worker carries on.
func TestInvalidMessagesEndInDeadLetterQueue(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	log, logs := observed(t)
	r := f.start(t, log)

	// Ten, so each local long poll returns at once (local-aws-sqs waits the
	// whole WaitTimeSeconds for MaxNumberOfMessages).
	bodies := []string{
		"not json",
		`{"Records":{}}`,
		`{}`,
		`null`,
		`[1,2,3]`,
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"data/a"}}}]}`,
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"data%zz"}}}]}`,
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"data/a","size":-1}}}]}`,
		`{"Type":"Notification","Message":"not json either"}`,
		`{"Records":[` + strings.Repeat(" ", 1000) + `{"eventName":5}]}`,
	}
	for _, b := range bodies {
		f.send(t, b)
	}
	dlq := f.deadLetterQueue(t)
	f.waitDepth(t, dlq, len(bodies), time.Minute)
	f.waitDepth(t, f.sourceQueue(), 0, 10*time.Second)

	var dead []string
	for _, b := range f.takeAll(t, dlq, 10*time.Second) {
		dead = append(dead, b)
	}
	sort.Strings(dead)
	sort.Strings(bodies)
	if !slices.Equal(dead, bodies) {
		t.Errorf("dead-letter queue holds %q, want %q", dead, bodies)
	}
	// Each body was delivered more than once (released at once, not dropped
	// or dead-lettered on sight) and at most maxReceiveCount times. AWS
	// delivers it exactly maxReceiveCount times; local-aws-sqs also counts
	// the release (a visibility change) as a receive, so fewer there.
	maxReceive := f.cfg.Settings.Worker.MaxReceiveCount
	n := int(r.metric(t, "xrc_source_messages_total", "result", "invalid"))
	if n < 2*len(bodies) || n > maxReceive*len(bodies) {
		t.Errorf("%d invalid deliveries of %d bodies, want 2 to maxReceiveCount (%d) each", n, len(bodies), maxReceive)
	}
	if l := logs.FilterMessage(logInvalid).Len(); l != n {
		t.Errorf("%d %q log lines, want one per delivery (%d)", l, logInvalid, n)
	}
	if n := r.metric(t, "xrc_source_messages_total", "result", "acked"); n != 0 {
		t.Errorf("%v messages acknowledged, want none", n)
	}

	// Still the same worker, still archiving.
	if r.exited() {
		t.Fatalf("worker stopped after invalid messages: %v", r.err)
	}
	var valid []object
	for i := range 10 {
		valid = append(valid, object{key: fmt.Sprintf("data/after-garbage/%d.txt", i), data: []byte(fmt.Sprintf("still working %d", i))})
	}
	f.put(t, valid)
	got := f.waitStaged(t, len(valid), time.Minute)
	for _, o := range valid {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%q put after the invalid messages not staged intact", o.key)
		}
	}
	f.waitDepth(t, f.sourceQueue(), 0, 10*time.Second)
	if r.exited() {
		t.Fatalf("worker stopped: %v", r.err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// An object deleted before the worker reads it is skipped and logged, its
// messages are acknowledged, and no archive holds it.
func TestObjectGoneBeforeProcessingIsSkipped(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ctx := context.Background()

	// The worker is not running yet, so every object below is gone by the
	// time it reads its events: real put-then-delete events from S3, and an
	// AWS-shaped event for a key that never existed.
	gone := []object{
		{key: "data/gone/a.txt", data: []byte("short-lived")},
		{key: "data/gone/with space/b+c.json", data: []byte(`{"short":"lived"}`)},
		{key: "data/gone/empty", data: []byte{}},
	}
	f.put(t, gone)
	for _, o := range gone {
		if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: aws.String(o.key)}); err != nil {
			t.Fatal(err)
		}
	}
	never := "data/gone/never existed+.txt"
	f.send(t, eventBody(f.rule.SourceBucket, never, "0123456789abcdef0123456789abcdef", "0055AED6DCD90281E5"))
	live := []object{
		{key: "data/live/1.txt", data: []byte("one")},
		{key: "data/live/2.txt", data: []byte("two")},
		{key: "data/live/3.txt", data: []byte("three")},
	}
	f.put(t, live)
	// A key outside the rule's prefix: no rule covers it.
	f.send(t, eventBody(f.rule.SourceBucket, "elsewhere/uncovered.txt", "0123456789abcdef0123456789abcdef", "0055AED6DCD90281E6"))
	// One event per put and per delete (the rule does not replicate deletes,
	// so those are acknowledged as ignored), plus the two synthetic ones:
	// eleven, so the first local long poll returns at once.
	messages := 2*len(gone) + 2 + len(live)
	f.waitDepth(t, f.sourceQueue(), messages, time.Minute)

	log, logs := observed(t)
	r := f.start(t, log)
	f.waitDepth(t, f.sourceQueue(), 0, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	got := f.readStaging(t)
	for _, o := range live {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%q not staged intact", o.key)
		}
	}
	wantSkipped := []string{never}
	for _, o := range gone {
		wantSkipped = append(wantSkipped, o.key)
		if _, ok := got[o.key]; ok {
			t.Errorf("%q is in an archive although it was gone before the worker read it", o.key)
		}
	}
	sort.Strings(wantSkipped)
	if keys := loggedKeys(logs, logGone); !slices.Equal(keys, wantSkipped) {
		t.Errorf("%q logged for %q, want %q", logGone, keys, wantSkipped)
	}
	if n := r.metric(t, "xrc_source_unmatched_events_total"); n != 1 {
		t.Errorf("%v events of keys no rule covers counted, want 1", n)
	}
	// The deletes are the rule's, passed by by design: not messages no
	// rule covers, which a mistyped prefix shows as.
	if n := r.metric(t, "xrc_source_messages_total", "result", "unmatched"); n != 1 {
		t.Errorf("%v messages counted unmatched, want 1", n)
	}
	if n := r.metric(t, "xrc_source_messages_total", "result", "ignored"); n != float64(len(gone)) {
		t.Errorf("%v messages counted ignored, want %d (the deletes)", n, len(gone))
	}
	if n := r.metric(t, "xrc_source_objects_total", "result", "skipped_delete"); n != float64(len(gone)) {
		t.Errorf("%v deletes counted skipped_delete, want %d", n, len(gone))
	}
	// One line per object only at debug (README): keys no rule covers
	// (here the deletes) and skips come by the thousand.
	for _, msg := range []string{logGone, "no rule covers object; acknowledging"} {
		all := logs.FilterMessage(msg)
		if all.Len() == 0 {
			t.Errorf("no %q line", msg)
		}
		if n := all.Len() - all.FilterLevelExact(zap.DebugLevel).Len(); n != 0 {
			t.Errorf("%d %q lines above debug", n, msg)
		}
	}
	if n := r.metric(t, "xrc_source_objects_total", "result", "skipped"); int(n) != len(wantSkipped) {
		t.Errorf("%v objects skipped, want %d", n, len(wantSkipped))
	}
	if n := r.metric(t, "xrc_source_messages_total", "result", "acked"); int(n) != messages {
		t.Errorf("%v messages acknowledged, want %d", n, messages)
	}
	if n := r.metric(t, "xrc_source_messages_total", "result", "released"); n != 0 {
		t.Errorf("%v messages released, want none", n)
	}
	if n := f.queueDepth(t, f.deadLetterQueue(t)); n != 0 {
		t.Errorf("%d messages in the dead-letter queue", n)
	}
}

// While the staging bucket cannot be written, no message is acknowledged and
// the archives are retried; once it is back, everything gets staged.
func TestStagingUnavailableIsRetried(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		// Room for a few failed rounds (each waits backoff(receiveCount))
		// before the messages would go to the dead-letter queue.
		c.Settings.Worker.MaxReceiveCount = 10
		c.Rules[0].Batch.MaxAge = config.Duration(time.Second)
	})
	ctx := context.Background()
	// Provision created the configured staging bucket; point the worker at
	// one that does not exist yet.
	missing := localstack.UniqueName("late-staging")
	f.cfg.Settings.Regions[0].StagingBucket = missing
	f.stage = missing
	t.Cleanup(func() {
		if !t.Failed() {
			if err := f.env.RemoveBucket(context.Background(), "us-east-1", missing); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})

	objs := mixedObjects(20, 3)
	f.put(t, objs)
	f.waitDepth(t, f.sourceQueue(), len(objs), time.Minute)
	log, logs := observed(t)
	r := f.start(t, log)

	// At least two failed rounds (so at least one retry) and a few seconds,
	// all the while with every message still on the queue.
	started := time.Now()
	ok := eventually(time.Minute, 250*time.Millisecond, func() bool {
		if n := f.queueDepth(t, f.sourceQueue()); n != len(objs) {
			t.Fatalf("%d messages on the queue while staging is missing, want all %d", n, len(objs))
		}
		if n := r.metric(t, "xrc_source_messages_total", "result", "acked"); n != 0 {
			t.Fatalf("%v messages acknowledged while staging is missing", n)
		}
		_, err := f.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &missing})
		if err == nil {
			t.Fatalf("staging bucket %s exists", missing)
		}
		return r.metric(t, "xrc_source_archives_total", "result", "failed") >= 2 && time.Since(started) > 4*time.Second
	})
	if !ok {
		t.Fatalf("archives failed %v times in a minute, want >= 2", r.metric(t, "xrc_source_archives_total", "result", "failed"))
	}
	if logs.FilterMessage(logNotStaged).Len() == 0 {
		t.Errorf("no %q log line", logNotStaged)
	}

	if err := f.env.EnsureBucket(ctx, "us-east-1", missing, true); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 0, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	entries := f.readArchives(t)
	if len(entries) != len(objs) {
		t.Errorf("%d entries in the archives, want %d", len(entries), len(objs))
	}
	got := f.readStaging(t)
	for _, o := range objs {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%q not staged intact", o.key)
		}
	}
	if n := f.queueDepth(t, f.deadLetterQueue(t)); n != 0 {
		t.Errorf("%d messages in the dead-letter queue", n)
	}
}

// Stopping the worker (SIGTERM cancels Run's context) while a batch is open
// never acknowledges a message whose object is not in a staged archive.
func TestStopMidBatchAcknowledgesOnlyStaged(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		c.Rules[0].Batch.MaxAge = config.Duration(time.Minute)
		c.Rules[0].Batch.Idle = c.Rules[0].Batch.MaxAge // closes on age only
		c.Rules[0].Batch.MaxObjects = 10000
	})
	log, _ := observed(t)
	r := f.start(t, log)
	objs := mixedObjects(40, 4)
	f.put(t, objs)

	var held float64
	if !eventually(time.Minute, 100*time.Millisecond, func() bool {
		held = r.metric(t, "xrc_source_messages_held")
		return int(held) == len(objs)
	}) {
		t.Fatalf("worker holds %v messages, want %d", held, len(objs))
	}
	if n := len(f.readArchives(t)); n != 0 {
		t.Fatalf("%d objects staged before the batch closed", n)
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Not acknowledged means on the queue or in its dead-letter queue: a
	// long poll cancelled by the stop can still take a released message on
	// the server and hide it for the visibility timeout, after which
	// local-aws-sqs may dead-letter it (it counts releases as receives).
	bodies := f.takeAll(t, f.sourceQueue(), 45*time.Second)
	maps.Copy(bodies, f.takeAll(t, f.deadLetterQueue(t), 5*time.Second))
	remaining := map[string]bool{}
	for _, body := range bodies {
		m, err := events.Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range m.Refs {
			remaining[ref.Key] = true
		}
	}
	got := f.readStaging(t)
	both := 0
	for _, o := range objs {
		s, isStaged := got[o.key]
		switch {
		case isStaged && s.sum != digest(o.data):
			t.Errorf("%q staged with other bytes", o.key)
		case isStaged && remaining[o.key]:
			both++
		case !isStaged && !remaining[o.key]:
			t.Errorf("%q: message acknowledged but object in no staged archive", o.key)
		}
	}
	if len(got)+len(remaining) != len(objs) || both != 0 {
		t.Errorf("%d staged + %d still queued (%d both), want %d in all", len(got), len(remaining), both, len(objs))
	}
	t.Logf("after stop: %d objects staged, %d messages back on the queue", len(got), len(remaining))
}

// overwriteBeforeTags writes the key again (other bytes, other tags) just
// before its tags are first read.
type overwriteBeforeTags struct {
	source.S3API
	s3   *s3.Client
	once sync.Once
}

func (c *overwriteBeforeTags) GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error) {
	var err error
	c.once.Do(func() {
		_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader("second write"), Tagging: aws.String("owner=second")})
	})
	if err != nil {
		return nil, err
	}
	return c.S3API.GetObjectTagging(ctx, in, optFns...)
}

// TestTagsOfTheSameWrite: an object overwritten between the GET of its
// bytes and the read of its tags is not staged with one write's bytes and
// the other's tags; the newer write's own event stages it whole.
func TestTagsOfTheSameWrite(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	f.worker = &overwriteBeforeTags{S3API: f.worker, s3: f.s3}
	key := "data/tagged.txt"
	f.put(t, []object{{key: key, data: []byte("first write"), tags: map[string]string{"owner": "first"}}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 1, time.Minute) // by the second write's own event
	r.stop()
	for _, s := range f.readArchives(t) {
		if s.obj.Key != key {
			continue
		}
		if first := s.sum == digest([]byte("first write")); first != (s.obj.Tags["owner"] == "first") {
			t.Errorf("staged the %s write's bytes with tags %v", map[bool]string{true: "first", false: "second"}[first], s.obj.Tags)
		}
	}
	if s, ok := f.readStaging(t)[key]; !ok || s.sum != digest([]byte("second write")) {
		t.Errorf("the second write not staged: %+v", s)
	}
}

// TestNoVersionFromBehindADelete: when the newest version a batch
// announces was deleted by its id since, and a delete came before it, the
// key reads as deleted: that delete is staged, never the version from
// before it.
func TestNoVersionFromBehindADelete(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		oneBatch(c)
		c.Rules[0].Deletes = true
	})
	ctx := context.Background()
	if _, err := f.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &f.rule.SourceBucket,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	key := "data/deleted.txt"
	f.put(t, []object{{key: key, data: []byte("version 1")}})
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key}); err != nil {
		t.Fatal(err)
	}
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: strings.NewReader("version 2, undone")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, VersionId: out.VersionId}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 4, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 1, time.Minute)
	r.stop()
	if s, ok := got[key]; !ok || !s.obj.Delete {
		t.Errorf("%s: staged %+v, want its delete", key, s.obj)
	}
	for _, s := range f.readArchives(t) {
		if s.obj.Key == key && !s.obj.Delete {
			t.Errorf("a version from behind the delete was staged (version 1: %t)", s.sum == digest([]byte("version 1")))
		}
	}
}

// TestUnorderedEventIsSeen: an object whose event has no sequencer (a
// backfill's) is staged with the time the source found it current, what
// a target orders it against a delete by; one S3 announced is not.
func TestUnorderedEventIsSeen(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ctx := context.Background()
	if err := f.env.UnrouteEvents(ctx, f.rule.SourceBucket); err != nil {
		t.Fatal(err)
	}
	key := "data/backfilled.txt"
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: strings.NewReader("found by a listing")})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	body, err := events.Encode("xrc-backfill", events.ObjectRef{EventName: "ObjectCreated:Put", Bucket: f.rule.SourceBucket, Key: key,
		Size: 18, ETag: strings.Trim(aws.ToString(out.ETag), `"`), EventTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 1, time.Minute)
	r.stop()
	o := got[key].obj
	if o.Seen.Before(before) || o.Seen.After(time.Now()) || o.Sequencer != "" {
		t.Errorf("staged %s seen at %s (sequencer %q), want the time it was read", key, o.Seen, o.Sequencer)
	}
}

// TestVersionBeforeADeletedOneIsStaged: in a versioned bucket, when the
// newest version a batch announces was deleted by its id since, the key
// reads as the version before it, and that is what is staged.
func TestVersionBeforeADeletedOneIsStaged(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t)
	ctx := context.Background()
	key := "data/undone.txt"
	v1, v2 := []byte("version 1"), []byte("version 2, undone")
	f.put(t, []object{{key: key, data: v1}})
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: bytes.NewReader(v2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, VersionId: out.VersionId}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 3, time.Minute) // the two writes and the version delete
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 1, time.Minute)
	if s, ok := got[key]; !ok || s.sum != digest(v1) {
		t.Errorf("%s: staged %+v, want version 1", key, s)
	}
	r.stop()
}

// An object overwritten between its event and the worker's HEAD (unversioned
// bucket: the ETag differs) is skipped for that event; the newer write's own
// event stages the newest bytes, once.
func TestOverwrittenObjectStagesNewestOnce(t *testing.T) {
	t.Parallel()
	// One object per batch, so the first write's event is read on its own
	// and its HEAD already sees the second write.
	f := setup(t, func(c *config.Config) { c.Rules[0].Batch.MaxObjects = 1 })
	rng := rand.New(rand.NewPCG(5, 5))
	var v1, v2 []object
	for i := range 5 {
		key := fmt.Sprintf("data/overwritten/%d.txt", i)
		v1 = append(v1, object{key: key, data: dataset.Text(rng, 100+rng.IntN(4000))})
		v2 = append(v2, object{key: key, data: dataset.Text(rng, 100+rng.IntN(4000))})
	}
	// Both writes happen before the worker starts, so the outcome does not
	// depend on timing.
	f.put(t, v1)
	f.put(t, v2)
	f.waitDepth(t, f.sourceQueue(), len(v1)+len(v2), time.Minute)

	log, logs := observed(t)
	r := f.start(t, log)
	f.waitDepth(t, f.sourceQueue(), 0, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	count := map[string]int{}
	for _, s := range f.readArchives(t) {
		count[s.obj.Key]++
	}
	got := f.readStaging(t)
	for i, o := range v2 {
		if count[o.key] != 1 {
			t.Errorf("%q is in %d archives, want 1", o.key, count[o.key])
		}
		if s := got[o.key]; s.sum != digest(o.data) {
			t.Errorf("%q: staged bytes are not the newest write (v1 %t)", o.key, s.sum == digest(v1[i].data))
		}
	}
	entries := logs.FilterMessage(logOverwritten).All()
	if len(entries) != len(v1) {
		t.Errorf("%d %q log lines, want %d", len(entries), logOverwritten, len(v1))
	}
	index := map[string]int{}
	for i, o := range v1 {
		index[o.key] = i
	}
	for _, e := range entries {
		c := e.ContextMap()
		key, _ := c["key"].(string)
		i, ok := index[key]
		if !ok || c["eventETag"] != md5hex(v1[i].data) || c["currentETag"] != md5hex(v2[i].data) {
			t.Errorf("%q: skipped with event ETag %v, current %v; want the first and second writes'", key, c["eventETag"], c["currentETag"])
		}
	}
	if n := r.metric(t, "xrc_source_objects_total", "result", "skipped"); int(n) != len(v1) {
		t.Errorf("%v objects skipped, want %d", n, len(v1))
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// An object whose key maps to no valid destination key (here the key equal
// to the rule prefix, rewritten to an empty prefix) fails alone: the other
// objects of its batch are archived, and its message, which no retry can
// fix, goes to the dead-letter queue without waiting out the backoff.
func TestUnroutableKeyFailsOnlyItsObject(t *testing.T) {
	t.Parallel()
	empty := ""
	f := setup(t, func(c *config.Config) { c.Rules[0].Destinations[0].Prefix = &empty })
	log, logs := observed(t)
	r := f.start(t, log)
	objs := []object{{key: "data/", data: []byte{}}} // a folder marker: "data/" -> ""
	for i := range 9 {
		objs = append(objs, object{key: fmt.Sprintf("data/routable/%d.txt", i), data: []byte(fmt.Sprintf("object %d", i))})
	}
	f.put(t, objs)
	got := f.waitStaged(t, len(objs)-1, time.Minute)
	for _, o := range objs[1:] {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%s not archived intact", o.key)
		}
	}
	if _, ok := got["data/"]; ok {
		t.Error("the unroutable object was archived")
	}
	dlq := f.deadLetterQueue(t)
	f.waitDepth(t, dlq, 1, time.Minute)
	f.waitDepth(t, f.sourceQueue(), 0, 10*time.Second)
	for _, body := range f.takeAll(t, dlq, 10*time.Second) {
		m, err := events.Parse([]byte(body))
		if err != nil || len(m.Refs) != 1 || m.Refs[0].Key != "data/" {
			t.Errorf("dead-lettered %q, want the event of data/", body)
		}
	}
	if keys := loggedKeys(logs, "object not archived"); len(keys) < 1 || keys[0] != "data/" {
		t.Errorf("logged not-archived keys %q, want data/", keys)
	}
	found := false
	for _, e := range logs.FilterMessage("object not archived").All() {
		found = found || strings.Contains(fmt.Sprint(e.ContextMap()["error"]), `key "data/" maps to an empty key`)
	}
	if !found {
		t.Error("the log does not say why the object cannot be replicated")
	}
	if n := r.metric(t, "xrc_source_errors_total", "kind", "unroutable"); n < 1 {
		t.Errorf("unroutable errors counted %v", n)
	}
}

// A statistics table that does not answer (missing, throttled, down) never
// stops archiving: every object is staged, the errors are counted and
// logged, and the deltas wait in memory.
func TestStatsOutageKeepsArchiving(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ddb, err := f.env.DynamoDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	log, logs := observed(t)
	r := f.startWithStats(t, log, stats.New(ddb, "no-such-table-"+f.cfg.Settings.StackName, time.Now))
	var objs []object
	for i := range 10 {
		objs = append(objs, object{key: fmt.Sprintf("data/outage/%d.csv", i), data: corpus.Generate("csv", 20_000+i), ctype: "text/csv"})
	}
	f.put(t, objs)
	got := f.waitStaged(t, len(objs), time.Minute)
	for _, o := range objs {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%s not archived while the statistics table is missing", o.key)
		}
	}
	f.waitDepth(t, f.sourceQueue(), 0, 30*time.Second)
	// The archives' statistics' writes, not only the start-up
	// benchmark's (counted and said the same way).
	benchmark := float64(logs.FilterMessage("adding the CPU benchmark to the fleet's: this task's CPU counts as the fleet's mean").Len())
	if n := r.metric(t, "xrc_source_errors_total", "kind", "stats"); n <= benchmark {
		t.Errorf("statistics errors counted %v times, %v of them the benchmark's; want the archives' writes counted", n, benchmark)
	}
	kept := false
	for _, e := range logs.FilterMessage("writing compression statistics: kept to write later; archiving goes on").All() {
		fields := e.ContextMap()
		kept = kept || fields["rule"] == f.cfg.Rules[0].ID && fmt.Sprint(fields["pending"]) != "0"
	}
	if !kept {
		t.Error("the failed writes of the archives' statistics were not said, with the deltas kept")
	}
	if n := r.metric(t, "xrc_source_level_objects_total"); n != float64(len(objs)) {
		t.Errorf("level mix counts %v objects, want %d", n, len(objs))
	}
}

// deniedGet fails every GET of a key containing "denied", as S3 does for an
// SSE-KMS object the worker may HEAD but not decrypt.
type deniedGet struct{ source.S3API }

func (c deniedGet) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if strings.Contains(aws.ToString(in.Key), "denied") {
		return nil, fmt.Errorf("GetObject %s: AccessDenied (injected)", aws.ToString(in.Key))
	}
	return c.S3API.GetObject(ctx, in, optFns...)
}

// misdescribed answers HEAD for keys holding "intl" with user metadata as
// S3 returns non-ASCII values, RFC 2047-encoded: longer than the 2 KB the
// manifest allows, which no target could write; and for keys holding
// "badsum" with a SHA-256 the bytes do not have, for keys holding
// "badcrc" with such a CRC32C, and for keys holding "badsha1" with such a
// SHA-1.
type misdescribed struct{ source.S3API }

func (c misdescribed) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := c.S3API.HeadObject(ctx, in, optFns...)
	switch key := aws.ToString(in.Key); {
	case err != nil:
	case strings.Contains(key, "intl"):
		out.Metadata = map[string]string{"title": "=?UTF-8?B?" + strings.Repeat("5pel5pys", 300) + "?="}
	case strings.Contains(key, "badsum"):
		sum := sha256.Sum256([]byte("other bytes"))
		out.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
		out.ChecksumType = s3types.ChecksumTypeFullObject
	case strings.Contains(key, "badcrc"):
		// A CRC32C: checked on every CPU (checksum.Algorithm.Fast).
		out.ChecksumCRC32, out.ChecksumCRC32C = nil, aws.String(checksum.CRC32C.Sum([]byte("other bytes")))
		out.ChecksumType = s3types.ChecksumTypeFullObject
	case strings.Contains(key, "badsha1"):
		// Not checked where it costs (checksum.Algorithm.Fast) unless
		// a destination's store does not check it (archive.Writer.CheckAll).
		out.ChecksumCRC32, out.ChecksumCRC32C, out.ChecksumCRC64NVME = nil, nil, nil
		out.ChecksumSHA1 = aws.String(checksum.SHA1.Sum([]byte("other bytes")))
		out.ChecksumType = s3types.ChecksumTypeFullObject
	}
	return out, err
}

// TestInvalidObjectFailsAlone: an object whose description no manifest
// may hold fails alone, named in the log, and so does one whose bytes are
// not what S3 described; the objects batched with them are staged.
func TestInvalidObjectFailsAlone(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	f.worker = misdescribed{f.worker}
	rng := rand.New(rand.NewPCG(9, 9))
	objs := []object{{key: "data/intl/title", data: dataset.Text(rng, 1<<20)}, {key: "data/badsum", data: dataset.Text(rng, 1<<20)}}
	for i := range 4 {
		objs = append(objs, object{key: fmt.Sprintf("data/plain/%d", i), data: dataset.Text(rng, 1<<20)})
	}
	got, logs := f.packed(t, objs, objs[2:])
	for _, o := range objs[:2] {
		if _, ok := got[o.key]; ok {
			t.Errorf("%s archived", o.key)
		}
	}
	if keys := loggedKeys(logs, "object not archived"); len(keys) == 0 || keys[0] != objs[0].key {
		t.Errorf("objects not archived %q, want %s", keys, objs[0].key)
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) == 0 || keys[0] != objs[1].key {
		t.Errorf("archives rebuilt without %q, want %s", keys, objs[1].key)
	}
}

// TestObjectNotMatchingItsChecksumFailsAlone: an object whose bytes are
// not those of the checksum S3 gave for it (the one its destinations are
// written with, which S3 would refuse there) fails alone at the source.
func TestObjectNotMatchingItsChecksumFailsAlone(t *testing.T) {
	t.Parallel()
	setup(t, oneBatch).failsAlone(t, "data/badcrc", 10)
}

// TestSourceChecksumCheckedForAStoreThatDoesNot: a rule delivering to an
// S3-compatible store that does not check source checksums (no
// s3SourceChecksums) has the source check every object's, a SHA-1 too: the
// object whose bytes are not its SHA-1 fails alone, where nobody else
// would have compared them.
func TestSourceChecksumCheckedForAStoreThatDoesNot(t *testing.T) {
	t.Parallel()
	setup(t, func(c *config.Config) {
		oneBatch(c)
		c.Settings.Regions[1].S3SourceChecksums = false
	}).failsAlone(t, "data/badsha1", 11)
}

// failsAlone packs key, which misdescribed describes wrongly, in one batch
// with three other objects: it alone is left out, its archive rebuilt
// without it.
func (f *fixture) failsAlone(t *testing.T, key string, seed uint64) {
	f.worker = misdescribed{f.worker}
	rng := rand.New(rand.NewPCG(9, seed))
	objs := []object{{key: key, data: dataset.Text(rng, 1<<20)}}
	for i := range 3 {
		objs = append(objs, object{key: fmt.Sprintf("data/plain/%d", i), data: dataset.Text(rng, 1<<20)})
	}
	got, logs := f.packed(t, objs, objs[1:])
	if _, ok := got[key]; ok {
		t.Errorf("%s archived", key)
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) == 0 || keys[0] != key {
		t.Errorf("archives rebuilt without %q, want %s", keys, key)
	}
}

// oneBatch makes the objects queued before a worker starts one batch.
func oneBatch(c *config.Config) {
	c.Rules[0].Batch.MaxAge = config.Duration(10 * time.Second)
	c.Rules[0].Batch.Idle = c.Rules[0].Batch.MaxAge
}

// packed puts objs, runs a worker on them (one batch, with oneBatch) until
// want are staged, and checks that these are intact and that no archive
// failed as a whole. It returns what was staged and the worker's logs.
func (f *fixture) packed(t *testing.T, objs, want []object) (map[string]staged, *observer.ObservedLogs) {
	t.Helper()
	f.put(t, objs)
	f.waitDepth(t, f.sourceQueue(), len(objs), time.Minute)
	log, logs := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, len(want), time.Minute)
	r.stop()
	for _, o := range want {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%s not archived intact", o.key)
		}
	}
	for _, e := range logs.FilterMessage(logNotStaged).All() {
		t.Errorf("an archive failed as a whole: %v", e.ContextMap()["error"])
	}
	return got, logs
}

// TestManyUnreadableObjectsCostOneRebuild: however many objects of an
// archive cannot be read (a KMS key the worker may not use, an archived
// storage class), the readable ones are staged. Once one fails, the others
// that cannot be read are found by their first byte and left out together;
// rebuilding once for each would read the archive again and again.
func TestManyUnreadableObjectsCostOneRebuild(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	gets := &countingGets{S3API: deniedGet{f.worker}}
	f.worker = gets
	rng := rand.New(rand.NewPCG(10, 10))
	var objs, good []object
	for i := range 20 {
		o := object{key: fmt.Sprintf("data/many/%02d", i), data: dataset.Text(rng, 300<<10)}
		if i%2 == 1 {
			o.key += "-denied"
		} else {
			good = append(good, o)
		}
		objs = append(objs, o)
	}
	_, logs := f.packed(t, objs, good)
	if n := gets.n.Load(); n > 3*int64(len(objs)) {
		t.Errorf("%d GETs for %d objects, %d unreadable: want at most %d", n, len(objs), len(objs)-len(good), 3*len(objs))
	}
	// The store ignores Range (countingGets): the probes still read a
	// byte each, not whole objects.
	if b := gets.rangedBytes.Load(); b > int64(len(objs)) {
		t.Errorf("%d bytes read by ranged GETs of %d objects", b, len(objs))
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) != 1 {
		t.Errorf("archives rebuilt without %q, want one rebuild", keys)
	}
	if keys := append(loggedKeys(logs, logRebuilt), loggedKeys(logs, logLeftOut)...); len(keys) < len(objs)-len(good) {
		t.Errorf("objects failed %q, want the %d unreadable ones", keys, len(objs)-len(good))
	}
}

// countingGets counts GetObject calls, and the body bytes that GETs asking
// for a range read, answering every GET whole, as a store that ignores
// Range does.
type countingGets struct {
	source.S3API
	n, rangedBytes atomic.Int64
}

func (c *countingGets) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.n.Add(1)
	whole := *in
	whole.Range = nil
	out, err := c.S3API.GetObject(ctx, &whole, optFns...)
	if err == nil && in.Range != nil {
		out.Body = countedBody{out.Body, &c.rangedBytes}
	}
	return out, err
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// An object whose GET fails once its archive has begun (1 MiB objects are
// read while the archive is written, not when the batch is planned) fails
// alone: its archive is rebuilt without it, and every archive after it is
// staged. The failed archive's writer once went back to the pool still
// open, and refused every archive it was given after that.
func TestObjectFailingMidArchiveFailsOnlyItself(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		// The three first objects share an archive.
		c.Rules[0].Batch.MaxAge = config.Duration(3 * time.Second)
		c.Rules[0].Batch.Idle = c.Rules[0].Batch.MaxAge
	})
	f.worker = deniedGet{f.worker}
	rng := rand.New(rand.NewPCG(7, 7))
	first := []object{
		{key: "data/first/a", data: dataset.Text(rng, 1<<20)},
		{key: "data/first/b-denied", data: dataset.Text(rng, 1<<20)},
		{key: "data/first/c", data: dataset.Text(rng, 1<<20)},
	}
	f.put(t, first)
	f.waitDepth(t, f.sourceQueue(), len(first), time.Minute)
	log, logs := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 2, time.Minute)
	var later []object
	for i := range 6 {
		later = append(later, object{key: fmt.Sprintf("data/later/%d", i), data: dataset.Text(rng, 1<<20)})
	}
	f.put(t, later)
	want := append([]object{first[0], first[2]}, later...)
	got := f.waitStaged(t, len(want), time.Minute)
	for _, o := range want {
		if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
			t.Errorf("%s not archived intact", o.key)
		}
	}
	if _, ok := got["data/first/b-denied"]; ok {
		t.Error("the object that cannot be read was archived")
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) < 1 || keys[0] != "data/first/b-denied" {
		t.Errorf("archives rebuilt without %q, want data/first/b-denied", keys)
	}
	for _, e := range logs.FilterMessage(logNotStaged).All() {
		t.Errorf("an archive of readable objects failed: %v", e.ContextMap()["error"])
	}
	r.stop()
}

// TestTagChangesStagedAsRetags: a change of tags alone is staged as a
// retag entry, without the object's bytes, carrying the tags the write has
// now and the write's own Last-Modified; a tag change in the batch of its
// object's write is carried by the write itself, read with the new tags;
// one in the batch of a stale event (a write since overwritten, retried)
// is staged as a retag all the same.
func TestTagChangesStagedAsRetags(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	ctx := context.Background()
	tag := func(key string, tags map[string]string) {
		t.Helper()
		var set []s3types.Tag
		for k, v := range tags {
			set = append(set, s3types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := f.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &f.rule.SourceBucket, Key: &key,
			Tagging: &s3types.Tagging{TagSet: set}}); err != nil {
			t.Fatal(err)
		}
	}
	old, fresh, stale := "data/retag/old.txt", "data/retag/new.txt", "data/retag/stale.txt"
	f.put(t, []object{{key: old, data: []byte("tagged later"), tags: map[string]string{"x": "1"}}})
	first, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &stale, Body: strings.NewReader("first write")})
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, []object{{key: stale, data: []byte("second write")}})
	f.waitDepth(t, f.sourceQueue(), 3, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 2, time.Minute)
	r.stop()
	written, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &f.rule.SourceBucket, Key: &old})
	if err != nil {
		t.Fatal(err)
	}

	tag(old, map[string]string{"x": "2"})
	f.put(t, []object{{key: fresh, data: []byte("tagged at once"), tags: map[string]string{"y": "1"}}})
	tag(fresh, map[string]string{"y": "2"})
	// The first write's event again (a retry), in the batch of a change
	// of the second write's tags.
	tag(stale, map[string]string{"z": "2"})
	body, err := events.Encode("test", events.ObjectRef{EventName: "ObjectCreated:Put", Bucket: f.rule.SourceBucket, Key: stale,
		ETag: strings.Trim(aws.ToString(first.ETag), `"`), Size: int64(len("first write")), EventTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.sourceQueue()), MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 5, time.Minute)
	r = f.start(t, log)
	deadline := time.Now().Add(time.Minute)
	var retags, writes []staged
	for {
		retags, writes = nil, nil
		for _, s := range f.readArchives(t) {
			switch {
			case s.obj.Retag:
				retags = append(retags, s)
			case s.obj.Key == fresh:
				writes = append(writes, s)
			}
		}
		if len(retags) >= 2 && len(writes) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	r.stop()
	slices.SortFunc(retags, func(a, b staged) int { return strings.Compare(a.obj.Key, b.obj.Key) })
	if len(retags) != 2 || retags[0].obj.Key != old || retags[0].obj.Tags["x"] != "2" || retags[0].sum != "" ||
		!retags[0].obj.LastModified.Equal(aws.ToTime(written.LastModified)) || retags[0].obj.Seen.IsZero() {
		t.Errorf("retag entries = %+v, want one for %s with x=2, its write's Last-Modified %v, and when it was read", retags, old, aws.ToTime(written.LastModified))
	}
	if len(retags) == 2 && (retags[1].obj.Key != stale || retags[1].obj.Tags["z"] != "2") {
		t.Errorf("retag entries = %+v, want one for %s with z=2 (its batch had a stale write's event)", retags, stale)
	}
	if len(writes) != 1 || writes[0].obj.Tags["y"] != "2" || !writes[0].obj.TagsChanged {
		t.Errorf("%s staged as %+v, want one write with y=2, marked as carrying a tag change", fresh, writes)
	}
}

// overwriteAfterHead writes the key again (other, longer bytes) just after
// its first HEAD: between the description of a large object and the read
// of its bytes.
type overwriteAfterHead struct {
	source.S3API
	s3   *s3.Client
	data []byte
	once sync.Once
}

func (c *overwriteAfterHead) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := c.S3API.HeadObject(ctx, in, optFns...)
	c.once.Do(func() {
		if _, perr := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: bytes.NewReader(c.data)}); perr != nil && err == nil {
			err = perr
		}
	})
	return out, err
}

// TestNullVersionIsReadByETag: an event naming version "null" (an
// unversioned or versioning-suspended bucket's, which an overwrite keeps)
// does not pin the bytes read after the HEAD: an overwrite in between is
// caught by the ETag, and the object skipped (not failed: the overwrite
// has its own event, which stages the new bytes whole). Read by the
// version id, the new bytes would be archived cut to the old size.
func TestNullVersionIsReadByETag(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rng := rand.New(rand.NewPCG(7, 7))
	key := "data/null/big.txt"
	v1, v2 := dataset.Text(rng, 300<<10), dataset.Text(rng, 400<<10)
	f.put(t, []object{{key: key, data: v1}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	f.takeAll(t, f.sourceQueue(), time.Minute) // S3's own event: hidden for the test
	body, err := events.Encode("test", events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now(), Region: "us-east-1",
		Bucket: f.rule.SourceBucket, Key: key, VersionID: "null", ETag: md5hex(v1), Size: int64(len(v1))})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
	f.worker = &overwriteAfterHead{S3API: f.worker, s3: f.s3, data: v2}
	log, logs := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 1, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.readArchives(t) {
		if s.obj.Key == key && s.sum != digest(v2) {
			t.Errorf("%q staged as %d bytes that are not the second write (first %t)", key, s.obj.Size, s.sum == digest(v1))
		}
	}
	if n := len(logs.FilterMessageSnippet("archive not staged").All()) + len(logs.FilterMessageSnippet("rebuilding").All()); n != 0 {
		t.Errorf("%d archives failed or rebuilt for an object overwritten after its HEAD; want it skipped", n)
	}
}

// sizedAs reports the object at key as size bytes long (HEAD, and the
// headers of a GET), as S3 would a TiB-sized one.
type sizedAs struct {
	source.S3API
	key  string
	size int64
}

func (s sizedAs) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := s.S3API.HeadObject(ctx, in, optFns...)
	if err == nil && aws.ToString(in.Key) == s.key {
		out.ContentLength = aws.Int64(s.size)
	}
	return out, err
}

func (s sizedAs) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := s.S3API.GetObject(ctx, in, optFns...)
	if err == nil && aws.ToString(in.Key) == s.key {
		out.ContentLength = aws.Int64(s.size)
	}
	return out, err
}

// stagedAndDead puts objs, runs a worker until it has staged nStaged of
// them and nDead messages reached the DLQ, stops it, and returns what was
// staged, the stopped worker and its logs.
func (f *fixture) stagedAndDead(t *testing.T, objs []object, nStaged, nDead int) (map[string]staged, *running, *observer.ObservedLogs) {
	t.Helper()
	f.put(t, objs)
	return f.runUntil(t, len(objs), nStaged, nDead)
}

// runUntil starts the worker once queued messages wait, and stops it once
// nStaged objects are staged and nDead messages are in the DLQ.
func (f *fixture) runUntil(t *testing.T, queued, nStaged, nDead int) (map[string]staged, *running, *observer.ObservedLogs) {
	t.Helper()
	f.waitDepth(t, f.sourceQueue(), queued, time.Minute)
	log, logs := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, nStaged, time.Minute)
	f.waitDepth(t, f.deadLetterQueue(t), nDead, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	return got, r, logs
}

// TestObjectTooLargeForTheTask: an object whose staging upload would need
// more memory for its parts than the task may give them fails alone, at
// once, towards the dead-letter queue, naming what to change; the objects
// batched with it are staged. (Without the bound it would run task after
// task out of memory, and take every message they held with it.)
func TestObjectTooLargeForTheTask(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Settings.Worker.MaxReceiveCount = 2 })
	huge := "data/huge.bin"
	f.worker = sizedAs{S3API: f.worker, key: huge, size: 100 << 30} // parts of 11.6 MiB: 46 MiB of buffers
	f.uploadMemory = 40 << 20                                       // 8 MiB parts: 32 MiB
	objs := []object{{key: huge, data: []byte("reported as 100 GiB")}, {key: "data/small-1.txt", data: []byte("one")}, {key: "data/small-2.txt", data: []byte("two")}}
	got, r, logs := f.stagedAndDead(t, objs, 2, 1)
	if _, ok := got[huge]; ok || len(got) != 2 {
		t.Errorf("staged %v, want the two small objects only", slices.Collect(maps.Keys(got)))
	}
	if n := len(logs.FilterMessage("object not archived").FilterFieldKey("error").All()); n < 1 {
		t.Error("the object too large was not logged")
	}
	for _, e := range logs.FilterMessage("object not archived").All() {
		if msg, _ := e.ContextMap()["error"].(string); !strings.Contains(msg, "give the source more memory") {
			t.Errorf("logged %q, want it to say what to change", msg)
		}
	}
	if n := r.metric(t, "xrc_source_errors_total", "kind", "too_large"); n < 1 {
		t.Errorf("%v too_large errors counted", n)
	}
}

// deleteVersionBeforeGet deletes the version a GET asks for, once, just
// before it: deleted by its id between plan's HEAD and the archive's read.
type deleteVersionBeforeGet struct {
	source.S3API
	s3      *s3.Client
	version string
	once    sync.Once
}

func (d *deleteVersionBeforeGet) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if aws.ToString(in.VersionId) == d.version {
		var err error
		d.once.Do(func() {
			_, err = d.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: in.Bucket, Key: in.Key, VersionId: in.VersionId})
		})
		if err != nil {
			return nil, err
		}
	}
	return d.S3API.GetObject(ctx, in, optFns...)
}

// TestVersionDeletedAfterPlanFallsBack: versions 1 and 2 of a key in one
// batch, 2 deleted by its id after plan read it and before the archive
// reads its bytes: the key reads as version 1 again, which no event will
// announce, so the entry is not skipped but tried again, and plan stages
// version 1 (as when the delete comes before plan:
// TestVersionBeforeADeletedOneIsStaged).
func TestVersionDeletedAfterPlanFallsBack(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 9))
	key := "data/undone-late.txt"
	v1, v2 := dataset.Text(rng, 300<<10), dataset.Text(rng, 300<<10) // read as the archive is written
	f.put(t, []object{{key: key, data: v1}})
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: bytes.NewReader(v2)})
	if err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	f.worker = &deleteVersionBeforeGet{S3API: f.worker, s3: f.s3, version: aws.ToString(out.VersionId)}
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 1, time.Minute)
	if s, ok := got[key]; !ok || s.sum != digest(v1) {
		t.Errorf("%s: staged %v (version 2: %t), want version 1", key, ok, s.sum == digest(v2))
	}
	r.stop()
}

// versionedBatches is a fixture whose source bucket is versioned and whose
// batches wait 3 s for more events, so that a test's writes of one key land
// in one batch.
func versionedBatches(t *testing.T, opts ...func(*config.Config)) *fixture {
	t.Helper()
	f := setup(t, func(c *config.Config) {
		c.Rules[0].Batch.MaxAge = config.Duration(3 * time.Second)
		c.Rules[0].Batch.Idle = c.Rules[0].Batch.MaxAge
		for _, o := range opts {
			o(c)
		}
	})
	if _, err := f.s3.PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{Bucket: &f.rule.SourceBucket,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNullVersionDeleteOfAnotherVersion: ObjectRemoved:Delete of version
// "null" is a delete on an unversioned bucket, or, on a versioned one, the
// null version deleted for good, which need not be the current one. The
// key is read first: it still holds an object, so no delete is staged (a
// delete of the key would remove the destinations' current copy while the
// source has one).
func TestNullVersionDeleteOfAnotherVersion(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	key, other := "data/null-delete/k.txt", "data/null-delete/other.txt"
	f.put(t, []object{{key: key, data: []byte("current")}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	f.takeAll(t, f.sourceQueue(), time.Minute) // its write is not the point
	f.nullDelete(t, key, "00")
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	f.wantNotStaged(t, key, "for a null version's delete while the key holds an object")
}

// TestLateDeleteOfAKeyReadableAgain: a delete marker's event handled late
// (a retry, a backlog), after the marker was removed (an undo, whose own
// event, a version's delete, is not propagated) or the key written again:
// the key reads as an object, so no delete is staged. Staged unread, it
// removed the destinations' copy while the source had one, for good.
func TestLateDeleteOfAKeyReadableAgain(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	key, other := "data/late-delete/k.txt", "data/late-delete/other.txt"
	f.put(t, []object{{key: key, data: []byte("current")}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	f.takeAll(t, f.sourceQueue(), time.Minute) // its write is not the point
	f.removal(t, "ObjectRemoved:DeleteMarkerCreated", key, "marker-removed-since", strings.Repeat("F", 20))
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	logs := f.wantNotStaged(t, key, "for a delete marker's event while the key holds an object")
	if lines := logs.FilterMessageSnippet("delete not staged"); lines.Len() == 0 {
		t.Error("no line says why the delete was not staged")
	} else if n := lines.Len() - lines.FilterLevelExact(zap.DebugLevel).Len(); n != 0 {
		t.Errorf("%d lines of one object above debug (README: per-object lines at debug only)", n)
	}
}

// TestLateDeleteMarkerAfterAWriteOfItsBatch: a batch holding a write and
// a later delete marker of one key, the marker removed since (an undo):
// the key reads as the write, which is staged; nothing was before, both
// events skipped, and no later event announced the write again.
func TestLateDeleteMarkerAfterAWriteOfItsBatch(t *testing.T) {
	t.Parallel()
	writeThenRemoval(t, "data/late-marker/k.txt", "ObjectRemoved:DeleteMarkerCreated", "marker-removed-since")
}

// writeThenRemoval puts key on a versioned bucket, then sends a removal's
// event (name, version) after the write's, which leaves the key reading
// as the write: it must be what the batch stages.
func writeThenRemoval(t *testing.T, key, name, version string) {
	f := versionedBatches(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	v1 := []byte("the current version")
	f.put(t, []object{{key: key, data: v1}})
	f.removal(t, name, key, version, strings.Repeat("F", 40)) // after the write
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 1, time.Minute)
	r.stop()
	if s, ok := got[key]; !ok || s.obj.Delete || s.sum != digest(v1) {
		t.Errorf("%s: staged %+v (present %t), want the write the key reads as", key, s.obj, ok)
	} else if s.obj.EventTime.IsZero() {
		// What orders it against a backfill's copy read before it
		// completed (deliver's newerOrSame).
		t.Errorf("%s: staged without its event's time", key)
	}
}

// TestLateEventOfAVersionNoLongerCurrent: a write's event redriven weeks
// late (a DLQ's redrive starts its 14 days again) names a version deleted
// since, behind a delete marker whose tombstone the targets may no longer
// keep: S3 still serves the version by its id, but it is not carried,
// since it is not the key's current one (what replaced it has its own
// event). Before, it was staged, and could bring a deleted object back.
func TestLateEventOfAVersionNoLongerCurrent(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	key, other := "data/late-version/k.txt", "data/late-version/other.txt"
	f.lateEventOfADeletedWrite(t, key)
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	logs := f.wantNotStaged(t, key, "a version deleted since its late event")
	if lines := logs.FilterMessageSnippet("late event of a version no longer current"); lines.Len() == 0 {
		t.Error("no line says why the late event was skipped")
	} else if n := lines.Len() - lines.FilterLevelExact(zap.DebugLevel).Len(); n != 0 {
		t.Errorf("%d lines of one object above debug (README: per-object lines at debug only)", n)
	}
}

// TestDeletedVersionsStagedWhereDeletesStay: on a rule that does not
// propagate deletes (its targets keep the copies of deleted keys), a
// version deleted since its event (a delete marker) is staged all the
// same: a late event's (redriven from a DLQ), and one in the batch of a
// change of its tags. Skipped as no longer current, they were never
// delivered: the delete's own event, dropped, replaces nothing, and a
// backfill reads only current objects.
func TestDeletedVersionsStagedWhereDeletesStay(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t)
	ctx := context.Background()
	late, tagged := "data/deletes-stay/late.txt", "data/deletes-stay/tagged.txt"
	f.lateEventOfADeletedWrite(t, late)
	f.put(t, []object{{key: tagged, data: []byte("tagged, then deleted"), tags: map[string]string{"y": "1"}}})
	if _, err := f.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &f.rule.SourceBucket, Key: &tagged,
		Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("y"), Value: aws.String("2")}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &tagged}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 4, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 2, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if s, ok := got[late]; !ok || s.obj.Delete || s.obj.Retag {
		t.Errorf("%s: staged %t as %+v, want its write: nothing else delivers it", late, ok, s.obj)
	}
	if s, ok := got[tagged]; !ok || s.obj.Delete || s.obj.Retag || s.obj.Tags["y"] != "2" {
		t.Errorf("%s: staged %t as %+v, want its write with y=2: nothing else delivers it", tagged, ok, s.obj)
	}
}

// lateEventOfADeletedWrite writes key, deletes it (a delete marker), drops
// both events (replicated long ago) and sends the write's event again,
// 20 days late, as a redrive from a DLQ would.
func (f *fixture) lateEventOfADeletedWrite(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: strings.NewReader("deleted weeks ago")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	f.discardAll(t)
	body, err := events.Encode("test", events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now().Add(-20 * 24 * time.Hour), Region: "us-east-1",
		Bucket: f.rule.SourceBucket, Key: key, VersionID: aws.ToString(out.VersionId), ETag: strings.Trim(aws.ToString(out.ETag), `"`),
		Size: int64(len("deleted weeks ago")), Sequencer: "01"})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
}

// nullDelete sends the event of version "null" of key deleted for good,
// with sequencer seq.
func (f *fixture) nullDelete(t *testing.T, key, seq string) {
	t.Helper()
	f.removal(t, "ObjectRemoved:Delete", key, "null", seq)
}

// wantNotStaged runs a worker until it has staged an archive (the test
// gives it another key's object), and fails the test if key is in any
// archive staged: why says what that would do.
func (f *fixture) wantNotStaged(t *testing.T, key, why string) *observer.ObservedLogs {
	t.Helper()
	log, logs := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 1, time.Minute)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.readArchives(t) {
		if s.obj.Key == key {
			t.Errorf("%s staged (delete %t): %s", key, s.obj.Delete, why)
		}
	}
	return logs
}

// discardAll deletes every message of the source queue, until none has
// come for two long polls.
func (f *fixture) discardAll(t *testing.T) {
	t.Helper()
	ctx, url := context.Background(), f.sourceQueue()
	for empty := 0; empty < 2; {
		out, err := f.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			empty++
		}
		for _, m := range out.Messages {
			if _, err := f.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRemovedMarkersOfABatchStageNothing: two delete markers of a key in
// one batch, both removed since (undone): the key reads as the write
// before them, replicated long ago, so nothing is staged; staging the
// older marker's delete would remove the destinations' copy for good.
func TestRemovedMarkersOfABatchStageNothing(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	key, other := "data/removed-markers/k.txt", "data/removed-markers/other.txt"
	f.put(t, []object{{key: key, data: []byte("v0, current again")}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	f.discardAll(t)
	f.removal(t, "ObjectRemoved:DeleteMarkerCreated", key, "m1", strings.Repeat("E", 40))
	f.removal(t, "ObjectRemoved:DeleteMarkerCreated", key, "m2", strings.Repeat("F", 40))
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 3, time.Minute)
	f.wantNotStaged(t, key, "though it reads as an object")
}

// TestLateBatchKeepsItsDelete: a redriven batch (its events days old)
// holds a delete marker and a later write deleted by its id since: the
// key reads as deleted, and the marker's delete is staged; the check of
// late versions does not apply to it (HEAD of a deleted key finds none).
func TestLateBatchKeepsItsDelete(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	key, other := "data/late-batch/k.txt", "data/late-batch/other.txt"
	f.put(t, []object{{key: key, data: []byte("v0, replicated long ago")}})
	marker, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: strings.NewReader("v2, deleted by its id")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, VersionId: v2.VersionId}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 4, time.Minute)
	f.discardAll(t)
	late := time.Now().Add(-3 * 24 * time.Hour)
	body, err := events.Encode("test",
		events.ObjectRef{EventName: "ObjectRemoved:DeleteMarkerCreated", EventTime: late, Region: "us-east-1", Bucket: f.rule.SourceBucket, Key: key,
			VersionID: aws.ToString(marker.VersionId), Sequencer: strings.Repeat("E", 40)},
		events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: late, Region: "us-east-1", Bucket: f.rule.SourceBucket, Key: key,
			VersionID: aws.ToString(v2.VersionId), ETag: strings.Trim(aws.ToString(v2.ETag), `"`), Size: int64(len("v2, deleted by its id")), Sequencer: strings.Repeat("F", 40)})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	log, _ := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 2, time.Minute)
	r.stop()
	if s, ok := got[key]; !ok || !s.obj.Delete {
		t.Errorf("%s: staged %+v (present %t), want the marker's delete", key, s.obj, ok)
	}
	// Its requests are xrc savings' to charge: counted in class changes.
	hs, err := f.stats(t).Since(ctx, f.rule.ID, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	deletes := 0
	for _, h := range hs {
		if h.Class == stats.Changes {
			deletes += h.Deletes
		}
	}
	if deletes != 1 {
		t.Errorf("%d deletes in the statistics, want 1", deletes)
	}
}

// removal sends the event of a removal of key (name, version, sequencer)
// as S3 would.
func (f *fixture) removal(t *testing.T, name, key, version, seq string) {
	t.Helper()
	body, err := events.Encode("test", events.ObjectRef{EventName: name, EventTime: time.Now(), Region: "us-east-1",
		Bucket: f.rule.SourceBucket, Key: key, VersionID: version, Sequencer: seq})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
}

// TestNullVersionDeleteAfterAWrite: a versioned key's null version (from
// before versioning) deleted for good after a write, both in one batch:
// the key reads as that write, which is staged; the delete, the newest
// event, must not make the batch drop it.
func TestNullVersionDeleteAfterAWrite(t *testing.T) {
	t.Parallel()
	writeThenRemoval(t, "data/null-delete-after/k.txt", "ObjectRemoved:Delete", "null")
}

// TestNullVersionDeleteBeforeADeletedVersion: when the newest version a
// batch announces was deleted by its id since, and before it came a
// delete of version "null" that left the key readable, that delete is not
// staged: the key reads as an object (an older version, replicated by its
// own event).
func TestNullVersionDeleteBeforeADeletedVersion(t *testing.T) {
	t.Parallel()
	f := versionedBatches(t, func(c *config.Config) { c.Rules[0].Deletes = true })
	ctx := context.Background()
	key, other := "data/null-delete-before/k.txt", "data/null-delete-before/other.txt"
	f.put(t, []object{{key: key, data: []byte("version 1")}})
	f.waitDepth(t, f.sourceQueue(), 1, time.Minute)
	f.takeAll(t, f.sourceQueue(), time.Minute) // version 1 is replicated already
	f.nullDelete(t, key, "00")                 // before version 2
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, Body: strings.NewReader("version 2, undone")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.rule.SourceBucket, Key: &key, VersionId: out.VersionId}); err != nil {
		t.Fatal(err)
	}
	f.put(t, []object{{key: other, data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 5, time.Minute) // version 1's, taken, counts while hidden
	log, _ := observed(t)
	r := f.start(t, log)
	f.waitStaged(t, 1, time.Minute)
	r.stop()
	for _, s := range f.readArchives(t) {
		if s.obj.Key == key {
			t.Errorf("%s staged (delete %t) while the key reads as version 1", key, s.obj.Delete)
		}
	}
}

// archivedAs reports objects as S3 does objects in an archive storage
// class: HEAD says GLACIER (restored: with a finished restore), a GET of
// one not restored is refused with InvalidObjectState.
type archivedAs struct {
	source.S3API
	head     string // HEAD says GLACIER, not restored
	get      string // GET refused
	restored string // HEAD says GLACIER, restored
	expired  string // HEAD says GLACIER, restored; GET refused (the copy expired since)
	gone     string // HEAD finds nothing (deleted since the GET)
}

func (a archivedAs) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if aws.ToString(in.Key) == a.gone {
		return nil, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusNotFound}},
			Err: &s3types.NotFound{}}
	}
	out, err := a.S3API.HeadObject(ctx, in, optFns...)
	if err == nil {
		switch aws.ToString(in.Key) {
		case a.head:
			out.StorageClass = s3types.StorageClassGlacier
		case a.restored, a.expired:
			out.StorageClass = s3types.StorageClassGlacier
			out.Restore = aws.String(`ongoing-request="false", expiry-date="Fri, 21 Dec 2040 00:00:00 GMT"`)
		}
	}
	return out, err
}

func (a archivedAs) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if k := aws.ToString(in.Key); slices.Contains(strings.Split(a.get, "|"), k) || k == a.expired {
		return nil, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
			Err: &smithy.GenericAPIError{Code: "InvalidObjectState", Message: "The operation is not valid for the object's storage class"}}
	}
	return a.S3API.GetObject(ctx, in, optFns...)
}

// TestArchivedObjectGoesToTheDLQ: an object in GLACIER that is not
// restored cannot be read however often it is tried: its message goes to
// the dead-letter queue without the retry backoff, named and counted as
// archived (not as access denied, which S3's 403 would suggest), and the
// objects beside it are staged, a restored one too. So does one whose
// restored copy expires between its HEAD and the archive's read.
func TestArchivedObjectGoesToTheDLQ(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Settings.Worker.MaxReceiveCount = 2 })
	rng := rand.New(rand.NewPCG(3, 3))
	cold, coldSmall, thawed, expired := "data/cold/big.bin", "data/cold/small.txt", "data/cold/restored.bin", "data/cold/expired.bin"
	f.worker = archivedAs{S3API: f.worker, head: cold, get: coldSmall, restored: thawed, expired: expired}
	objs := []object{{key: cold, data: dataset.Text(rng, 400<<10)}, {key: coldSmall, data: []byte("small")},
		{key: thawed, data: dataset.Text(rng, 400<<10)}, {key: expired, data: dataset.Text(rng, 400<<10)}, {key: "data/warm.txt", data: []byte("warm")}}
	got, r, logs := f.stagedAndDead(t, objs, 2, 3)
	if _, ok := got[thawed]; !ok || len(got) != 2 {
		t.Errorf("staged %v, want the restored and the warm object only", slices.Collect(maps.Keys(got)))
	}
	saidAndCounted(t, logs, r, "restore it", "archived", 3)
	if n := r.metric(t, "xrc_source_errors_total", "kind", "access_denied"); n != 0 {
		t.Errorf("%v counted as access denied", n)
	}
}

// slowReads answers the worker's reads of objects a second late, so its
// archive builders fall behind its intake.
type slowReads struct{ source.S3API }

func (s slowReads) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	time.Sleep(time.Second)
	return s.S3API.HeadObject(ctx, in, optFns...)
}

func (s slowReads) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	time.Sleep(time.Second)
	return s.S3API.GetObject(ctx, in, optFns...)
}

// delayedReleases counts the visibility changes that release messages
// after a delay, as a handler does after a failure.
type delayedReleases struct {
	queue.API
	calls atomic.Int32
}

func (d *delayedReleases) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if v := in.Entries[0].VisibilityTimeout; v > 0 && v < 60 { // not a heartbeat (the visibility timeout)
		d.calls.Add(1)
	}
	return d.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// TestStopLeavesUnstartedMessagesToTheBulkRelease: at the stop, messages
// held while the builders were behind, whose events never reached a
// batch, are released with the rest at once, ten to a call: not one call
// each after a backoff (thousands took much of the stop's budget).
func TestStopLeavesUnstartedMessagesToTheBulkRelease(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Rules[0].Batch.MaxObjects = 10 })
	rel := &delayedReleases{API: f.sqs}
	f.sqsAPI = rel
	log, _ := observed(t)
	f.stopHoldingBehind(t, log)
	if n := rel.calls.Load(); n != 0 {
		t.Errorf("%d calls released messages after a delay, want none: left to the release at the stop", n)
	}
}

// stopHoldingBehind queues 150 objects' events, starts a worker whose
// reads are slow (its builders behind), and stops it once it holds 100
// messages, most of whose events never reached a batch.
func (f *fixture) stopHoldingBehind(t *testing.T, log *zap.Logger) *running {
	t.Helper()
	f.worker = slowReads{f.worker}
	objs := mixedObjects(150, 11)
	f.put(t, objs)
	f.waitDepth(t, f.sourceQueue(), len(objs), time.Minute)
	r := f.start(t, log)
	if !eventually(time.Minute, 100*time.Millisecond, func() bool { return r.metric(t, "xrc_source_messages_held") >= 100 }) {
		t.Fatalf("the worker holds %v messages, want >= 100", r.metric(t, "xrc_source_messages_held"))
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStopSendsAgainOnTheirLastReceive: at the stop, messages on their
// last receive whose work never started, or was cut by the end of the
// drain, are sent again as new messages, not released to reach the DLQ
// for the stop.
func TestStopSendsAgainOnTheirLastReceive(t *testing.T) {
	t.Parallel()
	t.Run("unstarted", func(t *testing.T) { t.Parallel(); stopSendsAgain(t, false) })
	t.Run("cut", func(t *testing.T) { t.Parallel(); stopSendsAgain(t, true) })
}

func stopSendsAgain(t *testing.T, cut bool) {
	f := setup(t, func(c *config.Config) {
		c.Rules[0].Batch.MaxObjects = 10
		c.Settings.Worker.MaxReceiveCount = 1
		if cut {
			c.Settings.Worker.DrainTimeout = config.Duration(time.Millisecond)
		}
	})
	log, logs := observed(t)
	r := f.stopHoldingBehind(t, log)
	again, released := r.metric(t, "xrc_source_messages_total", "result", "requeued"), r.metric(t, "xrc_source_messages_total", "result", "released")
	if again == 0 || released != 0 {
		t.Errorf("%v sent again, %v released; want the unstarted sent again, none released (towards the DLQ)", again, released)
	}
	if n := logs.FilterMessage("message not acknowledged: bound for the DLQ").Len(); n != 0 {
		t.Errorf("%d lines say a message is bound for the DLQ", n)
	}
	if n := logs.FilterMessage("message's work cut by the stop on its last receive: to be sent again as a new message").Len(); cut != (n > 0) {
		t.Errorf("%d messages cut on their last receive; want some if and only if the drain was cut", n)
	}
	// Each sent again once: the queue holds one copy of each, deferred
	// once (beside the events no receive took).
	var bodies []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		out, err := f.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.sourceQueue()), MaxNumberOfMessages: 10,
			WaitTimeSeconds: 1, VisibilityTimeout: 300, MessageAttributeNames: []string{queue.DeferredAttribute}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			switch d := aws.ToString(m.MessageAttributes[queue.DeferredAttribute].StringValue); d {
			case "1":
				bodies = append(bodies, aws.ToString(m.Body))
			case "":
			default:
				t.Errorf("a message in the queue deferred %q times, want 1", d)
			}
		}
	}
	slices.Sort(bodies)
	n := len(bodies)
	if distinct := len(slices.Compact(bodies)); n != int(again) || distinct != n {
		t.Errorf("the queue holds %d copies (%d distinct), want the %v sent again, once each", n, distinct, again)
	}
}

// TestStaleEventOfAColdOverwriteIsSkipped: an event whose object was
// overwritten since by a write now in GLACIER is stale (the newer write has
// an event of its own) and is skipped as any overwritten object's is, read
// whole (small) or by HEAD (large); it went to the DLQ, asking for a
// restore that would have changed nothing.
func TestStaleEventOfAColdOverwriteIsSkipped(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		c.Settings.Worker.MaxReceiveCount = 2
		c.Rules[0].Batch.MaxObjects = 1
	})
	rng := rand.New(rand.NewPCG(9, 9))
	big, small := "data/stale-cold/big.bin", "data/stale-cold/small.txt"
	gone := "data/stale-cold/gone.txt" // refused cold, then deleted before the HEAD: skipped as gone
	f.put(t, []object{{key: big, data: dataset.Text(rng, 400<<10)}, {key: small, data: []byte("v1")}})
	f.put(t, []object{{key: big, data: dataset.Text(rng, 400<<10)}, {key: small, data: []byte("v2, now cold")}, {key: gone, data: []byte("g")}})
	f.waitDepth(t, f.sourceQueue(), 5, time.Minute)
	f.worker = archivedAs{S3API: f.worker, head: big, get: small + "|" + gone, gone: gone}
	log, logs := observed(t)
	r := f.start(t, log)
	f.waitDepth(t, f.sourceQueue(), 0, 2*time.Minute)
	dead := f.queueDepth(t, f.deadLetterQueue(t))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if dead != 2 {
		t.Errorf("%d messages in the DLQ, want 2 (the cold writes' own; the first writes' events are stale)", dead)
	}
	if n := logs.FilterMessage(logOverwritten).Len(); n != 2 {
		t.Errorf("%d %q lines, want 2", n, logOverwritten)
	}
}

// TestCustomerKeyObjectsGoToTheDLQ: an object encrypted with a key its
// writer holds (SSE-C) cannot be read by xrc however often it tries: its
// message goes to the DLQ without the retry backoff, named and counted as
// such, small (its GET refused) or large (its HEAD's bare 400 explained by
// a one-byte GET); the objects beside it are staged. It was retried for
// minutes, and a large one's error read "400 Bad Request". Events that do
// not name an SSE-C write are not sent with them: a plain write's, stale
// since an SSE-C write replaced it (told by a listing's ETag), and a tag
// change on an SSE-C write (never archived) are skipped; they went to the
// DLQ, as sse_c or, retried for minutes, as archive failures.
func TestCustomerKeyObjectsGoToTheDLQ(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) {
		c.Settings.Worker.MaxReceiveCount = 3
		c.Rules[0].Batch.MaxObjects = 1 // a stale event not collapsed onto its key's newer one
	})
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	sum := md5.Sum(key)
	k64, m64 := base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(sum[:])
	rng := rand.New(rand.NewPCG(4, 4))
	big, small := "data/ssec/big.bin", "data/ssec/small.txt"
	overBig, overSmall := "data/ssec/over-big.bin", "data/ssec/over-small.txt"
	f.put(t, []object{{key: overBig, data: dataset.Text(rng, 400<<10)}, {key: overSmall, data: []byte("plain, then SSE-C")}})
	for _, o := range []object{{key: big, data: dataset.Text(rng, 400<<10)}, {key: small, data: []byte("small")},
		{key: overBig, data: dataset.Text(rng, 400<<10)}, {key: overSmall, data: []byte("SSE-C now")}} {
		if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: aws.String(o.key), Body: bytes.NewReader(o.data),
			SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: &k64, SSECustomerKeyMD5: &m64}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: &f.rule.SourceBucket, Key: aws.String(small),
		Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("t"), Value: aws.String("1")}}}}); err != nil {
		t.Fatal(err)
	}
	f.put(t, []object{{key: "data/ssec/plain.txt", data: []byte("plain")}})
	f.waitDepth(t, f.sourceQueue(), 8, time.Minute)
	log, logs := observed(t)
	r := f.start(t, log)
	f.waitDepth(t, f.sourceQueue(), 0, 2*time.Minute) // each message staged, skipped or dead
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := f.readStaging(t); len(got) != 1 {
		t.Errorf("staged %v, want the plain object only", slices.Collect(maps.Keys(got)))
	}
	if n := f.queueDepth(t, f.deadLetterQueue(t)); n != 4 {
		t.Errorf("%d messages in the DLQ, want 4: the SSE-C writes' own", n)
	}
	saidAndCounted(t, logs, r, "SSE-C", "sse_c", 4)
	if n := r.metric(t, "xrc_source_errors_total", "kind", "archive"); n != 0 {
		t.Errorf("%v archive errors counted, want none", n)
	}
}

// saidAndCounted checks that every object left out says what to do (says)
// and that at least n errors are counted as kind, one per try of each.
func saidAndCounted(t *testing.T, logs *observer.ObservedLogs, r *running, says, kind string, n float64) {
	t.Helper()
	for _, e := range logs.FilterMessage("object not archived").All() {
		if msg, _ := e.ContextMap()["error"].(string); !strings.Contains(msg, says) {
			t.Errorf("logged %q, want it to say %q", msg, says)
		}
	}
	if got := r.metric(t, "xrc_source_errors_total", "kind", kind); got < n {
		t.Errorf("%v %s errors counted, want at least %v: one per try of each", got, kind, n)
	}
	// The lines an operator redrives from name the object and the kind.
	for _, e := range logs.FilterMessage(logBoundForDLQ).All() {
		if c := e.ContextMap(); c["kind"] != kind || c["key"] == nil {
			t.Errorf("bound for the DLQ with kind %v, key %v: want %s and the object's key", c["kind"], c["key"], kind)
		}
	}
	if logs.FilterMessage(logBoundForDLQ).Len() == 0 {
		t.Error("no message said bound for the DLQ")
	}
}

// TestRestagedCountedOnceWithoutXRC: an object staged whose message comes
// back unacknowledged (another of its objects failed) is staged again:
// both archives cross, and the statistics count its bytes in twice, but
// S3 Replication would have copied it once, so what xrc savings counts as
// sent without xrc takes the second staging off (stats.Delta.Restaged).
// On the message's last receive nothing comes back: nothing is taken off.
func TestRestagedCountedOnceWithoutXRC(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *config.Config) { c.Settings.Worker.MaxReceiveCount = 2 })
	ctx := context.Background()
	plain, ssec := "data/restage/plain.txt", "data/restage/ssec.txt"
	data := []byte("staged on each receive of its message")
	out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &plain, Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{9}, 32)
	sum := md5.Sum(key)
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.rule.SourceBucket, Key: &ssec, Body: strings.NewReader("SSE-C"),
		SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: aws.String(base64.StdEncoding.EncodeToString(key)),
		SSECustomerKeyMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:]))}); err != nil {
		t.Fatal(err)
	}
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	f.takeAll(t, f.sourceQueue(), time.Minute) // sent again below, as one message
	body, err := events.Encode("test",
		events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now(), Region: "us-east-1", Bucket: f.rule.SourceBucket, Key: plain,
			Size: int64(len(data)), ETag: strings.Trim(aws.ToString(out.ETag), `"`), Sequencer: "0A"},
		events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now(), Region: "us-east-1", Bucket: f.rule.SourceBucket, Key: ssec,
			Size: 5, Sequencer: "0B"})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, string(body))
	log, _ := observed(t)
	r := f.start(t, log)
	if !eventually(2*time.Minute, 250*time.Millisecond, func() bool { return f.queueDepth(t, f.deadLetterQueue(t)) == 1 }) {
		t.Fatal("the message did not reach the DLQ after its two receives")
	}
	if err := r.stop(); err != nil { // writes the statistics left
		t.Fatal(err)
	}
	hs, err := f.stats(t).Since(ctx, f.rule.ID, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var in, restaged int64
	for _, h := range hs {
		in, restaged = in+h.In, restaged+h.Restaged
	}
	if n := int64(len(data)); in != 2*n || restaged != n {
		t.Errorf("bytes in %d, restaged %d: want %d staged twice, once again", in, restaged, n)
	}
}

// TestStopWhilePlanningIsNoFailure: a batch planned after the drain time
// is over (queued for a builder at the cut) fails each of its reads with
// the cancelled context: a stop, said once at info by its message, not a
// failed object and a warning each.
func TestStopWhilePlanningIsNoFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	log, logs := observed(t)
	w, reg := f.newWorker(t, log, f.stats(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var mu sync.Mutex
	var errs []error
	var items []source.Item
	for i := range 2 {
		items = append(items, source.Item{
			Ref: events.ObjectRef{EventName: "ObjectCreated:Put", EventTime: time.Now(), Region: "us-east-1", Bucket: f.rule.SourceBucket,
				Key: fmt.Sprintf("data/cut-%d", i), Size: 10, Sequencer: fmt.Sprintf("0%d", i+1)},
			Rule: f.rule,
			Done: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
		})
	}
	w.Pack(ctx, f.rule, items, time.Time{})
	if len(errs) != len(items) {
		t.Fatalf("%d items settled, want %d", len(errs), len(items))
	}
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("item settled with %v, want the stop's cancellation", err)
		}
	}
	if n := gathered(t, reg, "xrc_source_objects_total", "result", "failed"); n != 0 {
		t.Errorf("%v objects counted failed at a stop", n)
	}
	if n := gathered(t, reg, "xrc_source_errors_total"); n != 0 {
		t.Errorf("%v errors counted at a stop", n)
	}
	if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != 0 {
		t.Errorf("%d warnings at a stop: %v", n, logs.FilterLevelExact(zap.WarnLevel).All()[0].Message)
	}
}

// throttledProbes answers the first-byte reads of keys holding
// "throttled" as S3 answers a request rate it sheds: SlowDown.
type throttledProbes struct{ source.S3API }

func (c throttledProbes) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if in.Range != nil && strings.Contains(aws.ToString(in.Key), "throttled") {
		return nil, &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."}
	}
	return c.S3API.GetObject(ctx, in, optFns...)
}

// TestThrottledProbesKeepTheirObjects: once an object fails mid-archive,
// the others are probed by their first byte; one whose probe was
// throttled (often the very cause of the failure) is readable, and is
// staged in the rebuilt archive, not failed with a backoff and a receive.
func TestThrottledProbesKeepTheirObjects(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	f.worker = throttledProbes{deniedGet{f.worker}}
	rng := rand.New(rand.NewPCG(11, 11))
	var objs, good []object
	for i, name := range []string{"a", "b-denied", "c-throttled", "d", "e-throttled"} {
		o := object{key: fmt.Sprintf("data/throttle/%d-%s", i, name), data: dataset.Text(rng, 300<<10)}
		if !strings.Contains(name, "denied") {
			good = append(good, o)
		}
		objs = append(objs, o)
	}
	_, logs := f.packed(t, objs, good)
	if keys := loggedKeys(logs, logLeftOut); len(keys) != 0 {
		t.Errorf("objects left out: %q, want none (their probes were throttled, not refused)", keys)
	}
}

// resetOnce cuts the first whole GET of keys holding "reset" after 1 MiB,
// as a connection reset mid-stream, and counts the GETs asking for a range
// from further in.
type resetOnce struct {
	source.S3API
	done    sync.Map
	resumed atomic.Int32
	// resumedBytes: read from the GETs reading on.
	resumedBytes atomic.Int64
	// noRange: answers a GET from further in whole, as a store that
	// ignores Range does.
	noRange bool
}

func (c *resetOnce) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if r := aws.ToString(in.Range); strings.HasPrefix(r, "bytes=") && !strings.HasPrefix(r, "bytes=0-") {
		c.resumed.Add(1)
		if c.noRange {
			whole := *in
			whole.Range = nil
			in = &whole
		}
		out, err := c.S3API.GetObject(ctx, in, optFns...)
		if err == nil {
			out.Body = countedBody{out.Body, &c.resumedBytes}
		}
		return out, err
	}
	out, err := c.S3API.GetObject(ctx, in, optFns...)
	if _, seen := c.done.LoadOrStore(aws.ToString(in.Key), true); err == nil && in.Range == nil && !seen && strings.Contains(aws.ToString(in.Key), "reset") {
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(out.Body, 1<<20), iotest.ErrReader(errors.New("read: connection reset by peer"))), out.Body}
	}
	return out, err
}

// TestReadResumesAfterAReset: a large object whose read fails mid-stream
// reads on from where it stopped (a ranged GET of the same write) and is
// staged intact, its archive not rebuilt: the read of a multi-GB object
// was started over for one reset, at a receive of its message each.
func TestReadResumesAfterAReset(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	gets := &resetOnce{S3API: f.worker}
	f.worker = gets
	rng := rand.New(rand.NewPCG(12, 12))
	objs := []object{{key: "data/resume/big-reset", data: dataset.Text(rng, 6<<20)}, {key: "data/resume/other", data: dataset.Text(rng, 300<<10)}}
	_, logs := f.packed(t, objs, objs)
	if n := gets.resumed.Load(); n != 1 {
		t.Errorf("%d ranged GETs reading on, want 1", n)
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) != 0 {
		t.Errorf("archives rebuilt without %q, want none", keys)
	}
}

// TestResumeRefusesAWholeAnswer: a store that ignores Range answers the
// read on with the whole object; it is refused unread (appended, the
// object would be its start twice, read and compressed whole before the
// size check failed it): the object fails as before, alone, and the rest
// is staged.
func TestResumeRefusesAWholeAnswer(t *testing.T) {
	t.Parallel()
	f := setup(t, oneBatch)
	gets := &resetOnce{S3API: f.worker, noRange: true}
	f.worker = gets
	rng := rand.New(rand.NewPCG(13, 13))
	big := object{key: "data/resume/big-reset", data: dataset.Text(rng, 6<<20)}
	other := object{key: "data/resume/other", data: dataset.Text(rng, 300<<10)}
	got, logs := f.packed(t, []object{big, other}, []object{other})
	if _, ok := got[big.key]; ok {
		t.Errorf("%s staged from a store that ignored Range", big.key)
	}
	if n := gets.resumedBytes.Load(); n > 64<<10 {
		t.Errorf("%d bytes read of the whole answer to a read on, want it refused unread", n)
	}
	if keys := loggedKeys(logs, logRebuilt); len(keys) != 1 || keys[0] != big.key {
		t.Errorf("archives rebuilt without %q, want %s alone", keys, big.key)
	}
}

// overwriteBeforeGet overwrites key, once, just before the archive's read
// of it: what plan read is superseded mid-archive.
type overwriteBeforeGet struct {
	source.S3API
	s3   *s3.Client
	key  string
	data []byte
	once sync.Once
}

func (o *overwriteBeforeGet) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if aws.ToString(in.Key) == o.key && in.IfMatch != nil {
		var err error
		o.once.Do(func() {
			_, err = o.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: bytes.NewReader(o.data)})
		})
		if err != nil {
			return nil, err
		}
	}
	return o.S3API.GetObject(ctx, in, optFns...)
}

// TestOverwriteMidArchiveIsNoFailedArchive: an object overwritten as its
// archive is written is skipped (the newer write has its event) and the
// archive built again without it: overwrite churn, counted neither a
// failed archive nor a warning (the dashboard's failed archives climbed
// with it).
func TestOverwriteMidArchiveIsNoFailedArchive(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	rng := rand.New(rand.NewPCG(11, 11))
	key := "data/churn/big.txt"
	v2 := dataset.Text(rng, 300<<10)
	f.put(t, []object{{key: key, data: dataset.Text(rng, 300<<10)}, {key: "data/churn/other.txt", data: []byte("other")}})
	f.waitDepth(t, f.sourceQueue(), 2, time.Minute)
	f.worker = &overwriteBeforeGet{S3API: f.worker, s3: f.s3, key: key, data: v2}
	log, logs := observed(t)
	r := f.start(t, log)
	got := f.waitStaged(t, 2, time.Minute)
	if s, ok := got[key]; !ok || s.sum != digest(v2) {
		t.Errorf("%s: staged %v, want its newer write", key, ok)
	}
	if n := r.metric(t, "xrc_source_archives_total", "result", "failed"); n != 0 {
		t.Errorf("%v archives counted failed for an overwrite mid-archive, want 0", n)
	}
	if n := r.metric(t, "xrc_source_objects_total", "result", "skipped"); n != 1 {
		t.Errorf("%v objects skipped, want the overwritten one", n)
	}
	if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != 0 {
		t.Errorf("%d warnings for an overwrite mid-archive: %v", n, logs.FilterLevelExact(zap.WarnLevel).All()[0].Message)
	}
	r.stop()
}

// asS3Encrypts answers, for keys holding "withheld", that S3 withholds two
// user metadata entries from HTTP (x-amz-missing-meta: set through SOAP),
// and for keys holding "kms" or "dsse", that the object is encrypted under
// a KMS key, in one layer or two (MinIO, the local stack, says neither).
type asS3Encrypts struct{ source.S3API }

func (a asS3Encrypts) say(key string, missing **int32, sse *s3types.ServerSideEncryption) {
	switch {
	case strings.Contains(key, "withheld"):
		*missing = aws.Int32(2)
	case strings.Contains(key, "dsse"):
		*sse = s3types.ServerSideEncryptionAwsKmsDsse
	case strings.Contains(key, "kms"):
		*sse = s3types.ServerSideEncryptionAwsKms
	}
}

func (a asS3Encrypts) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := a.S3API.HeadObject(ctx, in, optFns...)
	if err == nil {
		a.say(aws.ToString(in.Key), &out.MissingMeta, &out.ServerSideEncryption)
	}
	return out, err
}

func (a asS3Encrypts) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := a.S3API.GetObject(ctx, in, optFns...)
	if err == nil {
		a.say(aws.ToString(in.Key), &out.MissingMeta, &out.ServerSideEncryption)
	}
	return out, err
}

// TestWithheldMetadataAndKMSEncryption: an object whose metadata S3
// withholds in part (x-amz-missing-meta) fails alone, named, where its copy
// would have lacked it and verify could not tell; an object under a KMS
// key whose copy will not be (no kmsKeyId: the destination bucket's
// default, perhaps SSE-S3; DSSE-KMS written in one layer) is archived,
// counted and said once per rule at warn.
func TestWithheldMetadataAndKMSEncryption(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		key  string // the destination's kmsKeyId
		want map[string]float64
	}{
		{"no kmsKeyId", "", map[string]float64{"bucket_default": 4}},
		{"kmsKeyId", "1234abcd-12ab-34cd-56ef-1234567890ab", map[string]float64{"single_layer": 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, func(cfg *config.Config) {
				oneBatch(cfg)
				cfg.Rules[0].Destinations[0].KMSKeyID = c.key
			})
			f.worker = asS3Encrypts{f.worker}
			rng := rand.New(rand.NewPCG(9, 11))
			// Small ones read by one GET, 1 MiB ones described by HEAD.
			withheld := []object{{key: "data/withheld/small", data: dataset.Text(rng, 10<<10)}, {key: "data/withheld/large", data: dataset.Text(rng, 1<<20)}}
			want := []object{
				{key: "data/kms/small", data: dataset.Text(rng, 10<<10)}, {key: "data/kms/large", data: dataset.Text(rng, 1<<20)},
				{key: "data/dsse/small", data: dataset.Text(rng, 10<<10)}, {key: "data/dsse/large", data: dataset.Text(rng, 1<<20)},
				{key: "data/plain/0", data: dataset.Text(rng, 10<<10)},
			}
			objs := append(withheld, want...)
			f.put(t, objs)
			f.waitDepth(t, f.sourceQueue(), len(objs), time.Minute)
			log, logs := observed(t)
			r := f.start(t, log)
			got := f.waitStaged(t, len(want), time.Minute)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			for _, o := range want {
				if s, ok := got[o.key]; !ok || s.sum != digest(o.data) {
					t.Errorf("%s not archived intact", o.key)
				}
			}
			for _, o := range withheld {
				if _, ok := got[o.key]; ok {
					t.Errorf("%s archived without the metadata S3 withheld", o.key)
				}
			}
			if keys := slices.Compact(loggedKeys(logs, "object not archived")); !slices.Equal(keys, []string{"data/withheld/large", "data/withheld/small"}) {
				t.Errorf("objects not archived %q, want both withheld", keys)
			}
			for _, e := range logs.FilterMessage("object not archived").All() {
				if msg, _ := e.ContextMap()["error"].(string); !strings.Contains(msg, "x-amz-missing-meta") {
					t.Errorf("not archived for %q, want the withheld metadata named", msg)
				}
			}
			for _, to := range []string{"bucket_default", "single_layer"} {
				if n := r.metric(t, "xrc_source_encryption_not_carried_total", "to", to); n != c.want[to] {
					t.Errorf("encryption not carried to %s counted %v, want %v", to, n, c.want[to])
				}
			}
			if n := logs.FilterMessageSnippet("encrypted under a KMS key its copies will not be").Len(); n != 1 {
				t.Errorf("%d lines about the encryption, want one (once per rule)", n)
			}
		})
	}
}
