package adaptive

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
)

// profile is the true behaviour of a kind of data under each arm: the
// fraction of its size left, and MB per CPU-second. The figures follow
// libzstd on the corpus classes (README, Performance), interpolated.
type profile struct {
	name string
	out  func(a Arm) float64
	mbps func(a Arm) float64
}

func zstdCurve(l1, l3, l7, l11, l19 float64) func(Arm) float64 {
	return func(a Arm) float64 {
		x := float64(a)
		switch {
		case a == Store:
			return 1.00002
		case x < 1:
			return math.Min(0.999, l1*(1+0.04*(1-x))) // fast levels: a little worse per step
		case x <= 3:
			return l1 + (l3-l1)*(x-1)/2
		case x <= 7:
			return l3 + (l7-l3)*(x-3)/4
		case x <= 11:
			return l7 + (l11-l7)*(x-7)/4
		default:
			return l11 + (l19-l11)*(x-11)/8
		}
	}
}

func speedCurve(a Arm) float64 {
	if a == Store {
		return 4000
	}
	x := float64(a)
	if x < 1 {
		return 160 * (1 + 0.35*(1-x))
	}
	return 160 * math.Pow(0.62, x-1) // 160 MB/s at 1, ~1.5 at 11, ~0.1 at 19
}

var (
	csv    = profile{"csv", zstdCurve(0.417, 0.377, 0.345, 0.334, 0.31), speedCurve}
	jsonl  = profile{"jsonl", zstdCurve(0.256, 0.251, 0.231, 0.221, 0.20), speedCurve}
	random = profile{"random", func(a Arm) float64 {
		if a == Store {
			return 1.00002
		}
		return 1.00004
	}, func(a Arm) float64 {
		if a == Store {
			return 4000
		}
		return 600
	}}
)

func testModel() Model {
	return Model{TransferPerGiB: 0.02, VCPUSecond: VCPUSecond(0.01245), Regions: 2, DecodeVCPUSecond: 2 * VCPUSecond(0.01245), DecodeSeconds: 1.0 / 500e6}
}

// outcome is one object of size bytes of p encoded with a, with noise.
func outcome(rng *rand.Rand, p profile, a Arm, size int64) Sample {
	// Objects differ in how much they save (±5% of the saving), not in
	// how much of an incompressible object is left.
	out := 1 - (1-p.out(a))*(1+0.05*(rng.Float64()*2-1))
	cpu := float64(size) / (p.mbps(a) * 1e6) * (1 + 0.2*(rng.Float64()*2-1))
	return Sample{In: size, Out: int64(out * float64(size)), CPU: time.Duration(cpu * float64(time.Second)), Objects: 1}
}

func benefit(m Model, a Arm, s Sample) float64 {
	return m.Benefit(a, float64(s.Out)/float64(s.In), s.CPU.Seconds()/float64(s.In)) * float64(s.In) / GiB
}

// simulate runs objects of profiles[i(t)] through a learner and through
// every fixed arm, on the same noise, and returns the learner's total
// benefit, each fixed arm's, and the learner's choices in the last quarter.
func simulate(t *testing.T, seed uint64, objects int, profileAt func(n int) profile) (float64, map[Arm]float64, map[Arm]int) {
	t.Helper()
	arms := Arms(true, -7, 19)
	// Objects come every 2 s: a 2-minute half-life is 60 objects, so a
	// change of workload is learnt within the run.
	l := New(Config{Arms: arms, HalfLife: 3 * time.Minute}, rand.New(rand.NewPCG(seed, 1)))
	noise := rand.New(rand.NewPCG(seed, 2))
	m := testModel()
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	learnt, fixed, late := 0.0, map[Arm]float64{}, map[Arm]int{}
	const size = 2 << 20
	k := Key{Rule: "r", Class: Unknown}
	for n := range objects {
		p := profileAt(n)
		now = now.Add(2 * time.Second)
		seedN := noise.Uint64()
		d := l.Choose(k, m, 3, size, 0, now)
		s := outcome(rand.New(rand.NewPCG(seedN, 0)), p, d.Arm, size)
		learnt += benefit(m, d.Arm, s)
		l.Observe(Observation{Key: k, Arm: d.Arm, Sample: s, At: now})
		for _, a := range arms {
			fixed[a] += benefit(m, a, outcome(rand.New(rand.NewPCG(seedN, 0)), p, a, size))
		}
		if n >= objects*3/4 {
			late[d.Arm]++
		}
	}
	return learnt, fixed, late
}

