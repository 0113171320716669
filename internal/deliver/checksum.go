package deliver

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// A destination is written with the source object's own full-object
// checksum when the manifest carries it (manifest.Object.Checksum): S3
// then checks the bytes it stores against the checksum the source object
// has, not only against one computed here from what was read, and keeps
// that checksum, so `xrc verify` compares the two objects' checksums
// without reading either. A source without one gets the SHA-256 the
// archive reader verified (a single PUT) or a CRC32C (multipart).

// ErrChecksum marks a write S3 refused because the bytes sent do not
// match the source object's own checksum, which the manifest carries.
var ErrChecksum = errors.New("the bytes do not match the source object's checksum")

// own is the source's checksum of an object, as a destination is
// written with it: none ("") where the manifest has none or the store
// does not take it.
type own struct {
	alg   checksum.Algorithm
	value string
}

// ownChecksum is o's source checksum, if the region's store takes it.
func (w *Worker) ownChecksum(o *manifest.Object) own {
	if !w.sourceSums || o.Checksum == "" {
		return own{}
	}
	return own{checksum.Algorithm(o.ChecksumAlgorithm), o.Checksum}
}

// checksumRefused says what a write refused for its checksum means when
// the checksum was the source's. A source SHA-256 is the digest the
// archive reader checked the bytes against: refused, the bytes were
// damaged on the way, which a retry may not meet again.
func checksumRefused(err error, sum own) error {
	switch awsapi.Code(err) {
	case "BadDigest", "XAmzContentChecksumMismatch": // AWS, MinIO
		if sum.value != "" && sum.alg != checksum.SHA256 {
			return fmt.Errorf("%w (%s %s): %w", ErrChecksum, sum.alg, sum.value, err)
		}
	}
	return err
}

// putChecksum sets the checksum of a single PUT: the source's own, else
// sha, the SHA-256 of the bytes.
func putChecksum(in *s3.PutObjectInput, sum own, sha []byte) {
	alg, v := sum.alg, sum.value
	if v == "" {
		alg, v = checksum.SHA256, checksum.Encode(sha)
	}
	in.ChecksumAlgorithm = s3types.ChecksumAlgorithm(alg)
	switch alg { // a manifest names no other (manifest.Validate)
	case checksum.CRC32:
		in.ChecksumCRC32 = &v
	case checksum.CRC32C:
		in.ChecksumCRC32C = &v
	case checksum.CRC64NVME:
		in.ChecksumCRC64NVME = &v
	case checksum.SHA1:
		in.ChecksumSHA1 = &v
	case checksum.SHA256:
		in.ChecksumSHA256 = &v
	}
}

// uploadCRC is the CRC a new multipart upload keeps: the source's when it
// is a CRC (S3 combines the parts' CRCs, not their SHAs), else CRC32C.
func uploadCRC(sum own) checksum.Algorithm {
	if sum.alg.CRC() && sum.value != "" {
		return sum.alg
	}
	return checksum.CRC32C
}

// recordedCRC is the CRC of a recorded upload; an upload recorded before
// uploads kept theirs was created with CRC32C. An algorithm this xrc does
// not know (a newer one's record) is taken for CRC32C too: its parts are
// then refused, and the delivery fails towards the DLQ, rather than
// hashing with nothing.
func recordedCRC(u uploads.Upload) checksum.Algorithm {
	if c := checksum.Algorithm(u.Checksum); c.CRC() {
		return c
	}
	return checksum.CRC32C
}

// crcField is where a CRC of a goes among a request's or an answer's
// checksums.
func crcField(a checksum.Algorithm, crc32, crc32c, crc64 **string) **string {
	switch a {
	case checksum.CRC64NVME:
		return crc64
	case checksum.CRC32:
		return crc32
	}
	return crc32c
}

func setPartCRC(in *s3.UploadPartInput, a checksum.Algorithm, v string) {
	in.ChecksumAlgorithm = s3types.ChecksumAlgorithm(a)
	*crcField(a, &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME) = &v
}

func setCompletedCRC(p *s3types.CompletedPart, a checksum.Algorithm, v string) {
	*crcField(a, &p.ChecksumCRC32, &p.ChecksumCRC32C, &p.ChecksumCRC64NVME) = &v
}

func setCompleteCRC(in *s3.CompleteMultipartUploadInput, a checksum.Algorithm, v string) {
	*crcField(a, &in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME) = &v
}

// partCRC is the part's CRC of a, as ListParts gave it.
func partCRC(p s3types.Part, a checksum.Algorithm) string {
	return aws.ToString(*crcField(a, &p.ChecksumCRC32, &p.ChecksumCRC32C, &p.ChecksumCRC64NVME))
}
