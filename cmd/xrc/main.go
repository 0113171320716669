// Command xrc is the operator CLI: config validation and archive tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/cli"
)

func main() {
	// SIGTERM too: ECS stops a one-off task (xrc backfill) with it, and
	// a cancelled backfill keeps its checkpoint.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Now: time.Now}, app.Version)
	if err == nil {
		return
	}
	code := exitCode(err, ctx.Err() != nil)
	if code == 2 {
		if err != cli.ErrUsage { // bare: the usage is printed already
			fmt.Fprintln(os.Stderr, err)
		}
	} else {
		fmt.Fprintln(os.Stderr, "xrc:", err)
	}
	os.Exit(code)
}

// exitCode is what a failed command exits with (README): 2 a usage error,
// 3 a check that stopped before it compared everything, 4 another backfill
// of the rule is running (expected of a schedule overlapping a long run:
// the alert on backfill tasks' exit codes leaves it out), 130 stopped by a
// signal (Ctrl-C, ECS's stop; a backfill resumes on the next run), 1
// anything else.
func exitCode(err error, signalled bool) int {
	switch {
	case errors.Is(err, cli.ErrUsage):
		return 2
	case errors.Is(err, cli.ErrIncomplete):
		return 3
	case errors.Is(err, backfill.ErrBusy):
		return 4
	case signalled && canceledOnly(err):
		return 130
	}
	return 1
}

// canceledOnly reports whether err is a cancellation and nothing else: a
// stop joined with another failure (a checkpoint that could not be saved,
// the run's metrics not written) is that failure's, which exit 130, left
// out of the alert on backfill tasks' exit codes, would hide.
func canceledOnly(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			if !canceledOnly(x) {
				return false
			}
		}
		return len(e.Unwrap()) > 0
	case interface{ Unwrap() error }:
		return err == context.Canceled || canceledOnly(e.Unwrap())
	}
	return errors.Is(err, context.Canceled)
}
