package archive

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is matched (errors.Is) by every error reporting that an
// archive does not follow the format: corrupt or truncated compression,
// unexpected or unsafe members, manifest problems, size and digest
// mismatches.
var ErrInvalid = errors.New("invalid archive")

// ErrChecksum reports that an object's content does not match its SHA-256
// (from the manifest or its trailer member) or, when the archive is
// written, the source's own checksum the manifest gives. It matches
// ErrInvalid too.
var ErrChecksum error = &kindError{"checksum mismatch"}

// ErrSize reports that an object's content is not the size the manifest
// gives. It matches ErrInvalid too.
var ErrSize error = &kindError{"size mismatch"}

// kindError is a sentinel that refines ErrInvalid.
type kindError struct{ msg string }

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return ErrInvalid }

// Error describes why an archive, or one object in it, was rejected. Empty
// fields are unknown or do not apply (ArchiveID is empty until the manifest
// is read; Bucket, Key and Member are empty for archive-level problems).
type Error struct {
	ArchiveID string
	Bucket    string
	Key       string
	Member    string
	Err       error
}

// Error formats as
// "invalid archive <id>: object <bucket>/<key> (<member>): <err>",
// leaving out the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid archive")
	if e.ArchiveID != "" {
		b.WriteString(" " + printable(e.ArchiveID))
	}
	switch {
	case e.Key != "" || e.Bucket != "":
		b.WriteString(": object ")
		if e.Bucket != "" {
			b.WriteString(printable(e.Bucket) + "/")
		}
		b.WriteString(printable(e.Key))
		if e.Member != "" {
			b.WriteString(" (" + printable(e.Member) + ")")
		}
	case e.Member != "":
		b.WriteString(": member " + printable(e.Member))
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes every *Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// printable returns s unchanged when it is short, valid UTF-8 without
// control characters, and a quoted, shortened form otherwise: names come
// from hostile archives and end up in logs.
func printable(s string) string {
	const limit = 256
	if len(s) <= limit && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("...(%d bytes)", len(s))
}
