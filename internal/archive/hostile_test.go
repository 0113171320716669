package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/xrc-dev/xrc/internal/manifest"

	corpusgen "github.com/xrc-dev/xrc/internal/corpus"
)

// hostileSpecs is the content most hostile archives are built around: one
// object whose digest is in the manifest, one that relies on a trailer.
var hostileSpecs = []spec{
	{key: "data/report.csv", data: []byte("id,name\n1,alice\n2,bob\n"), sumInMf: true},
	{key: "data/streamed.bin", data: []byte("streamed content, digest in trailer")},
}

func hostile() (*manifest.Manifest, []entry) {
	m := newManifest("hostile", hostileSpecs)
	return m, objectEntries(m, hostileSpecs)
}

func TestHostileBaseline(t *testing.T) {
	// The hand builder must produce an archive the reader accepts, or the
	// negative tests below prove nothing.
	m, objs := hostile()
	data := buildRaw(t, append([]entry{manifestEntry(t, m)}, objs...), true)
	checkRoundTrip(t, data, m, hostileSpecs)
}

func TestHostileArchives(t *testing.T) {
	m, objs := hostile()
	man := manifestEntry(t, m)
	withType := func(e entry, typ byte) entry {
		e.hdr.Typeflag = typ
		if typ != tar.TypeReg {
			e.hdr.Size, e.body = 0, nil
		}
		if typ == tar.TypeSymlink || typ == tar.TypeLink {
			e.hdr.Linkname = "/etc/passwd"
		}
		return e
	}
	flipped := func(e entry) entry {
		e.body = bytes.Clone(e.body)
		e.body[3] ^= 0x20
		return e
	}
	renamed := func(e entry, name string) entry { e.hdr.Name = name; return e }
	badSum := newManifest("hostile", hostileSpecs)
	badSum.Objects[0].SHA256 = strings.Repeat("ab", 32)
	sized := newManifest("hostile", hostileSpecs)
	sized.Objects[0].Size++
	sized.Objects[0].SHA256 = ""
	threeSpecs := append([]spec{{key: "first", data: []byte("1"), sumInMf: true}}, hostileSpecs...)
	twoMissing := newManifest("hostile", threeSpecs)
	trailer := objs[2]

	tests := []struct {
		name     string
		entries  []entry
		noEnd    bool
		opts     ReaderOptions
		target   error
		contains []string
	}{
		{name: "flipped byte, digest in manifest", entries: []entry{man, flipped(objs[0]), objs[1], trailer},
			target: ErrChecksum, contains: []string{"data/report.csv", "manifest says"}},
		{name: "flipped byte, digest in trailer", entries: []entry{man, objs[0], flipped(objs[1]), trailer},
			target: ErrChecksum, contains: []string{"data/streamed.bin", "trailer says"}},
		{name: "manifest digest mismatch", entries: append([]entry{manifestEntry(t, badSum)}, objs...),
			target: ErrChecksum, contains: []string{"data/report.csv"}},
		{name: "member shorter than manifest size", entries: []entry{manifestEntry(t, sized), objs[0]},
			target: ErrSize, contains: []string{"data/report.csv", "manifest says"}},
		{name: "member ../x", entries: []entry{man, renamed(objs[0], "../x")}, contains: []string{"unsafe"}},
		{name: "member objects/../../x", entries: []entry{man, renamed(objs[0], "objects/../../x")}, contains: []string{"unsafe"}},
		{name: "absolute member", entries: []entry{man, renamed(objs[0], "/etc/passwd")}, contains: []string{"absolute"}},
		{name: "member outside objects/", entries: []entry{man, renamed(objs[0], "elsewhere/x")}, contains: []string{"not under objects/"}},
		{name: "symlink", entries: []entry{man, withType(objs[0], tar.TypeSymlink)}, contains: []string{"symbolic link"}},
		{name: "hard link", entries: []entry{man, withType(objs[0], tar.TypeLink)}, contains: []string{"hard link"}},
		{name: "char device", entries: []entry{man, withType(objs[0], tar.TypeChar)}, contains: []string{"character device"}},
		{name: "block device", entries: []entry{man, withType(objs[0], tar.TypeBlock)}, contains: []string{"block device"}},
		{name: "directory", entries: []entry{man, withType(objs[0], tar.TypeDir)}, contains: []string{"directory"}},
		{name: "setuid member", entries: []entry{man, func() entry { e := objs[0]; e.hdr.Mode = 0o4755; return e }()}, contains: []string{"mode 04755"}},
		{name: "fifo", entries: []entry{man, withType(objs[0], tar.TypeFifo)}, contains: []string{"FIFO"}},
		{name: "executable member", entries: []entry{man, func() entry { e := objs[0]; e.hdr.Mode = 0o755; return e }()}, contains: []string{"mode 0755"}},
		{name: "extended attribute", entries: []entry{man, func() entry {
			e := objs[0]
			e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01"}
			return e
		}()}, contains: []string{"extended record SCHILY.xattr.security.capability"}},
		{name: "ACL", entries: []entry{man, func() entry {
			e := objs[0]
			e.hdr.PAXRecords = map[string]string{"SCHILY.acl.access": "user::rwx"}
			return e
		}()},
			contains: []string{"extended record SCHILY.acl.access"}},
		{name: "owner", entries: []entry{man, func() entry { e := objs[0]; e.hdr.Uid = 4242; return e }()}, contains: []string{"owned by 4242:0"}},
		{name: "owner name", entries: []entry{man, func() entry { e := objs[0]; e.hdr.Uname = "mallory"; return e }()}, contains: []string{"(mallory:)"}},
		{name: "GNU long name", entries: []entry{man, func() entry { e := objs[0]; e.hdr.Format = tar.FormatGNU; return e }()}, contains: []string{"GNU or mixed header"}},
		{name: "PAX global header", entries: []entry{man, {hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "objects/g", PAXRecords: map[string]string{"comment": "x"}}}}, contains: []string{"PAX global header"}},
		{name: "member not in manifest", entries: []entry{man, reg("objects/999999/evil", []byte("x"))}, contains: []string{"not in the manifest"}},
		{name: "manifest entry without member", entries: append([]entry{manifestEntry(t, twoMissing)}, objectEntries(twoMissing, threeSpecs)[1:]...),
			contains: []string{"first", "member missing"}},
		{name: "archive ends before a member", entries: []entry{man, objs[0]}, contains: []string{"data/streamed.bin", "ends before"}},
		{name: "extra member after the last", entries: append(append([]entry{man}, objs...), reg("objects/000009/extra", []byte("x"))),
			contains: []string{"after the last object"}},
		{name: "duplicate member", entries: []entry{man, objs[0], objs[0]}, contains: []string{"duplicate member"}},
		{name: "trailer missing", entries: []entry{man, objs[0], objs[1], objs[0]}, contains: []string{"where trailer"}},
		{name: "trailer with wrong name", entries: []entry{man, objs[0], objs[1], renamed(trailer, "objects/000001/other.sha256")}, contains: []string{"where trailer"}},
		{name: "trailer with wrong base name", entries: []entry{man, objs[0], objs[1], reg(trailer.hdr.Name, []byte(strings.Replace(string(trailer.body), "streamed.bin", "streamed.bix", 1)))},
			contains: []string{"sha256sum line"}},
		{name: "trailer with uppercase hex", entries: []entry{man, objs[0], objs[1], reg(trailer.hdr.Name, []byte(strings.ToUpper(string(trailer.body[:64]))+string(trailer.body[64:])))},
			contains: []string{"sha256sum line"}},
		{name: "trailer of wrong size", entries: []entry{man, objs[0], objs[1], reg(trailer.hdr.Name, append(bytes.Clone(trailer.body), '\n'))},
			contains: []string{"bytes, want"}},
		{name: "trailer as symlink", entries: []entry{man, objs[0], objs[1], withType(trailer, tar.TypeSymlink)}, contains: []string{"symbolic link"}},
		{name: "trailer where a member belongs", entries: []entry{man, reg("objects/000000/data/report.csv.sha256", []byte("x"))}, contains: []string{"unexpected trailer"}},
		{name: "manifest too large for options", entries: append([]entry{man}, objs...), opts: ReaderOptions{MaxManifest: 100},
			contains: []string{"manifest.json is", "more than the 100 allowed"}},
		{name: "manifest over MaxSize", entries: []entry{reg(ManifestName, make([]byte, manifest.MaxSize+1))},
			contains: []string{"more than the"}},
		{name: "manifest not first", entries: append(append([]entry{}, objs...), man), contains: []string{"first member is"}},
		{name: "manifest is a symlink", entries: []entry{withType(man, tar.TypeSymlink)}, contains: []string{"symbolic link"}},
		{name: "bad format version", entries: []entry{reg(ManifestName, []byte(strings.Replace(string(man.body), `"format":1`, `"format":2`, 1)))},
			target: manifest.ErrInvalid, contains: []string{"unsupported format 2"}},
		{name: "manifest not JSON", entries: []entry{reg(ManifestName, []byte("{not json"))}, target: manifest.ErrInvalid},
		{name: "invalid manifest", entries: []entry{reg(ManifestName, []byte(strings.Replace(string(man.body), `"archiveId":"hostile"`, `"archiveId":"../x"`, 1)))},
			target: manifest.ErrInvalid, contains: []string{"archiveId"}},
		{name: "empty tar stream", entries: nil, contains: []string{"manifest.json first"}},
		{name: "end-of-archive marker missing", entries: append([]entry{man}, objs...), noEnd: true, contains: []string{"end-of-archive marker"}},
		{name: "window larger than allowed", entries: append([]entry{man}, objs...), opts: ReaderOptions{MaxWindow: 1 << 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := buildRaw(t, tt.entries, !tt.noEnd)
			if tt.name == "window larger than allowed" {
				data = writeArchive(t, nil, m, hostileSpecs) // streamed frames declare their window
			}
			_, _, err := readArchive(data, tt.opts)
			wantInvalid(t, err, tt.target, tt.contains...)
			t.Log(err)
		})
	}
}

