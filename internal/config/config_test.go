package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/manifest"
)

func readExample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExamplesValidate(t *testing.T) {
	for _, name := range []string{"example.json", "local.json"} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(context.Background(), filepath.Join("..", "..", "configs", name), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(c.Rules) == 0 || c.Rules[0].Batch.MaxObjects == 0 || c.Settings.Worker.MaxReceiveCount == 0 {
				t.Fatalf("defaults not applied: %+v", c)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"version":1,"settings":{"stackName":"x","regions":[
		{"name":"us-east-1","role":"source","stagingBucket":"stage-a"},
		{"name":"eu-west-1","role":"target","stagingBucket":"stage-b"}]},
		"rules":[{"id":"r","sourceRegion":"us-east-1","sourceBucket":"src-bucket","batch":{},
		"destinations":[{"region":"eu-west-1","bucket":"dst-bucket"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rules[0]
	if r.Level != DefaultLevel || r.Batch.MaxObjects != DefaultMaxObjects || r.Batch.MaxBytes != DefaultMaxBytes || r.Batch.MaxAge.D() != DefaultMaxAge {
		t.Errorf("rule defaults: %+v", r)
	}
	if c.Settings.Worker.DrainTimeout.D() != DefaultDrainTimeout || c.Settings.Prices.TransferPerGB != DefaultTransferPerGB {
		t.Errorf("settings defaults: %+v", c.Settings)
	}
	if r.Compute != ComputeFargate || c.Settings.Regions[1].Compute != ComputeFargate || c.Settings.Regions[0].Compute != "" {
		t.Errorf("compute defaults: rule %q, target region %q, source region %q", r.Compute, c.Settings.Regions[1].Compute, c.Settings.Regions[0].Compute)
	}
	if l := c.Settings.Lambda; l.MemoryMB != DefaultLambdaMemoryMB || l.Timeout.D() != DefaultLambdaTimeout || l.Margin.D() != DefaultLambdaMargin ||
		l.BatchSize != DefaultLambdaBatchSize || c.Settings.Prices.LambdaGBSecond != DefaultLambdaGBSecond {
		t.Errorf("lambda defaults: %+v, prices %+v", l, c.Settings.Prices)
	}
	if got := c.SourceQueueName("r"); got != "x-src-r" {
		t.Errorf("SourceQueueName = %q", got)
	}
	if a := c.Settings.Adaptive; a.Explore != DefaultExplore || a.ExploreFloor != DefaultExploreFloor {
		t.Errorf("adaptive defaults: %+v", a)
	}
	// An explore below the default floor, alone: the floor follows it
	// rather than failing on a setting nobody made.
	low := mutate(t, func(doc map[string]any) {
		obj(doc, "settings")["adaptive"] = map[string]any{"explore": 0.01}
	})
	c, err = Parse(low)
	if err != nil {
		t.Fatalf("explore 0.01 alone: %v", err)
	}
	if a := c.Settings.Adaptive; a.Explore != 0.01 || a.ExploreFloor != 0.01 {
		t.Errorf("explore 0.01 alone: %+v, want floor 0.01", a)
	}
}

// TestIdleZeroIsDefault: batch.idle "0s" is the default, as left out,
// not "close on age only" (that is idle equal to maxAge).
func TestIdleZeroIsDefault(t *testing.T) {
	c, err := Parse(mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["idle"] = "0s" }))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Rules[0].Batch.Idle.D(); got != DefaultIdle {
		t.Errorf("idle 0s = %v, want the default %v", got, DefaultIdle)
	}
}

// mutate decodes the example, applies f to the generic document and
// re-encodes it, so each case states only what it breaks.
func mutate(t *testing.T, f func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readExample(t, "example.json"), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(v any, keys ...any) map[string]any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

func TestValidationErrors(t *testing.T) {
	rule0 := func(d map[string]any) map[string]any { return obj(d, "rules", 0) }
	dest0 := func(d map[string]any) map[string]any { return obj(d, "rules", 0, "destinations", 0) }
	cases := []struct {
		name string
		doc  []byte
		want []string // substrings, each must appear in the error
	}{
		{"unknown field", mutate(t, func(d map[string]any) { rule0(d)["prefx"] = "a/" }), []string{"rules[0].prefx: unknown field"}},
		{"unknown nested field", mutate(t, func(d map[string]any) { obj(d, "settings")["worker"].(map[string]any)["threads"] = 3 }), []string{"settings.worker.threads: unknown field"}},
		{"wrong type", mutate(t, func(d map[string]any) { rule0(d)["level"] = "3" }), []string{"rules[0].level: want an integer, got a string"}},
		{"missing stack name", mutate(t, func(d map[string]any) { delete(obj(d, "settings"), "stackName") }), []string{"settings.stackName: must be"}},
		{"missing version and staging bucket", mutate(t, func(d map[string]any) {
			delete(d, "version")
			delete(obj(d, "settings", "regions", 0), "stagingBucket")
		}), []string{"version: required: 1", "settings.regions[0].stagingBucket: required"}},
		{"no regions", mutate(t, func(d map[string]any) { obj(d, "settings")["regions"] = []any{} }),
			[]string{"settings.regions: required: at least one region (a source and a target, or one region with role both)"}},
		{"missing source bucket", mutate(t, func(d map[string]any) { delete(rule0(d), "sourceBucket") }), []string{"rules[0].sourceBucket: required"}},
		{"missing destinations", mutate(t, func(d map[string]any) { delete(rule0(d), "destinations") }), []string{"rules[0].destinations: at least one destination"}},
		{"invalid bucket name", mutate(t, func(d map[string]any) { dest0(d)["bucket"] = "Acme_Logs" }), []string{"rules[0].destinations[0].bucket: invalid bucket name \"Acme_Logs\""}},
		{"ip bucket name", mutate(t, func(d map[string]any) { rule0(d)["sourceBucket"] = "192.168.1.10" }), []string{"rules[0].sourceBucket", "IP address"}},
		{"unknown region", mutate(t, func(d map[string]any) { dest0(d)["region"] = "eu-central-1" }), []string{"rules[0].destinations[0].region: unknown region \"eu-central-1\""}},
		{"non-target region", mutate(t, func(d map[string]any) { dest0(d)["region"] = "us-east-1" }), []string{"rules[0].destinations[0].region: region \"us-east-1\" does not have role target"}},
		{"non-source region", mutate(t, func(d map[string]any) { rule0(d)["sourceRegion"] = "eu-west-1" }), []string{"rules[0].sourceRegion: region \"eu-west-1\" does not have role source"}},
		{"bad region name", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 0)["name"] = "useast1" }), []string{"settings.regions[0].name: invalid region name"}},
		{"bad role", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 0)["role"] = "primary" }), []string{"settings.regions[0].role: must be source, target or both"}},
		{"half-life shorter than the statistics' hour", mutate(t, func(d map[string]any) {
			obj(d, "settings")["adaptive"] = map[string]any{"halfLife": "10m"}
		}), []string{"settings.adaptive.halfLife: must be at least 1h"}},
		{"staging bucket as source", mutate(t, func(d map[string]any) {
			rule0(d)["sourceBucket"] = obj(d, "settings", "regions", 0)["stagingBucket"]
		}), []string{"rules[0].sourceBucket: ", "us-east-1's staging bucket: the rule would archive xrc's own archives"}},
		{"staging bucket as destination", mutate(t, func(d map[string]any) {
			dest0(d)["bucket"] = obj(d, "settings", "regions", 1)["stagingBucket"]
		}), []string{"rules[0].destinations[0].bucket: ", "eu-west-1's staging bucket"}},
		{"destination equals source", mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 1)["role"] = "both"
			obj(d, "rules", 1, "destinations", 0)["bucket"] = "acme-exports"
			obj(d, "rules", 1)["sourceRegion"] = "eu-west-1"
		}), []string{"rules[1].destinations[0]: destination is the rule's own source"}},
		{"rule across partitions", mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 1)["name"] = "cn-north-1"
			for _, r := range d["rules"].([]any) {
				for _, dst := range r.(map[string]any)["destinations"].([]any) {
					if dst := dst.(map[string]any); dst["region"] == "eu-west-1" {
						dst["region"] = "cn-north-1"
					}
				}
			}
		}), []string{"rules[0].destinations[0].region: region \"cn-north-1\" is in partition aws-cn", "does not cross partitions"}},
		{"direct source region", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 0)["direct"] = true }),
			[]string{"settings.regions[0].direct: region \"us-east-1\" has no target worker"}},
		{"direct region as a rule's source", mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 1)["role"] = "both"
			obj(d, "settings", "regions", 1)["direct"] = true
			obj(d, "rules", 1)["sourceRegion"] = "eu-west-1"
		}), []string{"rules[1].sourceRegion: region \"eu-west-1\" is direct"}},
		{"direct region of another partition without credentials", mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 1)["name"] = "cn-north-1"
			obj(d, "settings", "regions", 1)["direct"] = true
			for _, r := range d["rules"].([]any) {
				for _, dst := range r.(map[string]any)["destinations"].([]any) {
					if dst := dst.(map[string]any); dst["region"] == "eu-west-1" {
						dst["region"] = "cn-north-1"
					}
				}
			}
		}), []string{"region \"cn-north-1\" is in partition aws-cn", "give the region s3Credentials"}},
		{"negative region transfer price", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 1)["transferPerGB"] = -0.01 }),
			[]string{"settings.regions[1].transferPerGB: must be a finite number, not negative"}},
		{"bad s3Credentials", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 1)["s3Credentials"] = "arn:aws:ssm:x" }),
			[]string{"settings.regions[1].s3Credentials: must be ssm:///<parameter name> or env:<PREFIX>"}},
		{"replication loop", mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 0)["role"] = "both"
			obj(d, "settings", "regions", 1)["role"] = "both"
			rules := d["rules"].([]any)
			d["rules"] = append(rules, map[string]any{
				"id": "back", "sourceRegion": "eu-west-1", "sourceBucket": "acme-exports-eu", "prefix": "daily/2026/",
				"destinations": []any{map[string]any{"region": "us-east-1", "bucket": "acme-exports"}},
			})
		}), []string{"replication loop: exports -> back -> exports"}},
		{"overlapping rules", mutate(t, func(d map[string]any) {
			obj(d, "rules", 1)["sourceBucket"] = "acme-app-logs"
			obj(d, "rules", 1)["prefix"] = "prod/2026/"
			obj(d, "rules", 1)["suffix"] = ".log"
		}), []string{`rules[1]: filters overlap rule "logs" on bucket acme-app-logs`}},
		// Disjoint as written, one filter once deployed: cut at '~'.
		{"overlapping deployed filters", mutate(t, func(d map[string]any) {
			obj(d, "rules", 0)["prefix"] = "home/~alice/"
			obj(d, "rules", 1)["sourceBucket"] = "acme-app-logs"
			obj(d, "rules", 1)["prefix"] = "home/~bob/"
			obj(d, "rules", 1)["suffix"] = ".json.log"
		}), []string{`rules[1]: S3's notification filters would overlap rule "logs"'s on bucket acme-app-logs (prefix "home/"/"home/"`}},
		{"filter too long once encoded", mutate(t, func(d map[string]any) { rule0(d)["prefix"] = strings.Repeat("é", 200) + "/" }),
			[]string{`rules[0].prefix: URL-encoded for S3's notification filter`, "is 1201 characters, more than 1024"}},
		{"invalid storage class", mutate(t, func(d map[string]any) { dest0(d)["storageClass"] = "COLD" }), []string{"rules[0].destinations[0].storageClass: unknown storage class \"COLD\""}},
		{"storage class of a directory bucket", mutate(t, func(d map[string]any) { dest0(d)["storageClass"] = "EXPRESS_ONEZONE" }),
			[]string{`rules[0].destinations[0].storageClass: unknown storage class "EXPRESS_ONEZONE": a general-purpose bucket takes`}},
		{"storage class of Outposts", mutate(t, func(d map[string]any) { dest0(d)["storageClass"] = "OUTPOSTS" }), []string{`rules[0].destinations[0].storageClass: unknown storage class "OUTPOSTS"`}},
		{"storage class of Snow", mutate(t, func(d map[string]any) { dest0(d)["storageClass"] = "SNOW" }), []string{`rules[0].destinations[0].storageClass: unknown storage class "SNOW"`}},
		{"storage class of FSx", mutate(t, func(d map[string]any) { dest0(d)["storageClass"] = "FSX_ONTAP" }), []string{`rules[0].destinations[0].storageClass: unknown storage class "FSX_ONTAP"`}},
		{"kms key in another region", mutate(t, func(d map[string]any) {
			dest0(d)["kmsKeyId"] = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		}), []string{"rules[0].destinations[0].kmsKeyId: key \"arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab\" is in ap-south-1: S3 takes only a key of the bucket's region"}},
		{"bad duration", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["maxAge"] = "soon" }), []string{"rules[0].batch.maxAge: invalid duration \"soon\""}},
		{"bad size", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["maxBytes"] = "lots" }), []string{"rules[0].batch.maxBytes: invalid size \"lots\""}},
		{"idle too short", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["idle"] = "100ms" }), []string{"rules[0].batch.idle: must be between 250ms and batch.maxAge"}},
		{"idle over maxAge", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["idle"] = "31s" }), []string{"rules[0].batch.idle: must be between 250ms and batch.maxAge (30s), got 31s"}},
		{"maxAge past the visibility timeout", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["maxAge"] = "10m" }),
			[]string{"rules[0].batch.maxAge: must be between 1s and settings.worker.visibilityTimeout (5m0s, default 5m0s), got 10m0s"}},
		{"bad wildcard", mutate(t, func(d map[string]any) { rule0(d)["ignore"] = []any{"[a-"} }), []string{"rules[0].ignore[0]: invalid wildcard"}},
		{"duplicate rule", mutate(t, func(d map[string]any) { obj(d, "rules", 1)["id"] = "logs" }), []string{"rules[1].id: rule id \"logs\" used twice"}},
		{"a rule's queue another's dead letters", mutate(t, func(d map[string]any) { obj(d, "rules", 1)["id"] = "logs-dlq" }),
			[]string{`rules[1].id: rule id "logs-dlq": its queue, "xrc-src-logs-dlq", would be rule "logs"'s dead-letter queue in us-east-1`}},
		{"wrong version", mutate(t, func(d map[string]any) { d["version"] = 2 }), []string{"version: must be 1, got 2"}},
		{"drain too long", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["drainTimeout"] = "5m" }), []string{"settings.worker.drainTimeout"}},
		// 1ns of drain: protection's ticker at 0 panicked the target.
		{"drain too short", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["drainTimeout"] = "90ms" }), []string{"settings.worker.drainTimeout: at least 1s"}},
		{"drain leaving no stop time", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["drainTimeout"] = "100s" }), []string{"settings.worker.drainTimeout: at most 1m30s"}},
		{"receive wait over SQS's", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["receiveWait"] = "21s" }), []string{"settings.worker.receiveWait"}},
		{"receive wait not whole seconds", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["receiveWait"] = "1500ms" }), []string{"settings.worker.receiveWait"}},
		{"metrics address without a port", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["metricsAddr"] = "9090" }), []string{"settings.worker.metricsAddr: must be host:port"}},
		{"metrics address port not a number", mutate(t, func(d map[string]any) { obj(d, "settings", "worker")["metricsAddr"] = ":http-alt" }), []string{"settings.worker.metricsAddr: port must be a number"}},
		{"unknown compute", mutate(t, func(d map[string]any) { rule0(d)["compute"] = "ec2" }), []string{`rules[0].compute: must be fargate, lambda or hybrid, got "ec2"`}},
		{"region compute", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 1)["compute"] = "spot" }), []string{`settings.regions[1].compute: must be fargate, lambda or hybrid, got "spot"`}},
		{"compute of a source region", mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 0)["compute"] = "lambda" }),
			[]string{`settings.regions[0].compute: region "us-east-1" has no target worker (role source)`}},
		{"lambda bounds", mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"memoryMB": 64, "timeout": "20m", "reservedConcurrency": 5000, "batchSize": 20000,
				"batchingWindow": "10m", "targetBatchSize": 11, "margin": "1s", "hybridAge": "90s"}
		}), []string{"settings.lambda.memoryMB: must be between 128 and 10240", "settings.lambda.timeout: must be whole seconds between 40s and 15m0s",
			"settings.lambda.reservedConcurrency", "settings.lambda.batchSize: must be between 1 and 10000", "settings.lambda.batchingWindow",
			"settings.lambda.targetBatchSize", "settings.lambda.margin: must be between 20s and half of timeout", "settings.lambda.hybridAge: must be whole minutes"}},
		{"one reserved Lambda", mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"reservedConcurrency": 1}
		}), []string{"settings.lambda.reservedConcurrency: must be between 2 (an SQS event source mapping's least maximum concurrency) and 1000, got 1"}},
		{"malformed KMS key", mutate(t, func(d map[string]any) { dest0(d)["kmsKeyId"] = "aws/s3" }),
			[]string{`rules[0].destinations[0].kmsKeyId: "aws/s3" is no KMS key: want a key id`}},
		{"KMS ARN of something else", mutate(t, func(d map[string]any) { dest0(d)["kmsKeyId"] = "arn:aws:s3:::bucket" }),
			[]string{`rules[0].destinations[0].kmsKeyId: "arn:aws:s3:::bucket" is no KMS key`}},
		// A standard queue's DLQ keeps a message's first enqueue time: one
		// that spent more than half the retention failing would reach it
		// with too little left to be redriven.
		{"receives leaving the DLQ too little", mutate(t, func(d map[string]any) {
			obj(d, "settings", "worker")["visibilityTimeout"] = "12h"
			obj(d, "settings", "worker")["maxReceiveCount"] = 15
		}), []string{"settings.worker.maxReceiveCount: 15 receives of 12h0m0s each make 180h0m0s, more than 168h0m0s"}},
		{"a destination prefix no key fits under", mutate(t, func(d map[string]any) {
			dest0(d)["prefix"] = strings.Repeat("p", 1025)
		}), []string{"rules[0].destinations[0].prefix: is 1025 bytes, more than S3's 1024"}},
		{"a heartbeat slower than the hold it extends", mutate(t, func(d map[string]any) {
			obj(d, "settings", "worker")["visibilityTimeout"] = "30s"
			rule0(d)["batch"] = map[string]any{"maxObjects": 60000, "maxAge": "10s"}
		}), []string{"rules[0].batch.maxObjects: 60000: a source task holds up to 120000 messages of rule"}},
		{"receives outlasting a function's queue", mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"timeout": "15m"}
			obj(d, "settings", "worker")["maxReceiveCount"] = 223
		}), []string{"settings.worker.maxReceiveCount: 223 receives of 1h30m30s each"}},
		{"staging kept longer than events", mutate(t, func(d map[string]any) { obj(d, "settings")["stagingExpiryDays"] = 14 }),
			[]string{"settings.stagingExpiryDays: must be between 1 and 13 (its events wait in SQS, 14 days at most)"}},
		{"margin over half the timeout", mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"timeout": "1m", "margin": "40s"}
		}),
			[]string{"settings.lambda.margin: must be between 20s and half of timeout (30s), got 40s"}},
		{"fractional seconds", mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"timeout": "90.5s", "margin": "20.5s"}
			obj(d, "settings", "worker")["visibilityTimeout"] = "90500ms"
		}), []string{"settings.lambda.timeout: must be whole seconds between 40s and 15m0s (Lambda's maximum), got 1m30.5s",
			"settings.worker.visibilityTimeout: must be whole seconds between 30s and 12h (SQS's limit), got 1m30.5s"}},
		{"negative prices", mutate(t, func(d map[string]any) {
			obj(d, "settings")["prices"] = map[string]any{"fargateGBHour": -0.001, "lambdaGBSecond": -1e-6, "lambdaPerMillion": -0.2, "transferPerGB": -0.02}
		}), []string{"settings.prices.fargateGBHour: must be a finite number, not negative, got -0.001", "settings.prices.lambdaGBSecond: must be",
			"settings.prices.lambdaPerMillion: must be", "settings.prices.transferPerGB: must be"}},
		{"price out of float range", mutate(t, func(d map[string]any) {
			obj(d, "settings")["prices"] = map[string]any{"lambdaPerMillion": json.Number("1e999")}
		}), []string{"settings.prices.lambdaPerMillion: want a finite number, got a number"}},
		{"ultra level without ultra", mutate(t, func(d map[string]any) { rule0(d)["level"] = 22 }),
			[]string{"rules[0].level: levels above 19 need settings.adaptive.ultra: true"}},
		{"ultra level without ultra, adaptive disabled", mutate(t, func(d map[string]any) {
			rule0(d)["level"] = 20
			obj(d, "settings")["adaptive"] = map[string]any{"disabled": true}
		}), []string{"rules[0].level: levels above 19 need settings.adaptive.ultra: true"}},
		{"more objects than SQS lets be in flight", mutate(t, func(d map[string]any) { obj(d, "rules", 0, "batch")["maxObjects"] = 60001 }),
			[]string{"rules[0].batch.maxObjects: must be between 1 and 60000"}},
		{"key given twice", []byte(strings.Replace(string(readExample(t, "example.json")), `"prefix": "prod/",`, `"prefix": "prod/", "prefix": "",`, 1)),
			[]string{"rules[0].prefix: given twice"}},
		{"nested key given twice", []byte(strings.Replace(string(readExample(t, "example.json")), `"maxObjects": 200,`, `"maxObjects": 200, "maxObjects": 200,`, 1)),
			[]string{"rules[1].batch.maxObjects: given twice"}},
		{"key given twice, escaped", []byte(strings.Replace(string(readExample(t, "example.json")), `"stackName": "xrc",`, `"stackName": "xrc", "stack\u004eame": "xrc",`, 1)),
			[]string{"settings.stackName: given twice"}},
		{"malformed json", []byte("{\n  \"version\": 1,\n  \"settings\": {,\n}"), []string{"malformed JSON at line 3, column 16"}},
		{"truncated json", []byte("{\"version\": 1,"), []string{"malformed JSON at line 1"}},
		{"trailing data", []byte("{} {}"), []string{"malformed JSON", "after the top-level object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.doc)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestNonFinitePricesRefused: JSON cannot carry NaN or an infinity, but a
// Config built in code can, and either would poison the cost model.
func TestNonFinitePricesRefused(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		c, err := Parse(readExample(t, "example.json"))
		if err != nil {
			t.Fatal(err)
		}
		c.Settings.Prices.LambdaGBSecond = v
		c.Settings.Prices.VCPUHour = v
		err = c.Validate()
		for _, w := range []string{"settings.prices.lambdaGBSecond: must be a finite number", "settings.prices.vcpuHour: must be a finite number"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("price %v: error does not say %q: %v", v, w, err)
			}
		}
	}
}

