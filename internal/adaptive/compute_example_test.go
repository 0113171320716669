package adaptive_test

import (
	"fmt"

	"github.com/xrc-dev/xrc/internal/adaptive"
)

func count(n float64) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.1f million", n/1e6)
	}
	return fmt.Sprintf("%.0f thousand", n/1e3)
}

// The README's table: from what volume a day Fargate Spot costs less than
// Lambda, at the config's default prices, 1,769 MB functions taking 100
// objects per invocation, 1 vCPU / 2 GB tasks, the measured CPU, and a
// fixed Fargate cost of $25 a month (prices.fixedPerMonth's default) or
// $98 (plus one region's VPC interface endpoints: 5 x 2 AZs x $0.01/hour),
// for workers busy on CPU all the time they are billed (utilization 1) or
// half of it.
func ExampleComputeModel_BreakEven() {
	fmt.Println("fixed  utilization  object size  GiB/day  objects/day")
	for _, fixed := range []float64{25, 98} {
		for _, u := range []float64{1, 0.5} {
			m := adaptive.ComputeModel{VCPUHour: 0.01245, FargateGBHour: 0.00137, TaskVCPU: 1, TaskGB: 2, FixedPerMonth: fixed,
				LambdaGBSecond: 0.0000133334, LambdaPerMillion: 0.2, LambdaMemoryMB: 1769, ObjectsPerInvocation: 100, Utilization: u}
			for _, size := range []struct {
				name  string
				bytes float64
			}{{"4 KiB", 4 << 10}, {"64 KiB", 64 << 10}, {"1 MiB", 1 << 20}, {"16 MiB", 16 << 20}} {
				bytes, objects := m.BreakEven(size.bytes, adaptive.WorkerCPUPerGiB, adaptive.WorkerCPUPerObject)
				fmt.Printf("$%-5.0f %-12.1f %-12s %-8.0f %s\n", fixed, u, size.name, bytes/adaptive.GiB/30, count(objects/30))
			}
		}
	}
	// Output:
	// fixed  utilization  object size  GiB/day  objects/day
	// $25    1.0          4 KiB        195      51.2 million
	// $25    1.0          64 KiB       1874     30.7 million
	// $25    1.0          1 MiB        4046     4.1 million
	// $25    1.0          16 MiB       4363     279 thousand
	// $25    0.5          4 KiB        104      27.3 million
	// $25    0.5          64 KiB       973      15.9 million
	// $25    0.5          1 MiB        2033     2.1 million
	// $25    0.5          16 MiB       2182     140 thousand
	// $98    1.0          4 KiB        766      200.8 million
	// $98    1.0          64 KiB       7345     120.3 million
	// $98    1.0          1 MiB        15862    16.2 million
	// $98    1.0          16 MiB       17101    1.1 million
	// $98    0.5          4 KiB        408      107.0 million
	// $98    0.5          64 KiB       3813     62.5 million
	// $98    0.5          1 MiB        7971     8.2 million
	// $98    0.5          16 MiB       8553     547 thousand
}
