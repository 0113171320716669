// Command cdk is xrc's AWS CDK app: from the same JSON document the workers
// read, it synthesizes one CloudFormation stack per region, <stack>-<region>,
// holding that region's staging bucket, queues, workers, alarms and
// dashboard. Run it through the CDK CLI (deploy/cdk/cdk synth|deploy ...);
// see README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if _, err := build(app); err != nil {
		fmt.Fprintln(os.Stderr, "xrc cdk:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

// deployment is everything the stacks are built from.
type deployment struct {
	Config     *config.Config
	ConfigPath string
	// Document is the config as deployed into SSM: the file, compacted.
	Document string
	Options  options
	Plan     *plan
	// RepoRoot is the Docker build context of the worker images.
	RepoRoot string
	Stacks   map[string]awscdk.Stack // by region
}

// build reads the config and the options named by app's context and adds a
// stack per region to app.
func build(app awscdk.App) (*deployment, error) {
	node := app.Node()
	get := func(key string) any { return node.TryGetContext(jsii.String(key)) }
	if unknown := unknownContext(node.GetAllContext(nil)); len(unknown) > 0 {
		return nil, fmt.Errorf("unknown context keys %s (known: %s)", strings.Join(unknown, ", "), strings.Join(contextKeys, ", "))
	}
	path, _ := get("config").(string)
	if path == "" {
		path = os.Getenv("XRC_CONFIG")
	}
	if path == "" {
		// No default: a destroy or deploy that forgot it would act on the
		// example's stacks, named as a deployment that kept its stackName.
		return nil, fmt.Errorf("no config: pass -c config=PATH (e.g. -c config=configs/prod.json) or set XRC_CONFIG, to every synth, deploy, diff, destroy and bootstrap")
	}
	if strings.HasPrefix(path, config.SSMScheme) {
		return nil, fmt.Errorf("config %s: the CDK app reads a file (it creates the SSM parameter from it); pass -c config=PATH", path)
	}
	opts, err := parseOptions(get)
	if err != nil {
		return nil, err
	}
	d, err := newDeployment(path, opts)
	if err != nil {
		return nil, err
	}
	d.addStacks(app)
	// What xrc config validate warns of, in the synth's output: a config
	// deployed without that check is seen here (on the first stack: an
	// annotation on the app itself is not reported).
	if len(d.Plan.Regions) > 0 {
		first := d.Stacks[d.Plan.Regions[0].Region.Name]
		for _, w := range d.Config.Warnings() {
			awscdk.Annotations_Of(first).AddWarningV2(jsii.String("xrc:config"), jsii.String(w.Error()))
		}
	}
	return d, nil
}

// newDeployment loads and checks everything the stacks need before any
// construct exists; config problems come out together, as config.Parse and
// newPlan list them.
func newDeployment(path string, opts options) (*deployment, error) {
	raw, err := config.Read(context.Background(), path, nil)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	doc, err := config.Compacted(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc) > config.MaxParameter {
		return nil, fmt.Errorf("config %s: %d bytes compacted; an SSM parameter holds at most %d", path, len(doc), config.MaxParameter)
	}
	p, err := newPlan(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	for region := range opts.VPCs {
		if _, ok := cfg.Region(region); !ok {
			return nil, fmt.Errorf("context existingVpcs: region %s is not in the config", region)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(path)
	return &deployment{Config: cfg, ConfigPath: abs, Document: string(doc), Options: opts, Plan: p, RepoRoot: root, Stacks: map[string]awscdk.Stack{}}, nil
}

// addStacks adds one stack per region with work, ordered so that every
// staging bucket exists before a replication rule names it.
func (d *deployment) addStacks(app awscdk.App) {
	awscdk.Tags_Of(app).Add(jsii.String("xrc:stack"), jsii.String(d.Config.Settings.StackName), nil)
	for _, rp := range d.Plan.Regions {
		d.Stacks[rp.Region.Name] = newRegionStack(app, d, rp)
	}
	for _, rp := range d.Plan.Regions {
		for _, after := range rp.After {
			d.Stacks[rp.Region.Name].AddDependency(d.Stacks[after], jsii.String("its staging bucket replicates to "+after))
		}
	}
	addNag(app)
}

// StackName is the CloudFormation stack of a region.
func (d *deployment) StackName(region string) string {
	return d.Config.Settings.StackName + "-" + region
}

// repoRoot finds the repository root (the worker images' build context)
// from the working directory, which the CLI sets to deploy/cdk.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "Dockerfile.source")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no repository root (a directory with go.mod and Dockerfile.source) above %s", dir)
		}
	}
}

// ourContextKey matches the shape of this app's context keys (camelCase);
// CDK's own carry ':', '@' or '-'.
var ourContextKey = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// unknownContext returns the context keys shaped like ours that are not:
// most likely typos, which would otherwise be ignored silently.
func unknownContext(all any) []string {
	m, _ := all.(map[string]any)
	var out []string
	for k := range m {
		if !ourContextKey.MatchString(k) || slices.Contains(contextKeys, k) {
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
