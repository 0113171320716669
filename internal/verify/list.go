package verify

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/xrc-dev/xrc/internal/awsapi"
)

// entry is one name of a listing level: an object or a common prefix,
// named relative to the level's prefix.
type entry struct {
	name     string
	dir      bool
	size     int64
	modified time.Time
}

// cursor walks one level of a bucket (objects and common prefixes directly
// under prefix) in key order, one page in memory at a time.
type cursor struct {
	bucket, prefix string
	pages          *s3.ListObjectsV2Paginator
	buf            []entry
	last           string // name of the last entry popped
	started        bool
}

func newCursor(client s3.ListObjectsV2APIClient, bucket, prefix, delimiter string, pageSize int32) *cursor {
	in := &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix, Delimiter: &delimiter}
	if pageSize > 0 {
		in.MaxKeys = &pageSize
	}
	return &cursor{bucket: bucket, prefix: prefix, pages: s3.NewListObjectsV2Paginator(awsapi.Listing(client), in)}
}

// peek returns the next entry, or nil at the end of the level.
func (c *cursor) peek(ctx context.Context) (*entry, error) {
	for len(c.buf) == 0 {
		if !c.pages.HasMorePages() {
			return nil, nil
		}
		page, err := c.pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", awsapi.URL(c.bucket, c.prefix), err)
		}
		c.buf = c.merge(page)
	}
	if e := &c.buf[0]; c.started && e.name <= c.last {
		// The merge of sides relies on this order; a store without it
		// (S3 directory buckets) would be misreported, not verified.
		return nil, fmt.Errorf("listing s3://%s/%s: %q after %q: keys are not in UTF-8 binary order", c.bucket, c.prefix, e.name, c.last)
	}
	return &c.buf[0], nil
}

func (c *cursor) pop() {
	c.last, c.started = c.buf[0].name, true
	c.buf = c.buf[1:]
}

// merge interleaves a page's objects and common prefixes, each in key
// order, into one run in key order. An entry outside the prefix (a store
// that ignored it) is an error of the store, not a difference: it is
// dropped.
func (c *cursor) merge(page *s3.ListObjectsV2Output) []entry {
	out := make([]entry, 0, len(page.Contents)+len(page.CommonPrefixes))
	objs, dirs := page.Contents, page.CommonPrefixes
	for len(objs) > 0 || len(dirs) > 0 {
		var e entry
		var key string
		if len(dirs) == 0 || len(objs) > 0 && aws.ToString(objs[0].Key) < aws.ToString(dirs[0].Prefix) {
			o := objs[0]
			objs = objs[1:]
			key = aws.ToString(o.Key)
			e = entry{size: aws.ToInt64(o.Size), modified: aws.ToTime(o.LastModified)}
		} else {
			key = aws.ToString(dirs[0].Prefix)
			dirs = dirs[1:]
			e = entry{dir: true}
		}
		if len(key) < len(c.prefix) || key[:len(c.prefix)] != c.prefix {
			continue
		}
		e.name = key[len(c.prefix):]
		out = append(out, e)
	}
	return out
}
