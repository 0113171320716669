package archive

// This file is one state machine (the verifying Reader) and the checks
// whose order it relies on; split, its invariants would be scattered.

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// Defaults of ReaderOptions.
const (
	DefaultMaxMemory = 256 << 20
	// DefaultMaxWindow is the window every writer of this package stays
	// within (libzstd.MaxWindowLog; the pure-Go encoder's default): the
	// decoder allocates whatever window a frame declares, outside any
	// budget of the target's.
	DefaultMaxWindow = 8 << 20
)

// tarBlock is the tar block size; members are padded to it and the
// end-of-archive marker is two zero blocks.
const tarBlock = 512

// maxZeroPadding bounds the zero bytes accepted after the end-of-archive
// marker. Writers that pad to a record size (GNU tar and bsdtar use 10 KiB
// by default) produce a few KiB; more is not a tar writer's doing.
const maxZeroPadding = 64 << 10

// maxHeader bounds the bytes of headers before one member's data: its
// header block and the PAX records a long or non-ASCII name and a
// sub-second time need (about 2.5 KiB for a 1,024-byte key). archive/tar
// follows any number of extended headers within one Next, each up to
// 1 MiB, none of it content: a 95 KB archive could make the target
// decompress 2 GiB before its first member.
const maxHeader = 16 * tarBlock

// drainBufferSize is the chunk Next reads an unread body in.
const drainBufferSize = 64 << 10

// ReaderOptions bounds the resources a Reader may spend on one archive.
type ReaderOptions struct {
	// MaxMemory caps the zstd decoder's window as MaxWindow does (the
	// lower applies: a streaming decoder's memory is its window); 0 means
	// DefaultMaxMemory.
	MaxMemory uint64
	// MaxWindow caps the zstd window a frame may ask for; 0 means
	// DefaultMaxWindow. Writers of this package use at most 8 MiB.
	MaxWindow uint64
	// MaxManifest caps the size of manifest.json; 0 means manifest.MaxSize,
	// which is also the upper bound.
	MaxManifest int64
	// BeforeManifest, if set, is called with manifest.json's size before
	// it is decoded (which takes a few times its size): a caller bounding
	// its memory waits there. Its error ends NewReader, as it is.
	BeforeManifest func(size int64) error
	// BeforeDecode, if set, is called after BeforeManifest with what
	// decoding manifest.json will take, once its objects are counted
	// (manifest.DecodeWithin): a dense one takes many times its size.
	BeforeDecode func(cost int64) error
}

// Reader reads an archive and verifies it while doing so: the manifest
// when the Reader is created, each object's size and digest as the caller
// reads it, and the end of the stream after the last object. It is not
// safe for concurrent use.
type Reader struct {
	src     sourceReader
	dec     *zstd.Decoder
	pos     countingReader // decompressed bytes the tar reader consumed
	tr      *tar.Reader
	m       *manifest.Manifest
	members map[string]int // member name -> object index
	sum     hash.Hash
	buf     []byte

	next    int         // index of the next object expected
	body    *objectBody // body returned by the last Next, until drained
	dataEnd int64       // decompressed offset where the last member's data ended
	lastLen int64       // size of that member
	lastSum []byte      // SHA-256 of the last object verified
	err     error       // sticky: io.EOF after a verified end, or the failure
}

