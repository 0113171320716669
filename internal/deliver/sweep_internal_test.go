package deliver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// listedUploads lists n old uploads and records nothing else.
type listedUploads struct {
	Uploads
	n int
}

func (l listedUploads) List(context.Context, string, string) ([]uploads.Upload, error) {
	us := make([]uploads.Upload, l.n)
	for i := range us {
		us[i] = uploads.Upload{StagingBucket: "stg", StagingKey: "r1/a.tar.zst", Started: time.Unix(0, 0)}
	}
	return us, nil
}

// cancelledHead answers as S3 does a HEAD whose context ended.
type cancelledHead struct{ S3API }

func (cancelledHead) HeadObject(ctx context.Context, _ *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, ctx.Err()
}

// TestSweepStopsQuietlyWhenStopping: a sweep the task's stop cuts short
// stops; it counts no error for each upload it did not get to.
func TestSweepStopsQuietlyWhenStopping(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	w := &Worker{Deps: Deps{S3: cancelledHead{}, Uploads: listedUploads{n: 50}, Log: zap.NewNop(), Metrics: m, Clock: clockwork.NewRealClock()}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.sweep(ctx)
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("uploads")); n != 0 {
		t.Errorf("%v upload errors counted by a sweep cut short", n)
	}
}

func TestOnlyConcurrent(t *testing.T) {
	rec := fmt.Errorf("writing s3://d/k: %w", fmt.Errorf("recording upload u: %w", uploads.ErrRecorded))
	other := errors.New("put s3://d/j: 503")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rec, true},
		{errors.Join(rec, rec), true},
		{fmt.Errorf("archive a: %w", errors.Join(rec, other)), false},
		{errors.Join(rec, other), false},
		{other, false},
		{nil, false},
	} {
		if got := OnlyConcurrent(c.err); got != c.want {
			t.Errorf("OnlyConcurrent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// deadlineDelete records whether Delete's context had a deadline.
type deadlineDelete struct {
	Uploads
	had *bool
}

func (d deadlineDelete) Delete(ctx context.Context, _ uploads.Upload) error {
	_, *d.had = ctx.Deadline()
	return nil
}

// TestForgetIsBounded: forgetting a record runs on past the caller's
// cancel, but not for ever (a hung call would hold a stopping target past
// its stop budget).
func TestForgetIsBounded(t *testing.T) {
	var had bool
	w := &Worker{Deps: Deps{Uploads: deadlineDelete{had: &had}, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.forget(ctx, uploads.Upload{})
	if !had {
		t.Error("forget's DynamoDB call had no deadline")
	}
}

// deadlineList records whether List's context had a deadline.
type deadlineList struct {
	Uploads
	had *bool
}

func (d deadlineList) List(ctx context.Context, _, _ string) ([]uploads.Upload, error) {
	_, *d.had = ctx.Deadline()
	return nil, nil
}

// TestAbandonIsBounded: listing an abandoned archive's uploads runs on past
// the caller's cancel, but not for ever.
func TestAbandonIsBounded(t *testing.T) {
	var had bool
	w := &Worker{Deps: Deps{Uploads: deadlineList{had: &had}, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Abandon(ctx, "r1/a.tar.zst")
	if !had {
		t.Error("Abandon's DynamoDB call had no deadline")
	}
}

// staleListing lists one upload of a key, begun at initiated (S3's clock),
// and records aborts.
type staleListing struct {
	S3API
	initiated time.Time
	aborted   *int
}

func (l staleListing) ListMultipartUploads(_ context.Context, in *s3.ListMultipartUploadsInput, _ ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	return &s3.ListMultipartUploadsOutput{Uploads: []s3types.MultipartUpload{{Key: in.Prefix, UploadId: aws.String("u1"), Initiated: &l.initiated}}}, nil
}

func (l staleListing) AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	*l.aborted++
	return &s3.AbortMultipartUploadOutput{}, nil
}

// TestStaleUploadsOnSkewedClocks: after a large write, uploads of its key
// that began before it are aborted (left by a killed worker), but the start
// of the write is this clock's and the uploads' S3's: with this clock two
// minutes ahead, an upload S3 began a minute ago (a newer write's, begun
// after ours) is kept; one begun an hour ago is not.
func TestStaleUploadsOnSkewedClocks(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		initiated time.Time
		aborted   int
	}{{now.Add(-time.Minute), 0}, {now.Add(-time.Hour), 1}} {
		var aborted int
		w := &Worker{Deps: Deps{S3: staleListing{initiated: c.initiated, aborted: &aborted}, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry())}}
		w.abortStale(context.Background(), config.Route{Bucket: "d", Key: "k"}, now.Add(2*time.Minute))
		if aborted != c.aborted {
			t.Errorf("upload begun %v before S3's now: aborted %d times, want %d", now.Sub(c.initiated), aborted, c.aborted)
		}
	}
}
