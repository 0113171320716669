package localstack

// This file is the local stand-in for the CDK app's resources (buckets,
// queues, routes, replication, tables): one list of small, independent
// helpers, read one at a time.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/xrc-dev/xrc/internal/config"
)

var errNoRegion = errors.New("localstack: unknown region")

// UniqueName returns a name made of prefix and a random suffix that is valid
// as an S3 bucket, SQS queue (with room for a "-dlq" suffix) and DynamoDB
// table name: lowercase letters, digits and '-', at most 63 characters.
func UniqueName(prefix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	p := strings.Trim(b.String(), "-")
	if p == "" {
		p = "xrc"
	}
	var rnd [5]byte
	rand.Read(rnd[:]) // never fails (crypto/rand.Read documents it)
	suffix := strconv.FormatInt(time.Now().Unix()%1e6, 36) + hex.EncodeToString(rnd[:])
	if room := 63 - 1 - len(suffix); len(p) > room {
		p = strings.TrimRight(p[:room], "-")
	}
	return p + "-" + suffix
}

// EnsureBucket creates bucket on region's MinIO unless it exists, and enables
// versioning when asked (never disables it).
func (e Env) EnsureBucket(ctx context.Context, region, bucket string, versioned bool) error {
	client, err := e.S3(ctx, region)
	if err != nil {
		return err
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{
			LocationConstraint: s3types.BucketLocationConstraint(region),
		}
	}
	if _, err := client.CreateBucket(ctx, in); err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		if !errors.As(err, &owned) {
			return fmt.Errorf("creating bucket %s in %s: %w", bucket, region, err)
		}
	}
	if !versioned {
		return nil
	}
	_, err = client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return fmt.Errorf("enabling versioning on %s in %s: %w", bucket, region, err)
	}
	return nil
}

// RemoveBucket deletes bucket on region's MinIO with every object version in
// it, its replication rules (MinIO refuses to delete a replicated bucket) and
// its bridge route. A missing bucket is not an error.
func (e Env) RemoveBucket(ctx context.Context, region, bucket string) error {
	if err := e.UnrouteEvents(ctx, bucket); err != nil {
		return err
	}
	aliases := map[string]string{"xrcrm": region}
	if out, err := e.mc(ctx, aliases, "replicate", "rm", "--all", "--force", "xrcrm/"+bucket); err != nil &&
		!strings.Contains(out, "does not exist") && !strings.Contains(out, "not found") {
		return fmt.Errorf("removing replication of %s in %s: %w: %s", bucket, region, err, out)
	}
	if out, err := e.mc(ctx, aliases, "rb", "--force", "xrcrm/"+bucket); err != nil && !strings.Contains(out, "does not exist") {
		return fmt.Errorf("removing bucket %s in %s: %w: %s", bucket, region, err, out)
	}
	return nil
}

// EnsureQueue creates queue name and its dead-letter queue config.DeadLetterQueueName(name); a
// message received maxReceive times moves to the DLQ. An existing queue gets
// its attributes updated.
func (e Env) EnsureQueue(ctx context.Context, name string, maxReceive int, visibility time.Duration) (queueURL, dlqURL string, err error) {
	client, err := e.SQS(ctx)
	if err != nil {
		return "", "", err
	}
	dlqURL, err = ensureQueue(ctx, client, config.DeadLetterQueueName(name), map[string]string{
		string(sqstypes.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(14 * 24 * 3600),
	})
	if err != nil {
		return "", "", err
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(dlqURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", "", fmt.Errorf("reading the ARN of queue %s: %w", config.DeadLetterQueueName(name), err)
	}
	redrive, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(maxReceive),
	})
	if err != nil {
		return "", "", err
	}
	queueURL, err = ensureQueue(ctx, client, name, map[string]string{
		string(sqstypes.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(visibility / time.Second)),
		string(sqstypes.QueueAttributeNameRedrivePolicy):     string(redrive),
	})
	if err != nil {
		return "", "", err
	}
	return queueURL, dlqURL, nil
}

func ensureQueue(ctx context.Context, client *sqs.Client, name string, attrs map[string]string) (string, error) {
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	var exists *sqstypes.QueueNameExists
	if !errors.As(err, &exists) {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	// Same name, other attributes: update them in place.
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("looking up queue %s: %w", name, err)
	}
	if _, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
		return "", fmt.Errorf("updating queue %s: %w", name, err)
	}
	return aws.ToString(got.QueueUrl), nil
}

