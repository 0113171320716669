//go:build linux

package main

// This file brings the benchmark's world up and down: binaries, the state
// dir and its lock, the namespace, the servers, the xrc deployment.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/localstack"
)

const (
	rcloneModule  = "github.com/rclone/rclone"
	rcloneVersion = "v1.76.0"
	// targetS3Port is the target MinIO's port inside the namespace (its own
	// network stack: no clash with the host's 9000).
	targetS3Port = 9000
)

// bench is one run of the benchmark.
type bench struct {
	settings
	repo    string
	cache   string // ~/.cache/xrc
	dir     string // ~/.cache/xrc/bench-e2e
	state   string // this run's servers' data, certificates, pids: removed at the end
	data    string // where the MinIOs keep objects (minioData): removed at the end
	logs    string // this run's logs: kept
	started time.Time

	minioBin, mcBin, rcloneBin      string
	sourceBin, targetBin, bridgeBin string
	selfBin                         string // this program, for `verify` inside the namespace
	versions                        map[string]string

	stack       localstack.Env // the normal local stack: SQS, DynamoDB and its credentials
	env         localstack.Env // this benchmark's S3 "regions", bridge and mc
	cfg         *config.Config
	cfgPath     string
	caPath      string
	plainBucket string // unwatched source bucket rclone copies from

	servers   []*proc // bridge and MinIOs, in start order
	minios    []*proc
	running   []*proc // workers of the current run
	linked    []*counter
	sqsLocal  string // the SQS proxy's URL for host processes
	sqsNS     string // ... and for the namespace
	ddbNS     string // DynamoDB's URL from the namespace
	bridgeNS  string // the bridge's URL from the namespace
	closers   []func()
	bridgeLog string
	tap       *replicaTap
	runSeq    int
}

// resources are what the benchmark creates on the shared stack, recorded
// before creating them so that a later run can remove what a killed one
// left.
type resources struct {
	Queues []string `json:"queues"`
	Table  string   `json:"table"`
}

func prerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates a network namespace, a veth pair and tc qdiscs (run as root)")
	}
	for tool, hint := range map[string]string{
		"ip": "apt-get install -y iproute2", "tc": "apt-get install -y iproute2",
		"zstd": "apt-get install -y zstd", "go": "install Go (the version go.mod asks for)",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("missing %s: %s", tool, hint)
		}
	}
	return nil
}

// findStack locates what the local stack provides: its SQS and DynamoDB
// (environment of `deploy/local/stack env`) and the MinIO and mc binaries it
// caches under ~/.cache/xrc/bin, at the versions deploy/local/stack pins.
func (b *bench) findStack() error {
	env, err := localstack.FromEnv()
	if err != nil {
		return err
	}
	b.stack = env
	script, err := os.ReadFile(filepath.Join(b.repo, "deploy", "local", "stack"))
	if err != nil {
		return err
	}
	b.versions = map[string]string{"rclone": rcloneVersion}
	for _, v := range []struct{ name, bin string }{{"MINIO", "minio"}, {"MC", "mc"}} {
		m := regexp.MustCompile(`(?m)^readonly ` + v.name + `_VERSION=(\S+)$`).FindSubmatch(script)
		if m == nil {
			return fmt.Errorf("no %s_VERSION in deploy/local/stack", v.name)
		}
		path := filepath.Join(b.cache, "bin", v.bin+"-"+string(m[1]), v.bin)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s not built yet (%s): run deploy/local/stack up (make stack-up) first", v.bin, path)
		}
		b.versions[v.bin] = string(m[1])
		if v.bin == "minio" {
			b.minioBin = path
		} else {
			b.mcBin = path
		}
	}
	return nil
}

