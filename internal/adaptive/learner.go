package adaptive

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Sample is what encoding some objects of one class with one arm did.
type Sample struct {
	In, Out int64         // bytes
	CPU     time.Duration // compression CPU, normalised to the fleet (Factor)
	Objects int
}

// Key is what statistics are kept per: a rule and a content class.
type Key struct {
	Rule  string
	Class Class
}

// Observation is a Sample of one arm of one key, taken at At (for a fleet
// statistic, the middle of the period it sums).
type Observation struct {
	Key    Key
	Arm    Arm
	Sample Sample
	At     time.Time
}

// Config tunes a Learner. Zero fields take the defaults documented on them.
type Config struct {
	Arms         []Arm         // fastest first (Arms); required
	HalfLife     time.Duration // an observation counts half after this (default 6h; settings.adaptive.halfLife's is 1h)
	TrustObjects float64       // objects before an arm's estimate is trusted, decayed ten times slower than it (default 3)
	TrustBytes   float64       // and input bytes, decayed so (default 256 KiB), or manyObjects times TrustObjects objects
	Explore      float64       // exploration probability of a key never seen (default 0.1)
	ExploreFloor float64       // exploration never drops below (default 0.02)
	ExploreHalf  float64       // decayed objects of a key after which exploration halves (default 200)
	Freshness    time.Duration // oldest-message age beyond which throughput wins (default 5m)
	StepEvery    time.Duration // throughput mode moves at most one arm per this (default 10s)
}

func (c *Config) defaults() {
	if c.HalfLife <= 0 {
		c.HalfLife = 6 * time.Hour
	}
	if c.TrustObjects <= 0 {
		c.TrustObjects = 3
	}
	if c.TrustBytes <= 0 {
		c.TrustBytes = 256 << 10
	}
	if c.Explore <= 0 {
		c.Explore = 0.1
	}
	if c.ExploreFloor <= 0 {
		c.ExploreFloor = min(0.02, c.Explore)
	}
	if c.ExploreHalf <= 0 {
		c.ExploreHalf = 200
	}
	if c.Freshness <= 0 {
		c.Freshness = 5 * time.Minute
	}
	if c.StepEvery <= 0 {
		c.StepEvery = 10 * time.Second
	}
}

// sums are decayed totals, as of at. trustN and trustIn count objects and
// bytes for trust, decayed trustMemory times slower: a class of a few
// objects an hour never holds TrustObjects decayed objects at a half-life
// of an hour, and would explore forever without ever using what it learnt.
// Its estimate still follows the recent objects; trust asks only that
// enough were measured within about the window the learner is loaded
// with (ten half-lives, package source).
type sums struct {
	in, out, cpu, n float64
	trustN, trustIn float64
	at              time.Time
}

const trustMemory = 10

// manyObjects times TrustObjects objects are trusted whatever their bytes:
// a class of small objects (a few KiB) explores a level a few objects an
// hour, never TrustBytes of them within the window the learner is loaded
// with, so it never left its start level and explored in vain
// (TestManySmallObjectsAreLearnt). Four times as many objects as a large
// class needs make up for small objects' noisier ratios.
const manyObjects = 4

func (s *sums) decayTo(t time.Time, halfLife time.Duration) {
	if !s.at.IsZero() && t.After(s.at) {
		f, slow := decay(t.Sub(s.at), halfLife)
		s.in, s.out, s.cpu, s.n = s.in*f, s.out*f, s.cpu*f, s.n*f
		s.trustN, s.trustIn = s.trustN*slow, s.trustIn*slow
	}
	if t.After(s.at) {
		s.at = t
	}
}

// decay is what an observation d old counts for: in the estimates, and
// for trust.
func decay(d, halfLife time.Duration) (f, slow float64) {
	return math.Exp2(-float64(d) / float64(halfLife)), math.Exp2(-float64(d) / float64(trustMemory*halfLife))
}

func (s *sums) add(x Sample, at time.Time, halfLife time.Duration) {
	s.decayTo(at, halfLife)
	f, slow := 1.0, 1.0
	if at.Before(s.at) { // an older observation arrives later: decay it alone
		f, slow = decay(s.at.Sub(at), halfLife)
	}
	s.in += f * float64(x.In)
	s.out += f * float64(x.Out)
	s.cpu += f * x.CPU.Seconds()
	s.n += f * float64(x.Objects)
	s.trustN += slow * float64(x.Objects)
	s.trustIn += slow * float64(x.In)
}

// Decision is the arm chosen for an object and why.
type Decision struct {
	Arm Arm
	// Why: "start" (nothing trusted yet: the rule's level, or Store for
	// content that does not compress), "exploit", "explore" or
	// "throughput" (behind the freshness target: a faster arm), "size"
	// (an object too large for the arm chosen: MaxObjectCPU) or "local"
	// (a rule whose bytes cross no region: Store).
	Why string
}

