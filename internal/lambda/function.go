package lambda

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/logging"
	"github.com/xrc-dev/xrc/internal/metrics"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

// Roles a function can play (XRC_ROLE).
const (
	RoleSource = "source"
	RoleTarget = "target"
)

// DefaultConfigTTL is how long a warm function trusts the config document
// it read before reading it again (XRC_CONFIG_TTL).
const DefaultConfigTTL = 5 * time.Minute

// configTimeout bounds a reload of the document on a warm invocation: a
// slow SSM keeps the invocation waiting no longer.
const configTimeout = 5 * time.Second

// Env is what a function's environment tells it.
type Env struct {
	Role  string    // XRC_ROLE: source or target
	Flags app.Flags // XRC_CONFIG, XRC_REGION (else AWS_REGION), XRC_RULES, XRC_QUEUE_URL, as the workers take them
	// ConfigTTL is XRC_CONFIG_TTL, a Go duration (default 5m).
	ConfigTTL time.Duration
	// MemoryMB is the function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE)
	// and GoMemLimitMiB its GOMEMLIMIT as the CDK app sets it ("<n>MiB");
	// 0 where not known.
	MemoryMB, GoMemLimitMiB int
}

// ParseEnv reads a function's environment.
func ParseEnv(getenv func(string) string) (Env, error) {
	f, err := app.ParseFlags("xrc-lambda", nil, getenv)
	if err != nil {
		return Env{}, err
	}
	e := Env{Role: getenv("XRC_ROLE"), Flags: f, ConfigTTL: DefaultConfigTTL}
	if e.Role != RoleSource && e.Role != RoleTarget {
		return Env{}, fmt.Errorf("%w: XRC_ROLE must be %s or %s, got %q", app.ErrUsage, RoleSource, RoleTarget, e.Role)
	}
	if e.Role == RoleTarget {
		if err := app.TargetFlags(f); err != nil {
			return Env{}, err
		}
	}
	e.MemoryMB, _ = strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	e.GoMemLimitMiB = app.GoMemLimitMiB(getenv)
	if s := getenv("XRC_CONFIG_TTL"); s != "" {
		if e.ConfigTTL, err = time.ParseDuration(s); err != nil || e.ConfigTTL < 0 {
			return Env{}, fmt.Errorf("%w: XRC_CONFIG_TTL must be a duration such as 5m, got %q", app.ErrUsage, s)
		}
	}
	return e, nil
}

// Function is one xrc Lambda function: its role's handler, built from the
// config document and rebuilt when a reload after ConfigTTL finds the
// document changed. Metrics go to stdout as EMF lines after every
// invocation, as a Fargate task's do every minute.
type Function struct {
	env Env
	aws aws.Config
	ps  config.ParameterGetter
	log *zap.Logger
	emf *metrics.EMF
	now func() time.Time
	// Created once: a registry takes each metric once, whatever the
	// rebuilds.
	srcMetrics *source.Metrics
	tgtMetrics *deliver.Metrics

	mu      sync.Mutex // Lambda invokes one at a time; tests and the emulator may not
	raw     []byte
	readAt  time.Time
	handler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
	level   zap.AtomicLevel // the config's logLevel, set again on a reload
	started *config.Config  // the cold start's: what a reload may not change (fixedAtDeploy)
	// stop ends the current worker: its background loops, and writes
	// what it learnt. Outside mu: Shutdown must not wait for a handler
	// that outlived its invocation's timeout (Lambda retires the
	// environment then, with SIGTERM).
	stop atomic.Pointer[func(context.Context)]
}

