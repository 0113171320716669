package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/manifest"
)

const packUsage = "xrc archive pack DIR -o FILE [-level N] [-region R] [-dest REGION/BUCKET[/PREFIX]]"

func pack(args []string, env Env) error {
	fs := flag.NewFlagSet("xrc archive pack", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	out := fs.String("o", "", "output archive file")
	level := fs.Int("level", 3, "zstd level")
	region := fs.String("region", "local", "source region recorded in the manifest")
	dest := fs.String("dest", "", "destination REGION/BUCKET[/PREFIX] recorded for every object")
	dir, rest := splitPositional(fs, args)
	if err := parseOne(fs, rest); err != nil {
		return err
	}
	if dir == "" || *out == "" {
		return fmt.Errorf("%w: %s", ErrUsage, packUsage)
	}
	if err := manifest.CheckLevel(*level); err != nil {
		return fmt.Errorf("%w: -level: %v", ErrUsage, err)
	}
	m, files, err := manifestForDir(dir, *region, *dest, *level, env.Now())
	if err != nil {
		return err
	}
	// Written beside it and renamed when whole: a failed pack leaves no
	// partial archive, and never truncates the one it may be packing.
	f, err := os.CreateTemp(filepath.Dir(*out), filepath.Base(*out)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing to remove
	defer f.Close()
	if err := f.Chmod(0o644); err != nil {
		return err
	}
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
	if err := os.Rename(f.Name(), *out); err != nil {
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

// manifestForDir describes every regular file under dir, keyed by its
// slash-separated relative path, with SHA-256 digests computed up front.
func manifestForDir(dir, region, dest string, level int, now time.Time) (*manifest.Manifest, []string, error) {
	var destRegion, destBucket, destPrefix string
	if dest != "" {
		parts := strings.SplitN(dest, "/", 3)
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
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
