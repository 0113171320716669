package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEMFDeltasAndUnits(t *testing.T) {
	reg := prometheus.NewRegistry()
	bytesIn := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_test_bytes_total"}, []string{"rule"})
	held := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xrc_test_held"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "go_ignored_total"})
	reg.MustRegister(bytesIn, held, other)

	var out bytes.Buffer
	e := NewEMF(reg, &out, "xrc", "xrc_", map[string]string{"Service": "xrc-source"})
	bytesIn.WithLabelValues("logs").Add(100)
	held.Set(3)
	other.Inc()
	if err := e.Flush(time.UnixMilli(1000)); err != nil {
		t.Fatal(err)
	}
	bytesIn.WithLabelValues("logs").Add(50)
	if err := e.Flush(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var docs []map[string]any
	for _, l := range lines {
		var d map[string]any
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if strings.Contains(l, "go_ignored") {
			t.Errorf("metric without the prefix exported: %s", l)
		}
		docs = append(docs, d)
	}
	var sums []float64
	for _, d := range docs {
		if v, ok := d["xrc_test_bytes_total"].(float64); ok {
			sums = append(sums, v)
			if d["rule"] != "logs" || d["Service"] != "xrc-source" {
				t.Errorf("dimensions missing: %v", d)
			}
			meta := d["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
			if meta["Namespace"] != "xrc" {
				t.Errorf("namespace %v", meta["Namespace"])
			}
			for _, m := range meta["Metrics"].([]any) {
				if m.(map[string]any)["Name"] == "xrc_test_bytes_total" && m.(map[string]any)["Unit"] != "Bytes" {
					t.Errorf("unit %v", m)
				}
			}
		}
	}
	if len(sums) != 2 || sums[0] != 100 || sums[1] != 50 {
		t.Errorf("counter deltas = %v, want [100 50]", sums)
	}
}

// slowFirst gathers its first snapshot, then waits for release before
// returning it, as a flush preempted between gathering and writing.
type slowFirst struct {
	prometheus.Gatherer
	once    sync.Once
	gotten  chan struct{}
	release chan struct{}
}

func (s *slowFirst) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := s.Gatherer.Gather()
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.gotten)
		select {
		case <-s.release:
		case <-time.After(200 * time.Millisecond): // the other flush is blocked behind this one
		}
	}
	return mfs, err
}

// TestOverlappingFlushes: the ticker's flush and the final one, at once,
// never write a negative count and together write all of it.
func TestOverlappingFlushes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_test_total"})
	reg.MustRegister(c)
	g := &slowFirst{Gatherer: reg, gotten: make(chan struct{}), release: make(chan struct{})}
	var out bytes.Buffer // written under the EMF's lock
	e := NewEMF(g, &out, "xrc", "xrc_", nil)
	c.Add(5)
	done := make(chan struct{})
	go func() { _ = e.Flush(time.UnixMilli(1000)); close(done) }()
	<-g.gotten
	c.Add(3) // counted during the drain
	second := make(chan struct{})
	go func() { _ = e.Flush(time.UnixMilli(2000)); close(second) }()
	time.Sleep(20 * time.Millisecond)
	close(g.release)
	<-done
	<-second
	var sum float64
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		v, _ := d["xrc_test_total"].(float64)
		if v < 0 {
			t.Errorf("negative count written: %s", l)
		}
		sum += v
	}
	if sum != 8 {
		t.Errorf("flushes wrote %v in all, want 8", sum)
	}
}

// failOnce fails its first write.
type failOnce struct {
	bytes.Buffer
	failed bool
}

func (f *failOnce) Write(p []byte) (int, error) {
	if !f.failed {
		f.failed = true
		return 0, errors.New("stdout closed")
	}
	return f.Buffer.Write(p)
}

