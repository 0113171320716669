package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/app"
	xrcbackfill "github.com/xrc-dev/xrc/internal/backfill"
	"github.com/xrc-dev/xrc/internal/cli"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/deliver"
	"github.com/xrc-dev/xrc/internal/source"
)

// TestAlarmMetricsAreEmitted: every metric of xrc's own (the stack name's
// namespace) that an alarm or a dashboard widget reads is one the code
// writes. CloudWatch keeps a metric per name and dimension set: a label
// added to a counter, or a name misspelt here, makes another metric, and
// an alarm that treats missing data as not breaching never fires again.
// So the metrics are not written out here a second time: the workers'
// come from their own registrations (source.NewMetrics, deliver.NewMetrics)
// on a process started as the workers start (app.Start: its EMF writer and
// shared dimensions), every series touched once, and the backfill's from
// the command's own writer (cli.WriteBackfillEMF).
func TestAlarmMetricsAreEmitted(t *testing.T) {
	isolateAWS(t)
	for name, s := range map[string]*synthesized{"example": exampleApp(t), "variant": variantApp(t)} {
		t.Run(name, func(t *testing.T) {
			read := readMetrics(t, s)
			// A collector that found nothing would pass anything.
			for _, from := range []string{"alarm", "dashboard", "search"} {
				if !slices.ContainsFunc(read, func(m readMetric) bool { return m.From == from }) {
					t.Fatalf("no metric of namespace %s read by any %s: is the template read right?", s.d.Config.Settings.StackName, from)
				}
			}
			written := writtenMetrics(t, s.d.Config)
			t.Logf("%d metric reads of alarms and widgets, against %d metrics written", len(read), len(written))
			for _, m := range read {
				w, ok := written[m.key()]
				switch {
				case !ok:
					t.Errorf("%s reads %s, which xrc does not write; it writes %s under that name", m.Where, m, alike(written, m))
				case isPercentile(m.Stat) && !w.Distribution:
					t.Errorf("%s reads %s at %s, but xrc writes it as a single value, not a distribution: no percentile", m.Where, m, m.Stat)
				}
			}
		})
	}
}

// readMetric is a metric an alarm or a widget reads.
type readMetric struct {
	Namespace, Name string
	Dims            []string // dimension names, sorted
	Service         string   // the Service dimension's value
	Stat            string
	From, Where     string // alarm, dashboard or search; which
}

func (m readMetric) key() string { return metricKey(m.Namespace, m.Name, m.Dims, m.Service) }

func (m readMetric) String() string {
	return fmt.Sprintf("%s/%s {%s} (Service %s)", m.Namespace, m.Name, strings.Join(m.Dims, ","), m.Service)
}

// metricKey is what tells CloudWatch metrics apart: namespace, name,
// dimension names (the values but Service's are the region's and the
// rule's, which the workers take from the same config); and the Service
// dimension, which says which process writes it.
func metricKey(namespace, name string, dims []string, service string) string {
	dims = slices.Sorted(slices.Values(dims))
	return namespace + "|" + name + "|" + strings.Join(dims, ",") + "|" + service
}

func isPercentile(stat string) bool { return regexp.MustCompile(`^p\d+(\.\d+)?$`).MatchString(stat) }

// awsNamespace: the others' metrics the stacks read; any other
// namespace but the stack name's is a mistake.
func awsNamespace(ns string) bool {
	return strings.HasPrefix(ns, "AWS/") || ns == "ECS/ContainerInsights"
}

// readMetrics collects, in every region's template, the metrics of the
// stack name's namespace that alarms (their metric, or those of their
// metric math) and dashboard widgets (metrics, and SEARCH expressions'
// schemas) read.
func readMetrics(t *testing.T, s *synthesized) []readMetric {
	t.Helper()
	ours := s.d.Config.Settings.StackName
	var out []readMetric
	add := func(m readMetric) {
		switch {
		case m.Namespace == ours:
			out = append(out, m)
		case !awsNamespace(m.Namespace):
			t.Errorf("%s reads %s: namespace neither the stack name's (%s) nor AWS's", m.Where, m, ours)
		}
	}
	for _, region := range sortedKeys(s.json) {
		tm := s.json[region]
		alarms := ofType(tm, "AWS::CloudWatch::Alarm")
		for _, id := range sortedKeys(alarms) {
			p := propsOf(alarms[id])
			where := region + " alarm " + renderIntrinsic(p["AlarmName"])
			if p["MetricName"] != nil {
				stat, _ := p["Statistic"].(string)
				if stat == "" {
					stat, _ = p["ExtendedStatistic"].(string)
				}
				add(cfnMetric(p, stat, "alarm", where))
			}
			metrics, _ := p["Metrics"].([]any)
			for _, q := range metrics {
				q, _ := q.(map[string]any)
				if stat, ok := q["MetricStat"].(map[string]any); ok {
					add(cfnMetric(stat["Metric"].(map[string]any), fmt.Sprint(stat["Stat"]), "alarm", where))
				}
				if e, ok := q["Expression"].(string); ok && strings.Contains(e, "SEARCH") {
					t.Errorf("%s: a SEARCH in an alarm, which this test does not read: %s", where, e)
				}
			}
		}
		dashboards := ofType(tm, "AWS::CloudWatch::Dashboard")
		for _, id := range sortedKeys(dashboards) {
			raw := renderIntrinsic(propsOf(dashboards[id])["DashboardBody"])
			var body struct {
				Widgets []struct {
					Properties struct {
						Title   string
						Metrics [][]any
					}
				}
			}
			if err := json.Unmarshal([]byte(raw), &body); err != nil {
				t.Fatalf("%s dashboard %s: %v\n%s", region, id, err, raw)
			}
			for _, w := range body.Widgets {
				where := fmt.Sprintf("%s dashboard widget %q", region, w.Properties.Title)
				for _, row := range w.Properties.Metrics {
					widgetMetrics(t, row, where, add)
				}
			}
		}
	}
	return out
}

