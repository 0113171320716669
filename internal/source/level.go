package source

import (
	"context"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/libzstd"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/stats"
	"github.com/xrc-dev/xrc/internal/worker"
)

// Stats is the fleet's statistics (package stats).
type Stats interface {
	Add(ctx context.Context, rule string, at time.Time, ds []stats.Delta) ([]stats.Delta, error)
	Observations(ctx context.Context, rule string, since time.Time) ([]adaptive.Observation, error)
	AddBenchmark(ctx context.Context, r adaptive.BenchResult) (stats.Fleet, error)
	Fleet(ctx context.Context) (stats.Fleet, error)
	PublishChoice(ctx context.Context, rule string, class adaptive.Class, arm adaptive.Arm, benefit float64) error
}

// statsTimeout bounds one call to the statistics table: a slow or throttled
// table must not hold up archives.
const statsTimeout = 5 * time.Second

// maxPending bounds the statistics kept while the table cannot be written
// (per rule, merged per hour, class and arm: merge).
const maxPending = 1024

// levels is where each object's compression is chosen (choose) and where
// what archives cost is learnt (observe): package adaptive's learner, fed
// by this task's archives and refreshed from the fleet's statistics. A
// DynamoDB outage or throttling never stops archiving: the learner keeps
// what it knows, the deltas wait in memory and are written later.
type levels struct {
	cfg    config.Adaptive
	learn  *adaptive.Learner
	probe  *adaptive.Prober
	stats  Stats // nil: this task learns alone
	models map[string]adaptive.Model
	factor atomic.Uint64 // float64 bits: this task's CPU against the fleet's mean
	log    *zap.Logger
	m      *Metrics
	clock  clockwork.Clock

	mu         sync.Mutex
	pending    map[string][]dated // by rule: not written yet
	published  map[adaptive.Key]adaptive.Arm
	exploiting map[adaptive.Key]adaptive.Arm // the best trusted arm after the last archive (switched)
	retryAt    time.Time                     // after a failure, the table is left alone until then
	backoff    time.Duration                 // the wait after the last failure
	// bench is adaptive.Benchmark (tests replace it).
	bench func(time.Duration, archive.WriterOptions) (adaptive.BenchResult, error)
}

// dated is a delta not written yet and when it was made: written later
// (after a failed write, or at a Lambda environment's thaw hours after
// its last invocation), it is filed under its own hour, not the write's,
// and the learner dates it so.
type dated struct {
	stats.Delta
	at time.Time
}

// Waits between attempts at a failing statistics table: archives must not
// queue behind its timeouts.
const (
	statsBackoffMin = 5 * time.Second
	statsBackoffMax = 5 * time.Minute
)

func newLevels(w *Worker) *levels {
	a := w.Config.Settings.Adaptive
	lv := &levels{cfg: a, probe: adaptive.NewProber(), stats: w.Stats, models: map[string]adaptive.Model{},
		log: w.Log, m: w.Metrics, clock: w.Clock, pending: map[string][]dated{}, published: map[adaptive.Key]adaptive.Arm{},
		exploiting: map[adaptive.Key]adaptive.Arm{}, bench: adaptive.Benchmark}
	lv.factor.Store(math.Float64bits(1))
	max := a.MaxLevel
	if !a.Ultra {
		max = min(max, config.DefaultMaxLevel)
	}
	arms := adaptive.Arms(libzstd.Available && !w.pureGo(), a.MinLevel, max)
	lv.learn = adaptive.New(adaptive.Config{Arms: arms, HalfLife: a.HalfLife.D(), Explore: a.Explore, ExploreFloor: a.ExploreFloor,
		Freshness: a.Freshness.D()}, rand.New(rand.NewPCG(uint64(w.Clock.Now().UnixNano()), 0x5eed)))
	for _, r := range w.rules {
		lv.models[r.ID] = adaptive.RuleModel(w.Config, r)
	}
	return lv
}