// TestHeaderChainIsRefused: archive/tar follows any number of extended
// headers before a member, each up to 1 MiB; a chain of them must fail once
// it passes what a member's name needs, not after being decompressed.
func TestHeaderChainIsRefused(t *testing.T) {
	m, objs := hostile()
	// An extended header alone: a member with a long name and no content,
	// without its own header block (the last one written).
	var x bytes.Buffer
	tw := tar.NewWriter(&x)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("a", 100<<10), Mode: 0o644, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	one := x.Bytes()[:x.Len()-tarBlock]
	var chain []byte
	for range 64 { // 6.4 MiB of headers in front of manifest.json
		chain = append(chain, one...)
	}
	raw := decompress(t, buildRaw(t, append([]entry{manifestEntry(t, m)}, objs...), true))
	_, _, err := readArchive(compress(t, append(chain, raw...)), ReaderOptions{})
	wantInvalid(t, err, nil, "member headers longer than")
	t.Log(err)
}

func TestHostileBytes(t *testing.T) {
	specs := append(append([]spec{}, hostileSpecs...), spec{key: "big", data: patterned(200_000, 7)})
	m := newManifest("hostile", specs)
	good := writeArchive(t, nil, m, specs)

	t.Run("flipped byte in compressed stream", func(t *testing.T) {
		// Offsets avoid the frame header: its window descriptor may change
		// without changing the content, which is harmless.
		for _, off := range []int{0, 1, 20, len(good) / 5, len(good) / 3, len(good) / 2, 2 * len(good) / 3, len(good) - 10, len(good) - 2} {
			bad := bytes.Clone(good)
			bad[off] ^= 0x01
			_, _, err := readArchive(bad, ReaderOptions{})
			t.Logf("flip at %d: %v", off, err)
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("flip at %d/%d: err = %v, want ErrInvalid", off, len(good), err)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 1, 3, 4, 6, 20, len(good) / 4, len(good) / 2, 3 * len(good) / 4, len(good) - 5, len(good) - 4, len(good) - 1} {
			_, _, err := readArchive(good[:n], ReaderOptions{})
			t.Logf("truncated to %d: %v", n, err)
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("truncated to %d/%d: err = %v, want ErrInvalid", n, len(good), err)
			}
		}
	})
	t.Run("garbage", func(t *testing.T) {
		_, _, err := readArchive(corpusgen.Random(1000, 3), ReaderOptions{})
		wantInvalid(t, err, nil)
		_, _, err = readArchive([]byte("PK\x03\x04 definitely a zip file"), ReaderOptions{})
		wantInvalid(t, err, nil)
	})
	// The manifest's frame (the first) must carry its checksum: the deletes
	// and routes it holds are checked by nothing else.
	t.Run("first frame without a content checksum", func(t *testing.T) {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		_, _, err = readArchive(enc.EncodeAll(decompress(t, good), nil), ReaderOptions{})
		wantInvalid(t, err, nil, "content checksum")
	})
	// Every writer of this package uses at most an 8 MiB window; the
	// decoder allocates what a frame declares, so a 64 MiB window was 64
	// MiB of heap per archive, counted in no budget.
	t.Run("window larger than any writer's", func(t *testing.T) {
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(16<<20))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enc.Write(decompress(t, good)); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, err = readArchive(buf.Bytes(), ReaderOptions{})
		wantInvalid(t, err, nil, "window")
	})
	t.Run("skippable frame before the manifest", func(t *testing.T) {
		skip := []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'x', 'x', 'x', 'x'}
		_, _, err := readArchive(append(skip, good...), ReaderOptions{})
		wantInvalid(t, err, nil, "content checksum")
	})
	t.Run("garbage after the zstd stream", func(t *testing.T) {
		_, _, err := readArchive(append(bytes.Clone(good), "trailing"...), ReaderOptions{})
		wantInvalid(t, err, nil)
	})
	t.Run("data frame after the tar stream", func(t *testing.T) {
		_, _, err := readArchive(append(bytes.Clone(good), compress(t, []byte("smuggled"))...), ReaderOptions{})
		wantInvalid(t, err, nil, "after the end of the tar stream")
	})
	t.Run("zero padding after the tar stream is fine", func(t *testing.T) {
		_, _, err := readArchive(append(bytes.Clone(good), compress(t, make([]byte, 9*512))...), ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = readArchive(append(bytes.Clone(good), compress(t, make([]byte, maxZeroPadding+1))...), ReaderOptions{})
		wantInvalid(t, err, nil, "padding")
	})
	t.Run("body error reaches the caller before EOF", func(t *testing.T) {
		// A caller that reads exactly Size bytes (as net/http does for a
		// request with a known length) must see the mismatch with the last
		// bytes.
		mm, objs := hostile()
		data := buildRaw(t, []entry{manifestEntry(t, mm), objs[0], objs[1], reg(objs[2].hdr.Name, []byte(trailerLine(strings.Repeat("0", 64), objs[1].hdr.Name)))}, true)
		r, err := NewReader(bytes.NewReader(data), ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		_, o, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(body, o.Size))
		if n != o.Size || !errors.Is(err, ErrChecksum) {
			t.Fatalf("ReadFull = %d, %v; want %d bytes and ErrChecksum", n, err, o.Size)
		}
		var e *Error
		if !errors.As(err, &e) || e.Key != o.Key || e.ArchiveID != "hostile" {
			t.Fatalf("error %v is not an *Error for %s", err, o.Key)
		}
		if _, _, _, err2 := r.Next(); err2 != err {
			t.Fatalf("Next after failure = %v, want the sticky %v", err2, err)
		}
	})
}

