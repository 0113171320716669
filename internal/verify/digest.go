package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// Algorithm names a checksum algorithm as S3 does ("SHA256", "CRC32C").
type Algorithm = checksum.Algorithm

// The algorithms S3 keeps full-object checksums in.
const (
	CRC32     = checksum.CRC32
	CRC32C    = checksum.CRC32C
	CRC64NVME = checksum.CRC64NVME
	SHA1      = checksum.SHA1
	SHA256    = checksum.SHA256
	SHA512    = checksum.SHA512
	MD5       = checksum.MD5
	XXHASH64  = checksum.XXHASH64
	XXHASH3   = checksum.XXHASH3
	XXHASH128 = checksum.XXHASH128
)

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
		if v == nil || alg.Size() == 0 {
			continue
		}
		b, err := base64.StdEncoding.Strict().DecodeString(*v)
		if err != nil || len(b) != alg.Size() {
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
	// Archive names the archive that carried the object; "" or "-" when
	// the metadata budget had no room for it (any provenance key marks
	// xrc's write: deliver.WrittenByXRC).
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
func ParseProvenance(md map[string]string, sourceKey string) (p Provenance, ok bool) {
	if !deliver.WrittenByXRC(md, sourceKey) {
		return Provenance{}, false
	}
	p.Archive = md[deliver.MetaArchive] // "" or "-" when the metadata budget had no room for it
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