// NewReader starts reading the archive r: it sets up a zstd decoder with
// the given limits (single goroutine, low-memory mode) and reads and
// validates manifest.json, which must be the first member. Call Close when
// done to release the decoder.
func NewReader(r io.Reader, opts ReaderOptions) (*Reader, error) {
	if opts.MaxMemory == 0 {
		opts.MaxMemory = DefaultMaxMemory
	}
	if opts.MaxWindow == 0 {
		opts.MaxWindow = DefaultMaxWindow
	}
	if opts.MaxManifest <= 0 || opts.MaxManifest > manifest.MaxSize {
		opts.MaxManifest = manifest.MaxSize
	}
	// The manifest's frame, the stream's first, must carry its content
	// checksum: the deletes and destinations in it are checked by nothing
	// else (members have their digests). A short stream is left to the
	// decoder to call truncated, a failing source to be passed on.
	// The source's errors are recorded beneath the peek: one there, taken
	// for a short stream, skipped the check and went unrecorded.
	rd := &Reader{src: sourceReader{r: r}, sum: sha256.New()}
	br := bufio.NewReaderSize(&rd.src, 16)
	switch head, err := br.Peek(5); {
	case err == nil && !checkedFrame(head):
		return nil, rd.wrap(nil, errors.New("the stream does not start with a zstd frame carrying a content checksum (the manifest's)"))
	case errors.Is(err, io.ErrNoProgress):
		// bufio's word for a source answering nothing, again and again.
		rd.src.err = err
		fallthrough
	case rd.src.err != nil:
		return nil, rd.wrap(nil, err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(opts.MaxMemory),
		zstd.WithDecoderMaxWindow(opts.MaxWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("archive: creating zstd decoder: %w", err)
	}
	rd.dec = dec
	// Reset after construction so the decoder sees only the buffered
	// wrapper: it must neither bypass error recording nor take in-memory
	// shortcuts.
	if err := dec.Reset(br); err != nil {
		dec.Close()
		return nil, rd.wrap(nil, fmt.Errorf("starting zstd stream: %w", err))
	}
	rd.pos.r = dec
	rd.pos.limit = math.MaxInt64
	rd.tr = tar.NewReader(&rd.pos)
	if err := rd.readManifest(opts); err != nil {
		dec.Close()
		return nil, err
	}
	return rd, nil
}

func (r *Reader) readManifest(opts ReaderOptions) error {
	limit := opts.MaxManifest
	hdr, err := r.nextHeader()
	if err != nil {
		if err == io.EOF {
			err = errors.New("empty tar stream, want manifest.json first")
		}
		return r.wrap(nil, err)
	}
	if hdr.Name != ManifestName {
		return r.wrap(nil, fmt.Errorf("first member is %s, want %s", printable(hdr.Name), ManifestName))
	}
	if err := checkType(hdr); err != nil {
		return r.wrap(nil, err)
	}
	if hdr.Size > limit {
		return r.wrap(nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", ManifestName, hdr.Size, limit))
	}
	if opts.BeforeManifest != nil {
		if err := opts.BeforeManifest(hdr.Size); err != nil {
			return err
		}
	}
	var hookErr error
	before := opts.BeforeDecode
	if before != nil {
		before = func(cost int64) error { hookErr = opts.BeforeDecode(cost); return hookErr }
	}
	m, err := manifest.DecodeWithin(r.tr, before)
	if hookErr != nil {
		return hookErr
	}
	if err != nil {
		if errors.Is(err, manifest.ErrInvalid) {
			return &Error{Member: ManifestName, Err: err}
		}
		return r.wrap(nil, err)
	}
	// The manifest's frame ends with the member's tar padding; the
	// decoder checks the frame's checksum only when asked for a byte past
	// its last block. Read up to the first byte after the frame, held back
	// for the tar reader: a manifest ending near a block boundary (128 KiB)
	// was otherwise returned unchecked.
	if err := r.pos.readAhead(int(padding(hdr.Size)) + 1); err != nil && err != io.EOF {
		return r.wrap(nil, err)
	}
	r.m = m
	r.dataEnd, r.lastLen = r.pos.n, hdr.Size
	r.members = make(map[string]int, len(m.Objects))
	for i := range m.Objects {
		if m.Objects[i].HasMember() {
			r.members[m.Objects[i].Member] = i
		}
	}
	r.skipMemberless()
	return nil
}

// Manifest returns the archive's manifest, validated.
func (r *Reader) Manifest() *manifest.Manifest { return r.m }

// Next advances to the next object that has a member, in manifest order,
// and returns its index in Manifest().Objects, the object, and a reader of
// its content. The body reader verifies the content as it goes: where it
// would return io.EOF it returns an *Error matching ErrSize or ErrChecksum
// if the content is not what the manifest (or the trailer member) says, so
// a caller streaming the body into an upload fails before completing it.
// Next reads and verifies whatever the caller left unread of the previous
// body.
//
// After the last object Next verifies the end of the archive (no further
// members, the end-of-archive marker, no trailing data, a complete zstd
// stream) and returns io.EOF. Invalid input yields errors matching
// ErrInvalid; failures of the underlying reader are returned wrapped as
// they are. Errors are sticky.
func (r *Reader) Next() (index int, obj *manifest.Object, body io.Reader, err error) {
	if r.err != nil {
		return -1, nil, nil, r.err
	}
	if b := r.body; b != nil {
		r.body = nil
		if err := b.drain(); err != nil {
			return -1, nil, nil, err // b set r.err
		}
	}
	if r.next >= len(r.m.Objects) {
		if err := r.finish(); err != nil {
			r.err = err
			return -1, nil, nil, err
		}
		r.err = io.EOF
		return -1, nil, nil, io.EOF
	}
	i := r.next
	o := &r.m.Objects[i]
	r.lastSum = r.lastSum[:0]
	hdr, err := r.nextHeader()
	if err == io.EOF {
		err = errors.New("archive ends before this object's member")
	}
	if err == nil {
		err = r.checkMember(hdr, i)
	}
	if err != nil {
		r.err = r.wrap(o, err)
		return -1, nil, nil, r.err
	}
	r.sum.Reset()
	r.body = &objectBody{r: r, index: i, obj: o, remaining: o.Size}
	return i, o, r.body, nil
}

// nextHeader reads the next member's headers, no more than maxHeader bytes
// of them past the end of the last member's data.
func (r *Reader) nextHeader() (*tar.Header, error) {
	r.pos.limit = r.dataEnd + padding(r.lastLen) + maxHeader
	hdr, err := r.tr.Next()
	r.pos.limit = math.MaxInt64
	if r.pos.over {
		return nil, fmt.Errorf("member headers longer than %d bytes: extended records a member does not need", maxHeader)
	}
	return hdr, err
}

// Close releases the decoder. Readers of bodies fail afterwards.
func (r *Reader) Close() {
	if r.err == nil || r.err == io.EOF {
		r.err = errors.New("archive: reader is closed")
	}
	r.dec.Close()
}

// checkMember checks that hdr is the member of objects[want].
func (r *Reader) checkMember(hdr *tar.Header, want int) error {
	o := &r.m.Objects[want]
	if err := manifest.SafeMember(hdr.Name); err != nil {
		return fmt.Errorf("unsafe member: %w", err)
	}
	if err := checkType(hdr); err != nil {
		return err
	}
	if hdr.Name != o.Member {
		got, ok := r.members[hdr.Name]
		switch {
		case ok && got < want:
			return fmt.Errorf("duplicate member %s (objects[%d])", printable(hdr.Name), got)
		case ok:
			return fmt.Errorf("member missing: found %s (objects[%d]) in its place", printable(hdr.Name), got)
		case strings.HasSuffix(hdr.Name, ".sha256"):
			return fmt.Errorf("unexpected trailer member %s", printable(hdr.Name))
		default:
			return fmt.Errorf("member %s is not in the manifest", printable(hdr.Name))
		}
	}
	if hdr.Size != o.Size {
		return fmt.Errorf("%w: member is %d bytes, manifest says %d", ErrSize, hdr.Size, o.Size)
	}
	return nil
}

// paxKeys are the extended records a member may carry: what a long or
// non-ASCII name, a large size and a sub-second time need.
var paxKeys = map[string]bool{"path": true, "size": true, "mtime": true}

// checkType accepts plain regular files as the writer makes them only: no
// links, devices, directories, FIFOs, global headers, no sparse files
// (whose holes would not be in the stream the digest covers); mode 0644,
// owned by uid and gid 0 with no names, and no other extended records
// (extended attributes, ACLs), which an operator extracting as root would
// otherwise apply: a setuid bit, an owner, a file capability.
func checkType(hdr *tar.Header) error {
	name := printable(hdr.Name)
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("member %s is a %s, only regular files are allowed", name, typeName(hdr.Typeflag))
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("member %s is a sparse file", name)
		}
		if !paxKeys[k] {
			return fmt.Errorf("member %s has extended record %s, only path, size and mtime are allowed", name, printable(k))
		}
	}
	if hdr.Mode != 0o644 {
		return fmt.Errorf("member %s has mode %#o, want 0644", name, hdr.Mode)
	}
	if hdr.Linkname != "" {
		return fmt.Errorf("member %s has a link target", name)
	}
	if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
		return fmt.Errorf("member %s is owned by %d:%d (%s:%s), want 0:0 and no names", name, hdr.Uid, hdr.Gid, printable(hdr.Uname), printable(hdr.Gname))
	}
	// A header Go reads as no one format mixes them (a PAX path record
	// and a GNU long name, say): tools differ on which name wins, so
	// GNU tar would extract the member under the name not checked here.
	if hdr.Format&tar.FormatGNU != 0 || hdr.Format&(tar.FormatUSTAR|tar.FormatPAX) == 0 {
		return fmt.Errorf("member %s has a GNU or mixed header, want PAX", name)
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeDir:
		return "directory"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeCont:
		return "contiguous file"
	case tar.TypeXGlobalHeader:
		return "PAX global header"
	case tar.TypeGNUSparse:
		return "GNU sparse file"
	default:
		return fmt.Sprintf("member of type %q", t)
	}
}

