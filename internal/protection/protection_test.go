package protection_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/protection"
)

// agent answers PUT /task-protection/v1/state as the ECS agent does, with
// answer, and records the bodies it got.
func agent(t *testing.T, status int, answer string) (*protection.Agent, *[]string) {
	t.Helper()
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/api/task-1/task-protection/v1/state" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	a := protection.FromEnv(func(k string) string {
		if k == protection.EnvURI {
			return srv.URL + "/api/task-1/"
		}
		return ""
	})
	return a, &bodies
}

func TestProtectAndUnprotect(t *testing.T) {
	a, bodies := agent(t, http.StatusOK, `{"protection":{"ExpirationDate":"2026-12-06T13:00:00Z","ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:eu-west-1:123456789012:task/c/1"}}`)
	ctx := context.Background()
	for _, d := range []time.Duration{15 * time.Minute, 90 * time.Second, 0, 100 * time.Hour} {
		if err := a.Protect(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Unprotect(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"ProtectionEnabled":true,"ExpiresInMinutes":15}`,
		`{"ProtectionEnabled":true,"ExpiresInMinutes":2}`,    // rounded up
		`{"ProtectionEnabled":true,"ExpiresInMinutes":1}`,    // ECS's least
		`{"ProtectionEnabled":true,"ExpiresInMinutes":2880}`, // and most
		`{"ProtectionEnabled":false}`,
	}
	if strings.Join(*bodies, "\n") != strings.Join(want, "\n") {
		t.Errorf("bodies\n%s\nwant\n%s", strings.Join(*bodies, "\n"), strings.Join(want, "\n"))
	}
}

// TestRefusalsAreErrors: the agent's failure and error answers, and
// anything else it might say, are errors naming what ECS said.
func TestRefusalsAreErrors(t *testing.T) {
	for _, c := range []struct {
		status       int
		answer, want string
	}{
		{http.StatusOK, `{"failure":{"Arn":"arn:aws:ecs:eu-west-1:123456789012:task/c/1","Reason":"TASK_NOT_VALID","Detail":"not in a service"}}`, "TASK_NOT_VALID"},
		{http.StatusBadRequest, `{"error":{"Code":"AccessDeniedException","Message":"not authorized to perform ecs:UpdateTaskProtection"}}`, "AccessDeniedException"},
		{http.StatusInternalServerError, `upstream unavailable`, "HTTP 500"},
		{http.StatusOK, `{}`, "HTTP 200"},
	} {
		a, _ := agent(t, c.status, c.answer)
		err := a.Protect(context.Background(), time.Minute)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s", c.answer, err, c.want)
		}
	}
}

func TestOutsideECS(t *testing.T) {
	if a := protection.FromEnv(func(string) string { return "" }); a != nil {
		t.Error("an agent without ECS_AGENT_URI")
	}
}
