// Package config is xrc's deployment document: one JSON file (or SSM
// parameter) holding the settings and the replication rules that every
// binary — source worker, target worker, CLI and CDK app — reads the same way.
package config

// This file holds the document's types and the few methods that derive
// facts from them (names, routes, matching); the types are the schema, so
// they stay together.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Version is the only config document version this build understands.
const Version = 1

// BatchTick is how often a source worker checks its open batches for age
// and for the end of their burst: the resolution of batch.maxAge and
// batch.idle, and the shortest idle worth setting.
const BatchTick = 250 * time.Millisecond

// Defaults applied by Load for fields the document leaves out.
const (
	DefaultLevel      = 3
	DefaultMaxObjects = 1000
	DefaultMaxBytes   = 256 << 20
	DefaultMaxAge     = 30 * time.Second
	DefaultIdle       = time.Second
	// DefaultMaxReceiveCount lets a message ride out about four minutes
	// of a failing dependency (the backoff: 2 s, 4 s ... 128 s) before the
	// DLQ: a staging bucket's SlowDown, KMS throttling, IAM settling after
	// a deploy. At 5 it was half a minute, and a short outage filled the
	// DLQ with messages that only needed time.
	DefaultMaxReceiveCount = 8
	DefaultVisibility      = 5 * time.Minute
	DefaultReceiveWait     = 20 * time.Second // SQS's longest: fewest empty receives
	DefaultDrainTimeout    = 90 * time.Second
	// StopTimeout is ECS's time from SIGTERM to SIGKILL, the most Fargate
	// allows: the CDK app sets it on every task, and the workers' stop
	// budget (worker.DefaultStopBudget) is what it leaves them.
	StopTimeout = 120 * time.Second
	// MaxDrainTimeout leaves the rest of StopTimeout to what follows the
	// drain (worker.DefaultStopBudget): aborting cut uploads, the last
	// statistics, deleting and releasing messages.
	MaxDrainTimeout = 90 * time.Second
	// MinDrainTimeout: below it a stop cuts all work in flight, and a
	// task protects itself whenever it holds a message ("90ms" for
	// "90s").
	MinDrainTimeout      = time.Second
	DefaultStagingExpiry = 7
	DefaultTransferPerGB = 0.02
	DefaultVCPUHour      = 0.01245 // Fargate Spot arm64, us-east-1, late 2026
	DefaultMetricsAddr   = ":9090"
	DefaultConcurrency   = 8
	DefaultFixedPerMonth = 25.0 // what a deployment costs idle: README "Which is cheaper"

	DefaultMinLevel     = -7
	DefaultMaxLevel     = 19 // 20-22 need settings.adaptive.ultra
	DefaultExplore      = 0.1
	DefaultExploreFloor = 0.02
	DefaultFreshness    = 5 * time.Minute
	DefaultHalfLife     = time.Hour
	DefaultRefresh      = time.Minute
	DefaultBenchmark    = time.Second

	// Lambda defaults (settings.lambda): one vCPU's worth of memory (Lambda
	// gives 1 vCPU at 1,769 MB), and AWS's arm64 prices in us-east-1,
	// late 2026.
	DefaultLambdaMemoryMB        = 1769
	DefaultLambdaTimeout         = 5 * time.Minute
	DefaultLambdaConcurrency     = 10
	DefaultLambdaBatchSize       = 1000
	DefaultLambdaBatchingWindow  = 30 * time.Second
	DefaultLambdaTargetBatchSize = 4
	DefaultLambdaMargin          = 30 * time.Second
	DefaultHybridBacklog         = 1000
	DefaultHybridAge             = 2 * time.Minute
	DefaultLambdaGBSecond        = 0.0000133334
	DefaultLambdaPerMillion      = 0.20
	DefaultFargateGBHour         = 0.00137 // Fargate Spot arm64 memory

	// Request prices (settings.prices), us-east-1, late 2026: S3 Standard
	// PUT and GET, SQS standard, DynamoDB on-demand.
	DefaultS3PutPer1000            = 0.005
	DefaultS3GetPer1000            = 0.0004
	DefaultSQSPerMillion           = 0.40
	DefaultDynamoDBWritePerMillion = 0.625
	DefaultDynamoDBReadPerMillion  = 0.125
	// DefaultS3StoragePerGBMonth is S3 Standard storage, us-east-1: the
	// source's staged archives are kept a few days (stats.StagingDays).
	DefaultS3StoragePerGBMonth = 0.023
)

