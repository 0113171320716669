//go:build linux

package main

import (
	"os"
	"testing"
)

func TestLinkRate(t *testing.T) {
	if got := linkRate(); got != 12.5e6 {
		t.Fatalf("linkRate() = %v, want 12.5e6 bytes/s for %q", got, linkSpec)
	}
}

func TestQdiscDrops(t *testing.T) {
	out := `qdisc tbf 8001: root refcnt 2 rate 100Mbit burst 4Kb lat 400ms
 Sent 46803418 bytes 31108 pkt (dropped 17, overlimits 40210 requeues 0)
 backlog 0b 0p requeues 0
qdisc noqueue 0: dev lo root refcnt 2
 Sent 0 bytes 0 pkt (dropped 3, overlimits 0 requeues 0)
`
	if got := qdiscDrops(out); got != 20 {
		t.Fatalf("qdiscDrops = %d, want 20", got)
	}
}

func TestNetstat(t *testing.T) {
	text := `Ip: Forwarding DefaultTTL
Ip: 2 64
Tcp: RtoAlgorithm RtoMin RetransSegs InErrs
Tcp: 1 200 4242 0
Udp: InDatagrams
Udp: 7
TcpExt: SyncookiesSent TCPTimeouts
TcpExt: 0 9
IpExt: InNoRoutes
IpExt: 0
`
	m := netstat(text)
	for k, want := range map[string]int64{"Tcp:RetransSegs": 4242, "TcpExt:TCPTimeouts": 9, "Udp:InDatagrams": 7, "Ip:DefaultTTL": 64} {
		if m[k] != want {
			t.Errorf("%s = %d, want %d (all: %v)", k, m[k], want, m)
		}
	}
	real := netstat(readFile(t, "/proc/net/snmp") + readFile(t, "/proc/net/netstat"))
	for _, k := range []string{"Tcp:RetransSegs", "TcpExt:TCPTimeouts"} {
		if _, ok := real[k]; !ok {
			t.Errorf("this kernel's /proc/net has no %s", k)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The kernel's text is outside input: no line of it may panic the parsers.
func FuzzLinkParsers(f *testing.F) {
	f.Add("Tcp: RtoAlgorithm RetransSegs\nTcp: 1 7\n Sent 1 bytes 1 pkt (dropped 3, overlimits 0 requeues 0)\n")
	f.Add("TcpExt: TCPTimeouts\nTcpExt: x\nA:\nA:\n(dropped ,")
	f.Fuzz(func(t *testing.T, text string) {
		netstat(text)
		qdiscDrops(text)
	})
}
