package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/xrc-dev/xrc/internal/config"
)

// TestDeploymentFixed: a task whose document was edited by hand after the
// deployment does not take it over what the deployment fixed: another
// stack's document is refused (its tables, queues and alarms are not the
// task's), and another metrics address is replaced by the deployed one,
// which the task's health check probes (listening elsewhere, every task
// would be replaced), said at warn.
func TestDeploymentFixed(t *testing.T) {
	startLocal(t)
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return os.Getenv(k)
		}
	}
	_, err := Start(context.Background(), "xrc-test", nil, env("XRC_STACK_NAME", "xrc-prod"), &bytes.Buffer{})
	if !errors.Is(err, ErrNotStarted) || !strings.Contains(err.Error(), `settings.stackName "xrc-local" is not "xrc-prod"`) {
		t.Errorf("a document of another stack: %v, want it refused, named", err)
	}
	var out syncBuffer
	p, err := Start(context.Background(), "xrc-test", nil, env("XRC_STACK_NAME", "xrc-local", "XRC_METRICS_ADDR", "localhost:0"), &out)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if p.Config.Settings.Worker.MetricsAddr != "localhost:0" {
		t.Errorf("listening on %s (%s), want the deployed localhost:0 over the document's 127.0.0.1:0", p.Addr, p.Config.Settings.Worker.MetricsAddr)
	}
	if !strings.Contains(out.String(), "listening on the deployed one") {
		t.Errorf("the replaced metrics address is not said:\n%s", out.String())
	}
}

// TestRoomForCompressors: a source task deployed for level 3 does not
// compress at level 19 on a document edited by hand: libzstd's memory is
// outside the Go heap its GOMEMLIMIT was sized beside.
func TestRoomForCompressors(t *testing.T) {
	cfg, err := config.Load(context.Background(), "../../configs/example.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cfg.Rules[0]
	level := func(l int) { r.Level, cfg.Settings.Adaptive.MaxLevel = l, l }
	level(3)
	deployed := Deployment{MemoryMB: 512, GoMemLimitMiB: config.GoMemLimitMiB(512, cfg.SourceCompressorsMiB(r))}
	if err := deployed.RoomForCompressors(cfg, []string{r.ID}); err != nil {
		t.Errorf("the deployed levels: %v", err)
	}
	level(19)
	if err := deployed.RoomForCompressors(cfg, []string{r.ID}); err == nil || !strings.Contains(err.Error(), "deployed for lower levels") {
		t.Errorf("level 19 beside a GOMEMLIMIT sized for level 3: %v, want it refused", err)
	}
	if err := (Deployment{}).RoomForCompressors(cfg, []string{r.ID}); err != nil {
		t.Errorf("no deployment known: %v, want nothing refused", err)
	}
}