// Config is the whole deployment document.
type Config struct {
	Schema   string   `json:"$schema,omitempty"`
	Version  int      `json:"version"`
	Settings Settings `json:"settings"`
	Rules    []Rule   `json:"rules"`
}

// Settings are deployment-wide.
type Settings struct {
	// StackName prefixes every resource name (queues, table, stacks).
	StackName string   `json:"stackName"`
	Regions   []Region `json:"regions"`
	Prices    Prices   `json:"prices"`
	Worker    Worker   `json:"worker"`
	Adaptive  Adaptive `json:"adaptive"`
	// Lambda sizes the functions of the rules and target regions whose
	// compute is lambda or hybrid.
	Lambda Lambda `json:"lambda"`
	// StagingExpiryDays is how long a replicated archive may wait in a
	// target region's staging bucket (for its target workers, through an
	// outage) before lifecycle removes it: a backstop, not the normal
	// cleanup. Archives staged for other regions are kept a day at most.
	StagingExpiryDays int    `json:"stagingExpiryDays,omitempty"`
	LogLevel          string `json:"logLevel,omitempty"`
}

// Role says what a region does: it reads watched buckets (source), writes
// destination buckets (target), or both.
type Role string

// Region roles.
const (
	RoleSource Role = "source"
	RoleTarget Role = "target"
	RoleBoth   Role = "both"
)

// Region is one AWS region (or S3-compatible site) taking part.
type Region struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// StagingBucket receives archives in a source region and the replicas in
	// a target region.
	StagingBucket string `json:"stagingBucket"`
	// S3Endpoint and S3PathStyle point the S3 client at an S3-compatible
	// store (or the local stack) instead of AWS.
	S3Endpoint  string `json:"s3Endpoint,omitempty"`
	S3PathStyle bool   `json:"s3PathStyle,omitempty"`
	// S3ConditionalWrites says the store at S3Endpoint refuses a PUT whose
	// If-None-Match or If-Match does not hold, as AWS S3 does. Stores that
	// ignore those headers exist; a target only writes a key without
	// reading it first where the store is known to refuse
	// (ConditionalWrites).
	S3ConditionalWrites bool `json:"s3ConditionalWrites,omitempty"`
	// S3SourceChecksums says the store at S3Endpoint takes a write with
	// the source object's own checksum (CRC32, CRC32C, CRC64NVME, SHA1 or
	// SHA256 with one PUT, a full-object CRC with a multipart upload), as
	// AWS S3 and MinIO do. Stores' support varies (CRC64NVME is from
	// 2025): without it a target writes there with a SHA-256 or a CRC32C
	// of its own (SourceChecksums).
	S3SourceChecksums bool `json:"s3SourceChecksums,omitempty"`
	// Compute is where the region's target worker runs; only regions with
	// role target or both have one (a source worker's is its rule's).
	Compute Compute `json:"compute,omitempty"`
	// Direct says archives reach this target region from the source
	// workers themselves, which copy each one they stage into its staging
	// bucket, not by S3 Replication: for a region S3 Replication cannot
	// reach (another AWS partition, an S3-compatible store). Its staging
	// bucket announces them to its target queue as any does.
	Direct bool `json:"direct,omitempty"`
	// S3Credentials says where this region's S3 credentials are, when the
	// worker's own do not reach it (another partition, a store): a
	// SecureString parameter "ssm:///name" holding {"accessKeyId": ...,
	// "secretAccessKey": ..., "sessionToken": ...}, or "env:PREFIX" for
	// PREFIX_ACCESS_KEY_ID and PREFIX_SECRET_ACCESS_KEY.
	S3Credentials string `json:"s3Credentials,omitempty"`
	// TransferPerGB is what a GB sent to this region from a rule's source
	// costs, where it is not settings.prices.transferPerGB (0): a direct
	// region outside AWS (internet egress), a dearer inter-region route.
	TransferPerGB float64 `json:"transferPerGB,omitempty"`
}

