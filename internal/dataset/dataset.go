// Package dataset makes deterministic sets of S3 objects for the end-to-end
// tests and the demo, uploads them and checks copies against them. Nothing
// large is stored in the repository: every byte comes from a seed.
package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// Object is one object to put into a watched bucket.
type Object struct {
	Key             string
	Data            []byte
	ContentType     string // "" for the S3 default (defaultContentTypes)
	ContentEncoding string
	// CacheControl, ContentDisposition, ContentLanguage and Expires (zero:
	// none) are the other headers S3 stores with an object.
	CacheControl       string
	ContentDisposition string
	ContentLanguage    string
	Expires            time.Time
	Metadata           map[string]string
	Tags               map[string]string
	StorageClass       string // "" for STANDARD
	// SHA256 uploads the object in one request with a SHA-256 checksum,
	// which S3 keeps for the whole object.
	SHA256 bool
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her all she there would their we him been has when who will more no if out so said what up
its about into than them can only other new some could time these two may then do first any my now such like our over
replication region bucket archive object compression zstd transfer latency throughput storage manifest checksum`)

// Text returns n bytes of word-salad text.
func Text(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	b.Grow(n + 16)
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// Mixed returns n objects under prefix covering the cases replication must
// get right: empty objects, unicode keys, keys with spaces and '+', long
// keys, incompressible bytes, tags (up to S3's 10), user metadata, content
// headers and the REDUCED_REDUNDANCY storage class.
func Mixed(prefix string, n int, seed uint64) []Object {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	objs := make([]Object, n)
	for i := range objs {
		o := Object{Key: fmt.Sprintf("%sobj/%05d.txt", prefix, i), ContentType: "text/plain"}
		switch i % 12 {
		case 0:
			o.Key = fmt.Sprintf("%sempty/%05d", prefix, i)
			o.ContentType = ""
		case 1:
			o.Key = fmt.Sprintf("%sünïcødé/日本語/ファイル-%05d.json", prefix, i)
			o.ContentType = "application/json"
		case 2:
			o.Key = fmt.Sprintf("%swith space/a+b c=d&e %05d.csv", prefix, i)
			o.ContentType = "text/csv"
		case 3:
			o.Key = fmt.Sprintf("%sbin/%05d.jpg", prefix, i)
			o.ContentType = "image/jpeg"
			o.Data = corpus.Random(32<<10+rng.IntN(96<<10), byte(i))
		case 4:
			o.Tags = map[string]string{}
			for t := range 10 {
				o.Tags[fmt.Sprintf("tag%d", t)] = fmt.Sprintf("value %d/%d", i, t)
			}
		case 5:
			o.Metadata = map[string]string{"origin": "dataset", "index": fmt.Sprint(i), "blob": strings.Repeat("m", 1500)}
		case 6:
			o.StorageClass = "REDUCED_REDUNDANCY"
		case 7:
			// 1,024 bytes, S3's maximum, in segments MinIO's file system
			// backend accepts (<= 255 bytes each).
			long := prefix + "long"
			for len(long) < 1024-7-201 {
				long += "/" + strings.Repeat("k", 200)
			}
			long += "/" + strings.Repeat("k", 1024-7-len(long)-1)
			o.Key = long + fmt.Sprintf("/%06d", i)
		}
		if o.Data == nil && i%12 != 0 {
			o.Data = Text(rng, 1+rng.IntN(64<<10))
		}
		if o.Data == nil {
			o.Data = []byte{}
		}
		objs[i] = o
	}
	return objs
}

// Sample returns about total bytes of realistic data under prefix, as the
// demo uploads it: files of 1-16 MiB of each corpus class (CSV, JSON lines,
// XML, prose, incompressible bytes) and a quarter of the bytes as many small
// files of 1-64 KiB cut from the same classes. A share of the small files
// carry user metadata, tags and another storage class, so that the demo's
// check of them has something to find.
func Sample(prefix string, total int64, seed uint64) []Object {
	rng := rand.New(rand.NewPCG(seed, 0xda7a))
	exts := map[string]string{"csv": ".csv", "jsonl": ".jsonl", "xml": ".xml", "text": ".txt", "random": ".bin"}
	types := map[string]string{"csv": "text/csv", "jsonl": "application/x-ndjson", "xml": "application/xml", "text": "text/plain", "random": "application/octet-stream"}
	pool := map[string][]byte{}
	for _, c := range corpus.Classes {
		pool[c] = corpus.Generate(c, 16<<20)
	}
	var objs []Object
	var n int64
	for i := 0; n < total*3/4; i++ {
		c := corpus.Classes[i%len(corpus.Classes)]
		size := 1<<20 + rng.IntN(15<<20)
		objs = append(objs, Object{Key: fmt.Sprintf("%s%s/part-%04d%s", prefix, c, i, exts[c]), ContentType: types[c], Data: pool[c][:size]})
		n += int64(size)
	}
	for i := 0; n < total; i++ {
		c := corpus.Classes[rng.IntN(len(corpus.Classes))]
		size := 1<<10 + rng.IntN(63<<10)
		off := rng.IntN(len(pool[c]) - size)
		o := Object{Key: fmt.Sprintf("%ssmall/%s/%05d%s", prefix, c, i, exts[c]), ContentType: types[c], Data: pool[c][off : off+size]}
		// By position, not the rng: a seed's keys and sizes stay as they were.
		if i%4 == 0 {
			o.Metadata = map[string]string{"class": c, "origin": "xrc-demo"}
			o.Tags = map[string]string{"class": c, "seq": fmt.Sprint(i)}
		}
		if i%8 == 0 {
			o.StorageClass = "REDUCED_REDUNDANCY" // the only class besides STANDARD MinIO keeps
		}
		objs = append(objs, o)
		n += int64(size)
	}
	return objs
}

// Upload puts objs into bucket, concurrency at a time.
func Upload(ctx context.Context, client *s3.Client, bucket string, objs []Object, concurrency int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range objs {
		o := &objs[i]
		g.Go(func() error { return Put(ctx, client, bucket, o) })
	}
	return g.Wait()
}

// Put writes one object with its metadata, tags and storage class.
func Put(ctx context.Context, client *s3.Client, bucket string, o *Object) error {
	in := &s3.PutObjectInput{
		Bucket:        &bucket,
		Key:           &o.Key,
		Body:          bytes.NewReader(o.Data),
		ContentLength: aws.Int64(int64(len(o.Data))),
		Metadata:      o.Metadata,
		StorageClass:  s3types.StorageClass(o.StorageClass),
	}
	if o.ContentType != "" {
		in.ContentType = &o.ContentType
	}
	if o.ContentEncoding != "" {
		in.ContentEncoding = &o.ContentEncoding
	}
	if o.CacheControl != "" {
		in.CacheControl = &o.CacheControl
	}
	if o.ContentDisposition != "" {
		in.ContentDisposition = &o.ContentDisposition
	}
	if o.ContentLanguage != "" {
		in.ContentLanguage = &o.ContentLanguage
	}
	if !o.Expires.IsZero() {
		in.Expires = aws.Time(o.Expires)
	}
	if len(o.Tags) > 0 {
		in.Tagging = aws.String(encodeTags(o.Tags))
	}
	if len(o.Data) <= 16<<20 || o.SHA256 {
		switch {
		case o.SHA256 && len(o.Data) > 16<<20:
			// MinIO caps aws-chunked chunks at 16 MiB: the SHA-256 goes
			// ahead in a header, computed here, not in a trailer.
			sum := sha256.Sum256(o.Data)
			in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
		case o.SHA256:
			in.ChecksumAlgorithm = s3types.ChecksumAlgorithmSha256
		}
		if _, err := client.PutObject(ctx, in); err != nil {
			return fmt.Errorf("put %s/%s: %w", bucket, o.Key, err)
		}
		return nil
	}
	// Large: multipart, as real producers do (MinIO also caps aws-chunked
	// chunks at 16 MiB).
	_, err := transfermanager.New(client).UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: in.Bucket, Key: in.Key, Body: in.Body, ContentType: in.ContentType, ContentEncoding: in.ContentEncoding, Metadata: in.Metadata,
		CacheControl: in.CacheControl, ContentDisposition: in.ContentDisposition, ContentLanguage: in.ContentLanguage, Expires: in.Expires,
		Tagging: in.Tagging, StorageClass: tmtypes.StorageClass(o.StorageClass),
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, o.Key, err)
	}
	return nil
}

func encodeTags(tags map[string]string) string {
	v := url.Values{}
	for k, val := range tags {
		v.Set(k, val)
	}
	return v.Encode()
}

// Size is the total bytes of objs.
func Size(objs []Object) int64 {
	var n int64
	for _, o := range objs {
		n += int64(len(o.Data))
	}
	return n
}

// Check compares every object of objs with its copy in bucket (key mapped by
// destKey): bytes; Content-Type (the S3 default when o has none),
// Content-Encoding, Cache-Control, Content-Disposition, Content-Language and
// Expires, each absent when o has none; user metadata, both ways, as xrc
// carries it (UserMetadata); tags, both ways; and storage class. It returns
// one error per object that differs, naming every difference.
func Check(ctx context.Context, client *s3.Client, bucket string, objs []Object, destKey func(string) string, concurrency int) []error {
	errs := make([]error, len(objs))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range objs {
		o := &objs[i]
		g.Go(func() error {
			errs[i] = check(ctx, client, bucket, o, destKey(o.Key))
			return nil
		})
	}
	_ = g.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// defaultContentTypes are what S3 gives an object PUT without a
// Content-Type: AWS's, MinIO's.
var defaultContentTypes = []string{"binary/octet-stream", "application/octet-stream"}

func check(ctx context.Context, client *s3.Client, bucket string, o *Object, key string) error {
	get, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer get.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, get.Body)
	if err != nil {
		return fmt.Errorf("%s: reading: %w", key, err)
	}
	want := sha256.Sum256(o.Data)
	if n != int64(len(o.Data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("%s: bytes differ (%d bytes, want %d)", key, n, len(o.Data))
	}
	var diffs []string
	differ := func(what, got, want string) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s %q, want %q", what, got, want))
		}
	}
	if ct := aws.ToString(get.ContentType); o.ContentType != "" || !slices.Contains(defaultContentTypes, ct) {
		differ("content type", ct, or(o.ContentType, defaultContentTypes[0]+" or "+defaultContentTypes[1]))
	}
	differ("content encoding", aws.ToString(get.ContentEncoding), o.ContentEncoding)
	differ("cache control", aws.ToString(get.CacheControl), o.CacheControl)
	differ("content disposition", aws.ToString(get.ContentDisposition), o.ContentDisposition)
	differ("content language", aws.ToString(get.ContentLanguage), o.ContentLanguage)
	var wantExpires string
	if !o.Expires.IsZero() {
		wantExpires = o.Expires.UTC().Format(http.TimeFormat)
	}
	var gotExpires string
	if get.ExpiresString != nil {
		gotExpires = *get.ExpiresString
		if t, err := http.ParseTime(gotExpires); err == nil {
			gotExpires = t.UTC().Format(http.TimeFormat)
		}
	}
	differ("expires", gotExpires, wantExpires)
	if got, want := sorted(UserMetadata(get.Metadata)), sorted(lower(o.Metadata)); !slices.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("metadata %v, want %v", clip(got), clip(want)))
	}
	differ("storage class", or(string(get.StorageClass), "STANDARD"), or(o.StorageClass, "STANDARD"))
	// The GET's tag count says "none" for a caller allowed to read tags
	// (as Check's are), which saves a request per untagged object.
	if len(o.Tags) > 0 || aws.ToInt32(get.TagCount) > 0 {
		tags, err := client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return fmt.Errorf("%s: tags: %w", key, err)
		}
		if got, want := sorted(awsapi.TagMap(tags.TagSet)), sorted(o.Tags); !slices.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("tags %v, want %v", got, want))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: %s", key, strings.Join(diffs, "; "))
	}
	return nil
}

// UserMetadata is the user metadata of a copy xrc wrote as the source had
// it: without xrc's own x-amz-meta-xrc-* provenance, the source's keys
// under xrc- restored (deliver.UserMetadata), keys in lower case as S3
// compares them.
func UserMetadata(md map[string]string) map[string]string {
	return lower(deliver.UserMetadata(md))
}

func lower(md map[string]string) map[string]string {
	out := make(map[string]string, len(md))
	for k, v := range md {
		out[strings.ToLower(k)] = v
	}
	return out
}

// clip shortens each key=value to 40 bytes for an error message.
func clip(kvs []string) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		if len(kv) > 40 {
			kv = kv[:37] + "..."
		}
		out[i] = kv
	}
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sorted(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
