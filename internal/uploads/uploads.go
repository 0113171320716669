// Package uploads remembers the multipart uploads target workers start for
// large archive members, one item per upload in the deployment's DynamoDB
// table (pk "uploads#<region>", sk "<staging key>#<SHA-256 of
// member#bucket/key>", expiresAt as TTL). A delivery cut short (a task killed, a network error)
// leaves its upload and its item; the next delivery of the archive finds
// the item, lists the upload's parts and sends only those missing, and
// whoever finishes or gives up deletes both. One partition per region
// keeps a sweep of the region's leftovers to one Query.
package uploads

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// TTL bounds an item's life should every sweep miss it.
const TTL = 30 * 24 * time.Hour

// API is the part of the DynamoDB client a Store uses; *dynamodb.Client
// satisfies it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Upload is one multipart upload of one archive member to one destination.
type Upload struct {
	Region        string    `dynamodbav:"region"`
	StagingBucket string    `dynamodbav:"stagingBucket"`
	StagingKey    string    `dynamodbav:"stagingKey"`
	ArchiveID     string    `dynamodbav:"archiveId"`
	Member        string    `dynamodbav:"member"`
	Bucket        string    `dynamodbav:"bucket"`
	Key           string    `dynamodbav:"key"`
	UploadID      string    `dynamodbav:"uploadId"`
	PartSize      int64     `dynamodbav:"partSize"`
	Started       time.Time `dynamodbav:"started"`
	// Checksum is the CRC algorithm the upload was created with, which
	// its parts must carry; empty (CRC32C) for uploads recorded before it
	// was kept.
	Checksum string `dynamodbav:"checksum,omitempty"`
	// Record is the sort key the upload is recorded under, as Get and
	// List found it (an older xrc's form, say); Delete uses it.
	Record string `dynamodbav:"-"`
}

type item struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
	Upload
	ExpiresAt int64 `dynamodbav:"expiresAt"`
}

// Store reads and writes upload items in table.
type Store struct {
	api   API
	table string
	now   func() time.Time
}

// New returns a Store on table.
func New(api API, table string, now func() time.Time) *Store {
	return &Store{api: api, table: table, now: now}
}

func pk(region string) string { return config.KeyUploads + region }

// archivePrefix starts the sort keys of every upload of one archive.
func archivePrefix(stagingKey string) string { return stagingKey + "#" }

// sk names u's member and destination by their digest: written out, a
// member (objects/NNNNNN/<key>) and its destination key hold the object's
// key twice, and past about 470 bytes of key the sort key went over
// DynamoDB's 1,024 bytes, so no large object with a long key could be
// delivered.
func sk(u Upload) string {
	sum := sha256.Sum256([]byte(u.Member + "#" + u.Bucket + "/" + u.Key))
	return archivePrefix(u.StagingKey) + hex.EncodeToString(sum[:])
}

func key(u Upload) map[string]types.AttributeValue {
	k := sk(u)
	if u.Record != "" {
		k = u.Record
	}
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk(u.Region)},
		"sk": &types.AttributeValueMemberS{Value: k},
	}
}

// ErrRecorded is Put's refusal: another upload of the member and
// destination was recorded meanwhile (another delivery of the archive at
// the same time), and keeps its record.
var ErrRecorded = errors.New("another upload is recorded")

