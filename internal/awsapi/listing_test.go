package awsapi_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestListingDecodesKeys: keys listed with EncodingType url come back as
// they were written, whatever they hold: spaces, '+', '%', control
// characters XML cannot carry, unicode, and common prefixes likewise.
func TestListingDecodesKeys(t *testing.T) {
	env := localstack.Require(t)
	ctx := context.Background()
	c, err := env.S3(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	bucket := localstack.UniqueName("xrc-listing-" + strings.ReplaceAll(t.Name(), "Test", ""))
	if err := env.EnsureBucket(ctx, "us-east-1", bucket, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.RemoveBucket(context.Background(), "us-east-1", bucket) })
	keys := []string{"a b", "a+b", "a%2Bb", "a\bb\x1f", "ü%x", "d ir+/x", "q?r#s&t=u", "x~y*z'(", "tab\there"}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	l := awsapi.Listing(c)
	out, err := l.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out.Contents {
		got = append(got, aws.ToString(o.Key))
	}
	for _, p := range out.CommonPrefixes {
		got = append(got, aws.ToString(p.Prefix))
	}
	want := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return strings.Contains(k, "/") })
	want = append(want, "d ir+/")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listed %q\nwant %q", got, want)
	}
	if d := aws.ToString(out.Delimiter); d != "/" {
		t.Errorf("delimiter %q", d)
	}
}
