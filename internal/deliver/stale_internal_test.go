package deliver

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// TestAbortStaleSparesRecordedUploads: after a large write, the uploads
// of its key that began before it are aborted only if no delivery
// recorded them. A recorded one is another archive's live write (a newer
// version of the key, started first): aborting it made that delivery
// start over, and on its last receive go to the DLQ. The unrecorded one,
// left by a Create whose record never landed, is cleaned up here or
// nowhere. One begun before the archive was made is not an earlier
// delivery's of it, and may be another application's: left alone.
func TestAbortStaleSparesRecordedUploads(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	const region = "eu-west-1"
	bucket := localstack.UniqueName("stale")
	if err := env.EnsureBucket(ctx, region, bucket, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), region, bucket) })
	client, err := env.S3(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	table, ddb := env.TestTable(t, "uploads")
	store := uploads.New(ddb, table, time.Now)
	const key = "data/big.bin"
	start := func() string {
		out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UploadId)
	}
	foreign := start()
	time.Sleep(1100 * time.Millisecond) // S3 dates uploads to the second
	made := time.Now()
	recorded, left := start(), start()
	if err := store.Put(ctx, uploads.Upload{Region: region, StagingBucket: "stg", StagingKey: "r1/newer.tar.zst", ArchiveID: "newer",
		Member: "objects/000000/" + key, Bucket: bucket, Key: key, UploadID: recorded, PartSize: 16 << 20, Started: time.Now().UTC()}, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // S3 dates uploads to the second
	w := &Worker{Deps: Deps{Region: region, S3: client, Uploads: store, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry()), Clock: clockwork.NewRealClock()}}
	listOpen := func() map[string]bool {
		out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		open := map[string]bool{}
		for _, u := range out.Uploads {
			open[aws.ToString(u.UploadId)] = true
		}
		return open
	}
	// An archive that does not say when it was made (no xrc source's) may
	// not be an earlier delivery's of anything: every upload is spared.
	w.abortStale(ctx, config.Route{Bucket: bucket, Key: key}, time.Time{}, time.Now())
	if open := listOpen(); !open[foreign] || !open[left] {
		t.Error("uploads aborted for an archive with no creation time")
	}
	// Made ClockSkew later than made: the clocks' allowance ends at made.
	w.abortStale(ctx, config.Route{Bucket: bucket, Key: key}, made.Add(awsapi.ClockSkew), time.Now())
	open := listOpen()
	if !open[recorded] {
		t.Error("a recorded upload (another delivery's live write) was aborted")
	}
	if open[left] {
		t.Error("an unrecorded upload left behind was not aborted")
	}
	if !open[foreign] {
		t.Error("an upload begun before the archive was made (not xrc's) was aborted")
	}
}
