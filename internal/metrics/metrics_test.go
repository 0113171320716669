package metrics

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
