package main

import (
	"strings"
	"testing"
	"time"
)

func contextOf(m map[string]any) func(string) any { return func(k string) any { return m[k] } }

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions(contextOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.Arch != "arm64" || o.Source.MinTasks != 0 || o.Target.MinTasks != 0 || o.OnDemandBase != 0 || o.Account != "" {
		t.Errorf("defaults = %+v", o)
	}
	for _, w := range []workerOptions{o.Source, o.Target} {
		if err := fargateSize(w.CPU, w.MemoryMB); err != nil {
			t.Errorf("default size: %v", err)
		}
	}
}

func TestOptionsParse(t *testing.T) {
	// -c gives strings, cdk.json gives JSON values: both work.
	o, err := parseOptions(contextOf(map[string]any{
		"alarmEmail":             "ops@example.com, oncall@example.org",
		"sourceMaxTasks":         "4",
		"targetMaxTasks":         float64(40),
		"targetCpu":              "2048",
		"targetMemory":           "8192",
		"onDemandBase":           "1",
		"arch":                   "amd64",
		"oldestMessageAlarm":     "2h",
		"existingVpcs":           `{"us-east-1": {"vpcId": "vpc-1", "subnetIds": ["subnet-1", "subnet-2"], "availabilityZones": ["us-east-1a", "us-east-1b"]}}`,
		"replicationTimeControl": true,
		"account":                "123456789012",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.AlarmEmails) != 2 || o.Source.MaxTasks != 4 || o.Target.MaxTasks != 40 || o.Target.CPU != 2048 ||
		o.OnDemandBase != 1 || o.Arch != "amd64" || o.OldestMessageAge != 2*time.Hour || !o.ReplicationTimeControl ||
		o.VPCs["us-east-1"].VPCID != "vpc-1" || o.Account != "123456789012" {
		t.Errorf("options = %+v", o)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		ctx  map[string]any
		want string
	}{
		{map[string]any{"sourceMinTasks": "5", "sourceMaxTasks": "2"}, "sourceMinTasks"},
		{map[string]any{"targetCpu": "1024", "targetMemory": "1024"}, "of 1024 CPU units takes 2048"},
		{map[string]any{"sourceCpu": "300"}, "sourceCpu"},
		{map[string]any{"arch": "riscv"}, "arch"},
		{map[string]any{"alarmEmail": "not-an-email"}, "alarmEmail"},
		{map[string]any{"account": "12"}, "account"},
		{map[string]any{"oldestMessageAlarm": "90s"}, "oldestMessageAlarm"},
		{map[string]any{"logRetentionDays": "10"}, "logRetentionDays"},
		{map[string]any{"existingVpcs": `{"us-east-1": {"vpcId": "vpc-1"}}`}, "subnetIds is empty"},
		{map[string]any{"existingVpcs": `{"us-east-1": {"vpcId": "vpc-1", "subnets": []}}`}, "existingVpcs"},
		{map[string]any{"version": "has space"}, "version"},
		{map[string]any{"sourceMaxTasks": "many"}, "want an integer"},
	} {
		_, err := parseOptions(contextOf(tc.ctx))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.ctx, err, tc.want)
		}
	}
}

func TestFargateSize(t *testing.T) {
	for _, tc := range []struct {
		cpu, mem int
		ok       bool
	}{
		{256, 512, true}, {256, 1536, false}, {256, 2048, true}, {512, 4096, true}, {1024, 2048, true},
		{1024, 9216, false}, {4096, 30720, true}, {8192, 20480, true}, {8192, 18432, false}, {16384, 122880, true},
	} {
		if err := fargateSize(tc.cpu, tc.mem); (err == nil) != tc.ok {
			t.Errorf("fargateSize(%d, %d) = %v, want ok=%v", tc.cpu, tc.mem, err, tc.ok)
		}
	}
}

// TestGoMemLimit: 85% of the memory for the Go heap, less where libzstd's
// compressors (outside it) would not fit beside it with 128 MiB to spare:
// two at level 19 fit a 2 GiB task's 15%, two at 22 do not, nor two at 19
// in a 512 MiB task.
func TestGoMemLimit(t *testing.T) {
	for _, c := range []struct {
		mem, c int
		want   string
	}{{2048, 0, "1740MiB"}, {2048, 180, "1740MiB"}, {2048, 276, "1644MiB"}, {512, 180, "204MiB"}, {1769, 180, "1461MiB"}, {512, 400, "64MiB"},
		// No compressors (a target), nothing taken off: half of 85% of
		// 189 MB holds a large object's 80 MiB of parts.
		{189, 0, "160MiB"}, {128, 32, "64MiB"}} {
		if got := goMemLimit(c.mem, c.c); got != c.want {
			t.Errorf("goMemLimit(%d MiB, %d MiB of compressors) = %s, want %s", c.mem, c.c, got, c.want)
		}
	}
}

// TestConfigRequired: no config given, the app refuses; it built the
// example's stacks, named as a deployment that kept the example's
// stackName (a destroy without -c config would offer to remove them).
func TestConfigRequired(t *testing.T) {
	t.Setenv("XRC_CONFIG", "")
	if _, err := synthApp(map[string]any{}); err == nil || !strings.Contains(err.Error(), "-c config=PATH") {
		t.Errorf("synth without a config: %v; want it refused, naming -c config=PATH", err)
	}
}

func TestUnknownContext(t *testing.T) {
	got := unknownContext(map[string]any{
		"alarmEmails":                          "typo",
		"alarmEmail":                           "ok",
		"cli-telemetry":                        false,
		"@aws-cdk/core:newStyleStackSynthesis": true,
		"aws:cdk:enable-path-metadata":         true,
	})
	if len(got) != 1 || got[0] != "alarmEmails" {
		t.Errorf("unknownContext = %v, want [alarmEmails]", got)
	}
}

func TestScalingExpressions(t *testing.T) {
	e := newScalingExpressions(10, 0)
	// Per task asked for, and only while one runs: tasks that cannot
	// start do not make the backlog look unserved minute after minute,
	// nor (the tasks asked for unknown while none runs) read as none
	// asked for and step the service out to its maximum.
	if e.Backlog != "IF(FILL(running, 0) < 1, 0, FILL(visible, 0) / IF(FILL(desired, 0) < 1, 1, FILL(desired, 0)))" {
		t.Errorf("backlog not per desired task while one runs: %s", e.Backlog)
	}
	// From zero: exactly one task asked for while messages wait.
	if e.Start != "IF(FILL(visible, 0) > 0 AND FILL(running, 0) < 1, 1, 0)" {
		t.Errorf("start %q", e.Start)
	}
	if !strings.Contains(e.Spare, "<= 5,") || !strings.Contains(e.Idle, "== 0") {
		t.Errorf("spare %q idle %q", e.Spare, e.Idle)
	}
	// Target tasks hold two archives each: full ones are not spare,
	// whatever the backlog target.
	if e := newScalingExpressions(10, 2); !strings.Contains(e.Spare, "<= 5 AND FILL(inflight, 0) / IF(FILL(running, 0) < 1, 1, FILL(running, 0)) <= 1,") {
		t.Errorf("target's spare expression ignores what a task holds: %s", e.Spare)
	}
}