// start measures this task's CPU, places it in the fleet, and loads what
// the fleet has learnt.
func (lv *levels) start(ctx context.Context, w *Worker) {
	r, err := lv.bench(lv.cfg.Benchmark.D(), archive.WriterOptions{PureGo: w.pureGo()})
	if err != nil {
		// The fleet's decoding figure and statistics all the same: without
		// them the learner would price decoding at nothing, and start
		// from nothing, for the task's whole life.
		lv.m.Errors.WithLabelValues("benchmark").Inc()
		lv.m.CPUFactor.Set(1) // as the learner takes it: not 0 in the fleet's mean
		lv.log.Warn("CPU benchmark failed: CPU figures are taken as they are, decoding priced at the fleet's", zap.Error(err))
		if lv.stats != nil {
			sctx, cancel := context.WithTimeout(ctx, statsTimeout)
			fleet, err := lv.stats.Fleet(sctx)
			cancel()
			if err != nil {
				lv.m.Errors.WithLabelValues("stats").Inc()
				lv.log.Warn("reading the fleet's CPU benchmark: decoding is priced at nothing", zap.Error(err))
			}
			lv.setDecode(fleet.DecodeSeconds)
		}
		lv.refresh(ctx, w.Clock.Now())
		return
	}
	factor, mean, tasks, decode := 1.0, r.CompressMBps, 1, r.DecodeSeconds
	if lv.stats != nil {
		sctx, cancel := context.WithTimeout(ctx, statsTimeout)
		fleet, err := lv.stats.AddBenchmark(sctx, r)
		cancel()
		if err != nil {
			lv.m.Errors.WithLabelValues("stats").Inc()
			lv.log.Warn("adding the CPU benchmark to the fleet's: this task's CPU counts as the fleet's mean", zap.Error(err))
		} else {
			mean, tasks = fleet.CompressMBps, fleet.Tasks
			if fleet.DecodeSeconds > 0 {
				// In the fleet's units, as the compression CPU it is
				// weighed against (scaled by the factor), and as xrc
				// savings charges it.
				decode = fleet.DecodeSeconds
			}
		}
		factor = adaptive.Factor(r.CompressMBps, mean)
	}
	lv.setDecode(decode)
	lv.factor.Store(math.Float64bits(factor))
	lv.m.CPUBenchmark.Set(r.CompressMBps)
	lv.m.CPUFactor.Set(factor)
	lv.log.Info("CPU benchmark", zap.String("encoder", r.Encoder), zap.Float64("mbPerCPUSecond", r.CompressMBps),
		zap.Float64("fleetMean", mean), zap.Int("fleetTasks", tasks), zap.Float64("factor", factor),
		zap.Float64("decodeMBPerCPUSecond", 1e-6/r.DecodeSeconds), zap.Float64("fleetDecodeMBPerCPUSecond", 1e-6/decode), zap.Bool("adaptive", !lv.cfg.Disabled))
	lv.refresh(ctx, w.Clock.Now())
}

// setDecode prices every rule's decoding at seconds of CPU a byte.
func (lv *levels) setDecode(seconds float64) {
	for id, m := range lv.models {
		m.DecodeSeconds = seconds
		lv.models[id] = m
	}
}

// choose classifies o (sample: its first bytes, for the probe) and picks
// its arm. lag is the age of the oldest message it comes from.
func (lv *levels) choose(rule *config.Rule, o *manifest.Object, sample []byte, lag time.Duration, now time.Time) (adaptive.Class, adaptive.Arm) {
	class := lv.probe.Refine(adaptive.Classify(o.ContentType, o.ContentEncoding, o.Key), sample)
	start := adaptive.Arm(rule.Level)
	if class == adaptive.Compressed || class == adaptive.Incompressible {
		start = adaptive.Store // zstd cannot shrink it; levels only burn CPU
	}
	if lv.cfg.Disabled {
		a := lv.learn.Fit(start, o.Size)
		if a != start {
			lv.m.Decisions.WithLabelValues("size").Inc()
		}
		return class, a
	}
	d := lv.learn.Choose(adaptive.Key{Rule: rule.ID, Class: class}, lv.models[rule.ID], start, o.Size, lag, now)
	lv.m.Decisions.WithLabelValues(d.Why).Inc()
	return class, d.Arm
}

