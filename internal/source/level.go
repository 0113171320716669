package source

import (
	"path"
	"slices"
	"strings"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// levelFor is where an object's compression level is chosen: already
// compressed content is stored at the fastest level, since zstd cannot
// shrink it and higher levels only burn CPU; everything else gets the
// rule's level.
func levelFor(o *manifest.Object, level int) int {
	if level <= 1 || !precompressed(o) {
		return level
	}
	return 1
}

var compressedTypes = []string{"image/", "video/", "audio/", "application/zip", "application/gzip", "application/x-gzip",
	"application/zstd", "application/x-bzip2", "application/x-xz", "application/x-7z-compressed", "application/vnd.apache.parquet"}

var compressedExts = []string{".gz", ".tgz", ".zst", ".bz2", ".xz", ".zip", ".7z", ".jpg", ".jpeg", ".png", ".gif", ".webp",
	".mp4", ".mov", ".mkv", ".mp3", ".aac", ".parquet", ".orc", ".avro", ".snappy", ".lz4", ".br"}

func precompressed(o *manifest.Object) bool {
	if o.ContentEncoding == "gzip" || o.ContentEncoding == "br" || o.ContentEncoding == "zstd" {
		return true
	}
	for _, t := range compressedTypes {
		if strings.HasPrefix(o.ContentType, t) && o.ContentType != "image/svg+xml" {
			return true
		}
	}
	ext := strings.ToLower(path.Ext(o.Key))
	return slices.Contains(compressedExts, ext)
}