// install builds rclone (once, cached), the xrc workers into bin/ and the
// bridge.
func (b *bench) install(ctx context.Context) error {
	if err := b.ensureRclone(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	env := os.Environ()
	if os.Getenv("CGO_CFLAGS") == "" {
		env = append(env, "CGO_CFLAGS=-O3 -g") // as the Makefile builds libzstd
	}
	b.sourceBin = filepath.Join(b.repo, "bin", "xrc-source")
	b.targetBin = filepath.Join(b.repo, "bin", "xrc-target")
	b.bridgeBin = filepath.Join(b.dir, "bin", "xrc-bridge")
	step("building bin/xrc-source, bin/xrc-target and the bridge")
	for out, pkg := range map[string]string{b.sourceBin: "./cmd/xrc-source", b.targetBin: "./cmd/xrc-target", b.bridgeBin: "./deploy/local/bridge"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir, cmd.Env = b.repo, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.selfBin = self
	return nil
}

// ensureRclone builds rclone from the Go module proxy into
// ~/.cache/xrc/bin/rclone-<version>/ unless it is there, under the cache's
// install lock (the one deploy/local/stack takes).
func (b *bench) ensureRclone(ctx context.Context) error {
	dir := filepath.Join(b.cache, "bin", "rclone-"+rcloneVersion)
	b.rcloneBin = filepath.Join(dir, "rclone")
	if isExecutable(b.rcloneBin) {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(b.cache, "logs"), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(b.cache, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(b.rcloneBin) {
		return nil
	}
	old, _ := filepath.Glob(dir + ".tmp.*")
	for _, d := range old {
		os.RemoveAll(d) // left by an interrupted build; we hold the lock
	}
	tmp := fmt.Sprintf("%s.tmp.%d", dir, os.Getpid())
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logPath := filepath.Join(b.cache, "logs", "install-rclone.log")
	step("building rclone %s from the Go module proxy (one-time, ~3-6 min; log: %s)", rcloneVersion, logPath)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", rcloneModule+"@"+rcloneVersion)
	cmd.Dir = b.cache
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-buildvcs=false", "GOWORK=off", "GO111MODULE=on")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s@%s failed (%w); see %s:\n%s", rcloneModule, rcloneVersion, err, logPath, tail(logPath, 15))
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	step("built rclone in %s", time.Since(start).Round(time.Second))
	return nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// lock makes this the only benchmark using the namespace and the state dir.
func (b *bench) lock() (func(), error) {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(b.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another bench-e2e is running (it holds %s)", f.Name())
	}
	b.state = filepath.Join(b.dir, "state")
	b.data = filepath.Join(b.state, "minio")
	b.logs = filepath.Join(b.dir, "logs", b.started.Format("20060102T150405Z"))
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// tmpfsData is where the MinIOs keep objects when memory allows. S3 writes
// to its own disks, not to its client's machine; a MinIO here writes each
// object with O_DIRECT and an fdatasync: on this VM's disk the mixed
// corpus's upload took 8-16 s instead of 4.5-6.5 s on tmpfs, and both
// MinIOs 27-34 CPU-s instead of 22-28, taken from the workers beside them.
const tmpfsData = "/dev/shm/xrc-bench-e2e"

// chooseData sets b.data to tmpfsData if /dev/shm is a tmpfs and the
// machine's available memory holds every object the runs write (each run
// uploads a corpus and writes it to its destination; xrc's archives are
// staged on both sides, no larger than the corpus) with 4 GiB to spare;
// otherwise the MinIOs keep objects under the state dir. It returns which.
func (b *bench) chooseData() string {
	need := int64(len(b.Corpora)) * int64(2*len(b.Systems)+2) * b.Size
	var fs syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &fs) != nil || fs.Type != 0x01021994 /* TMPFS_MAGIC */ {
		return "disk"
	}
	if avail := procKB("/proc/meminfo", "MemAvailable:"); avail < need+4<<30 {
		fmt.Printf("    MinIO data on disk: %s of memory available, %s wanted for tmpfs\n", mib(avail), mib(need+4<<30))
		return "disk"
	}
	b.data = tmpfsData
	return "tmpfs"
}

// cleanStale removes what a killed earlier run left: its namespace, its
// processes (pid files, checked against the state dir in their
// environment), its queues and table on the shared stack, its state dir.
// Old logs beyond the last ten runs go too.
func (b *bench) cleanStale() {
	netnsDown()
	pids, _ := filepath.Glob(filepath.Join(b.state, "pids", "*.pid"))
	for _, f := range pids {
		data, _ := os.ReadFile(f)
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || !ours(pid, b.state) {
			continue
		}
		fmt.Printf("    stopping %s (pid %d) left by an earlier run\n", strings.TrimSuffix(filepath.Base(f), ".pid"), pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if data, err := os.ReadFile(filepath.Join(b.state, "resources.json")); err == nil {
		var r resources
		if json.Unmarshal(data, &r) == nil {
			b.deleteResources(r)
		}
	}
	os.RemoveAll(b.state)
	os.RemoveAll(tmpfsData)
	logs, _ := filepath.Glob(filepath.Join(b.dir, "logs", "*"))
	sort.Strings(logs)
	for len(logs) > 9 {
		os.RemoveAll(logs[0])
		logs = logs[1:]
	}
}

// ours reports whether pid is a process this benchmark started with state
// dir state (it carries XRC_BENCH_E2E=state in its environment).
func ours(pid int, state string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == "XRC_BENCH_E2E="+state {
			return true
		}
	}
	return false
}

func (b *bench) deleteResources(r resources) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range r.Queues {
		if err := b.stack.DeleteQueue(ctx, q); err != nil {
			fmt.Fprintf(os.Stderr, "    cleanup: %v\n", err)
		}
	}
	if r.Table != "" {
		if err := b.stack.DeleteTable(ctx, r.Table); err != nil {
			fmt.Fprintf(os.Stderr, "    cleanup: %v\n", err)
		}
	}
}

// setup brings up everything the runs share.
func (b *bench) setup(ctx context.Context) error {
	for _, d := range []string{b.logs, filepath.Join(b.state, "pids")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	var err error
	if b.caPath, err = writeTLS(b.state); err != nil {
		return err
	}
	if err := netnsUp(ctx); err != nil {
		return err
	}

	// The bridge first: MinIO marks a webhook target offline if it does not
	// answer at start. -async: the bridge answers each post once the
	// record is queued and sends them to SQS ten per batch; answering after
	// a SendMessage each kept the source's events ten seconds behind the
	// uploads of the mixed corpus (bridge.batcher).
	srcPort, srcConsole, bridgePort := freePort(), freePort(), freePort()
	srcURL := fmt.Sprintf("https://127.0.0.1:%d", srcPort)
	dstURL := fmt.Sprintf("https://%s:%d", nsIP, targetS3Port)
	bridgeURL := fmt.Sprintf("http://127.0.0.1:%d", bridgePort)
	bridge, err := b.start("bridge", false, b.serverEnv(),
		b.bridgeBin, "-listen", fmt.Sprintf("127.0.0.1:%d", bridgePort),
		"-routes", filepath.Join(b.state, "bridge-routes.json"),
		"-sqs-endpoint", b.stack.SQSEndpoint,
		"-s3", "us-east-1="+srcURL, "-s3", "eu-west-1="+dstURL, "-async")
	if err != nil {
		return err
	}
	b.servers = append(b.servers, bridge)
	b.bridgeLog = bridge.logPath
	if err := b.waitHTTP(ctx, bridge, bridgeURL+"/healthz", 30*time.Second); err != nil {
		return err
	}

	// What the namespace reaches on the host, through the link.
	fwdBridge, err := forwardTCP(net.JoinHostPort(hostIP, "0"), fmt.Sprintf("127.0.0.1:%d", bridgePort))
	if err != nil {
		return err
	}
	ddbHost, err := hostPort(b.stack.DynamoDBEndpoint)
	if err != nil {
		return err
	}
	fwdDDB, err := forwardTCP(net.JoinHostPort(hostIP, "0"), ddbHost)
	if err != nil {
		return err
	}
	proxyLog, err := os.Create(filepath.Join(b.logs, "proxies.log"))
	if err != nil {
		return err
	}
	sqs, err := newSQSProxy(b.stack.SQSEndpoint, proxyLog)
	if err != nil {
		return err
	}
	sqsNS, err := sqs.listen(net.JoinHostPort(hostIP, "0"))
	if err != nil {
		return err
	}
	sqsLocal, err := sqs.listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	b.closers = append(b.closers, fwdBridge.close, fwdDDB.close, sqs.close, func() { proxyLog.Close() })
	b.linked = []*counter{&fwdBridge.bytes, &fwdDDB.bytes, sqsNS}
	b.bridgeNS = "http://" + fwdBridge.addr
	b.ddbNS = "http://" + fwdDDB.addr
	b.sqsNS = "http://" + sqsNS.addr
	b.sqsLocal = "http://" + sqsLocal.addr

	src, err := b.startMinIO("minio-source", "us-east-1", false, fmt.Sprintf("127.0.0.1:%d", srcPort),
		fmt.Sprintf("127.0.0.1:%d", srcConsole), bridgeURL)
	if err != nil {
		return err
	}
	dst, err := b.startMinIO("minio-target", "eu-west-1", true, fmt.Sprintf("%s:%d", nsIP, targetS3Port),
		fmt.Sprintf("%s:%d", nsIP, targetS3Port+1), b.bridgeNS)
	if err != nil {
		return err
	}
	for _, m := range []struct {
		p   *proc
		url string
	}{{src, srcURL}, {dst, dstURL}} {
		if err := b.waitHTTP(ctx, m.p, m.url+"/minio/health/ready", 90*time.Second); err != nil {
			return err
		}
	}

	mcDir := filepath.Join(b.state, "mc")
	if err := os.MkdirAll(filepath.Join(mcDir, "certs", "CAs"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mcDir, "config.json"), []byte(`{"version":"10","aliases":{}}`+"\n"), 0o600); err != nil {
		return err
	}
	if err := copyFile(b.caPath, filepath.Join(mcDir, "certs", "CAs", "xrc-bench-ca.crt")); err != nil {
		return err
	}
	b.env = localstack.Env{
		AccessKey: b.stack.AccessKey, SecretKey: b.stack.SecretKey, CABundle: b.caPath,
		SQSEndpoint: b.stack.SQSEndpoint, DynamoDBEndpoint: b.stack.DynamoDBEndpoint,
		BridgeURL: bridgeURL, MC: b.mcBin, MCConfigDir: mcDir,
		S3Endpoints: map[string]string{"us-east-1": srcURL, "eu-west-1": dstURL},
	}

	if err := b.writeConfig(ctx, srcURL, dstURL); err != nil {
		return err
	}
	rule := b.cfg.Rules[0]
	res := resources{
		Queues: []string{b.cfg.SourceQueueName(rule.ID), b.cfg.TargetQueueName()},
		Table:  b.cfg.TableName(),
	}
	data, _ := json.Marshal(res)
	if err := os.WriteFile(filepath.Join(b.state, "resources.json"), data, 0o644); err != nil {
		return err
	}
	// The source MinIO replicates the staging bucket through the replica
	// tap (replicaTap): provisioned with the tap as eu-west-1's endpoint,
	// mc gives MinIO the tap as the replication target.
	srcStaging, _ := b.cfg.Region(rule.SourceRegion)
	dstStaging, _ := b.cfg.Region(rule.Destinations[0].Region)
	tlsDir := filepath.Join(b.state, "tls")
	tap, err := newReplicaTap(dstURL, b.caPath, filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"),
		rule.SourceRegion, srcStaging.StagingBucket, dstStaging.StagingBucket, bridgeURL+"/events", proxyLog)
	if err != nil {
		return err
	}
	b.closers = append(b.closers, tap.close)
	b.tap = tap
	viaTap := b.env
	viaTap.S3Endpoints = map[string]string{rule.SourceRegion: srcURL, dstStaging.Name: tap.url()}
	if _, err := viaTap.Provision(ctx, b.cfg); err != nil {
		return fmt.Errorf("provisioning %s: %w", b.cfgPath, err)
	}
	b.plainBucket = b.cfg.Settings.StackName + "-plain"
	return b.env.EnsureBucket(ctx, rule.SourceRegion, b.plainBucket, false)
}

// writeConfig derives the deployment from configs/local.json: its worker,
// batch and level settings, with this benchmark's names and endpoints (the
// target's inside the namespace). Deletes are off: the corpora only create.
func (b *bench) writeConfig(ctx context.Context, srcURL, dstURL string) error {
	tmpl := filepath.Join(b.repo, "configs", "local.json")
	cfg, err := config.Load(ctx, tmpl, nil)
	if err != nil {
		return err
	}
	if len(cfg.Rules) != 1 || len(cfg.Settings.Regions) != 2 {
		return fmt.Errorf("%s: want one rule and two regions to derive the benchmark's config from", tmpl)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	name := "xrcbench-" + hex.EncodeToString(rnd[:])
	cfg.Schema = ""
	cfg.Settings.StackName = name
	var src, dst string
	for i := range cfg.Settings.Regions {
		r := &cfg.Settings.Regions[i]
		r.S3PathStyle = true
		if r.IsSource() {
			r.Name, r.StagingBucket, r.S3Endpoint, src = "us-east-1", name+"-stg-src", srcURL, "us-east-1"
		} else {
			r.Name, r.StagingBucket, r.S3Endpoint, dst = "eu-west-1", name+"-stg-dst", dstURL, "eu-west-1"
		}
	}
	r := &cfg.Rules[0]
	r.SourceRegion, r.SourceBucket, r.Deletes = src, name+"-data", false
	r.Destinations = []config.Destination{{Region: dst, Bucket: name + "-dst"}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if b.cfg, err = config.Parse(data); err != nil {
		return fmt.Errorf("the benchmark's config is invalid: %w", err)
	}
	// Beside the logs, so it outlives the state dir.
	b.cfgPath = filepath.Join(b.logs, "xrc.json")
	return os.WriteFile(b.cfgPath, data, 0o644)
}

// serverEnv is the environment of the bridge and the workers: the stack's
// credentials, this benchmark's CA, nothing from ~/.aws.
func (b *bench) serverEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "XRC_") && !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID="+b.stack.AccessKey, "AWS_SECRET_ACCESS_KEY="+b.stack.SecretKey,
		"AWS_CA_BUNDLE="+b.caPath, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"NO_PROXY=*", "no_proxy=*")
	return append(env, extra...)
}

// startMinIO starts one single-drive MinIO over TLS, as deploy/local/stack
// does, with the webhook target XRC pointing at the bridge.
func (b *bench) startMinIO(name, region string, inNS bool, addr, console, bridgeURL string) (*proc, error) {
	dir := filepath.Join(b.state, name)
	certs := filepath.Join(dir, "certs")
	data := filepath.Join(b.data, name)
	for _, d := range []string{data, filepath.Join(certs, "CAs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	for from, to := range map[string]string{
		filepath.Join(b.state, "tls", "server.crt"): filepath.Join(certs, "public.crt"),
		filepath.Join(b.state, "tls", "server.key"): filepath.Join(certs, "private.key"),
		b.caPath: filepath.Join(certs, "CAs", "xrc-bench-ca.crt"),
	} {
		if err := copyFile(from, to); err != nil {
			return nil, err
		}
	}
	env := b.serverEnv(
		"MINIO_ROOT_USER="+b.stack.AccessKey, "MINIO_ROOT_PASSWORD="+b.stack.SecretKey,
		"MINIO_SITE_REGION="+region, "MINIO_BROWSER=off", "MINIO_UPDATE=off",
		"MINIO_API_REQUESTS_MAX=256", "GOMEMLIMIT=2GiB",
		// The scanner is MinIO's own upkeep, nothing S3 charges a
		// client's CPUs for (as deploy/local/stack).
		"MINIO_SCANNER_SPEED=slowest",
		// No queue dir, unlike deploy/local/stack: MinIO replays a queue
		// dir every 3 s, one event at a time, so every event (the source
		// bucket's, and the replication events the bridge turns into the
		// target staging bucket's) would wait up to 3 s, and longer
		// behind a backlog: S3 -> SQS notifications on AWS take well under
		// a second. Without one, MinIO posts each event at once, from as
		// many senders as it has CPUs; a failed post is not retried, which
		// would show up as a stalled run, never as a wrong figure.
		"MINIO_NOTIFY_WEBHOOK_ENABLE_XRC=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_XRC="+bridgeURL+"/events")
	p, err := b.start(name, inNS, env, b.minioBin, "server", "--quiet", "--certs-dir", certs,
		"--address", addr, "--console-address", console, data)
	if err != nil {
		return nil, err
	}
	b.servers = append(b.servers, p)
	b.minios = append(b.minios, p)
	return p, nil
}

// teardown stops and removes everything setup made; it runs on success,
// failure and interrupt alike.
func (b *bench) teardown() {
	step("cleaning up")
	for _, p := range b.running {
		p.stop(30 * time.Second)
	}
	for i := len(b.servers) - 1; i >= 0; i-- {
		b.servers[i].stop(15 * time.Second)
	}
	for _, c := range b.closers {
		c()
	}
	if err := netnsDown(); err != nil {
		fmt.Fprintf(os.Stderr, "    cleanup: %v\n", err)
	}
	if b.cfg != nil {
		rule := b.cfg.Rules[0]
		b.deleteResources(resources{
			Queues: []string{b.cfg.SourceQueueName(rule.ID), b.cfg.TargetQueueName()},
			Table:  b.cfg.TableName(),
		})
	}
	if b.Keep {
		fmt.Printf("    KEEP=1: state left in %s, MinIO data in %s\n", b.state, b.data)
		return
	}
	if b.state != "" {
		os.RemoveAll(b.state)
		os.RemoveAll(b.data)
	}
}

// waitHTTP waits until url answers want (any 2xx) or p exits.
func (b *bench) waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	client, err := httpClient(b.caPath)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited during start-up; see %s:\n%s", p.name, p.logPath, tail(p.logPath, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s (last: %v); see %s", p.name, url, timeout, err, p.logPath)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePort is a TCP port free on 127.0.0.1 right now.
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func hostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("not a URL: %q", rawURL)
	}
	return u.Host, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	for i, l := range lines {
		if len(l) > 400 {
			l = l[:400] + "..."
		}
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}