func bestFixed(fixed map[Arm]float64) (Arm, float64) {
	best, v := Store, math.Inf(-1)
	for a, b := range fixed {
		if b > v {
			best, v = a, b
		}
	}
	return best, v
}

// TestLearnerSimulation: on each class, with noise, the learner's net
// benefit comes within 5% of the best fixed arm chosen in hindsight;
// incompressible data settles on Store; a workload that changes half-way
// is learnt again.
func TestLearnerSimulation(t *testing.T) {
	for _, p := range []profile{csv, jsonl} {
		learnt, fixed, _ := simulate(t, 7, 3000, func(int) profile { return p })
		a, best := bestFixed(fixed)
		t.Logf("%s: learner %.1f%% of the best fixed arm (%s); level 3 alone %.1f%%, store %.1f%%",
			p.name, 100*learnt/best, a, 100*fixed[3]/best, 100*fixed[Store]/best)
		if learnt < 0.95*best {
			t.Errorf("%s: learner earned %.4f, best fixed arm %s %.4f: below 95%%", p.name, learnt, a, best)
		}
	}

	_, _, late := simulate(t, 8, 2000, func(int) profile { return random })
	total := 0
	for _, n := range late {
		total += n
	}
	t.Logf("random: store chosen for %.1f%% of the last quarter", 100*float64(late[Store])/float64(total))
	if float64(late[Store]) < 0.9*float64(total) {
		t.Errorf("random data: store chosen %d of %d times in the last quarter (%v)", late[Store], total, late)
	}

	// CSV, then random data under the same key.
	learnt, fixed, late := simulate(t, 9, 4000, func(n int) profile {
		if n < 2000 {
			return csv
		}
		return random
	})
	total = 0
	for _, n := range late {
		total += n
	}
	a, best := bestFixed(fixed)
	t.Logf("csv then random: learner %.1f%% of the best fixed arm (%s); store %.1f%% of the last quarter",
		100*learnt/best, a, 100*float64(late[Store])/float64(total))
	if float64(late[Store]) < 0.9*float64(total) {
		t.Errorf("after the switch: store chosen %d of %d times in the last quarter (%v)", late[Store], total, late)
	}
	if learnt < 0.95*best {
		t.Errorf("switching workload: learner %.4f, best fixed %.4f", learnt, best)
	}
}

func TestChooseStartsAtRuleLevel(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), ExploreFloor: 1e-9, Explore: 1e-9}, rand.New(rand.NewPCG(1, 1)))
	now := time.Now()
	if d := l.Choose(Key{"r", CSV}, testModel(), 5, 0, 0, now); d.Arm != 5 || d.Why != "start" {
		t.Errorf("nothing known: %+v, want the start arm 5", d)
	}
	// Untrusted data (too few objects) does not override the start.
	l.Observe(Observation{Key{"r", CSV}, 9, Sample{In: 64 << 20, Out: 1 << 20, CPU: time.Second, Objects: 2}, now})
	if d := l.Choose(Key{"r", CSV}, testModel(), 5, 0, 0, now); d.Arm != 5 {
		t.Errorf("after 2 objects: %+v, want the start arm", d)
	}
	// Pure-Go arms: a level maps onto the nearest setting.
	pg := New(Config{Arms: Arms(false, -7, 19)}, rand.New(rand.NewPCG(1, 1)))
	if got := pg.nearest(5); got != 3 && got != 7 {
		t.Errorf("nearest(5) of %v = %v", pg.Arms(), got)
	}
	for r, want := range map[[2]int][]Arm{
		{-7, 19}: {Store, 1, 3, 7, 11},
		{-7, -1}: {Store, 1},
		{4, 6}:   {Store, 3, 7},
		{12, 19}: {Store, 11},
		{3, 3}:   {Store, 3},
	} {
		if got := Arms(false, r[0], r[1]); !slices.Equal(got, want) {
			t.Errorf("pure-Go arms of levels %d to %d: %v, want %v", r[0], r[1], got, want)
		}
	}
	if got := Arms(true, -7, 22); len(got) != 1+7+22 || got[0] != Store || got[1] != -7 {
		t.Errorf("libzstd arms %v", got)
	}
}

// observeLevels1And9 teaches l two levels of k: level 1 leaves 40% at
// 160 MB a CPU-second, level 9 30% at 8.
func observeLevels1And9(l *Learner, k Key, now time.Time) {
	l.Observe(Observation{k, 1, Sample{In: 64 << 20, Out: 26 << 20, CPU: 400 * time.Millisecond, Objects: 20}, now})
	l.Observe(Observation{k, 9, Sample{In: 64 << 20, Out: 19 << 20, CPU: 8 * time.Second, Objects: 20}, now})
}