// New loads the config and builds the role's handler (a cold start).
// stdout receives the logs and EMF lines.
func New(ctx context.Context, env Env, awsCfg aws.Config, stdout io.Writer) (*Function, error) {
	f := &Function{env: env, aws: awsCfg, now: time.Now}
	if strings.HasPrefix(env.Flags.Config, config.SSMScheme) {
		f.ps = ssm.NewFromConfig(awsCfg)
	}
	raw, err := config.Read(ctx, env.Flags.Config, f.ps)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", env.Flags.Config, err)
	}
	stdout = zapcore.Lock(zapcore.AddSync(stdout)) // one lock for log lines and EMF documents (app.Start)
	log, level, err := logging.NewLeveled(stdout, cfg.Settings.LogLevel)
	if err != nil {
		return nil, err
	}
	f.level, f.started = level, cfg
	service := "xrc-" + env.Role
	f.log = log.With(zap.String("service", service), zap.String("region", env.Flags.Region), zap.String("compute", "lambda"))
	// The SDK's transfer manager prints a failed complete with the
	// standard logger: a JSON line too, at warn (the function lives as
	// long as its process).
	_, _ = zap.RedirectStdLogAt(f.log, zap.WarnLevel) // a valid level
	reg := metrics.NewRegistry()
	if env.Role == RoleSource {
		f.srcMetrics = source.NewMetrics(reg)
	} else {
		f.tgtMetrics = deliver.NewMetrics(reg)
	}
	// The Service dimension of the Fargate worker of the same role, so the
	// dashboard and alarms count both ways of running it together.
	f.emf = metrics.NewEMF(reg, stdout, cfg.Settings.StackName, "xrc_", map[string]string{"Service": service, "Region": env.Flags.Region})
	if err := f.roomForCompressors(cfg); err != nil {
		// A document edited by hand since the deployment: every cold
		// start would run out of memory, unexplained.
		return nil, fmt.Errorf("config %s: %w: deploy it", env.Flags.Config, err)
	}
	if err := f.build(ctx, cfg); err != nil {
		return nil, err
	}
	f.raw, f.readAt = raw, f.now()
	f.log.Info("starting", zap.String("version", app.Version), zap.String("role", env.Role), zap.String("config", env.Flags.Config),
		zap.Duration("configTTL", env.ConfigTTL))
	app.LogWarnings(f.log, cfg)
	return f, nil
}

// Invoke handles one batch of the event source mapping (lambda.Start's
// handler).
func (f *Function) Invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Deferred: a panic in the handler's own goroutine (the runtime
	// reports it) still flushes what was counted. One in a goroutine the
	// handler started ends the process, unflushed: crash-only, as on
	// Fargate, the batch's messages come back after their visibility
	// timeout.
	defer f.flush()
	f.refresh(ctx)
	return f.handler(ctx, ev)
}

// flush writes the metrics counted since the last flush as EMF lines.
func (f *Function) flush() {
	if err := f.emf.Flush(f.now()); err != nil {
		f.log.Warn("flushing metrics", zap.Error(err))
	}
}

// refresh reads the document again once ConfigTTL has passed and rebuilds
// the handler when it changed. A document that cannot be read or is
// invalid leaves the handler as it is (logged): the running config is
// better than none.
func (f *Function) refresh(ctx context.Context) {
	if f.now().Sub(f.readAt) < f.env.ConfigTTL {
		return
	}
	f.readAt = f.now()
	rctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	raw, err := config.Read(rctx, f.env.Flags.Config, f.ps)
	if err != nil {
		f.configErrors().Inc()
		f.log.Warn("reloading the config: keeping the one loaded", zap.Error(err))
		return
	}
	if bytes.Equal(raw, f.raw) {
		return
	}
	cfg, err := config.Parse(raw)
	if err == nil {
		err = f.fixedAtDeploy(cfg)
	}
	if err == nil {
		err = f.build(ctx, cfg)
	}
	if err != nil {
		// Counted (errors_total{kind="config"}, on the dashboard; no
		// alarm: the old config still works), so that warm environments
		// running on the config before it can be told.
		f.configErrors().Inc()
		f.log.Error("config changed but cannot be used: keeping the one loaded", zap.Error(err))
		return
	}
	f.raw = raw
	// The level too: logLevel debug set in the parameter by hand is the
	// README's first step in troubleshooting, and a warm environment
	// lives for hours.
	_ = f.level.UnmarshalText([]byte(cfg.Settings.LogLevel)) // config.Parse validated it
	f.log.Info("config changed: handler rebuilt", zap.String("logLevel", f.level.String()))
	app.LogWarnings(f.log, cfg)
}

