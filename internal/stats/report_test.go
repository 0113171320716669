package stats

import (
	"math"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/config"
)

// TestReferenceTransferLine reproduces the public reference's transfer
// line: 500 TB to one region at $0.02/GB costs $10,240.00; compressed 3:1,
// $3,413.33.
func TestReferenceTransferLine(t *testing.T) {
	in := int64(500) << 40
	without := Transfer(in, 1, 0.02)
	with := Transfer(in/3, 1, 0.02)
	if Dollars(without) != "$10,240.00" || Dollars(with) != "$3,413.33" {
		t.Errorf("500 TB at $0.02/GB: %s -> %s, want $10,240.00 -> $3,413.33", Dollars(without), Dollars(with))
	}
}

func TestSummarise(t *testing.T) {
	h := func(c adaptive.Class, a adaptive.Arm, in, out int64, cpu time.Duration, n int) Hourly {
		return Hourly{Rule: "r", Delta: Delta{Class: c, Arm: a, In: in, Out: out, CPU: cpu, Objects: n}}
	}
	hs := []Hourly{
		h(adaptive.CSV, 3, 3<<30, 1<<30, 30*time.Second, 100),
		h(adaptive.CSV, 7, 1<<30, 300<<20, 60*time.Second, 30),
		h(adaptive.Compressed, adaptive.Store, 2<<30, 2<<30, time.Second, 10),
	}
	lines := Summarise("r", 2, hs, Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 2, VCPUSecond: 0.001}, FixedPerMonth: 10}, map[adaptive.Class]Choice{adaptive.CSV: {Arm: "7"}})
	if len(lines) != 3 || lines[0].Class != adaptive.Compressed || lines[1].Class != adaptive.CSV || lines[2].Class != "" {
		t.Fatalf("lines %+v", lines)
	}
	csv, total := lines[1], lines[2]
	// 4 GiB to 2 regions: $0.16 without; 1.29 GiB out: ~$0.0517 with;
	// 90 CPU-s at $0.001/s: $0.09.
	if Dollars(csv.WithoutXRC) != "$0.16" || Dollars(csv.Compute) != "$0.09" || csv.Choice != "7" {
		t.Errorf("csv line %+v", csv)
	}
	if csv.Levels["3"] != 0.75 || csv.Levels["7"] != 0.25 || Mix(csv.Levels) != "3 75%, 7 25%" {
		t.Errorf("csv mix %v", csv.Levels)
	}
	if total.BytesIn != 6<<30 || total.BytesAcross != 2*(1<<30+300<<20+2<<30) {
		t.Errorf("total %+v", total)
	}
	if total.BreakEvenGiBPerMonth <= 0 || Dollars(total.NetSaving) != Dollars(total.WithoutXRC-total.WithXRC-total.Compute) {
		t.Errorf("total %+v", total)
	}
}

// TestComputePricedWhereSpent: compression at the price of where the
// source runs, decoding at the sum of the regions delivered to; a stored
// arm decodes nothing. A projection keeps the cost per byte.
func TestComputePricedWhereSpent(t *testing.T) {
	m := adaptive.Model{TransferPerGiB: 0.02, Regions: 1, VCPUSecond: 0.001, DecodeVCPUSecond: 0.01, DecodeSeconds: 1e-9}
	hs := []Hourly{
		{Rule: "r", Delta: Delta{Class: adaptive.CSV, Arm: 3, In: 1 << 30, Out: 1 << 28, CPU: 10 * time.Second, Objects: 1}},
		{Rule: "r", Delta: Delta{Class: adaptive.Compressed, Arm: adaptive.Store, In: 1 << 30, Out: 1 << 30, CPU: time.Second, Objects: 1}},
	}
	lines := Summarise("r", 2, hs, Prices{Model: m}, nil)
	csv, stored, total := lines[1], lines[0], lines[2]
	decode := 1e-9 * (1 << 30)
	if want := 10*0.001 + decode*0.01; math.Abs(csv.Compute-want) > 1e-12 || math.Abs(csv.CPUSeconds-(10+2*decode)) > 1e-9 {
		t.Errorf("csv: compute %g for %g CPU-s, want %g for %g", csv.Compute, csv.CPUSeconds, want, 10+2*decode)
	}
	if stored.Compute != 0.001 || stored.CPUSeconds != 1 {
		t.Errorf("stored: compute %g for %g CPU-s, want 0.001 for 1", stored.Compute, stored.CPUSeconds)
	}
	if x := Project(total, 4<<30, 2, Prices{Model: m}); math.Abs(x.Compute-2*total.Compute) > 1e-12 {
		t.Errorf("twice the bytes projected to compute %g, want %g", x.Compute, 2*total.Compute)
	}
}

