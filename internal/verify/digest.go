package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"strconv"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/deliver"
)

// Algorithm names a checksum algorithm as S3 does ("SHA256", "CRC32C").
type Algorithm string

// The algorithms S3 keeps full-object checksums in, and the digest lengths
// a value must have to be taken as one.
const (
	CRC32     Algorithm = "CRC32"
	CRC32C    Algorithm = "CRC32C"
	CRC64NVME Algorithm = "CRC64NVME"
	SHA1      Algorithm = "SHA1"
	SHA256    Algorithm = "SHA256"
	SHA512    Algorithm = "SHA512"
	MD5       Algorithm = "MD5"
	XXHASH64  Algorithm = "XXHASH64"
	XXHASH3   Algorithm = "XXHASH3"
	XXHASH128 Algorithm = "XXHASH128"
)

var digestLen = map[Algorithm]int{
	CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32, SHA512: 64, MD5: 16,
	XXHASH64: 8, XXHASH3: 8, XXHASH128: 16,
}

// Sums are full-object digests by algorithm.
type Sums map[Algorithm][]byte

// ChecksumHeaders are the checksum fields of a HeadObject or GetObject
// answer, by algorithm, as S3 sends them (base64).
type ChecksumHeaders struct {
	Type   s3types.ChecksumType
	Values map[Algorithm]*string
}

// ParseChecksums returns the full-object checksums among h. A composite
// checksum (a digest of the parts' digests, which S3 marks with type
// COMPOSITE and a "-<parts>" suffix) says nothing comparable about the
// bytes and is left out, as is any value that is not base64 of the
// algorithm's digest length: the answer is outside input.
func ParseChecksums(h ChecksumHeaders) Sums {
	if h.Type == s3types.ChecksumTypeComposite {
		return nil
	}
	var s Sums
	for alg, v := range h.Values {
		want, known := digestLen[alg]
		if v == nil || !known {
			continue
		}
		b, err := base64.StdEncoding.Strict().DecodeString(*v)
		if err != nil || len(b) != want {
			continue
		}
		if s == nil {
			s = Sums{}
		}
		s[alg] = b
	}
	return s
}

// Provenance is what a destination object's x-amz-meta-xrc-* metadata says
// about the source write xrc copied into it (package deliver writes it).
type Provenance struct {
	// Archive names the archive that carried the object; its presence is
	// what marks an object written by xrc.
	Archive   string
	Sequencer string
	Version   string // source version id; "" for an unversioned source
	// Modified is the source object's last-modified time; zero when the
	// metadata lacks it (user metadata can crowd provenance out).
	Modified time.Time
	// SHA256 is the digest xrc checked the bytes against before writing
	// them; nil when absent (a large object whose digest xrc learnt only
	// after writing it) or malformed.
	SHA256 []byte
}

// ParseProvenance reads provenance from user metadata (keys as the SDK
// returns them: lower case, without x-amz-meta-). ok is false for an object
// xrc did not write. Malformed values are dropped, never trusted: metadata
// is outside input.
func ParseProvenance(md map[string]string) (p Provenance, ok bool) {
	p.Archive = md[deliver.MetaArchive]
	if p.Archive == "" {
		return Provenance{}, false
	}
	p.Sequencer = md[deliver.MetaSequencer]
	p.Version = md[deliver.MetaVersion]
	if ms, err := strconv.ParseInt(md[deliver.MetaModified], 10, 64); err == nil && ms > 0 && ms < maxMillis {
		p.Modified = time.UnixMilli(ms).UTC()
	}
	if b, err := hex.DecodeString(md[deliver.MetaSHA256]); err == nil && len(b) == sha256.Size {
		p.SHA256 = b
	}
	return p, true
}

// maxMillis bounds a plausible xrc-mtime (year 9999) so a hostile value
// cannot overflow time arithmetic.
const maxMillis = 253402300799999

// crc64NVME is the CRC-64/NVME table (S3's CRC64NVME): hash/crc64 takes
// the reversed form of the polynomial 0xad93d23594c93659.
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// newHash returns a hash computing alg, or nil for an algorithm verify
// does not compute.
func newHash(alg Algorithm) hash.Hash {
	switch alg {
	case SHA256:
		return sha256.New()
	case SHA1:
		return sha1.New()
	case CRC32:
		return crc32.NewIEEE()
	case CRC32C:
		return crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case CRC64NVME:
		return crc64.New(crc64NVME)
	}
	return nil
}