// CrossingPrice is what a GB of rule r's archives costs to send to every
// region it crosses to (each at its own TransferPerGB, else the config's):
// 0 for a rule delivering in its source region only.
func (c *Config) CrossingPrice(r *Rule) float64 {
	var sum float64
	for _, name := range r.DeliveredRegions() {
		if name == r.SourceRegion {
			continue
		}
		reg, _ := c.Region(name)
		sum += cmp.Or(reg.TransferPerGB, c.Settings.Prices.TransferPerGB)
	}
	return sum
}

// DirectRegions are the regions rule r delivers to whose archives its
// source workers copy there themselves (Region.Direct).
func (c *Config) DirectRegions(r *Rule) []Region {
	var out []Region
	for _, d := range r.Destinations {
		reg, ok := c.Region(d.Region)
		if ok && reg.Direct && reg.Name != r.SourceRegion && !slices.ContainsFunc(out, func(x Region) bool { return x.Name == reg.Name }) {
			out = append(out, reg)
		}
	}
	return out
}

// Compute is where a worker runs.
type Compute string

// Compute choices.
const (
	// ComputeFargate is the ECS service on Fargate Spot, scaled on the
	// queue's backlog (the default).
	ComputeFargate Compute = "fargate"
	// ComputeLambda is a Lambda function fed by an SQS event source
	// mapping: nothing runs, and nothing is billed, while the queue is
	// empty.
	ComputeLambda Compute = "lambda"
	// ComputeHybrid runs both on the same queue: the service for the
	// steady backlog, the function's mapping enabled only while the backlog
	// or the oldest message's age passes settings.lambda's hybrid
	// thresholds. Both may take messages at once: processing is
	// idempotent.
	ComputeHybrid Compute = "hybrid"
)

// Lambda reports whether a Lambda function consumes the worker's queue
// (lambda or hybrid).
func (c Compute) Lambda() bool { return c == ComputeLambda || c == ComputeHybrid }

// Fargate reports whether an ECS service consumes the worker's queue
// (fargate or hybrid).
func (c Compute) Fargate() bool { return c == ComputeFargate || c == ComputeHybrid }

// IsSource reports whether workers read watched buckets in this region.
func (r Region) IsSource() bool { return r.Role == RoleSource || r.Role == RoleBoth }

// IsTarget reports whether a target worker writes destinations in this region.
func (r Region) IsTarget() bool { return r.Role == RoleTarget || r.Role == RoleBoth }

// ConditionalWrites reports whether the region's S3 refuses a PUT whose
// If-None-Match or If-Match does not hold: AWS S3 does; an S3-compatible
// store is taken to only when its config says so.
func (r Region) ConditionalWrites() bool { return r.S3Endpoint == "" || r.S3ConditionalWrites }

// SourceChecksums reports whether the region's store takes the source
// object's own checksum with a write: AWS S3 does, a store at S3Endpoint
// when the region says so.
func (r Region) SourceChecksums() bool { return r.S3Endpoint == "" || r.S3SourceChecksums }

// Prices feed the cost model that decides whether compressing pays.
type Prices struct {
	TransferPerGB float64 `json:"transferPerGB,omitempty"` // inter-region $/GB (AWS's GB: 2^30 bytes)
	VCPUHour      float64 `json:"vcpuHour,omitempty"`      // compute $/vCPU-hour
	// FixedPerMonth is what running xrc on Fargate costs idle, beyond
	// Lambda's (README "Which is cheaper"): xrc savings says at what
	// monthly volume the saving covers it, and its comparison of the two
	// charges it to Fargate.
	FixedPerMonth float64 `json:"fixedPerMonth,omitempty"`
	// FargateGBHour is the memory price of a Fargate (Spot) task, next to
	// VCPUHour, its vCPU price.
	FargateGBHour float64 `json:"fargateGBHour,omitempty"`
	// LambdaGBSecond and LambdaPerMillion are Lambda's duration price
	// ($ per GB-second of configured memory) and request price ($ per
	// million invocations).
	LambdaGBSecond   float64 `json:"lambdaGBSecond,omitempty"`
	LambdaPerMillion float64 `json:"lambdaPerMillion,omitempty"`
	// Request prices: what xrc's requests cost beyond S3 Replication's
	// (the source's reads, the events' SQS requests, each archive's
	// staging, replication, reading and ledger, tombstone reads), which
	// xrc savings charges against the transfer saved. S3's are per
	// thousand requests, SQS's per million, DynamoDB's per million
	// request units.
	S3PutPer1000            float64 `json:"s3PutPer1000,omitempty"`
	S3GetPer1000            float64 `json:"s3GetPer1000,omitempty"`
	SQSPerMillion           float64 `json:"sqsPerMillion,omitempty"`
	DynamoDBWritePerMillion float64 `json:"dynamoDBWritePerMillion,omitempty"`
	DynamoDBReadPerMillion  float64 `json:"dynamoDBReadPerMillion,omitempty"`
	// S3StoragePerGBMonth prices the source region's copy of each archive
	// staged for other regions, which lifecycle keeps a few days.
	S3StoragePerGBMonth float64 `json:"s3StoragePerGBMonth,omitempty"`
}

