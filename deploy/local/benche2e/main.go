//go:build linux

// Command benche2e is `make bench-e2e`: the whole xrc pipeline against rclone
// over an emulated inter-region link, on one machine.
//
// The target "region" runs in a Linux network namespace joined to the host
// by a veth pair shaped with `tc qdisc ... tbf rate 100mbit burst 32kbit
// latency 400ms` on both ends. On the host: a source MinIO, the xrc source
// worker, rclone, a bridge (MinIO webhooks -> SQS, built from
// deploy/local/bridge) and the normal local stack's SQS and DynamoDB. In the
// namespace: the target MinIO, the xrc target worker and the verifier. What
// crosses the link: MinIO replication of the staging bucket (xrc), rclone's
// copy, and the small control traffic of the target worker (SQS, DynamoDB)
// and the bridge (a HEAD per replica). The source MinIO replicates through a
// replica tap on the host (tap.go), which reports each replica as it lands.
//
// For each corpus (a mixed one, then incompressible bytes alone) it runs xrc,
// rclone with its defaults and rclone --transfers 16, each from the first
// upload into the source bucket to the last object verified (SHA-256) in
// the destination, and reports wall time, bytes across the link (veth
// counters), objects/s, worker CPU and peak RSS, the xrc / rclone ratios and
// whether the goals are met. It writes the figures as JSON under
// ~/.cache/xrc/bench-e2e/ and prints the path.
//
// Knobs (environment): SIZE (bytes of each corpus, default 400MiB: "64MiB"
// for a quick run), TIMEOUT (whole benchmark, default 45m), STALL (no
// object verified for this long fails a run, default 3m), CORPORA (default "mixed,random"),
// SYSTEMS (default "xrc,rclone,rclone-t16"), KEEP=1 (keep the state dir).
//
// It needs root (network namespaces, tc), the local stack's SQS and
// DynamoDB (eval "$(deploy/local/stack env)"), and the MinIO and mc binaries
// the stack caches; it builds rclone v1.76.0 once into the same cache.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		os.Exit(verifyMain(os.Args[2:]))
	}
	// SIGPIPE too: a reader of the output gone (| head) stops the
	// benchmark with its clean-up rather than killing it without one.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	code := 0
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e failed:", err)
		code = 1
	}
	stop()
	os.Exit(code)
}

// settings are the knobs, from the environment.
type settings struct {
	Size    int64    `json:"sizeBytes"`
	Timeout duration `json:"timeout"`
	Stall   duration `json:"stall"`
	Corpora []string `json:"corpora"`
	Systems []string `json:"systems"`
	Keep    bool     `json:"-"`
}

const defaultSize = 400 << 20

var allSystems = []string{sysXRC, sysRclone, sysRclone16}

const (
	sysXRC      = "xrc"
	sysRclone   = "rclone"
	sysRclone16 = "rclone-t16"
)

func loadSettings() (settings, error) {
	s := settings{
		Size: defaultSize, Timeout: duration(45 * time.Minute), Stall: duration(3 * time.Minute),
		Corpora: []string{"mixed", "random"}, Systems: allSystems,
		Keep: os.Getenv("KEEP") == "1",
	}
	var errs []error
	if v := os.Getenv("SIZE"); v != "" {
		n, err := parseBytes(v)
		if err != nil || n < 1<<20 {
			errs = append(errs, fmt.Errorf("SIZE=%q: want a size of at least 1MiB such as 64MiB or 400MiB", v))
		}
		s.Size = n
	}
	for _, d := range []struct {
		name string
		dst  *duration
	}{{"TIMEOUT", &s.Timeout}, {"STALL", &s.Stall}} {
		v := os.Getenv(d.name)
		if v == "" {
			continue
		}
		x, err := time.ParseDuration(v)
		if err != nil || x <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 30m", d.name, v))
			continue
		}
		*d.dst = duration(x)
	}
	if v := os.Getenv("CORPORA"); v != "" {
		s.Corpora = nil
		for _, c := range strings.Split(v, ",") {
			if c != "mixed" && c != "random" {
				errs = append(errs, fmt.Errorf("CORPORA: unknown corpus %q (mixed, random)", c))
			}
			s.Corpora = append(s.Corpora, c)
		}
	}
	if v := os.Getenv("SYSTEMS"); v != "" {
		s.Systems = nil
		for _, c := range strings.Split(v, ",") {
			if c != sysXRC && c != sysRclone && c != sysRclone16 {
				errs = append(errs, fmt.Errorf("SYSTEMS: unknown system %q (%s)", c, strings.Join(allSystems, ", ")))
			}
			s.Systems = append(s.Systems, c)
		}
	}
	return s, errors.Join(errs...)
}

func run(ctx context.Context) error {
	started := time.Now()
	s, err := loadSettings()
	if err != nil {
		return err
	}
	if err := prerequisites(); err != nil {
		return err
	}
	repo, err := repoRoot()
	if err != nil {
		return err
	}
	cache := filepath.Join(cacheHome(), "xrc")
	b := &bench{settings: s, repo: repo, cache: cache, dir: filepath.Join(cache, "bench-e2e"), started: started.UTC()}
	if err := b.findStack(); err != nil {
		return err
	}

	// Installs and builds have their own bounds; the benchmark's clock
	// starts after them.
	if err := b.install(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.Timeout.D(),
		fmt.Errorf("the benchmark did not finish within TIMEOUT=%s", s.Timeout.D()))
	defer cancel()

	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	b.cleanStale()
	defer b.teardown()

	where := b.chooseData()
	step("setting up: namespace %s with a %s link, MinIOs (data on %s), bridge, queues (state: %s, logs: %s)",
		nsName, linkSpec, where, b.state, b.logs)
	if err := b.setup(ctx); err != nil {
		return b.explain(ctx, err)
	}
	rep := &report{Settings: s, Started: b.started, Link: linkInfo(), Machine: machineInfo()}
	rep.Machine.MinIOData = where
	for _, name := range s.Corpora {
		c, err := b.corpus(ctx, name)
		if err != nil {
			return b.explain(ctx, err)
		}
		rep.Corpora = append(rep.Corpora, c.info)
		for _, sys := range s.Systems {
			r, err := b.runOne(ctx, sys, c)
			if err != nil {
				return b.explain(ctx, fmt.Errorf("%s on %s: %w", sys, name, err))
			}
			rep.Runs = append(rep.Runs, r)
		}
		c.free()
	}
	rep.Goals = goals(rep)
	rep.Seconds = time.Since(started).Seconds()
	path, err := b.writeReport(rep)
	if err != nil {
		return err
	}
	printReport(os.Stdout, rep)
	fmt.Printf("\nfigures (JSON): %s\nlogs: %s\ntook %s\n", path, b.logs, time.Since(started).Round(time.Second))
	return nil
}

// explain turns a context error into the reason the context ended.
func (b *bench) explain(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			return fmt.Errorf("%w (%v); logs: %s", err, cause, b.logs)
		}
	}
	return fmt.Errorf("%w; logs: %s", err, b.logs)
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func cacheHome() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return os.TempDir()
	}
	return filepath.Join(home, ".cache")
}

// repoRoot is the checkout holding deploy/local/stack: the working
// directory or one of its parents.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy", "local", "stack")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the xrc checkout (no deploy/local/stack above the working directory)")
		}
		dir = parent
	}
}

// duration is a time.Duration that reads as "1m30s" in JSON.
type duration time.Duration

func (d duration) D() time.Duration { return time.Duration(d) }

func (d duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// parseBytes reads "400MiB", "64M", "1GiB", "1.5GB" or a plain count.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return int64(f * mult), nil
}
