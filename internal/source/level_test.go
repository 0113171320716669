package source

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/localstack"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/stats"
)

// TestChooseWithoutLearning: with the adaptive choice disabled, objects
// take their rule's level, and content that is already compressed (by type,
// encoding or extension) or that the probe finds incompressible is stored.
func TestChooseWithoutLearning(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{Adaptive: config.Adaptive{Disabled: true, MinLevel: -7, MaxLevel: 19}}}
	w := &Worker{Deps: Deps{Config: cfg, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry()), Clock: clockwork.NewRealClock()}}
	rule := &config.Rule{ID: "r", Level: 9}
	w.rules = []*config.Rule{rule}
	lv := newLevels(w)
	random := corpus.Random(100_000, 1)
	text := corpus.Generate("text", 100_000)
	tests := []struct {
		name   string
		obj    manifest.Object
		sample []byte
		want   adaptive.Arm
		class  adaptive.Class
	}{
		{"text keeps the rule level", manifest.Object{Key: "logs/a.txt", ContentType: "text/plain"}, text, 9, adaptive.Text},
		{"unknown that compresses", manifest.Object{Key: "data/blob"}, text, 9, adaptive.Unknown},
		{"unknown that does not", manifest.Object{Key: "data/blob"}, random, adaptive.Store, adaptive.Incompressible},
		{"jpeg by type", manifest.Object{Key: "a", ContentType: "image/jpeg"}, random, adaptive.Store, adaptive.Compressed},
		{"svg is text", manifest.Object{Key: "a", ContentType: "image/svg+xml"}, text, 9, adaptive.XML},
		{"gzip encoding", manifest.Object{Key: "a.json", ContentType: "application/json", ContentEncoding: "gzip"}, random, adaptive.Store, adaptive.Compressed},
		{"extension, any case", manifest.Object{Key: "backups/DB.TAR.GZ"}, random, adaptive.Store, adaptive.Compressed},
		{"extension only at the end", manifest.Object{Key: "x.gz/readme"}, text, 9, adaptive.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class, arm := lv.choose(rule, &tt.obj, tt.sample, 0, time.Now())
			if arm != tt.want || class != tt.class {
				t.Errorf("choose(%+v) = %s, %s; want %s, %s", tt.obj, class, arm, tt.class, tt.want)
			}
		})
	}
}

// TestSplitKeepsManifestsReadable: a batch whose manifest would pass the
// readers' limits becomes several archives, each well inside them.
func TestSplitKeepsManifestsReadable(t *testing.T) {
	md := map[string]string{}
	for i := range 200 {
		md[fmt.Sprintf("k%03d", i)] = "v"
	}
	entries := make([]entry, 12000) // 2.4M entries in all: over MaxEntries
	for i := range entries {
		entries[i].obj = manifest.Object{Bucket: "b", Key: fmt.Sprintf("k%d", i), Metadata: md}
	}
	parts := split(entries)
	if len(parts) < 5 {
		t.Fatalf("%d parts, want at least 5", len(parts))
	}
	total := 0
	for _, p := range parts {
		n := 0
		for _, e := range p {
			n += len(e.obj.Metadata)
		}
		if n > manifest.MaxEntries/2 {
			t.Errorf("part of %d entries, more than half of MaxEntries", n)
		}
		total += len(p)
	}
	if total != len(entries) {
		t.Errorf("parts hold %d entries, want %d", total, len(entries))
	}
	many := make([]entry, manifest.MaxObjects+1) // small objects, one too many for an archive
	for i := range many {
		many[i].obj = manifest.Object{Bucket: "b", Key: "k", Delete: true}
	}
	if got := split(many); len(got) != 2 || len(got[0]) != manifest.MaxObjects {
		t.Errorf("%d objects split into %d parts, want 2 of at most MaxObjects", len(many), len(got))
	}
	if got := split(entries[:3]); len(got) != 1 || len(got[0]) != 3 {
		t.Errorf("a small batch was split: %d parts", len(got))
	}
	if got := split(nil); len(got) != 0 {
		t.Errorf("split(nil) = %d parts", len(got))
	}
}

