package backfill

import (
	"testing"
	"time"
)

// TestLateMultipartWaitsBySize: a multipart upload's write, dated when
// the upload began, is late only after a second more per MiB: a slow
// client's upload of a large object, then its delivery, take that long.
func TestLateMultipartWaitsBySize(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := &run{Deps: Deps{Now: func() time.Time { return now }}, o: Options{LateAfter: DefaultLateAfter}, lastRun: now.Add(-3 * time.Hour)}
	hourAgo := now.Add(-time.Hour)
	for _, c := range []struct {
		name string
		o    object
		want bool
	}{
		{"one PUT", object{LastModified: hourAgo, ETag: "0123456789abcdef0123456789abcdef", Size: 5 << 30}, true},
		{"8 MiB multipart", object{LastModified: hourAgo, ETag: "0123456789abcdef0123456789abcdef-2", Size: 8 << 20}, true},
		{"4 GiB multipart", object{LastModified: hourAgo, ETag: "0123456789abcdef0123456789abcdef-410", Size: 4 << 30}, false},
		{"before the last complete run", object{LastModified: now.Add(-4 * time.Hour), ETag: "0123456789abcdef0123456789abcdef"}, false},
		{"recent", object{LastModified: now.Add(-10 * time.Minute), ETag: "0123456789abcdef0123456789abcdef"}, false},
	} {
		if got := r.late(c.o); got != c.want {
			t.Errorf("%s: late %v, want %v", c.name, got, c.want)
		}
	}
	r.lastRun = time.Time{}
	if r.late(object{LastModified: hourAgo}) {
		t.Error("late with no complete run before")
	}
}