func TestFormats(t *testing.T) {
	for v, want := range map[float64]string{0: "$0.00", 1234.5: "$1,234.50", 1234567.891: "$1,234,567.89", -5: "-$5.00", 999.999: "$1,000.00",
		0.002792: "$0.002792", -0.000023: "-$0.000023", 1e-9: "$0.00", -1e-9: "$0.00", 0.004: "$0.004"} {
		if got := Dollars(v); got != want {
			t.Errorf("Dollars(%v) = %s, want %s", v, got, want)
		}
	}
	if Bytes(0) != "0 B" || Bytes(1536) != "1.5 KiB" || Bytes(3<<30) != "3.0 GiB" {
		t.Errorf("Bytes: %s %s %s", Bytes(0), Bytes(1536), Bytes(3<<30))
	}
}

// TestProject: 3 GiB measured at 3:1 projects 300 GiB to 100 GiB across
// each region, at the same cost per byte.
func TestProject(t *testing.T) {
	p := Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 2, VCPUSecond: 0.001}}
	total := Summarise("r", 2, []Hourly{{Rule: "r", Delta: Delta{Class: adaptive.CSV, Arm: 3, In: 3 << 30, Out: 1 << 30, CPU: 10 * time.Second, Objects: 3}}}, p, nil)[1]
	got := Project(total, 300<<30, 1000, p)
	if got.Objects != 1000 || got.BytesIn != 300<<30 || got.BytesAcross != 200<<30 || got.Ratio != 3 {
		t.Errorf("projection %+v", got)
	}
	if Dollars(got.WithoutXRC) != "$12.00" || Dollars(got.Compute) != "$1.00" || Dollars(got.NetSaving) != "$7.00" {
		t.Errorf("projection prices %s %s %s", Dollars(got.WithoutXRC), Dollars(got.Compute), Dollars(got.NetSaving))
	}
	if none := Project(Line{Rule: "r"}, 1<<30, 1, p); none.Ratio != 0 || none.NetSaving != 0 {
		t.Errorf("nothing measured projects to %+v", none)
	}
}

// TestMiddle: an hour is dated at its middle, the hour in progress at the
// middle of its part gone by, and an hour still to come (a task's clock
// ahead) at now, never in the future.
func TestMiddle(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 20, 0, 0, time.UTC)
	for _, tc := range []struct{ start, want time.Time }{
		{now.Add(-2 * time.Hour).Truncate(time.Hour), time.Date(2026, 12, 6, 8, 30, 0, 0, time.UTC)},
		{now.Truncate(time.Hour), time.Date(2026, 12, 6, 10, 10, 0, 0, time.UTC)},
		{now.Add(6 * time.Hour).Truncate(time.Hour), now},
	} {
		if got := middle(tc.start, now); !got.Equal(tc.want) {
			t.Errorf("middle(%v) = %v, want %v", tc.start, got, tc.want)
		}
	}
}

// TestRequestsDecideSmallObjects: what xrc's requests cost beyond S3
// Replication's (the source's GET, the events' SQS requests, each
// archive's), at AWS's prices: for a million objects of 4 KiB compressed
// 3:1 to one region they cost more than the transfer saves, and the net
// saving says so; for objects of 1 MiB they are about a tenth of it.
// Before, requests were left out and 4 KiB objects showed a saving.
func TestRequestsDecideSmallObjects(t *testing.T) {
	p := Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 1},
		Requests: Requests{S3Put: 0.005 / 1e3, S3Get: 0.0004 / 1e3, SQS: 0.40 / 1e6, DynamoDBWrite: 0.625 / 1e6, DynamoDBRead: 0.125 / 1e6}}
	line := func(size int64, p Prices) Line {
		const n = 1_000_000
		h := Hourly{Rule: "r", Delta: Delta{Class: adaptive.CSV, Arm: 3, In: n * size, Out: n * size / 3, Objects: n, Archives: n / 1000}}
		return Summarise("r", 1, []Hourly{h}, p, nil)[1]
	}
	small := line(4<<10, p)
	// $0.0004 a thousand GETs, 1.2 SQS requests at $0.40 a million: $0.88
	// a million objects, and a thousand archives' few cents.
	if small.Requests < 0.88 || small.Requests > 0.95 || small.NetSaving >= 0 {
		t.Errorf("a million 4 KiB objects: transfer saved %s, requests %s, net %s; want requests of about $0.89 outweighing it",
			Dollars(small.WithoutXRC-small.WithXRC), Dollars(small.Requests), Dollars(small.NetSaving))
	}
	large := line(1<<20, p)
	if saved := large.WithoutXRC - large.WithXRC; large.Requests > saved/5 || large.NetSaving <= 0 {
		t.Errorf("a million 1 MiB objects: transfer saved %s, requests %s", Dollars(saved), Dollars(large.Requests))
	}
	// With deletes, every write a target makes reads the tombstones twice.
	p.Deletes = true
	if withDeletes := line(4<<10, p); withDeletes.Requests-small.Requests < 0.24 {
		t.Errorf("tombstone reads of a million objects: %s", Dollars(withDeletes.Requests-small.Requests))
	}
	// A projection scales requests by objects (and archives by bytes).
	if x := Project(small, 2*small.BytesIn, 2*small.Objects, Prices{}); math.Abs(x.Requests-2*small.Requests) > 1e-9 {
		t.Errorf("projected to twice the objects: requests %v, want %v", x.Requests, 2*small.Requests)
	}
}

