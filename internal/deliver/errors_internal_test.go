package deliver

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

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

// TestAllErrorsKeepEachKind: past the errors kept, one of a kind not yet
// kept is: refusals after a run of timeouts name the failure
// access_denied, not write, on the DLQ line and in the errors metric.
func TestAllErrorsKeepEachKind(t *testing.T) {
	var all allErrors
	for i := range 30 {
		_ = all.add(fmt.Errorf("delete of s3://b/key-%d: %w", i, io.ErrUnexpectedEOF))
	}
	for i := range 100 {
		_ = all.add(fmt.Errorf("delete of s3://b/denied-%d: %w", i, &smithy.GenericAPIError{Code: "AccessDenied"}))
	}
	if kind := failureKind(all.join()); kind != "access_denied" {
		t.Errorf("kind %s, want access_denied", kind)
	}
}

// TestTakenOverOnlyAlone: an upload gone under a delivery (NoSuchUpload)
// is a wait for the delivery that took it over only when nothing else went
// wrong: beside a failure of the member's own, that failure stands.
func TestTakenOverOnlyAlone(t *testing.T) {
	gone := fmt.Errorf("UploadPart: %w", &smithy.GenericAPIError{Code: "NoSuchUpload", Message: "aborted"})
	for _, c := range []struct {
		name string
		err  error
		wait bool
	}{
		{"alone", gone, true},
		{"twice", errors.Join(gone, gone), true},
		{"beside a read of the archive", errors.Join(io.ErrUnexpectedEOF, gone), false},
		{"beside a bad member", errors.Join(fmt.Errorf("member: %w", archive.ErrInvalid), gone), false},
		{"another error", io.ErrUnexpectedEOF, false},
	} {
		if got := onlyNoSuchUpload(c.err); got != c.wait {
			t.Errorf("%s: waiting %v, want %v", c.name, got, c.wait)
		}
	}
}

// TestLatencyBucketsReachDays: a replication lag of days (an outage, a
// redrive) shows in the latency histogram's buckets, not past the last.
func TestLatencyBucketsReachDays(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Latency.WithLabelValues("r").Observe((3 * 24 * time.Hour).Seconds())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xrc_target_replication_latency_seconds" {
			continue
		}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			if b.GetCumulativeCount() == 1 {
				return // in a finite bucket
			}
		}
		t.Fatal("a lag of 3 days is past the histogram's last finite bucket")
	}
	t.Fatal("no latency histogram")
}
