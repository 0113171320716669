// Package tombstone remembers the deletes a target worker propagated, so an
// older create delivered after its delete (events out of order, a retry, a
// redriven dead letter) cannot bring the object back.
//
// A tombstone is one item of the deployment's DynamoDB table per
// destination object: pk "tomb#<bucket>/<key>", sk "tomb", the delete's S3
// event sequencer (normalised so that DynamoDB's string order is the
// numeric order) and time, and expiresAt (TTL). It lives longer than any
// message can wait in a queue and its dead-letter queue (14 days each at
// most), which bounds how late an older create can arrive, but for a
// redrive, which starts a message's 14 days again: the source carries a
// version whose event is that late only if it is still current.
package tombstone

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
)

// TTL is how long a tombstone lives.
const TTL = 30 * 24 * time.Hour

// API is the part of the DynamoDB client a Store uses; *dynamodb.Client
// satisfies it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Tombstone is the newest delete propagated to one destination object.
type Tombstone struct {
	Bucket, Key string    // the destination object
	Sequencer   string    // the delete's S3 event sequencer
	At          time.Time // the delete's event time
	ArchiveID   string    // the archive that carried it
}

// Covers reports whether a source write with sequencer seq and
// last-modified time mod happened before the delete, and so must not land.
// Sequencers order the writes of one key. Without both, a write the source
// found current (seen, manifest.Object.Seen) after the delete is not
// covered; else times order them, and a tie goes to the delete. Times
// alone mislead: S3's Last-Modified has whole seconds, so a write made
// within the second after a delete looks older than it.
func (t Tombstone) Covers(seq string, mod, seen time.Time) bool {
	if t.Sequencer != "" && seq != "" {
		return events.CompareSequencer(seq, t.Sequencer) < 0
	}
	if ReadAfter(seen, t.At) {
		return false
	}
	return !mod.After(t.At)
}

// readMargin is how long after an event a read must be dated to have
// certainly come after it: the Date header has whole seconds, and S3's
// hosts' clocks are not one.
const readMargin = time.Second

// ReadAfter reports whether a read dated seen (zero: unknown) certainly
// came after an event at at.
func ReadAfter(seen, at time.Time) bool {
	return !seen.IsZero() && at.Before(seen.Add(-readMargin))
}

// Store reads and writes tombstones in table.
type Store struct {
	api   API
	table string
	now   func() time.Time
}

// New returns a Store on table.
func New(api API, table string, now func() time.Time) *Store {
	return &Store{api: api, table: table, now: now}
}

type item struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	Seq       string `dynamodbav:"seq"` // legacySeq of Sequencer
	Sequencer string `dynamodbav:"sequencer"`
	AtMs      int64  `dynamodbav:"atMs"`
	Archive   string `dynamodbav:"archiveId"`
	ExpiresAt int64  `dynamodbav:"expiresAt"` // TTL, Unix seconds
}

func key(bucket, k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: config.KeyTomb + bucket + "/" + k},
		"sk": &types.AttributeValueMemberS{Value: "tomb"},
	}
}

// seqWidth is the width sequencers are padded to in seq; S3's are 16-18
// hex digits.
const seqWidth = 40

// legacySeq is the seq attribute: the sequencer left-padded, which targets
// before the sequencer attribute's comparison ordered deletes by (as
// numbers, not as S3 orders them). It is still written so that such a
// target, during a rolling upgrade, finds its condition's attribute.
func legacySeq(seq string) string {
	s := strings.TrimLeft(strings.ToUpper(seq), "0")
	if seq == "" || len(s) > seqWidth {
		return ""
	}
	return strings.Repeat("0", seqWidth-len(s)) + s
}

// Get returns the tombstone of bucket/key, if any, with a strongly
// consistent read: a delete propagated a moment ago must be seen.
func (s *Store) Get(ctx context.Context, bucket, k string) (Tombstone, bool, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(bucket, k), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Tombstone{}, false, fmt.Errorf("reading the tombstone of %s/%s: %w", bucket, k, err)
	}
	if len(out.Item) == 0 {
		return Tombstone{}, false, nil
	}
	var it item
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return Tombstone{}, false, fmt.Errorf("decoding the tombstone of %s/%s: %w", bucket, k, err)
	}
	if it.ExpiresAt > 0 && s.now().Unix() > it.ExpiresAt {
		return Tombstone{}, false, nil // expired; TTL deletes lazily
	}
	return Tombstone{Bucket: bucket, Key: k, Sequencer: it.Sequencer, At: time.UnixMilli(it.AtMs).UTC(), ArchiveID: it.Archive}, true, nil
}

// Put records t unless a newer delete of the same object is recorded
// already (a condition, so concurrent deletes keep the newest).
func (s *Store) Put(ctx context.Context, t Tombstone) error {
	// DynamoDB compares strings as bytes, which orders two sequencers as
	// S3 does (right-padded with zeros, events.CompareSequencer), but for
	// two equal once padded: those are one delete, so either may stay.
	seq := strings.ToUpper(t.Sequencer)
	values := map[string]types.AttributeValue{
		":seq":       &types.AttributeValueMemberS{Value: legacySeq(seq)},
		":sequencer": &types.AttributeValueMemberS{Value: seq},
		":at":        &types.AttributeValueMemberN{Value: fmt.Sprint(t.At.UnixMilli())},
		":archive":   &types.AttributeValueMemberS{Value: t.ArchiveID},
		":exp":       &types.AttributeValueMemberN{Value: fmt.Sprint(s.now().Add(TTL).Unix())},
	}
	// Sequencers order two deletes that both have one; else their times do
	// (a recorded delete without one is not older than every delete with
	// one).
	cond := "attribute_not_exists(#pk) OR (#sequencer <> :none AND #sequencer < :sequencer) OR (#sequencer = :none AND #at < :at)"
	values[":none"] = &types.AttributeValueMemberS{Value: ""}
	if seq == "" {
		cond = "attribute_not_exists(#pk) OR #at < :at"
		delete(values, ":none")
	}
	_, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &s.table,
		Key:                 key(t.Bucket, t.Key),
		UpdateExpression:    aws.String("SET #seq = :seq, #sequencer = :sequencer, #at = :at, #archive = :archive, #exp = :exp"),
		ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: map[string]string{"#pk": "pk", "#seq": "seq", "#sequencer": "sequencer", "#at": "atMs",
			"#archive": "archiveId", "#exp": "expiresAt"},
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return nil // a newer delete is recorded
	}
	if err != nil {
		return fmt.Errorf("recording the tombstone of %s/%s: %w", t.Bucket, t.Key, err)
	}
	return nil
}