// Estimate is what the learner knows of one arm of one key.
type Estimate struct {
	Arm          Arm
	In, Out, CPU float64 // decayed sums (bytes, bytes, CPU-seconds)
	Objects      float64
	Benefit      float64 // $ per GiB of input
	Trusted      bool

	trustN, trustIn float64 // objects and bytes, decayed for trust (sums)
}

// Learner chooses arms per key. Safe for concurrent use.
type Learner struct {
	cfg  Config
	mu   sync.Mutex
	rng  *rand.Rand
	keys map[Key]map[Arm]*sums

	// throttles are each rule's throughput mode: a rule behind its queue
	// steps its own choices faster, not those of a rule keeping up
	// beside it on the same worker.
	throttles map[string]*throttle
}

// throttle is one rule's throughput mode.
type throttle struct {
	steps int       // arms below the best
	at    time.Time // when steps last moved
}

// New returns a Learner with no observations. rng makes it deterministic.
func New(cfg Config, rng *rand.Rand) *Learner {
	cfg.defaults()
	return &Learner{cfg: cfg, rng: rng, keys: map[Key]map[Arm]*sums{}, throttles: map[string]*throttle{}}
}

// Arms returns the arms the learner chooses from, fastest first.
func (l *Learner) Arms() []Arm { return l.cfg.Arms }

// Observe adds what an arm did on objects of k.
func (l *Learner) Observe(o Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observe(o)
}

func (l *Learner) observe(o Observation) {
	arms := l.keys[o.Key]
	if arms == nil {
		arms = map[Arm]*sums{}
		l.keys[o.Key] = arms
	}
	s := arms[o.Arm]
	if s == nil {
		s = &sums{}
		arms[o.Arm] = s
	}
	s.add(o.Sample, o.At, l.cfg.HalfLife)
}

// Load replaces everything the learner knows with obs (the fleet's
// statistics, which include this task's own once written).
func (l *Learner) Load(obs []Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = map[Key]map[Arm]*sums{}
	for _, o := range obs {
		l.observe(o)
	}
}

// Estimates returns what the learner knows of each arm of k, fastest first.
func (l *Learner) Estimates(k Key, m Model, now time.Time) []Estimate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.estimates(k, m, now)
}

func (l *Learner) estimates(k Key, m Model, now time.Time) []Estimate {
	arms := l.keys[k]
	var out []Estimate
	for _, a := range l.cfg.Arms {
		s := arms[a]
		if s == nil {
			continue
		}
		s.decayTo(now, l.cfg.HalfLife)
		e := Estimate{Arm: a, In: s.in, Out: s.out, CPU: s.cpu, Objects: s.n}
		if s.in > 0 {
			e.Benefit = m.Benefit(a, s.out/s.in, s.cpu/s.in)
		}
		e.Trusted = s.trustN >= l.cfg.TrustObjects && (s.trustIn >= l.cfg.TrustBytes || s.trustN >= manyObjects*l.cfg.TrustObjects)
		e.trustN, e.trustIn = s.trustN, s.trustIn
		out = append(out, e)
	}
	return out
}

// Choose picks the arm for the next object of k, of size bytes. start is
// the arm to use while nothing is trusted; lag is the age of the oldest
// message the object comes from.
func (l *Learner) Choose(k Key, m Model, start Arm, size int64, lag time.Duration, now time.Time) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	ests := l.estimates(k, m, now)
	d := l.choose(k, m, ests, start, size, lag, now)
	if i := slices.Index(l.cfg.Arms, d.Arm); i >= 0 {
		if j := l.fitting(ests, i, size); j < i {
			// Compressed at the level chosen, the object would hold its
			// message for hours: SQS keeps a message hidden 12 hours at
			// most (then another task starts it again), and a stop
			// (Spot) cuts it after the drain.
			d = Decision{Arm: l.cfg.Arms[j], Why: "size"}
		}
	}
	return d
}

// Fit is a, or, for an object of size bytes that would take more than
// MaxObjectCPU at a's typical speed, the slowest faster arm that does not:
// Choose's cap, for a rule whose levels are not learnt.
func (l *Learner) Fit(a Arm, size int64) Arm {
	if a == Store || float64(size)*typicalCPUPerByte(a) <= cpuAllowed(size) {
		return a
	}
	return l.cfg.Arms[l.fitting(nil, slices.Index(l.cfg.Arms, l.nearest(a)), size)]
}

