package archive

// This file is the Writer and its frame bookkeeping, one state machine
// mirroring reader.go; it stays whole for the same reason.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/cpuclock"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// ManifestName is the name of the first member of every archive.
const ManifestName = "manifest.json"

// copyBufferSize is the chunk in which object bytes move from the source to
// the encoder: large enough that per-call overhead (hashing, tar and
// encoder bookkeeping) vanishes, small enough to stay in L2.
const copyBufferSize = 256 << 10

// maxEmptyReads bounds how often a source may answer (0, nil) in a row
// before the copy gives up, as io.Reader implementations are asked not to.
const maxEmptyReads = 100

// WriterOptions configures a Writer.
type WriterOptions struct {
	// Concurrency is the number of threads the zstd encoder may use; 0
	// means 1. Above 1, libzstd compresses chunks of the stream in
	// parallel, and the pure-Go encoder overlaps match finding and entropy
	// coding of consecutive blocks.
	Concurrency int
	// PureGo selects the pure-Go encoder even in builds with libzstd.
	PureGo bool
}

// Writer writes archives one after another. It compresses with libzstd in
// builds with cgo and with github.com/klauspost/compress/zstd otherwise
// (Encoder says which). It owns its encoder state and a copy buffer and
// reuses them across archives, so a long-lived Writer allocates almost
// nothing per archive. Its memory depends on the level, never on object
// sizes: the window is at most 8 MiB, and libzstd's context a few MiB at
// level 3, ~90 MiB at 19 and at most ~140 MiB at 20-22 (C memory, which
// GOMEMLIMIT does not see).
//
// A Writer is not safe for concurrent use; use one per goroutine. The
// manifest passed to Begin must not change until Close returns.
type Writer struct {
	// CheckAll compares every object's source checksum with its bytes,
	// also where that costs a pass as dear as SHA-256's (SHA-1, CRC64NVME
	// without SIMD): set for an archive some of whose destinations'
	// stores do not check it (config.Region.SourceChecksums).
	CheckAll bool

	opts WriterOptions
	enc  *frames // nil until the first Begin
	buf  []byte
	mbuf bytes.Buffer
	sum  hash.Hash

	// State of the archive being written; m is nil between archives.
	m     *manifest.Manifest
	store bool          // objects are stored (Store) until the next SetLevel
	stats []ObjectStats // by object index
	last  int           // index of the object written last, -1 before any
	dst   countingWriter
	level int
	tw    *tar.Writer
	next  int   // index of the next object WriteObject accepts
	err   error // first failure; the archive is unusable after it
}

// NewWriter returns a Writer with no archive open.
func NewWriter(opts WriterOptions) *Writer {
	opts.Concurrency = max(opts.Concurrency, 1)
	return &Writer{opts: opts, sum: sha256.New()}
}

// Encoder names the zstd implementation the Writer compresses with, such
// as "libzstd 1.5.7", for logs and build information.
func (w *Writer) Encoder() string {
	if err := w.initEncoder(); err != nil {
		return "unavailable: " + err.Error()
	}
	return w.enc.name()
}

func (w *Writer) initEncoder() error {
	if w.enc != nil {
		return nil
	}
	enc, err := newFrameEncoder(w.opts.Concurrency, w.opts.PureGo)
	if err != nil {
		return err
	}
	w.enc = &frames{zstd: enc, raw: newRawFrames()}
	return nil
}

