package adaptive

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/corpus"
	"github.com/xrc-dev/xrc/internal/libzstd"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// benchClasses are the generated classes the learner is measured on, with
// the content type a source would see for each.
var benchClasses = []struct{ name, ctype string }{
	{"csv", "text/csv"}, {"jsonl", "application/x-ndjson"}, {"xml", "application/xml"}, {"text", "text/plain"}, {"random", "application/octet-stream"},
}

// objects cuts data into objects of size bytes.
func objects(data []byte, size int) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := min(size, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// encode writes objs into one archive, each at arms[i], and returns each
// object's stats.
func encode(b *testing.B, w *archive.Writer, objs [][]byte, arms []Arm) []archive.ObjectStats {
	m := &manifest.Manifest{Format: manifest.Format, ArchiveID: "bench", CreatedAt: time.Unix(0, 0).UTC(), SourceRegion: "r", RuleID: "bench", Level: 3}
	for i, o := range objs {
		key := fmt.Sprintf("o%06d", i)
		m.Objects = append(m.Objects, manifest.Object{Member: manifest.MemberName(i, key), Bucket: "b", Key: key, Size: int64(len(o)),
			LastModified: time.Unix(0, 0).UTC(), Destinations: []manifest.Destination{{Region: "r", Bucket: "b", Key: key}}})
	}
	if err := w.Begin(io.Discard, m); err != nil {
		b.Fatal(err)
	}
	for i, o := range objs {
		if err := w.SetLevel(int(arms[i])); err != nil {
			b.Fatal(err)
		}
		if _, err := w.WriteObject(i, bytes.NewReader(o)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return append([]archive.ObjectStats(nil), w.Stats()...)
}

func sum(st []archive.ObjectStats) Sample {
	var s Sample
	for _, x := range st {
		s.In += x.In
		s.Out += x.Out
		s.CPU += x.CPU
		s.Objects++
	}
	return s
}

// BenchmarkAdaptive measures, on each generated class and on a mix, the net
// benefit and the CPU of the learner against every fixed arm (every level
// and Store), with real compression (the archive Writer, CPU of encoding
// alone) and the default prices, one target region. Fixed arms are
// measured on a sample of the class (8 MiB), the learner on 64 MiB of it,
// objects of 64 KiB, in archives of 64 objects; both are reported per GiB
// of input. Goals: the learner within 5% of the best fixed arm in hindsight
// on each class; Store on random data at most 5% of level 3's CPU.
// Run with: make bench-adaptive (about 3 minutes).
func BenchmarkAdaptive(b *testing.B) {
	for range b.N {
		runAdaptiveBench(b)
	}
}

// benchSetup measures this machine's CPU and returns it with the default
// prices' model (one target region), every arm and a writer.
func benchSetup(b *testing.B) (BenchResult, Model, []Arm, *archive.Writer) {
	br, err := Benchmark(time.Second, archive.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m := Model{TransferPerGiB: 0.02, VCPUSecond: VCPUSecond(0.01245), Regions: 1, DecodeVCPUSecond: VCPUSecond(0.01245), DecodeSeconds: br.DecodeSeconds}
	return br, m, Arms(libzstd.Available, -7, 19), archive.NewWriter(archive.WriterOptions{})
}

func runAdaptiveBench(b *testing.B) {
	const objSize, fixedBytes, learnBytes, perArchive = 64 << 10, 8 << 20, 64 << 20, 64
	br, m, arms, w := benchSetup(b)
	perGiB := func(s Sample, a Arm) (benefit, cpuPerGiB float64) {
		return m.Benefit(a, float64(s.Out)/float64(s.In), s.CPU.Seconds()/float64(s.In)), s.CPU.Seconds() / float64(s.In) * GiB
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s, %.0f MB/cpu-s at level 3; $/GiB of input, one target region, transfer $0.02/GiB, vCPU $0.01245/h\n", br.Encoder, br.CompressMBps)
	fmt.Fprintln(tw, "class\tbest fixed arm\tits $/GiB\tlevel 3 $/GiB\tstore $/GiB\tlearner $/GiB\tlearner / best\tlearner cpu-s/GiB\tbest arm cpu-s/GiB\tlearner's mix (top 3)\t")
	rng := rand.New(rand.NewPCG(1, 2))
	var storeRandomCPU, level3RandomCPU float64
	for _, c := range append(benchClasses, struct{ name, ctype string }{"mix", ""}) {
		var data []byte
		class := func(i int) string { return c.ctype }
		if c.name == "mix" {
			parts := make([][]byte, len(benchClasses))
			for j, bc := range benchClasses {
				parts[j] = objectsOf(bc.name, learnBytes/len(benchClasses))
			}
			for i := 0; ; i++ {
				j := i % len(parts)
				if len(parts[j]) == 0 {
					break
				}
				n := min(objSize, len(parts[j]))
				data = append(data, parts[j][:n]...)
				parts[j] = parts[j][n:]
			}
			class = func(i int) string { return benchClasses[i%len(benchClasses)].ctype }
		} else {
			data = objectsOf(c.name, learnBytes)
		}
		objs := objects(data, objSize)

		// Every fixed arm on the sample.
		sample := objs[:fixedBytes/objSize]
		best, bestArm, bestCPU := math.Inf(-1), Store, 0.0
		fixed := map[Arm]float64{}
		for _, a := range arms {
			as := make([]Arm, len(sample))
			for i := range as {
				as[i] = a
			}
			s := sum(encode(b, w, sample, as))
			v, cpu := perGiB(s, a)
			fixed[a] = v
			if v > best {
				best, bestArm, bestCPU = v, a, cpu
			}
			if c.name == "random" && a == Store {
				storeRandomCPU = cpu
			}
			if c.name == "random" && a == 3 {
				level3RandomCPU = cpu
			}
		}

		// The learner on the whole class, archive by archive.
		l := New(Config{Arms: arms, HalfLife: time.Hour}, rng)
		prober := NewProber()
		now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		var total Sample
		var benefit float64
		mix := map[Arm]int64{}
		for start := 0; start < len(objs); start += perArchive {
			batch := objs[start:min(start+perArchive, len(objs))]
			as := make([]Arm, len(batch))
			keys := make([]Key, len(batch))
			for i, o := range batch {
				k := Key{Rule: "bench", Class: prober.Refine(Classify(class(start+i), "", ""), o)}
				start := Arm(3)
				if k.Class == Incompressible || k.Class == Compressed {
					start = Store
				}
				keys[i] = k
				as[i] = l.Choose(k, m, start, int64(len(o)), 0, now).Arm
			}
			st := encode(b, w, batch, as)
			for i, x := range st {
				s := Sample{In: x.In, Out: x.Out, CPU: x.CPU, Objects: 1}
				l.Observe(Observation{Key: keys[i], Arm: as[i], Sample: s, At: now})
				v, _ := perGiB(s, as[i])
				benefit += v * float64(x.In)
				total.In += x.In
				total.CPU += x.CPU
				mix[as[i]] += x.In
			}
			now = now.Add(30 * time.Second)
		}
		learnt := benefit / float64(total.In)
		fmt.Fprintf(tw, "%s\t%s\t%.5f\t%.5f\t%.5f\t%.5f\t%.3f\t%.1f\t%.1f\t%s\t\n", c.name, bestArm, best, fixed[3], fixed[Store], learnt,
			learnt/best, total.CPU.Seconds()/float64(total.In)*GiB, bestCPU, topMix(mix, total.In))
	}
	fmt.Fprintf(tw, "store on random data: %.2f cpu-s/GiB, %.1f%% of level 3's %.2f\n", storeRandomCPU, 100*storeRandomCPU/level3RandomCPU, level3RandomCPU)
	tw.Flush()
}

// BenchmarkLearnerMixedSizes runs the learner from a cold start over one
// class of objects sized like bench-e2e's mixed corpus (1,000 of 1-64 KiB
// and about ten of 1-16 MiB, shuffled, 120 MiB; archives of 100 objects),
// with real compression, for 20 random seeds, and reports against level 3
// on every object its net benefit and bytes out (mean and worst run), how
// many runs sent over 2% more bytes, and the bytes of large objects it
// explored at another arm. A cold learner pays for what it learns: an
// object explored at a weaker level sends more, and one large object
// explored so is a large share of a run this short. Then the same over the
// whole mixed corpus (mixedCorpus).
// Run with: make bench-adaptive.
func BenchmarkLearnerMixedSizes(b *testing.B) {
	for range b.N {
		runMixedSizes(b)
	}
}

func runMixedSizes(b *testing.B) {
	const seeds, perArchive = 20, 100
	br, m, arms, w := benchSetup(b)
	perObject := func(st []archive.ObjectStats, as []Arm) (benefit float64, out int64) {
		for i, x := range st {
			benefit += m.Benefit(as[i], float64(x.Out)/float64(x.In), x.CPU.Seconds()/float64(x.In)) * float64(x.In)
			out += x.Out
		}
		return benefit, out
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s; %d cold starts per class; against level 3 on every object\n", br.Encoder, seeds)
	fmt.Fprintln(tw, "class\tbenefit mean\tbenefit worst\tbytes out mean\tbytes out worst\truns > 1.02x bytes\tthe worst run explored\t")
	for _, class := range []string{"csv", "jsonl", "xml", "text"} {
		rng := rand.New(rand.NewPCG(1, 0xe2e))
		data := corpus.Generate(class, 120<<20)
		var objs [][]byte
		for range 1000 {
			n := 1<<10 + rng.IntN(63<<10)
			objs, data = append(objs, data[:n:n]), data[n:]
		}
		for len(data) > 0 {
			n := min(len(data), 1<<20+rng.IntN(15<<20))
			objs, data = append(objs, data[:n:n]), data[n:]
		}
		rng.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
		level3 := make([]Arm, len(objs))
		for i := range level3 {
			level3[i] = 3
		}
		refBenefit, refOut := perObject(encode(b, w, objs, level3), level3)
		var sumB, sumO float64
		worstB, worstO, over, worstExplored := math.Inf(1), 0.0, 0, ""
		for seed := range uint64(seeds) {
			l := New(Config{Arms: arms, HalfLife: time.Hour}, rand.New(rand.NewPCG(seed, 0x5eed)))
			now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
			k := Key{Rule: "bench", Class: Class(class)}
			var benefit float64
			var out int64
			explored := map[Arm]int64{} // large objects' bytes, by arm
			for start := 0; start < len(objs); start += perArchive {
				batch := objs[start:min(start+perArchive, len(objs))]
				as := make([]Arm, len(batch))
				for i, o := range batch {
					d := l.Choose(k, m, 3, int64(len(o)), 0, now)
					as[i] = d.Arm
					if d.Why == "explore" && len(o) >= 1<<20 {
						explored[d.Arm] += int64(len(o))
					}
				}
				st := encode(b, w, batch, as)
				for i, x := range st {
					l.Observe(Observation{Key: k, Arm: as[i], Sample: Sample{In: x.In, Out: x.Out, CPU: x.CPU, Objects: 1}, At: now})
				}
				bb, o := perObject(st, as)
				benefit, out = benefit+bb, out+o
				now = now.Add(time.Second)
			}
			rb, ro := benefit/refBenefit, float64(out)/float64(refOut)
			sumB, sumO = sumB+rb, sumO+ro
			worstB = min(worstB, rb)
			if ro > worstO {
				worstO, worstExplored = ro, exploredText(explored)
			}
			if ro > 1.02 {
				over++
			}
		}
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t%d of %d\t%s\t\n", class, sumB/seeds, worstB, sumO/seeds, worstO, over, seeds, worstExplored)
	}
	tw.Flush()
	mixedCorpus(b, m, arms, w)
}

// mixedCorpus runs the learner from 30 cold starts over bench-e2e's whole
// mixed corpus (400 MiB: 5,000 objects of 1-64 KiB and the rest of 1-16
// MiB, over CSV, JSON lines, XML, text and random bytes, shuffled), cut
// into archives as the source cuts them (8 MiB, doubling to 64 MiB, at
// most 1,000 objects) and learnt from per archive, class and arm as the
// source does, and prints its bytes out against level 3 (store for random
// bytes) on every object. Each object's encoding at each arm is measured
// once and reused.
func mixedCorpus(b *testing.B, m Model, arms []Arm, w *archive.Writer) {
	const seeds = 30
	type object struct {
		class Class
		data  []byte
	}
	names := []string{"csv", "jsonl", "xml", "text", "random"}
	classes := map[string]Class{"csv": CSV, "jsonl": JSON, "xml": XML, "text": Text, "random": Incompressible}
	rng := rand.New(rand.NewPCG(1, 0xe2e))
	smallSizes, smallTotal, small := map[string][]int{}, map[string]int{}, 0
	for i := range 5000 {
		n := 1<<10 + rng.IntN(63<<10+1)
		smallSizes[names[i%5]] = append(smallSizes[names[i%5]], n)
		smallTotal[names[i%5]] += n
		small += n
	}
	largePer := (400<<20 - small) / len(names)
	var objs []object
	for _, cl := range names {
		data := corpus.Random(largePer+smallTotal[cl], 1)
		if cl != "random" {
			data = corpus.Generate(cl, largePer+smallTotal[cl])
		}
		for large := data[:largePer]; len(large) > 0; {
			n := min(len(large), 1<<20+rng.IntN(15<<20))
			objs, large = append(objs, object{classes[cl], large[:n:n]}), large[n:]
		}
		rest := data[largePer:]
		for _, n := range smallSizes[cl] {
			objs, rest = append(objs, object{classes[cl], rest[:n:n]}), rest[n:]
		}
	}
	rng.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
	start := func(c Class) Arm {
		if c == Incompressible {
			return Store
		}
		return 3
	}
	encoded := map[[2]int]archive.ObjectStats{}
	enc := func(i int, a Arm) archive.ObjectStats {
		k := [2]int{i, int(a)}
		if _, ok := encoded[k]; !ok {
			encoded[k] = encode(b, w, [][]byte{objs[i].data}, []Arm{a})[0]
		}
		return encoded[k]
	}
	var ref int64
	for i, o := range objs {
		ref += enc(i, start(o.class)).Out
	}
	var ratios []float64
	for seed := range uint64(seeds) {
		l := New(Config{Arms: arms, HalfLife: time.Hour}, rand.New(rand.NewPCG(seed, 0x5eed)))
		now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		var out int64
		limit := int64(8 << 20)
		for first := 0; first < len(objs); {
			end, bytes := first+1, int64(len(objs[first].data))
			for end < len(objs) && end-first < 1000 && bytes+int64(len(objs[end].data)) <= limit {
				bytes += int64(len(objs[end].data))
				end++
			}
			limit = min(2*limit, 64<<20)
			type classArm struct {
				c Class
				a Arm
			}
			sums := map[classArm]*Sample{}
			var order []classArm
			for i := first; i < end; i++ {
				c := objs[i].class
				a := l.Choose(Key{Rule: "bench", Class: c}, m, start(c), int64(len(objs[i].data)), 0, now).Arm
				x := enc(i, a)
				out += x.Out
				s := sums[classArm{c, a}]
				if s == nil {
					s = &Sample{}
					sums[classArm{c, a}] = s
					order = append(order, classArm{c, a})
				}
				s.In, s.Out, s.CPU, s.Objects = s.In+x.In, s.Out+x.Out, s.CPU+x.CPU, s.Objects+1
			}
			for _, k := range order {
				l.Observe(Observation{Key: Key{Rule: "bench", Class: k.c}, Arm: k.a, Sample: *sums[k], At: now})
			}
			now = now.Add(2 * time.Second)
			first = end
		}
		ratios = append(ratios, float64(out)/float64(ref))
	}
	slices.Sort(ratios)
	mean := 0.0
	for _, r := range ratios {
		mean += r / seeds
	}
	fmt.Printf("whole mixed corpus, %d objects in %d cold starts: bytes out / level 3's: mean %.4f, median %.4f, worst %.4f\n",
		len(objs), seeds, mean, ratios[seeds/2], ratios[seeds-1])
}

// exploredText is "-1: 7 MiB" for the large objects explored at each arm.
func exploredText(explored map[Arm]int64) string {
	if len(explored) == 0 {
		return "no large object"
	}
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(explored)) {
		parts = append(parts, fmt.Sprintf("%s: %d MiB", a, explored[a]>>20))
	}
	return strings.Join(parts, ", ")
}

// objectsOf is n bytes of a corpus class.
func objectsOf(class string, n int) []byte { return corpus.Generate(class, n) }

func topMix(mix map[Arm]int64, total int64) string {
	type kv struct {
		a Arm
		n int64
	}
	var all []kv
	for a, n := range mix {
		all = append(all, kv{a, n})
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j].n > all[i].n {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	s := ""
	for i := 0; i < len(all) && i < 3; i++ {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.0f%%", all[i].a, 100*float64(all[i].n)/float64(total))
	}
	return s
}