// TestSwitchIsLogged: an archive that makes another arm the best trusted
// one of a class is logged once, with the estimates of the new arm and the
// old; an archive that changes nothing is not.
func TestSwitchIsLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := &config.Config{Settings: config.Settings{Adaptive: config.Adaptive{MinLevel: -7, MaxLevel: 19},
		Prices: config.Prices{TransferPerGB: 0.02, VCPUHour: 0.01245}}}
	w := &Worker{Deps: Deps{Config: cfg, Log: zap.New(core), Metrics: NewMetrics(prometheus.NewRegistry()), Clock: clockwork.NewRealClock()}}
	rule := &config.Rule{ID: "r", Level: 3, Destinations: []config.Destination{{Region: "eu-west-1", Bucket: "d"}}}
	w.rules = []*config.Rule{rule}
	lv := newLevels(w)
	archiveOf := func(arm adaptive.Arm, left float64) {
		m := &manifest.Manifest{}
		var choices []choice
		var st []archive.ObjectStats
		for i := range 4 {
			m.Objects = append(m.Objects, manifest.Object{Key: fmt.Sprintf("k%d.csv", i)})
			choices = append(choices, choice{adaptive.CSV, arm})
			st = append(st, archive.ObjectStats{In: 1 << 20, Out: int64(left * (1 << 20)), CPU: 5 * time.Millisecond})
		}
		lv.observe(context.Background(), rule, m, choices, st, 4*int64(left*(1<<20)), time.Now())
	}
	switches := func() []observer.LoggedEntry { return logs.FilterMessage("learner switched arm").AllUntimed() }
	archiveOf(3, 0.40)
	if s := switches(); len(s) != 1 || s[0].ContextMap()["arm"] != "3" {
		t.Fatalf("first trusted arm: %v", s)
	}
	archiveOf(3, 0.40)
	if s := switches(); len(s) != 1 {
		t.Fatalf("nothing changed, yet %d switches logged", len(s))
	}
	archiveOf(6, 0.30)
	s := switches()
	if len(s) != 2 {
		t.Fatalf("%d switches logged, want 2", len(s))
	}
	f := s[1].ContextMap()
	newArm, _ := f["new"].(map[string]any)
	oldArm, _ := f["old"].(map[string]any)
	near := func(v any, want float64) bool { x, _ := v.(float64); return math.Abs(x-want) < 1e-6 }
	if f["arm"] != "6" || f["was"] != "3" || f["class"] != "csv" || !near(newArm["objects"], 4) || !near(oldArm["objects"], 8) ||
		!near(newArm["outPerIn"], 0.3) || !near(oldArm["outPerIn"], 0.4) {
		t.Errorf("switch logged as %v", f)
	}
}

// TestStoreIsPublished: a class whose best trusted arm is Store (data that
// does not compress) has that choice published for xrc savings and the
// demo, as any other arm is (Store is Arm's zero value).
func TestStoreIsPublished(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "levels")
	st := stats.New(ddb, table, time.Now)
	lv, rule := tableLevels(st)
	m := &manifest.Manifest{}
	var choices []choice
	var sts []archive.ObjectStats
	for i := range 8 {
		m.Objects = append(m.Objects, manifest.Object{Key: fmt.Sprintf("k%d.csv", i)}, manifest.Object{Key: fmt.Sprintf("k%d.bin", i)})
		choices = append(choices, choice{adaptive.CSV, 3}, choice{adaptive.Incompressible, adaptive.Store})
		sts = append(sts, archive.ObjectStats{In: 1 << 20, Out: 400 << 10, CPU: 5 * time.Millisecond}, archive.ObjectStats{In: 1 << 20, Out: 1 << 20})
	}
	now := time.Now()
	lv.observe(ctx, rule, m, choices, sts, 8*(400<<10+1<<20), now)
	lv.refresh(ctx, now)
	got, err := st.Choices(ctx, rule.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got[adaptive.CSV].Arm != "3" || got[adaptive.Incompressible].Arm != adaptive.Store.String() {
		t.Errorf("published choices %+v, want csv 3 and incompressible %s", got, adaptive.Store)
	}
}