// Begin starts an archive on dst at compression level m.Level and writes
// manifest.json. It validates m first and writes nothing if m is invalid.
// Begin fails if an archive is open (Close it first). With Concurrency > 1
// the encoder writes to dst from its own goroutines; every write has
// returned when Close returns.
func (w *Writer) Begin(dst io.Writer, m *manifest.Manifest) error {
	if m == nil {
		return errors.New("archive: Begin: nil manifest")
	}
	if w.m != nil {
		return fmt.Errorf("archive: Begin(%s): archive %s is still open", m.ArchiveID, w.m.ArchiveID)
	}
	w.mbuf.Reset()
	if err := m.Encode(&w.mbuf); err != nil {
		return fmt.Errorf("archive: starting %s: %w", m.ArchiveID, err)
	}
	if w.mbuf.Len() > manifest.MaxSize {
		return fmt.Errorf("archive: starting %s: manifest is %d bytes, readers accept at most %d", m.ArchiveID, w.mbuf.Len(), manifest.MaxSize)
	}
	if err := w.initEncoder(); err != nil {
		return fmt.Errorf("archive: starting %s: %w", m.ArchiveID, err)
	}
	w.dst.w = dst
	w.dst.n.Store(0)
	if err := w.enc.Reset(&w.dst, m.Level); err != nil {
		w.dst.w = nil
		return fmt.Errorf("archive: starting %s: %w", m.ArchiveID, err)
	}
	w.m, w.level, w.store, w.err, w.next, w.last = m, m.Level, false, nil, 0, -1
	w.stats = append(w.stats[:0], make([]ObjectStats, len(m.Objects))...)
	w.tw = tar.NewWriter(w.enc)
	if err := w.writeMember(ManifestName, w.mbuf.Bytes(), m.CreatedAt); err != nil {
		w.reset()
		return fmt.Errorf("archive %s: writing %s: %w", m.ArchiveID, ManifestName, err)
	}
	// The manifest gets a frame of its own: a reader has checked that
	// frame's checksum by the time it reads the first object's header, so
	// it can act on the manifest (metadata, deletes) while streaming.
	if err := w.tw.Flush(); err != nil {
		w.reset()
		return fmt.Errorf("archive %s: writing %s: %w", m.ArchiveID, ManifestName, err)
	}
	if err := w.enc.Close(); err != nil {
		w.reset()
		return fmt.Errorf("archive %s: ending the manifest's frame: %w", m.ArchiveID, err)
	}
	if err := w.enc.Reset(&w.dst, m.Level); err != nil {
		w.reset()
		return fmt.Errorf("archive %s: starting %s: %w", m.ArchiveID, ManifestName, err)
	}
	w.skipMemberless()
	return nil
}

// SetLevel makes the following objects compress at the given zstd level
// (manifest.CheckLevel), or be stored (Store). Called between objects, it
// ends the current zstd frame and starts a new one at that level;
// concatenated frames are one valid zstd stream. Use Store for
// incompressible objects: each one's content then goes into a raw frame of
// its own, while the tar headers and padding around it stay compressed at
// the current level (they would otherwise cost about 1.5 KiB per object). A level the encoder treats like the current one (the
// pure-Go encoder has four settings, see zstd.EncoderLevelFromZstd) keeps
// the current frame, so redundant calls cost nothing.
func (w *Writer) SetLevel(level int) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := manifest.CheckLevel(level); err != nil && level != Store {
		return fmt.Errorf("archive %s: SetLevel: %w", w.m.ArchiveID, err)
	}
	if level == Store {
		// WriteObject frames each stored object's content itself, its tar
		// framing in small frames. A compressed frame open here ends now,
		// not in the stored object's write: what the encoder still holds of
		// the objects before is theirs, and a learner that charged it to
		// the stored object would find storing dear and the level of a
		// lone object before it cheap.
		if !w.store && !w.enc.small {
			if err := w.endFrame(w.enc.toSmallFrame); err != nil {
				return err
			}
		}
		w.store = true
		return nil
	}
	w.store = false
	if !w.enc.small && w.enc.effective(level) == w.enc.effective(w.level) {
		w.level = level
		return nil
	}
	if err := w.endFrame(func() error { return w.enc.Reset(&w.dst, level) }); err != nil {
		return err
	}
	w.level = level
	return nil
}

// endFrame ends the current zstd frame and starts the next with start.
// The padding of the last member belongs to the frame that holds it, so
// every frame ends on a tar block boundary. What ending the frame costs is
// the last object's.
func (w *Writer) endFrame(start func() error) error {
	if err := w.toLast(w.enc.Close); err != nil {
		return w.fail(fmt.Errorf("archive %s: ending frame: %w", w.m.ArchiveID, err))
	}
	if err := start(); err != nil {
		return w.fail(fmt.Errorf("archive %s: starting frame: %w", w.m.ArchiveID, err))
	}
	return nil
}

