package tombstone

import (
	"testing"
	"time"
)

// TestCovers: sequencers order a write and a delete when both have one;
// else a write read as current after the delete is not covered, and times
// order the rest, a tie going to the delete.
func TestCovers(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 200e6, time.UTC) // the delete
	del := Tombstone{Sequencer: "0055AED6DCD90281E5", At: at}
	second := at.Truncate(time.Second)
	for _, c := range []struct {
		name      string
		seq       string
		mod, seen time.Time
		want      bool
	}{
		{"older sequencer", "0055AED6DCD90281E4", at.Add(time.Hour), time.Time{}, true},
		{"newer sequencer", "0055AED6DCD90281E6", second, time.Time{}, false},
		{"newer, shorter sequencer", "0055AED6DCD90282", second, time.Time{}, false},
		{"older, longer sequencer", "0055AED6DCD90281E400", second, time.Time{}, true},
		{"sequencer wins over seen", "0055AED6DCD90281E4", second, at.Add(time.Hour), true},
		{"in the delete's second, not seen", "", second, time.Time{}, true},
		{"in the delete's second, seen after it", "", second, second.Add(2 * time.Second), false},
		{"seen within the margin", "", second, second.Add(time.Second), true},
		{"undeleted: made before the delete, seen after it", "", at.Add(-time.Hour), at.Add(time.Hour), false},
		{"later second", "", second.Add(time.Second), time.Time{}, false},
	} {
		if got := del.Covers(c.seq, c.mod, c.seen); got != c.want {
			t.Errorf("%s: covered %t, want %t", c.name, got, c.want)
		}
	}
}
