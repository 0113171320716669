package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

const (
	replicationCompleted = "s3:Replication:OperationCompletedReplication"
	// webhookTargetID is the notification target id the stack gives each MinIO
	// (MINIO_NOTIFY_WEBHOOK_*_XRC); its ARN is arn:minio:sqs:<region>:XRC:webhook.
	webhookTargetID = "XRC"

	eventCreated      = "s3:ObjectCreated:Put"
	eventDeleteMarker = "s3:ObjectRemoved:DeleteMarkerCreated"
	eventDeleted      = "s3:ObjectRemoved:Delete"
)

// s3API is the part of *s3.Client the bridge uses to resolve replica events.
type s3API interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetBucketReplication(ctx context.Context, in *s3.GetBucketReplicationInput, optFns ...func(*s3.Options)) (*s3.GetBucketReplicationOutput, error)
	GetBucketNotificationConfiguration(ctx context.Context, in *s3.GetBucketNotificationConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetBucketNotificationConfigurationOutput, error)
}

var _ s3API = (*s3.Client)(nil)

// regionS3 is the MinIO playing one region.
type regionS3 struct {
	endpoint string
	client   s3API
}

// forwardReplica turns a source bucket's replication-completed event into the
// event AWS would emit in each destination bucket the object replicates to.
func (b *bridge) forwardReplica(ctx context.Context, rec json.RawMessage, m recordMeta) error {
	src := m.S3.Bucket.Name
	srcRegion := b.regionOf(m)
	srcS3, ok := b.regions[srcRegion]
	if !ok {
		b.log.Warn("dropping replication event from an unknown MinIO", "bucket", src, "region", srcRegion,
			"origin", m.ResponseElements["x-minio-origin-endpoint"])
		return nil
	}
	key, err := url.QueryUnescape(m.S3.Object.Key)
	if err != nil {
		b.log.Warn("dropping replication event with a malformed key", "bucket", src, "key", m.S3.Object.Key)
		return nil
	}
	repl, err := srcS3.client.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(src)})
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "ReplicationConfigurationNotFoundError":
		b.log.Info("dropping replication event: no replication rule left", "bucket", src, "key", key)
		return nil
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket":
		// Deleted since: retrying would hold up every later event of this
		// MinIO, which delivers in order.
		b.log.Info("dropping replication event: bucket deleted", "bucket", src, "key", key)
		return nil
	case err != nil:
		return fmt.Errorf("reading replication rules of %s/%s: %w: %w", srcRegion, src, errRetry, err)
	}
	for _, rule := range repl.ReplicationConfiguration.Rules {
		if rule.Status != s3types.ReplicationRuleStatusEnabled || !strings.HasPrefix(key, rulePrefix(rule)) || rule.Destination == nil {
			continue
		}
		dstRegion, dst, ok := parseReplicationARN(aws.ToString(rule.Destination.Bucket))
		if !ok {
			b.log.Warn("skipping replication rule without a region in its target ARN (mc replicate add --region)",
				"bucket", src, "rule", aws.ToString(rule.ID), "arn", aws.ToString(rule.Destination.Bucket))
			continue
		}
		if err := b.emitReplica(ctx, rec, dstRegion, dst, key, m.S3.Object.VersionID); err != nil {
			return err
		}
	}
	return nil
}

// emitReplica sends the destination event for one replicated version, if
// the destination bucket is routed and its notification configuration
// selects the event.
func (b *bridge) emitReplica(ctx context.Context, rec json.RawMessage, region, bucket, key, versionID string) error {
	if _, ok := b.routes.get(bucket); !ok {
		b.log.Info("dropping replica event for unrouted bucket", "bucket", bucket, "key", key)
		return nil
	}
	dst, ok := b.regions[region]
	if !ok {
		b.log.Warn("dropping replica event for a region without MinIO", "bucket", bucket, "region", region)
		return nil
	}
	st, err := replicaState(ctx, dst.client, bucket, key, versionID)
	var configID string
	if err == nil {
		configID, ok, err = selectedBy(ctx, dst.client, region, bucket, st.eventName, key)
	}
	// A HEAD in a deleted bucket is a bare 404 (a deleted object to
	// replicaState); reading the bucket's notification configuration then
	// names it. Retrying would hold up every later event of the source MinIO.
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket" {
		b.log.Info("dropping replica event: destination bucket deleted", "bucket", bucket, "key", key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading replica %s/%s/%s and its bucket's notification configuration: %w: %w", region, bucket, key, errRetry, err)
	}
	if !ok {
		b.log.Info("dropping replica event not selected by the bucket's notification configuration",
			"bucket", bucket, "key", key, "event", st.eventName)
		return nil
	}
	out, err := rewriteRecord(rec, st, region, bucket, configID, dst.endpoint)
	if err != nil {
		b.log.Warn("dropping replication event that cannot be rewritten", "bucket", bucket, "key", key, "err", err)
		return nil
	}
	return b.send(ctx, bucket, st.eventName, key, out)
}