// choice is what was chosen for one object of an archive.
type choice struct {
	class adaptive.Class
	arm   adaptive.Arm
}

// observe learns from a staged archive of written bytes: per class and
// arm, its objects' bytes and encoding CPU (normalised by the CPU factor),
// locally at once and in the fleet's statistics. What no object's own
// stats hold (the manifest's frame, the tar's end) crosses the regions
// too: it is shared out by input bytes (stats.Delta.Frame), or xrc savings
// would overstate the saving of small objects (by some 6% at 4 KiB each).
func (lv *levels) observe(ctx context.Context, rule *config.Rule, m *manifest.Manifest, choices []choice, st []archive.ObjectStats, written int64, now time.Time) {
	frame := shareOut(m, st, written)
	factor := math.Float64frombits(lv.factor.Load())
	byArm := map[choice]*stats.Delta{}
	var order []choice
	changes := stats.Delta{Class: stats.Changes, Arm: adaptive.Store, Archives: 1}
	for i := range m.Objects {
		if !m.Objects[i].HasMember() {
			if m.Objects[i].Delete {
				changes.Deletes++
			} else {
				changes.Retags++
			}
			continue
		}
		c := choices[i]
		d := byArm[c]
		if d == nil {
			d = &stats.Delta{Class: c.class, Arm: c.arm, Archives: 1}
			byArm[c] = d
			order = append(order, c)
		}
		d.In += st[i].In
		d.Out += st[i].Out
		d.Frame += frame[i]
		d.CPU += time.Duration(float64(st[i].CPU) * factor)
		d.Objects++
	}
	model := lv.models[rule.ID]
	var ds []stats.Delta
	for _, c := range order {
		d := *byArm[c]
		ds = append(ds, d)
		lv.learn.Observe(adaptive.Observation{Key: adaptive.Key{Rule: rule.ID, Class: d.Class}, Arm: d.Arm,
			Sample: adaptive.Sample{In: d.In, Out: d.Out, CPU: d.CPU, Objects: d.Objects}, At: now})
		regions := float64(model.Regions)
		compute := d.CPU.Seconds() * model.VCPUSecond
		if d.Arm != adaptive.Store {
			compute += model.DecodeSeconds * float64(d.In) * model.DecodeVCPUSecond
		}
		lv.m.Transfer.WithLabelValues(rule.ID, "without").Add(float64(d.In) * regions / adaptive.GiB * model.TransferPerGiB)
		lv.m.Transfer.WithLabelValues(rule.ID, "with").Add(float64(d.Out+d.Frame) * regions / adaptive.GiB * model.TransferPerGiB)
		lv.m.Compute.WithLabelValues(rule.ID).Add(compute)
		lv.m.LevelObjects.WithLabelValues(rule.ID, string(d.Class), d.Arm.String()).Add(float64(d.Objects))
		lv.m.BytesSaved.WithLabelValues(rule.ID).Add(float64(max(d.In-d.Out-d.Frame, 0)))
		lv.m.CompressionCPU.WithLabelValues(rule.ID).Add(d.CPU.Seconds())
	}
	switchedSeen := map[adaptive.Class]bool{}
	for _, c := range order {
		if !switchedSeen[c.class] {
			switchedSeen[c.class] = true
			lv.switched(adaptive.Key{Rule: rule.ID, Class: c.class}, now)
		}
	}
	lv.m.Behind.WithLabelValues(rule.ID).Set(float64(lv.learn.Behind(rule.ID)))
	// Written for every archive, with or without changes: its archives
	// are the hour's exact count, where each class row counts an archive
	// once per class and arm it holds (xrc savings, stats.Summarise).
	ds = append(ds, changes)
	lv.write(ctx, rule.ID, ds, now, false)
}

