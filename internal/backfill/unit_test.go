package backfill

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// marked is md with the key mark xrc writes for key.
func marked(md map[string]string, key string) map[string]string {
	md[deliver.MetaKey] = deliver.KeyMark(key)
	return md
}

func TestJudge(t *testing.T) {
	mod := time.Date(2026, 11, 22, 10, 0, 0, 500e6, time.UTC) // a listing's milliseconds
	src := object{Key: "k", Size: 10, LastModified: mod, ETag: "abc-2"}
	xrc := func(ms int64, version string) map[string]string {
		md := map[string]string{deliver.MetaArchive: "a1", deliver.MetaModified: itoa(ms)}
		if version != "" {
			md[deliver.MetaVersion] = version
		}
		return md
	}
	sec := mod.Truncate(time.Second).UnixMilli() // what HEAD, and so provenance, carries
	for _, tc := range []struct {
		name string
		src  object
		dst  state
		want verdict
	}{
		{"missing", src, state{}, missing},
		{"other size", src, state{found: true, size: 11, headed: true, meta: xrc(sec, "")}, resized},
		// Up to date, and its tags are that later write's, not compared.
		{"other size, a later write (an inventory's row)", src, state{found: true, size: 11, headed: true, meta: xrc(sec+1000, "")}, laterThere},
		{"other size, an earlier write", src, state{found: true, size: 11, headed: true, meta: xrc(sec-1000, "")}, resized},
		{"other size, a later write not by xrc", src, state{found: true, size: 11, headed: true, meta: marked(xrc(sec+1000, ""), "other")}, resized},
		{"same write", src, state{found: true, size: 10, headed: true, meta: xrc(sec, "")}, upToDate},
		{"newer write", src, state{found: true, size: 10, headed: true, meta: xrc(sec+5000, "")}, laterThere},
		{"older write", src, state{found: true, size: 10, headed: true, meta: xrc(sec-1000, "")}, older},
		{"same second, other version", object{Key: "k", Size: 10, LastModified: mod, VersionID: "v2"},
			state{found: true, size: 10, headed: true, meta: xrc(sec, "v1")}, older},
		{"same second, same version", object{Key: "k", Size: 10, LastModified: mod, VersionID: "v1"},
			state{found: true, size: 10, headed: true, meta: xrc(sec, "v1")}, upToDate},
		{"not by xrc", src, state{found: true, size: 10, headed: true, meta: map[string]string{"owner": "someone"}}, notByXRC},
		{"not by xrc, other size", src, state{found: true, size: 9, headed: true}, resized},
		{"provenance without time", src, state{found: true, size: 10, headed: true, meta: map[string]string{deliver.MetaArchive: "a1"}}, upToDate},
		{"xrc's write of this source key", src, state{found: true, size: 10, headed: true, meta: marked(xrc(sec+5000, ""), "k")}, laterThere},
		{"a copy of xrc's write of another source key", src, state{found: true, size: 10, headed: true, meta: marked(xrc(sec+5000, ""), "other")}, notByXRC},
	} {
		if got := judge(tc.src, tc.dst); got != tc.want {
			t.Errorf("%s: judge = %d, want %d", tc.name, got, tc.want)
		}
	}
	if !(state{found: true, size: 10}).needsHead(src) || (state{found: true, size: 9}).needsHead(src) || (state{}).needsHead(src) {
		t.Error("needsHead: only a listed object of the same size needs its provenance")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRoot(t *testing.T) {
	rule := &config.Rule{ID: "r", Prefix: "data/"}
	for _, tc := range []struct{ prefix, want string }{{"", "data/"}, {"da", "data/"}, {"data/2024/", "data/2024/"}} {
		if got, err := Root(rule, tc.prefix); err != nil || got != tc.want {
			t.Errorf("Root(%q) = %q, %v; want %q", tc.prefix, got, err, tc.want)
		}
	}
	if _, err := Root(rule, "logs/"); err == nil {
		t.Error("a prefix outside the rule was accepted")
	}
}

func TestTaskPool(t *testing.T) {
	p := newTaskPool()
	var ran atomic.Int64
	var spawn func(depth int) func(context.Context) error
	spawn = func(depth int) func(context.Context) error {
		return func(context.Context) error {
			ran.Add(1)
			if depth < 3 {
				for range 3 {
					p.add(spawn(depth + 1))
				}
			}
			return nil
		}
	}
	p.add(spawn(0))
	if err := p.run(context.Background(), 4); err != nil || ran.Load() != 1+3+9+27 {
		t.Fatalf("ran %d tasks, err %v; want 40", ran.Load(), err)
	}
	boom := errors.New("boom")
	p = newTaskPool()
	for i := range 20 {
		p.add(func(ctx context.Context) error {
			if i == 5 {
				return boom
			}
			return nil
		})
	}
	if err := p.run(context.Background(), 2); !errors.Is(err, boom) {
		t.Errorf("pool error %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p = newTaskPool()
	p.add(func(context.Context) error { return nil })
	if err := p.run(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled pool: %v", err)
	}
}

// TestFileCheckpointWithinWhatLoadReads: a checkpoint file Load would
// refuse (over two million prefixes at -depth 2) is not written: the run
// fails there, saying what to use, rather than at its resume, with hours
// of progress that only -restart then gets past.
func TestFileCheckpointWithinWhatLoadReads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	cp := NewFileCheckpoint(path)
	cp.MaxBytes, cp.Interval = 4096, 0
	if err := cp.Start(ctx, &State{Params: Params{Rule: "r", Bucket: "b", Depth: 2}, Tasks: map[string]Progress{}}); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		err = cp.Save(ctx, fmt.Sprintf("data/%06d/", i), Progress{Done: true})
	}
	if err == nil || !strings.Contains(err.Error(), "-checkpoint ddb") {
		t.Fatalf("saving 1,000 prefixes in 4 KiB: %v; want refused, naming -checkpoint ddb", err)
	}
	load := NewFileCheckpoint(path)
	load.MaxBytes = cp.MaxBytes
	if st, err := load.Load(ctx); err != nil || st == nil || len(st.Tasks) == 0 {
		t.Fatalf("the last checkpoint written does not load: %v", err)
	}
}

// TestFileCheckpointRefusesOtherFiles: a file that is no checkpoint (a
// config passed to -checkpoint by mistake) is refused as such, not taken
// for another run's, which -restart would overwrite.
func TestFileCheckpointRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "prod.json")
	doc := `{"settings": {"stackName": "xrc"}, "rules": []}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := NewFileCheckpoint(path).Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "not a backfill checkpoint") {
		t.Fatalf("load of a config: %+v, %v; want refused as not a checkpoint", st, err)
	}
	if b, _ := os.ReadFile(path); string(b) != doc {
		t.Error("the file changed")
	}
}

func TestFileCheckpoint(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	cp := NewFileCheckpoint(path)
	if st, err := cp.Load(ctx); st != nil || err != nil {
		t.Fatalf("no file: %v %v", st, err)
	}
	params := Params{Rule: "r", Bucket: "b", Prefix: "data/", Depth: 2, Since: time.Unix(1e9, 0).UTC()}
	if err := cp.Start(ctx, &State{Params: params, Started: time.Unix(2e9, 0).UTC(), Tasks: map[string]Progress{}}); err != nil {
		t.Fatal(err)
	}
	cp.Save(ctx, "data/a/", Progress{After: "data/a/x", Done: true})
	cp.Save(ctx, "data/b/", Progress{After: "data/b/y"})
	if err := cp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := NewFileCheckpoint(path).Load(ctx)
	if err != nil || st == nil {
		t.Fatalf("load: %v", err)
	}
	if st.Params != params || st.Tasks["data/a/"] != (Progress{After: "data/a/x", Done: true}) || st.Tasks["data/b/"] != (Progress{After: "data/b/y"}) {
		t.Errorf("state %+v", st)
	}
	other := params
	other.Prefix = "data/a/"
	if st.Params.mismatch(other) == "" {
		t.Error("another prefix resumes this checkpoint")
	}
	other = params
	other.Tags = true
	if st.Params.mismatch(other) == "" {
		t.Error("a run comparing tags resumes one that did not (its finished prefixes' tags would go unread)")
	}
	other = params
	other.Since = time.Now()
	if st.Params.mismatch(other) != "" {
		t.Error("a later since refuses this checkpoint (the first run's, which covers more, should be kept)")
	}
	for _, since := range []time.Time{{}, params.Since.Add(-time.Hour)} {
		other = params
		other.Since = since
		if st.Params.mismatch(other) == "" {
			t.Errorf("a run since %v resumes a checkpoint since %v: what lies between is skipped", since, params.Since)
		}
	}
	other = params
	other.Scope = "another"
	if st.Params.mismatch(other) != "" {
		t.Error("a checkpoint without a scope (older than it) is refused")
	}
	withScope := params
	withScope.Scope = "one"
	if withScope.mismatch(other) == "" {
		t.Error("a run of another scope (filters, destinations) resumes this checkpoint")
	}
	if err := cp.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := cp.Load(ctx); st != nil {
		t.Error("checkpoint still there after Clear")
	}
}

const testSchema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"

func TestInventoryParse(t *testing.T) {
	m, err := ParseManifest([]byte(`{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::inv","version":"2016-11-30",
		"fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[{"key":"inv/src/cfg/data/1.csv.gz","size":120,"MD5checksum":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.DataBucket("other") != "inv" || len(m.Schema) != 9 || m.Schema[1] != "Key" {
		t.Errorf("manifest %+v", m)
	}
	csvText := `"src","data/a+b%2Bc/%C3%A9t%C3%A9.txt","null","true","false","12","2026-11-22T10:00:00.000Z","d41d8cd98f00b204e9800998ecf8427e","STANDARD"
"src","data/old.txt","v1","false","false","3","2026-11-21T10:00:00.000Z","abc","STANDARD"
"src","data/gone.txt","v2","true","true","","","",""
`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(csvText))
	zw.Close()
	for name, body := range map[string][]byte{"plain": []byte(csvText), "gzip": gz.Bytes()} {
		rows, err := NewRows(bytes.NewReader(body), m.Schema)
		if err != nil {
			t.Fatal(err)
		}
		var got []Row
		for {
			r, err := rows.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, r)
		}
		if len(got) != 3 {
			t.Fatalf("%s: %d rows", name, len(got))
		}
		if r := got[0]; r.Key != "data/a b+c/été.txt" || r.Size != 12 || r.VersionID != "" || !r.IsLatest || r.ETag != "d41d8cd98f00b204e9800998ecf8427e" ||
			!r.LastModified.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: row 0 %+v", name, r)
		}
		if got[1].IsLatest || got[1].VersionID != "v1" || !got[2].DeleteMarker {
			t.Errorf("%s: rows %+v", name, got[1:])
		}
	}
	for name, doc := range map[string]string{
		"parquet":    `{"sourceBucket":"s","fileFormat":"Parquet","fileSchema":"message s3.inventory { required binary bucket; }","files":[{"key":"k","size":1}]}`,
		"no size":    `{"sourceBucket":"s","fileFormat":"CSV","fileSchema":"Bucket, Key, LastModifiedDate","files":[{"key":"k","size":1}]}`,
		"no files":   `{"sourceBucket":"s","fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[]}`,
		"repeated":   `{"sourceBucket":"s","fileFormat":"CSV","fileSchema":"Bucket, Key, Key, Size, LastModifiedDate","files":[{"key":"k","size":1}]}`,
		"not json":   `{"sourceBucket":`,
		"no bucket":  `{"fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[{"key":"k","size":1}]}`,
		"negative":   `{"sourceBucket":"s","fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[{"key":"k","size":-1}]}`,
		"empty file": `{"sourceBucket":"s","fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[{"key":"","size":1}]}`,
	} {
		if _, err := ParseManifest([]byte(doc)); !errors.Is(err, ErrInventory) {
			t.Errorf("%s: ParseManifest error %v, want ErrInventory", name, err)
		}
	}
	for name, row := range map[string]string{
		"short row":  `"src","k"`,
		"bad size":   `"src","k","","true","false","x","2026-11-22T10:00:00.000Z","e","STANDARD"`,
		"bad time":   `"src","k","","true","false","1","yesterday","e","STANDARD"`,
		"bad key":    `"src","%zz","","true","false","1","2026-11-22T10:00:00.000Z","e","STANDARD"`,
		"empty key":  `"src","","","true","false","1","2026-11-22T10:00:00.000Z","e","STANDARD"`,
		"long row":   `"src","` + strings.Repeat("a", maxRowBytes) + `","","true","false","1","2026-11-22T10:00:00.000Z","e","STANDARD"`,
		"bad quotes": `"src","k"x,"","true","false","1","2026-11-22T10:00:00.000Z","e","STANDARD"`,
	} {
		rows, _ := NewRows(strings.NewReader(row+"\n"), m.Schema)
		if _, err := rows.Next(); err == nil || err == io.EOF {
			t.Errorf("%s: Next error %v, want an error", name, err)
		}
	}
	for _, loc := range []string{"s3://b", "s3:///k", "https://b/k", "b/k"} {
		if _, _, err := ParseLocation(loc); err == nil {
			t.Errorf("ParseLocation(%q) accepted", loc)
		}
	}
	if b, k, err := ParseLocation("s3://inv/a/b/manifest.json"); err != nil || b != "inv" || k != "a/b/manifest.json" {
		t.Errorf("ParseLocation: %q %q %v", b, k, err)
	}
}