// Flush writes out what the encoder holds of the objects written so far,
// charged to the last of them, and goes on in the same frame. The encoder
// otherwise emits output a block at a time, during whichever objects come
// next: a caller that needs each object's Stats to be its own (the
// learner compares levels per content class) flushes where the kind of
// content changes. Within a run of alike objects it would only cost
// bytes: 4.5% for objects of 4 KiB, 0.2% for 64 KiB; across a mix of
// classes it saved 0.5%, each block holding one kind of content.
func (w *Writer) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.last < 0 || w.store {
		return nil // nothing of an object held: stored content is written as it comes
	}
	if err := w.toLast(w.enc.Flush); err != nil {
		return w.fail(fmt.Errorf("archive %s: flushing: %w", w.m.ArchiveID, err))
	}
	return nil
}

// toLast pads the last member to its tar block and runs f, which writes
// out what the encoder holds, charging the output and CPU to the last
// object written.
func (w *Writer) toLast(f func() error) error {
	done := w.measure(w.last)
	defer done()
	return w.encode(w.last, func() error {
		if err := w.tw.Flush(); err != nil {
			return err
		}
		return f()
	})
}

// WriteObject writes the member of m.Objects[index], which must be the next
// object in manifest order that is not a delete entry. It copies exactly
// Size bytes from r, hashing them on the way, and returns their SHA-256 in
// hex. If the manifest's SHA256 is empty, a trailer member carrying the
// digest follows; if it is set, the digest must match it, as must the
// source's own checksum (manifest.Object.Checksum) of any algorithm.
//
// Any failure leaves the archive unusable: the member is already partly in
// the stream. Errors for a source with the wrong size or digest are *Error
// matching ErrSize or ErrChecksum; errors from r are returned wrapped. A nil
// r reads as empty.
func (w *Writer) WriteObject(index int, r io.Reader) (sha256hex string, err error) {
	if err := w.usable(); err != nil {
		return "", err
	}
	if r == nil {
		r = bytes.NewReader(nil)
	}
	if index != w.next {
		if w.next >= len(w.m.Objects) {
			return "", fmt.Errorf("archive %s: WriteObject(%d): all objects are written", w.m.ArchiveID, index)
		}
		return "", fmt.Errorf("archive %s: WriteObject(%d): the next object to write is objects[%d]", w.m.ArchiveID, index, w.next)
	}
	o := &w.m.Objects[index]
	done := w.measure(index)
	defer done()
	w.stats[index].In = o.Size
	if err := w.encode(index, func() error { return w.tw.WriteHeader(header(o.Member, o.Size, o.LastModified)) }); err != nil {
		return "", w.fail(fmt.Errorf("archive %s: writing header of %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err))
	}
	if w.store && o.Size > 0 {
		if err := w.encode(index, func() error { return w.enc.toRaw() }); err != nil {
			return "", w.fail(fmt.Errorf("archive %s: storing %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err))
		}
	}
	sum, err := w.copyObject(index, o, r)
	if err != nil {
		return "", w.fail(err)
	}
	if w.store && o.Size > 0 {
		if err := w.encode(index, func() error { return w.enc.toSmall() }); err != nil {
			return "", w.fail(fmt.Errorf("archive %s: storing %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err))
		}
	}
	if o.SHA256 == "" {
		// A SHA-256 the source's own checksum gives but the manifest
		// does not carry (never so from xrc's source) is compared here,
		// as o.SHA256 would be.
		if checksum.Algorithm(o.ChecksumAlgorithm) == checksum.SHA256 && o.Checksum != "" {
			if raw, _ := hex.DecodeString(sum); checksum.Encode(raw) != o.Checksum {
				return "", w.fail(w.objectError(o, fmt.Errorf("%w: content has SHA-256 %s, the source's checksum says %s", ErrChecksum, checksum.Encode(raw), o.Checksum)))
			}
		}
		line := trailerLine(sum, o.Member)
		if err := w.encode(index, func() error { return w.writeMember(manifest.TrailerName(o.Member), []byte(line), o.LastModified) }); err != nil {
			return "", w.fail(fmt.Errorf("archive %s: writing trailer of %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err))
		}
	} else if sum != o.SHA256 {
		return "", w.fail(w.objectError(o, fmt.Errorf("%w: content has %s, manifest says %s", ErrChecksum, sum, o.SHA256)))
	}
	w.next++
	w.last = index
	w.skipMemberless()
	return sum, nil
}

// ObjectStats is what one object cost in the archive.
type ObjectStats struct {
	In  int64         // content bytes
	Out int64         // compressed bytes attributed to it (its member, trailer and share of frame ends)
	CPU time.Duration // CPU time of the tar and zstd encoding of those bytes, not of reading or hashing them
}

// Stats returns each object's ObjectStats by manifest index (zero for
// delete entries) for the current or last archive; complete after Close.
// Compression happens in the calling thread only with Concurrency 1; with
// more, CPU covers the calling thread's share only.
func (w *Writer) Stats() []ObjectStats { return w.stats }

// measure starts accounting output bytes to object i (nothing for i < 0)
// and pins the goroutine to its thread, so that the thread's CPU clock
// read by encode covers exactly the encoding; done ends both.
func (w *Writer) measure(i int) (done func()) {
	if i < 0 {
		return func() {}
	}
	runtime.LockOSThread()
	out := w.dst.n.Load()
	return func() {
		w.stats[i].Out += w.dst.n.Load() - out
		runtime.UnlockOSThread()
	}
}

// encode runs f, a write into the tar and zstd encoders, and adds its CPU
// time to object i: reading the source and hashing are not compression, and
// a streamed source's TLS decryption would otherwise count as such.
func (w *Writer) encode(i int, f func() error) error {
	if i < 0 {
		return f()
	}
	start := cpuclock.Thread()
	err := f()
	w.stats[i].CPU += cpuclock.Thread() - start
	return err
}

// copyObject streams exactly o.Size bytes from r into the current member
// and returns their SHA-256. Memory use is the one copy buffer, which it
// fills before hashing and encoding: a TLS body yields 16 KiB per Read, and
// each pass through the tar and zstd writers costs two thread-clock reads
// and a cgo call whatever its size.
func (w *Writer) copyObject(index int, o *manifest.Object, r io.Reader) (string, error) {
	if w.buf == nil {
		w.buf = make([]byte, copyBufferSize)
	}
	w.sum.Reset()
	// The source's own checksum, when it has one other than a SHA-256
	// (compared as the digest): the targets write it with the object, and
	// S3 refuses bytes that do not match it, so an object whose bytes do
	// not is refused here, alone, not at every target with its archive.
	// Only where it comes cheap (checksum.Algorithm.Fast), unless CheckAll
	// or no destination can: elsewhere it would cost the source a pass as
	// dear as SHA-256's, and S3 checks it at every destination (a store
	// that does not, CheckAll), but a SHA-1 only on an object written in
	// one PUT (a multipart write keeps a CRC).
	var own hash.Hash
	alg := checksum.Algorithm(o.ChecksumAlgorithm)
	checked := alg.Fast() || w.CheckAll || !alg.CRC() && o.Size > manifest.SinglePutMax
	if o.Checksum != "" && alg != checksum.SHA256 && checked && alg.New() != nil {
		own = alg.New()
	}
	var n int64
	for n < o.Size {
		chunk := w.buf[:min(int64(len(w.buf)), o.Size-n)]
		k, err := fill(r, chunk)
		if k > 0 {
			w.sum.Write(chunk[:k])
			if own != nil {
				own.Write(chunk[:k])
			}
			if werr := w.encode(index, func() error { _, err := w.tw.Write(chunk[:k]); return err }); werr != nil {
				return "", fmt.Errorf("archive %s: writing %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, werr)
			}
			n += int64(k)
		}
		switch {
		case err == io.EOF && n < o.Size:
			return "", w.objectError(o, fmt.Errorf("%w: source ended after %d bytes, manifest says %d", ErrSize, n, o.Size))
		case err != nil && err != io.EOF:
			return "", fmt.Errorf("archive %s: reading %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err)
		}
	}
	// A source longer than the manifest says means the object changed
	// after it was listed; the archive must not pretend otherwise.
	for empty := 0; ; {
		k, err := r.Read(w.buf[:1])
		if k > 0 {
			return "", w.objectError(o, fmt.Errorf("%w: source has more than the %d bytes the manifest says", ErrSize, o.Size))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("archive %s: reading %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, err)
		}
		if empty++; empty > maxEmptyReads {
			return "", fmt.Errorf("archive %s: reading %s/%s: %w", w.m.ArchiveID, o.Bucket, o.Key, io.ErrNoProgress)
		}
	}
	if own != nil {
		if sum := checksum.Encode(own.Sum(nil)); sum != o.Checksum {
			return "", w.objectError(o, fmt.Errorf("%w: content has %s %s, manifest says %s", ErrChecksum, o.ChecksumAlgorithm, sum, o.Checksum))
		}
	}
	return hex.EncodeToString(w.sum.Sum(w.buf[:0])), nil
}

// fill reads from r until p is full or r fails (io.EOF included), and gives
// up with io.ErrNoProgress after maxEmptyReads reads in a row that return
// nothing.
func fill(r io.Reader, p []byte) (int, error) {
	n, empty := 0, 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k > 0 {
			empty = 0
		} else if empty++; empty > maxEmptyReads {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}

// Close ends the archive: it writes the tar end-of-archive marker and ends
// the zstd frame. It does not close the destination. Close fails if objects
// remain unwritten or an earlier call failed; either way the Writer is
// ready for the next Begin.
func (w *Writer) Close() error {
	if w.m == nil {
		return errors.New("archive: Close: no archive is open")
	}
	defer w.reset()
	if w.err != nil {
		return w.err
	}
	if w.next < len(w.m.Objects) {
		o := &w.m.Objects[w.next]
		missing := 0
		for i := w.next; i < len(w.m.Objects); i++ {
			if w.m.Objects[i].HasMember() {
				missing++
			}
		}
		return fmt.Errorf("archive %s: Close: %d objects not written, starting with objects[%d] (%s/%s)", w.m.ArchiveID, missing, w.next, o.Bucket, o.Key)
	}
	done := w.measure(w.last)
	defer done()
	return w.encode(w.last, func() error {
		if err := w.tw.Close(); err != nil {
			return fmt.Errorf("archive %s: ending tar stream: %w", w.m.ArchiveID, err)
		}
		if err := w.enc.Close(); err != nil {
			return fmt.Errorf("archive %s: ending zstd frame: %w", w.m.ArchiveID, err)
		}
		return nil
	})
}

// Abort abandons the open archive, if any, without ending it: what reached
// the destination is a truncated archive, which every reader rejects, and
// the Writer is ready for the next Begin. A caller that gives up on an
// archive midway calls it, so that a Writer it reuses is never still open.
func (w *Writer) Abort() {
	if w.m != nil {
		w.reset()
	}
}

// Written returns the compressed bytes written to the destination of the
// current (or last) archive so far. The encoder holds back up to a block,
// so this trails the input until Close.
func (w *Writer) Written() int64 { return w.dst.n.Load() }

func (w *Writer) usable() error {
	if w.m == nil {
		return errors.New("archive: no archive is open (call Begin)")
	}
	return w.err
}

func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

func (w *Writer) reset() {
	if w.enc != nil {
		// Detaches the encoder from dst and waits for any goroutine of
		// its, so none writes to dst after Close returns.
		w.enc.Reset(nil, 0)
	}
	w.m, w.tw, w.err = nil, nil, nil
	w.dst.w = nil // do not pin the caller's destination
}

func (w *Writer) skipMemberless() {
	for w.next < len(w.m.Objects) && !w.m.Objects[w.next].HasMember() {
		w.next++
	}
}

func (w *Writer) objectError(o *manifest.Object, err error) *Error {
	return &Error{ArchiveID: w.m.ArchiveID, Bucket: o.Bucket, Key: o.Key, Member: o.Member, Err: err}
}

func (w *Writer) writeMember(name string, data []byte, mtime time.Time) error {
	if err := w.tw.WriteHeader(header(name, int64(len(data)), mtime)); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// header returns the tar header of every member: a PAX-format regular file,
// mode 0644, no owner names, so extraction gives the same tree anywhere.
func header(name string, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
}

// trailerLine is the content of a trailer member, in sha256sum format.
func trailerLine(sumHex, member string) string {
	return sumHex + "  " + path.Base(member) + "\n"
}

// countingWriter counts bytes on their way to the destination. The count is
// atomic because with Concurrency > 1 the encoder writes from its own
// goroutines while the caller may ask for Written.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
