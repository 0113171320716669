// Package app is the process skeleton the worker binaries share (Main):
// flags and environment, config loading (file or SSM), the JSON logger, the
// /metrics and /healthz server, the EMF mirror of the metrics, signals and
// exit codes. It keeps the mains to a few lines and the worker packages
// free of process concerns.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/logging"
	"github.com/xrc-dev/xrc/internal/metrics"
	"github.com/xrc-dev/xrc/internal/protection"
	"github.com/xrc-dev/xrc/internal/worker"
)

// Version is stamped at build time with -ldflags "-X ...app.Version=...".
var Version = "dev"

// Process is a started worker process.
type Process struct {
	Name     string
	Config   *config.Config
	Region   string
	Log      *zap.Logger
	AWS      aws.Config
	Registry *prometheus.Registry
	Health   *health.Check
	Flags    Flags
	Addr     string // where /metrics and /healthz listen
	// Protection protects the task from ECS scale-in and deployments
	// while it holds long work; nil outside ECS (no ECS_AGENT_URI).
	Protection worker.Protector

	// Deployment is what the CDK app fixed when it deployed the task.
	Deployment Deployment

	emf        *metrics.EMF
	srv        *http.Server
	undoStdLog func()
}

// Flags are the command line of both workers; each has an environment
// variable so an ECS task definition needs no command override.
type Flags struct {
	Config   string // XRC_CONFIG: file path or ssm:///name
	Region   string // XRC_REGION, else AWS_REGION
	Rules    string // XRC_RULES: comma-separated rule ids (source only)
	QueueURL string // XRC_QUEUE_URL: overrides the derived queue name
}

// ErrUsage wraps every command-line mistake; Exit maps it to status 2.
var ErrUsage = errors.New("usage")

// ParseFlags reads args with environment defaults.
func ParseFlags(name string, args []string, getenv func(string) string) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&f.Config, "config", getenv("XRC_CONFIG"), "config file path or ssm:///parameter-name (env XRC_CONFIG)")
	region := getenv("XRC_REGION")
	if region == "" {
		region = getenv("AWS_REGION")
	}
	fs.StringVar(&f.Region, "region", region, "region this worker serves (env XRC_REGION, AWS_REGION)")
	fs.StringVar(&f.Rules, "rules", getenv("XRC_RULES"), "sources only: the rule to serve (several, comma-separated, only with -queue-url); default the region's one rule (env XRC_RULES)")
	fs.StringVar(&f.QueueURL, "queue-url", getenv("XRC_QUEUE_URL"), "SQS queue URL; default derived from the config (env XRC_QUEUE_URL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if f.Config == "" {
		return f, fmt.Errorf("%w: no config: pass -config FILE|ssm:///name or set XRC_CONFIG", ErrUsage)
	}
	if f.Region == "" {
		return f, fmt.Errorf("%w: no region: pass -region or set XRC_REGION or AWS_REGION", ErrUsage)
	}
	return f, nil
}