// TestArchiveBytesAreAllCharged: the bytes of an archive no object's own
// stats hold (the manifest's frame) are shared out by input in the
// statistics (Frame), so that what xrc savings says crossed is what did;
// it overstated the saving of small objects by the manifest's share. The
// learner leaves them out: they are no level's doing, and an untried Store
// would pay them too.
func TestArchiveBytesAreAllCharged(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "frame")
	st := stats.New(ddb, table, time.Now)
	lv, rule := tableLevels(st)
	m := &manifest.Manifest{Objects: []manifest.Object{{Key: "a.csv"}, {Key: "gone", Delete: true}, {Key: "b.csv"}}}
	sts := []archive.ObjectStats{{In: 3000, Out: 1000}, {}, {In: 1000, Out: 400}}
	now := time.Now()
	lv.observe(ctx, rule, m, []choice{{adaptive.CSV, 3}, {}, {adaptive.CSV, 3}}, sts, 1400+701, now)
	e := lv.learn.Estimates(adaptive.Key{Rule: rule.ID, Class: adaptive.CSV}, lv.models[rule.ID], now)
	if len(e) != 1 || e[0].In != 4000 || e[0].Out != 1400 {
		t.Errorf("learner's estimates %+v, want the objects' own 4000 bytes in and 1400 out", e)
	}
	hs, err := st.Since(ctx, rule.ID, now.Add(-time.Hour))
	// The CSV row, and the delete's in class changes (its requests).
	if err != nil || len(hs) != 2 || hs[1].Class != adaptive.CSV || hs[1].Out != 1400 || hs[1].Frame != 701 ||
		hs[0].Class != stats.Changes || hs[0].Deletes != 1 || hs[0].In != 0 {
		t.Fatalf("statistics %+v (%v), want the CSV's 1400 out and a frame of 701, and one delete", hs, err)
	}
	lines := stats.Summarise(rule.ID, 1, hs, stats.Prices{}, nil)
	if got := lines[len(lines)-1].BytesOut; got != 2101 {
		t.Errorf("xrc savings counts %d bytes out, want the archive's 2101", got)
	}
}

// TestEveryArchiveCounted: every archive adds one to the hour's count in
// class changes, changes or not. xrc savings took an hour's archives as its
// most counted row's (each class row counts an archive once per class and
// arm it holds): an archive of JSON alone and one of CSV alone were one,
// halving every request an archive makes.
func TestEveryArchiveCounted(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "archives")
	st := stats.New(ddb, table, time.Now)
	lv, rule := tableLevels(st)
	now := time.Now()
	for _, c := range []adaptive.Class{adaptive.JSON, adaptive.CSV} {
		m := &manifest.Manifest{Objects: []manifest.Object{{Key: "k"}}}
		lv.observe(ctx, rule, m, []choice{{c, 3}}, []archive.ObjectStats{{In: 3000, Out: 1000}}, 1000, now)
	}
	hs, err := st.Since(ctx, rule.ID, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A staging PUT an archive at $1 (and a PUT per 8 MiB of its bytes:
	// next to nothing).
	lines := stats.Summarise(rule.ID, 1, hs, stats.Prices{Requests: stats.Requests{S3Put: 1}}, nil)
	if got := lines[len(lines)-1].Requests; math.Round(got) != 2 {
		t.Errorf("the hour's two archives charged $%g of staging PUTs, want about $2 (rows %+v)", got, hs)
	}
}

// failing fails its next fails writes of statistics, as a throttled table
// would.
type failing struct {
	*stats.Store
	fails int
}

func (f *failing) Add(ctx context.Context, rule string, at time.Time, ds []stats.Delta) ([]stats.Delta, error) {
	if f.fails > 0 {
		f.fails--
		return ds, errors.New("throttled")
	}
	return f.Store.Add(ctx, rule, at, ds)
}

// TestWaitingStatisticsAreWritten: statistics kept after a failed write
// are written by the next refresh once the backoff is over, and by the
// drain whatever the backoff, not only with the rule's next archive, which
// may never come.
func TestWaitingStatisticsAreWritten(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "pending")
	st := stats.New(ddb, table, time.Now)
	flaky := &failing{Store: st, fails: 1}
	lv, rule := tableLevels(flaky)
	archiveAt := func(at time.Time) {
		m := &manifest.Manifest{Objects: []manifest.Object{{Key: "k.csv"}}}
		lv.observe(ctx, rule, m, []choice{{adaptive.CSV, 3}}, []archive.ObjectStats{{In: 1 << 20, Out: 400 << 10, CPU: time.Millisecond}}, 400<<10, at)
	}
	written := func(want int64) {
		t.Helper()
		hs, err := st.Since(ctx, rule.ID, time.Now().Add(-2*time.Hour))
		var in int64
		for _, h := range hs {
			in += h.In
		}
		if err != nil || in != want {
			t.Errorf("table holds %d bytes in (%v), want %d", in, err, want)
		}
	}
	now := time.Now()
	archiveAt(now)
	written(0)
	lv.refresh(ctx, now.Add(time.Second))
	written(0) // the table is left alone for the backoff
	lv.refresh(ctx, now.Add(statsBackoffMin+time.Second))
	written(1 << 20)

	flaky.fails = 1
	later := now.Add(statsBackoffMin + 2*time.Second)
	archiveAt(later)
	written(1 << 20)
	lv.flush(ctx, later, true) // the drain's
	written(2 << 20)
}

