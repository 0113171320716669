package main

// This file lists every CDK context option with its default and check:
// one table, read top to bottom.

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// options are the deployment settings the config document does not hold
// (yet): they come from CDK context, `cdk synth -c key=value` or the
// "context" object of cdk.json. Every one has a default that deploys.
type options struct {
	// Account pins the stacks to one account. Empty (the default) keeps them
	// account-agnostic: they deploy into the account of the credentials,
	// and synth needs no lookups.
	Account string
	// AlarmEmails subscribe to each region's alarm topic ("alarmEmail",
	// comma-separated).
	AlarmEmails []string
	Source      workerOptions // "source*" keys
	Target      workerOptions // "target*" keys
	// OnDemandBase and OnDemandWeight put tasks on regular Fargate next to
	// Fargate Spot: the first OnDemandBase tasks of each service, then
	// OnDemandWeight on-demand for every Spot task (0 = Spot only).
	OnDemandBase   int
	OnDemandWeight int
	// Arch is the CPU architecture of tasks and images: arm64 (Graviton,
	// default) or amd64.
	Arch string
	// MaxAZs bounds the availability zones of a created VPC (each adds an
	// interface endpoint per service).
	MaxAZs int
	// VPCs maps a region to an existing VPC to use instead of creating one.
	VPCs map[string]existingVPC
	// OldestMessageAge raises the queue-age alarm.
	OldestMessageAge time.Duration
	// ScaleToZeroAfter is how long a queue must be empty, with nothing in
	// flight, before its service scales to zero tasks.
	ScaleToZeroAfter time.Duration
	LogRetentionDays int
	// Version is stamped into the images (-ldflags) and the task
	// definitions.
	Version string
	// LambdaPureGo lets the functions be built without libzstd (the
	// pure-Go encoder, 1.25-2x the CPU) when neither a C cross compiler
	// nor Docker can build them with it; without it such a synth fails.
	LambdaPureGo bool
	// SourceImage and TargetImage use prebuilt images (any registry) instead
	// of building Dockerfile.source / Dockerfile.target as assets.
	SourceImage string
	TargetImage string
	// ReplicationTimeControl turns on S3 RTC (15-minute SLA, extra cost);
	// replication metrics are on either way.
	ReplicationTimeControl bool
	// Backfill schedules xrc backfill ("backfill*" keys, backfill.go).
	Backfill backfillOptions
}

// workerOptions size and scale one kind of service.
type workerOptions struct {
	CPU      int // Fargate CPU units
	MemoryMB int
	MinTasks int
	MaxTasks int
	// BacklogPerTask is the scaling target: visible messages per running
	// task. Source messages are objects, target messages are archives.
	BacklogPerTask int
}

// existingVPC is a VPC the stacks join instead of creating their own. Its
// subnets must reach S3, SQS, ECR, CloudWatch Logs and SSM (NAT or
// endpoints), unless CreateEndpoints asks the stack to add the endpoints.
type existingVPC struct {
	VPCID             string   `json:"vpcId"`
	SubnetIDs         []string `json:"subnetIds"`
	AvailabilityZones []string `json:"availabilityZones"`
	CreateEndpoints   bool     `json:"createEndpoints,omitempty"`
}

// contextKeys lists every context key the app reads, for the unknown-key
// check and the README.
var contextKeys = []string{
	"config", "account", "alarmEmail",
	"sourceCpu", "sourceMemory", "sourceMinTasks", "sourceMaxTasks", "sourceBacklogPerTask",
	"targetCpu", "targetMemory", "targetMinTasks", "targetMaxTasks", "targetBacklogPerTask",
	"onDemandBase", "onDemandWeight", "arch", "maxAzs", "existingVpcs",
	"oldestMessageAlarm", "scaleToZeroAfter", "logRetentionDays", "version", "lambdaPureGo",
	"sourceImage", "targetImage", "replicationTimeControl",
	"backfillSchedule", "backfillSince",
}

