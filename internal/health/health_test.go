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
