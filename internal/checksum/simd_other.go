//go:build !((amd64 || arm64) && !noasm && !appengine && !gccgo)

package checksum

// simdCRC64: minio/crc64nvme runs its table code here.
const simdCRC64 = false
