package cli

import (
	"flag"
	"testing"
)

// TestArchiveConfigFromEnv: xrc archive takes its -config from XRC_CONFIG,
// as every other command of xrc does.
func TestArchiveConfigFromEnv(t *testing.T) {
	f := &locationFlags{getenv: func(k string) string { return map[string]string{"XRC_CONFIG": "ssm:///xrc/config"}[k] }}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(nil); err != nil || f.config != "ssm:///xrc/config" {
		t.Fatalf("-config = %q (%v), want XRC_CONFIG's", f.config, err)
	}
	if err := fs.Parse([]string{"-config", "c.json"}); err != nil || f.config != "c.json" {
		t.Fatalf("-config = %q (%v), want the flag's", f.config, err)
	}
}
