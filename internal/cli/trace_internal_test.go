package cli

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/config"
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

// TestVerdictSuggestsWhatBackfillDoes: trace suggests a backfill only
// where one would send the object: a copy of another size than the write
// xrc's metadata names is no copy of it (it said in sync); a copy xrc did
// not write, of the source's size, is one a backfill leaves; an archived
// source is restored first.
func TestVerdictSuggestsWhatBackfillDoes(t *testing.T) {
	mod := time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC)
	tr := &tracer{cfg: &config.Config{Settings: config.Settings{StackName: "xrc"}}, cfgPath: "c.json", key: "k"}
	r := &config.Rule{ID: "r1"}
	head := func(size int64, class s3types.StorageClass) *s3.HeadObjectOutput {
		return &s3.HeadObjectOutput{ContentLength: aws.Int64(size), LastModified: aws.Time(mod), StorageClass: class}
	}
	ours := map[string]string{deliver.MetaArchive: "a", deliver.MetaModified: strconv.FormatInt(mod.UnixMilli(), 10)}
	for _, c := range []struct {
		name     string
		src, dst *s3.HeadObjectOutput
		md       map[string]string
		want     []string
		not      []string
	}{
		{"in sync", head(10, ""), head(10, ""), ours, []string{"in sync"}, []string{"backfill"}},
		{"resized since", head(10, ""), head(7, ""), ours, []string{"another size", "delete the copy, then xrc backfill"}, []string{"in sync"}},
		{"not ours, same size", head(10, ""), head(10, ""), nil, []string{"a backfill leaves such a copy", "delete the copy"}, nil},
		{"not ours, resized", head(10, ""), head(7, ""), nil, []string{"a copy xrc did not write", "xrc backfill"}, []string{"leaves such a copy"}},
		{"resized, provenance without times", head(10, ""), head(7, ""), map[string]string{deliver.MetaArchive: "a"}, []string{"another write than the source's", "xrc backfill"}, []string{"cannot be told"}},
		{"archived, missing", head(10, s3types.StorageClassGlacier), nil, nil, []string{"unreadable until restored", "restore-object"}, nil},
	} {
		got := tr.verdict(r, c.src, c.dst, c.md, deliver.WrittenByXRC(c.md, ""), nil)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q says %q", c.name, got, w)
			}
		}
	}
}
