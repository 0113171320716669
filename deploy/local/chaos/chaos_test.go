package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