// TestFailedWriteKeepsItsDeltas: counts a flush failed to write go out
// with the next flush, not lost.
func TestFailedWriteKeepsItsDeltas(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_test_objects_total"})
	reg.MustRegister(n)
	var out failOnce
	e := NewEMF(reg, &out, "xrc", "xrc_", nil)
	n.Add(5)
	if err := e.Flush(time.UnixMilli(1000)); err == nil {
		t.Fatal("the failed write was not reported")
	}
	n.Add(2)
	if err := e.Flush(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if d["xrc_test_objects_total"] != 7.0 {
		t.Errorf("written %v, want 7 (5 of the failed flush and 2 since)", d["xrc_test_objects_total"])
	}
}

// TestHistogramsAsDistributions: a histogram's observations since the
// last flush go out as an EMF distribution (each bucket's count at its
// upper bound, values distinct, with the statistic set AWS's emitters
// send), in a document of its own, so CloudWatch gives percentiles and a
// maximum; its count and sum as before.
func TestHistogramsAsDistributions(t *testing.T) {
	reg := prometheus.NewRegistry()
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_test_latency_seconds", Buckets: []float64{1, 10, 100}}, []string{"rule"})
	reg.MustRegister(lat)
	var out bytes.Buffer
	e := NewEMF(reg, &out, "xrc", "xrc_", nil)
	for _, v := range []float64{0.5, 0.7, 5, 500} {
		lat.WithLabelValues("r").Observe(v)
	}
	if err := e.Flush(time.UnixMilli(1000)); err != nil {
		t.Fatal(err)
	}
	lat.WithLabelValues("r").Observe(50)
	lat.WithLabelValues("r").Observe(5000) // past the last bound: counted at it
	if err := e.Flush(time.UnixMilli(2000)); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(time.UnixMilli(3000)); err != nil { // nothing new: no line
		t.Fatal(err)
	}
	var dists, counts []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if c, ok := d["xrc_test_latency_seconds_count"]; ok {
			counts = append(counts, fmt.Sprint(c))
		}
		dist, ok := d["xrc_test_latency_seconds"]
		if !ok {
			continue
		}
		if _, ok := d["xrc_test_latency_seconds_count"]; ok || d["rule"] != "r" {
			t.Errorf("distribution not in a document of its own, with its labels: %s", l)
		}
		b, _ := json.Marshal(dist)
		dists = append(dists, string(b))
		defined := false
		for _, m := range d["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Metrics"].([]any) {
			if m.(map[string]any)["Name"] == "xrc_test_latency_seconds" {
				defined = m.(map[string]any)["Unit"] == "Seconds"
			}
		}
		if !defined {
			t.Errorf("distribution not declared in seconds: %s", l)
		}
	}
	want := []string{
		`{"Count":4,"Counts":[2,1,1],"Max":126.55,"Min":1,"Sum":506.2,"Values":[1,10,100]}`,
		`{"Count":2,"Counts":[2],"Max":2525,"Min":100,"Sum":5050,"Values":[100]}`,
	}
	if strings.Join(dists, "\n") != strings.Join(want, "\n") {
		t.Errorf("distributions:\n%s\nwant:\n%s", strings.Join(dists, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(counts, ",") != "4,2" {
		t.Errorf("counts %v, want 4 then 2", counts)
	}
}

func TestUnitOf(t *testing.T) {
	for name, want := range map[string]string{
		"xrc_target_bytes_total":                   "Bytes",
		"xrc_source_bytes_in_total":                "Bytes",
		"xrc_source_bytes_saved_total":             "Bytes",
		"xrc_target_staging_read_bytes_total":      "Bytes",
		"xrc_source_archive_duration_seconds":      "Seconds",
		"xrc_source_compression_cpu_seconds_total": "Seconds",
		"xrc_source_archive_ratio":                 "None",
		"xrc_target_objects_total":                 "Count",
	} {
		if got := unitOf(name); got != want {
			t.Errorf("unitOf(%s) = %s, want %s", name, got, want)
		}
	}
}

// brokenCollector is a collector whose every Collect fails.
type brokenCollector struct{ desc *prometheus.Desc }

func (b brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }
func (b brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(b.desc, errors.New("collector failed"))
}

// TestFlushWritesWhatItCan: a collector that fails, or a series that
// cannot be written, costs its own figures, not every other series' (a
// gather error dropped the whole interval, every minute, and the alarms
// treat missing data as fine); Run reports each failed flush.
func TestFlushWritesWhatItCan(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_test_objects_total"}, []string{"rule"})
	reg.MustRegister(n, brokenCollector{prometheus.NewDesc("xrc_test_broken", "fails", nil, nil)})
	n.WithLabelValues("a").Add(3)
	n.WithLabelValues("b").Add(4)
	var out failOnce
	e := NewEMF(reg, &out, "xrc", "xrc_", nil)
	if err := e.Flush(time.UnixMilli(1000)); err == nil || !strings.Contains(err.Error(), "collector failed") {
		t.Errorf("flush: %v, want the collector's failure (and the failed write's)", err)
	}
	if !strings.Contains(out.String(), `"rule":"b"`) {
		t.Errorf("the series after the one that failed to write were not written: %q", out.String())
	}
	var reported []error
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Run(ctx, time.Hour, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	})
	if len(reported) != 1 {
		t.Errorf("Run reported %d failed flushes, want 1", len(reported))
	}
}

// TestNonFiniteValueSkipped: a value JSON cannot hold (NaN, ±Inf) is
// skipped and reported; the figures sharing its document are written.
// It made the document fail to encode, at every flush.
func TestNonFiniteValueSkipped(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xrc_test_ratio"})
	n := prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_test_failures_total"})
	reg.MustRegister(g, n)
	g.Set(math.NaN())
	n.Add(2)
	var out bytes.Buffer
	e := NewEMF(reg, &out, "xrc", "xrc_", nil)
	if err := e.Flush(time.UnixMilli(1000)); err == nil || !strings.Contains(err.Error(), "xrc_test_ratio") {
		t.Errorf("flush: %v, want the NaN named", err)
	}
	if !strings.Contains(out.String(), `"xrc_test_failures_total":2`) {
		t.Errorf("the counter beside the NaN was not written: %q", out.String())
	}
	// Said once, not at every flush; a histogram with an infinite sum
	// costs its own figures only.
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xrc_test_latency_seconds", Buckets: []float64{1, 2}})
	reg.MustRegister(h)
	h.Observe(math.Inf(1))
	n.Add(1)
	out.Reset()
	if err := e.Flush(time.UnixMilli(61000)); err == nil || strings.Contains(err.Error(), "xrc_test_ratio") || !strings.Contains(err.Error(), "xrc_test_latency_seconds_sum") {
		t.Errorf("second flush: %v, want only the histogram's sum named", err)
	}
	if !strings.Contains(out.String(), `"xrc_test_failures_total":1`) {
		t.Errorf("the counter beside the infinite histogram was not written: %q", out.String())
	}
}
