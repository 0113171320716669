package config

// This file is every semantic check of the document, in JSON-path order,
// so an operator's question "what does validate check?" has one answer.

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// Error is one problem in the document, at a JSON path such as
// rules[0].destinations[1].bucket.
type Error struct {
	Path string
	Msg  string
}

func (e Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found; it is what Parse and Validate return.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es *Errors) add(path, format string, args ...any) {
	*es = append(*es, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Bounds Validate enforces. configs/xrc.schema.json states the same
// numbers; TestSchemaMatchesGo keeps the two in step, so each is defined
// here once and checked there.
const (
	minConcurrency, maxConcurrency         = 1, 256
	minMaxReceiveCount, maxMaxReceiveCount = 1, 1000
	// A source task holds two batches of a rule (one packed while the
	// next fills, source.New), and all of them must fit in what its queue
	// lets be in flight: beyond, the second batch never fills and every
	// other task of the rule receives nothing. The archive format would
	// allow manifest.MaxObjects.
	minMaxObjects, maxMaxObjects = 1, min(manifest.MaxObjects, SQSInFlight/2)
	minMaxBytes                  = 1 << 20
	// One region with role both replicates within itself.
	minRegions = 1
	// A price is a cost: one below zero would be a gain.
	minPrice = 0
	// A replicated archive must not outlive its event, which SQS keeps 14
	// days at most.
	minStagingExpiryDays, maxStagingExpiryDays = 1, 13

	minLambdaMemoryMB, maxLambdaMemoryMB = 128, 10240
	minLambdaTimeout, maxLambdaTimeout   = 2 * minLambdaMargin, 15 * time.Minute
	maxLambdaConcurrency                 = 1000
	// An SQS event source mapping's maximum concurrency is at least 2:
	// with 1 reserved, the mapping would be throttled, and each throttled
	// batch counts a receive towards the DLQ unprocessed.
	minLambdaConcurrency     = 2
	maxLambdaBatchSize       = 10000 // an SQS event source mapping's maximum
	maxLambdaBatchingWindow  = 300 * time.Second
	maxLambdaTargetBatchSize = 10 // without a batching window, SQS's maximum
	// After the cut a function lets a staging upload's complete in flight
	// finish (awsapi.CompleteGrace, 5s) then aborts it if it failed
	// (awsapi's AbortTimeout, 10s), or aborts a direct region's copy (10s)
	// and sends its relay messages (5s); it releases what it did not
	// finish (5s) and answers; an invocation killed first answers nothing, and its whole
	// batch, done work included, comes back after the visibility timeout.
	minLambdaMargin = 20 * time.Second
	minHybridAge    = time.Minute // CloudWatch's SQS metrics come each minute
)

var (
	stackNameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	ruleIDRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	regionRe    = regexp.MustCompile(`^([a-z]{2}(-gov|-iso[a-z]*)?|eusc-[a-z]{2})-[a-z]+-[0-9]{1,2}$`)
	bucketRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// checkBucket adds a problem at path unless name is given and a bucket's.
func checkBucket(errs *Errors, path, name string) {
	if name == "" {
		errs.add(path, "required")
	} else if msg := BucketNameError(name); msg != "" {
		errs.add(path, "invalid bucket name %q: %s", name, msg)
	}
}

// BucketNameError says why name is not a valid general-purpose S3 bucket
// name, or returns "" when it is.
func BucketNameError(name string) string {
	switch {
	case !bucketRe.MatchString(name):
		return "must be 3-63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
	case strings.Contains(name, ".."), strings.Contains(name, ".-"), strings.Contains(name, "-."):
		return "must not contain '..', '.-' or '-.'"
	case net.ParseIP(name) != nil:
		return "must not look like an IP address"
	case strings.HasPrefix(name, "xn--"), strings.HasPrefix(name, "sthree-"), strings.HasPrefix(name, "amzn-s3-demo-"):
		return "uses a prefix S3 reserves"
	case strings.HasSuffix(name, "-s3alias"), strings.HasSuffix(name, "--ol-s3"), strings.HasSuffix(name, ".mrap"), strings.HasSuffix(name, "--x-s3"):
		return "uses a suffix S3 reserves"
	}
	return ""
}

// putStorageClasses are the classes a general-purpose bucket takes on
// PUT. The SDK's list has more (EXPRESS_ONEZONE, OUTPOSTS, SNOW, FSX_*,
// AWS_BACKUP_*): classes of other kinds of bucket or of other services,
// which a destination refuses on every PUT, so every object would go to
// the DLQ.
var putStorageClasses = []s3types.StorageClass{
	s3types.StorageClassStandard, s3types.StorageClassReducedRedundancy, s3types.StorageClassStandardIa,
	s3types.StorageClassOnezoneIa, s3types.StorageClassIntelligentTiering, s3types.StorageClassGlacier,
	s3types.StorageClassDeepArchive, s3types.StorageClassGlacierIr,
}

func validStorageClass(c string) bool {
	return slices.Contains(putStorageClasses, s3types.StorageClass(c))
}

// Validate checks the document's meaning (Parse already checked its shape).
// It reports every problem, each with its JSON path.
func (c *Config) Validate() error {
	var errs Errors
	if c.Version == 0 {
		errs.add("version", "required: %d", Version)
	} else if c.Version != Version {
		errs.add("version", "must be %d, got %d", Version, c.Version)
	}
	s := c.Settings
	if !stackNameRe.MatchString(s.StackName) {
		errs.add("settings.stackName", "must be 1-32 lowercase letters, digits or '-', starting with a letter, got %q", s.StackName)
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs.add("settings.logLevel", "must be debug, info, warn or error, got %q", s.LogLevel)
	}
	if s.StagingExpiryDays < minStagingExpiryDays || s.StagingExpiryDays > maxStagingExpiryDays {
		errs.add("settings.stagingExpiryDays", "must be between %d and %d (its events wait in SQS, 14 days at most)", minStagingExpiryDays, maxStagingExpiryDays)
	}
	validatePrices(&errs, s.Prices)
	validateAdaptive(&errs, s.Adaptive)
	validateLambda(&errs, s.Lambda)
	w := s.Worker
	if w.Concurrency < minConcurrency || w.Concurrency > maxConcurrency {
		errs.add("settings.worker.concurrency", "must be between %d and %d", minConcurrency, maxConcurrency)
	}
	if w.MaxReceiveCount < minMaxReceiveCount || w.MaxReceiveCount > maxMaxReceiveCount {
		errs.add("settings.worker.maxReceiveCount", "must be between %d and %d", minMaxReceiveCount, maxMaxReceiveCount)
	}
	if d := w.DrainTimeout.D(); d > MaxDrainTimeout {
		errs.add("settings.worker.drainTimeout", "at most %v: the rest of ECS's %v stop goes to aborting cut uploads, the last statistics and releasing held messages", MaxDrainTimeout, StopTimeout)
	} else if d < MinDrainTimeout {
		errs.add("settings.worker.drainTimeout", "at least %v (a stop gives work in flight this long to finish), got %v", MinDrainTimeout, d)
	}
	// SQS and the CDK take whole seconds: a fraction would be cut off by
	// the workers and refused at synth without a path.
	if v := w.VisibilityTimeout.D(); v < 30*time.Second || v > 12*time.Hour || v%time.Second != 0 {
		errs.add("settings.worker.visibilityTimeout", "must be whole seconds between 30s and 12h (SQS's limit), got %v", v)
	}
	if n, v := w.MaxReceiveCount, c.longestVisibility(); n > 0 && time.Duration(n)*v > MaxReceivingTime {
		errs.add("settings.worker.maxReceiveCount", "%d receives of %v each make %v, more than %v: a message whose worker dies holding it (out of memory, a function cut at its timeout) comes back only when that visibility lapses, and SQS keeps a message %v from when it was first sent, in its DLQ too, so it would reach the DLQ with too little time left to redrive it, or expire, lost, before; lower maxReceiveCount, settings.worker.visibilityTimeout or settings.lambda.timeout (a function's queue hides a message six times it and the batching window)",
			n, v, time.Duration(n)*v, MaxReceivingTime, MessageRetention)
	}
	if v := w.ReceiveWait.D(); v < time.Second || v > 20*time.Second || v%time.Second != 0 {
		errs.add("settings.worker.receiveWait", "must be whole seconds between 1s and 20s (SQS's WaitTimeSeconds)")
	}
	// Every worker listens on it at start: a bad one is a crash loop.
	if _, port, err := net.SplitHostPort(w.MetricsAddr); err != nil {
		errs.add("settings.worker.metricsAddr", "must be host:port or :port (default %q), got %q", DefaultMetricsAddr, w.MetricsAddr)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs.add("settings.worker.metricsAddr", "port must be a number up to 65535, got %q", port)
	}

	if len(s.Regions) < minRegions {
		errs.add("settings.regions", "required: at least one region (a source and a target, or one region with role both)")
	}
	seenRegion := map[string]bool{}
	seenStaging := map[string]bool{}
	var haveSource, haveTarget bool
	for i, r := range s.Regions {
		p := fmt.Sprintf("settings.regions[%d]", i)
		if !regionRe.MatchString(r.Name) {
			errs.add(p+".name", "invalid region name %q", r.Name)
		}
		if seenRegion[r.Name] {
			errs.add(p+".name", "region %q listed twice", r.Name)
		}
		seenRegion[r.Name] = true
		switch r.Role {
		case RoleSource, RoleTarget, RoleBoth:
		default:
			errs.add(p+".role", "must be source, target or both, got %q", r.Role)
		}
		haveSource = haveSource || r.IsSource()
		haveTarget = haveTarget || r.IsTarget()
		checkBucket(&errs, p+".stagingBucket", r.StagingBucket)
		if seenStaging[r.StagingBucket] {
			errs.add(p+".stagingBucket", "staging bucket %q is used by two regions", r.StagingBucket)
		}
		seenStaging[r.StagingBucket] = true
		switch {
		case r.Compute != "" && !r.IsTarget():
			errs.add(p+".compute", "region %q has no target worker (role %s): a source worker runs where its rule's compute says", r.Name, r.Role)
		case r.Compute != "":
			checkCompute(&errs, p+".compute", r.Compute)
		}
		if r.Direct && !r.IsTarget() {
			errs.add(p+".direct", "region %q has no target worker (role %s): only a target region receives archives", r.Name, r.Role)
		}
		if r.TransferPerGB < 0 || math.IsNaN(r.TransferPerGB) || math.IsInf(r.TransferPerGB, 0) {
			errs.add(p+".transferPerGB", "must be a finite number, not negative, got %v", r.TransferPerGB)
		}
		if msg := credentialsError(r.S3Credentials); msg != "" {
			// Not echoed: a value that is neither form may be the
			// credentials themselves, pasted, and this error reaches
			// logs and CI output.
			errs.add(p+".s3Credentials", "%s (got %d characters, not shown)", msg, len(r.S3Credentials))
		}
		if r.S3Endpoint != "" {
			if u, err := url.Parse(r.S3Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs.add(p+".s3Endpoint", "must be an http(s) URL, got %q", r.S3Endpoint)
			}
		}
	}
	if len(s.Regions) > 0 && !haveSource {
		errs.add("settings.regions", "no region has role source or both")
	}
	if len(s.Regions) > 0 && !haveTarget {
		errs.add("settings.regions", "no region has role target or both")
	}

	if len(c.Rules) == 0 {
		errs.add("rules", "at least one rule is required")
	}
	seenRule := map[string]bool{}
	for i := range c.Rules {
		c.validateRule(&errs, fmt.Sprintf("rules[%d]", i), &c.Rules[i], seenRule)
	}
	for i, r := range c.Rules {
		// A rule's dead-letter queue is its queue's name and "-dlq": rule
		// "x-dlq"'s queue would be rule "x"'s dead letters where both
		// watch one region (CloudFormation refuses the second queue; a
		// hand-made deployment would have the one worker read the
		// other's dead letters).
		base, ok := strings.CutSuffix(r.ID, dlqSuffix)
		if !ok {
			continue
		}
		for _, o := range c.Rules {
			if o.ID == base && o.SourceRegion == r.SourceRegion {
				errs.add(fmt.Sprintf("rules[%d].id", i), "rule id %q: its queue, %q, would be rule %q's dead-letter queue in %s", r.ID, c.SourceQueueName(r.ID), base, r.SourceRegion)
			}
		}
	}
	c.checkBucketRegions(&errs)
	c.checkOverlaps(&errs)
	c.checkFanIn(&errs)
	c.checkLoops(&errs)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// validatePrices refuses a price the cost model cannot use: a negative one
// turns a cost into a gain (compressing harder would "earn" CPU), and NaN
// or an infinity poisons every comparison it enters. JSON carries neither
// of the last two, but a Config built in code can.
func validatePrices(errs *Errors, p Prices) {
	for _, f := range []struct {
		name string
		v    float64
	}{{"transferPerGB", p.TransferPerGB}, {"vcpuHour", p.VCPUHour}, {"fixedPerMonth", p.FixedPerMonth},
		{"fargateGBHour", p.FargateGBHour}, {"lambdaGBSecond", p.LambdaGBSecond}, {"lambdaPerMillion", p.LambdaPerMillion},
		{"s3PutPer1000", p.S3PutPer1000}, {"s3GetPer1000", p.S3GetPer1000}, {"sqsPerMillion", p.SQSPerMillion},
		{"dynamoDBWritePerMillion", p.DynamoDBWritePerMillion}, {"dynamoDBReadPerMillion", p.DynamoDBReadPerMillion},
		{"s3StoragePerGBMonth", p.S3StoragePerGBMonth}} {
		if f.v < minPrice || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			errs.add("settings.prices."+f.name, "must be a finite number, not negative, got %v", f.v)
		}
	}
}

// checkCompute reports a compute that is none of the three.
func checkCompute(errs *Errors, path string, c Compute) {
	switch c {
	case ComputeFargate, ComputeLambda, ComputeHybrid:
	default:
		errs.add(path, "must be %s, %s or %s, got %q", ComputeFargate, ComputeLambda, ComputeHybrid, c)
	}
}

func validateLambda(errs *Errors, l Lambda) {
	const p = "settings.lambda"
	if l.MemoryMB < minLambdaMemoryMB || l.MemoryMB > maxLambdaMemoryMB {
		errs.add(p+".memoryMB", "must be between %d and %d (Lambda's limits), got %d", minLambdaMemoryMB, maxLambdaMemoryMB, l.MemoryMB)
	}
	// Lambda takes whole seconds, and the CDK refuses a fraction at synth
	// without saying which field.
	if t := l.Timeout.D(); t < minLambdaTimeout || t > maxLambdaTimeout || t%time.Second != 0 {
		errs.add(p+".timeout", "must be whole seconds between %v and %v (Lambda's maximum), got %v", minLambdaTimeout, maxLambdaTimeout, t)
	}
	if l.ReservedConcurrency < minLambdaConcurrency || l.ReservedConcurrency > maxLambdaConcurrency {
		errs.add(p+".reservedConcurrency", "must be between %d (an SQS event source mapping's least maximum concurrency) and %d, got %d", minLambdaConcurrency, maxLambdaConcurrency, l.ReservedConcurrency)
	}
	if l.BatchSize < 1 || l.BatchSize > maxLambdaBatchSize {
		errs.add(p+".batchSize", "must be between 1 and %d (an SQS event source mapping's maximum), got %d", maxLambdaBatchSize, l.BatchSize)
	}
	if w := l.BatchingWindow.D(); w > maxLambdaBatchingWindow || w%time.Second != 0 {
		errs.add(p+".batchingWindow", "must be whole seconds up to %v, got %v", maxLambdaBatchingWindow, w)
	}
	if l.TargetBatchSize < 1 || l.TargetBatchSize > maxLambdaTargetBatchSize {
		errs.add(p+".targetBatchSize", "must be between 1 and %d (archives per target invocation), got %d", maxLambdaTargetBatchSize, l.TargetBatchSize)
	}
	// Any duration: only the function cuts it from its deadline.
	if m := l.Margin.D(); m < minLambdaMargin || m > l.Timeout.D()/2 {
		errs.add(p+".margin", "must be between %v and half of timeout (%v), got %v: it must cover aborting uploads (up to 10s), releasing messages (up to 5s) and answering", minLambdaMargin, l.Timeout.D()/2, m)
	}
	if l.HybridBacklog < 1 {
		errs.add(p+".hybridBacklog", "must be at least 1, got %d", l.HybridBacklog)
	}
	if a := l.HybridAge.D(); a < minHybridAge || a%time.Minute != 0 {
		errs.add(p+".hybridAge", "must be whole minutes, at least %v (CloudWatch's SQS metrics come each minute), got %v", minHybridAge, a)
	}
}

func validateAdaptive(errs *Errors, a Adaptive) {
	const p = "settings.adaptive"
	for _, l := range []struct {
		name  string
		level int
	}{{"minLevel", a.MinLevel}, {"maxLevel", a.MaxLevel}} {
		if err := manifest.CheckLevel(l.level); err != nil {
			errs.add(p+"."+l.name, "%v", err)
		}
	}
	if a.MinLevel > a.MaxLevel {
		errs.add(p+".minLevel", "%d is above maxLevel %d", a.MinLevel, a.MaxLevel)
	}
	if a.MaxLevel > DefaultMaxLevel && !a.Ultra {
		errs.add(p+".maxLevel", "levels above %d need \"ultra\": true (they cost much CPU and memory for little)", DefaultMaxLevel)
	}
	if a.Explore < 0 || a.Explore > 1 {
		errs.add(p+".explore", "must be a probability between 0 and 1")
	}
	if a.ExploreFloor < 0 || a.ExploreFloor > a.Explore {
		errs.add(p+".exploreFloor", "must be between 0 and explore (%v)", a.Explore)
	}
	if a.HalfLife.D() < time.Hour {
		errs.add(p+".halfLife", "must be at least 1h: the fleet's statistics are kept by the hour")
	}
	if a.Refresh.D() < time.Second {
		errs.add(p+".refresh", "must be at least 1s")
	}
	if a.Benchmark.D() > 10*time.Second {
		errs.add(p+".benchmark", "must be at most 10s: tasks start slower by as much")
	}
}

func (c *Config) validateRule(errs *Errors, p string, r *Rule, seen map[string]bool) {
	if !ruleIDRe.MatchString(r.ID) {
		errs.add(p+".id", "must be 1-32 lowercase letters, digits or '-', got %q", r.ID)
	} else if len(c.SourceQueueName(r.ID)) > 80 {
		errs.add(p+".id", "queue name %q would exceed SQS's 80 characters", c.SourceQueueName(r.ID))
	}
	if seen[r.ID] {
		errs.add(p+".id", "rule id %q used twice", r.ID)
	}
	seen[r.ID] = true
	if reg, ok := c.Region(r.SourceRegion); !ok {
		errs.add(p+".sourceRegion", "unknown region %q: not in settings.regions", r.SourceRegion)
	} else if !reg.IsSource() {
		errs.add(p+".sourceRegion", "region %q does not have role source or both", r.SourceRegion)
	} else if reg.Direct {
		// A direct region is another deployment's (another partition, a
		// store): its own rules belong in that deployment's config.
		errs.add(p+".sourceRegion", "region %q is direct: a rule watching a bucket there belongs to that region's own deployment and config", r.SourceRegion)
	}
	checkBucket(errs, p+".sourceBucket", r.SourceBucket)
	if reg, ok := c.stagingOf(r.SourceBucket); ok {
		errs.add(p+".sourceBucket", "%q is %s's staging bucket: the rule would archive xrc's own archives", r.SourceBucket, reg)
	}
	// S3 takes a filter value of at most 1,024 characters, URL-encoded
	// (a non-ASCII letter triples).
	if f := events.FilterPrefix(r.Prefix); len(f) > maxFilter {
		errs.add(p+".prefix", "URL-encoded for S3's notification filter, %q is %d characters, more than %d", r.Prefix, len(f), maxFilter)
	}
	if f := events.FilterSuffix(r.Suffix); len(f) > maxFilter {
		errs.add(p+".suffix", "URL-encoded for S3's notification filter, %q is %d characters, more than %d", r.Suffix, len(f), maxFilter)
	}
	if strings.HasPrefix(r.Prefix, "/") {
		errs.add(p+".prefix", "S3 keys do not start with '/': %q", r.Prefix)
	}
	var ignoreErrs []error
	r.ignore, ignoreErrs = compileIgnore(r.Ignore)
	for j, err := range ignoreErrs {
		if err != nil {
			errs.add(fmt.Sprintf("%s.ignore[%d]", p, j), "invalid wildcard %q: %v", r.Ignore[j], err)
		}
	}
	if err := manifest.CheckLevel(r.Level); err != nil {
		errs.add(p+".level", "%v", err)
	} else if r.Level > DefaultMaxLevel && !c.Settings.Adaptive.Ultra {
		// Whether adaptive or not: disabled, every object is compressed
		// at this level; enabled, the learner would quietly start from
		// maxLevel instead, which is not what the rule says either.
		errs.add(p+".level", "levels above %d need settings.adaptive.ultra: true (they cost much CPU and memory for little)", DefaultMaxLevel)
	}
	if r.Batch.MaxObjects < minMaxObjects || r.Batch.MaxObjects > maxMaxObjects {
		errs.add(p+".batch.maxObjects", "must be between %d and %d", minMaxObjects, maxMaxObjects)
	}
	if held, v := 2*r.Batch.MaxObjects, c.Settings.Worker.VisibilityTimeout.D(); r.Compute.Fargate() && heartbeatTime(held) >= v {
		// A beat longer than the hold it extends: messages lapse to other
		// tasks all the time, each a receive towards the DLQ.
		errs.add(p+".batch.maxObjects", "%d: a source task holds up to %d messages of rule %s, and extending them takes about %v, not under settings.worker.visibilityTimeout (%v): they would keep lapsing to other tasks; lower maxObjects to %d or raise the visibility timeout to %v",
			r.Batch.MaxObjects, held, r.ID, heartbeatTime(held).Round(time.Second), v, maxObjectsFor(v), (3*heartbeatTime(held)).Round(time.Minute)+time.Minute)
	}
	if r.Batch.MaxBytes < minMaxBytes {
		errs.add(p+".batch.maxBytes", "must be at least 1MiB")
	}
	if a := r.Batch.MaxAge.D(); a.Seconds() < 1 || a > c.Settings.Worker.VisibilityTimeout.D() {
		errs.add(p+".batch.maxAge", "must be between 1s and settings.worker.visibilityTimeout (%v, default %v), got %v",
			c.Settings.Worker.VisibilityTimeout.D(), DefaultVisibility, a)
	}
	if i := r.Batch.Idle.D(); i < BatchTick || i > r.Batch.MaxAge.D() {
		errs.add(p+".batch.idle", "must be between %v and batch.maxAge (%v), got %v", BatchTick, r.Batch.MaxAge.D(), i)
	}
	checkCompute(errs, p+".compute", r.Compute)
	if len(r.Destinations) == 0 {
		errs.add(p+".destinations", "at least one destination is required")
	}
	seenDest := map[string]bool{}
	for j, d := range r.Destinations {
		dp := fmt.Sprintf("%s.destinations[%d]", p, j)
		if reg, ok := c.Region(d.Region); !ok {
			errs.add(dp+".region", "unknown region %q: not in settings.regions", d.Region)
		} else if !reg.IsTarget() {
			errs.add(dp+".region", "region %q does not have role target or both", d.Region)
		} else if src, ok := c.Region(r.SourceRegion); ok && reg.Direct && reg.S3Credentials == "" && reg.S3Endpoint == "" && partition(src.Name) != partition(reg.Name) {
			errs.add(dp+".region", "region %q is in partition %s and the rule's source region %q in %s: the source's own credentials cannot write there; give the region s3Credentials",
				d.Region, partition(reg.Name), src.Name, partition(src.Name))
		} else if ok && !reg.Direct && src.S3Endpoint == "" && reg.S3Endpoint == "" && partition(src.Name) != partition(reg.Name) {
			// Archives reach a target region by S3 Replication, which
			// stays within one partition (and one set of credentials),
			// unless the source copies them there itself (direct).
			errs.add(dp+".region", "region %q is in partition %s and the rule's source region %q in %s: S3 Replication, which carries the archives, does not cross partitions (make the region direct, with its s3Credentials)",
				d.Region, partition(reg.Name), src.Name, partition(src.Name))
		}
		checkBucket(errs, dp+".bucket", d.Bucket)
		if reg, ok := c.stagingOf(d.Bucket); ok {
			errs.add(dp+".bucket", "%q is %s's staging bucket: its target worker would take every delivered object for an archive", d.Bucket, reg)
		}
		if d.StorageClass != "" && !validStorageClass(d.StorageClass) {
			errs.add(dp+".storageClass", "unknown storage class %q: a general-purpose bucket takes %v", d.StorageClass, putStorageClasses)
		}
		if d.Prefix != nil && strings.HasPrefix(*d.Prefix, "/") {
			errs.add(dp+".prefix", "S3 keys do not start with '/': %q", *d.Prefix)
		}
		if d.Prefix != nil && len(*d.Prefix) > MaxKeyLen {
			// Every key maps past S3's limit, and an object whose
			// routes fail goes to the DLQ for all its destinations.
			errs.add(dp+".prefix", "is %d bytes, more than S3's %d for a whole key: no object could be written there", len(*d.Prefix), MaxKeyLen)
		}
		// arn:partition:kms:region:account:key/... or alias/...
		if f := strings.Split(d.KMSKeyID, ":"); len(f) >= 6 && f[0] == "arn" && f[2] == "kms" && f[3] != d.Region {
			errs.add(dp+".kmsKeyId", "key %q is in %s: S3 takes only a key of the bucket's region, %s", d.KMSKeyID, f[3], d.Region)
		}
		// Every write to the destination would be refused, each object
		// dead-lettered. An S3-compatible store names its keys its own way.
		if reg, ok := c.Region(d.Region); ok && reg.S3Endpoint == "" && d.KMSKeyID != "" && !kmsKeyRe.MatchString(d.KMSKeyID) {
			errs.add(dp+".kmsKeyId", "%q is no KMS key: want a key id (1234abcd-12ab-34cd-56ef-1234567890ab, mrk-...), alias/name, or a key or alias ARN", d.KMSKeyID)
		}
		if d.Region == r.SourceRegion && d.Bucket == r.SourceBucket && (d.Prefix == nil || *d.Prefix == r.Prefix) {
			errs.add(dp, "destination is the rule's own source (%s/%s)", d.Bucket, r.Prefix)
		}
		id := d.Region + "/" + d.Bucket
		if seenDest[id] {
			errs.add(dp, "destination %s listed twice: a rule writes to a bucket once, whatever the prefixes", id)
		}
		seenDest[id] = true
	}
}

// kmsKeyRe matches what S3 takes as an SSE-KMS key: a key id (a
// multi-Region one too), an alias name, or the ARN of either.
var kmsKeyRe = func() *regexp.Regexp {
	id := `([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|mrk-[0-9a-f]{32})`
	arn := `arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:`
	return regexp.MustCompile("^(" + id + "|" + arn + "key/" + id + "|(" + arn + ")?alias/[a-zA-Z0-9/_-]+)$")
}()

// stagingOf returns the region whose staging bucket is bucket. Bucket
// names are global, so the region a rule names does not matter.
func (c *Config) stagingOf(bucket string) (region string, ok bool) {
	for _, r := range c.Settings.Regions {
		if r.StagingBucket == bucket {
			return r.Name, true
		}
	}
	return "", false
}

// partition returns the AWS partition of a region name: bucket names are
// unique within one, whatever the region.
func partition(region string) string {
	cc, rest, _ := strings.Cut(region, "-")
	kind, _, _ := strings.Cut(rest, "-")
	switch {
	case cc == "cn":
		return "aws-cn"
	case cc == "eusc": // the AWS European Sovereign Cloud: eusc-de-east-1
		return "aws-eusc"
	case kind == "gov":
		return "aws-" + cc + "-gov"
	case strings.HasPrefix(kind, "iso"):
		// us-iso-east-1: aws-iso; us-isob-east-1: aws-iso-b;
		// eu-isoe-west-1: aws-iso-e.
		if v := strings.TrimPrefix(kind, "iso"); v != "" {
			return "aws-iso-" + v
		}
		return "aws-iso"
	}
	return "aws"
}

// checkBucketRegions reports a bucket named in two regions of one store:
// one AWS partition, whose bucket names are the partition's, or one
// S3-compatible store (regions with the same s3Endpoint). Both are the one
// bucket, in whichever region it is: the checks that key on region and
// bucket (a destination equal to its source, overlaps, fan-in, loops,
// duplicates) would miss that two rules meet there, or that a rule writes
// its own source (a store with one endpoint per account named as two
// regions: every write an event, written again, for ever). Regions with
// endpoints of their own are stores of their own (the local stack runs a
// store per region).
func (c *Config) checkBucketRegions(errs *Errors) {
	type use struct{ region, path string }
	first := map[string]use{} // store + "/" + bucket
	see := func(region, bucket, path string) {
		r, ok := c.Region(region)
		if !ok || bucket == "" {
			return
		}
		store, named := storeOf(r)
		k := store + "/" + bucket
		u, ok := first[k]
		switch {
		case !ok:
			first[k] = use{region, path}
		case u.region != region:
			errs.add(path, "bucket %q is named in %s here and in %s at %s: bucket names are global in %s, so it is one bucket, in one region",
				bucket, region, u.region, u.path, named)
		}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		see(r.SourceRegion, r.SourceBucket, fmt.Sprintf("rules[%d].sourceBucket", i))
		for j, d := range r.Destinations {
			see(d.Region, d.Bucket, fmt.Sprintf("rules[%d].destinations[%d].bucket", i, j))
		}
	}
}

// storeOf names the store r's buckets are in: its AWS partition, or its
// s3Endpoint's scheme, host and port (case and default ports aside).
func storeOf(r Region) (key, named string) {
	if r.S3Endpoint == "" {
		return "partition " + partition(r.Name), "partition " + partition(r.Name)
	}
	u, err := url.Parse(r.S3Endpoint)
	if err != nil || u.Host == "" {
		return "endpoint " + r.S3Endpoint, "the store at " + r.S3Endpoint
	}
	scheme, port := strings.ToLower(u.Scheme), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	k := "endpoint " + scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	return k, "the store at " + r.S3Endpoint
}

// maxFilter is the longest notification filter value S3 takes.
const maxFilter = 1024

// checkOverlaps reports rules on one bucket whose filters can match the same
// key: S3 refuses notification configurations that send one event to two
// queues, so one of the rules would never see its objects. The filters
// compared are also those deployed (events.FilterPrefix), which a '~' or
// '*' cuts short: home/~alice/ and home/~bob/ both deploy as home/.
func (c *Config) checkOverlaps(errs *Errors) {
	for i := range c.Rules {
		for j := i + 1; j < len(c.Rules); j++ {
			a, b := &c.Rules[i], &c.Rules[j]
			if a.SourceRegion != b.SourceRegion || a.SourceBucket != b.SourceBucket {
				continue
			}
			switch {
			case overlaps(a.Prefix, b.Prefix) && suffixesMeet(a.Suffix, b.Suffix):
				errs.add(fmt.Sprintf("rules[%d]", j), "filters overlap rule %q on bucket %s (prefix %q/%q, suffix %q/%q): S3 sends each event to one queue only",
					a.ID, a.SourceBucket, a.Prefix, b.Prefix, a.Suffix, b.Suffix)
			case overlaps(events.FilterPrefix(a.Prefix), events.FilterPrefix(b.Prefix)) &&
				suffixesMeet(events.FilterSuffix(a.Suffix), events.FilterSuffix(b.Suffix)):
				errs.add(fmt.Sprintf("rules[%d]", j), "S3's notification filters would overlap rule %q's on bucket %s (prefix %q/%q, suffix %q/%q as deployed: "+
					"URL-encoded, cut at '~' or '*'): S3 sends each event to one queue only",
					a.ID, a.SourceBucket, events.FilterPrefix(a.Prefix), events.FilterPrefix(b.Prefix), events.FilterSuffix(a.Suffix), events.FilterSuffix(b.Suffix))
			}
		}
	}
}

// written returns the key prefix d receives from r.
func written(r *Rule, d Destination) string {
	if d.Prefix != nil {
		return *d.Prefix
	}
	return r.Prefix
}

// checkFanIn reports two rules writing to overlapping keys of one bucket.
// The target orders writes of a key by S3 event sequencers, and sequencers
// of two source buckets (or keys) are not comparable, so a key both rules
// could write would end with whichever archive came last. A destination
// key ends as its source key does, so rules whose suffixes cannot both end
// one key (.csv, .json) never write the same one.
func (c *Config) checkFanIn(errs *Errors) {
	for i := range c.Rules {
		for j := i + 1; j < len(c.Rules); j++ {
			a, b := &c.Rules[i], &c.Rules[j]
			for _, da := range a.Destinations {
				for k, db := range b.Destinations {
					if da.Region == db.Region && da.Bucket == db.Bucket && overlaps(written(a, da), written(b, db)) && suffixesMeet(a.Suffix, b.Suffix) {
						errs.add(fmt.Sprintf("rules[%d].destinations[%d]", j, k),
							"writes keys under %q of %s/%s, which rule %q also writes (under %q): writes from two rules cannot be ordered",
							written(b, db), db.Region, db.Bucket, a.ID, written(a, da))
					}
				}
			}
		}
	}
}

// Lambda's concurrency quota, per account and region: AWS's default, and
// what must stay unreserved (a function reserving more is refused).
const (
	defaultAccountConcurrency = 1000
	minUnreservedConcurrency  = 100
)

// Warnings reports what is valid but may fail: prefix rewrites that turn a
// source key into an empty destination key or one over S3's 1,024 bytes
// (such objects are never replicated; their events go to the dead-letter
// queue), Lambda functions reserving more concurrency in a region than
// an account's default quota lets be reserved (the deployment fails unless
// the quota was raised), and source functions too small for libzstd's
// memory at the levels they may use.
// minAdvisedReceiveCount is the least maxReceiveCount that rides out a
// short failure (AWS's advice for an SQS event source of Lambda).
const minAdvisedReceiveCount = 5

func (c *Config) Warnings() Errors {
	var ws Errors
	lambda := false
	for _, reg := range c.Settings.Regions {
		lambda = lambda || len(c.LambdaFunctions(reg.Name)) > 0
	}
	if n := c.Settings.Worker.MaxReceiveCount; lambda && n < minAdvisedReceiveCount {
		ws.add("settings.worker.maxReceiveCount", "%d with workers on Lambda: a message goes to the DLQ after %d failed receives, seconds of a throttle or of IAM settling after a deploy; AWS advises at least 5 for queues Lambda reads (the default is %d)",
			n, n, DefaultMaxReceiveCount)
	}
	for i, reg := range c.Settings.Regions {
		if u, err := url.Parse(reg.S3Endpoint); err == nil && u.Scheme == "http" && !loopback(u.Hostname()) {
			ws.add(fmt.Sprintf("settings.regions[%d].s3Endpoint", i), "%s is plain HTTP: region %s's archives, objects and credentials cross the network unencrypted, and nothing stops them being changed on the way; use https",
				reg.S3Endpoint, reg.Name)
		}
		if n := c.mostDestinationsIn(reg.Name); reg.IsTarget() && reg.Compute.Lambda() && c.Settings.Lambda.MemoryMB < n*minTargetMemoryMB {
			ws.add("settings.lambda.memoryMB", "%d MB for %s's target function: half its Go memory limit (85%% of it) is less than the %d MiB of part buffers an object of 64 MiB or more (to 140 GiB) needs to the %d destination(s) a rule has there, so every such object goes to the DLQ; give it %d MB or more",
				c.Settings.Lambda.MemoryMB, reg.Name, n*80, n, n*minTargetMemoryMB)
		}
		fns := c.LambdaFunctions(reg.Name)
		if reserved := len(fns) * c.Settings.Lambda.ReservedConcurrency; reserved > defaultAccountConcurrency-minUnreservedConcurrency {
			ws.add("settings.lambda.reservedConcurrency", "%s has %d functions (%s) reserving %d each, %d in all: more than the %d an account's default quota of %d lets be reserved (%d stay unreserved); raise the quota in %s first or reserve less",
				reg.Name, len(fns), strings.Join(fns, ", "), c.Settings.Lambda.ReservedConcurrency, reserved,
				defaultAccountConcurrency-minUnreservedConcurrency, defaultAccountConcurrency, minUnreservedConcurrency, reg.Name)
		}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if held, v := 2*r.Batch.MaxObjects, c.Settings.Worker.VisibilityTimeout.D(); r.Compute.Fargate() && heartbeatTime(held) > v/3 && heartbeatTime(held) < v {
			ws.add(fmt.Sprintf("rules[%d].batch.maxObjects", i), "%d: a source task holds up to %d messages of rule %s, whose visibility it extends every third of settings.worker.visibilityTimeout (%v); at some 50 ms a call of ten, eight at once, that takes about %v, so some would lapse and come back to other tasks; lower maxObjects to %d or raise the visibility timeout to %v",
				r.Batch.MaxObjects, held, r.ID, v, heartbeatTime(held).Round(time.Second), maxObjectsFor(v), (3*heartbeatTime(held)).Round(time.Minute)+time.Minute)
		}
		if level := c.highestLevel(r); r.Compute.Lambda() && level >= 19 && c.Settings.Lambda.MemoryMB < minCompressorMemoryMB {
			ws.add("settings.lambda.memoryMB", "%d MB for rule %s's source function, which compresses up to level %d: libzstd holds about 90 MiB a compressor at levels 19 and up (140 at 20-22), outside GOMEMLIMIT (85%% of the function's memory), so the function may run out of memory; give it %d MB or more, or lower the level (settings.adaptive.maxLevel, or the rule's level)",
				c.Settings.Lambda.MemoryMB, r.ID, level, minCompressorMemoryMB)
		}
		for j, d := range r.Destinations {
			if d.Prefix == nil {
				continue
			}
			p := fmt.Sprintf("rules[%d].destinations[%d].prefix", i, j)
			if *d.Prefix == "" {
				ws.add(p, "an object whose key is exactly the rule prefix %q maps to an empty key and cannot be replicated", r.Prefix)
			}
			if grow := len(*d.Prefix) - len(r.Prefix); grow > 0 {
				ws.add(p, "is %d bytes longer than the rule prefix %q: source keys over %d bytes map to keys longer than S3's %d and cannot be replicated",
					grow, r.Prefix, MaxKeyLen-grow, MaxKeyLen)
			}
		}
	}
	return ws
}

// heartbeatTime is about how long a source task's heartbeat takes to
// extend the visibility of held messages: ten to a ChangeMessageVisibility
// call, eight calls at once (queue.BatchCalls), some 50 ms a call.
func heartbeatTime(held int) time.Duration {
	calls := (held + 9) / 10
	return time.Duration((calls+7)/8) * 50 * time.Millisecond
}

// maxObjectsFor is the most objects a rule's batches may hold whose
// messages a heartbeat extends within a third of visibility.
func maxObjectsFor(visibility time.Duration) int {
	return int(visibility/3/(50*time.Millisecond)) * 8 * 10 / 2
}

// MessageRetention is how long the deployment's queues keep a message:
// SQS's longest. An event must outlive what it names (a replicated archive
// waits stagingExpiryDays, at most 13).
const MessageRetention = 14 * 24 * time.Hour

// MaxReceivingTime bounds a message's receives (maxReceiveCount times its
// visibility): a standard queue's DLQ keeps a message's first enqueue
// time, so one that spent its retention failing would reach the DLQ about
// to expire. Half leaves a week to see the DLQ's alarm and redrive it.
const MaxReceivingTime = MessageRetention / 2

// LambdaVisibility is the visibility timeout of a queue a function
// consumes: at least six times the function's timeout, as AWS advises for
// SQS event sources (a batch may be retried while the last is throttled),
// plus the mapping's batching window, which holds a received message
// before the function starts (a source's; targets' mappings have none).
func (c *Config) LambdaVisibility(source bool) time.Duration {
	var window time.Duration
	if source {
		window = c.Settings.Lambda.BatchingWindow.D()
	}
	return max(c.Settings.Worker.VisibilityTimeout.D(), 6*c.Settings.Lambda.Timeout.D()+window)
}

// longestVisibility is the longest visibility timeout of the deployment's
// queues: a function's source queue's when any worker runs on Lambda.
func (c *Config) longestVisibility() time.Duration {
	for _, reg := range c.Settings.Regions {
		if len(c.LambdaFunctions(reg.Name)) > 0 {
			return c.LambdaVisibility(true)
		}
	}
	return c.Settings.Worker.VisibilityTimeout.D()
}

// minTargetMemoryMB is the least memory a target function is given
// without a warning, per destination an object has in its region: half of
// GOMEMLIMIT (85% of it, the CDK app's) holds a large object's part
// buffers to one destination, five of 16 MiB (deliver.partsAtOnce+1
// parts), for each destination written at once.
const minTargetMemoryMB = 189

// mostDestinationsIn is the most destinations in region one rule has (at
// least 1): a target writes an object to all of them at once.
func (c *Config) mostDestinationsIn(region string) int {
	most := 1
	for i := range c.Rules {
		n := 0
		for _, d := range c.Rules[i].Destinations {
			if d.Region == region {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// minCompressorMemoryMB is the least memory a source function compressing
// at level 19 or more is given without a warning: two compressors' C
// memory beside what GOMEMLIMIT lets the Go heap take.
const minCompressorMemoryMB = 1024

// GoMemLimitMiB is GOMEMLIMIT, in MiB, for a task or function of memMB
// whose compressors hold compressorsMiB (SourceCompressorsMiB; 0 for one
// that compresses nothing), as the CDK app sets it: the Go heap may use
// 85% of the memory, leaving room for stacks, buffers outside the heap and
// the runtime, and less where libzstd's compressors (outside the Go heap)
// would not fit beside it with 128 MiB to spare (ultra levels; small
// tasks); at least 64 MiB, half of which holds a source's smallest staging
// upload (four parts of 8 MiB).
func GoMemLimitMiB(memMB, compressorsMiB int) int {
	limit := memMB * 85 / 100
	if compressorsMiB > 0 {
		limit = max(min(limit, memMB-compressorsMiB-128), min(limit, 64))
	}
	return limit
}

// CompressorMiB is about the C memory one libzstd compressor holds at
// level, with the window xrc caps it at (libzstd.Writer): outside the Go
// heap, and so outside GOMEMLIMIT. Measured: 3 MiB at level 3, 89 at 19,
// 105 at 20, 137 at 21 and 22; the levels between, rounded up.
func CompressorMiB(level int) int {
	switch {
	case level <= 9:
		return 16
	case level <= 15:
		return 48
	case level <= 19:
		return 90
	case level == 20:
		return 106
	}
	return 138
}

// SourceCompressorsMiB is the C memory rule r's source worker may hold in
// compressors: one for each of its two archive builders, at the highest
// level it may use. A pool may briefly make a third; the headroom GOMEMLIMIT
// leaves besides covers it.
func (c *Config) SourceCompressorsMiB(r *Rule) int { return 2 * CompressorMiB(c.highestLevel(r)) }

// highestLevel is the highest zstd level r's source may compress at.
func (c *Config) highestLevel(r *Rule) int {
	if c.Settings.Adaptive.Disabled {
		return r.Level
	}
	return max(r.Level, c.Settings.Adaptive.MaxLevel)
}

// checkLoops reports rules whose destinations feed, directly or through other
// rules, back into their own watched prefix: such objects would be copied
// forever.
func (c *Config) checkLoops(errs *Errors) {
	// feeds[i] lists the rules that watch keys rule i writes.
	feeds := make([][]int, len(c.Rules))
	for i := range c.Rules {
		a := &c.Rules[i]
		for _, d := range a.Destinations {
			for j := range c.Rules {
				b := &c.Rules[j]
				if b.SourceRegion == d.Region && b.SourceBucket == d.Bucket && overlaps(written(a, d), b.Prefix) && !slices.Contains(feeds[i], j) {
					feeds[i] = append(feeds[i], j)
				}
			}
		}
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(c.Rules))
	reported := map[int]bool{}
	var visit func(i int, stack []int)
	visit = func(i int, stack []int) {
		state[i] = onPath
		stack = append(stack, i)
		for _, j := range feeds[i] {
			switch state[j] {
			case onPath:
				cycle := stack[slices.Index(stack, j):]
				if reported[j] {
					continue
				}
				ids := make([]string, 0, len(cycle)+1)
				for _, k := range cycle {
					ids = append(ids, c.Rules[k].ID)
					reported[k] = true
				}
				ids = append(ids, c.Rules[j].ID)
				errs.add(fmt.Sprintf("rules[%d]", j), "replication loop: %s", strings.Join(ids, " -> "))
			case unseen:
				visit(j, stack)
			}
		}
		state[i] = done
	}
	for i := range c.Rules {
		if state[i] == unseen {
			visit(i, nil)
		}
	}
}

// overlaps reports whether some key can start with both prefixes.
func overlaps(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

// suffixesMeet reports whether one key can end with both suffixes.
func suffixesMeet(a, b string) bool { return strings.HasSuffix(a, b) || strings.HasSuffix(b, a) }

// credentialsError says what is wrong with a region's s3Credentials ("":
// nothing, or none given).
func credentialsError(spec string) string {
	switch {
	case spec == "":
		return ""
	case strings.HasPrefix(spec, "ssm:///") && len(spec) > len("ssm:///"):
		return ""
	case strings.HasPrefix(spec, "env:") && envPrefixRe.MatchString(strings.TrimPrefix(spec, "env:")):
		return ""
	}
	return "must be ssm:///<parameter name> or env:<PREFIX> (letters, digits and _)"
}

var envPrefixRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// loopback reports whether host names this machine (a store beside the
// worker, a test's).
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
