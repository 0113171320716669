package archive

import (
	"encoding/binary"
	"io"

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

// frames is the Writer's encoder: zstd frames from the build's encoder,
// and, for the content of stored objects, raw frames in between.
type frames struct {
	zstd  frameEncoder
	raw   *rawFrames
	dst   io.Writer
	inRaw bool
	small bool // the zstd frame is a small one (framing around stored objects)
}

// Reset starts a zstd frame at level on dst (nil detaches).
func (f *frames) Reset(dst io.Writer, level int) error {
	f.raw.Reset(nil)
	f.dst, f.inRaw, f.small = dst, false, false
	return f.zstd.Reset(dst, level)
}

// toRaw ends the zstd frame and starts a raw one.
func (f *frames) toRaw() error {
	if err := f.zstd.Close(); err != nil {
		return err
	}
	if err := f.zstd.Reset(nil, 0); err != nil {
		return err
	}
	f.raw.Reset(f.dst)
	f.inRaw = true
	return nil
}

// toSmall ends the raw frame and starts a small zstd frame for the tar
// framing that follows.
func (f *frames) toSmall() error {
	if err := f.raw.Close(); err != nil {
		return err
	}
	f.raw.Reset(nil)
	return f.toSmallFrame()
}

// toSmallFrame starts a small zstd frame (the previous one ended) for the
// tar framing of a stored object.
func (f *frames) toSmallFrame() error {
	f.inRaw, f.small = false, true
	return f.zstd.resetSmall(f.dst)
}

func (f *frames) Write(p []byte) (int, error) {
	if f.inRaw {
		return f.raw.Write(p)
	}
	return f.zstd.Write(p)
}

// Flush writes out what the zstd frame holds, the frame going on (a raw
// frame holds nothing back).
func (f *frames) Flush() error {
	if f.inRaw {
		return nil
	}
	return f.zstd.Flush()
}

func (f *frames) Close() error {
	if f.inRaw {
		return f.raw.Close()
	}
	return f.zstd.Close()
}

func (f *frames) effective(level int) int { return f.zstd.effective(level) }
func (f *frames) name() string            { return f.zstd.name() }
