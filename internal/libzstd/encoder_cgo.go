//go:build cgo

package libzstd

/*
#include <stddef.h>

// Declarations from zstd.h, whose streaming API has been stable since
// libzstd 1.4.0. The enum arguments are passed as int, as the C ABI does.
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct { const void* src; size_t size; size_t pos; } ZSTD_inBuffer;
typedef struct { void* dst; size_t size; size_t pos; } ZSTD_outBuffer;
ZSTD_CCtx* ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
size_t ZSTD_CCtx_reset(ZSTD_CCtx* cctx, int reset);
size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, int param, int value);
size_t ZSTD_compressStream2(ZSTD_CCtx* cctx, ZSTD_outBuffer* output, ZSTD_inBuffer* input, int endOp);
size_t ZSTD_CStreamOutSize(void);
size_t ZSTD_sizeof_CCtx(const ZSTD_CCtx* cctx);
unsigned ZSTD_isError(size_t code);
const char* ZSTD_getErrorName(size_t code);
const char* ZSTD_versionString(void);

enum {
	xrc_reset_session_only = 1,
	xrc_c_compressionLevel = 100,
	xrc_c_windowLog = 101,
	xrc_c_hashLog = 102,
	xrc_c_chainLog = 103,
	xrc_c_checksumFlag = 201,
	xrc_c_nbWorkers = 400,
	xrc_e_continue = 0,
	xrc_e_flush = 1,
	xrc_e_end = 2,
};

typedef struct { size_t ret; size_t in; size_t out; } xrc_step;

// xrc_compress runs one ZSTD_compressStream2 step and returns what it
// consumed and produced, so Go needs no C-allocated buffer structs.
static xrc_step xrc_compress(ZSTD_CCtx* c, void* dst, size_t dstSize, const void* src, size_t srcSize, int end) {
	ZSTD_outBuffer out = { dst, dstSize, 0 };
	ZSTD_inBuffer in = { src, srcSize, 0 };
	xrc_step s;
	s.ret = ZSTD_compressStream2(c, &out, &in, end);
	s.in = in.pos;
	s.out = out.pos;
	return s;
}
*/
import "C"

import (
	"fmt"
	"io"
	"runtime"
	"unsafe"

	"github.com/xrc-dev/xrc/internal/manifest"

	// Compiles and links libzstd; this package calls it through cgo.
	_ "github.com/DataDog/zstd"
)

// Available reports whether this build has libzstd.
const Available = true

// Version returns the version of the linked libzstd, such as "1.5.7".
func Version() string { return C.GoString(C.ZSTD_versionString()) }

// Encoder writes zstd frames, each ending with a content checksum, to an
// io.Writer. One Encoder keeps one compression context and reuses its
// memory for every frame, whatever the level. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	c   *cctx
	out []byte
	dst io.Writer
	err error // sticky: the frame is unusable after a failure
	// Frames with nothing in them are not written (an empty one is 13
	// bytes), as the pure-Go encoder does: a level switched before any
	// object's bytes left one, charged to the object before it. After
	// Close, Write is refused until Reset (as the pure-Go encoder does) and
	// Flush too (that one flushes nothing).
	data   bool // the frame has had input
	closed bool // Close ended the frame; Reset starts the next
}

// cctx owns the C context, freed by a cleanup once the Encoder is garbage.
type cctx struct{ p *C.ZSTD_CCtx }

// NewEncoder returns an Encoder that uses workers threads of libzstd's own
// (0 compresses on the calling goroutine). Call Reset to start a frame.
func NewEncoder(workers int) (*Encoder, error) {
	p := C.ZSTD_createCCtx()
	if p == nil {
		return nil, fmt.Errorf("libzstd: creating a compression context: out of memory")
	}
	e := &Encoder{c: &cctx{p}, out: make([]byte, int(C.ZSTD_CStreamOutSize()))}
	runtime.AddCleanup(e, func(c *cctx) { C.ZSTD_freeCCtx(c.p) }, e.c)
	if err := e.set(C.xrc_c_checksumFlag, 1); err != nil {
		return nil, err
	}
	if workers > 0 {
		if err := e.set(C.xrc_c_nbWorkers, workers); err != nil {
			return nil, fmt.Errorf("libzstd: %d worker threads: %w", workers, err)
		}
	}
	return e, nil
}

// Reset abandons any frame in progress and starts a new one at level on
// dst. A nil dst detaches the Encoder from its last destination.
func (e *Encoder) Reset(dst io.Writer, level int) error {
	e.dst, e.err, e.data, e.closed = dst, nil, false, false
	if r := C.ZSTD_CCtx_reset(e.c.p, C.xrc_reset_session_only); C.ZSTD_isError(r) != 0 {
		return e.fail(errorf("reset", r))
	}
	if dst == nil {
		return nil
	}
	if err := manifest.CheckLevel(level); err != nil {
		return e.fail(fmt.Errorf("libzstd: %w", err))
	}
	if err := e.set(C.xrc_c_compressionLevel, level); err != nil {
		return e.fail(fmt.Errorf("libzstd: level %d: %w", level, err))
	}
	// 0 means the level's own window, which is within the cap up to 19.
	if level <= 19 {
		return e.tables(0, 0, 0)
	}
	// Above 19 the window is capped, and the tables with it: libzstd fits
	// them to the window only when it knows the input's size, which a
	// stream never tells it, so level 22 kept its 2^27 chain and 2^25
	// hash entries, a 649 MiB context (137 MiB now) outside Go's memory
	// limit. A table of more than twice the window indexes nothing more;
	// libzstd's own fit (hash and chain logs at most windowLog+1) keeps
	// the ratio.
	return e.tables(MaxWindowLog, ultraTables[level-20][0], ultraTables[level-20][1])
}