// DeleteQueue deletes queue name and its DLQ; missing queues are ignored.
func (e Env) DeleteQueue(ctx context.Context, name string) error {
	client, err := e.SQS(ctx)
	if err != nil {
		return err
	}
	for _, n := range []string{name, config.DeadLetterQueueName(name)} {
		got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(n)})
		var missing *sqstypes.QueueDoesNotExist
		switch {
		case errors.As(err, &missing):
			continue
		case err != nil:
			return fmt.Errorf("looking up queue %s: %w", n, err)
		}
		if _, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: got.QueueUrl}); err != nil {
			return fmt.Errorf("deleting queue %s: %w", n, err)
		}
	}
	return nil
}

// NotificationARN is the ARN of the bridge's webhook target on the MinIO
// that plays region.
func NotificationARN(region string) string {
	return "arn:minio:sqs:" + region + ":XRC:webhook"
}

// Ids of the queue configurations the helpers own in a bucket's notification
// configuration; others are left alone.
const (
	routeConfigID       = "xrc-route"
	replicationConfigID = "xrc-replication"
)

// RouteEvents makes region's MinIO send bucket's events (default
// s3:ObjectCreated:*) for keys under prefix to the queue at queueURL, through
// the bridge, as AWS S3 does with a queue notification configuration. It
// replaces the bucket's previous RouteEvents configuration. Events of objects
// replicated into bucket by Replicate are delivered too.
func (e Env) RouteEvents(ctx context.Context, region, bucket, queueURL, prefix string, events ...string) error {
	if len(events) == 0 {
		events = []string{"s3:ObjectCreated:*"}
	}
	// Route first, so no event MinIO emits once configured is dropped.
	if err := e.bridgeRoute(ctx, http.MethodPut, bucket, queueURL); err != nil {
		return err
	}
	qc := s3types.QueueConfiguration{Id: aws.String(routeConfigID), QueueArn: aws.String(NotificationARN(region))}
	for _, ev := range events {
		qc.Events = append(qc.Events, s3types.Event(ev))
	}
	if prefix != "" {
		qc.Filter = &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{
			FilterRules: []s3types.FilterRule{{Name: s3types.FilterRuleNamePrefix, Value: aws.String(prefix)}},
		}}
	}
	return e.putQueueConfig(ctx, region, bucket, qc)
}

// putQueueConfig replaces the queue configuration with qc's Id in bucket's
// notification configuration, keeping the others.
func (e Env) putQueueConfig(ctx context.Context, region, bucket string, qc s3types.QueueConfiguration) error {
	client, err := e.S3(ctx, region)
	if err != nil {
		return err
	}
	cur, err := client.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("reading notifications of %s in %s: %w", bucket, region, err)
	}
	var qcs []s3types.QueueConfiguration
	for _, c := range cur.QueueConfigurations {
		if aws.ToString(c.Id) != aws.ToString(qc.Id) {
			qcs = append(qcs, c)
		}
	}
	_, err = client.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket:                    aws.String(bucket),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: append(qcs, qc)},
	})
	if err != nil {
		return fmt.Errorf("configuring notifications of %s in %s: %w", bucket, region, err)
	}
	return nil
}

// UnrouteEvents removes bucket's route from the bridge; events for it are
// then dropped, as S3 does without a notification configuration.
func (e Env) UnrouteEvents(ctx context.Context, bucket string) error {
	return e.bridgeRoute(ctx, http.MethodDelete, bucket, "")
}

