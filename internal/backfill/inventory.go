package backfill

// This file reads S3 Inventory reports: the manifest.json S3 writes for
// each report and its CSV data files. Both are outside input: sizes are
// capped, every field is checked, and both parsers are fuzzed.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
)

// ErrInventory marks an inventory report that cannot be used as it is.
var ErrInventory = errors.New("invalid inventory report")

// Limits on what an inventory report may hold.
const (
	maxManifest      = 16 << 20 // bytes of manifest.json
	maxInventoryFile = 1 << 20  // data files in one report
	maxRowBytes      = 64 << 10 // bytes in one CSV row (a key is at most 1 KiB, URL-encoded 3 KiB)
	inventoryPage    = 1000     // rows compared and sent at once
)

// Manifest is an S3 Inventory report's manifest.json.
type Manifest struct {
	SourceBucket      string         `json:"sourceBucket"`
	DestinationBucket string         `json:"destinationBucket"` // arn:aws:s3:::name
	Version           string         `json:"version"`
	FileFormat        string         `json:"fileFormat"` // CSV, ORC or Parquet
	FileSchema        string         `json:"fileSchema"` // "Bucket, Key, Size, ..."
	Files             []ManifestFile `json:"files"`
	// Schema is FileSchema split into field names.
	Schema []string `json:"-"`
	// CreationTimestamp is when S3 began the report, in Unix milliseconds.
	CreationTimestamp string `json:"creationTimestamp"`
}

// ManifestFile is one data file of a report.
type ManifestFile struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	MD5  string `json:"MD5checksum"`
}

// ParseManifest reads and checks a manifest.json: a CSV report whose
// schema has what a backfill compares (Bucket, Key, Size and
// LastModifiedDate), with data files named.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > maxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes, more than %d", ErrInventory, len(data), maxManifest)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest is not JSON: %v", ErrInventory, err)
	}
	if !strings.EqualFold(m.FileFormat, "CSV") {
		return nil, fmt.Errorf("%w: file format %q: xrc backfill reads CSV reports (configure the inventory with CSV, or list the bucket)", ErrInventory, m.FileFormat)
	}
	if m.SourceBucket == "" {
		return nil, fmt.Errorf("%w: manifest names no sourceBucket", ErrInventory)
	}
	seen := map[string]bool{}
	for f := range strings.SplitSeq(m.FileSchema, ",") {
		f = strings.TrimSpace(f)
		if f == "" || seen[f] {
			return nil, fmt.Errorf("%w: fileSchema %q has an empty or repeated field", ErrInventory, m.FileSchema)
		}
		seen[f] = true
		m.Schema = append(m.Schema, f)
	}
	for _, need := range []string{fieldBucket, fieldKey, fieldSize, fieldLastModified} {
		if !seen[need] {
			return nil, fmt.Errorf("%w: fileSchema %q lacks %s, which a backfill compares; add it to the inventory configuration", ErrInventory, m.FileSchema, need)
		}
	}
	if len(m.Files) == 0 || len(m.Files) > maxInventoryFile {
		return nil, fmt.Errorf("%w: %d data files", ErrInventory, len(m.Files))
	}
	for i, f := range m.Files {
		if f.Key == "" || len(f.Key) > config.MaxKeyLen || f.Size < 0 {
			return nil, fmt.Errorf("%w: files[%d]: key %q, size %d", ErrInventory, i, f.Key, f.Size)
		}
	}
	return &m, nil
}

// DataBucket is the bucket holding the data files: the report's
// destination, else (a manifest that does not say) the manifest's own.
func (m *Manifest) DataBucket(manifestBucket string) string {
	if b := strings.TrimPrefix(m.DestinationBucket, "arn:aws:s3:::"); b != "" && !strings.Contains(b, ":") {
		return b
	}
	return manifestBucket
}

// Inventory fields xrc reads.
const (
	fieldBucket       = "Bucket"
	fieldKey          = "Key"
	fieldVersionID    = "VersionId"
	fieldIsLatest     = "IsLatest"
	fieldDeleteMarker = "IsDeleteMarker"
	fieldSize         = "Size"
	fieldLastModified = "LastModifiedDate"
	fieldETag         = "ETag"
	fieldStorageClass = "StorageClass"
	fieldAccessTier   = "IntelligentTieringAccessTier"
)