// ultraTables are the hash and chain logs of levels 20, 21 and 22 (libzstd's
// for inputs over 256 KiB, hash/chain: 23/25, 24/26, 25/27) fitted to
// MaxWindowLog.
var ultraTables = [3][2]int{{23, MaxWindowLog + 1}, {MaxWindowLog + 1, MaxWindowLog + 1}, {MaxWindowLog + 1, MaxWindowLog + 1}}

// size is the memory the context holds (C memory: neither Go's GC nor
// GOMEMLIMIT sees it).
func (e *Encoder) size() int { return int(C.ZSTD_sizeof_CCtx(e.c.p)) }

// ResetSmall starts a frame on dst for a few KiB of data (the tar headers
// around a stored object): level 1 with the smallest window and tables,
// since a frame clears its tables when it starts, and the tables of a
// real level are hundreds of KiB.
func (e *Encoder) ResetSmall(dst io.Writer) error {
	if err := e.Reset(dst, 1); err != nil {
		return err
	}
	return e.tables(10, 6, 6)
}

// tables sets the window and table sizes (log2; 0: the level's own).
func (e *Encoder) tables(windowLog, hashLog, chainLog int) error {
	if err := e.set(C.xrc_c_windowLog, windowLog); err != nil {
		return e.fail(fmt.Errorf("libzstd: window log %d: %w", windowLog, err))
	}
	if err := e.set(C.xrc_c_hashLog, hashLog); err != nil {
		return e.fail(fmt.Errorf("libzstd: hash log %d: %w", hashLog, err))
	}
	if err := e.set(C.xrc_c_chainLog, chainLog); err != nil {
		return e.fail(fmt.Errorf("libzstd: chain log %d: %w", chainLog, err))
	}
	return nil
}

// Write compresses p into the current frame, writing whatever compressed
// output libzstd produces to the destination.
func (e *Encoder) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.dst == nil {
		return 0, fmt.Errorf("libzstd: Write without Reset")
	}
	if e.closed {
		return 0, fmt.Errorf("libzstd: Write after Close")
	}
	e.data = e.data || len(p) > 0
	n := 0
	for n < len(p) {
		in := p[n:]
		s := C.xrc_compress(e.c.p, unsafe.Pointer(&e.out[0]), C.size_t(len(e.out)),
			unsafe.Pointer(&in[0]), C.size_t(len(in)), C.xrc_e_continue)
		runtime.KeepAlive(p)
		if C.ZSTD_isError(s.ret) != 0 {
			return n, e.fail(errorf("compressing", s.ret))
		}
		n += int(s.in)
		if err := e.flush(int(s.out)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Close ends the frame (with its checksum) and writes what remains of it;
// a frame with nothing in it is not written. It does not close the
// destination; Reset starts the next frame.
func (e *Encoder) Close() error {
	if e.closed && e.err == nil {
		return nil
	}
	err := e.drain(C.xrc_e_end, "Close", "ending frame")
	e.closed = e.dst != nil
	return err
}

// Flush writes out everything written so far as complete blocks, without
// ending the frame: what follows still refers back to it.
func (e *Encoder) Flush() error {
	if e.closed && e.err == nil {
		return fmt.Errorf("libzstd: Flush after Close")
	}
	return e.drain(C.xrc_e_flush, "Flush", "flushing")
}

// drain runs the directive op until libzstd has written all it must.
func (e *Encoder) drain(op C.int, call, what string) error {
	if e.err != nil {
		return e.err
	}
	if e.dst == nil {
		return fmt.Errorf("libzstd: %s without Reset", call)
	}
	if !e.data {
		return nil // nothing to write: no frame
	}
	for {
		s := C.xrc_compress(e.c.p, unsafe.Pointer(&e.out[0]), C.size_t(len(e.out)), nil, 0, op)
		if C.ZSTD_isError(s.ret) != 0 {
			return e.fail(errorf(what, s.ret))
		}
		if err := e.flush(int(s.out)); err != nil {
			return err
		}
		if s.ret == 0 { // done, and all of it written
			return nil
		}
	}
}

func (e *Encoder) flush(n int) error {
	if n == 0 {
		return nil
	}
	if _, err := e.dst.Write(e.out[:n]); err != nil {
		return e.fail(err)
	}
	return nil
}

func (e *Encoder) set(param C.int, value int) error {
	if r := C.ZSTD_CCtx_setParameter(e.c.p, param, C.int(value)); C.ZSTD_isError(r) != 0 {
		return errorf("setting a parameter", r)
	}
	return nil
}

func (e *Encoder) fail(err error) error {
	e.err = err
	return err
}

func errorf(op string, code C.size_t) error {
	return fmt.Errorf("libzstd: %s: %s", op, C.GoString(C.ZSTD_getErrorName(code)))
}
