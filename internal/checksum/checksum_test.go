package checksum

import (
	"encoding/binary"
	"encoding/hex"
	"hash/crc64"
	"slices"
	"testing"
)

// TestCheckValues: each algorithm gives the catalogued check value of
// "123456789" (CRC-64/NVME as AWS's SDKs compute it), big-endian as S3
// encodes it; CRC64NVME agrees with Go's table-driven CRC-64 on lengths
// around the SIMD code's block sizes.
func TestCheckValues(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	sha1Check, _ := hex.DecodeString("f7c3bc1d808e04732adf679965ccc34ca7ae3441")
	sha256Check, _ := hex.DecodeString("15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225")
	for a, want := range map[Algorithm][]byte{
		CRC32:     u32(0xcbf43926),
		CRC32C:    u32(0xe3069283),
		CRC64NVME: binary.BigEndian.AppendUint64(nil, 0xae8b14860a799888),
		SHA1:      sha1Check,
		SHA256:    sha256Check,
	} {
		if got := a.Sum([]byte("123456789")); got != Encode(want) {
			t.Errorf("%s = %s, want %x", a, got, want)
		}
		if a.Size() != len(want) {
			t.Errorf("%s: Size %d, want %d", a, a.Size(), len(want))
		}
	}
	table := crc64.MakeTable(0x9a6c9329ac4bc9b5)
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i*131 + i>>8)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 4096, 5000} {
		if got, want := CRC64NVME.Sum(data[:n]), Encode(binary.BigEndian.AppendUint64(nil, crc64.Checksum(data[:n], table))); got != want {
			t.Errorf("CRC64NVME of %d bytes = %s, Go's CRC-64 says %s", n, got, want)
		}
	}
	// S3 keeps MD5 checksums too (verify reads them); xrc computes none.
	if h := MD5.New(); h != nil || MD5.Size() != 16 || slices.Contains(Algorithms, MD5) || Algorithm("MD6").Size() != 0 {
		t.Error("MD5 taken for an algorithm xrc computes, or MD6 for one of S3's")
	}
}

// TestFast: the CRC32s are always cheap, the SHAs never; CRC64NVME where
// the SIMD code runs (`go test -tags noasm` runs the fallback, which
// TestCheckValues holds to the same values).
func TestFast(t *testing.T) {
	for a, want := range map[Algorithm]bool{CRC32: true, CRC32C: true, CRC64NVME: simdCRC64, SHA1: false, SHA256: false, MD5: false} {
		if a.Fast() != want {
			t.Errorf("%s.Fast() = %v", a, !want)
		}
	}
	t.Logf("CRC64NVME in SIMD on this CPU: %v", simdCRC64)
}

// TestParse takes only a whole checksum of the algorithm in canonical
// base64: the decoder alone skips CR and LF and ignores stray padding
// bits.
func TestParse(t *testing.T) {
	if sum, err := Parse(CRC32, "AAAAAg=="); err != nil || len(sum) != 4 || sum[3] != 2 {
		t.Errorf("Parse(CRC32, AAAAAg==) = %x, %v", sum, err)
	}
	for _, tt := range []struct {
		a Algorithm
		v string
	}{
		{CRC32, ""}, {CRC32, "AAAAAAAAAAA="}, {CRC64NVME, "AAAAAg=="}, {CRC64NVME, "AAAAAAAA\r\nAAA="}, {CRC64NVME, "AAAAAAAAAAB="},
		{CRC64NVME, "AAAAAAAAAAA"}, {CRC32, "AAAAAg==-3"}, {"MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="},
	} {
		if _, err := Parse(tt.a, tt.v); err == nil {
			t.Errorf("Parse(%s, %q) took it", tt.a, tt.v)
		}
	}
}

// BenchmarkCRC64NVME compares the SIMD CRC64NVME with Go's table-driven
// CRC-64 and with SHA-256 on the same bytes: the ratio is what choosing
// it saves the source (which checks the checksum) and the target (which
// sends it with each part).
func BenchmarkCRC64NVME(b *testing.B) {
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i * 131)
	}
	table := crc64.MakeTable(0x9a6c9329ac4bc9b5)
	for _, bm := range []struct {
		name string
		f    func()
	}{
		{"simd", func() { CRC64NVME.New().Write(data) }},
		{"go-table", func() { crc64.Update(0, table, data) }},
		{"sha256", func() { SHA256.New().Write(data) }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				bm.f()
			}
		})
	}
}
