package archive

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling OS thread. Around code pinned to
// its thread (runtime.LockOSThread) the difference of two readings is the
// CPU that code spent, whatever else the process does meanwhile: other
// goroutines, S3 reads and writes, the garbage collector's own threads.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
