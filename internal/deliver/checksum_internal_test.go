package deliver

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/uploads"
)

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
		putChecksum(in, (&Worker{sourceSums: true}).ownChecksum(&tt.o), sum[:])
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
		want     checksum.Algorithm
	}{
		{"CRC64NVME", "AAAAAAAAAAE=", checksum.CRC64NVME},
		{"CRC32", "AAAAAg==", checksum.CRC32},
		{"CRC32C", "AAAAAQ==", checksum.CRC32C},
		{"CRC64NVME", "", checksum.CRC32C},
		{"SHA256", "", checksum.CRC32C},
		{"SHA1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", checksum.CRC32C},
	} {
		if got := uploadCRC((&Worker{sourceSums: true}).ownChecksum(&manifest.Object{ChecksumAlgorithm: tt.alg, Checksum: tt.sum})); got != tt.want {
			t.Errorf("uploadCRC(%s %q) = %s, want %s", tt.alg, tt.sum, got, tt.want)
		}
	}
	if got := recordedCRC(uploads.Upload{}); got != checksum.CRC32C {
		t.Errorf("an upload recorded without its CRC is taken for %s, want CRC32C", got)
	}
	if got := recordedCRC(uploads.Upload{Checksum: "CRC64NVME"}); got != checksum.CRC64NVME {
		t.Errorf("recordedCRC(CRC64NVME) = %s", got)
	}
	// A newer xrc's record, or a damaged one: never a nil hash.
	for _, alg := range []string{"SHA256", "XXHASH3", "bogus"} {
		if got := recordedCRC(uploads.Upload{Checksum: alg}); got != checksum.CRC32C {
			t.Errorf("recordedCRC(%s) = %s, want CRC32C", alg, got)
		}
	}
}

// TestOwnChecksumOnlyWhereTheStoreTakesIt: a region whose S3-compatible
// store does not declare s3SourceChecksums gets a checksum of the
// target's own (SHA-256 with one PUT, CRC32C in parts).
func TestOwnChecksumOnlyWhereTheStoreTakesIt(t *testing.T) {
	o := &manifest.Object{ChecksumAlgorithm: "CRC64NVME", Checksum: "AAAAAAAAAAE="}
	w := &Worker{}
	if got := w.ownChecksum(o); got != (own{}) {
		t.Errorf("ownChecksum = %+v, want none", got)
	}
	in := &s3.PutObjectInput{}
	putChecksum(in, w.ownChecksum(o), make([]byte, 32))
	if in.ChecksumAlgorithm != "SHA256" || in.ChecksumCRC64NVME != nil || uploadCRC(w.ownChecksum(o)) != checksum.CRC32C {
		t.Errorf("a store without source checksums is sent %s (CRC64NVME %v), parts in %s", in.ChecksumAlgorithm, in.ChecksumCRC64NVME, uploadCRC(w.ownChecksum(o)))
	}
}

// TestChecksumRefused: a write refused for the source's own CRC is
// ErrChecksum (permanent); one refused for a SHA-256 the archive reader
// checked the bytes against was damaged on the way, and is retried.
func TestChecksumRefused(t *testing.T) {
	bad := &smithy.GenericAPIError{Code: "BadDigest", Message: "The CRC64NVME you specified did not match the calculated checksum."}
	if err := checksumRefused(bad, own{checksum.CRC64NVME, "AAAAAAAAAAE="}); !errors.Is(err, ErrChecksum) {
		t.Errorf("source CRC refused: %v, want ErrChecksum", err)
	}
	for _, sum := range []own{{checksum.SHA256, "x"}, {}} {
		if err := checksumRefused(bad, sum); errors.Is(err, ErrChecksum) {
			t.Errorf("%+v refused: %v, not the source's checksum", sum, err)
		}
	}
}
