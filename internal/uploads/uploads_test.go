package uploads_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// newStore returns a Store on a table of its own, and the table's client
// and name.
func newStore(t *testing.T) (*uploads.Store, *dynamodb.Client, string) {
	t.Helper()
	table, ddb := localstack.Require(t).TestTable(t, "uploads")
	return uploads.New(ddb, table, time.Now), ddb, table
}

func upload(key, id string) uploads.Upload {
	return uploads.Upload{Region: "eu-west-1", StagingBucket: "stg", StagingKey: "r1/2026/12/05/a.tar.zst", ArchiveID: "a",
		Member: "objects/000000/" + key, Bucket: "dst", Key: key, UploadID: id, PartSize: 16 << 20, Started: time.Now().UTC()}
}

// TestLongKeysAreRecorded: an object's key may be 1,024 bytes; its record
// (member and destination key, the key twice) must fit DynamoDB's 1,024-
// byte sort key all the same.
func TestLongKeysAreRecorded(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	u := upload(strings.Repeat("k", 1024), "id-1")
	if err := s.Put(ctx, u, ""); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, u)
	if err != nil || !ok || got.UploadID != "id-1" || got.Key != u.Key {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}
	list, err := s.List(ctx, u.Region, u.StagingKey)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %d uploads, %v", len(list), err)
	}
	if err := s.Delete(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, u); ok {
		t.Fatal("still recorded after Delete")
	}
}

// TestTwoDeliveriesKeepTheirRecords: two deliveries of one archive at once
// each start an upload of the same member; the second cannot overwrite the
// first's record, and the first, finishing, cannot delete the second's:
// either would leave an upload recorded nowhere, for no sweep to find.
func TestTwoDeliveriesKeepTheirRecords(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	a, b := upload("big.bin", "id-a"), upload("big.bin", "id-b")
	if err := s.Put(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, b, ""); !errors.Is(err, uploads.ErrRecorded) {
		t.Fatalf("second Put = %v, want %v", err, uploads.ErrRecorded)
	}
	if err := s.Put(ctx, b, "id-other"); !errors.Is(err, uploads.ErrRecorded) {
		t.Fatalf("Put replacing another id = %v, want %v", err, uploads.ErrRecorded)
	}
	if err := s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Get(ctx, a); !ok || got.UploadID != "id-a" {
		t.Fatalf("after b's Delete: %+v, %v; want a's record kept", got, ok)
	}
	// a's upload is gone (aborted, say): b replaces its record.
	if err := s.Put(ctx, b, "id-a"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Get(ctx, a); got.UploadID != "id-b" {
		t.Fatalf("recorded %q, want id-b", got.UploadID)
	}
	// b's record deleted (its own clean-up) after c read it, before c
	// replaces it: c is recorded all the same.
	if err := s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	c := upload("big.bin", "id-c")
	if err := s.Put(ctx, c, "id-b"); err != nil {
		t.Fatalf("replacing a record deleted meanwhile: %v", err)
	}
}

// TestOlderRecordsAreForgotten: a record an older xrc wrote (its sort key
// "<staging key>#<member>#<bucket>/<key>") is found to resume, listed, and
// deleted by the key it was found under, not left for the sweep to find
// every time.
func TestOlderRecordsAreForgotten(t *testing.T) {
	s, ddb, table := newStore(t)
	ctx := context.Background()
	u := upload("old.bin", "id-old")
	item, err := attributevalue.MarshalMap(u)
	if err != nil {
		t.Fatal(err)
	}
	item["pk"] = &types.AttributeValueMemberS{Value: "uploads#" + u.Region}
	item["sk"] = &types.AttributeValueMemberS{Value: u.StagingKey + "#" + u.Member + "#" + u.Bucket + "/" + u.Key}
	if _, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
	// A delivery after the upgrade finds it, to resume it.
	if got, ok, err := s.Get(ctx, upload("old.bin", "")); err != nil || !ok || got.UploadID != "id-old" {
		t.Fatalf("Get = %+v, %v, %v; want the older record", got, ok, err)
	}
	list, err := s.List(ctx, u.Region, "")
	if err != nil || len(list) != 1 || list[0].UploadID != "id-old" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Delete(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, u.Region, ""); len(list) != 0 {
		t.Fatalf("still recorded after Delete: %+v", list)
	}
}

// TestRetriedPutFindsItsOwnRecord: a Put whose first try landed without an
// answer (the SDK then retries it) finds its own record, not another's.
func TestRetriedPutFindsItsOwnRecord(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	u := upload("big.bin", "id-a")
	if err := s.Put(ctx, u, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, u, ""); err != nil {
		t.Fatalf("the same upload recorded again: %v", err)
	}
}

// failingGets fails every GetItem, as a throttled or unreachable table.
type failingGets struct{ uploads.API }

func (failingGets) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, errors.New("throttled")
}

// TestRefusedPutUnreadIsNotAnotherDelivery: a Put refused whose record
// cannot be read back is not known to be another delivery's: reported as
// ErrRecorded, a failing table would pass for a concurrent delivery
// (logged as a wait, its uploads spared on the last receive).
func TestRefusedPutUnreadIsNotAnotherDelivery(t *testing.T) {
	_, ddb, table := newStore(t)
	ctx := context.Background()
	s := uploads.New(failingGets{ddb}, table, time.Now)
	if err := s.Put(ctx, upload("big.bin", "id-a"), ""); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, upload("big.bin", "id-b"), "")
	if err == nil || errors.Is(err, uploads.ErrRecorded) || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("Put refused, record unread: %v; want the read's error, not ErrRecorded", err)
	}
}
