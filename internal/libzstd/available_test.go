package libzstd

import (
	"os"
	"testing"
)

// TestBuiltWithLibzstd: CI must test the encoder the source ships
// (Dockerfile.source builds with cgo); a machine without a C compiler
// would otherwise pass on the pure-Go fallback alone. A run that asks for
// the fallback (CGO_ENABLED=0, as make test does once) is what it says.
func TestBuiltWithLibzstd(t *testing.T) {
	if !Available && os.Getenv("CI") != "" && os.Getenv("CGO_ENABLED") != "0" {
		t.Fatal("built without cgo: libzstd, the source's encoder, is not tested; install a C compiler (gcc) and set CGO_ENABLED=1")
	}
}
