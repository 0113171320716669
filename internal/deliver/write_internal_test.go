package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// TestFanOutWaitsForATwin: when a concurrent delivery of the archive holds
// every destination's upload, each put returns at once and the object's
// error must still read as a wait for that delivery: taken for a failure, a
// last receive would abort the twin's uploads.
func TestFanOutWaitsForATwin(t *testing.T) {
	data := bytes.NewReader(make([]byte, 1<<20))
	err := fanOut(data, 2, func(i int, r io.Reader) error {
		return fmt.Errorf("writing s3://d%d/k: %w", i, uploads.ErrRecorded)
	})
	if !Waiting(err) {
		t.Errorf("fanOut error %v: not a wait for the concurrent delivery", err)
	}
}

func TestFanOut(t *testing.T) {
	payload := bytes.Repeat([]byte("xrc"), 100_000)
	got := make([][]byte, 3)
	if err := fanOut(bytes.NewReader(payload), 3, func(i int, r io.Reader) error {
		var err error
		got[i], err = io.ReadAll(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if !bytes.Equal(g, payload) {
			t.Errorf("put %d read %d bytes, want the %d written", i, len(g), len(payload))
		}
	}

	// One put failing early leaves the others their bytes; its error is
	// the result.
	bad := errors.New("put 0 refused")
	err := fanOut(bytes.NewReader(payload), 2, func(i int, r io.Reader) error {
		if i == 0 {
			return bad
		}
		b, err := io.ReadAll(r)
		if err == nil && len(b) != len(payload) {
			err = fmt.Errorf("put 1 read %d bytes", len(b))
		}
		return err
	})
	if !errors.Is(err, bad) || errors.Is(err, errNoSinkLeft) {
		t.Errorf("fanOut with one failed put: %v, want only its error", err)
	}

	// The source's failure reaches every put, and the result.
	broken := errors.New("digest mismatch")
	err = fanOut(io.MultiReader(bytes.NewReader(payload), iotest.ErrReader(broken)), 2, func(i int, r io.Reader) error {
		_, err := io.ReadAll(r)
		return err
	})
	if !errors.Is(err, broken) {
		t.Errorf("fanOut of a failing source: %v, want its error", err)
	}
}

// TestLateTagsCountEveryHeader: tags that fit beside a little metadata go
// with the write; beside 100 metadata keys (each in its own header and in
// the signature's list of them) the same tags would pass S3's 8 KB of
// headers, refused on every try, and go after the write.
func TestLateTagsCountEveryHeader(t *testing.T) {
	tags := map[string]string{}
	for i := range 10 {
		tags[fmt.Sprintf("t%d", i)] = strings.Repeat("/", 60) // escaped: 180 bytes each
	}
	if n := len(tagging(tags)); n <= 1800 || n > taggingHeaderMax {
		t.Fatalf("tags of %d bytes", n)
	}
	o := &manifest.Object{Tags: tags, Metadata: map[string]string{"owner": "team-a"}, ContentType: "text/plain"}
	if lateTags(o) {
		t.Error("tags beside a little metadata set after the write")
	}
	for i := range 100 {
		o.Metadata[fmt.Sprintf("meta-key-%02d", i)] = "v"
	}
	if !lateTags(o) {
		t.Error("tags beside 100 metadata keys sent with the write")
	}
	o.Tags = nil
	if lateTags(o) {
		t.Error("no tags, yet tags to set after the write (a DeleteObjectTagging after each write)")
	}
}

// TestRejectedArchivesSaySo: the line that settles a rejected archive's
// message says kind rejected (the config sends it nowhere), not write: on
// call looked at the destinations' permissions.
func TestRejectedArchivesSaySo(t *testing.T) {
	if k := failureKind(fmt.Errorf("s3://b/k: %w: archive a: not where rule r sends this key", ErrRejected)); k != "rejected" {
		t.Errorf("kind %q", k)
	}
}

// TestStagingReadFailuresSaySo: a staging archive's read failing (a reset
// past its resumptions) is said kind staging_read, not write: on call
// looked at the destinations.
func TestStagingReadFailuresSaySo(t *testing.T) {
	c := &counted{r: iotest.ErrReader(errors.New("read: connection reset by peer")), c: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}), progress: func() {}}
	_, err := c.Read(make([]byte, 1))
	if k := failureKind(fmt.Errorf("archive a (s3://stg/k): reading: %w", err)); k != "staging_read" {
		t.Errorf("kind %q, want staging_read", k)
	}
	// A resumed read refused (the version gone, its ETag changed) is
	// staging's too, not the destination's 404 or 412.
	gone := &stagingReadError{fmt.Errorf("reading on from byte 9: %w", &smithy.GenericAPIError{Code: "NoSuchVersion"})}
	if k := errorKind(fmt.Errorf("writing s3://dst/k: %w", gone)); k != "staging_read" {
		t.Errorf("per-destination kind %q, want staging_read", k)
	}
}

// TestManifestsShareTheirMemory: a delivery's manifest is charged four
// times its size until the delivery ends; one larger than the whole budget
// takes all of it, waiting for the others, and is never refused.
func TestManifestsShareTheirMemory(t *testing.T) {
	w := &Worker{manifestCap: 100 << 20, manifestMem: semaphore.NewWeighted(100 << 20)}
	ctx := context.Background()
	small := &heldManifest{w: w, ctx: ctx}
	if err := small.acquire(10 << 20); err != nil || small.n != 40<<20 {
		t.Fatalf("a 10 MiB manifest charged %d (%v), want 40 MiB", small.n, err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	big := &heldManifest{w: w, ctx: short}
	if err := big.acquire(64 << 20); err == nil {
		t.Fatal("a 64 MiB manifest decoded beside another's 40 MiB in a 100 MiB budget")
	}
	small.Close()
	big.ctx = ctx
	if err := big.acquire(64 << 20); err != nil || big.n != 100<<20 {
		t.Fatalf("a 64 MiB manifest alone charged %d (%v), want the whole budget", big.n, err)
	}
	big.Close()
	if !w.manifestMem.TryAcquire(100 << 20) {
		t.Error("the budget was not given back")
	}
	w.manifestMem.Release(100 << 20)

	// A dense manifest, counted: charged what decoding it takes, not
	// four times its bytes.
	dense := &heldManifest{w: w, ctx: ctx}
	if err := dense.acquire(1 << 20); err != nil || dense.n != 4<<20 {
		t.Fatalf("a 1 MiB manifest charged %d (%v), want 4 MiB", dense.n, err)
	}
	if err := dense.grow(manifest.DecodedCost(1<<20, 100_000, 0)); err != nil || dense.n != manifest.DecodedCost(1<<20, 100_000, 0) {
		t.Fatalf("100,000 objects in 1 MiB charged %d (%v), want %d", dense.n, err, manifest.DecodedCost(1<<20, 100_000, 0))
	}
	if err := dense.grow(1 << 20); err != nil || dense.n != manifest.DecodedCost(1<<20, 100_000, 0) {
		t.Errorf("a smaller cost changed the charge to %d (%v)", dense.n, err)
	}
	dense.Close()
	if !w.manifestMem.TryAcquire(100 << 20) {
		t.Error("the budget was not given back after growing")
	}
}