func (l *Learner) choose(k Key, m Model, ests []Estimate, start Arm, size int64, lag time.Duration, now time.Time) Decision {
	if m.Regions == 0 {
		// Delivered only where it is read: no byte crosses a region, so
		// no level can pay for its CPU, nor is one worth exploring.
		return Decision{Arm: Store, Why: "local"}
	}
	d := Decision{Arm: l.nearest(start), Why: "start"}
	if a, _, ok := best(ests, m); ok {
		d = Decision{Arm: a, Why: "exploit"}
	}
	total, seen, known, knownIn := 0.0, 0.0, 0.0, 0.0
	trusted := map[Arm]bool{}
	for _, e := range ests {
		total += e.Objects
		seen += e.In
		known += e.trustN
		knownIn += e.trustIn
		trusted[e.Arm] = e.Trusted
	}
	i := slices.Index(l.cfg.Arms, d.Arm)
	// No further than the fastest level that compresses: below it only
	// Store is left, which saves next to no CPU (the fastest levels outrun
	// the SHA-256 every byte gets anyway) and puts every byte on the wire,
	// the upload's and the transfer's. A backlog that lasts (a backfill) is
	// for scaling out to absorb; storing it would pay full transfer for all
	// of it.
	floor := min(i, 1)
	t := l.throttles[k.Rule]
	if t == nil {
		t = &throttle{}
		l.throttles[k.Rule] = t
	}
	l.adjustSteps(t, lag, now, i-floor)
	if t.steps > 0 {
		return Decision{Arm: l.cfg.Arms[max(i-t.steps, floor)], Why: "throughput"}
	}
	p := max(l.cfg.ExploreFloor, l.cfg.Explore*math.Exp2(-total/l.cfg.ExploreHalf))
	if l.rng.Float64() >= p || !explorable(size, seen, known, knownIn, l.cfg.TrustObjects) {
		return d
	}
	// Explore a neighbour, or Store, preferring one not known well yet.
	// Store is a candidate whenever the arm in use is known to save little:
	// whether compressing pays at all is the first question, and on data
	// that does not compress every level looks alike, so a walk from
	// neighbour to neighbour would never get there. Not before anything is
	// known of it: storing one of a new class's first objects (the first
	// archive's, all chosen before its statistics come in, a large one
	// included) would lose that object's whole saving on data that
	// compresses, and data that looks incompressible starts stored anyway
	// (Classify and the probe).
	// Arms[0] is Store: a step landing on it (a level next to the fastest,
	// a narrow range, the pure-Go encoder's few levels) is no licence.
	var near, unknown []Arm
	for _, step := range exploreSteps {
		if j := i + step; j > 0 && j < len(l.cfg.Arms) {
			near = append(near, l.cfg.Arms[j])
		}
	}
	if s, known := saving(ests, d.Arm); i > 0 && known && s < storeWorthTrying {
		near = append(near, l.cfg.Arms[0])
	}
	for _, a := range near {
		if !trusted[a] {
			unknown = append(unknown, a)
		}
	}
	if len(unknown) > 0 {
		near = unknown
	}
	if len(near) == 0 {
		return d
	}
	return Decision{Arm: near[l.rng.IntN(len(near))], Why: "explore"}
}

// MaxObjectCPU is the most CPU time one object may take to compress at
// the level chosen for it, by its class's measured CPU per byte, unless
// reading it takes longer (one GET stream, readBytesPerSecond): a faster
// level is used beyond it (level 19 passes it at about 20 GB; level 3,
// about as fast as the read, never does).
const MaxObjectCPU = 2 * time.Hour

// readBytesPerSecond is about what one GET stream of S3 reads: an object
// compressed as fast takes no longer for it.
const readBytesPerSecond = 100e6

// cpuAllowed is the CPU time an object of size bytes may take to compress.
func cpuAllowed(size int64) float64 {
	return max(MaxObjectCPU.Seconds(), float64(size)/readBytesPerSecond)
}

// fitting is the index of the slowest arm at or below i (the arms run
// from Store, the fastest, to the slowest level) that compresses an object
// of size bytes within cpuAllowed: by its CPU per byte measured (ests),
// else by its level's typical speed. Never Store, unless i is: the fastest
// level (index 1) outruns a GET stream, and storing would lose the whole
// saving of a large object to a slow measurement.
func (l *Learner) fitting(ests []Estimate, i int, size int64) int {
	cpuPerByte := func(a Arm) float64 {
		for _, e := range ests {
			if e.Arm == a && e.In > 0 {
				return e.CPU / e.In
			}
		}
		return typicalCPUPerByte(a)
	}
	for ; i > 1 && float64(size)*cpuPerByte(l.cfg.Arms[i]) > cpuAllowed(size); i-- {
	}
	return i
}