// Lambda sizes the workers' Lambda functions (package lambda, the CDK
// app).
type Lambda struct {
	// MemoryMB is each function's memory; Lambda gives CPU in proportion
	// (one vCPU at 1,769 MB, six at 10,240).
	MemoryMB int `json:"memoryMB,omitempty"`
	// Timeout ends an invocation; queues consumed by a function hide a
	// received message for at least six times it, as AWS advises.
	Timeout Duration `json:"timeout,omitempty"`
	// ReservedConcurrency caps each function's concurrent invocations
	// (and reserves them).
	ReservedConcurrency int `json:"reservedConcurrency,omitempty"`
	// BatchSize and BatchingWindow are how many source messages one
	// invocation gets at most, and how long the mapping gathers them.
	BatchSize      int      `json:"batchSize,omitempty"`
	BatchingWindow Duration `json:"batchingWindow,omitempty"`
	// TargetBatchSize is how many archives (messages) one target
	// invocation gets at most; they are delivered two at a time.
	TargetBatchSize int `json:"targetBatchSize,omitempty"`
	// Margin is the time kept before an invocation's deadline: no new
	// archive starts later than Margin before it, one in flight then is
	// abandoned (its uploads aborted) and its messages reported failed.
	Margin Duration `json:"margin,omitempty"`
	// HybridBacklog and HybridAge are the thresholds of compute "hybrid":
	// the function's mapping is enabled while more than HybridBacklog
	// messages wait or the oldest is older than HybridAge.
	HybridBacklog int      `json:"hybridBacklog,omitempty"`
	HybridAge     Duration `json:"hybridAge,omitempty"`
}

// Adaptive tunes how the source chooses each object's compression
// (package adaptive).
type Adaptive struct {
	// Disabled compresses every object at its rule's level (Store for
	// content that is already compressed) and learns nothing; statistics
	// are still recorded.
	Disabled bool `json:"disabled,omitempty"`
	MinLevel int  `json:"minLevel,omitempty"` // fastest zstd level tried
	MaxLevel int  `json:"maxLevel,omitempty"` // slowest zstd level tried
	// Ultra allows maxLevel 20-22: little gain for much CPU and memory.
	Ultra        bool     `json:"ultra,omitempty"`
	Explore      float64  `json:"explore,omitempty"`      // exploration probability of a new rule and class
	ExploreFloor float64  `json:"exploreFloor,omitempty"` // exploration never drops below
	Freshness    Duration `json:"freshness,omitempty"`    // oldest-message age past which faster levels win
	HalfLife     Duration `json:"halfLife,omitempty"`     // an observation counts half after this
	Refresh      Duration `json:"refresh,omitempty"`      // how often a task reads the fleet's statistics
	Benchmark    Duration `json:"benchmark,omitempty"`    // CPU time of the start-up benchmark
}

// Worker tunes both workers.
type Worker struct {
	Concurrency       int      `json:"concurrency,omitempty"` // objects fetched or written at once
	DrainTimeout      Duration `json:"drainTimeout,omitempty"`
	VisibilityTimeout Duration `json:"visibilityTimeout,omitempty"`
	MaxReceiveCount   int      `json:"maxReceiveCount,omitempty"` // receives before the DLQ
	// ReceiveWait is how long one long poll waits for a message (SQS's
	// WaitTimeSeconds). A poll in flight at shutdown is waited for, so
	// that the messages SQS hands it are released, not hidden for a
	// visibility timeout: a stop takes up to this long more.
	ReceiveWait Duration `json:"receiveWait,omitempty"`
	MetricsAddr string   `json:"metricsAddr,omitempty"`
}