func TestUltraLevelWithUltra(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "rules", 0)["level"] = 22
		obj(d, "settings")["adaptive"] = map[string]any{"disabled": true, "ultra": true}
	})
	if _, err := Parse(doc); err != nil {
		t.Fatalf("level 22 with ultra: %v", err)
	}
}

// TestDuplicateKeyPaths: each key given twice is named once, at its path,
// through arrays and nested objects; the same key in two objects is no
// duplicate.
func TestDuplicateKeyPaths(t *testing.T) {
	var errs Errors
	checkDuplicateKeys(&errs, []byte(`{"a":1,"b":[{"x":1},{"x":2,"y":[[],{"z":1,"z":2,"z":3}]}],"a":{"a":1},"c":[1,"a",{"a":1}],"c":null}`))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{"b[1].y[1].z: given twice", "a: given twice", "c: given twice"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	errs = nil
	checkDuplicateKeys(&errs, readExample(t, "example.json"))
	checkDuplicateKeys(&errs, []byte(`[{"a":1},{"a":1}]`))
	checkDuplicateKeys(&errs, []byte(`"a"`))
	if len(errs) != 0 {
		t.Errorf("no duplicates, got %v", errs)
	}
}

func TestAllErrorsReported(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "rules", 0)["prefx"] = "a/"
		obj(d, "rules", 1)["bogus"] = true
	})
	_, err := Parse(doc)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	doc = mutate(t, func(d map[string]any) {
		obj(d, "rules", 0, "destinations", 0)["bucket"] = "BAD"
		obj(d, "rules", 1, "destinations", 0)["region"] = "mars-north-1"
	})
	_, err = Parse(doc)
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

