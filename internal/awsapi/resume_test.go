package awsapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// resetting is a body that fails (a connection reset) every `every` bytes.
type resetting struct {
	data  []byte
	at    int
	every int
}

func (r *resetting) Read(p []byte) (int, error) {
	if r.at >= len(r.data) {
		return 0, io.EOF
	}
	if r.every == 0 {
		return 0, errors.New("connection reset by peer")
	}
	n := copy(p[:min(len(p), r.every)], r.data[r.at:])
	r.at += n
	r.every -= n
	return n, nil
}

func (r *resetting) Close() error { return nil }

// TestResumingBodyRows: a long read resumes past more resets than Tries
// while each resumption gets FreshRun bytes on; a link that resets at
// every few bytes gives up after Tries in a row.
func TestResumingBodyRows(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (5*FreshRun/2)/16)
	for _, c := range []struct {
		name  string
		every int
		ok    bool
	}{
		{"a reset past every FreshRun bytes", FreshRun + 1, true},
		{"a reset every few bytes", 1 << 10, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			reopens := 0
			body := &ResumingBody{Ctx: context.Background(), Body: &resetting{data: data, every: c.every}, Size: int64(len(data)), Tries: 1,
				Reopen: func(_ context.Context, byteRange string) (*s3.GetObjectOutput, error) {
					reopens++
					var from int
					if _, err := fmt.Sscanf(byteRange, "bytes=%d-", &from); err != nil {
						return nil, err
					}
					return &s3.GetObjectOutput{Body: &resetting{data: data, at: from, every: c.every},
						ContentRange: aws.String(fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))}, nil
				}}
			got, err := io.ReadAll(body)
			if c.ok && (err != nil || !bytes.Equal(got, data)) {
				t.Fatalf("read %d of %d bytes after %d resumptions: %v", len(got), len(data), reopens, err)
			}
			if !c.ok && (err == nil || reopens != 1) {
				t.Fatalf("a link resetting every %d bytes: err %v after %d resumptions, want a failure after 1", c.every, err, reopens)
			}
		})
	}
}
