package awsapi

import (
	"context"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Listing returns c with every ListObjectsV2 asked with EncodingType url and
// its keys and prefixes decoded. S3 writes a key into its XML listing as it
// is, and a key holding a character XML 1.0 cannot carry (most of U+0001 to
// U+001F, which keys may hold) fails the SDK's decoding of the whole page
// (aws/aws-sdk-go-v2#1676): a backfill or a verify would stop at that page on
// every run.
func Listing(c s3.ListObjectsV2APIClient) s3.ListObjectsV2APIClient { return urlListing{c} }

type urlListing struct{ c s3.ListObjectsV2APIClient }

func (l urlListing) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	encoded := *in
	encoded.EncodingType = s3types.EncodingTypeUrl
	out, err := l.c.ListObjectsV2(ctx, &encoded, optFns...)
	if err != nil || out.EncodingType != s3types.EncodingTypeUrl {
		return out, err // a store that ignored the encoding lists keys as they are
	}
	for i := range out.Contents {
		if err := unescape(out.Contents[i].Key); err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", aws.ToString(in.Bucket), aws.ToString(in.Prefix), err)
		}
	}
	for i := range out.CommonPrefixes {
		if err := unescape(out.CommonPrefixes[i].Prefix); err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", aws.ToString(in.Bucket), aws.ToString(in.Prefix), err)
		}
	}
	// S3 encodes these too; MinIO does not, and a name with no '%' or '+'
	// reads the same either way, but the caller's own values are exact.
	out.Prefix, out.Delimiter, out.StartAfter = in.Prefix, in.Delimiter, in.StartAfter
	out.EncodingType = in.EncodingType
	return out, nil
}

// unescape decodes a name as S3 encodes it for EncodingType url: the form
// encoding, a space as '+' and a '+' as %2B.
func unescape(s *string) error {
	if s == nil {
		return nil
	}
	v, err := url.QueryUnescape(*s)
	if err != nil {
		return fmt.Errorf("URL-encoded key %q: %w", *s, err)
	}
	*s = v
	return nil
}
