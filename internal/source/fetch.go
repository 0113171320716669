package source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// prefetchMax is the largest object fetched ahead into memory; larger ones
// are streamed from S3 straight into the archive when their turn comes.
const prefetchMax = 4 << 20

// objectError marks a failure caused by one entry's object, so the archive
// can be rebuilt without it.
type objectError struct {
	index int
	err   error
}

func (e *objectError) Error() string { return e.err.Error() }
func (e *objectError) Unwrap() error { return e.err }

// fetched is one object read ahead into memory.
type fetched struct {
	data []byte
	err  error
}

// prefetchBytes bounds the bytes of one archive's objects prefetched and
// not yet written: with objects up to prefetchMax each, the worker's
// concurrency alone (256 at most) would let two builders hold 2 GiB.
const prefetchBytes = 64 << 20

// readAhead is what each builder may hold read ahead: prefetchBytes of
// prefetched objects and inlineBudget of small ones read whole, or, on a
// task whose memory limit cannot hold them beside the staging uploads'
// part buffers (uploadMemory, half the limit), their share of half the
// other half (a 512 MiB task compressing at level 19 has a 204 MiB limit:
// the fixed 2 × 96 MiB alone passed it). Never less than one largest
// prefetched object's buffer, nor one inline object's.
func readAhead(uploadMemory int64) (prefetch, inline int64) {
	if uploadMemory <= 0 {
		return prefetchBytes, inlineBudget // no limit known
	}
	room := uploadMemory / 2 / builders
	prefetch = min(prefetchBytes, max(2*prefetchMax, room*prefetchBytes/(prefetchBytes+inlineBudget)))
	inline = min(inlineBudget, max(4*inlineMax, room*inlineBudget/(prefetchBytes+inlineBudget)))
	return prefetch, inline
}

// prefetch starts reading the small objects of m that are not held
// already ahead, at most the worker's concurrency (and w.prefetchRoom bytes) at
// once, so S3 latency overlaps compression. The future of objects[i] is
// futures[i] (nil for held and large objects and deletes); call done(i)
// once its result is written.
func (w *Worker) prefetch(ctx context.Context, m *manifest.Manifest, held [][]byte) (futures []chan fetched, done func(i int)) {
	futures = make([]chan fetched, len(m.Objects))
	slots := make(chan struct{}, w.Config.Settings.Worker.Concurrency)
	budget := semaphore.NewWeighted(w.prefetchRoom)
	for i := range m.Objects {
		if o := &m.Objects[i]; o.HasMember() && o.Size <= prefetchMax && held[i] == nil {
			futures[i] = make(chan fetched, 1)
		}
	}
	// Charged what the object's buffer takes (its size class, up to
	// twice its size), not its size.
	charge := func(i int) int64 { return int64(w.buffers.footprint(int(m.Objects[i].Size))) }
	done = func(i int) {
		budget.Release(charge(i))
		<-slots
	}
	go func() {
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// In manifest order, as they are written: the object
			// waited for has its bytes already.
			if err := budget.Acquire(ctx, charge(i)); err != nil {
				return
			}
			go func() {
				data, err := w.fetchAll(ctx, &m.Objects[i])
				f <- fetched{data, err}
			}()
		}
	}()
	return futures, done
}

// get opens the exact version HEAD described, so the bytes and the
// manifest can never come from two different writes.
func (w *Worker) get(ctx context.Context, o *manifest.Object) (io.ReadCloser, error) {
	return w.open(ctx, o, "")
}

// probe reads o's first byte, as get would read it.
func (w *Worker) probe(ctx context.Context, o *manifest.Object) error {
	body, err := w.open(ctx, o, "bytes=0-0")
	if err != nil {
		return err
	}
	// One byte, even from a store that ignores Range and sends it all.
	_, err = io.CopyN(io.Discard, body, 1)
	body.Close()
	if err != nil {
		return fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, err)
	}
	return nil
}

func (w *Worker) open(ctx context.Context, o *manifest.Object, byteRange string) (io.ReadCloser, error) {
	out, err := w.getPinned(ctx, o, byteRange)
	if err != nil {
		return nil, err
	}
	return out.Body, nil
}

// getPinned GETs (byteRange of) the exact write of o plan described.
func (w *Worker) getPinned(ctx context.Context, o *manifest.Object, byteRange string) (*s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &o.Bucket, Key: &o.Key}
	if o.VersionID != "" {
		in.VersionId = &o.VersionID
	} else {
		in.IfMatch = aws.String(`"` + o.ETag + `"`)
	}
	if byteRange != "" {
		in.Range = &byteRange
	}
	out, err := w.S3.GetObject(ctx, in)
	if awsapi.IsArchived(err) { // its restored copy expired since HEAD
		return nil, archived(events.ObjectRef{Bucket: o.Bucket, Key: o.Key}, o.StorageClass)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", o.Bucket, o.Key, err)
	}
	return out, nil
}