// Rule replicates the objects of one watched bucket/prefix.
type Rule struct {
	ID           string `json:"id"`
	SourceRegion string `json:"sourceRegion"`
	SourceBucket string `json:"sourceBucket"`
	Prefix       string `json:"prefix,omitempty"`
	Suffix       string `json:"suffix,omitempty"`
	// Ignore holds shell wildcards on the whole key; '*' also matches '/'.
	Ignore []string         `json:"ignore,omitempty"`
	ignore []*regexp.Regexp // compiled Ignore, set by Validate
	// Deletes propagates ObjectRemoved events to the destinations.
	Deletes bool  `json:"deletes,omitempty"`
	Level   int   `json:"level,omitempty"`
	Batch   Batch `json:"batch"`
	// Compute is where the rule's source worker runs.
	Compute      Compute       `json:"compute,omitempty"`
	Destinations []Destination `json:"destinations"`
}

// Batch bounds one archive; whichever limit is reached first closes it.
type Batch struct {
	MaxObjects int      `json:"maxObjects,omitempty"`
	MaxBytes   ByteSize `json:"maxBytes,omitempty"`
	MaxAge     Duration `json:"maxAge,omitempty"`
	// Idle closes a batch no object has joined for this long, nor for ten
	// of its mean gaps between objects (the end of a burst, not a pause in
	// a trickle), when a builder is free to take it. Left out or zero, it
	// is DefaultIdle (MaxAge if shorter); at least BatchTick. Equal to
	// MaxAge, a batch closes on age (or size) only.
	Idle Duration `json:"idle,omitempty"`
}

// Destination is where a rule's objects land.
type Destination struct {
	Region string `json:"region"`
	Bucket string `json:"bucket"`
	// Prefix, when set, replaces the rule's prefix in the destination key.
	Prefix       *string `json:"prefix,omitempty"`
	StorageClass string  `json:"storageClass,omitempty"`
	KMSKeyID     string  `json:"kmsKeyId,omitempty"`
}

// Region returns the named region and whether it is configured.
func (c *Config) Region(name string) (Region, bool) {
	for _, r := range c.Settings.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// Rule returns the rule with the given id.
func (c *Config) Rule(id string) (*Rule, bool) {
	for i := range c.Rules {
		if c.Rules[i].ID == id {
			return &c.Rules[i], true
		}
	}
	return nil, false
}

// SourceQueueName is the SQS queue (in the rule's source region) receiving
// the watched bucket's events. Deployments and workers derive it the same way
// so that neither has to be told.
func (c *Config) SourceQueueName(ruleID string) string {
	return c.Settings.StackName + "-src-" + ruleID
}

// dlqSuffix makes a queue's name its dead-letter queue's.
const dlqSuffix = "-dlq"

// DeadLetterQueueName is the dead-letter queue of the queue named name.
func DeadLetterQueueName(name string) string { return name + dlqSuffix }

// TargetQueueName is the SQS queue in each target region receiving the
// replicated staging bucket's events.
func (c *Config) TargetQueueName() string { return c.Settings.StackName + "-tgt" }

// TableName is the DynamoDB table every region of the deployment has (string
// keys pk and sk, TTL attribute expiresAt): compression statistics in
// source regions, delete tombstones and the ledger of delivered archives in
// target regions.
func (c *Config) TableName() string { return c.Settings.StackName + "-stats" }

// The table's partition keys (pk), by the role that writes them: the CDK
// app confines each role to its own (dynamodb:LeadingKeys), so a source
// cannot forge the tombstones that make a target skip writes.
const (
	// Source workers.
	KeyStats  = "stats#"  // + rule id: hourly statistics (package stats)
	KeyChoice = "choice#" // + rule id: the learner's choices
	KeyFleet  = "fleet"   // the fleet's CPU benchmark figures
	KeyTask   = "task#"   // + task id: a task's lease
	// Target workers.
	KeyTomb    = "tomb#"    // + bucket/key: delete tombstones (package tombstone)
	KeyArchive = "archive#" // + archive id: the ledger (package ledger)
	KeyUploads = "uploads#" // + region: large-member uploads kept for resuming (package uploads)
	// Backfill tasks.
	KeyBackfill = "backfill#" // + rule id: checkpoints and leases (package backfill)
	// Every worker reads it at start (app.CheckTable).
	KeyStartCheck = "xrc#start"
)

// DeliveredTag marks (value "true") a staging archive its own region's
// target delivered while S3 Replication still copied it elsewhere: the
// worker may not delete it yet, and a lifecycle rule on the tag expires
// it after a day, not after the days an undelivered archive waits.
const DeliveredTag = "xrc-delivered"

// SQSInFlight is how many messages a standard SQS queue lets be received
// and not yet deleted at once; past it, a long poll returns nothing.
const SQSInFlight = 120_000

// LambdaFunctions names the Lambda functions a deployment has in region,
// each reserving settings.lambda.reservedConcurrency: one per rule of the
// region whose compute is lambda or hybrid ("source <id>"), and its target
// worker's ("target") when the region's compute is and some rule delivers
// there.
func (c *Config) LambdaFunctions(region string) []string {
	var fns []string
	target := false
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.SourceRegion == region && r.Compute.Lambda() {
			fns = append(fns, "source "+r.ID)
		}
		target = target || slices.Contains(r.DeliveredRegions(), region)
	}
	if reg, ok := c.Region(region); ok && target && reg.IsTarget() && reg.Compute.Lambda() {
		fns = append(fns, "target")
	}
	return fns
}

