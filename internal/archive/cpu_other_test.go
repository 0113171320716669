//go:build !unix

package archive

// cpuSeconds is not measured here; benchmarks then omit MB/cpu-s.
func cpuSeconds() float64 { return 0 }
