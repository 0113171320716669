package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/manifest"
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

// TestNewerArchiveSaysUpgradeXRC: an archive whose manifest requires what
// this release does not know is said to be newer than the command, not
// corrupt.
func TestNewerArchiveSaysUpgradeXRC(t *testing.T) {
	m := &manifest.Manifest{Format: manifest.Format, ArchiveID: "newer", CreatedAt: time.Now().UTC(), RuleID: "r1", Level: 3, Requires: []string{"teleport"}}
	var buf bytes.Buffer
	w := archive.NewWriter(archive.WriterOptions{})
	if err := w.Begin(&buf, m); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "newer.tar.zst")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"archive", "verify", file}, Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, Now: time.Now}, "test")
	if err == nil || !strings.Contains(err.Error(), "upgrade xrc") {
		t.Fatalf("xrc archive verify of a newer archive: %v; want it told to upgrade xrc", err)
	}
}