// TestStatisticsWritesCharged: an archive writes its statistics once for
// each class and level it holds, which its hour's rows count (their
// Archives); charged once an archive, a learner exploring four levels
// beside the chosen one was charged a fifth of its writes.
func TestStatisticsWritesCharged(t *testing.T) {
	p := Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 1}, Requests: Requests{DynamoDBWrite: 1}}
	hour := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	hs := []Hourly{
		{Rule: "r", Hour: hour, Delta: Delta{Class: adaptive.CSV, Arm: 3, In: 1 << 20, Out: 1 << 18, Objects: 900, Archives: 100}},
		{Rule: "r", Hour: hour, Delta: Delta{Class: adaptive.CSV, Arm: 5, In: 1 << 16, Out: 1 << 14, Objects: 100, Archives: 100}},
	}
	// At one dollar a write, and none for anything else but the targets'
	// ledger writes (one an archive, in its one region).
	total := Summarise("r", 1, hs, p, nil)[1]
	if want := 200.0 + 100; math.Abs(total.Requests-want) > 1e-6 {
		t.Errorf("requests $%v, want $%v: 200 statistics writes and 100 ledger writes", total.Requests, want)
	}
}

// TestStagingCharged: the source region keeps each archive staged for
// other regions about StagingDays (lifecycle: 3 days for most rules), at S3's storage price: a
// GiB of archive costs about $0.0023, a tenth of a GiB's transfer to one
// region, which the saving left out. Nothing for a rule that crosses to no
// other region (its archives are deleted once delivered).
func TestStagingCharged(t *testing.T) {
	prices := config.Prices{S3StoragePerGBMonth: 0.023}
	h := Hourly{Rule: "r", Delta: Delta{Class: adaptive.CSV, Arm: 3, In: 3 << 30, Out: 1 << 30, Objects: 1, Archives: 1}}
	p := Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 1}, StagingPerGiB: StagingPrice(prices, 1, 3)}
	l := Summarise("r", 1, []Hourly{h}, p, nil)[1]
	if math.Abs(l.Staging-0.023*3/30.4375) > 1e-9 {
		t.Errorf("staging $%v for a GiB of archive kept 3 days, want $%v", l.Staging, 0.023*3/30.4375)
	}
	if want := l.WithoutXRC - l.WithXRC - l.Compute - l.Requests - l.Staging; math.Abs(l.NetSaving-want) > 1e-12 {
		t.Errorf("net saving %v does not take staging off (%v)", l.NetSaving, want)
	}
	if x := Project(l, 2*l.BytesIn, 2, p); math.Abs(x.Staging-2*l.Staging) > 1e-9 {
		t.Errorf("projected to twice the bytes: staging %v, want %v", x.Staging, 2*l.Staging)
	}
	if StagingPrice(prices, 0, 3) != 0 {
		t.Error("a rule crossing to no region charged for staging")
	}
}

