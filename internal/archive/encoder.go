package archive

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/libzstd"
)

// frameEncoder writes zstd frames. Reset abandons any frame in progress and
// starts one at level on dst (a nil dst detaches it); Close ends the frame
// and writes the rest of it.
type frameEncoder interface {
	Reset(dst io.Writer, level int) error
	Write(p []byte) (int, error)
	// Flush writes out what was written so far, the frame going on.
	Flush() error
	Close() error
	// effective maps a zstd level to the setting the encoder really uses;
	// levels with the same setting share a frame.
	effective(level int) int
	name() string
	// resetSmall starts a frame for a few KiB (the tar framing around a
	// stored object), cheap to start.
	resetSmall(dst io.Writer) error
}

// newFrameEncoder returns libzstd's encoder when the build has it (cgo),
// unless pureGo is set, and the pure-Go one otherwise.
func newFrameEncoder(concurrency int, pureGo bool) (frameEncoder, error) {
	if !libzstd.Available || pureGo {
		return &goEncoder{concurrency: concurrency, encoders: map[zstd.EncoderLevel]*zstd.Encoder{}}, nil
	}
	workers := 0
	if concurrency > 1 {
		workers = concurrency
	}
	e, err := libzstd.NewEncoder(workers)
	if err != nil {
		return nil, err
	}
	small, err := libzstd.NewEncoder(0)
	if err != nil {
		return nil, err
	}
	return &cEncoder{main: e, small: small, cur: e}, nil
}

// cEncoder is libzstd, which has a setting per level. Small frames (the
// tar framing around stored objects) get a context of their own: one that
// compressed at a high level keeps a large workspace, and starting many
// small frames in it costs far more than the frames themselves.
type cEncoder struct {
	main, small, cur *libzstd.Encoder
}

func (c *cEncoder) Reset(dst io.Writer, level int) error {
	if err := c.small.Reset(nil, 0); err != nil {
		return err
	}
	c.cur = c.main
	return c.main.Reset(dst, level)
}

func (c *cEncoder) resetSmall(dst io.Writer) error {
	if err := c.main.Reset(nil, 0); err != nil {
		return err
	}
	c.cur = c.small
	return c.small.ResetSmall(dst)
}

func (c *cEncoder) Write(p []byte) (int, error) { return c.cur.Write(p) }
func (c *cEncoder) Close() error                { return c.cur.Close() }
func (c *cEncoder) Flush() error                { return c.cur.Flush() }
func (*cEncoder) effective(level int) int       { return level }
func (*cEncoder) name() string                  { return "libzstd " + libzstd.Version() }

// goEncoder is github.com/klauspost/compress/zstd, which maps zstd levels
// onto four encoders (zstd.EncoderLevelFromZstd). It keeps one encoder per
// setting in use, as each owns its window and tables.
type goEncoder struct {
	concurrency int
	encoders    map[zstd.EncoderLevel]*zstd.Encoder
	cur         *zstd.Encoder
}

func (g *goEncoder) effective(level int) int        { return int(zstd.EncoderLevelFromZstd(level)) }
func (g *goEncoder) resetSmall(dst io.Writer) error { return g.Reset(dst, 1) }
func (g *goEncoder) name() string                   { return "klauspost/compress (pure Go)" }

func (g *goEncoder) Reset(dst io.Writer, level int) error {
	if g.cur != nil {
		// Waits for the encoder's goroutines, so none writes to the old
		// destination afterwards, and unpins it.
		g.cur.Reset(nil)
		g.cur = nil
	}
	if dst == nil {
		return nil
	}
	l := zstd.EncoderLevelFromZstd(level)
	enc, ok := g.encoders[l]
	if !ok {
		var err error
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(l),
			zstd.WithEncoderCRC(true),
			zstd.WithEncoderConcurrency(g.concurrency),
			// A frame left empty by back-to-back SetLevel calls is
			// skipped instead of written as a 0-byte frame.
			zstd.WithZeroFrames(false),
		)
		if err != nil {
			return fmt.Errorf("creating zstd encoder at %s: %w", l, err)
		}
		g.encoders[l] = enc
	}
	enc.Reset(dst)
	g.cur = enc
	return nil
}

func (g *goEncoder) Write(p []byte) (int, error) { return g.cur.Write(p) }
func (g *goEncoder) Close() error                { return g.cur.Close() }
func (g *goEncoder) Flush() error                { return g.cur.Flush() }