// read GETs a small object whole, with what HEAD would say of it (plan.go,
// inlineMax). An object of another size than its event said (overwritten
// since) is described but not held: plan charged the batch's budget the
// event's size; it is read when its turn comes, like any large object, if
// it is not skipped as stale.
func (w *Worker) read(ctx context.Context, ref events.ObjectRef, into *arena) (*s3.HeadObjectOutput, []byte, error) {
	out, err := w.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &ref.Bucket, Key: &ref.Key, VersionId: optional(ref.VersionID),
		ChecksumMode: s3types.ChecksumModeEnabled}, withoutValidation)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	defer out.Body.Close()
	head := headOf(out)
	size := aws.ToInt64(out.ContentLength)
	if size > inlineMax || size != ref.Size {
		return head, nil, nil
	}
	data := into.alloc(int(size))
	if _, err := io.ReadFull(out.Body, data); err != nil {
		return nil, nil, fmt.Errorf("reading %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	return head, data, nil
}

// withoutValidation drops the SDK's checksum pass over a GET's body, which
// ChecksumModeEnabled (asked for to learn the object's checksum) turns on:
// the archive writer hashes every byte anyway, and checks them against
// the object's full-object checksum when S3 keeps one.
func withoutValidation(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		_, err := st.Deserialize.Remove("AWSChecksum:ValidateOutputPayloadChecksum")
		return err
	})
}

// headOf is what a GET said of its object, as HEAD would have said it.
func headOf(g *s3.GetObjectOutput) *s3.HeadObjectOutput {
	return &s3.HeadObjectOutput{
		ETag: g.ETag, VersionId: g.VersionId, LastModified: g.LastModified, DeleteMarker: g.DeleteMarker,
		ContentLength: g.ContentLength, StorageClass: g.StorageClass, TagCount: g.TagCount, Metadata: g.Metadata,
		ContentType: g.ContentType, ContentEncoding: g.ContentEncoding, ContentDisposition: g.ContentDisposition,
		ContentLanguage: g.ContentLanguage, CacheControl: g.CacheControl, ExpiresString: g.ExpiresString,
		WebsiteRedirectLocation: g.WebsiteRedirectLocation, MissingMeta: g.MissingMeta,
		ServerSideEncryption: g.ServerSideEncryption,
		ChecksumType:         g.ChecksumType, ChecksumCRC64NVME: g.ChecksumCRC64NVME, ChecksumCRC32C: g.ChecksumCRC32C, ChecksumCRC32: g.ChecksumCRC32,
		ChecksumSHA256: g.ChecksumSHA256, ChecksumSHA1: g.ChecksumSHA1, ResultMetadata: g.ResultMetadata,
	}
}

// fetchAll reads a small object into a buffer of w.buffers, which the
// caller gives back once the object is written.
func (w *Worker) fetchAll(ctx context.Context, o *manifest.Object) ([]byte, error) {
	body, err := w.get(ctx, o)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data := w.buffers.get(int(o.Size))
	if _, err := io.ReadFull(body, data); err != nil {
		w.buffers.put(data)
		return nil, fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, err)
	}
	// Not the write plan described if there is more of it (the archive
	// writer checks a streamed object's end the same way).
	if n, _ := io.CopyN(io.Discard, body, 1); n > 0 {
		w.buffers.put(data)
		return nil, fmt.Errorf("reading %s/%s: %w: more than its %d bytes", o.Bucket, o.Key, archive.ErrSize, o.Size)
	}
	return data, nil
}

// buffers recycles the buffers small objects are prefetched into, in
// power-of-two size classes from 4 KiB to prefetchMax: a batch of a
// thousand small objects would otherwise allocate each one's size, and
// the garbage collector would run all the more often. The pools give
// their buffers up to the collector when they go unused.
type buffers struct {
	classes [maxBufferBits - minBufferBits + 1]sync.Pool // of *[]byte
}

// Buffer sizes: 2^minBufferBits to 2^maxBufferBits = prefetchMax.
const minBufferBits, maxBufferBits = 12, 22

// class returns the size class of size, len(b.classes) if none fits.
func (b *buffers) class(size int) int {
	return max(bits.Len(uint(max(size, 1)-1)), minBufferBits) - minBufferBits
}

// footprint is the memory get(size) takes: its size class's.
func (b *buffers) footprint(size int) int {
	if c := b.class(size); c < len(b.classes) {
		return 1 << (c + minBufferBits)
	}
	return size
}

// get returns a buffer of length size.
func (b *buffers) get(size int) []byte {
	c := b.class(size)
	if c >= len(b.classes) {
		return make([]byte, size)
	}
	if p, ok := b.classes[c].Get().(*[]byte); ok {
		return (*p)[:size]
	}
	return make([]byte, size, 1<<(c+minBufferBits))
}

