//go:build !unix

package source_test

// cpuSeconds is not measured here; benchmarks then report 0 cores.
func cpuSeconds() float64 { return 0 }
