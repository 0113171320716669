// Package app is the process scaffolding the workers share: flags and
// environment, config loading (file or SSM), the JSON logger, the /metrics
// and /healthz server and the EMF mirror of the metrics. It keeps the mains
// thin and the worker packages free of process concerns.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/health"
	"github.com/xrc-dev/xrc/internal/logging"
	"github.com/xrc-dev/xrc/internal/metrics"
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
}

// Flags are the command line of both workers; each has an environment
// variable so an ECS task definition needs no command override.
type Flags struct {
	Config   string // XRC_CONFIG: file path or ssm:///name
	Region   string // XRC_REGION, else AWS_REGION
	Rules    string // XRC_RULES: comma-separated rule ids (source only)
	QueueURL string // XRC_QUEUE_URL: overrides the derived queue name
}

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
	fs.StringVar(&f.Rules, "rules", getenv("XRC_RULES"), "comma-separated rule ids to serve; default all of the region (env XRC_RULES)")
	fs.StringVar(&f.QueueURL, "queue-url", getenv("XRC_QUEUE_URL"), "SQS queue URL; default derived from the config (env XRC_QUEUE_URL)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.Config == "" {
		return f, errors.New("no config: pass -config FILE|ssm:///name or set XRC_CONFIG")
	}
	if f.Region == "" {
		return f, errors.New("no region: pass -region or set XRC_REGION or AWS_REGION")
	}
	return f, nil
}

// Start loads everything a worker needs and starts the metrics/health
// server. stdout receives the logs and EMF lines.
func Start(ctx context.Context, name string, args []string, getenv func(string) string, stdout io.Writer) (*Process, error) {
	f, err := ParseFlags(name, args, getenv)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsapi.Load(ctx, f.Region)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, f.Config, ssm.NewFromConfig(awsCfg))
	if err != nil {
		return nil, err
	}
	log, err := logging.New(stdout, cfg.Settings.LogLevel)
	if err != nil {
		return nil, err
	}
	log = log.With(zap.String("service", name), zap.String("region", f.Region))
	p := &Process{
		Name: name, Config: cfg, Region: f.Region, Log: log, AWS: awsCfg, Flags: f,
		Registry: metrics.NewRegistry(),
		// Three missed long polls in a row means the loop is stuck.
		Health: health.New(3*time.Minute, time.Now),
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(p.Registry))
	mux.Handle("/healthz", p.Health)
	ln, err := net.Listen("tcp", cfg.Settings.Worker.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", cfg.Settings.Worker.MetricsAddr, err)
	}
	p.Addr = ln.Addr().String()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	emf := metrics.NewEMF(p.Registry, stdout, "xrc", "xrc_", map[string]string{"Service": name, "Region": f.Region})
	go emf.Run(ctx, time.Minute)
	log.Info("starting", zap.String("version", Version), zap.String("config", f.Config), zap.String("metrics", p.Addr))
	return p, nil
}

// QueueURL returns the override from the flags, or resolves name.
func (p *Process) QueueURL(ctx context.Context, client *sqs.Client, name string) (string, error) {
	if p.Flags.QueueURL != "" {
		return p.Flags.QueueURL, nil
	}
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return "", fmt.Errorf("resolving queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Exit maps a worker's result to a process exit code: 0 for a clean or
// signalled stop, 2 for usage errors, 1 otherwise.
func Exit(err error) int {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
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