// TestMixedHeaderNamesRefused: a member whose name comes from a GNU long
// name after a PAX path record naming another. Go takes the long name,
// which passed the name checks; GNU tar takes the path record, and
// extracted the member as manifest.json over the manifest.
func TestMixedHeaderNamesRefused(t *testing.T) {
	_, _, err := readArchive(compress(t, mixedHeaderTar(t)), ReaderOptions{})
	wantInvalid(t, err, nil, "mixed header")
}

// mixedHeaderTar is the hostile archive's tar stream with its first
// object's header preceded by a PAX path record naming manifest.json and
// a GNU long name giving its own name.
func mixedHeaderTar(t testing.TB) []byte {
	m, objs := hostile()
	raw := decompress(t, buildRaw(t, append([]entry{manifestEntry(t, m)}, objs...), true))
	name := objs[0].hdr.Name
	at := -1
	for off := 0; off < len(raw); off += 512 {
		if bytes.HasPrefix(raw[off:], []byte(name+"\x00")) {
			at = off
			break
		}
	}
	if at < 0 {
		t.Fatalf("no header of %s", name)
	}
	rec := " path=manifest.json\n"
	rec = fmt.Sprintf("%d%s", len(rec)+2, rec)
	var pre []byte
	pre = append(pre, ustarBlock("PaxHeaders/x", tar.TypeXHeader, len(rec))...)
	pre = append(pre, pad512([]byte(rec))...)
	pre = append(pre, ustarBlock("././@LongLink", tar.TypeGNULongName, len(name)+1)...)
	pre = append(pre, pad512(append([]byte(name), 0))...)
	return append(append(bytes.Clone(raw[:at]), pre...), raw[at:]...)
}