// regionOf is the region of the MinIO that sent m: its awsRegion, which
// MinIO leaves empty on internal (replication) events, else the MinIO whose
// endpoint the record names.
func (b *bridge) regionOf(m recordMeta) string {
	if m.AWSRegion != "" {
		return m.AWSRegion
	}
	origin := strings.TrimRight(m.ResponseElements["x-minio-origin-endpoint"], "/")
	for r, s := range b.regions {
		if s.endpoint == origin {
			return r
		}
	}
	return ""
}

// rulePrefix is the key prefix a replication rule applies to ("" for all).
func rulePrefix(r s3types.ReplicationRule) string {
	//lint:ignore SA1019 MinIO still reports rule prefixes in the legacy field.
	if p := aws.ToString(r.Prefix); p != "" {
		return p
	}
	if r.Filter == nil {
		return ""
	}
	if p := aws.ToString(r.Filter.Prefix); p != "" {
		return p
	}
	if r.Filter.And != nil {
		return aws.ToString(r.Filter.And.Prefix)
	}
	return ""
}

// parseReplicationARN splits MinIO's replication target ARN,
// arn:minio:replication:<region>:<target-id>:<bucket>.
func parseReplicationARN(arn string) (region, bucket string, ok bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "replication" || parts[3] == "" || parts[5] == "" {
		return "", "", false
	}
	return parts[3], parts[5], true
}

// replica is what the destination holds for a replicated version.
type replica struct {
	eventName string
	size      int64
	eTag      string
}

// replicaState HEADs the replicated version on the destination: an object
// (created), a delete marker, or nothing (a replicated permanent delete).
func replicaState(ctx context.Context, client s3API, bucket, key, versionID string) (replica, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if versionID != "" && versionID != "null" {
		in.VersionId = aws.String(versionID)
	}
	out, err := client.HeadObject(ctx, in)
	if err == nil {
		return replica{eventName: eventCreated, size: aws.ToInt64(out.ContentLength), eTag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if re.Response.Header.Get("x-amz-delete-marker") == "true" {
			return replica{eventName: eventDeleteMarker}, nil
		}
		if re.HTTPStatusCode() == 404 {
			return replica{eventName: eventDeleted}, nil
		}
	}
	return replica{}, err
}

// selectedBy reports whether bucket's notification configuration sends
// eventName for key to the bridge's webhook, and the id of the selecting
// configuration.
func selectedBy(ctx context.Context, client s3API, region, bucket, eventName, key string) (string, bool, error) {
	out, err := client.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return "", false, err
	}
	arn := "arn:minio:sqs:" + region + ":" + webhookTargetID + ":webhook"
	for _, qc := range out.QueueConfigurations {
		if aws.ToString(qc.QueueArn) != arn || !matchesEvent(qc.Events, eventName) || !matchesKey(qc.Filter, key) {
			continue
		}
		id := aws.ToString(qc.Id)
		if id == "" {
			id = "Config" // what MinIO puts in its own records
		}
		return id, true, nil
	}
	return "", false, nil
}

func matchesEvent(patterns []s3types.Event, name string) bool {
	for _, p := range patterns {
		ps := string(p)
		if ps == name || (strings.HasSuffix(ps, "*") && strings.HasPrefix(name, strings.TrimSuffix(ps, "*"))) {
			return true
		}
	}
	return false
}

func matchesKey(f *s3types.NotificationConfigurationFilter, key string) bool {
	if f == nil || f.Key == nil {
		return true
	}
	for _, r := range f.Key.FilterRules {
		v := aws.ToString(r.Value)
		switch strings.ToLower(string(r.Name)) {
		case "prefix":
			if !strings.HasPrefix(key, v) {
				return false
			}
		case "suffix":
			if !strings.HasSuffix(key, v) {
				return false
			}
		}
	}
	return true
}

// rewriteRecord turns the source's replication record into the record the
// destination bucket would emit: event name, region, bucket, configuration
// id, and the replica's size and ETag. Other fields (key, versionId,
// sequencer, eventTime, metadata) carry over.
func rewriteRecord(rec json.RawMessage, st replica, region, bucket, configID, endpoint string) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	m["eventName"] = st.eventName
	m["awsRegion"] = region
	s3m := child(m, "s3")
	s3m["configurationId"] = configID
	b := child(s3m, "bucket")
	b["name"] = bucket
	b["arn"] = "arn:aws:s3:::" + bucket
	o := child(s3m, "object")
	if st.eventName == eventCreated {
		o["size"] = st.size
		o["eTag"] = st.eTag
		if um, ok := o["userMetadata"].(map[string]any); ok {
			um["X-Amz-Replication-Status"] = "REPLICA"
		}
	} else {
		for _, k := range []string{"size", "eTag", "contentType", "userMetadata"} {
			delete(o, k)
		}
	}
	if re, ok := m["responseElements"].(map[string]any); ok {
		re["x-minio-origin-endpoint"] = endpoint
	}
	if u, err := url.Parse(endpoint); err == nil {
		child(m, "source")["host"] = u.Host
	}
	return json.Marshal(m)
}