// fixedAtDeploy refuses a reloaded document that changes what the
// deployment fixed when it made this function, as the document was then
// (the cold start's, as far as this environment knows): a reload in place
// is a parameter edited by hand, as a deploy starts new environments. The
// stack names the tables, queues and metrics' namespace (another's would
// not be this function's role and alarms); the function's memory and
// timeout are the deployment's whatever the document says (an
// invocation's deadline is the deployed timeout: a margin checked against
// a longer one may cut every archive before it starts); and GOMEMLIMIT
// left room beside the Go heap for the compressors of the levels its
// rules had (libzstd's memory is outside the heap: level 19's would not
// fit beside a heap sized for level 9's, and the function would run out
// of memory).
func (f *Function) fixedAtDeploy(cfg *config.Config) error {
	was, now := f.started.Settings, cfg.Settings
	var changed []string
	if now.StackName != was.StackName {
		changed = append(changed, fmt.Sprintf("settings.stackName %q is not %q, the stack this function was deployed for", now.StackName, was.StackName))
	}
	if now.Lambda.MemoryMB != was.Lambda.MemoryMB {
		changed = append(changed, fmt.Sprintf("settings.lambda.memoryMB %d is not the deployed %d", now.Lambda.MemoryMB, was.Lambda.MemoryMB))
	}
	if now.Lambda.Timeout != was.Lambda.Timeout {
		changed = append(changed, fmt.Sprintf("settings.lambda.timeout %v is not the deployed %v", now.Lambda.Timeout.D(), was.Lambda.Timeout.D()))
	}
	if err := f.roomForCompressors(cfg); err != nil {
		changed = append(changed, err.Error())
	}
	if len(changed) > 0 {
		return fmt.Errorf("the document changes what the deployment fixed (deploy it to change them): %s", strings.Join(changed, "; "))
	}
	return nil
}

// roomForCompressors refuses cfg when the compressors of the levels the
// rules this function serves may use would not fit beside the Go heap:
// libzstd's memory is outside it, and the CDK app sized GOMEMLIMIT for the
// levels the deployed document had (config.GoMemLimitMiB); level 19's
// beside a heap sized for level 9's would run the function out of memory.
// Where the deployment's GOMEMLIMIT is not known, against the cold
// start's document, if any.
func (f *Function) roomForCompressors(cfg *config.Config) error {
	if f.env.Role != RoleSource {
		return nil
	}
	need := f.compressorsMiB(cfg)
	if mem, limit := f.env.MemoryMB, f.env.GoMemLimitMiB; mem > 0 && limit > 0 {
		return app.Deployment{MemoryMB: mem, GoMemLimitMiB: limit}.RoomForCompressors(cfg, f.ruleIDs(cfg))
	}
	if f.started != nil {
		if had := f.compressorsMiB(f.started); need > had {
			return fmt.Errorf("its rules' levels need %d MiB of compressors, more than the %d MiB the function's GOMEMLIMIT was deployed to leave them", need, had)
		}
	}
	return nil
}

// compressorsMiB is the most compressor memory one of the rules this
// function serves in cfg needs (config.SourceCompressorsMiB, from which
// the CDK app sizes GOMEMLIMIT).
func (f *Function) compressorsMiB(cfg *config.Config) int {
	most := 0
	for _, id := range f.ruleIDs(cfg) {
		if r, ok := cfg.Rule(id); ok {
			most = max(most, cfg.SourceCompressorsMiB(r))
		}
	}
	return most
}

