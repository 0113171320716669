// Command xrc-lambda runs an xrc worker on AWS Lambda (provided.al2023,
// the binary as bootstrap): XRC_ROLE=source archives a rule's objects,
// XRC_ROLE=target delivers a region's archives; an SQS event source
// mapping feeds it batches. The rest of the environment is the workers'
// (XRC_CONFIG, XRC_REGION or AWS_REGION, XRC_RULES, XRC_QUEUE_URL), plus
// XRC_CONFIG_TTL (default 5m). See package lambda.
package main

import (
	"context"
	"os"
	"runtime/debug"

	awslambda "github.com/aws/aws-lambda-go/lambda"

	"github.com/xrc-dev/xrc/internal/app"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/lambda"
)

func main() {
	ctx := context.Background()
	if limit, ok := lambda.MemoryLimit(os.Getenv); ok {
		debug.SetMemoryLimit(limit)
	}
	env, err := lambda.ParseEnv(os.Getenv)
	if err != nil {
		os.Exit(app.Exit(err))
	}
	awsCfg, err := awsapi.Load(ctx, env.Flags.Region)
	if err != nil {
		os.Exit(app.Exit(err))
	}
	// A failed cold start is logged, and tried again at the next
	// invocation (lambda.Starter).
	f := lambda.Start(ctx, env, awsCfg, os.Stdout)
	// With SIGTERM enabled Lambda tells the function when it retires the
	// environment, so what the worker has not written yet is not lost.
	awslambda.StartWithOptions(f.Invoke, awslambda.WithEnableSIGTERM(f.Shutdown))
}