// shareOut shares written bytes not attributed to an object among the
// objects, in proportion to their input: each one's share, by manifest
// index.
func shareOut(m *manifest.Manifest, st []archive.ObjectStats, written int64) []int64 {
	shares := make([]int64, len(st))
	var in, out int64
	for i := range m.Objects {
		if m.Objects[i].HasMember() {
			in += st[i].In
			out += st[i].Out
		}
	}
	extra := written - out
	if extra <= 0 || in <= 0 {
		return shares
	}
	last, given := -1, int64(0)
	for i := range m.Objects {
		if m.Objects[i].HasMember() {
			shares[i] = int64(float64(extra) * float64(st[i].In) / float64(in))
			given += shares[i]
			last = i
		}
	}
	shares[last] += extra - given // what rounding left
	return shares
}

// write adds ds, and rule's deltas still waiting, to the table, unless it
// is being left alone after a failure (force: the task is going, and what
// it does not write now is lost); what is not written waits for the next.
func (lv *levels) write(ctx context.Context, rule string, ds []stats.Delta, now time.Time, force bool) {
	if lv.stats == nil {
		return
	}
	lv.mu.Lock()
	all := merge(append(lv.pending[rule], dateAll(ds, now)...))
	delete(lv.pending, rule)
	wait := now.Before(lv.retryAt) && !force
	lv.mu.Unlock()
	if len(all) == 0 {
		return
	}
	var left []dated
	var err error
	cut := false // after an error: frozen mid-call
	// One write per hour they belong to, oldest first (merge sorts
	// them), all within one timeout, as one write was: archives must not
	// queue behind them; after a failure, the rest wait too.
	sctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	for i := 0; i < len(all); {
		hour := all[i].at.Truncate(time.Hour)
		j := i
		var group []stats.Delta
		for ; j < len(all) && all[j].at.Truncate(time.Hour).Equal(hour); j++ {
			group = append(group, all[j].Delta)
		}
		if wait || err != nil {
			left = append(left, all[i:j]...)
			i = j
			continue
		}
		start := lv.clock.Now()
		var notWritten []stats.Delta
		notWritten, err = lv.stats.Add(sctx, rule, all[i].at, group)
		if err != nil && worker.Frozen(lv.clock, start, statsTimeout) {
			cut = true
		}
		left = append(left, dateAll(notWritten, all[i].at)...)
		i = j
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if len(left) > 0 {
		lv.pending[rule] = merge(append(lv.pending[rule], left...))
	}
	switch {
	case err != nil && (cut || ctx.Err() != nil || errors.Is(err, stats.ErrNoTime)) && !force:
		// Stopping: kept for the stop's own write (Drain, Close), which
		// has time of its own; frozen mid-call (frozen), or a backlog
		// (after an outage) longer than one write's time: kept for the
		// next. No failure of the table.
	case err != nil && errors.Is(err, stats.ErrNoTime):
		// The stop's write, out of time with the table answering: what is
		// left goes with the task (the table did not fail).
		lv.log.Warn("the stop's time ran out before every compression statistic was written: the rest is not counted", zap.String("rule", rule),
			zap.Int("notWritten", len(lv.pending[rule])))
	case err != nil:
		lv.backoff = min(max(2*lv.backoff, statsBackoffMin), statsBackoffMax)
		lv.retryAt = now.Add(lv.backoff)
		lv.m.Errors.WithLabelValues("stats").Inc()
		lv.log.Warn("writing compression statistics: kept to write later; archiving goes on", zap.String("rule", rule),
			zap.Int("pending", len(lv.pending[rule])), zap.Duration("retryIn", lv.backoff), zap.Error(err))
	case !wait:
		lv.backoff = 0
	}
}

// flush writes every rule's waiting deltas: on each refresh, so that a
// rule gone quiet after a failure does not keep them for good, and (force)
// when the task stops.
func (lv *levels) flush(ctx context.Context, now time.Time, force bool) {
	lv.mu.Lock()
	rules := slices.Collect(maps.Keys(lv.pending))
	lv.mu.Unlock()
	for _, rule := range rules {
		lv.write(ctx, rule, nil, now, force)
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for rule, ds := range lv.pending {
		if force {
			lv.log.Error("compression statistics not written before stopping: lost to xrc savings and the fleet",
				zap.String("rule", rule), zap.Int("deltas", len(ds)))
		}
	}
}

// switched logs when what the learner would exploit for k changes, with
// the estimates the change rests on, so that an operator can tell a level
// learnt from many objects from one trusted on a few that happened to
// compress well.
func (lv *levels) switched(k adaptive.Key, now time.Time) {
	best, benefit := lv.best(k, now)
	if best == nil {
		return
	}
	lv.mu.Lock()
	was, known := lv.exploiting[k]
	lv.exploiting[k] = *best
	lv.mu.Unlock()
	if known && was == *best {
		return
	}
	fields := []zap.Field{zap.String("rule", k.Rule), zap.String("class", string(k.Class)), zap.String("arm", best.String()),
		zap.Float64("dollarsPerGiB", benefit)}
	for _, e := range lv.learn.Estimates(k, lv.models[k.Rule], now) {
		if e.Arm == *best || (known && e.Arm == was) {
			name := "new"
			if e.Arm != *best {
				name = "old"
			}
			fields = append(fields, zap.Dict(name, zap.String("arm", e.Arm.String()), zap.Float64("objects", e.Objects),
				zap.Float64("bytesIn", e.In), zap.Float64("outPerIn", e.Out/max(e.In, 1)), zap.Float64("dollarsPerGiB", e.Benefit)))
		}
	}
	if known {
		fields = append(fields, zap.String("was", was.String()))
	}
	lv.log.Info("learner switched arm", fields...)
}

// merge sums deltas of the same hour, class and arm (dated the later),
// oldest hours first. Past maxPending (a table unwritable for days), the
// oldest hours' are folded into a later hour's, filed late rather than
// lost, leaving half the cap to the newest hours.
func merge(ds []dated) []dated {
	out := mergeHours(ds)
	if len(out) <= maxPending {
		return out
	}
	i := len(out) - maxPending/2
	hour := out[i-1].at.Truncate(time.Hour)
	for i < len(out) && out[i].at.Truncate(time.Hour).Equal(hour) {
		i++ // an hour is folded whole or not at all
	}
	if i == len(out) {
		return out // cannot happen: an hour holds fewer classes and arms
	}
	for j := range i {
		out[j].at = out[i].at
	}
	return mergeHours(out)
}

func mergeHours(ds []dated) []dated {
	type key struct {
		hour  int64
		class adaptive.Class
		arm   adaptive.Arm
	}
	at := make(map[key]int, len(ds))
	var out []dated
	for _, d := range ds {
		k := key{d.at.Truncate(time.Hour).Unix(), d.Class, d.Arm}
		i, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, d)
			continue
		}
		x := &out[i]
		x.In, x.Out, x.Frame, x.CPU, x.Objects, x.Archives = x.In+d.In, x.Out+d.Out, x.Frame+d.Frame, x.CPU+d.CPU, x.Objects+d.Objects, x.Archives+d.Archives
		x.Restaged += d.Restaged
		x.Deletes, x.Retags = x.Deletes+d.Deletes, x.Retags+d.Retags
		if d.at.After(x.at) {
			x.at = d.at
		}
	}
	slices.SortStableFunc(out, func(a, b dated) int { return a.at.Truncate(time.Hour).Compare(b.at.Truncate(time.Hour)) })
	return out
}