// TestBadValueLeavesTheRestChecked: a value its type refuses (a
// duration, a size) stopped the decoding there, so every field after it
// read as missing and was reported so, and the document's other problems
// were not: the refused value is reported, and the rest checked as if it
// were absent.
func TestBadValueLeavesTheRestChecked(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "settings", "worker")["drainTimeout"] = "abc"
		obj(d, "settings")["logLevel"] = "verbose"
		obj(d, "rules", 0, "batch")["maxBytes"] = "256  MiB"
		obj(d, "rules", 1)["sourceBucket"] = "BAD"
		obj(d, "settings", "worker")["ReceiveWait"] = "abc" // unknown (Unmarshal would take it as receiveWait)
	})
	_, err := Parse(doc)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse = %v", err)
	}
	var paths []string
	for _, e := range es {
		paths = append(paths, e.Path)
	}
	want := []string{"rules[0].batch.maxBytes", "rules[1].sourceBucket", "settings.logLevel", "settings.worker.ReceiveWait", "settings.worker.drainTimeout"}
	slices.Sort(paths)
	if !slices.Equal(paths, want) {
		t.Errorf("problems at %v, want %v:\n%v", paths, want, err)
	}
}

// TestLevelZeroRefused: minLevel or maxLevel 0 is no level; taken for
// "left out" it became the default, and maxLevel 0, meant to keep to the
// fast levels, let the learner go up to 19.
func TestLevelZeroRefused(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "settings")["adaptive"] = map[string]any{"minLevel": -7, "maxLevel": 0}
	})
	_, err := Parse(doc)
	if err == nil || !strings.Contains(err.Error(), "settings.adaptive.maxLevel") || strings.Contains(err.Error(), "minLevel") {
		t.Errorf("Parse = %v, want maxLevel 0 refused alone", err)
	}
	if _, err := Parse([]byte(`[]`)); err == nil {
		t.Error("a document that is no object parsed")
	}
}

