package source

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
	"golang.org/x/sync/semaphore"
)

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

// TestArena: concurrent allocations never overlap, each has the length and
// capacity asked for (so an append cannot run into the next), chunks are
// filled before another is taken, and free gives them back for reuse.
func TestArena(t *testing.T) {
	var pool sync.Pool
	a := &arena{pool: &pool}
	// A 0-byte object read first must still count as held.
	if b := a.alloc(0); b == nil {
		t.Fatal("alloc(0) on a new arena returned nil")
	}
	sizes := []int{0, 1, 100, 4096, inlineMax - 1, inlineMax, 65536, 3}
	bufs := make([][]byte, 64)
	var wg sync.WaitGroup
	for i := range bufs {
		wg.Go(func() {
			b := a.alloc(sizes[i%len(sizes)])
			for j := range b {
				b[j] = byte(i)
			}
			bufs[i] = b
		})
	}
	wg.Wait()
	total := 0
	for i, b := range bufs {
		if n := sizes[i%len(sizes)]; len(b) != n || cap(b) != n {
			t.Fatalf("alloc(%d): len %d cap %d", n, len(b), cap(b))
		}
		for _, c := range b {
			if c != byte(i) {
				t.Fatalf("buffer %d overwritten by another allocation", i)
			}
		}
		total += len(b)
	}
	// Each chunk but the last is left with less than inlineMax unused.
	if want := total/(arenaChunk-inlineMax) + 1; len(a.chunks) > want {
		t.Errorf("%d chunks for %d bytes, want at most %d", len(a.chunks), total, want)
	}
	for _, c := range a.chunks {
		if len(*c) != arenaChunk {
			t.Errorf("chunk of %d bytes, want %d", len(*c), arenaChunk)
		}
	}
	a.free()
	if len(a.chunks) != 0 || len(a.rest) != 0 {
		t.Error("free left chunks in the arena")
	}
}

// TestUploadMemory: an upload holds four parts of the part size (which
// grows past 8 MiB only for archives above about 70 GiB); an archive of
// objects that each fit the budget alone but not together does not fit.
func TestUploadMemory(t *testing.T) {
	if got := uploadBuffers(partSize(1 << 30)); got != 32<<20 {
		t.Errorf("buffers of a 1 GiB archive: %d, want 32 MiB", got)
	}
	if p := partSize(5 << 40); p*10000 < 5<<40+5<<40/64 {
		t.Errorf("parts of %d bytes cannot carry 5 TiB in 10,000 parts", p)
	}
	// S3's largest object (10,000 parts of 5 GiB) cannot be staged: its
	// archive is larger. Below it, parts never pass S3's 5 GiB, and the
	// archive, at most a 256th over its objects, fits 10,000 of them.
	const largest = 10_000 * 5 << 30
	if stagingHolds(largest) || !stagingHolds(largest-largest/200) {
		t.Errorf("staging holds %v at S3's largest, %v a 200th below it", stagingHolds(largest), stagingHolds(largest-largest/200))
	}
	for _, total := range []int64{44 << 40, 45 << 40, largest - largest/200} {
		p := partSize(total)
		if p > 5<<30 || p*10000 < total+total/256+64<<20 {
			t.Errorf("an archive of %d bytes of objects: parts of %d bytes", total, p)
		}
	}
	if w := (&Worker{}); w.fits([]entry{{obj: manifest.Object{Key: "k", Size: largest, Destinations: []manifest.Destination{{Bucket: "d", Key: "k"}}}}}) {
		t.Error("an archive of S3's largest object fits, without an upload memory")
	}
	w := &Worker{Deps: Deps{UploadMemory: 40 << 20}, uploadMem: semaphore.NewWeighted(40 << 20)}
	big := func(size int64) entry {
		return entry{obj: manifest.Object{Key: "k", Size: size, Destinations: []manifest.Destination{{Bucket: "d", Key: "k"}}}}
	}
	if !w.fits([]entry{big(60 << 30)}) || w.fits([]entry{big(60 << 30), big(60 << 30)}) {
		t.Error("one 60 GiB object should fit 40 MiB of buffers, two in one archive not")
	}
	if !(&Worker{}).fits([]entry{big(5 << 40)}) {
		t.Error("without a budget everything fits")
	}
}

// TestSetChecksum: the manifest carries the object's own full-object
// checksum, a SHA-256 also as hex; a composite one (a checksum of part
// checksums, typed or, from a store that gives no type, "-N" suffixed)
// or none leaves the destinations a SHA-256 of the bytes.
func TestSetChecksum(t *testing.T) {
	sha := sha256.Sum256([]byte("x"))
	sha64 := base64.StdEncoding.EncodeToString(sha[:])
	for _, tt := range []struct {
		head          s3.HeadObjectOutput
		alg, sum, hex string
	}{
		{s3.HeadObjectOutput{}, "SHA256", "", ""},
		{s3.HeadObjectOutput{ChecksumType: s3types.ChecksumTypeFullObject, ChecksumCRC64NVME: aws.String("AAAAAAAAAAE=")}, "CRC64NVME", "AAAAAAAAAAE=", ""},
		{s3.HeadObjectOutput{ChecksumCRC32: aws.String("AAAAAg==")}, "CRC32", "AAAAAg==", ""},
		{s3.HeadObjectOutput{ChecksumType: s3types.ChecksumTypeFullObject, ChecksumSHA256: &sha64}, "SHA256", sha64, hex.EncodeToString(sha[:])},
		{s3.HeadObjectOutput{ChecksumType: s3types.ChecksumTypeComposite, ChecksumCRC32C: aws.String("AAAAAQ==")}, "SHA256", "", ""},
		{s3.HeadObjectOutput{ChecksumSHA256: aws.String(sha64 + "-3")}, "SHA256", "", ""},
		{s3.HeadObjectOutput{ChecksumCRC32C: aws.String("AAAAAAAAAAE=")}, "SHA256", "", ""}, // not a CRC32C's length
	} {
		o := manifest.Object{ChecksumAlgorithm: "CRC32", Checksum: "stale", SHA256: "stale"}
		setChecksum(&o, &tt.head)
		if o.ChecksumAlgorithm != tt.alg || o.Checksum != tt.sum || o.SHA256 != tt.hex {
			t.Errorf("%+v: %s %q sha256 %q, want %s %q %q", tt.head, o.ChecksumAlgorithm, o.Checksum, o.SHA256, tt.alg, tt.sum, tt.hex)
		}
	}
}

