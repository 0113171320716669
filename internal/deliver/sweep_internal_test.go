package deliver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

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

// thawedUploads is a table whose List was in flight when Lambda froze
// the environment: it fails at the thaw, hours later.
type thawedUploads struct {
	Uploads
	clock *clockwork.FakeClock
}

func (u thawedUploads) List(context.Context, string, string) ([]uploads.Upload, error) {
	u.clock.Advance(3 * time.Hour)
	return nil, context.DeadlineExceeded
}

// thawedHead is an S3 whose HEAD was in flight at a freeze.
type thawedHead struct {
	S3API
	clock *clockwork.FakeClock
}

func (h thawedHead) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	h.clock.Advance(3 * time.Hour)
	return nil, context.DeadlineExceeded
}

// thawedAbort is an S3 whose staging archives are gone and whose abort
// was in flight at a freeze.
type thawedAbort struct {
	S3API
	clock *clockwork.FakeClock
}

func (thawedAbort) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "NotFound", Message: "gone"}
}

func (a thawedAbort) AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	a.clock.Advance(3 * time.Hour)
	return nil, context.DeadlineExceeded
}

// TestSweepThawIsNoFailure: a sweep call in flight when Lambda froze the
// environment fails at the thaw, its time long run out: no warning, no
// error counted (the next sweep goes on), as for the source's calls.
func TestSweepThawIsNoFailure(t *testing.T) {
	for name, deps := range map[string]func(*clockwork.FakeClock) Deps{
		"list": func(c *clockwork.FakeClock) Deps { return Deps{Uploads: thawedUploads{clock: c}} },
		"head": func(c *clockwork.FakeClock) Deps { return Deps{Uploads: listedUploads{n: 3}, S3: thawedHead{clock: c}} },
		"abort": func(c *clockwork.FakeClock) Deps {
			return Deps{Uploads: listedUploads{n: 3}, S3: thawedAbort{clock: c}}
		},
	} {
		clock := clockwork.NewFakeClock()
		core, logs := observer.New(zap.WarnLevel)
		d := deps(clock)
		d.Log, d.Metrics, d.Clock, d.Config = zap.New(core), NewMetrics(prometheus.NewRegistry()), clock, &config.Config{}
		w := &Worker{Deps: d}
		w.sweep(context.Background())
		if logs.Len() > 0 || testutil.ToFloat64(d.Metrics.Errors.WithLabelValues("uploads")) != 0 {
			t.Errorf("%s: a thaw said %v and counted %v errors", name, logs.TakeAll(), testutil.ToFloat64(d.Metrics.Errors.WithLabelValues("uploads")))
		}
	}
}

func TestWaiting(t *testing.T) {
	rec := fmt.Errorf("writing s3://d/k: %w", fmt.Errorf("recording upload u: %w", uploads.ErrRecorded))
	retag := fmt.Errorf("tags of s3://d/k: %w (source written 2026-12-05T00:00:00Z)", ErrRetagBeforeWrite)
	other := errors.New("put s3://d/j: 503")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rec, true},
		{errors.Join(rec, rec), true},
		{retag, true},
		{fmt.Errorf("archive a: %w", errors.Join(rec, retag)), true},
		{errors.Join(retag, other), false},
		{fmt.Errorf("archive a: %w", errors.Join(rec, other)), false},
		{errors.Join(rec, other), false},
		{other, false},
		{nil, false},
	} {
		if got := Waiting(c.err); got != c.want {
			t.Errorf("Waiting(%v) = %v, want %v", c.err, got, c.want)
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

// deniedStaging is an S3 this role may no longer read the staging of, or
// abort uploads in: its rule was removed, or moved its destination.
type deniedStaging struct{ S3API }

func (deniedStaging) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	// As the SDK reads a HEAD's bodiless 403.
	return nil, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
		Err: &smithy.GenericAPIError{Code: "Forbidden", Message: "Forbidden"}}
}

func (deniedStaging) AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"}
}

// recordedUploads lists us and records what is forgotten.
type recordedUploads struct {
	Uploads
	us        []uploads.Upload
	forgotten *[]string
}

