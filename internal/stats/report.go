package stats

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/config"
)

// Prices are what a rule's report charges: transfer and CPU as the
// rule's cost model prices them (adaptive.RuleModel, with the fleet's
// DecodeSeconds), and what Fargate costs a month whatever the volume.
type Prices struct {
	Model         adaptive.Model
	FixedPerMonth float64
	Requests      Requests
	// Deletes: the rule propagates deletes, so every write a target
	// makes reads the tombstones first (and again after).
	Deletes bool
	// StagingPerGiB is what keeping a GiB of archive in the source's
	// staging bucket costs (StagingPrice).
	StagingPerGiB float64
	// Direct is how many of the regions crossed to the source copies
	// archives to itself (config.DirectRegions), reading each back from
	// its staging.
	Direct int
}

// StagingDays is about how long rule r's source region keeps an archive
// it staged for other regions. Lifecycle expires it a day after it is
// written (settings.stagingExpiryDays for a rule with direct regions,
// whose relays may copy from it days later), at the next midnight UTC,
// and removes the version it leaves noncurrent a day after that, also at
// a midnight: so the expiry and two days. Replicas are deleted once
// delivered; an archive for the source region alone, too.
func StagingDays(cfg *config.Config, r *config.Rule) int {
	if len(cfg.DirectRegions(r)) > 0 {
		return cfg.Settings.StagingExpiryDays + 2
	}
	return 1 + 2
}

// StagingPrice is what a GiB of archive kept days costs in the source's
// staging bucket, for a rule whose bytes cross to other regions (crossed).
func StagingPrice(p config.Prices, crossed, days int) float64 {
	if crossed == 0 {
		return 0
	}
	return p.S3StoragePerGBMonth * float64(days) / (365.25 / 12)
}

// StagingCost is what archives of out bytes cost in the source's staging
// bucket.
func (p Prices) StagingCost(out int64) float64 { return float64(out) / adaptive.GiB * p.StagingPerGiB }

// Requests are AWS's request prices, $ per request (or request unit).
type Requests struct {
	S3Put, S3Get, SQS, DynamoDBWrite, DynamoDBRead float64
}

// RequestPrices are the config's request prices, $ per request.
func RequestPrices(p config.Prices) Requests {
	return Requests{S3Put: p.S3PutPer1000 / 1e3, S3Get: p.S3GetPer1000 / 1e3, SQS: p.SQSPerMillion / 1e6,
		DynamoDBWrite: p.DynamoDBWritePerMillion / 1e6, DynamoDBRead: p.DynamoDBReadPerMillion / 1e6}
}

// RequestCost is what moving objects (in bytes, in archives holding out
// bytes) through xrc costs in requests beyond S3 Replication's.
func (p Prices) RequestCost(objects int, in int64, archives int, out int64, delivered int) float64 {
	// One statistics write an archive: one a class and level it holds,
	// which an estimate does not know.
	return p.objectRequests(objects, in, delivered) + p.archiveRequests(float64(archives), out, delivered) +
		float64(archives)*p.Requests.DynamoDBWrite
}

// Request counts behind Requests' charges, beyond what S3 Replication
// makes (the destination writes, one per object and region, are in both):
const (
	// sqsPerObject: an event's message sent by S3, then received and
	// deleted ten at a time.
	sqsPerObject = 1.2
	// sqsPerArchive: a staged archive's event in a target region, sent,
	// received and deleted alone.
	sqsPerArchive = 3
	// readWhole: objects up to this size are read by one GET, larger
	// ones by a HEAD and a GET (source.inlineMax).
	readWhole = 256 << 10
	// stagingPart: a staging upload's part size, below which it is one
	// PUT (source.partSize at its smallest).
	stagingPart = 8 << 20
)

// changeRequests is what deletes and tag changes cost in requests beyond
// S3 Replication's (which would make the destination's delete or tagging
// call too): each one's event's SQS requests and the source's read of the
// key (still deleted? its tags now?); in each region delivered to, the
// read of the destination key, and for a delete its tombstone's write.
func (p Prices) changeRequests(deletes, retags, delivered int) float64 {
	r := p.Requests
	n := float64(deletes + retags)
	return n*(sqsPerObject*r.SQS+r.S3Get) + float64(delivered)*(n*r.S3Get+float64(deletes)*r.DynamoDBWrite)
}

// objectRequests is what n objects of in bytes cost in requests
// beyond S3 Replication's: the source reading each, its event's SQS
// requests, and with deletes two tombstone reads a region delivered to.
func (p Prices) objectRequests(n int, in int64, delivered int) float64 {
	if n <= 0 {
		return 0
	}
	gets := float64(n)
	if in/int64(n) > readWhole {
		gets *= 2
	}
	c := gets*p.Requests.S3Get + float64(n)*sqsPerObject*p.Requests.SQS
	if p.Deletes {
		c += float64(n) * 2 * float64(delivered) * p.Requests.DynamoDBRead
	}
	return c
}

