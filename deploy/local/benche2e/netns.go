//go:build linux

package main

// The emulated inter-region link: a network namespace for the target
// region, joined to the host by a veth pair shaped with tbf on both ends.
// (netem, which would add delay, is not in this kernel; tbf is.)

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	nsName   = "xrc-bench-e2e"
	vethHost = "xrcbe2e0" // host end; its counters are the link's bytes
	vethNS   = "xrcbe2e1"
	hostIP   = "10.213.87.1"
	nsIP     = "10.213.87.2"
	prefixLn = "/30"
	linkSpec = "tbf rate 100mbit burst 32kbit latency 400ms"
)

func tbfArgs() []string { return strings.Fields(linkSpec) }

// netnsUp creates the namespace and the shaped veth pair.
func netnsUp(ctx context.Context) error {
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ip, _, _ := net.ParseCIDR(a.String()); ip != nil && (ip.String() == hostIP || ip.String() == nsIP) {
				return fmt.Errorf("%s is already assigned on this host: the benchmark needs %s%s for its veth pair", ip, hostIP, prefixLn)
			}
		}
	}
	cmds := [][]string{
		{"ip", "netns", "add", nsName},
		{"ip", "link", "add", vethHost, "type", "veth", "peer", "name", vethNS, "netns", nsName},
		{"ip", "addr", "add", hostIP + prefixLn, "dev", vethHost},
		{"ip", "link", "set", vethHost, "up"},
		{"ip", "-n", nsName, "addr", "add", nsIP + prefixLn, "dev", vethNS},
		{"ip", "-n", nsName, "link", "set", vethNS, "up"},
		{"ip", "-n", nsName, "link", "set", "lo", "up"},
		append([]string{"tc", "qdisc", "replace", "dev", vethHost, "root"}, tbfArgs()...),
		append([]string{"tc", "-n", nsName, "qdisc", "replace", "dev", vethNS, "root"}, tbfArgs()...),
	}
	for _, c := range cmds {
		if err := sh(ctx, c...); err != nil {
			netnsDown()
			return err
		}
	}
	// The link must really be shaped, or every figure is meaningless.
	for _, c := range [][]string{{"tc", "qdisc", "show", "dev", vethHost}, {"tc", "-n", nsName, "qdisc", "show", "dev", vethNS}} {
		out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "100Mbit") {
			netnsDown()
			return fmt.Errorf("%s: no 100Mbit tbf qdisc (%v): %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// netnsDown kills what still runs in the namespace (only processes this
// benchmark started live there) and deletes it, which removes the veth pair.
func netnsDown() error {
	if _, err := os.Stat("/run/netns/" + nsName); err != nil {
		return nil
	}
	out, _ := exec.Command("ip", "netns", "pids", nsName).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var err error
	for range 50 {
		if err = sh(context.Background(), "ip", "netns", "del", nsName); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// linkCounters reads the host end's byte counters: tx is host -> target
// region, rx the way back.
func linkCounters() (rx, tx int64, err error) {
	read := func(name string) (int64, error) {
		data, err := os.ReadFile("/sys/class/net/" + vethHost + "/statistics/" + name)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	}
	rx, err1 := read("rx_bytes")
	tx, err2 := read("tx_bytes")
	return rx, tx, errors.Join(err1, err2)
}

func linkMTU() int {
	data, err := os.ReadFile("/sys/class/net/" + vethHost + "/mtu")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

func sh(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