// put gives back a buffer get returned; nothing may use it afterwards.
func (b *buffers) put(buf []byte) {
	c := b.class(cap(buf))
	if c >= len(b.classes) || cap(buf) != 1<<(c+minBufferBits) {
		return // not one of ours
	}
	buf = buf[:0]
	b.classes[c].Put(&buf)
}

// arena holds the small objects plan reads (read) until their batch is
// staged, cut one after the other from chunks of arenaChunk bytes: with a
// buffer of its own each, in power-of-two classes, a batch of them would
// hold up to twice its bytes. Chunks go back to the worker's pool when the
// batch is done (free).
type arena struct {
	pool   *sync.Pool // of *[]byte of arenaChunk bytes
	mu     sync.Mutex
	chunks []*[]byte
	rest   []byte // what the last chunk has left
}

// arenaChunk is the arena's chunk size: at least inlineMax, so an object
// fits in one, and several times it, so a chunk's unused tail stays small.
const arenaChunk = 4 * inlineMax

// alloc returns n bytes of the arena, safe for concurrent use. The slice
// is never nil, even empty: nil means "not held" to the archive writer.
func (a *arena) alloc(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if n > len(a.rest) {
		c, ok := a.pool.Get().(*[]byte)
		if !ok {
			b := make([]byte, arenaChunk)
			c = &b
		}
		a.chunks = append(a.chunks, c)
		a.rest = *c
	}
	b := a.rest[:n:n]
	a.rest = a.rest[n:]
	return b
}

// free gives the chunks back; nothing alloc returned may be used after.
func (a *arena) free() {
	for _, c := range a.chunks {
		a.pool.Put(c)
	}
	a.chunks, a.rest = nil, nil
}

// writeFetched adds a prefetched object to the archive, at the level
// setLevel chooses from its first bytes.
func (w *Worker) writeFetched(ctx context.Context, aw *archive.Writer, i int, f <-chan fetched, done func(int), setLevel func([]byte) error) error {
	var r fetched
	select {
	case r = <-f:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer done(i)
	if r.err != nil {
		return &objectError{i, r.err}
	}
	err := w.writeHeld(aw, i, r.data, setLevel)
	w.buffers.put(r.data)
	return err
}

// writeHeld adds an object read into memory to the archive, at the level
// setLevel chooses from its first bytes.
func (w *Worker) writeHeld(aw *archive.Writer, i int, data []byte, setLevel func([]byte) error) error {
	if err := setLevel(data[:min(len(data), adaptive.ProbeSize)]); err != nil {
		return err
	}
	_, err := aw.WriteObject(i, bytes.NewReader(data))
	w.runtime.Progress()
	return objectsOwn(i, err)
}

// objectsOwn makes an error the writer found in object i's bytes (not the
// size, or not the SHA-256, S3 described) that object's alone.
func objectsOwn(i int, err error) error {
	if errors.Is(err, archive.ErrSize) || errors.Is(err, archive.ErrChecksum) {
		return &objectError{i, err}
	}
	return err
}

// streamObject copies one large object from S3 into the archive, at the
// level setLevel chooses from its first bytes. A failure reading from S3 is
// the object's; a failure writing is the archive's.
func (w *Worker) streamObject(ctx context.Context, aw *archive.Writer, i int, o *manifest.Object, setLevel func([]byte) error) error {
	first, err := w.get(ctx, o)
	if err != nil {
		return &objectError{i, err}
	}
	body := &awsapi.ResumingBody{Ctx: ctx, Body: first, Size: o.Size, Tries: resumeTries,
		Reopen: func(ctx context.Context, byteRange string) (*s3.GetObjectOutput, error) {
			return w.getPinned(ctx, o, byteRange)
		},
		Resumed: func(at int64, try int, cause error) {
			w.Log.Info("object's read resumed after failing mid-stream", zap.String("bucket", o.Bucket), zap.String("key", o.Key),
				zap.Int64("at", at), zap.Int("try", try), zap.NamedError("cause", cause))
		}}
	defer body.Close()
	track := &trackingReader{r: body, progress: w.runtime.Progress}
	src := bufio.NewReaderSize(track, adaptive.ProbeSize)
	sample, err := src.Peek(adaptive.ProbeSize)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return &objectError{i, fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, err)}
	}
	if err := setLevel(sample); err != nil {
		return err
	}
	if _, err := aw.WriteObject(i, src); err != nil {
		if track.err != nil {
			return &objectError{i, fmt.Errorf("reading %s/%s: %w", o.Bucket, o.Key, track.err)}
		}
		return objectsOwn(i, err)
	}
	return nil
}

// resumeTries is how many times in a row one object's read resumes after
// failing mid-stream (a row ends awsapi.FreshRun bytes on).
const resumeTries = 3

// trackingReader remembers the reader's own error, telling source failures
// from sink failures, and reports progress as a large object streams, so a
// worker busy with one multi-GB object is not taken for stuck.
type trackingReader struct {
	r        io.Reader
	err      error
	progress func()
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	t.progress()
	return n, err
}
