// Command xrc-source is the source-region worker: S3 events from SQS become
// compressed archives in the staging bucket.
package main

import (
	"context"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
)

func main() { os.Exit(app.Main("xrc-source", run)) }

func run(ctx context.Context, p *app.Process) error {
	rules, queueName, err := app.SourceRules(p.Config, p.Region, p.Flags)
	if err != nil {
		return app.NotStarted(err)
	}
	if err := p.Deployment.RoomForCompressors(p.Config, rules); err != nil {
		return app.NotStarted(err)
	}
	sqsClient := sqs.NewFromConfig(p.AWS)
	q, err := p.QueueURL(ctx, sqsClient, queueName)
	if err != nil {
		return err
	}
	cfg := app.Receives(p.Config, q, p.Log)
	region, _ := p.Config.Region(p.Region)
	ddb := dynamodb.NewFromConfig(p.AWS)
	if err := p.CheckTable(ctx, ddb); err != nil {
		return err
	}
	s3Client := awsapi.S3(p.AWS, region)
	if err := source.CheckBuckets(ctx, s3Client, p.Config, p.Region, rules, p.Log); err != nil {
		return app.NotStarted(err)
	}
	table := stats.New(ddb, p.Config.TableName(), time.Now)
	direct, err := source.DirectClients(p.Config, p.Region, rules, func(r config.Region) (source.S3API, error) { return awsapi.CheckedS3(ctx, p.AWS, r) })
	if err != nil {
		return app.NotStarted(err)
	}
	w, err := source.New(source.Deps{
		Stats:     table,
		Leases:    table,
		Config:    cfg,
		Region:    p.Region,
		RuleIDs:   rules,
		Queue:     queue.New(sqsClient, q.URL),
		S3:        s3Client,
		Direct:    direct,
		Log:       p.Log,
		Metrics:   source.NewMetrics(p.Registry),
		Health:    p.Health,
		Protector: p.Protection,
	})
	if err != nil {
		return app.NotStarted(err)
	}
	return w.Run(ctx)
}
