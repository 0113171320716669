package archive

import (
	"encoding/binary"
	"io"
	"math"

	"github.com/cespare/xxhash/v2"
)

// Store is the level that stores objects instead of compressing them: raw
// zstd blocks in a frame with a content checksum, readable by every zstd
// decoder. It costs a copy and a checksum (several GB per CPU-second),
// where even zstd's fastest level spends ten times that on bytes it
// cannot shrink. 0 is no zstd level, so it cannot be taken for one.
const Store = 0

// rawBlockMax is the largest zstd block, and the window the raw frames
// declare: a decoder needs no more memory than one block.
const rawBlockMax = 128 << 10

// rawFrames writes zstd frames made of raw (uncompressed) blocks.
type rawFrames struct {
	dst     io.Writer
	buf     []byte // the block being filled, up to rawBlockMax
	started bool   // the frame header is written
	sum     *xxhash.Digest
	hdr     [6]byte
}

func newRawFrames() *rawFrames {
	return &rawFrames{buf: make([]byte, 0, rawBlockMax), sum: xxhash.New()}
}

// Reset abandons any frame in progress and starts one on dst. The header is
// written with the first byte, so a frame left empty writes nothing.
func (r *rawFrames) Reset(dst io.Writer) {
	r.dst, r.buf, r.started = dst, r.buf[:0], false
	r.sum.Reset()
}

func (r *rawFrames) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(r.buf) == rawBlockMax {
			// Only now is it known that this block is not the last.
			if err := r.flush(false); err != nil {
				return n - len(p), err
			}
		}
		k := copy(r.buf[len(r.buf):rawBlockMax], p)
		r.buf = r.buf[:len(r.buf)+k]
		r.sum.Write(p[:k])
		p = p[k:]
	}
	return n, nil
}

// Close writes the last block and the content checksum.
func (r *rawFrames) Close() error {
	if !r.started && len(r.buf) == 0 {
		return nil
	}
	if err := r.flush(true); err != nil {
		return err
	}
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], uint32(r.sum.Sum64()))
	_, err := r.dst.Write(c[:])
	return err
}

func (r *rawFrames) flush(last bool) error {
	h := r.hdr[:0]
	if !r.started {
		// Magic number; descriptor: content checksum, no content size,
		// not single-segment; window descriptor: 2^17 bytes.
		h = binary.LittleEndian.AppendUint32(h, 0xFD2FB528)
		h = append(h, 0x04, byte(17-10)<<3)
		r.started = true
	}
	// Block header: last-block bit, type raw (0), size in the upper 21 bits.
	bh := uint32(len(r.buf)) << 3
	if last {
		bh |= 1
	}
	h = append(h, byte(bh), byte(bh>>8), byte(bh>>16))
	if _, err := r.dst.Write(h); err != nil {
		return err
	}
	if _, err := r.dst.Write(r.buf); err != nil {
		return err
	}
	r.buf = r.buf[:0]
	return nil
}

// storing wraps a zstd frameEncoder so that the Store level writes raw
// frames and every other level goes to the zstd encoder.
type storing struct {
	zstd frameEncoder
	raw  *rawFrames
	cur  io.Writer
	cls  func() error
}

func (s *storing) Reset(dst io.Writer, level int) error {
	s.raw.Reset(nil)
	if level == Store {
		if err := s.zstd.Reset(nil, 0); err != nil {
			return err
		}
		s.raw.Reset(dst)
		s.cur, s.cls = s.raw, s.raw.Close
		return nil
	}
	s.cur, s.cls = s.zstd, s.zstd.Close
	return s.zstd.Reset(dst, level)
}

func (s *storing) Write(p []byte) (int, error) { return s.cur.Write(p) }
func (s *storing) Close() error                { return s.cls() }
func (s *storing) name() string                { return s.zstd.name() }

func (s *storing) effective(level int) int {
	if level == Store {
		return math.MinInt
	}
	return s.zstd.effective(level)
}
