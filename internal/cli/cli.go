// Package cli is the operator command line, xrc: validate configs, pack,
// inspect and verify archives.
package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// ErrUsage marks a command line that could not be understood.
var ErrUsage = errors.New("usage")

// Env is what the commands touch outside themselves.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
}

const usage = `xrc: operate xrc, the compressing cross-region S3 replicator.

Commands:
  xrc config validate FILE|ssm:///name     check a config; prints every problem
  xrc archive pack DIR -o FILE [-level N]  build an archive from local files (keys = relative paths)
  xrc archive inspect FILE|s3://bucket/key [--json]
                                           summarise an archive's manifest
  xrc archive verify FILE|s3://bucket/key  check every member's size and SHA-256
  xrc version

s3:// locations use the usual AWS environment (AWS_REGION, AWS_ENDPOINT_URL_S3, ...);
-config FILE -region NAME takes the S3 endpoint of that region from a config instead.
`

// Run executes one command line (without the program name).
func Run(ctx context.Context, args []string, env Env, version string) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ErrUsage
	}
	switch cmd := strings.Join(args[:min(2, len(args))], " "); {
	case cmd == "config validate":
		return validate(ctx, args[2:], env)
	case cmd == "archive pack":
		return pack(args[2:], env)
	case cmd == "archive inspect":
		return inspect(ctx, args[2:], env)
	case cmd == "archive verify":
		return verify(ctx, args[2:], env)
	case args[0] == "version":
		fmt.Fprintf(env.Stdout, "xrc %s (zstd encoder: %s)\n", version, archive.NewWriter(archive.WriterOptions{}).Encoder())
		return nil
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	default:
		fmt.Fprintf(env.Stderr, "unknown command %q\n\n%s", strings.Join(args, " "), usage)
		return ErrUsage
	}
}

func validate(ctx context.Context, args []string, env Env) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: xrc config validate FILE|ssm:///name", ErrUsage)
	}
	var ps config.ParameterGetter
	if strings.HasPrefix(args[0], config.SSMScheme) {
		cfg, err := awsapi.Load(ctx, env.Getenv("AWS_REGION"))
		if err != nil {
			return err
		}
		ps = ssm.NewFromConfig(cfg)
	}
	c, err := config.Load(ctx, args[0], ps)
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintf(env.Stderr, "%s: %s\n", args[0], e)
		}
		return fmt.Errorf("%s: %d problems", args[0], len(es))
	}
	if err != nil {
		return err
	}
	for _, w := range c.Warnings() {
		fmt.Fprintf(env.Stderr, "%s: warning: %s\n", args[0], w)
	}
	fmt.Fprintf(env.Stdout, "%s: ok (%d regions, %d rules)\n", args[0], len(c.Settings.Regions), len(c.Rules))
	return nil
}

func pack(args []string, env Env) error {
	fs := flag.NewFlagSet("xrc archive pack", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	out := fs.String("o", "", "output archive file")
	level := fs.Int("level", 3, "zstd level")
	region := fs.String("region", "local", "source region recorded in the manifest")
	dest := fs.String("dest", "", "destination REGION/BUCKET[/PREFIX] recorded for every object")
	dir, rest := splitPositional(fs, args)
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if dir == "" || *out == "" {
		return fmt.Errorf("%w: xrc archive pack DIR -o FILE [-level N] [-dest REGION/BUCKET[/PREFIX]]", ErrUsage)
	}
	m, files, err := manifestForDir(dir, *region, *dest, *level, env.Now())
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := archive.NewWriter(archive.WriterOptions{})
	if err := w.Begin(f, m); err != nil {
		return err
	}
	for i, name := range files {
		if err := packFile(w, i, name); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: %d objects, %d bytes -> %d bytes (ratio %.2f)\n", *out, len(files), m.TotalSize(), w.Written(), ratio(m.TotalSize(), w.Written()))
	return nil
}

func packFile(w *archive.Writer, i int, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = w.WriteObject(i, f)
	return err
}

// splitPositional lets the one positional argument come before or after
// the flags of fs: a flag takes the next argument as its value unless it is
// a boolean flag (as the flag package decides) or carries "=value".
func splitPositional(fs *flag.FlagSet, args []string) (string, []string) {
	var pos string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "-"):
			rest = append(rest, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !isBoolFlag(fs, strings.TrimLeft(a, "-")) {
				rest = append(rest, args[i+1])
				i++
			}
		case pos == "":
			pos = a
		default:
			rest = append(rest, a)
		}
	}
	return pos, rest
}

func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// manifestForDir describes every regular file under dir, keyed by its
// slash-separated relative path, with SHA-256 digests computed up front.
func manifestForDir(dir, region, dest string, level int, now time.Time) (*manifest.Manifest, []string, error) {
	var destRegion, destBucket, destPrefix string
	if dest != "" {
		parts := strings.SplitN(dest, "/", 3)
		if len(parts) < 2 {
			return nil, nil, fmt.Errorf("%w: -dest wants REGION/BUCKET[/PREFIX], got %q", ErrUsage, dest)
		}
		destRegion, destBucket = parts[0], parts[1]
		if len(parts) == 3 {
			destPrefix = parts[2]
		}
	}
	m := &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    now.UTC().Format("20060102T150405Z") + "-pack",
		CreatedAt:    now.UTC(),
		SourceRegion: region,
		RuleID:       "pack",
		Level:        level,
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		o := manifest.Object{
			Member:            manifest.MemberName(len(m.Objects), key),
			Bucket:            "local",
			Key:               key,
			Size:              info.Size(),
			LastModified:      info.ModTime().UTC(),
			StorageClass:      "STANDARD",
			ContentType:       mime.TypeByExtension(path.Ext(key)),
			SHA256:            sum,
			ChecksumAlgorithm: "SHA256",
			Destinations:      []manifest.Destination{{Region: "local", Bucket: "local", Key: key}},
		}
		if destBucket != "" {
			o.Destinations = []manifest.Destination{{Region: destRegion, Bucket: destBucket, Key: destPrefix + key}}
		}
		m.Objects = append(m.Objects, o)
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%s: no files to pack", dir)
	}
	return m, files, nil
}

func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// open returns the archive bytes of a file or an s3:// object.
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
	client, err := flags.s3(ctx)
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
	fs.StringVar(&f.config, "config", "", "config whose region endpoint to use for s3:// locations")
	fs.StringVar(&f.region, "region", "", "region of the s3:// location (default AWS_REGION)")
}

func (f *locationFlags) s3(ctx context.Context) (*s3.Client, error) {
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
		if cr, ok := c.Region(region); ok {
			r = cr
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
	if err := fs.Parse(rest); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
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
	var objects, deletes int
	dests := map[string]int{}
	for _, o := range m.Objects {
		if o.Delete {
			deletes++
		} else {
			objects++
		}
		for _, d := range o.Destinations {
			dests[d.Region+"/"+d.Bucket]++
		}
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "archive\t%s\n", m.ArchiveID)
	fmt.Fprintf(tw, "created\t%s\n", m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "source region\t%s\n", m.SourceRegion)
	fmt.Fprintf(tw, "rule\t%s\n", m.RuleID)
	fmt.Fprintf(tw, "level\t%d\n", m.Level)
	fmt.Fprintf(tw, "objects\t%d (+%d deletes)\n", objects, deletes)
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
		fmt.Fprintf(tw, "destination\t%s (%d objects)\n", d, dests[d])
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
