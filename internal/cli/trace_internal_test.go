package cli

import (
	"strconv"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/tombstone"
)

// TestOlderThanDelete: a copy is ordered against a delete by sequencers,
// else by when its write completed (xrc-seen), never by its Last-Modified
// alone (a multipart upload's is when it began).
func TestOlderThanDelete(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC)
	d := &tombstone.Tombstone{Sequencer: "0055", At: at}
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	for _, c := range []struct {
		name string
		md   map[string]string
		want int
	}{
		{"older sequencer", map[string]string{deliver.MetaSequencer: "0054"}, 1},
		{"newer sequencer, begun before the delete", map[string]string{deliver.MetaSequencer: "0066", deliver.MetaModified: ms(at.Add(-time.Hour))}, -1},
		{"completed before", map[string]string{deliver.MetaSeen: ms(at.Add(-time.Minute))}, 1},
		{"completed after", map[string]string{deliver.MetaSeen: ms(at.Add(time.Minute))}, -1},
		{"read within the clocks' margin", map[string]string{deliver.MetaSeen: ms(at.Add(500 * time.Millisecond))}, 0},
		{"begun before, completion unknown", map[string]string{deliver.MetaModified: ms(at.Add(-time.Hour))}, 0},
		{"begun after", map[string]string{deliver.MetaModified: ms(at.Add(time.Hour))}, -1},
	} {
		if got := olderThanDelete(c.md, d); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