// cfnMetric reads an alarm's metric (Namespace, MetricName, Dimensions).
func cfnMetric(p map[string]any, stat, from, where string) readMetric {
	m := readMetric{Namespace: renderIntrinsic(p["Namespace"]), Name: renderIntrinsic(p["MetricName"]), Stat: stat, From: from, Where: where}
	dims, _ := p["Dimensions"].([]any)
	for _, d := range dims {
		d, _ := d.(map[string]any)
		name := renderIntrinsic(d["Name"])
		m.Dims = append(m.Dims, name)
		if name == "Service" {
			m.Service = renderIntrinsic(d["Value"])
		}
	}
	slices.Sort(m.Dims)
	return m
}

// searchExpr is the form of dashboard.go's searches: the schema
// {namespace, dimension names...}, the metric's name and search terms,
// the statistic.
var (
	searchExpr = regexp.MustCompile(`^SEARCH\('\{([^}]*)\}\s+MetricName="([^"]+)"([^']*)',\s*'([^']+)'`)
	searchTerm = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// widgetMetrics reads one row of a widget's metrics: a metric
// [namespace, name, dimension, value, ..., {options}], or an expression
// [{expression, ...}], whose SEARCH schema it reads, and gives add them.
func widgetMetrics(t *testing.T, row []any, where string, add func(readMetric)) {
	t.Helper()
	if len(row) == 0 {
		return
	}
	opts, _ := row[len(row)-1].(map[string]any)
	if e, ok := opts["expression"].(string); ok {
		if !strings.Contains(e, "SEARCH") {
			return // math over metrics of rows of their own
		}
		g := searchExpr.FindStringSubmatch(e)
		if g == nil {
			t.Errorf("%s: a SEARCH this test does not read: %s", where, e)
			return
		}
		var schema []string
		for _, q := range strings.Split(g[1], ",") {
			u, err := strconv.Unquote(strings.TrimSpace(q))
			if err != nil {
				u = strings.TrimSpace(q)
			}
			schema = append(schema, u)
		}
		m := readMetric{Namespace: schema[0], Name: g[2], Dims: slices.Sorted(slices.Values(schema[1:])), Stat: g[4], From: "search", Where: where}
		for _, term := range searchTerm.FindAllStringSubmatch(g[3], -1) {
			if term[1] == "Service" {
				m.Service = term[2]
			}
		}
		add(m)
		return
	}
	var fields []string
	for _, f := range row {
		s, ok := f.(string)
		if !ok {
			break
		}
		fields = append(fields, s)
	}
	if len(fields) < 2 || len(fields)%2 != 0 || slices.Contains(fields, ".") {
		t.Errorf("%s: a metric row this test does not read: %v", where, row)
		return
	}
	m := readMetric{Namespace: fields[0], Name: fields[1], From: "dashboard", Where: where}
	m.Stat, _ = opts["stat"].(string)
	for i := 2; i < len(fields); i += 2 {
		m.Dims = append(m.Dims, fields[i])
		if fields[i] == "Service" {
			m.Service = fields[i+1]
		}
	}
	slices.Sort(m.Dims)
	add(m)
}

// writtenMetric is a metric an EMF line of xrc's defines.
type writtenMetric struct {
	Distribution bool // values and counts: percentiles
}

// writtenMetrics runs what writes metrics with cfg: both workers, started
// as their binaries start them (cmd/xrc-source and cmd/xrc-target name
// their processes so; the Lambda functions give the same Service), and
// the backfill, and reads the metrics their EMF lines define.
func writtenMetrics(t *testing.T, cfg *config.Config) map[string]writtenMetric {
	t.Helper()
	path := testConfig(t, cfg)
	region := cfg.Settings.Regions[0].Name
	var lines []byte
	lines = append(lines, workerEMF(t, path, "xrc-source", region, func(r prometheus.Registerer) { source.NewMetrics(r) })...)
	lines = append(lines, workerEMF(t, path, "xrc-target", region, func(r prometheus.Registerer) { deliver.NewMetrics(r) })...)
	for i := range cfg.Rules {
		lines = append(lines, backfillEMF(t, cfg, &cfg.Rules[i])...)
	}
	out := map[string]writtenMetric{}
	n := 0
	for _, line := range bytes.Split(lines, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"_aws"`)) {
			continue // a log line
		}
		n++
		var doc map[string]any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("EMF line %s: %v", line, err)
		}
		var aws struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name string }
			}
		}
		raw, _ := json.Marshal(doc["_aws"])
		if err := json.Unmarshal(raw, &aws); err != nil {
			t.Fatalf("EMF line %s: _aws: %v", line, err)
		}
		service, _ := doc["Service"].(string)
		for _, d := range aws.CloudWatchMetrics {
			for _, dims := range d.Dimensions {
				for _, m := range d.Metrics {
					_, dist := doc[m.Name].(map[string]any)
					k := metricKey(d.Namespace, m.Name, dims, service)
					out[k] = writtenMetric{Distribution: out[k].Distribution || dist}
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("no EMF line written:\n%s", lines)
	}
	return out
}

// alike lists the written metrics of m's namespace and name, for a
// message.
func alike(written map[string]writtenMetric, m readMetric) string {
	var same []string
	for k := range written {
		if p := strings.SplitN(k, "|", 4); p[0] == m.Namespace && p[1] == m.Name {
			same = append(same, fmt.Sprintf("{%s} (Service %s)", p[2], p[3]))
		}
	}
	if len(same) == 0 {
		return "nothing"
	}
	slices.Sort(same)
	return strings.Join(same, ", ")
}

// testConfig writes cfg for the processes started here: their metrics
// server on a free port.
func testConfig(t *testing.T, cfg *config.Config) string {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	settings := doc["settings"].(map[string]any)
	worker, _ := settings["worker"].(map[string]any)
	if worker == nil {
		worker = map[string]any{}
		settings["worker"] = worker
	}
	worker["metricsAddr"] = "127.0.0.1:0"
	raw, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(raw); err != nil {
		t.Fatalf("the test's config: %v", err)
	}
	path := filepath.Join(t.TempDir(), "xrc.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// workerEMF starts a worker process as app.Main does, registers its
// role's metrics as its binary does, touches every series once and
// returns what the process wrote on stopping (its last flush).
func workerEMF(t *testing.T, cfgPath, name, region string, register func(prometheus.Registerer)) []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	p, err := app.Start(ctx, name, []string{"-config", cfgPath, "-region", region}, func(string) string { return "" }, &out)
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	rec := &recorder{Registerer: p.Registry}
	register(rec)
	touch(t, name, rec.collectors)
	p.Stop()
	return out.Bytes()
}

// recorder keeps what is registered on it.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
	r.Registerer.MustRegister(cs...)
}

// touch makes one series of every collector: a vector's with a value for
// each of its labels, whatever their number.
func touch(t *testing.T, who string, cs []prometheus.Collector) {
	t.Helper()
	if len(cs) == 0 {
		t.Fatalf("%s registered no metric", who)
	}
	for _, c := range cs {
		switch m := c.(type) {
		case *prometheus.CounterVec:
			anySeries(t, who, m.GetMetricWithLabelValues).Inc()
		case *prometheus.GaugeVec:
			anySeries(t, who, m.GetMetricWithLabelValues).Set(1)
		case *prometheus.HistogramVec:
			anySeries(t, who, m.GetMetricWithLabelValues).Observe(1)
		case prometheus.Gauge: // before Counter: a gauge adds too
			m.Set(1)
		case prometheus.Counter:
			m.Inc()
		case prometheus.Histogram:
			m.Observe(1)
		default:
			t.Errorf("%s: metric %T, which this test cannot make a series of", who, c)
		}
	}
}

// anySeries returns the series of a vector with every label "x": the
// first number of values it takes.
func anySeries[M any](t *testing.T, who string, get func(...string) (M, error)) M {
	t.Helper()
	for n := range 16 {
		if m, err := get(slices.Repeat([]string{"x"}, n)...); err == nil {
			return m
		}
	}
	t.Fatalf("%s: a metric vector takes no number of labels up to 15", who)
	panic("unreachable")
}

// backfillEMF is the EMF line a backfill run of rule writes with -emf.
func backfillEMF(t *testing.T, cfg *config.Config, rule *config.Rule) []byte {
	t.Helper()
	var stdout bytes.Buffer
	env := cli.Env{Stdout: &stdout, Stderr: &stdout, Getenv: func(string) string { return "" }, Now: time.Now}
	if err := cli.WriteBackfillEMF(env, cfg, rule, xrcbackfill.Counts{}); err != nil {
		t.Fatalf("backfill metrics of rule %s: %v", rule.ID, err)
	}
	return stdout.Bytes()
}

// isolateAWS gives the SDK made-up credentials and no profile or
// endpoint of the machine's.
func isolateAWS(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_DEFAULT_PROFILE": "", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
	} {
		t.Setenv(k, v)
	}
}

// lockedBuffer is a process's stdout: its EMF goroutine may write while
// the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