// Row is one object of a report.
type Row struct {
	Bucket       string
	Key          string // URL-decoded
	VersionID    string
	IsLatest     bool // true when the report lists current versions only
	DeleteMarker bool
	Size         int64
	LastModified time.Time
	ETag         string
	// Archived is the storage class (or Intelligent-Tiering tier) of an
	// object S3 lets no one read until it is restored; "" for the others
	// and when the report does not say. (A report does not say whether a
	// restored copy exists.)
	Archived string
}

// Rows reads the rows of a CSV data file.
type Rows struct {
	r    *csv.Reader
	idx  map[string]int
	line int
}

// NewRows reads the CSV in r (gzip-compressed or not, as S3 writes it)
// with the manifest's schema.
func NewRows(r io.Reader, schema []string) (*Rows, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInventory, err)
		}
		r = zr
	} else {
		r = br
	}
	cr := csv.NewReader(&rowGuard{r: r})
	cr.FieldsPerRecord = len(schema)
	cr.ReuseRecord = true
	idx := make(map[string]int, len(schema))
	for i, f := range schema {
		idx[f] = i
	}
	return &Rows{r: cr, idx: idx}, nil
}

// Next returns the next row, or io.EOF after the last.
func (rs *Rows) Next() (Row, error) {
	rec, err := rs.r.Read()
	if err == io.EOF {
		return Row{}, io.EOF
	}
	rs.line++
	if err != nil {
		return Row{}, fmt.Errorf("%w: row %d: %v", ErrInventory, rs.line, err)
	}
	get := func(f string) string {
		if i, ok := rs.idx[f]; ok {
			return rec[i]
		}
		return ""
	}
	row := Row{Bucket: get(fieldBucket), VersionID: events.Version(get(fieldVersionID)), ETag: strings.Trim(get(fieldETag), `"`),
		IsLatest: get(fieldIsLatest) != "false", DeleteMarker: get(fieldDeleteMarker) == "true"}
	// S3 writes CSV keys URL-encoded, as in event notifications.
	row.Key, err = url.QueryUnescape(get(fieldKey))
	if err != nil || row.Key == "" || len(row.Key) > config.MaxKeyLen {
		return Row{}, fmt.Errorf("%w: row %d: bad key %q", ErrInventory, rs.line, get(fieldKey))
	}
	if row.DeleteMarker {
		return row, nil // no size or time to check
	}
	row.Size, err = strconv.ParseInt(get(fieldSize), 10, 64)
	if err != nil || row.Size < 0 {
		return Row{}, fmt.Errorf("%w: row %d: bad size %q for key %q", ErrInventory, rs.line, get(fieldSize), row.Key)
	}
	row.LastModified, err = time.Parse(time.RFC3339Nano, get(fieldLastModified))
	if err != nil {
		return Row{}, fmt.Errorf("%w: row %d: bad last-modified date %q for key %q", ErrInventory, rs.line, get(fieldLastModified), row.Key)
	}
	switch class, tier := get(fieldStorageClass), get(fieldAccessTier); {
	case class == "GLACIER", class == "DEEP_ARCHIVE":
		row.Archived = class
	case tier == "ARCHIVE_ACCESS", tier == "DEEP_ARCHIVE_ACCESS":
		row.Archived = class + " " + tier
	}
	return row, nil
}

// rowGuard fails a stream with a line longer than any row S3 writes, so
// that a hostile file cannot make the CSV reader hold it whole.
type rowGuard struct {
	r   io.Reader
	run int // bytes since the last newline
}

func (g *rowGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			g.run = 0
			continue
		}
		if g.run++; g.run > maxRowBytes {
			return 0, fmt.Errorf("a row longer than %d bytes", maxRowBytes)
		}
	}
	return n, err
}

// ParseLocation splits s3://bucket/key.
func ParseLocation(loc string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(loc, "s3://")
	bucket, key, _ = strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", fmt.Errorf("%q is not s3://bucket/key", loc)
	}
	return bucket, key, nil
}

