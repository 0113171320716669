package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	now := time.Unix(0, 0)
	c := New(time.Minute, func() time.Time { return now })
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("fresh check: %d", rec.Code)
	}
	now = now.Add(2 * time.Minute)
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("silent loop: %d", rec.Code)
	}
	c.Beat()
	if err := c.Err(); err != nil {
		t.Fatalf("after beat: %v", err)
	}
}

// TestUnhealthySaidOnce: the check's failure is heard once per spell of
// failing answers (a log line: the probe's answer is kept nowhere), again
// after a healthy answer; before, nothing said why ECS replaced a task.
func TestUnhealthySaidOnce(t *testing.T) {
	now := time.Unix(0, 0)
	c := New(time.Minute, func() time.Time { return now })
	var heard []error
	c.OnUnhealthy(func(err error) { heard = append(heard, err) })
	serve := func() {
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	}
	serve()
	now = now.Add(2 * time.Minute)
	serve()
	serve()
	if len(heard) != 1 {
		t.Fatalf("heard %d failures over two failing answers, want 1: %v", len(heard), heard)
	}
	c.Beat()
	serve()
	now = now.Add(2 * time.Minute)
	serve()
	if len(heard) != 2 {
		t.Errorf("heard %d failures, want a second after a healthy answer", len(heard))
	}
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		ok      bool
	}{
		{"healthy", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }, true},
		{"unhealthy", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "loop stuck", http.StatusServiceUnavailable)
		}, false},
		{"slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			err := Probe(context.Background(), srv.URL+"/healthz", 200*time.Millisecond)
			if (err == nil) != tc.ok {
				t.Errorf("Probe = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if err := Probe(context.Background(), url, time.Second); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}