func TestExploitsBestTrusted(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), ExploreFloor: 1e-9, Explore: 1e-9}, rand.New(rand.NewPCG(1, 1)))
	now := time.Now()
	k := Key{"r", CSV}
	m := testModel()
	// Level 1: 40% left, cheap. Level 9: 30% left, still cheap at these
	// prices: 9 wins.
	observeLevels1And9(l, k, now)
	if d := l.Choose(k, m, 3, 0, 0, now); d.Arm != 9 || d.Why != "exploit" {
		t.Errorf("%+v, want to exploit 9", d)
	}
	// At a CPU price 300 times higher, the cheap arm wins; at 1000 times,
	// no arm pays and storing does.
	m.VCPUSecond, m.DecodeVCPUSecond = m.VCPUSecond*300, m.DecodeVCPUSecond*300
	if d := l.Choose(k, m, 3, 0, 0, now); d.Arm != 1 {
		t.Errorf("expensive CPU: %+v, want 1", d)
	}
	m.VCPUSecond, m.DecodeVCPUSecond = m.VCPUSecond*1000/300, m.DecodeVCPUSecond*1000/300
	if d := l.Choose(k, m, 3, 0, 0, now); d.Arm != Store {
		t.Errorf("CPU too expensive for any level: %+v, want store", d)
	}
	// What is published and logged as the learnt choice is what is
	// exploited, store included.
	if a, benefit, ok := l.Best(k, m, now); !ok || a != Store || benefit != m.Benefit(Store, 1, 0) {
		t.Errorf("Best = %v, %v, %t; want store, as chosen", a, benefit, ok)
	}
	if _, _, ok := l.Best(Key{"r", XML}, m, now); ok {
		t.Error("Best of a class nothing is known of")
	}
}

func TestExploresNeighboursWithDecayingProbability(t *testing.T) {
	arms := Arms(true, -7, 19)
	l := New(Config{Arms: arms, Explore: 0.5, ExploreFloor: 0.05, ExploreHalf: 100}, rand.New(rand.NewPCG(3, 3)))
	now := time.Now()
	k := Key{"r", JSON}
	count := func() (explored int, far bool) {
		for range 2000 {
			d := l.Choose(k, testModel(), 3, 0, 0, now)
			if d.Why == "explore" {
				explored++
				if d.Arm != 2 && d.Arm != 4 && d.Arm != 6 && d.Arm != -1 && d.Arm != Store {
					far = true
				}
			}
		}
		return
	}
	early, far := count()
	if far {
		t.Error("explored beyond the neighbours of the start arm (2 and 4, -1 and 6: three arms away) and Store")
	}
	l.Observe(Observation{k, 3, Sample{In: 1 << 30, Out: 1 << 28, CPU: 10 * time.Second, Objects: 10000}, now})
	late, _ := count()
	t.Logf("exploration: %.1f%% of choices for a new key, %.1f%% after 10,000 objects (floor 5%%)", 100*float64(early)/2000, 100*float64(late)/2000)
	if early < 800 || early > 1200 {
		t.Errorf("new key explored %d of 2000 times, want about half", early)
	}
	if late < 60 || late > 140 {
		t.Errorf("experienced key explored %d of 2000 times, want about the 5%% floor", late)
	}
}