func defaultOptions() options {
	return options{
		Source:           workerOptions{CPU: 1024, MemoryMB: 2048, MinTasks: 0, MaxTasks: 10, BacklogPerTask: 500},
		Target:           workerOptions{CPU: 1024, MemoryMB: 2048, MinTasks: 0, MaxTasks: 20, BacklogPerTask: 10},
		Arch:             "arm64",
		MaxAZs:           2,
		OldestMessageAge: 30 * time.Minute,
		ScaleToZeroAfter: 5 * time.Minute,
		LogRetentionDays: 30,
		Version:          "dev",
	}
}

var (
	accountRe = regexp.MustCompile(`^[0-9]{12}$`)
	emailRe   = regexp.MustCompile(`^[^@\s,]+@[^@\s,]+\.[^@\s,]+$`)
	versionRe = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,64}$`)
)

// logRetentions are the values CloudWatch Logs accepts.
var logRetentions = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// parseOptions reads the options from context values (strings from -c, or
// JSON values from cdk.json) and reports every invalid one.
func parseOptions(get func(key string) any) (options, error) {
	o := defaultOptions()
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("context %s: %s", key, fmt.Sprintf(format, args...)))
	}
	str := func(key string, dst *string) {
		switch v := get(key).(type) {
		case nil:
		case string:
			*dst = strings.TrimSpace(v)
		default:
			bad(key, "want a string, got %v", v)
		}
	}
	num := func(key string, dst *int, lo, hi int) {
		v := get(key)
		if v == nil {
			return
		}
		var n int
		switch v := v.(type) {
		case float64:
			n = int(v)
			if float64(n) != v {
				bad(key, "want an integer, got %v", v)
				return
			}
		case string:
			var err error
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				bad(key, "want an integer, got %q", v)
				return
			}
		default:
			bad(key, "want an integer, got %v", v)
			return
		}
		if n < lo || n > hi {
			bad(key, "must be between %d and %d, got %d", lo, hi, n)
			return
		}
		*dst = n
	}
	boolean := func(key string, dst *bool) {
		switch v := get(key).(type) {
		case nil:
		case bool:
			*dst = v
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				bad(key, "want true or false, got %q", v)
				return
			}
			*dst = b
		default:
			bad(key, "want true or false, got %v", v)
		}
	}
	duration := func(key string, dst *time.Duration, lo, hi time.Duration) {
		var s string
		str(key, &s)
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi || d%time.Minute != 0 {
			bad(key, "want whole minutes between %v and %v such as \"30m\", got %q", lo, hi, s)
			return
		}
		*dst = d
	}

	str("account", &o.Account)
	if o.Account != "" && !accountRe.MatchString(o.Account) {
		bad("account", "want a 12-digit AWS account id, got %q", o.Account)
	}
	var emails string
	str("alarmEmail", &emails)
	for e := range strings.SplitSeq(emails, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if !emailRe.MatchString(e) {
			bad("alarmEmail", "%q is not an email address", e)
			continue
		}
		o.AlarmEmails = append(o.AlarmEmails, e)
	}
	for _, w := range []struct {
		kind string
		o    *workerOptions
	}{{"source", &o.Source}, {"target", &o.Target}} {
		num(w.kind+"Cpu", &w.o.CPU, 256, 16384)
		num(w.kind+"Memory", &w.o.MemoryMB, 512, 122880)
		num(w.kind+"MinTasks", &w.o.MinTasks, 0, 1000)
		num(w.kind+"MaxTasks", &w.o.MaxTasks, 1, 1000)
		num(w.kind+"BacklogPerTask", &w.o.BacklogPerTask, 1, 1000000)
		if err := fargateSize(w.o.CPU, w.o.MemoryMB); err != nil {
			bad(w.kind+"Cpu/"+w.kind+"Memory", "%v", err)
		}
		if w.o.MinTasks > w.o.MaxTasks {
			bad(w.kind+"MinTasks", "%d is above %sMaxTasks %d", w.o.MinTasks, w.kind, w.o.MaxTasks)
		}
	}
	num("onDemandBase", &o.OnDemandBase, 0, 100000)
	num("onDemandWeight", &o.OnDemandWeight, 0, 1000)
	str("arch", &o.Arch)
	if o.Arch != "arm64" && o.Arch != "amd64" {
		bad("arch", "want arm64 or amd64, got %q", o.Arch)
	}
	num("maxAzs", &o.MaxAZs, 1, 6)
	if err := parseVPCs(get("existingVpcs"), &o.VPCs); err != nil {
		bad("existingVpcs", "%v", err)
	}
	duration("oldestMessageAlarm", &o.OldestMessageAge, time.Minute, 14*24*time.Hour)
	duration("scaleToZeroAfter", &o.ScaleToZeroAfter, time.Minute, 24*time.Hour)
	num("logRetentionDays", &o.LogRetentionDays, 1, 3653)
	if !slices.Contains(logRetentions, o.LogRetentionDays) {
		bad("logRetentionDays", "CloudWatch Logs accepts only %v, got %d", logRetentions, o.LogRetentionDays)
	}
	str("version", &o.Version)
	if !versionRe.MatchString(o.Version) {
		bad("version", "want 1-64 letters, digits or ._+-, got %q", o.Version)
	}
	boolean("lambdaPureGo", &o.LambdaPureGo)
	str("sourceImage", &o.SourceImage)
	str("targetImage", &o.TargetImage)
	boolean("replicationTimeControl", &o.ReplicationTimeControl)
	parseBackfillOptions(str, bad, &o.Backfill)
	return o, errors.Join(errs...)
}

// parseVPCs reads {"<region>": {"vpcId": ..., "subnetIds": [...],
// "availabilityZones": [...]}} given as a JSON string (-c) or object
// (cdk.json).
func parseVPCs(v any, dst *map[string]existingVPC) error {
	if v == nil {
		return nil
	}
	var data []byte
	if s, ok := v.(string); ok {
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	var m map[string]existingVPC
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf(`want {"<region>": {"vpcId": "vpc-…", "subnetIds": ["subnet-…"], "availabilityZones": ["…"]}}: %v`, err)
	}
	var errs []error
	for region, e := range m {
		switch {
		case !strings.HasPrefix(e.VPCID, "vpc-"):
			errs = append(errs, fmt.Errorf("%s: vpcId %q is not a VPC id", region, e.VPCID))
		case len(e.SubnetIDs) == 0:
			errs = append(errs, fmt.Errorf("%s: subnetIds is empty", region))
		case len(e.AvailabilityZones) != len(e.SubnetIDs):
			errs = append(errs, fmt.Errorf("%s: give one availability zone per subnet (in the same order)", region))
		}
		for _, s := range e.SubnetIDs {
			if !strings.HasPrefix(s, "subnet-") {
				errs = append(errs, fmt.Errorf("%s: %q is not a subnet id", region, s))
			}
		}
	}
	*dst = m
	return errors.Join(errs...)
}

// fargateSize checks a task size against the combinations Fargate accepts.
func fargateSize(cpu, memMB int) error {
	type span struct{ lo, hi, step int }
	sizes := map[int]span{
		256:   {512, 2048, 512}, // 512, 1024, 2048 (1536 is not offered, checked below)
		512:   {1024, 4096, 1024},
		1024:  {2048, 8192, 1024},
		2048:  {4096, 16384, 1024},
		4096:  {8192, 30720, 1024},
		8192:  {16384, 61440, 4096},
		16384: {32768, 122880, 8192},
	}
	s, ok := sizes[cpu]
	if !ok {
		return fmt.Errorf("a Fargate task takes 256, 512, 1024, 2048, 4096, 8192 or 16384 CPU units, got %d", cpu)
	}
	if memMB < s.lo || memMB > s.hi || (memMB-s.lo)%s.step != 0 || (cpu == 256 && memMB == 1536) {
		return fmt.Errorf("a Fargate task of %d CPU units takes %d to %d MiB in steps of %d, got %d", cpu, s.lo, s.hi, s.step, memMB)
	}
	return nil
}

// goMemLimit is GOMEMLIMIT for a task or function of memMB whose
// compressors hold cMiB (config.GoMemLimitMiB, which a Lambda function
// checks a document against).
func goMemLimit(memMB, cMiB int) string {
	return strconv.Itoa(config.GoMemLimitMiB(memMB, cMiB)) + "MiB"
}