// TargetArchivesAtOnce is how many archives a target worker (a task, or a
// function's invocation) delivers at once: the messages it holds. The
// deployment's scale-in reads it.
const TargetArchivesAtOnce = 2

// MaxKeyLen is S3's limit on the length of an object key, in bytes.
const MaxKeyLen = 1024

// DestinationKey rewrites a source key for d: the rule's prefix is replaced
// by d.Prefix when one is set. The result may not be a usable key; Routes
// checks it.
func (r *Rule) DestinationKey(d Destination, key string) string {
	if d.Prefix == nil {
		return key
	}
	return *d.Prefix + strings.TrimPrefix(key, r.Prefix)
}

// Regions counts the regions r delivers to: every one of them unpacks its
// archives, and those other than its source region are the ones its bytes
// cross to, each paying inter-region transfer for them. A destination in
// the source region is read from the local staging bucket: no transfer.
func (r *Rule) Regions() (delivered, crossed int) {
	for _, region := range r.DeliveredRegions() {
		delivered++
		if region != r.SourceRegion {
			crossed++
		}
	}
	return delivered, crossed
}

// SourceChecksumsChecked reports whether every region r delivers to has a
// store that checks each object's source checksum as it is written
// (Region.SourceChecksums); if one does not, the source checks them all.
func (c *Config) SourceChecksumsChecked(r *Rule) bool {
	for _, name := range r.DeliveredRegions() {
		if reg, ok := c.Region(name); !ok || !reg.SourceChecksums() {
			return false
		}
	}
	return true
}

// DeliveredRegions lists the regions r has destinations in, once each, in
// document order.
func (r *Rule) DeliveredRegions() []string {
	var out []string
	for _, d := range r.Destinations {
		if !slices.Contains(out, d.Region) {
			out = append(out, d.Region)
		}
	}
	return out
}

// Route is where one source object goes: a destination of its rule with the
// key resolved.
type Route struct {
	Region       string
	Bucket       string
	Key          string
	StorageClass string // override; empty keeps the object's class
	KMSKeyID     string
}

