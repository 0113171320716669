//go:build linux

package main

// Child processes: servers, workers, rclone and the verifier, each with a
// log file, a pid file (for a later run to clean up after a killed one) and
// its CPU time and peak RSS read from /proc.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one child process.
type proc struct {
	name, logPath, pidPath string
	cmd                    *exec.Cmd
	done                   chan struct{}
	err                    error // Wait's, once done
}

// start runs args (inside the namespace when inNS) with env, output to
// logs/<name>.log. Children get their own process group, so a Ctrl-C of
// the terminal reaches only this program, which stops them in order; and
// they are killed if this program dies.
func (b *bench) start(name string, inNS bool, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(b.logs, name+".log"), pidPath: filepath.Join(b.state, "pids", name+".pid")}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p.cmd = command(inNS, args...)
	p.cmd.Env = append(env, "XRC_BENCH_E2E="+b.state)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	_ = os.WriteFile(p.pidPath, []byte(strconv.Itoa(p.cmd.Process.Pid)+"\n"), 0o644)
	p.done = make(chan struct{})
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// command is args as a child: `ip netns exec` execs in place (no fork), so
// the child's pid is the program's own and its CPU and RSS are read there.
func command(inNS bool, args ...string) *exec.Cmd {
	if inNS {
		args = append([]string{"ip", "netns", "exec", nsName}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (as ECS does), waits up to grace for the exit, then
// kills.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	defer os.Remove(p.pidPath)
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuSeconds is the process's user+sys CPU time so far (all threads).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// machineCPU is the whole machine's CPU time (every CPU, in USER_HZ ticks)
// since boot, busy and in all: the first line of /proc/stat.
func machineCPU() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		total += n
		// idle and iowait (fields 4 and 5) are the CPU left unused.
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total
}

// peakRSS is the process's VmHWM in bytes.
func peakRSS(pid int) int64 {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:")
}

// procKB is the "field: N kB" line of a /proc file in bytes, 0 if absent.
func procKB(path, field string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// usage is a finished process's CPU seconds and peak RSS from wait4.
func usage(ps *os.ProcessState) (float64, int64) {
	if ps == nil {
		return 0, 0
	}
	cpu := (ps.UserTime() + ps.SystemTime()).Seconds()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return cpu, ru.Maxrss << 10 // KiB on Linux
	}
	return cpu, 0
}