// A new class is never stored to explore before anything is known of the
// arm in use: the objects of its first archive are all chosen cold, and
// storing one that compresses loses its whole saving. Once that arm is
// known to save little, Store is among what is tried.
func TestExploresStoreOnlyWhenLittleIsKnownSaved(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), Explore: 1, ExploreFloor: 1}, rand.New(rand.NewPCG(4, 4)))
	now := time.Now()
	stores := func(k Key) (n int) {
		for range 1000 {
			if l.Choose(k, testModel(), 3, 0, 0, now).Arm == Store {
				n++
			}
		}
		return n
	}
	cold, little, much := Key{"r", JSON}, Key{"r", CSV}, Key{"r", XML}
	if n := stores(cold); n != 0 {
		t.Errorf("a new class was stored %d times in 1000 explorations", n)
	}
	l.Observe(Observation{little, 3, Sample{In: 1 << 30, Out: 1 << 30 * 95 / 100, CPU: 10 * time.Second, Objects: 1000}, now})
	l.Observe(Observation{much, 3, Sample{In: 1 << 30, Out: 1 << 28, CPU: 10 * time.Second, Objects: 1000}, now})
	if n := stores(little); n < 100 {
		t.Errorf("level 3 saving 5%%: stored %d times in 1000 explorations, want about one in five", n)
	}
	if n := stores(much); n != 0 {
		t.Errorf("level 3 saving 75%%: stored %d times in 1000 explorations", n)
	}
	// Where Store is a step away from the level in use (minLevel 1 or 3,
	// the pure-Go encoder's few levels), the step is no licence either.
	for _, c := range []struct {
		name  string
		arms  []Arm
		level int
	}{
		{"libzstd 1..19 at 3", Arms(true, 1, 19), 3},
		{"libzstd 3..19 at 3", Arms(true, 3, 19), 3},
		{"pure Go at 7", Arms(false, 1, 19), 7},
		{"pure Go at 1", Arms(false, 1, 19), 1},
	} {
		l := New(Config{Arms: c.arms, Explore: 1, ExploreFloor: 1}, rand.New(rand.NewPCG(6, 6)))
		k := Key{"r", CSV}
		l.Observe(Observation{k, Arm(c.level), Sample{In: 1 << 30, Out: 1 << 28, CPU: 10 * time.Second, Objects: 1000}, now})
		for _, k := range []Key{{"r", JSON}, k} {
			n := 0
			for range 1000 {
				if l.Choose(k, testModel(), Arm(c.level), 0, 0, now).Arm == Store {
					n++
				}
			}
			if n != 0 {
				t.Errorf("%s, %s: stored %d times in 1000 explorations", c.name, k.Class, n)
			}
		}
	}
}

// A large object is explored only once its class has sent sixteen times its
// size: a new class's first archive, chosen before anything is known, goes
// at the arm in use however large its objects (one 7 MiB object explored
// at level -1 cost a cold start 3% more bytes than level 3 on bench-e2e's
// sizes). Objects up to 1 MiB are explored from the start.
func TestExploresLargeObjectsOnlyOnceTheClassHasSentMore(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), Explore: 1, ExploreFloor: 1}, rand.New(rand.NewPCG(5, 5)))
	now := time.Now()
	k := Key{"r", CSV}
	explored := func(size int64) (n int) {
		for range 100 {
			if l.Choose(k, testModel(), 3, size, 0, now).Why == "explore" {
				n++
			}
		}
		return n
	}
	if n := explored(1 << 20); n != 100 {
		t.Errorf("a 1 MiB object of a new class explored %d times in 100, want every time", n)
	}
	if n := explored(8 << 20); n != 0 {
		t.Errorf("an 8 MiB object of a new class explored %d times in 100", n)
	}
	l.Observe(Observation{k, 3, Sample{In: 100 << 20, Out: 40 << 20, CPU: time.Second, Objects: 100}, now})
	if n := explored(8 << 20); n != 0 {
		t.Errorf("an 8 MiB object after 100 MiB of its class explored %d times in 100", n)
	}
	l.Observe(Observation{k, 3, Sample{In: 28 << 20, Out: 11 << 20, CPU: time.Second, Objects: 28}, now})
	if n := explored(8 << 20); n != 100 {
		t.Errorf("an 8 MiB object after 128 MiB of its class explored %d times in 100, want every time", n)
	}
}

// TestThroughputModeIsPerRule: a rule behind its queue steps its own
// choices faster, not those of a rule keeping up on the same worker
// (one shared throughput mode ran a fresh rule at level 3 and below for a
// rule 20 minutes behind beside it).
func TestThroughputModeIsPerRule(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), Explore: 1e-9, ExploreFloor: 1e-9, Freshness: time.Minute, StepEvery: 10 * time.Second}, rand.New(rand.NewPCG(1, 1)))
	behind, fresh := Key{"behind", CSV}, Key{"fresh", CSV}
	now := time.Now()
	for _, k := range []Key{behind, fresh} {
		l.Observe(Observation{k, 9, Sample{In: 64 << 20, Out: 19 << 20, CPU: 8 * time.Second, Objects: 20}, now})
	}
	for range 10 {
		now = now.Add(10 * time.Second)
		l.Choose(behind, testModel(), 3, 0, 20*time.Minute, now)
		if d := l.Choose(fresh, testModel(), 3, 0, time.Second, now); d.Arm != 9 {
			t.Fatalf("the rule keeping up chose %+v beside one behind, want 9", d)
		}
	}
	if l.Behind("behind") == 0 || l.Behind("fresh") != 0 {
		t.Errorf("behind %d and %d steps, want some and none", l.Behind("behind"), l.Behind("fresh"))
	}
}

