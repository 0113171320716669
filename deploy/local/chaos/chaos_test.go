package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestChaos is the small version of make chaos that make test runs: about
// 200 objects, one big one, 3 kills, every kind of poison, every check.
func TestChaos(t *testing.T) {
	env := localstack.Require(t)
	var out bytes.Buffer
	o := defaults()
	o.Objects, o.Kills, o.Big, o.BigSize, o.Timeout = 200, 3, 1, 20<<20, 12*time.Minute
	o.Out = &out
	results, err := run(context.Background(), env, o)
	os.Stdout.Write(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n := failed(results); n > 0 || len(results) == 0 {
		t.Fatalf("%d of %d checks failed (see above)", n, len(results))
	}
}