// TestWholeNumbers: JSON Schema's integers include 8.0 and 1e1, so a
// document an editor passed must load with them; -0 is 0, refused as a
// level as 0 is (it slipped past as text, and maxLevel became 19).
func TestWholeNumbers(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		d["version"] = json.Number("1.0")
		obj(d, "settings")["worker"] = map[string]any{"concurrency": json.Number("16.0"), "maxReceiveCount": json.Number("1e1")}
		obj(d, "rules", 0)["batch"] = map[string]any{"maxBytes": json.Number("268435456.0")}
	})
	c, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Settings.Worker; w.Concurrency != 16 || w.MaxReceiveCount != 10 || c.Rules[0].Batch.MaxBytes != 256<<20 {
		t.Errorf("worker %+v, maxBytes %d: want 16, 10 and 256 MiB", w, c.Rules[0].Batch.MaxBytes)
	}
	for _, bad := range []json.Number{"16.5", "1e30", "1e-400", "8.000000000000000001", "1e-99999999", "1e+99999999"} {
		doc := mutate(t, func(d map[string]any) { obj(d, "settings")["worker"] = map[string]any{"concurrency": bad} })
		if _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "settings.worker.concurrency") {
			t.Errorf("concurrency %s: %v, want it refused", bad, err)
		}
	}
	for _, zero := range []json.Number{"-0", "0.0", "-0e3"} {
		doc := mutate(t, func(d map[string]any) { obj(d, "settings")["adaptive"] = map[string]any{"maxLevel": zero} })
		if _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "settings.adaptive.maxLevel") {
			t.Errorf("maxLevel %s: %v, want it refused as 0 is", zero, err)
		}
	}
}

func TestMatches(t *testing.T) {
	r := Rule{SourceBucket: "b", Prefix: "logs/", Suffix: ".json", Ignore: []string{"*/_tmp/*", "*.bak.json"}}
	cases := map[string]bool{
		"logs/a.json":          true,
		"logs/x/y.json":        true,
		"logs/a.csv":           false,
		"other/a.json":         false,
		"logs/_tmp/a.json":     false,
		"logs/a.bak.json":      false,
		"logs/dir/_tmp/a.js":   false,
		"logs/deep/x.bak.json": false,
	}
	for key, want := range cases {
		if got := r.Matches("b", key); got != want {
			t.Errorf("Matches(%q) = %v, want %v", key, got, want)
		}
	}
	if r.Matches("other", "logs/a.json") {
		t.Error("matched another bucket")
	}
}

func TestDestinationKey(t *testing.T) {
	p := "eu/"
	r := Rule{Prefix: "logs/"}
	if got := r.DestinationKey(Destination{Prefix: &p}, "logs/a/b"); got != "eu/a/b" {
		t.Errorf("rewrite = %q", got)
	}
	if got := r.DestinationKey(Destination{}, "logs/a/b"); got != "logs/a/b" {
		t.Errorf("no rewrite = %q", got)
	}
}

func TestRuleRegions(t *testing.T) {
	r := Rule{SourceRegion: "us-east-1", Destinations: []Destination{
		{Region: "us-east-1", Bucket: "near"}, {Region: "eu-west-1", Bucket: "a"}, {Region: "eu-west-1", Bucket: "b"}}}
	if delivered, crossed := r.Regions(); delivered != 2 || crossed != 1 {
		t.Errorf("Regions() = %d delivered, %d crossed; want 2, 1", delivered, crossed)
	}
	r.Destinations = r.Destinations[:1]
	if delivered, crossed := r.Regions(); delivered != 1 || crossed != 0 {
		t.Errorf("source region only: Regions() = %d, %d; want 1, 0", delivered, crossed)
	}
}

// TestSchemaCoversFields keeps configs/xrc.schema.json in step with the Go
// types: every JSON field must be a schema property and vice versa.
func TestSchemaCoversFields(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(readExample(t, "xrc.schema.json"), &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, s map[string]any, typ reflect.Type)
	walk = func(path string, s map[string]any, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
			if items, ok := s["items"].(map[string]any); ok {
				s = items
			}
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		props, _ := s["properties"].(map[string]any)
		fields := jsonFields(typ)
		for name, f := range fields {
			sub, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: in Go, missing from the schema", path, name)
				continue
			}
			walk(path+"."+name, sub, f.Type)
		}
		for name := range props {
			if _, ok := fields[name]; !ok {
				t.Errorf("%s.%s: in the schema, missing from Go", path, name)
			}
		}
	}
	walk("", schema, reflect.TypeFor[Config]())

	enum := obj(schema, "properties", "rules", "items", "properties", "destinations", "items", "properties", "storageClass")["enum"].([]any)
	for _, c := range []string{"STANDARD", "GLACIER_IR", "INTELLIGENT_TIERING"} {
		if !slices.Contains(enum, any(c)) || !validStorageClass(c) {
			t.Errorf("storage class %s not accepted by both schema and Go", c)
		}
	}
}

// TestSchemaPatternsMatchGo: the schema's duration and size patterns take
// exactly the strings Go does, so an editor checking against the schema
// neither flags a document xrc loads nor passes one it refuses.
func TestSchemaPatternsMatchGo(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(readExample(t, "xrc.schema.json"), &schema); err != nil {
		t.Fatal(err)
	}
	durRe := regexp.MustCompile(obj(schema, "$defs", "duration")["pattern"].(string))
	for _, s := range []string{"0", "+0", "-0", "00", "0s", "30s", "1m30s", "1.5h", ".5s", "1.s", ".s", "1µs", "1μs", "1us", "500ms", "1ns",
		"+5s", "-5s", "-0s", "5", "s", "", "1d", "1 s", " 1s", "1s ", "1h1h", "1e3s", "5S", "1.5.5s"} {
		var d Duration
		goOK := d.UnmarshalJSON([]byte(strconv.Quote(s))) == nil
		if schemaOK := durRe.MatchString(s); schemaOK != goOK {
			t.Errorf("duration %q: schema takes it %v, Go %v", s, schemaOK, goOK)
		}
	}
	sizeRe := regexp.MustCompile(obj(schema, "$defs", "batchSize", "oneOf", 1)["pattern"].(string))
	var sizes []string
	for _, n := range []int64{0, 1, 2, 9, 10, 99, 100, 999, 1000, 1023, 1024, 1025, 1029, 1030, 1039, 1099, 1100, 1999, 2000, 9999, 10000, 12345,
		1048575, 1048576, 1048577, 1048579, 1048580, 1048599, 1048600, 1048999, 1049000, 1049999, 1050000, 1099999, 1100000, 1999999, 2000000,
		9999999, 10000000, 123456789} {
		for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
			if u == "TiB" && n > 1<<22 {
				continue // past 2^62 bytes, which Go refuses and a pattern cannot say
			}
			sizes = append(sizes, fmt.Sprintf("%d%s", n, u), fmt.Sprintf("%d %s", n, u), fmt.Sprintf("00%d%s", n, u))
		}
	}
	sizes = append(sizes, "MiB", "1 GB", "1MB", "1.5MiB", "1mib", "256", "+2MiB", " 2MiB", "2  MiB", "2\tMiB", "2MiB ", "-2MiB")
	for _, s := range sizes {
		var b ByteSize
		goOK := b.UnmarshalJSON([]byte(strconv.Quote(s))) == nil && b >= minMaxBytes
		if schemaOK := sizeRe.MatchString(s); schemaOK != goOK {
			t.Errorf("batch.maxBytes %q: schema takes it %v, Go %v", s, schemaOK, goOK)
		}
	}
	// Fields Go checks in validation: the schema takes what Go takes.
	goTakes := func(path string, edit func(d map[string]any)) bool {
		_, err := Parse(mutate(t, edit))
		return err == nil || !strings.Contains(err.Error(), path)
	}
	addrRe := regexp.MustCompile(obj(schema, "properties", "settings", "properties", "worker", "properties", "metricsAddr")["pattern"].(string))
	for _, a := range []string{":9090", ":0", ":65535", ":65536", ":99999", "127.0.0.1:8080", "[::1]:9090", ":065535", "9090", "host:"} {
		goOK := goTakes("metricsAddr", func(d map[string]any) { obj(d, "settings")["worker"] = map[string]any{"metricsAddr": a} })
		if schemaOK := addrRe.MatchString(a); schemaOK != goOK {
			t.Errorf("metricsAddr %q: schema takes it %v, Go %v", a, schemaOK, goOK)
		}
	}
	endRe := regexp.MustCompile(obj(schema, "properties", "settings", "properties", "regions", "items", "properties", "s3Endpoint")["pattern"].(string))
	for _, e := range []string{"https://s3.example.com", "http://127.0.0.1:9000", "HTTPS://x", "localhost:9000", "ftp://x", "http:///path"} {
		goOK := goTakes("s3Endpoint", func(d map[string]any) { obj(d, "settings", "regions", 0)["s3Endpoint"] = e })
		if schemaOK := endRe.MatchString(e); schemaOK != goOK {
			t.Errorf("s3Endpoint %q: schema takes it %v, Go %v", e, schemaOK, goOK)
		}
	}
}

