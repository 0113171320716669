package deliver

// BufferMax is bufferMax for the external tests: the largest object
// written with one PUT.
const BufferMax = bufferMax

// Moves is how often the worker's held work reported progress.
func (w *Worker) Moves() int64 { return w.runtime.Moves() }

// ManifestMemoryFree reports whether no delivery holds manifest memory.
func (w *Worker) ManifestMemoryFree() bool {
	if w.manifestMem == nil || !w.manifestMem.TryAcquire(w.manifestCap) {
		return false
	}
	w.manifestMem.Release(w.manifestCap)
	return true
}

// HoldManifestMemory takes the whole manifest budget, as a delivery of a
// manifest larger than it would, until the returned func is called.
func (w *Worker) HoldManifestMemory() (release func(), ok bool) {
	if w.manifestMem == nil || !w.manifestMem.TryAcquire(w.manifestCap) {
		return nil, false
	}
	return func() { w.manifestMem.Release(w.manifestCap) }, true
}
