package verify

import (
	"crypto/sha256"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// FuzzHeadObject feeds what a HeadObject answer carries from outside
// (user metadata, checksum headers) to the parsers, and Compare on what
// they make of it: no panic, nothing malformed taken as a digest or a time.
func FuzzHeadObject(f *testing.F) {
	f.Add("a1", "0000019A", "v1", "1764583200000", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "Ple2ew==", "FULL_OBJECT", int64(5), int64(5))
	f.Add("", "", "", "", "", "", "", "", int64(0), int64(0))
	f.Add("a", "x", "", "9999999999999999999", "zz", "AAAA-3", "====", "COMPOSITE", int64(-1), int64(1<<62))
	// Provenance without the archive id (the metadata budget dropped it):
	// still xrc's.
	f.Add("", "00FF", "", "", "", "", "", "", int64(1), int64(1))
	f.Fuzz(func(t *testing.T, archive, seq, version, mtime, sum, sha256b64, crc32cb64, typ string, srcSize, dstSize int64) {
		p, ok := ParseProvenance(map[string]string{"xrc-archive": archive, "xrc-seq": seq, "xrc-version": version, "xrc-mtime": mtime, "xrc-sha256": sum}, "")
		// Any provenance key marks xrc's object (deliver.WrittenByXRC):
		// the budget may have dropped any one of them.
		if ok != (archive+seq+version+mtime+sum != "") {
			t.Fatalf("written by xrc = %v for xrc-archive %q, xrc-seq %q, xrc-version %q, xrc-mtime %q, xrc-sha256 %q", ok, archive, seq, version, mtime, sum)
		}
		if p.SHA256 != nil && len(p.SHA256) != sha256.Size {
			t.Fatalf("xrc-sha256 of %d bytes accepted", len(p.SHA256))
		}
		if !p.Modified.IsZero() && (p.Modified.Year() < 1970 || p.Modified.Year() > 9999) {
			t.Fatalf("xrc-mtime %q read as %v", mtime, p.Modified)
		}
		s := ParseChecksums(ChecksumHeaders{Type: s3types.ChecksumType(typ), Values: map[Algorithm]*string{SHA256: aws.String(sha256b64), CRC32C: aws.String(crc32cb64)}})
		for alg, v := range s {
			if len(v) != alg.Size() {
				t.Fatalf("%s of %d bytes accepted", alg, len(v))
			}
		}
		dst := Destination{Size: dstSize, Sums: s}
		if ok {
			dst.Provenance = &p
		}
		v := Compare(Source{Size: srcSize, Modified: p.Modified, Sums: s}, dst)
		if v.Kind != "" && v.Equal {
			t.Fatalf("verdict both different and equal: %+v", v)
		}
		if !ok && v.Kind == "" {
			t.Fatalf("an object xrc did not write passed: %+v", v)
		}
	})
}
