//go:build !cgo

package libzstd

import "io"

// Available reports whether this build has libzstd.
const Available = false

// Version returns "" in builds without libzstd.
func Version() string { return "" }

// Encoder is a stand-in in builds without cgo; NewEncoder never returns one.
type Encoder struct{}

// NewEncoder returns ErrUnavailable in builds without cgo.
func NewEncoder(workers int) (*Encoder, error) { return nil, ErrUnavailable }

// Reset returns ErrUnavailable.
func (*Encoder) Reset(io.Writer, int) error { return ErrUnavailable }

// ResetSmall returns ErrUnavailable.
func (*Encoder) ResetSmall(io.Writer) error { return ErrUnavailable }

// Write returns ErrUnavailable.
func (*Encoder) Write([]byte) (int, error) { return 0, ErrUnavailable }

// Close returns ErrUnavailable.
func (*Encoder) Close() error { return ErrUnavailable }

// Flush returns ErrUnavailable.
func (*Encoder) Flush() error { return ErrUnavailable }
