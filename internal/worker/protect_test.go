package worker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/queue"
	"github.com/xrc-dev/xrc/internal/worker"
)

// protector records what the runtime asks of ECS; fail makes the next
// calls fail.
type protector struct {
	mu    sync.Mutex
	calls []string // "protect 15m0s", "unprotect"
	fail  int
}

func (p *protector) call(c string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return errors.New("AccessDeniedException: not authorized to perform ecs:UpdateTaskProtection")
	}
	p.calls = append(p.calls, c)
	return nil
}

func (p *protector) Protect(_ context.Context, d time.Duration) error {
	return p.call("protect " + d.String())
}
func (p *protector) Unprotect(context.Context) error { return p.call("unprotect") }

func (p *protector) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// protected returns a runtime protecting the task once a message is held
// 40 s.
func (f *fixture) protected(p *protector) (*worker.Runtime, *worker.Metrics) {
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	return worker.New(worker.Options{Queue: queue.New(f.client, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, Protector: p, ProtectAfter: 40 * time.Second,
		Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock}), m
}

// pass advances the fake clock by d in steps of 10 s, the guard's tick.
func (f *fixture) pass(d time.Duration) {
	for range d / (10 * time.Second) {
		f.clock.Advance(10 * time.Second)
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *protector) want(t *testing.T, what string, calls ...string) {
	t.Helper()
	within(t, 5*time.Second, what, func() bool { return slices.Equal(p.seen(), calls) })
}

// TestLongWorkProtectsTheTask: a task holding a message past ProtectAfter
// protects itself from ECS scale-in and deployments (which would cut the
// work at the drain time, to be redone from the start), renews the
// protection while the work lasts and removes it once nothing long is
// held; short work never protects it.
func TestLongWorkProtectsTheTask(t *testing.T) {
	f := setup(t)
	p := &protector{}
	rt, m := f.protected(p)
	msg := f.held(t, rt)
	f.pass(30 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := p.seen(); len(got) != 0 {
		t.Fatalf("short work protected the task: %v", got)
	}
	f.pass(20 * time.Second)
	p.want(t, "protected once the work is long", "protect 15m0s")
	if v := testutil.ToFloat64(m.Protected); v != 1 {
		t.Errorf("task_protected %v while protected", v)
	}
	f.pass(5 * time.Minute)
	p.want(t, "renewed before it expires", "protect 15m0s", "protect 15m0s")
	msg.Ack()
	within(t, 5*time.Second, "acknowledged", func() bool { return rt.Held() == 0 })
	f.pass(20 * time.Second)
	p.want(t, "unprotected once the long work is done", "protect 15m0s", "protect 15m0s", "unprotect")
	if v := testutil.ToFloat64(m.Protected); v != 0 {
		t.Errorf("task_protected %v once unprotected", v)
	}
}

// TestProtectionFailuresAndLimit: a failed call is counted, said, and
// tried again a minute later (not every tick); a task that holds long work
// for ever is unprotected after protectLimit (2 h) for protectRest
// (15 min), so a deployment can get through.
func TestProtectionFailuresAndLimit(t *testing.T) {
	f := setup(t)
	p := &protector{fail: 1}
	rt, m := f.protected(p)
	f.held(t, rt)
	f.pass(50 * time.Second)
	within(t, 5*time.Second, "failure counted", func() bool {
		return testutil.ToFloat64(m.Errors.WithLabelValues("protection")) == 1
	})
	f.pass(30 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := p.seen(); len(got) != 0 || testutil.ToFloat64(m.Errors.WithLabelValues("protection")) != 1 {
		t.Fatalf("tried again before a minute: %v", got)
	}
	if n := f.logs.FilterMessageSnippet("protecting the task").Len(); n != 1 {
		t.Errorf("failure said %d times", n)
	}
	f.pass(40 * time.Second)
	p.want(t, "protected on the next try", "protect 15m0s")
	f.pass(2 * time.Hour)
	within(t, 5*time.Second, "unprotected at the limit", func() bool {
		s := p.seen()
		return len(s) > 0 && s[len(s)-1] == "unprotect"
	})
	n := len(p.seen())
	f.pass(14 * time.Minute)
	time.Sleep(100 * time.Millisecond)
	if got := p.seen(); len(got) != n {
		t.Fatalf("protected again while resting: %v", got[n:])
	}
	f.pass(2 * time.Minute)
	within(t, 5*time.Second, "protected again after the rest", func() bool {
		s := p.seen()
		return len(s) == n+1 && s[n] == "protect 15m0s"
	})
	if f.logs.FilterMessageSnippet("after its longest protection").Len() != 1 {
		t.Error("the lapse at the limit not said")
	}
}

// TestFailedProtectionUndone: a protect call that failed may have been
// applied all the same (its answer lost): once the long work ends, the
// task is unprotected as if it had been, not left protected for the
// protection's 15 minutes, holding off scale-in and deployments.
func TestFailedProtectionUndone(t *testing.T) {
	f := setup(t)
	p := &protector{fail: 1}
	rt, m := f.protected(p)
	msg := f.held(t, rt)
	f.pass(50 * time.Second)
	within(t, 5*time.Second, "failure counted", func() bool {
		return testutil.ToFloat64(m.Errors.WithLabelValues("protection")) == 1
	})
	msg.Ack()
	within(t, 5*time.Second, "acknowledged", func() bool { return rt.Held() == 0 })
	f.pass(70 * time.Second) // past the retry's minute
	p.want(t, "unprotected once the work ended", "unprotect")
}

// TestRefusedProtectionNotUndoneForEver: an agent that refuses every call
// (the role lacks ecs:UpdateTaskProtection, the agent out of reach) is not
// asked to unprotect an idle task every minute for good: only until a
// protection it might have applied would have expired; nor is one that
// protected the task and then refused everything (task_protected drops to
// 0 once it expired).
func TestRefusedProtectionNotUndoneForEver(t *testing.T) {
	for name, protectedFirst := range map[string]bool{"never protected": false, "protected, then refused": true} {
		t.Run(name, func(t *testing.T) {
			f := setup(t)
			p := &protector{}
			rt, m := f.protected(p)
			if !protectedFirst {
				p.refuse()
			}
			msg := f.held(t, rt)
			f.pass(50 * time.Second)
			if protectedFirst {
				p.want(t, "protected", "protect 15m0s")
				p.refuse()
			} else {
				within(t, 5*time.Second, "failure counted", func() bool {
					return testutil.ToFloat64(m.Errors.WithLabelValues("protection")) == 1
				})
			}
			msg.Ack()
			within(t, 5*time.Second, "acknowledged", func() bool { return rt.Held() == 0 })
			f.pass(20 * time.Minute)
			f.quietThen(t, m, 30*time.Minute, "an idle task still asked to unprotect")
		})
	}
}

// TestRefusedUnprotectAtTheLimit: at the longest protection the task is
// unprotected, for a deployment to get through; an agent refusing that
// too is not asked every minute while the work lasts: once the protection
// expired (15 minutes after the last protect call), task_protected drops
// to 0 and the task rests, as after an unprotect.
func TestRefusedUnprotectAtTheLimit(t *testing.T) {
	f := setup(t)
	p := &protector{}
	rt, m := f.protected(p)
	f.held(t, rt)
	f.pass(50 * time.Second)
	p.want(t, "protected", "protect 15m0s")
	f.pass(110 * time.Minute) // renewed meanwhile
	p.refuse()
	f.pass(30 * time.Minute)                                                                 // the limit at about 2 h, the expiry about 15 minutes after the last renewal tried
	f.quietThen(t, m, 8*time.Minute, "still calling the agent every minute after the limit") // resting after the expiry
}

// refuse makes every call from now on fail.
func (p *protector) refuse() {
	p.mu.Lock()
	p.fail = 1 << 20
	p.mu.Unlock()
}

// quietThen checks that over d no protection call fails (none is made)
// and task_protected reads 0: any protection has expired.
func (f *fixture) quietThen(t *testing.T, m *worker.Metrics, d time.Duration, what string) {
	t.Helper()
	n := testutil.ToFloat64(m.Errors.WithLabelValues("protection"))
	f.pass(d)
	time.Sleep(100 * time.Millisecond)
	if after := testutil.ToFloat64(m.Errors.WithLabelValues("protection")); after != n {
		t.Errorf("%s: %v failures, then %v", what, n, after)
	}
	if v := testutil.ToFloat64(m.Protected); v != 0 {
		t.Errorf("task_protected %v once any protection expired", v)
	}
}

// TestProtectionLapsesUnrenewed: renewals that keep failing leave the task
// unprotected once the last protection's 15 minutes are up, and
// task_protected says so (it stayed 1); it is protected again once the
// agent answers.
func TestProtectionLapsesUnrenewed(t *testing.T) {
	f := setup(t)
	p := &protector{}
	rt, m := f.protected(p)
	f.held(t, rt)
	f.pass(50 * time.Second)
	p.want(t, "protected", "protect 15m0s")
	p.mu.Lock()
	p.fail = 1000
	p.mu.Unlock()
	f.pass(14 * time.Minute)
	time.Sleep(100 * time.Millisecond)
	if v := testutil.ToFloat64(m.Protected); v != 1 {
		t.Fatalf("task_protected %v before the protection's end", v)
	}
	f.pass(2 * time.Minute)
	within(t, 5*time.Second, "lapse said", func() bool { return testutil.ToFloat64(m.Protected) == 0 })
	p.mu.Lock()
	p.fail = 0
	p.mu.Unlock()
	f.pass(2 * time.Minute)
	p.want(t, "protected again", "protect 15m0s", "protect 15m0s")
}

// TestWaitingIsNotLongWork: a message that waited its turn (a relay behind
// others) is long work only from when it started (Message.Started): while
// it waits, a stop would cut nothing.
func TestWaitingIsNotLongWork(t *testing.T) {
	f := setup(t)
	p := &protector{}
	rt, _ := f.protected(p)
	msg := f.held(t, rt)
	f.pass(30 * time.Second)
	msg.Started()
	f.pass(30 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := p.seen(); len(got) != 0 {
		t.Fatalf("protected after 30 s of work begun 30 s after its receive: %v", got)
	}
	f.pass(20 * time.Second)
	p.want(t, "protected once the work itself is long", "protect 15m0s")
}

// TestTinyProtectAfter: a drain of a nanosecond (ProtectAfter half of it)
// made the guard's ticker 0, which panics: the target crashed at start.
func TestTinyProtectAfter(t *testing.T) {
	f := setup(t)
	p := &protector{}
	m := worker.NewMetrics(prometheus.NewRegistry(), "test")
	rt := worker.New(worker.Options{Queue: queue.New(f.client, f.url), ReceiveMax: 1, MaxHeld: 1, Visibility: 30 * time.Second,
		ReceiveWait: time.Second, Drain: 10 * time.Second, Protector: p, ProtectAfter: time.Nanosecond,
		Log: zap.New(f.core), Metrics: m, Health: f.health, Clock: f.clock})
	msg := f.held(t, rt)
	f.clock.Advance(time.Second)
	p.want(t, "protected at once", "protect 15m0s")
	msg.Ack()
}
