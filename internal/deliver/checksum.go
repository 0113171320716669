package deliver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/manifest"
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

// checksumRefused says what a write refused for its checksum means when
// the checksum was the source's.
func checksumRefused(err error, o *manifest.Object) error {
	switch awsapi.Code(err) {
	case "BadDigest", "XAmzContentChecksumMismatch": // AWS, MinIO
		if o.Checksum != "" {
			return fmt.Errorf("%w (%s %s): %w", ErrChecksum, o.ChecksumAlgorithm, o.Checksum, err)
		}
	}
	return err
}

// putChecksum sets the checksum of a single PUT of o, whose bytes have
// the SHA-256 sum.
func putChecksum(in *s3.PutObjectInput, o *manifest.Object, sum []byte) {
	v := aws.String(o.Checksum)
	alg := s3types.ChecksumAlgorithm(o.ChecksumAlgorithm)
	switch {
	case o.Checksum == "":
		alg, v = s3types.ChecksumAlgorithmSha256, aws.String(base64.StdEncoding.EncodeToString(sum))
		in.ChecksumSHA256 = v
	case alg == s3types.ChecksumAlgorithmCrc64nvme:
		in.ChecksumCRC64NVME = v
	case alg == s3types.ChecksumAlgorithmCrc32c:
		in.ChecksumCRC32C = v
	case alg == s3types.ChecksumAlgorithmCrc32:
		in.ChecksumCRC32 = v
	case alg == s3types.ChecksumAlgorithmSha256:
		in.ChecksumSHA256 = v
	case alg == s3types.ChecksumAlgorithmSha1:
		in.ChecksumSHA1 = v
	}
	in.ChecksumAlgorithm = alg
}

// crc is a checksum S3 can keep for a whole multipart object: it combines
// the parts' CRCs (it cannot combine SHAs).
type crc s3types.ChecksumAlgorithm

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	crc64nvme  = crc64.MakeTable(0x9a6c9329ac4bc9b5) // CRC-64/NVME, reflected
)

// uploadCRC is the CRC a new multipart upload of o keeps: the source's
// when it has one of a CRC, else CRC32C.
func uploadCRC(o *manifest.Object) crc {
	switch c := crc(o.ChecksumAlgorithm); c {
	case crcCRC64NVME, crcCRC32C, crcCRC32:
		if o.Checksum != "" {
			return c
		}
	}
	return crcCRC32C
}

const (
	crcCRC32     = crc(s3types.ChecksumAlgorithmCrc32)
	crcCRC32C    = crc(s3types.ChecksumAlgorithmCrc32c)
	crcCRC64NVME = crc(s3types.ChecksumAlgorithmCrc64nvme)
)

// recordedCRC is the CRC of a recorded upload; an upload recorded before
// uploads kept theirs was created with CRC32C.
func recordedCRC(alg string) crc {
	if alg == "" {
		return crcCRC32C
	}
	return crc(alg)
}

func (c crc) algorithm() s3types.ChecksumAlgorithm { return s3types.ChecksumAlgorithm(c) }

func (c crc) new() hash.Hash {
	switch c {
	case crcCRC64NVME:
		return crc64.New(crc64nvme)
	case crcCRC32:
		return crc32.NewIEEE()
	}
	return crc32.New(castagnoli)
}

// sum is the base64 checksum of data, as S3 takes it.
func (c crc) sum(data []byte) string {
	h := c.new()
	h.Write(data)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// field is where c's value goes in a request or answer's checksums.
func (c crc) field(crc32, crc32c, crc64 **string) **string {
	switch c {
	case crcCRC64NVME:
		return crc64
	case crcCRC32:
		return crc32
	}
	return crc32c
}

func (c crc) setPart(in *s3.UploadPartInput, v string) {
	in.ChecksumAlgorithm = c.algorithm()
	*c.field(&in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME) = &v
}

func (c crc) completed(p *s3types.CompletedPart, v string) {
	*c.field(&p.ChecksumCRC32, &p.ChecksumCRC32C, &p.ChecksumCRC64NVME) = &v
}

func (c crc) complete(in *s3.CompleteMultipartUploadInput, v string) {
	*c.field(&in.ChecksumCRC32, &in.ChecksumCRC32C, &in.ChecksumCRC64NVME) = &v
}

// of is the part's checksum of c, as ListParts gave it.
func (c crc) of(p s3types.Part) string {
	return aws.ToString(*c.field(&p.ChecksumCRC32, &p.ChecksumCRC32C, &p.ChecksumCRC64NVME))
}
