// Package metrics serves Prometheus metrics and mirrors them to CloudWatch as
// Embedded Metric Format (EMF) lines on stdout, so a Fargate task needs no
// agent and no PutMetricData permission: awslogs ships the lines and
// CloudWatch extracts the metrics. One registry is the single source of truth
// for both.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// EMF writes the xrc_* metrics of a registry as CloudWatch EMF documents:
// counters and histogram counts/sums as deltas since the previous flush,
// gauges as values, and each histogram's observations since then as a
// distribution (its buckets' upper bounds and counts), so CloudWatch has
// percentiles and a maximum, not only a mean. Labels become dimensions.
type EMF struct {
	reg        prometheus.Gatherer
	w          io.Writer
	namespace  string
	dimensions map[string]string // added to every document (service, region)
	prefix     string

	mu        sync.Mutex
	last      map[string]float64 // previous cumulative value per series
	nonFinite map[string]bool    // series said not finite (said once)
}

// NewEMF returns an EMF writer for the metrics of reg named prefix*.
func NewEMF(reg prometheus.Gatherer, w io.Writer, namespace, prefix string, dimensions map[string]string) *EMF {
	return &EMF{reg: reg, w: w, namespace: namespace, prefix: prefix, dimensions: dimensions, last: map[string]float64{}, nonFinite: map[string]bool{}}
}

// Run flushes every interval until ctx ends, then flushes once more so the
// last interval's work is not lost on shutdown. failed hears of each
// flush that failed: the alarms treat missing data as not breaching, so a
// flush failing quietly would silence them all.
func (e *EMF) Run(ctx context.Context, interval time.Duration, failed func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			now = time.Now() // not when the wait began: the last interval is stamped as it ends
		case now = <-t.C:
		}
		if err := e.Flush(now); err != nil {
			failed(err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

type emfSeries struct {
	dims   map[string]string
	values map[string]any // a number, or a distribution
	units  map[string]string
	// seen is the cumulative value of each counter written, taken as the
	// previous one only once the document is written: a failed write's
	// deltas go in the next flush's.
	seen map[string]float64
}

// Flush writes one EMF line per distinct label set that changed.
func (e *EMF) Flush(now time.Time) error {
	// Gathered under the lock: two flushes at once (the ticker's and the
	// final one) must each take the deltas against the other's snapshot
	// in turn, or one would write a negative count and drop the other's.
	e.mu.Lock()
	defer e.mu.Unlock()
	// A collector's failure leaves the others' families: written, and
	// the failure reported with what else fails.
	mfs, err := e.reg.Gather()
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("gathering metrics: %w", err))
	}
	series := map[string]*emfSeries{}
	// series returns m's series, made on first use.
	seriesOf := func(m *dto.Metric, apart string) *emfSeries {
		dims := map[string]string{}
		for k, v := range e.dimensions {
			dims[k] = v
		}
		for _, lp := range m.GetLabel() {
			dims[lp.GetName()] = lp.GetValue()
		}
		sk := labelKey(m)
		if apart != "" {
			sk += "#" + apart
		}
		s := series[sk]
		if s == nil {
			s = &emfSeries{dims: dims, values: map[string]any{}, units: map[string]string{}, seen: map[string]float64{}}
			series[sk] = s
		}
		return s
	}
	add := func(m *dto.Metric, name, unit string, v float64, delta bool) {
		id, cum := name+"{"+labelKey(m)+"}", v
		if math.IsNaN(v) || math.IsInf(v, 0) {
			// JSON has no such number: the series' whole document,
			// every other figure in it, would be refused at each flush.
			// Said once: a counter stays so for the process's life.
			if !e.nonFinite[id] {
				e.nonFinite[id] = true
				errs = append(errs, fmt.Errorf("%s is %v: not written", id, v))
			}
			return
		}
		if delta {
			if v == e.last[id] {
				return
			}
			v -= e.last[id]
		}
		s := seriesOf(m, "")
		s.values[name] = v
		s.units[name] = unit
		if delta {
			s.seen[id] = cum
		}
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, e.prefix) {
			continue
		}
		unit := unitOf(name)
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(m, name, unit, m.GetCounter().GetValue(), true)
			case dto.MetricType_GAUGE:
				add(m, name, unit, m.GetGauge().GetValue(), false)
			case dto.MetricType_HISTOGRAM:
				add(m, name+"_count", "Count", float64(m.GetHistogram().GetSampleCount()), true)
				add(m, name+"_sum", unit, m.GetHistogram().GetSampleSum(), true)
				if d := e.distribution(m, name); d != nil {
					// A document of its own: a distribution CloudWatch
					// refused would take the series' other metrics (an
					// alarm's) with it.
					s := seriesOf(m, name)
					s.values[name] = d.dist
					s.units[name] = unit
					for id, v := range d.seen {
						s.seen[id] = v
					}
				}
			}
		}
	}
	keys := make([]string, 0, len(series))
	for k := range series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := e.write(now, series[k]); err != nil {
			// Its deltas go in the next flush's; the other series are
			// written still.
			errs = append(errs, err)
			continue
		}
		for id, v := range series[k].seen {
			e.last[id] = v
		}
	}
	return errors.Join(errs...)
}