// Main is a worker binary's whole main: it answers the container health
// probe ("NAME healthcheck [URL]"), or starts the process (Start), runs the
// worker until SIGTERM or SIGINT and its drain end, flushes the last metrics
// and returns the exit status (Exit).
func Main(name string, run func(ctx context.Context, p *Process) error) int {
	if probed, code := Healthcheck(os.Args[1:], os.Stderr); probed {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p, err := Start(ctx, name, os.Args[1:], os.Getenv, os.Stdout)
	if err != nil {
		return Exit(NotStarted(err))
	}
	err = run(ctx, p)
	p.Stop()
	return Exit(err)
}

// StartTimeout bounds the loading of the config at start-up. ECS counts a
// task's health checks from 60 s after it starts and replaces it after
// three failures 30 s apart: a task still waiting then on an endpoint it
// cannot reach (SSM with no route or VPC endpoint to it) was stopped
// without a word. Its own timeout says what it waited for.
const StartTimeout = 60 * time.Second

var errStartTimeout = fmt.Errorf("start-up gives the config %v: can the task reach its endpoint?", StartTimeout)

// Start loads everything a worker needs and starts the metrics/health
// server and the EMF mirror. stdout receives the logs and EMF lines. Call
// Stop once the worker has returned.
func Start(ctx context.Context, name string, args []string, getenv func(string) string, stdout io.Writer) (*Process, error) {
	f, err := ParseFlags(name, args, getenv)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsapi.Load(ctx, f.Region)
	if err != nil {
		return nil, err
	}
	loadCtx, cancel := context.WithTimeoutCause(ctx, StartTimeout, errStartTimeout)
	defer cancel()
	cfg, err := config.Load(loadCtx, f.Config, ssm.NewFromConfig(awsCfg))
	if err != nil {
		if ctx.Err() == nil && context.Cause(loadCtx) == errStartTimeout {
			err = fmt.Errorf("%w (%w)", err, errStartTimeout)
		}
		return nil, err
	}
	// One lock for the log lines and the EMF documents: a line over the
	// pipe's atomic write (4 KiB) written beside another interleaves with
	// it, and CloudWatch drops an EMF document it cannot parse.
	stdout = zapcore.Lock(zapcore.AddSync(stdout))
	log, err := logging.New(stdout, cfg.Settings.LogLevel)
	if err != nil {
		return nil, err
	}
	log = log.With(zap.String("service", name), zap.String("region", f.Region))
	LogWarnings(log, cfg)
	d := DeploymentFromEnv(getenv)
	if err := d.Check(cfg, log); err != nil {
		return nil, err
	}
	p := &Process{
		Name: name, Config: cfg, Region: f.Region, Log: log, AWS: awsCfg, Flags: f, Deployment: d,
		Registry: metrics.NewRegistry(),
		// Three missed long polls in a row means the loop is stuck.
		Health: health.New(3*time.Minute, time.Now),
	}
	p.Health.OnUnhealthy(func(err error) {
		log.Error("unhealthy: the health check fails, and ECS replaces the task after its retries", zap.Error(err))
	})
	if a := protection.FromEnv(getenv); a != nil {
		p.Protection = a
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(p.Registry))
	mux.Handle("/healthz", p.Health)
	ln, err := net.Listen("tcp", cfg.Settings.Worker.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", cfg.Settings.Worker.MetricsAddr, err)
	}
	p.Addr = ln.Addr().String()
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			// Without it ECS's health check fails and replaces the task;
			// say why.
			log.Error("metrics and health server stopped", zap.Error(err))
		}
	}()
	// Two stacks in one account and region must not mix their metrics.
	p.emf = metrics.NewEMF(p.Registry, stdout, cfg.Settings.StackName, "xrc_", map[string]string{"Service": name, "Region": f.Region})
	go p.emf.Run(ctx, time.Minute, func(err error) { log.Warn("writing metrics to CloudWatch (EMF)", zap.Error(err)) })
	log.Info("starting", zap.String("version", Version), zap.String("config", f.Config), zap.String("metrics", p.Addr),
		zap.Int("gomaxprocs", runtime.GOMAXPROCS(0)), zap.Int64("memoryLimit", debug.SetMemoryLimit(-1)))
	// The SDK's transfer manager prints a failed complete with the
	// standard logger: a JSON line too, at warn, not a bare one among
	// them.
	p.undoStdLog, _ = zap.RedirectStdLogAt(log, zap.WarnLevel) // a valid level
	return p, nil
}

