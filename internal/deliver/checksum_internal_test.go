package deliver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/manifest"
)

// TestCRCs: each CRC gives the catalogued check value of "123456789"
// (CRC-64/NVME as AWS's SDKs compute it), in S3's big-endian base64.
func TestCRCs(t *testing.T) {
	for c, want := range map[crc][]byte{
		crcCRC64NVME: binary.BigEndian.AppendUint64(nil, 0xae8b14860a799888),
		crcCRC32C:    binary.BigEndian.AppendUint32(nil, 0xe3069283),
		crcCRC32:     binary.BigEndian.AppendUint32(nil, 0xcbf43926),
	} {
		if got := c.sum([]byte("123456789")); got != base64.StdEncoding.EncodeToString(want) {
			t.Errorf("%s = %s, want %x", c, got, want)
		}
	}
}

// TestPutChecksum: a single PUT carries the source's own checksum when
// the manifest has it, the SHA-256 of the bytes otherwise.
func TestPutChecksum(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	own := base64.StdEncoding.EncodeToString(sum[:])
	for _, tt := range []struct {
		o    manifest.Object
		alg  s3types.ChecksumAlgorithm
		want func(*s3.PutObjectInput) *string
		sum  string
	}{
		{manifest.Object{ChecksumAlgorithm: "SHA256"}, "SHA256", func(in *s3.PutObjectInput) *string { return in.ChecksumSHA256 }, own},
		{manifest.Object{}, "SHA256", func(in *s3.PutObjectInput) *string { return in.ChecksumSHA256 }, own},
		{manifest.Object{ChecksumAlgorithm: "CRC64NVME", Checksum: "AAAAAAAAAAE="}, "CRC64NVME", func(in *s3.PutObjectInput) *string { return in.ChecksumCRC64NVME }, "AAAAAAAAAAE="},
		{manifest.Object{ChecksumAlgorithm: "CRC32C", Checksum: "AAAAAQ=="}, "CRC32C", func(in *s3.PutObjectInput) *string { return in.ChecksumCRC32C }, "AAAAAQ=="},
		{manifest.Object{ChecksumAlgorithm: "CRC32", Checksum: "AAAAAg=="}, "CRC32", func(in *s3.PutObjectInput) *string { return in.ChecksumCRC32 }, "AAAAAg=="},
		{manifest.Object{ChecksumAlgorithm: "SHA1", Checksum: "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "SHA1", func(in *s3.PutObjectInput) *string { return in.ChecksumSHA1 }, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{manifest.Object{ChecksumAlgorithm: "SHA256", Checksum: own}, "SHA256", func(in *s3.PutObjectInput) *string { return in.ChecksumSHA256 }, own},
	} {
		in := &s3.PutObjectInput{}
		putChecksum(in, &tt.o, sum[:])
		set := 0
		for _, v := range []*string{in.ChecksumCRC32, in.ChecksumCRC32C, in.ChecksumCRC64NVME, in.ChecksumSHA1, in.ChecksumSHA256} {
			if v != nil {
				set++
			}
		}
		if in.ChecksumAlgorithm != tt.alg || aws.ToString(tt.want(in)) != tt.sum || set != 1 {
			t.Errorf("%+v: algorithm %s, %d checksums set, the one wanted %q; want %s, %q", tt.o, in.ChecksumAlgorithm, set, aws.ToString(tt.want(in)), tt.alg, tt.sum)
		}
	}
}

// TestUploadCRC: a multipart upload keeps the source's CRC, CRC32C when
// the source has a SHA or none; an upload recorded without one is CRC32C.
func TestUploadCRC(t *testing.T) {
	for _, tt := range []struct {
		alg, sum string
		want     crc
	}{
		{"CRC64NVME", "AAAAAAAAAAE=", crcCRC64NVME},
		{"CRC32", "AAAAAg==", crcCRC32},
		{"CRC32C", "AAAAAQ==", crcCRC32C},
		{"CRC64NVME", "", crcCRC32C},
		{"SHA256", "", crcCRC32C},
		{"SHA1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", crcCRC32C},
	} {
		if got := uploadCRC(&manifest.Object{ChecksumAlgorithm: tt.alg, Checksum: tt.sum}); got != tt.want {
			t.Errorf("uploadCRC(%s %q) = %s, want %s", tt.alg, tt.sum, got, tt.want)
		}
	}
	if got := recordedCRC(""); got != crcCRC32C {
		t.Errorf("an upload recorded without its CRC is taken for %s, want CRC32C", got)
	}
	if got := recordedCRC("CRC64NVME"); got != crcCRC64NVME {
		t.Errorf("recordedCRC(CRC64NVME) = %s", got)
	}
}
