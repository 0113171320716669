// Command xrc-source is the source-region worker: S3 events from SQS become
// compressed archives in the staging bucket.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/source"
	"github.com/xrc-dev/xrc/internal/stats"
)

func main() { os.Exit(app.Main("xrc-source", run)) }

func run(ctx context.Context, p *app.Process) error {
	rules, queueName, err := sourceRules(p)
	if err != nil {
		return err
	}
	sqsClient := sqs.NewFromConfig(p.AWS)
	url, err := p.QueueURL(ctx, sqsClient, queueName)
	if err != nil {
		return err
	}
	region, _ := p.Config.Region(p.Region)
	table := stats.New(dynamodb.NewFromConfig(p.AWS), p.Config.TableName(), time.Now)
	w, err := source.New(source.Deps{
		Stats:   table,
		Leases:  table,
		Config:  p.Config,
		Region:  p.Region,
		RuleIDs: rules,
		Queue:   queue.New(sqsClient, url),
		S3:      awsapi.S3(p.AWS, region),
		Log:     p.Log,
		Metrics: source.NewMetrics(p.Registry),
		Health:  p.Health,
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// sourceRules picks the rules this task serves and their queue. Each rule has
// its own queue (one service per rule), so a task serves one rule unless an
// explicit queue URL says several rules share it.
func sourceRules(p *app.Process) ([]string, string, error) {
	var rules []string
	if p.Flags.Rules != "" {
		rules = strings.Split(p.Flags.Rules, ",")
	} else {
		for _, r := range p.Config.Rules {
			if r.SourceRegion == p.Region {
				rules = append(rules, r.ID)
			}
		}
	}
	switch {
	case len(rules) == 0:
		return nil, "", fmt.Errorf("no rule has source region %s", p.Region)
	case len(rules) > 1 && p.Flags.QueueURL == "":
		return nil, "", fmt.Errorf("rules %v share region %s: run one task per rule (XRC_RULES=<id>) or set XRC_QUEUE_URL", rules, p.Region)
	}
	return rules, p.Config.SourceQueueName(rules[0]), nil
}