// TestOneRegion: a region with role both is enough, for a rule whose
// destinations are in its own region (the schema's regions.minItems).
func TestOneRegion(t *testing.T) {
	c, err := Parse([]byte(`{"version":1,"settings":{"stackName":"x","regions":[
		{"name":"us-east-1","role":"both","stagingBucket":"stage-a"}]},
		"rules":[{"id":"r","sourceRegion":"us-east-1","sourceBucket":"src-bucket",
		"destinations":[{"region":"us-east-1","bucket":"dst-bucket"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if delivered, crossed := c.Rules[0].Regions(); delivered != 1 || crossed != 0 {
		t.Errorf("Regions() = %d, %d; want 1, 0", delivered, crossed)
	}
}

func TestRuleOverlaps(t *testing.T) {
	for _, tc := range []struct {
		p1, s1, p2, s2 string
		overlap        bool
	}{
		{"logs/", "", "data/", "", false},
		{"logs/", "", "logs/", ".gz", true},
		{"", ".json", "", ".gz", false},
		{"", ".json", "x/", ".json", true},
		{"a", ".tar.gz", "ab", ".gz", true},
	} {
		c := Config{Rules: []Rule{
			{ID: "a", SourceRegion: "r", SourceBucket: "b", Prefix: tc.p1, Suffix: tc.s1},
			{ID: "b", SourceRegion: "r", SourceBucket: "b", Prefix: tc.p2, Suffix: tc.s2},
		}}
		var errs Errors
		c.checkOverlaps(&errs)
		if (len(errs) > 0) != tc.overlap {
			t.Errorf("%q%q vs %q%q: %v, want overlap %v", tc.p1, tc.s1, tc.p2, tc.s2, errs, tc.overlap)
		}
	}
}

// TestMatchesEveryKey: '*' matches every key, newlines and other control
// characters included, so an ignore pattern cannot be dodged by a key
// holding one.
func TestMatchesEveryKey(t *testing.T) {
	r := Rule{SourceBucket: "b", Ignore: []string{"*"}}
	c := Config{Rules: []Rule{{SourceBucket: "b", Ignore: []string{"*.tmp", "a?b"}}}}
	var errs Errors
	c.validateRule(&errs, "rules[0]", &c.Rules[0], map[string]bool{})
	for _, key := range []string{"a", "a\nb", "\n", "x/\r\n/y", "dir/\x00", "ü\n.tmp"} {
		if r.Matches("b", key) {
			t.Errorf("ignore [*] does not match %q", key)
		}
	}
	if c.Rules[0].Matches("b", "x\ny.tmp") || c.Rules[0].Matches("b", "a\nb") {
		t.Error("'*' or '?' does not match a newline")
	}
	if !c.Rules[0].Matches("b", "x\ny.txt") {
		t.Error("key with a newline not matched by a rule that does not ignore it")
	}
}

// TestMatchesConcurrent runs Matches from many goroutines on a loaded rule
// and on a rule built in code; under -race it fails if Matches writes.
func TestMatchesConcurrent(t *testing.T) {
	c, err := Parse(readExample(t, "example.json"))
	if err != nil {
		t.Fatal(err)
	}
	loaded := &c.Rules[0]
	built := &Rule{SourceBucket: "b", Ignore: []string{"*.tmp"}}
	done := make(chan bool)
	for range 8 {
		go func() {
			ok := true
			for i := range 200 {
				key := fmt.Sprintf("%s%d.tmp", loaded.Prefix, i)
				ok = ok && !loaded.Matches(loaded.SourceBucket, key) && !built.Matches("b", key) && built.Matches("b", "x")
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("Matches gave a wrong answer under concurrency")
		}
	}
}

func TestPartition(t *testing.T) {
	for region, want := range map[string]string{
		"us-east-1": "aws", "eu-west-1": "aws", "ap-southeast-2": "aws", "cn-north-1": "aws-cn", "cn-northwest-1": "aws-cn",
		"us-gov-west-1": "aws-us-gov", "us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b", "eu-isoe-west-1": "aws-iso-e",
		"us-isof-south-1": "aws-iso-f", "eusc-de-east-1": "aws-eusc",
	} {
		if got := partition(region); got != want {
			t.Errorf("partition(%q) = %q, want %q", region, got, want)
		}
		if !regionRe.MatchString(region) {
			t.Errorf("region %q refused", region)
		}
	}
}

// TestBucketInTwoRegionsRejected: a bucket name is the partition's, so one
// named in two regions is one bucket, whatever the config says.
func TestBucketInTwoRegionsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(d map[string]any)
		want string
	}{
		{"source named as a destination elsewhere", func(d map[string]any) {
			obj(d, "rules", 1, "destinations", 0)["bucket"] = "acme-app-logs" // rules[0]'s source, in us-east-1
		}, `rules[1].destinations[0].bucket: bucket "acme-app-logs" is named in eu-west-1 here and in us-east-1 at rules[0].sourceBucket: bucket names are global in partition aws`},
		{"one destination in two regions", func(d map[string]any) {
			obj(d, "rules", 0, "destinations", 1)["bucket"] = "acme-exports-eu" // rules[1]'s, in eu-west-1
		}, `rules[1].destinations[0].bucket: bucket "acme-exports-eu" is named in eu-west-1 here and in ap-southeast-2 at rules[0].destinations[1].bucket`},
		{"one source in two regions", func(d map[string]any) {
			obj(d, "settings", "regions", 1)["role"] = "both"
			obj(d, "rules", 1)["sourceRegion"] = "eu-west-1"
			obj(d, "rules", 1)["sourceBucket"] = "acme-app-logs"
			obj(d, "rules", 1, "destinations", 0)["region"] = "ap-southeast-2"
		}, `rules[1].sourceBucket: bucket "acme-app-logs" is named in eu-west-1 here and in us-east-1 at rules[0].sourceBucket`},
		// Two regions at one S3-compatible store (one endpoint per
		// account): a rule writing there writes its own source.
		{"one store as two regions", func(d map[string]any) {
			obj(d, "settings", "regions", 1)["s3Endpoint"] = "HTTPS://Store.example"
			obj(d, "settings", "regions", 2)["s3Endpoint"] = "https://store.example:443/"
			obj(d, "rules", 0, "destinations", 1)["bucket"] = "acme-exports-eu" // rules[1]'s, in eu-west-1
		}, `rules[1].destinations[0].bucket: bucket "acme-exports-eu" is named in eu-west-1 here and in ap-southeast-2 at rules[0].destinations[1].bucket: bucket names are global in the store at`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(mutate(t, tc.f))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not say %q:\n%v", tc.want, err)
			}
		})
	}
	// Other partitions, and S3-compatible stores, name buckets of their own.
	for _, tc := range []struct {
		name string
		f    func(d map[string]any)
	}{
		{"another partition", func(d map[string]any) {
			// A rule within aws-cn (S3 Replication stays in a partition),
			// whose source is named as us-east-1's.
			settings := obj(d, "settings")
			settings["regions"] = append(settings["regions"].([]any),
				map[string]any{"name": "cn-north-1", "role": "both", "stagingBucket": "acme-xrc-staging-cn-north-1"})
			d["rules"] = append(d["rules"].([]any), map[string]any{
				"id": "cn", "sourceRegion": "cn-north-1", "sourceBucket": "acme-app-logs",
				"destinations": []any{map[string]any{"region": "cn-north-1", "bucket": "acme-app-logs-copy"}},
			})
		}},
		{"another partition, direct", func(d map[string]any) {
			// The source copies the archives there itself.
			obj(d, "settings", "regions", 1)["name"] = "cn-north-1"
			obj(d, "settings", "regions", 1)["direct"] = true
			obj(d, "settings", "regions", 1)["s3Credentials"] = "ssm:///xrc/cn-s3"
			for _, r := range d["rules"].([]any) {
				for _, dst := range r.(map[string]any)["destinations"].([]any) {
					if dst := dst.(map[string]any); dst["region"] == "eu-west-1" {
						dst["region"] = "cn-north-1"
						delete(dst, "kmsKeyId")
					}
				}
			}
		}},
		{"an S3-compatible store", func(d map[string]any) {
			obj(d, "settings", "regions", 1)["s3Endpoint"] = "https://minio.example:9000"
			obj(d, "rules", 1, "destinations", 0)["bucket"] = "acme-app-logs"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(mutate(t, tc.f)); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

func TestFanInRejected(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "rules", 1, "destinations", 0)["bucket"] = obj(d, "rules", 0, "destinations", 0)["bucket"]
		obj(d, "rules", 1, "destinations", 0)["region"] = obj(d, "rules", 0, "destinations", 0)["region"]
		obj(d, "rules", 1, "destinations", 0)["prefix"] = "prod/sub/" // rule 0 writes prod/ there
	})
	_, err := Parse(doc)
	if err == nil || !strings.Contains(err.Error(), "rules[1].destinations[0]: writes keys under") || !strings.Contains(err.Error(), "cannot be ordered") {
		t.Fatalf("fan-in not rejected: %v", err)
	}
	// Disjoint prefixes of one bucket are fine.
	doc = mutate(t, func(d map[string]any) {
		obj(d, "rules", 1, "destinations", 0)["bucket"] = obj(d, "rules", 0, "destinations", 0)["bucket"]
		obj(d, "rules", 1, "destinations", 0)["region"] = obj(d, "rules", 0, "destinations", 0)["region"]
		obj(d, "rules", 1, "destinations", 0)["prefix"] = "elsewhere/"
	})
	if _, err := Parse(doc); err != nil {
		t.Fatalf("disjoint prefixes rejected: %v", err)
	}
	// Suffixes no key can both end with: the rules never write one key.
	doc = mutate(t, func(d map[string]any) {
		obj(d, "rules", 1, "destinations", 0)["bucket"] = obj(d, "rules", 0, "destinations", 0)["bucket"]
		obj(d, "rules", 1, "destinations", 0)["region"] = obj(d, "rules", 0, "destinations", 0)["region"]
		obj(d, "rules", 1, "destinations", 0)["prefix"] = "prod/sub/"
		obj(d, "rules", 0)["suffix"] = ".csv"
		obj(d, "rules", 1)["suffix"] = ".json"
	})
	if _, err := Parse(doc); err != nil {
		t.Fatalf("rules of suffixes .csv and .json rejected: %v", err)
	}
}

func TestDuplicateDestinationRejected(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		r := obj(d, "rules", 0)
		r["destinations"] = append(r["destinations"].([]any), obj(d, "rules", 0, "destinations", 0))
	})
	if _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("duplicate destination not rejected: %v", err)
	}
}

func TestRoutes(t *testing.T) {
	empty, long := "", strings.Repeat("p", 30)
	r := Rule{ID: "r", Prefix: "logs/", Destinations: []Destination{
		{Region: "eu-west-1", Bucket: "a", StorageClass: "STANDARD_IA", KMSKeyID: "k"},
		{Region: "eu-west-1", Bucket: "a"},                                             // same key as above but another policy: kept
		{Region: "eu-west-1", Bucket: "a", StorageClass: "STANDARD_IA", KMSKeyID: "k"}, // exact duplicate: dropped
	}}
	got, err := r.Routes("logs/x")
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{Region: "eu-west-1", Bucket: "a", Key: "logs/x", StorageClass: "STANDARD_IA", KMSKeyID: "k"}, {Region: "eu-west-1", Bucket: "a", Key: "logs/x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Routes = %+v, want %+v", got, want)
	}
	r = Rule{ID: "r", Prefix: "logs/", Destinations: []Destination{{Bucket: "a", Prefix: &empty}}}
	if _, err := r.Routes("logs/"); err == nil || !strings.Contains(err.Error(), "empty key") {
		t.Errorf("empty destination key: %v", err)
	}
	r = Rule{ID: "r", Prefix: "logs/", Destinations: []Destination{{Bucket: "a", Prefix: &long}}}
	if _, err := r.Routes("logs/" + strings.Repeat("k", 1000)); err == nil || !strings.Contains(err.Error(), "more than S3's 1024") {
		t.Errorf("long destination key: %v", err)
	}
	if _, err := r.Routes("logs/short"); err != nil {
		t.Errorf("short key: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "rules", 0)["prefix"] = "a/"
		obj(d, "rules", 0, "destinations", 0)["prefix"] = ""
		obj(d, "rules", 1, "destinations", 0)["prefix"] = obj(d, "rules", 1)["prefix"].(string) + "longer/"
		obj(d, "settings")["worker"] = map[string]any{"maxReceiveCount": 2}
		obj(d, "rules", 0)["compute"] = "lambda"
	})
	c, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	ws := c.Warnings().Error()
	for _, w := range []string{"settings.worker.maxReceiveCount: 2 with workers on Lambda: a message goes to the DLQ after 2 failed receives", "rules[0].destinations[0].prefix: an object whose key is exactly the rule prefix \"a/\" maps to an empty key",
		"rules[1].destinations[0].prefix: is 7 bytes longer", "keys over 1017 bytes"} {
		if !strings.Contains(ws, w) {
			t.Errorf("warnings do not say %q:\n%s", w, ws)
		}
	}
	c, _ = Parse(readExample(t, "local.json"))
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("local.json warns: %v", ws)
	}
}

// TestHeartbeatWarning: a source task holds two batches' messages, whose
// visibility its heartbeat extends every third of the visibility timeout:
// batches too large for it are warned of, with what would fit.
func TestHeartbeatWarning(t *testing.T) {
	for _, tc := range []struct {
		maxObjects int
		visibility string
		compute    string
		want       bool
	}{
		{1000, "30s", "fargate", false},
		{8000, "30s", "fargate", false},
		{9000, "30s", "fargate", true},
		{9000, "30s", "hybrid", true},
		{9000, "30s", "lambda", false}, // no heartbeat: its event source mapping holds the batch
		{60000, "5m", "fargate", false},
		{60000, "2m", "fargate", true},
	} {
		doc := mutate(t, func(d map[string]any) {
			obj(d, "rules", 0)["batch"] = map[string]any{"maxObjects": tc.maxObjects, "maxAge": "5s"}
			obj(d, "rules", 1)["batch"] = map[string]any{"maxAge": "5s"}
			obj(d, "rules", 0)["compute"] = tc.compute
			obj(d, "settings")["worker"] = map[string]any{"visibilityTimeout": tc.visibility}
		})
		c, err := Parse(doc)
		if err != nil {
			t.Fatal(err)
		}
		ws := c.Warnings().Error()
		if got := strings.Contains(ws, "rules[0].batch.maxObjects"); got != tc.want {
			t.Errorf("maxObjects %d, visibility %s, %s: warned %v, want %v:\n%s", tc.maxObjects, tc.visibility, tc.compute, got, tc.want, ws)
		}
	}
	if m := maxObjectsFor(30 * time.Second); heartbeatTime(2*m) > 10*time.Second || heartbeatTime(2*(m+40)) <= 10*time.Second {
		t.Errorf("maxObjectsFor(30s) = %d: not the most whose messages one heartbeat extends in 10s", m)
	}
}

// TestKMSKeyForms: every form S3 takes for an SSE-KMS key is accepted.
func TestKMSKeyForms(t *testing.T) {
	for _, id := range []string{"1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab", "alias/aws/s3", "alias/acme-logs_2",
		"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-1:111122223333:alias/acme-logs",
		"arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"} {
		if !kmsKeyRe.MatchString(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"aws/s3", "key/1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-1", "not a key", "alias/", "arn:aws:s3:::bucket"} {
		if kmsKeyRe.MatchString(id) {
			t.Errorf("%q taken", id)
		}
	}
}

// TestLambdaMemoryWarning: a source function compressing at level 19 or
// more with under 1,024 MB: libzstd's contexts (~90 MiB each) live outside
// GOMEMLIMIT, and the function may run out of memory.
func TestLambdaMemoryWarning(t *testing.T) {
	for _, tc := range []struct {
		memory, maxLevel int
		compute          string
		want             bool
	}{
		{512, 19, "lambda", true},
		{512, 19, "fargate", false},
		{512, 12, "lambda", false},
		{1024, 19, "hybrid", false},
		// A target function: its large objects' part buffers.
		{128, 12, "target-lambda", true},
		{189, 12, "target-lambda", false},
		// Two destinations in the region: both uploads' buffers at once.
		{300, 12, "target-lambda-two", true},
		{378, 12, "target-lambda-two", false},
	} {
		c, err := Parse(mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"memoryMB": tc.memory}
			obj(d, "settings")["adaptive"] = map[string]any{"maxLevel": tc.maxLevel}
			for i := range d["rules"].([]any) {
				if !strings.HasPrefix(tc.compute, "target-lambda") {
					obj(d, "rules", i)["compute"] = tc.compute
				}
			}
			if tc.compute == "target-lambda-two" {
				r := obj(d, "rules", 0)
				dests := r["destinations"].([]any)
				second := maps.Clone(dests[0].(map[string]any))
				second["bucket"] = "acme-second-copy"
				r["destinations"] = append(dests, second)
			}
			if strings.HasPrefix(tc.compute, "target-lambda") {
				for i, r := range obj(d, "settings")["regions"].([]any) {
					if r.(map[string]any)["role"] != "source" {
						obj(d, "settings", "regions", i)["compute"] = "lambda"
					}
				}
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(c.Warnings().Error(), "settings.lambda.memoryMB")
		if got != tc.want {
			t.Errorf("%d MB, level %d, %s: warned %t, want %t (%v)", tc.memory, tc.maxLevel, tc.compute, got, tc.want, c.Warnings())
		}
	}
}

// TestReservedConcurrencyWarning: a region's functions (a source per rule
// on lambda or hybrid, its target when on lambda or hybrid) reserving more
// than the 900 an account's default quota leaves reservable.
func TestReservedConcurrencyWarning(t *testing.T) {
	doc := func(reserved int, targetCompute string) []byte {
		return mutate(t, func(d map[string]any) {
			obj(d, "settings")["lambda"] = map[string]any{"reservedConcurrency": reserved}
			obj(d, "settings", "regions", 1)["compute"] = targetCompute
			obj(d, "rules", 0)["compute"] = "lambda" // exports is hybrid already
		})
	}
	for _, tc := range []struct {
		reserved int
		compute  string
		want     string // "" for no warning
	}{
		{450, "fargate", ""}, // us-east-1: 2 x 450; eu-west-1: none; ap-southeast-2: 1 x 450
		{451, "fargate", "settings.lambda.reservedConcurrency: us-east-1 has 2 functions (source logs, source exports) reserving 451 each, 902 in all: more than the 900"},
		{300, "hybrid", ""},
		{301, "hybrid", ""}, // eu-west-1: 1 target
		{901, "fargate", "settings.lambda.reservedConcurrency: ap-southeast-2 has 1 functions (target) reserving 901 each"},
	} {
		c, err := Parse(doc(tc.reserved, tc.compute))
		if err != nil {
			t.Fatal(err)
		}
		var ws string
		for _, w := range c.Warnings() {
			if strings.HasPrefix(w.Path, "settings.lambda") {
				ws += w.Error()
			}
		}
		if tc.want == "" && ws != "" || !strings.Contains(ws, tc.want) {
			t.Errorf("reserved %d, eu-west-1 %s: warnings %q, want %q", tc.reserved, tc.compute, ws, tc.want)
		}
	}
	c, err := Parse(doc(10, "lambda"))
	if err != nil {
		t.Fatal(err)
	}
	for region, want := range map[string][]string{"us-east-1": {"source logs", "source exports"}, "eu-west-1": {"target"}, "ap-southeast-2": {"target"}} {
		if got := c.LambdaFunctions(region); !slices.Equal(got, want) {
			t.Errorf("LambdaFunctions(%s) = %v, want %v", region, got, want)
		}
	}
	// A target region no rule delivers to has no target worker.
	c.Rules[0].Destinations = c.Rules[0].Destinations[:1]
	if got := c.LambdaFunctions("ap-southeast-2"); len(got) != 0 {
		t.Errorf("ap-southeast-2 without destinations: %v", got)
	}
}

// TestSchemaMatchesGo: every number, pattern, enum and default the schema
// states is the one the Go code enforces or applies, so the schema cannot
// drift from Validate (the fields themselves: TestSchemaCoversFields).
func TestSchemaMatchesGo(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(readExample(t, "xrc.schema.json"), &schema); err != nil {
		t.Fatal(err)
	}
	at := func(path ...any) map[string]any {
		v := any(schema)
		for _, p := range path {
			switch p := p.(type) {
			case string:
				v = v.(map[string]any)[p]
			case int:
				v = v.([]any)[p]
			}
			if v == nil {
				t.Fatalf("schema has no %v", path)
			}
		}
		return v.(map[string]any)
	}
	settings := func(p ...any) map[string]any {
		return at(append([]any{"properties", "settings", "properties"}, p...)...)
	}
	rule := func(p ...any) map[string]any {
		return at(append([]any{"properties", "rules", "items", "properties"}, p...)...)
	}
	num := func(m map[string]any, k string) float64 { v, _ := m[k].(float64); return v }
	dur := func(m map[string]any) time.Duration { d, _ := time.ParseDuration(fmt.Sprint(m["default"])); return d }
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"stackName pattern", settings("stackName")["pattern"], stackNameRe.String()},
		{"region pattern", settings("regions", "items", "properties", "name")["pattern"], regionRe.String()},
		{"rule id pattern", rule("id")["pattern"], ruleIDRe.String()},
		{"bucket pattern", at("$defs", "bucket")["pattern"], bucketRe.String()},
		{"level minimum", num(rule("level"), "minimum"), float64(manifest.MinLevel)},
		{"level maximum", num(rule("level"), "maximum"), float64(manifest.MaxLevel)},
		{"level default", num(rule("level"), "default"), float64(DefaultLevel)},
		{"maxObjects minimum", num(rule("batch", "properties", "maxObjects"), "minimum"), float64(minMaxObjects)},
		{"maxObjects maximum", num(rule("batch", "properties", "maxObjects"), "maximum"), float64(maxMaxObjects)},
		{"maxObjects default", num(rule("batch", "properties", "maxObjects"), "default"), float64(DefaultMaxObjects)},
		{"concurrency minimum", num(settings("worker", "properties", "concurrency"), "minimum"), float64(minConcurrency)},
		{"concurrency maximum", num(settings("worker", "properties", "concurrency"), "maximum"), float64(maxConcurrency)},
		{"concurrency default", num(settings("worker", "properties", "concurrency"), "default"), float64(DefaultConcurrency)},
		{"maxReceiveCount minimum", num(settings("worker", "properties", "maxReceiveCount"), "minimum"), float64(minMaxReceiveCount)},
		{"maxReceiveCount maximum", num(settings("worker", "properties", "maxReceiveCount"), "maximum"), float64(maxMaxReceiveCount)},
		{"maxReceiveCount default", num(settings("worker", "properties", "maxReceiveCount"), "default"), float64(DefaultMaxReceiveCount)},
		{"stagingExpiryDays minimum", num(settings("stagingExpiryDays"), "minimum"), float64(minStagingExpiryDays)},
		{"stagingExpiryDays maximum", num(settings("stagingExpiryDays"), "maximum"), float64(maxStagingExpiryDays)},
		{"stagingExpiryDays default", num(settings("stagingExpiryDays"), "default"), float64(DefaultStagingExpiry)},
		{"transferPerGB default", num(settings("prices", "properties", "transferPerGB"), "default"), DefaultTransferPerGB},
		{"vcpuHour default", num(settings("prices", "properties", "vcpuHour"), "default"), DefaultVCPUHour},
		{"metricsAddr default", settings("worker", "properties", "metricsAddr")["default"], DefaultMetricsAddr},
		{"drainTimeout default", dur(settings("worker", "properties", "drainTimeout")), DefaultDrainTimeout},
		{"visibilityTimeout default", dur(settings("worker", "properties", "visibilityTimeout")), DefaultVisibility},
		{"receiveWait default", dur(settings("worker", "properties", "receiveWait")), DefaultReceiveWait},
		{"maxAge default", dur(rule("batch", "properties", "maxAge")), DefaultMaxAge},
		{"idle default", dur(rule("batch", "properties", "idle")), DefaultIdle},
		{"maxBytes default", rule("batch", "properties", "maxBytes")["default"], fmt.Sprintf("%dMiB", DefaultMaxBytes>>20)},
		{"fixedPerMonth default", num(settings("prices", "properties", "fixedPerMonth"), "default"), DefaultFixedPerMonth},
		{"adaptive minLevel default", num(settings("adaptive", "properties", "minLevel"), "default"), float64(DefaultMinLevel)},
		{"adaptive maxLevel default", num(settings("adaptive", "properties", "maxLevel"), "default"), float64(DefaultMaxLevel)},
		{"adaptive minLevel minimum", num(settings("adaptive", "properties", "minLevel"), "minimum"), float64(manifest.MinLevel)},
		{"adaptive maxLevel maximum", num(settings("adaptive", "properties", "maxLevel"), "maximum"), float64(manifest.MaxLevel)},
		{"adaptive explore default", num(settings("adaptive", "properties", "explore"), "default"), DefaultExplore},
		{"adaptive exploreFloor default", num(settings("adaptive", "properties", "exploreFloor"), "default"), DefaultExploreFloor},
		{"adaptive freshness default", dur(settings("adaptive", "properties", "freshness")), DefaultFreshness},
		{"adaptive halfLife default", dur(settings("adaptive", "properties", "halfLife")), DefaultHalfLife},
		{"adaptive refresh default", dur(settings("adaptive", "properties", "refresh")), DefaultRefresh},
		{"adaptive benchmark default", dur(settings("adaptive", "properties", "benchmark")), DefaultBenchmark},
		{"compute", fmt.Sprint(at("$defs", "compute")["enum"]), fmt.Sprint([]any{string(ComputeFargate), string(ComputeLambda), string(ComputeHybrid)})},
		{"compute default", at("$defs", "compute")["default"], string(ComputeFargate)},
		{"fargateGBHour default", num(settings("prices", "properties", "fargateGBHour"), "default"), DefaultFargateGBHour},
		{"lambdaGBSecond default", num(settings("prices", "properties", "lambdaGBSecond"), "default"), DefaultLambdaGBSecond},
		{"lambdaPerMillion default", num(settings("prices", "properties", "lambdaPerMillion"), "default"), DefaultLambdaPerMillion},
		{"s3PutPer1000 default", num(settings("prices", "properties", "s3PutPer1000"), "default"), DefaultS3PutPer1000},
		{"s3GetPer1000 default", num(settings("prices", "properties", "s3GetPer1000"), "default"), DefaultS3GetPer1000},
		{"sqsPerMillion default", num(settings("prices", "properties", "sqsPerMillion"), "default"), DefaultSQSPerMillion},
		{"dynamoDBWritePerMillion default", num(settings("prices", "properties", "dynamoDBWritePerMillion"), "default"), DefaultDynamoDBWritePerMillion},
		{"dynamoDBReadPerMillion default", num(settings("prices", "properties", "dynamoDBReadPerMillion"), "default"), DefaultDynamoDBReadPerMillion},
		{"s3StoragePerGBMonth default", num(settings("prices", "properties", "s3StoragePerGBMonth"), "default"), DefaultS3StoragePerGBMonth},
		{"lambda memoryMB minimum", num(settings("lambda", "properties", "memoryMB"), "minimum"), float64(minLambdaMemoryMB)},
		{"lambda memoryMB maximum", num(settings("lambda", "properties", "memoryMB"), "maximum"), float64(maxLambdaMemoryMB)},
		{"lambda memoryMB default", num(settings("lambda", "properties", "memoryMB"), "default"), float64(DefaultLambdaMemoryMB)},
		{"lambda timeout default", dur(settings("lambda", "properties", "timeout")), DefaultLambdaTimeout},
		{"lambda reservedConcurrency minimum", num(settings("lambda", "properties", "reservedConcurrency"), "minimum"), float64(minLambdaConcurrency)},
		{"lambda reservedConcurrency maximum", num(settings("lambda", "properties", "reservedConcurrency"), "maximum"), float64(maxLambdaConcurrency)},
		{"lambda reservedConcurrency default", num(settings("lambda", "properties", "reservedConcurrency"), "default"), float64(DefaultLambdaConcurrency)},
		{"lambda batchSize maximum", num(settings("lambda", "properties", "batchSize"), "maximum"), float64(maxLambdaBatchSize)},
		{"lambda batchSize default", num(settings("lambda", "properties", "batchSize"), "default"), float64(DefaultLambdaBatchSize)},
		{"lambda batchingWindow default", dur(settings("lambda", "properties", "batchingWindow")), DefaultLambdaBatchingWindow},
		{"lambda targetBatchSize maximum", num(settings("lambda", "properties", "targetBatchSize"), "maximum"), float64(maxLambdaTargetBatchSize)},
		{"lambda targetBatchSize default", num(settings("lambda", "properties", "targetBatchSize"), "default"), float64(DefaultLambdaTargetBatchSize)},
		{"lambda margin default", dur(settings("lambda", "properties", "margin")), DefaultLambdaMargin},
		{"lambda hybridBacklog default", num(settings("lambda", "properties", "hybridBacklog"), "default"), float64(DefaultHybridBacklog)},
		{"lambda hybridAge default", dur(settings("lambda", "properties", "hybridAge")), DefaultHybridAge},
		{"regions minItems", num(settings("regions"), "minItems"), float64(minRegions)},
		{"maxBytes minimum", num(at("$defs", "batchSize", "oneOf", 0), "minimum"), float64(minMaxBytes)},
		{"roles", fmt.Sprint(settings("regions", "items", "properties", "role")["enum"]), fmt.Sprint([]any{string(RoleSource), string(RoleTarget), string(RoleBoth)})},
		{"log levels", fmt.Sprint(settings("logLevel")["enum"]), "[debug info warn error]"},
	} {
		if c.got != c.want {
			t.Errorf("%s: schema says %v, Go %v", c.name, c.got, c.want)
		}
	}
	prices := []string{"transferPerGB", "vcpuHour", "fixedPerMonth", "fargateGBHour", "lambdaGBSecond", "lambdaPerMillion",
		"s3PutPer1000", "s3GetPer1000", "sqsPerMillion", "dynamoDBWritePerMillion", "dynamoDBReadPerMillion", "s3StoragePerGBMonth"}
	for _, p := range prices {
		if m := settings("prices", "properties", p); m["minimum"] != float64(minPrice) {
			t.Errorf("prices.%s minimum: schema says %v, Go %v", p, m["minimum"], minPrice)
		}
	}
	if n := len(settings("prices", "properties")); n != len(prices) {
		t.Errorf("prices: %d in the schema, %d checked", n, len(prices))
	}
	var classes []string
	for _, c := range rule("destinations", "items", "properties", "storageClass")["enum"].([]any) {
		classes = append(classes, c.(string))
	}
	var put []string
	for _, c := range putStorageClasses {
		put = append(put, string(c))
		if !slices.Contains(s3types.StorageClass("").Values(), c) {
			t.Errorf("storage class %s: not one the SDK knows", c)
		}
	}
	slices.Sort(classes)
	slices.Sort(put)
	if !slices.Equal(classes, put) {
		t.Errorf("storage classes: schema %v, Go (what Validate accepts) %v", classes, put)
	}
}

// TestDuplicateKeysCheckIsLinear: the walk's memory grows with the
// document, not with its size squared (a long key over a large array, a
// deep nest of long keys: paths are built only for a duplicate).
func TestDuplicateKeysCheckIsLinear(t *testing.T) {
	const n = 20000
	long := strings.Repeat("k", n)
	docs := map[string]string{
		"long key over a large array": `{"` + long + `":[` + strings.TrimSuffix(strings.Repeat("0,", n), ",") + `]}`,
		"deep nest of long keys":      strings.Repeat(`{"`+long[:200]+`":`, 200) + "0" + strings.Repeat("}", 200),
	}
	for name, doc := range docs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var errs Errors
		checkDuplicateKeys(&errs, []byte(doc))
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(80*len(doc)) {
			t.Errorf("%s: %d bytes allocated for a document of %d", name, alloc, len(doc))
		}
		if len(errs) != 0 {
			t.Errorf("%s: %v", name, errs)
		}
	}
}

// TestShortLambdaTimeout: a timeout the schema allows (40 s and more) takes
// a margin of at most half of it, unless the config sets one: 45 s was
// refused for the 30 s default margin nobody had set.
func TestShortLambdaTimeout(t *testing.T) {
	c, err := Parse(mutate(t, func(d map[string]any) {
		obj(d, "settings")["lambda"] = map[string]any{"timeout": "45s"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Settings.Lambda.Margin.D(); m != 22500*time.Millisecond {
		t.Errorf("margin %v, want 22.5s", m)
	}
	c, err = Parse(mutate(t, func(d map[string]any) {
		obj(d, "settings")["lambda"] = map[string]any{"timeout": "5m"}
	}))
	if err != nil || c.Settings.Lambda.Margin.D() != DefaultLambdaMargin {
		t.Errorf("5m: %v, margin %v", err, c.Settings.Lambda.Margin)
	}
}

// TestCredentialsNotEchoed: an s3Credentials value that is neither form
// may be the credentials, pasted; the error, which reaches logs and CI
// output, does not repeat it.
func TestCredentialsNotEchoed(t *testing.T) {
	const secret = "AKIAEXAMPLEKEY:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	_, err := Parse(mutate(t, func(d map[string]any) { obj(d, "settings", "regions", 1)["s3Credentials"] = secret }))
	if err == nil || strings.Contains(err.Error(), "wJalr") || !strings.Contains(err.Error(), "s3Credentials") {
		t.Errorf("error %v", err)
	}
}

// TestPlainHTTPEndpointWarned: a store reached over plain HTTP is said to
// be, unless it is on this machine.
func TestPlainHTTPEndpointWarned(t *testing.T) {
	for endpoint, want := range map[string]bool{"http://store.example:9000": true, "https://store.example": false, "http://127.0.0.1:9000": false} {
		c, err := Parse(mutate(t, func(d map[string]any) {
			obj(d, "settings", "regions", 1)["direct"] = true
			obj(d, "settings", "regions", 1)["s3Endpoint"] = endpoint
		}))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(c.Warnings().Error(), "plain HTTP"); got != want {
			t.Errorf("%s: warned %v, want %v", endpoint, got, want)
		}
	}
}

// TestSourceChecksumsChecked: a rule some of whose destinations are on a
// store that does not check source checksums (an S3-compatible endpoint
// without s3SourceChecksums) has the source check them all.
func TestSourceChecksumsChecked(t *testing.T) {
	c := &Config{Settings: Settings{Regions: []Region{
		{Name: "us-east-1"}, {Name: "eu-west-1"},
		{Name: "store", S3Endpoint: "https://store.example"},
		{Name: "checks", S3Endpoint: "https://checks.example", S3SourceChecksums: true},
	}}}
	for _, tc := range []struct {
		regions []string
		want    bool
	}{
		{[]string{"eu-west-1"}, true},
		{[]string{"eu-west-1", "checks"}, true},
		{[]string{"eu-west-1", "store"}, false},
		{[]string{"unknown"}, false},
	} {
		r := &Rule{}
		for _, name := range tc.regions {
			r.Destinations = append(r.Destinations, Destination{Region: name, Bucket: "b"})
		}
		if got := c.SourceChecksumsChecked(r); got != tc.want {
			t.Errorf("destinations in %v: checked %v, want %v", tc.regions, got, tc.want)
		}
	}
}

// Queue names are unique per region: rule "logs-dlq" watching another
// region than rule "logs" names no queue of the other's.
func TestDeadLetterQueueNamesPerRegion(t *testing.T) {
	doc := mutate(t, func(d map[string]any) {
		obj(d, "settings", "regions", 1)["role"] = "both"
		obj(d, "rules", 1)["id"] = "logs-dlq"
		obj(d, "rules", 1)["sourceRegion"] = "eu-west-1"
	})
	if _, err := Parse(doc); err != nil && strings.Contains(err.Error(), "dead-letter") {
		t.Errorf("rules of two regions refused for their queue names: %v", err)
	}
}