// child returns m[k] as an object, creating it if absent or not an object.
func child(m map[string]any, k string) map[string]any {
	c, ok := m[k].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[k] = c
	}
	return c
}

// laterReplicas is -async's handling of replication-completed events.
// MinIO without a queue dir (bench-e2e) never retries a post the bridge
// fails, and forwarding a replica event reads the replica and its bucket's
// notification configuration on the destination MinIO, across bench-e2e's
// shaped link: one read failing there used to lose the archive's event
// and stall the run until its timeout. It also held one of the source
// MinIO's senders (as many as it has CPUs, each waiting for its answer)
// for those reads. Each replication event is now answered at once and
// forwarded in the background, at most cap(slots) at a time, retried until
// it goes through or the bridge stops (then logged as lost, like a record
// still in the batcher). (It did not make the source bucket's events reach
// SQS sooner on a loaded 2-vCPU box: 5,029 events still trail a 3.9 s
// upload by 4 s, bound by MinIO's senders waiting for CPU, as they were
// with 8 senders, GOMAXPROCS=8.)
//
// It also takes each replicated version once: MinIO without a queue dir
// sends the event twice for some replicas (it queues their replication
// twice), and bench-e2e's replica tap reports a replica as it lands, before
// MinIO's event; each copy would become an SQS message and two target
// deliveries racing. (A replicated metadata change keeps its version id, so
// it is taken as a copy too; bench-e2e makes none.)
type laterReplicas struct {
	slots   chan struct{}
	wg      sync.WaitGroup
	stop    context.Context
	cancel  context.CancelFunc
	backoff time.Duration // the first retry's wait (then nextWait)

	mu    sync.Mutex
	taken map[string]bool // bucket/key@version of the events taken
	order []string        // taken's ids, oldest first, to bound it
}

// maxTaken bounds the versions remembered; a copy comes within seconds.
const maxTaken = 100_000

func newLaterReplicas(parallel int, backoff time.Duration) *laterReplicas {
	stop, cancel := context.WithCancel(context.Background())
	return &laterReplicas{slots: make(chan struct{}, parallel), stop: stop, cancel: cancel, backoff: backoff,
		taken: map[string]bool{}}
}

// take reports whether the event of m's version is the first one taken.
func (l *laterReplicas) take(m recordMeta) bool {
	if m.S3.Object.VersionID == "" {
		return true
	}
	key, err := url.QueryUnescape(m.S3.Object.Key) // MinIO and the tap may encode it differently
	if err != nil {
		key = m.S3.Object.Key
	}
	id := m.S3.Bucket.Name + "/" + key + "@" + m.S3.Object.VersionID
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.taken[id] {
		return false
	}
	l.taken[id] = true
	l.order = append(l.order, id)
	if len(l.order) > maxTaken {
		delete(l.taken, l.order[0])
		l.order = l.order[1:]
	}
	return true
}

// forwardLater forwards the replication event rec in the background,
// unless its version's event was taken already.
func (b *bridge) forwardLater(rec json.RawMessage, m recordMeta) {
	l := b.later
	if !l.take(m) {
		b.log.Info("dropping duplicate replication event", "bucket", m.S3.Bucket.Name, "key", m.S3.Object.Key,
			"version", m.S3.Object.VersionID)
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		lost := func(err error) {
			b.log.Error("replication event lost: the bridge stopped before forwarding it",
				"bucket", m.S3.Bucket.Name, "key", m.S3.Object.Key, "err", err)
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.stop.Done():
			lost(l.stop.Err())
			return
		}
		defer func() { <-l.slots }()
		for wait := l.backoff; ; wait = nextWait(wait) {
			err := b.forwardReplica(l.stop, rec, m)
			if err == nil {
				return
			}
			if l.stop.Err() != nil {
				lost(err)
				return
			}
			b.log.Warn("forwarding replication event; retrying", "bucket", m.S3.Bucket.Name, "key", m.S3.Object.Key, "in", wait, "err", err)
			select {
			case <-time.After(wait):
			case <-l.stop.Done():
			}
		}
	}()
}

// close waits for the events being forwarded, until ctx ends; then it
// gives up on the rest.
func (l *laterReplicas) close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		l.cancel()
		return nil
	case <-ctx.Done():
		l.cancel()
		<-done
		return fmt.Errorf("replication events not forwarded: %w", ctx.Err())
	}
}