// finishObject runs when the last byte of b's content has been read: it
// checks the digest against the manifest or reads and checks the trailer.
func (r *Reader) finishObject(b *objectBody) error {
	got := hex.EncodeToString(r.sum.Sum(nil))
	o := b.obj
	r.dataEnd, r.lastLen = r.pos.n, o.Size
	if o.SHA256 != "" {
		if got != o.SHA256 {
			return fmt.Errorf("%w: content has %s, manifest says %s", ErrChecksum, got, o.SHA256)
		}
		return nil
	}
	want, err := r.readTrailer(o)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: content has %s, trailer says %s", ErrChecksum, got, want)
	}
	return nil
}

// readTrailer reads the trailer member that must follow o's member and
// returns the digest it carries.
func (r *Reader) readTrailer(o *manifest.Object) (string, error) {
	name := manifest.TrailerName(o.Member)
	hdr, err := r.nextHeader()
	if err == io.EOF {
		return "", fmt.Errorf("archive ends before trailer %s", printable(name))
	}
	if err != nil {
		return "", err
	}
	if hdr.Name != name {
		return "", fmt.Errorf("found member %s where trailer %s belongs", printable(hdr.Name), printable(name))
	}
	if err := checkType(hdr); err != nil {
		return "", err
	}
	base := path.Base(o.Member)
	size := sha256.Size*2 + len("  ") + len(base) + len("\n")
	if hdr.Size != int64(size) {
		return "", fmt.Errorf("trailer %s is %d bytes, want %d", printable(name), hdr.Size, size)
	}
	line := make([]byte, size)
	if _, err := io.ReadFull(r.tr, line); err != nil {
		return "", fmt.Errorf("reading trailer %s: %w", printable(name), err)
	}
	r.dataEnd, r.lastLen = r.pos.n, hdr.Size
	sum, rest, ok := strings.Cut(string(line), "  ")
	if !ok || len(sum) != sha256.Size*2 || strings.Trim(sum, "0123456789abcdef") != "" || rest != base+"\n" {
		return "", fmt.Errorf("trailer %s is not a sha256sum line for %s", printable(name), printable(base))
	}
	return sum, nil
}

