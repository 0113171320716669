package source

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// slowDownGets answers every GET as S3 sheds a request rate: SlowDown.
type slowDownGets struct{ S3API }

func (slowDownGets) GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."}
}

// TestThrottledProbeKeptOnce: an object whose first-byte probe is
// throttled is kept in the rebuilt archive once; throttled again at the
// next rebuild it is failed, or a throttled prefix would rebuild the
// archive until every object of it failed.
func TestThrottledProbeKeptOnce(t *testing.T) {
	w, rule := tableWorker(nil)
	w.S3 = slowDownGets{}
	w.Config.Settings.Worker.Concurrency = 4
	var failed error
	entries := []entry{{obj: manifest.Object{Bucket: "b", Key: "k", ETag: "e", Size: 10, Member: "m"},
		items: []Item{{Rule: rule, Done: func(err error) { failed = err }}}}}
	kept := w.readable(context.Background(), rule, entries, 0, zap.NewNop())
	if len(kept) != 1 || failed != nil {
		t.Fatalf("first throttled probe: %d kept, failed %v; want it kept", len(kept), failed)
	}
	if kept = w.readable(context.Background(), rule, kept, 0, zap.NewNop()); len(kept) != 0 || failed == nil {
		t.Errorf("second throttled probe: %d kept, failed %v; want it failed", len(kept), failed)
	}
}
