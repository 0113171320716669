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
	switch {
	case err == nil:
	case errors.Is(err, cli.ErrUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	case errors.Is(err, cli.ErrIncomplete):
		fmt.Fprintln(os.Stderr, "xrc:", err)
		os.Exit(3)
	case errors.Is(err, backfill.ErrBusy):
		// Expected of a schedule overlapping a long run: alerting on a
		// backfill task's exit code leaves this one out.
		fmt.Fprintln(os.Stderr, "xrc:", err)
		os.Exit(4)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Stopped by a signal (Ctrl-C, ECS's stop, a Spot interruption):
		// a backfill resumes from its checkpoint on the next run.
		fmt.Fprintln(os.Stderr, "xrc:", err)
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "xrc:", err)
		os.Exit(1)
	}
}
