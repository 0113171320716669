package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// The report counts only the archives of this run's objects: an archive
// of what an interrupted earlier demo left in the queue, staged during
// this run, is not counted, and one carrying both counts for this run's
// share of its bytes.
func TestStagedSinceCountsThisRunOnly(t *testing.T) {
	ctx := context.Background()
	env := localstack.Require(t)
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("demo-stg")
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })

	start := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	run, old := "data/run-20261205T010203/", "data/run-20261204T235959/"
	stage := func(id string, keys ...string) int64 {
		t.Helper()
		m := &manifest.Manifest{Format: manifest.Format, ArchiveID: id, CreatedAt: time.Now().UTC(), SourceRegion: "us-east-1", RuleID: "demo", Level: 3}
		var data [][]byte
		for i, k := range keys {
			b := bytes.Repeat([]byte("x"), 1000)
			s := sha256.Sum256(b)
			m.Objects = append(m.Objects, manifest.Object{Member: manifest.MemberName(i, k), Bucket: "src", Key: k, Size: int64(len(b)),
				LastModified: time.Now().UTC(), Sequencer: "0A", SHA256: hex.EncodeToString(s[:]),
				Destinations: []manifest.Destination{{Region: "eu-west-1", Bucket: "dst", Key: k}}})
			data = append(data, b)
		}
		var buf bytes.Buffer
		w := archive.NewWriter(archive.WriterOptions{})
		if err := w.Begin(&buf, m); err != nil {
			t.Fatal(err)
		}
		for i, b := range data {
			if _, err := w.WriteObject(i, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(manifest.StagingKey(m)),
			Body: bytes.NewReader(buf.Bytes()), ContentLength: aws.Int64(int64(buf.Len()))}); err != nil {
			t.Fatal(err)
		}
		return int64(buf.Len())
	}
	id := func(n int) string { return fmt.Sprintf("20261205T010203Z-0badcafe-00000000000%d", n) }
	ours := stage(id(1), run+"a", run+"b")
	stage(id(2), old+"a", old+"b")
	mixed := stage(id(3), run+"c", old+"c")

	n, size, err := stagedSince(ctx, client, bucket, "demo/", start, run)
	if err != nil {
		t.Fatal(err)
	}
	if want := ours + mixed/2; n != 2 || size != want {
		t.Errorf("stagedSince = %d archives, %d bytes; want 2 archives, %d bytes (all of the first, half of the mixed one)", n, size, want)
	}
}

// TestFit: a long level mix is cut after a whole entry, within the column.
func TestFit(t *testing.T) {
	long := "3 81%, 6 18%, 7 0%, -1 0%, 9 0%, 2 0%, 4 0%, 5 0%"
	if got := fit(long, 36); got != "3 81%, 6 18%, 7 0%, -1 0%, 9 0%, ..." || len(got) > 36 {
		t.Errorf("fit = %q", got)
	}
	if got := fit("store 99%, -7 0%", 36); got != "store 99%, -7 0%" {
		t.Errorf("fit of a short mix = %q", got)
	}
}