// archiveRequests is what archives holding out bytes cost in requests:
// the staging upload (a PUT a part); in each region crossed to, the
// replication, or for a direct region the source's copy (its read of the
// archive back from staging and a PUT a part); in each delivered to, the
// archive's GET, its event's SQS requests and the ledger's write. (Not
// its statistics writes: one for each class and level it holds, which the
// hour's rows count.)
func (p Prices) archiveRequests(archives float64, out int64, delivered int) float64 {
	r := p.Requests
	direct := float64(p.Direct)
	return archives*(r.S3Put*float64(1+p.Model.Regions)+direct*r.S3Get+float64(delivered)*(r.S3Get+sqsPerArchive*r.SQS+r.DynamoDBWrite)) +
		float64(out)/stagingPart*r.S3Put*(1+direct)
}

// Transfer is what moving bytes to regions costs at perGiB.
func Transfer(bytes int64, regions int, perGiB float64) float64 {
	return float64(bytes) * float64(regions) / adaptive.GiB * perGiB
}

// Line is one rule and class (or a rule's total) of a savings report.
type Line struct {
	Rule    string         `json:"rule"`
	Class   adaptive.Class `json:"class"`   // "" on a rule's total
	Regions int            `json:"regions"` // crossed to: a destination in the source region is not
	Objects int            `json:"objects"`
	BytesIn int64          `json:"bytesIn"`
	// Restaged is what of BytesIn was staged again (Delta.Restaged),
	// counted once in WithoutXRC.
	Restaged    int64              `json:"bytesRestaged"`
	BytesOut    int64              `json:"bytesOut"`    // one region's worth
	BytesAcross int64              `json:"bytesAcross"` // BytesOut × Regions
	Ratio       float64            `json:"ratio"`       // in / out
	Levels      map[string]float64 `json:"levels"`      // share of bytes in, by arm
	CPUSeconds  float64            `json:"cpuSeconds"`  // compression, normalised; decompression estimated
	WithoutXRC  float64            `json:"transferWithoutXrc"`
	WithXRC     float64            `json:"transferWithXrc"`
	Compute     float64            `json:"compute"`
	// Requests is what xrc's requests cost beyond S3 Replication's
	// (Prices.Requests); it decides the saving of small objects.
	Requests float64 `json:"requests"`
	// Staging is what the source region's copy of the archives costs,
	// kept StagingDays.
	Staging   float64 `json:"staging"`
	NetSaving float64 `json:"netSaving"`
	// BreakEvenGiBPerMonth is the monthly input at which the net saving
	// covers Prices.FixedPerMonth (0 when it never does).
	BreakEvenGiBPerMonth float64 `json:"breakEvenGiBPerMonth"`
	Choice               string  `json:"learntChoice,omitempty"`

	// Requests' parts: per object and per archive (Project scales each
	// its own way).
	objectReqs, archiveReqs float64
}

// Summarise turns one rule's hourly statistics into a line per class and
// a total. decoders is how many regions unpack the rule's archives
// (config.Rule.Regions); p.Model says how many its bytes cross to.
func Summarise(rule string, decoders int, hs []Hourly, p Prices, choices map[adaptive.Class]Choice) []Line {
	regions, decodeSeconds := p.Model.Regions, p.Model.DecodeSeconds
	byClass := map[adaptive.Class]*Line{}
	armBytes := map[adaptive.Class]map[string]int64{}
	total := &Line{Rule: rule, Regions: regions}
	totalArms := map[string]int64{}
	var classes []adaptive.Class
	// An archive counts once in each of its classes and arms, and once in
	// class Changes whatever it holds: that row's archives are the hour's
	// and the most counted. Rows of older workers, which wrote Changes
	// only for archives with changes, give the most counted row's, a lower
	// bound (archives of JSON alone and of CSV alone are not summed).
	// Shared out by entries (objects, deletes and tag changes: an archive
	// of changes alone is staged, replicated and delivered too).
	archives, entries := map[time.Time]int{}, map[time.Time]int{}
	classEntries := map[adaptive.Class]int{}
	for _, h := range hs {
		archives[h.Hour] = max(archives[h.Hour], h.Archives)
		entries[h.Hour] += h.Objects + h.Deletes + h.Retags
		classEntries[h.Class] += h.Objects + h.Deletes + h.Retags
	}
	for _, h := range hs {
		l := byClass[h.Class]
		if l == nil {
			l = &Line{Rule: rule, Class: h.Class, Regions: regions}
			byClass[h.Class] = l
			armBytes[h.Class] = map[string]int64{}
			classes = append(classes, h.Class)
		}
		for _, x := range []*Line{l, total} {
			x.Objects += h.Objects
			x.BytesIn += h.In
			x.Restaged += h.Restaged
			x.BytesOut += h.Out + h.Frame
			x.CPUSeconds += h.CPU.Seconds()
			x.Compute += h.CPU.Seconds() * p.Model.VCPUSecond
			if h.Arm != adaptive.Store {
				x.CPUSeconds += decodeSeconds * float64(h.In) * float64(decoders)
				x.Compute += decodeSeconds * float64(h.In) * p.Model.DecodeVCPUSecond
			}
			x.objectReqs += p.objectRequests(h.Objects, h.In, decoders)
			if entries[h.Hour] > 0 {
				share := float64(archives[h.Hour]) * float64(h.Objects+h.Deletes+h.Retags) / float64(entries[h.Hour])
				x.archiveReqs += p.archiveRequests(share, h.Out+h.Frame, decoders)
			}
			// A row's archives are its statistics writes: one an archive
			// for each class and level the archive holds.
			x.archiveReqs += float64(h.Archives) * p.Requests.DynamoDBWrite
			x.objectReqs += p.changeRequests(h.Deletes, h.Retags, decoders)
		}
		armBytes[h.Class][h.Arm.String()] += h.In
		totalArms[h.Arm.String()] += h.In
	}
	slices.Sort(classes)
	var out []Line
	for _, c := range classes {
		if c == Changes && classEntries[c] == 0 {
			// Only the archives' count (each archive's row): its
			// statistics writes are in the total, a line of its own
			// would read as a class that loses money.
			continue
		}
		l := byClass[c]
		l.Levels = shares(armBytes[c], l.BytesIn)
		if ch, ok := choices[c]; ok {
			l.Choice = ch.Arm
		}
		out = append(out, price(*l, p))
	}
	total.Levels = shares(totalArms, total.BytesIn)
	return append(out, price(*total, p))
}

