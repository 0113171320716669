package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/xrc-dev/xrc/internal/localstack"
)

// TestChaos is the small version of make chaos that make test runs: about
// 200 objects, one big one, 3 kills, every kind of poison, every check.
func TestChaos(t *testing.T) {
	env := localstack.Require(t)
	var out bytes.Buffer
	o := defaults()
	o.Objects, o.Kills, o.Big, o.BigSize, o.Timeout = 200, 3, 1, 20<<20, 12*time.Minute
	o.Out = &out
	results, err := run(context.Background(), env, o)
	os.Stdout.Write(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n := failed(results); n > 0 || len(results) == 0 {
		t.Fatalf("%d of %d checks failed (see above)", n, len(results))
	}
}

// The staging checks list every version: a delete marker or a noncurrent
// version left behind fails them (a plain listing shows neither), and so
// does a source archive S3 Replication has not copied.
func TestStagingChecksSeeVersions(t *testing.T) {
	ctx := context.Background()
	env := localstack.Require(t)
	c := &chaos{env: env, cfg: env.Config("chaos-stg")}
	stg1, stg2 := c.cfg.Settings.Regions[0].StagingBucket, c.cfg.Settings.Regions[1].StagingBucket
	var err error
	if c.src, err = env.S3(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if c.dst, err = env.S3(ctx, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][2]string{{"us-east-1", stg1}, {"eu-west-1", stg2}} {
		if err := env.EnsureBucket(ctx, b[0], b[1], true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { env.RemoveBucket(context.Background(), b[0], b[1]) })
	}
	put := func(client *s3.Client, bucket, key string) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(client *s3.Client, bucket, key string) {
		t.Helper()
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, errs []error, want ...string) {
		t.Helper()
		got := fmt.Sprint(errs)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: errors %v, want one saying %q", what, errs, w)
			}
		}
		if len(want) == 0 && len(errs) > 0 {
			t.Errorf("%s: %v", what, errs)
		}
	}

	for _, k := range targetPoisonKeys() {
		put(c.dst, stg2, k)
	}
	expect("target staging with the poison only", c.checkTargetStaging(ctx))
	// A plain delete of a delivered archive: the version stays, hidden.
	delivered := "r1/2026/12/05/20261205T010203Z-0badcafe-000000000001.tar.zst"
	put(c.dst, stg2, delivered)
	del(c.dst, stg2, delivered)
	put(c.dst, stg2, targetPoisonKeys()[0]) // a second version
	expect("target staging", c.checkTargetStaging(ctx), "delete marker on "+delivered, "noncurrent version", targetPoisonKeys()[0])

	put(c.src, stg1, delivered) // never replicated: no rule here
	gone := "r1/2026/12/05/20261205T010203Z-0badcafe-000000000002.tar.zst"
	put(c.src, stg1, gone)
	del(c.src, stg1, gone)
	put(c.src, stg1, "r1/not-an-archive")
	expect("source staging", c.checkSourceStaging(ctx), delivered+": replication status", "delete marker on "+gone,
		"noncurrent version", "r1/not-an-archive is no archive")
}

// A killer whose ctx ends between a kill and the restart restarts nothing,
// and a worker runs in its own process group: after Ctrl-C or an error
// no worker outlives chaos.
func TestKillerRestartsNothingOnceCancelled(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "worker")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := defaults()
	o.Kills = 1
	c := &chaos{o: o, rng: rand.New(rand.NewPCG(1, 2))}
	p := &proc{name: "w", exe: exe, dir: dir}
	c.workers = []*proc{p}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if pgid, err := syscall.Getpgid(p.cmd.Process.Pid); err != nil || pgid != p.cmd.Process.Pid {
		t.Errorf("worker's process group %d (%v), want its own, %d", pgid, err, p.cmd.Process.Pid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	killed := make(chan error, 1)
	go func() { killed <- c.killer(ctx) }()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the killer killed nothing in 20 s")
	}
	cancel()
	if err := <-killed; err == nil {
		t.Error("killer returned no error once cancelled")
	}
	p.mu.Lock()
	starts := p.starts
	p.mu.Unlock()
	if starts != 1 {
		t.Errorf("worker started %d times, want once: the killer restarted it after its ctx ended", starts)
	}
}

// A worker that exits by itself is seen (its twin may have covered for
// it, and every other check passed); one the run killed or stopped is not.
func TestUnexpectedExitsSeen(t *testing.T) {
	dir := t.TempDir()
	for name, script := range map[string]string{"dies": "#!/bin/sh\nexit 3\n", "sleeps": "#!/bin/sh\nexec sleep 600\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dies, sleeps := &proc{name: "dies", exe: filepath.Join(dir, "dies"), dir: dir}, &proc{name: "sleeps", exe: filepath.Join(dir, "sleeps"), dir: dir}
	for _, p := range []*proc{dies, sleeps} {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	<-dies.done
	sleeps.kill()
	if err := sleeps.start(); err != nil {
		t.Fatal(err)
	}
	sleeps.stop()
	if got := dies.exits(); len(got) != 1 || !strings.Contains(got[0], "exit status 3") {
		t.Errorf("exits of a worker that died: %q, want one, with its status", got)
	}
	if got := sleeps.exits(); len(got) != 0 {
		t.Errorf("exits of a worker killed and stopped: %q, want none", got)
	}
}
