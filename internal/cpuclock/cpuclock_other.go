//go:build !linux

package cpuclock

import "time"

var epoch = time.Now()

// Thread falls back to wall time where no per-thread CPU clock is read:
// xrc's workers run on Linux, and elsewhere the figure is an upper bound.
func Thread() time.Duration { return time.Since(epoch) }

// Process falls back to wall time, as Thread does.
func Process() time.Duration { return time.Since(epoch) }