// ruleIDs are the rules this source function serves in cfg; none where
// cfg names none (building the source refuses it, and says why).
func (f *Function) ruleIDs(cfg *config.Config) []string {
	region, _ := cfg.Region(f.env.Flags.Region)
	ids, _, err := app.SourceRules(cfg, region.Name, f.env.Flags)
	if err != nil {
		return nil
	}
	return ids
}

// build makes the role's handler for cfg and replaces the current one.
func (f *Function) build(ctx context.Context, cfg *config.Config) error {
	var (
		handler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
		stop    func(context.Context)
		err     error
	)
	if f.env.Role == RoleSource {
		handler, stop, err = f.buildSource(ctx, cfg)
	} else {
		handler, stop, err = f.buildTarget(ctx, cfg)
	}
	if err != nil {
		return err
	}
	if old := f.stop.Swap(&stop); old != nil {
		sctx, cancel := context.WithTimeout(ctx, stopTimeout)
		(*old)(sctx)
		cancel()
	}
	f.handler = handler
	return nil
}

// stopTimeout bounds what a rebuild spends on the old worker's writes.
const stopTimeout = 5 * time.Second

// Shutdown ends the worker when Lambda retires the environment (its
// SIGTERM, which gives about 500 ms): it writes the statistics a failed
// write left waiting, which would otherwise go with the environment.
func (f *Function) Shutdown() {
	if stop := f.stop.Swap(nil); stop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		(*stop)(ctx)
	}
	// What the background loops and the stop counted since the last
	// invocation (a statistics write that failed, a sweep): its lines
	// would go with the environment.
	f.flush()
}

func (f *Function) buildSource(ctx context.Context, cfg *config.Config) (func(context.Context, events.SQSEvent) (events.SQSEventResponse, error), func(context.Context), error) {
	region, _ := cfg.Region(f.env.Flags.Region) // source.New checks it
	rules, queueName, err := app.SourceRules(cfg, region.Name, f.env.Flags)
	if err != nil {
		return nil, nil, err
	}
	sqsClient := sqs.NewFromConfig(f.aws)
	qa, err := app.OpenQueue(ctx, sqsClient, f.env.Flags, queueName)
	if err != nil {
		return nil, nil, err
	}
	cfg = app.Receives(cfg, qa, f.log)
	q := queue.New(sqsClient, qa.URL)
	s3Client := awsapi.S3(f.aws, region)
	if err := source.CheckBuckets(ctx, s3Client, cfg, region.Name, rules, f.log); err != nil {
		return nil, nil, err
	}
	table := stats.New(dynamodb.NewFromConfig(f.aws), cfg.TableName(), time.Now)
	short := *cfg // the benchmark runs in init (Prepare): see initBenchmark
	short.Settings.Adaptive.Benchmark = config.Duration(initBenchmark(cfg.Settings.Adaptive.Benchmark.D(), cfg.Settings.Lambda.MemoryMB))
	cfg = &short
	direct, err := source.DirectClients(cfg, region.Name, rules, func(r config.Region) (source.S3API, error) { return awsapi.CheckedS3(ctx, f.aws, r) })
	if err != nil {
		return nil, nil, err
	}
	w, err := source.New(source.Deps{
		Config: cfg, Region: region.Name, RuleIDs: rules, Queue: q,
		S3: s3Client, Log: f.log, Metrics: f.srcMetrics, Stats: table, Leases: table,
		Direct: direct,
	})
	if err != nil {
		return nil, nil, err
	}
	// The learner, the lease and the sweep of abandoned uploads live as
	// long as this environment and this config; they run while an
	// invocation does (Lambda freezes the environment in between).
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.Prepare(bg)
	stop := func(ctx context.Context) { w.Close(ctx); cancel() }
	h := NewSource(SourceOptions{Worker: w, Queue: q, Margin: cfg.Settings.Lambda.Margin.D(), MaxReceive: cfg.Settings.Worker.MaxReceiveCount, Log: f.log, Metrics: f.srcMetrics.Metrics})
	return h.Handle, stop, nil
}