func (r recordedUploads) List(context.Context, string, string) ([]uploads.Upload, error) {
	return r.us, nil
}

func (r recordedUploads) Delete(_ context.Context, u uploads.Upload) error {
	*r.forgotten = append(*r.forgotten, u.StagingKey)
	return nil
}

// TestSweepForgetsOrphanedUploads: an upload whose rule no longer writes
// its bucket from here (removed, or moved) is forgotten, said once, though
// the role may neither read its archive (403, not 404) nor abort it; it was
// warned of and counted at every sweep for the record's month. One whose
// rule still writes there is kept: its 403 is a fault to fix.
func TestSweepForgetsOrphanedUploads(t *testing.T) {
	moved := "copies/"
	cfg := &config.Config{Rules: []config.Rule{{ID: "r1", Prefix: "data/", Destinations: []config.Destination{{Region: "eu-west-1", Bucket: "dst"}}}}}
	var forgotten []string
	us := []uploads.Upload{
		{StagingBucket: "stg", StagingKey: "r1/a.tar.zst", Bucket: "dst", Key: "data/k", UploadID: "u1"},
		{StagingBucket: "stg", StagingKey: "gone/b.tar.zst", Bucket: "dst", Key: "data/k", UploadID: "u2"},
		{StagingBucket: "stg", StagingKey: "r1/c.tar.zst", Bucket: "moved", Key: "data/k", UploadID: "u3"},
	}
	core, logs := observer.New(zap.WarnLevel)
	m := NewMetrics(prometheus.NewRegistry())
	w := &Worker{Deps: Deps{Config: cfg, Region: "eu-west-1", S3: deniedStaging{}, Uploads: recordedUploads{us: us, forgotten: &forgotten},
		Log: zap.New(core), Metrics: m, Clock: clockwork.NewRealClock()}}
	w.sweep(context.Background())
	if want := []string{"gone/b.tar.zst", "r1/c.tar.zst"}; fmt.Sprint(forgotten) != fmt.Sprint(want) {
		t.Errorf("forgot %v, want %v", forgotten, want)
	}
	if n := testutil.ToFloat64(m.Errors.WithLabelValues("uploads")); n != 1 {
		t.Errorf("%v upload errors counted, want 1 (r1's archive, which its rule still reads)", n)
	}
	if n := logs.FilterMessageSnippet("forgetting an upload whose rule no longer writes here").Len(); n != 2 {
		t.Errorf("%d lines forgetting orphaned uploads, want 2", n)
	}
	// A destination prefix changed: its old uploads are orphans too; and
	// one whose archive is gone (404) may no longer be aborted either.
	forgotten = nil
	cfg.Rules[0].Destinations[0].Prefix = &moved
	w.S3 = goneStaging{deniedStaging{}}
	w.Uploads = recordedUploads{us: us[:1], forgotten: &forgotten}
	w.sweep(context.Background())
	if want := []string{"r1/a.tar.zst"}; fmt.Sprint(forgotten) != fmt.Sprint(want) {
		t.Errorf("after the prefix moved, forgot %v, want %v", forgotten, want)
	}
}

// TestCheckRegion: a target started for a region that is not one of the
// config's targets says so, naming them, before it looks anything up.
func TestCheckRegion(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{Regions: []config.Region{{Name: "us-east-1", Role: config.RoleSource}, {Name: "eu-west-1", Role: config.RoleTarget}}}}
	if err := CheckRegion(cfg, "eu-west-1"); err != nil {
		t.Errorf("a target region: %v", err)
	}
	for _, name := range []string{"us-east-1", "eu-west-9"} {
		if err := CheckRegion(cfg, name); err == nil || !strings.Contains(err.Error(), "its target regions: eu-west-1") {
			t.Errorf("%s: %v, want an error naming the target regions", name, err)
		}
	}
}

// goneStaging is deniedStaging whose archives are gone (404).
type goneStaging struct{ deniedStaging }

func (goneStaging) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "NotFound", Message: "gone"}
}