func TestThroughputMode(t *testing.T) {
	arms := Arms(true, -7, 19)
	l := New(Config{Arms: arms, Explore: 1e-9, ExploreFloor: 1e-9, Freshness: time.Minute, StepEvery: 10 * time.Second}, rand.New(rand.NewPCG(1, 1)))
	k := Key{"r", CSV}
	now := time.Now()
	l.Observe(Observation{k, 9, Sample{In: 64 << 20, Out: 19 << 20, CPU: 8 * time.Second, Objects: 20}, now})
	if d := l.Choose(k, testModel(), 3, 0, 0, now); d.Arm != 9 {
		t.Fatalf("%+v", d)
	}
	// Behind: one arm faster per StepEvery, however often asked.
	var got []Arm
	for i := range 4 {
		now = now.Add(10 * time.Second)
		for range 5 {
			d := l.Choose(k, testModel(), 3, 0, 2*time.Minute, now)
			if d.Why != "throughput" {
				t.Fatalf("behind: %+v", d)
			}
			if j := len(got); j == i {
				got = append(got, d.Arm)
			}
		}
	}
	if got[0] != 8 || got[3] != 5 || l.Behind(k.Rule) != 4 {
		t.Errorf("stepped down through %v (behind %d), want 8, 7, 6, 5", got, l.Behind(k.Rule))
	}
	// Between half the target and the target: holds.
	now = now.Add(10 * time.Second)
	if d := l.Choose(k, testModel(), 3, 0, 40*time.Second, now); d.Arm != 5 {
		t.Errorf("in the hysteresis band: %+v, want to hold 5", d)
	}
	// Caught up: back one arm per StepEvery.
	for range 4 {
		now = now.Add(10 * time.Second)
		l.Choose(k, testModel(), 3, 0, time.Second, now)
	}
	if d := l.Choose(k, testModel(), 3, 0, time.Second, now); d.Arm != 9 || l.Behind(k.Rule) != 0 {
		t.Errorf("recovered: %+v, behind %d", d, l.Behind(k.Rule))
	}
	// Far behind, for long (a backfill): no further than the fastest
	// level; storing would pay full transfer on all of it.
	for range 40 {
		now = now.Add(10 * time.Second)
		l.Choose(k, testModel(), 3, 0, time.Hour, now)
	}
	if d := l.Choose(k, testModel(), 3, 0, time.Hour, now); d.Arm != arms[1] || d.Why != "throughput" {
		t.Errorf("far behind: %+v, want the fastest level, %v", d, arms[1])
	}
	// Caught up after that: back one arm per StepEvery from the fastest
	// level, not first through steps that moved nothing.
	i := slices.Index(arms, Arm(9))
	for range i - 1 {
		now = now.Add(10 * time.Second)
		l.Choose(k, testModel(), 3, 0, 0, now)
	}
	if d := l.Choose(k, testModel(), 3, 0, 0, now); d.Arm != 9 || l.Behind(k.Rule) != 0 {
		t.Errorf("caught up after a long backlog, %d steps later: %+v (behind %d), want 9", i-1, d, l.Behind(k.Rule))
	}
	// Content best stored stays stored.
	ks := Key{"r", Incompressible}
	for range 3 {
		l.Observe(Observation{ks, Store, Sample{In: 64 << 20, Out: 64 << 20, CPU: 0, Objects: 20}, now})
	}
	if d := l.Choose(ks, testModel(), Store, 0, time.Hour, now); d.Arm != Store {
		t.Errorf("far behind, incompressible: %+v, want store", d)
	}
}

func TestDecay(t *testing.T) {
	l := New(Config{Arms: Arms(true, 1, 3), HalfLife: time.Hour}, rand.New(rand.NewPCG(1, 1)))
	k := Key{"r", Text}
	t0 := time.Now()
	l.Observe(Observation{k, 1, Sample{In: 1000, Out: 500, Objects: 10}, t0})
	e := l.Estimates(k, testModel(), t0.Add(time.Hour))
	if len(e) != 1 || math.Abs(e[0].In-500) > 1e-6 || math.Abs(e[0].Objects-5) > 1e-9 {
		t.Errorf("after one half-life: %+v", e)
	}
	// An older observation arriving later counts for less.
	l.Observe(Observation{k, 1, Sample{In: 1000, Objects: 10}, t0})
	e = l.Estimates(k, testModel(), t0.Add(time.Hour))
	if math.Abs(e[0].In-1000) > 1e-6 {
		t.Errorf("late old observation: %+v", e)
	}
	// Load replaces what was known.
	l.Load([]Observation{{k, 2, Sample{In: 10, Out: 5, Objects: 1}, t0}})
	if e := l.Estimates(k, testModel(), t0); len(e) != 1 || e[0].Arm != 2 {
		t.Errorf("after Load: %+v", e)
	}
}

