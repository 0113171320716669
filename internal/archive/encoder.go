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
	Close() error
	// effective maps a zstd level to the setting the encoder really uses;
	// levels with the same setting share a frame.
	effective(level int) int
	name() string
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
	return cEncoder{e}, nil
}

// cEncoder is libzstd, which has a setting per level.
type cEncoder struct{ *libzstd.Encoder }

func (cEncoder) effective(level int) int { return level }
func (cEncoder) name() string            { return "libzstd " + libzstd.Version() }

// goEncoder is github.com/klauspost/compress/zstd, which maps zstd levels
// onto four encoders (zstd.EncoderLevelFromZstd). It keeps one encoder per
// setting in use, as each owns its window and tables.
type goEncoder struct {
	concurrency int
	encoders    map[zstd.EncoderLevel]*zstd.Encoder
	cur         *zstd.Encoder
}

func (g *goEncoder) effective(level int) int { return int(zstd.EncoderLevelFromZstd(level)) }
func (g *goEncoder) name() string            { return "klauspost/compress (pure Go)" }

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