// Project scales a measured line (a rule's total, from Summarise) to
// bytes of input of the same mix, in objects: what moving them through xrc
// is expected to send across regions, cost and save. Bytes out and CPU
// scale with the input; ratio and level mix stay as measured. A line with
// nothing measured projects to nothing (Ratio 0).
func Project(l Line, bytes int64, objects int, p Prices) Line {
	if l.BytesIn <= 0 || l.BytesOut <= 0 {
		return Line{Rule: l.Rule, Class: l.Class, Regions: l.Regions}
	}
	f := float64(bytes) / float64(l.BytesIn)
	l.BytesIn = bytes
	l.Restaged = int64(float64(l.Restaged) * f)
	l.BytesOut = int64(float64(l.BytesOut) * f)
	l.CPUSeconds *= f
	l.Compute *= f
	if l.Objects > 0 {
		l.objectReqs *= float64(objects) / float64(l.Objects)
	}
	l.archiveReqs *= f
	l.Objects = objects
	return price(l, p)
}

func shares(bytes map[string]int64, total int64) map[string]float64 {
	m := make(map[string]float64, len(bytes))
	for a, b := range bytes {
		if total > 0 {
			m[a] = float64(b) / float64(total)
		}
	}
	return m
}

func price(l Line, p Prices) Line {
	l.BytesAcross = l.BytesOut * int64(l.Regions)
	if l.BytesOut > 0 {
		l.Ratio = float64(l.BytesIn) / float64(l.BytesOut)
	}
	l.WithoutXRC = Transfer(max(l.BytesIn-l.Restaged, 0), l.Regions, p.Model.TransferPerGiB)
	l.WithXRC = Transfer(l.BytesOut, l.Regions, p.Model.TransferPerGiB)
	l.Requests = l.objectReqs + l.archiveReqs
	l.Staging = p.StagingCost(l.BytesOut)
	l.NetSaving = l.WithoutXRC - l.WithXRC - l.Compute - l.Requests - l.Staging
	if perGiB := l.NetSaving / (float64(l.BytesIn) / adaptive.GiB); l.BytesIn > 0 && perGiB > 0 {
		l.BreakEvenGiBPerMonth = p.FixedPerMonth / perGiB
	}
	return l
}

// Dollars formats an amount as $1,234.56.
func Dollars(v float64) string {
	neg := v < 0
	cents := int64(math.Round(math.Abs(v) * 100))
	if cents == 0 {
		// Under a cent (a small run, a test): its figures would all read
		// $0.00, savings and costs alike. Six decimals, trimmed.
		frac := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", math.Abs(v)), "0"), ".")
		if frac == "0" {
			return "$0.00"
		}
		if neg {
			return "-$" + frac
		}
		return "$" + frac
	}
	s := fmt.Sprintf("%d", cents/100)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	s = fmt.Sprintf("$%s.%02d", s, cents%100)
	if neg {
		s = "-" + s
	}
	return s
}

// Bytes formats a size in binary units.
func Bytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}

// Mix formats level shares as "3 80%, store 20%", largest first.
func Mix(levels map[string]float64) string {
	arms := make([]string, 0, len(levels))
	for a := range levels {
		arms = append(arms, a)
	}
	slices.SortFunc(arms, func(a, b string) int {
		if levels[a] != levels[b] {
			if levels[a] > levels[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(arms))
	for i, a := range arms {
		parts[i] = fmt.Sprintf("%s %.0f%%", a, 100*levels[a])
	}
	return strings.Join(parts, ", ")
}

// Period is a report's time range, for its header.
func Period(since, now time.Time) string {
	return since.UTC().Format("2006-01-02 15:04") + " to " + now.UTC().Format("2006-01-02 15:04") + " UTC"
}
