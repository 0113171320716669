package main

// This file runs the demo's two roles on Lambda, locally: cmd/xrc-lambda in
// the AWS Lambda Runtime Interface Emulator, fed by a stand-in for the SQS
// event source mapping with the config's settings.lambda.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

// function is one role on Lambda: the emulator running xrc-lambda and the
// mapping feeding it.
type function struct {
	name, logPath string
	emu           *localstack.Emulator
	cancel        context.CancelFunc
	polling       sync.WaitGroup
	cpuSeconds    float64
	once          sync.Once
}

func (f *function) label() string   { return f.name }
func (f *function) logFile() string { return f.logPath }
func (f *function) cpu() float64    { return f.cpuSeconds }

func (f *function) exited() error {
	select {
	case <-f.emu.Done():
		return fmt.Errorf("%s: the emulator exited early (%v); see %s", f.name, f.emu.Err(), f.logPath)
	default:
		return nil
	}
}

// stop ends the mapping, then the function (after the invocation in
// flight, if any), counting the CPU both processes used.
func (f *function) stop() {
	f.once.Do(func() {
		f.cancel()
		f.polling.Wait()
		f.cpuSeconds = f.emu.CPU().Seconds()
		f.emu.Stop()
	})
}

// startFunctions builds xrc-lambda and starts the rule's source function
// and the destination region's target function, each with its mapping.
func startFunctions(ctx context.Context, env localstack.Env, cfg *config.Config, dep localstack.Deployment, cfgPath, bin, logDir string) ([]runner, error) {
	exe := filepath.Join(bin, "bootstrap")
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./cmd/xrc-lambda")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("building xrc-lambda: %w", err)
	}
	sqsClient, err := env.SQS(ctx)
	if err != nil {
		return nil, err
	}
	rule, l := cfg.Rules[0], cfg.Settings.Lambda
	dest := rule.Destinations[0].Region
	roles := []struct {
		name, queue string
		batch       int
		window      time.Duration
		env         []string
	}{
		{"xrc-lambda source", dep.SourceQueues[rule.ID], l.BatchSize, l.BatchingWindow.D(),
			[]string{"XRC_ROLE=source", "XRC_REGION=" + rule.SourceRegion, "XRC_RULES=" + rule.ID, "XRC_QUEUE_URL=" + dep.SourceQueues[rule.ID]}},
		{"xrc-lambda target", dep.TargetQueues[dest], l.TargetBatchSize, 0,
			[]string{"XRC_ROLE=target", "XRC_REGION=" + dest, "XRC_QUEUE_URL=" + dep.TargetQueues[dest]}},
	}
	var out []runner
	for _, r := range roles {
		logPath := filepath.Join(logDir, "demo-"+filepath.Base(r.name[len("xrc-lambda "):])+"-lambda.log")
		logf, err := os.Create(logPath)
		if err != nil {
			return out, err
		}
		emu, err := localstack.StartEmulator(ctx, exe, append(r.env, "XRC_CONFIG="+cfgPath), l.Timeout.D(), logf)
		if err != nil {
			return out, fmt.Errorf("%s: %w", r.name, err)
		}
		pctx, cancel := context.WithCancel(ctx)
		f := &function{name: r.name, logPath: logPath, emu: emu, cancel: cancel}
		m := &localstack.Mapping{SQS: sqsClient, QueueURL: r.queue, BatchSize: r.batch, Window: r.window,
			// What the CDK app gives a queue a function consumes.
			Visibility: max(cfg.Settings.Worker.VisibilityTimeout.D(), 6*l.Timeout.D()), Invoke: emu.InvokeSQS}
		f.polling.Go(func() {
			m.Run(pctx, func(err error) { fmt.Printf("    %s: invocation failed: %v\n", r.name, err) })
		})
		out = append(out, f)
	}
	return out, nil
}
