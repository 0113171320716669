// Package cpuclock reads the CPU time of the calling OS thread. Around code
// pinned to its thread (runtime.LockOSThread) the difference of two readings
// is the CPU that code spent, whatever else the process does meanwhile:
// other goroutines, S3 reads and writes, the garbage collector's threads.
// That is how xrc measures compression alone.
package cpuclock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Thread returns the CPU time the calling OS thread has used.
func Thread() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Process returns the CPU time (user and system) of the whole process.
func Process() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