// dateAll dates each of ds at.
func dateAll(ds []stats.Delta, at time.Time) []dated {
	out := make([]dated, len(ds))
	for i, d := range ds {
		out[i] = dated{d, at}
	}
	return out
}

// restaged adds what objects staged again had added (Delta.Restaged) to
// rule's statistics still to write, dated now: they go with the next write.
func (lv *levels) restaged(rule string, ds []stats.Delta, now time.Time) {
	if lv.stats == nil || len(ds) == 0 {
		return
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.pending[rule] = merge(append(lv.pending[rule], dateAll(ds, now)...))
}

// refreshLoop reloads the fleet's statistics every Refresh until ctx ends.
func (lv *levels) refreshLoop(ctx context.Context, w *Worker) {
	if lv.stats == nil || lv.cfg.Disabled {
		return
	}
	t := w.Clock.NewTicker(lv.cfg.Refresh.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			lv.refresh(ctx, w.Clock.Now())
		}
	}
}

// refresh replaces what the learner knows with the fleet's statistics (ten
// half-lives back; older ones count for nothing), plus this task's deltas
// not written yet, and publishes the choice of each class that changed.
func (lv *levels) refresh(ctx context.Context, now time.Time) {
	if lv.stats == nil {
		return
	}
	lv.flush(ctx, now, false)
	var obs []adaptive.Observation
	for rule := range lv.models {
		sctx, cancel := context.WithTimeout(ctx, statsTimeout)
		start := lv.clock.Now()
		o, err := lv.stats.Observations(sctx, rule, now.Add(-10*lv.cfg.HalfLife.D()))
		cancel()
		if err != nil && (ctx.Err() != nil || worker.Frozen(lv.clock, start, statsTimeout)) {
			return // stopping, or frozen mid-call: no failure
		}
		if err != nil {
			lv.m.Errors.WithLabelValues("stats").Inc()
			lv.log.Warn("reading the fleet's compression statistics: keeping what this task knows", zap.String("rule", rule), zap.Error(err))
			return
		}
		obs = append(obs, o...)
	}
	lv.mu.Lock()
	for rule, ds := range lv.pending {
		for _, d := range ds {
			obs = append(obs, adaptive.Observation{Key: adaptive.Key{Rule: rule, Class: d.Class}, Arm: d.Arm,
				Sample: adaptive.Sample{In: d.In, Out: d.Out, CPU: d.CPU, Objects: d.Objects}, At: d.at})
		}
	}
	lv.mu.Unlock()
	lv.learn.Load(obs)
	lv.publish(ctx, obs, now)
}