// Put records u, in place of the upload replaced (its id; "" when none was
// recorded). If the record is not what replaced says, Put records nothing
// and returns ErrRecorded: two deliveries of one archive each keep their
// own upload's record, never one overwriting the other's, which would
// leave an upload no sweep could find.
func (s *Store) Put(ctx context.Context, u Upload, replaced string) error {
	av, err := attributevalue.MarshalMap(item{PK: pk(u.Region), SK: sk(u), Upload: u, ExpiresAt: s.now().Add(TTL).Unix()})
	if err != nil {
		return fmt.Errorf("encoding upload %s of s3://%s/%s: %w", u.UploadID, u.Bucket, u.Key, err)
	}
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}
	if replaced != "" {
		// Or none: the replaced upload's own clean-up may have deleted
		// its record since it was read.
		in.ConditionExpression = aws.String("attribute_not_exists(pk) OR uploadId = :old")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":old": &types.AttributeValueMemberS{Value: replaced}}
	}
	if _, err := s.api.PutItem(ctx, in); err != nil {
		var cf *types.ConditionalCheckFailedException
		if errors.As(err, &cf) {
			// An SDK retry of a write whose first try landed finds its
			// own record.
			got, ok, gerr := s.Get(ctx, u)
			switch {
			case gerr != nil:
				// Not known to be another delivery's: a failing table
				// must not pass for one.
				return fmt.Errorf("recording upload %s of s3://%s/%s: refused, and reading the record: %w", u.UploadID, u.Bucket, u.Key, gerr)
			case ok && got.UploadID == u.UploadID:
				return nil
			}
			err = ErrRecorded
		}
		return fmt.Errorf("recording upload %s of s3://%s/%s: %w", u.UploadID, u.Bucket, u.Key, err)
	}
	return nil
}

// Get returns the upload recorded for the member and destination that u
// names (Region, StagingKey, Member, Bucket, Key), if any.
func (s *Store) Get(ctx context.Context, u Upload) (Upload, bool, error) {
	keys := []string{sk(u)}
	if k := legacySK(u); len(k) <= awsapi.MaxSortKey {
		keys = append(keys, k)
	}
	for _, k := range keys {
		u.Record = k
		out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(u), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return Upload{}, false, fmt.Errorf("looking up an upload of s3://%s/%s: %w", u.Bucket, u.Key, err)
		}
		if len(out.Item) == 0 {
			continue
		}
		var it item
		if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
			return Upload{}, false, fmt.Errorf("decoding an upload of s3://%s/%s: %w", u.Bucket, u.Key, err)
		}
		it.Upload.Record = it.SK
		return it.Upload, true, nil
	}
	return Upload{}, false, nil
}

// legacySK is the sort key xrc wrote before the digest (sk), looked up too
// so that an upload cut short by the upgrade resumes rather than starts
// over. It can go once no record of that form is left (TTL: 30 days).
func legacySK(u Upload) string {
	return archivePrefix(u.StagingKey) + u.Member + "#" + u.Bucket + "/" + u.Key
}

// Delete forgets u, if it is the upload recorded for its member and
// destination: another's record stays.
func (s *Store) Delete(ctx context.Context, u Upload) error {
	_, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(u),
		ConditionExpression:       aws.String("uploadId = :id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":id": &types.AttributeValueMemberS{Value: u.UploadID}}})
	var cf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &cf) {
		return fmt.Errorf("forgetting upload %s of s3://%s/%s: %w", u.UploadID, u.Bucket, u.Key, err)
	}
	return nil
}

// List returns the uploads recorded in region, only those of one staging
// archive if stagingKey is not "".
func (s *Store) List(ctx context.Context, region, stagingKey string) ([]Upload, error) {
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk(region)}},
		ConsistentRead:            aws.Bool(true),
	}
	if stagingKey != "" {
		in.KeyConditionExpression = aws.String("pk = :pk AND begins_with(sk, :archive)")
		in.ExpressionAttributeValues[":archive"] = &types.AttributeValueMemberS{Value: archivePrefix(stagingKey)}
	}
	var out []Upload
	for {
		page, err := s.api.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("listing the uploads recorded in %s: %w", region, err)
		}
		for _, av := range page.Items {
			var it item
			if err := attributevalue.UnmarshalMap(av, &it); err != nil {
				return nil, fmt.Errorf("decoding an upload recorded in %s: %w", region, err)
			}
			it.Upload.Record = it.SK
			out = append(out, it.Upload)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}