// slowTable answers each write after delay, as a healthy table does
// in milliseconds.
type slowTable struct {
	stats.API
	delay time.Duration
}

func (s slowTable) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	time.Sleep(s.delay)
	return s.API.UpdateItem(ctx, in, o...)
}

// TestBacklogWrittenOverSeveralWrites: the statistics kept through an
// outage (one delta an hour here), more than one write's time allows, are
// written over several writes, none lost: the call in flight at the
// write's deadline was cut, taken as maybe applied and dropped (one more
// at each retry), and counted as the table failing, with a backoff.
func TestBacklogWrittenOverSeveralWrites(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "backlog")
	st := stats.New(slowTable{ddb, 100 * time.Millisecond}, table, time.Now)
	lv, rule := tableLevels(st)
	const hours = 140 // 14 s of calls: past two writes' time
	now := time.Now()
	start := now.Add(-hours * time.Hour).Truncate(time.Hour)
	var ds []dated
	for h := range hours {
		ds = append(ds, dated{stats.Delta{Class: adaptive.CSV, Arm: 3, In: 1 << 20, Objects: 1, Archives: 1}, start.Add(time.Duration(h) * time.Hour)})
	}
	lv.pending[rule.ID] = merge(ds)
	lv.flush(ctx, now, false)
	if n := len(lv.pending[rule.ID]); n == 0 || n == hours {
		t.Fatalf("%d of %d deltas left after one write; want some written, some left", n, hours)
	}
	if errs := testutil.ToFloat64(lv.m.Errors.WithLabelValues("stats")); errs != 0 || lv.backoff != 0 {
		t.Errorf("a healthy table's backlog counted %v stats errors, backoff %v; want none", errs, lv.backoff)
	}
	// The stop's write, out of time: no failure of the table either.
	left := len(lv.pending[rule.ID])
	lv.flush(ctx, now, true)
	if n := len(lv.pending[rule.ID]); n == 0 || n == left {
		t.Fatalf("%d of %d deltas left after the stop's write; want some written, some left", n, left)
	}
	if errs := testutil.ToFloat64(lv.m.Errors.WithLabelValues("stats")); errs != 0 || lv.backoff != 0 {
		t.Errorf("the stop's write out of time counted %v stats errors, backoff %v; want none", errs, lv.backoff)
	}
	for range 3 {
		lv.flush(ctx, now, false)
	}
	hs, err := st.Since(ctx, rule.ID, start)
	var written int
	for _, h := range hs {
		written += h.Objects
	}
	if err != nil || written != hours || len(lv.pending[rule.ID]) != 0 {
		t.Fatalf("table holds %d of %d deltas (%v), %d left; want all written", written, hours, err, len(lv.pending[rule.ID]))
	}
}

// tableLevels is a source worker's levels for one rule, its statistics in
// st.
func tableLevels(st Stats) (*levels, *config.Rule) {
	w, rule := tableWorker(st)
	return w.levels, rule
}

// tableWorker is a source worker of one rule with its levels alone, its
// statistics in st.
func tableWorker(st Stats) (*Worker, *config.Rule) {
	cfg := &config.Config{Settings: config.Settings{Adaptive: config.Adaptive{MinLevel: -7, MaxLevel: 19, HalfLife: config.Duration(time.Hour)},
		Prices: config.Prices{TransferPerGB: 0.02, VCPUHour: 0.01245}}}
	w := &Worker{Deps: Deps{Config: cfg, Log: zap.NewNop(), Metrics: NewMetrics(prometheus.NewRegistry()), Clock: clockwork.NewRealClock(), Stats: st}}
	rule := &config.Rule{ID: "r", Level: 3, Destinations: []config.Destination{{Region: "eu-west-1", Bucket: "d"}}}
	w.rules = []*config.Rule{rule}
	w.levels = newLevels(w)
	return w, rule
}

