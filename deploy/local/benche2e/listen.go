//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/xrc-dev/xrc/internal/events"
)

// emptySHA256 is the SHA-256 of an empty body, which SigV4 signs for a GET.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// listen follows MinIO's ListenBucketNotification stream (a MinIO
// extension of the S3 API: GET on the bucket with ?events=, answered with
// one JSON event record per line for as long as the client reads) for the
// objects created under prefix in bucket, and sends each to seen. It
// returns when ctx ends or the stream breaks; the caller learns of objects
// it misses some other way (MinIO drops events for a listener that falls
// behind).
func listen(ctx context.Context, cfg aws.Config, endpoint, bucket, prefix string, seen chan<- events.ObjectRef) error {
	q := url.Values{"events": {"s3:ObjectCreated:*"}, "prefix": {prefix}}
	u := strings.TrimSuffix(endpoint, "/") + "/" + url.PathEscape(bucket) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("credentials for listening on %s: %w", bucket, err)
	}
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	// This MinIO never flushes the stream (its response writer wrapper
	// hides http.Flusher): events leave in 4 KiB writes, three or four
	// at a time, and about ten when gzipped, as Go's client asks for
	// unless told otherwise.
	req.Header.Set("Accept-Encoding", "identity")
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "s3", cfg.Region, time.Now()); err != nil {
		return err
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", bucket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("listening on %s: %s: %s", bucket, resp.Status, body)
	}
	// Records come one JSON object a line; MinIO writes a space to keep an
	// idle stream open, which the decoder skips.
	dec := json.NewDecoder(resp.Body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("reading the event stream of %s: %w", bucket, err)
		}
		msg, err := events.Parse(raw)
		if err != nil {
			return fmt.Errorf("event stream of %s: %w", bucket, err)
		}
		for _, ref := range msg.Refs {
			if ref.Bucket != bucket {
				continue
			}
			select {
			case seen <- ref:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
