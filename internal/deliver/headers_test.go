package deliver_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/source"
)

// asS3Says is the source's S3 answering, for keys under prefix, with a
// website redirect and an Expires that is no date, as S3 keeps them
// (MinIO, the local stack, keeps neither).
type asS3Says struct {
	source.S3API
	prefix string
}

func (a asS3Says) HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := a.S3API.HeadObject(ctx, in, optFns...)
	if err == nil && strings.HasPrefix(aws.ToString(in.Key), a.prefix) {
		out.WebsiteRedirectLocation, out.ExpiresString = aws.String("/moved/"+aws.ToString(in.Key)), aws.String("0")
	}
	return out, err
}

func (a asS3Says) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := a.S3API.GetObject(ctx, in, optFns...)
	if err == nil && strings.HasPrefix(aws.ToString(in.Key), a.prefix) {
		out.WebsiteRedirectLocation, out.ExpiresString = aws.String("/moved/"+aws.ToString(in.Key)), aws.String("0")
	}
	return out, err
}

// sentHeaders records the headers of the requests that create objects
// (PUT of an object, POST ?uploads), by path.
type sentHeaders struct {
	inner interface {
		Do(*http.Request) (*http.Response, error)
	}
	mu   sync.Mutex
	seen map[string]http.Header
}

func (s *sentHeaders) Do(req *http.Request) (*http.Response, error) {
	_, creates := req.URL.Query()["uploads"]
	if req.Method == http.MethodPut && req.URL.Query().Get("partNumber") == "" && req.URL.Query().Get("tagging") == "" || req.Method == http.MethodPost && creates {
		s.mu.Lock()
		s.seen[req.URL.Path] = req.Header.Clone()
		s.mu.Unlock()
	}
	return s.inner.Do(req)
}

func (s *sentHeaders) of(path string) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[path]
}

// TestRedirectAndRawExpiresCarried: an object's website redirect, and an
// Expires S3 keeps as given though it is no HTTP date ("0": already
// expired), reach the destination's write, in one PUT and in a multipart
// upload's create. Both were dropped (the redirect never read; Expires
// not sent, the SDK's field taking a date only).
func TestRedirectAndRawExpiresCarried(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, nil)
	ctx := context.Background()
	src := p.cfg.Rules[0].SourceBucket
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	p.startSourceReg(t, func(d *source.Deps) { d.S3 = asS3Says{S3API: d.S3, prefix: "data/web/"} })
	s3o := p.dst.Options()
	rec := &sentHeaders{inner: s3o.HTTPClient, seen: map[string]http.Header{}}
	s3o.HTTPClient = rec
	p.startTargetWith(t, s3.New(s3o), p.sqs, p.cfg.Settings.Worker.VisibilityTimeout.D())
	objs := []dataset.Object{
		{Key: "data/web/small.html", ContentType: "text/html", Data: []byte("<p>moved</p>")},
		{Key: "data/web/large.txt", ContentType: "text/plain", Data: textData(3, 20<<20)}, // past one PUT
	}
	if err := dataset.Upload(ctx, p.src, src, objs, 2); err != nil {
		t.Fatal(err)
	}
	if got := p.waitDest(t, len(objs), 2*time.Minute); got != len(objs) {
		t.Fatalf("destination holds %d objects, want %d", got, len(objs))
	}
	for _, o := range objs {
		h := rec.of("/" + dst + "/" + o.Key)
		if h == nil {
			t.Errorf("%s: no write of it seen", o.Key)
			continue
		}
		if got, want := h.Get("X-Amz-Website-Redirect-Location"), "/moved/"+o.Key; got != want {
			t.Errorf("%s written with website redirect %q, want %q", o.Key, got, want)
		}
		if got := h.Get("Expires"); got != "0" {
			t.Errorf("%s written with Expires %q, want the source's \"0\"", o.Key, got)
		}
	}
}
