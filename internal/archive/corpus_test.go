package archive

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	corpusgen "github.com/xrc-dev/xrc/internal/corpus"
)

// The benchmark corpus is generated, never stored: five classes of
// deterministic data (fixed seeds) that stand in for what xrc moves.
// bench.sh dumps the very same bytes with -dump to run the zstd CLI on them.
var (
	corpusSize = flag.Int("corpus-size", 32<<20, "bytes per corpus class for benchmarks and -dump")
	dumpDir    = flag.String("dump", "", "TestDumpCorpus writes each corpus class to this directory")
	corpusDir  = flag.String("corpus-dir", "", "benchmarks read each corpus class from this directory (as -dump wrote it) instead of generating it")
)

// corpusClasses are the data classes, in benchmark order.
var corpusClasses = corpusgen.Classes

var corpusCache sync.Map // class -> []byte; generated once per process

// corpus returns the class's data, *corpusSize bytes.
func corpus(class string) []byte {
	key := fmt.Sprintf("%s/%d", class, *corpusSize)
	if b, ok := corpusCache.Load(key); ok {
		return b.([]byte)
	}
	var b []byte
	if *corpusDir != "" {
		var err error
		if b, err = os.ReadFile(filepath.Join(*corpusDir, class)); err != nil {
			panic(err) // only benchmark runs set -corpus-dir
		}
	} else {
		b = corpusgen.Generate(class, *corpusSize)
	}
	corpusCache.Store(key, b)
	return b
}

// TestDumpCorpus writes the benchmark corpus to -dump DIR, one file per
// class named after it. Without -dump it does nothing.
func TestDumpCorpus(t *testing.T) {
	if *dumpDir == "" {
		t.Skip("no -dump directory given")
	}
	fmt.Printf("encoder of the benchmarks: %s\n", NewWriter(WriterOptions{}).Encoder())
	if err := os.MkdirAll(*dumpDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range corpusClasses {
		if err := os.WriteFile(filepath.Join(*dumpDir, c), corpus(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCorpusDeterministic(t *testing.T) {
	for _, c := range corpusClasses {
		a, b := corpusgen.Generate(c, 100_000), corpusgen.Generate(c, 100_000)
		if string(a) != string(b) || len(a) != 100_000 {
			t.Errorf("%s: not deterministic or wrong size (%d)", c, len(a))
		}
	}
}
