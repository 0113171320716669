//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the JSON document a run writes.
type report struct {
	Started  time.Time    `json:"started"`
	Seconds  float64      `json:"seconds"`
	Settings settings     `json:"settings"`
	Link     link         `json:"link"`
	Machine  machine      `json:"machine"`
	Corpora  []corpusInfo `json:"corpora"`
	Runs     []runResult  `json:"runs"`
	Goals    []goal       `json:"goals"`
}

type link struct {
	Qdisc   string `json:"qdisc"` // on both ends
	Veth    string `json:"veth"`  // host end, whose counters are read
	HostIP  string `json:"hostIP"`
	NSIP    string `json:"namespaceIP"`
	MTU     int    `json:"mtu"`
	Crosses string `json:"crosses"`
}

func linkInfo() link {
	return link{
		Qdisc: linkSpec, Veth: vethHost, HostIP: hostIP, NSIP: nsIP, MTU: linkMTU(),
		Crosses: "xrc: MinIO replication of the staging bucket, the target worker's SQS and DynamoDB traffic, the bridge's HEADs of replicas; rclone: its copy",
	}
}

type machine struct {
	CPU       string            `json:"cpu"`
	CPUs      int               `json:"cpus"`
	Kernel    string            `json:"kernel"`
	Go        string            `json:"go"`
	LoadStart string            `json:"loadAverageAtStart"`
	LoadEnd   string            `json:"loadAverageAtEnd"`
	MinIOData string            `json:"minioData"` // tmpfs or disk (chooseData)
	Versions  map[string]string `json:"versions"`
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

// goal is one of the goals, met or not.
type goal struct {
	Corpus string  `json:"corpus"`
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail"`
}

// goals: xrc's wall time against the faster rclone run (<= 0.5x on the
// mixed corpus, <= 1.05x on incompressible bytes), and its bytes across
// the link against zstd -3 of the corpus's tar (<= 1.02x), and restated,
// the TCP payload of those bytes.
func goals(rep *report) []goal {
	var gs []goal
	for _, c := range rep.Corpora {
		x, ok := findRun(rep, c.Name, sysXRC)
		if !ok {
			continue
		}
		var best *runResult
		for _, sys := range []string{sysRclone, sysRclone16} {
			if r, ok := findRun(rep, c.Name, sys); ok && (best == nil || r.WallSeconds < best.WallSeconds) {
				best = &r
			}
		}
		if best != nil {
			limit := 1.05
			if c.Name == "mixed" {
				limit = 0.5
			}
			v := x.WallSeconds / best.WallSeconds
			gs = append(gs, goal{Corpus: c.Name, Name: "wall time xrc / rclone", Value: v, Limit: limit, Met: v <= limit,
				Detail: fmt.Sprintf("xrc %.1f s vs %s %.1f s (the faster rclone run); the machine's CPUs were %.0f%% busy during xrc's run, %.0f%% during rclone's; "+
					"xrc's run kept them busy for %.1f CPU-s, which %d CPUs cannot do in less than %.1f s",
					x.WallSeconds, best.Label, best.WallSeconds, 100*x.MachineBusy, 100*best.MachineBusy,
					x.MachineCPUSeconds, rep.Machine.CPUs, x.MachineCPUSeconds/float64(max(rep.Machine.CPUs, 1)))})
		}
		v := float64(x.LinkBytes) / float64(c.Zstd3Bytes)
		detail := fmt.Sprintf("veth rx+tx %d B (of which %d B SQS/DynamoDB/bridge payload) vs zstd -3 %d B; the archives alone: %d B = %.3fx",
			x.LinkBytes, x.ControlBytes, c.Zstd3Bytes, x.ArchiveBytes, float64(x.ArchiveBytes)/float64(c.Zstd3Bytes))
		if best != nil {
			detail += fmt.Sprintf("; for scale, %s moved %.3fx the corpus's bytes across the link", best.Label, float64(best.LinkBytes)/float64(best.Bytes))
		}
		gs = append(gs, goal{Corpus: c.Name, Name: "bytes across the link / zstd -3 of the tar", Value: v, Limit: 1.02, Met: v <= 1.02, Detail: detail})
		// Restated: the link's own headers are a toll on every byte any
		// copy sends (rclone's incompressible copy crosses at ~1.07x its
		// payload), which zstd -3's output would pay as well.
		v = float64(x.LinkPayloadBytes) / float64(c.Zstd3Bytes)
		detail = fmt.Sprintf("restated: the veth's %d B less %d B of Ethernet, IP and TCP headers on each of its %d packets (%.1f%% of them), which any copy pays and zstd -3's bytes would too",
			x.LinkBytes, headerBytes, x.LinkPackets, 100*float64(x.LinkPackets*headerBytes)/float64(x.LinkBytes))
		if best != nil {
			detail += fmt.Sprintf("; for scale, %s's TCP payload was %.3fx the corpus's bytes", best.Label, float64(best.LinkPayloadBytes)/float64(best.Bytes))
		}
		gs = append(gs, goal{Corpus: c.Name, Name: "TCP payload across the link / zstd -3 of the tar", Value: v, Limit: 1.02, Met: v <= 1.02, Detail: detail})
	}
	return gs
}

func findRun(rep *report, corpus, sys string) (runResult, bool) {
	for _, r := range rep.Runs {
		if r.Corpus == corpus && r.System == sys {
			return r, true
		}
	}
	return runResult{}, false
}

func printReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "\nxrc end to end vs rclone, link: %s on both ends of a veth pair (MTU %d), %d CPUs (%s), load %s -> %s, MinIO data on %s\n",
		rep.Link.Qdisc, rep.Link.MTU, rep.Machine.CPUs, rep.Machine.CPU, rep.Machine.LoadStart, rep.Machine.LoadEnd, rep.Machine.MinIOData)
	for _, c := range rep.Corpora {
		fmt.Fprintf(w, "\ncorpus %s: %d objects (%d small), %s; zstd -3 of its tar %s (ratio %.2f)\n",
			c.Name, c.Objects, c.SmallObjects, mib(c.Bytes), mib(c.Zstd3Bytes), float64(c.Bytes)/float64(c.Zstd3Bytes))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "system\twall s\tupload s\tlink MiB\tlink/raw\tobjects/s\tworker CPU s\tpeak RSS MiB\tMinIO CPU s\tmachine busy\t")
		var x *runResult
		var rcs []runResult
		for _, r := range rep.Runs {
			if r.Corpus != c.Name {
				continue
			}
			if r.System == sysXRC {
				x = &r
			} else {
				rcs = append(rcs, r)
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.3f\t%s\t%.1f\t%s\t%.1f\t%.0f%%\t\n", r.Label, r.WallSeconds, r.UploadSeconds,
				float64(r.LinkBytes)/(1<<20), float64(r.LinkBytes)/float64(r.Bytes), rate(r.ObjectsPerSecond),
				r.WorkerCPUSeconds, rssCell(r), r.ServerCPUSeconds, 100*r.MachineBusy)
		}
		if x != nil {
			for _, rc := range rcs {
				fmt.Fprintf(tw, "xrc / %s\t%.2fx\t\t%.2fx\t\t%.2fx\t%.2fx\t%.2fx\t\t\t\n", rc.Label,
					x.WallSeconds/rc.WallSeconds, float64(x.LinkBytes)/float64(rc.LinkBytes),
					x.ObjectsPerSecond/rc.ObjectsPerSecond, x.WorkerCPUSeconds/rc.WorkerCPUSeconds,
					float64(x.WorkerPeakRSSBytes)/float64(rc.WorkerPeakRSSBytes))
			}
		}
		tw.Flush()
		for _, r := range rep.Runs {
			if r.Corpus == c.Name && r.LinkActiveSeconds > 0 {
				l := r.LinkLoss
				fmt.Fprintf(w, "  link, %s: its bytes need %.1f s at the rate, it was in use %.1f s (%.0f%%); the shaper dropped %d packets, TCP resent %d segments, %d timeouts\n",
					r.Label, r.LinkBusySeconds, r.LinkActiveSeconds, 100*r.LinkBusySeconds/r.LinkActiveSeconds, l.ShaperDrops, l.Retrans, l.Timeouts)
			}
		}
		if x != nil {
			fmt.Fprintf(w, "  xrc: %d archives, %s staged (%.3fx zstd -3 of the tar); %s of SQS/DynamoDB/bridge payload crossed the link\n",
				x.Archives, mib(x.ArchiveBytes), float64(x.ArchiveBytes)/float64(c.Zstd3Bytes), mib(x.ControlBytes))
			fmt.Fprintf(w, "  xrc timeline, seconds after the first upload: %s\n", x.Timeline)
		}
	}
	fmt.Fprintln(w, "\ngoals")
	if len(rep.Goals) == 0 {
		fmt.Fprintln(w, "  none judged: they need the xrc run (and a rclone run for the wall time)")
	}
	for _, g := range rep.Goals {
		met := "NOT MET"
		if g.Met {
			met = "met"
		}
		fmt.Fprintf(w, "  %-7s %-48s %.3f (goal <= %.2f)  %s\n          %s\n", g.Corpus, g.Name, g.Value, g.Limit, met, g.Detail)
	}
}

func rate(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.0f", x)
}

func rssCell(r runResult) string {
	if len(r.Workers) == 1 {
		return fmt.Sprintf("%.0f", float64(r.WorkerPeakRSSBytes)/(1<<20))
	}
	parts := make([]string, len(r.Workers))
	for i, w := range r.Workers {
		parts[i] = fmt.Sprintf("%.0f", float64(w.PeakRSSBytes)/(1<<20))
	}
	return fmt.Sprintf("%.0f (%s)", float64(r.WorkerPeakRSSBytes)/(1<<20), strings.Join(parts, "+"))
}

// writeReport writes the JSON under bench-e2e/results/ (outside the
// repository) and a copy as bench-e2e/latest.json.
func (b *bench) writeReport(rep *report) (string, error) {
	rep.Machine.LoadEnd = loadAvg()
	rep.Machine.Versions = b.versions
	if out, err := exec.Command("zstd", "--version").Output(); err == nil {
		rep.Machine.Versions["zstd"] = strings.TrimSpace(string(out))
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(b.dir, "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, b.started.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", err
	}
	return path, os.WriteFile(filepath.Join(b.dir, "latest.json"), data, 0o644)
}
