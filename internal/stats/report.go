package stats

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/adaptive"
)

// Prices are what a rule's report charges: transfer and CPU as the
// rule's cost model prices them (adaptive.RuleModel, with the fleet's
// DecodeSeconds), and what Fargate costs a month whatever the volume.
type Prices struct {
	Model         adaptive.Model
	FixedPerMonth float64
}

// Transfer is what moving bytes to regions costs at perGiB.
func Transfer(bytes int64, regions int, perGiB float64) float64 {
	return float64(bytes) * float64(regions) / adaptive.GiB * perGiB
}

// Line is one rule and class (or a rule's total) of a savings report.
type Line struct {
	Rule        string             `json:"rule"`
	Class       adaptive.Class     `json:"class"`   // "" on a rule's total
	Regions     int                `json:"regions"` // crossed to: a destination in the source region is not
	Objects     int                `json:"objects"`
	BytesIn     int64              `json:"bytesIn"`
	BytesOut    int64              `json:"bytesOut"`    // one region's worth
	BytesAcross int64              `json:"bytesAcross"` // BytesOut × Regions
	Ratio       float64            `json:"ratio"`       // in / out
	Levels      map[string]float64 `json:"levels"`      // share of bytes in, by arm
	CPUSeconds  float64            `json:"cpuSeconds"`  // compression, normalised; decompression estimated
	WithoutXRC  float64            `json:"transferWithoutXrc"`
	WithXRC     float64            `json:"transferWithXrc"`
	Compute     float64            `json:"compute"`
	NetSaving   float64            `json:"netSaving"`
	// BreakEvenGiBPerMonth is the monthly input at which the net saving
	// covers Prices.FixedPerMonth (0 when it never does).
	BreakEvenGiBPerMonth float64 `json:"breakEvenGiBPerMonth"`
	Choice               string  `json:"learntChoice,omitempty"`
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
			x.BytesOut += h.Out + h.Frame
			x.CPUSeconds += h.CPU.Seconds()
			x.Compute += h.CPU.Seconds() * p.Model.VCPUSecond
			if h.Arm != adaptive.Store {
				x.CPUSeconds += decodeSeconds * float64(h.In) * float64(decoders)
				x.Compute += decodeSeconds * float64(h.In) * p.Model.DecodeVCPUSecond
			}
		}
		armBytes[h.Class][h.Arm.String()] += h.In
		totalArms[h.Arm.String()] += h.In
	}
	slices.Sort(classes)
	var out []Line
	for _, c := range classes {
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
	l.Objects = objects
	l.BytesIn = bytes
	l.BytesOut = int64(float64(l.BytesOut) * f)
	l.CPUSeconds *= f
	l.Compute *= f
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
	l.WithoutXRC = Transfer(l.BytesIn, l.Regions, p.Model.TransferPerGiB)
	l.WithXRC = Transfer(l.BytesOut, l.Regions, p.Model.TransferPerGiB)
	l.NetSaving = l.WithoutXRC - l.WithXRC - l.Compute
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
