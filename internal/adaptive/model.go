package adaptive

import "time"

// GiB is the unit AWS bills transfer in ("GB" on the price list is 2^30
// bytes).
const GiB = 1 << 30

// Model turns an arm's ratio and CPU into dollars, for one rule.
type Model struct {
	TransferPerGiB float64 // inter-region transfer, $ per GiB
	VCPUSecond     float64 // compute, $ per vCPU-second
	// Regions is how many regions other than its source's an object of
	// the rule crosses to: every byte saved is saved once per region.
	// Decoders is how many regions unpack it (the source's own too, when
	// it is a target): each decodes every byte.
	Regions, Decoders int
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
	cpu := cpuPerByte * GiB
	if a != Store {
		cpu += m.DecodeSeconds * GiB * float64(m.Decoders)
	}
	return saved - cpu*m.VCPUSecond
}

// VCPUSecond converts an hourly vCPU price.
func VCPUSecond(perHour float64) float64 { return perHour / float64(time.Hour/time.Second) }
