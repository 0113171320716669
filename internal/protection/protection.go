// Package protection sets ECS task scale-in protection through the ECS
// container agent's endpoint ($ECS_AGENT_URI/task-protection/v1/state).
// A protected task is not stopped by service auto scaling's scale-in nor by
// a deployment until its protection is removed or expires; a Spot
// interruption still stops it.
//
// The agent calls ecs:UpdateTaskProtection with the task role's
// credentials, so the task role needs that permission.
package protection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// EnvURI is the variable ECS sets, in every container of a task, to the
// agent's endpoint.
const EnvURI = "ECS_AGENT_URI"

// callTimeout bounds one call to the agent, which answers from the task's
// own host; it goes on to ECS's API, which may be slow.
const callTimeout = 10 * time.Second

// Agent talks to one task's ECS agent.
type Agent struct {
	url    string
	client *http.Client
}

// New returns an agent client for uri (the value of ECS_AGENT_URI).
func New(uri string, client *http.Client) *Agent {
	if client == nil {
		client = &http.Client{Timeout: callTimeout}
	}
	return &Agent{url: strings.TrimRight(uri, "/") + "/task-protection/v1/state", client: client}
}

// FromEnv returns the task's agent, or nil outside ECS (no ECS_AGENT_URI).
func FromEnv(getenv func(string) string) *Agent {
	uri := getenv(EnvURI)
	if uri == "" {
		return nil
	}
	return New(uri, nil)
}

// Protect protects the task for d (rounded up to whole minutes, 1 to 2,880);
// called again, it restarts the expiry from now.
func (a *Agent) Protect(ctx context.Context, d time.Duration) error {
	minutes := min(max(int((d+time.Minute-1)/time.Minute), 1), 2880)
	return a.set(ctx, fmt.Sprintf(`{"ProtectionEnabled":true,"ExpiresInMinutes":%d}`, minutes))
}

// Unprotect makes the task eligible for scale-in and deployments again.
func (a *Agent) Unprotect(ctx context.Context) error {
	return a.set(ctx, `{"ProtectionEnabled":false}`)
}

// answer is the agent's reply: protection on success, failure when ECS
// refused the task (TASK_NOT_VALID for a task outside a service), error
// when the call itself failed (access denied, throttled).
type answer struct {
	Protection *struct {
		ProtectionEnabled bool
	} `json:"protection"`
	Failure *struct {
		Arn, Reason, Detail string
	} `json:"failure"`
	Error *struct {
		Code, Message string
	} `json:"error"`
}

func (a *Agent) set(ctx context.Context, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("task protection: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("task protection: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("task protection: reading the agent's answer (HTTP %d): %w", resp.StatusCode, err)
	}
	var ans answer
	if err := json.Unmarshal(data, &ans); err != nil {
		return fmt.Errorf("task protection: the agent answered HTTP %d: %q", resp.StatusCode, bytes.TrimSpace(data))
	}
	switch {
	case ans.Error != nil:
		return fmt.Errorf("task protection: %s: %s (HTTP %d)", ans.Error.Code, ans.Error.Message, resp.StatusCode)
	case ans.Failure != nil:
		return fmt.Errorf("task protection: ECS refused task %s: %s %s", ans.Failure.Arn, ans.Failure.Reason, ans.Failure.Detail)
	case resp.StatusCode != http.StatusOK || ans.Protection == nil:
		return fmt.Errorf("task protection: the agent answered HTTP %d: %q", resp.StatusCode, bytes.TrimSpace(data))
	}
	return nil
}