// typicalCPUPerByte is a level's CPU-seconds per byte where nothing is
// measured: zstd's single-thread speed on text, rounded down (a vCPU of
// this project's benchmarks: level 3 about 115 MB/s, 19 about 3).
func typicalCPUPerByte(a Arm) float64 {
	var mbps float64
	switch {
	case a == Store:
		return 0
	case a <= 1:
		mbps = 250
	case a <= 3:
		mbps = 115
	case a <= 6:
		mbps = 50
	case a <= 9:
		mbps = 30
	case a <= 12:
		mbps = 18
	case a <= 15:
		mbps = 7
	case a <= 19:
		mbps = 3
	default:
		mbps = 2
	}
	return 1 / (mbps * 1e6)
}

// Best returns the arm the learner exploits for k, and its benefit; false
// while no arm is trusted (Choose then starts where it is told).
func (l *Learner) Best(k Key, m Model, now time.Time) (Arm, float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return best(l.estimates(k, m, now), m)
}

// best is the trusted arm of ests with the greatest benefit, or Store once
// that one loses money: storing needs no learning to be judged, as it saves
// nothing and costs (next to) nothing.
func best(ests []Estimate, m Model) (Arm, float64, bool) {
	arm, benefit, found, storeTrusted := Store, math.Inf(-1), false, false
	for _, e := range ests {
		if !e.Trusted {
			continue
		}
		storeTrusted = storeTrusted || e.Arm == Store
		if e.Benefit > benefit {
			arm, benefit, found = e.Arm, e.Benefit, true
		}
	}
	if stored := m.Benefit(Store, 1, 0); found && arm != Store && !storeTrusted && benefit < stored {
		return Store, stored, true
	}
	return arm, benefit, found
}

// An object is explored only if it is at most exploreAlways bytes, or at
// most 1/exploreShare of the class's (decayed) input known so far: what
// one exploration can lose (a level worse than the one in use, on every
// byte of the object) stays small against what the class has sent. A
// class's first large objects, those of its first archive above all, go
// at the arm in use; once the class has sent enough, large objects are
// explored like small ones, so levels are still measured on every size.
// So is an object at most exploreMean times the class's mean, once the
// class has trustObjects objects: a class of a few large objects an hour
// (nightly exports, hourly dumps) never holds sixteen of them in its
// decayed input, and would otherwise never be explored; one exploration
// then risks one object's worth, at the exploration's (small) probability.
const (
	exploreAlways = 1 << 20
	exploreShare  = 16
	exploreMean   = 2
)

// explorable reports whether an object of size bytes may be explored in a
// class of seen bytes (decayed), and of known objects of knownIn bytes
// (decayed as for trust), trusted from trust objects on.
func explorable(size int64, seen, known, knownIn, trust float64) bool {
	s := float64(size)
	return s <= max(exploreAlways, seen/exploreShare) || known >= trust && s <= exploreMean*knownIn/known
}

// exploreSteps are the arms tried around the one in use: the next ones,
// whose difference is small and slow to tell from noise, and three away,
// whose difference shows sooner, so the walk towards a better level does
// not stall on a flat stretch.
var exploreSteps = []int{-3, -1, 1, 3}

// storeWorthTrying is the saving (1 - out/in) below which exploring Store
// is worth it: it saves nothing, so it can only beat an arm that saves
// little, and trying it on data that compresses well loses the whole
// saving of the object.
const storeWorthTrying = 0.1

// saving is the fraction of input arm a removes, as estimated in ests, and
// whether anything is known of it.
func saving(ests []Estimate, a Arm) (float64, bool) {
	for _, e := range ests {
		if e.Arm == a && e.In > 0 {
			return 1 - e.Out/e.In, true
		}
	}
	return 0, false
}

// adjustSteps moves throughput mode one arm faster while lag is past the
// freshness target, up to room arms (where the choice stops moving: steps
// beyond would only delay the way back), and one arm back once it is under
// half of it, at most once per StepEvery.
func (l *Learner) adjustSteps(t *throttle, lag time.Duration, now time.Time, room int) {
	if now.Sub(t.at) < l.cfg.StepEvery {
		return
	}
	switch {
	case lag > l.cfg.Freshness && t.steps < room:
		t.steps++
		t.at = now
	case lag < l.cfg.Freshness/2 && t.steps > 0:
		t.steps--
		t.at = now
	}
}

// Behind reports how many arms faster than the best the learner is
// choosing for rule to keep up (0: not behind).
func (l *Learner) Behind(rule string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.throttles[rule]; t != nil {
		return t.steps
	}
	return 0
}

// nearest maps a level onto the closest arm the learner has. Store sits
// between levels -1 and 1 in number only: a level is never mapped to it.
func (l *Learner) nearest(a Arm) Arm {
	best, found := Store, false
	for _, x := range l.cfg.Arms {
		if (x != Store || a == Store) && (!found || abs(int(x)-int(a)) < abs(int(best)-int(a))) {
			best, found = x, true
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
