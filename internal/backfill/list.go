package backfill

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"go.uber.org/zap"
)

// delimiter is what a listing fans out on.
const delimiter = "/"

// list backfills by listing the source bucket, fanned out over common
// prefixes. Tasks a resumed checkpoint has finished are not listed again.
func (r *run) list(ctx context.Context) error {
	pool := newTaskPool()
	if _, ok := r.progress(r.root); !ok {
		if err := r.save(ctx, r.root, Progress{}); err != nil {
			return err
		}
	}
	r.mu.Lock()
	for prefix, p := range r.state.Tasks {
		if !strings.HasPrefix(prefix, r.root) {
			continue // a lapsed run's, of another -prefix (DynamoCheckpoint.Load)
		}
		r.c.tasks.Add(1)
		if p.Done {
			r.c.tasksDone.Add(1)
			r.c.resumed.Add(1)
			continue
		}
		pool.add(r.listTask(pool, prefix, p.After))
	}
	r.mu.Unlock()
	return pool.run(ctx, r.o.Concurrency)
}

// level is how many delimiters below the root prefix is.
func (r *run) level(prefix string) int {
	return strings.Count(strings.TrimPrefix(prefix, r.root), delimiter)
}

// listTask lists one prefix after the key after: with the delimiter above
// the fan-out depth (each common prefix becomes a task), whole at it.
func (r *run) listTask(pool *taskPool, prefix, after string) func(context.Context) error {
	return func(ctx context.Context) error {
		delimited := r.level(prefix) < r.o.Depth
		// RestoreStatus tells a restored GLACIER object, which the source
		// can read, from one it cannot (fromListing).
		in := &s3.ListObjectsV2Input{Bucket: &r.o.Rule.SourceBucket, Prefix: &prefix,
			OptionalObjectAttributes: []s3types.OptionalObjectAttributes{s3types.OptionalObjectAttributesRestoreStatus}}
		if delimited {
			in.Delimiter = aws.String(delimiter)
		}
		if after != "" {
			in.StartAfter = aws.String(after)
		}
		cursors := make([]*cursor, len(r.dests))
		for i, d := range r.dests {
			cursors[i] = newCursor(d.api, d.d.Bucket, r.o.Rule.DestinationKey(d.d, prefix), delimited, r.mapAfter(d, after))
		}
		look := func(ctx context.Context, di int, key, from string) (state, error) {
			return cursors[di].seek(ctx, key, from)
		}
		prev := after // the source key listed last
		pages := s3.NewListObjectsV2Paginator(awsapi.Listing(r.Source), in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("listing %s: %w", awsapi.URL(r.o.Rule.SourceBucket, prefix), err)
			}
			// Children are recorded before this task's progress passes
			// them, so a resumed run knows every one.
			for _, cp := range page.CommonPrefixes {
				child := aws.ToString(cp.Prefix)
				after = max(after, child)
				if _, known := r.progress(child); known || child == prefix {
					continue
				}
				if err := r.save(ctx, child, Progress{}); err != nil {
					return err
				}
				r.c.tasks.Add(1)
				pool.add(r.listTask(pool, child, ""))
			}
			objs := make([]object, len(page.Contents))
			for i, o := range page.Contents {
				objs[i] = fromListing(o)
				after = max(after, objs[i].Key)
			}
			if err := r.handle(ctx, objs, prev, look); err != nil {
				return err
			}
			if len(objs) > 0 {
				prev = objs[len(objs)-1].Key
			}
			if err := r.save(ctx, prefix, Progress{After: after}); err != nil {
				return err
			}
			r.report()
		}
		if err := r.save(ctx, prefix, Progress{After: after, Done: true}); err != nil {
			return err
		}
		r.c.tasksDone.Add(1)
		r.Log.Debug("prefix done", zap.String("prefix", prefix))
		r.report()
		return nil
	}
}

// mapAfter is where a destination's listing starts for a task resumed
// after the source key after.
func (r *run) mapAfter(d dest, after string) string {
	if k := r.o.Rule.DestinationKey(d.d, after); after != "" && len(k) <= config.MaxKeyLen {
		return k
	}
	return "" // from the start: a key S3 would refuse as StartAfter is no bound
}

// cursor walks one destination's listing of a key range in step with the
// source's: seek is called with increasing keys, and lists further only
// when it must.
type cursor struct {
	bucket, prefix string
	api            ListAPI
	in             s3.ListObjectsV2Input
	pages          *s3.ListObjectsV2Paginator
	buf            []s3types.Object
	listed         string // the last key (or common prefix) listed
}

func newCursor(api ListAPI, bucket, prefix string, delimited bool, after string) *cursor {
	c := &cursor{bucket: bucket, prefix: prefix, api: api, in: s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix}}
	if delimited {
		// Only the keys at this level, as the source task lists them.
		c.in.Delimiter = aws.String(delimiter)
	}
	c.from(after)
	return c
}

// from lists from after key on.
func (c *cursor) from(key string) {
	in := c.in
	if key != "" {
		in.StartAfter = aws.String(key)
	}
	c.pages, c.buf, c.listed = s3.NewListObjectsV2Paginator(awsapi.Listing(c.api), &in), nil, key
}

// seek returns what the destination holds at key. from (lookup) lets it
// skip the keys before it: where a run matches few objects of many (a
// -since), one listing from there instead of every page before.
func (c *cursor) seek(ctx context.Context, key, from string) (state, error) {
	for {
		for len(c.buf) > 0 && aws.ToString(c.buf[0].Key) < key {
			c.buf = c.buf[1:]
		}
		if len(c.buf) > 0 {
			if o := c.buf[0]; aws.ToString(o.Key) == key {
				return state{found: true, size: aws.ToInt64(o.Size)}, nil
			}
			return state{}, nil
		}
		if !c.pages.HasMorePages() {
			return state{}, nil // listed to the end
		}
		if from > c.listed {
			// The next page would start before from: a request either
			// way, and this one lands where key is.
			c.from(from)
		}
		page, err := c.pages.NextPage(ctx)
		if err != nil {
			return state{}, fmt.Errorf("listing %s: %w", awsapi.URL(c.bucket, c.prefix), err)
		}
		c.buf = page.Contents
		for _, o := range page.Contents {
			c.listed = max(c.listed, aws.ToString(o.Key))
		}
		for _, p := range page.CommonPrefixes {
			c.listed = max(c.listed, aws.ToString(p.Prefix))
		}
	}
}