func TestBenefit(t *testing.T) {
	m := Model{TransferPerGiB: 0.02, VCPUSecond: 0.01, Regions: 2, DecodeVCPUSecond: 2 * 0.01, DecodeSeconds: 0.5 / GiB}
	// Halving 1 GiB to 2 regions saves 0.02; 1 CPU-second per GiB costs
	// 0.01, decoding 0.5 s in each of 2 regions another 0.01.
	if got := m.Benefit(3, 0.5, 1.0/GiB); math.Abs(got-0) > 1e-12 {
		t.Errorf("Benefit = %v, want 0", got)
	}
	if got := m.Benefit(Store, 1, 0); got != 0 {
		t.Errorf("store of nothing = %v", got)
	}
	// Delivered only in the source's region: nothing crosses, so halving
	// saves nothing and costs the CPU.
	local := Model{TransferPerGiB: 0.02, VCPUSecond: 0.01, Regions: 0, DecodeVCPUSecond: 0.01, DecodeSeconds: 0.5 / GiB}
	if got := local.Benefit(3, 0.5, 1.0/GiB); math.Abs(got+0.015) > 1e-12 {
		t.Errorf("Benefit with no region crossed = %v, want -0.015", got)
	}
}

// A rule's level outside the learner's arms starts at the nearest level,
// never at store, which sits between -1 and 1 in number only.
func TestStartsAtNearestLevel(t *testing.T) {
	k := Key{Rule: "r", Class: CSV}
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		arms        []Arm
		start, want Arm
	}{
		{Arms(true, 3, 19), 1, 3},
		{Arms(true, 3, 19), 22, 19},
		{Arms(false, -3, 11), -3, 1}, // pure Go: store, 1, 3, 7, 11
		{Arms(true, -7, 19), Store, Store},
	} {
		l := New(Config{Arms: c.arms, HalfLife: time.Hour}, rand.New(rand.NewPCG(1, 1)))
		if d := l.Choose(k, testModel(), c.start, 1<<20, 0, t0); d.Arm != c.want || d.Why != "start" {
			t.Errorf("arms %v, start %v: chose %v (%s), want %v", c.arms, c.start, d.Arm, d.Why, c.want)
		}
	}
}

// A rule whose only destination is in its source region saves no transfer
// by compressing: the learner stores, from the first object on, even what
// compresses well, and explores no level (one in fifty objects were
// compressed at the exploration floor).
func TestStoresWhenNothingCrosses(t *testing.T) {
	k := Key{Rule: "r", Class: CSV}
	l := New(Config{Arms: Arms(true, 1, 9), HalfLife: time.Hour, Explore: 0.5, ExploreFloor: 0.5, ExploreHalf: 1e6},
		rand.New(rand.NewPCG(1, 1)))
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	local := Model{TransferPerGiB: 0.02, VCPUSecond: VCPUSecond(0.01245), Regions: 0, DecodeVCPUSecond: VCPUSecond(0.01245), DecodeSeconds: 1.0 / 500e6}
	for i := range 200 {
		if d := l.Choose(k, local, 3, 1<<20, 0, t0); d.Arm != Store || d.Why != "local" {
			t.Fatalf("nothing crosses, nothing known, choice %d: %v (%s), want store (local)", i, d.Arm, d.Why)
		}
	}
	var obs []Observation
	for _, a := range l.cfg.Arms {
		s := Sample{In: 100 << 20, Out: 30 << 20, CPU: 400 * time.Millisecond, Objects: 100}
		if a == Store {
			s = Sample{In: 100 << 20, Out: 100 << 20, CPU: 5 * time.Millisecond, Objects: 100}
		}
		obs = append(obs, Observation{Key: k, Arm: a, Sample: s, At: t0})
	}
	l.Load(obs)
	remote := local
	remote.Regions = 1
	for i := range 200 {
		if d := l.Choose(k, local, 3, 1<<20, 0, t0); d.Arm != Store {
			t.Fatalf("nothing crosses, choice %d: %v (%s), want store", i, d.Arm, d.Why)
		}
	}
	exploits := New(Config{Arms: l.cfg.Arms, HalfLife: time.Hour}, rand.New(rand.NewPCG(1, 1)))
	exploits.Load(obs)
	if d := exploits.Choose(k, remote, 3, 1<<20, 0, t0); d.Arm == Store {
		t.Errorf("one region crossed: chose store (%s)", d.Why)
	}
}

