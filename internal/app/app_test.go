package app

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	env := map[string]string{"XRC_CONFIG": "ssm:///xrc/config", "AWS_REGION": "eu-west-1", "XRC_RULES": "logs"}
	f, err := ParseFlags("x", nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if f.Config != "ssm:///xrc/config" || f.Region != "eu-west-1" || f.Rules != "logs" {
		t.Errorf("from env: %+v", f)
	}
	f, err = ParseFlags("x", []string{"-config", "c.json", "-region", "us-east-1"}, func(k string) string { return env[k] })
	if err != nil || f.Config != "c.json" || f.Region != "us-east-1" {
		t.Errorf("flags override env: %+v %v", f, err)
	}
	env["XRC_REGION"] = "ap-southeast-2"
	if f, _ := ParseFlags("x", nil, func(k string) string { return env[k] }); f.Region != "ap-southeast-2" {
		t.Errorf("XRC_REGION should win over AWS_REGION: %q", f.Region)
	}
	if _, err := ParseFlags("x", nil, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "XRC_CONFIG") {
		t.Errorf("missing config: %v", err)
	}
}

func TestExit(t *testing.T) {
	if Exit(nil) != 0 || Exit(context.Canceled) != 0 || Exit(flag.ErrHelp) != 0 || Exit(errors.New("boom")) != 1 {
		t.Error("exit codes")
	}
	_, err := ParseFlags("x", []string{"-bogus"}, func(string) string { return "" })
	if Exit(err) != 2 {
		t.Errorf("unknown flag: exit %d, want 2 (%v)", Exit(err), err)
	}
	_, err = ParseFlags("x", nil, func(string) string { return "" })
	if Exit(err) != 2 {
		t.Errorf("no config: exit %d, want 2 (%v)", Exit(err), err)
	}
}