// TestCloseWritesWaitingStatistics: a worker without Drain (a Lambda
// environment rebuilt for a new config, or retired) writes on Close the
// statistics a failed write left waiting; they went with the old worker.
func TestCloseWritesWaitingStatistics(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "close")
	st := stats.New(ddb, table, time.Now)
	w, rule := tableWorker(&failing{Store: st, fails: 1})
	stopped := false
	w.stopRefresh = func() { stopped = true } // Prepare's
	m := &manifest.Manifest{Objects: []manifest.Object{{Key: "k.csv"}}}
	w.levels.observe(ctx, rule, m, []choice{{adaptive.CSV, 3}}, []archive.ObjectStats{{In: 1 << 20, Out: 400 << 10, CPU: time.Millisecond}}, 400<<10, time.Now())
	w.Close(ctx)
	hs, err := st.Since(ctx, rule.ID, time.Now().Add(-2*time.Hour))
	// Its CSV row, after its count in class changes.
	if err != nil || len(hs) != 2 || hs[1].In != 1<<20 {
		t.Errorf("table holds %+v (%v), want the archive's statistics", hs, err)
	}
	if !stopped {
		t.Error("Close left the refresh loop running")
	}
}

// hourTable records the hour each write of statistics is filed under,
// failing the first fails of them; it holds nothing.
type hourTable struct {
	stuckTable
	fails           int
	hours, restaged map[string]int64 // hour -> bytes in, restaged
}

func (h *hourTable) Add(_ context.Context, _ string, at time.Time, ds []stats.Delta) ([]stats.Delta, error) {
	if h.fails > 0 {
		h.fails--
		return ds, errors.New("throttled")
	}
	for _, d := range ds {
		if d.In > 0 {
			h.hours[at.UTC().Format("2006-01-02T15")] += d.In
		}
		if d.Restaged > 0 {
			h.restaged[at.UTC().Format("2006-01-02T15")] += d.Restaged
		}
	}
	return nil, nil
}

// TestWaitingStatisticsKeepTheirHour: statistics a failed write left
// waiting, and objects to be staged again, are filed under the hour they
// were made in, not the hour of the write that finally takes them (on
// Lambda, the thaw of an environment hours later), each hour its own
// write.
func TestWaitingStatisticsKeepTheirHour(t *testing.T) {
	ctx := context.Background()
	table := &hourTable{fails: 1, hours: map[string]int64{}, restaged: map[string]int64{}}
	w, rule := tableWorker(table)
	at := time.Date(2026, 12, 6, 10, 59, 0, 0, time.UTC)
	m := &manifest.Manifest{Objects: []manifest.Object{{Key: "k.csv"}}}
	w.levels.observe(ctx, rule, m, []choice{{adaptive.CSV, 3}}, []archive.ObjectStats{{In: 1 << 20, Out: 400 << 10, CPU: time.Millisecond}}, 400<<10, at)
	w.levels.restaged(rule.ID, []stats.Delta{{Class: adaptive.CSV, Arm: 3, Restaged: 5}}, at.Add(30*time.Minute))
	w.levels.observe(ctx, rule, m, []choice{{adaptive.CSV, 3}}, []archive.ObjectStats{{In: 2 << 20, Out: 800 << 10, CPU: time.Millisecond}}, 800<<10, at.Add(3*time.Hour))
	want := map[string]int64{"2026-12-06T10": 1 << 20, "2026-12-06T13": 2 << 20}
	if !maps.Equal(table.hours, want) || !maps.Equal(table.restaged, map[string]int64{"2026-12-06T11": 5}) {
		t.Errorf("bytes in by hour %v, restaged %v; want %v, and 5 restaged at 11", table.hours, table.restaged, want)
	}
	if len(w.levels.pending) != 0 {
		t.Errorf("left waiting: %v", w.levels.pending)
	}
}