// heldGets answers GetObject with the size asked for once release is
// closed, counting the calls under way at once.
type heldGets struct {
	S3API
	release chan struct{}
	size    int // of every object; 4 MiB if 0
	mu      sync.Mutex
	now     int
	most    int
}

func (h *heldGets) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	h.mu.Lock()
	h.now++
	h.most = max(h.most, h.now)
	h.mu.Unlock()
	defer func() { h.mu.Lock(); h.now--; h.mu.Unlock() }()
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(make([]byte, cmp.Or(h.size, 4<<20))))}, nil
}

// TestPrefetchBytesBounded: objects are prefetched at most prefetchBytes
// at a time, whatever the concurrency (256 at most: two builders could
// hold 2 GiB of 4 MiB objects).
func TestPrefetchBytesBounded(t *testing.T) {
	for _, size := range []int64{4 << 20, 2<<20 + 1} {
		prefetchBounded(t, size, prefetchBytes, 16) // 64 MiB of 4 MiB buffers
	}
	// A small task's room (readAhead): 17 MiB.
	prefetchBounded(t, 4<<20, 17<<20, 4)
}

// prefetchBounded prefetches 40 objects of size bytes: at most room bytes
// of buffers are held at once. An object of 2 MiB and a byte takes a buffer
// of 4 MiB (its size class): charged its size, 31 were held, 124 MiB.
func prefetchBounded(t *testing.T, size, room int64, want int) {
	s3 := &heldGets{release: make(chan struct{}), size: int(size)}
	w := &Worker{Deps: Deps{S3: s3, Config: &config.Config{Settings: config.Settings{Worker: config.Worker{Concurrency: 256}}}}, prefetchRoom: room}
	m := &manifest.Manifest{}
	for i := range 40 {
		m.Objects = append(m.Objects, manifest.Object{Bucket: "b", Key: fmt.Sprint(i), ETag: "e", Size: size, Member: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	futures, done := w.prefetch(ctx, m, make([][]byte, len(m.Objects)))
	time.Sleep(200 * time.Millisecond) // for the GETs the budget lets start
	close(s3.release)
	for i, f := range futures {
		if r := <-f; r.err != nil {
			t.Fatal(r.err)
		}
		done(i)
	}
	if s3.most > want {
		t.Errorf("%d objects of %d bytes fetched at once, want at most %d (%d bytes of room)", s3.most, size, want, room)
	}
}

// TestReadAhead: a task whose memory limit leaves little beside the
// staging uploads' buffers reads less ahead, never less than one object's
// buffer; one with room, or with no limit known, the full budgets.
func TestReadAhead(t *testing.T) {
	for _, c := range []struct{ upload, prefetch, inline int64 }{
		{0, prefetchBytes, inlineBudget},
		{1 << 30, prefetchBytes, inlineBudget},
		{384 << 20, prefetchBytes, inlineBudget},
		{102 << 20, 17 << 20, 17 << 19}, // a 204 MiB limit: 2 × 25.5 MiB
		{1 << 20, 2 * prefetchMax, 4 * inlineMax},
	} {
		if p, i := readAhead(c.upload); p != c.prefetch || i != c.inline {
			t.Errorf("readAhead(%d) = %d, %d; want %d, %d", c.upload, p, i, c.prefetch, c.inline)
		}
	}
}

// TestStagedItem: the item whose event announced the write staged is the
// one whose message, coming back, stages it again: not an older write's
// of the same key (stale by then), nor a tag change's.
func TestStagedItem(t *testing.T) {
	item := func(name, seq string) Item { return Item{Ref: events.ObjectRef{EventName: name, Sequencer: seq}} }
	e := entry{obj: manifest.Object{Sequencer: "02"}, items: []Item{
		item("ObjectCreated:Put", "01"), item("ObjectTagging:Put", ""), item("ObjectCreated:Put", "02"),
	}}
	if got := e.stagedItems(); len(got) != 1 || got[0].Ref.Sequencer != "02" {
		t.Errorf("staged items %+v, want the write of sequencer 02", got)
	}
	// S3's event sent twice, in two messages: either coming back stages
	// the write again.
	e.items = append(e.items, item("ObjectCreated:Put", "02"))
	if got := e.stagedItems(); len(got) != 2 {
		t.Errorf("staged items %+v, want both events of sequencer 02", got)
	}
	e.obj.Sequencer = "" // a backfill's: none to tell
	if got := e.stagedItems(); len(got) != 1 || got[0].Ref.Sequencer != "01" {
		t.Errorf("staged items %+v, want the first", got)
	}
}
