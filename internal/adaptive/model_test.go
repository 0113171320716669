package adaptive

import (
	"math"
	"testing"

	"github.com/xrc-dev/xrc/internal/config"
)

// TestModelPricesCPUWhereItIsSpent: compression at the price of where the
// rule's source runs, decoding at that of each region delivered to; a
// function's vCPU-second costs several times a Fargate Spot task's.
func TestModelPricesCPUWhereItIsSpent(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{
		Prices: config.Prices{TransferPerGB: 0.02, VCPUHour: 0.01245, FargateGBHour: 0.00137, LambdaGBSecond: config.DefaultLambdaGBSecond},
		Lambda: config.Lambda{MemoryMB: config.DefaultLambdaMemoryMB},
		Regions: []config.Region{{Name: "us-east-1", Role: config.RoleBoth, Compute: config.ComputeFargate},
			{Name: "eu-west-1", Role: config.RoleTarget, Compute: config.ComputeLambda}}}}
	rule := &config.Rule{ID: "r", SourceRegion: "us-east-1", Compute: config.ComputeLambda, Destinations: []config.Destination{
		{Region: "us-east-1", Bucket: "near"}, {Region: "eu-west-1", Bucket: "a"}, {Region: "eu-west-1", Bucket: "b"}}}
	// A Fargate vCPU-second carries its task's memory, as xrc savings
	// prices Fargate against Lambda (the learner priced the vCPU alone).
	fargate := VCPUSecond(0.01245 + 2*0.00137)
	lambda := LambdaVCPUSecond(config.DefaultLambdaGBSecond, config.DefaultLambdaMemoryMB)
	m := RuleModel(cfg, rule)
	if m.Regions != 1 || m.VCPUSecond != lambda || math.Abs(m.DecodeVCPUSecond-(fargate+lambda)) > 1e-15 {
		t.Errorf("model %+v, want 1 region crossed, compression at %g, decoding at %g", m, lambda, fargate+lambda)
	}
	if lambda < 5*fargate {
		t.Errorf("a Lambda vCPU-second at %g, a Fargate Spot one at %g: the defaults moved", lambda, fargate)
	}
	cfg.Settings.Lambda.MemoryMB = 0 // not through config.Parse: its default
	if m := RuleModel(cfg, rule); m.VCPUSecond != lambda {
		t.Errorf("without a Lambda memory: compression at %g, want %g", m.VCPUSecond, lambda)
	}
}

// TestModelPricesTransferPerRegion: a region with its own transfer price
// (a direct region outside AWS pays internet egress) weighs in the rule's:
// a GiB crossing to all its regions costs the sum of their prices.
func TestModelPricesTransferPerRegion(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{
		Prices: config.Prices{TransferPerGB: 0.02},
		Regions: []config.Region{{Name: "us-east-1", Role: config.RoleBoth}, {Name: "eu-west-1", Role: config.RoleTarget},
			{Name: "ap-southeast-2", Role: config.RoleTarget, Direct: true, TransferPerGB: 0.09}}}}
	rule := &config.Rule{ID: "r", SourceRegion: "us-east-1", Destinations: []config.Destination{
		{Region: "us-east-1", Bucket: "near"}, {Region: "eu-west-1", Bucket: "a"}, {Region: "ap-southeast-2", Bucket: "b"}}}
	m := RuleModel(cfg, rule)
	if m.Regions != 2 || math.Abs(m.TransferPerGiB*float64(m.Regions)-0.11) > 1e-12 {
		t.Errorf("model %+v: want 2 regions crossed at $0.11 a GiB together", m)
	}
	local := &config.Rule{ID: "l", SourceRegion: "us-east-1", Destinations: []config.Destination{{Region: "us-east-1", Bucket: "near"}}}
	if m := RuleModel(cfg, local); m.Regions != 0 || m.TransferPerGiB != 0.02 {
		t.Errorf("a rule crossing nowhere: %+v", m)
	}
}