// FuzzManifest: any manifest.json is parsed or refused with ErrInventory;
// an accepted one has a schema with what a backfill compares.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::inv","fileFormat":"CSV","fileSchema":"` + testSchema + `","files":[{"key":"k","size":1}]}`))
	f.Add([]byte(`{"fileFormat":"ORC"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInventory) {
				t.Fatalf("error not ErrInventory: %v", err)
			}
			return
		}
		if len(m.Files) == 0 || len(m.Schema) < 4 || m.SourceBucket == "" {
			t.Fatalf("accepted %+v", m)
		}
		_ = m.DataBucket("x")
	})
}

// FuzzInventoryCSV: any data file yields valid rows, then io.EOF or an
// ErrInventory error; never a panic, never a row with a bad key or size.
func FuzzInventoryCSV(f *testing.F) {
	f.Add([]byte(`"src","data/a+b%2Bc.txt","null","true","false","12","2026-11-22T10:00:00.000Z","e","STANDARD"` + "\n"))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	f.Add([]byte(`"src","k","v","false","true","","","",""`))
	schema := strings.Split(strings.ReplaceAll(testSchema, " ", ""), ",")
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := NewRows(bytes.NewReader(data), schema)
		if err != nil {
			return
		}
		for range 1000 {
			r, err := rows.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrInventory) {
					t.Fatalf("error not ErrInventory: %v", err)
				}
				return
			}
			if r.Key == "" || len(r.Key) > config.MaxKeyLen || r.Size < 0 {
				t.Fatalf("accepted row %+v", r)
			}
		}
	})
}

// TestScope: the scope changes with what a backfill compares (filters,
// destinations and their key prefixes), and not with the rest of the rule.
func TestScope(t *testing.T) {
	base := func() *config.Rule {
		return &config.Rule{ID: "r", SourceBucket: "b", Prefix: "data/", Destinations: []config.Destination{{Region: "eu-west-1", Bucket: "d"}}}
	}
	s := Scope(base())
	other := "x/"
	for name, change := range map[string]func(*config.Rule){
		"suffix": func(r *config.Rule) { r.Suffix = ".csv" },
		"ignore": func(r *config.Rule) { r.Ignore = []string{"*.tmp"} },
		"destination": func(r *config.Rule) {
			r.Destinations = append(r.Destinations, config.Destination{Region: "ap-south-1", Bucket: "e"})
		},
		"bucket":     func(r *config.Rule) { r.Destinations[0].Bucket = "e" },
		"key prefix": func(r *config.Rule) { r.Destinations[0].Prefix = &other },
	} {
		r := base()
		change(r)
		if Scope(r) == s {
			t.Errorf("%s changed, scope the same", name)
		}
	}
	empty := ""
	r := base()
	r.Destinations[0].Prefix = &empty // data/x lands at x, not data/x
	if Scope(r) == s {
		t.Error("a destination prefix of \"\" has the scope of none")
	}
	// The rule's prefix, which a destination's replaces: a run listing
	// data/b/c/ under rule prefix data/ maps data/b/c/k to x/b/c/k, under
	// data/b/ to x/c/k.
	r = base()
	r.Destinations[0].Prefix = &other
	withOther := Scope(r)
	r.Prefix = "data/b/"
	if Scope(r) == withOther {
		t.Error("the rule's prefix changed under a destination prefix, scope the same")
	}
	same := "data/"
	r = base()
	r.Level, r.Deletes, r.Destinations[0].Prefix = 9, true, &same
	if Scope(r) != s {
		t.Error("the level, deletes, or a destination prefix that changes no key changed the scope")
	}
}

// TestArchivedClasses: an object in GLACIER or DEEP_ARCHIVE is sent only
// while a restored copy of it lasts (the listing's RestoreStatus), and an
// inventory's Intelligent-Tiering archive tiers are as unreadable.
func TestArchivedClasses(t *testing.T) {
	expiry := time.Now().Add(24 * time.Hour)
	for _, c := range []struct {
		o    s3types.Object
		want string
	}{
		{s3types.Object{StorageClass: s3types.ObjectStorageClassStandard}, ""},
		{s3types.Object{StorageClass: s3types.ObjectStorageClassGlacierIr}, ""},
		{s3types.Object{StorageClass: s3types.ObjectStorageClassGlacier}, "GLACIER"},
		{s3types.Object{StorageClass: s3types.ObjectStorageClassDeepArchive}, "DEEP_ARCHIVE"},
		{s3types.Object{StorageClass: s3types.ObjectStorageClassGlacier, RestoreStatus: &s3types.RestoreStatus{IsRestoreInProgress: aws.Bool(true)}}, "GLACIER"},
		{s3types.Object{StorageClass: s3types.ObjectStorageClassGlacier, RestoreStatus: &s3types.RestoreStatus{IsRestoreInProgress: aws.Bool(false), RestoreExpiryDate: &expiry}}, ""},
	} {
		if got := fromListing(c.o).Archived; got != c.want {
			t.Errorf("%s, restore %+v: archived %q, want %q", c.o.StorageClass, c.o.RestoreStatus, got, c.want)
		}
	}
	schema := []string{"Bucket", "Key", "Size", "LastModifiedDate", "StorageClass", "IntelligentTieringAccessTier"}
	rows, err := NewRows(strings.NewReader(`"src","a","1","2026-11-22T10:00:00.000Z","DEEP_ARCHIVE",""
"src","b","1","2026-11-22T10:00:00.000Z","INTELLIGENT_TIERING","ARCHIVE_ACCESS"
"src","c","1","2026-11-22T10:00:00.000Z","INTELLIGENT_TIERING","FREQUENT"
"src","d","1","2026-11-22T10:00:00.000Z","GLACIER_IR",""
`), schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DEEP_ARCHIVE", "INTELLIGENT_TIERING ARCHIVE_ACCESS", "", ""} {
		row, err := rows.Next()
		if err != nil {
			t.Fatal(err)
		}
		if row.Archived != want {
			t.Errorf("row %s: archived %q, want %q", row.Key, row.Archived, want)
		}
	}
}