func TestBenchmark(t *testing.T) {
	r, err := Benchmark(50*time.Millisecond, archive.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %.0f MB per CPU-second at level %d; decoding %.0f MB per CPU-second", r.Encoder, r.CompressMBps, ReferenceLevel, 1e-6/r.DecodeSeconds)
	if r.CompressMBps <= 0 || r.DecodeSeconds <= 0 {
		t.Errorf("benchmark: %+v", r)
	}
	if f := Factor(200, 100); f != 2 {
		t.Errorf("Factor(200, 100) = %v", f)
	}
	if f := Factor(0, 100); f != 1 {
		t.Errorf("Factor without a figure = %v", f)
	}
}

// TestLargeObjectsOfARareClassAreExplored: one 64 MiB object every 15
// minutes never adds up to sixteen times its size in the class's decayed
// input; once the class is known, such objects are still explored.
func TestLargeObjectsOfARareClassAreExplored(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), HalfLife: time.Hour, Explore: 1, ExploreFloor: 1}, rand.New(rand.NewPCG(1, 1)))
	k := Key{"r", CSV}
	now := time.Now()
	why := map[string]int{}
	for range 4 * 48 {
		d := l.Choose(k, testModel(), 3, 64<<20, 0, now)
		why[d.Why]++
		l.Observe(Observation{k, d.Arm, Sample{In: 64 << 20, Out: 16 << 20, CPU: 300 * time.Millisecond, Objects: 1}, now})
		now = now.Add(15 * time.Minute)
	}
	if why["explore"] == 0 {
		t.Errorf("decisions %v: none explored", why)
	}
	if why["start"] < 3 {
		t.Errorf("decisions %v: the class's first objects explored before it was known", why)
	}
}

func TestExplorable(t *testing.T) {
	for _, c := range []struct {
		size               int64
		seen, total, trust float64
		want               bool
	}{
		{1 << 20, 0, 0, 3, true},             // small: always
		{64 << 20, 0, 0, 3, false},           // a new class's first large object
		{64 << 20, 2 << 30, 100, 3, true},    // a sixteenth of what the class sent
		{64 << 20, 384 << 20, 6, 3, true},    // the class's usual size, known
		{64 << 20, 384 << 20, 2, 3, false},   // ... not known yet
		{512 << 20, 384 << 20, 60, 3, false}, // far above the class's mean
	} {
		if got := explorable(c.size, c.seen, c.total, c.seen, c.trust); got != c.want {
			t.Errorf("explorable(%d, %v, %v, %v) = %v, want %v", c.size, c.seen, c.total, c.trust, got, c.want)
		}
	}
}

// TestFewObjectsAnHourAreLearnt: at the default half-life of an hour, a
// class of one or two objects an hour never held three decayed objects of
// any level: nothing was ever trusted, so it kept exploring and never used
// what it learnt. Trust counts objects decayed ten times slower.
func TestFewObjectsAnHourAreLearnt(t *testing.T) {
	for _, c := range []struct {
		perHour int
		size    int64
	}{{1, 512 << 10}, {2, 512 << 10}, {1, 4 << 30}} {
		l := New(Config{Arms: Arms(true, -7, 19), HalfLife: time.Hour}, rand.New(rand.NewPCG(1, 1)))
		k := Key{"r", CSV}
		p := csv
		noise := rand.New(rand.NewPCG(1, 2))
		now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		why := map[string]int{}
		for range 14 * 24 * c.perHour {
			d := l.Choose(k, testModel(), 3, c.size, 0, now)
			why[d.Why]++
			l.Observe(Observation{k, d.Arm, outcome(noise, p, d.Arm, c.size), now})
			now = now.Add(time.Hour / time.Duration(c.perHour))
		}
		t.Logf("%d objects of %d bytes an hour: %v", c.perHour, c.size, why)
		if why["exploit"] < why["start"] {
			t.Errorf("%d objects of %d bytes an hour for two weeks: decisions %v, mostly not learnt", c.perHour, c.size, why)
		}
		if c.size > 1<<20 && why["explore"] == 0 {
			t.Errorf("%d objects of %d bytes an hour for two weeks: decisions %v, none explored", c.perHour, c.size, why)
		}
	}
}

