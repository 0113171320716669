// Package checksum is S3's additional checksums: the algorithms, the
// hashes that compute them, and the base64 form S3 gives and takes.
//
// A source object's own full-object checksum travels in the manifest; the
// source checks it against the bytes it archives, and the target writes
// the destinations with it, so S3 checks what it stores against the
// checksum the source object has.
package checksum

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"hash/crc32"
	"runtime"
	"slices"

	"github.com/klauspost/cpuid/v2"
	"github.com/minio/crc64nvme"
)

// Algorithm is an S3 checksum algorithm, as x-amz-checksum-algorithm
// names it.
type Algorithm string

// The algorithms S3 keeps a full-object checksum of.
const (
	CRC32     Algorithm = "CRC32"
	CRC32C    Algorithm = "CRC32C"
	CRC64NVME Algorithm = "CRC64NVME"
	SHA1      Algorithm = "SHA1"
	SHA256    Algorithm = "SHA256"
	// S3 keeps these too; xrc neither computes nor writes them.
	SHA512    Algorithm = "SHA512"
	MD5       Algorithm = "MD5"
	XXHASH64  Algorithm = "XXHASH64"
	XXHASH3   Algorithm = "XXHASH3"
	XXHASH128 Algorithm = "XXHASH128"
)

// Algorithms are those xrc computes, and writes destinations with.
var Algorithms = []Algorithm{CRC32, CRC32C, CRC64NVME, SHA1, SHA256}

// Size is the length in bytes of a checksum of a, 0 for no algorithm of
// S3's.
func (a Algorithm) Size() int {
	switch a {
	case CRC32, CRC32C:
		return 4
	case CRC64NVME, XXHASH64, XXHASH3:
		return 8
	case MD5, XXHASH128:
		return 16
	case SHA1:
		return sha1.Size
	case SHA256:
		return sha256.Size
	case SHA512:
		return 64
	}
	return 0
}

// Fast reports whether a's checksum is computed at memory speed on this
// CPU, next to the SHA-256 and zstd xrc runs anyway: the CRC32s (in
// hardware wherever Go runs xrc), and CRC64NVME where minio/crc64nvme
// takes its SIMD path. Graviton2 lacks the SHA3 extension that path needs
// (EOR3), and there CRC64NVME costs about what SHA-256 does.
func (a Algorithm) Fast() bool {
	return a == CRC32 || a == CRC32C || a == CRC64NVME && simdCRC64
}

// simdCRC64 is minio/crc64nvme's own test (v1.1.1) for its SIMD code.
// Built with -tags noasm, cpuid reports no features, as the library then
// runs its table code (TestNoasmIsNotFast).
var simdCRC64 = map[string]bool{
	"amd64": cpuid.CPU.Supports(cpuid.SSE2, cpuid.CLMUL, cpuid.SSE4),
	"arm64": cpuid.CPU.Supports(cpuid.ASIMD, cpuid.PMULL, cpuid.SHA3),
}[runtime.GOARCH]

// CRC reports whether S3 can keep a's checksum of a multipart object
// whole: it combines the parts' CRCs, not their SHAs.
func (a Algorithm) CRC() bool { return a == CRC32 || a == CRC32C || a == CRC64NVME }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// New returns a hash computing a's checksum (big-endian, as S3 encodes
// it); nil for an algorithm not among Algorithms. CRC64NVME is
// minio/crc64nvme's: with SIMD (Fast), several times Go's table-driven
// CRC-64.
func (a Algorithm) New() hash.Hash {
	switch a {
	case CRC32:
		return crc32.NewIEEE()
	case CRC32C:
		return crc32.New(castagnoli)
	case CRC64NVME:
		return crc64nvme.New()
	case SHA1:
		return sha1.New() // S3's checksum, not a signature
	case SHA256:
		return sha256.New()
	}
	return nil
}

// Sum is a's checksum of data in S3's base64.
func (a Algorithm) Sum(data []byte) string {
	h := a.New()
	h.Write(data)
	return Encode(h.Sum(nil))
}

// Encode is sum in the base64 S3 gives and takes.
func Encode(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }

// Parse decodes value, a checksum of a (one of Algorithms) in S3's
// base64. Only the one
// canonical form is taken: the decoder would skip CR and LF and ignore
// stray padding bits, so a value that is no header's could pass for one.
func Parse(a Algorithm, value string) ([]byte, error) {
	if !slices.Contains(Algorithms, a) {
		return nil, fmt.Errorf("checksum algorithm %q is not one of %v", a, Algorithms)
	}
	sum, err := base64.StdEncoding.DecodeString(value)
	if err != nil || len(sum) != a.Size() || Encode(sum) != value {
		return nil, fmt.Errorf("checksum %q is not a base64 %s", value, a)
	}
	return sum, nil
}