// labelKey names m's label set: name=value pairs, sorted.
func labelKey(m *dto.Metric) string {
	parts := make([]string, 0, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// emfDistribution is the form AWS's own EMF emitters give many
// observations of one metric: distinct values with their counts, and the
// statistic set.
type emfDistribution struct {
	Values []float64 `json:"Values"`
	Counts []float64 `json:"Counts"`
	Max    float64   `json:"Max"`
	Min    float64   `json:"Min"`
	Count  float64   `json:"Count"`
	Sum    float64   `json:"Sum"`
}

type histogramDelta struct {
	dist emfDistribution
	seen map[string]float64 // cumulative count per bucket, as add's seen
}

// distribution returns the observations of histogram m since the last
// flush, each bucket's at its upper bound (those past the last bound at
// that bound: CloudWatch then reads "at least"; Min and Max are bounds
// too); nil when none. Sum is exact.
func (e *EMF) distribution(m *dto.Metric, name string) *histogramDelta {
	h := m.GetHistogram()
	key := name + "{" + labelKey(m) + "}"
	d := &histogramDelta{seen: map[string]float64{}}
	var below, bound float64 // cumulative delta of the buckets before; last finite bound
	step := func(id string, cum, value float64) {
		delta := cum - e.last[id]
		if n := delta - below; n > 0 {
			if k := len(d.dist.Values) - 1; k >= 0 && d.dist.Values[k] == value {
				d.dist.Counts[k] += n // past the last bound: at it
			} else {
				d.dist.Values = append(d.dist.Values, value)
				d.dist.Counts = append(d.dist.Counts, n)
			}
			d.dist.Count += n
		}
		below = delta
		d.seen[id] = cum
	}
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue // the total below stands for it
		}
		bound = b.GetUpperBound()
		step(key+"le="+strconv.FormatFloat(bound, 'g', -1, 64), float64(b.GetCumulativeCount()), bound)
	}
	step(key+"le=+Inf", float64(h.GetSampleCount()), bound)
	if len(d.dist.Values) == 0 {
		return nil
	}
	// Its own baseline for the sum, as for the buckets: its document may
	// be written when the _sum's is not, or the other way round.
	sumID := key + "#sum"
	if s := h.GetSampleSum(); math.IsNaN(s) || math.IsInf(s, 0) {
		return nil // its _sum says so (add), once
	}
	d.dist.Sum = h.GetSampleSum() - e.last[sumID]
	d.seen[sumID] = h.GetSampleSum()
	// Bounds, kept about the mean (Min <= Sum/Count <= Max), as a
	// statistic set must be: observations lie below their bucket's bound,
	// and past the last one.
	mean := d.dist.Sum / d.dist.Count
	d.dist.Min, d.dist.Max = min(d.dist.Values[0], mean), max(d.dist.Values[len(d.dist.Values)-1], mean)
	return d
}

func (e *EMF) write(now time.Time, s *emfSeries) error {
	doc := map[string]any{}
	dimNames := make([]string, 0, len(s.dims))
	for k, v := range s.dims {
		doc[k] = v
		dimNames = append(dimNames, k)
	}
	sort.Strings(dimNames)
	var defs []map[string]string
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		doc[n] = s.values[n]
		defs = append(defs, map[string]string{"Name": n, "Unit": s.units[n]})
	}
	doc["_aws"] = map[string]any{
		"Timestamp": now.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  e.namespace,
			"Dimensions": [][]string{dimNames},
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = e.w.Write(append(b, '\n'))
	return err
}

// unitOf maps Prometheus base-unit suffixes to CloudWatch units; and bytes
// named before a qualifier (xrc_source_bytes_in_total), as the source's
// are.
func unitOf(name string) string {
	switch {
	case strings.HasSuffix(name, "_bytes_total"), strings.HasSuffix(name, "_bytes"),
		strings.Contains(name, "_bytes_") && strings.HasSuffix(name, "_total"):
		return "Bytes"
	case strings.HasSuffix(name, "_seconds"), strings.HasSuffix(name, "_seconds_total"):
		return "Seconds"
	case strings.HasSuffix(name, "_ratio"):
		return "None"
	default:
		return "Count"
	}
}

// Sum adds up the series of metric name in g (counters, gauges, untyped)
// whose labels include every label=value pair given: what a test, a report
// or an operator tool asks of a registry.
func Sum(g prometheus.Gatherer, name string, labels ...string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, fmt.Errorf("gathering metrics: %w", err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if v, ok := have[labels[i]]; !ok || v != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Untyped != nil:
				sum += m.GetUntyped().GetValue()
			}
		}
	}
	return sum, nil
}