func (e Env) bridgeRoute(ctx context.Context, method, bucket, queue string) error {
	req, err := http.NewRequestWithContext(ctx, method, e.BridgeURL+"/routes/"+url.PathEscape(bucket), strings.NewReader(queue))
	if err != nil {
		return err
	}
	client, err := e.httpClient()
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("bridge route %s %s: %w", method, bucket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("bridge route %s %s: %s: %s", method, bucket, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Replicate sets up MinIO server-side replication from srcBucket to
// dstBucket (both made versioned, created if missing) with mc replicate add,
// replicating delete markers, versioned deletes, existing objects and
// metadata changes. It is idempotent: a rule for the same destination is
// left as is.
//
// MinIO emits no event for a replica written into dstBucket (AWS does), so
// Replicate also sends srcBucket's replication-completed events to the
// bridge, which turns them into dstBucket's events (see RouteEvents).
func (e Env) Replicate(ctx context.Context, srcRegion, srcBucket, dstRegion, dstBucket string) error {
	if err := e.EnsureBucket(ctx, srcRegion, srcBucket, true); err != nil {
		return err
	}
	if err := e.EnsureBucket(ctx, dstRegion, dstBucket, true); err != nil {
		return err
	}
	err := e.putQueueConfig(ctx, srcRegion, srcBucket, s3types.QueueConfiguration{
		Id:       aws.String(replicationConfigID),
		QueueArn: aws.String(NotificationARN(srcRegion)),
		Events:   []s3types.Event{"s3:Replication:OperationCompletedReplication"},
	})
	if err != nil {
		return err
	}
	client, err := e.S3(ctx, srcRegion)
	if err != nil {
		return err
	}
	ruleID := "xrc-to-" + dstRegion + "-" + dstBucket
	rules := 0
	got, err := client.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(srcBucket)})
	var apiErr smithy.APIError
	switch {
	case err == nil:
		for _, r := range got.ReplicationConfiguration.Rules {
			if aws.ToString(r.ID) == ruleID {
				return nil
			}
		}
		rules = len(got.ReplicationConfiguration.Rules)
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "ReplicationConfigurationNotFoundError":
	default:
		return fmt.Errorf("reading replication of %s in %s: %w", srcBucket, srcRegion, err)
	}
	out, err := e.mc(ctx, map[string]string{"xrcsrc": srcRegion, "xrcdst": dstRegion},
		"replicate", "add", "xrcsrc/"+srcBucket,
		"--remote-bucket", "xrcdst/"+dstBucket,
		"--region", dstRegion,
		"--id", ruleID,
		"--priority", strconv.Itoa(rules+1),
		// As the CDK app's rules: no delete markers, and S3 never
		// replicates a delete of a version.
		"--replicate", "existing-objects,metadata-sync",
	)
	if err != nil {
		return fmt.Errorf("adding replication %s/%s -> %s/%s: %w: %s", srcRegion, srcBucket, dstRegion, dstBucket, err, out)
	}
	return nil
}

// mc runs the mc binary with aliases (name -> region) passed as MC_HOST_*
// variables, so no credential appears on a command line.
func (e Env) mc(ctx context.Context, aliases map[string]string, args ...string) (string, error) {
	// Without AWS_REGION/MC_REGION mc asks each bucket for its region; with
	// them it signs everything for that one region and the other MinIO says no.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_REGION=") && !strings.HasPrefix(kv, "MC_REGION=") && !strings.HasPrefix(kv, "MC_HOST_") {
			env = append(env, kv)
		}
	}
	env = append(env, "MC_CONFIG_DIR="+e.MCConfigDir)
	for _, name := range sortedKeys(aliases) {
		region := aliases[name]
		endpoint, ok := e.S3Endpoints[region]
		if !ok {
			return "", fmt.Errorf("%w %q (have %v)", errNoRegion, region, sortedKeys(e.S3Endpoints))
		}
		u, err := url.Parse(endpoint)
		if err != nil {
			return "", fmt.Errorf("parsing S3 endpoint %s: %w", endpoint, err)
		}
		u.User = url.UserPassword(e.AccessKey, e.SecretKey)
		env = append(env, "MC_HOST_"+name+"="+u.String())
	}
	cmd := exec.CommandContext(ctx, e.MC, append([]string{"--quiet", "--no-color", "--disable-pager"}, args...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("mc %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// EnsureTable creates a PAY_PER_REQUEST table with string hash key "pk" and,
// if sortKey, string range key "sk", and waits until it is active. An
// existing table is accepted as is.
func (e Env) EnsureTable(ctx context.Context, name string, sortKey bool) error {
	client, err := e.DynamoDB(ctx)
	if err != nil {
		return err
	}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash},
		},
	}
	if sortKey {
		in.AttributeDefinitions = append(in.AttributeDefinitions,
			ddbtypes.AttributeDefinition{AttributeName: aws.String("sk"), AttributeType: ddbtypes.ScalarAttributeTypeS})
		in.KeySchema = append(in.KeySchema,
			ddbtypes.KeySchemaElement{AttributeName: aws.String("sk"), KeyType: ddbtypes.KeyTypeRange})
	}
	if _, err := client.CreateTable(ctx, in); err != nil {
		var inUse *ddbtypes.ResourceInUseException
		if !errors.As(err, &inUse) {
			return fmt.Errorf("creating table %s: %w", name, err)
		}
	}
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		return fmt.Errorf("waiting for table %s: %w", name, err)
	}
	return nil
}

// DeleteTable deletes table name; a missing table is not an error.
func (e Env) DeleteTable(ctx context.Context, name string) error {
	client, err := e.DynamoDB(ctx)
	if err != nil {
		return err
	}
	_, err = client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	var missing *ddbtypes.ResourceNotFoundException
	if err != nil && !errors.As(err, &missing) {
		return fmt.Errorf("deleting table %s: %w", name, err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
