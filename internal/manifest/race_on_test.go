//go:build race

package manifest

// raceDetector: the race detector's bookkeeping allocates too, so
// allocation bounds are looser under it.
const raceDetector = true
