package awsapi

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ResumingBody reads an object of Size bytes from Body and, when a read
// fails mid-stream (a connection reset), reads on from where it stopped
// with Reopen's ranged GET of the same write (the caller pins its version
// or ETag), up to Tries times in a row: a read of many GB was started
// over for one reset, at a receive of its message each. A read that gets
// FreshRun bytes past its last resumption starts a new row, so a stream
// of hours outlives more resets than Tries, and a link that resets at
// every few bytes still gives up. Not past a cancelled Ctx. The reader of
// the bytes still checks their size and digest.
type ResumingBody struct {
	Ctx  context.Context
	Body io.ReadCloser
	Size int64
	// Tries bounds the resumptions in a row.
	Tries int
	// Reopen GETs the same write from byte from on ("bytes=from-").
	Reopen func(ctx context.Context, byteRange string) (*s3.GetObjectOutput, error)
	// Resumed, if set, hears each resumption.
	Resumed func(at int64, try int, cause error)

	read  int64
	tries int
	at    int64 // where the last resumption read on from
}

// FreshRun is how far a read gets past its last resumption for the next
// failure to start a new row of tries: a few parts of a large object.
const FreshRun = 64 << 20

func (r *ResumingBody) Read(p []byte) (int, error) {
	for {
		n, err := r.Body.Read(p)
		r.read += int64(n)
		if err != nil && r.read-r.at >= FreshRun {
			r.tries = 0
		}
		if err == nil || err == io.EOF || r.Ctx.Err() != nil || r.tries >= r.Tries || r.read >= r.Size {
			return n, err
		}
		r.Body.Close()
		r.Body = io.NopCloser(strings.NewReader(""))
		next, oerr := r.Reopen(r.Ctx, fmt.Sprintf("bytes=%d-", r.read))
		if oerr != nil {
			return n, fmt.Errorf("%w; reading on from byte %d: %w", err, r.read, oerr)
		}
		if from := fmt.Sprintf("bytes %d-", r.read); !strings.HasPrefix(aws.ToString(next.ContentRange), from) {
			// A store that ignores Range answers the whole object.
			next.Body.Close()
			return n, fmt.Errorf("%w; reading on from byte %d: the store answered %q, not the range asked for", err, r.read, aws.ToString(next.ContentRange))
		}
		r.Body, r.tries, r.at = next.Body, r.tries+1, r.read
		if r.Resumed != nil {
			r.Resumed(r.read, r.tries, err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close closes the body read now.
func (r *ResumingBody) Close() error { return r.Body.Close() }
