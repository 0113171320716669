package dataset_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// Check finds every way a copy can differ from what was wanted, in both
// directions (a header, metadata key or tag the copy has but should not),
// and ignores xrc's own x-amz-meta-xrc-* provenance.
func TestCheckBothWays(t *testing.T) {
	ctx := context.Background()
	env := localstack.Require(t)
	client, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("dataset")
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })

	expires := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	full := dataset.Object{Key: "full", Data: []byte("full"), ContentType: "text/plain", ContentEncoding: "identity",
		CacheControl: "max-age=60", ContentDisposition: `attachment; filename="f.txt"`, ContentLanguage: "de-CH", Expires: expires,
		Metadata: map[string]string{"Colour": "blue", "xrc-own": "the user's"}, Tags: map[string]string{"t": "1"}, StorageClass: "REDUCED_REDUNDANCY"}
	bare := dataset.Object{Key: "bare", Data: []byte("bare")}
	// What xrc writes: the user's metadata with its xrc- keys renamed,
	// plus provenance.
	asXRC := func(o dataset.Object) dataset.Object {
		md := map[string]string{"xrc-archive": "a1", "xrc-seq": "0042"}
		for k, v := range o.Metadata {
			if rest, ok := strings.CutPrefix(k, "xrc-"); ok {
				k = "xrc-orig-" + rest
			}
			md[k] = v
		}
		o.Metadata = md
		return o
	}
	copies := map[string]func(o *dataset.Object){
		"same":                 func(o *dataset.Object) {},
		"extra metadata":       func(o *dataset.Object) { o.Metadata["stale"] = "x" },
		"missing metadata":     func(o *dataset.Object) { delete(o.Metadata, "colour"); delete(o.Metadata, "Colour") },
		"other metadata value": func(o *dataset.Object) { o.Metadata["Colour"] = "red" },
		"content type":         func(o *dataset.Object) { o.ContentType = "text/html" },
		"content encoding":     func(o *dataset.Object) { o.ContentEncoding = "gzip" },
		"cache control":        func(o *dataset.Object) { o.CacheControl = "no-store" },
		"content disposition":  func(o *dataset.Object) { o.ContentDisposition = "inline" },
		"content language":     func(o *dataset.Object) { o.ContentLanguage = "fr" },
		"expires":              func(o *dataset.Object) { o.Expires = expires.Add(time.Hour) },
		"extra tag":            func(o *dataset.Object) { o.Tags["stale"] = "x" },
		"storage class":        func(o *dataset.Object) { o.StorageClass = "" },
		"bytes":                func(o *dataset.Object) { o.Data = []byte("fulL") },
		"no provenance at all": func(o *dataset.Object) {
			o.Metadata = map[string]string{"colour": "blue", "xrc-orig-own": "the user's"}
		},
		"user's xrc key as is": func(o *dataset.Object) {
			o.Metadata["xrc-own"] = o.Metadata["xrc-orig-own"]
			delete(o.Metadata, "xrc-orig-own")
		},
		"bare: same":             func(o *dataset.Object) {},
		"bare: content type":     func(o *dataset.Object) { o.ContentType = "text/plain" },
		"bare: metadata":         func(o *dataset.Object) { o.Metadata["stale"] = "x" },
		"bare: cache control":    func(o *dataset.Object) { o.CacheControl = "max-age=1" },
		"bare: disposition":      func(o *dataset.Object) { o.ContentDisposition = "inline" },
		"bare: language":         func(o *dataset.Object) { o.ContentLanguage = "en" },
		"bare: expires":          func(o *dataset.Object) { o.Expires = expires },
		"bare: tag":              func(o *dataset.Object) { o.Tags = map[string]string{"stale": "x"} },
		"bare: storage class":    func(o *dataset.Object) { o.StorageClass = "REDUCED_REDUNDANCY" },
		"bare: content encoding": func(o *dataset.Object) { o.ContentEncoding = "gzip" },
	}
	pass := map[string]bool{"same": true, "no provenance at all": true, "bare: same": true}
	for name, edit := range copies {
		want := full
		if strings.HasPrefix(name, "bare: ") {
			want = bare
		}
		c := asXRC(want)
		c.Tags = map[string]string{}
		for k, v := range want.Tags {
			c.Tags[k] = v
		}
		c.Key = name
		edit(&c)
		if err := dataset.Put(ctx, client, bucket, &c); err != nil {
			t.Fatal(err)
		}
		want.Key = name
		errs := dataset.Check(ctx, client, bucket, []dataset.Object{want}, func(k string) string { return k }, 1)
		switch {
		case pass[name] && len(errs) > 0:
			t.Errorf("%s: %v", name, errs)
		case !pass[name] && len(errs) == 0:
			t.Errorf("%s: not noticed", name)
		case !pass[name]:
			t.Logf("%s: %v", name, errs[0])
		}
	}
}
