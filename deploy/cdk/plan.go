package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/xrc-dev/xrc/internal/config"
)

// ArchiveSuffix ends every staging key: <ruleId>/<yyyy>/<mm>/<dd>/<id>.tar.zst.
const archiveSuffix = ".tar.zst"

// plan is what the config asks of each region, worked out in plain Go so
// that the rules (which prefixes replicate where, which stack waits for
// which) are testable without synthesizing anything.
type plan struct {
	Config  *config.Config
	Regions []*regionPlan // in settings.regions order, only regions with work
}

// regionPlan is one region's stack.
type regionPlan struct {
	Region config.Region
	// SourceRules watch buckets in this region; each gets a queue and a
	// service.
	SourceRules []*config.Rule
	// Replication lists the staging-bucket replication rules, priorities
	// already assigned.
	Replication []replication
	// TargetRules have at least one destination in this region: their
	// archives arrive in this region's staging bucket under <ruleId>/.
	TargetRules []*config.Rule
	// Destinations are this region's destination buckets, with the key
	// prefixes the target worker writes and what it may do there.
	Destinations []destination
	// After lists the regions whose stacks must exist first: S3 refuses a
	// replication rule whose destination bucket does not exist yet.
	After []string
	// Watched groups SourceRules by watched bucket, in first-seen order.
	Watched []watchedBucket
	// Direct are the regions SourceRules deliver to directly
	// (config.Region.Direct): the source workers copy archives there with
	// the region's own credentials; they have no stack here.
	Direct []config.Region
}

// replication is one S3 Replication rule of a source staging bucket.
type replication struct {
	Rule     *config.Rule
	To       config.Region
	Priority int
}

// ID names the replication rule in the bucket configuration.
func (r replication) ID() string { return r.Rule.ID + "-to-" + r.To.Name }

// Prefix is the staging prefix the rule carries. It always ends with '/', so
// rule "logs" never carries rule "logs-eu"'s archives.
func (r replication) Prefix() string { return stagingPrefix(r.Rule.ID) }

func stagingPrefix(ruleID string) string { return ruleID + "/" }

// destination is one destination bucket of a target region.
type destination struct {
	Bucket string
	// Prefixes are the key prefixes written, one per rule writing here
	// ("" means the whole bucket).
	Prefixes []string
	// DeletePrefixes are the prefixes of rules that propagate deletes.
	DeletePrefixes []string
	// KMSKeys are the keys named in the config for writes here.
	KMSKeys []string
}

// watchedBucket is a source bucket and the rules watching it.
type watchedBucket struct {
	Name  string
	Rules []*config.Rule
}

// IsSource reports whether the region's stack holds source workers.
func (p *regionPlan) IsSource() bool { return len(p.SourceRules) > 0 }

// IsTarget reports whether the region's stack holds a target worker.
func (p *regionPlan) IsTarget() bool { return len(p.TargetRules) > 0 }

// NeedsCluster reports whether the region's stack runs ECS tasks, and so
// needs a cluster and a VPC: always in a source region (its services and
// one-off tasks), in a target region only when its target worker runs on
// Fargate (compute fargate or hybrid).
func (p *regionPlan) NeedsCluster() bool {
	return p.IsSource() || (p.IsTarget() && p.Region.Compute.Fargate())
}

// Region returns the plan of the named region, or nil.
func (p *plan) Region(name string) *regionPlan {
	for _, r := range p.Regions {
		if r.Region.Name == name {
			return r
		}
	}
	return nil
}