// Routes returns where the rule sends key, one Route per destination in
// document order. This is the single definition of a rule's mapping: the
// source proposes it in the manifest and the target, trusting only its own
// config, writes nothing else. It fails, naming the destination, when a
// rewritten key is empty or longer than S3 allows; the object then cannot
// be replicated, but other objects can.
func (r *Rule) Routes(key string) ([]Route, error) {
	routes := make([]Route, 0, len(r.Destinations))
	for i, d := range r.Destinations {
		k := r.DestinationKey(d, key)
		switch {
		case k == "":
			return nil, fmt.Errorf("rule %s: destinations[%d] (%s): key %q maps to an empty key", r.ID, i, d.Bucket, key)
		case len(k) > MaxKeyLen:
			return nil, fmt.Errorf("rule %s: destinations[%d] (%s): key %q maps to a key of %d bytes, more than S3's %d", r.ID, i, d.Bucket, key, len(k), MaxKeyLen)
		}
		rt := Route{Region: d.Region, Bucket: d.Bucket, Key: k, StorageClass: d.StorageClass, KMSKeyID: d.KMSKeyID}
		// Validate rejects duplicates; a rule built in code must not make
		// the target hold one object twice either.
		if !slices.Contains(routes, rt) {
			routes = append(routes, rt)
		}
	}
	return routes, nil
}