// Stop flushes the metrics of the last interval (the drain's included,
// which is why it runs after the worker returned, not at the signal) and
// closes the metrics server.
func (p *Process) Stop() {
	if err := p.emf.Flush(time.Now()); err != nil {
		p.Log.Warn("flushing metrics", zap.Error(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	p.undoStdLog()
	_ = p.Log.Sync()
}

// QueueURL returns the override from the flags, or resolves name, and
// reads the queue once (ReadQueue): a queue missing or refused to the task
// fails start-up, and says so, where the CDK app passes the URL (nothing
// else would have looked at it before the first receive).
func (p *Process) QueueURL(ctx context.Context, client *sqs.Client, name string) (Queue, error) {
	q, err := OpenQueue(ctx, client, p.Flags, name)
	return q, NotStarted(err)
}

// QueueOpener is the SQS calls OpenQueue makes; *sqs.Client satisfies it.
type QueueOpener interface {
	QueueURLGetter
	QueueAttributesGetter
}

// OpenQueue resolves the queue (QueueURL) and reads it (ReadQueue).
func OpenQueue(ctx context.Context, client QueueOpener, f Flags, name string) (Queue, error) {
	url, err := QueueURL(ctx, client, f, name)
	if err != nil {
		return Queue{}, err
	}
	return ReadQueue(ctx, client, url)
}

// Queue is what a worker learns of its queue as it starts.
type Queue struct {
	URL string
	// MaxReceiveCount is its redrive policy's: the receive after which
	// SQS moves a message to the DLQ; 0 if it has none.
	MaxReceiveCount int
}

// QueueAttributesGetter is the SQS call ReadQueue makes; *sqs.Client
// satisfies it.
type QueueAttributesGetter interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// ReadQueue reads the redrive policy of the queue at url.
func ReadQueue(ctx context.Context, client QueueAttributesGetter, url string) (Queue, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		return Queue{}, fmt.Errorf("queue %s: %w", url, err)
	}
	q := Queue{URL: url}
	policy := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	if policy == "" {
		return q, nil
	}
	// SQS writes maxReceiveCount as a number, or as a string where it
	// was set as one.
	var rp struct {
		MaxReceiveCount json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(policy), &rp); err != nil {
		return Queue{}, fmt.Errorf("queue %s: redrive policy %q: %w", url, policy, err)
	}
	n, err := strconv.Atoi(strings.Trim(string(rp.MaxReceiveCount), `"`))
	if err != nil || n < 1 {
		return Queue{}, fmt.Errorf("queue %s: redrive policy %q has no maxReceiveCount of 1 or more", url, policy)
	}
	q.MaxReceiveCount = n
	return q, nil
}

// Receives returns cfg with q's maxReceiveCount, which is what decides
// when SQS gives up on a message: a worker counting by another (a
// parameter edited by hand, a queue made by hand) sent a message cut on
// its last receive to the DLQ untried, or one it thought its last again.
// Said where they differ; a queue with no DLQ is said too, at error:
// a message that keeps failing is received until SQS's retention drops it.
func Receives(cfg *config.Config, q Queue, log *zap.Logger) *config.Config {
	switch n := cfg.Settings.Worker.MaxReceiveCount; {
	case q.MaxReceiveCount == 0:
		log.Error("the queue has no dead-letter queue: a message that keeps failing is received until the queue's retention drops it, lost; give it a redrive policy",
			zap.String("queue", q.URL))
	case q.MaxReceiveCount != n:
		log.Warn("settings.worker.maxReceiveCount differs from the queue's redrive policy: the queue's is used, as SQS moves messages to the DLQ by it",
			zap.String("queue", q.URL), zap.Int("config", n), zap.Int("queue", q.MaxReceiveCount))
		c := *cfg
		c.Settings.Worker.MaxReceiveCount = q.MaxReceiveCount
		return &c
	}
	return cfg
}

// TableGetter is the DynamoDB call CheckTable makes; *dynamodb.Client
// satisfies it.
type TableGetter interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// CheckTable fails start-up when the deployment's table cannot be used:
// missing (this region's stack not deployed, or settings.stackName not its
// name) or refused to the task. Without it the target retried every
// archive to the DLQ and the source went on without statistics, /healthz
// green all along. Any other failure (an outage) is left to the calls
// that meet it.
func (p *Process) CheckTable(ctx context.Context, api TableGetter) error {
	table := p.Config.TableName()
	_, err := api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, Key: map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: config.KeyStartCheck}, "sk": &ddbtypes.AttributeValueMemberS{Value: "-"},
	}})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// Stopped while checking: not started, as a stop while the
		// config loads (it went on, and ran the role's start on a
		// cancelled context).
		return NotStarted(fmt.Errorf("checking DynamoDB table %s in %s: %w", table, p.Region, err))
	case awsapi.Code(err) == "ResourceNotFoundException":
		return NotStarted(fmt.Errorf("DynamoDB table %s not found in %s: is the region's stack deployed, and settings.stackName its name? %w", table, p.Region, err))
	case awsapi.IsAccessDenied(err):
		return NotStarted(fmt.Errorf("reading DynamoDB table %s in %s: %w", table, p.Region, err))
	}
	p.Log.Warn("DynamoDB table not read at start-up; going on", zap.String("table", table), zap.Error(err))
	return nil
}

// QueueURLGetter is the SQS call QueueURL makes; *sqs.Client satisfies it.
type QueueURLGetter interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// QueueURL returns f's queue URL override, or resolves name.
func QueueURL(ctx context.Context, client QueueURLGetter, f Flags, name string) (string, error) {
	if f.QueueURL != "" {
		return f.QueueURL, nil
	}
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return "", fmt.Errorf("resolving queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// ErrNotStarted wraps what kept a worker from starting. Stopped while
// starting (ECS replacing a task whose health check never answered, SSM
// out of reach), it still says what it was waiting for, and fails: it
// exited 0 with not a line written.
var ErrNotStarted = errors.New("not started")

// NotStarted wraps err, what kept a worker from starting, in
// ErrNotStarted, unless it is a usage error or -help, which say so
// themselves, or says so already.
func NotStarted(err error) error {
	if err == nil || errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) || errors.Is(err, ErrNotStarted) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotStarted, err)
}

