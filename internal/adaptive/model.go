package adaptive

import (
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

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

// FargateGBPerVCPU is the memory a Fargate task has per vCPU: the CDK app's
// default task, 1 vCPU and 2 GB.
const FargateGBPerVCPU = 2

// FargateVCPUSecond is what a vCPU-second costs on Fargate: the vCPU and
// the memory that comes with it (a fifth more at Spot's prices), as `xrc
// savings` prices Fargate against Lambda.
func FargateVCPUSecond(vcpuHour, gbHour float64) float64 {
	return VCPUSecond(vcpuHour + FargateGBPerVCPU*gbHour)
}

// RuleModel is rule r's cost model in cfg: transfer to the regions its
// bytes cross to, and CPU priced where it is spent, compression where the
// rule's source runs, decoding in each region it delivers to, on Lambda at
// a function's price (hybrid runs mostly on Fargate). DecodeSeconds is
// left for the caller, who measures it.
func RuleModel(cfg *config.Config, r *config.Rule) Model {
	p := cfg.Settings.Prices
	memory := cfg.Settings.Lambda.MemoryMB
	if memory <= 0 { // a config not through config.Parse's defaults
		memory = config.DefaultLambdaMemoryMB
	}
	price := func(c config.Compute) float64 {
		if c == config.ComputeLambda {
			return LambdaVCPUSecond(p.LambdaGBSecond, memory)
		}
		return FargateVCPUSecond(p.VCPUHour, p.FargateGBHour)
	}
	_, crossed := r.Regions()
	m := Model{TransferPerGiB: p.TransferPerGB, VCPUSecond: price(r.Compute), Regions: crossed}
	for _, name := range r.DeliveredRegions() {
		region, _ := cfg.Region(name)
		m.DecodeVCPUSecond += price(region.Compute)
	}
	if crossed > 0 {
		// Their mean: TransferPerGiB × Regions is what a GiB crossing to
		// all of them costs, where a region prices its own.
		m.TransferPerGiB = cfg.CrossingPrice(r) / float64(crossed)
	}
	return m
}
