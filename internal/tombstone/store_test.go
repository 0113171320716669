package tombstone_test

import (
	"context"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// TestPutKeepsTheNewestDelete: of two deletes of one object, the newer is
// kept whichever comes last: by sequencer when both have one, else by
// time (a delete without a sequencer is not older than every one with).
func TestPutKeepsTheNewestDelete(t *testing.T) {
	env := localstack.Require(t)
	table, ddb := env.TestTable(t, "tomb")
	s := tombstone.New(ddb, table, time.Now)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	cases := []struct {
		name          string
		first, second tombstone.Tombstone
		wantArchive   string
	}{
		{"older sequencer second", tombstone.Tombstone{Sequencer: "0A", At: t0, ArchiveID: "new"}, tombstone.Tombstone{Sequencer: "09", At: t0.Add(time.Second), ArchiveID: "old"}, "new"},
		{"newer sequencer second", tombstone.Tombstone{Sequencer: "09", At: t0, ArchiveID: "old"}, tombstone.Tombstone{Sequencer: "0A", At: t0, ArchiveID: "new"}, "new"},
		{"older sequenced delete after a newer one without", tombstone.Tombstone{At: t0.Add(time.Minute), ArchiveID: "new"}, tombstone.Tombstone{Sequencer: "0A", At: t0, ArchiveID: "old"}, "new"},
		{"newer sequenced delete after an older one without", tombstone.Tombstone{At: t0, ArchiveID: "old"}, tombstone.Tombstone{Sequencer: "0A", At: t0.Add(time.Minute), ArchiveID: "new"}, "new"},
		// S3 orders sequencers of different lengths right-padded with
		// zeros: the shorter ones here are the newer.
		{"newer, shorter sequencer second", tombstone.Tombstone{Sequencer: "0062E99A88DC407460", At: t0, ArchiveID: "old"}, tombstone.Tombstone{Sequencer: "0062E99A88DC4075", At: t0, ArchiveID: "new"}, "new"},
		{"older, longer sequencer second", tombstone.Tombstone{Sequencer: "0062E99A88DD", At: t0, ArchiveID: "new"}, tombstone.Tombstone{Sequencer: "0062E99A88DC407460", At: t0.Add(time.Second), ArchiveID: "old"}, "new"},
		{"older delete without, after a newer sequenced one", tombstone.Tombstone{Sequencer: "0A", At: t0.Add(time.Minute), ArchiveID: "new"}, tombstone.Tombstone{At: t0, ArchiveID: "old"}, "new"},
	}
	for i, c := range cases {
		key := "k" + string(rune('a'+i))
		for _, tb := range []tombstone.Tombstone{c.first, c.second} {
			tb.Bucket, tb.Key = "dst", key
			if err := s.Put(ctx, tb); err != nil {
				t.Fatal(err)
			}
		}
		got, ok, err := s.Get(ctx, "dst", key)
		if err != nil || !ok || got.ArchiveID != c.wantArchive {
			t.Errorf("%s: kept %+v (%v, %v), want the delete of archive %q", c.name, got, ok, err, c.wantArchive)
		}
	}
}
