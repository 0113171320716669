// Package uploads remembers the multipart uploads target workers start for
// large archive members, one item per upload in the deployment's DynamoDB
// table (pk "uploads#<region>", sk "<staging key>#<member>#<bucket>/<key>",
// expiresAt as TTL). A delivery cut short (a task killed, a network error)
// leaves its upload and its item; the next delivery of the archive finds
// the item, lists the upload's parts and sends only those missing, and
// whoever finishes or gives up deletes both. One partition per region
// keeps a sweep of the region's leftovers to one Query.
package uploads

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
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

func pk(region string) string { return "uploads#" + region }

// archivePrefix starts the sort keys of every upload of one archive.
func archivePrefix(stagingKey string) string { return stagingKey + "#" }

func sk(u Upload) string {
	return archivePrefix(u.StagingKey) + u.Member + "#" + u.Bucket + "/" + u.Key
}

func key(u Upload) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk(u.Region)},
		"sk": &types.AttributeValueMemberS{Value: sk(u)},
	}
}

// Put records u (replacing an earlier upload of the same member and
// destination).
func (s *Store) Put(ctx context.Context, u Upload) error {
	av, err := attributevalue.MarshalMap(item{PK: pk(u.Region), SK: sk(u), Upload: u, ExpiresAt: s.now().Add(TTL).Unix()})
	if err != nil {
		return fmt.Errorf("encoding upload %s of s3://%s/%s: %w", u.UploadID, u.Bucket, u.Key, err)
	}
	if _, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: av}); err != nil {
		return fmt.Errorf("recording upload %s of s3://%s/%s: %w", u.UploadID, u.Bucket, u.Key, err)
	}
	return nil
}

// Get returns the upload recorded for the member and destination that u
// names (Region, StagingKey, Member, Bucket, Key), if any.
func (s *Store) Get(ctx context.Context, u Upload) (Upload, bool, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(u), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Upload{}, false, fmt.Errorf("looking up an upload of s3://%s/%s: %w", u.Bucket, u.Key, err)
	}
	if len(out.Item) == 0 {
		return Upload{}, false, nil
	}
	var it item
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return Upload{}, false, fmt.Errorf("decoding an upload of s3://%s/%s: %w", u.Bucket, u.Key, err)
	}
	return it.Upload, true, nil
}

// Delete forgets u.
func (s *Store) Delete(ctx context.Context, u Upload) error {
	if _, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(u)}); err != nil {
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
			out = append(out, it.Upload)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}
