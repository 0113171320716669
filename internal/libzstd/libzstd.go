// Package libzstd is a streaming zstd encoder backed by the reference C
// library, for builds with cgo.
//
// At equal compression ratio libzstd needs roughly 0.6-0.8x the CPU of the
// pure-Go encoder on text-like data, and it offers every level from 1 to
// 22 where the pure-Go encoder offers four. Compression is the source
// worker's bottleneck, so its images are built with cgo. Without cgo,
// Available is false and callers fall back to
// github.com/klauspost/compress/zstd, which is always used for decoding.
//
// The C library is compiled and linked by github.com/DataDog/zstd, which
// vendors it. Its own streaming Writer cannot write frame checksums or be
// reused across frames, so this package drives the library's stable
// streaming API (ZSTD_compressStream2) directly.
package libzstd

import (
	"errors"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// MinLevel and MaxLevel bound the compression levels Reset accepts
// (manifest.CheckLevel); negative levels are zstd's fast ones.
const (
	MinLevel = manifest.MinLevel
	MaxLevel = manifest.MaxLevel
)

// MaxWindowLog caps the window of every frame at 8 MiB, the window of level
// 19, so decoders can bound their memory. Levels 20-22 would otherwise ask
// for up to 128 MiB.
const MaxWindowLog = 23

// ErrUnavailable is returned by NewEncoder in builds without cgo.
var ErrUnavailable = errors.New("libzstd: not available (built without cgo)")
