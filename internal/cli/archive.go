package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
)

func open(ctx context.Context, loc string, flags *locationFlags) (io.ReadCloser, int64, error) {
	rest, ok := strings.CutPrefix(loc, "s3://")
	if !ok {
		f, err := os.Open(loc)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" {
		return nil, 0, fmt.Errorf("%w: want s3://bucket/key, got %q", ErrUsage, loc)
	}
	client, err := flags.s3(ctx, bucket)
	if err != nil {
		return nil, 0, err
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, 0, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	var size int64
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}

type locationFlags struct {
	config, region string
	getenv         func(string) string
}

func (f *locationFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", f.getenv("XRC_CONFIG"), "config whose region (and endpoint: the local stack, S3-compatible stores) to use for s3:// locations; the region is the one whose staging bucket it is, unless -region says (env XRC_CONFIG, as the other commands)")
	fs.StringVar(&f.region, "region", "", "region of the s3:// location (default: from -config, else AWS_REGION)")
}

// s3 returns a client for bucket: in the region -region names, or with
// -config the one whose staging bucket it is, with that region's endpoint.
func (f *locationFlags) s3(ctx context.Context, bucket string) (*s3.Client, error) {
	region := f.region
	if region == "" {
		region = f.getenv("AWS_REGION")
	}
	cfg, err := awsapi.Load(ctx, region)
	if err != nil {
		return nil, err
	}
	r := config.Region{Name: region}
	if f.config != "" {
		c, err := config.Load(ctx, f.config, ssm.NewFromConfig(cfg))
		if err != nil {
			return nil, err
		}
		var names []string
		for _, cr := range c.Settings.Regions {
			names = append(names, cr.Name)
			if f.region == "" && cr.StagingBucket == bucket {
				r, region = cr, cr.Name
			}
		}
		if f.region != "" {
			cr, ok := c.Region(f.region)
			if !ok {
				return nil, fmt.Errorf("%w: -region %s is not in %s (its regions: %s)", ErrUsage, f.region, f.config, strings.Join(names, ", "))
			}
			r = cr
		} else if cr, ok := c.Region(region); ok {
			r = cr
		}
		if r.Direct {
			// Its credentials' parameter is where its rules' source
			// workers read it (as verify and backfill do), not in a
			// region of another partition or a store's.
			for i := range c.Rules {
				if slices.ContainsFunc(c.DirectRegions(&c.Rules[i]), func(d config.Region) bool { return d.Name == r.Name }) {
					region = c.Rules[i].SourceRegion
					break
				}
			}
		}
		if cfg.Region != region {
			if cfg, err = awsapi.Load(ctx, region); err != nil {
				return nil, err
			}
		}
	}
	return awsapi.S3(cfg, r), nil
}

// openedArchive is an archive named on the command line, open for reading.
type openedArchive struct {
	loc  string
	size int64
	r    *archive.Reader
	body io.Closer
}

func (a *openedArchive) Close() {
	a.r.Close()
	a.body.Close()
}

// openArchive parses a command's FILE|s3://bucket/key argument and flags
// (defined by define on the flag set) and opens the archive.
func openArchive(ctx context.Context, cmd, usage string, args []string, env Env, define func(*flag.FlagSet)) (*openedArchive, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	lf := &locationFlags{getenv: env.Getenv}
	lf.register(fs)
	if define != nil {
		define(fs)
	}
	loc, rest := splitPositional(fs, args)
	if err := parseOne(fs, rest); err != nil {
		return nil, err
	}
	if loc == "" {
		return nil, fmt.Errorf("%w: %s", ErrUsage, usage)
	}
	body, size, err := open(ctx, loc, lf)
	if err != nil {
		return nil, err
	}
	r, err := archive.NewReader(body, archive.ReaderOptions{})
	if err != nil {
		body.Close()
		if errors.Is(err, manifest.ErrUnsupported) {
			return nil, fmt.Errorf("%s: %w (not corrupt: this xrc is older than what wrote it; upgrade xrc to read it)", loc, err)
		}
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	return &openedArchive{loc: loc, size: size, r: r, body: body}, nil
}

func inspect(ctx context.Context, args []string, env Env) error {
	var asJSON *bool
	a, err := openArchive(ctx, "xrc archive inspect", "xrc archive inspect FILE|s3://bucket/key [--json]", args, env,
		func(fs *flag.FlagSet) { asJSON = fs.Bool("json", false, "print the whole manifest as JSON") })
	if err != nil {
		return err
	}
	defer a.Close()
	size := a.size
	m := a.r.Manifest()
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	var objects, deletes, retags int
	dests := map[string]int{}
	for _, o := range m.Objects {
		switch {
		case o.Delete:
			deletes++
		case o.Retag:
			retags++
		default:
			objects++
		}
		for _, d := range o.Destinations {
			dests[d.Region+"/"+d.Bucket]++
		}
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "archive\t%s\n", m.ArchiveID)
	fmt.Fprintf(tw, "created\t%s\n", m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "source region\t%s\n", shown(m.SourceRegion))
	fmt.Fprintf(tw, "rule\t%s\n", shown(m.RuleID))
	fmt.Fprintf(tw, "level\t%d\n", m.Level)
	if retags > 0 {
		fmt.Fprintf(tw, "objects\t%d (+%d deletes, %d retags)\n", objects, deletes, retags)
	} else {
		fmt.Fprintf(tw, "objects\t%d (+%d deletes)\n", objects, deletes)
	}
	fmt.Fprintf(tw, "bytes\t%d uncompressed, %d archive\n", m.TotalSize(), size)
	if size > 0 {
		fmt.Fprintf(tw, "ratio\t%.2f\n", ratio(m.TotalSize(), size))
	}
	names := make([]string, 0, len(dests))
	for d := range dests {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		fmt.Fprintf(tw, "destination\t%s (%d objects)\n", shown(d), dests[d])
	}
	return tw.Flush()
}

func verify(ctx context.Context, args []string, env Env) error {
	a, err := openArchive(ctx, "xrc archive verify", "xrc archive verify FILE|s3://bucket/key", args, env, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	r, loc := a.r, a.loc
	var n int
	var bytes int64
	for {
		_, _, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
		c, err := io.Copy(io.Discard, data)
		if err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
		n++
		bytes += c
	}
	fmt.Fprintf(env.Stdout, "%s: ok: %d objects, %d bytes verified (size and SHA-256)\n", loc, n, bytes)
	return nil
}

func ratio(in, out int64) float64 {
	if out == 0 {
		return 0
	}
	return float64(in) / float64(out)
}

// shown is s, quoted when it holds control characters or is not UTF-8: an
// archive's manifest is anyone's who can write to staging, and printed raw
// a field could add lines to the listing or drive the terminal.
func shown(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strconv.Quote(s)
}
