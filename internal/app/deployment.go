package app

import (
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/config"
)

// Deployment is what the CDK app fixed when it deployed a task, read from
// its environment; zero values where not known (a worker run by hand).
// The config document a task reads at start may since have been edited
// by hand in SSM, and must not contradict what the deployment sized and
// wired for the document it had.
type Deployment struct {
	StackName   string // XRC_STACK_NAME: its tables, queues and metrics' namespace
	MetricsAddr string // XRC_METRICS_ADDR: what its health check probes
	// MemoryMB is the task's memory (XRC_MEMORY_MB), GoMemLimitMiB its
	// GOMEMLIMIT as the CDK app sets it ("<n>MiB").
	MemoryMB, GoMemLimitMiB int
}

// DeploymentFromEnv reads a task's Deployment.
func DeploymentFromEnv(getenv func(string) string) Deployment {
	d := Deployment{StackName: getenv("XRC_STACK_NAME"), MetricsAddr: getenv("XRC_METRICS_ADDR")}
	d.MemoryMB, _ = strconv.Atoi(getenv("XRC_MEMORY_MB"))
	d.GoMemLimitMiB = GoMemLimitMiB(getenv)
	return d
}

// GoMemLimitMiB is GOMEMLIMIT in MiB as the CDK app writes it ("<n>MiB"),
// 0 for any other form.
func GoMemLimitMiB(getenv func(string) string) int {
	n, ok := strings.CutSuffix(getenv("GOMEMLIMIT"), "MiB")
	if !ok {
		return 0
	}
	v, _ := strconv.Atoi(n)
	return v
}

// Check refuses a document of another stack (another's tables, queues and
// alarms, not this task's role's), and gives the task the metrics address
// its health check probes where the document names another: listening
// elsewhere, every task would fail its health check and be replaced, an
// outage. Said at warn.
func (d Deployment) Check(cfg *config.Config, log *zap.Logger) error {
	if d.StackName != "" && cfg.Settings.StackName != d.StackName {
		return NotStarted(fmt.Errorf("the document's settings.stackName %q is not %q, the stack this task was deployed for: deploy the change (cdk deploy) rather than edit the parameter", cfg.Settings.StackName, d.StackName))
	}
	if d.MetricsAddr != "" && cfg.Settings.Worker.MetricsAddr != d.MetricsAddr {
		log.Warn("the document's settings.worker.metricsAddr is not the one this task was deployed with, which its health check probes: listening on the deployed one; deploy the change (cdk deploy) to move it",
			zap.String("document", cfg.Settings.Worker.MetricsAddr), zap.String("deployed", d.MetricsAddr))
		cfg.Settings.Worker.MetricsAddr = d.MetricsAddr
	}
	return nil
}

// RoomForCompressors (a task's, or a function's of that memory and GOMEMLIMIT) refuses rules whose compressors (libzstd's memory,
// outside the Go heap) need more room than the task's GOMEMLIMIT leaves
// them in its memory: the CDK app sized it for the levels the deployed
// document had (config.GoMemLimitMiB), and a document edited by hand to
// higher levels would run the task out of memory. Nothing is refused
// where the deployment is not known.
func (d Deployment) RoomForCompressors(cfg *config.Config, rules []string) error {
	memMB, limitMiB := d.MemoryMB, d.GoMemLimitMiB
	if memMB <= 0 || limitMiB <= 0 {
		return nil
	}
	need := 0
	for _, id := range rules {
		if r, ok := cfg.Rule(id); ok {
			need = max(need, cfg.SourceCompressorsMiB(r))
		}
	}
	if config.GoMemLimitMiB(memMB, need) < limitMiB {
		return fmt.Errorf("the rules' levels need %d MiB of compressors, more than GOMEMLIMIT's %d MiB in %d MB leaves them (deployed for lower levels): deploy the change (cdk deploy) rather than edit the parameter", need, limitMiB, memMB)
	}
	return nil
}