// TestPendingPastTheCapFolded: statistics waiting through an outage of
// days outgrow maxPending entries (one per hour, class and arm); the
// oldest hours are folded into later ones, and nothing is dropped, the
// newest hour least of all.
func TestPendingPastTheCapFolded(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var ds []dated
	var in, restaged int64
	for h := range 3 * maxPending {
		for _, arm := range []adaptive.Arm{1, 3} {
			d := dated{stats.Delta{Class: adaptive.CSV, Arm: arm, In: int64(h + 1), Restaged: 1}, start.Add(time.Duration(h) * time.Hour)}
			ds = append(ds, d)
			in, restaged = in+d.In, restaged+d.Restaged
		}
	}
	out := merge(ds)
	var gotIn, gotRestaged int64
	for _, d := range out {
		gotIn, gotRestaged = gotIn+d.In, gotRestaged+d.Restaged
	}
	if len(out) > maxPending || gotIn != in || gotRestaged != restaged {
		t.Fatalf("%d entries (want at most %d) holding %d bytes in and %d restaged, want %d and %d", len(out), maxPending, gotIn, gotRestaged, in, restaged)
	}
	if last := out[len(out)-1]; !last.at.Equal(start.Add(time.Duration(3*maxPending-1)*time.Hour)) || last.In != 3*maxPending {
		t.Errorf("newest entry %+v, want the last hour's own", last)
	}
}

// TestDecodingPricedAtTheFleetsSpeed: the learner weighs a level's
// decoding at the fleet's mean speed, in the units of the (factor-scaled)
// compression CPU it is set against and as xrc savings charges it; a fast
// task priced it at its own speed, a slow one too high.
// TestBenchmarkFailureStillLearns: a task whose CPU benchmark fails still
// prices decoding at the fleet's figure and loads what the fleet learnt;
// it priced decoding at nothing and started from nothing for its life.
func TestBenchmarkFailureStillLearns(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "nobench")
	st := stats.New(ddb, table, time.Now)
	w, rule := tableWorker(st)
	if _, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: 100, DecodeSeconds: 2e-9, Encoder: "libzstd"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := st.Add(ctx, rule.ID, now, []stats.Delta{{Class: adaptive.CSV, Arm: 3, In: 1 << 20, Out: 300 << 10, CPU: time.Millisecond, Objects: 1, Archives: 1}}); err != nil {
		t.Fatal(err)
	}
	w.levels.bench = func(time.Duration, archive.WriterOptions) (adaptive.BenchResult, error) {
		return adaptive.BenchResult{}, errors.New("cpu benchmark: the thread CPU clock reads no time")
	}
	w.levels.start(ctx, w)
	if n := testutil.ToFloat64(w.Metrics.Errors.WithLabelValues("benchmark")); n != 1 {
		t.Errorf("errors_total{kind=benchmark} = %v, want 1", n)
	}
	// The factor the learner takes, 1, not the gauge's 0 (the dashboard
	// averages it over the tasks).
	if f := testutil.ToFloat64(w.Metrics.CPUFactor); f != 1 {
		t.Errorf("cpu_factor_ratio = %v, want 1", f)
	}
	if got := w.levels.models[rule.ID].DecodeSeconds; got != 2e-9 {
		t.Errorf("decoding priced at %g CPU-s a byte, want the fleet's 2e-9", got)
	}
	if e := w.levels.learn.Estimates(adaptive.Key{Rule: rule.ID, Class: adaptive.CSV}, w.levels.models[rule.ID], now); len(e) != 1 || e[0].Arm != 3 || e[0].In <= 0 {
		t.Errorf("the learner knows %+v of the fleet's statistics, want its CSV at level 3", e)
	}
}

func TestDecodingPricedAtTheFleetsSpeed(t *testing.T) {
	ctx := context.Background()
	table, ddb := localstack.Require(t).TestTable(t, "decode")
	st := stats.New(ddb, table, time.Now)
	w, rule := tableWorker(st)
	w.levels.cfg.Benchmark = config.Duration(100 * time.Millisecond)
	own, err := adaptive.Benchmark(w.levels.cfg.Benchmark.D(), archive.WriterOptions{PureGo: w.pureGo()})
	if err != nil {
		t.Fatal(err)
	}
	for range 9 { // slow tasks of the same encoder, decoding at a thousandth of this one's speed
		if _, err := st.AddBenchmark(ctx, adaptive.BenchResult{CompressMBps: own.CompressMBps, DecodeSeconds: 1000 * own.DecodeSeconds, Encoder: own.Encoder}); err != nil {
			t.Fatal(err)
		}
	}
	w.levels.start(ctx, w)
	fleet, err := st.Fleet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := w.levels.models[rule.ID].DecodeSeconds
	if math.Abs(got-fleet.DecodeSeconds) > 0.01*fleet.DecodeSeconds || got < 100*own.DecodeSeconds {
		t.Errorf("decoding priced at %g CPU-s a byte; the fleet's mean is %g, this task's own about %g", got, fleet.DecodeSeconds, own.DecodeSeconds)
	}
}
