package source

import "testing"

// TestBuffers: a prefetch buffer has the length asked for, in a power-of-two
// size class of at least 4 KiB up to prefetchMax; larger ones are plain
// allocations, and put takes back only buffers of a class.
func TestBuffers(t *testing.T) {
	var b buffers
	for _, size := range []int{0, 1, 4096, 4097, 64 << 10, prefetchMax - 1, prefetchMax, prefetchMax + 1} {
		buf := b.get(size)
		if len(buf) != size {
			t.Errorf("get(%d): length %d", size, len(buf))
		}
		if size <= prefetchMax && (cap(buf) < size || cap(buf)&(cap(buf)-1) != 0 || cap(buf) < 1<<minBufferBits) {
			t.Errorf("get(%d): capacity %d, want a power of two of at least 4 KiB", size, cap(buf))
		}
		b.put(buf)
	}
	if n := len(b.classes); 1<<(n-1+minBufferBits) != prefetchMax {
		t.Errorf("largest class %d bytes, want prefetchMax %d", 1<<(n-1+minBufferBits), prefetchMax)
	}
	b.put(make([]byte, 5000)) // not a class size: dropped
	if buf := b.get(5000); cap(buf) != 8192 {
		t.Errorf("get(5000) after put of a foreign buffer: capacity %d, want 8192", cap(buf))
	}
}