// newPlan works out the regions' stacks from a validated config and reports
// every reason the config cannot be deployed on AWS by this app.
func newPlan(cfg *config.Config) (*plan, error) {
	var errs []error
	for i, r := range cfg.Settings.Regions {
		if r.S3Endpoint != "" && !r.Direct {
			errs = append(errs, fmt.Errorf("settings.regions[%d].s3Endpoint: region %s points at an S3-compatible store (%s), which S3 Replication cannot reach: make it direct; the CDK app deploys to AWS only", i, r.Name, r.S3Endpoint))
		}
		switch {
		case r.S3Credentials != "" && !r.Direct:
			// The app deploys this region's workers, whose task role
			// is what they reach its S3 with; no grant would let them
			// read credentials of its own.
			errs = append(errs, fmt.Errorf("settings.regions[%d].s3Credentials: region %s is deployed by this app, whose workers use their task role there: remove s3Credentials, or make the region direct", i, r.Name))
		case strings.HasPrefix(r.S3Credentials, "env:"):
			// Nothing this app deploys sets those variables.
			errs = append(errs, fmt.Errorf("settings.regions[%d].s3Credentials: %s: the source tasks and functions this app deploys have no such variables: keep the credentials in a SecureString parameter (ssm:///name)", i, r.S3Credentials))
		}
	}
	if _, err := healthURL(cfg.Settings.Worker.MetricsAddr); err != nil {
		errs = append(errs, fmt.Errorf("settings.worker.metricsAddr: %w", err))
	}
	p := &plan{Config: cfg}
	byName := map[string]*regionPlan{}
	for _, r := range cfg.Settings.Regions {
		rp := &regionPlan{Region: r}
		byName[r.Name] = rp
	}
	for i := range cfg.Rules {
		rule := &cfg.Rules[i]
		src := byName[rule.SourceRegion]
		src.SourceRules = append(src.SourceRules, rule)
		w := watched(src, rule.SourceBucket)
		w.Rules = append(w.Rules, rule)
		seen := map[string]bool{}
		for _, d := range rule.Destinations {
			tgt := byName[d.Region]
			if tgt.Region.Direct {
				// Its archives come from the source workers, and its
				// stack (another partition's, a store's) is not this
				// app's to deploy: only the source's grants know of it.
				if !slices.ContainsFunc(src.Direct, func(r config.Region) bool { return r.Name == tgt.Region.Name }) {
					src.Direct = append(src.Direct, tgt.Region)
				}
				continue
			}
			if !seen[d.Region] {
				seen[d.Region] = true
				tgt.TargetRules = append(tgt.TargetRules, rule)
				if d.Region != rule.SourceRegion {
					// Same-region destinations need no replication: the
					// staging bucket is the target staging bucket.
					src.Replication = append(src.Replication, replication{Rule: rule, To: tgt.Region, Priority: len(src.Replication) + 1})
					if !slices.Contains(src.After, d.Region) {
						src.After = append(src.After, d.Region)
					}
				}
			}
			dst := tgt.destination(d.Bucket)
			prefix := rule.Prefix
			if d.Prefix != nil {
				prefix = *d.Prefix
			}
			dst.Prefixes = addPrefix(dst.Prefixes, prefix)
			if rule.Deletes {
				dst.DeletePrefixes = addPrefix(dst.DeletePrefixes, prefix)
			}
			if d.KMSKeyID != "" && !slices.Contains(dst.KMSKeys, d.KMSKeyID) {
				dst.KMSKeys = append(dst.KMSKeys, d.KMSKeyID)
			}
		}
	}
	for _, r := range cfg.Settings.Regions {
		rp := byName[r.Name]
		if r.Direct {
			continue // deployed apart (see above); config refuses rules watching it
		}
		if rp.IsSource() || rp.IsTarget() {
			p.Regions = append(p.Regions, rp)
		}
	}
	if cycle := p.cycle(); cycle != nil {
		errs = append(errs, fmt.Errorf("regions %s replicate to each other: each staging bucket must exist before the other's replication rule, "+
			"which one deployment cannot order; deploy the two directions as two configs with different settings.stackName (and staging buckets)",
			strings.Join(cycle, " -> ")))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func watched(rp *regionPlan, bucket string) *watchedBucket {
	for i := range rp.Watched {
		if rp.Watched[i].Name == bucket {
			return &rp.Watched[i]
		}
	}
	rp.Watched = append(rp.Watched, watchedBucket{Name: bucket})
	return &rp.Watched[len(rp.Watched)-1]
}

func (p *regionPlan) destination(bucket string) *destination {
	for i := range p.Destinations {
		if p.Destinations[i].Bucket == bucket {
			return &p.Destinations[i]
		}
	}
	p.Destinations = append(p.Destinations, destination{Bucket: bucket})
	return &p.Destinations[len(p.Destinations)-1]
}

// addPrefix adds prefix to a set of prefixes, keeping only the shortest of
// prefixes that contain each other ("" contains everything).
func addPrefix(set []string, prefix string) []string {
	for _, p := range set {
		if strings.HasPrefix(prefix, p) {
			return set
		}
	}
	out := set[:0:0]
	for _, p := range set {
		if !strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return append(out, prefix)
}

// cycle returns regions whose stacks would wait for each other, or nil.
func (p *plan) cycle() []string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var found []string
	var visit func(name string, path []string) bool
	visit = func(name string, path []string) bool {
		state[name] = onPath
		path = append(path, name)
		if rp := p.Region(name); rp != nil {
			for _, next := range rp.After {
				switch state[next] {
				case onPath:
					found = append(path[slices.Index(path, next):], next)
					return true
				case unseen:
					if visit(next, path) {
						return true
					}
				}
			}
		}
		state[name] = done
		return false
	}
	for _, rp := range p.Regions {
		if state[rp.Region.Name] == unseen && visit(rp.Region.Name, nil) {
			return found
		}
	}
	return nil
}

// healthURL is the URL the container health check probes, from the
// worker's metrics address. The probe runs inside the task, so only
// addresses reachable on loopback will do, and the port must be fixed.
func healthURL(metricsAddr string) (string, error) {
	host, port, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %w", metricsAddr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("%q has no fixed port; the ECS health check needs one (the default is %q)", metricsAddr, config.DefaultMetricsAddr)
	}
	switch host {
	case "", "0.0.0.0", "::", "127.0.0.1", "localhost":
	default:
		return "", fmt.Errorf("%q listens on %s only; the in-container health check probes 127.0.0.1, so use %q", metricsAddr, host, ":"+port)
	}
	n, _ := strconv.Atoi(port)
	return fmt.Sprintf("http://127.0.0.1:%d/healthz", n), nil
}
