//go:build (amd64 || arm64) && !noasm && !appengine && !gccgo

package checksum

import (
	"runtime"

	"github.com/klauspost/cpuid/v2"
)

// simdCRC64 is minio/crc64nvme's own test (v1.1.1) for its SIMD code,
// under the same build tags.
var simdCRC64 = map[string]bool{
	"amd64": cpuid.CPU.Supports(cpuid.SSE2, cpuid.CLMUL, cpuid.SSE4),
	"arm64": cpuid.CPU.Supports(cpuid.ASIMD, cpuid.PMULL, cpuid.SHA3),
}[runtime.GOARCH]
