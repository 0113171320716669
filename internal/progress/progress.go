// Package progress shows how far a long operator command (xrc backfill,
// xrc verify) has got: on a terminal a progress bar drawn by
// github.com/schollz/progressbar (count, rate and, when the total is known,
// ETA), elsewhere (a log file, an ECS task's log stream) one plain line
// every interval, since a redrawn bar would only fill the log with control
// characters.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// DefaultInterval is how often a Bar that is not on a terminal writes a line.
const DefaultInterval = 10 * time.Second

// Options shape a Bar.
type Options struct {
	// Description starts the bar or each line ("backfill r1").
	Description string
	// Total is the expected count; 0 or less means unknown: a spinner, a
	// rate and no ETA.
	Total int64
	// Bytes says the count is in bytes (shown as KiB, MiB, ...).
	Bytes bool
	// Unit names what is counted when it is not bytes ("objects").
	Unit string
	// Terminal draws a bar; otherwise lines are written every Interval.
	// Use IsTerminal to decide.
	Terminal bool
	// Interval between plain lines (DefaultInterval when zero).
	Interval time.Duration
}

// Bar is one progress display. Its methods are safe for concurrent use.
type Bar struct {
	o     Options
	w     io.Writer
	start time.Time

	mu     sync.Mutex
	n      int64
	total  int64
	status string
	bar    *progressbar.ProgressBar // nil when not on a terminal
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// IsTerminal reports whether w is a terminal (and so can show a bar).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New starts a Bar writing to w. Close it when the work ends.
func New(w io.Writer, o Options) *Bar {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Unit == "" {
		o.Unit = "items"
	}
	b := &Bar{o: o, w: w, start: time.Now(), total: o.Total, stop: make(chan struct{}), done: make(chan struct{})}
	if o.Terminal {
		max := o.Total
		if max <= 0 {
			max = -1 // unknown: a spinner
		}
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(o.Description),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200 * time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
		}
		if o.Bytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionSetItsString(o.Unit))
		}
		b.bar = progressbar.NewOptions64(max, opts...)
		close(b.done)
		return b
	}
	go b.lines()
	return b
}

// Add counts n more; callers on several goroutines lose none.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(b.n + n)
}

// Set sets the count to n.
func (b *Bar) Set(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(n)
}

func (b *Bar) set(n int64) {
	b.n = n
	if b.bar != nil && !b.closed {
		_ = b.bar.Set64(n)
	}
}

// SetTotal changes the expected count (0 or less: unknown).
func (b *Bar) SetTotal(total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total = total
	if b.bar != nil && !b.closed && total > 0 {
		b.bar.ChangeMax64(total)
	}
}

// Status sets a short text shown with the count: what the count alone does
// not say ("compared 1200, enqueued 800, 3.1 GiB").
func (b *Bar) Status(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = s
	if b.bar != nil && !b.closed {
		b.bar.Describe(b.o.Description + " " + s)
	}
}

func (b *Bar) get() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Close ends the display: the bar is completed, the lines stop after a last
// one. It is idempotent.
func (b *Bar) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	bar := b.bar
	b.mu.Unlock()
	if bar != nil {
		_ = bar.Exit()
		fmt.Fprintln(b.w)
		return
	}
	close(b.stop)
	<-b.done
}

func (b *Bar) lines() {
	defer close(b.done)
	t := time.NewTicker(b.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			fmt.Fprintln(b.w, b.Line(time.Now()))
		case <-b.stop:
			fmt.Fprintln(b.w, b.Line(time.Now()))
			return
		}
	}
}

// Line is the plain progress line at now: description, count (of total),
// rate, ETA when the total is known, and the status.
func (b *Bar) Line(now time.Time) string {
	b.mu.Lock()
	n, total, status := b.n, b.total, b.status
	b.mu.Unlock()
	elapsed := now.Sub(b.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	line := b.o.Description + ": " + b.amount(float64(n))
	if total > 0 {
		line += " of " + b.amount(float64(total)) + fmt.Sprintf(" (%.1f%%)", 100*float64(n)/float64(total))
	}
	line += ", " + b.amount(rate) + "/s"
	if total > 0 && rate > 0 && n < total {
		eta := time.Duration(float64(total-n) / rate * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	line += ", elapsed " + elapsed.Round(time.Second).String()
	if status != "" {
		line += "; " + status
	}
	return line
}

func (b *Bar) amount(v float64) string {
	if !b.o.Bytes {
		return fmt.Sprintf("%.0f %s", v, b.o.Unit)
	}
	const unit = 1024
	if v < unit {
		return fmt.Sprintf("%.0f B", v)
	}
	exp := 0
	for v >= unit*unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v/unit, "KMGTP"[exp])
}
