//go:build !linux

package archive

import "time"

var cpuEpoch = time.Now()

// threadCPU falls back to wall time where no per-thread CPU clock is read:
// xrc's workers run on Linux, and elsewhere the figure is only an upper
// bound.
func threadCPU() time.Duration { return time.Since(cpuEpoch) }