func (c *Config) applyDefaults() {
	s := &c.Settings
	if s.StagingExpiryDays == 0 {
		s.StagingExpiryDays = DefaultStagingExpiry
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
	if s.Prices.TransferPerGB == 0 {
		s.Prices.TransferPerGB = DefaultTransferPerGB
	}
	if s.Prices.VCPUHour == 0 {
		s.Prices.VCPUHour = DefaultVCPUHour
	}
	if s.Prices.FixedPerMonth == 0 {
		s.Prices.FixedPerMonth = DefaultFixedPerMonth
	}
	if s.Prices.FargateGBHour == 0 {
		s.Prices.FargateGBHour = DefaultFargateGBHour
	}
	if s.Prices.LambdaGBSecond == 0 {
		s.Prices.LambdaGBSecond = DefaultLambdaGBSecond
	}
	if s.Prices.LambdaPerMillion == 0 {
		s.Prices.LambdaPerMillion = DefaultLambdaPerMillion
	}
	for _, d := range []struct {
		v   *float64
		def float64
	}{{&s.Prices.S3PutPer1000, DefaultS3PutPer1000}, {&s.Prices.S3GetPer1000, DefaultS3GetPer1000}, {&s.Prices.SQSPerMillion, DefaultSQSPerMillion},
		{&s.Prices.DynamoDBWritePerMillion, DefaultDynamoDBWritePerMillion}, {&s.Prices.DynamoDBReadPerMillion, DefaultDynamoDBReadPerMillion},
		{&s.Prices.S3StoragePerGBMonth, DefaultS3StoragePerGBMonth}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	l := &s.Lambda
	for _, d := range []struct {
		v   *int
		def int
	}{{&l.MemoryMB, DefaultLambdaMemoryMB}, {&l.ReservedConcurrency, DefaultLambdaConcurrency}, {&l.BatchSize, DefaultLambdaBatchSize},
		{&l.TargetBatchSize, DefaultLambdaTargetBatchSize}, {&l.HybridBacklog, DefaultHybridBacklog}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if l.Margin == 0 && l.Timeout != 0 {
		// At most half a short timeout, as validation asks: 30 s of a
		// 45 s timeout refused a margin nobody had set.
		l.Margin = Duration(min(DefaultLambdaMargin, l.Timeout.D()/2))
	}
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{{&l.Timeout, DefaultLambdaTimeout}, {&l.BatchingWindow, DefaultLambdaBatchingWindow}, {&l.Margin, DefaultLambdaMargin}, {&l.HybridAge, DefaultHybridAge}} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
	for i := range s.Regions {
		if r := &s.Regions[i]; r.IsTarget() && r.Compute == "" {
			r.Compute = ComputeFargate
		}
	}
	a := &s.Adaptive
	if a.MinLevel == 0 {
		a.MinLevel = DefaultMinLevel
	}
	if a.MaxLevel == 0 {
		a.MaxLevel = DefaultMaxLevel
	}
	if a.Explore == 0 {
		a.Explore = DefaultExplore
	}
	if a.ExploreFloor == 0 {
		// Never above explore: an explore of 0.01 alone is no error
		// about a floor nobody set.
		a.ExploreFloor = min(DefaultExploreFloor, a.Explore)
	}
	if a.Freshness == 0 {
		a.Freshness = Duration(DefaultFreshness)
	}
	if a.HalfLife == 0 {
		a.HalfLife = Duration(DefaultHalfLife)
	}
	if a.Refresh == 0 {
		a.Refresh = Duration(DefaultRefresh)
	}
	if a.Benchmark == 0 {
		a.Benchmark = Duration(DefaultBenchmark)
	}
	w := &s.Worker
	if w.Concurrency == 0 {
		w.Concurrency = DefaultConcurrency
	}
	if w.DrainTimeout == 0 {
		w.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if w.VisibilityTimeout == 0 {
		w.VisibilityTimeout = Duration(DefaultVisibility)
	}
	if w.MaxReceiveCount == 0 {
		w.MaxReceiveCount = DefaultMaxReceiveCount
	}
	if w.ReceiveWait == 0 {
		w.ReceiveWait = Duration(DefaultReceiveWait)
	}
	if w.MetricsAddr == "" {
		w.MetricsAddr = DefaultMetricsAddr
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.Level == 0 {
			r.Level = DefaultLevel
		}
		if r.Batch.MaxObjects == 0 {
			r.Batch.MaxObjects = DefaultMaxObjects
		}
		if r.Batch.MaxBytes == 0 {
			r.Batch.MaxBytes = DefaultMaxBytes
		}
		if r.Batch.MaxAge == 0 {
			r.Batch.MaxAge = Duration(DefaultMaxAge)
		}
		if r.Batch.Idle == 0 {
			r.Batch.Idle = Duration(min(DefaultIdle, r.Batch.MaxAge.D()))
		}
		if r.Compute == "" {
			r.Compute = ComputeFargate
		}
	}
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "90s" or "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	// "-0s" parses as zero, the default, but says something else.
	if err != nil || v < 0 || strings.HasPrefix(s, "-") {
		return fmt.Errorf("invalid duration %q: want a positive Go duration such as \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size in bytes, written as a number or a string with a binary
// unit ("256MiB").
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}

// UnmarshalJSON reads 268435456 or "256MiB".
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		if n < 0 {
			return fmt.Errorf("size must not be negative")
		}
		*b = ByteSize(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want a byte count or a string such as \"256MiB\"")
	}
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			// Digits, then at most one space: what the schema's pattern
			// takes (ParseInt alone would take a sign).
			num = strings.TrimSuffix(num, " ")
			if num == "" || strings.Trim(num, "0123456789") != "" {
				break
			}
			v, err := strconv.ParseInt(num, 10, 64)
			if err != nil || v > (1<<62)/u.mult {
				break
			}
			*b = ByteSize(v * u.mult)
			return nil
		}
	}
	return fmt.Errorf("invalid size %q: want a number with KiB, MiB, GiB or TiB", s)
}

// MarshalJSON writes b as a plain byte count.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(int64(b)) }

// Matches reports whether the rule covers key in bucket: the prefix and suffix
// match and no ignore pattern does. It is safe for concurrent use: patterns
// are compiled when the document is loaded (Validate), never here.
func (r *Rule) Matches(bucket, key string) bool {
	if bucket != r.SourceBucket || !strings.HasPrefix(key, r.Prefix) || !strings.HasSuffix(key, r.Suffix) {
		return false
	}
	ignore := r.ignore
	if len(ignore) != len(r.Ignore) {
		// A Rule built in code without Validate: compile a private copy
		// rather than write to a Rule other goroutines may be reading.
		ignore, _ = compileIgnore(r.Ignore)
	}
	for _, re := range ignore {
		if re.MatchString(key) {
			return false
		}
	}
	return true
}

// compileIgnore compiles patterns; an invalid pattern matches nothing and
// its error is returned at its index for Validate to report.
func compileIgnore(patterns []string) ([]*regexp.Regexp, []error) {
	res := make([]*regexp.Regexp, len(patterns))
	errs := make([]error, len(patterns))
	for i, pat := range patterns {
		re, err := compileGlob(pat)
		if err != nil {
			errs[i] = err
			re = regexp.MustCompile(`^$.`) // matches nothing
		}
		res[i] = re
	}
	return res, errs
}

// RulesFor returns the rules of region covering bucket/key, in document order.
func (c *Config) RulesFor(region, bucket, key string) []*Rule {
	var out []*Rule
	for i := range c.Rules {
		if r := &c.Rules[i]; r.SourceRegion == region && r.Matches(bucket, key) {
			out = append(out, r)
		}
	}
	return out
}