// ustarBlock is a tar header block with USTAR's magic, as a hand-made
// archive may hold whatever the format allows.
func ustarBlock(name string, typ byte, size int) []byte {
	var b [512]byte
	copy(b[:], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b[:]
}

func pad512(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}

func TestReaderOptionsErrors(t *testing.T) {
	m, objs := hostile()
	data := buildRaw(t, append([]entry{manifestEntry(t, m)}, objs...), true)
	if _, err := NewReader(bytes.NewReader(data), ReaderOptions{MaxWindow: 3}); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("bad MaxWindow: err = %v, want a configuration error", err)
	}
}

// TestSumIsOfTheVerifiedObjectOnly: once Next moves on, Sum no longer
// returns the previous object's digest, so a caller cannot take it for the
// current object's after a failure.
func TestSumIsOfTheVerifiedObjectOnly(t *testing.T) {
	m, objs := hostile()
	bad := objs[1]
	bad.body = bytes.Clone(bad.body)
	bad.body[0] ^= 1
	r, err := NewReader(bytes.NewReader(buildRaw(t, []entry{manifestEntry(t, m), objs[0], bad, objs[2]}, true)), ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, _, body, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		t.Fatal(err)
	}
	if len(r.Sum()) == 0 {
		t.Fatal("no digest after a verified object")
	}
	_, _, body, err = r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, body); !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped object: %v, want %v", err, ErrChecksum)
	}
	if s := r.Sum(); len(s) != 0 {
		t.Fatalf("Sum after a failed object is %x, want none", s)
	}
}

// failsFirst fails its first Read, as a connection reset before any byte,
// then reads on.
type failsFirst struct {
	r      io.Reader
	failed bool
}

var errReset = errors.New("connection reset by peer")

func (f *failsFirst) Read(p []byte) (int, error) {
	if !f.failed {
		f.failed = true
		return 0, errReset
	}
	return f.r.Read(p)
}

// TestFirstReadFailurePassedOn: the source failing while the stream's
// first frame is checked is the source's error, passed on for a retry:
// the check's peek took it for a short stream, skipped the check and
// read on.
func TestFirstReadFailurePassedOn(t *testing.T) {
	specs := []spec{{key: "a.txt", data: []byte("alpha")}}
	b := writeArchive(t, nil, newManifest("first-read", specs), specs)
	r, err := NewReader(&failsFirst{r: bytes.NewReader(b)}, ReaderOptions{})
	if err == nil {
		r.Close()
		t.Fatal("NewReader read on past its source's failure")
	}
	if !errors.Is(err, errReset) || errors.Is(err, ErrInvalid) {
		t.Fatalf("NewReader: %v, want the source's error, not ErrInvalid", err)
	}
}