// TestChangesCharged: deletes and tag changes carry no bytes but cost
// requests beyond S3 Replication's: each one's event and the source's
// read, and in each region delivered to a read of the destination (and a
// tombstone's write for a delete). Unrecorded, a million deletes a day to
// ten regions were some $330 a month left out of the saving.
func TestChangesCharged(t *testing.T) {
	p := Prices{Model: adaptive.Model{TransferPerGiB: 0.02, Regions: 10},
		Requests: Requests{S3Get: 0.0004 / 1e3, SQS: 0.40 / 1e6, DynamoDBWrite: 0.625 / 1e6}}
	h := Hourly{Rule: "r", Delta: Delta{Class: Changes, Arm: adaptive.Store, Archives: 1000, Deletes: 1_000_000}}
	lines := Summarise("r", 10, []Hourly{h}, p, nil)
	total := lines[len(lines)-1]
	// Per delete: 1.2 SQS requests and a GET at the source; in each of
	// the ten regions a GET and a DynamoDB write: $0.00001098.
	if want := 1e6 * (1.2*0.40/1e6 + 0.0004/1e3 + 10*(0.0004/1e3+0.625/1e6)); total.Requests < want || total.NetSaving > -want {
		t.Errorf("a million deletes to ten regions: requests %s, net %s; want at least %s charged", Dollars(total.Requests), Dollars(total.NetSaving), Dollars(want))
	}
	if lines[0].Class != Changes || lines[0].Objects != 0 {
		t.Errorf("line %+v, want class changes with no objects", lines[0])
	}
	// Every archive adds to class changes, changes or not: without any,
	// it is counted in the total and has no line of its own.
	csv := Hourly{Rule: "r", Delta: Delta{Class: adaptive.CSV, Arm: adaptive.Arm(3), Archives: 1, Objects: 1, In: 3000, Out: 1000}}
	count := Hourly{Rule: "r", Delta: Delta{Class: Changes, Arm: adaptive.Store, Archives: 1}}
	if lines := Summarise("r", 1, []Hourly{csv, count}, p, nil); len(lines) != 2 || lines[0].Class != adaptive.CSV || lines[1].Requests < p.Requests.DynamoDBWrite*2 {
		t.Errorf("lines %+v, want the CSV line and the total, its two statistics writes charged", lines)
	}
	// An archive of changes alone is staged, replicated and delivered as
	// any other: its requests are charged.
	few := Hourly{Rule: "r", Delta: Delta{Class: Changes, Arm: adaptive.Store, Archives: 1000, Retags: 1000, Frame: 1000 << 10}}
	got := Summarise("r", 10, []Hourly{few}, p, nil)[1].Requests
	// Per retag, written out (not the code under test's own sum): 1.2
	// SQS requests and a GET at the source, a GET in each of ten regions.
	retags := 1000 * (1.2*0.40/1e6 + 0.0004/1e3 + 10*0.0004/1e3)
	if want := retags + p.archiveRequests(1000, 1000<<10, 10) + 1000*p.Requests.DynamoDBWrite; math.Abs(got-want) > 1e-12 {
		t.Errorf("1000 archives of a retag each: requests %s, want %s (their archives' requests)", Dollars(got), Dollars(want))
	}
}

// TestStagingDaysOfDirectRules: a rule with a direct region keeps its
// archives in the source's staging settings.stagingExpiryDays (a relay may
// copy from them days later), so they are charged that long, not the 3
// days of a rule S3 Replication alone carries.
func TestStagingDaysOfDirectRules(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{StagingExpiryDays: 7,
		Regions: []config.Region{{Name: "us-east-1", Role: config.RoleBoth}, {Name: "eu-west-1", Role: config.RoleTarget},
			{Name: "cn-north-1", Role: config.RoleTarget, Direct: true}}}}
	replicated := &config.Rule{ID: "r", SourceRegion: "us-east-1", Destinations: []config.Destination{{Region: "eu-west-1", Bucket: "a"}}}
	direct := &config.Rule{ID: "d", SourceRegion: "us-east-1", Destinations: []config.Destination{
		{Region: "eu-west-1", Bucket: "a"}, {Region: "cn-north-1", Bucket: "b"}}}
	if d := StagingDays(cfg, replicated); d != 3 {
		t.Errorf("replicated rule: %d days, want 3", d)
	}
	if d := StagingDays(cfg, direct); d != 9 {
		t.Errorf("rule with a direct region: %d days, want 9 (stagingExpiryDays 7, a midnight and the noncurrent day)", d)
	}
	if a, b := StagingPrice(config.Prices{S3StoragePerGBMonth: 0.023}, 2, 9), StagingPrice(config.Prices{S3StoragePerGBMonth: 0.023}, 2, 3); math.Abs(a-3*b) > 1e-12 {
		t.Errorf("9 days cost %v, 3 days %v: want three times", a, b)
	}
}

// TestDirectCopiesCharged: an archive the source copies to a direct region
// itself is read back from staging (a GET) and uploaded a PUT a part; S3
// Replication's one request an archive is what the other regions cost.
func TestDirectCopiesCharged(t *testing.T) {
	req := Requests{S3Put: 5e-6, S3Get: 4e-7}
	replicated := Prices{Model: adaptive.Model{Regions: 2}, Requests: req}
	direct := replicated
	direct.Direct = 1
	const archives, out = 10, 80 << 20 // 10 parts of 8 MiB in all
	got := direct.RequestCost(0, 0, archives, out, 2) - replicated.RequestCost(0, 0, archives, out, 2)
	if want := archives*req.S3Get + 10*req.S3Put; math.Abs(got-want) > 1e-12 {
		t.Errorf("a direct region adds $%v, want $%v: a GET an archive and a PUT a part", got, want)
	}
}