// publish records, per rule and class, the arm the learner would exploit
// now, when it changed, for operators (xrc savings) and the demo.
func (lv *levels) publish(ctx context.Context, obs []adaptive.Observation, now time.Time) {
	seen := map[adaptive.Key]bool{}
	for _, o := range obs {
		seen[o.Key] = true
	}
	for k := range seen {
		best, benefit := lv.best(k, now)
		// Store is Arm's zero value: a class never published must not
		// read as one published as Store.
		if was, ok := lv.published[k]; best == nil || ok && was == *best {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, statsTimeout)
		start := lv.clock.Now()
		err := lv.stats.PublishChoice(sctx, k.Rule, k.Class, *best, benefit)
		cancel()
		if err != nil && (ctx.Err() != nil || worker.Frozen(lv.clock, start, statsTimeout)) {
			return // stopping, or frozen mid-call: published at the next refresh
		}
		if err != nil {
			lv.m.Errors.WithLabelValues("stats").Inc()
			lv.log.Warn("publishing a learnt choice", zap.String("rule", k.Rule), zap.String("class", string(k.Class)), zap.Error(err))
			continue
		}
		lv.published[k] = *best
		lv.log.Info("learnt choice", zap.String("rule", k.Rule), zap.String("class", string(k.Class)),
			zap.String("arm", best.String()), zap.Float64("dollarsPerGiB", benefit))
	}
}

// best is the arm the learner exploits for k (Learner.Best), if any.
func (lv *levels) best(k adaptive.Key, now time.Time) (*adaptive.Arm, float64) {
	a, benefit, ok := lv.learn.Best(k, lv.models[k.Rule], now)
	if !ok {
		return nil, benefit
	}
	return &a, benefit
}