// finish verifies what follows the last object: nothing but the tar
// end-of-archive marker, optional zero padding, and the end of a complete
// zstd stream.
func (r *Reader) finish() error {
	hdr, err := r.nextHeader()
	if err == nil {
		return r.wrap(nil, fmt.Errorf("unexpected member %s after the last object", printable(hdr.Name)))
	}
	if err != io.EOF {
		return r.wrap(nil, err)
	}
	// archive/tar also reports io.EOF when the stream just stops at a
	// header boundary; only the full two-block marker proves nothing was
	// cut off.
	if want := r.dataEnd + padding(r.lastLen) + 2*tarBlock; r.pos.n != want {
		return r.wrap(nil, errors.New("truncated: tar end-of-archive marker is missing"))
	}
	if r.buf == nil {
		r.buf = make([]byte, drainBufferSize)
	}
	var extra int
	for {
		n, err := r.dec.Read(r.buf)
		for _, c := range r.buf[:n] {
			if c != 0 {
				return r.wrap(nil, errors.New("data after the end of the tar stream"))
			}
		}
		if extra += n; extra > maxZeroPadding {
			return r.wrap(nil, fmt.Errorf("more than %d bytes of padding after the end of the tar stream", maxZeroPadding))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.wrap(nil, err)
		}
	}
}

