package adaptive

import (
	"math"
	"testing"
)

func computeModel() ComputeModel {
	return ComputeModel{VCPUHour: 0.01245, FargateGBHour: 0.00137, TaskVCPU: 1, TaskGB: 2, FixedPerMonth: 25,
		LambdaGBSecond: 0.0000133334, LambdaPerMillion: 0.2, LambdaMemoryMB: 1769, ObjectsPerInvocation: 100, Utilization: 1}
}

func TestComputeCosts(t *testing.T) {
	m := computeModel()
	// One CPU-hour: a task-hour on Fargate Spot, 1,769 MB for an hour on
	// Lambda.
	if got, want := m.Fargate(3600)-m.FixedPerMonth, 0.01245+2*0.00137; math.Abs(got-want) > 1e-12 {
		t.Errorf("Fargate CPU-hour = %v, want %v", got, want)
	}
	if got, want := m.Lambda(3600, 0), 3600*1769.0/1024*0.0000133334; math.Abs(got-want) > 1e-9 {
		t.Errorf("Lambda CPU-hour = %v, want %v", got, want)
	}
	if got := m.Lambda(0, 1e8); math.Abs(got-0.2) > 1e-9 {
		t.Errorf("a million invocations = %v, want $0.20", got)
	}
	// More memory, more vCPUs: the same CPU-hour costs the same until the
	// handler's two archives at a time cannot use more.
	m2 := m
	m2.LambdaMemoryMB = 2 * 1769
	if math.Abs(m2.Lambda(3600, 0)-m.Lambda(3600, 0)) > 1e-9 {
		t.Errorf("two vCPUs: %v, one: %v", m2.Lambda(3600, 0), m.Lambda(3600, 0))
	}
	m2.LambdaMemoryMB = 4 * 1769
	if m2.Lambda(3600, 0) <= m.Lambda(3600, 0)*1.9 {
		t.Error("four vCPUs' memory for two busy vCPUs should cost twice")
	}
	// Waiting costs both, in proportion.
	half := m
	half.Utilization = 0.5
	if math.Abs(half.Lambda(3600, 0)-2*m.Lambda(3600, 0)) > 1e-9 || math.Abs(half.Fargate(3600)-25-2*(m.Fargate(3600)-25)) > 1e-9 {
		t.Error("utilization 0.5 should double the CPU part of both")
	}
}

func TestBreakEven(t *testing.T) {
	m := computeModel()
	bytes, objects := m.BreakEven(1<<20, WorkerCPUPerGiB, WorkerCPUPerObject)
	cpu := Volume{Objects: objects, Bytes: bytes}.CPUSeconds(WorkerCPUPerGiB, WorkerCPUPerObject)
	if f, l := m.Fargate(cpu), m.Lambda(cpu, objects); math.Abs(f-l) > 1e-6*f {
		t.Errorf("at the break-even: Fargate %v, Lambda %v", f, l)
	}
	below := Volume{Objects: objects / 2, Bytes: bytes / 2}
	if cpu := below.CPUSeconds(WorkerCPUPerGiB, WorkerCPUPerObject); m.Lambda(cpu, below.Objects) >= m.Fargate(cpu) {
		t.Error("below the break-even, Lambda should be cheaper")
	}
	smaller, _ := m.BreakEven(4<<10, WorkerCPUPerGiB, WorkerCPUPerObject)
	if smaller >= bytes {
		t.Errorf("small objects cost more CPU per byte: break-even %v bytes should be below %v", smaller, bytes)
	}
	free := m
	free.LambdaGBSecond, free.LambdaPerMillion = 0, 0
	if b, _ := free.BreakEven(1<<20, WorkerCPUPerGiB, WorkerCPUPerObject); !math.IsInf(b, 1) {
		t.Errorf("free Lambda: break-even %v, want never", b)
	}
}
