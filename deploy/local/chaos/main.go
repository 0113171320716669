// Command chaos runs the whole xrc pipeline on the local stack under fire:
// two source and two target worker processes replicate objects with every
// edge case while a killer SIGKILLs a random worker again and again, and
// poison is injected into both queues and the target staging bucket. At
// the end it checks, one line per check, that nothing was lost, corrupted,
// resurrected or written from poison, that every poison message sits in
// the right dead-letter queue and nothing else does, and that no multipart
// upload is left behind; it prints "N passed, M failed" and exits non-zero
// on any failure.
//
// Run it through `make chaos` (2,000 objects, 10 kills); `make test` runs a
// small version (TestChaos).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xrc-dev/xrc/internal/localstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := defaults()
	flag.IntVar(&o.Objects, "objects", 2000, "objects to replicate (besides overwrites, deletes and big ones)")
	flag.IntVar(&o.Kills, "kills", 10, "workers to SIGKILL (and restart) along the way")
	flag.IntVar(&o.Big, "big", 3, "objects of -big-size")
	flag.Int64Var(&o.BigSize, "big-size", 110<<20, "size of the big objects")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the data and of the killer")
	flag.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "how long the run may take")
	flag.Parse()
	env, err := localstack.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	o.Out = os.Stdout
	results, err := run(ctx, env, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if failed(results) > 0 {
		os.Exit(1)
	}
}