// wrap classifies err: failures of the caller's reader are returned as they
// are (wrapped), everything else is the archive's fault and becomes *Error.
func (r *Reader) wrap(o *manifest.Object, err error) error {
	var id string
	if r.m != nil {
		id = r.m.ArchiveID
	}
	if r.src.err != nil {
		if id == "" {
			return fmt.Errorf("archive: reading: %w", r.src.err)
		}
		return fmt.Errorf("archive %s: reading: %w", id, r.src.err)
	}
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("truncated: %w", err)
	}
	e := &Error{ArchiveID: id, Err: err}
	if o != nil {
		e.Bucket, e.Key, e.Member = o.Bucket, o.Key, o.Member
	}
	return e
}

func (r *Reader) skipMemberless() {
	for r.next < len(r.m.Objects) && !r.m.Objects[r.next].HasMember() {
		r.next++
	}
}

func padding(size int64) int64 { return -size & (tarBlock - 1) }

// objectBody is the verifying reader of one object's content.
type objectBody struct {
	r         *Reader
	index     int
	obj       *manifest.Object
	remaining int64
	err       error // io.EOF once verified
}

func (b *objectBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.r.err != nil { // reader closed or failed elsewhere
		b.err = b.r.err
		return 0, b.err
	}
	if b.remaining == 0 {
		return 0, b.end()
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.tr.Read(p)
	b.r.sum.Write(p[:n])
	b.remaining -= int64(n)
	if b.remaining == 0 {
		// The verdict comes with the last bytes and again on every later
		// Read. A caller must still read to io.EOF: io.ReadFull drops an
		// error that comes with the bytes it asked for.
		return n, b.end()
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the header promised more
	}
	if err != nil {
		b.err = b.r.wrap(b.obj, err)
		b.r.err = b.err
		return n, b.err
	}
	return n, nil
}

// end verifies the object and records the outcome.
func (b *objectBody) end() error {
	if err := b.r.finishObject(b); err != nil {
		b.err = b.r.wrap(b.obj, err)
		b.r.err = b.err
		return b.err
	}
	b.r.lastSum = b.r.sum.Sum(b.r.lastSum[:0])
	b.r.next = b.index + 1
	b.r.skipMemberless()
	b.err = io.EOF
	return io.EOF
}

// Sum returns the SHA-256 of the object whose body last ended verified (its
// reader returned io.EOF), so a caller need not hash the content again;
// none (an empty slice) while the current object is not verified.
func (r *Reader) Sum() []byte { return append([]byte(nil), r.lastSum...) }

// drain reads and verifies what the caller left unread.
func (b *objectBody) drain() error {
	if b.r.buf == nil {
		b.r.buf = make([]byte, drainBufferSize)
	}
	for {
		_, err := b.Read(b.r.buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sourceReader remembers the first error of the caller's reader, so that
// failures to read can be told apart from invalid content.
// checkedFrame reports whether head, a stream's first five bytes, opens a
// zstd frame (not a skippable one) whose descriptor sets
// Content_Checksum_flag (RFC 8878, 3.1.1).
func checkedFrame(head []byte) bool {
	return binary.LittleEndian.Uint32(head) == 0xFD2FB528 && head[4]&0x04 != 0
}

type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// countingReader counts the bytes read through it and reads none past
// limit; over records that it stopped there.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
	over  bool
	ahead []byte // read from r ahead of the caller (readAhead), not counted yet
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		c.over = true
		return 0, io.ErrUnexpectedEOF
	}
	if room := c.limit - c.n; int64(len(p)) > room {
		p = p[:room]
	}
	if len(c.ahead) > 0 && len(p) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		c.n += int64(n)
		return n, nil
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readAhead reads up to n bytes from r for the next Reads to return, so
// that r has decoded up to them; r's error is returned as r gave it (the
// decoder's io.EOF is a clean end of stream, its io.ErrUnexpectedEOF a
// frame cut short, checksum unread).
func (c *countingReader) readAhead(n int) error {
	buf := make([]byte, n)
	got := 0
	var err error
	for got < n && err == nil {
		var k int
		k, err = c.r.Read(buf[got:])
		got += k
	}
	c.ahead = buf[:got]
	return err
}
