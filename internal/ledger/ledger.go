// Package ledger records the archives target workers delivered, one item
// per archive and region in the deployment's DynamoDB table (pk
// "archive#<id>", sk "region#<region>", expiresAt as TTL). An operator can
// ask whether archive X landed in region Y (one GetItem), and a worker that
// finds a staging archive gone can tell an archive it already delivered
// (its message is acknowledged) from one that vanished undelivered (its
// message goes to the dead-letter queue).
package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/config"
)

// TTL is how long an entry lives: longer than a message can wait in a queue
// and its dead-letter queue.
const TTL = 30 * 24 * time.Hour

// API is the part of the DynamoDB client a Store uses; *dynamodb.Client
// satisfies it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Entry is one archive delivered in one region.
type Entry struct {
	ArchiveID   string        `dynamodbav:"archiveId"`
	Region      string        `dynamodbav:"region"`
	Rule        string        `dynamodbav:"rule"`
	StagingKey  string        `dynamodbav:"stagingKey"`
	Written     int           `dynamodbav:"written"`     // objects written
	Skipped     int           `dynamodbav:"skipped"`     // already there, newer, or deleted since
	Deleted     int           `dynamodbav:"deleted"`     // deletes propagated
	Retagged    int           `dynamodbav:"retagged"`    // tag changes carried
	Failed      int           `dynamodbav:"failed"`      // 0 for a delivered archive
	ArchiveSize int64         `dynamodbav:"archiveSize"` // compressed bytes read from staging
	ObjectBytes int64         `dynamodbav:"objectBytes"` // uncompressed bytes written
	Latency     time.Duration `dynamodbav:"latencyNs"`   // from archive creation to delivered
	FinishedAt  time.Time     `dynamodbav:"finishedAt"`
}

type item struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
	Entry
	Done      int   `dynamodbav:"done"` // written + deleted + retagged: what Record keeps the most of
	ExpiresAt int64 `dynamodbav:"expiresAt"`
}

// Store reads and writes ledger entries in table.
type Store struct {
	api   API
	table string
	now   func() time.Time
}

// New returns a Store on table.
func New(api API, table string, now func() time.Time) *Store {
	return &Store{api: api, table: table, now: now}
}

func keys(archiveID, region string) (pk, sk string) {
	return config.KeyArchive + archiveID, "region#" + region
}

func key(archiveID, region string) map[string]types.AttributeValue {
	pk, sk := keys(archiveID, region)
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}
}

// Record stores e, unless an entry of the same archive and region did
// more (written, deleted, retagged): a redelivery of an archive delivered
// already, which finds everything there, or a second delivery at once
// that found the first's writes, keeps the entry that says what was
// written, and when (it recorded Written 0 over it).
func (s *Store) Record(ctx context.Context, e Entry) error {
	pk, sk := keys(e.ArchiveID, e.Region)
	done := e.Written + e.Deleted + e.Retagged
	av, err := attributevalue.MarshalMap(item{PK: pk, SK: sk, Entry: e, Done: done, ExpiresAt: s.now().Add(TTL).Unix()})
	if err != nil {
		return fmt.Errorf("encoding the ledger entry of archive %s: %w", e.ArchiveID, err)
	}
	_, err = s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: av,
		// An entry of an older xrc has no "done", and one of another
		// staging key claiming the id is not this archive's (the target
		// checks an archive gone from staging against its key): both
		// replaced, as they were.
		ConditionExpression:      aws.String("attribute_not_exists(pk) OR attribute_not_exists(#done) OR #done < :done OR #key <> :key"),
		ExpressionAttributeNames: map[string]string{"#done": "done", "#key": "stagingKey"}, // whatever DynamoDB reserves
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":done": &types.AttributeValueMemberN{Value: strconv.Itoa(done)},
			":key":  &types.AttributeValueMemberS{Value: e.StagingKey},
		},
	})
	var kept *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &kept) {
		return fmt.Errorf("recording archive %s in the ledger: %w", e.ArchiveID, err)
	}
	return nil
}

// Get returns the entry of archiveID in region, if one is recorded.
func (s *Store) Get(ctx context.Context, archiveID, region string) (Entry, bool, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(archiveID, region), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading archive %s from the ledger: %w", archiveID, err)
	}
	if len(out.Item) == 0 {
		return Entry{}, false, nil
	}
	var it item
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return Entry{}, false, fmt.Errorf("decoding the ledger entry of archive %s: %w", archiveID, err)
	}
	return it.Entry, true, nil
}
