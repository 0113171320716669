package deliver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xrc-dev/xrc/internal/archive"
)

// TestAllErrorsBounded: thousands of failed deletes or retags make an
// error of a bounded size (it was one of megabytes, logged twice a
// receive), whose kind is still that of them all: waiting only if every
// one waits, permanent if any is.
func TestAllErrorsBounded(t *testing.T) {
	wait := func(i int) error { return fmt.Errorf("retag of s3://b/key-%d: %w", i, ErrRetagBeforeWrite) }
	for _, c := range []struct {
		name          string
		last          error
		waiting, perm bool
	}{
		{"all waiting", wait(-1), true, false},
		{"one failure last", errors.New("AccessDenied"), false, false},
		{"one permanent last", fmt.Errorf("member: %w", archive.ErrInvalid), false, true},
	} {
		var all allErrors
		for i := range 5000 {
			_ = all.add(wait(i))
		}
		_ = all.add(c.last)
		err := all.join()
		if n := len(err.Error()); n > 4<<10 || !strings.Contains(err.Error(), "more errors like these") {
			t.Errorf("%s: error of %d bytes, not saying how many it left out: %.200s", c.name, n, err)
		}
		if Waiting(err) != c.waiting || Permanent(err) != c.perm {
			t.Errorf("%s: waiting %v, permanent %v; want %v, %v", c.name, Waiting(err), Permanent(err), c.waiting, c.perm)
		}
	}
}
