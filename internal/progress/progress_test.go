package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		n    int64
		want string
	}{
		{"unknown total", Options{Description: "backfill r1", Unit: "objects"}, 500,
			"backfill r1: 500 objects, 50 objects/s, elapsed 10s; enqueued 3"},
		{"known total", Options{Description: "verify", Unit: "objects", Total: 1000}, 500,
			"verify: 500 objects of 1000 objects (50.0%), 50 objects/s, ETA 10s, elapsed 10s; enqueued 3"},
		{"bytes", Options{Description: "inventory", Bytes: true, Total: 4 << 20}, 1 << 20,
			"inventory: 1.0 MiB of 4.0 MiB (25.0%), 102.4 KiB/s, ETA 30s, elapsed 10s; enqueued 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.o.Interval = time.Hour
			b := New(&out, tc.o)
			b.Set(tc.n)
			b.Status("enqueued 3")
			if got := b.Line(b.start.Add(10 * time.Second)); got != tc.want {
				t.Errorf("Line = %q\nwant   %q", got, tc.want)
			}
			b.Close()
			b.Close()
			if !strings.HasPrefix(out.String(), tc.o.Description+": ") || strings.Count(out.String(), "\n") != 1 {
				t.Errorf("Close wrote %q, want one last line", out.String())
			}
		})
	}
}

// TestTerminal draws the bar into a buffer: no line mode, no panic, the
// status in the description.
func TestTerminal(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, Options{Description: "backfill", Terminal: true, Unit: "objects"})
	b.Add(3)
	b.Status("enqueued 1")
	b.SetTotal(10)
	b.Add(7)
	b.Close()
	if IsTerminal(&out) {
		t.Error("a buffer is not a terminal")
	}
	if !strings.Contains(out.String(), "backfill") {
		t.Errorf("bar output %q lacks the description", out.String())
	}
}

// TestConcurrentAdds: what several goroutines add is all counted.
func TestConcurrentAdds(t *testing.T) {
	b := New(&bytes.Buffer{}, Options{Interval: time.Hour})
	defer b.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.Add(1)
			}
		})
	}
	wg.Wait()
	if n := b.get(); n != 8000 {
		t.Errorf("counted %d of 8000", n)
	}
}