// initBenchmark is the CPU time of a source function's start-up
// benchmark: the configured one, cut so that it takes about 2 s at most.
// It runs in Lambda's init (10 s at most, with the config read and the
// statistics loaded), on the share of a vCPU the function's memory buys
// (one at 1,769 MB), and decoding adds a quarter to it; up to 10 s may be
// configured for Fargate tasks, which have the time.
func initBenchmark(configured time.Duration, memoryMB int) time.Duration {
	share := min(1, float64(memoryMB)/config.DefaultLambdaMemoryMB)
	return min(configured, time.Duration(float64(2*time.Second)/1.25*share))
}

func (f *Function) buildTarget(ctx context.Context, cfg *config.Config) (func(context.Context, events.SQSEvent) (events.SQSEventResponse, error), func(context.Context), error) {
	region, _ := cfg.Region(f.env.Flags.Region) // deliver.New checks it
	sqsClient := sqs.NewFromConfig(f.aws)
	qa, err := app.OpenQueue(ctx, sqsClient, f.env.Flags, cfg.TargetQueueName())
	if err != nil {
		return nil, nil, err
	}
	cfg = app.Receives(cfg, qa, f.log)
	q := queue.New(sqsClient, qa.URL)
	s3c, err := awsapi.CheckedS3(ctx, f.aws, region) // as the Fargate worker (cmd/xrc-target)
	if err != nil {
		return nil, nil, err
	}
	ddb := dynamodb.NewFromConfig(f.aws)
	table := cfg.TableName()
	w, err := deliver.New(deliver.Deps{
		Config: cfg, Region: region.Name, Queue: q, S3: s3c,
		Tombstones: tombstone.New(ddb, table, time.Now), Ledger: ledger.New(ddb, table, time.Now), Uploads: uploads.New(ddb, table, time.Now),
		Log: f.log, Metrics: f.tgtMetrics,
	})
	if err != nil {
		return nil, nil, err
	}
	// The sweep of uploads whose archive is gone: in a region whose target
	// runs only on Lambda nothing else aborts what a cut or a crash left
	// in a destination bucket. It runs while an invocation does.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.Start(bg)
	stop := func(context.Context) { cancel() }
	h := NewTarget(TargetOptions{Deliverer: w, Staging: region.StagingBucket, MaxReceive: cfg.Settings.Worker.MaxReceiveCount, Visibility: cfg.Settings.Worker.VisibilityTimeout.D(), Queue: q,
		Margin: cfg.Settings.Lambda.Margin.D(), Log: f.log, Metrics: f.tgtMetrics.Metrics})
	return h.Handle, stop, nil
}

// MemoryLimit is the Go memory limit a function deployed without
// GOMEMLIMIT should run with: 85% of its memory
// (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, MB), as the CDK app sets it for all
// but source functions compressing at level 19 and up (it leaves those
// libzstd's ~90-140 MiB a compressor too; config validate warns of such a
// function under 1,024 MB), the rest for what lives outside the Go heap
// (libzstd's contexts, the runtime).
// Without one, the upload memory the workers size their buffers from is
// unbounded, and a batch of large objects runs the function out of
// memory. False when GOMEMLIMIT is set or the memory size is not known.
func MemoryLimit(getenv func(string) string) (int64, bool) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	mb, err := strconv.ParseInt(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 10, 64)
	if err != nil || mb <= 0 {
		return 0, false
	}
	return mb << 20 * 85 / 100, true
}

// configErrors counts config reloads that failed (errors_total{kind="config"}).
func (f *Function) configErrors() prometheus.Counter {
	if f.srcMetrics != nil {
		return f.srcMetrics.Errors.WithLabelValues("config")
	}
	return f.tgtMetrics.Errors.WithLabelValues("config")
}
