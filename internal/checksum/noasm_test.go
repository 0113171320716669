//go:build noasm

package checksum

import "testing"

// TestNoasmIsNotFast: built without minio/crc64nvme's assembly (as make
// test does once), CRC64NVME runs its table code and is not cheap, so the
// source leaves its check to S3.
func TestNoasmIsNotFast(t *testing.T) {
	if CRC64NVME.Fast() {
		t.Error("CRC64NVME taken for fast without its SIMD code")
	}
}
