// Command xrc-target is the target-region worker: replicated staging
// archives become objects in the region's destination buckets.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/target"
)

func main() {
	if probed, code := app.Healthcheck(os.Args[1:], os.Stderr); probed {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(app.Exit(run(ctx)))
}

func run(ctx context.Context) error {
	p, err := app.Start(ctx, "xrc-target", os.Args[1:], os.Getenv, os.Stdout)
	if err != nil {
		return err
	}
	defer p.Log.Sync()
	sqsClient := sqs.NewFromConfig(p.AWS)
	url, err := p.QueueURL(ctx, sqsClient, p.Config.TargetQueueName())
	if err != nil {
		return err
	}
	region, _ := p.Config.Region(p.Region)
	q := queue.New(sqsClient, url, p.Config.Settings.Worker.VisibilityTimeout.D())
	w, err := target.New(target.Deps{
		Config:  p.Config,
		Region:  p.Region,
		Queue:   q,
		S3:      awsapi.S3(p.AWS, region),
		Log:     p.Log,
		Metrics: target.NewMetrics(p.Registry, func() float64 { return float64(q.Held()) }),
		Health:  p.Health,
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