// inventory backfills from an inventory report, one task per data file.
func (r *run) inventory(ctx context.Context) error {
	bucket, key, err := ParseLocation(r.o.Inventory)
	if err != nil {
		return err
	}
	data, err := r.get(ctx, bucket, key, maxManifest)
	if err != nil {
		return err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return fmt.Errorf("s3://%s/%s: %w", bucket, key, err)
	}
	if m.SourceBucket != r.o.Rule.SourceBucket {
		return fmt.Errorf("s3://%s/%s: %w: an inventory of bucket %s, not of rule %s's bucket %s", bucket, key, ErrInventory, m.SourceBucket, r.o.Rule.ID, r.o.Rule.SourceBucket)
	}
	if ms, err := strconv.ParseInt(m.CreationTimestamp, 10, 64); err == nil && ms > 0 {
		r.c.inventoryOf.Store(ms)
	}
	dataBucket := m.DataBucket(bucket)
	pool := newTaskPool()
	for _, f := range m.Files {
		r.c.scanTotal.Add(f.Size)
		r.c.tasks.Add(1)
		p, _ := r.progress(f.Key)
		if p.Done {
			r.c.tasksDone.Add(1)
			r.c.resumed.Add(1)
			r.c.scanBytes.Add(f.Size)
			continue
		}
		skip, _ := strconv.Atoi(p.After)
		pool.add(r.inventoryTask(dataBucket, f, m.Schema, skip))
	}
	r.Log.Info("inventory report", zap.String("manifest", r.o.Inventory), zap.Int("files", len(m.Files)), zap.Int64("bytes", r.c.scanTotal.Load()))
	return pool.run(ctx, r.o.Concurrency)
}

// get reads a whole small object.
func (r *run) get(ctx context.Context, bucket, key string, limit int64) ([]byte, error) {
	out, err := r.Inventory.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	return data, nil
}

// inventoryTask reads one data file, skipping the rows an earlier run
// handled, and compares its rows a page at a time. The file is done only
// once its bytes are the size (and MD5) the manifest gives: a file cut at a
// line break (or between gzip members) reads to a clean end, and the rows
// it lost would never be sent.
func (r *run) inventoryTask(bucket string, f ManifestFile, schema []string, skip int) func(context.Context) error {
	key := f.Key
	return func(ctx context.Context) error {
		out, err := r.Inventory.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
		}
		defer out.Body.Close()
		sum := md5.New()
		var size atomic.Int64
		body := &countingReader{r: io.TeeReader(&countingReader{r: out.Body, n: &r.c.scanBytes}, sum), n: &size}
		rows, err := NewRows(body, schema)
		if err != nil {
			return fmt.Errorf("s3://%s/%s: %w", bucket, key, err)
		}
		var page []object
		read := 0
		flush := func() error {
			if err := r.handle(ctx, page, "", nil); err != nil {
				return err
			}
			page = page[:0]
			r.report()
			return r.save(ctx, key, Progress{After: strconv.Itoa(read)})
		}
		for {
			row, err := rows.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("s3://%s/%s: %w", bucket, key, err)
			}
			if read++; read <= skip {
				continue
			}
			if !row.IsLatest || row.DeleteMarker || row.Bucket != r.o.Rule.SourceBucket {
				continue
			}
			page = append(page, object{Key: row.Key, Size: row.Size, LastModified: row.LastModified, ETag: row.ETag, VersionID: row.VersionID, Archived: row.Archived})
			if len(page) == inventoryPage {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, body); err != nil { // what the rows' reader left (a gzip trailer)
			return fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
		}
		// The MD5 only where the manifest gives a plain one (S3's), not
		// an ETag-like value another writer may put.
		want, err := hex.DecodeString(f.MD5)
		plain := err == nil && len(want) == md5.Size
		if got := sum.Sum(nil); size.Load() != f.Size || plain && !bytes.Equal(got, want) {
			return fmt.Errorf("%w: data file s3://%s/%s is %d bytes of MD5 %x; its manifest says %d bytes of MD5 %s: the report is damaged or was rewritten; its rows read are sent, the file is not marked done",
				ErrInventory, bucket, key, size.Load(), got, f.Size, f.MD5)
		}
		if err := r.save(ctx, key, Progress{After: strconv.Itoa(read), Done: true}); err != nil {
			return err
		}
		r.c.tasksDone.Add(1)
		return nil
	}
}

// countingReader adds what it reads to n (the progress bar's bytes).
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
