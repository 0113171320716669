// Package adaptive decides how hard each object is compressed. It holds the
// arms (the settings the encoder really has, plus storing), the content
// classes objects fall into, the cost model that turns bytes saved and CPU
// spent into dollars, the learner that finds, per rule and class, the arm
// with the best net benefit, and the CPU benchmark that makes figures of
// different tasks comparable.
//
// Everything but the benchmark is pure: given its inputs, the time and a
// seeded random source, the learner decides the same way every time.
//
// # The learner
//
// Per (rule, class) and arm it keeps bytes in, bytes out and normalised
// compression CPU-seconds, as exponentially decayed sums (an observation
// counts half after Config.HalfLife), so a workload that changes is
// learnt again. An arm's net benefit per GiB of input is
//
//	(1 - out/in) × transfer $/GiB × regions crossed to
//	  - compression CPU-s / GiB × $/vCPU-s where the source runs
//	  - decompression CPU-s / GiB × Σ $/vCPU-s over the regions delivered to
//
// A destination in the source region is delivered to but not crossed to:
// it decodes, and saves no transfer.
//
// It exploits the arm with the best benefit among those it has seen
// enough of, explores the neighbours of that arm with a probability that
// decays with experience down to a floor, and, while the oldest message it
// works on is older than the freshness target, steps down to faster arms
// until it recovers: saving money must never let replication fall behind.
// Never below the fastest level that compresses, though: storing saves
// next to no CPU over it and pays full transfer, and a backlog that lasts
// is for scaling out to absorb.
package adaptive
