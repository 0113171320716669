package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

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
			err := probe(context.Background(), srv.URL+"/healthz", 200*time.Millisecond)
			if (err == nil) != tc.ok {
				t.Errorf("probe = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestProbeNothingListening(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if err := probe(context.Background(), url, time.Second); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}
