// Command xrc-target is the target-region worker: replicated staging
// archives become objects in the region's destination buckets.
package main

import (
	"context"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/ledger"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/tombstone"
	"github.com/xrc-dev/xrc/internal/uploads"
)

func main() { os.Exit(app.Main("xrc-target", run)) }

func run(ctx context.Context, p *app.Process) error {
	if err := app.TargetFlags(p.Flags); err != nil {
		return app.NotStarted(err)
	}
	if err := deliver.CheckRegion(p.Config, p.Region); err != nil {
		return app.NotStarted(err)
	}
	sqsClient := sqs.NewFromConfig(p.AWS)
	q, err := p.QueueURL(ctx, sqsClient, p.Config.TargetQueueName())
	if err != nil {
		return err
	}
	cfg := app.Receives(p.Config, q, p.Log)
	region, _ := p.Config.Region(p.Region)
	ddb := dynamodb.NewFromConfig(p.AWS)
	if err := p.CheckTable(ctx, ddb); err != nil {
		return err
	}
	// A region with credentials of its own (a direct region's store):
	// unreadable, every archive would fail towards the DLQ; not started,
	// its messages wait.
	s3c, err := awsapi.CheckedS3(ctx, p.AWS, region)
	if err != nil {
		return app.NotStarted(err)
	}
	table := p.Config.TableName()
	w, err := deliver.New(deliver.Deps{
		Config:     cfg,
		Region:     p.Region,
		Queue:      queue.New(sqsClient, q.URL),
		S3:         s3c,
		Tombstones: tombstone.New(ddb, table, time.Now),
		Ledger:     ledger.New(ddb, table, time.Now),
		Uploads:    uploads.New(ddb, table, time.Now),
		Log:        p.Log,
		Metrics:    deliver.NewMetrics(p.Registry),
		Health:     p.Health,
		Protector:  p.Protection,
	})
	if err != nil {
		return app.NotStarted(err)
	}
	return w.Run(ctx)
}
