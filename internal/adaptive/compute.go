package adaptive

import (
	"math"
	"time"
)

// This file compares the two ways to run xrc's workers: Fargate Spot tasks
// (a fixed monthly cost, cheap CPU) and Lambda (nothing while idle,
// dearer CPU), for a volume of objects and bytes.

// What the workers spend besides waiting, source and one target region
// together, as BenchmarkHandlerCPU (internal/lambda) measured it with both
// handlers on the local stack (AMD EPYC, libzstd, the adaptive levels on
// the demo corpus; TLS, hashing and the S3 clients included): CPU-seconds
// per GiB of input and per object, the medians of the runs of 2026-12-03
// (per GiB, source 6.3-7.4 and target 3.1-3.9 in three runs; per object,
// source 0.26-0.36 ms and target 0.49-0.62 ms in five, the source's down
// from 0.68 ms since a small object costs it one GET instead of HEAD and
// GET; the target's then scaled by 0.72, the median of three runs
// alternating the builds before and after it writes a new key with one
// PUT instead of HEAD and PUT: 0.78, 0.57, 0.72), the per-object part taken
// out of the per-GiB one.
const (
	SourceCPUPerGiB    = 6.5
	TargetCPUPerGiB    = 3.6
	SourceCPUPerObject = 0.00032
	TargetCPUPerObject = 0.00040
	WorkerCPUPerGiB    = SourceCPUPerGiB + TargetCPUPerGiB // one target region
	WorkerCPUPerObject = SourceCPUPerObject + TargetCPUPerObject
)

// WorkerCPU is what a rule's workers spend per GiB and per object when
// regions target regions each unpack and write every object.
func WorkerCPU(regions int) (perGiB, perObject float64) {
	n := float64(max(regions, 1))
	return SourceCPUPerGiB + n*TargetCPUPerGiB, SourceCPUPerObject + n*TargetCPUPerObject
}

// lambdaMBPerVCPU is the memory at which Lambda gives a function one vCPU.
const lambdaMBPerVCPU = 1769

// lambdaParallel is how many vCPUs one invocation keeps busy at most: the
// handlers work on two archives at a time.
const lambdaParallel = 2

// ComputeModel prices a month of a worker's work on Fargate Spot and on
// Lambda.
type ComputeModel struct {
	VCPUHour      float64 // Fargate Spot, $ per vCPU-hour
	FargateGBHour float64 // Fargate Spot, $ per GB-hour of task memory
	TaskVCPU      float64 // a task's size (the CDK app's default: 1 vCPU, 2 GB)
	TaskGB        float64
	// FixedPerMonth is what Fargate costs whatever the volume (config
	// prices.fixedPerMonth); on Lambda nothing is paid while the queue is
	// empty.
	FixedPerMonth    float64
	LambdaGBSecond   float64
	LambdaPerMillion float64 // $ per million invocations
	LambdaMemoryMB   int
	// ObjectsPerInvocation is how many objects one invocation takes on
	// average (bounded by settings.lambda.batchSize, and by the volume
	// the batching window gathers).
	ObjectsPerInvocation float64
	// Utilization is CPU time over billed time while a worker is busy
	// (1: it never waits on S3). Both ways pay for waiting; Lambda by the
	// millisecond, Fargate by the task-second.
	Utilization float64
}

// Volume is a month of a worker's input.
type Volume struct {
	Objects float64
	Bytes   float64
}

// CPUSeconds is what v costs at perGiB CPU-seconds per GiB and perObject
// per object.
func (v Volume) CPUSeconds(perGiB, perObject float64) float64 {
	return v.Bytes/GiB*perGiB + v.Objects*perObject
}

func (m ComputeModel) utilization() float64 {
	if m.Utilization <= 0 || m.Utilization > 1 {
		return 1
	}
	return m.Utilization
}

// fargatePerCPUSecond is what one CPU-second of work costs on Fargate Spot:
// the task's time, its memory included, at the utilization.
func (m ComputeModel) fargatePerCPUSecond() float64 {
	task := m.TaskVCPU*m.VCPUHour + m.TaskGB*m.FargateGBHour
	return task / float64(time.Hour/time.Second) / m.TaskVCPU / m.utilization()
}

// lambdaPerCPUSecond is what one CPU-second of work costs on Lambda: the
// function's GB-seconds while it runs (its vCPUs busy, up to two).
func (m ComputeModel) lambdaPerCPUSecond() float64 {
	return LambdaVCPUSecond(m.LambdaGBSecond, m.LambdaMemoryMB) / m.utilization()
}

// LambdaVCPUSecond is what one vCPU-second costs on a function of memoryMB
// at gbSecond: Lambda gives CPU in proportion to memory, and bills the
// memory (about 5.5 times a Fargate Spot vCPU-second with its memory, at the
// defaults).
func LambdaVCPUSecond(gbSecond float64, memoryMB int) float64 {
	vcpu := math.Min(float64(memoryMB)/lambdaMBPerVCPU, lambdaParallel)
	return float64(memoryMB) / 1024 * gbSecond / vcpu
}

func (m ComputeModel) invocations(objects float64) float64 {
	return objects / math.Max(m.ObjectsPerInvocation, 1)
}

// Fargate is a month of work of cpu CPU-seconds on Fargate Spot.
func (m ComputeModel) Fargate(cpu float64) float64 {
	return m.FixedPerMonth + cpu*m.fargatePerCPUSecond()
}

// Lambda is a month of work of cpu CPU-seconds over objects objects on
// Lambda.
func (m ComputeModel) Lambda(cpu, objects float64) float64 {
	return cpu*m.lambdaPerCPUSecond() + m.invocations(objects)*m.LambdaPerMillion/1e6
}

// BreakEven is the monthly volume, in bytes and objects of objectSize
// bytes, from which Fargate Spot costs less than Lambda, at perGiB and
// perObject CPU-seconds; +Inf when Lambda is never dearer.
func (m ComputeModel) BreakEven(objectSize, perGiB, perObject float64) (bytes, objects float64) {
	perByte := perGiB/GiB + perObject/objectSize
	// Per byte of input, Lambda costs this much more; the fixed part pays
	// for itself once enough bytes come.
	extra := perByte*(m.lambdaPerCPUSecond()-m.fargatePerCPUSecond()) + m.invocations(1/objectSize)*m.LambdaPerMillion/1e6
	if extra <= 0 {
		return math.Inf(1), math.Inf(1)
	}
	bytes = m.FixedPerMonth / extra
	return bytes, bytes / objectSize
}
