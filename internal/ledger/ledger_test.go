package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestRecordKeepsWhatWasDone: a redelivery of an archive delivered
// already (everything found there: Written 0) or a second delivery at once
// does not replace the entry that says what was written and when; one
// that did more does, as does any over an older xrc's entry.
func TestRecordKeepsWhatWasDone(t *testing.T) {
	env := localstack.Require(t)
	table, ddb := env.TestTable(t, "ledger")
	ctx := context.Background()
	s := ledger.New(ddb, table, time.Now)
	first := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	record := func(e ledger.Entry) {
		t.Helper()
		e.ArchiveID, e.Region, e.Rule = "a1", "eu-west-1", "r1"
		if e.StagingKey == "" {
			e.StagingKey = "r1/a1.tar.zst"
		}
		if err := s.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	get := func() ledger.Entry {
		t.Helper()
		e, ok, err := s.Get(ctx, "a1", "eu-west-1")
		if err != nil || !ok {
			t.Fatalf("entry: %v, found %t", err, ok)
		}
		return e
	}
	record(ledger.Entry{Written: 3, Deleted: 1, FinishedAt: first})
	record(ledger.Entry{Skipped: 4, FinishedAt: first.Add(time.Hour)}) // the redelivery
	if e := get(); e.Written != 3 || e.Deleted != 1 || !e.FinishedAt.Equal(first) {
		t.Errorf("after a redelivery that found everything there: %+v, want the first delivery's", e)
	}
	record(ledger.Entry{Written: 2, Skipped: 2, FinishedAt: first.Add(time.Minute)}) // a delivery at once, that did less
	if e := get(); e.Written != 3 {
		t.Errorf("after a delivery that did less: %+v, want the first delivery's", e)
	}
	record(ledger.Entry{Written: 4, Deleted: 1, FinishedAt: first.Add(2 * time.Minute)})
	if e := get(); e.Written != 4 {
		t.Errorf("after a delivery that did more: %+v, want it", e)
	}
	// Another staging key claiming the id is another archive's entry.
	record(ledger.Entry{StagingKey: "r1/copy.tar.zst", Skipped: 5})
	if e := get(); e.StagingKey != "r1/copy.tar.zst" {
		t.Errorf("after a delivery of another staging key: %+v, want it", e)
	}

	// An older xrc's entry (no "done") is replaced.
	if _, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "archive#a2"}, "sk": &types.AttributeValueMemberS{Value: "region#eu-west-1"},
		"archiveId": &types.AttributeValueMemberS{Value: "a2"}, "written": &types.AttributeValueMemberN{Value: "9"},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, ledger.Entry{ArchiveID: "a2", Region: "eu-west-1", Skipped: 9}); err != nil {
		t.Fatal(err)
	}
	if e, _, err := s.Get(ctx, "a2", "eu-west-1"); err != nil || e.Skipped != 9 {
		t.Errorf("over an older xrc's entry: %+v, %v; want it replaced", e, err)
	}
}