// TestManySmallObjectsAreLearnt: a class of small objects (4 KiB), its
// learner reloaded every 10 minutes with the last ten half-lives of
// statistics as the source's is, explored a level a few objects an hour:
// each level explored held fewer than TrustBytes of decayed input, so none
// was ever trusted; it kept the start level for good and explored in
// vain. Enough objects are trusted whatever their bytes.
func TestManySmallObjectsAreLearnt(t *testing.T) {
	for _, perHour := range []int{300, 1000} {
		l := New(Config{Arms: Arms(true, -7, 19), HalfLife: time.Hour}, rand.New(rand.NewPCG(1, 1)))
		k := Key{"r", CSV}
		noise := rand.New(rand.NewPCG(1, 2))
		now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		var obs []Observation
		lastDay := map[Arm]int{}
		const days = 14
		for i := range days * 24 * perHour {
			if i%(perHour/6) == 0 { // a refresh every 10 minutes
				window := now.Add(-10 * time.Hour)
				obs = slices.DeleteFunc(obs, func(o Observation) bool { return o.At.Before(window) })
				l.Load(obs)
			}
			d := l.Choose(k, testModel(), 3, 4<<10, 0, now)
			if i >= (days-1)*24*perHour && d.Why == "exploit" {
				lastDay[d.Arm]++
			}
			o := Observation{k, d.Arm, outcome(noise, csv, d.Arm, 4<<10), now}
			obs = append(obs, o)
			l.Observe(o)
			now = now.Add(time.Hour / time.Duration(perHour))
		}
		t.Logf("%d objects of 4 KiB an hour: the last day exploited %v", perHour, lastDay)
		if lastDay[3]*2 > perHour*24 {
			t.Errorf("%d objects of 4 KiB an hour: the last day exploited %v, mostly the start level", perHour, lastDay)
		}
	}
}

// TestLargeObjectsTakeALevelThatFinishes: an object that would take more
// than MaxObjectCPU at the level exploited (its class's measured CPU per
// byte) is compressed at the slowest level that does not: at level 19 a
// 100 GB object would hold its message past SQS's 12 hours.
func TestLargeObjectsTakeALevelThatFinishes(t *testing.T) {
	l := New(Config{Arms: Arms(true, -7, 19), ExploreFloor: 1e-9, Explore: 1e-9}, rand.New(rand.NewPCG(1, 1)))
	now := time.Now()
	k := Key{"r", CSV}
	m := testModel()
	// Level 9 at 8 MB a CPU-second wins on price; level 1 at 160.
	observeLevels1And9(l, k, now)
	if d := l.Choose(k, m, 3, 1<<30, 0, now); d.Arm != 9 {
		t.Fatalf("1 GiB: %+v, want 9 (about 2 CPU-minutes)", d)
	}
	// 100 GiB at level 9: about 3.6 CPU-hours. Levels 2 to 8 are not
	// known: taken to fit, the slowest of them is used.
	if d := l.Choose(k, m, 3, 100<<30, 0, now); d.Arm != 8 || d.Why != "size" {
		t.Errorf("100 GiB: %+v, want level 8 for its size", d)
	}
	// Known to take too long too, down to one that fits.
	for a := Arm(2); a <= 8; a++ {
		l.Observe(Observation{k, a, Sample{In: 64 << 20, Out: 20 << 20, CPU: 8 * time.Second, Objects: 20}, now})
	}
	if d := l.Choose(k, m, 3, 100<<30, 0, now); d.Arm != 1 || d.Why != "size" {
		t.Errorf("100 GiB, levels 2 to 9 known slow: %+v, want level 1", d)
	}
	// Nothing known of a class (a new one, a new deployment): levels'
	// typical speeds, level 19 about 3 MB a CPU-second.
	if d := l.Choose(Key{"r", XML}, m, 19, 100<<30, 0, now); d.Arm >= 19 || d.Why != "size" ||
		float64(100<<30)*typicalCPUPerByte(d.Arm) > MaxObjectCPU.Seconds() {
		t.Errorf("100 GiB of a class nothing is known of, started at 19: %+v", d)
	}
	// A rule whose levels are not learnt (adaptive off) is capped alike.
	if a := l.Fit(19, 1<<30); a != 19 {
		t.Errorf("Fit(19, 1 GiB) = %v, want 19 (about 6 CPU-minutes)", a)
	}
	if a := l.Fit(19, 100<<30); a >= 19 || float64(100<<30)*typicalCPUPerByte(a) > MaxObjectCPU.Seconds() {
		t.Errorf("Fit(19, 100 GiB) = %v", a)
	}
	// A level about as fast as one GET stream reads is never capped: the
	// read takes as long.
	if a := l.Fit(3, 10<<40); a != 3 {
		t.Errorf("Fit(3, 10 TiB) = %v, want 3", a)
	}
	if a := l.Fit(9, 10<<40); a != 3 {
		t.Errorf("Fit(9, 10 TiB) = %v, want 3", a)
	}
}