// Exit maps a worker's result to a process exit status, saying why on
// stderr: 0 for a clean or signalled stop (and -help), 2 for usage errors,
// 1 otherwise, a stop before the worker started included.
func Exit(err error) int {
	return exit(err, os.Stderr)
}

func exit(err error, stderr io.Writer) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(stderr, "error:", err)
		return 2
	case err == nil, errors.Is(err, context.Canceled) && !errors.Is(err, ErrNotStarted):
		return 0
	default:
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
}

// Healthcheck runs the container health probe when args ask for it
// ("healthcheck [URL]") and reports whether it did and the exit code.
func Healthcheck(args []string, stderr io.Writer) (bool, int) {
	if len(args) == 0 || args[0] != "healthcheck" {
		return false, 0
	}
	url := health.DefaultURL
	if len(args) > 1 {
		url = args[1]
	}
	// Below the task definition's 5 s health-check timeout.
	if err := health.Probe(context.Background(), url, 4*time.Second); err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return true, 1
	}
	return true, 0
}

// TargetFlags refuses what only a source takes: a target serves every
// rule delivering to its region, and would otherwise start as if the
// -rules it was given (a typo, a copied task definition) were honoured.
func TargetFlags(f Flags) error {
	if f.Rules != "" {
		return fmt.Errorf("%w: -rules (XRC_RULES) %q: a target serves every rule delivering to its region; -rules is for sources", ErrUsage, f.Rules)
	}
	return nil
}

// SourceRules picks the rules a source worker serves and their queue's
// name. Each rule has its own queue (one service or function per rule), so
// a worker serves one rule unless an explicit queue URL says several rules
// share it.
func SourceRules(cfg *config.Config, region string, f Flags) ([]string, string, error) {
	var rules []string
	if f.Rules != "" {
		for _, id := range strings.Split(f.Rules, ",") {
			id = strings.TrimSpace(id)
			// A rule named wrongly would be dropped, and the events of
			// its queue acknowledged as covered by no rule.
			r, ok := cfg.Rule(id)
			switch {
			case !ok:
				return nil, "", fmt.Errorf("-rules (XRC_RULES): no rule %q in the config", id)
			case r.SourceRegion != region:
				return nil, "", fmt.Errorf("-rules (XRC_RULES): rule %q has source region %s, not %s", id, r.SourceRegion, region)
			case slices.Contains(rules, id):
				continue // named twice, served once
			}
			rules = append(rules, id)
		}
	} else {
		for _, r := range cfg.Rules {
			if r.SourceRegion == region {
				rules = append(rules, r.ID)
			}
		}
	}
	switch {
	case len(rules) == 0:
		var sources []string
		for _, r := range cfg.Rules {
			if !slices.Contains(sources, r.SourceRegion) {
				sources = append(sources, r.SourceRegion)
			}
		}
		return nil, "", fmt.Errorf("no rule has source region %s (the rules' source regions: %v): set XRC_REGION or -region to one of them", region, sources)
	case len(rules) > 1 && f.QueueURL == "":
		return nil, "", fmt.Errorf("rules %v share region %s: run one worker per rule (XRC_RULES=<id>) or set XRC_QUEUE_URL", rules, region)
	}
	// A worker holds two batches of each rule it serves (source.New);
	// config bounds one rule's to the queue's in-flight limit, rules
	// sharing a queue must fit in it together, or the later ones' batches
	// never fill while the first's hold every message SQS lets out.
	held := 0
	for _, id := range rules {
		r, _ := cfg.Rule(id)
		held += 2 * r.Batch.MaxObjects
	}
	if held > config.SQSInFlight {
		return nil, "", fmt.Errorf("rules %v share one queue and hold up to %d messages (two batches of batch.maxObjects each), more than the %d a standard SQS queue lets be in flight: lower their batch.maxObjects or give each its own queue",
			rules, held, config.SQSInFlight)
	}
	return rules, cfg.SourceQueueName(rules[0]), nil
}

// LogWarnings says, at warn, what `xrc config validate` warns of in cfg
// (a plain-HTTP store, functions short of memory...): a config deployed
// without that check is seen in the workers' logs.
func LogWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", zap.String("field", w.Path), zap.String("warning", w.Msg))
	}
}
