package source

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
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

// prefetch starts reading the small objects of m ahead, at most the
// worker's concurrency at once, so S3 latency overlaps compression. The
// future of objects[i] is futures[i] (nil for large objects and deletes);
// release a slot after taking a result.
func (w *Worker) prefetch(ctx context.Context, m *manifest.Manifest) (futures []chan fetched, slots chan struct{}) {
	futures = make([]chan fetched, len(m.Objects))
	slots = make(chan struct{}, w.Config.Settings.Worker.Concurrency)
	for i := range m.Objects {
		if o := &m.Objects[i]; !o.Delete && o.Size <= prefetchMax {
			futures[i] = make(chan fetched, 1)
		}
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
			go func() {
				data, err := w.fetchAll(ctx, &m.Objects[i])
				f <- fetched{data, err}
			}()
		}
	}()
	return futures, slots
}

// get opens the exact version HEAD described, so the bytes and the
// manifest can never come from two different writes.
func (w *Worker) get(ctx context.Context, o *manifest.Object) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{Bucket: &o.Bucket, Key: &o.Key}
	if o.VersionID != "" {
		in.VersionId = &o.VersionID
	} else {
		in.IfMatch = aws.String(`"` + o.ETag + `"`)
	}
	out, err := w.S3.GetObject(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", o.Bucket, o.Key, err)
	}
	return out.Body, nil
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

// writeFetched adds a prefetched object to the archive, at the level
// setLevel chooses from its first bytes.
func (w *Worker) writeFetched(ctx context.Context, aw *archive.Writer, i int, f <-chan fetched, slots <-chan struct{}, setLevel func([]byte) error) error {
	var r fetched
	select {
	case r = <-f:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-slots
	if r.err != nil {
		return &objectError{i, r.err}
	}
	if err := setLevel(r.data[:min(len(r.data), adaptive.ProbeSize)]); err != nil {
		return err
	}
	_, err := aw.WriteObject(i, bytes.NewReader(r.data))
	w.buffers.put(r.data)
	w.runtime.Progress()
	return err
}

// streamObject copies one large object from S3 into the archive, at the
// level setLevel chooses from its first bytes. A failure reading from S3 is
// the object's; a failure writing is the archive's.
func (w *Worker) streamObject(ctx context.Context, aw *archive.Writer, i int, o *manifest.Object, setLevel func([]byte) error) error {
	body, err := w.get(ctx, o)
	if err != nil {
		return &objectError{i, err}
	}
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
		return err
	}
	return nil
}

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
