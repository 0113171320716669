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
	"sync"
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

// linkCount is the host end's counters: tx is host -> target region, rx
// the way back.
type linkCount struct{ rx, tx, packets int64 }

// headerBytes is what each packet on the link carries besides TCP's
// payload: Ethernet 14, IPv4 20, TCP 20 and its timestamps option 12
// (Linux's default; a pure ACK carrying SACK blocks has a few more).
const headerBytes = 14 + 20 + 20 + 12

func linkCounters() (linkCount, error) {
	var errs []error
	read := func(name string) int64 {
		n, err := linkStat(name)
		errs = append(errs, err)
		return n
	}
	c := linkCount{rx: read("rx_bytes"), tx: read("tx_bytes"), packets: read("rx_packets") + read("tx_packets")}
	return c, errors.Join(errs...)
}

// linkStat reads one of the host end's counters.
func linkStat(name string) (int64, error) {
	data, err := os.ReadFile("/sys/class/net/" + vethHost + "/statistics/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
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

// linkRate is linkSpec's rate in bytes per second.
func linkRate() float64 {
	f := strings.Fields(linkSpec)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "rate" {
			continue
		}
		v := strings.ToLower(f[i+1])
		for _, u := range []struct {
			suffix string
			bits   float64
		}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
			if n, ok := strings.CutSuffix(v, u.suffix); ok {
				if x, err := strconv.ParseFloat(n, 64); err == nil {
					return x * u.bits / 8
				}
			}
		}
	}
	panic("linkSpec has no rate in bits: " + linkSpec)
}

// linkLoss is what the shaped link cost the TCP connections across it:
// the packets the two tbf qdiscs dropped because their queue was full, and
// the segments TCP sent again and its retransmission timeouts (host and
// namespace summed; the host's loopback connections lose nothing). A run
// whose link sat idle while data waited shows it here.
type linkLoss struct {
	ShaperDrops int64 `json:"shaperDrops"`
	Retrans     int64 `json:"tcpRetransSegs"`
	Timeouts    int64 `json:"tcpTimeouts"` // RTOs: the sender waited out a whole timeout
}

func (a linkLoss) sub(b linkLoss) linkLoss {
	return linkLoss{a.ShaperDrops - b.ShaperDrops, a.Retrans - b.Retrans, a.Timeouts - b.Timeouts}
}

// readLinkLoss reads the counters; the error names what could not be read
// (the figures then read 0, which only the diagnosis loses).
func readLinkLoss() (linkLoss, error) {
	var l linkLoss
	var errs []error
	for _, c := range [][]string{{"tc", "-s", "qdisc", "show", "dev", vethHost}, {"tc", "-n", nsName, "-s", "qdisc", "show", "dev", vethNS}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", strings.Join(c, " "), err))
			continue
		}
		l.ShaperDrops += qdiscDrops(string(out))
	}
	host, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		errs = append(errs, err)
	}
	hostExt, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		errs = append(errs, err)
	}
	ns, err := exec.Command("ip", "netns", "exec", nsName, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		errs = append(errs, fmt.Errorf("reading %s's TCP counters: %w", nsName, err))
	}
	for _, text := range []string{string(host) + string(hostExt), string(ns)} {
		m := netstat(text)
		l.Retrans += m["Tcp:RetransSegs"]
		l.Timeouts += m["TcpExt:TCPTimeouts"]
	}
	return l, errors.Join(errs...)
}

// qdiscDrops sums the "dropped N" of `tc -s qdisc show` output.
func qdiscDrops(out string) int64 {
	var n int64
	for _, l := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(l, "(dropped ")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		if x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			n += x
		}
	}
	return n
}

// netstat reads /proc/net/snmp and /proc/net/netstat text, where each
// group is a line of names and a line of values under the same prefix, as
// "Prefix:Name" -> value.
func netstat(text string) map[string]int64 {
	m := map[string]int64{}
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) < 2 || len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			continue
		}
		if _, err := strconv.ParseInt(values[1], 10, 64); err != nil {
			continue // a names line followed by the next group's names
		}
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseInt(values[j], 10, 64); err == nil {
				m[names[0]+names[j]] = v
			}
		}
		i++
	}
	return m
}

// linkWatch samples the host end's transmit counter while a run goes, to
// tell the time the link carried the run's bytes from the time it was in
// use: bytes / rate is the least time they take, and the span from the
// first to the last 100 ms in which the link sent a twentieth of what it
// could is how long it was in use.
type linkWatch struct {
	once   sync.Once
	stop   chan struct{}
	done   chan struct{}
	active time.Duration
}

func watchLink() *linkWatch {
	w := &linkWatch{stop: make(chan struct{}), done: make(chan struct{})}
	const every = 100 * time.Millisecond
	threshold := int64(linkRate() * every.Seconds() / 20)
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		last, _ := linkStat("tx_bytes")
		var first, end time.Time
		for {
			select {
			case <-w.stop:
				if !first.IsZero() {
					w.active = end.Sub(first)
				}
				return
			case now := <-t.C:
				tx, err := linkStat("tx_bytes")
				if err != nil {
					continue
				}
				if tx-last >= threshold {
					if first.IsZero() {
						first = now.Add(-every)
					}
					end = now
				}
				last = tx
			}
		}
	}()
	return w
}

// finish stops the sampling and returns the span the link was in use; it
// may be called again (a deferred call on an error path).
func (w *linkWatch) finish() time.Duration {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.active
}
