package adaptive

import "time"

// GiB is the unit AWS bills transfer in ("GB" on the price list is 2^30
// bytes).
const GiB = 1 << 30

// Model turns an arm's ratio and CPU into dollars, for one rule.
type Model struct {
	TransferPerGiB float64 // inter-region transfer, $ per GiB
	VCPUSecond     float64 // compression where the rule's source runs, $ per vCPU-second
	// Regions is how many regions other than its source's an object of
	// the rule crosses to: every byte saved is saved once per region.
	Regions int
	// DecodeVCPUSecond sums, over the regions the rule delivers to (the
	// source's own too, when it is a target), what a vCPU-second costs
	// where each decodes: each decodes every byte.
	DecodeVCPUSecond float64
	// DecodeSeconds is the CPU a target spends decoding one byte of zstd
	// output (measured at start-up; decoding costs about the same at every
	// level). Stored objects cost a copy, counted as nothing.
	DecodeSeconds float64
}

// Benefit is the net benefit, in dollars per GiB of input, of an arm that
// shrinks input to outPerIn of its size for cpuPerByte normalised
// compression CPU-seconds per input byte.
func (m Model) Benefit(a Arm, outPerIn, cpuPerByte float64) float64 {
	saved := (1 - outPerIn) * m.TransferPerGiB * float64(m.Regions)
	cost := cpuPerByte * GiB * m.VCPUSecond
	if a != Store {
		cost += m.DecodeSeconds * GiB * m.DecodeVCPUSecond
	}
	return saved - cost
}

// VCPUSecond converts an hourly vCPU price.
func VCPUSecond(perHour float64) float64 { return perHour / float64(time.Hour/time.Second) }
