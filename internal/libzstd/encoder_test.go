//go:build cgo

package libzstd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while zstd packs bytes")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

// decode checks out with the pure-Go decoder the workers use, which also
// verifies every frame's content checksum.
func decode(t *testing.T, frames []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(frames))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	return out
}

func TestRoundTripEveryLevel(t *testing.T) {
	data := sample(300 << 10)
	e, err := NewEncoder(0)
	if err != nil {
		t.Fatal(err)
	}
	for level := MinLevel; level <= MaxLevel; level++ {
		if level == 0 {
			continue
		}
		var buf bytes.Buffer
		if err := e.Reset(&buf, level); err != nil {
			t.Fatal(err)
		}
		// Odd-sized writes, as a tar stream makes them.
		for off := 0; off < len(data); off += 4099 {
			if _, err := e.Write(data[off:min(off+4099, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if got := decode(t, buf.Bytes()); !bytes.Equal(got, data) {
			t.Fatalf("level %d: round trip differs", level)
		}
		if level == 3 && buf.Len()*2 > len(data) {
			t.Errorf("level 3 compressed %d bytes to %d", len(data), buf.Len())
		}
		var h zstd.Header
		if err := h.Decode(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if h.WindowSize > 1<<MaxWindowLog {
			t.Errorf("level %d: window %d, above the %d cap", level, h.WindowSize, 1<<MaxWindowLog)
		}
	}
}

// TestUltraLevelsFitTheirTables: levels 20-22 cap their window at 8 MiB,
// and their tables with it. libzstd fits the tables to the window only
// when it knows the input's size, which a stream never tells it: level 22
// held a 649 MiB context, in C memory that GOMEMLIMIT does not see, one
// per archive builder, kept for the frames after.
func TestUltraLevelsFitTheirTables(t *testing.T) {
	e, err := NewEncoder(0)
	if err != nil {
		t.Fatal(err)
	}
	data := sample(1 << 20)
	sizes := map[int]int{}
	for level := 19; level <= MaxLevel; level++ {
		var buf bytes.Buffer
		if err := e.Reset(&buf, level); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		sizes[level] = e.size()
		if !bytes.Equal(decode(t, buf.Bytes()), data) {
			t.Fatalf("level %d: round trip differs", level)
		}
	}
	for level := 20; level <= MaxLevel; level++ {
		// Level 19 (window 8 MiB, chain 2^24, hash 2^22) takes ~89 MiB;
		// a twice larger hash table is the most the fit adds.
		if sizes[level] > 160<<20 {
			t.Errorf("level %d: a context of %d MiB (level 19: %d MiB), want at most 160", level, sizes[level]>>20, sizes[19]>>20)
		}
	}
}

func TestFramesCarryChecksums(t *testing.T) {
	e, err := NewEncoder(0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e.Reset(&buf, 3)
	e.Write(sample(10 << 10))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !h.HasCheckSum {
		t.Fatal("frame has no content checksum")
	}
	// A flipped checksum byte must fail decoding.
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)-1] ^= 0xff
	d, _ := zstd.NewReader(bytes.NewReader(bad))
	defer d.Close()
	if _, err := io.ReadAll(d); err == nil {
		t.Fatal("corrupt checksum decoded without error")
	}
}

func TestConcatenatedFramesAndWorkers(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			e, err := NewEncoder(workers)
			if err != nil {
				t.Fatal(err)
			}
			a, b := sample(2<<20), sample(70<<10)
			var buf bytes.Buffer
			for i, part := range [][]byte{a, nil, b} {
				if err := e.Reset(&buf, 1+i*8); err != nil {
					t.Fatal(err)
				}
				if _, err := e.Write(part); err != nil {
					t.Fatal(err)
				}
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got := decode(t, buf.Bytes()); !bytes.Equal(got, append(bytes.Clone(a), b...)) {
				t.Fatal("concatenated frames differ")
			}
		})
	}
}

type failingWriter struct{}

var errSink = errors.New("sink failed")

func (failingWriter) Write([]byte) (int, error) { return 0, errSink }

func TestErrors(t *testing.T) {
	e, err := NewEncoder(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Write([]byte("x")); err == nil {
		t.Error("Write before Reset succeeded")
	}
	for _, level := range []int{0, -8, 23} {
		if err := e.Reset(io.Discard, level); err == nil || !strings.Contains(err.Error(), fmt.Sprint("level ", level)) {
			t.Errorf("Reset(level %d) = %v, want an error naming the level", level, err)
		}
	}
	// A destination failure is sticky until the next Reset.
	e.Reset(failingWriter{}, 3)
	e.Write(sample(1 << 20))
	if err := e.Close(); !errors.Is(err, errSink) {
		t.Errorf("Close after a failed destination = %v, want %v", err, errSink)
	}
	var buf bytes.Buffer
	if err := e.Reset(&buf, 3); err != nil {
		t.Fatal(err)
	}
	e.Write([]byte("again"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := decode(t, buf.Bytes()); string(got) != "again" {
		t.Errorf("after a failure, next frame decodes to %q", got)
	}
	// After Close, only Reset starts a frame: a Write went on into a
	// frame of its own on the old destination.
	if _, err := e.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := e.Flush(); err == nil {
		t.Error("Flush after Close succeeded")
	}
	if n := buf.Len(); e.Close() != nil || buf.Len() != n {
		t.Errorf("Close twice: an error, or %d more bytes", buf.Len()-n)
	}
	if got := decode(t, buf.Bytes()); string(got) != "again" {
		t.Errorf("after Close twice and refused writes, the stream decodes to %q", got)
	}
	if v := Version(); !strings.HasPrefix(v, "1.") {
		t.Errorf("Version() = %q", v)
	}
}

// TestEmptyFramesAreNotWritten: a frame closed with nothing in it writes
// nothing (13 bytes of an empty frame each before), flushed or not, as the
// pure-Go encoder does; levels switched before any bytes leave no trace.
func TestEmptyFramesAreNotWritten(t *testing.T) {
	e, err := NewEncoder(0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, level := range []int{3, 5, 9} {
		if err := e.Reset(&buf, level); err != nil {
			t.Fatal(err)
		}
		if level == 5 {
			e.Write(nil)
			e.Flush()
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("three empty frames wrote %d bytes, want none", buf.Len())
	}
}

// BenchmarkEncoder compares libzstd with the pure-Go encoder at level 3 on
// the same text, streamed in 256 KiB writes.
func BenchmarkEncoder(b *testing.B) {
	data := sample(16 << 20)
	b.Run("libzstd", func(b *testing.B) {
		e, _ := NewEncoder(0)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			e.Reset(io.Discard, 3)
			for off := 0; off < len(data); off += 256 << 10 {
				e.Write(data[off : off+256<<10])
			}
			e.Close()
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			e.Reset(io.Discard)
			for off := 0; off < len(data); off += 256 << 10 {
				e.Write(data[off : off+256<<10])
			}
			e.Close()
		}
	})
}
